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
}

/// Build the table and route it with every router.
pub fn route(req: &RouteRequest) -> Result<RouteReport, RouteError> {
    let runs = joined::find_runs(&req.runs)?;
    let mut table = joined::build(&runs, &req.meta)?;
    if let Some(f) = &req.footprint {
        f.apply_carbon(&mut table)?;
    }
    if table.rows.is_empty() {
        return Err(RouteError::NoCommonQueries(table.incomplete.len()));
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
    })
}

/// A built-in router, or a WASM one: `path/to/router.wasm`, optionally followed by
/// `:{"json": "params"}`.
pub fn make_router(spec: &str, table: &Table, ctx: Context) -> Result<Box<dyn Router>, RouteError> {
    let Some(end) = spec.find(".wasm").map(|i| i + ".wasm".len()) else {
        return Ok(routers::builtin(spec, table, ctx)?);
    };
    let (path, rest) = spec.split_at(end);
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
        _ => return Ok(None),
    };
    let mut points = Vec::new();
    for v in grid {
        let mut r: Box<dyn Router> = routers::builtin(&make(v), table, ctx)?;
        points.push(simulate::point(r.as_mut(), table, ctx.reference, v));
    }
    Ok(Some(points))
}

#[cfg(test)]
mod tests;
