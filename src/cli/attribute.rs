//! `ipw attribute`: recompute a finished (or crashed) run's per-query energy from its power log.

use anyhow::{bail, Context};
use ipw_core::records::run_dirs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(
    dir: &Path,
    trace: Option<PathBuf>,
    trace_config: Option<String>,
) -> anyhow::Result<ExitCode> {
    let runs = run_dirs(dir).with_context(|| format!("reading {}", dir.display()))?;
    if runs.is_empty() {
        bail!(
            "{}: no run here (a run directory holds manifest.json; an experiment directory holds run directories)",
            dir.display()
        );
    }
    let sampler = match &trace {
        Some(file) => {
            let file =
                std::path::absolute(file).with_context(|| format!("--trace {}", file.display()))?;
            let mut config = match &trace_config {
                Some(text) => serde_json::from_str::<serde_json::Value>(text)
                    .with_context(|| format!("--trace-config is not JSON: {text}"))?,
                None => serde_json::json!({}),
            };
            let Some(obj) = config.as_object_mut() else {
                bail!("--trace-config must be a JSON object");
            };
            obj.insert("file".into(), file.display().to_string().into());
            obj.entry("channel").or_insert("wall".into());
            Some(ipw_core::config::SamplerConfig {
                plugin: Some("replay".into()),
                path: None,
                rate_hz: None,
                config,
            })
        }
        None => None,
    };
    for run in runs {
        let done = match &sampler {
            Some(cfg) => {
                let (n, done) = ipw_core::run::import_trace(&run, cfg.clone(), &[])
                    .with_context(|| format!("importing the trace into {}", run.display()))?;
                println!("{}: imported {n} readings", run.display());
                done
            }
            None => ipw_core::run::reattribute(&run)
                .with_context(|| format!("attributing energy in {}", run.display()))?,
        };
        println!(
            "{} ({}): {} of {} records have energy; {} changed",
            done.model,
            run.display(),
            done.with_energy,
            done.records,
            done.changed
        );
        match &done.summary.energy {
            Some(e) => super::table::print_energy(e),
            None => println!("    no power readings to attribute (the run had no samplers)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
