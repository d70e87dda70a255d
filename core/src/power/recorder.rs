//! Sampling threads: one per sampler, reading at a fixed rate (never faster than its channels
//! update) plus on demand at query window edges, for the whole run. Every reading is kept (no
//! ring buffer) and appended to `power.jsonl` in the run directory through
//! [`crate::records::PowerLog`], which owns that file's format and write pattern.

use super::loader::SamplerHandle;
pub use crate::records::RecorderStats;
use crate::records::{PowerLineRef, PowerLog};
use crate::selfcpu::thread_cpu_s;
use ipw_sampler_sdk::abi::RawReading;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long stopping waits for a sampler's last `read` to return.
pub const STOP_PATIENCE: Duration = Duration::from_secs(3);

struct Signal {
    pokes: Mutex<u64>,
    cv: Condvar,
    stop: AtomicBool,
}

/// Asks sampling threads for a read now (a query window starts or ends). Cheap to clone.
#[derive(Clone, Default)]
pub struct EdgeMarker(Vec<Arc<Signal>>);

impl EdgeMarker {
    /// Wake every thread for an immediate read.
    pub fn mark(&self) {
        for s in &self.0 {
            *s.pokes.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            s.cv.notify_one();
        }
    }

    /// Combine markers.
    pub fn extend(&mut self, other: EdgeMarker) {
        self.0.extend(other.0);
    }
}

/// Which channels have given a reading so far, and the last read error: what the start
/// check reads.
#[derive(Debug, Default, Clone)]
pub struct FirstReadings {
    /// Per channel index: a finite value was read.
    pub seen: Vec<bool>,
    /// The last read error, if any.
    pub last_error: Option<String>,
}

/// A running sampling thread.
pub struct Recorder {
    signal: Arc<Signal>,
    first: Arc<Mutex<FirstReadings>>,
    thread: Option<JoinHandle<RecorderStats>>,
    /// Whether this sampler is read at window edges.
    pub edge_reads: bool,
}

impl Recorder {
    /// Start sampling `handle` every `interval` (and on [`EdgeMarker::mark`] if `edge_reads`).
    pub fn start(
        mut handle: SamplerHandle,
        interval: Duration,
        edge_reads: bool,
        session: usize,
        log: Arc<PowerLog>,
    ) -> Self {
        let signal = Arc::new(Signal {
            pokes: Mutex::new(0),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let sig = signal.clone();
        let names: Vec<String> = handle
            .channels
            .iter()
            .map(|c| format!("{}/{}", handle.name, c.name))
            .collect();
        let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
        let first = Arc::new(Mutex::new(FirstReadings {
            seen: vec![false; names.len()],
            last_error: None,
        }));
        let first_seen = first.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ipw-sampler-{}", handle.name))
            .spawn(move || {
                let cpu0 = thread_cpu_s();
                let mut stats = RecorderStats::default();
                let mut buf: Vec<RawReading> = Vec::new();
                let mut seen_pokes = 0u64;
                let mut poked = false;
                // The time of the last edge read while no reading at or after it has been
                // taken: a sampler whose values lag (a replayed trace) gives the reading that
                // closes a window only at a later, periodic read, which must not wait either.
                let mut owed: Option<f64> = None;
                let mut next = Instant::now();
                loop {
                    let stopping = sig.stop.load(Ordering::Acquire);
                    if poked {
                        owed = Some(crate::records::clock::now_s());
                    }
                    buf.clear();
                    let result = handle.read(&mut buf);
                    // An edge reading (and the readings up to the first one past the edge), the
                    // first and the last go to disk at once with what is kept; so does every
                    // reading of a sampler without edge reads (the reading after a window's end
                    // is then a periodic one).
                    let write_now = owed.is_some()
                        || stopping
                        || !edge_reads
                        || stats.reads + stats.errors == 0;
                    if let (Some(edge), Ok(())) = (owed, &result) {
                        if !buf.is_empty() && buf.iter().all(|r| r.timestamp_s >= edge) {
                            owed = None;
                        }
                    }
                    match result {
                        Ok(()) => {
                            let mut f = first_seen.lock().unwrap_or_else(|p| p.into_inner());
                            for r in buf.iter().filter(|r| r.value.is_finite()) {
                                if let Some(s) = f.seen.get_mut(r.channel as usize) {
                                    *s = true;
                                }
                            }
                            drop(f);
                            stats.reads += 1;
                            stats.readings += buf.len() as u64;
                            let lines = buf.iter().map(|r| PowerLineRef {
                                session,
                                channel: &names[r.channel as usize],
                                t: r.timestamp_s,
                                v: Some(r.value),
                                error: None,
                            });
                            log.take(lines, write_now);
                        }
                        Err(message) => {
                            first_seen
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .last_error = Some(message.clone());
                            stats.errors += 1;
                            if stats.errors <= 3 {
                                tracing::warn!(sampler = %handle.name, "read failed: {message}");
                            }
                            let t = crate::records::clock::now_s();
                            let lines = names.iter().map(|n| PowerLineRef {
                                session,
                                channel: n,
                                t,
                                v: None,
                                error: Some(&message),
                            });
                            log.take(lines, write_now);
                        }
                    }
                    if stats.reads + stats.errors == 1 {
                        let _ = first_tx.send(());
                    }
                    if stopping {
                        break;
                    }
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now; // fell behind (a slow read): do not burst to catch up
                    }
                    let guard = sig.pokes.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) = sig
                        .cv
                        .wait_timeout_while(
                            guard,
                            next.saturating_duration_since(Instant::now()),
                            |p| *p == seen_pokes && !sig.stop.load(Ordering::Acquire),
                        )
                        .unwrap_or_else(|p| p.into_inner());
                    poked = *guard != seen_pokes;
                    seen_pokes = *guard;
                }
                log.sync();
                stats.cpu_s = thread_cpu_s() - cpu0;
                stats
            })
            .expect("spawn sampler thread");
        // Return once the first reading is on record, so anything measured from now on (the
        // baseline, the first window) is covered from its start.
        let _ = first_rx.recv_timeout(Duration::from_secs(5));
        Self {
            signal,
            first,
            thread: Some(thread),
            edge_reads,
        }
    }

    /// What has been read so far (for the start check).
    pub fn first_readings(&self) -> FirstReadings {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A handle that asks this recorder for a read now, if it reads at edges.
    pub fn marker(&self) -> Option<EdgeMarker> {
        self.edge_reads
            .then(|| EdgeMarker(vec![self.signal.clone()]))
    }

    /// Take a last reading and stop. A sampler whose `read` does not return within
    /// [`STOP_PATIENCE`] is left behind (its thread cannot be killed; it holds only its own
    /// library) rather than hanging the run.
    pub fn stop(mut self) -> RecorderStats {
        self.signal.stop.store(true, Ordering::Release);
        self.signal.cv.notify_one();
        let Some(thread) = self.thread.take() else {
            return RecorderStats::default();
        };
        let deadline = Instant::now() + STOP_PATIENCE;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            return thread.join().unwrap_or_default();
        }
        tracing::error!(
            "a sampler's read has not returned for {} s; its thread is abandoned and its readings end where it blocked",
            STOP_PATIENCE.as_secs()
        );
        RecorderStats {
            abandoned: true,
            ..RecorderStats::default()
        }
    }
}
