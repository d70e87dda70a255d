//! `ipw watch`: a run as it happens, drawn as text from its directory alone.
//!
//! The view reads `manifest.json`, `records.jsonl` and `power.jsonl` and nothing else: it
//! never takes the run's lock and writes nothing there, so it can watch a run on this machine,
//! on another one through a shared file system, or a Slurm array's shard.
//!
//! Power per channel comes from the same energy curves attribution integrates, averaged over
//! equal stretches of the last minute of the latest session (the mean over a stretch keeps its
//! energy, as the report's trace does).

use crate::analysis::{estimate_text, quality_summary, Estimate};
use crate::power::curve::EnergyCurve;
use crate::records::{read_power_log, Detail, Manifest, Record, RunDir, StoreError};
use ipw_sampler_sdk::{ChannelKind, Domain};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Seconds of the latest session the power sparklines and the recent rate cover.
pub const RECENT_S: f64 = 60.0;

/// Stretches a sparkline has.
const BUCKETS: usize = 30;

/// Errors the view lists, newest last.
const LAST_ERRORS: usize = 5;

/// Why a run could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A file of the run could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The power log could not be read.
    #[error("{}: {source}", path.display())]
    PowerLog {
        /// The log.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// One channel's recent power.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPower {
    /// `sampler/channel`.
    pub name: String,
    /// Mean watts per stretch of the last [`RECENT_S`] seconds, oldest first.
    pub watts: Vec<f64>,
}

/// One failed query.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentError {
    /// Its query id.
    pub query_id: String,
    /// The error's kind and message.
    pub message: String,
}

/// Everything one frame of the view shows.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The model.
    pub model: String,
    /// The run's status (`running`, `completed`, ...).
    pub status: String,
    /// Sessions so far.
    pub sessions: usize,
    /// Records so far.
    pub records: usize,
    /// Records whose query failed.
    pub failed: usize,
    /// Records with energy quality flags.
    pub flagged: usize,
    /// Queries finished per second over the last [`RECENT_S`] seconds of the latest session.
    pub recent_qps: Option<f64>,
    /// Queries finished per second over the latest session.
    pub session_qps: Option<f64>,
    /// Mean score with its interval.
    pub accuracy: Option<Estimate>,
    /// Accuracy per joule with its interval.
    pub apj: Option<Estimate>,
    /// Power per channel of the latest session.
    pub power: Vec<ChannelPower>,
    /// The last failed queries.
    pub errors: Vec<RecentError>,
}

/// Reads the run at `run` once and gathers a frame.
pub fn frame(run: &Path) -> Result<Frame, WatchError> {
    let dir = RunDir::new(run);
    let manifest = dir.read_manifest()?;
    let records = dir.read_records_with(Detail::Figures)?.records;
    let session = manifest.sessions.len().saturating_sub(1);
    let in_session: Vec<&Record> = records.iter().filter(|r| r.session == session).collect();
    let (recent_qps, session_qps) = rates(&in_session);
    let quality = quality_summary(&records, 0);
    let errors: Vec<RecentError> = records
        .iter()
        .filter_map(|r| {
            r.error.as_ref().map(|e| RecentError {
                query_id: r.query_id.clone(),
                message: format!("{}: {}", e.kind, e.message),
            })
        })
        .collect();
    let path = dir.power_log_path();
    let power = if path.exists() {
        recent_power(&manifest, session, &path)?
    } else {
        Vec::new()
    };
    Ok(Frame {
        model: manifest.model.name.clone(),
        status: manifest.status.clone(),
        sessions: manifest.sessions.len(),
        records: records.len(),
        failed: records.iter().filter(|r| r.error.is_some()).count(),
        flagged: records
            .iter()
            .filter(|r| r.energy.as_ref().is_some_and(|e| !e.flags.is_empty()))
            .count(),
        recent_qps,
        session_qps,
        accuracy: quality.as_ref().and_then(|q| q.overall.accuracy),
        apj: quality.as_ref().and_then(|q| q.overall.apj),
        power,
        errors: errors[errors.len().saturating_sub(LAST_ERRORS)..].to_vec(),
    })
}

/// Queries per second over the last [`RECENT_S`] seconds of the session's records and over
/// all of it (first start to last end).
fn rates(records: &[&Record]) -> (Option<f64>, Option<f64>) {
    let Some(last) = records
        .iter()
        .map(|r| r.window.end_s)
        .max_by(f64::total_cmp)
    else {
        return (None, None);
    };
    let first = records
        .iter()
        .map(|r| r.window.start_s)
        .min_by(f64::total_cmp)
        .unwrap_or(last);
    let span = last - first;
    let session = (span > 0.0).then(|| records.len() as f64 / span);
    let from = last - RECENT_S.min(span);
    let recent_n = records.iter().filter(|r| r.window.end_s > from).count();
    let recent = (last > from).then(|| recent_n as f64 / (last - from));
    (recent, session)
}

/// Mean power per stretch of the last [`RECENT_S`] seconds of `session`'s readings, for every
/// energy channel its samplers describe.
fn recent_power(
    manifest: &Manifest,
    session: usize,
    path: &Path,
) -> Result<Vec<ChannelPower>, WatchError> {
    let log = read_power_log(path).map_err(|source| WatchError::PowerLog {
        path: path.to_path_buf(),
        source,
    })?;
    let mut readings: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
    for l in log.lines.iter().filter(|l| l.session == session) {
        if let Some(v) = l.v {
            readings
                .entry(l.channel.as_str())
                .or_default()
                .push((l.t, v));
        }
    }
    let mut out = Vec::new();
    let Some(s) = manifest.sessions.get(session) else {
        return Ok(out);
    };
    for info in &s.samplers {
        for ch in &info.channels {
            if matches!(ch.kind, ChannelKind::Telemetry { .. }) || ch.domain == Domain::Telemetry {
                continue;
            }
            let name = format!("{}/{}", info.name, ch.name);
            let Some(r) = readings.get(name.as_str()) else {
                continue;
            };
            let curve = EnergyCurve::build(&ch.kind, r);
            let times = curve.times();
            let (Some(&a), Some(&b)) = (times.first(), times.last()) else {
                continue;
            };
            let from = a.max(b - RECENT_S);
            if b <= from {
                continue;
            }
            let step = (b - from) / BUCKETS as f64;
            let watts = (0..BUCKETS)
                .filter_map(|i| {
                    let (lo, hi) = (from + step * i as f64, from + step * (i + 1) as f64);
                    curve.between(lo, hi).map(|e| e / (hi - lo))
                })
                .collect();
            out.push(ChannelPower { name, watts });
        }
    }
    Ok(out)
}

/// `values` as a line of block characters, lowest to highest.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    values
        .iter()
        .map(|&v| {
            if hi > lo {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            } else {
                BARS[0]
            }
        })
        .collect()
}

impl Frame {
    /// The frame as text, one line per fact.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rate = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            s,
            "{}  {}  session {}  {} records  {} failed  {} flagged",
            self.model, self.status, self.sessions, self.records, self.failed, self.flagged
        );
        let _ = writeln!(
            s,
            "queries/s  last {RECENT_S:.0} s: {}  session: {}",
            rate(self.recent_qps),
            rate(self.session_qps)
        );
        let _ = writeln!(
            s,
            "accuracy {}  APJ {} (95% intervals)",
            estimate_text(self.accuracy.as_ref(), 3),
            estimate_text(self.apj.as_ref(), 4)
        );
        if self.power.is_empty() {
            let _ = writeln!(s, "power: no readings in this session");
        } else {
            let _ = writeln!(s, "power, last {RECENT_S:.0} s of the session:");
            let width = self.power.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in &self.power {
                let now = c.watts.last().copied().unwrap_or(f64::NAN);
                let _ = writeln!(
                    s,
                    "  {:<width$}  {}  {now:.1} W",
                    c.name,
                    sparkline(&c.watts)
                );
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "last errors:");
            for e in &self.errors {
                let mut m = e.message.clone();
                if m.chars().count() > 100 {
                    m = m.chars().take(99).collect::<String>() + "…";
                }
                let _ = writeln!(s, "  {}: {m}", e.query_id);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_spans_the_lowest_to_the_highest_bar() {
        assert_eq!(sparkline(&[0.0, 7.0, 3.5, 7.0]), "▁█▅█");
        assert_eq!(sparkline(&[2.0, 2.0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }
}
