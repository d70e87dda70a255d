//! `ipw bench classify`: what labelling costs. For each table-driven built-in classifier
//! (`keywords`, `mapping`): queries per second on one thread (one core) through the sandbox,
//! batched as `ipw classify` batches them, over the built-in MMLU and GSM8K questions (real
//! prompts, with their choices, and subjects).

use super::apply::{load_classifier, DEFAULT_BATCH};
use super::taxonomy::Taxonomy;
use super::wasm::ClassifyQuery;
use crate::config::BuiltinDataset;
use crate::sandbox::{Host, Limits, SandboxError};
use std::time::{Duration, Instant};

/// Figures for one classifier.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifierBench {
    /// Built-in name.
    pub classifier: String,
    /// Queries labelled per second on one thread.
    pub queries_per_s: f64,
    /// Share of the queries given a label (the rest unlabelled).
    pub labelled_share: f64,
    /// Queries timed.
    pub queries: usize,
}

/// The built-in datasets' questions as a classifier sees them (MMLU with its choices).
pub fn builtin_queries() -> Vec<ClassifyQuery> {
    let mut out = Vec::new();
    for (which, dataset) in [
        (BuiltinDataset::Mmlu, "mmlu"),
        (BuiltinDataset::Gsm8k, "gsm8k"),
    ] {
        for row in crate::dataset::builtin::load(which).rows {
            let mut prompt = row.question.clone();
            for (letter, choice) in ('A'..='Z').zip(&row.choices) {
                prompt.push_str(&format!("\n{letter}. {choice}"));
            }
            out.push(ClassifyQuery {
                id: format!("{dataset}/{}", row.id),
                prompt,
                dataset: dataset.into(),
                subject: row.subject,
                category: row.category,
            });
        }
    }
    out
}

/// Time `keywords` and `mapping` for about `seconds` each on one thread, into the SOC taxonomy.
pub fn bench_builtin_classifiers(seconds: f64) -> Result<Vec<ClassifierBench>, SandboxError> {
    let host = Host::new(None)?;
    let taxonomy = Taxonomy::default_taxonomy();
    let queries = builtin_queries();
    let mut out = Vec::new();
    for name in ["keywords", "mapping"] {
        let c = load_classifier(&host, name, Limits::default(), None)?;
        let budget = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let (mut done, mut labelled) = (0usize, 0usize);
        for batch in queries.chunks(DEFAULT_BATCH).cycle() {
            let results = c.classify(batch, &taxonomy, "{}");
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(SandboxError::Call(format!("{name}: {e}")));
            }
            labelled += results
                .iter()
                .filter(|r| r.as_ref().is_ok_and(|v| v.label.is_some()))
                .count();
            done += batch.len();
            if started.elapsed() >= budget && done >= queries.len().min(10_000) {
                break;
            }
        }
        out.push(ClassifierBench {
            classifier: name.into(),
            queries_per_s: done as f64 / started.elapsed().as_secs_f64(),
            labelled_share: labelled as f64 / done as f64,
            queries: done,
        });
    }
    Ok(out)
}
