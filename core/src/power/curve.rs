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
//!
//! **Bounds.** Beside the estimate, a curve says what its readings leave open: for any
//! interval, [`EnergyCurve::bound_between`] gives the energy range `[low, high]` the readings
//! allow under these rules, per segment between two readings:
//! - energy known per segment (counters, `interval-mean`): a whole segment is exact (to the
//!   counter's resolution); a part of one cut by a window edge holds between `floor x length`
//!   and the segment's energy minus `floor x the rest`, where `floor` is the lowest power the
//!   segment can have had: the least of its own and its neighbours' mean powers (less 1%),
//!   and 0 when the segment's mean is a dip below both neighbours (something brief and low may
//!   sit anywhere in it). A spike inside a segment is in its energy and may sit on either side
//!   of the cut: the upper end allows it;
//! - power known at readings (`instant`, and `averaged` once shifted): inside a segment the
//!   power lies between the two readings (widened where a reading is a local peak or trough,
//!   by what the change of slope there allows) and within the chord +- the change of slope at
//!   either end x the segment's length, so a straight ramp has a zero-width bound and a step
//!   between two readings is bounded by the readings on either side. A spike that falls
//!   between two instant readings is invisible to them: no bound can contain it.
//!
//! A counter can be **shaped** by an instant-power channel read beside it: the energy of a
//! segment is then spread inside it in proportion to the instant power, not evenly, which
//! removes most of the bias when a window's edge falls on a step. The estimate stays inside
//! the bound.

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

/// What the readings leave open inside one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Band {
    /// The segment's energy is known; power inside was at least `floor` watts.
    Known { floor: f64 },
    /// Power is known at both ends; inside it was within the chord +- `w` and within
    /// `[lo, hi]` watts, unless `nearby` says otherwise.
    Knots {
        w: f64,
        lo: f64,
        hi: f64,
        nearby: Nearby,
    },
}

/// What the same gauge saw around a segment that its two readings cannot rule out inside it:
/// a lone reading far above (or below) both its neighbours is a spike (dip) the readings
/// caught, so others like it may sit between readings that missed them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Nearby {
    /// The highest power read within [`NEARBY_S`] of the segment, when a spike was seen there
    /// and it is above what the readings allow.
    spikes_to: Option<f64>,
    /// The lowest, when a dip was seen there and it is below what the readings allow.
    dips_to: Option<f64>,
}

/// How far around a segment (seconds) the spikes and dips an instant gauge caught stand for
/// those it may have missed: long enough to hold several at the rates loads pulse, short
/// enough that a burst does not widen a whole run.
const NEARBY_S: f64 = 10.0;

/// Piecewise energy: at knot i, cumulative energy `e[i]`; inside segment i the power goes
/// linearly from `p0[i]` to `p1[i]`.
#[derive(Debug, Clone, Default)]
pub struct EnergyCurve {
    t: Vec<f64>,
    e: Vec<f64>,
    p0: Vec<f64>,
    p1: Vec<f64>,
    /// Per segment: what the readings leave open.
    bands: Vec<Band>,
    /// A counter's resolution, joules: each cumulative value is this uncertain.
    resolution: f64,
    /// An instant-power curve that spreads each known segment's energy inside it.
    shape: Option<Box<EnergyCurve>>,
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
        if let ChannelKind::EnergyCounter { resolution_j, .. } = *kind {
            c.resolution = resolution_j.max(0.0);
        }
        c.bands = match *kind {
            ChannelKind::EnergyCounter { .. }
            | ChannelKind::PowerGauge {
                timing: GaugeTiming::IntervalMean,
                ..
            } => known_bands(&c.t, &c.e),
            _ => knot_bands(&c.t, &c.p0, &c.p1),
        };
        c
    }

    /// Spread each segment's energy inside it in proportion to `power` (an instant-power
    /// curve read beside this counter), where `power` covers the segment and is positive.
    /// Only curves whose segment energy is known can be shaped; others are left as they are.
    pub fn shape_with(&mut self, power: EnergyCurve) {
        if self.bands.iter().all(|b| matches!(b, Band::Known { .. })) && !self.bands.is_empty() {
            self.shape = Some(Box::new(power));
        }
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
        if let (Some(shape), Band::Known { floor }) = (&self.shape, self.bands[i]) {
            if let Some(part) = shaped_part(
                shape,
                self.t[i],
                self.t[i + 1],
                self.e[i + 1] - self.e[i],
                at,
            ) {
                // Kept inside what the counter allows: the gauge may disagree with it.
                let whole = self.e[i + 1] - self.e[i];
                let lo = floor * tau;
                let hi = (whole - floor * (dt - tau)).max(lo);
                return Some(self.e[i] + part.clamp(lo, hi));
            }
        }
        let (a, b) = (self.p0[i], self.p1[i]);
        Some(self.e[i] + a * tau + (b - a) * tau * tau / (2.0 * dt))
    }

    /// The range `[low, high]` of energy between two instants that the readings allow (see the
    /// module docs), if both are covered.
    pub fn bound_between(&self, from: f64, to: f64) -> Option<(f64, f64)> {
        let (first, last) = self.span()?;
        if from < first || to > last || to < from {
            return None;
        }
        let start = match self.t.partition_point(|&x| x <= from) {
            0 => 0,
            n => n - 1,
        };
        let (mut low, mut high) = (0.0, 0.0);
        for i in start..self.bands.len() {
            let (t0, t1) = (self.t[i], self.t[i + 1]);
            if t0 >= to {
                break;
            }
            let (a, b) = (from.max(t0) - t0, to.min(t1) - t0);
            if b <= a {
                continue;
            }
            let h = t1 - t0;
            let (lo, hi) = match self.bands[i] {
                Band::Known { floor } => {
                    let whole = self.e[i + 1] - self.e[i];
                    if b - a >= h {
                        (whole, whole)
                    } else {
                        let lo = floor * (b - a);
                        (lo, (whole - floor * (h - (b - a))).max(lo))
                    }
                }
                Band::Knots { w, lo, hi, nearby } => {
                    let (p0, p1) = (self.p0[i], self.p1[i]);
                    let chord = |x: f64| p0 + (p1 - p0) * x / h;
                    let (ca, cb) = (chord(a), chord(b));
                    let low = integral_max(ca - w, cb - w, b - a, lo.max(0.0));
                    let high = -integral_max(-(ca + w), -(cb + w), b - a, -hi);
                    // A spike or dip between the readings may fill any part of the segment.
                    (
                        nearby
                            .dips_to
                            .map_or(low, |d| low.min(d.max(0.0) * (b - a))),
                        nearby.spikes_to.map_or(high, |s| high.max(s * (b - a))),
                    )
                }
            };
            low += lo;
            high += hi;
        }
        // Each end reading of a counter is uncertain by its resolution.
        Some((
            (low - 2.0 * self.resolution).max(0.0),
            high + 2.0 * self.resolution,
        ))
    }

    /// Whether the bound over `[from, to]` was widened by spikes or dips the gauge caught
    /// nearby (see [`Nearby`]): the record says which rule its bound rests on.
    pub fn widened_by_nearby(&self, from: f64, to: f64) -> bool {
        self.bands.iter().enumerate().any(|(i, b)| {
            self.t[i] < to
                && self.t[i + 1] > from
                && matches!(b, Band::Knots { nearby, .. } if *nearby != Nearby::default())
        })
    }

    /// Whether power is known only at readings (an instant or averaged gauge), so that what
    /// happens between them is open.
    pub fn is_gauge(&self) -> bool {
        self.bands.iter().any(|b| matches!(b, Band::Knots { .. }))
    }

    /// The lowest and highest power read within 10 s of `[from, to]` (gauges; `None` for
    /// other curves or when nothing was read there).
    pub fn extremes_near(&self, from: f64, to: f64) -> Option<(f64, f64)> {
        if !self.is_gauge() {
            return None;
        }
        let (lo, hi) = (from - NEARBY_S, to + NEARBY_S);
        self.t
            .iter()
            .enumerate()
            .filter(|&(_, &t)| t >= lo && t <= hi)
            .map(|(k, _)| match k {
                0 => self.p0[0],
                k => self.p1[k - 1],
            })
            .fold(None, |acc: Option<(f64, f64)>, p| {
                Some(acc.map_or((p, p), |(a, b)| (a.min(p), b.max(p))))
            })
    }

    /// Power at `at` (knot curves: the line between readings; known-energy curves: the
    /// segment's mean), if covered.
    pub fn power_at(&self, at: f64) -> Option<f64> {
        let (first, last) = self.span()?;
        if at < first || at > last || self.p0.is_empty() {
            return None;
        }
        let i = self.t.partition_point(|&x| x <= at).clamp(1, self.p0.len()) - 1;
        let f = (at - self.t[i]) / (self.t[i + 1] - self.t[i]);
        Some(self.p0[i] + (self.p1[i] - self.p0[i]) * f.clamp(0.0, 1.0))
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

/// The part of a counter segment `[t0, t1]` holding `whole` joules that falls in `[t0, at]`,
/// shaped by the instant power `shape` read at both ends. When the segment's mean power lies
/// between the two readings, the power is taken to step from one to the other at the one
/// instant that gives the segment its energy (a query starting or ending: exact for a step, and
/// off by at most 1/8 of the change for a ramp, which inside one interval is small). Otherwise
/// (a spike, or a flat segment) the energy is spread in proportion to the instant power.
fn shaped_part(shape: &EnergyCurve, t0: f64, t1: f64, whole: f64, at: f64) -> Option<f64> {
    let (pa, pb) = (shape.power_at(t0)?, shape.power_at(t1)?);
    let (h, tau) = (t1 - t0, at - t0);
    let mean = whole / h;
    let (lo, hi) = (pa.min(pb), pa.max(pb));
    if hi - lo > 1e-9 * hi.abs() && mean > lo && mean < hi {
        // pa x theta + pb x (h - theta) = whole
        let theta = (pb * h - whole) / (pb - pa);
        return Some(if tau <= theta {
            pa * tau
        } else {
            pa * theta + pb * (tau - theta)
        });
    }
    let all = shape.between(t0, t1)?;
    let part = shape.between(t0, at)?;
    (all > 0.0 && part >= 0.0).then(|| whole * part / all)
}

/// The integral over `[0, len]` of max(`c`, the line from `la` to `lb`).
fn integral_max(la: f64, lb: f64, len: f64, c: f64) -> f64 {
    if la >= c && lb >= c {
        return (la + lb) / 2.0 * len;
    }
    if la <= c && lb <= c {
        return c * len;
    }
    // The line crosses c at x: above c on one side of it.
    let x = (c - la) / (lb - la) * len;
    if la > c {
        (la + c) / 2.0 * x + c * (len - x)
    } else {
        c * x + (c + lb) / 2.0 * (len - x)
    }
}

/// A segment mean below both neighbours by more than this share is a dip: something brief and
/// low may sit anywhere in it. Smoother troughs (a wave sampled 20x per period dips ~1%) are not.
const DIP_SHARE: f64 = 0.02;

/// Floors for segments whose energy is known (see the module docs).
fn known_bands(t: &[f64], e: &[f64]) -> Vec<Band> {
    let n = t.len().saturating_sub(1);
    let mean = |i: usize| (e[i + 1] - e[i]) / (t[i + 1] - t[i]);
    (0..n)
        .map(|i| {
            let floor = if i == 0 || i + 1 == n {
                // A neighbour missing: nothing says how low the power went.
                0.0
            } else {
                let (p, around) = (mean(i), mean(i - 1).min(mean(i + 1)));
                if p >= around {
                    around - 0.005 * p.abs()
                } else if around - p > DIP_SHARE * p.abs() {
                    0.0
                } else {
                    p - 3.0 * (around - p) - 0.005 * p.abs()
                }
            };
            Band::Known {
                floor: floor.max(0.0),
            }
        })
        .collect()
}

/// Bands for segments whose power is known at the knots (see the module docs).
fn knot_bands(t: &[f64], p0: &[f64], p1: &[f64]) -> Vec<Band> {
    let n = p0.len();
    let slope = |i: usize| (p1[i] - p0[i]) / (t[i + 1] - t[i]);
    // Change of slope at knot k, and whether k is a peak or trough. At the ends of the data a
    // knot's other side is unknown: as bent as its one segment, and possibly an extremum.
    let bend = |k: usize| -> (f64, bool) {
        match (k.checked_sub(1), (k < n).then_some(k)) {
            (Some(a), Some(b)) => {
                let (sa, sb) = (slope(a), slope(b));
                ((sb - sa).abs(), sa * sb < 0.0)
            }
            (Some(a), None) => (slope(a).abs(), true),
            (None, Some(b)) => (slope(b).abs(), true),
            (None, None) => (0.0, false),
        }
    };
    let nearby = unseen_excursions(t, p0, p1);
    (0..n)
        .map(|i| {
            let h = t[i + 1] - t[i];
            let (ka, xa) = bend(i);
            let (kb, xb) = bend(i + 1);
            // Past a peak or trough the power can run on beyond the reading; a smooth curve by
            // at most (change of slope) x h / 8: h / 2 leaves room for uneven spacing.
            let over = [(ka, xa), (kb, xb)]
                .iter()
                .filter(|(_, x)| *x)
                .map(|(k, _)| k * h / 2.0)
                .fold(0.0, f64::max);
            let (lo, hi) = (p0[i].min(p1[i]) - over, p0[i].max(p1[i]) + over);
            let (spikes, dips) = nearby[i];
            Band::Knots {
                w: ka.max(kb) * h,
                lo,
                hi,
                nearby: Nearby {
                    spikes_to: spikes.filter(|&s| s > hi),
                    dips_to: dips.filter(|&d| d < lo),
                },
            }
        })
        .collect()
}

/// Per segment: the highest reading within [`NEARBY_S`] when a spike was caught there, and
/// the lowest when a dip was. A spike is a lone reading above both neighbours whose
/// neighbours both bend the other way (a smooth crest bends one way throughout: a sine read
/// 20 times a period shows none); a dip is the mirror image.
fn unseen_excursions(t: &[f64], p0: &[f64], p1: &[f64]) -> Vec<(Option<f64>, Option<f64>)> {
    let n = p0.len();
    let p = |k: usize| if k < n { p0[k] } else { p1[n - 1] };
    let slope = |i: usize| (p1[i] - p0[i]) / (t[i + 1] - t[i]);
    // Change of slope at knot k (1..n).
    let bend = |k: usize| slope(k) - slope(k - 1);
    let mut spike = vec![false; n + 1];
    let mut dip = vec![false; n + 1];
    for k in 2..n.saturating_sub(1) {
        let (b_before, b_at, b_after) = (bend(k - 1), bend(k), bend(k + 1));
        if p(k) > p(k - 1) && p(k) > p(k + 1) && b_at < 0.0 && b_before > 0.0 && b_after > 0.0 {
            spike[k] = true;
        }
        if p(k) < p(k - 1) && p(k) < p(k + 1) && b_at > 0.0 && b_before < 0.0 && b_after < 0.0 {
            dip[k] = true;
        }
    }
    if !spike.iter().chain(&dip).any(|&x| x) {
        return vec![(None, None); n];
    }
    let spikes = near_extreme(t, &spike, p);
    let dips = near_extreme(t, &dip, |k| -p(k));
    spikes
        .into_iter()
        .zip(dips)
        .map(|(s, d)| (s, d.map(|d| -d)))
        .collect()
}

/// Per segment i: when a marked knot lies within [`NEARBY_S`] of `[t[i], t[i + 1]]`, the
/// largest `value` of the knots there. Both ends of the neighbourhood only move forward, so
/// one pass with a queue of candidates does it.
fn near_extreme(t: &[f64], marked: &[bool], value: impl Fn(usize) -> f64) -> Vec<Option<f64>> {
    let n = t.len().saturating_sub(1);
    let mut marks_before = vec![0usize; t.len() + 1];
    for (k, &m) in marked.iter().enumerate() {
        marks_before[k + 1] = marks_before[k] + usize::from(m);
    }
    let mut out = Vec::with_capacity(n);
    let mut queue = std::collections::VecDeque::new();
    let (mut first, mut next) = (0usize, 0usize);
    for i in 0..n {
        while next < t.len() && t[next] <= t[i + 1] + NEARBY_S {
            while queue.back().is_some_and(|&b| value(b) <= value(next)) {
                queue.pop_back();
            }
            queue.push_back(next);
            next += 1;
        }
        while t[first] < t[i] - NEARBY_S {
            first += 1;
        }
        while queue.front().is_some_and(|&f| f < first) {
            queue.pop_front();
        }
        let seen = marks_before[next] > marks_before[first];
        out.push(seen.then(|| value(*queue.front().expect("the segment's own knots"))));
    }
    out
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

    #[test]
    fn a_brief_dip_inside_a_counter_interval_opens_the_floor() {
        // 120 W with a 1.5 ms drop to 0 W just after 0.05 s: the counter sees only a 3% lower
        // mean for [0.05, 0.10]. A window edge at 0.055 puts the dip in a 5 ms piece; its energy
        // (0.42 J) is below what the neighbours' power would give it (0.6 J).
        let e = |t: f64| {
            120.0 * t
                - if t > 0.0505 {
                    120.0 * (t.min(0.052) - 0.0505)
                } else {
                    0.0
                }
        };
        let pts: Vec<(f64, f64)> = [0.0, 0.05, 0.10, 0.15, 0.20]
            .iter()
            .map(|&t| (t, e(t)))
            .collect();
        let c = EnergyCurve::build(&counter_kind(None), &pts);
        let truth = e(0.055) - e(0.05);
        let (lo, hi) = c.bound_between(0.05, 0.055).unwrap();
        assert!(lo <= truth && truth <= hi, "{truth} outside [{lo}, {hi}]");
        // A whole interval is exact, to the resolution.
        let (lo, hi) = c.bound_between(0.05, 0.10).unwrap();
        assert!((lo - (e(0.10) - e(0.05))).abs() < 1e-5 && hi - lo < 1e-5);
    }
}
