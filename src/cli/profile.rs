//! `ipw profile`: run an experiment with a progress bar; Ctrl-C stops cleanly.

use super::{progress::Progress, table};
use anyhow::Context;
use ipw_core::run::{Cancel, ProfileOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn run(
    file: &Path,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = ipw_core::config::load_experiment(file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cancel = Cancel::default();
    let progress = Progress::new(quiet);
    let options = ProfileOptions {
        out_dir: out,
        resume,
    };
    let (dir, outcomes) = runtime.block_on(async {
        let watcher = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: finishing up; records so far are on disk (Ctrl-C again to exit now)");
                watcher.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        ipw_core::run::profile(&loaded, &options, &progress, &cancel).await
    })?;
    table::print(&outcomes);
    println!("results: {}", dir.display());
    if cancel.is_cancelled() {
        println!(
            "interrupted; continue with: ipw profile {} --resume {}",
            file.display(),
            dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
