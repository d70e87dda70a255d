//! The host every plugin of a process is loaded through: the shared engine, the compiled
//! cache, and, per plugin, its linker (WASI with nothing in it, plus the shared host calls and
//! the plugin world's own imports) and its [`Sandbox`].

use super::cache::ComponentCache;
use super::call::Sandbox;
use super::engine::Shared;
use super::error::SandboxError;
use super::host_calls::{CallState, JudgeFn};
use super::limits::Limits;
use super::memory::{MAX_MEMORIES, MAX_TABLES};
use super::pool::Needs;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use wasmtime::component::{Component, InstancePre, Linker};

/// Compiles and caches plugin components and makes their sandboxes; shared by every plugin
/// of a process (all hosts share one engine).
#[derive(Clone)]
pub struct Host {
    shared: Shared,
    cache: ComponentCache,
}

/// A plugin ready to instantiate: pre-linked against its world and the host calls, with the
/// sandbox its calls run in.
pub struct Loaded {
    /// The pre-linked component; wrap it in the world's own `...Pre` to call its exports.
    pub pre: InstancePre<CallState>,
    /// Where its calls run.
    pub sandbox: Sandbox,
    /// sha256 of the component bytes.
    pub sha256: String,
    /// Whether the compiled component came from the disk cache.
    pub from_cache: bool,
}

impl Host {
    /// A host on the process's shared engine (fuel and epoch interruption on), epoch ticker
    /// thread and call runtime, each created on first use. `cache_dir`: where compiled
    /// components are kept (`None`: no disk cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, SandboxError> {
        let shared = Shared::get().map_err(SandboxError::Engine)?;
        Ok(Self {
            shared,
            cache: ComponentCache { dir: cache_dir },
        })
    }

    /// Whether calls run on the pooling allocator (`false`: the on-demand fallback, when the
    /// pool could not be reserved or `IPW_WASM_POOL=0`).
    pub fn pooled(&self) -> bool {
        self.shared.gate.is_some()
    }

    /// The default compiled-component cache: `$IPW_CACHE/wasm` or `~/.cache/ipw/wasm`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        ComponentCache::default_dir()
    }

    /// Load a plugin of `kind` (`grader`, `router`, ...; it names the plugin in messages) from
    /// component bytes: compile it (or take it from the verified cache), link it against WASI
    /// (empty) and what `link` adds (the world's imports, the host calls among them: pass the
    /// world's `add_to_linker`), and make the sandbox its calls run in under `limits`, with `judge`
    /// behind the `judge` host call (`None`: the guest is told it has none).
    pub fn load(
        &self,
        kind: &'static str,
        id: &str,
        bytes: &[u8],
        limits: Limits,
        judge: Option<JudgeFn>,
        link: impl FnOnce(&mut Linker<CallState>) -> wasmtime::Result<()>,
    ) -> Result<Loaded, SandboxError> {
        let load_err = |message: String| SandboxError::Load {
            kind,
            id: id.into(),
            message,
        };
        let digest = Sha256::digest(bytes);
        let sha256 = format!("{digest:x}");
        let source: [u8; 32] = digest.into();
        let (component, from_cache) =
            self.cache
                .component(&self.shared.engine, kind, id, bytes, &source, &sha256)?;
        // The async flavour of WASI, so a blocking call (a sleep, a poll) is a future the
        // deadline can drop. Rust's std needs the interfaces to exist, not to do anything: the
        // store's context (see `Sandbox`) grants nothing.
        let mut linker: Linker<CallState> = Linker::new(&self.shared.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| load_err(e.to_string()))?;
        link(&mut linker).map_err(|e| load_err(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| load_err(format!("does not fit the ipw {kind} world: {e:#}")))?;
        Ok(Loaded {
            pre,
            sandbox: self.sandbox(kind, id, &component, limits, judge)?,
            sha256,
            from_cache,
        })
    }

    /// The sandbox a plugin's calls run in. Refuses (as a load error) a component that could
    /// never be instantiated under the host's caps: more memories or tables than one instance
    /// may have, or an initial memory or table larger than one slot holds.
    fn sandbox(
        &self,
        kind: &'static str,
        id: &str,
        component: &Component,
        limits: Limits,
        judge: Option<JudgeFn>,
    ) -> Result<Sandbox, SandboxError> {
        let refuse = |message: String| SandboxError::Load {
            kind,
            id: id.into(),
            message,
        };
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
            calls: Default::default(),
        })
    }
}
