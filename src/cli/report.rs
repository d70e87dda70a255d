//! `ipw report`: one self-contained HTML page over runs, with report.json and CSV files of the
//! numbers beside it.

use super::study::{cells, quote};
use anyhow::{Context, Result};
use ipw_core::report::{self, Report, ReportRequest};
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
}

fn num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The tables of the report as CSV files: `(suffix, text)`.
fn csvs(r: &Report) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(rows) = &r.summary.data {
        let mut c = String::from("run,accelerator,path,scored,accuracy,accuracy_lo,accuracy_hi,apj,apj_lo,apj_hi,apw,apw_lo,apw_hi,j_per_query,latency_p50_s,energy,energy_estimated,flagged,pareto_frontier\n");
        for row in rows {
            let info = r.runs.iter().find(|x| x.name == row.model);
            let frontier = r
                .pareto
                .data
                .iter()
                .flatten()
                .find(|p| p.run == row.model)
                .map(|p| p.frontier.to_string())
                .unwrap_or_default();
            c += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                quote(&row.model),
                quote(&row.accelerator),
                quote(
                    &info
                        .map(|i| i.path.display().to_string())
                        .unwrap_or_default()
                ),
                row.scored,
                cells(&row.accuracy),
                cells(&row.apj),
                cells(&row.apw),
                num(row.j_per_query),
                num(row.latency_p50_s),
                info.map(|i| i.energy.label()).unwrap_or_default(),
                row.energy_estimated,
                row.flagged,
                frontier
            );
        }
        out.push(("summary", c));
    }
    if let Some(cov) = &r.coverage.data {
        let mut c = String::from("reference,model,group,queries,coverage,lo,hi\n");
        for row in &cov.report.rows {
            c += &format!(
                "{},{},{},{},{}\n",
                quote(&cov.report.reference),
                quote(&row.model),
                quote(&row.group),
                row.queries,
                cells(&row.coverage)
            );
        }
        out.push(("coverage", c));
    }
    if let Some(h) = &r.energy.data {
        let mut c = String::from("run,bin_lo_j,bin_hi_j,count\n");
        for run in h {
            for b in &run.bins {
                c += &format!("{},{},{},{}\n", quote(&run.run), b.lo, b.hi, b.count);
            }
        }
        out.push(("energy", c));
    }
    if let Some(t) = &r.trace.data {
        let mut c = String::from("run,session,channel,t_s,power_w\n");
        for ch in &t.channels {
            for p in &ch.points {
                c += &format!(
                    "{},{},{},{},{}\n",
                    quote(&t.run),
                    t.session,
                    quote(&ch.name),
                    p[0],
                    p[1]
                );
            }
        }
        out.push(("trace", c));
    }
    out
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
    let req = ReportRequest {
        runs: a.runs,
        reference: a.reference,
        tolerance: a.tolerance,
        by,
        trace_run: a.trace_run,
        route: a.route,
        seed: a.seed,
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
    for (suffix, text) in csvs(&r) {
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
    ] {
        println!("  {what:<9} {note}");
    }
    println!("written: {}", written.join(", "));
    Ok(ExitCode::SUCCESS)
}
