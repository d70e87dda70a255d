//! The WASM grader host: compile once (cached on disk), instantiate per call (cheap, from an
//! `InstancePre`), and bound every call: fuel (a deterministic instruction budget), an epoch
//! deadline (wall clock) and a memory cap. A trap, a limit or a malformed result becomes a
//! grader error for that record; the run goes on.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({ path: "../sdk/wit", world: "grader" });
}

pub use bindings::ipw::plugins::types::{Grade, Level, Query};

/// How often the epoch advances; the wall-clock deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Strings a grader returns are cut to this many bytes (the record stays small).
const MAX_TEXT: usize = 4096;

/// Per-call limits. Each is a separate knob with a safe default.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraderLimits {
    /// Instruction budget per call (wasmtime fuel). Default 1e9.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Wall-clock limit per call, milliseconds. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Linear-memory cap per instance, MiB. Default 64.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
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

impl Default for GraderLimits {
    fn default() -> Self {
        Self {
            fuel: default_fuel(),
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
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
    /// The call trapped, ran out of fuel or time, hit the memory cap, or returned an error.
    #[error("{0}")]
    Call(String),
}

/// The judge call the host performs for guests: prompt in, reply text out.
pub type JudgeFn = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// State of one grader call's store.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    grader: String,
    judge: Option<JudgeFn>,
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
        let g = &self.grader;
        match level {
            Level::Trace => tracing::trace!(grader = %g, "{message}"),
            Level::Debug => tracing::debug!(grader = %g, "{message}"),
            Level::Info => tracing::info!(grader = %g, "{message}"),
            Level::Warn => tracing::warn!(grader = %g, "{message}"),
            Level::Error => tracing::error!(grader = %g, "{message}"),
        }
    }

    fn judge(&mut self, prompt: String) -> Result<String, String> {
        match &self.judge {
            Some(j) => j(&prompt),
            None => Err(
                "no judge model configured (add a [grading.judge] table to the experiment)".into(),
            ),
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while a grader call runs and sleeps
/// otherwise, so deadlines cost nothing while the profiler waits on a model (a free-running
/// 100 Hz ticker was a fifth of the profiler's own CPU).
struct EpochTicker {
    running: Mutex<usize>,
    wake: Condvar,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Arc<Self>> {
        let ticker = Arc::new(Self {
            running: Mutex::new(0),
            wake: Condvar::new(),
        });
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("ipw-wasm-epoch".into())
            .spawn(move || loop {
                {
                    let mut running = t.running.lock().unwrap_or_else(|p| p.into_inner());
                    while *running == 0 {
                        running = t.wake.wait(running).unwrap_or_else(|p| p.into_inner());
                    }
                }
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            })?;
        Ok(ticker)
    }

    /// Keep the epoch advancing until the guard drops.
    fn enter(self: &Arc<Self>) -> TickGuard {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.wake.notify_one();
        TickGuard(self.clone())
    }
}

struct TickGuard(Arc<EpochTicker>);

impl Drop for TickGuard {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
    }
}

/// Compiles and caches grader components; shared by every grader of a process.
#[derive(Clone)]
pub struct GraderHost {
    engine: Engine,
    ticker: Arc<EpochTicker>,
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

impl GraderHost {
    /// An engine with fuel and epoch interruption on, and a ticker thread for the deadline
    /// (one of each per process, shared by every host). `cache_dir`: where compiled
    /// components are kept (`None`: no disk cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, GraderError> {
        static SHARED: Mutex<Option<(Engine, Arc<EpochTicker>)>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if shared.is_none() {
            let engine_err = |message: String| GraderError::Load {
                id: "engine".into(),
                message,
            };
            let mut config = Config::new();
            config
                .consume_fuel(true)
                .epoch_interruption(true)
                .wasm_component_model(true);
            let engine = Engine::new(&config).map_err(|e| engine_err(e.to_string()))?;
            let ticker =
                EpochTicker::start(engine.clone()).map_err(|e| engine_err(e.to_string()))?;
            *shared = Some((engine, ticker));
        }
        let (engine, ticker) = shared.clone().expect("initialised above");
        Ok(Self {
            engine,
            ticker,
            cache_dir,
        })
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
        self.engine.precompile_compatibility_hash().hash(&mut h);
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{:016x}.cwasm", h.finish())))
    }

    fn component(
        &self,
        id: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), GraderError> {
        let load_err = |message: String| GraderError::Load {
            id: id.into(),
            message,
        };
        if let Some(path) = self.cache_path(sha256) {
            if path.is_file() {
                // SAFETY: the file is one we serialised ourselves into our own cache directory,
                // keyed by the wasm hash and the engine's compatibility hash.
                match unsafe { Component::deserialize_file(&self.engine, &path) } {
                    Ok(c) => return Ok((c, true)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e}")
                    }
                }
            }
            let component = Component::new(&self.engine, bytes)
                .map_err(|e| load_err(format!("not a valid component: {e:#}")))?;
            if let Ok(serialized) = component.serialize() {
                let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
                let tmp = path.with_extension("part");
                if std::fs::write(&tmp, serialized).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
            }
            return Ok((component, false));
        }
        Component::new(&self.engine, bytes)
            .map(|c| (c, false))
            .map_err(|e| load_err(format!("not a valid component: {e:#}")))
    }

    /// Load a grader from component bytes: compile (or take from the cache) and pre-link.
    pub fn load(
        &self,
        id: &str,
        bytes: &[u8],
        limits: GraderLimits,
        judge: Option<JudgeFn>,
    ) -> Result<WasmGrader, GraderError> {
        let sha256 = crate::dataset::hex(&Sha256::digest(bytes));
        let (component, cached) = self.component(id, bytes, &sha256)?;
        let load_err = |message: String| GraderError::Load {
            id: id.into(),
            message,
        };
        let mut linker: Linker<CallState> = Linker::new(&self.engine);
        // WASI with nothing in it: no preopened directories, no environment, no arguments,
        // no network; rust's std needs the interfaces to exist, not to do anything.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| load_err(e.to_string()))?;
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
            engine: self.engine.clone(),
            ticker: self.ticker.clone(),
            limits,
            judge,
            from_cache: cached,
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
    engine: Engine,
    ticker: Arc<EpochTicker>,
    limits: GraderLimits,
    judge: Option<JudgeFn>,
    /// Whether the compiled component came from the disk cache.
    pub from_cache: bool,
}

impl WasmGrader {
    /// A store for one call: its own WASI context (nothing in it), memory cap, fuel and
    /// deadline.
    fn new_store(&self) -> Result<Store<CallState>, GraderError> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_mib as usize * 1024 * 1024)
            .instances(64)
            .tables(64)
            .memories(16)
            .trap_on_grow_failure(true)
            .build();
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .allow_blocking_current_thread(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limits,
            grader: self.id.clone(),
            judge: self.judge.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| GraderError::Call(describe_trap(&e, &self.limits)))?;
        let ticks = (self.limits.timeout_ms as u128)
            .div_ceil(EPOCH_TICK.as_millis())
            .max(1) as u64;
        store.set_epoch_deadline(ticks);
        Ok(store)
    }

    /// Create a fresh instance and drop it without calling it: what every call pays before
    /// grading (benchmarks measure it with this).
    pub fn instantiate(&self) -> Result<(), GraderError> {
        let _ticking = self.ticker.enter();
        let mut store = self.new_store()?;
        self.pre
            .instantiate(&mut store)
            .map(drop)
            .map_err(|e| GraderError::Call(describe_trap(&e, &self.limits)))
    }

    /// Grade one response in a fresh instance under the limits.
    pub fn grade(
        &self,
        query: &Query,
        response: &str,
        params: &str,
    ) -> Result<GradeOutcome, GraderError> {
        let _ticking = self.ticker.enter();
        let mut store = self.new_store()?;
        let call = |e: wasmtime::Error| GraderError::Call(describe_trap(&e, &self.limits));
        let instance = self.pre.instantiate(&mut store).map_err(call)?;
        match instance
            .call_grade(&mut store, query, response, params)
            .map_err(call)?
        {
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

fn describe_trap(e: &wasmtime::Error, limits: &GraderLimits) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            format!("grader ran out of fuel ({} units)", limits.fuel)
        }
        Some(wasmtime::Trap::Interrupt) => {
            format!("grader exceeded its {} ms deadline", limits.timeout_ms)
        }
        Some(t) => format!("grader trapped: {t}"),
        None => {
            let msg = format!("{e:#}");
            if msg.contains("memory") && (msg.contains("limit") || msg.contains("grow")) {
                format!("grader hit the {} MiB memory cap: {msg}", limits.memory_mib)
            } else {
                format!("grader failed: {msg}")
            }
        }
    }
}
