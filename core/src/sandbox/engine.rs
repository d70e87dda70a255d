//! The process's one engine: its configuration, the pooling allocator (with the on-demand
//! allocator as a fallback), the gate that admits calls to the pool's slots, and the small
//! runtime that drives calls' timers.

use super::deadline::EpochTicker;
use super::memory::{SlotCaps, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES};
use super::patterns::PatternCache;
use super::pool::{Free, SlotGate};
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::{Config, Engine};

/// Bytes one linear memory may grow to under the pooling allocator: the whole 32-bit space,
/// so the memory budget, not the pool, is what limits any budget up to 4 GiB.
const POOL_MEMORY_BYTES: usize = 1 << 32;
/// Elements one table may hold under the pooling allocator: each pooled table slot reserves
/// room for this many (8 MiB of address space). A Rust component's tables hold a few hundred.
const POOL_TABLE_ELEMENTS: usize = 1 << 20;

/// What every host of a process shares: one engine, one epoch ticker and one small runtime.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) engine: Engine,
    pub(super) ticker: Arc<EpochTicker>,
    pub(super) runtime: tokio::runtime::Handle,
    /// The largest memory and table one instance may have.
    pub(super) caps: SlotCaps,
    /// Admission to the pool's slots; `None` on the on-demand allocator, which has no slots.
    pub(super) gate: Option<Arc<SlotGate>>,
    /// Patterns compiled for `host.regex-captures`, shared by every plugin.
    pub(super) patterns: Arc<PatternCache>,
}

impl Shared {
    /// The process's engine, epoch ticker thread and call runtime, each created on first use.
    pub(super) fn get() -> Result<Self, String> {
        static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if shared.is_none() {
            let (engine, caps, gate) = new_engine().map_err(|e| e.to_string())?;
            let ticker = EpochTicker::start(engine.clone()).map_err(|e| e.to_string())?;
            let runtime = runtime().map_err(|e| e.to_string())?;
            *shared = Some(Shared {
                engine,
                ticker,
                runtime,
                caps,
                gate,
                patterns: Arc::default(),
            });
        }
        Ok(shared.clone().expect("initialised above"))
    }
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

/// The runtime that drives plugin calls. Each call runs on its caller's thread
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
