//! Graders as WASM components of the `grader` world (`sdk/wit`): loaded through the sandbox
//! ([`crate::sandbox`]) and called in a fresh instance per grade under its limits.

use crate::sandbox::{cut, CallState, Host, JudgeFn, Limits, Sandbox, SandboxError};
use wasmtime::component::HasSelf;
use wasmtime::Store;

/// The grader world's bindings; what the host lends (`types`, `host`) is the sandbox's.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "grader",
        exports: { default: async },
        with: {
            "ipw:plugins/types": crate::sandbox::host_calls::bindings::ipw::plugins::types,
            "ipw:plugins/host": crate::sandbox::host_calls::bindings::ipw::plugins::host,
        },
    });
}

pub use crate::sandbox::host_calls::bindings::ipw::plugins::types::{Grade, Level, Query};

/// What a grader call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeOutcome {
    /// The score, `None` = unscored.
    pub score: Option<f64>,
    /// Whether an answer was found.
    pub parsed: bool,
    /// The extracted answer.
    pub extracted: Option<String>,
    /// The grader's explanation.
    pub explanation: Option<String>,
}

/// A loaded grader, ready to call from any thread.
#[derive(Clone)]
pub struct WasmGrader {
    /// Grader id (built-in name or file name).
    pub id: String,
    /// sha256 of the component bytes.
    pub sha256: String,
    pre: bindings::GraderPre<CallState>,
    sandbox: Sandbox,
    /// Whether the compiled component came from the disk cache.
    pub from_cache: bool,
}

impl WasmGrader {
    /// Load a grader from component bytes through `host`: compile (or take from the cache)
    /// and pre-link. `judge` backs the `judge` host call (`None`: the grader is told there is
    /// no judge).
    pub fn load(
        host: &Host,
        id: &str,
        bytes: &[u8],
        limits: Limits,
        judge: Option<JudgeFn>,
    ) -> Result<Self, SandboxError> {
        let loaded = host.load("grader", id, bytes, limits, judge, |linker| {
            bindings::Grader::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        })?;
        let pre = bindings::GraderPre::new(loaded.pre).map_err(|e| SandboxError::Load {
            kind: "grader",
            id: id.into(),
            message: format!("does not export `grade`: {e:#}"),
        })?;
        Ok(Self {
            id: id.into(),
            sha256: loaded.sha256,
            pre,
            sandbox: loaded.sandbox,
            from_cache: loaded.from_cache,
        })
    }

    fn run<R>(
        &self,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        self.sandbox.run(call)
    }

    /// Create a fresh instance and drop it without calling it: what every call pays before
    /// grading (benchmarks measure it with this). Blocking, like [`WasmGrader::grade`].
    pub fn instantiate(&self) -> Result<(), SandboxError> {
        let pre = &self.pre;
        self.run(async |store| pre.instantiate_async(store).await.map(drop))
    }

    /// Grade one response in a fresh instance under the limits. Blocking: call it from a
    /// thread where blocking is fine (a plain thread or `spawn_blocking`), not from an async
    /// task.
    pub fn grade(
        &self,
        query: &Query,
        response: &str,
        params: &str,
    ) -> Result<GradeOutcome, SandboxError> {
        let pre = &self.pre;
        let result = self.run(async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_grade(store, query, response, params).await
        })?;
        match result {
            Ok(g) => {
                let score = match g.score {
                    Some(s) if !(0.0..=1.0).contains(&s) || s.is_nan() => {
                        return Err(SandboxError::Call(format!(
                            "grader returned score {s} outside [0, 1]"
                        )))
                    }
                    s => s,
                };
                Ok(GradeOutcome {
                    score,
                    parsed: g.parsed,
                    extracted: cut(g.extracted),
                    explanation: cut(g.explanation),
                })
            }
            Err(message) => Err(SandboxError::Call(format!(
                "grader error: {}",
                cut(Some(message)).unwrap_or_default()
            ))),
        }
    }
}
