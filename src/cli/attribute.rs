//! `ipw attribute`: recompute a finished (or crashed) run's per-query energy from its power log.

use anyhow::{bail, Context};
use ipw_core::records::run_dirs;
use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    let runs = run_dirs(dir).with_context(|| format!("reading {}", dir.display()))?;
    if runs.is_empty() {
        bail!(
            "{}: no run here (a run directory holds manifest.json; an experiment directory holds run directories)",
            dir.display()
        );
    }
    for run in runs {
        let done = ipw_core::run::reattribute(&run)
            .with_context(|| format!("attributing energy in {}", run.display()))?;
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
