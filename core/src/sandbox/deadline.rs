//! The wall-clock deadline of one call, and the epoch ticker that makes running guest code
//! yield often enough for the deadline to be noticed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use wasmtime::Engine;

/// How often the epoch advances while a call runs: guest code yields to the deadline race at
/// least this often.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Advances the engine's epoch every [`EPOCH_TICK`] while a plugin call runs guest code and
/// sleeps otherwise, so the deadline machinery costs nothing while the profiler waits on a
/// model or a judge (a free-running 100 Hz ticker was a fifth of the profiler's own CPU).
///
/// Holding and releasing is an atomic count; only the first hold after the ticker parked takes
/// the lock and wakes it. Back-to-back calls (tens of thousands a second) therefore never pay a
/// system call or a thread switch for the ticker: it parks only when it finds no call running
/// at the end of a tick.
pub(super) struct EpochTicker {
    running: AtomicUsize,
    /// Whether the ticker thread waits on `wake` (guarded, so a wake-up is never lost).
    parked: Mutex<bool>,
    wake: Condvar,
}

impl EpochTicker {
    pub(super) fn start(engine: Engine) -> std::io::Result<Arc<Self>> {
        let ticker = Arc::new(Self {
            running: AtomicUsize::new(0),
            parked: Mutex::new(false),
            wake: Condvar::new(),
        });
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("ipw-wasm-epoch".into())
            .spawn(move || loop {
                {
                    let mut parked = t.parked.lock().unwrap_or_else(|p| p.into_inner());
                    // Read under the lock: a `hold` that raises the count from zero takes the
                    // lock before looking at `parked`, so it either sees us parked or we see
                    // its count here.
                    while t.running.load(Ordering::SeqCst) == 0 {
                        *parked = true;
                        parked = t.wake.wait(parked).unwrap_or_else(|p| p.into_inner());
                    }
                    *parked = false;
                }
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            })?;
        Ok(ticker)
    }

    /// One more call needs the epoch to advance.
    fn hold(&self) {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            let parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            if *parked {
                self.wake.notify_one();
            }
        }
    }

    /// One call no longer needs it.
    fn release(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The wall-clock deadline of one call: time left, counted only while the guest (not the
/// judge) has the call. It also holds the epoch ticker exactly while it counts.
pub(super) struct Deadline {
    state: Mutex<DeadlineState>,
    resumed: tokio::sync::Notify,
    ticker: Arc<EpochTicker>,
}

struct DeadlineState {
    left: Duration,
    /// When counting last (re)started; `None` while paused.
    since: Option<Instant>,
}

impl Deadline {
    pub(super) fn start(budget: Duration, ticker: Arc<EpochTicker>) -> Arc<Self> {
        ticker.hold();
        Arc::new(Self {
            state: Mutex::new(DeadlineState {
                left: budget,
                since: Some(Instant::now()),
            }),
            resumed: tokio::sync::Notify::new(),
            ticker,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop counting until the guard drops.
    pub(super) fn pause(self: &Arc<Self>) -> PauseGuard {
        let mut s = self.lock();
        if let Some(since) = s.since.take() {
            s.left = s.left.saturating_sub(since.elapsed());
            self.ticker.release();
        }
        PauseGuard(self.clone())
    }

    fn resume(&self) {
        let mut s = self.lock();
        if s.since.is_none() {
            s.since = Some(Instant::now());
            self.ticker.hold();
        }
        drop(s);
        // `notify_one` keeps a permit when nobody waits yet, so a resume between `expired`
        // reading the state and awaiting is not lost.
        self.resumed.notify_one();
    }

    /// Completes when the time left runs out (never while paused).
    pub(super) async fn expired(&self) {
        loop {
            let left = {
                let s = self.lock();
                s.since.map(|since| s.left.saturating_sub(since.elapsed()))
            };
            match left {
                Some(left) if left.is_zero() => return,
                // Woken early by a pause and resume: the loop reads the new time left.
                Some(left) => {
                    tokio::select! {
                        _ = tokio::time::sleep(left) => {}
                        _ = self.resumed.notified() => {}
                    }
                }
                None => self.resumed.notified().await,
            }
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if self.lock().since.is_some() {
            self.ticker.release();
        }
    }
}

/// Counting stopped; it resumes when this drops.
pub(super) struct PauseGuard(Arc<Deadline>);

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.0.resume();
    }
}
