//! `manifest.json`: what was run, with what, where and when. Written when a run starts
//! (status `running`) and rewritten when a session ends, so an interrupted run still says what
//! it was.

use crate::config::ModelConfig;
use crate::dataset::DatasetInfo;
use crate::host::HostInfo;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the manifest format.
pub const MANIFEST_SCHEMA: u32 = 1;

/// The manifest of one run (one model).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub schema: u32,
    /// ipw version.
    pub ipw_version: String,
    /// Git commit ipw was built from.
    pub git_commit: String,
    /// The experiment file as given.
    pub experiment_file: String,
    /// sha256 of the experiment file's text.
    pub experiment_sha256: String,
    /// The resolved experiment (paths expanded; API keys appear only as variable names).
    pub experiment: serde_json::Value,
    /// This run's model.
    pub model: ModelConfig,
    /// The model file, for in-process backends.
    pub model_file: Option<ModelFile>,
    /// What the backend reported about itself (load time, URL, server model id).
    pub backend: serde_json::Value,
    /// Datasets and how many queries each contributed.
    pub datasets: Vec<DatasetInfo>,
    /// Queries in the plan.
    pub planned: usize,
    /// sha256 over the plan's query ids and prompt hashes, in order; `--resume` checks it.
    pub plan_sha256: String,
    /// The machine.
    pub host: HostInfo,
    /// When the run first started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// When the last session ended.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `running`, `completed`, `interrupted` or `failed`.
    pub status: String,
    /// Why the last session failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One entry per session (the first run and each `--resume`).
    pub sessions: Vec<Session>,
}

/// A model file and its hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelFile {
    /// Path.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// sha256 of the contents.
    pub sha256: String,
}

/// One invocation of the profiler on a run, with the profiler's own overhead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Start time.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// End time, once ended.
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Records written in this session.
    pub recorded: usize,
    /// Complete records found on disk at the start (resume).
    pub resumed_from: usize,
    /// Bytes of a cut-off last line removed at resume.
    pub truncated_bytes: u64,
    /// Seconds loading the model (in-process backends).
    pub model_load_s: Option<f64>,
    /// Seconds from process start to the first request (model load included, see `model_load_s`).
    pub startup_to_first_request_s: Option<f64>,
    /// The profiler's own CPU seconds (user + system) during this session's queries. For an
    /// in-process backend this includes inference.
    pub cpu_s: Option<f64>,
    /// `cpu_s` per recorded query, in milliseconds.
    pub cpu_per_query_ms: Option<f64>,
    /// Peak resident memory of the profiler process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Idle-baseline interval measured before the queries.
    #[serde(default)]
    pub baseline: Option<crate::power::Baseline>,
    /// Samplers that recorded during the session.
    #[serde(default)]
    pub samplers: Vec<crate::power::SamplerInfo>,
    /// Graders that scored this session's records (component hashes, params).
    #[serde(default)]
    pub graders: Vec<crate::grade::GraderInfo>,
}

impl Manifest {
    /// Write atomically (temp file + rename), so a crash never leaves half a manifest.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_json_atomic(path, self)
    }

    /// Read a manifest.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }
}

/// Write pretty JSON to `path` via a temporary file and a rename.
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = path.with_extension("json.part");
    let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
