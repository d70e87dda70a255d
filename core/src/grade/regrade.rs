//! `ipw grade`: score a finished run's saved responses again with another grader (or other
//! params) without running the model. Each record's previous grade moves to its
//! `grade_history` (the new grade sits beside the old ones), records are rewritten atomically
//! and the summary is refreshed. The run's own `[grading]` limits and judge model apply.

use super::setup::{connect_judge, load_grader, DatasetGraders};
use super::GraderHost;
use crate::analysis::{summarize, Summary};
use crate::config::GradingConfig;
use crate::records::{RunDir, StoreError};
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
    Grader(#[from] super::GraderError),
    /// The judge model could not be set up.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendSetupError),
}

/// What to grade with.
#[derive(Debug, Clone)]
pub struct RegradeSpec {
    /// A built-in grader name or a `.wasm` path (relative to the current directory).
    pub grader: String,
    /// Parameters for the grader (a JSON object); `None` = `{}`.
    pub params: Option<serde_json::Value>,
}

/// Re-grade every record of the run (one model) in `dir`; returns the refreshed summary.
pub async fn regrade_run(dir: &Path, spec: &RegradeSpec) -> Result<Summary, RegradeError> {
    let run = RunDir::new(dir);
    let lock = run.lock()?;
    let manifest = run.read_manifest()?;
    let mut records = run.read_records()?.records;
    let seed = manifest.seed();
    let grading: GradingConfig =
        manifest
            .experiment_section("grading")
            .map_err(|message| RegradeError::Manifest {
                path: run.manifest_path(),
                message,
            })?;

    // The judge is only connected when the grader might ask it (a built-in `judge` or any
    // third-party component: the host cannot know whether it imports `judge` until it calls).
    let may_judge = spec.grader == "judge" || super::builtin::wasm(&spec.grader).is_none();
    let judge = if may_judge {
        connect_judge(&grading).await?
    } else {
        None
    };
    let mut labels: Vec<String> = records.iter().map(|r| r.dataset.clone()).collect();
    labels.sort();
    labels.dedup();
    let (name, params, limits) = (spec.grader.clone(), spec.params.clone(), grading.limits());
    let graders = tokio::task::spawn_blocking(move || {
        let host = GraderHost::new(GraderHost::default_cache_dir())?;
        let grader = load_grader(&host, &name, Path::new("."), limits, judge)?;
        Ok::<_, super::GraderError>(DatasetGraders::uniform(labels, grader, &params))
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
                let graders = &graders;
                scope.spawn(move || {
                    for r in part.iter_mut().filter(|r| r.response.is_some()) {
                        if let Some(old) = r.grade.take() {
                            r.grade_history.push(old);
                        }
                        graders.grade_record(r);
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
