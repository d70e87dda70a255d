//! `ipw trend`: how intelligence per watt moved with model and hardware release dates, and how
//! much of a change came from the model and how much from the accelerator.
//!
//! Each run (a model on an accelerator) gives one point: its APW (or APJ) as the run's summary
//! defines it. Every interval here comes from one shared bootstrap: each run's records are
//! resampled on their own (runs measure different queries and machines, so independently), 1000
//! times, and every derived figure is recomputed on each draw.
//!
//! - **Frontier**: at each model release date, the best point among runs whose model (and, when
//!   known, accelerator) was released by then.
//! - **Fit**: least squares of ln(metric) on the frontier against the date in years; the factor
//!   per year is e^slope.
//! - **Change** between two dates (default: the frontier's first and last): the best at the end
//!   over the best at the start, split into a model factor and a hardware factor. With the start
//!   pair (m0 on h0), the end pair (m1 on h1) and both crossings measured (m1 on h0, m0 on h1),
//!   the split is the Shapley one, the mean of both orders in log space:
//!   model = sqrt(V(m1,h0)/V(m0,h0) x V(m1,h1)/V(m0,h1)),
//!   hardware = sqrt(V(m0,h1)/V(m0,h0) x V(m1,h1)/V(m1,h0)), so model x hardware = total exactly.
//!   With one crossing, the one order it allows; with none, no split (said so).
//! - **Local vs cloud**: for a model measured on both a `local` and a `cloud` accelerator
//!   (`accelerator_class`), the best cloud point over the best local one.

use super::StudyError;
use crate::analysis::bootstrap::{self, RESAMPLES};
use crate::analysis::{EnergyRowsBuilder, Estimate};
use crate::config::{AcceleratorClass, ModelMeta};
use crate::records::{Detail, RunDir};
use chrono::Datelike;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Records handed over at a time while a run is read.
const RECORD_BATCH: usize = 8192;

/// Which figure the trend follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Accuracy per watt (intelligence per watt).
    Apw,
    /// Accuracy per joule.
    Apj,
}

impl Metric {
    /// Parse `apw` or `apj`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "apw" => Ok(Metric::Apw),
            "apj" => Ok(Metric::Apj),
            o => Err(format!("`{o}`: use apw or apj")),
        }
    }

    /// The figure from the sums of (score, joules, busy seconds) over `n` records.
    fn stat(self) -> fn(&[f64], f64) -> Option<f64> {
        match self {
            Metric::Apw => crate::analysis::quality::apw,
            Metric::Apj => crate::analysis::quality::apj,
        }
    }
}

/// What an accelerator is, for the study (`[accelerators.NAME]` in a `--meta` file).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceleratorMeta {
    /// Release date, `YYYY-MM-DD`.
    #[serde(default)]
    pub release_date: Option<String>,
    /// `local` or `cloud`.
    #[serde(default)]
    pub class: Option<AcceleratorClass>,
}

/// One run: a model on an accelerator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrendPoint {
    /// Model name.
    pub model: String,
    /// Accelerator label.
    pub accelerator: String,
    /// The run directory.
    pub run: PathBuf,
    /// Model release date.
    pub model_release: Option<String>,
    /// Accelerator release date.
    pub accelerator_release: Option<String>,
    /// `local` or `cloud`.
    pub class: Option<AcceleratorClass>,
    /// Records with a score and energy.
    pub records: usize,
    /// The metric with its interval.
    pub value: Option<Estimate>,
    /// Energy is modelled, not measured.
    pub energy_estimated: bool,
}

/// The best point available at a date.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BestAtDate {
    /// The date.
    pub date: String,
    /// The best run's model.
    pub model: String,
    /// Its accelerator.
    pub accelerator: String,
    /// Its metric.
    pub value: Estimate,
}

/// The change between two dates and its split.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// Start date and its best pair.
    pub from: BestAtDate,
    /// End date and its best pair.
    pub to: BestAtDate,
    /// End over start.
    pub total: Estimate,
    /// The part due to the model (hardware held fixed).
    pub model_factor: Option<Estimate>,
    /// The part due to the accelerator (model held fixed).
    pub hardware_factor: Option<Estimate>,
    /// How the split was made, or why there is none.
    pub method: String,
}

/// A model on local and on cloud hardware.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LocalVsCloud {
    /// The model.
    pub model: String,
    /// Its best local accelerator.
    pub local: String,
    /// Its best cloud accelerator.
    pub cloud: String,
    /// Cloud metric over local metric.
    pub ratio: Estimate,
}

/// `ipw trend`'s result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrendReport {
    /// The metric followed.
    pub metric: Metric,
    /// Every run.
    pub points: Vec<TrendPoint>,
    /// The best available at each model release date.
    pub frontier: Vec<BestAtDate>,
    /// Factor per year from a log-linear fit of the frontier (two dates or more).
    pub per_year: Option<Estimate>,
    /// The change between the two dates and its split.
    pub change: Option<Change>,
    /// Same model, local vs cloud.
    pub local_vs_cloud: Vec<LocalVsCloud>,
}

struct Run {
    point: TrendPoint,
    value: Option<f64>,
    draws: Vec<f64>,
    model_date: Option<chrono::NaiveDate>,
    accel_date: Option<chrono::NaiveDate>,
}

fn date(s: &Option<String>, what: &str) -> Result<Option<chrono::NaiveDate>, String> {
    s.as_deref()
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| format!("{what} {d:?} is not a YYYY-MM-DD date"))
        })
        .transpose()
}

/// A figure from run values, with its interval from the same figure on every draw.
fn estimate(
    runs: &[Run],
    f: impl Fn(&dyn Fn(usize) -> Option<f64>) -> Option<f64>,
) -> Option<Estimate> {
    let value = f(&|r| runs[r].value)?;
    let mut draws: Vec<f64> = (0..RESAMPLES)
        .filter_map(|b| f(&|r| runs[r].draws.get(b).copied().filter(|v| v.is_finite())))
        .filter(|v| v.is_finite())
        .collect();
    let dropped_draws = RESAMPLES - draws.len();
    draws.sort_by(f64::total_cmp);
    let ci95 = if draws.is_empty() {
        [value, value]
    } else {
        [
            crate::analysis::stats::percentile(&draws, 0.025),
            crate::analysis::stats::percentile(&draws, 0.975),
        ]
    };
    Some(Estimate {
        value,
        ci95,
        dropped_draws,
        measurement: None,
        combined: None,
    })
}

/// The trend over `runs`. `models` and `accelerators` override the runs' own metadata.
pub fn trend(
    runs: &[PathBuf],
    metric: Metric,
    models: &BTreeMap<String, ModelMeta>,
    accelerators: &BTreeMap<String, AcceleratorMeta>,
    between: (Option<&str>, Option<&str>),
    seed: u64,
) -> Result<TrendReport, StudyError> {
    let dirs = crate::joined::find_runs(runs)?;
    let mut all = Vec::new();
    for (k, dir) in dirs.iter().enumerate() {
        let err = |message: String| StudyError::Run {
            path: dir.clone(),
            message,
        };
        let run = RunDir::new(dir);
        let manifest = run.read_manifest().map_err(|e| err(e.to_string()))?;
        let name = manifest.model.name.clone();
        let (meta, accelerator) = crate::joined::run_meta(&manifest, models).map_err(err)?;
        let am = accelerators.get(&accelerator).cloned().unwrap_or_default();
        let accelerator_release = am.release_date.or(meta.accelerator_release_date.clone());
        let class = am.class.or(meta.accelerator_class);
        // The run streams past: what stays is a window and a compact row per record.
        let mut rows = EnergyRowsBuilder::default();
        run.for_each_record_with(RECORD_BATCH, Detail::Figures, |batch| {
            for r in &batch {
                rows.push(r);
            }
        })
        .map_err(|e| err(e.to_string()))?;
        let rows = rows.finish();
        let n = rows.rows.len();
        let columns = rows.columns();
        let columns: Vec<&[f64]> = columns.iter().map(Vec::as_slice).collect();
        let salt = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (value, draws) = match bootstrap::draws(&columns, seed ^ salt, metric.stat()) {
            Some((v, d)) => (Some(v), d),
            None => (None, Vec::new()),
        };
        let model_date = date(&meta.release_date, &format!("{name}: release_date")).map_err(err)?;
        let accel_date = date(
            &accelerator_release,
            &format!("{accelerator}: accelerator release date"),
        )
        .map_err(err)?;
        all.push(Run {
            point: TrendPoint {
                model: name,
                accelerator,
                run: dir.clone(),
                model_release: meta.release_date.clone(),
                accelerator_release,
                class,
                records: n,
                value: None,
                energy_estimated: rows.estimated,
            },
            value,
            draws,
            model_date,
            accel_date,
        });
    }
    for r in 0..all.len() {
        all[r].point.value = estimate(&all, |v| v(r));
    }
    let best_at = |d: chrono::NaiveDate| -> Option<usize> {
        (0..all.len())
            .filter(|&r| {
                all[r].model_date.is_some_and(|m| m <= d)
                    && all[r].accel_date.is_none_or(|a| a <= d)
                    && all[r].value.is_some()
            })
            .max_by(|&a, &b| all[a].value.unwrap().total_cmp(&all[b].value.unwrap()))
    };
    let at = |d: chrono::NaiveDate, r: usize| BestAtDate {
        date: d.format("%Y-%m-%d").to_string(),
        model: all[r].point.model.clone(),
        accelerator: all[r].point.accelerator.clone(),
        value: all[r].point.value.expect("a best run has a value"),
    };
    let mut dates: Vec<chrono::NaiveDate> = all.iter().filter_map(|r| r.model_date).collect();
    dates.sort();
    dates.dedup();
    let frontier: Vec<(chrono::NaiveDate, usize)> = dates
        .iter()
        .filter_map(|&d| Some((d, best_at(d)?)))
        .collect();

    let per_year = (frontier.len() >= 2)
        .then(|| {
            let years: Vec<f64> = frontier
                .iter()
                .map(|(d, _)| d.num_days_from_ce() as f64 / 365.2425)
                .collect();
            estimate(&all, |v| {
                let ys: Vec<f64> = frontier
                    .iter()
                    .map(|&(_, r)| v(r).filter(|x| *x > 0.0).map(f64::ln))
                    .collect::<Option<_>>()?;
                let n = ys.len() as f64;
                let (mx, my) = (years.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
                let sxx: f64 = years.iter().map(|x| (x - mx).powi(2)).sum();
                let sxy: f64 = years
                    .iter()
                    .zip(&ys)
                    .map(|(x, y)| (x - mx) * (y - my))
                    .sum();
                (sxx > 0.0).then(|| (sxy / sxx).exp())
            })
        })
        .flatten();

    let pick =
        |s: Option<&str>, first: bool| -> Result<Option<(chrono::NaiveDate, usize)>, StudyError> {
            match s {
                Some(s) => {
                    let d = date(&Some(s.to_string()), "--from/--to")
                        .map_err(StudyError::Input)?
                        .expect("a date was given");
                    Ok(best_at(d).map(|r| (d, r)))
                }
                None => Ok(if first {
                    frontier.first().copied()
                } else {
                    frontier.last().copied()
                }),
            }
        };
    let change = match (pick(between.0, true)?, pick(between.1, false)?) {
        (Some((d0, r0)), Some((d1, r1))) if d0 < d1 => Some(split(&all, (d0, r0), (d1, r1), &at)),
        _ => None,
    };

    let mut local_vs_cloud = Vec::new();
    let mut by_model: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (r, run) in all.iter().enumerate() {
        if run.value.is_some() {
            by_model.entry(&run.point.model).or_default().push(r);
        }
    }
    for (model, rs) in by_model {
        let best = |class: AcceleratorClass| {
            rs.iter()
                .copied()
                .filter(|&r| all[r].point.class == Some(class))
                .max_by(|&a, &b| all[a].value.unwrap().total_cmp(&all[b].value.unwrap()))
        };
        if let (Some(l), Some(c)) = (best(AcceleratorClass::Local), best(AcceleratorClass::Cloud)) {
            if let Some(ratio) = estimate(&all, |v| Some(v(c)? / v(l)?)) {
                local_vs_cloud.push(LocalVsCloud {
                    model: model.to_string(),
                    local: all[l].point.accelerator.clone(),
                    cloud: all[c].point.accelerator.clone(),
                    ratio,
                });
            }
        }
    }
    Ok(TrendReport {
        metric,
        frontier: frontier.iter().map(|&(d, r)| at(d, r)).collect(),
        points: all.into_iter().map(|r| r.point).collect(),
        per_year,
        change,
        local_vs_cloud,
    })
}

/// The change from the best pair at one date to the best at a later one, split (module doc).
fn split(
    all: &[Run],
    (d0, r0): (chrono::NaiveDate, usize),
    (d1, r1): (chrono::NaiveDate, usize),
    at: &dyn Fn(chrono::NaiveDate, usize) -> BestAtDate,
) -> Change {
    let (m0, h0) = (&all[r0].point.model, &all[r0].point.accelerator);
    let (m1, h1) = (&all[r1].point.model, &all[r1].point.accelerator);
    let find = |m: &str, h: &str| {
        all.iter()
            .position(|r| r.point.model == m && r.point.accelerator == h && r.value.is_some())
    };
    let total = estimate(all, |v| Some(v(r1)? / v(r0)?));
    let one = || estimate(all, |_| Some(1.0)).expect("a constant has a value");
    let ratio = |a: usize, b: usize| estimate(all, |v| Some(v(a)? / v(b)?));
    let (model_factor, hardware_factor, method) = if m0 == m1 && h0 == h1 {
        (
            Some(one()),
            Some(one()),
            "the same pair at both dates".to_string(),
        )
    } else if m0 == m1 {
        (
            Some(one()),
            total,
            "same model at both dates: all hardware".into(),
        )
    } else if h0 == h1 {
        (
            total,
            Some(one()),
            "same accelerator at both dates: all model".into(),
        )
    } else {
        match (find(m1, h0), find(m0, h1)) {
            (Some(r10), Some(r01)) => (
                estimate(all, |v| {
                    Some((v(r10)? / v(r0)? * (v(r1)? / v(r01)?)).sqrt())
                }),
                estimate(all, |v| {
                    Some((v(r01)? / v(r0)? * (v(r1)? / v(r10)?)).sqrt())
                }),
                format!(
                    "Shapley (mean of both orders in log space) over {m0} and {m1} on {h0} and {h1}"
                ),
            ),
            (Some(r10), None) => (
                ratio(r10, r0),
                ratio(r1, r10),
                format!(
                    "model first ({m1} on {h0} measured), then hardware; {m0} on {h1} not measured"
                ),
            ),
            (None, Some(r01)) => (
                ratio(r1, r01),
                ratio(r01, r0),
                format!(
                    "hardware first ({m0} on {h1} measured), then model; {m1} on {h0} not measured"
                ),
            ),
            (None, None) => (
                None,
                None,
                format!("no split: measure {m1} on {h0} or {m0} on {h1}"),
            ),
        }
    };
    Change {
        from: at(d0, r0),
        to: at(d1, r1),
        total: total.expect("both ends have values"),
        model_factor,
        hardware_factor,
        method,
    }
}
