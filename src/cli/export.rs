//! `ipw export`: runs as Parquet tables for pandas, polars, DuckDB, Spark.

use anyhow::{Context, Result};
use ipw_core::export::parquet::{export_with, Destination};
use std::path::PathBuf;
use std::process::ExitCode;

/// The formats `ipw export` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `records.parquet` and `power.parquet` per run.
    Parquet,
}

pub fn run(
    runs: &[PathBuf],
    format: Format,
    out: Option<PathBuf>,
    footprint: Option<PathBuf>,
) -> Result<ExitCode> {
    let Format::Parquet = format;
    // A wrong footprint file is refused before any run is read.
    let footprint =
        ipw_core::footprint::Footprints::given_or_from_runs(footprint.as_deref(), runs)?;
    let dest = match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Destination::Under(dir)
        }
        None => Destination::InPlace,
    };
    let started = std::time::Instant::now();
    let done = export_with(runs, &dest, footprint.as_ref()).context("exporting to Parquet")?;
    for r in &done {
        let power = match r.power_rows {
            Some(n) => format!(", {n} power readings"),
            None => String::new(),
        };
        let power = match r.footprint_rows {
            Some(n) => format!("{power}, {n} footprint rows"),
            None => power,
        };
        println!(
            "{}: {} records ({} energy channels){power} -> {}",
            r.run.display(),
            r.records,
            r.channels.len(),
            r.dir.display()
        );
        if r.rejected_lines > 0 {
            eprintln!(
                "warning: {}: {} unreadable line(s) in records.jsonl left out",
                r.run.display(),
                r.rejected_lines
            );
        }
        if r.unreadable_power_lines > 0 {
            eprintln!(
                "warning: {}: {} unreadable line(s) in power.jsonl left out",
                r.run.display(),
                r.unreadable_power_lines
            );
        }
    }
    eprintln!(
        "exported {} run(s) in {:.2} s",
        done.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
