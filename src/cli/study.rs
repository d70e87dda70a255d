//! `ipw compare` and `ipw coverage`: the study across runs, printed and written as JSON + CSV.

use anyhow::{Context, Result};
use ipw_core::analysis::Estimate;
use ipw_core::export::tables;
use ipw_core::study::{self, GroupBy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn out_dir(runs: &[PathBuf], out: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => d,
        None => study::analysis_dir(runs)?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, json: serde_json::Value, csv: String) -> Result<()> {
    let j = dir.join(format!("{name}.json"));
    std::fs::write(&j, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", j.display()))?;
    let c = dir.join(format!("{name}.csv"));
    std::fs::write(&c, csv).with_context(|| format!("writing {}", c.display()))?;
    println!("written: {}, {}", j.display(), c.display());
    Ok(())
}

fn est(e: &Option<Estimate>, digits: usize) -> String {
    ipw_core::analysis::estimate_text(e.as_ref(), digits)
}

/// `ipw partial`: one part per run, named after the run's directory.
pub fn partial(runs: &[PathBuf], out: &Path, seed: u64) -> Result<ExitCode> {
    let dirs = ipw_core::joined::find_runs(runs)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut names = std::collections::BTreeMap::new();
    for run in &dirs {
        let name = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{}: a run directory without a name", run.display()))?;
        if let Some(first) = names.insert(name.clone(), run) {
            anyhow::bail!(
                "{} and {} would both be {name}.part.parquet: give them separately with different --out",
                first.display(),
                run.display()
            );
        }
    }
    for run in &dirs {
        let name = run.file_name().expect("named above").to_string_lossy();
        let path = out.join(format!("{name}.part.parquet"));
        let part = study::part::write_part(run, &path, seed)?;
        println!(
            "{}: {} records, {} queries -> {}",
            run.display(),
            part.records,
            part.queries,
            part.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn compare(
    runs: &[PathBuf],
    by: &str,
    baseline: Option<&str>,
    seed: u64,
    out: Option<PathBuf>,
    footprint: Option<&Path>,
) -> Result<ExitCode> {
    let by = GroupBy::parse(by).map_err(|e| anyhow::anyhow!("--by {e}"))?;
    // A wrong footprint file is refused before any run is read.
    let footprint = ipw_core::footprint::Footprints::given_or_from_runs(footprint, runs)?;
    let r = study::compare(runs, by, baseline, seed)?;
    println!(
        "energy: {}; * = energy estimated, ! = records with energy flags",
        r.energy_basis
    );
    for row in &r.rows {
        println!(
            "  {:<22} {:<18} {:<14} n={:<5} acc {}  APJ {}  APW {}  J/q {}  p50 {} s{}{}",
            row.model,
            row.accelerator,
            row.group,
            row.scored,
            est(&row.accuracy, 3),
            est(&row.apj, 4),
            est(&row.apw, 4),
            row.j_per_query
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
            row.latency_p50_s
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
            if row.energy_estimated { " *" } else { "" },
            if row.flagged > 0 {
                format!(" !{}", row.flagged)
            } else {
                String::new()
            }
        );
    }
    println!("paired against {} on shared queries:", r.baseline);
    for p in &r.paired {
        println!(
            "  {:<22} {:<14} n={:<5} Δacc {}  energy x{}  APJ x{}",
            p.model,
            p.group,
            p.shared,
            est(&p.accuracy_delta, 3),
            est(&p.energy_ratio, 3),
            est(&p.apj_ratio, 3)
        );
    }
    if r.incomplete > 0 {
        println!(
            "  ({} queries are missing from some runs: not paired)",
            r.incomplete
        );
    }
    let dir = out_dir(runs, out)?;
    let mut json = serde_json::to_value(&r)?;
    if let Some(f) = &footprint {
        let figures = ipw_core::footprint::figures(runs, by, f)?;
        print_footprint(&figures);
        let csv = dir.join("footprint.csv");
        std::fs::write(&csv, figures.to_csv())
            .with_context(|| format!("writing {}", csv.display()))?;
        json["footprint"] = serde_json::to_value(&figures)?;
    }
    write(&dir, "compare", json, tables::compare(&r))?;
    Ok(ExitCode::SUCCESS)
}

fn print_footprint(f: &ipw_core::footprint::FootprintFigures) {
    let currency = f.currency().unwrap_or("");
    println!("footprint per query:");
    for (whose, i) in f.labelled_inputs() {
        println!("  {whose}: PUE {}", i.pue);
        for (what, input) in [
            ("carbon", &i.carbon),
            ("water", &i.water),
            ("hardware", &i.hardware),
        ] {
            if let Some(input) = input {
                println!("    {what}: {input}");
            }
        }
    }
    let num = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4e}"));
    for r in &f.rows {
        println!(
            "  {:<22} {:<14} kWh {}  g CO2e {}  water L {}  cost {} {currency}",
            r.model,
            r.group,
            num(r.kwh_per_query),
            num(r.g_co2e_per_query),
            num(r.water_l_per_query),
            num(r.cost_per_query),
        );
    }
}

pub fn coverage(
    runs: &[PathBuf],
    reference: &str,
    tolerance: f64,
    by: &str,
    meta: Option<PathBuf>,
    seed: u64,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    let by = GroupBy::parse(by).map_err(|e| anyhow::anyhow!("--by {e}"))?;
    let meta = match &meta {
        Some(p) => ipw_core::routing::read_meta_file(p)?,
        None => BTreeMap::new(),
    };
    let r = study::coverage(runs, reference, tolerance, by, &meta, seed)?;
    println!(
        "coverage against {} (covered: score >= reference - {}), {} queries",
        r.reference, r.tolerance, r.queries
    );
    if !r.pairwise_datasets.is_empty() {
        println!(
            "  judged pairwise against the reference (covered: score >= 0.5 - {}): {}",
            r.tolerance,
            r.pairwise_datasets.join(", ")
        );
    }
    for row in &r.rows {
        println!(
            "  {:<22} {:<14} n={:<5} {}",
            row.model,
            row.group,
            row.queries,
            est(&row.coverage, 3)
        );
    }
    for d in &r.over_time {
        println!(
            "  by {}: best-of-local {:.3} ({})",
            d.date,
            d.coverage,
            d.models.join(", ")
        );
    }
    write(
        &out_dir(runs, out)?,
        "coverage",
        serde_json::to_value(&r)?,
        tables::coverage(&r),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
pub fn trend(
    runs: &[PathBuf],
    metric: &str,
    meta: Option<PathBuf>,
    from: Option<&str>,
    to: Option<&str>,
    seed: u64,
    out: Option<PathBuf>,
) -> Result<ExitCode> {
    use ipw_core::study::trend::{self, Metric};
    let metric = Metric::parse(metric).map_err(|e| anyhow::anyhow!("--metric {e}"))?;
    let (models, accelerators) = match &meta {
        Some(p) => ipw_core::routing::read_study_meta(p)?,
        None => Default::default(),
    };
    let r = trend::trend(runs, metric, &models, &accelerators, (from, to), seed)?;
    let name = match metric {
        Metric::Apw => "APW",
        Metric::Apj => "APJ",
    };
    println!("{name} per run (model x accelerator):");
    for p in &r.points {
        println!(
            "  {:<22} {:<22} model {:<10} accel {:<10} {:<5} n={:<5} {}{}",
            p.model,
            p.accelerator,
            p.model_release.as_deref().unwrap_or("-"),
            p.accelerator_release.as_deref().unwrap_or("-"),
            p.class
                .map(|c| format!("{c:?}").to_lowercase())
                .unwrap_or_else(|| "-".into()),
            p.records,
            est(&p.value, 4),
            if p.energy_estimated { " *" } else { "" }
        );
    }
    if !r.frontier.is_empty() {
        println!("best available by model release date:");
        for b in &r.frontier {
            println!(
                "  {}  {} on {}  {}",
                b.date,
                b.model,
                b.accelerator,
                est(&Some(b.value), 4)
            );
        }
    }
    if let Some(f) = &r.per_year {
        println!(
            "log-linear fit of the frontier: x{} per year",
            est(&Some(*f), 2)
        );
    }
    if let Some(c) = &r.change {
        println!(
            "{} -> {}: x{} ({} on {} -> {} on {})",
            c.from.date,
            c.to.date,
            est(&Some(c.total), 2),
            c.from.model,
            c.from.accelerator,
            c.to.model,
            c.to.accelerator
        );
        println!(
            "  model x{}  hardware x{}  ({})",
            est(&c.model_factor, 2),
            est(&c.hardware_factor, 2),
            c.method
        );
    }
    for l in &r.local_vs_cloud {
        println!(
            "  {}: cloud {} / local {} = x{}",
            l.model,
            l.cloud,
            l.local,
            est(&Some(l.ratio), 2)
        );
    }
    write(
        &out_dir(runs, out)?,
        "trend",
        serde_json::to_value(&r)?,
        tables::trend(&r),
    )?;
    Ok(ExitCode::SUCCESS)
}
