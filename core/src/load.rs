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

/// The power-log channel that carries other load (cores) while queries run.
pub const CHANNEL: &str = "host/other_cpu_cores";

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
