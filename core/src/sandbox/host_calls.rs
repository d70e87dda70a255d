//! What the host lends a plugin (the `ipw:plugins/host` interface: `log`, `judge`,
//! `regex-captures`), implemented once for every plugin kind, and the state of one call's
//! store: its WASI context with nothing in it, memory budget, deadline and judge caps.

use super::deadline::Deadline;
use super::limits::Limits;
use super::memory::MemoryBudget;
use super::patterns::{PatternCache, Which};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bindings of the interfaces every plugin world imports (`types`, `host`). Each world's own
/// bindings (grader, router, ...) reuse these with `with:`, so every kind of plugin gets one
/// implementation of what the host lends.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        // A world of the shared imports alone, so no plugin kind's world is the sandbox's.
        inline: "package ipw:sandbox; world host-calls { import ipw:plugins/host@0.1.2; }",
        world: "host-calls",
        // `judge` awaits a model (async) and may end the call when a cap is hit (trappable);
        // `log` stays a plain call.
        imports: { "ipw:plugins/host.judge": async | trappable },
    });
}

use bindings::ipw::plugins::types::{Level, Matches, Span};

/// Strings a plugin returns or logs are cut to this many bytes (records and logs stay small).
pub const MAX_TEXT: usize = 4096;

/// Cut `s` to [`MAX_TEXT`] bytes' worth of characters.
pub fn cut(s: Option<String>) -> Option<String> {
    s.map(|s| {
        if s.len() > MAX_TEXT {
            s.chars().take(MAX_TEXT).collect()
        } else {
            s
        }
    })
}

/// What a [`JudgeFn`] returns: the judge's reply, or why there is none.
pub type JudgeFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// The judge call the host performs for guests: prompt in, reply text out. Async so a slow
/// model neither holds a thread nor counts against the plugin's deadline; the host bounds it
/// with [`Limits::judge_timeout_ms`] and drops the future when that passes.
pub type JudgeFn = Arc<dyn Fn(String) -> JudgeFuture + Send + Sync>;

/// A judge cap a call went over: carried as the trap's error so the record names the cap.
/// Only a plugin given a judge can meet one, and only graders are given one.
#[derive(Debug, thiserror::Error)]
pub(super) enum JudgeCapExceeded {
    #[error("grader exceeded its judge cap of {0} calls per grade")]
    Calls(u32),
    #[error("grader exceeded its judge cap of {0} prompt bytes per grade")]
    PromptBytes(u64),
}

/// State of one plugin call's store, whatever the plugin's kind.
pub struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) budget: MemoryBudget,
    /// `grader`, `router`, ...: for its log lines and messages.
    pub(super) kind: &'static str,
    /// The plugin's id, for its log lines.
    pub(super) id: String,
    pub(super) judge: Option<JudgeFn>,
    pub(super) limits: Limits,
    pub(super) deadline: Arc<Deadline>,
    pub(super) judge_calls: u32,
    pub(super) judge_prompt_bytes: u64,
    pub(super) patterns: Arc<PatternCache>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::ipw::plugins::types::Host for CallState {}

impl bindings::ipw::plugins::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        let message: String = message.chars().take(MAX_TEXT).collect();
        let (kind, id) = (self.kind, &self.id);
        match level {
            Level::Trace => tracing::trace!(plugin = %id, kind, "{message}"),
            Level::Debug => tracing::debug!(plugin = %id, kind, "{message}"),
            Level::Info => tracing::info!(plugin = %id, kind, "{message}"),
            Level::Warn => tracing::warn!(plugin = %id, kind, "{message}"),
            Level::Error => tracing::error!(plugin = %id, kind, "{message}"),
        }
    }

    async fn judge(&mut self, prompt: String) -> wasmtime::Result<Result<String, String>> {
        let Some(judge) = self.judge.clone() else {
            return Ok(Err(if self.kind == "router" {
                "routers have no judge: a routing decision may not call a model".into()
            } else {
                "no judge model configured (add a [grading.judge] table to the experiment)".into()
            }));
        };
        // The caps end the grade (a trap), not just this call: a guest that ignores an error
        // and asks again would otherwise keep a model busy for as long as it likes.
        self.judge_calls += 1;
        if self.judge_calls > self.limits.judge_max_calls {
            return Err(JudgeCapExceeded::Calls(self.limits.judge_max_calls).into());
        }
        self.judge_prompt_bytes = self.judge_prompt_bytes.saturating_add(prompt.len() as u64);
        if self.judge_prompt_bytes > self.limits.judge_max_prompt_bytes {
            return Err(JudgeCapExceeded::PromptBytes(self.limits.judge_max_prompt_bytes).into());
        }
        // The judge's time is the model's, not the plugin's: the deadline stops while we wait
        // and the judge's own timeout applies instead.
        let _paused = self.deadline.pause();
        let timeout = Duration::from_millis(self.limits.judge_timeout_ms);
        Ok(match tokio::time::timeout(timeout, judge(prompt)).await {
            Ok(reply) => reply,
            // An error the guest sees (as for a model that is down), not a trap: the guest
            // may fall back or report it; a guest that keeps retrying meets the call cap.
            Err(_) => Err(format!(
                "judge timed out after {} ms",
                self.limits.judge_timeout_ms
            )),
        })
    }

    fn regex_captures(
        &mut self,
        pattern: String,
        text: String,
        which: Matches,
    ) -> Result<Vec<Vec<Option<Span>>>, String> {
        self.regex(&pattern, &text, which)
    }
}

impl CallState {
    fn regex(
        &self,
        pattern: &str,
        text: &str,
        which: Matches,
    ) -> Result<Vec<Vec<Option<Span>>>, String> {
        let which = match which {
            Matches::First => Which::First,
            Matches::Last => Which::Last,
            Matches::All => Which::All,
        };
        let found = self.patterns.captures(pattern, text, which)?;
        Ok(found
            .into_iter()
            .map(|groups| {
                groups
                    .into_iter()
                    .map(|g| g.map(|(start, end)| Span { start, end }))
                    .collect()
            })
            .collect())
    }
}
