//! `ipw import`: an external per-query table becomes run directories.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// The command's arguments.
pub struct Args {
    pub table: PathBuf,
    pub out: PathBuf,
    pub map: Vec<String>,
    pub parquet: bool,
    pub wide: Option<PathBuf>,
    pub models: Vec<String>,
    pub ignore: Vec<String>,
}

fn pairs(flag: &str, items: &[String], example: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for m in items {
        let Some((field, column)) = m.split_once('=') else {
            bail!("{flag} {m}: write {example}");
        };
        if out
            .insert(field.trim().to_string(), column.trim().to_string())
            .is_some()
        {
            bail!("{flag} {}: given twice", field.trim());
        }
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<ExitCode> {
    let map = pairs("--map", &a.map, "FIELD=COLUMN, e.g. --map query_id=id")?;
    let stored = if a.parquet {
        ipw_core::import::Stored::Parquet
    } else {
        ipw_core::import::Stored::Jsonl
    };
    let done = if let Some(path) = &a.wide {
        let mapping = ipw_core::import::WideMapping::read(path)?;
        ipw_core::import::import_wide(&a.table, &a.out, &mapping, stored)?
    } else if !a.models.is_empty() {
        let models = pairs(
            "--model",
            &a.models,
            "NAME=COLUMN, e.g. --model gpt-4=gpt4_score",
        )?;
        let mapping = ipw_core::import::WideMapping {
            ignore: a.ignore.clone(),
            shared: BTreeMap::new(),
            models: models
                .into_iter()
                .map(|(name, column)| (name, BTreeMap::from([("score".to_string(), column)])))
                .collect(),
        };
        ipw_core::import::import_wide(&a.table, &a.out, &mapping, stored)?
    } else {
        ipw_core::import::import_as(&a.table, &a.out, &map, stored)?
    };
    for (model, dir, n) in &done.runs {
        println!("{model}: {n} records -> {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
