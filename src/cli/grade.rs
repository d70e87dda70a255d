//! `ipw grade`: re-grade a finished run's saved responses with another grader or params.

use anyhow::{bail, Context};
use ipw_core::grade::{regrade_run, RegradeSpec};
use ipw_core::records::run_dirs;
use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path, grader: String, params: Option<String>) -> anyhow::Result<ExitCode> {
    let params = match params {
        Some(text) => {
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("--params is not JSON: {text}"))?;
            if !v.is_object() {
                bail!("--params must be a JSON object, e.g. '{{\"rel_tol\": 0.01}}'");
            }
            Some(v)
        }
        None => None,
    };
    let runs = run_dirs(dir).with_context(|| format!("reading {}", dir.display()))?;
    if runs.is_empty() {
        bail!(
            "{}: no run here (a run directory holds manifest.json; an experiment directory holds run directories)",
            dir.display()
        );
    }
    let spec = RegradeSpec { grader, params };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    for run in runs {
        let summary = runtime
            .block_on(regrade_run(&run, &spec))
            .with_context(|| format!("re-grading {}", run.display()))?;
        println!("{} ({}):", summary.model, run.display());
        match &summary.quality {
            Some(q) => super::table::print_quality(q),
            None => println!("    no responses to grade"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
