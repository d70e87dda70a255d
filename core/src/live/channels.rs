//! Each energy channel's readings, folded into energy and power as they arrive.
//!
//! The readings a sampling thread hands over wait in a short list; the metrics thread folds
//! them about once a second through the same [`EnergyCurve`] attribution integrates (so a
//! counter, an instant gauge and an interval-mean gauge are each read by their own rules),
//! keeping the last reading to join the next stretch on. The energy counted is that of the
//! channel since its first reading in this process, sessions added up.

use crate::power::curve::EnergyCurve;
use ipw_sampler_sdk::ChannelKind;
use std::time::Instant;

/// Seconds of the latest readings the power gauge is the mean over (at most).
const POWER_SPAN_S: f64 = 1.0;

/// Readings kept unfolded at most while the channel's kind is not known yet (its samplers are
/// still starting): beyond this the oldest are dropped, and said so in the log.
const MAX_UNDESCRIBED: usize = 100_000;

/// One channel, live.
#[derive(Debug)]
pub(super) struct Channel {
    /// What it measures (`gpu`, `cpu-package`, ...), once described.
    pub domain: String,
    /// Its power is modelled, not measured.
    pub estimated: bool,
    /// How its values read as energy; `None` until its samplers are described.
    kind: Option<ChannelKind>,
    /// The session (generation of samplers) the readings below belong to.
    generation: u64,
    /// Readings not folded yet, `(run clock s, value)`.
    pending: Vec<(f64, f64)>,
    /// The folded readings of this generation's last second, in time order: the next
    /// stretch's energy starts from the last of them.
    recent: Vec<(f64, f64)>,
    /// Joules since the channel's first reading, all generations.
    pub energy_j: f64,
    /// Mean power over the latest folded second.
    pub watts: Option<f64>,
    /// Readings taken, failed reads not included.
    pub readings: u64,
    /// Failed reads (and non-finite values).
    pub errors: u64,
    /// When the last reading was taken.
    pub last_reading: Option<Instant>,
    /// Not energy (temperature, clocks): its readings are not kept.
    telemetry: bool,
}

impl Channel {
    pub(super) fn new(generation: u64) -> Self {
        Channel {
            domain: String::new(),
            estimated: false,
            kind: None,
            generation,
            pending: Vec::new(),
            recent: Vec::new(),
            energy_j: 0.0,
            watts: None,
            readings: 0,
            errors: 0,
            last_reading: None,
            telemetry: false,
        }
    }

    /// It is telemetry, in generation `generation`: its readings are dropped, what waits too.
    pub(super) fn telemetry(&mut self, generation: u64) {
        self.switch(generation);
        self.telemetry = true;
        self.pending = Vec::new();
    }

    /// Whether it is an energy channel, or was one in an earlier session: what is shown.
    pub(super) fn is_energy(&self) -> bool {
        !self.telemetry || self.readings > 0
    }

    /// Whether its samplers said what it is, in generation `generation`.
    pub(super) fn is_described(&self, generation: u64) -> bool {
        self.generation == generation && (self.kind.is_some() || self.telemetry)
    }

    /// Readings of a new generation: fold what the old one left and start afresh (its clock
    /// is a new run's or a new boot's).
    fn switch(&mut self, generation: u64) {
        if generation != self.generation {
            self.flush();
            self.generation = generation;
            self.kind = None;
            self.telemetry = false;
            self.pending.clear();
            self.recent.clear();
        }
    }

    /// A reading (`None`: a failed read) of generation `generation`.
    pub(super) fn add(&mut self, generation: u64, t: f64, v: Option<f64>) {
        self.switch(generation);
        match v {
            Some(_) if self.telemetry => {}
            Some(v) if v.is_finite() && t.is_finite() => {
                self.readings += 1;
                self.last_reading = Some(Instant::now());
                if self.kind.is_none() && self.pending.len() >= MAX_UNDESCRIBED {
                    tracing::warn!("live metrics: readings of an undescribed channel dropped");
                    self.pending.drain(..MAX_UNDESCRIBED / 2);
                }
                self.pending.push((t, v));
            }
            _ => self.errors += 1,
        }
    }

    /// Its description, for generation `generation`.
    pub(super) fn describe(&mut self, generation: u64, kind: ChannelKind, domain: String) {
        self.switch(generation);
        self.telemetry = false;
        self.estimated = kind.is_estimated();
        self.kind = Some(kind);
        self.domain = domain;
    }

    /// Fold the waiting readings into energy and power (a counter's last drop waits).
    pub(super) fn fold(&mut self) {
        self.fold_with(true);
    }

    /// Fold every waiting reading: its samplers have stopped, no later reading will come.
    pub(super) fn flush(&mut self) {
        self.fold_with(false);
    }

    fn fold_with(&mut self, hold_back: bool) {
        let Some(kind) = &self.kind else { return };
        if self.pending.is_empty() {
            return;
        }
        // The readings of the last second already folded come along: energy is counted from
        // the last of them on, power is the mean over the last second of readings (not over
        // the few since the previous fold, which may be a millisecond apart).
        // A counter's newest reading below the one before is held back until a later one
        // arrives: the curve reads a drop that the next reading undoes as one bogus value, a
        // drop that stays as a wrap or a restart, and only the next reading tells which.
        self.pending.sort_by(|x, y| x.0.total_cmp(&y.0));
        let prev = self.pending.iter().rev().nth(1).or(self.recent.last());
        let held = match (kind, self.pending.last(), prev) {
            (ChannelKind::EnergyCounter { .. }, Some(last), Some(prev))
                if hold_back && last.1 < prev.1 =>
            {
                self.pending.pop()
            }
            _ => None,
        };
        if self.pending.is_empty() {
            self.pending.extend(held);
            return;
        }
        let from_t = self.recent.last().map(|r| r.0);
        let mut pts = std::mem::take(&mut self.recent);
        pts.append(&mut self.pending);
        self.pending.extend(held);
        let curve = EnergyCurve::build(kind, &pts);
        let Some((a, b)) = curve.span() else {
            self.recent = pts;
            return;
        };
        // Curve times are reading times less a constant (an averaged gauge's half window).
        let earliest = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let counted_from = from_t.map_or(a, |t| t - (earliest - a));
        if let Some(e) = curve.between(counted_from, b) {
            self.energy_j += e;
        }
        let power_from = a.max(b - POWER_SPAN_S);
        if b > power_from {
            self.watts = curve.between(power_from, b).map(|e| e / (b - power_from));
        }
        // Keep from the last reading at least a second before the newest, so the next
        // power figure spans a whole second whenever the readings do.
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        let last_t = pts.last().map_or(f64::NEG_INFINITY, |p| p.0);
        let keep_from = pts
            .iter()
            .rposition(|p| p.0 <= last_t - POWER_SPAN_S)
            .unwrap_or(0);
        pts.drain(..keep_from);
        self.recent = pts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipw_sampler_sdk::GaugeTiming;

    fn counter() -> ChannelKind {
        ChannelKind::EnergyCounter {
            resolution_j: 1e-6,
            wrap_j: Some(20.0),
        }
    }

    /// 40 W on a counter that wraps at 20 J, folded in uneven stretches: every joule once.
    #[test]
    fn a_counter_folded_in_stretches_counts_every_joule_once_across_wraps() {
        let mut c = Channel::new(1);
        c.describe(1, counter(), "cpu-package".into());
        let mut t = 0.0;
        for stretch in [3, 17, 1, 40, 9] {
            for _ in 0..stretch {
                c.add(1, t, Some((40.0 * t) % 20.0));
                t += 0.05;
            }
            c.fold();
        }
        let last = t - 0.05;
        assert!((c.energy_j - 40.0 * last).abs() < 1e-6, "{}", c.energy_j);
        assert!((c.watts.unwrap() - 40.0).abs() < 1e-6);
        assert_eq!(c.readings, 70);
    }

    /// A new session's clock restarts: its first reading is not joined to the old last one.
    #[test]
    fn a_new_generation_is_not_joined_to_the_last() {
        let kind = ChannelKind::PowerGauge {
            timing: GaugeTiming::Instant,
            estimated: false,
        };
        let mut c = Channel::new(1);
        c.describe(1, kind.clone(), "gpu".into());
        for i in 0..=10 {
            c.add(1, 100.0 + i as f64, Some(10.0));
        }
        // Generation 2 starts before its description arrives, at a clock near 0.
        for i in 0..=4 {
            c.add(2, i as f64, Some(30.0));
        }
        c.describe(2, kind, "gpu".into());
        c.fold();
        // 10 s at 10 W, then 4 s at 30 W.
        assert!((c.energy_j - 220.0).abs() < 1e-9, "{}", c.energy_j);
        assert_eq!((c.readings, c.errors), (16, 0));
    }

    /// The power gauge is the mean over the last second of readings, even when the last fold
    /// holds one reading a millisecond after the previous (an edge read).
    #[test]
    fn power_is_over_the_last_second_not_the_last_fold() {
        let mut c = Channel::new(1);
        c.describe(1, counter(), "gpu".into());
        for i in 0..=20 {
            let t = i as f64 * 0.05;
            c.add(1, t, Some(40.0 * t));
        }
        c.fold();
        // 1 ms later the counter reads 20 mJ too much (read late): 60 W over that 1 ms alone,
        // 40.02 W over the last second.
        c.add(1, 1.001, Some(40.0 * 1.001 + 0.02));
        c.fold();
        let w = c.watts.unwrap();
        assert!((w - 40.02).abs() < 1e-9, "{w}");
    }

    /// An averaged gauge folded in stretches counts what the whole curve does.
    #[test]
    fn an_averaged_gauge_folded_in_stretches_equals_the_whole_curve() {
        let kind = ChannelKind::PowerGauge {
            timing: GaugeTiming::Averaged { window_s: 0.3 },
            estimated: false,
        };
        let readings: Vec<(f64, f64)> = (0..100)
            .map(|i| (i as f64 * 0.1, 10.0 + (i % 7) as f64))
            .collect();
        let whole = EnergyCurve::build(&kind, &readings);
        let (a, b) = whole.span().unwrap();
        let mut c = Channel::new(1);
        c.describe(1, kind, "gpu".into());
        for chunk in readings.chunks(13) {
            for &(t, v) in chunk {
                c.add(1, t, Some(v));
            }
            c.fold();
        }
        let e = whole.between(a, b).unwrap();
        assert!((c.energy_j - e).abs() < 1e-9, "{} vs {e}", c.energy_j);
    }

    /// A bogus low reading at the end of a fold, undone by the next reading, is skipped as the
    /// whole curve skips it, not read as a wrap (20 J here, 262 kJ on RAPL).
    #[test]
    fn a_bogus_drop_at_a_fold_boundary_is_not_a_wrap() {
        let readings = [(0.0, 1.0), (0.1, 2.0), (0.2, 0.5), (0.3, 4.0), (0.4, 5.0)];
        let whole = EnergyCurve::build(&counter(), &readings);
        let mut c = Channel::new(1);
        c.describe(1, counter(), "gpu".into());
        for chunk in [&readings[..3], &readings[3..]] {
            for &(t, v) in chunk {
                c.add(1, t, Some(v));
            }
            c.fold();
        }
        assert_eq!(c.energy_j, whole.between(0.0, 0.4).unwrap());
        assert!((c.energy_j - 4.0).abs() < 1e-12, "{}", c.energy_j);
    }

    /// A wrap at the very last reading is counted once the samplers have stopped, as the whole
    /// curve counts it.
    #[test]
    fn a_wrap_at_the_last_reading_counts_once_flushed() {
        let readings = [(0.0, 17.0), (0.1, 18.0), (0.2, 19.5), (0.3, 0.5)];
        let whole = EnergyCurve::build(&counter(), &readings);
        let mut c = Channel::new(1);
        c.describe(1, counter(), "gpu".into());
        for &(t, v) in &readings {
            c.add(1, t, Some(v));
        }
        c.fold();
        assert!((c.energy_j - 2.5).abs() < 1e-12, "held: {}", c.energy_j);
        c.flush();
        assert_eq!(c.energy_j, whole.between(0.0, 0.3).unwrap());
        assert!((c.energy_j - 3.5).abs() < 1e-12, "{}", c.energy_j);
    }

    #[test]
    fn failed_and_non_finite_reads_are_errors_not_zero() {
        let mut c = Channel::new(1);
        c.describe(1, counter(), "gpu".into());
        c.add(1, 0.0, Some(0.0));
        c.add(1, 0.5, None);
        c.add(1, 0.7, Some(f64::NAN));
        c.add(1, 1.0, Some(5.0));
        c.fold();
        assert_eq!((c.readings, c.errors), (2, 2));
        assert!((c.energy_j - 5.0).abs() < 1e-9);
    }
}
