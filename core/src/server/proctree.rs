//! CPU time of a managed server's process group, read from `/proc`: the server and whatever
//! it started (vLLM's workers, a Python launcher's child) share the process group ipw gave it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a list of the group's processes is trusted before `/proc` is scanned again: a
/// server starts its workers while it loads, rarely later.
const RESCAN: Duration = Duration::from_secs(2);

/// The processes of one process group, and their CPU.
pub struct ProcessGroup {
    pgid: i32,
    members: Mutex<(Option<Instant>, Vec<i32>)>,
}

impl ProcessGroup {
    /// The group led by `pgid`.
    pub fn new(pgid: i32) -> Self {
        Self {
            pgid,
            members: Mutex::new((None, Vec::new())),
        }
    }

    /// CPU seconds (user + system, with reaped children's) used so far by the group's live
    /// processes; `None` where `/proc` cannot be read or the group is gone.
    pub fn cpu_s(&self) -> Option<f64> {
        let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if m.0.is_none_or(|at| at.elapsed() > RESCAN) {
            *m = (Some(Instant::now()), scan(self.pgid));
        }
        let ticks = clock_ticks()?;
        let mut total = 0u64;
        let mut any = false;
        for &pid in &m.1 {
            if let Some((pgrp, t)) = stat(pid) {
                if pgrp == self.pgid {
                    total += t;
                    any = true;
                }
            }
        }
        any.then(|| total as f64 / ticks)
    }
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

/// Every process whose process group is `pgid`.
fn scan(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(g, _)| g == pgid))
        .collect()
}

/// A process's group and its CPU ticks (utime + stime + cutime + cstime).
fn stat(pid: i32) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): pgrp is field 5, utime..cstime fields 14..17.
    let pgrp = f.get(2)?.parse().ok()?;
    let ticks = (11..15)
        .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum::<Option<u64>>()?;
    Some((pgrp, ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_group_member_is_counted() {
        // A child in its own group spins until killed: the group's CPU grows.
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = ProcessGroup::new(child.id() as i32);
        let first = group.cpu_s().expect("the group is readable");
        let mut last = first;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(50));
            last = group.cpu_s().unwrap_or(last);
            if last - first > 0.05 {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(last - first > 0.05, "spinning counted: {first} -> {last}");
        assert!(
            ProcessGroup::new(child.id() as i32).cpu_s().is_none(),
            "a group that is gone reads as unknown, not 0"
        );
    }
}
