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
pub mod trend;

use crate::analysis::bootstrap::{bootstrap, complete};
use crate::analysis::quality::mean;
use crate::analysis::{quality_grouped, Estimate, Quality};
use crate::joined::{self, Table};
use crate::records::{Detail, Record};
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
#[derive(Debug, Clone, serde::Serialize)]
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
pub(crate) fn query_energies(records: &[&Record]) -> Vec<f64> {
    let net_all = records
        .iter()
        .all(|r| r.energy.as_ref().is_none_or(|e| e.net_j.is_some()));
    records
        .iter()
        .filter_map(|r| {
            r.energy
                .as_ref()
                .and_then(|e| if net_all { e.net_j } else { e.gross_j })
        })
        .collect()
}

fn row_of(
    model: &str,
    accelerator: &str,
    group: &str,
    q: &Quality,
    records: &[&Record],
) -> CompareRow {
    let mut latency: Vec<f64> = records
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| r.measured_latency_s())
        .collect();
    latency.sort_by(f64::total_cmp);
    let energies = query_energies(records);
    CompareRow {
        model: model.into(),
        accelerator: accelerator.into(),
        group: group.into(),
        scored: q.scored,
        accuracy: q.accuracy,
        apj: q.apj,
        apw: q.apw,
        j_per_query: (!energies.is_empty())
            .then(|| energies.iter().sum::<f64>() / energies.len() as f64),
        latency_p50_s: (!latency.is_empty())
            .then(|| crate::analysis::stats::percentile(&latency, 0.5)),
        energy_estimated: q.energy_estimated,
        flagged: records
            .iter()
            .filter(|r| r.energy.as_ref().is_some_and(|e| !e.flags.is_empty()))
            .count(),
    }
}

/// One run's compare rows: `all`, then each group.
fn run_rows(col: &joined::Column, records: &[Record], by: GroupBy, seed: u64) -> Vec<CompareRow> {
    let key = |r: &Record| group_key(by, r);
    let Some((overall, groups)) = quality_grouped(records, seed, key) else {
        return Vec::new();
    };
    let all: Vec<&Record> = records.iter().collect();
    let mut rows = vec![row_of(&col.name, &col.accelerator, "all", &overall, &all)];
    let mut members: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let Some(k) = key(r) {
            members.entry(k).or_default().push(r);
        }
    }
    for (g, quality) in &groups {
        let of_group = members.get(g).map_or(&[][..], Vec::as_slice);
        rows.push(row_of(&col.name, &col.accelerator, g, quality, of_group));
    }
    rows
}

/// Compare runs: per run and group, and paired against `baseline` (default: the first run).
pub fn compare(
    runs: &[PathBuf],
    by: GroupBy,
    baseline: Option<&str>,
    seed: u64,
) -> Result<CompareReport, StudyError> {
    let runs = joined::find_runs(runs)?;
    let (t, per_run) = joined::build_with(&runs, &BTreeMap::new(), Detail::Figures)?;
    // One run's rows on each thread (the runs are independent; their order is kept).
    let rows: Vec<CompareRow> = std::thread::scope(|scope| {
        let per_column: Vec<_> = t
            .columns
            .iter()
            .zip(&per_run)
            .map(|(col, records)| scope.spawn(move || run_rows(col, records, by, seed)))
            .collect();
        per_column
            .into_iter()
            .flat_map(|h| h.join().expect("a run's figures do not panic"))
            .collect()
    });
    let base = match baseline {
        Some(name) => t.column(name)?,
        None => 0,
    };
    let mut paired = Vec::new();
    for c in (0..t.columns.len()).filter(|&c| c != base) {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, r) in t.rows.iter().enumerate() {
            groups.entry("all".into()).or_default().push(i);
            if let Some(k) = group_key(by, r) {
                groups.entry(k).or_default().push(i);
            }
        }
        for (g, idx) in groups {
            paired.push(paired_diff(&t, c, base, &g, &idx, seed));
        }
    }
    Ok(CompareReport {
        group_by: by,
        energy_basis: t.energy_basis,
        rows,
        baseline: t.columns[base].name.clone(),
        paired,
        incomplete: t.incomplete.len(),
    })
}

fn paired_diff(
    t: &Table,
    c: usize,
    base: usize,
    group: &str,
    idx: &[usize],
    seed: u64,
) -> PairedDiff {
    let pick = |col: usize, f: &dyn Fn(&joined::Outcome) -> Option<f64>| -> Vec<Option<f64>> {
        idx.iter().map(|&i| f(&t.rows[i].outcomes[col])).collect()
    };
    let (sa, sb) = (pick(c, &|o| Some(o.score)), pick(base, &|o| Some(o.score)));
    let (ea, eb) = (pick(c, &|o| o.energy_j), pick(base, &|o| o.energy_j));
    // A figure needs every value it sums: one query without energy leaves the energy figures
    // out (as on all queries), the accuracy one stands.
    let boot = |salt: u64, cols: &[&Vec<Option<f64>>], stat: fn(&[f64], f64) -> Option<f64>| {
        let cols: Vec<Vec<f64>> = cols.iter().map(|c| complete(c)).collect::<Option<_>>()?;
        let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
        bootstrap(&refs, seed ^ salt, stat)
    };
    PairedDiff {
        model: t.columns[c].name.clone(),
        baseline: t.columns[base].name.clone(),
        group: group.into(),
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

/// Coverage of every model against `reference`.
pub fn coverage(
    runs: &[PathBuf],
    reference: &str,
    tolerance: f64,
    by: GroupBy,
    meta: &BTreeMap<String, crate::config::ModelMeta>,
    seed: u64,
) -> Result<CoverageReport, StudyError> {
    let runs = joined::find_runs(runs)?;
    let (t, records) = joined::build_with(&runs, meta, Detail::Figures)?;
    let reference = t.column(reference)?;
    let covered = |i: usize, c: usize| {
        let r = &t.rows[i];
        pairwise::covered(&r.outcomes[c], &r.outcomes[reference], tolerance)
    };
    let locals: Vec<usize> = (0..t.columns.len()).filter(|&c| c != reference).collect();
    pairwise::check_reference(&t, &records, reference, &locals)?;
    drop(records);
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in t.rows.iter().enumerate() {
        groups.entry("all".into()).or_default().push(i);
        if let Some(k) = group_key(by, r) {
            groups.entry(k).or_default().push(i);
        }
    }
    let share = |hits: Vec<f64>, salt: u64| bootstrap(&[&hits], seed ^ salt, mean);
    let mut rows = Vec::new();
    for (g, idx) in &groups {
        for &c in &locals {
            let hits = idx.iter().map(|&i| covered(i, c) as u8 as f64).collect();
            rows.push(CoverageRow {
                model: t.columns[c].name.clone(),
                group: g.clone(),
                queries: idx.len(),
                coverage: share(hits, c as u64),
            });
        }
        let hits = idx
            .iter()
            .map(|&i| locals.iter().any(|&c| covered(i, c)) as u8 as f64)
            .collect();
        rows.push(CoverageRow {
            model: "best-of-local".into(),
            group: g.clone(),
            queries: idx.len(),
            coverage: share(hits, 0xB0),
        });
    }
    let mut dated: Vec<(String, usize)> = locals
        .iter()
        .filter_map(|&c| Some((t.columns[c].meta.release_date.clone()?, c)))
        .collect();
    dated.sort();
    let mut over_time = Vec::new();
    for (k, (date, _)) in dated.iter().enumerate() {
        if dated.get(k + 1).is_some_and(|(d, _)| d == date) {
            continue; // the last model of a date speaks for all released that day
        }
        let available: Vec<usize> = dated[..=k].iter().map(|(_, c)| *c).collect();
        let n = t.rows.len().max(1) as f64;
        let hits = (0..t.rows.len())
            .filter(|&i| available.iter().any(|&c| covered(i, c)))
            .count() as f64;
        over_time.push(CoverageAtDate {
            date: date.clone(),
            models: available
                .iter()
                .map(|&c| t.columns[c].name.clone())
                .collect(),
            coverage: hits / n,
        });
    }
    Ok(CoverageReport {
        reference: t.columns[reference].name.clone(),
        tolerance,
        queries: t.rows.len(),
        incomplete: t.incomplete.len(),
        pairwise_datasets: pairwise::datasets(&t, &locals),
        rows,
        over_time,
    })
}
