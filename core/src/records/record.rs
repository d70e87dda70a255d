//! The per-query record: one JSON line in `records.jsonl`, everything measured about a query.

use super::{DomainRecord, GradeRecord, QueryEnergy};
use serde::{Deserialize, Serialize};

/// Version of the record format; every line carries it. Readers accept every version up to
/// this one (fields added later are optional), and refuse a newer one rather than guess.
pub const RECORD_SCHEMA: u32 = 1;

/// Where token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenSource {
    /// Counted by the engine that generated them (embedded llama.cpp, Ollama eval counts).
    Engine,
    /// The server's `usage` in the stream.
    ServerUsage,
    /// Re-tokenized with the server's tokenizer endpoint (estimated: chat template not counted).
    Tokenizer,
    /// Output: streamed content chunks; input: characters / 4 (estimated).
    Heuristic,
}

impl TokenSource {
    /// Whether counts from this source are estimates.
    pub fn is_estimate(self) -> bool {
        matches!(self, TokenSource::Tokenizer | TokenSource::Heuristic)
    }
}

/// A query's `[start, end]` on the run's monotonic clock (seconds since the run clock started).
/// Energy attribution joins these windows with sampler readings on the same clock.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// When the request was issued.
    pub start_s: f64,
    /// When the last byte of the response arrived.
    pub end_s: f64,
}

/// Why a query has no response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryError {
    /// Category, e.g. `timeout`, `http_status`, `malformed_stream`.
    pub kind: String,
    /// Detail for humans.
    pub message: String,
}

/// Everything measured about one query.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Record format version ([`RECORD_SCHEMA`]).
    pub schema: u32,
    /// `<dataset>/<row id>`, unique within a run.
    pub query_id: String,
    /// Position of the query in the run's plan.
    pub index: usize,
    /// The session (manifest `sessions` index) that measured it.
    #[serde(default)]
    pub session: usize,
    /// Dataset label.
    pub dataset: String,
    /// Subject, if known.
    pub subject: Option<String>,
    /// Category of the subject, if known.
    pub category: Option<String>,
    /// sha256 of the prompt.
    pub prompt_hash: String,
    /// The prompt sent (user message).
    pub prompt: String,
    /// Reference answers, for graders.
    pub answers: Vec<String>,
    /// Multiple-choice options, for graders.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Model name from the experiment.
    pub model: String,
    /// `embedded`, `openai` or `ollama`.
    pub backend: String,
    /// Response text; `None` when the query failed.
    pub response: Option<String>,
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Generated tokens.
    pub output_tokens: Option<u64>,
    /// True when token counts are estimates (see `token_source`).
    pub tokens_estimated: bool,
    /// Where token counts came from.
    pub token_source: Option<TokenSource>,
    /// Prompt tokens the server served from its prompt cache (when it says): a record with
    /// some was cheaper than a cold one, and the summary counts such records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u64>,
    /// What the query cost in US dollars, when the source says (an imported table, a billed
    /// API); routing prefers it to the model's prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Seconds from request to first generated token.
    pub ttft_s: Option<f64>,
    /// Seconds from request to last byte (the window length).
    pub latency_s: f64,
    /// Generated tokens after the first, per second of decode time.
    pub decode_tps: Option<f64>,
    /// `stop`, `length`, ...
    pub finish_reason: Option<String>,
    /// HTTP attempts (1 = no retry).
    pub attempts: u32,
    /// Wall-clock time the query started (RFC 3339, UTC).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The query's window on the run clock.
    pub window: Window,
    /// Set when the query failed.
    pub error: Option<QueryError>,
    /// The grade; `null` when ungraded or the query failed.
    #[serde(default)]
    pub grade: Option<GradeRecord>,
    /// Earlier grades, oldest first, kept when `ipw grade` re-grades the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grade_history: Vec<GradeRecord>,
    /// The domain a classifier placed the query in (`ipw classify`); absent when never
    /// classified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainRecord>,
    /// Earlier domains, oldest first, kept when the run is classified again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domain_history: Vec<DomainRecord>,
    /// Energy attributed to the query; `null` without samplers.
    #[serde(default)]
    pub energy: Option<QueryEnergy>,
    /// CPU the harness (ipw itself) spent during the window; absent in records written
    /// before ipw accounted for itself, and in imported ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<HarnessCpu>,
}

/// CPU time during a query's window: how much of it was the instrument (see the README's
/// "Self-accounting"). With `run.concurrency` > 1 windows overlap and so do these figures,
/// like the windows' energy before it is split.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct HarnessCpu {
    /// CPU seconds ipw itself spent in the window: the process's CPU less the in-process
    /// engine's (`engine_cpu_s`). For a remote model, all of the process's.
    pub cpu_s: f64,
    /// CPU seconds of the whole ipw process in the window (engine included).
    pub process_cpu_s: f64,
    /// CPU seconds of the in-process engine's threads (embedded llama.cpp: its generation
    /// threads and their OpenMP workers); `null` for remote models.
    #[serde(default)]
    pub engine_cpu_s: Option<f64>,
    /// Busy CPU seconds of the whole machine in the window (every process, all cores, from
    /// `/proc/stat` at 10 ms resolution); `null` where it cannot be read.
    #[serde(default)]
    pub machine_cpu_s: Option<f64>,
    /// CPU seconds of the model's server (its whole process group) in the window, when ipw
    /// started the server (`[models.server]`): with `cpu_s`, the client's and the server's
    /// CPU of a query on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
}

impl Record {
    /// The query's latency when one was recorded: `None` for 0, which is what `ipw import`
    /// writes for a table without latencies (a query that ran always takes some time), so
    /// that a missing latency prints as `-`, not as `0 s`, and no median counts it.
    pub fn measured_latency_s(&self) -> Option<f64> {
        (self.latency_s > 0.0).then_some(self.latency_s)
    }
}

/// Decode throughput: tokens after the first over the time after the first.
pub fn decode_tps(output_tokens: Option<u64>, ttft_s: Option<f64>, latency_s: f64) -> Option<f64> {
    let (n, ttft) = (output_tokens?, ttft_s?);
    let decode = latency_s - ttft;
    (n > 1 && decode > 0.0).then(|| (n - 1) as f64 / decode)
}
