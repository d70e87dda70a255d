//! `manifest.json`: what was run, with what, where and when. Written when a run starts
//! (status `running`) and rewritten as soon as anything attribution needs is known, and when a
//! session ends, so an interrupted run still says what it was.

use super::GraderInfo;
use ipw_sampler_sdk::Channel;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// This run's model, as configured.
    pub model: RecordedModel,
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
    /// The shard of a split experiment this run measured (`ipw profile --shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
    /// The shard runs `ipw merge` joined into this one, in session order; their own manifests
    /// are kept beside it in `shards/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
}

impl Manifest {
    /// What the run measured on, for grouping runs by hardware: the model's declared
    /// `meta.accelerator`, else the accelerators the host showed, else its CPU model.
    pub fn accelerator(&self) -> String {
        if let Some(a) = self
            .model
            .settings
            .get("meta")
            .and_then(|m| m.get("accelerator"))
            .and_then(|a| a.as_str())
        {
            return a.to_string();
        }
        self.host.accelerator()
    }

    /// The experiment's seed as recorded (0 when absent).
    pub fn seed(&self) -> u64 {
        self.experiment
            .get("seed")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
    }

    /// Section `key` of the recorded experiment read through today's type: its default when
    /// absent; an error naming the section when it does not read.
    pub fn experiment_section<T: serde::de::DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<T, String> {
        match self.experiment.get(key) {
            Some(v) if !v.is_null() => {
                serde_json::from_value(v.clone()).map_err(|e| format!("experiment.{key}: {e}"))
            }
            _ => Ok(T::default()),
        }
    }
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
    /// Bytes of a cut-off last line removed at resume (ipw before 0.2 truncated; now such a
    /// line is moved aside and counted in `rejected_lines`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
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
    pub baseline: Option<Baseline>,
    /// Samplers that recorded during the session.
    #[serde(default)]
    pub samplers: Vec<SamplerInfo>,
    /// Graders that scored this session's records (component hashes, params).
    #[serde(default)]
    pub graders: Vec<GraderInfo>,
    /// Record lines found unreadable at the start of this session and moved aside to
    /// `records.rejected.jsonl` (their queries are measured again).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected_lines: usize,
    /// Other processes' CPU load measured for half a second before the session started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight_load: Option<OtherLoad>,
    /// The run clock and the wall clock read together at the session's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<super::clock::ClockOrigin>,
    /// Waits for the measured devices to settle (`[energy.settle]`): before the baseline and
    /// before the first measured query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settle: Vec<SettleRecord>,
    /// The model server ipw started for this session (`[models.server]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
}

/// One wait for settled hardware.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SettleRecord {
    /// `baseline` or `queries`: what it came before.
    pub before: String,
    /// Seconds waited.
    pub waited_s: f64,
    /// Whether the devices settled (false: the maximum wait ran out, or no readings).
    pub settled: bool,
    /// Mean power per watched channel over the last window, watts.
    pub power_w: std::collections::BTreeMap<String, f64>,
    /// Last temperature per watched temperature channel, °C.
    pub temperature_c: std::collections::BTreeMap<String, f64>,
}

/// A model server ipw started, as the manifest keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerInfo {
    /// `llama-server`, `vllm`, `sglang`, `ollama` or `command`.
    pub kind: String,
    /// The exact command line, values of secret-looking flags (`--api-key`) as `***`.
    pub command: Vec<String>,
    /// The environment ipw set: its pinned settings with their values, the experiment's
    /// variables by name only (`NAME=***`).
    pub env: Vec<String>,
    /// The measurement-safe settings ipw added for this kind of server.
    pub settings: Vec<String>,
    /// What the server says its version is (`--version`), when it says.
    pub version: Option<String>,
    /// Its process id (and process group).
    pub pid: u32,
    /// Where ipw sent the queries.
    pub base_url: String,
    /// Its output, in the run directory.
    pub log: String,
    /// Seconds from start until it answered a first token.
    pub ready_s: Option<f64>,
    /// Whether the idle baseline was taken with the server up and idle (it was, when the
    /// session has a baseline).
    pub idle_during_baseline: bool,
    /// CPU seconds of its process group over the session's queries.
    pub cpu_s: Option<f64>,
    /// How it ended: stopped by ipw or exited by itself, with the status.
    pub exit: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A model's settings as the manifest keeps them: the name and backend that analysis reads,
/// typed, and every other setting as written by the version of ipw that ran it (so a manifest
/// from a newer ipw with more model fields still reads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedModel {
    /// Label used in records and directory names.
    pub name: String,
    /// `embedded`, `openai` or `ollama`.
    #[serde(default = "embedded")]
    pub backend: String,
    /// The other settings (path, threads, base_url, ...).
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

fn embedded() -> String {
    "embedded".into()
}

/// What a loaded dataset is, for the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Dataset label.
    pub name: String,
    /// `builtin:gsm8k` or the file path.
    pub source: String,
    /// sha256 over the source bytes.
    pub sha256: String,
    /// Rows in the source (after subject filtering).
    pub rows: usize,
    /// Queries selected for the run.
    pub selected: usize,
    /// The files of a dataset read from several shards, in the order read (`sha256` above
    /// covers them all); empty for one file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<DatasetShard>,
}

/// One shard of a dataset, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetShard {
    /// The file.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// sha256 of its bytes.
    pub sha256: String,
}

/// The host a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    /// Hostname.
    pub hostname: Option<String>,
    /// CPU model name.
    pub cpu_model: Option<String>,
    /// Logical CPUs available to this process.
    pub logical_cores: usize,
    /// Physical cores (distinct core ids per package), if known.
    pub physical_cores: Option<usize>,
    /// Total memory in bytes.
    pub memory_bytes: Option<u64>,
    /// OS name and version.
    pub os: String,
    /// Kernel release.
    pub kernel: Option<String>,
    /// CPU architecture.
    pub arch: String,
    /// GPUs and other accelerators the host showed (model names), in device order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accelerators: Vec<String>,
}

impl HostInfo {
    /// The hardware a model ran on, as far as the host description says: its accelerators
    /// (`2x NVIDIA H100 80GB HBM3`), else the CPU model, else the architecture.
    pub fn accelerator(&self) -> String {
        let Some(first) = self.accelerators.first() else {
            return self.cpu_model.clone().unwrap_or_else(|| self.arch.clone());
        };
        if self.accelerators.iter().all(|a| a == first) && self.accelerators.len() > 1 {
            format!("{}x {first}", self.accelerators.len())
        } else {
            self.accelerators.join(" + ")
        }
    }
}

/// What the manifest keeps about a sampler in a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplerInfo {
    /// Declared name.
    pub name: String,
    /// Library file.
    pub path: PathBuf,
    /// sha256 of the library file.
    pub sha256: String,
    /// SDK version the plugin was built with.
    pub sdk_version: String,
    /// Configured rate.
    pub rate_hz: f64,
    /// Actual background interval (never faster than the channels update).
    pub interval_s: f64,
    /// Whether window edges were read on demand.
    pub edge_reads: bool,
    /// The channels it described.
    pub channels: Vec<Channel>,
    /// What the sampling thread did (after the session).
    pub stats: Option<RecorderStats>,
}

/// The idle-baseline interval of a session, on the run clock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    /// Start.
    pub from_s: f64,
    /// End.
    pub to_s: f64,
    /// Cores other processes kept busy during the baseline: above a quarter of a core it was
    /// not idle, and net energy is understated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_cpu_cores: Option<f64>,
}

/// CPU that other processes used over a span (see `ipw_core::load`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OtherLoad {
    /// Cores busy with other processes, on average.
    pub cores: f64,
    /// The busiest other processes (`name (pid N): C cores`), most first, when measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<String>,
}

/// What a sampling thread did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecorderStats {
    /// Successful reads.
    pub reads: u64,
    /// Failed reads.
    pub errors: u64,
    /// Readings recorded.
    pub readings: u64,
    /// CPU seconds the thread used.
    pub cpu_s: f64,
    /// The sampler's `read` never returned at the end: its thread was left behind, and no
    /// reading after it blocked exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
}

/// How a plan was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMethod {
    /// Whole model x dataset cells.
    Cells,
    /// Single (model, query) units.
    Queries,
}

/// What a shard's manifest records about the split it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    /// This shard's index, from 0.
    pub index: usize,
    /// Shards in the split.
    pub count: usize,
    /// How the plan was split.
    pub method: SplitMethod,
    /// sha256 of the experiment's full plan file ([`PLAN_FILE`]): every shard of one experiment
    /// has the same.
    pub plan_sha256: String,
    /// sha256 of the experiment file's text this shard ran.
    pub experiment_sha256: String,
    /// The host that measured this shard's directory.
    pub host: String,
    /// This shard's expected work, tokens (prompt + max output), over all its models.
    pub work_tokens: f64,
    /// Queries of this run that another directory of the same shard (another host, after a
    /// resubmission) had already measured, so this one did not: `dir -> count`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub measured_elsewhere: std::collections::BTreeMap<String, usize>,
}

/// One shard run that `ipw merge` joined into a merged run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedShard {
    /// The shard's run directory, relative to the experiment directory.
    pub dir: String,
    /// Shard index, from 0.
    pub index: usize,
    /// Shards in the split.
    pub count: usize,
    /// The host that measured it.
    pub host: String,
    /// Its status when merged (`completed`, `interrupted`, ...).
    pub status: String,
    /// Records taken from it.
    pub records: usize,
    /// Its sessions in the merged manifest: `sessions[first_session..first_session + sessions]`.
    pub first_session: usize,
    /// How many sessions it had.
    pub sessions: usize,
}
