//! Self-accounting: how much CPU ipw itself (the harness) spends inside a query's window.
//!
//! Whatever ipw spends on a machine shared with the model is inside the energy it reports, so
//! every record carries the harness's CPU time during its window (see [`HarnessCpu`]):
//!
//! - the process's CPU over the window (`CLOCK_PROCESS_CPUTIME_ID`, nanoseconds), less
//! - the CPU of the in-process engine's threads over the window, for the embedded backend
//!   (llama.cpp's generation threads and the OpenMP workers they start, which inherit their
//!   name; see [`threads_cpu_s`]), and
//! - the whole machine's busy CPU over the window (`/proc/stat`), the denominator of the
//!   harness's share of CPU-domain energy in the summary.

pub use crate::records::HarnessCpu;

/// CPU seconds (user + system) this process has used, all threads, nanosecond resolution.
pub fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the struct we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return crate::host::self_usage().0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// CPU seconds the calling thread has used (user + system), nanosecond resolution: what a
/// helper thread of the harness (a sampler, the metrics server) costs.
pub fn thread_cpu_s() -> f64 {
    // SAFETY: clock_gettime writes only into `ts`.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`, from
/// `/proc/self/task/<tid>/{comm,schedstat}` (nanoseconds on CPU). `None` where there is no
/// such file system (not Linux) or no thread matched.
///
/// Threads inherit their creator's name, so this counts a thread pool a named thread started
/// (OpenMP's workers, started by llama.cpp from the generation thread) with it.
pub fn threads_cpu_s(prefix: &str) -> Option<f64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut total_ns = 0u64;
    let mut matched = false;
    let mut path = std::path::PathBuf::from("/proc/self/task");
    for task in tasks.flatten() {
        path.push(task.file_name());
        path.push("comm");
        let named = std::fs::read(&path).is_ok_and(|comm| comm.starts_with(prefix.as_bytes()));
        path.pop();
        if named {
            path.push("schedstat");
            if let Some(ns) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                total_ns += ns;
                matched = true;
            }
            path.pop();
        }
        path.pop();
    }
    matched.then(|| total_ns as f64 / 1e9)
}

/// Busy CPU seconds of the whole machine since boot, all CPUs (user, nice, system, irq,
/// softirq; not idle, iowait or steal), from the first line of `/proc/stat`. Resolution: one
/// clock tick (10 ms) per CPU. `None` where there is no `/proc/stat`.
pub fn machine_busy_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| busy as f64 / hz as f64)
}

/// CPU counters at one edge of a query's window.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    process_s: f64,
    engine_s: Option<f64>,
    machine_s: Option<f64>,
    server_s: Option<f64>,
}

impl CpuMark {
    /// Read the counters now. `engine_s` is the in-process engine's CPU so far, if the backend
    /// runs one ([`crate::backend::Backend::engine_cpu_s`]).
    pub fn now(engine_s: Option<f64>) -> Self {
        Self {
            process_s: process_cpu_s(),
            engine_s,
            machine_s: machine_busy_cpu_s(),
            server_s: None,
        }
    }

    /// With the managed server's CPU so far ([`crate::backend::Backend::server_cpu_s`]).
    pub fn with_server(mut self, server_s: Option<f64>) -> Self {
        self.server_s = server_s;
        self
    }

    /// The harness's CPU between this mark (the window's start) and `end`.
    pub fn until(&self, end: &CpuMark) -> HarnessCpu {
        let process = (end.process_s - self.process_s).max(0.0);
        let engine = match (self.engine_s, end.engine_s) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        HarnessCpu {
            cpu_s: (process - engine).max(0.0),
            process_cpu_s: process,
            engine_cpu_s: self.engine_s.zip(end.engine_s).map(|_| engine),
            machine_cpu_s: self
                .machine_s
                .zip(end.machine_s)
                .map(|(a, b)| (b - a).max(0.0)),
            server_cpu_s: self
                .server_s
                .zip(end.server_s)
                .map(|(a, b)| (b - a).max(0.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_cpu_s() -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes into the struct we pass.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }

    /// Burn `seconds` of this thread's CPU (not wall time: the machine may be busy).
    fn spin(seconds: f64) {
        let start = thread_cpu_s();
        let mut x = 0u64;
        while thread_cpu_s() - start < seconds {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn a_named_thread_is_counted_and_the_rest_are_not() {
        let before_named = threads_cpu_s("ipw-selfcpu-t").unwrap_or(0.0);
        let mark = CpuMark::now(Some(before_named));
        std::thread::Builder::new()
            .name("ipw-selfcpu-t".into())
            .spawn(|| {
                spin(0.2);
                // Still alive while counted: read from inside the thread before it exits.
                threads_cpu_s("ipw-selfcpu-t").expect("the named thread is listed")
            })
            .unwrap()
            .join()
            .map(|named| {
                spin(0.05); // the harness's own work, on this (differently named) thread
                let end = CpuMark::now(Some(named));
                let h = mark.until(&end);
                assert!(named - before_named >= 0.19, "named thread CPU {named}");
                assert!(h.process_cpu_s >= 0.2, "{h:?}");
                // Other tests may spin in this process meanwhile, so bound the difference: the
                // named thread's CPU left the harness's, this thread's stayed in it.
                assert!(
                    h.cpu_s >= 0.045 && h.process_cpu_s - h.cpu_s >= 0.19,
                    "harness CPU excludes the named thread: {h:?}"
                );
            })
            .unwrap();
    }

    #[test]
    fn machine_busy_time_covers_this_process() {
        let (a, p) = (machine_busy_cpu_s().unwrap(), process_cpu_s());
        spin(0.2);
        let (b, q) = (machine_busy_cpu_s().unwrap(), process_cpu_s());
        assert!(q - p >= 0.19);
        // Ticks are 10 ms per CPU; allow for that.
        assert!(
            b - a >= q - p - 0.03,
            "machine {} < process {}",
            b - a,
            q - p
        );
    }
}
