//! WASM routers: a `.wasm` component of the `router` world (see `sdk/wit`), loaded like a
//! grader and run in the same sandbox (fuel, wall-clock deadline, one memory budget, nothing
//! from the host but a log), a fresh instance per decision. A router sees the query and every
//! candidate's metadata and aggregates, never a candidate's outcome on the query. A trap, a
//! limit, an error or a choice outside the candidates is a routing error for that query.

use super::routers::{Decision, Router};
use crate::grade::host::{CallState, Sandbox};
use crate::grade::{GraderError, GraderHost, GraderLimits};
use crate::joined::{Row, Table};
use wasmtime::component::HasSelf;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "router",
        exports: { default: async },
        // What the host lends (log, judge, regex) is implemented once, for graders.
        with: {
            "ipw:plugins/types": crate::grade::host::bindings::ipw::plugins::types,
            "ipw:plugins/host": crate::grade::host::bindings::ipw::plugins::host,
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
    /// Load `path` (its name in reports is the spec as given) under `limits`; `params` is the
    /// JSON object passed to every call.
    pub fn load(
        spec: &str,
        path: &std::path::Path,
        params: &str,
        limits: GraderLimits,
        reference: usize,
    ) -> Result<Self, GraderError> {
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.into());
        let load_err = |message: String| GraderError::Load {
            id: id.clone(),
            message,
        };
        let bytes = std::fs::read(path)
            .map_err(|e| load_err(format!("cannot read {}: {e}", path.display())))?;
        let host = GraderHost::new(GraderHost::default_cache_dir())?;
        let (component, sha256, _) = host.compile(&id, &bytes)?;
        let mut linker = host.wasi_linker(&id)?;
        bindings::Router::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| load_err(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| load_err(format!("does not fit the ipw router world: {e:#}")))?;
        let pre = bindings::RouterPre::new(pre)
            .map_err(|e| load_err(format!("does not export `route`: {e:#}")))?;
        Ok(Self {
            name: spec.into(),
            sha256,
            pre,
            sandbox: host.sandbox("router", &id, &component, limits, None)?,
            params: params.into(),
            reference,
        })
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
