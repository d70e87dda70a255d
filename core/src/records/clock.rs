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
