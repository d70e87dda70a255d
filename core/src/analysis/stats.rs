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

/// Each window's share of the busy time: every instant covered by k windows gives 1/k of
/// itself to each. The shares add up to the length of the windows' union, so energy over the
/// summed shares of any set of queries is the mean power while they ran, at any concurrency.
pub fn busy_shares(windows: &[(f64, f64)]) -> Vec<f64> {
    // (time, +1 start / -1 end, window)
    let mut events: Vec<(f64, i8, usize)> = Vec::with_capacity(windows.len() * 2);
    for (i, &(s, e)) in windows.iter().enumerate() {
        if e > s {
            events.push((s, 1, i));
            events.push((e, -1, i));
        }
    }
    // Ends before starts at the same instant: touching windows do not overlap.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut shares = vec![0.0; windows.len()];
    let mut active: Vec<usize> = Vec::new();
    let mut last = f64::NEG_INFINITY;
    for (t, kind, i) in events {
        if !active.is_empty() && t > last {
            let each = (t - last) / active.len() as f64;
            for &a in &active {
                shares[a] += each;
            }
        }
        last = t;
        if kind > 0 {
            active.push(i);
        } else if let Some(pos) = active.iter().position(|&a| a == i) {
            active.swap_remove(pos);
        }
    }
    shares
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

    #[test]
    fn busy_shares_split_overlaps_and_add_up_to_the_union() {
        // [0,2] alone for 1 s, with [1,3] for 1 s, then [1,3] alone; [5,6] apart.
        let w = [(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)];
        let s = busy_shares(&w);
        assert!((s[0] - 1.5).abs() < 1e-12, "{s:?}");
        assert!((s[1] - 1.5).abs() < 1e-12, "{s:?}");
        assert!((s[2] - 1.0).abs() < 1e-12, "{s:?}");
        assert!((s.iter().sum::<f64>() - 4.0).abs() < 1e-12);
        // Three identical windows share equally; touching windows do not overlap.
        let s = busy_shares(&[(0.0, 3.0), (0.0, 3.0), (0.0, 3.0), (3.0, 4.0)]);
        assert!(s[..3].iter().all(|x| (x - 1.0).abs() < 1e-12), "{s:?}");
        assert!((s[3] - 1.0).abs() < 1e-12);
    }
}
