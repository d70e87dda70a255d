//! Routing: which model should answer each query. Runs of several models on the same queries
//! become one query x model table ([`crate::joined`]); routers ([`routers`]) decide per query; the
//! simulation ([`simulate`]) reports what each router keeps in accuracy and saves in energy,
//! compute and cost against sending everything to a reference model, with intervals, and how
//! each router's quality and cost move with its parameter.

pub mod bench;
pub mod give_up;
pub mod learn;
pub mod routers;
pub mod simulate;
pub mod wasm;
pub mod workload;

use crate::config::ModelMeta;
use crate::joined::{self, Table};
use crate::study::GroupBy;
use routers::{Context, Objective, Router};
use simulate::{CurvePoint, GapRecovery, RouterReport};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Version of `route.json`.
pub const ROUTE_SCHEMA: u32 = 1;

/// What `ipw route` was asked.
#[derive(Debug, Clone)]
pub struct RouteRequest {
    /// Run directories, or folders of them.
    pub runs: Vec<PathBuf>,
    /// The model every saving is measured against.
    pub reference: String,
    /// Router specs (built-in names).
    pub routers: Vec<String>,
    /// What oracle-based routers minimise unless their spec says; `None`: energy, or the first
    /// of compute and cost with figures where no run has energy ([`Objective::default_for`]).
    pub objective: Option<Objective>,
    /// Seed for random routers and bootstrap intervals.
    pub seed: u64,
    /// Metadata that overrides the runs' own, per model name.
    pub meta: BTreeMap<String, ModelMeta>,
    /// The weak model of the weak/strong pair for APGR/CPT (default: the model with the lowest
    /// accuracy); the strong one is the reference.
    pub weak: Option<String>,
    /// An arrival trace to replay through every router.
    pub workload: Option<PathBuf>,
    /// Every router's figures also per group (`--by domain`, dataset, subject, category).
    pub by: Option<GroupBy>,
    /// Where each run's energy was drawn: gives every query its grams CO2e, so routers report
    /// carbon and the oracle can minimise it (`--objective carbon`).
    pub footprint: Option<crate::footprint::Footprints>,
    /// A trained router (`ipw route train`): route only the queries it held out of training.
    pub held_out_of: Option<PathBuf>,
}

/// Everything `ipw route` reports (written as `route.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteReport {
    /// Format version.
    pub schema: u32,
    /// The reference model.
    pub reference: String,
    /// What each router's `groups` are per, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<GroupBy>,
    /// What the oracle minimised.
    pub objective: Objective,
    /// `net` or `gross`: which energy the figures use.
    pub energy_basis: &'static str,
    /// The models, with metadata and aggregates.
    pub models: Vec<joined::Column>,
    /// Queries routed (every model has them).
    pub queries: usize,
    /// Queries some runs lack, with the models that lack them (not routed).
    pub incomplete: Vec<(String, Vec<String>)>,
    /// One per router.
    pub routers: Vec<RouterReport>,
    /// Quality and cost over each sweepable router's parameter.
    pub curves: BTreeMap<String, Vec<CurvePoint>>,
    /// The weak/strong pair for gap recovery, when the strong (the reference) is the more
    /// accurate; otherwise there is no gap to recover and no gap figures.
    pub pair: Option<(String, String)>,
    /// APGR and CPT of the orderings ipw can compute: random (exact), prompt length, oracle.
    pub gap_recovery: Vec<GapRecovery>,
    /// With `--workload`: per router, the reference's load taken off, per hour and at peak.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workload: Vec<workload::WorkloadReport>,
    /// With `--held-out-of`: the trained router whose held-out queries these are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_of: Option<String>,
    /// Per trained router among the routers: what it was trained on, and how many of the
    /// routed queries it trained on (its figures on those are not a test of it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub learned: Vec<LearnedNote>,
}

/// A trained router in a routing report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LearnedNote {
    /// Its spec.
    pub router: String,
    /// Its training metadata.
    pub meta: learn::LearnedMeta,
    /// Routed queries on its training side of the split: not held out from it.
    pub in_sample_queries: usize,
}

/// Read a `--meta` file: `[models.NAME]` tables with the fields of `[models.meta]`.
pub fn read_meta_file(path: &std::path::Path) -> Result<BTreeMap<String, ModelMeta>, RouteError> {
    read_study_meta(path).map(|(models, _)| models)
}

/// A `--meta` file with its `[accelerators.NAME]` tables too (release date, `local`/`cloud`),
/// which `ipw trend` reads; the other commands take the models only.
#[allow(clippy::type_complexity)]
pub fn read_study_meta(
    path: &std::path::Path,
) -> Result<
    (
        BTreeMap<String, ModelMeta>,
        BTreeMap<String, crate::study::trend::AcceleratorMeta>,
    ),
    RouteError,
> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MetaFile {
        #[serde(default)]
        models: BTreeMap<String, ModelMeta>,
        #[serde(default)]
        accelerators: BTreeMap<String, crate::study::trend::AcceleratorMeta>,
    }
    let err = |message: String| RouteError::Meta {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    toml::from_str::<MetaFile>(&text)
        .map(|m| (m.models, m.accelerators))
        .map_err(|e| err(e.to_string()))
}

/// Why routing could not run.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The table could not be built.
    #[error(transparent)]
    Table(#[from] joined::TableError),
    /// A router spec is wrong.
    #[error(transparent)]
    Spec(#[from] routers::SpecError),
    /// A `--meta` file could not be read.
    #[error("{}: {message}", path.display())]
    Meta {
        /// The file.
        path: PathBuf,
        /// What is wrong (TOML errors name the line and field).
        message: String,
    },
    /// The arrival trace could not be read.
    #[error(transparent)]
    Trace(#[from] workload::TraceError),
    /// The footprint could not be applied to a run.
    #[error(transparent)]
    Footprint(#[from] crate::footprint::FootprintError),
    /// Nothing to route.
    #[error("no query is in every run; {0} queries are in some runs only")]
    NoCommonQueries(usize),
    /// A trained router's split could not be used.
    #[error("{}: {message}", path.display())]
    HeldOut {
        /// The router.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The trained router in the file at `path`, or why it is none.
fn read_learned(path: &std::path::Path) -> Result<learn::LearnedRouter, RouteError> {
    let err = |message: String| RouteError::HeldOut {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    learn::LearnedRouter::from_component(&bytes)
        .map_err(err)?
        .ok_or_else(|| {
            err("not a router trained by `ipw route train`: it has no held-out queries".into())
        })
}

/// The file of a `.wasm` router spec and its parameters (`path.wasm[:{json}]`).
fn wasm_spec(spec: &str) -> Option<(&str, &str)> {
    let end = spec.find(".wasm").map(|i| i + ".wasm".len())?;
    Some(spec.split_at(end))
}

/// The query x model table of `runs` (run or experiment directories) with `meta` overriding
/// the runs' metadata and, with a footprint, every query's grams CO2e: what routers are
/// simulated, and trained, on. No query in every run is an error.
pub fn table(
    runs: &[PathBuf],
    meta: &BTreeMap<String, ModelMeta>,
    footprint: Option<&crate::footprint::Footprints>,
) -> Result<Table, RouteError> {
    let runs = joined::find_runs(runs)?;
    let mut table = joined::build(&runs, meta)?;
    if let Some(f) = footprint {
        f.apply_carbon(&mut table)?;
    }
    if table.rows.is_empty() {
        return Err(RouteError::NoCommonQueries(table.incomplete.len()));
    }
    Ok(table)
}

/// Build the table and route it with every router.
pub fn route(req: &RouteRequest) -> Result<RouteReport, RouteError> {
    let mut table = table(&req.runs, &req.meta, req.footprint.as_ref())?;
    let mut held_out_of = None;
    if let Some(path) = &req.held_out_of {
        let learned = read_learned(path)?;
        let holdout = learned.meta.holdout;
        if holdout.fraction <= 0.0 {
            return Err(RouteError::HeldOut {
                path: path.clone(),
                message: "it was trained with --holdout 0: it held no query out".into(),
            });
        }
        table.retain_rows(|r| holdout.holds_out(r));
        if table.rows.is_empty() {
            return Err(RouteError::HeldOut {
                path: path.clone(),
                message: format!(
                    "none of these runs' queries is among those it held out ({} of the runs it was trained on)",
                    learned.meta.held_out_queries
                ),
            });
        }
        held_out_of = Some(path.display().to_string());
    }
    let reference = table.column(&req.reference)?;
    let objective = req
        .objective
        .unwrap_or_else(|| Objective::default_for(&table));
    let ctx = Context {
        reference,
        objective,
        seed: req.seed,
    };
    let mut reports = Vec::new();
    let mut curves = BTreeMap::new();
    for spec in &req.routers {
        let mut r = make_router(spec, &table, ctx)?;
        reports.push(simulate::simulate_grouped(
            r.as_mut(),
            &table,
            reference,
            req.seed,
            req.by,
        ));
        if let Some(points) = sweep(spec, &table, ctx)? {
            curves.insert(spec.clone(), points);
        }
    }
    let weak = match &req.weak {
        Some(w) => Some(table.column(w)?),
        None => (0..table.columns.len())
            .filter(|&c| c != reference)
            .min_by(|&a, &b| {
                let acc = |c: usize| table.columns[c].aggregates.accuracy;
                acc(a).total_cmp(&acc(b))
            }),
    };
    let mut loads = Vec::new();
    if let Some(path) = &req.workload {
        let trace = workload::read_trace(path)?;
        for spec in &req.routers {
            let mut r = make_router(spec, &table, ctx)?;
            loads.push(workload::replay(
                &trace,
                r.as_mut(),
                &table,
                reference,
                req.seed,
            ));
        }
    }
    let mut learned = Vec::new();
    for spec in &req.routers {
        let Some((path, _)) = wasm_spec(spec) else {
            continue;
        };
        let bytes = std::fs::read(path).unwrap_or_default();
        if let Ok(Some(l)) = learn::LearnedRouter::from_component(&bytes) {
            let in_sample = table
                .rows
                .iter()
                .filter(|r| !l.meta.holdout.holds_out(r))
                .count();
            learned.push((spec.clone(), l, in_sample));
        }
    }
    let mut gap_recovery = Vec::new();
    let mut pair = None;
    if let Some(weak) = weak.filter(|&w| w != reference) {
        let oracle: Vec<f64> = table
            .rows
            .iter()
            .map(|r| r.outcomes[reference].score - r.outcomes[weak].score)
            .collect();
        let length: Vec<f64> = table
            .rows
            .iter()
            .map(|r| r.prompt_tokens.unwrap_or(0) as f64)
            .collect();
        let any = simulate::gap_recovery(&table, weak, reference, "oracle", &oracle);
        if let Some(o) = any {
            pair = Some((
                table.columns[weak].name.clone(),
                table.columns[reference].name.clone(),
            ));
            gap_recovery.push(simulate::random_gap_recovery(100));
            if let Some(l) =
                simulate::gap_recovery(&table, weak, reference, "prompt_tokens", &length)
            {
                gap_recovery.push(l);
            }
            gap_recovery.push(o);
            // A trained router orders queries by how unlikely the weak model is to do as
            // well as the reference, from the same parameters and code as its component.
            for (spec, l, _) in &learned {
                let model = l.model();
                let Some(j) = model
                    .cheaper
                    .iter()
                    .position(|c| c.name == table.columns[weak].name)
                else {
                    continue;
                };
                let priority: Vec<f64> = table
                    .rows
                    .iter()
                    .map(|r| -f64::from(l.logits(r)[j]))
                    .collect();
                if let Some(g) = simulate::gap_recovery(&table, weak, reference, spec, &priority) {
                    gap_recovery.push(g);
                }
            }
        }
    }
    Ok(RouteReport {
        schema: ROUTE_SCHEMA,
        reference: table.columns[reference].name.clone(),
        by: req.by,
        objective,
        energy_basis: table.energy_basis,
        queries: table.rows.len(),
        incomplete: table.incomplete.clone(),
        models: table.columns.clone(),
        routers: reports,
        curves,
        pair,
        gap_recovery,
        workload: loads,
        held_out_of,
        learned: learned
            .into_iter()
            .map(|(router, l, in_sample_queries)| LearnedNote {
                router,
                meta: l.meta,
                in_sample_queries,
            })
            .collect(),
    })
}

/// A built-in router, or a WASM one: `path/to/router.wasm`, optionally followed by
/// `:{"json": "params"}`.
pub fn make_router(spec: &str, table: &Table, ctx: Context) -> Result<Box<dyn Router>, RouteError> {
    let Some((path, rest)) = wasm_spec(spec) else {
        return Ok(routers::builtin(spec, table, ctx)?);
    };
    let params = match rest.strip_prefix(':') {
        Some(p) => p,
        None if rest.is_empty() => "{}",
        None => {
            return Err(RouteError::Spec(routers::SpecError {
                spec: spec.into(),
                message: "after the .wasm path, give `:` and a JSON object of parameters".into(),
            }))
        }
    };
    // A trained router names the models it was trained on, so a table of others is refused
    // here, once, instead of failing every decision.
    let bytes = std::fs::read(path).unwrap_or_default();
    if let Ok(Some(learned)) = learn::LearnedRouter::from_component(&bytes) {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        learned.check_models(&names).map_err(|message| {
            RouteError::Spec(routers::SpecError {
                spec: spec.into(),
                message,
            })
        })?;
    }
    let router = wasm::WasmRouter::load(
        spec,
        std::path::Path::new(path),
        params,
        crate::sandbox::Limits::router(),
        ctx.reference,
    )
    .map_err(|e| {
        RouteError::Spec(routers::SpecError {
            spec: spec.into(),
            message: e.to_string(),
        })
    })?;
    Ok(Box::new(router))
}

/// For a router with a parameter (a random share, p, a prompt-length threshold), its figures
/// over a grid of that parameter; `None` for routers without one.
fn sweep(spec: &str, table: &Table, ctx: Context) -> Result<Option<Vec<CurvePoint>>, RouteError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let tenths: Vec<f64> = (0..=10).map(|k| k as f64 / 10.0).collect();
    let (grid, make): (Vec<f64>, Box<dyn Fn(f64) -> String>) = match parts[..] {
        ["random", _] => (tenths, Box::new(|v| format!("random:{v}"))),
        ["p-accurate", _, ref rest @ ..] => {
            // The fallback and objective, as given.
            let rest: String = rest.iter().map(|r| format!(":{r}")).collect();
            (tenths, Box::new(move |v| format!("p-accurate:{v}{rest}")))
        }
        ["threshold", feature, _, model] => {
            let mut sizes: Vec<f64> = table
                .rows
                .iter()
                .filter_map(|r| {
                    if feature == "prompt_chars" {
                        Some(r.prompt.chars().count() as f64)
                    } else {
                        r.prompt_tokens.map(|t| t as f64)
                    }
                })
                .collect();
            sizes.sort_by(f64::total_cmp);
            if sizes.is_empty() {
                return Ok(None);
            }
            let mut grid: Vec<f64> = (0..=10)
                .map(|k| crate::analysis::stats::percentile(&sizes, k as f64 / 10.0))
                .collect();
            grid.insert(0, sizes[0] - 1.0);
            grid.dedup();
            let (feature, model) = (feature.to_string(), model.to_string());
            (
                grid,
                Box::new(move |v| format!("threshold:{feature}:{v}:{model}")),
            )
        }
        _ => match wasm_spec(spec) {
            // A trained router's threshold.
            Some((path, _)) if read_learned(std::path::Path::new(path)).is_ok() => {
                let path = path.to_string();
                (
                    tenths,
                    Box::new(move |v| format!("{path}:{{\"threshold\": {v}}}")),
                )
            }
            _ => return Ok(None),
        },
    };
    let mut points = Vec::new();
    for v in grid {
        let mut r: Box<dyn Router> = make_router(&make(v), table, ctx)?;
        points.push(simulate::point(r.as_mut(), table, ctx.reference, v));
    }
    Ok(Some(points))
}

#[cfg(test)]
mod tests;
