//! The grade a record carries, and which grader scored a dataset (for the manifest).

use serde::{Deserialize, Serialize};

/// The built-in grader whose score is against another model's response to the same query (the
/// reference model's; 0.5 = as good), not against a gold answer. A record's `grade.grader`
/// names it; readers of runs tell such grades apart by it.
pub const PAIRWISE_GRADER: &str = "pairwise";

/// What a record's `grade` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GradeRecord {
    /// Grader id: a built-in name or the component's file name.
    pub grader: String,
    /// sha256 of the grader component.
    pub wasm_sha256: String,
    /// In [0, 1]; `null` = unscored (not counted in accuracy).
    pub score: Option<f64>,
    /// Whether an answer could be extracted.
    pub parsed: bool,
    /// The extracted answer.
    pub extracted: Option<String>,
    /// The grader's explanation.
    pub explanation: Option<String>,
    /// Set when the grader failed (trap, limit, error): the record is unscored.
    pub error: Option<String>,
    /// The params the grader was called with, when not `{}` (so a re-grade says what changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

/// A dataset's grader as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GraderInfo {
    /// Dataset name.
    pub dataset: String,
    /// Grader id: a built-in name or the component's file name.
    pub grader: String,
    /// sha256 of the component.
    pub wasm_sha256: String,
    /// Params the grader is called with.
    pub params: serde_json::Value,
}
