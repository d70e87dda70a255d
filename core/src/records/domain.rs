//! The domain a record's query was placed in by a classifier (`ipw classify`).

use serde::{Deserialize, Serialize};

/// What a record's `domain` holds: the label a classifier gave the query, and everything needed
/// to say which classifier, with which params, in which taxonomy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DomainRecord {
    /// The label's code; `null` = unlabelled (the classifier could not place it, or failed).
    pub label: Option<String>,
    /// In [0, 1], if the classifier gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The classifier's explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    /// Set when the classifier failed on this query (trap, limit, error, a label outside the
    /// taxonomy): the record is unlabelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Classifier id: a built-in name or the component's file name.
    pub classifier: String,
    /// sha256 of the classifier component.
    pub wasm_sha256: String,
    /// The taxonomy's name.
    pub taxonomy: String,
    /// sha256 of the taxonomy's labels.
    pub taxonomy_sha256: String,
    /// The params the classifier was called with, when not `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// The judge model the classifier could ask, if one was connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
}
