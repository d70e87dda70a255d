//! Cumulative energy curves: the one place raw readings become energy.
//!
//! Each energy channel's readings become a curve E(t) (joules since its first reading) that can
//! be evaluated at any instant it covers:
//! - energy counters: a drop is a wrap when the modulus is known (sample faster than the
//!   counter can wrap), else a reset (restart from 0); linear between readings;
//! - `instant` gauges: power linear between readings, integrated exactly (trapezoids, and the
//!   quadratic inside a segment for partial segments);
//! - `averaged(w)` gauges: an average over the `w` s before its timestamp is placed at the
//!   middle of that window, then treated as instant;
//! - `interval-mean` gauges: the value is the mean power since the previous reading, a step.
//!
//! Non-finite readings are dropped and remembered as anomalies, never read as 0.

use ipw_sampler_sdk::{ChannelKind, GaugeTiming};

/// Something odd in a channel's readings, at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anomaly {
    /// The counter wrapped (handled with the wrap modulus).
    Wrap(f64),
    /// The counter went backwards without a known wrap: treated as restarted from 0.
    Reset(f64),
    /// A NaN or infinite value was dropped.
    Invalid(f64),
}

impl Anomaly {
    /// When it happened.
    pub fn time(&self) -> f64 {
        match *self {
            Anomaly::Wrap(t) | Anomaly::Reset(t) | Anomaly::Invalid(t) => t,
        }
    }
}

/// Piecewise energy: at knot i, cumulative energy `e[i]`; inside segment i the power goes
/// linearly from `p0[i]` to `p1[i]`.
#[derive(Debug, Clone, Default)]
pub struct EnergyCurve {
    t: Vec<f64>,
    e: Vec<f64>,
    p0: Vec<f64>,
    p1: Vec<f64>,
    /// Anomalies met while building the curve.
    pub anomalies: Vec<Anomaly>,
}

impl EnergyCurve {
    /// Build from `(timestamp, value)` readings of a channel of `kind` (telemetry gives an
    /// empty curve). Readings need not be sorted.
    pub fn build(kind: &ChannelKind, readings: &[(f64, f64)]) -> Self {
        let mut pts: Vec<(f64, f64)> = readings.to_vec();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut anomalies = Vec::new();
        pts.retain(|&(t, v)| {
            let ok = v.is_finite() && t.is_finite();
            if !ok {
                anomalies.push(Anomaly::Invalid(t));
            }
            ok
        });
        pts.dedup_by(|b, a| b.0 == a.0);
        let mut c = match *kind {
            ChannelKind::EnergyCounter {
                resolution_j,
                wrap_j,
            } => counter(&pts, resolution_j, wrap_j, &mut anomalies),
            ChannelKind::PowerGauge {
                timing: GaugeTiming::Instant,
                ..
            } => instant(&pts),
            ChannelKind::PowerGauge {
                timing: GaugeTiming::Averaged { window_s },
                ..
            } => {
                let shifted: Vec<(f64, f64)> =
                    pts.iter().map(|&(t, p)| (t - window_s / 2.0, p)).collect();
                instant(&shifted)
            }
            ChannelKind::PowerGauge {
                timing: GaugeTiming::IntervalMean,
                ..
            } => interval_mean(&pts),
            ChannelKind::Telemetry { .. } => EnergyCurve::default(),
        };
        c.anomalies = anomalies;
        c
    }

    /// The time span the curve covers, if any.
    pub fn span(&self) -> Option<(f64, f64)> {
        Some((*self.t.first()?, *self.t.last()?))
    }

    /// Knot times (reading times after processing).
    pub fn times(&self) -> &[f64] {
        &self.t
    }

    /// Cumulative energy at `at`; `None` outside the covered span.
    pub fn energy_at(&self, at: f64) -> Option<f64> {
        let (first, last) = self.span()?;
        if at < first || at > last {
            return None;
        }
        let i = match self.t.partition_point(|&x| x <= at) {
            0 => 0,
            n => n - 1,
        };
        if i + 1 >= self.t.len() {
            return Some(self.e[i]);
        }
        let dt = self.t[i + 1] - self.t[i];
        let tau = at - self.t[i];
        let (a, b) = (self.p0[i], self.p1[i]);
        Some(self.e[i] + a * tau + (b - a) * tau * tau / (2.0 * dt))
    }

    /// Energy between two instants, if both are covered.
    pub fn between(&self, from: f64, to: f64) -> Option<f64> {
        Some(self.energy_at(to)? - self.energy_at(from)?)
    }

    /// The longest gap between knots that overlaps `[from, to]`.
    pub fn largest_gap_in(&self, from: f64, to: f64) -> f64 {
        self.t
            .windows(2)
            .filter(|w| w[1] >= from && w[0] <= to)
            .map(|w| w[1] - w[0])
            .fold(0.0, f64::max)
    }

    fn push_linear(&mut self, t: f64, e: f64) {
        if let (Some(&t0), Some(&e0)) = (self.t.last(), self.e.last()) {
            let p = (e - e0) / (t - t0);
            self.p0.push(p);
            self.p1.push(p);
        }
        self.t.push(t);
        self.e.push(e);
    }
}

fn counter(
    pts: &[(f64, f64)],
    resolution: f64,
    wrap: Option<f64>,
    anomalies: &mut Vec<Anomaly>,
) -> EnergyCurve {
    let mut c = EnergyCurve::default();
    let Some(&(_, base)) = pts.first() else {
        return c;
    };
    let mut offset = -base;
    let mut prev = base;
    let res = resolution.max(0.0);
    for (i, &(t, v)) in pts.iter().enumerate() {
        if v + res < prev {
            // A drop the next reading undoes is one bogus value, not a wrap or a reset (read as
            // a wrap it would add a whole modulus, ~262 kJ for RAPL).
            if pts.get(i + 1).is_some_and(|&(_, next)| next + res >= prev) {
                anomalies.push(Anomaly::Invalid(t));
                continue;
            }
            match wrap {
                // With a known modulus a drop is a wrap: the increase is v + wrap - prev. We
                // sample far faster than a counter wraps, so a true wrap adds less than half
                // the modulus; more is a counter that restarted.
                Some(w) if v + w - prev <= w / 2.0 => {
                    offset += w;
                    anomalies.push(Anomaly::Wrap(t));
                }
                _ => {
                    // Restarted from 0 right after the previous reading: `v` joules since.
                    offset += prev;
                    anomalies.push(Anomaly::Reset(t));
                }
            }
        }
        prev = v;
        c.push_linear(t, v + offset);
    }
    c
}

fn instant(pts: &[(f64, f64)]) -> EnergyCurve {
    let mut c = EnergyCurve::default();
    for (i, &(t, p)) in pts.iter().enumerate() {
        if i == 0 {
            c.t.push(t);
            c.e.push(0.0);
            continue;
        }
        let (t0, p0) = pts[i - 1];
        let e0 = *c.e.last().unwrap();
        c.p0.push(p0);
        c.p1.push(p);
        c.t.push(t);
        c.e.push(e0 + (p0 + p) / 2.0 * (t - t0));
    }
    c
}

fn interval_mean(pts: &[(f64, f64)]) -> EnergyCurve {
    let mut c = EnergyCurve::default();
    for (i, &(t, p)) in pts.iter().enumerate() {
        if i == 0 {
            c.t.push(t);
            c.e.push(0.0);
            continue;
        }
        let e0 = *c.e.last().unwrap();
        c.push_linear(t, e0 + p * (t - pts[i - 1].0));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_kind(wrap: Option<f64>) -> ChannelKind {
        ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: wrap,
        }
    }

    #[test]
    fn counter_wraps_and_resets() {
        // 10 W for 4 s, wrapping at 25 J.
        let pts = [
            (0.0, 0.0),
            (1.0, 10.0),
            (2.0, 20.0),
            (3.0, 5.0),
            (4.0, 15.0),
        ];
        let c = EnergyCurve::build(&counter_kind(Some(25.0)), &pts);
        assert!((c.between(0.5, 3.5).unwrap() - 30.0).abs() < 1e-9);
        assert_eq!(c.anomalies, vec![Anomaly::Wrap(3.0)]);
        // Without a modulus the drop is a reset: the 5 J after it are counted from 0.
        let c = EnergyCurve::build(&counter_kind(None), &pts);
        assert!((c.between(2.0, 3.0).unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(c.anomalies, vec![Anomaly::Reset(3.0)]);
    }

    #[test]
    fn gauges_integrate_exactly_for_their_shape() {
        let instant = ChannelKind::PowerGauge {
            timing: GaugeTiming::Instant,
            estimated: false,
        };
        // Ramp 0 -> 10 W over 1 s: 5 J; over the first half: 1.25 J (quadratic inside).
        let c = EnergyCurve::build(&instant, &[(0.0, 0.0), (1.0, 10.0)]);
        assert!((c.between(0.0, 1.0).unwrap() - 5.0).abs() < 1e-12);
        assert!((c.between(0.0, 0.5).unwrap() - 1.25).abs() < 1e-12);
        let mean = ChannelKind::PowerGauge {
            timing: GaugeTiming::IntervalMean,
            estimated: true,
        };
        let c = EnergyCurve::build(&mean, &[(0.0, 99.0), (1.0, 10.0), (3.0, 20.0)]);
        assert!((c.between(0.0, 3.0).unwrap() - 50.0).abs() < 1e-12);
        assert!(
            c.energy_at(3.5).is_none(),
            "no extrapolation past the last reading"
        );
    }

    #[test]
    fn nan_is_dropped_not_zero() {
        let instant = ChannelKind::PowerGauge {
            timing: GaugeTiming::Instant,
            estimated: false,
        };
        let c = EnergyCurve::build(&instant, &[(0.0, 10.0), (1.0, f64::NAN), (2.0, 10.0)]);
        assert!((c.between(0.0, 2.0).unwrap() - 20.0).abs() < 1e-12);
        assert_eq!(c.anomalies, vec![Anomaly::Invalid(1.0)]);
    }

    #[test]
    fn a_bogus_drop_is_neither_a_wrap_nor_a_reset() {
        // 10 W, wrap at 1000 J; one reading of 3 J between 20 J and 40 J is a glitch.
        let pts = [
            (0.0, 0.0),
            (1.0, 10.0),
            (2.0, 20.0),
            (3.0, 3.0),
            (4.0, 40.0),
            (5.0, 50.0),
        ];
        let c = EnergyCurve::build(&counter_kind(Some(1000.0)), &pts);
        assert!((c.between(0.0, 5.0).unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(c.anomalies, vec![Anomaly::Invalid(3.0)]);
        // A drop that would mean nearly a whole modulus in one interval is a restart.
        let pts = [
            (0.0, 0.0),
            (1.0, 10.0),
            (2.0, 20.0),
            (3.0, 5.0),
            (4.0, 15.0),
        ];
        let c = EnergyCurve::build(&counter_kind(Some(1000.0)), &pts);
        assert_eq!(c.anomalies, vec![Anomaly::Reset(3.0)]);
        assert!((c.between(0.0, 4.0).unwrap() - 35.0).abs() < 1e-9);
    }
}
