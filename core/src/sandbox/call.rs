//! One plugin's calls: each runs in a fresh store (its own WASI context with nothing in it,
//! memory budget, fuel and judge caps) on the calling thread, raced against its deadline.

use super::deadline::Deadline;
use super::engine::Shared;
use super::error::{describe_trap, SandboxError};
use super::host_calls::{CallState, JudgeFn};
use super::limits::Limits;
use super::memory::MemoryBudget;
use super::pool::Needs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::Store;

/// What every call of one plugin runs under: its engine, limits and (graders) judge. Every
/// plugin kind gets the same sandbox through it. Cheap to clone; clones share the call count.
#[derive(Clone)]
pub struct Sandbox {
    /// `grader`, `router`, ...: how messages name the plugin.
    pub(super) kind: &'static str,
    pub(super) id: String,
    pub(super) shared: Shared,
    pub(super) limits: Limits,
    pub(super) judge: Option<JudgeFn>,
    /// What one call takes from the instance pool.
    pub(super) needs: Needs,
    /// Calls started, for callers that account for what a plugin was asked.
    pub(super) calls: Arc<AtomicU64>,
}

impl Sandbox {
    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Calls started so far (by this sandbox and its clones), finished or not.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// A store for one call: its own WASI context (nothing in it), memory budget, fuel, judge
    /// caps and deadline.
    fn new_store(
        &self,
        limits: Limits,
        deadline: Arc<Deadline>,
    ) -> Result<Store<CallState>, SandboxError> {
        // No preopened directories, no environment, no arguments, no sockets and no name
        // lookups: the guest can compute, log and ask the host, nothing else.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .allow_blocking_current_thread(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            budget: MemoryBudget::new(self.kind, limits.memory_mib, self.shared.caps),
            kind: self.kind,
            id: self.id.clone(),
            judge: self.judge.clone(),
            limits,
            deadline,
            judge_calls: 0,
            judge_prompt_bytes: 0,
            patterns: self.shared.patterns.clone(),
        };
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|s| &mut s.budget);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| SandboxError::Call(describe_trap(&e, &limits, self.kind)))?;
        // The epoch never ends a call; it makes running guest code hand control back every
        // tick so the deadline race in `run` is polled.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }

    /// Run `call` on a fresh store on this thread, racing it against the call's deadline.
    /// Losing the race drops the call, which cancels the guest wherever it is, a blocking
    /// WASI call included. Blocking: call it from a thread where blocking is fine (a plain
    /// thread or `spawn_blocking`), not from an async task.
    pub fn run<R>(
        &self,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        self.run_under(self.limits, call)
    }

    /// Run one call that does the work of `items` calls (a batch): its fuel, deadline and judge
    /// caps are `items` times one call's, its memory budget one call's.
    pub fn run_batch<R>(
        &self,
        items: usize,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        let n = items.max(1) as u64;
        let l = self.limits;
        let limits = Limits {
            fuel: l.fuel.saturating_mul(n),
            timeout_ms: l.timeout_ms.saturating_mul(n),
            judge_max_calls: l.judge_max_calls.saturating_mul(n as u32),
            judge_max_prompt_bytes: l.judge_max_prompt_bytes.saturating_mul(n),
            ..l
        };
        self.run_under(limits, call)
    }

    fn run_under<R>(
        &self,
        limits: Limits,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, SandboxError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Declared before the store, so dropped after it: the store hands its slots back to
        // the pool when it drops, and only then may another call take them.
        let _permit = self.shared.gate.as_ref().map(|g| g.acquire(self.needs));
        let deadline = Deadline::start(
            Duration::from_millis(limits.timeout_ms),
            self.shared.ticker.clone(),
        );
        let mut store = self.new_store(limits, deadline.clone())?;
        let outcome = self.shared.runtime.block_on(async {
            tokio::select! {
                biased;
                r = call(&mut store) => Some(r),
                () = deadline.expired() => None,
            }
        });
        match outcome {
            Some(r) => r.map_err(|e| SandboxError::Call(describe_trap(&e, &limits, self.kind))),
            None => Err(SandboxError::Call(format!(
                "{} exceeded its {} ms deadline",
                self.kind, limits.timeout_ms
            ))),
        }
    }
}
