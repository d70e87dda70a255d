//! Accuracy, accuracy per joule (APJ) and accuracy per watt (APW), with seeded bootstrap 95%
//! confidence intervals, overall and per dataset, subject and category.
//!
//! - accuracy = mean score over scored records (unscored: grader errors, unreadable judge
//!   replies, failed queries); the unparsed rate is reported beside it;
//! - APJ = accuracy / mean net energy per query (J), over records with both; gross energy is
//!   used (and said) when no baseline was measured;
//! - APW = accuracy / mean power over the query windows (W).
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
    /// Accuracy per joule.
    pub apj: Option<Estimate>,
    /// `net` or `gross`: which energy APJ divides by.
    pub apj_energy: Option<String>,
    /// Accuracy per watt.
    pub apw: Option<Estimate>,
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
    power: Option<f64>,
    estimated: bool,
}

struct Row {
    score: Option<f64>,
    parsed: bool,
    error: bool,
    energy: Option<RowEnergy>,
}

fn row(r: &Record) -> Option<Row> {
    let g: &GradeRecord = r.grade.as_ref()?;
    let e: Option<&QueryEnergy> = r.energy.as_ref();
    Some(Row {
        score: g.score,
        parsed: g.parsed,
        error: g.error.is_some(),
        energy: e.map(|e| RowEnergy {
            net: e.net_j,
            gross: e.gross_j,
            power: e.mean_power_w,
            estimated: e.estimated,
        }),
    })
}

fn bootstrap(n: usize, seed: u64, stat: impl Fn(&[usize]) -> Option<f64>) -> Option<Estimate> {
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
    if draws.is_empty() {
        return Some(Estimate {
            value,
            ci95: [value, value],
        });
    }
    draws.sort_by(f64::total_cmp);
    Some(Estimate {
        value,
        ci95: [percentile(&draws, 0.025), percentile(&draws, 0.975)],
    })
}

fn quality(rows: &[&Row], seed: u64) -> Quality {
    let scored: Vec<f64> = rows.iter().filter_map(|r| r.score).collect();
    let mean = |v: &[f64], idx: &[usize]| -> Option<f64> {
        (!idx.is_empty()).then(|| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64)
    };
    let accuracy = bootstrap(scored.len(), seed, |idx| mean(&scored, idx));
    // Rows with a score and energy; net where every one has it, else gross.
    let with_energy: Vec<(f64, RowEnergy)> = rows
        .iter()
        .filter_map(|r| Some((r.score?, r.energy?)))
        .collect();
    let use_net = !with_energy.is_empty() && with_energy.iter().all(|(_, e)| e.net.is_some());
    let joules: Vec<(f64, f64)> = with_energy
        .iter()
        .filter_map(|&(s, e)| Some((s, if use_net { e.net? } else { e.gross? })))
        .collect();
    let watts: Vec<(f64, f64)> = with_energy
        .iter()
        .filter_map(|&(s, e)| Some((s, e.power?)))
        .collect();
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
        apj: bootstrap(joules.len(), seed ^ 1, |idx| ratio(&joules, idx)),
        apj_energy: (!joules.is_empty()).then(|| if use_net { "net" } else { "gross" }.to_string()),
        apw: bootstrap(watts.len(), seed ^ 2, |idx| ratio(&watts, idx)),
        energy_estimated: with_energy.iter().any(|(_, e)| e.estimated),
    }
}

/// Quality of a run's records; `None` when nothing was graded.
pub fn quality_summary(records: &[Record], seed: u64) -> Option<QualitySummary> {
    let rows: Vec<(&Record, Row)> = records.iter().filter_map(|r| Some((r, row(r)?))).collect();
    if rows.is_empty() {
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
}
