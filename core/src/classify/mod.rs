//! Classifiers: sandboxed WASM components (WIT world `ipw:plugins/classifier`) that place each
//! query in one label of a taxonomy, its domain, so every study figure can be given per domain
//! (`--by domain`). The third plugin kind beside graders and routers, in the same sandbox
//! under a grader's limits.
//!
//! - [`taxonomy`]: the labels (SOC 2018 major groups shipped; a user's from TOML or CSV).
//! - [`wasm`]: the classifier world's bindings and [`WasmClassifier`] (batched calls).
//! - [`builtin`]: `keywords`, `mapping` and `judge`, embedded in the binary.
//! - [`apply`]: `ipw classify` on run directories ([`Classifying`]).
//! - [`judge_cache`]: judge replies kept by prompt and model.
//! - [`agreement`]: agreement with hand labels (`--against`).

pub mod agreement;
pub mod apply;
pub mod bench;
pub mod builtin;
pub mod judge_cache;
pub mod taxonomy;
pub mod wasm;

pub use apply::{ClassifyReport, ClassifySpec, Classifying};
pub use taxonomy::{Taxonomy, TaxonomyError, TaxonomyLabel, UNLABELLED};
pub use wasm::{Verdict, WasmClassifier};

/// Why a run could not be classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// Reading, writing or locking the run directory.
    #[error(transparent)]
    Store(#[from] crate::records::StoreError),
    /// The classifier could not be loaded.
    #[error(transparent)]
    Classifier(#[from] crate::sandbox::SandboxError),
    /// The judge model could not be set up.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendSetupError),
    /// The taxonomy could not be read.
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    /// The classifier and options do not go together.
    #[error("{0}")]
    Input(String),
}
