//! Why a plugin could not be loaded or a call of it failed, and how a trap is told to the
//! user (the host's own refusals by name, not as a bare trap).

use super::host_calls::JudgeCapExceeded;
use super::limits::Limits;
use super::memory::{MemoryBudgetExceeded, SlotCapExceeded};

/// A plugin that could not be loaded, or that failed on a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be started (the pool reserved, its threads spawned).
    #[error("cannot start the WASM engine: {0}")]
    Engine(String),
    /// Not a valid component, or not one of the kind it was loaded as.
    #[error("{kind} `{id}`: {message}")]
    Load {
        /// `grader`, `router`, ...
        kind: &'static str,
        /// The plugin's id.
        id: String,
        /// Why.
        message: String,
    },
    /// The call trapped, ran out of fuel or time, went over its memory budget or a judge
    /// cap, or returned an error.
    #[error("{0}")]
    Call(String),
}

/// What a trap (or a call's error) means, in the words a record or a report shows.
pub(super) fn describe_trap(e: &wasmtime::Error, limits: &Limits, kind: &str) -> String {
    // The host's own refusals first, wherever wasmtime put them in the error's chain.
    for cause in e.chain() {
        if let Some(b) = cause.downcast_ref::<MemoryBudgetExceeded>() {
            return b.to_string();
        }
        if let Some(c) = cause.downcast_ref::<SlotCapExceeded>() {
            return c.to_string();
        }
        if let Some(j) = cause.downcast_ref::<JudgeCapExceeded>() {
            return j.to_string();
        }
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            format!("{kind} ran out of fuel ({} units)", limits.fuel)
        }
        Some(wasmtime::Trap::Interrupt) => {
            format!("{kind} exceeded its {} ms deadline", limits.timeout_ms)
        }
        Some(t) => format!("{kind} trapped: {t}"),
        None => format!("{kind} failed: {e:#}"),
    }
}
