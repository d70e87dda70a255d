//! The bootstrap behind every interval ipw prints: 1000 seeded resamples of the records, the
//! statistic recomputed on each, the 2.5th and 97.5th percentiles of the draws.
//!
//! Every statistic ipw reports is a function of a few column sums over the records (mean score
//! = Σ score / n, APJ = Σ score / Σ joules, APW = (Σ score / n) / (Σ joules / Σ busy seconds),
//! paired differences and ratios of two runs' sums), so a resample only has to produce those
//! sums. Two ways to get them, chosen by the number of records `n`:
//!
//! - **exact**: draw `n` records with replacement and add them up, as textbook resampling does
//!   (O(1000·n));
//! - **normal limit**: draw the sums from the distribution resampling converges to. Resampling
//!   `n` records gives sums with mean `n·μ` and covariance `n·Σ`, where μ and Σ are the mean
//!   and the (population) covariance of the records' columns, and by the central limit theorem
//!   a distribution that is that normal up to its skewness, γ/√n for a column of skewness γ.
//!   Drawing from it costs O(n) for μ and Σ plus O(1000·k²) for the draws; the statistic (a
//!   ratio, a difference) is still applied to each draw, so its non-linearity is kept.
//!
//! The normal limit is used only where it is as good as resampling: more than
//! [`EXACT_MAX`] records and every column's sum skewed by at most [`SKEW_MAX`] (then the
//! first-order correction to the 2.5% and 97.5% points, γ/√n · (z²−1)/6 ≈ 0.05 standard
//! errors, is below the Monte-Carlo error of 1000 resamples). Rare events (an accuracy of
//! 0.2%) or heavy-tailed energies keep exact resampling however many records there are, so an
//! interval never leaves the range the data allow. Tested against exact resampling on skewed,
//! correlated columns.

use super::stats::percentile;
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

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
    /// bound is systematic, so it moves the interval rather than adding in quadrature). For a
    /// positive statistic the widening is relative, so the interval stays positive (see
    /// [`Estimate::with_measurement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined: Option<[f64; 2]>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Resamples per interval.
pub(crate) const RESAMPLES: usize = 1000;

/// Up to this many records the resampled sums are always drawn exactly.
pub(crate) const EXACT_MAX: usize = 1_000;

/// The most skewness a column's sum (γ/√n) may have for its normal limit to be used.
pub(crate) const SKEW_MAX: f64 = 0.1;

/// How resampled sums are drawn (see the module docs).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Records drawn with replacement.
    Exact,
    /// Sums drawn from N(n·μ, n·Σ).
    NormalLimit,
}

/// A statistic of column sums: `stat(sums, n)` with `sums[c]` = Σ of column `c` over the drawn
/// records and `n` their number; `None` where it does not exist (a zero denominator).
pub(crate) trait SumStat: Fn(&[f64], f64) -> Option<f64> {}
impl<F: Fn(&[f64], f64) -> Option<f64>> SumStat for F {}

/// The statistic on all records and on each of the [`RESAMPLES`] resamples (NaN where it does
/// not exist on a draw); `None` when it does not exist on all records (or there are none).
/// Every column has one value per record.
pub(crate) fn draws(columns: &[&[f64]], seed: u64, stat: impl SumStat) -> Option<(f64, Vec<f64>)> {
    let n = columns.first().map_or(0, |c| c.len());
    debug_assert!(columns.iter().all(|c| c.len() == n), "ragged columns");
    if n == 0 {
        return None;
    }
    let totals: Vec<f64> = columns.iter().map(|c| c.iter().sum()).collect();
    let value = stat(&totals, n as f64)?;
    let mut rng = SplitMix64::new(seed);
    let draws = match Moments::of(columns, &totals) {
        Some(m) => m.draws(&totals, &mut rng, &stat),
        None => resampled(columns, &mut rng, &stat),
    };
    Some((value, draws))
}

/// Which way [`draws`] takes for these columns.
#[cfg(test)]
pub(crate) fn method(columns: &[&[f64]]) -> Method {
    let totals: Vec<f64> = columns.iter().map(|c| c.iter().sum()).collect();
    match Moments::of(columns, &totals) {
        Some(_) => Method::NormalLimit,
        None => Method::Exact,
    }
}

/// `stat` with its bootstrap 95% interval; `None` when it does not exist on all records.
pub(crate) fn bootstrap(columns: &[&[f64]], seed: u64, stat: impl SumStat) -> Option<Estimate> {
    let (value, draws) = draws(columns, seed, stat)?;
    Some(estimate(value, draws))
}

/// `value [low, high]` with `digits` decimals, or `-` for no estimate: how the CLI and the
/// watch view print a figure with its interval.
pub fn estimate_text(e: Option<&Estimate>, digits: usize) -> String {
    e.map_or("-".to_string(), |e| {
        format!(
            "{:.digits$} [{:.digits$}, {:.digits$}]",
            e.value, e.ci95[0], e.ci95[1]
        )
    })
}

impl Estimate {
    /// The same figure in other units (`factor` x every number in it), e.g. a fraction as %.
    pub fn scaled(&self, factor: f64) -> Estimate {
        let by = |r: [f64; 2]| [r[0] * factor, r[1] * factor];
        Estimate {
            value: self.value * factor,
            ci95: by(self.ci95),
            dropped_draws: self.dropped_draws,
            measurement: self.measurement.map(by),
            combined: self.combined.map(by),
        }
    }
}

/// An estimate from its value and its draws (non-finite draws are counted as dropped).
pub(crate) fn estimate(value: f64, draws: Vec<f64>) -> Estimate {
    let total = draws.len();
    let mut kept: Vec<f64> = draws.into_iter().filter(|v| v.is_finite()).collect();
    let dropped_draws = total - kept.len();
    kept.sort_by(f64::total_cmp);
    let ci95 = if kept.is_empty() {
        [value, value]
    } else {
        [percentile(&kept, 0.025), percentile(&kept, 0.975)]
    };
    Estimate {
        value,
        ci95,
        dropped_draws,
        measurement: None,
        combined: None,
    }
}

/// Values with a hole are no column: `None` if any is missing (the statistic over all records
/// would not exist either).
pub(crate) fn complete(values: &[Option<f64>]) -> Option<Vec<f64>> {
    values.iter().copied().collect()
}

/// Textbook resampling: `n` records drawn with replacement, summed, per resample.
fn resampled(columns: &[&[f64]], rng: &mut SplitMix64, stat: &impl SumStat) -> Vec<f64> {
    let n = columns[0].len();
    let mut sums = vec![0.0; columns.len()];
    (0..RESAMPLES)
        .map(|_| {
            sums.iter_mut().for_each(|s| *s = 0.0);
            for _ in 0..n {
                let i = rng.below(n);
                for (s, c) in sums.iter_mut().zip(columns) {
                    *s += c[i];
                }
            }
            stat(&sums, n as f64).unwrap_or(f64::NAN)
        })
        .collect()
}

/// The covariance of the columns, when their sums are close enough to normal.
struct Moments {
    k: usize,
    n: f64,
    /// Σ, row-major `k`×`k`.
    cov: Vec<f64>,
}

impl Moments {
    /// `None` when the normal limit is not good enough here (few records, skewed sums).
    fn of(columns: &[&[f64]], totals: &[f64]) -> Option<Self> {
        let (k, len) = (columns.len(), columns.first()?.len());
        if len <= EXACT_MAX {
            return None;
        }
        let n = len as f64;
        let mean: Vec<f64> = totals.iter().map(|t| t / n).collect();
        // Two passes (mean first) keep the moments free of cancellation.
        let mut cov = vec![0.0; k * k];
        let mut third = vec![0.0; k];
        let mut d = vec![0.0; k];
        for i in 0..len {
            for ((d, c), m) in d.iter_mut().zip(columns).zip(&mean) {
                *d = c[i] - m;
            }
            for a in 0..k {
                third[a] += d[a] * d[a] * d[a];
                for b in 0..=a {
                    cov[a * k + b] += d[a] * d[b];
                }
            }
        }
        for a in 0..k {
            for b in 0..=a {
                cov[a * k + b] /= n;
                cov[b * k + a] = cov[a * k + b];
            }
        }
        let skewed = (0..k).any(|a| {
            let var = cov[a * k + a];
            // A constant column has no spread to approximate.
            var > 0.0 && (third[a] / n).abs() / var.powf(1.5) / n.sqrt() > SKEW_MAX
        });
        (!skewed).then_some(Moments { k, n, cov })
    }

    /// Sums drawn from N(n·μ, n·Σ), the limit of resampled sums.
    fn draws(&self, totals: &[f64], rng: &mut SplitMix64, stat: &impl SumStat) -> Vec<f64> {
        let (k, n) = (self.k, self.n);
        let l = cholesky(&self.cov, k);
        let scale = n.sqrt();
        let mut z = vec![0.0; k];
        let mut sums = vec![0.0; k];
        let mut normals = Normals::default();
        (0..RESAMPLES)
            .map(|_| {
                z.iter_mut().for_each(|v| *v = normals.next(rng));
                for a in 0..k {
                    let spread: f64 = (0..=a).map(|b| l[a * k + b] * z[b]).sum();
                    sums[a] = totals[a] + scale * spread;
                }
                stat(&sums, n).unwrap_or(f64::NAN)
            })
            .collect()
    }
}

/// Lower-triangular `L` with `L·Lᵀ = cov` (row-major, `k`×`k`). Covariances of records are
/// only positive semi-definite (a constant column, two equal columns): a pivot that is not
/// positive leaves its column of `L` zero, which reproduces the dependent column exactly.
fn cholesky(cov: &[f64], k: usize) -> Vec<f64> {
    let mut l = vec![0.0f64; k * k];
    for j in 0..k {
        let d = cov[j * k + j] - (0..j).map(|m| l[j * k + m].powi(2)).sum::<f64>();
        // Relative threshold: rounding leaves ~1e-16 of the diagonal where the truth is 0.
        if d <= 1e-12 * cov[j * k + j].abs() || d <= 0.0 {
            continue;
        }
        let root = d.sqrt();
        l[j * k + j] = root;
        for i in j + 1..k {
            let off = cov[i * k + j] - (0..j).map(|m| l[i * k + m] * l[j * k + m]).sum::<f64>();
            l[i * k + j] = off / root;
        }
    }
    l
}

/// Standard normal variates by Box-Muller, two per pair of uniforms.
#[derive(Default)]
struct Normals {
    spare: Option<f64>,
}

impl Normals {
    fn next(&mut self, rng: &mut SplitMix64) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 53-bit uniforms in (0, 1]: ln never sees 0.
        let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns like a study's: a binary score (p = 0.15, skewed), log-normal-ish joules that
    /// grow with the score (correlated), busy seconds that follow the joules.
    fn skewed(n: usize, seed: u64) -> [Vec<f64>; 3] {
        let mut rng = SplitMix64::new(seed);
        let mut unit = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (mut s, mut j, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let score = f64::from(u8::from(unit() < 0.15));
            let joules = (1.0 + 2.0 * score) * (3.0 * unit()).exp();
            s.push(score);
            j.push(joules);
            b.push(joules / 40.0 + 0.1 * unit());
        }
        [s, j, b]
    }

    fn resample_exactly(columns: &[&[f64]], seed: u64, stat: impl SumStat) -> Estimate {
        let totals: Vec<f64> = columns.iter().map(|c| c.iter().sum()).collect();
        let value = stat(&totals, columns[0].len() as f64).unwrap();
        estimate(value, resampled(columns, &mut SplitMix64::new(seed), &stat))
    }

    #[test]
    fn the_normal_limit_agrees_with_exact_resampling_above_the_threshold() {
        let n = 6_000;
        let [s, j, b] = skewed(n, 11);
        let apw = |t: &[f64], n: f64| (t[1] > 0.0 && t[2] > 0.0).then(|| t[0] / n / (t[1] / t[2]));
        let apj = |t: &[f64], _: f64| (t[1] > 0.0).then(|| t[0] / t[1]);
        let mean = |t: &[f64], n: f64| Some(t[0] / n);
        let cols: [&[f64]; 3] = [&s, &j, &b];
        type Stat<'a> = &'a dyn Fn(&[f64], f64) -> Option<f64>;
        let cases: [(&str, Stat, &[&[f64]]); 3] = [
            ("apw", &apw, &cols),
            ("apj", &apj, &cols[..2]),
            ("accuracy", &mean, &cols[..1]),
        ];
        for (name, stat, columns) in cases {
            assert_eq!(method(columns), Method::NormalLimit, "{name}");
            let fast = bootstrap(columns, 5, stat).unwrap();
            // The exact interval's own Monte-Carlo spread over seeds, to compare against.
            let exact: Vec<Estimate> = (0..8)
                .map(|seed| resample_exactly(columns, seed, stat))
                .collect();
            let width = |e: &Estimate| e.ci95[1] - e.ci95[0];
            let mean_of = |f: &dyn Fn(&Estimate) -> f64| exact.iter().map(f).sum::<f64>() / 8.0;
            let (lo, hi, w) = (
                mean_of(&|e| e.ci95[0]),
                mean_of(&|e| e.ci95[1]),
                mean_of(&width),
            );
            assert_eq!(fast.value, exact[0].value, "{name}: same point estimate");
            // Each end within 8% of the interval's width of the exact ends' mean; the exact
            // ends themselves wander by ~4% between seeds (1000 draws of a 2.5% tail).
            for (got, want) in [(fast.ci95[0], lo), (fast.ci95[1], hi)] {
                assert!(
                    (got - want).abs() < 0.08 * w,
                    "{name}: {:?} vs exact [{lo}, {hi}]",
                    fast.ci95
                );
            }
            assert!((width(&fast) / w - 1.0).abs() < 0.08, "{name}: width");
        }
    }

    #[test]
    fn the_covariance_between_columns_is_kept() {
        // Score and joules perfectly correlated: APJ = Σs/Σj is the same on every draw, so
        // its interval has no width; drawing the columns independently would give it one.
        let n = EXACT_MAX * 2;
        let s: Vec<f64> = (0..n).map(|i| (i % 3) as f64).collect();
        let j: Vec<f64> = s.iter().map(|v| 2.0 * v).collect();
        let e = bootstrap(&[&s, &j], 3, |t: &[f64], _| Some(t[0] / t[1])).unwrap();
        assert!((e.value - 0.5).abs() < 1e-12);
        assert!(e.ci95[1] - e.ci95[0] < 1e-9, "{:?}", e.ci95);
        // A paired difference of two equal columns is exactly 0 on every draw.
        let d = bootstrap(&[&s, &s], 3, |t: &[f64], n| Some((t[0] - t[1]) / n)).unwrap();
        assert_eq!(d.ci95, [0.0, 0.0]);
    }

    #[test]
    fn large_and_small_samples_give_the_binomial_interval() {
        // p = 0.3: standard error sqrt(p(1-p)/n); the 95% interval is ±1.96 of it.
        for n in [800, 2_000, 50_000] {
            let v: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 10 < 3))).collect();
            let e = bootstrap(&[&v], 9, |t: &[f64], n| Some(t[0] / n)).unwrap();
            let expected = if n > EXACT_MAX {
                Method::NormalLimit
            } else {
                Method::Exact
            };
            assert_eq!(method(&[&v]), expected);
            let half = 1.96 * (0.3f64 * 0.7 / n as f64).sqrt();
            let got = (e.ci95[1] - e.ci95[0]) / 2.0;
            assert!((got / half - 1.0).abs() < 0.1, "n={n}: {got} vs {half}");
            assert!(e.ci95[0] < 0.3 && e.ci95[1] > 0.3);
        }
    }

    #[test]
    fn rare_events_keep_exact_resampling_and_an_interval_inside_the_data() {
        // 3 right answers in 5 000: the normal limit would put the lower end below 0.
        let v: Vec<f64> = (0..5_000)
            .map(|i| f64::from(u8::from(i % 1700 == 0)))
            .collect();
        assert_eq!(method(&[&v]), Method::Exact);
        let e = bootstrap(&[&v], 2, |t: &[f64], n| Some(t[0] / n)).unwrap();
        assert!(e.ci95[0] >= 0.0 && e.ci95[1] > e.value, "{:?}", e.ci95);
        // Heavy-tailed energies (one query in 500 takes 1000x): exact too.
        let j: Vec<f64> = (0..20_000)
            .map(|i| if i % 500 == 0 { 1000.0 } else { 1.0 })
            .collect();
        assert_eq!(method(&[&j]), Method::Exact);
        let flat: Vec<f64> = (0..20_000).map(|i| (i % 7) as f64).collect();
        assert_eq!(
            method(&[&flat, &j]),
            Method::Exact,
            "any skewed column decides"
        );
        assert_eq!(method(&[&flat]), Method::NormalLimit);
    }

    #[test]
    fn draws_where_the_statistic_does_not_exist_are_counted() {
        // Above the threshold: a mean near zero with a large spread sometimes draws a
        // non-positive denominator.
        let n = EXACT_MAX + 1;
        let v: Vec<f64> = (0..n)
            .map(|i| if i % 2 == 0 { 1.0 } else { -0.999 })
            .collect();
        let e = bootstrap(&[&v], 1, |t: &[f64], _| (t[0] > 0.0).then(|| 1.0 / t[0])).unwrap();
        assert!(
            e.dropped_draws > 0 && e.dropped_draws < RESAMPLES,
            "{}",
            e.dropped_draws
        );
        assert!(bootstrap(&[&v[..0]], 1, |t: &[f64], _| Some(t[0])).is_none());
        assert_eq!(complete(&[Some(1.0), None]), None);
    }
}
