//! Opening a run directory: a new run, or `--resume` of an earlier one. A resume continues only
//! the run it was started as: the same queries, model file, generation and model settings,
//! samplers, energy settings and graders; anything else is refused with every differing field
//! named, because mixing settings inside one run makes its figures describe nothing.

use super::plan::plan_hash;
use super::RunError;
use crate::config::{LoadedExperiment, ModelConfig};
use crate::dataset::{hex, DatasetInfo, Query};
use crate::grade::DatasetGraders;
use crate::host::HostInfo;
use crate::records::{
    GraderInfo, Manifest, ModelFile, Record, RecordsWriter, RunDir, RunLock, MANIFEST_SCHEMA,
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

/// What must not change inside one run, as recorded in its manifest.
pub(crate) fn recorded_settings(m: &Manifest) -> Value {
    let model = serde_json::to_value(&m.model).expect("recorded model serialises");
    let graders: Vec<GraderInfo> = m
        .sessions
        .iter()
        .rev()
        .find(|s| !s.graders.is_empty())
        .map(|s| s.graders.clone())
        .unwrap_or_default();
    settings(&with_current_defaults(&m.experiment), &model, &graders)
}

/// The recorded experiment with sections read through today's types, so a setting added since
/// the run started (at its default) is not mistaken for a change.
fn with_current_defaults(experiment: &Value) -> Value {
    let mut e = experiment.clone();
    if let Some(energy) = e.get("energy").filter(|v| !v.is_null()) {
        if let Ok(parsed) = serde_json::from_value::<crate::config::EnergyConfig>(energy.clone()) {
            e["energy"] = serde_json::to_value(parsed).expect("energy config serialises");
        }
    }
    e
}

/// The settings that define what a run measures, as one JSON object whose paths name them.
fn settings(experiment: &Value, model: &Value, graders: &[GraderInfo]) -> Value {
    let mut model = model.clone();
    // The file's identity is its hash (checked separately): moving it is not a change.
    if let Some(m) = model.as_object_mut() {
        m.remove("path");
        // Facts about the model (price, size) are not part of what was measured.
        m.remove("meta");
    }
    let field = |k: &str| experiment.get(k).cloned().unwrap_or(Value::Null);
    let concurrency = experiment
        .get("run")
        .and_then(|r| r.get("concurrency"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = serde_json::json!({
        "seed": field("seed"),
        "run": { "concurrency": concurrency },
        "generation": field("generation"),
        "model": model,
        "samplers": field("samplers"),
        "energy": field("energy"),
        "grading": field("grading"),
    });
    // Runs made before graders were recorded in the manifest cannot be compared on them.
    if !graders.is_empty() {
        out["graders"] = serde_json::to_value(graders).expect("grader info serialises");
    }
    out
}

/// Every path where `now` differs from `was`, as `path: old -> new`. A field the old manifest
/// does not have is a difference only when the new value is not null (an ipw upgrade that adds a
/// setting with no value must not block a resume).
pub(crate) fn differences(was: &Value, now: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", Some(was), Some(now), &mut out);
    out
}

fn diff(path: &str, was: Option<&Value>, now: Option<&Value>, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (was, now) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff(&join(k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), Some(x), Some(y), out);
            }
        }
        (None, Some(Value::Null)) | (Some(Value::Null), None) | (None, None) => {}
        (a, b) if a == b => {}
        (a, b) => {
            let show = |v: Option<&Value>| v.map_or("(not recorded)".to_string(), Value::to_string);
            out.push(format!("{path}: {} -> {}", show(a), show(b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::differences;
    use serde_json::json;

    #[test]
    fn differences_name_every_changed_leaf_and_nothing_else() {
        let was = json!({"generation": {"max_tokens": 128, "temperature": 0.0, "stop": ["a"]},
                         "samplers": [{"plugin": "rapl", "rate_hz": 20}], "grading": {}});
        let now = json!({"generation": {"max_tokens": 256, "temperature": 0.0, "stop": ["b"]},
                         "samplers": [{"plugin": "rapl", "rate_hz": 20}, {"plugin": "nvml"}],
                         "grading": {"fuel": null}});
        let d = differences(&was, &now);
        assert_eq!(
            d,
            vec![
                "generation.max_tokens: 128 -> 256",
                "generation.stop[0]: \"a\" -> \"b\"",
                "samplers: [{\"plugin\":\"rapl\",\"rate_hz\":20}] -> [{\"plugin\":\"rapl\",\"rate_hz\":20},{\"plugin\":\"nvml\"}]",
            ]
        );
        assert!(differences(&was, &was).is_empty());
        // A setting the old manifest never recorded, now set to a value, is a difference.
        let d = differences(
            &json!({"energy": {}}),
            &json!({"energy": {"split": "equal"}}),
        );
        assert_eq!(d, vec!["energy.split: (not recorded) -> \"equal\""]);
    }

    #[test]
    fn a_setting_added_since_the_run_started_is_not_a_change() {
        // Recorded by an ipw without `energy.overlap`; today's default fills it in.
        let was = json!({"energy": {"baseline_s": 10.0, "split": "tokens"}});
        let now = serde_json::to_value(crate::config::EnergyConfig::default()).unwrap();
        let d = differences(&super::with_current_defaults(&was)["energy"], &now);
        assert!(d.is_empty(), "{d:?}");
        assert!(
            !differences(&was["energy"], &now).is_empty(),
            "raw, it would differ"
        );
    }
}
