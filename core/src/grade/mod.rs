//! Graders: sandboxed WASM components (wasmtime, WIT world `ipw:plugins/grader`) that score a
//! response in [0, 1]. Anyone can share one as a `.wasm` file; nobody has to trust it.
//!
//! [`host`] compiles components (cached on disk by wasm hash and engine), and runs each call in
//! a fresh instance from an `InstancePre` with a fuel budget, an epoch deadline and a memory
//! cap; guests get no filesystem, network or environment, only `log` and `judge`.
//! [`builtin`] holds the first-party graders embedded in the binary.

pub mod bench;
pub mod builtin;
pub mod host;
pub(crate) mod patterns;
mod reference;
mod regrade;
mod setup;

pub use crate::records::{GradeRecord, GraderInfo};
pub use host::{GradeOutcome, GraderError, GraderHost, GraderLimits, JudgeFn, WasmGrader};
pub use regrade::{regrade_run, RegradeError, RegradeSpec};
pub use setup::{connect_judge, judge_fn, load_grader, DatasetGraders};

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
