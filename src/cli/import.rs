//! `ipw import`: an external per-query table becomes run directories.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

pub fn run(table: &Path, out: &Path, map: &[String], parquet: bool) -> Result<ExitCode> {
    let mut mapping = BTreeMap::new();
    for m in map {
        let Some((field, column)) = m.split_once('=') else {
            bail!("--map {m}: write FIELD=COLUMN, e.g. --map query_id=id");
        };
        mapping.insert(field.trim().to_string(), column.trim().to_string());
    }
    let stored = if parquet {
        ipw_core::import::Stored::Parquet
    } else {
        ipw_core::import::Stored::Jsonl
    };
    let done = ipw_core::import::import_as(table, out, &mapping, stored)?;
    for (model, dir, n) in &done.runs {
        println!("{model}: {n} records -> {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
