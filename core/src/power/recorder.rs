//! Sampling threads: one per sampler, reading at a fixed rate (never faster than its channels
//! update) plus on demand at query window edges, for the whole run. Every reading is kept (no
//! ring buffer) and appended to `power.jsonl` in the run directory.

use super::loader::SamplerHandle;
pub use crate::records::RecorderStats;
use ipw_sampler_sdk::abi::RawReading;
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One line of `power.jsonl`: a reading, or a failed read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PowerLine {
    /// Session index (the manifest's `sessions`): clocks are only comparable within one boot.
    pub session: usize,
    /// `sampler/channel`.
    pub channel: String,
    /// Run clock seconds.
    pub t: f64,
    /// Value in the channel's unit; absent on a failed read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v: Option<f64>,
    /// The sampler's error message on a failed read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Shared, line-buffered writer of `power.jsonl`.
pub type PowerLog = Arc<Mutex<BufWriter<std::fs::File>>>;

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

/// A running sampling thread.
pub struct Recorder {
    signal: Arc<Signal>,
    thread: Option<JoinHandle<RecorderStats>>,
    /// Whether this sampler is read at window edges.
    pub edge_reads: bool,
}

fn thread_cpu_s() -> f64 {
    // SAFETY: clock_gettime writes only into `ts`.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

impl Recorder {
    /// Start sampling `handle` every `interval` (and on [`EdgeMarker::mark`] if `edge_reads`).
    pub fn start(
        mut handle: SamplerHandle,
        interval: Duration,
        edge_reads: bool,
        session: usize,
        log: PowerLog,
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
        let thread = std::thread::Builder::new()
            .name(format!("ipw-sampler-{}", handle.name))
            .spawn(move || {
                let cpu0 = thread_cpu_s();
                let mut stats = RecorderStats::default();
                let mut buf: Vec<RawReading> = Vec::new();
                let mut seen_pokes = 0u64;
                let mut next = Instant::now();
                loop {
                    let stopping = sig.stop.load(Ordering::Acquire);
                    buf.clear();
                    let result = handle.read(&mut buf);
                    let mut lines = Vec::with_capacity(buf.len());
                    match result {
                        Ok(()) => {
                            stats.reads += 1;
                            stats.readings += buf.len() as u64;
                            lines.extend(buf.iter().map(|r| PowerLine {
                                session,
                                channel: names[r.channel as usize].clone(),
                                t: r.timestamp_s,
                                v: Some(r.value),
                                error: None,
                            }));
                        }
                        Err(message) => {
                            stats.errors += 1;
                            if stats.errors <= 3 {
                                tracing::warn!(sampler = %handle.name, "read failed: {message}");
                            }
                            lines.extend(names.iter().map(|n| PowerLine {
                                session,
                                channel: n.clone(),
                                t: crate::records::clock::now_s(),
                                v: None,
                                error: Some(message.clone()),
                            }));
                        }
                    }
                    if let Ok(mut w) = log.lock() {
                        for l in &lines {
                            let _ = serde_json::to_writer(&mut *w, l);
                            let _ = w.write_all(b"\n");
                        }
                    }
                    let _ = first_tx.send(());
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
                    seen_pokes = *guard;
                }
                if let Ok(mut w) = log.lock() {
                    let _ = w.flush();
                }
                stats.cpu_s = thread_cpu_s() - cpu0;
                stats
            })
            .expect("spawn sampler thread");
        // Return once the first reading is on record, so anything measured from now on (the
        // baseline, the first window) is covered from its start.
        let _ = first_rx.recv_timeout(Duration::from_secs(5));
        Self {
            signal,
            thread: Some(thread),
            edge_reads,
        }
    }

    /// A handle that asks this recorder for a read now, if it reads at edges.
    pub fn marker(&self) -> Option<EdgeMarker> {
        self.edge_reads
            .then(|| EdgeMarker(vec![self.signal.clone()]))
    }

    /// Take a last reading and stop.
    pub fn stop(mut self) -> RecorderStats {
        self.signal.stop.store(true, Ordering::Release);
        self.signal.cv.notify_one();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// Read every line of a `power.jsonl` (a cut-off last line is ignored).
pub fn read_power_log(path: &std::path::Path) -> std::io::Result<Vec<PowerLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}
