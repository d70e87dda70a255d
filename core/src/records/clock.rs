//! The run clock: seconds on the host's monotonic clock (`CLOCK_MONOTONIC`, the clock
//! `std::time::Instant` uses on Linux). It is shared by every process on the machine, so windows
//! from a resumed session line up with the first session, and native samplers can timestamp
//! readings on the same clock.

use std::sync::OnceLock;
use std::time::Instant;

static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Seconds on the monotonic clock now.
pub fn now_s() -> f64 {
    // SAFETY: clock_gettime writes only into `ts`.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The run clock and the wall clock read together: maps a wall-clock timestamp (a wall
/// meter's log, another machine's trace) onto the run clock, within the drift since.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClockOrigin {
    /// Run-clock (monotonic) seconds.
    pub monotonic_s: f64,
    /// Unix time, seconds, read at the same moment.
    pub unix_s: f64,
}

impl ClockOrigin {
    /// Read both clocks now (the monotonic one twice, around the wall clock, and take the
    /// middle, so the pair is as close as this machine can read it).
    pub fn now() -> Self {
        let before = now_s();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let after = now_s();
        Self {
            monotonic_s: (before + after) / 2.0,
            unix_s: unix,
        }
    }

    /// The run-clock time of Unix time `unix_s`.
    pub fn to_run_clock(&self, unix_s: f64) -> f64 {
        self.monotonic_s + (unix_s - self.unix_s)
    }
}

/// Converts `Instant`s to run-clock seconds using one paired reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    anchor: Instant,
    anchor_s: f64,
}

impl RunClock {
    /// Pair the clocks now.
    pub fn start() -> Self {
        Self {
            anchor: Instant::now(),
            anchor_s: now_s(),
        }
    }

    /// Run-clock seconds of an instant.
    pub fn at(&self, t: Instant) -> f64 {
        if t >= self.anchor {
            self.anchor_s + (t - self.anchor).as_secs_f64()
        } else {
            self.anchor_s - (self.anchor - t).as_secs_f64()
        }
    }
}

/// Remember when the process started (call first thing in `main`); startup overhead is
/// measured from here.
pub fn mark_process_start() {
    let _ = PROCESS_START.set(Instant::now());
}

/// When the process started (or when this was first asked, if never marked).
pub fn process_start() -> Instant {
    *PROCESS_START.get_or_init(Instant::now)
}
