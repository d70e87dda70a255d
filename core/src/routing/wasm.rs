//! WASM routers: a `.wasm` component of the `router` world (see `sdk/wit`), run in the WASM
//! sandbox ([`crate::sandbox`]: fuel, wall-clock deadline, one memory budget, nothing from the
//! host but a log and regexes) under a router's tight limits ([`Limits::router`]), a fresh
//! instance per decision. A router sees the query and every candidate's metadata and
//! aggregates, never a candidate's outcome on the query. A trap, a limit, an error or a choice
//! outside the candidates is a routing error for that query; a router failing
//! [`GIVE_UP_AFTER`] decisions in a row is given up on ([`super::give_up`]).

use super::give_up::GIVE_UP_AFTER;
use super::routers::{Decision, Router};
use crate::joined::{Row, Table};
use crate::sandbox::{CallState, Host, Limits, Sandbox, SandboxError};
use wasmtime::component::HasSelf;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "router",
        exports: { default: async },
        // What the host lends (log, judge, regex) is the sandbox's, for every plugin kind.
        with: {
            "ipw:plugins/types": crate::sandbox::host_calls::bindings::ipw::plugins::types,
            "ipw:plugins/host": crate::sandbox::host_calls::bindings::ipw::plugins::host,
        },
    });
}

use bindings::ipw::plugins::routing::{Candidate, RouteQuery};

impl bindings::ipw::plugins::routing::Host for CallState {}

/// A loaded WASM router.
pub struct WasmRouter {
    name: String,
    /// sha256 of the component.
    pub sha256: String,
    pre: bindings::RouterPre<CallState>,
    sandbox: Sandbox,
    params: String,
    reference: usize,
}

impl WasmRouter {
    /// Load `path` (its name in reports is the spec as given) under `limits` (normally
    /// [`Limits::router`]); `params` is the JSON object passed to every call.
    pub fn load(
        spec: &str,
        path: &std::path::Path,
        params: &str,
        limits: Limits,
        reference: usize,
    ) -> Result<Self, SandboxError> {
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.into());
        let load_err = |message: String| SandboxError::Load {
            kind: "router",
            id: id.clone(),
            message,
        };
        let bytes = std::fs::read(path)
            .map_err(|e| load_err(format!("cannot read {}: {e}", path.display())))?;
        let host = Host::new(Host::default_cache_dir())?;
        // No judge: a routing decision may not call a model.
        let loaded = host.load("router", &id, &bytes, limits, None, |linker| {
            bindings::Router::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        })?;
        let pre = bindings::RouterPre::new(loaded.pre)
            .map_err(|e| load_err(format!("does not export `route`: {e:#}")))?;
        Ok(Self {
            name: spec.into(),
            sha256: loaded.sha256,
            pre,
            sandbox: loaded.sandbox,
            params: params.into(),
            reference,
        })
    }

    /// Decisions the router was asked for so far (each a sandboxed call), failed ones
    /// included.
    pub fn calls(&self) -> u64 {
        self.sandbox.calls()
    }

    /// The limits each decision runs under.
    pub fn limits(&self) -> &Limits {
        self.sandbox.limits()
    }
}

fn candidates(table: &Table, reference: usize) -> Vec<Candidate> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| Candidate {
            name: c.name.clone(),
            accelerator: c.accelerator.clone(),
            params_b: c.meta.params_b,
            active_params_b: c.meta.active_params_b(),
            price_in_per_mtok: c.meta.price_in_per_mtok,
            price_out_per_mtok: c.meta.price_out_per_mtok,
            accuracy: c.aggregates.accuracy,
            energy_j: c.aggregates.energy_j,
            latency_s: c.aggregates.latency_s,
            reference: i == reference,
        })
        .collect()
}

impl Router for WasmRouter {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn give_up_after(&self) -> Option<usize> {
        Some(GIVE_UP_AFTER)
    }

    fn decide(&mut self, row: &Row, table: &Table) -> Result<Decision, String> {
        let query = RouteQuery {
            id: row.query_id.clone(),
            prompt: row.prompt.clone(),
            dataset: row.dataset.clone(),
            subject: row.subject.clone(),
            prompt_tokens: row.prompt_tokens,
        };
        let cands = candidates(table, self.reference);
        let pre = &self.pre;
        let params = &self.params;
        let choice = self
            .sandbox
            .run(async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_route(store, &query, &cands, params).await
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("router error: {}", e.chars().take(4096).collect::<String>()))?;
        let model = choice.model as usize;
        if model >= cands.len() {
            return Err(format!(
                "the router chose model #{model}, which is not a candidate (there are {})",
                cands.len()
            ));
        }
        let confidence = match choice.confidence {
            Some(c) if !(0.0..=1.0).contains(&c) || c.is_nan() => {
                return Err(format!("the router gave confidence {c}, outside [0, 1]"))
            }
            c => c,
        };
        Ok(Decision {
            tried: vec![model],
            confidence,
        })
    }
}
