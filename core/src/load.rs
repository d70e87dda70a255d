//! Competing load: CPU time that other processes use while ipw measures, read from `/proc`.
//! A baseline taken on a busy machine is not idle, and a query measured beside another job
//! shares the meter with it; both must be visible, not silent.
//!
//! Other load = (CPU time of the whole machine − CPU time of this process) per wall second, in
//! cores. A model server on the same machine counts as other load (ipw cannot tell it from
//! any other process), which is why records are flagged for it only with the embedded backend.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Other load above this many cores makes a machine busy for `--require-idle`, a baseline
/// suspect and a record flagged.
pub const BUSY_CORES: f64 = 0.25;

/// The power-log channel that carries other processes' CPU while queries run: a cumulative
/// counter (CPU seconds of the whole machine less this process's), so the load over any span
/// is the counter's rise over it, however few readings fall inside.
pub const CHANNEL: &str = "host/other_cpu_s";

/// The channel runs written before the counter carried instead: other load in cores, each
/// reading an average over the half second around it. Still read, for `ipw attribute`.
pub const LEGACY_CHANNEL: &str = "host/other_cpu_cores";

/// The shortest span other load is judged over: a query's window widened to this, centred on
/// it. `/proc` counts CPU in 10 ms ticks, so a 30 ms window alone could read a whole core of
/// load from one stray tick; over a second a tick is 1% of a core.
pub const MIN_SPAN_S: f64 = 1.0;

/// CPU counters at one moment.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    /// Busy ticks of the whole machine (user, nice, system, irq, softirq, steal).
    machine: u64,
    /// Ticks of this process (all threads).
    own: u64,
    /// Ticks and name of every other process, when asked for.
    processes: HashMap<i32, (u64, String)>,
}

pub use crate::records::OtherLoad;

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime and the name from a `/proc/<pid>/stat` line (the name may hold spaces and
/// parentheses, so fields are counted after its last `)`).
fn parse_stat(text: &str) -> Option<(u64, String)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime, name))
}

fn machine_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user already)
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// Read the counters now; `processes`: also every other process's (for naming the culprits).
pub fn snapshot(processes: bool) -> Option<CpuSnapshot> {
    let machine = machine_ticks()?;
    let own = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?.0;
    let mut procs = HashMap::new();
    if processes {
        let me = std::process::id() as i32;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            {
                procs.insert(pid, stat);
            }
        }
    }
    Some(CpuSnapshot {
        at: Instant::now(),
        machine,
        own,
        processes: procs,
    })
}

impl CpuSnapshot {
    /// CPU seconds the rest of the machine has used (since boot, less this process's): the
    /// value of [`CHANNEL`]. It can step back by a tick, as the machine and the process are
    /// counted by different kernel paths; rates over a span are clamped at zero.
    pub fn other_cpu_s(&self) -> f64 {
        (self.machine as f64 - self.own as f64) / ticks_per_s()
    }
}

/// Other load in cores over `[from, to]` from [`CHANNEL`]'s readings `(t, other_cpu_s)` in
/// time order: the span is widened to [`MIN_SPAN_S`] around its middle, then to the readings
/// that bracket it (the last at or before its start, the first at or after its end), and the
/// counter's rise over that is divided by its length. The judgement is of the load itself
/// over at least a second, never of how many readings landed inside a short window. `None`
/// where no two readings span any of the window (a run killed before its next reading).
pub fn other_cores_over(readings: &[(f64, f64)], from: f64, to: f64) -> Option<f64> {
    let mid = (from + to) / 2.0;
    let half = ((to - from) / 2.0).max(MIN_SPAN_S / 2.0);
    let (span_from, span_to) = (mid - half, mid + half);
    let a = readings
        .iter()
        .rev()
        .find(|(t, _)| *t <= span_from)
        .or_else(|| readings.first())?;
    let b = readings
        .iter()
        .find(|(t, _)| *t >= span_to)
        .or_else(|| readings.last())?;
    (b.0 > a.0 && b.0 > from && a.0 < to).then(|| ((b.1 - a.1) / (b.0 - a.0)).max(0.0))
}

/// Other load between `a` and `b` (`b` later).
pub fn between(a: &CpuSnapshot, b: &CpuSnapshot) -> OtherLoad {
    let secs = (b.at - a.at).as_secs_f64().max(1e-3);
    let hz = ticks_per_s();
    let machine = b.machine.saturating_sub(a.machine) as f64;
    let own = b.own.saturating_sub(a.own) as f64;
    let cores = ((machine - own) / hz / secs).max(0.0);
    let mut top: Vec<(f64, String)> = b
        .processes
        .iter()
        .filter_map(|(pid, (ticks, name))| {
            let before = a.processes.get(pid)?.0;
            let c = ticks.saturating_sub(before) as f64 / hz / secs;
            (c >= 0.05).then(|| (c, format!("{name} (pid {pid}): {c:.2} cores")))
        })
        .collect();
    top.sort_by(|x, y| y.0.total_cmp(&x.0));
    OtherLoad {
        cores,
        top: top.into_iter().take(5).map(|(_, s)| s).collect(),
    }
}

/// Measure other load over `span`, naming the busiest processes.
pub fn measure(span: Duration) -> Option<OtherLoad> {
    let a = snapshot(true)?;
    std::thread::sleep(span);
    let b = snapshot(true)?;
    Some(between(&a, &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter rising at `cores` per second, read every `every` seconds from 0 to `until`.
    fn counter(cores: f64, every: f64, until: f64) -> Vec<(f64, f64)> {
        let n = (until / every).round() as usize;
        (0..=n)
            .map(|i| (i as f64 * every, i as f64 * every * cores))
            .collect()
    }

    #[test]
    fn other_load_is_the_counters_rise_whatever_the_windows_length() {
        // One core of other load, read every half second: every window, however short and
        // wherever it falls between readings, sees one core.
        let busy = counter(1.0, 0.5, 10.0);
        for (from, to) in [
            (0.0, 0.01),
            (3.26, 3.29),
            (4.99, 5.01),
            (2.0, 7.5),
            (9.99, 10.0),
        ] {
            let c = other_cores_over(&busy, from, to).unwrap();
            assert!((c - 1.0).abs() < 1e-9, "{from}-{to}: {c}");
        }
        // Idle but for one stray tick beside a short window: spread over the widened span it
        // stays far below the busy threshold, where the window alone would read a core.
        let mut idle = counter(0.0, 0.5, 10.0);
        for r in idle.iter_mut().filter(|r| r.0 >= 5.0) {
            r.1 += 0.01;
        }
        let c = other_cores_over(&idle, 4.995, 5.005).unwrap();
        assert!(c < BUSY_CORES / 2.0, "{c}");
        // Readings far apart (a loaded machine delays the monitor): still the rate over them.
        let sparse = vec![(0.0, 0.0), (4.0, 2.0)];
        assert_eq!(other_cores_over(&sparse, 1.0, 1.05), Some(0.5));
        // Nothing spans a window after the last reading (killed run): unknown, not idle.
        assert_eq!(other_cores_over(&busy, 10.5, 10.6), None);
        assert_eq!(other_cores_over(&[], 1.0, 2.0), None);
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(line), Some((300, "my (odd) name".into())));
    }

    #[test]
    fn a_busy_process_beside_us_is_measured_and_named() {
        // A real competing process: a shell spinning for a few seconds.
        let mut spinner = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 1000000000 ]; do i=$((i+1)); done",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let load = measure(Duration::from_millis(1500)).unwrap();
        let _ = spinner.kill();
        let _ = spinner.wait();
        assert!(load.cores > 0.5, "{load:?}");
        assert!(
            load.top.iter().any(|p| p.starts_with("sh (pid")),
            "{load:?}"
        );
    }
}
