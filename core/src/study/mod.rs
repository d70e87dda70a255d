//! The study across runs: `ipw compare` (each model x accelerator x group with intervals, and
//! paired differences on shared queries) and `ipw coverage` (how many queries a model answers
//! as well as the reference). Both read run directories only, through the routing table's
//! join on query id.
//!
//! - Per run and group (dataset, subject or category): accuracy, APJ and APW as the run's
//!   summary defines them (bootstrap 95% intervals), mean J per query, p50 latency, and markers:
//!   energy estimated, records carrying quality flags.
//! - Paired, against a baseline run, on the queries both have: accuracy difference, energy
//!   ratio (Σ run / Σ baseline) and APJ ratio, each with a paired bootstrap interval (queries
//!   resampled, both runs recomputed on the same draw).
//! - Coverage: a query is covered by a model when its score is at least the reference's minus
//!   `tolerance` (a `pairwise` grade, against the reference's response: at least 0.5 minus
//!   `tolerance`); best-of-local: covered by any model but the reference; per group; and over
//!   release dates: at each date, best-of-local over the models released by then.

pub mod pairwise;
pub mod part;
#[cfg(test)]
mod reference;
mod scan;
pub mod trend;

use crate::analysis::bootstrap::{bootstrap, complete};
use crate::analysis::quality::mean;
use crate::analysis::{Estimate, GroupedQuality, Quality};
use crate::joined;
use crate::records::Record;
use scan::{Cell, Scan, Source};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Per dataset.
    Dataset,
    /// Per subject (queries without one are left out of the groups, not of `all`).
    Subject,
    /// Per category.
    Category,
    /// Per domain (the label `ipw classify` gave the query); queries without one are the
    /// `unlabelled` group, never dropped.
    Domain,
}

impl GroupBy {
    /// Every grouping, in the order parts keep them.
    pub const ALL: [GroupBy; 4] = [
        GroupBy::Dataset,
        GroupBy::Subject,
        GroupBy::Category,
        GroupBy::Domain,
    ];

    /// Parse `dataset`, `subject`, `category` or `domain`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "dataset" => Ok(GroupBy::Dataset),
            "subject" => Ok(GroupBy::Subject),
            "category" => Ok(GroupBy::Category),
            "domain" => Ok(GroupBy::Domain),
            o => Err(format!("`{o}`: use dataset, subject, category or domain")),
        }
    }

    /// The name `parse` reads.
    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Dataset => "dataset",
            GroupBy::Subject => "subject",
            GroupBy::Category => "category",
            GroupBy::Domain => "domain",
        }
    }
}

/// One run (model x accelerator) on one group.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CompareRow {
    /// The column name (model, with @accelerator when needed).
    pub model: String,
    /// Accelerator label.
    pub accelerator: String,
    /// `all`, or the group's name.
    pub group: String,
    /// Scored queries in the group.
    pub scored: usize,
    /// Mean score.
    pub accuracy: Option<Estimate>,
    /// Accuracy per joule.
    pub apj: Option<Estimate>,
    /// Accuracy per watt.
    pub apw: Option<Estimate>,
    /// Mean joules per query (as APJ: net or gross).
    pub j_per_query: Option<f64>,
    /// Median seconds per query.
    pub latency_p50_s: Option<f64>,
    /// Energy is modelled, not measured.
    pub energy_estimated: bool,
    /// Records of the group carrying an energy quality flag.
    pub flagged: usize,
}

/// A run against the baseline on the queries both answered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairedDiff {
    /// The run.
    pub model: String,
    /// The baseline.
    pub baseline: String,
    /// `all`, or the group.
    pub group: String,
    /// Shared queries.
    pub shared: usize,
    /// Accuracy minus the baseline's.
    pub accuracy_delta: Option<Estimate>,
    /// Energy / the baseline's (below 1: cheaper).
    pub energy_ratio: Option<Estimate>,
    /// APJ / the baseline's (above 1: more accuracy per joule).
    pub apj_ratio: Option<Estimate>,
}

/// `ipw compare`'s result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompareReport {
    /// How groups were made.
    pub group_by: GroupBy,
    /// `net` or `gross`.
    pub energy_basis: &'static str,
    /// Per run and group.
    pub rows: Vec<CompareRow>,
    /// The baseline the paired differences use.
    pub baseline: String,
    /// Per run (not the baseline) and group.
    pub paired: Vec<PairedDiff>,
    /// Queries some runs lack (left out of paired figures).
    pub incomplete: usize,
}

/// Why a study command could not run.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// The runs could not be joined.
    #[error(transparent)]
    Table(#[from] joined::TableError),
    /// A run's records could not be read.
    #[error("{}: {message}", path.display())]
    Run {
        /// The run.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An option is wrong.
    #[error("{0}")]
    Input(String),
}

/// What a query is grouped by, whether it comes from a record or a joined row.
pub(crate) trait Groupable {
    /// The dataset label.
    fn dataset(&self) -> &str;
    /// The subject, if any.
    fn subject(&self) -> Option<&str>;
    /// The category, if any.
    fn category(&self) -> Option<&str>;
    /// The domain label, if classified and labelled.
    fn domain(&self) -> Option<&str>;
}

impl Groupable for Record {
    fn dataset(&self) -> &str {
        &self.dataset
    }
    fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }
    fn domain(&self) -> Option<&str> {
        self.domain.as_ref().and_then(|d| d.label.as_deref())
    }
}

impl Groupable for joined::Row {
    fn dataset(&self) -> &str {
        &self.dataset
    }
    fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }
    fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }
}

/// The group of `q` (`None`: in `all` only).
pub(crate) fn group_key(by: GroupBy, q: &impl Groupable) -> Option<String> {
    match by {
        GroupBy::Dataset => Some(q.dataset().to_string()),
        GroupBy::Subject => q.subject().map(String::from),
        GroupBy::Category => q.category().map(String::from),
        GroupBy::Domain => Some(
            q.domain()
                .unwrap_or(crate::classify::UNLABELLED)
                .to_string(),
        ),
    }
}

/// Joules per query as a run's J/query counts them: net when every record with energy has net,
/// else gross, over every record with energy (failed ones too: their energy was spent). The
/// report's histogram uses the same figures, so its mean is the summary's J/query.
#[cfg(test)]
pub(crate) fn query_energies(records: &[&Record]) -> Vec<f64> {
    let mut e = QueryEnergies::default();
    for r in records {
        e.add(r);
    }
    e.finish()
}

/// [`query_energies`] gathered as records stream past: both figures are kept until a record
/// with energy but no net one rules net out (at most two numbers a record).
#[derive(Debug)]
pub(crate) struct QueryEnergies {
    net: Vec<f64>,
    gross: Vec<f64>,
    net_all: bool,
}

impl Default for QueryEnergies {
    fn default() -> Self {
        Self {
            net: Vec::new(),
            gross: Vec::new(),
            net_all: true,
        }
    }
}

impl QueryEnergies {
    /// Counts `r`.
    pub(crate) fn add(&mut self, r: &Record) {
        let Some(e) = &r.energy else { return };
        if self.net_all {
            match e.net_j {
                Some(net) => self.net.push(net),
                None => {
                    self.net_all = false;
                    self.net = Vec::new();
                }
            }
        }
        if let Some(gross) = e.gross_j {
            self.gross.push(gross);
        }
    }

    /// The joules of every record counted, in the order counted.
    pub(crate) fn finish(self) -> Vec<f64> {
        if self.net_all {
            self.net
        } else {
            self.gross
        }
    }
}

/// The figures of one run over every record, under one or more groupings, gathered as its
/// records stream past (a compact row per record, kept once whatever the groupings) and
/// finished before the run after next is read.
struct RunFigures {
    by: Vec<GroupBy>,
    quality: GroupedQuality,
    /// Per grouping: each group name's index.
    keys: Vec<BTreeMap<String, u32>>,
    records: Vec<RecordFigures>,
    /// Per record, its group under each grouping (`by.len()` entries a record).
    groups: Vec<Option<u32>>,
}

/// What a compare row needs of one record beyond its quality row.
struct RecordFigures {
    /// Latency, when the query did not fail and its latency was measured.
    latency_s: Option<f64>,
    /// (net, gross) joules, when the record has energy.
    energy: Option<(Option<f64>, Option<f64>)>,
    flagged: bool,
}

impl RunFigures {
    fn new(by: &[GroupBy]) -> Self {
        RunFigures {
            by: by.to_vec(),
            quality: GroupedQuality::default(),
            keys: vec![BTreeMap::new(); by.len()],
            records: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn push(&mut self, r: &Record) {
        let keys: Vec<Option<String>> = self.by.iter().map(|&by| group_key(by, r)).collect();
        let refs: Vec<Option<&str>> = keys.iter().map(|k| k.as_deref()).collect();
        self.quality.push_keys(r, &refs);
        for (key, index) in keys.into_iter().zip(&mut self.keys) {
            let next = index.len() as u32;
            self.groups
                .push(key.map(|k| *index.entry(k).or_insert(next)));
        }
        self.records.push(RecordFigures {
            latency_s: r.error.is_none().then(|| r.measured_latency_s()).flatten(),
            energy: r.energy.as_ref().map(|e| (e.net_j, e.gross_j)),
            flagged: r.energy.as_ref().is_some_and(|e| !e.flags.is_empty()),
        });
    }

    /// The run's compare rows per grouping (in the order given): `all`, then each group.
    fn finish(self, model: &str, accelerator: &str, seed: u64) -> Vec<Vec<CompareRow>> {
        let RunFigures {
            by,
            quality,
            keys,
            records,
            groups,
        } = self;
        let Some((overall, per_grouping)) = quality.finish_all(seed) else {
            return vec![Vec::new(); by.len()];
        };
        let all = row_of(model, accelerator, "all", &overall, records.iter());
        let n = by.len();
        per_grouping
            .iter()
            .zip(&keys)
            .enumerate()
            .map(|(g, (qualities, keys))| {
                // Each group's records, bucketed once (not filtered once per group).
                let mut members: Vec<Vec<&RecordFigures>> = vec![Vec::new(); keys.len()];
                for (i, r) in records.iter().enumerate() {
                    if let Some(k) = groups[i * n + g] {
                        members[k as usize].push(r);
                    }
                }
                let mut rows = vec![all.clone()];
                for (name, q) in qualities {
                    let own = keys
                        .get(name)
                        .map_or(&[][..], |&k| &members[k as usize][..]);
                    rows.push(row_of(model, accelerator, name, q, own.iter().copied()));
                }
                rows
            })
            .collect()
    }
}

fn row_of<'a>(
    model: &str,
    accelerator: &str,
    group: &str,
    q: &Quality,
    records: impl Iterator<Item = &'a RecordFigures> + Clone,
) -> CompareRow {
    let mut latency: Vec<f64> = records.clone().filter_map(|r| r.latency_s).collect();
    latency.sort_by(f64::total_cmp);
    // J/query as a run's summary counts it: net when every record with energy has net, else
    // gross (see `query_energies`).
    let net_all = records
        .clone()
        .all(|r| r.energy.is_none_or(|(net, _)| net.is_some()));
    let (mut sum, mut n) = (0.0, 0usize);
    for (net, gross) in records.clone().filter_map(|r| r.energy) {
        if let Some(j) = if net_all { net } else { gross } {
            sum += j;
            n += 1;
        }
    }
    CompareRow {
        model: model.into(),
        accelerator: accelerator.into(),
        group: group.into(),
        scored: q.scored,
        accuracy: q.accuracy,
        apj: q.apj,
        apw: q.apw,
        j_per_query: (n > 0).then(|| sum / n as f64),
        latency_p50_s: (!latency.is_empty())
            .then(|| crate::analysis::stats::percentile(&latency, 0.5)),
        energy_estimated: q.energy_estimated,
        flagged: records.filter(|r| r.flagged).count(),
    }
}

/// Where a study command's files go by default: the first run's `analysis/` (for a part, the
/// `analysis/` beside it).
pub fn analysis_dir(paths: &[PathBuf]) -> Result<PathBuf, StudyError> {
    Ok(match part::inputs(paths)?.into_iter().next() {
        Some(scan::Input::Run(run)) => run.join("analysis"),
        Some(scan::Input::Part(file, _)) => file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("analysis"),
        None => return Err(joined::TableError::NoRuns("the paths given".into()).into()),
    })
}

/// Compare runs: per run and group, and paired against `baseline` (default: the first run).
/// The runs are read one at a time (see [`scan`]): memory grows with the queries, not with
/// the records.
pub fn compare(
    runs: &[PathBuf],
    by: GroupBy,
    baseline: Option<&str>,
    seed: u64,
) -> Result<CompareReport, StudyError> {
    let mut scan = Scan::open(part::inputs(runs)?, &BTreeMap::new())?;
    // A wrong baseline, or a part made with another seed, is refused before a record is read.
    let base = match baseline {
        Some(name) => scan.column(name)?,
        None => 0,
    };
    for c in &scan.columns {
        if let Source::Part(h) = &c.source {
            if h.seed != seed {
                return Err(StudyError::Input(format!(
                    "{}: this part's intervals were drawn with seed {}, not {seed}: give --seed {} or make the part again with --seed {seed}",
                    c.run.display(),
                    h.seed,
                    h.seed
                )));
            }
        }
    }
    // One run's figures are finished on another thread while the next run is read.
    let rows = std::thread::scope(|scope| -> Result<Vec<CompareRow>, StudyError> {
        let mut rows = Vec::new();
        let mut finishing: Option<std::thread::ScopedJoinHandle<Vec<CompareRow>>> = None;
        for k in 0..scan.columns.len() {
            let mut figures = RunFigures::new(&[by]);
            scan.read_next(|r| figures.push(r))?;
            if let Some(done) = finishing.take() {
                rows.extend(done.join().expect("a run's figures do not panic"));
            }
            let col = &scan.columns[k];
            let (model, accelerator) = (col.name.clone(), col.accelerator.clone());
            if let Source::Part(h) = &col.source {
                // Finished where the run lies: only the column's names are the study's.
                let own = h.rows.get(by.name()).ok_or_else(|| StudyError::Run {
                    path: col.run.clone(),
                    message: format!("the part has no figures by {}", by.name()),
                })?;
                rows.extend(own.iter().cloned().map(|r| CompareRow {
                    model: model.clone(),
                    accelerator: accelerator.clone(),
                    ..r
                }));
                continue;
            }
            finishing = Some(scope.spawn(move || {
                let mut rows = figures.finish(&model, &accelerator, seed);
                rows.pop().expect("one grouping")
            }));
        }
        if let Some(done) = finishing {
            rows.extend(done.join().expect("a run's figures do not panic"));
        }
        Ok(rows)
    })?;
    let joined = scan.join(by);
    let base_cells = scan.cells(base, &joined)?;
    let mut paired = Vec::new();
    for c in (0..scan.columns.len()).filter(|&c| c != base) {
        let cells = scan.cells(c, &joined)?;
        for (g, idx) in &joined.groups {
            paired.push(PairedDiff {
                model: scan.columns[c].name.clone(),
                baseline: scan.columns[base].name.clone(),
                group: g.clone(),
                shared: idx.len(),
                ..paired_figures(&cells, &base_cells, joined.net, idx, seed)
            });
        }
    }
    Ok(CompareReport {
        group_by: by,
        energy_basis: joined.energy_basis(),
        rows,
        baseline: scan.columns[base].name.clone(),
        paired,
        incomplete: joined.incomplete,
    })
}

/// A run against the baseline on the rows `idx` (names left empty).
fn paired_figures(run: &[Cell], base: &[Cell], net: bool, idx: &[usize], seed: u64) -> PairedDiff {
    let pick = |cells: &[Cell], f: &dyn Fn(&Cell) -> Option<f64>| -> Vec<Option<f64>> {
        idx.iter().map(|&i| f(&cells[i])).collect()
    };
    let (sa, sb) = (
        pick(run, &|c| Some(c.score)),
        pick(base, &|c| Some(c.score)),
    );
    let (ea, eb) = (
        pick(run, &|c| c.energy_j(net)),
        pick(base, &|c| c.energy_j(net)),
    );
    // A figure needs every value it sums: one query without energy leaves the energy figures
    // out (as on all queries), the accuracy one stands.
    let boot = |salt: u64, cols: &[&Vec<Option<f64>>], stat: fn(&[f64], f64) -> Option<f64>| {
        let cols: Vec<Vec<f64>> = cols.iter().map(|c| complete(c)).collect::<Option<_>>()?;
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        bootstrap(&refs, seed ^ salt, stat)
    };
    PairedDiff {
        model: String::new(),
        baseline: String::new(),
        group: String::new(),
        shared: idx.len(),
        accuracy_delta: boot(0x41, &[&sa, &sb], |t, n| Some((t[0] - t[1]) / n)),
        energy_ratio: boot(0x42, &[&ea, &eb], |t, _| (t[1] > 0.0).then(|| t[0] / t[1])),
        apj_ratio: boot(0x43, &[&sa, &ea, &sb, &eb], |t, _| {
            let (a_s, a_e, b_s, b_e) = (t[0], t[1], t[2], t[3]);
            (a_e > 0.0 && b_s > 0.0).then(|| (a_s / a_e) / (b_s / b_e))
        }),
    }
}

/// Coverage of one model (or best-of-local) in one group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoverageRow {
    /// The model, or `best-of-local`.
    pub model: String,
    /// `all`, or the group.
    pub group: String,
    /// Queries in the group.
    pub queries: usize,
    /// Share covered, with a bootstrap interval.
    pub coverage: Option<Estimate>,
}

/// Best-of-local coverage with the models released by a date.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoverageAtDate {
    /// Release date (`YYYY-MM-DD`).
    pub date: String,
    /// Local models released by then.
    pub models: Vec<String>,
    /// Share of queries some of them cover.
    pub coverage: f64,
}

/// `ipw coverage`'s result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoverageReport {
    /// The reference model.
    pub reference: String,
    /// Score margin: covered when score >= reference score − tolerance.
    pub tolerance: f64,
    /// Queries in every run.
    pub queries: usize,
    /// Queries some runs lack (left out).
    pub incomplete: usize,
    /// Datasets judged pairwise against the reference (covered: score >= 0.5 − tolerance).
    pub pairwise_datasets: Vec<String>,
    /// Per model and group, then best-of-local.
    pub rows: Vec<CoverageRow>,
    /// Over release dates (models with `release_date` in their metadata).
    pub over_time: Vec<CoverageAtDate>,
}

/// Coverage of every model against `reference`. The runs are read one at a time (see
/// [`scan`]); what is held is a covered bit per model and query.
pub fn coverage(
    runs: &[PathBuf],
    reference: &str,
    tolerance: f64,
    by: GroupBy,
    meta: &BTreeMap<String, crate::config::ModelMeta>,
    seed: u64,
) -> Result<CoverageReport, StudyError> {
    let mut scan = Scan::open(part::inputs(runs)?, meta)?;
    let reference = scan.column(reference)?;
    while scan.unread() > 0 {
        scan.read_next(|_| {})?;
    }
    let joined = scan.join(by);
    let rows = joined.rows.len();
    let ref_cells = scan.cells(reference, &joined)?;
    let locals: Vec<usize> = (0..scan.columns.len())
        .filter(|&c| c != reference)
        .collect();
    // Per local model (in `locals` order): which rows it covers.
    let mut covered: Vec<Vec<bool>> = Vec::with_capacity(locals.len());
    let mut judged = Vec::new();
    let mut pairwise_datasets = std::collections::BTreeSet::new();
    for &c in &locals {
        let cells = scan.cells(c, &joined)?;
        covered.push(
            cells
                .iter()
                .zip(&ref_cells)
                .map(|(m, r)| pairwise::covers(m.score, m.pairwise, r.score, tolerance))
                .collect(),
        );
        let mut any = false;
        for (i, _) in cells.iter().enumerate().filter(|(_, c)| c.pairwise) {
            any = true;
            pairwise_datasets.insert(scan.dataset(joined.datasets[i]));
        }
        if any {
            judged.push(c);
        }
    }
    pairwise::check_reference(&scan, reference, &judged)?;
    let local_pos = |c: usize| locals.iter().position(|&l| l == c).expect("a local");
    let share = |hits: Vec<f64>, salt: u64| bootstrap(&[&hits], seed ^ salt, mean);
    let mut out_rows = Vec::new();
    for (g, idx) in &joined.groups {
        for (l, &c) in locals.iter().enumerate() {
            let hits = idx.iter().map(|&i| covered[l][i] as u8 as f64).collect();
            out_rows.push(CoverageRow {
                model: scan.columns[c].name.clone(),
                group: g.clone(),
                queries: idx.len(),
                coverage: share(hits, c as u64),
            });
        }
        let hits = idx
            .iter()
            .map(|&i| covered.iter().any(|v| v[i]) as u8 as f64)
            .collect();
        out_rows.push(CoverageRow {
            model: "best-of-local".into(),
            group: g.clone(),
            queries: idx.len(),
            coverage: share(hits, 0xB0),
        });
    }
    let mut dated: Vec<(String, usize)> = locals
        .iter()
        .filter_map(|&c| Some((scan.columns[c].meta.release_date.clone()?, c)))
        .collect();
    dated.sort();
    let mut over_time = Vec::new();
    for (k, (date, _)) in dated.iter().enumerate() {
        if dated.get(k + 1).is_some_and(|(d, _)| d == date) {
            continue; // the last model of a date speaks for all released that day
        }
        let available: Vec<usize> = dated[..=k].iter().map(|(_, c)| *c).collect();
        let bits: Vec<&Vec<bool>> = available.iter().map(|&c| &covered[local_pos(c)]).collect();
        let n = rows.max(1) as f64;
        let hits = (0..rows).filter(|&i| bits.iter().any(|v| v[i])).count() as f64;
        over_time.push(CoverageAtDate {
            date: date.clone(),
            models: available
                .iter()
                .map(|&c| scan.columns[c].name.clone())
                .collect(),
            coverage: hits / n,
        });
    }
    Ok(CoverageReport {
        reference: scan.columns[reference].name.clone(),
        tolerance,
        queries: rows,
        incomplete: joined.incomplete,
        // Sorted by name, as the table way gave them.
        pairwise_datasets: pairwise_datasets.into_iter().map(String::from).collect(),
        rows: out_rows,
        over_time,
    })
}
