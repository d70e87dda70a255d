//! Graders: sandboxed WASM components (wasmtime, WIT world `ipw:plugins/grader`) that score a
//! response in [0, 1]. Anyone can share one as a `.wasm` file; nobody has to trust it.
//!
//! They run in the WASM sandbox ([`crate::sandbox`]: a fresh instance per call, fuel, a
//! deadline, a memory budget, no files, environment or network); [`wasm`] holds what is the
//! grader world's own (its bindings, the `grade` call, [`WasmGrader`]), `setup` the graders
//! of an experiment ([`DatasetGraders`]) and the `judge` host call backed by a model.
//! [`builtin`] holds the first-party graders embedded in the binary.

pub mod bench;
pub mod builtin;
mod reference;
mod regrade;
mod setup;
pub mod wasm;

pub use crate::records::{GradeRecord, GraderInfo};
pub use reference::ReferenceError;
pub use regrade::{regrade_run, RegradeError, RegradeSpec};
pub use setup::{connect_judge, judge_fn, load_grader, DatasetGraders};
pub use wasm::{Grade, GradeOutcome, Query, WasmGrader};

/// Paths of the test fixture graders (hostile ones) built with the project, for tests.
#[doc(hidden)]
pub mod test_support {
    include!(concat!(env!("OUT_DIR"), "/fixture_graders.rs"));

    /// The `.wasm` of fixture grader `name` (`spin`, `membomb`, `trap`, `bigoutput`, `escape`).
    pub fn fixture_grader(name: &str) -> std::path::PathBuf {
        let path = FIXTURE_GRADERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p);
        std::path::PathBuf::from(path.unwrap_or_else(|| panic!("no fixture grader `{name}`")))
    }

    mod classifiers {
        include!(concat!(env!("OUT_DIR"), "/fixture_classifiers.rs"));
    }

    /// The `.wasm` of fixture classifier `name` (`hostile`).
    pub fn fixture_classifier(name: &str) -> std::path::PathBuf {
        let path = classifiers::FIXTURE_CLASSIFIERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p);
        std::path::PathBuf::from(path.unwrap_or_else(|| panic!("no fixture classifier `{name}`")))
    }

    mod routers {
        include!(concat!(env!("OUT_DIR"), "/fixture_routers.rs"));
    }

    /// The `.wasm` of fixture router `name` (`spin`, `membomb`, `sleep`, `stray`).
    pub fn fixture_router(name: &str) -> std::path::PathBuf {
        let path = routers::FIXTURE_ROUTERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p);
        std::path::PathBuf::from(path.unwrap_or_else(|| panic!("no fixture router `{name}`")))
    }
}
