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
//! and recompute the ratio each time, so they carry the joint uncertainty of both sides.

use super::stats::percentile;
use crate::records::GradeRecord;
use crate::records::QueryEnergy;
use crate::records::Record;
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const RESAMPLES: usize = 1000;

/// A value with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    /// Point estimate.
    pub value: f64,
    /// 2.5th and 97.5th percentiles of the bootstrap distribution.
    pub ci95: [f64; 2],
    /// Resamples whose statistic did not exist (e.g. every drawn record had zero energy) and
    /// so are not in the interval: said here, not dropped silently. The interval is then
    /// conditional on the statistic existing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_draws: usize,
    /// For figures built on energy: the statistic with every record's energy at the low and at
    /// the high end of its measurement bound (what the instruments leave open: sampling,
    /// resolution, declared accuracy). Systematic, not random: it does not shrink with more
    /// queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<[f64; 2]>,
    /// The sampling interval widened by the measurement bound on each side (worst case: the
    /// bound is systematic, so it shifts the interval rather than adding in quadrature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined: Option<[f64; 2]>,
}

impl Estimate {
    /// Attach a measurement bound `[low, high]` of the statistic (both ends computed from the
    /// records' bounds) and the combined interval; `None` leaves the estimate as it is.
    pub fn with_measurement(mut self, bound: Option<[f64; 2]>) -> Self {
        if let Some([a, b]) = bound {
            let (lo, hi) = (a.min(b).min(self.value), a.max(b).max(self.value));
            self.measurement = Some([lo, hi]);
            self.combined = Some([
                self.ci95[0] - (self.value - lo),
                self.ci95[1] + (hi - self.value),
            ]);
        }
        self
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

/// `stat` over all `n` items with its bootstrap 95% interval (1000 seeded resamples).
pub(crate) fn bootstrap(
    n: usize,
    seed: u64,
    stat: impl Fn(&[usize]) -> Option<f64>,
) -> Option<Estimate> {
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all)?;
    let mut rng = SplitMix64::new(seed);
    let mut draws: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let sample: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            stat(&sample)
        })
        .filter(|v| v.is_finite())
        .collect();
    let dropped_draws = RESAMPLES - draws.len();
    if draws.is_empty() {
        return Some(Estimate {
            value,
            ci95: [value, value],
            dropped_draws,
            measurement: None,
            combined: None,
        });
    }
    draws.sort_by(f64::total_cmp);
    Some(Estimate {
        value,
        ci95: [percentile(&draws, 0.025), percentile(&draws, 0.975)],
        dropped_draws,
        measurement: None,
        combined: None,
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
        let windows: Vec<(f64, f64)> = records
            .iter()
            .map(|r| (r.window.start_s, r.window.end_s))
            .collect();
        let busy = super::stats::busy_shares(&windows);
        let rows: Vec<Row> = records
            .iter()
            .zip(busy)
            .filter_map(|(r, b)| row(r, b))
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

    /// APW over the records `idx`: mean score / (joules / busy seconds).
    pub fn apw(&self, idx: &[usize]) -> Option<f64> {
        apw_of(&self.rows, idx)
    }

    /// APJ over the records `idx`: mean score / mean joules.
    pub fn apj(&self, idx: &[usize]) -> Option<f64> {
        let (mut score, mut j) = (0.0, 0.0);
        for &i in idx {
            score += self.rows[i].0;
            j += self.rows[i].1;
        }
        (!idx.is_empty() && j > 0.0).then(|| score / j)
    }
}

/// Accuracy / (joules / busy seconds) over the drawn `(score, joules, busy)` rows.
fn apw_of(rows: &[(f64, f64, f64)], idx: &[usize]) -> Option<f64> {
    let (mut score, mut j, mut busy) = (0.0, 0.0, 0.0);
    for &i in idx {
        score += rows[i].0;
        j += rows[i].1;
        busy += rows[i].2;
    }
    (!idx.is_empty() && j > 0.0 && busy > 0.0).then(|| score / idx.len() as f64 / (j / busy))
}

fn quality(all: &[&Row], seed: u64) -> Quality {
    let failed = all.iter().filter(|r| r.failed).count();
    let rows: Vec<&Row> = all.iter().copied().filter(|r| !r.failed).collect();
    let scored: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
    let with_failures: Vec<f64> = scored
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, failed))
        .collect();
    let mean = |v: &[f64], idx: &[usize]| -> Option<f64> {
        (!idx.is_empty()).then(|| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64)
    };
    let accuracy = bootstrap(scored.len(), seed, |idx| mean(&scored, idx));
    let (use_net, with_energy, joules) = joule_rows(&rows);
    // The same rows with their energy at the low, then the high end of its bound; `None` when
    // any row has no bound (a run attributed before bounds existed).
    let at_bound = |end: usize| -> Option<Vec<(f64, f64, f64)>> {
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
                Some((s, b[end], busy))
            })
            .collect()
    };
    let (low_j, high_j) = (at_bound(0), at_bound(1));
    let watts: Vec<(f64, f64)> = with_energy
        .iter()
        .filter_map(|&(s, e, _)| Some((s, e.power?)))
        .collect();
    let per_joule: Vec<(f64, f64)> = joules.iter().map(|&(s, j, _)| (s, j)).collect();
    let per_watt_of = apw_of;
    let per_watt = |idx: &[usize]| per_watt_of(&joules, idx);
    let ratio = |pairs: &[(f64, f64)], idx: &[usize]| -> Option<f64> {
        if idx.is_empty() {
            return None;
        }
        let (a, d) = idx
            .iter()
            .fold((0.0, 0.0), |(a, d), &i| (a + pairs[i].0, d + pairs[i].1));
        (d > 0.0).then(|| a / d) // equal counts cancel: mean(score) / mean(energy)
    };
    Quality {
        graded: rows.len(),
        scored: scored.len(),
        unparsed_rate: if rows.is_empty() {
            0.0
        } else {
            rows.iter().filter(|r| !r.parsed).count() as f64 / rows.len() as f64
        },
        grader_errors: rows.iter().filter(|r| r.error).count(),
        accuracy,
        failed,
        accuracy_with_failures: bootstrap(with_failures.len(), seed ^ 4, |idx| {
            mean(&with_failures, idx)
        }),
        apj: bootstrap(per_joule.len(), seed ^ 1, |idx| ratio(&per_joule, idx)).map(|e| {
            let at = |rows: &Option<Vec<(f64, f64, f64)>>| {
                let pairs: Vec<(f64, f64)> =
                    rows.as_ref()?.iter().map(|&(s, j, _)| (s, j)).collect();
                let all: Vec<usize> = (0..pairs.len()).collect();
                ratio(&pairs, &all)
            };
            e.with_measurement(at(&high_j).zip(at(&low_j)).map(|(a, b)| [a, b]))
        }),
        apj_energy: (!joules.is_empty()).then(|| if use_net { "net" } else { "gross" }.to_string()),
        apw: bootstrap(joules.len(), seed ^ 2, per_watt).map(|e| {
            let at = |rows: &Option<Vec<(f64, f64, f64)>>| {
                let rows = rows.as_ref()?;
                per_watt_of(rows, &(0..rows.len()).collect::<Vec<_>>())
            };
            e.with_measurement(at(&high_j).zip(at(&low_j)).map(|(a, b)| [a, b]))
        }),
        apw_per_query_mean: bootstrap(watts.len(), seed ^ 3, |idx| ratio(&watts, idx)),
        energy_estimated: with_energy.iter().any(|(_, e, _)| e.estimated),
    }
}

/// Quality of a run's records; `None` when nothing was graded.
pub fn quality_summary(records: &[Record], seed: u64) -> Option<QualitySummary> {
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
    if rows.iter().all(|(_, r)| r.failed) {
        return None;
    }
    let mut graders: Vec<String> = records
        .iter()
        .filter_map(|r| r.grade.as_ref().map(|g| g.grader.clone()))
        .collect();
    graders.sort();
    graders.dedup();
    let group = |key: &dyn Fn(&Record) -> Option<String>| -> BTreeMap<String, Quality> {
        let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for (r, row) in &rows {
            if let Some(k) = key(r) {
                groups.entry(k).or_default().push(row);
            }
        }
        groups
            .into_iter()
            .map(|(k, v)| (k, quality(&v, seed)))
            .collect()
    };
    Some(QualitySummary {
        graders,
        overall: quality(&rows.iter().map(|(_, r)| r).collect::<Vec<_>>(), seed),
        by_dataset: group(&|r| Some(r.dataset.clone())),
        by_subject: group(&|r| r.subject.clone()),
        by_category: group(&|r| r.category.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_reproducible() {
        let v: Vec<f64> = (0..200)
            .map(|i| if i % 4 == 0 { 0.0 } else { 1.0 })
            .collect();
        let stat = |idx: &[usize]| Some(idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64);
        let a = bootstrap(v.len(), 7, stat).unwrap();
        assert!((a.value - 0.75).abs() < 1e-12);
        assert!(a.ci95[0] < 0.75 && a.ci95[1] > 0.75);
        // Binomial standard error sqrt(.75*.25/200) = 0.0306: the 95% interval is about +-0.06.
        assert!((a.ci95[1] - a.ci95[0] - 0.12).abs() < 0.03, "{:?}", a.ci95);
        assert_eq!(a, bootstrap(v.len(), 7, stat).unwrap());
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
        // combined interval is the bootstrap one widened by as much on each side.
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
            assert!(
                (c[0] - (e.ci95[0] - (e.value - m[0]))).abs() < 1e-12,
                "{name}"
            );
            assert!(
                (c[1] - (e.ci95[1] + (m[1] - e.value))).abs() < 1e-12,
                "{name}"
            );
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
    fn resamples_without_a_statistic_are_counted_not_hidden() {
        // 1 record in 10 has energy; a resample without it has no APJ.
        let v: Vec<f64> = (0..10).map(|i| if i == 0 { 2.0 } else { 0.0 }).collect();
        let stat = |idx: &[usize]| {
            let d: f64 = idx.iter().map(|&i| v[i]).sum();
            (d > 0.0).then(|| idx.len() as f64 / d)
        };
        let e = bootstrap(v.len(), 3, stat).unwrap();
        // P(no draw of record 0 in 10) = 0.9^10 = 35%: about 350 of 1000 resamples.
        assert!((250..450).contains(&e.dropped_draws), "{}", e.dropped_draws);
        let full = bootstrap(4, 3, |idx| Some(idx.len() as f64)).unwrap();
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
