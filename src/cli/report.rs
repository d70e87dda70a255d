//! `ipw report`: one self-contained HTML page over runs, with report.json and CSV files of the
//! numbers beside it.

use anyhow::{Context, Result};
use ipw_core::report::{self, ReportRequest};
use ipw_core::study::GroupBy;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The command's arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories or experiment directories.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The page to write; report.json and report.*.csv go beside it (default: the first
    /// run's `analysis/report.html`).
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Coverage reference (default: the run with the most energy per query).
    #[arg(long)]
    pub reference: Option<String>,
    /// Coverage: covered when score >= reference score - tolerance.
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Coverage groups: dataset, subject or category.
    #[arg(long, default_value = "dataset")]
    pub by: String,
    /// The run whose power trace is drawn, by model (`model@accelerator`) or directory
    /// name (default: the first run with a power log).
    #[arg(long, value_name = "NAME")]
    pub trace_run: Option<String>,
    /// Routing results to show (default: the first run's `analysis/route.json`, where
    /// `ipw route` writes it).
    #[arg(long, value_name = "FILE")]
    pub route: Option<PathBuf>,
    /// Seed for the intervals.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A footprint file (as for `ipw compare --footprint`): a section of carbon, water and
    /// cost per query per run, with every input named.
    #[arg(long, value_name = "FILE")]
    pub footprint: Option<PathBuf>,
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn run(a: Args) -> Result<ExitCode> {
    let by = GroupBy::parse(&a.by).map_err(|e| anyhow::anyhow!("--by {e}"))?;
    let out = match a.out {
        Some(o) => o,
        None => ipw_core::joined::find_runs(&a.runs)?[0]
            .join("analysis")
            .join("report.html"),
    };
    // A wrong footprint file is refused before any run is read.
    let footprint =
        ipw_core::footprint::Footprints::given_or_from_runs(a.footprint.as_deref(), &a.runs)?;
    let req = ReportRequest {
        runs: a.runs,
        reference: a.reference,
        tolerance: a.tolerance,
        by,
        trace_run: a.trace_run,
        route: a.route,
        seed: a.seed,
        footprint,
        command: std::env::args().collect(),
    };
    let r = report::build(&req)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write(&out, &report::html::render(&r))?;
    let json = out.with_extension("json");
    write(&json, &serde_json::to_string_pretty(&r)?)?;
    let mut written = vec![out.display().to_string(), json.display().to_string()];
    for (suffix, text) in ipw_core::export::tables::report(&r) {
        let path = out.with_extension(format!("{suffix}.csv"));
        write(&path, &text)?;
        written.push(path.display().to_string());
    }
    for (what, note) in [
        ("summary", &r.summary.note),
        ("pareto", &r.pareto.note),
        ("coverage", &r.coverage.note),
        ("trace", &r.trace.note),
        ("energy", &r.energy.note),
        ("routing", &r.routing.note),
        ("footprint", &r.footprint.note),
    ] {
        println!("  {what:<9} {note}");
    }
    println!("written: {}", written.join(", "));
    Ok(ExitCode::SUCCESS)
}
