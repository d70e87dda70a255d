//! `ipw classify`: give every query of finished runs a domain from a sandboxed classifier, and
//! with `--against`, say how well it agrees with hand labels.

use anyhow::{bail, Context};
use ipw_core::classify::agreement::{agreement, read_labels, Agreement};
use ipw_core::classify::{ClassifySpec, Classifying, Taxonomy};
use ipw_core::config::GradingConfig;
use ipw_core::records::RunDir;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// What `ipw classify` was given.
pub struct Args {
    pub runs: Vec<PathBuf>,
    pub classifier: String,
    pub params: Option<String>,
    pub taxonomy: String,
    pub against: Option<PathBuf>,
    pub judge_config: Option<PathBuf>,
    pub batch: Option<usize>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let params = super::params_arg(a.params, r#"'{"keywords": {"23-0000": ["court"]}}'"#)?;
    let taxonomy = Taxonomy::load(&a.taxonomy)?;
    let truth = match &a.against {
        Some(path) => Some(read_labels(path, &taxonomy)?),
        None => None,
    };
    let runs = ipw_core::joined::find_runs(&a.runs)?;
    if runs.is_empty() {
        bail!("no run directory among the paths given");
    }
    // The first run's [grading] (its judge and limits), with --judge-config over it.
    let manifest = RunDir::new(&runs[0]).read_manifest()?;
    let mut grading: GradingConfig = manifest
        .experiment_section("grading")
        .map_err(|m| anyhow::anyhow!("{}: experiment.grading: {m}", runs[0].display()))?;
    if let Some(file) = &a.judge_config {
        grading.overlay(ipw_core::config::load_grading_file(file)?);
    }
    let spec = ClassifySpec {
        classifier: a.classifier,
        params,
        taxonomy: taxonomy.clone(),
        batch: a.batch,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let classifying = Arc::new(
        runtime
            .block_on(Classifying::load(spec, &grading))
            .context("loading the classifier")?,
    );
    let c = classifying.classifier();
    println!(
        "classifier {} (sha256 {}), taxonomy {} ({} labels, sha256 {})",
        c.id,
        &c.sha256[..12],
        taxonomy.name,
        taxonomy.labels.len(),
        &taxonomy.sha256[..12]
    );
    let mut predicted: HashMap<String, Option<String>> = HashMap::new();
    for run in &runs {
        let started = std::time::Instant::now();
        let report = runtime
            .block_on(classifying.classify_run(run))
            .with_context(|| format!("classifying {}", run.display()))?;
        println!(
            "{}: {} queries in {:.2} s",
            run.display(),
            report.records,
            started.elapsed().as_secs_f64()
        );
        for (code, n) in &report.per_label {
            let title = taxonomy
                .index(code)
                .map_or("", |i| taxonomy.labels[i].title.as_str());
            println!("    {code:<12} {n:>8}  {title}");
        }
        println!("    {:<12} {:>8}", "unlabelled", report.unlabelled);
        if report.failed > 0 {
            println!(
                "    {:<12} {:>8}  first: {}",
                "failed",
                report.failed,
                report.first_error.as_deref().unwrap_or("")
            );
        }
        if report.judge_asked + report.judge_cached > 0 {
            println!(
                "    judge: {} asked, {} from the cache",
                report.judge_asked, report.judge_cached
            );
        }
        if truth.is_some() {
            // Labels only: the figures' read keeps them and skips the texts.
            RunDir::new(run).for_each_record_with(
                ipw_core::classify::apply::STREAM_BATCH,
                ipw_core::records::Detail::Figures,
                |records| {
                    for r in records {
                        predicted
                            .entry(r.query_id)
                            .or_insert_with(|| r.domain.and_then(|d| d.label));
                    }
                },
            )?;
        }
    }
    if let (Some(truth), Some(path)) = (&truth, &a.against) {
        print_agreement(&agreement(truth, &predicted, &taxonomy), path);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_agreement(a: &Agreement, path: &std::path::Path) {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    println!(
        "agreement with {}: {} queries compared ({} not in the runs), accuracy {}",
        path.display(),
        a.compared,
        a.missing,
        pct(a.accuracy)
    );
    println!(
        "    {:<12} {:>8} {:>10} {:>8}",
        "label", "support", "precision", "recall"
    );
    for l in &a.per_label {
        println!(
            "    {:<12} {:>8} {:>10} {:>8}",
            l.label,
            l.support,
            pct(l.precision),
            pct(l.recall)
        );
    }
    println!("    confusion (rows: by hand; columns: classifier, in the order above):");
    for (l, row) in a.per_label.iter().zip(&a.matrix) {
        let cells: Vec<String> = row.iter().map(|n| format!("{n:>4}")).collect();
        println!("    {:<12} {}", l.label, cells.join(""));
    }
}
