//! A record without its texts: what the study's figures read.
//!
//! Comparing or covering a million records needs their scores, energy, tokens, times and
//! labels, not their prompts, responses, grader explanations or per-channel energy. Reading
//! those into memory was most of the time and nearly all of the memory (3.9 GB for 1M
//! records); here they are checked to be present, as in a full read, and skipped.

use super::{
    DomainRecord, Flag, GradeRecord, HarnessCpu, PhaseEnergy, QueryEnergy, QueryError, Record,
};
use super::{TokenSource, Window};
use serde::de::IgnoredAny;
use serde::Deserialize;

/// How much of each record a read keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Every field.
    Full,
    /// Everything but the texts and hashes: `prompt`, `prompt_hash`, `answers`, `choices`,
    /// `response` and `finish_reason` are empty, the grade's `wasm_sha256`, `extracted` and
    /// `explanation` and `grade_history` are dropped, the domain keeps its label, classifier
    /// and taxonomy only (no `domain_history`), and energy has no `channels`. (A grade's
    /// `params` stay: they say what a pairwise grade was judged against.)
    Figures,
}

/// The fields of [`Record`] a figure can use; the texts are required but not kept.
#[derive(Deserialize)]
pub(super) struct Figures {
    schema: u32,
    query_id: String,
    index: usize,
    #[serde(default)]
    session: usize,
    dataset: String,
    subject: Option<String>,
    category: Option<String>,
    #[allow(dead_code)]
    prompt_hash: IgnoredAny,
    #[allow(dead_code)]
    prompt: IgnoredAny,
    #[allow(dead_code)]
    answers: IgnoredAny,
    model: String,
    backend: String,
    #[allow(dead_code)]
    #[serde(default)]
    response: IgnoredAny,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    tokens_estimated: bool,
    token_source: Option<TokenSource>,
    #[serde(default)]
    cached_prompt_tokens: Option<u64>,
    #[serde(default)]
    cost_usd: Option<f64>,
    ttft_s: Option<f64>,
    latency_s: f64,
    decode_tps: Option<f64>,
    attempts: u32,
    started_at: chrono::DateTime<chrono::Utc>,
    window: Window,
    error: Option<QueryError>,
    #[serde(default)]
    grade: Option<GradeFigures>,
    #[serde(default)]
    domain: Option<DomainFigures>,
    #[serde(default)]
    energy: Option<EnergyFigures>,
    #[serde(default)]
    harness: Option<HarnessCpu>,
}

#[derive(Deserialize)]
struct GradeFigures {
    grader: String,
    #[allow(dead_code)]
    wasm_sha256: IgnoredAny,
    score: Option<f64>,
    parsed: bool,
    error: Option<String>,
    #[serde(default)]
    params: Option<serde_json::Value>,
}

/// A domain's label and what gave it (figures per domain name the classifier and taxonomy).
#[derive(Deserialize)]
struct DomainFigures {
    label: Option<String>,
    classifier: String,
    taxonomy: String,
    taxonomy_sha256: String,
}

#[derive(Deserialize)]
struct EnergyFigures {
    gross_j: Option<f64>,
    net_j: Option<f64>,
    #[serde(default)]
    gross_bound_j: Option<[f64; 2]>,
    #[serde(default)]
    net_bound_j: Option<[f64; 2]>,
    #[serde(default)]
    phases: Option<PhaseEnergy>,
    mean_power_w: Option<f64>,
    j_per_output_token: Option<f64>,
    estimated: bool,
    flags: Vec<Flag>,
}

impl From<Figures> for Record {
    fn from(f: Figures) -> Record {
        Record {
            schema: f.schema,
            query_id: f.query_id,
            index: f.index,
            session: f.session,
            dataset: f.dataset,
            subject: f.subject,
            category: f.category,
            prompt_hash: String::new(),
            prompt: String::new(),
            answers: Vec::new(),
            choices: Vec::new(),
            model: f.model,
            backend: f.backend,
            response: None,
            input_tokens: f.input_tokens,
            output_tokens: f.output_tokens,
            tokens_estimated: f.tokens_estimated,
            token_source: f.token_source,
            cached_prompt_tokens: f.cached_prompt_tokens,
            cost_usd: f.cost_usd,
            ttft_s: f.ttft_s,
            latency_s: f.latency_s,
            decode_tps: f.decode_tps,
            finish_reason: None,
            attempts: f.attempts,
            started_at: f.started_at,
            window: f.window,
            error: f.error,
            grade: f.grade.map(|g| GradeRecord {
                grader: g.grader,
                wasm_sha256: String::new(),
                score: g.score,
                parsed: g.parsed,
                extracted: None,
                explanation: None,
                error: g.error,
                params: g.params,
            }),
            grade_history: Vec::new(),
            domain: f.domain.map(|d| DomainRecord {
                label: d.label,
                confidence: None,
                explanation: None,
                error: None,
                classifier: d.classifier,
                wasm_sha256: String::new(),
                taxonomy: d.taxonomy,
                taxonomy_sha256: d.taxonomy_sha256,
                params: None,
                judge: None,
            }),
            domain_history: Vec::new(),
            energy: f.energy.map(|e| QueryEnergy {
                gross_j: e.gross_j,
                net_j: e.net_j,
                gross_bound_j: e.gross_bound_j,
                net_bound_j: e.net_bound_j,
                phases: e.phases,
                mean_power_w: e.mean_power_w,
                j_per_output_token: e.j_per_output_token,
                estimated: e.estimated,
                flags: e.flags,
                channels: Default::default(),
            }),
            harness: f.harness,
        }
    }
}
