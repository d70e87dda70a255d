//! A run's power trace for the report: each energy channel's power over one session, from the
//! raw readings in `power.jsonl`, with the session's query windows and idle baseline.
//!
//! Power comes from the same energy curves attribution integrates ([`EnergyCurve`]), so a
//! counter, an instant gauge and an interval-mean gauge are all read by their own rules, and a
//! point is the mean power over its stretch of time (the energy between its edges over their
//! distance): downsampling by averaging keeps the area under the trace, which is the energy
//! the queries were charged, where picking every k-th reading would not. Shaping a counter by
//! its instant-power neighbour is left out: it moves energy inside a counter interval, which a
//! point per interval (or coarser) does not show.

use crate::power::attribution::idle_power;
use crate::power::curve::EnergyCurve;
use crate::records::{read_power_log, Manifest};
use ipw_sampler_sdk::{ChannelKind, Domain};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Points per channel at most: a trace of hours at kHz is drawn from this many averages.
pub const TRACE_POINTS: usize = 600;

/// Query windows drawn at most; beyond this, windows closer than the trace's span over this
/// are drawn as one (the page says so).
pub const MAX_WINDOWS: usize = 400;

/// One channel's power over the session.
#[derive(Debug, Clone, Serialize)]
pub struct TraceChannel {
    /// `sampler/channel`.
    pub name: String,
    /// What it measures (`gpu`, `cpu-package`, ...).
    pub domain: String,
    /// Its power is modelled, not measured.
    pub estimated: bool,
    /// Readings it has in the session.
    pub readings: usize,
    /// `[t, watts]`: mean power over each stretch, at the stretch's middle (run clock seconds).
    pub points: Vec<[f64; 2]>,
    /// Idle power over the session's baseline, watts.
    pub idle_w: Option<f64>,
}

/// One session of a run's power log.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The run.
    pub run: String,
    /// The session drawn (the first with readings), from 0.
    pub session: usize,
    /// Sessions in the run.
    pub sessions: usize,
    /// Readings of the drawn channels.
    pub readings: usize,
    /// Start and end of the drawn time, run clock seconds.
    pub span: [f64; 2],
    /// Energy channels.
    pub channels: Vec<TraceChannel>,
    /// The session's idle-baseline interval.
    pub baseline: Option<[f64; 2]>,
    /// The session's query windows, overlapping ones merged, `[start, end]`.
    pub windows: Vec<[f64; 2]>,
    /// Queries in the session.
    pub queries: usize,
    /// Windows closer than `span / MAX_WINDOWS` were merged to bound the drawing.
    pub windows_coarsened: bool,
    /// Channels with readings in the log that no sampler of the session describes (not drawn:
    /// without their kind the readings cannot be read as power).
    pub undescribed: Vec<String>,
}

/// Stretch edges for a curve: its reading times when there are few, else equal steps.
fn edges(curve: &EnergyCurve) -> Vec<f64> {
    let t = curve.times();
    if t.len() <= TRACE_POINTS + 1 {
        return t.to_vec();
    }
    let (a, b) = (t[0], t[t.len() - 1]);
    (0..=TRACE_POINTS)
        .map(|i| a + (b - a) * i as f64 / TRACE_POINTS as f64)
        .collect()
}

/// Mean power over each stretch between consecutive edges.
fn points(curve: &EnergyCurve) -> Vec<[f64; 2]> {
    edges(curve)
        .windows(2)
        .filter(|w| w[1] > w[0])
        .filter_map(|w| {
            let e = curve.between(w[0], w[1])?;
            Some([(w[0] + w[1]) / 2.0, e / (w[1] - w[0])])
        })
        .collect()
}

/// Overlapping windows merged; then, when there are more than [`MAX_WINDOWS`], windows
/// closer than the span over that many merged too (so at most about that many remain).
fn merge_windows(mut w: Vec<[f64; 2]>, span: f64) -> (Vec<[f64; 2]>, bool) {
    w.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let merge = |w: &[[f64; 2]], gap: f64| {
        let mut out: Vec<[f64; 2]> = Vec::new();
        for &x in w {
            match out.last_mut() {
                Some(last) if x[0] < last[1] + gap => last[1] = last[1].max(x[1]),
                _ => out.push(x),
            }
        }
        out
    };
    let out = merge(&w, 0.0);
    if out.len() <= MAX_WINDOWS {
        return (out, false);
    }
    (merge(&out, span / MAX_WINDOWS as f64), true)
}

/// The trace of the first session of `manifest`'s run whose log has readings of an energy
/// channel its samplers describe; `None` when there is none (no log, no samplers).
/// `windows(session)` gives that session's query windows (`[start, end]` on the run's clock),
/// asked for the drawn session only.
pub fn trace(
    manifest: &Manifest,
    power_log: &Path,
    run: &str,
    windows: impl FnOnce(usize) -> std::io::Result<Vec<[f64; 2]>>,
) -> std::io::Result<Option<Trace>> {
    let log = read_power_log(power_log)?;
    let mut readings: HashMap<(usize, &str), Vec<(f64, f64)>> = HashMap::new();
    for l in &log.lines {
        if let Some(v) = l.v {
            readings
                .entry((l.session, l.channel.as_str()))
                .or_default()
                .push((l.t, v));
        }
    }
    for (s, session) in manifest.sessions.iter().enumerate() {
        let mut channels = Vec::new();
        let mut described = Vec::new();
        for info in &session.samplers {
            for ch in &info.channels {
                let name = format!("{}/{}", info.name, ch.name);
                described.push(name.clone());
                if matches!(ch.kind, ChannelKind::Telemetry { .. })
                    || ch.domain == Domain::Telemetry
                {
                    continue;
                }
                let Some(r) = readings.get(&(s, name.as_str())) else {
                    continue;
                };
                let curve = EnergyCurve::build(&ch.kind, r);
                let points = points(&curve);
                if points.is_empty() {
                    continue;
                }
                channels.push(TraceChannel {
                    domain: ch.domain.name().to_string(),
                    estimated: ch.kind.is_estimated(),
                    readings: r.len(),
                    idle_w: session
                        .baseline
                        .and_then(|b| idle_power(&curve, b.from_s, b.to_s)),
                    points,
                    name,
                });
            }
        }
        if channels.is_empty() {
            continue;
        }
        let mut undescribed: Vec<String> = readings
            .keys()
            .filter(|(sess, c)| *sess == s && !described.iter().any(|d| d == c))
            .map(|(_, c)| c.to_string())
            .collect();
        undescribed.sort();
        let in_session = windows(s)?;
        let queries = in_session.len();
        let (lo, hi) = channels
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p[0]))
            .chain(in_session.iter().flatten().copied())
            .chain(
                session
                    .baseline
                    .into_iter()
                    .flat_map(|b| [b.from_s, b.to_s]),
            )
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
        let (windows, windows_coarsened) = merge_windows(in_session, hi - lo);
        return Ok(Some(Trace {
            run: run.to_string(),
            session: s,
            sessions: manifest.sessions.len(),
            readings: channels.iter().map(|c| c.readings).sum(),
            span: [lo, hi],
            channels,
            baseline: session.baseline.map(|b| [b.from_s, b.to_s]),
            windows,
            queries,
            windows_coarsened,
            undescribed,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_gauge_trace_is_averaged_into_bounded_points_that_keep_its_energy() {
        let kind = ChannelKind::PowerGauge {
            timing: ipw_sampler_sdk::GaugeTiming::Instant,
            estimated: false,
        };
        // 10 000 readings: 10 W, then 50 W from t = 5.
        let r: Vec<(f64, f64)> = (0..10_000)
            .map(|i| {
                let t = i as f64 * 0.001;
                (t, if t < 5.0 { 10.0 } else { 50.0 })
            })
            .collect();
        let curve = EnergyCurve::build(&kind, &r);
        let p = points(&curve);
        assert_eq!(p.len(), TRACE_POINTS);
        let step = (p[1][0] - p[0][0]).abs();
        let area: f64 = p.iter().map(|x| x[1] * step).sum();
        let whole = curve.between(0.0, 9.999).unwrap();
        assert!((area - whole).abs() < 1e-6 * whole, "{area} vs {whole}");
        assert!((p[0][1] - 10.0).abs() < 1e-9 && (p[TRACE_POINTS - 1][1] - 50.0).abs() < 1e-9);
    }

    #[test]
    fn windows_merge_when_they_overlap_and_are_bounded_in_number() {
        let (w, c) = merge_windows(vec![[2.0, 3.0], [0.0, 1.0], [0.5, 1.5], [1.5, 2.0]], 3.0);
        assert_eq!(w, vec![[0.0, 1.5], [1.5, 2.0], [2.0, 3.0]]);
        assert!(!c);
        let many: Vec<[f64; 2]> = (0..5000).map(|i| [i as f64, i as f64 + 0.5]).collect();
        let (w, c) = merge_windows(many, 5000.0);
        assert!(c && w.len() <= MAX_WINDOWS + 1, "{}", w.len());
    }
}
