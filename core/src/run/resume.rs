//! Opening a run directory: a new run, or `--resume` of an earlier one. A resume continues only
//! the run it was started as: the same queries, model file, generation and model settings,
//! samplers, energy settings and graders; anything else is refused with every differing field
//! named ([`crate::identity`]), because mixing settings inside one run makes its figures
//! describe nothing.

use super::RunError;
use crate::config::{LoadedExperiment, ModelConfig};
use crate::dataset::{hex, DatasetInfo, Query};
use crate::grade::DatasetGraders;
use crate::host::HostInfo;
use crate::identity::{differences, plan_hash, recorded_settings, settings};
use crate::records::{
    Manifest, ModelFile, Record, RecordsWriter, RunDir, RunLock, MANIFEST_SCHEMA,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A run directory ready for a session.
pub(super) struct OpenedRun {
    pub lock: RunLock,
    pub writer: RecordsWriter,
    pub manifest: Manifest,
    /// Records already on disk (resume).
    pub existing: Vec<Record>,
    /// Unreadable lines moved aside at this open.
    pub rejected_lines: usize,
}

/// Open (or create) the run directory of `model`, locked for this process.
#[allow(clippy::too_many_arguments)]
pub(super) fn open_run(
    loaded: &LoadedExperiment,
    model: &ModelConfig,
    queries: &[Query],
    datasets: &[DatasetInfo],
    run: &RunDir,
    resume: bool,
    retry_failed: bool,
    graders: &DatasetGraders,
    model_file: Option<ModelFile>,
) -> Result<OpenedRun, RunError> {
    let lock = run.lock()?;
    let plan_sha256 = plan_hash(queries.iter().map(|q| (q.id.as_str(), q.prompt_hash())));
    let resume_err = |message: String| RunError::Resume {
        dir: run.path().to_path_buf(),
        message,
    };
    if resume && run.exists() {
        let manifest = run.read_manifest()?;
        if manifest.plan_sha256 != plan_sha256 {
            return Err(resume_err(
                "the experiment now selects different queries than when the run started; \
                 resume with the same experiment file and seed"
                    .into(),
            ));
        }
        if manifest.model_file.as_ref().map(|f| &f.sha256) != model_file.as_ref().map(|f| &f.sha256)
        {
            return Err(resume_err(format!(
                "the model file of `{}` changed since the run started",
                model.name
            )));
        }
        let was = recorded_settings(&manifest);
        let now = settings(
            &experiment_json(loaded),
            &model_json(model),
            &graders.describe(),
        );
        let changed = differences(&was, &now);
        if !changed.is_empty() {
            return Err(resume_err(format!(
                "settings changed since the run started (resume with the experiment it was \
                 started with, or start a new run):\n  {}",
                changed.join("\n  ")
            )));
        }
        let retried = if retry_failed {
            run.set_aside_failed(&lock)?
        } else {
            0
        };
        if retried > 0 {
            tracing::info!(
                "retrying {retried} failed queries (their records are kept in {})",
                run.retried_path().display()
            );
        }
        let (writer, existing, rejected) = run.resume_records(&lock)?;
        return Ok(OpenedRun {
            lock,
            writer,
            manifest,
            existing,
            rejected_lines: rejected.len(),
        });
    }
    if run.records_path().exists() {
        return Err(RunError::Io {
            path: run.records_path(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "records already exist here; use --resume to continue this run, or another --out",
            ),
        });
    }
    let writer = run.create_records(&lock)?;
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        ipw_version: crate::IPW_VERSION.into(),
        git_commit: crate::GIT_COMMIT.into(),
        experiment_file: loaded.file.display().to_string(),
        experiment_sha256: hex(&Sha256::digest(loaded.source.as_bytes())),
        experiment: experiment_json(loaded),
        model: serde_json::from_value(model_json(model)).expect("a model config is a record"),
        model_file,
        backend: Value::Null,
        datasets: datasets.to_vec(),
        planned: queries.len(),
        plan_sha256,
        host: HostInfo::detect(),
        started_at: chrono::Utc::now(),
        ended_at: None,
        status: "running".into(),
        error: None,
        sessions: Vec::new(),
        shard: None,
        merged_from: Vec::new(),
    };
    Ok(OpenedRun {
        lock,
        writer,
        manifest,
        existing: Vec::new(),
        rejected_lines: 0,
    })
}

fn experiment_json(loaded: &LoadedExperiment) -> Value {
    serde_json::to_value(&loaded.experiment).expect("experiment serialises")
}

fn model_json(model: &ModelConfig) -> Value {
    serde_json::to_value(model).expect("model config serialises")
}
