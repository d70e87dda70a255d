//! `ipw merge`: join a split experiment's shards into one run per model and accelerator.

use anyhow::Context;
use std::path::Path;
use std::process::ExitCode;

pub fn run(dir: &Path, allow_partial: bool) -> anyhow::Result<ExitCode> {
    let report = ipw_core::scaleout::merge(dir, allow_partial)
        .with_context(|| format!("merging the shards in {}", dir.display()))?;
    println!(
        "{} shard directories of a {}-way split; {} queries planned per model",
        report.shards.len(),
        report.count,
        report.planned
    );
    println!("{:<28} {:>6} {:>8}  status", "shard", "runs", "records");
    for s in &report.shards {
        println!(
            "{:<28} {:>6} {:>8}  {}",
            s.name,
            s.runs,
            s.records,
            s.statuses.join("; ")
        );
    }
    println!();
    println!(
        "{:<40} {:<28} {:>8} {:>8} {:>7}  status",
        "merged run", "accelerator", "records", "planned", "shards"
    );
    for r in &report.runs {
        println!(
            "{:<40} {:<28} {:>8} {:>8} {:>7}  {}",
            r.dir.display(),
            r.accelerator,
            r.records,
            r.planned,
            r.shards,
            r.status
        );
    }
    for p in &report.problems {
        eprintln!("warning (--allow-partial): {p}");
    }
    Ok(ExitCode::SUCCESS)
}
