//! Sampling threads: one per sampler, reading at a fixed rate (never faster than its channels
//! update) plus on demand at query window edges, for the whole run. Every reading is kept (no
//! ring buffer) and appended to `power.jsonl` in the run directory.

use super::loader::SamplerHandle;
pub use crate::records::RecorderStats;
use ipw_sampler_sdk::abi::RawReading;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long stopping waits for a sampler's last `read` to return.
pub const STOP_PATIENCE: Duration = Duration::from_secs(3);

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

/// How often `power.jsonl` is synced to the disk while sampling: a power loss or kernel crash
/// loses at most the readings of this last stretch.
pub const POWER_LOG_SYNC: Duration = Duration::from_secs(1);

/// The longest a fast sampler's periodic readings wait in memory before they are written.
pub const POWER_LOG_FLUSH: Duration = Duration::from_millis(250);

/// `power.jsonl`, shared by a session's sampling threads, synced to disk at most
/// [`POWER_LOG_SYNC`] after a write.
///
/// [`PowerLog::append`] writes at once, in one `write` (a killed process loses no reading it
/// took; with `O_APPEND` the batches of two threads never interleave). A sampler read at query
/// window edges keeps its periodic readings in memory instead and writes them with its next
/// edge reading, or [`POWER_LOG_FLUSH`] after the oldest: at 100 Hz a `write` per reading was
/// a fifth of the sampling thread's CPU. Every reading inside a finished window is then on disk
/// once its end-edge reading is; a `kill -9` loses at most the readings of the queries still in
/// flight (which a resume measures again) or of the last quarter second outside any window.
pub struct PowerLog {
    inner: Mutex<LogInner>,
}

struct LogInner {
    out: std::fs::File,
    /// Lines taken but not yet written, and when the oldest of them was taken.
    pending: Vec<u8>,
    pending_since: Option<Instant>,
    last_sync: Instant,
    failed: bool,
}

/// A power line as written, borrowing its channel name (the same JSON as [`PowerLine`]).
#[derive(Serialize)]
struct LineOut<'a> {
    session: usize,
    channel: &'a str,
    t: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl PowerLog {
    /// Open `path` for appending. If an earlier session was killed mid-line, the cut-off tail
    /// is ended with a newline first, so it stays one unreadable line (skipped on reading)
    /// instead of merging with this session's first reading.
    pub fn open(path: &std::path::Path) -> std::io::Result<Arc<Self>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                tracing::warn!(
                    file = %path.display(),
                    "the power log ends in a cut-off line (an earlier session was killed); it is kept apart and skipped"
                );
                file.write_all(b"\n")?;
                file.sync_data()?;
            }
        }
        Ok(Arc::new(Self {
            inner: Mutex::new(LogInner {
                out: file,
                pending: Vec::new(),
                pending_since: None,
                last_sync: Instant::now(),
                failed: false,
            }),
        }))
    }

    /// Append `lines` now (after any kept in memory); sync when the last sync is
    /// [`POWER_LOG_SYNC`] old.
    pub fn append(&self, lines: &[PowerLine]) {
        let lines = lines.iter().map(|l| LineOut {
            session: l.session,
            channel: &l.channel,
            t: l.t,
            v: l.v,
            error: l.error.as_deref(),
        });
        self.take(lines, true);
    }

    /// Add `lines`; write everything kept when `now`, or when the oldest kept line is
    /// [`POWER_LOG_FLUSH`] old.
    fn take<'a>(&self, lines: impl Iterator<Item = LineOut<'a>>, now: bool) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for l in lines {
            serde_json::to_writer(&mut w.pending, &l).expect("a power line serialises");
            w.pending.push(b'\n');
        }
        let since = *w.pending_since.get_or_insert_with(Instant::now);
        if now || since.elapsed() >= POWER_LOG_FLUSH {
            let result = w.write_pending();
            w.note(result);
        }
    }

    /// Write what is kept in memory now (the idle baseline ended: its readings go to disk
    /// before the manifest says it was measured).
    pub fn flush(&self) {
        self.take(std::iter::empty(), true);
    }

    /// Write what is kept in memory and sync now (the end of a session).
    pub fn sync(&self) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let result = w.write_pending().and_then(|()| w.sync());
        w.note(result);
    }
}

impl LogInner {
    /// Write the kept lines in one `write`; sync when the last sync is [`POWER_LOG_SYNC`] old.
    fn write_pending(&mut self) -> std::io::Result<()> {
        self.pending_since = None;
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.out.write_all(&self.pending);
        self.pending.clear();
        result?;
        if self.last_sync.elapsed() >= POWER_LOG_SYNC {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.out.sync_data()?;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn note(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            if !self.failed {
                tracing::error!(
                    "cannot write the power log: {e}; energy of this session will be incomplete"
                );
            }
            self.failed = true;
        }
    }
}

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
                            let lines = buf.iter().map(|r| LineOut {
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
                            let lines = names.iter().map(|n| LineOut {
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

/// What [`read_power_log`] found.
#[derive(Debug, Default)]
pub struct PowerLogRead {
    /// Every readable line, in file order.
    pub lines: Vec<PowerLine>,
    /// Lines that could not be read (cut off by a crash): skipped.
    pub unreadable: usize,
}

/// Read every line of a `power.jsonl`; unreadable ones (a line cut off by a crash) are counted
/// and skipped.
pub fn read_power_log(path: &std::path::Path) -> std::io::Result<PowerLogRead> {
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PowerLogRead::default()),
        Err(e) => return Err(e),
    };
    let mut read = PowerLogRead::default();
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(l) => read.lines.push(l),
            Err(_) => read.unreadable += 1,
        }
    }
    if read.unreadable > 0 {
        tracing::warn!(
            file = %path.display(),
            "skipped {} unreadable power log line(s) (cut off by a crash)",
            read.unreadable
        );
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: f64) -> PowerLine {
        PowerLine {
            session: 1,
            channel: "s/c".into(),
            t,
            v: Some(1.0),
            error: None,
        }
    }

    fn on_disk(path: &std::path::Path) -> Vec<f64> {
        read_power_log(path)
            .unwrap()
            .lines
            .iter()
            .map(|l| l.t)
            .collect()
    }

    fn out(l: &PowerLine) -> LineOut<'_> {
        LineOut {
            session: l.session,
            channel: &l.channel,
            t: l.t,
            v: l.v,
            error: l.error.as_deref(),
        }
    }

    #[test]
    fn kept_readings_go_to_disk_with_the_next_urgent_one_or_when_they_are_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("power.jsonl");
        let log = PowerLog::open(&path).unwrap();
        let (a, b, c, d) = (line(1.0), line(2.0), line(3.0), line(4.0));
        log.take([out(&a)].into_iter(), false);
        log.take([out(&b)].into_iter(), false);
        assert_eq!(on_disk(&path), Vec::<f64>::new(), "kept in memory");
        log.take([out(&c)].into_iter(), true);
        assert_eq!(
            on_disk(&path),
            [1.0, 2.0, 3.0],
            "an edge reading writes, in order"
        );
        log.take([out(&d)].into_iter(), false);
        std::thread::sleep(POWER_LOG_FLUSH);
        log.take(std::iter::empty(), false);
        assert_eq!(on_disk(&path), [1.0, 2.0, 3.0, 4.0], "old enough: written");
        log.take([out(&a)].into_iter(), false);
        log.flush();
        assert_eq!(on_disk(&path).len(), 5, "flush writes");
        log.take([out(&b)].into_iter(), false);
        log.sync();
        assert_eq!(on_disk(&path).len(), 6, "sync writes");
        let text = std::fs::read_to_string(&path).unwrap();
        let first: PowerLine = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first, a, "the borrowed form writes the same JSON");
    }

    #[test]
    fn a_torn_tail_stays_one_skipped_line_and_never_swallows_the_next_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("power.jsonl");
        // A complete reading, then one cut off by a kill.
        let first = serde_json::to_string(&line(1.0)).unwrap();
        std::fs::write(&path, format!("{first}\n{{\"session\":0,\"chan")).unwrap();
        let log = PowerLog::open(&path).unwrap();
        log.append(&[line(2.0), line(3.0)]);
        log.sync();
        let read = read_power_log(&path).unwrap();
        let times: Vec<f64> = read.lines.iter().map(|l| l.t).collect();
        assert_eq!(times, [1.0, 2.0, 3.0]);
        assert_eq!(read.unreadable, 1);
    }
}
