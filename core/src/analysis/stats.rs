//! Descriptive statistics: percentiles by linear interpolation between order statistics
//! (the "type 7" definition used by numpy and R by default).

use serde::{Deserialize, Serialize};

/// Count, mean and percentiles of a sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Distribution {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest value.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Distribution {
    /// Statistics of `values` (non-finite values are ignored); `None` when nothing is left.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Self {
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v[0],
            p50: percentile(&v, 0.50),
            p90: percentile(&v, 0.90),
            p95: percentile(&v, 0.95),
            p99: percentile(&v, 0.99),
            max: v[v.len() - 1],
        })
    }
}

/// The q-quantile of sorted values, interpolating linearly.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy() {
        // numpy.percentile([1..10], [50, 90, 95, 99]) = 5.5, 9.1, 9.55, 9.91
        let d = Distribution::of((1..=10).map(f64::from)).unwrap();
        assert_eq!((d.n, d.min, d.max, d.mean), (10, 1.0, 10.0, 5.5));
        for (got, want) in [(d.p50, 5.5), (d.p90, 9.1), (d.p95, 9.55), (d.p99, 9.91)] {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        assert!(Distribution::of([f64::NAN]).is_none());
    }
}
