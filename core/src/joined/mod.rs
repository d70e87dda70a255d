//! Runs joined by query id: the query x model table that routing, the study (`ipw compare`,
//! `ipw coverage`, `ipw trend`), export and the report all read. Each column is one run (a
//! model on an accelerator, with its metadata), each row one query every run answered, each
//! cell what that model did on that query (score, energy, latency, tokens, FLOPs, cost).
//! Built from run directories only, so anything measured (or imported) can be read again.

mod streamed;

use crate::config::ModelMeta;
use crate::records::{Detail, Record, RunDir};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Why a table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A run directory (or its records) could not be read.
    #[error("{}: {message}", path.display())]
    Run {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No run directory among the paths.
    #[error("no run directory (one with a manifest.json) in {0}")]
    NoRuns(String),
    /// Two runs carry the same model on the same accelerator.
    #[error("`{name}` appears twice: {} and {}; route one of them, or give them different [models.meta] accelerator labels", first.display(), second.display())]
    Duplicate {
        /// The column name.
        name: String,
        /// The first run.
        first: PathBuf,
        /// The second run.
        second: PathBuf,
    },
    /// A model named on the command line is not a column.
    #[error("no model `{name}` among the runs; the models are: {known}")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The columns, comma-separated.
        known: String,
    },
}

/// Where a model's energy figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergySource {
    /// Measured by samplers during the run.
    Measured,
    /// Computed from the model's declared energy model (J per token): an estimate.
    Declared,
    /// Neither: energy figures that need this model are unavailable.
    None,
}

impl EnergySource {
    /// A column's source: measured when any of its rows' records has gross energy, else its
    /// model's declared energy model, if any.
    pub(crate) fn of(measured: bool, meta: &ModelMeta) -> EnergySource {
        if measured {
            EnergySource::Measured
        } else if meta.energy_model.is_some() {
            EnergySource::Declared
        } else {
            EnergySource::None
        }
    }
}

/// One model (a run), a column of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Column {
    /// Model name, with `@accelerator` when one model ran on several accelerators.
    pub name: String,
    /// The model's metadata (from the run's experiment, overridden by `--meta`).
    pub meta: ModelMeta,
    /// The accelerator label: `meta.accelerator`, else the run's GPUs, else its CPU.
    pub accelerator: String,
    /// The run directory.
    pub run: PathBuf,
    /// Where its energy comes from.
    pub energy: EnergySource,
    /// Per-model aggregates over the table's rows (what a router may learn from).
    pub aggregates: Aggregates,
}

/// A model's means over the table's rows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Aggregates {
    /// Mean score.
    pub accuracy: f64,
    /// Mean energy per query, joules (the table's energy basis), if known for every row.
    pub energy_j: Option<f64>,
    /// Mean latency per query, seconds; 0 when any row's latency was not measured (the router
    /// world's field is a plain number).
    pub latency_s: f64,
    /// Mean cost per query, US dollars, if priced.
    pub cost_usd: Option<f64>,
}

/// What one model did on one query.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Outcome {
    /// Grade score; 0 for a failed query or one the grader could not score.
    pub score: f64,
    /// The query failed (no response).
    pub failed: bool,
    /// The grader gave no score.
    pub unscored: bool,
    /// The grade came from the `pairwise` grader: the score is against the reference model's
    /// response (0.5 = as good), not against a gold answer.
    pub pairwise: bool,
    /// Joules (net or gross, as the table's `energy_basis`; declared where not measured).
    pub energy_j: Option<f64>,
    /// Seconds from request to last byte; `None` where not measured (an imported table).
    pub latency_s: Option<f64>,
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Generated tokens.
    pub output_tokens: Option<u64>,
    /// 2 x active parameters x (prompt + generated tokens).
    pub flops: Option<f64>,
    /// Prompt and generated tokens at the model's prices, US dollars.
    pub cost_usd: Option<f64>,
    /// Grams CO2e of the energy: set from a footprint file ([`Table::apply_carbon`]).
    pub g_co2e: Option<f64>,
}

/// One query: what it is and what every model did on it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Query id (shared by every run of the same dataset).
    pub query_id: String,
    /// Dataset.
    pub dataset: String,
    /// Subject, if the dataset has one.
    pub subject: Option<String>,
    /// Category of the subject, if known.
    pub category: Option<String>,
    /// The domain label `ipw classify` gave the query: the first run's (in the order given)
    /// that has one.
    pub domain: Option<String>,
    /// The prompt text.
    pub prompt: String,
    /// Prompt tokens as the first model that counted them did.
    pub prompt_tokens: Option<u64>,
    /// Per column.
    pub outcomes: Vec<Outcome>,
}

/// The query x model table.
#[derive(Debug, Clone)]
pub struct Table {
    /// The models.
    pub columns: Vec<Column>,
    /// Queries every model answered (or failed) : the ones routing is simulated on.
    pub rows: Vec<Row>,
    /// Queries missing from some runs: id and the models that lack it. Reported, not routed.
    pub incomplete: Vec<(String, Vec<String>)>,
    /// `net` when every measured cell has net energy, else `gross`.
    pub energy_basis: &'static str,
}

impl Table {
    /// Sets column `col`'s grams CO2e per query: its energy times `g_per_j` of the query id
    /// (a footprint's PUE and grid intensity over the query's window). A query without energy
    /// or without a figure has none.
    pub fn apply_carbon(&mut self, col: usize, g_per_j: impl Fn(&str) -> Option<f64>) {
        for row in &mut self.rows {
            let o = &mut row.outcomes[col];
            o.g_co2e = o.energy_j.zip(g_per_j(&row.query_id)).map(|(j, g)| j * g);
        }
    }

    /// Keep only the rows `keep` says, with every column's aggregates taken over them (what a
    /// router sees of the models is then what these queries show).
    pub fn retain_rows(&mut self, keep: impl Fn(&Row) -> bool) {
        self.rows.retain(keep);
        for (i, c) in self.columns.iter_mut().enumerate() {
            c.aggregates = aggregates(&self.rows, i);
        }
    }

    /// The column of a model name (exact, or the one column whose name starts `name@`).
    pub fn column(&self, name: &str) -> Result<usize, TableError> {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        find_column(&names, name)
    }
}

/// The index of a model name among column names: exact, or the one name that starts `name@`.
pub(crate) fn find_column(names: &[&str], name: &str) -> Result<usize, TableError> {
    if let Some(i) = names.iter().position(|c| *c == name) {
        return Ok(i);
    }
    let prefix = format!("{name}@");
    let hits: Vec<usize> = (0..names.len())
        .filter(|&i| names[i].starts_with(&prefix))
        .collect();
    match hits[..] {
        [i] => Ok(i),
        _ => Err(TableError::UnknownModel {
            name: name.into(),
            known: names.join(", "),
        }),
    }
}

/// Column names for runs given as (model, accelerator, run directory): the model, or
/// `model@accelerator` when one model ran on several accelerators; two runs with the same
/// name are refused.
pub(crate) fn column_names(runs: &[(&str, &str, &Path)]) -> Result<Vec<String>, TableError> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (name, _, _) in runs {
        *count.entry(name).or_default() += 1;
    }
    let names: Vec<String> = runs
        .iter()
        .map(|(name, accelerator, _)| {
            if count[name] > 1 {
                format!("{name}@{accelerator}")
            } else {
                name.to_string()
            }
        })
        .collect();
    for i in 0..names.len() {
        for j in 0..i {
            if names[i] == names[j] {
                return Err(TableError::Duplicate {
                    name: names[i].clone(),
                    first: runs[j].2.to_path_buf(),
                    second: runs[i].2.to_path_buf(),
                });
            }
        }
    }
    Ok(names)
}

/// A run found under the paths given, with what names it among the others.
#[derive(Debug)]
pub(crate) struct NamedRun {
    /// The run directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: crate::records::Manifest,
    /// Its model's metadata (no overrides).
    pub meta: ModelMeta,
    /// Its accelerator label.
    pub accelerator: String,
    /// Its column name: the model, `@accelerator` when one model ran on several.
    pub name: String,
}

/// The runs under `paths` (see [`find_runs`]) with their manifests and column names, read
/// without a record.
pub(crate) fn named_runs(paths: &[PathBuf]) -> Result<Vec<NamedRun>, TableError> {
    let mut runs = Vec::new();
    for dir in find_runs(paths)? {
        let (manifest, meta, accelerator) = {
            let err = run_error(&dir);
            let manifest = crate::records::RunDir::new(&dir)
                .read_manifest()
                .map_err(|e| err(e.to_string()))?;
            let (meta, accelerator) = run_meta(&manifest, &BTreeMap::new()).map_err(&err)?;
            (manifest, meta, accelerator)
        };
        runs.push(NamedRun {
            manifest,
            meta,
            accelerator,
            name: String::new(),
            dir,
        });
    }
    let heads: Vec<(&str, &str, &Path)> = runs
        .iter()
        .map(|r| {
            (
                r.manifest.model.name.as_str(),
                r.accelerator.as_str(),
                r.dir.as_path(),
            )
        })
        .collect();
    let names = column_names(&heads)?;
    for (r, name) in runs.iter_mut().zip(names) {
        r.name = name;
    }
    Ok(runs)
}

/// Run directories under `paths`: each path is a run (it has a manifest.json) or a folder of
/// runs (an experiment's `--out`).
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, TableError> {
    let mut out = Vec::new();
    for p in paths {
        let runs = crate::records::run_dirs(p).map_err(|e| TableError::Run {
            path: p.clone(),
            message: e.to_string(),
        })?;
        if runs.is_empty() {
            return Err(TableError::NoRuns(p.display().to_string()));
        }
        out.extend(runs);
    }
    Ok(out)
}

struct Loaded {
    name: String,
    meta: ModelMeta,
    accelerator: String,
    run: PathBuf,
    /// Every record, in file order.
    all: Vec<Record>,
    /// Each query's last record in `all`.
    latest: HashMap<String, usize>,
    /// Each query's first record in `all`, in file order (the run's query order).
    order: Vec<usize>,
}

impl Loaded {
    fn record(&self, id: &str) -> Option<&Record> {
        self.latest.get(id).map(|&i| &self.all[i])
    }
}

/// A run's model metadata as recorded in its manifest with `overrides` (by model name) laid
/// over it, and its accelerator label: `meta.accelerator`, else what the host showed.
pub(crate) fn run_meta(
    manifest: &crate::records::Manifest,
    overrides: &BTreeMap<String, ModelMeta>,
) -> Result<(ModelMeta, String), String> {
    let mut meta: ModelMeta = match manifest.model.settings.get("meta") {
        Some(v) if !v.is_null() => {
            serde_json::from_value(v.clone()).map_err(|e| format!("manifest model.meta: {e}"))?
        }
        _ => ModelMeta::default(),
    };
    if let Some(o) = overrides.get(&manifest.model.name) {
        merge_meta(&mut meta, o);
    }
    let accelerator = meta
        .accelerator
        .clone()
        .unwrap_or_else(|| manifest.host.accelerator());
    Ok((meta, accelerator))
}

/// A run about to be read: its directory, manifest, metadata (with `overrides`) and
/// accelerator label.
struct Opened {
    dir: RunDir,
    manifest: crate::records::Manifest,
    meta: ModelMeta,
    accelerator: String,
}

/// An error about the run at `run`.
fn run_error(run: &Path) -> impl Fn(String) -> TableError + '_ {
    move |message| TableError::Run {
        path: run.to_path_buf(),
        message,
    }
}

fn open(run: &Path, overrides: &BTreeMap<String, ModelMeta>) -> Result<Opened, TableError> {
    let dir = RunDir::new(run);
    let err = run_error(run);
    let manifest = dir.read_manifest().map_err(|e| err(e.to_string()))?;
    let (meta, accelerator) = run_meta(&manifest, overrides).map_err(&err)?;
    Ok(Opened {
        dir,
        manifest,
        meta,
        accelerator,
    })
}

fn load(
    run: &Path,
    overrides: &BTreeMap<String, ModelMeta>,
    detail: Detail,
) -> Result<Loaded, TableError> {
    let Opened {
        dir,
        manifest,
        meta,
        accelerator,
    } = open(run, overrides)?;
    let err = run_error(run);
    let all = dir
        .read_records_with(detail)
        .map_err(|e| err(e.to_string()))?
        .records;
    let mut latest: HashMap<String, usize> = HashMap::with_capacity(all.len());
    let mut order = Vec::new();
    for (i, r) in all.iter().enumerate() {
        // The last record of a query wins (a retried failure is appended after it).
        if latest.insert(r.query_id.clone(), i).is_none() {
            order.push(i);
        }
    }
    Ok(Loaded {
        name: manifest.model.name.clone(),
        meta,
        accelerator,
        run: run.to_path_buf(),
        all,
        latest,
        order,
    })
}

/// Fields set in `over` replace those in `meta`.
fn merge_meta(meta: &mut ModelMeta, over: &ModelMeta) {
    macro_rules! take {
        ($($f:ident),*) => { $( if over.$f.is_some() { meta.$f = over.$f.clone(); } )* };
    }
    take!(
        params_b,
        active_params_b,
        price_in_per_mtok,
        price_out_per_mtok,
        accelerator,
        release_date,
        accelerator_release_date,
        accelerator_class,
        energy_model
    );
}

/// Build the table from run directories; `overrides` replace metadata per model name. The runs
/// stream past one at a time, so memory is the table (a cell per query and run, the first
/// run's prompts), not the runs' records.
pub fn build(
    runs: &[PathBuf],
    overrides: &BTreeMap<String, ModelMeta>,
) -> Result<Table, TableError> {
    streamed::build(runs, overrides)
}

/// The table as [`build`] gives it, built with every run's records held (read as `detail`
/// says: with [`Detail::Figures`] the rows have no prompt text), and those records handed back
/// (one list per column, in file order, retried queries included). The way the table was
/// built before it streamed: the reference the streamed table and the study's figures are
/// checked against.
pub fn build_with(
    runs: &[PathBuf],
    overrides: &BTreeMap<String, ModelMeta>,
    detail: Detail,
) -> Result<(Table, Vec<Vec<Record>>), TableError> {
    // Runs are read side by side: each read parses on every core, and what is not parsing
    // (indexing, moving records) of one run overlaps the parsing of another.
    let loaded: Vec<Loaded> = std::thread::scope(|scope| {
        let reads: Vec<_> = runs
            .iter()
            .map(|r| scope.spawn(move || load(r, overrides, detail)))
            .collect();
        reads
            .into_iter()
            .map(|h| h.join().expect("reading a run does not panic"))
            .collect::<Result<_, _>>()
    })?;
    if loaded.is_empty() {
        return Err(TableError::NoRuns("the paths given".into()));
    }
    let heads: Vec<(&str, &str, &Path)> = loaded
        .iter()
        .map(|l| (l.name.as_str(), l.accelerator.as_str(), l.run.as_path()))
        .collect();
    let names = column_names(&heads)?;
    // Query order: the first run's, then ids only later runs have.
    let mut ids: Vec<&String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for l in &loaded {
        for id in l.order.iter().map(|&i| &l.all[i].query_id) {
            if seen.insert(id) {
                ids.push(id);
            }
        }
    }
    let measured_all_net = loaded.iter().all(|l| {
        l.latest
            .values()
            .map(|&i| &l.all[i])
            .all(|r| match &r.energy {
                Some(e) if e.gross_j.is_some() => e.net_j.is_some(),
                _ => true,
            })
    });
    let energy_basis = if measured_all_net { "net" } else { "gross" };
    let mut rows = Vec::new();
    let mut incomplete = Vec::new();
    // Which record of each run answers each row (looked up once).
    let mut found: Vec<Vec<usize>> = vec![Vec::new(); loaded.len()];
    for id in ids {
        let here: Vec<Option<&Record>> = loaded.iter().map(|l| l.record(id)).collect();
        if here.iter().any(Option::is_none) {
            let missing = here
                .iter()
                .zip(&names)
                .filter(|(r, _)| r.is_none())
                .map(|(_, n)| n.clone())
                .collect();
            incomplete.push((id.clone(), missing));
            continue;
        }
        let here: Vec<&Record> = here.into_iter().flatten().collect();
        for (c, l) in loaded.iter().enumerate() {
            found[c].push(l.latest[id]);
        }
        let first = here[0];
        let outcomes = loaded
            .iter()
            .zip(&here)
            .map(|(l, r)| outcome(r, &l.meta, measured_all_net))
            .collect();
        rows.push(Row {
            query_id: id.clone(),
            dataset: first.dataset.clone(),
            subject: first.subject.clone(),
            category: first.category.clone(),
            domain: here
                .iter()
                .find_map(|r| r.domain.as_ref().and_then(|d| d.label.clone())),
            prompt: first.prompt.clone(),
            prompt_tokens: here.iter().find_map(|r| r.input_tokens),
            outcomes,
        });
    }
    let mut columns = Vec::with_capacity(loaded.len());
    let mut records = Vec::with_capacity(loaded.len());
    for (i, (l, name)) in loaded.into_iter().zip(names).enumerate() {
        let measured = found[i].iter().any(|&k| {
            l.all[k]
                .energy
                .as_ref()
                .is_some_and(|e| e.gross_j.is_some())
        });
        columns.push(Column {
            aggregates: aggregates(&rows, i),
            name,
            energy: EnergySource::of(measured, &l.meta),
            meta: l.meta,
            accelerator: l.accelerator,
            run: l.run,
        });
        records.push(l.all);
    }
    Ok((
        Table {
            columns,
            rows,
            incomplete,
            energy_basis,
        },
        records,
    ))
}

fn outcome(r: &Record, meta: &ModelMeta, net: bool) -> Outcome {
    Cell::of(r).outcome(meta, net)
}

/// What a cell of the table takes from its record before the model's metadata and the
/// table's energy basis are known.
#[derive(Debug, Clone)]
struct Cell {
    score: Option<f64>,
    failed: bool,
    pairwise: bool,
    gross_j: Option<f64>,
    net_j: Option<f64>,
    latency_s: Option<f64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
}

impl Cell {
    fn of(r: &Record) -> Cell {
        Cell {
            score: r.grade.as_ref().and_then(|g| g.score),
            failed: r.error.is_some(),
            pairwise: r
                .grade
                .as_ref()
                .is_some_and(|g| g.grader == crate::records::PAIRWISE_GRADER),
            gross_j: r.energy.as_ref().and_then(|e| e.gross_j),
            net_j: r.energy.as_ref().and_then(|e| e.net_j),
            latency_s: r.measured_latency_s(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost_usd,
        }
    }

    /// Gross energy measured without net: the table's basis is then gross.
    fn gross_without_net(&self) -> bool {
        self.gross_j.is_some() && self.net_j.is_none()
    }

    fn outcome(&self, meta: &ModelMeta, net: bool) -> Outcome {
        let measured = if net { self.net_j } else { self.gross_j };
        let declared = declared_tokens_j(meta, self.input_tokens, self.output_tokens);
        let tokens = self.input_tokens.zip(self.output_tokens);
        Outcome {
            score: self.score.unwrap_or(0.0),
            failed: self.failed,
            unscored: !self.failed && self.score.is_none(),
            pairwise: self.pairwise,
            energy_j: measured.or(declared),
            latency_s: self.latency_s,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            flops: meta
                .active_params_b()
                .zip(tokens)
                .map(|(p, (i, o))| 2.0 * p * 1e9 * (i + o) as f64),
            cost_usd: self.cost_usd.or_else(|| {
                meta.price_in_per_mtok
                    .zip(meta.price_out_per_mtok)
                    .zip(tokens)
                    .map(|((pi, po), (i, o))| (pi * i as f64 + po * o as f64) / 1e6)
            }),
            g_co2e: None,
        }
    }
}

/// A query's joules by its model's declared energy model (J per token) from its token counts,
/// if the model has one and the query its counts.
pub(crate) fn declared_tokens_j(
    meta: &ModelMeta,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
) -> Option<f64> {
    meta.energy_model.and_then(|m| {
        Some(
            m.j_per_input_token * input_tokens? as f64
                + m.j_per_output_token * output_tokens? as f64,
        )
    })
}

fn aggregates(rows: &[Row], col: usize) -> Aggregates {
    let n = rows.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Outcome) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = rows.iter().map(|r| f(&r.outcomes[col])).collect();
        v.map(|v| v.iter().sum::<f64>() / n)
    };
    Aggregates {
        accuracy: mean(&|o| Some(o.score)).unwrap_or(0.0),
        energy_j: mean(&|o| o.energy_j),
        latency_s: mean(&|o| o.latency_s).unwrap_or(0.0),
        cost_usd: mean(&|o| o.cost_usd),
    }
}
