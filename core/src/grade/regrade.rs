//! `ipw grade`: score a finished run's saved responses again with another grader (or other
//! params) without running the model. Each record's previous grade moves to its
//! `grade_history` (the new grade sits beside the old ones), records are rewritten atomically
//! and the summary is refreshed. The run's own `[grading]` limits and judge model apply, with
//! the fields of a `--judge-config` file over them.
//!
//! With a reference run (`--against`, which the `pairwise` grader needs), each record is graded
//! against the reference model's response to the same query, joined by query id: the response
//! is the query's only answer, a query the reference did not answer is left unscored, and the
//! grades' params name the reference run.

use super::reference::{Reference, ReferenceError};
use super::setup::{connect_judge, load_grader, DatasetGraders};
use crate::analysis::{summarize, Summary};
use crate::config::GradingConfig;
use crate::records::{RunDir, StoreError};
use crate::sandbox::Host;
use std::path::{Path, PathBuf};

/// Why a run could not be re-graded.
#[derive(Debug, thiserror::Error)]
pub enum RegradeError {
    /// Reading, writing or locking the run directory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The manifest's `[grading]` section cannot be read back.
    #[error("{}: experiment.grading: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The grader could not be loaded.
    #[error(transparent)]
    Grader(#[from] crate::sandbox::SandboxError),
    /// The judge model could not be set up.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendSetupError),
    /// The reference run cannot be read, or does not answer the same prompts.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The grader and options do not go together.
    #[error("{0}")]
    Input(String),
}

/// What to grade with.
#[derive(Debug, Clone, Default)]
pub struct RegradeSpec {
    /// A built-in grader name or a `.wasm` path (relative to the current directory).
    pub grader: String,
    /// Parameters for the grader (a JSON object); `None` = `{}`.
    pub params: Option<serde_json::Value>,
    /// The reference run whose responses each record is graded against (required by
    /// `pairwise`).
    pub against: Option<PathBuf>,
    /// `[grading]` fields that replace the run's own (a `--judge-config` file: the judge model
    /// to ask when the manifest names none).
    pub grading: Option<GradingConfig>,
}

/// Re-grade every record of the run (one model) in `dir`; returns the refreshed summary.
pub async fn regrade_run(dir: &Path, spec: &RegradeSpec) -> Result<Summary, RegradeError> {
    let run = RunDir::new(dir);
    let lock = run.lock()?;
    let manifest = run.read_manifest()?;
    let mut records = run.read_records()?.records;
    let seed = manifest.seed();
    let mut grading: GradingConfig =
        manifest
            .experiment_section("grading")
            .map_err(|message| RegradeError::Manifest {
                path: run.manifest_path(),
                message,
            })?;
    if let Some(over) = &spec.grading {
        grading.overlay(over.clone());
    }
    if spec.grader == "pairwise" && spec.against.is_none() {
        return Err(RegradeError::Input(
            "the pairwise grader compares each response with a reference model's: name the reference run with --against REFRUN".into(),
        ));
    }
    let reference = match &spec.against {
        Some(path) => {
            let reference = Reference::load(path)?;
            reference.check_prompts(dir, &records)?;
            Some(reference)
        }
        None => None,
    };
    let params = match &reference {
        Some(reference) => Some(reference.params(spec.params.clone())),
        None => spec.params.clone(),
    };

    // The judge is only connected when the grader might ask it (a built-in `judge` or
    // `pairwise`, or any third-party component: the host cannot know whether it imports
    // `judge` until it calls).
    let may_judge = matches!(spec.grader.as_str(), "judge" | "pairwise")
        || super::builtin::wasm(&spec.grader).is_none();
    let judge = if may_judge {
        connect_judge(&grading).await?
    } else {
        None
    };
    if spec.grader == "pairwise" && judge.is_none() {
        return Err(RegradeError::Input(format!(
            "{}: the run's manifest names no judge model ([grading.judge]); name one with --judge-config FILE.toml",
            dir.display()
        )));
    }
    let mut labels: Vec<String> = records.iter().map(|r| r.dataset.clone()).collect();
    labels.sort();
    labels.dedup();
    let (name, limits) = (spec.grader.clone(), grading.limits());
    let graders = tokio::task::spawn_blocking(move || {
        let host = Host::new(Host::default_cache_dir())?;
        let grader = load_grader(&host, &name, Path::new("."), limits, judge)?;
        Ok::<_, crate::sandbox::SandboxError>(DatasetGraders::uniform(labels, grader, &params))
    })
    .await
    .expect("loading a grader does not panic")?;
    // Grade on every core (a judge's own concurrency limit still applies inside `judge_fn`).
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .max(grading.judge_concurrency.unwrap_or(1));
    records = tokio::task::spawn_blocking(move || {
        let per_worker = records.len().div_ceil(workers).max(1);
        std::thread::scope(|scope| {
            for part in records.chunks_mut(per_worker) {
                let (graders, reference) = (&graders, &reference);
                scope.spawn(move || {
                    for r in part.iter_mut().filter(|r| r.response.is_some()) {
                        if let Some(old) = r.grade.take() {
                            r.grade_history.push(old);
                        }
                        match reference {
                            Some(reference) => {
                                let answer = reference.response_for(r);
                                graders.grade_against(r, answer);
                            }
                            None => graders.grade_record(r),
                        }
                    }
                });
            }
        });
        records
    })
    .await
    .expect("grading does not panic: traps are errors");
    run.rewrite_records(&lock, &records)?;
    let summary = summarize(
        &manifest.model.name,
        &manifest.model.backend,
        manifest.planned,
        &records,
        seed,
    );
    run.write_summary(&lock, &summary)?;
    Ok(summary)
}
