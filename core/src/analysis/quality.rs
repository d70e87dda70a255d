//! Accuracy, accuracy per joule (APJ) and accuracy per watt (APW), with seeded bootstrap 95%
//! confidence intervals, overall and per dataset, subject and category.
//!
//! - accuracy = mean score over scored records (unscored: grader errors, unreadable judge
//!   replies, failed queries); the unparsed rate is reported beside it;
//! - accuracy_with_failures = the same with every failed query (an error record: the model
//!   gave no response) scored 0, so a model that fails hard questions is not flattered;
//! - APJ = accuracy / mean energy per query (J), over records with both: net energy, or gross
//!   (and said so in `apj_energy`) when any record lacks a net figure;
//! - APW = accuracy / mean power (W), where mean power = the same energy (net or gross, as APJ)
//!   summed over the records / their busy time. A record's busy time is its share of the union
//!   of all query windows (an instant covered by k queries gives 1/k to each), so the shares
//!   add up to the time the model was busy and APW does not grow with concurrency;
//! - `apw_per_query_mean` = accuracy / the mean of each record's own mean power over its window
//!   (its energy share / its window length): the older, per-query figure, which at concurrency
//!   c reads about c times APW; kept under its own name for comparison.
//!
//! Intervals resample records (with replacement, 1000 times, seeded by the experiment seed)
//! and recompute the ratio each time, so they carry the joint uncertainty of both sides (see
//! [`super::bootstrap`] for how large groups are resampled).

use super::bootstrap::{bootstrap, Estimate};
use crate::records::GradeRecord;
use crate::records::QueryEnergy;
use crate::records::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// Quality's addition to an estimate (the type lives with the bootstrap that makes it).
impl Estimate {
    /// Attach a measurement bound `[low, high]` of the statistic (both ends computed from the
    /// records' bounds) and the combined interval; `None` leaves the estimate as it is.
    ///
    /// The combined interval scales each end of the sampling interval by how far the bound
    /// reaches on that side, `ci95 · low / value` and `ci95 · high / value`: the instruments'
    /// bound moves every record's energy in the same direction, which multiplies a mean of
    /// energies, or a ratio over one (APJ, APW), by about the same factor on every resample.
    /// Shifting by the bound's width instead (as before) could take the interval of a ratio of
    /// non-negative figures below zero (`both [-0.00063, 0.01539]` for an APJ of 0.0074): a
    /// relative widening stays on the statistic's side of zero. A statistic that is not
    /// positive, or a bound reaching below zero, keeps the additive widening.
    pub fn with_measurement(mut self, bound: Option<[f64; 2]>) -> Self {
        if let Some([a, b]) = bound {
            let (lo, hi) = (a.min(b).min(self.value), a.max(b).max(self.value));
            self.measurement = Some([lo, hi]);
            self.combined = Some(if self.value > 0.0 && lo >= 0.0 {
                [
                    self.ci95[0] * (lo / self.value),
                    self.ci95[1] * (hi / self.value),
                ]
            } else {
                [
                    self.ci95[0] - (self.value - lo),
                    self.ci95[1] + (hi - self.value),
                ]
            });
        }
        self
    }
}

/// Quality figures for one group of records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quality {
    /// Records with a grade.
    pub graded: usize,
    /// Records with a score.
    pub scored: usize,
    /// Share of graded records where no answer could be extracted.
    pub unparsed_rate: f64,
    /// Records whose grader failed.
    pub grader_errors: usize,
    /// Mean score.
    pub accuracy: Option<Estimate>,
    /// Queries that failed (no response): left out of `accuracy`.
    #[serde(default)]
    pub failed: usize,
    /// Mean score with every failed query counted as 0.
    #[serde(default)]
    pub accuracy_with_failures: Option<Estimate>,
    /// Accuracy per joule.
    pub apj: Option<Estimate>,
    /// `net` or `gross`: which energy APJ divides by.
    pub apj_energy: Option<String>,
    /// Accuracy per watt: accuracy / (energy / busy time), energy as `apj_energy` says.
    pub apw: Option<Estimate>,
    /// Accuracy / the mean of per-record mean power (see the module docs); not APW.
    #[serde(default)]
    pub apw_per_query_mean: Option<Estimate>,
    /// Whether the energy behind APJ/APW is modelled, not measured.
    pub energy_estimated: bool,
}

/// Quality overall and per dataset, subject and category.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QualitySummary {
    /// The grader(s) used.
    pub graders: Vec<String>,
    /// All records.
    pub overall: Quality,
    /// Per dataset.
    pub by_dataset: BTreeMap<String, Quality>,
    /// Per subject.
    pub by_subject: BTreeMap<String, Quality>,
    /// Per category.
    pub by_category: BTreeMap<String, Quality>,
    /// Per domain, when `ipw classify` has labelled some records: every label given, and
    /// `unlabelled` for the rest (never dropped).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_domain: BTreeMap<String, Quality>,
}

#[derive(Clone, Copy)]
struct RowEnergy {
    net: Option<f64>,
    gross: Option<f64>,
    net_bound: Option<[f64; 2]>,
    gross_bound: Option<[f64; 2]>,
    power: Option<f64>,
    estimated: bool,
}

struct Row {
    /// This record's share of the run's busy time, seconds.
    busy_s: f64,
    /// The query failed (no response, so no grade).
    failed: bool,
    score: Option<f64>,
    parsed: bool,
    error: bool,
    energy: Option<RowEnergy>,
}

fn row(r: &Record, busy_s: f64) -> Option<Row> {
    if r.error.is_some() && r.grade.is_none() {
        return Some(Row {
            busy_s,
            failed: true,
            score: None,
            parsed: false,
            error: false,
            energy: None,
        });
    }
    let g: &GradeRecord = r.grade.as_ref()?;
    let e: Option<&QueryEnergy> = r.energy.as_ref();
    Some(Row {
        busy_s,
        failed: false,
        score: g.score,
        parsed: g.parsed,
        error: g.error.is_some(),
        energy: e.map(|e| RowEnergy {
            net: e.net_j,
            gross: e.gross_j,
            net_bound: e.net_bound_j,
            gross_bound: e.gross_bound_j,
            power: e.mean_power_w,
            estimated: e.estimated,
        }),
    })
}

/// Rows with a score and energy, whether the energy is net (every one has a net figure) or
/// gross, and (score, joules, busy seconds) per row: what APJ and APW are made of.
#[allow(clippy::type_complexity)]
fn joule_rows(rows: &[&Row]) -> (bool, Vec<(f64, RowEnergy, f64)>, Vec<(f64, f64, f64)>) {
    let with_energy: Vec<(f64, RowEnergy, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.score?, r.energy?, r.busy_s)))
        .collect();
    let use_net = !with_energy.is_empty() && with_energy.iter().all(|(_, e, _)| e.net.is_some());
    let joules: Vec<(f64, f64, f64)> = with_energy
        .iter()
        .filter_map(|&(s, e, busy)| Some((s, if use_net { e.net? } else { e.gross? }, busy)))
        .collect();
    (use_net, with_energy, joules)
}

/// A run's APJ/APW material: per scored record with energy, (score, joules, busy seconds) —
/// exactly the rows [`quality_summary`]'s overall APJ and APW use.
#[derive(Debug, Clone)]
pub struct EnergyRows {
    /// (score, joules, busy seconds) per record.
    pub rows: Vec<(f64, f64, f64)>,
    /// Net energy (else gross).
    pub net: bool,
    /// Some energy is modelled, not measured.
    pub estimated: bool,
}

impl EnergyRows {
    /// The rows of a run's records.
    pub fn of(records: &[Record]) -> Self {
        let mut rows = EnergyRowsBuilder::default();
        for r in records {
            rows.push(r);
        }
        rows.finish()
    }

    /// The rows as columns: scores, joules, busy seconds (what [`apw`] and [`apj`] take).
    pub fn columns(&self) -> [Vec<f64>; 3] {
        [
            self.rows.iter().map(|r| r.0).collect(),
            self.rows.iter().map(|r| r.1).collect(),
            self.rows.iter().map(|r| r.2).collect(),
        ]
    }
}

/// [`EnergyRows`] gathered one record at a time (a window and a compact row per record), so a
/// run read in batches is never held whole.
#[derive(Default)]
pub struct EnergyRowsBuilder {
    windows: Vec<(f64, f64)>,
    rows: Vec<Option<Row>>,
}

impl EnergyRowsBuilder {
    /// Add one record (every record of the run: busy time is shared over all of them).
    pub fn push(&mut self, r: &Record) {
        self.windows.push((r.window.start_s, r.window.end_s));
        // The busy share is set when every window is known.
        self.rows.push(row(r, 0.0));
    }

    /// The rows, as [`EnergyRows::of`] gives them for the same records.
    pub fn finish(self) -> EnergyRows {
        let busy = super::stats::busy_shares(&self.windows);
        let rows: Vec<Row> = self
            .rows
            .into_iter()
            .zip(busy)
            .filter_map(|(r, b)| r.map(|r| Row { busy_s: b, ..r }))
            .filter(|r| !r.failed)
            .collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let (net, with_energy, rows) = joule_rows(&refs);
        EnergyRows {
            rows,
            net,
            estimated: with_energy.iter().any(|(_, e, _)| e.estimated),
        }
    }
}

/// APW from the sums of (score, joules, busy seconds) over `n` records: mean score / (joules /
/// busy seconds).
pub fn apw(sums: &[f64], n: f64) -> Option<f64> {
    (n > 0.0 && sums[1] > 0.0 && sums[2] > 0.0).then(|| sums[0] / n / (sums[1] / sums[2]))
}

/// APJ from the sums of (score, joules): mean score / mean joules (equal counts cancel).
pub fn apj(sums: &[f64], n: f64) -> Option<f64> {
    (n > 0.0 && sums[1] > 0.0).then(|| sums[0] / sums[1])
}

/// A mean from the sum of one column.
pub(crate) fn mean(sums: &[f64], n: f64) -> Option<f64> {
    (n > 0.0).then(|| sums[0] / n)
}

/// The sums of the columns of `rows`.
fn sums_of<const K: usize>(rows: &[[f64; K]]) -> [f64; K] {
    let mut t = [0.0; K];
    for r in rows {
        for (t, v) in t.iter_mut().zip(r) {
            *t += v;
        }
    }
    t
}

/// The columns of `rows` (row-major) as column vectors.
fn columns_of<const K: usize>(rows: &[[f64; K]]) -> Vec<Vec<f64>> {
    (0..K)
        .map(|c| rows.iter().map(|r| r[c]).collect())
        .collect()
}

fn boot<const K: usize>(
    rows: &[[f64; K]],
    seed: u64,
    stat: fn(&[f64], f64) -> Option<f64>,
) -> Option<Estimate> {
    let cols = columns_of(rows);
    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
    bootstrap(&refs, seed, stat)
}

fn quality(all: &[&Row], seed: u64) -> Quality {
    let failed = all.iter().filter(|r| r.failed).count();
    let rows: Vec<&Row> = all.iter().copied().filter(|r| !r.failed).collect();
    let scored: Vec<[f64; 1]> = rows.iter().filter_map(|r| Some([r.score?])).collect();
    let with_failures: Vec<[f64; 1]> = scored
        .iter()
        .copied()
        .chain(std::iter::repeat_n([0.0], failed))
        .collect();
    let (use_net, with_energy, joules) = joule_rows(&rows);
    // The same rows with their energy at the low, then the high end of its bound; `None` when
    // any row has no bound (a run attributed before bounds existed).
    let at_bound = |end: usize| -> Option<Vec<[f64; 3]>> {
        with_energy
            .iter()
            .filter(|(_, e, _)| {
                if use_net {
                    e.net.is_some()
                } else {
                    e.gross.is_some()
                }
            })
            .map(|&(s, e, busy)| {
                let b = if use_net {
                    e.net_bound?
                } else {
                    e.gross_bound?
                };
                Some([s, b[end], busy])
            })
            .collect()
    };
    let (low_j, high_j) = (at_bound(0), at_bound(1));
    // A figure on every row at one end of the bounds (no resampling: the bound is systematic).
    let at = |rows: &Option<Vec<[f64; 3]>>, f: fn(&[f64], f64) -> Option<f64>| {
        let rows = rows.as_ref()?;
        f(&sums_of(rows), rows.len() as f64)
    };
    let bound_of =
        |f: fn(&[f64], f64) -> Option<f64>| at(&high_j, f).zip(at(&low_j, f)).map(|(a, b)| [a, b]);
    let watts: Vec<[f64; 2]> = with_energy
        .iter()
        .filter_map(|&(s, e, _)| Some([s, e.power?]))
        .collect();
    let joules: Vec<[f64; 3]> = joules.iter().map(|&(s, j, b)| [s, j, b]).collect();
    Quality {
        graded: rows.len(),
        scored: scored.len(),
        unparsed_rate: if rows.is_empty() {
            0.0
        } else {
            rows.iter().filter(|r| !r.parsed).count() as f64 / rows.len() as f64
        },
        grader_errors: rows.iter().filter(|r| r.error).count(),
        accuracy: boot(&scored, seed, mean),
        failed,
        accuracy_with_failures: boot(&with_failures, seed ^ 4, mean),
        apj: boot(&joules, seed ^ 1, apj).map(|e| e.with_measurement(bound_of(apj))),
        apj_energy: (!joules.is_empty()).then(|| if use_net { "net" } else { "gross" }.to_string()),
        apw: boot(&joules, seed ^ 2, apw).map(|e| e.with_measurement(bound_of(apw))),
        // Σ score / Σ per-record power: the mean score over the mean power.
        apw_per_query_mean: boot(&watts, seed ^ 3, apj),
        energy_estimated: with_energy.iter().any(|(_, e, _)| e.estimated),
    }
}

/// Quality of a run's records; `None` when nothing was graded.
pub fn quality_summary(records: &[Record], seed: u64) -> Option<QualitySummary> {
    let rows = Rows::of(records)?;
    let mut graders: Vec<String> = records
        .iter()
        .filter_map(|r| r.grade.as_ref().map(|g| g.grader.clone()))
        .collect();
    graders.sort();
    graders.dedup();
    Some(QualitySummary {
        graders,
        overall: rows.overall(seed),
        by_dataset: rows.grouped(seed, |r| Some(r.dataset.clone())),
        by_subject: rows.grouped(seed, |r| r.subject.clone()),
        by_category: rows.grouped(seed, |r| r.category.clone()),
        by_domain: if records.iter().any(|r| r.domain.is_some()) {
            rows.grouped(seed, |r| Some(domain_key(r)))
        } else {
            BTreeMap::new()
        },
    })
}

/// The group of a record by domain: its label, or `unlabelled`.
fn domain_key(r: &Record) -> String {
    r.domain
        .as_ref()
        .and_then(|d| d.label.clone())
        .unwrap_or_else(|| crate::classify::UNLABELLED.to_string())
}

/// Quality per group, gathered one record at a time and kept compact (a window, a row and a
/// group index per record), so a run of millions of records streamed in batches can be
/// summarised per group without holding its records: what `ipw classify` refreshes
/// `summary.json`'s `by_domain` with, and what `ipw compare` reads each run with. Gives
/// exactly what [`quality_summary`] (and [`quality_grouped`]) give for the same grouping.
#[derive(Default)]
pub struct GroupedQuality {
    /// Per grouping: its group names, and each name's index.
    groupings: Vec<(Vec<String>, BTreeMap<String, u32>)>,
    windows: Vec<(f64, f64)>,
    rows: Vec<Option<Row>>,
    /// Per record, one group per grouping (`groupings.len()` entries a record).
    groups: Vec<Option<u32>>,
}

impl GroupedQuality {
    /// Add one record (every record of the run, in any order: busy time is shared over all).
    pub fn push(&mut self, r: &Record, key: &str) {
        self.push_in(r, Some(key));
    }

    /// Add one record to group `key`, or (`None`) to the overall figure only.
    pub fn push_in(&mut self, r: &Record, key: Option<&str>) {
        self.push_keys(r, &[key]);
    }

    /// Add one record with its group under each of several groupings (`None`: in no group of
    /// that grouping). The record's row is kept once, whatever the number of groupings; every
    /// record must name the same number of groupings.
    pub fn push_keys(&mut self, r: &Record, keys: &[Option<&str>]) {
        if self.groupings.is_empty() {
            self.groupings = vec![Default::default(); keys.len()];
        }
        debug_assert_eq!(self.groupings.len(), keys.len(), "one key per grouping");
        self.windows.push((r.window.start_s, r.window.end_s));
        for (g, key) in keys.iter().enumerate() {
            let k = key.map(|key| self.key_index(g, key));
            self.groups.push(k);
        }
        // The busy share is set when every window is known.
        self.rows.push(row(r, 0.0));
    }

    fn key_index(&mut self, grouping: usize, key: &str) -> u32 {
        let (names, index) = &mut self.groupings[grouping];
        if let Some(&k) = index.get(key) {
            return k;
        }
        let k = names.len() as u32;
        names.push(key.to_string());
        index.insert(key.to_string(), k);
        k
    }

    /// Add a record by its domain label (`unlabelled` without one).
    pub fn push_by_domain(&mut self, r: &Record) {
        self.push(r, &domain_key(r));
    }

    /// Quality per group; empty when nothing was graded.
    pub fn finish(self, seed: u64) -> BTreeMap<String, Quality> {
        self.finish_with_overall(seed)
            .map(|(_, groups)| groups)
            .unwrap_or_default()
    }

    /// Quality over every record and per group, as [`quality_grouped`] gives it; `None` when
    /// nothing was graded.
    pub fn finish_with_overall(self, seed: u64) -> Option<(Quality, BTreeMap<String, Quality>)> {
        let (overall, mut groupings) = self.finish_all(seed)?;
        Some((overall, groupings.pop().unwrap_or_default()))
    }

    /// Quality over every record, and per group under each grouping (in the order the keys
    /// were given); `None` when nothing was graded.
    pub fn finish_all(mut self, seed: u64) -> Option<(Quality, Vec<BTreeMap<String, Quality>>)> {
        let busy = super::stats::busy_shares(&self.windows);
        drop(std::mem::take(&mut self.windows));
        for (row, b) in self.rows.iter_mut().zip(busy) {
            if let Some(row) = row {
                row.busy_s = b;
            }
        }
        if self.rows.iter().flatten().all(|r| r.failed) {
            return None;
        }
        let all: Vec<&Row> = self.rows.iter().flatten().collect();
        let overall = quality(&all, seed);
        drop(all);
        let n = self.groupings.len();
        let mut out = Vec::with_capacity(n);
        for (g, (names, _)) in self.groupings.iter().enumerate() {
            let mut groups: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
            for (i, row) in self.rows.iter().enumerate() {
                if let (Some(row), Some(k)) = (row, self.groups[i * n + g]) {
                    groups.entry(&names[k as usize]).or_default().push(row);
                }
            }
            out.push(
                groups
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), quality(&v, seed)))
                    .collect(),
            );
        }
        Some((overall, out))
    }
}

/// Quality overall and per group of `key` only (records without a key count in the overall
/// figure alone): what [`quality_summary`] gives for one grouping, without the others' cost.
pub fn quality_grouped(
    records: &[Record],
    seed: u64,
    key: impl Fn(&Record) -> Option<String>,
) -> Option<(Quality, BTreeMap<String, Quality>)> {
    let rows = Rows::of(records)?;
    Some((rows.overall(seed), rows.grouped(seed, key)))
}

/// A run's records with their rows (busy shares computed over all of them).
struct Rows<'a> {
    rows: Vec<(&'a Record, Row)>,
}

impl<'a> Rows<'a> {
    /// `None` when nothing was graded.
    fn of(records: &'a [Record]) -> Option<Self> {
        let windows: Vec<(f64, f64)> = records
            .iter()
            .map(|r| (r.window.start_s, r.window.end_s))
            .collect();
        let busy = super::stats::busy_shares(&windows);
        let rows: Vec<(&Record, Row)> = records
            .iter()
            .zip(busy)
            .filter_map(|(r, b)| Some((r, row(r, b)?)))
            .collect();
        (!rows.iter().all(|(_, r)| r.failed)).then_some(Rows { rows })
    }

    fn overall(&self, seed: u64) -> Quality {
        quality(&self.rows.iter().map(|(_, r)| r).collect::<Vec<_>>(), seed)
    }

    fn grouped(
        &self,
        seed: u64,
        key: impl Fn(&Record) -> Option<String>,
    ) -> BTreeMap<String, Quality> {
        let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for (r, row) in &self.rows {
            if let Some(k) = key(r) {
                groups.entry(k).or_default().push(row);
            }
        }
        groups
            .into_iter()
            .map(|(k, v)| (k, quality(&v, seed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_reproducible() {
        let v: Vec<f64> = (0..200)
            .map(|i| if i % 4 == 0 { 0.0 } else { 1.0 })
            .collect();
        let a = bootstrap(&[&v], 7, mean).unwrap();
        assert!((a.value - 0.75).abs() < 1e-12);
        assert!(a.ci95[0] < 0.75 && a.ci95[1] > 0.75);
        // Binomial standard error sqrt(.75*.25/200) = 0.0306: the 95% interval is about +-0.06.
        assert!((a.ci95[1] - a.ci95[0] - 0.12).abs() < 0.03, "{:?}", a.ci95);
        assert_eq!(a, bootstrap(&[&v], 7, mean).unwrap());
    }

    /// A graded record over `[start, end]` with `gross` J, `net` J and its own mean power
    /// (energy share / window length), as attribution writes it.
    fn record(start: f64, end: f64, score: f64, gross: f64, net: f64) -> Record {
        serde_json::from_value(serde_json::json!({
            "schema": 1, "query_id": format!("d/{start}-{end}-{gross}"), "index": 0,
            "session": 0, "dataset": "d", "prompt_hash": "h", "prompt": "p", "answers": ["a"],
            "model": "m", "backend": "embedded", "response": "r", "latency_s": end - start,
            "attempts": 1, "started_at": "2026-01-01T00:00:00Z", "tokens_estimated": false,
            "window": {"start_s": start, "end_s": end},
            "grade": {"grader": "exact", "wasm_sha256": "x", "score": score, "parsed": true,
                      "extracted": null, "explanation": null, "error": null},
            "energy": {"gross_j": gross, "net_j": net, "mean_power_w": gross / (end - start),
                       "j_per_output_token": null, "estimated": false, "flags": [],
                       "channels": {}}
        }))
        .unwrap()
    }

    #[test]
    fn quality_by_domain_streamed_equals_the_summary_and_keeps_unlabelled() {
        // Overlapping windows (busy time shared), three labels over nine records, two without.
        let records: Vec<Record> = (0..9)
            .map(|i| {
                let start = i as f64 * 0.5;
                let mut r = record(start, start + 1.0, (i % 3 == 0) as u8 as f64, 10.0, 6.0);
                r.query_id = format!("d/{i}");
                let label = ["15-0000", "23-0000", "15-0000"].get(i % 4).copied();
                r.domain = Some(
                    serde_json::from_value(serde_json::json!({
                        "label": label, "classifier": "k", "wasm_sha256": "x",
                        "taxonomy": "t", "taxonomy_sha256": "y"
                    }))
                    .unwrap(),
                );
                r
            })
            .collect();
        let summary = quality_summary(&records, 5).unwrap().by_domain;
        assert_eq!(
            summary.keys().collect::<Vec<_>>(),
            ["15-0000", "23-0000", "unlabelled"]
        );
        assert_eq!(summary["unlabelled"].scored, 2);
        let mut streamed = GroupedQuality::default();
        // In another order: the figures do not depend on it.
        for r in records.iter().rev() {
            streamed.push_by_domain(r);
        }
        let streamed = streamed.finish(5);
        for (k, q) in &summary {
            let s = &streamed[k];
            assert_eq!(s.scored, q.scored, "{k}");
            assert_eq!(
                s.accuracy.as_ref().unwrap().value,
                q.accuracy.as_ref().unwrap().value
            );
            assert!((s.apj.as_ref().unwrap().value - q.apj.as_ref().unwrap().value).abs() < 1e-12);
            assert!((s.apw.as_ref().unwrap().value - q.apw.as_ref().unwrap().value).abs() < 1e-12);
        }
        // Without any label there is no per-domain figure.
        let plain: Vec<Record> = records
            .iter()
            .cloned()
            .map(|mut r| {
                r.domain = None;
                r
            })
            .collect();
        assert!(quality_summary(&plain, 5).unwrap().by_domain.is_empty());
    }

    #[test]
    fn apw_is_accuracy_over_energy_per_busy_second_at_any_concurrency() {
        // A machine drawing 100 W (net 60 W) while busy. One at a time: four 1 s queries.
        let serial: Vec<Record> = (0..4)
            .map(|i| record(i as f64, i as f64 + 1.0, (i % 2) as f64, 100.0, 60.0))
            .collect();
        // Two at a time over the same 4 s of work: each pair shares 2 s of 100 W.
        let paired: Vec<Record> = (0..4)
            .map(|i| {
                let start = (i / 2) as f64 * 2.0;
                record(start, start + 2.0, (i % 2) as f64, 100.0, 60.0)
            })
            .collect();
        for records in [&serial, &paired] {
            let q = quality_summary(records, 1).unwrap().overall;
            assert_eq!(q.apj_energy.as_deref(), Some("net"));
            let apw = q.apw.unwrap().value;
            // accuracy 0.5 / 60 W net
            assert!((apw - 0.5 / 60.0).abs() < 1e-12, "{apw}");
            let apj = q.apj.unwrap().value;
            assert!((apj - 0.5 / 60.0).abs() < 1e-12, "{apj}");
        }
        // The per-query mean of window power halves when two share a window: not APW.
        let q = quality_summary(&paired, 1).unwrap().overall;
        let per_query = q.apw_per_query_mean.unwrap().value;
        assert!((per_query - 0.5 / 50.0).abs() < 1e-12, "{per_query}");
    }

    #[test]
    fn apj_and_apw_report_the_instruments_bound_beside_the_sampling_interval() {
        // Net 60 J per 1 s query known to +-6 J: APJ's bound is accuracy / 66 .. / 54, and the
        // combined interval is the bootstrap one scaled by as much on each side.
        let mut records: Vec<Record> = (0..40)
            .map(|i| {
                record(
                    i as f64,
                    i as f64 + 1.0,
                    (i % 3 == 0) as u8 as f64,
                    100.0,
                    60.0,
                )
            })
            .collect();
        for r in &mut records {
            let e = r.energy.as_mut().unwrap();
            e.gross_bound_j = Some([95.0, 105.0]);
            e.net_bound_j = Some([54.0, 66.0]);
        }
        let q = quality_summary(&records, 1).unwrap().overall;
        let acc = q.accuracy.unwrap().value;
        for (name, e) in [("apj", q.apj.unwrap()), ("apw", q.apw.unwrap())] {
            let m = e.measurement.unwrap();
            assert!(
                (m[0] - acc / 66.0).abs() < 1e-12 && (m[1] - acc / 54.0).abs() < 1e-12,
                "{name} {m:?}"
            );
            let c = e.combined.unwrap();
            assert!((c[0] - e.ci95[0] * m[0] / e.value).abs() < 1e-12, "{name}");
            assert!((c[1] - e.ci95[1] * m[1] / e.value).abs() < 1e-12, "{name}");
            assert!(e.ci95[1] - e.ci95[0] > 0.0, "sampling spread is there too");
        }
        assert!(
            q.accuracy.unwrap().measurement.is_none(),
            "accuracy has no instrument"
        );
        // One record without a bound (attributed before bounds existed): no bound is claimed.
        records[0].energy.as_mut().unwrap().net_bound_j = None;
        let q = quality_summary(&records, 1).unwrap().overall;
        assert!(q.apj.unwrap().measurement.is_none());
    }

    #[test]
    fn the_combined_interval_of_a_ratio_stays_above_zero() {
        // Few right answers (4 in 40) and a wide net bound (60 J known to 30..90 J, as a
        // baseline read over a short idle): shifting the sampling interval down by the bound's
        // reach put APJ's combined interval below zero; the relative widening cannot.
        let mut records: Vec<Record> = (0..40)
            .map(|i| {
                let right = (i % 13 == 0) as u8 as f64;
                record(i as f64, i as f64 + 1.0, right, 100.0, 60.0)
            })
            .collect();
        for r in &mut records {
            r.energy.as_mut().unwrap().net_bound_j = Some([30.0, 90.0]);
        }
        let q = quality_summary(&records, 1).unwrap().overall;
        for (name, e) in [("apj", q.apj.unwrap()), ("apw", q.apw.unwrap())] {
            let [m_lo, m_hi] = e.measurement.unwrap();
            let [lo, hi] = e.combined.unwrap();
            eprintln!(
                "{name} {:.5} sampling [{:.5}, {:.5}] bound [{m_lo:.5}, {m_hi:.5}]: combined \
                 [{lo:.5}, {hi:.5}] (shifted, as before: [{:.5}, {:.5}])",
                e.value,
                e.ci95[0],
                e.ci95[1],
                e.ci95[0] - (e.value - m_lo),
                e.ci95[1] + (m_hi - e.value)
            );
            assert!(
                e.ci95[0] - (e.value - m_lo) < 0.0,
                "{name}: the case that went negative"
            );
            assert!(lo >= 0.0, "{name}: combined {lo} below zero");
            assert!(lo <= e.ci95[0] && hi >= e.ci95[1], "{name}: not wider");
            assert!(lo <= m_lo && hi >= m_hi, "{name}: does not hold the bound");
        }
    }

    #[test]
    fn resamples_without_a_statistic_are_counted_not_hidden() {
        // 1 record in 10 has energy; a resample without it has no APJ.
        let v: Vec<f64> = (0..10).map(|i| if i == 0 { 2.0 } else { 0.0 }).collect();
        let stat = |t: &[f64], n: f64| (t[0] > 0.0).then(|| n / t[0]);
        let e = bootstrap(&[&v], 3, stat).unwrap();
        // P(no draw of record 0 in 10) = 0.9^10 = 35%: about 350 of 1000 resamples.
        assert!((250..450).contains(&e.dropped_draws), "{}", e.dropped_draws);
        let full = bootstrap(&[&[1.0; 4]], 3, |_: &[f64], n| Some(n)).unwrap();
        assert_eq!(full.dropped_draws, 0);
    }

    #[test]
    fn joules_per_query_carry_their_sampling_interval() {
        let records: Vec<Record> = (0..40)
            .map(|i| {
                record(
                    i as f64,
                    i as f64 + 1.0,
                    1.0,
                    90.0 + (i % 5) as f64 * 5.0,
                    50.0,
                )
            })
            .collect();
        let s = crate::analysis::summarize("m", "embedded", 40, &records, 9);
        let e = s.energy.unwrap();
        let g = e.gross_j_mean.unwrap();
        // Gross 90..110 J in equal shares: mean 100 J.
        assert!((g.value - 100.0).abs() < 1e-9, "{g:?}");
        assert!(g.ci95[0] < 100.0 && g.ci95[1] > 100.0, "{g:?}");
        assert!(g.ci95[1] - g.ci95[0] < 10.0, "{g:?}");
        let n = e.net_j_mean.unwrap();
        assert_eq!(n.ci95, [50.0, 50.0], "constant net: no spread");
    }
}
