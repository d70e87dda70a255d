//! The WASM grader host: compile once (cached on disk, verified before use), instantiate per
//! call (cheap: from an `InstancePre`, into wasmtime's pooling allocator, whose slots, stacks
//! and copy-on-write memory images are reset and reused rather than mapped afresh; a call waits
//! for free slots instead of failing), and bound every call: fuel (a deterministic
//! instruction budget), a wall-clock deadline that holds whatever the guest calls, one memory
//! budget for all of an instance's memories and tables, and caps on the `judge` import. A
//! trap, a limit or a malformed result becomes a grader error for that record; the run goes on.
//!
//! Calls run on wasmtime's async support, driven on the calling thread by a small runtime the
//! host owns: the deadline is a timer raced against the call (dropping the call cancels the
//! guest, even inside a blocking WASI call such as a sleep), and the epoch only makes guest
//! compute yield often enough for that race to be noticed.

use super::patterns::{PatternCache, Which};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The grader world's bindings; the router world reuses their `types` and `host` interfaces,
/// so both kinds of plugin get one implementation of what the host lends.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "grader",
        // `judge` awaits a model (async) and may end the grade when a cap is hit (trappable);
        // `log` stays a plain call.
        imports: { "ipw:plugins/host.judge": async | trappable },
        exports: { default: async },
    });
}

pub use bindings::ipw::plugins::types::{Grade, Level, Query};
use bindings::ipw::plugins::types::{Matches, Span};

/// How often the epoch advances while a call runs: guest code yields to the deadline race at
/// least this often.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Strings a grader returns are cut to this many bytes (the record stays small).
const MAX_TEXT: usize = 4096;
/// What one table element counts for against the memory budget: a `funcref` slot is one
/// host pointer (`externref` slots are smaller), so 8 bytes is the host's real cost or more.
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// Core instances one grader instance may create (a Rust component has a handful: the
/// program, the WASI adapter and the glue modules between them).
const MAX_INSTANCES: usize = 64;
/// Tables one grader instance may create.
const MAX_TABLES: usize = 64;
/// Linear memories one grader instance may create (a Rust component has two).
const MAX_MEMORIES: usize = 16;
/// Elements one table may hold under the pooling allocator: each pooled table slot reserves
/// room for this many (8 MiB of address space). A Rust component's tables hold a few hundred.
const POOL_TABLE_ELEMENTS: usize = 1 << 20;
/// Bytes one linear memory may grow to under the pooling allocator: the whole 32-bit space,
/// so the memory budget, not the pool, is what limits any budget up to 4 GiB.
const POOL_MEMORY_BYTES: usize = 1 << 32;

/// Per-call limits. Each is a separate knob with a safe default.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraderLimits {
    /// Instruction budget per call (wasmtime fuel). Default 1e9.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Wall-clock limit per call, milliseconds, not counting time spent waiting for the
    /// judge. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Memory budget per instance, MiB: every linear memory plus every table element
    /// ([`TABLE_ELEMENT_BYTES`] each), together. Default 64.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Wall-clock limit for one `judge` call, milliseconds; when it passes the guest gets an
    /// error back (`judge timed out after N ms`). Default 120000.
    #[serde(default = "default_judge_timeout_ms")]
    pub judge_timeout_ms: u64,
    /// `judge` calls one grade may make; one more ends the grade as a grader error.
    /// Default 4.
    #[serde(default = "default_judge_max_calls")]
    pub judge_max_calls: u32,
    /// Prompt bytes one grade may send to the judge, all calls together; more ends the grade
    /// as a grader error. Default 65536.
    #[serde(default = "default_judge_max_prompt_bytes")]
    pub judge_max_prompt_bytes: u64,
}

fn default_fuel() -> u64 {
    1_000_000_000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_memory_mib() -> u64 {
    64
}
fn default_judge_timeout_ms() -> u64 {
    120_000
}
fn default_judge_max_calls() -> u32 {
    4
}
fn default_judge_max_prompt_bytes() -> u64 {
    65_536
}

impl Default for GraderLimits {
    fn default() -> Self {
        Self {
            fuel: default_fuel(),
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
            judge_timeout_ms: default_judge_timeout_ms(),
            judge_max_calls: default_judge_max_calls(),
            judge_max_prompt_bytes: default_judge_max_prompt_bytes(),
        }
    }
}

/// A grader that could not be loaded or that failed on a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraderError {
    /// Not a valid component, or not a grader.
    #[error("grader `{id}`: {message}")]
    Load {
        /// Grader id.
        id: String,
        /// Why.
        message: String,
    },
    /// The call trapped, ran out of fuel or time, went over its memory budget or a judge
    /// cap, or returned an error.
    #[error("{0}")]
    Call(String),
}

/// What a [`JudgeFn`] returns: the judge's reply, or why there is none.
pub type JudgeFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// The judge call the host performs for guests: prompt in, reply text out. Async so a slow
/// model neither holds a thread nor counts against the grader's deadline; the host bounds it
/// with [`GraderLimits::judge_timeout_ms`] and drops the future when that passes.
pub type JudgeFn = Arc<dyn Fn(String) -> JudgeFuture + Send + Sync>;

/// Why a store refused to grow: carried as the trap's error so the record names the budget.
#[derive(Debug, thiserror::Error)]
#[error("{kind} exceeded its {mib} MiB memory budget ({what} would bring memories and tables to {wanted} bytes)")]
struct MemoryBudgetExceeded {
    kind: &'static str,
    mib: u64,
    what: &'static str,
    wanted: usize,
}

/// A memory or table larger than one pooled slot holds: carried as the trap's error so the
/// record says which host cap it met (the pool itself would only fail the growth quietly).
#[derive(Debug, thiserror::Error)]
#[error("{kind} asked for a {what} of {wanted} {unit}, over the host's cap of {cap} per {what}")]
struct SlotCapExceeded {
    kind: &'static str,
    what: &'static str,
    wanted: usize,
    cap: usize,
    unit: &'static str,
}

/// The largest single memory and table an instance may have: the pool's slot sizes, or no
/// cap (beyond the memory budget) on the on-demand allocator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotCaps {
    memory_bytes: usize,
    table_elements: usize,
}

/// One budget for every linear memory and table of an instance. wasmtime asks before each
/// memory or table is created (current size 0, desired = its minimum) and before each growth,
/// so summing the increments counts everything the guest holds. Growth that fails after it was
/// allowed (past a declared maximum) stays counted: that errs towards refusing, and only the
/// guest that asked for it pays.
struct MemoryBudget {
    kind: &'static str,
    mib: u64,
    limit: usize,
    used: usize,
    caps: SlotCaps,
}

impl MemoryBudget {
    fn new(kind: &'static str, mib: u64, caps: SlotCaps) -> Self {
        let limit = usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        Self {
            kind,
            mib,
            limit,
            used: 0,
            caps,
        }
    }

    fn charge(&mut self, bytes: usize, what: &'static str) -> wasmtime::Result<bool> {
        let wanted = self.used.saturating_add(bytes);
        if wanted > self.limit {
            // An error, not `Ok(false)`: refusing quietly would hand the guest -1 from
            // `memory.grow`, and the record would then show whatever it did next (usually
            // an abort that says nothing about memory).
            return Err(MemoryBudgetExceeded {
                kind: self.kind,
                mib: self.mib,
                what,
                wanted,
            }
            .into());
        }
        self.used = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.charge(desired.saturating_sub(current), "a linear memory")?;
        // Within the budget but larger than a pooled slot holds: the pool would refuse it
        // quietly (`memory.grow` gives -1); say why instead.
        if desired > self.caps.memory_bytes {
            return Err(SlotCapExceeded {
                kind: self.kind,
                what: "linear memory",
                wanted: desired,
                cap: self.caps.memory_bytes,
                unit: "bytes",
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let elements = desired.saturating_sub(current);
        self.charge(elements.saturating_mul(TABLE_ELEMENT_BYTES), "a table")?;
        if desired > self.caps.table_elements {
            return Err(SlotCapExceeded {
                kind: self.kind,
                what: "table",
                wanted: desired,
                cap: self.caps.table_elements,
                unit: "elements",
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// A judge cap a grade went over: carried as the trap's error so the record names the cap.
#[derive(Debug, thiserror::Error)]
enum JudgeCapExceeded {
    #[error("grader exceeded its judge cap of {0} calls per grade")]
    Calls(u32),
    #[error("grader exceeded its judge cap of {0} prompt bytes per grade")]
    PromptBytes(u64),
}

/// State of one plugin call's store (a grader's or a router's).
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    budget: MemoryBudget,
    /// `grader` or `router`, for its log lines and messages.
    kind: &'static str,
    /// The plugin's id, for its log lines.
    pub(crate) grader: String,
    judge: Option<JudgeFn>,
    limits: GraderLimits,
    deadline: Arc<Deadline>,
    judge_calls: u32,
    judge_prompt_bytes: u64,
    patterns: Arc<PatternCache>,
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
        let (kind, id) = (self.kind, &self.grader);
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
        // The judge's time is the model's, not the grader's: the deadline stops while we wait
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

/// Advances the engine's epoch every [`EPOCH_TICK`] while a grader call runs guest code and
/// sleeps otherwise, so the deadline machinery costs nothing while the profiler waits on a
/// model or a judge (a free-running 100 Hz ticker was a fifth of the profiler's own CPU).
///
/// Holding and releasing is an atomic count; only the first hold after the ticker parked takes
/// the lock and wakes it. Back-to-back calls (tens of thousands a second) therefore never pay a
/// system call or a thread switch for the ticker: it parks only when it finds no call running
/// at the end of a tick.
struct EpochTicker {
    running: AtomicUsize,
    /// Whether the ticker thread waits on `wake` (guarded, so a wake-up is never lost).
    parked: Mutex<bool>,
    wake: Condvar,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Arc<Self>> {
        let ticker = Arc::new(Self {
            running: AtomicUsize::new(0),
            parked: Mutex::new(false),
            wake: Condvar::new(),
        });
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("ipw-wasm-epoch".into())
            .spawn(move || loop {
                {
                    let mut parked = t.parked.lock().unwrap_or_else(|p| p.into_inner());
                    // Read under the lock: a `hold` that raises the count from zero takes the
                    // lock before looking at `parked`, so it either sees us parked or we see
                    // its count here.
                    while t.running.load(Ordering::SeqCst) == 0 {
                        *parked = true;
                        parked = t.wake.wait(parked).unwrap_or_else(|p| p.into_inner());
                    }
                    *parked = false;
                }
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            })?;
        Ok(ticker)
    }

    /// One more call needs the epoch to advance.
    fn hold(&self) {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            let parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            if *parked {
                self.wake.notify_one();
            }
        }
    }

    /// One call no longer needs it.
    fn release(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wall-clock deadline of one call: time left, counted only while the guest (not the
/// judge) has the call. It also holds the epoch ticker exactly while it counts.
struct Deadline {
    state: Mutex<DeadlineState>,
    resumed: tokio::sync::Notify,
    ticker: Arc<EpochTicker>,
}

struct DeadlineState {
    left: Duration,
    /// When counting last (re)started; `None` while paused.
    since: Option<Instant>,
}

impl Deadline {
    fn start(budget: Duration, ticker: Arc<EpochTicker>) -> Arc<Self> {
        ticker.hold();
        Arc::new(Self {
            state: Mutex::new(DeadlineState {
                left: budget,
                since: Some(Instant::now()),
            }),
            resumed: tokio::sync::Notify::new(),
            ticker,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop counting until the guard drops.
    fn pause(self: &Arc<Self>) -> PauseGuard {
        let mut s = self.lock();
        if let Some(since) = s.since.take() {
            s.left = s.left.saturating_sub(since.elapsed());
            self.ticker.release();
        }
        PauseGuard(self.clone())
    }

    fn resume(&self) {
        let mut s = self.lock();
        if s.since.is_none() {
            s.since = Some(Instant::now());
            self.ticker.hold();
        }
        drop(s);
        // `notify_one` keeps a permit when nobody waits yet, so a resume between `expired`
        // reading the state and awaiting is not lost.
        self.resumed.notify_one();
    }

    /// Completes when the time left runs out (never while paused).
    async fn expired(&self) {
        loop {
            let left = {
                let s = self.lock();
                s.since.map(|since| s.left.saturating_sub(since.elapsed()))
            };
            match left {
                Some(left) if left.is_zero() => return,
                // Woken early by a pause and resume: the loop reads the new time left.
                Some(left) => {
                    tokio::select! {
                        _ = tokio::time::sleep(left) => {}
                        _ = self.resumed.notified() => {}
                    }
                }
                None => self.resumed.notified().await,
            }
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if self.lock().since.is_some() {
            self.ticker.release();
        }
    }
}

struct PauseGuard(Arc<Deadline>);

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.0.resume();
    }
}

/// What every host of a process shares: one engine, one epoch ticker and one small runtime.
#[derive(Clone)]
pub(crate) struct Shared {
    engine: Engine,
    ticker: Arc<EpochTicker>,
    runtime: tokio::runtime::Handle,
    /// The largest memory and table one instance may have.
    caps: SlotCaps,
    /// Admission to the pool's slots; `None` on the on-demand allocator, which has no slots.
    gate: Option<Arc<SlotGate>>,
    /// Patterns compiled for `host.regex-captures`, shared by every plugin.
    patterns: Arc<PatternCache>,
}

/// The engine settings both allocators share.
fn base_config() -> Config {
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .wasm_component_model(true);
    config
}

/// Fresh instances (one per call) that fit in this many pooled slots run at once; more calls
/// wait for a slot. Sized to the machine (calls are CPU-bound, a judge wait aside), with room
/// for judge-bound graders: the pool reserves address space (not memory) per slot, so it stays
/// modest for machines that limit overcommit or address space.
fn pool_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 4).clamp(16, 64)
}

/// The engine, its caps and (pooling) its slot gate: the pooling allocator with copy-on-write
/// memory images, which makes a fresh instance per call cheap (slots, stacks and memory
/// mappings are reused and reset instead of mapped and unmapped each time), or the on-demand
/// allocator when the pool cannot be reserved (or `IPW_WASM_POOL=0` asks for it).
fn new_engine() -> wasmtime::Result<(Engine, SlotCaps, Option<Arc<SlotGate>>)> {
    let wanted = std::env::var("IPW_WASM_POOL").map_or(true, |v| v != "0");
    if wanted {
        let slots = pool_slots();
        let totals = Free {
            instances: slots,
            memories: (slots * 2).max(MAX_MEMORIES),
            tables: (slots * 4).max(MAX_TABLES),
            waiting: 0,
        };
        let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(as_u32(totals.instances))
            .total_core_instances(as_u32(slots * MAX_INSTANCES))
            .total_memories(as_u32(totals.memories))
            .total_tables(as_u32(totals.tables))
            // A store runs one fiber at a time; twice that leaves room for one being freed.
            .total_stacks(as_u32(slots * 2))
            .max_core_instances_per_component(as_u32(MAX_INSTANCES))
            .max_memories_per_component(as_u32(MAX_MEMORIES))
            .max_tables_per_component(as_u32(MAX_TABLES))
            .max_memories_per_module(as_u32(MAX_MEMORIES))
            .max_tables_per_module(as_u32(MAX_TABLES))
            .max_memory_size(POOL_MEMORY_BYTES)
            .table_elements(POOL_TABLE_ELEMENTS);
        // Where the kernel can list the pages a call dirtied (PAGEMAP_SCAN, Linux 6.7+),
        // zeroing just those in place is cheaper than handing them back to the kernel and
        // faulting them in again on the next call (the profile showed a fifth of each call in
        // page faults). Without it, zeroing a fixed prefix blindly costs more than it saves.
        if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(POOL_KEEP_RESIDENT)
                .table_keep_resident(POOL_KEEP_RESIDENT);
        }
        let mut config = base_config();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => {
                let caps = SlotCaps {
                    memory_bytes: POOL_MEMORY_BYTES,
                    table_elements: POOL_TABLE_ELEMENTS,
                };
                return Ok((engine, caps, Some(Arc::new(SlotGate::new(totals)))));
            }
            Err(e) => tracing::warn!(
                "cannot reserve the WASM instance pool ({e:#}); using the on-demand allocator \
                 (every call maps its own memory: slower, equally sandboxed)"
            ),
        }
    }
    let caps = SlotCaps {
        memory_bytes: usize::MAX,
        table_elements: usize::MAX,
    };
    Ok((Engine::new(&base_config())?, caps, None))
}

/// Bytes of each pooled memory and table whose dirty pages are zeroed in place (kept
/// resident) when its slot is reset, rather than released to the kernel: a Rust guest's stack,
/// data and early heap.
const POOL_KEEP_RESIDENT: usize = 8 << 20;

/// Pool slots still free, and how many callers wait for some.
#[derive(Debug, Clone, Copy)]
struct Free {
    instances: usize,
    memories: usize,
    tables: usize,
    waiting: usize,
}

/// What one call of a plugin takes from the pool: one component instance and its memories and
/// tables (known from the component before it is instantiated).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needs {
    memories: usize,
    tables: usize,
}

/// Admission to the pool: a call waits here until its instance, memories and tables all fit,
/// so a busy pool delays a call instead of failing it, and a plugin with many memories can
/// never crowd out another plugin's call.
struct SlotGate {
    free: Mutex<Free>,
    freed: Condvar,
    total: Free,
}

impl SlotGate {
    fn new(total: Free) -> Self {
        Self {
            free: Mutex::new(total),
            freed: Condvar::new(),
            total,
        }
    }

    /// Whether a call needing `needs` can ever be admitted.
    fn fits(&self, needs: Needs) -> bool {
        needs.memories <= self.total.memories && needs.tables <= self.total.tables
    }

    fn acquire(self: &Arc<Self>, needs: Needs) -> SlotPermit {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while free.instances == 0 || free.memories < needs.memories || free.tables < needs.tables {
            free.waiting += 1;
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
            free.waiting -= 1;
        }
        free.instances -= 1;
        free.memories -= needs.memories;
        free.tables -= needs.tables;
        SlotPermit {
            gate: self.clone(),
            needs,
        }
    }
}

/// A call's place in the pool; dropped after the call's store, which hands the slots back.
struct SlotPermit {
    gate: Arc<SlotGate>,
    needs: Needs,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let mut free = self.gate.free.lock().unwrap_or_else(|p| p.into_inner());
        free.instances += 1;
        free.memories += self.needs.memories;
        free.tables += self.needs.tables;
        // Waking costs a system call; most of the time nobody waits.
        if free.waiting > 0 {
            self.gate.freed.notify_all();
        }
    }
}

/// The runtime that drives grader calls. Each call runs on its caller's thread
/// (`Handle::block_on`), so calls on N threads use N cores; the one worker thread only drives
/// timers (deadlines, WASI clocks, judge timeouts), which a caller's thread cannot do for
/// itself, and never holds guest code. It lives for the whole process.
fn runtime() -> std::io::Result<tokio::runtime::Handle> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ipw-wasm-timer")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| rt).handle().clone())
}

/// Compiles and caches grader components; shared by every grader of a process.
#[derive(Clone)]
pub struct GraderHost {
    shared: Shared,
    cache_dir: Option<PathBuf>,
}

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

fn cut(s: Option<String>) -> Option<String> {
    s.map(|s| {
        if s.len() > MAX_TEXT {
            s.chars().take(MAX_TEXT).collect()
        } else {
            s
        }
    })
}

/// First bytes of a cache entry: names the format, so an entry of another layout (or an old
/// bare `.cwasm`) is rejected before anything else is read.
const CACHE_MAGIC: &[u8; 16] = b"ipw-cwasm-v1\0\0\0\n";

/// Why a cache entry was not used.
#[derive(Debug, thiserror::Error)]
enum CacheReject {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("{0} is owned by uid {1}, not by this user")]
    Owner(PathBuf, u32),
    #[error("{0} is writable by group or others (mode {1:o})")]
    Writable(PathBuf, u32),
    #[error("not an ipw cache entry")]
    Magic,
    #[error("compiled from other wasm than this grader's")]
    Source,
    #[error("payload does not match its checksum")]
    Checksum,
}

/// Refuse a cache path that someone else could have written: it must be ours and writable by
/// nobody else (a symlink is not followed, it is refused).
fn check_owned(path: &Path, want_file: bool) -> Result<(), CacheReject> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    let right_kind = if want_file {
        meta.file_type().is_file()
    } else {
        meta.file_type().is_dir()
    };
    if !right_kind {
        return Err(CacheReject::NotAFile(path.into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(CacheReject::Owner(path.into(), meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(CacheReject::Writable(path.into(), meta.mode() & 0o7777));
    }
    Ok(())
}

impl GraderHost {
    /// A host on the process's shared engine (fuel and epoch interruption on), epoch ticker
    /// thread and call runtime, each created on first use. `cache_dir`: where compiled
    /// components are kept (`None`: no disk cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, GraderError> {
        static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if shared.is_none() {
            let engine_err = |message: String| GraderError::Load {
                id: "engine".into(),
                message,
            };
            let (engine, caps, gate) = new_engine().map_err(|e| engine_err(e.to_string()))?;
            let ticker =
                EpochTicker::start(engine.clone()).map_err(|e| engine_err(e.to_string()))?;
            let runtime = runtime().map_err(|e| engine_err(e.to_string()))?;
            *shared = Some(Shared {
                engine,
                ticker,
                runtime,
                caps,
                gate,
                patterns: Arc::default(),
            });
        }
        let shared = shared.clone().expect("initialised above");
        Ok(Self { shared, cache_dir })
    }

    /// Whether calls run on the pooling allocator (`false`: the on-demand fallback, when the
    /// pool could not be reserved or `IPW_WASM_POOL=0`).
    pub fn pooled(&self) -> bool {
        self.shared.gate.is_some()
    }

    /// The default compiled-component cache: `$IPW_CACHE/wasm` or `~/.cache/ipw/wasm`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        std::env::var_os("IPW_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ipw")))
            .map(|d| d.join("wasm"))
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.shared
            .engine
            .precompile_compatibility_hash()
            .hash(&mut h);
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    /// A cache entry, verified: the directory and file are ours and nobody else's to write,
    /// the entry says it was compiled from exactly `source` (the wasm's sha256), and its
    /// payload matches the checksum beside it. Only then is it deserialised, from the bytes
    /// that were checked (not the file again, which could change in between).
    fn read_cached(&self, path: &Path, source: &[u8; 32]) -> Result<Component, CacheReject> {
        check_owned(path.parent().unwrap_or(Path::new(".")), false)?;
        check_owned(path, true)?;
        let bytes = std::fs::read(path)?;
        let header = CACHE_MAGIC.len() + 64;
        if bytes.len() < header || !bytes.starts_with(CACHE_MAGIC) {
            return Err(CacheReject::Magic);
        }
        let (from, rest) = bytes[CACHE_MAGIC.len()..].split_at(32);
        let (sum, payload) = rest.split_at(32);
        if from != source {
            return Err(CacheReject::Source);
        }
        if Sha256::digest(payload).as_slice() != sum {
            return Err(CacheReject::Checksum);
        }
        // SAFETY: wasmtime trusts serialised code; these bytes are what this user's ipw wrote
        // for this very wasm (ownership, source hash and checksum were checked above), and
        // wasmtime itself refuses an engine-incompatible payload.
        unsafe { Component::deserialize(&self.shared.engine, payload) }.map_err(|e| {
            CacheReject::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{e:#}"),
            ))
        })
    }

    /// Write a cache entry through a temporary file of its own (unique per process and call)
    /// and a rename, so readers see a whole entry or none, and writers never share a file.
    fn write_cached(&self, path: &Path, source: &[u8; 32], payload: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        // Never write into a directory that would be refused on reading.
        check_owned(dir, false).map_err(std::io::Error::other)?;
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.{}-{seq}.part",
            path.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(CACHE_MAGIC)?;
            f.write_all(source)?;
            f.write_all(&Sha256::digest(payload))?;
            f.write_all(payload)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    fn component(
        &self,
        id: &str,
        bytes: &[u8],
        source: &[u8; 32],
        sha256: &str,
    ) -> Result<(Component, bool), GraderError> {
        let compile = || {
            Component::new(&self.shared.engine, bytes).map_err(|e| GraderError::Load {
                id: id.into(),
                message: format!("not a valid component: {e:#}"),
            })
        };
        let Some(path) = self.cache_path(sha256) else {
            return compile().map(|c| (c, false));
        };
        if path.exists() {
            match self.read_cached(&path, source) {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "not using cached component ({e}); compiling again"
                ),
            }
        }
        let component = compile()?;
        match component.serialize() {
            Ok(serialized) => {
                if let Err(e) = self.write_cached(&path, source, &serialized) {
                    tracing::warn!(path = %path.display(), "cannot cache compiled component: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot serialise compiled component: {e:#}"),
        }
        Ok((component, false))
    }

    /// Load a grader from component bytes: compile (or take from the cache) and pre-link.
    pub fn load(
        &self,
        id: &str,
        bytes: &[u8],
        limits: GraderLimits,
        judge: Option<JudgeFn>,
    ) -> Result<WasmGrader, GraderError> {
        let (component, sha256, cached) = self.compile(id, bytes)?;
        let load_err = |message: String| GraderError::Load {
            id: id.into(),
            message,
        };
        let mut linker = self.wasi_linker(id)?;
        bindings::Grader::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| load_err(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| load_err(format!("does not fit the ipw grader world: {e:#}")))?;
        let pre = bindings::GraderPre::new(pre)
            .map_err(|e| load_err(format!("does not export `grade`: {e:#}")))?;
        Ok(WasmGrader {
            id: id.into(),
            sha256,
            pre,
            sandbox: self.sandbox("grader", id, &component, limits, judge)?,
            from_cache: cached,
        })
    }

    /// Compile component bytes (or take them from the verified cache): the component, its
    /// sha256 and whether it came from the cache.
    pub(crate) fn compile(
        &self,
        id: &str,
        bytes: &[u8],
    ) -> Result<(Component, String, bool), GraderError> {
        let source: [u8; 32] = Sha256::digest(bytes).into();
        let sha256 = crate::dataset::hex(&source);
        let (component, cached) = self.component(id, bytes, &source, &sha256)?;
        Ok((component, sha256, cached))
    }

    /// A linker holding WASI with nothing in it: no preopened directories, no environment, no
    /// arguments, no network; rust's std needs the interfaces to exist, not to do anything.
    /// The async flavour, so a blocking call (a sleep, a poll) is a future the deadline can
    /// drop.
    pub(crate) fn wasi_linker(&self, id: &str) -> Result<Linker<CallState>, GraderError> {
        let mut linker: Linker<CallState> = Linker::new(&self.shared.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| GraderError::Load {
            id: id.into(),
            message: e.to_string(),
        })?;
        Ok(linker)
    }

    /// The sandbox a plugin's calls run in. Refuses (as a load error) a component that could
    /// never be instantiated under the host's caps: more memories or tables than one instance
    /// may have, or an initial memory or table larger than one slot holds.
    pub(crate) fn sandbox(
        &self,
        kind: &'static str,
        id: &str,
        component: &Component,
        limits: GraderLimits,
        judge: Option<JudgeFn>,
    ) -> Result<Sandbox, GraderError> {
        let refuse = |message: String| GraderError::Load {
            id: id.into(),
            message,
        };
        // `None` only for a component that imports core modules, which no linker here
        // provides: instantiate_pre has refused it already; count it as the caps' worst case.
        let needs = component.resources_required().map_or(
            Needs {
                memories: MAX_MEMORIES,
                tables: MAX_TABLES,
            },
            |r| Needs {
                memories: r.num_memories as usize,
                tables: r.num_tables as usize,
            },
        );
        if needs.memories > MAX_MEMORIES {
            return Err(refuse(format!(
                "{kind} declares {} linear memories; an instance may have at most {MAX_MEMORIES}",
                needs.memories
            )));
        }
        if needs.tables > MAX_TABLES {
            return Err(refuse(format!(
                "{kind} declares {} tables; an instance may have at most {MAX_TABLES}",
                needs.tables
            )));
        }
        if let Some(gate) = &self.shared.gate {
            // Holds by construction (the pool has room for the caps above); checked so a
            // change to either can never leave a call waiting forever.
            if !gate.fits(needs) {
                return Err(refuse(format!(
                    "{kind} needs more memories or tables than the instance pool holds"
                )));
            }
        }
        Ok(Sandbox {
            kind,
            id: id.into(),
            shared: self.shared.clone(),
            limits,
            judge,
            needs,
        })
    }
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

/// What every call of one plugin runs under: its engine, limits and (graders) judge. Graders
/// and routers share it, so both get the same sandbox.
#[derive(Clone)]
pub(crate) struct Sandbox {
    /// `grader` or `router`: how messages name the plugin.
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    pub(crate) shared: Shared,
    pub(crate) limits: GraderLimits,
    pub(crate) judge: Option<JudgeFn>,
    /// What one call takes from the instance pool.
    needs: Needs,
}

impl Sandbox {
    /// A store for one call: its own WASI context (nothing in it), memory budget, fuel, judge
    /// caps and deadline.
    fn new_store(&self, deadline: Arc<Deadline>) -> Result<Store<CallState>, GraderError> {
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .allow_blocking_current_thread(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            budget: MemoryBudget::new(self.kind, self.limits.memory_mib, self.shared.caps),
            kind: self.kind,
            grader: self.id.clone(),
            judge: self.judge.clone(),
            limits: self.limits,
            deadline,
            judge_calls: 0,
            judge_prompt_bytes: 0,
            patterns: self.shared.patterns.clone(),
        };
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|s| &mut s.budget);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| GraderError::Call(describe_trap(&e, &self.limits, self.kind)))?;
        // The epoch never ends a call; it makes running guest code hand control back every
        // tick so the deadline race in `run` is polled.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }

    /// Run `call` on a fresh store on this thread, racing it against the call's deadline.
    /// Losing the race drops the call, which cancels the guest wherever it is, a blocking
    /// WASI call included.
    pub(crate) fn run<R>(
        &self,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, GraderError> {
        // Declared before the store, so dropped after it: the store hands its slots back to
        // the pool when it drops, and only then may another call take them.
        let _permit = self.shared.gate.as_ref().map(|g| g.acquire(self.needs));
        let deadline = Deadline::start(
            Duration::from_millis(self.limits.timeout_ms),
            self.shared.ticker.clone(),
        );
        let mut store = self.new_store(deadline.clone())?;
        let outcome = self.shared.runtime.block_on(async {
            tokio::select! {
                biased;
                r = call(&mut store) => Some(r),
                () = deadline.expired() => None,
            }
        });
        match outcome {
            Some(r) => r.map_err(|e| GraderError::Call(describe_trap(&e, &self.limits, self.kind))),
            None => Err(GraderError::Call(format!(
                "{} exceeded its {} ms deadline",
                self.kind, self.limits.timeout_ms
            ))),
        }
    }
}

impl WasmGrader {
    fn run<R>(
        &self,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, GraderError> {
        self.sandbox.run(call)
    }

    /// Create a fresh instance and drop it without calling it: what every call pays before
    /// grading (benchmarks measure it with this). Blocking, like [`WasmGrader::grade`].
    pub fn instantiate(&self) -> Result<(), GraderError> {
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
    ) -> Result<GradeOutcome, GraderError> {
        let pre = &self.pre;
        let result = self.run(async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance.call_grade(store, query, response, params).await
        })?;
        match result {
            Ok(g) => {
                let score = match g.score {
                    Some(s) if !(0.0..=1.0).contains(&s) || s.is_nan() => {
                        return Err(GraderError::Call(format!(
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
            Err(message) => Err(GraderError::Call(format!(
                "grader error: {}",
                cut(Some(message)).unwrap_or_default()
            ))),
        }
    }
}

fn describe_trap(e: &wasmtime::Error, limits: &GraderLimits, kind: &str) -> String {
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
