//! `ipw grade`: re-grade a finished run's saved responses with another grader or params, or
//! against a reference run's responses (`--against`, for `pairwise`).

use anyhow::{bail, Context};
use ipw_core::grade::{regrade_run, RegradeSpec};
use ipw_core::records::run_dirs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(
    dir: &Path,
    grader: String,
    params: Option<String>,
    against: Option<PathBuf>,
    judge_config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let params = super::params_arg(params, r#"'{"rel_tol": 0.01}'"#)?;
    let runs = run_dirs(dir).with_context(|| format!("reading {}", dir.display()))?;
    if runs.is_empty() {
        bail!(
            "{}: no run here (a run directory holds manifest.json; an experiment directory holds run directories)",
            dir.display()
        );
    }
    let grading = match &judge_config {
        Some(file) => Some(ipw_core::config::load_grading_file(file)?),
        None => None,
    };
    // Graded against itself a run would only tie: an experiment directory that holds the
    // reference grades every other run in it.
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let runs: Vec<PathBuf> = match &against {
        Some(reference) if runs.len() > 1 => {
            runs.into_iter().filter(|r| !same(r, reference)).collect()
        }
        _ => runs,
    };
    let spec = RegradeSpec {
        grader,
        params,
        against,
        grading,
    };
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
        if let Some(reference) = &spec.against {
            println!("    graded against {}", reference.display());
        }
        match &summary.quality {
            Some(q) => super::table::print_quality(q),
            None => println!("    no responses to grade"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
