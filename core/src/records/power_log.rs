//! `power.jsonl`: every sampler reading of a run, one JSON line each, in the order taken.
//!
//! Written while sampling through [`PowerLog`] (appends that survive a `kill -9`, synced every
//! [`POWER_LOG_SYNC`]), by `ipw attribute --trace` (an imported trace) and by `ipw merge`
//! ([`MergedPowerLog`], sessions renumbered); read whole by attribution and the report
//! ([`read_power_log`]) or line by line by export ([`PowerLogLines`]). A line cut off by a
//! crash is skipped and counted by every reader, never an error.

use super::store::StoreError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// A power line as written, borrowing its channel name and error (the same JSON as
/// [`PowerLine`]): a sampling thread writes its readings without a `String` per reading.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PowerLineRef<'a> {
    /// Session index.
    pub session: usize,
    /// `sampler/channel`.
    pub channel: &'a str,
    /// Run clock seconds.
    pub t: f64,
    /// Value in the channel's unit; absent on a failed read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v: Option<f64>,
    /// The sampler's error message on a failed read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

impl<'a> From<&'a PowerLine> for PowerLineRef<'a> {
    fn from(l: &'a PowerLine) -> Self {
        Self {
            session: l.session,
            channel: &l.channel,
            t: l.t,
            v: l.v,
            error: l.error.as_deref(),
        }
    }
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
/// window edges keeps its periodic readings in memory instead ([`PowerLog::take`] with
/// `now = false`) and writes them with its next edge reading, or [`POWER_LOG_FLUSH`] after the
/// oldest: at 100 Hz a `write` per reading was a fifth of the sampling thread's CPU. Every
/// reading inside a finished window is then on disk once its end-edge reading is; a `kill -9`
/// loses at most the readings of the queries still in flight (which a resume measures again)
/// or of the last quarter second outside any window.
pub struct PowerLog {
    inner: Mutex<LogInner>,
    tap: Option<Arc<dyn ReadingTap>>,
}

/// Something that sees every reading as the log takes it, beside the file (live metrics). It
/// is called on the sampling thread after the reading's timestamp was taken, so it must be
/// cheap and must not block for long: it delays the log's write, never a timestamp.
pub trait ReadingTap: Send + Sync {
    /// One reading (or failed read) was taken.
    fn reading(&self, line: &PowerLineRef<'_>);
}

struct LogInner {
    out: std::fs::File,
    /// Lines taken but not yet written, and when the oldest of them was taken.
    pending: Vec<u8>,
    pending_since: Option<Instant>,
    last_sync: Instant,
    failed: bool,
}

impl PowerLog {
    /// Open `path` for appending. If an earlier session was killed mid-line, the cut-off tail
    /// is ended with a newline first, so it stays one unreadable line (skipped on reading)
    /// instead of merging with this session's first reading.
    pub fn open(path: &Path) -> std::io::Result<Arc<Self>> {
        Self::open_tapped(path, None)
    }

    /// [`PowerLog::open`], showing every reading to `tap` as well.
    pub fn open_tapped(
        path: &Path,
        tap: Option<Arc<dyn ReadingTap>>,
    ) -> std::io::Result<Arc<Self>> {
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
            tap,
        }))
    }

    /// Append `lines` now (after any kept in memory); sync when the last sync is
    /// [`POWER_LOG_SYNC`] old.
    pub fn append(&self, lines: &[PowerLine]) {
        self.take(lines.iter().map(PowerLineRef::from), true);
    }

    /// Add `lines`; write everything kept when `now`, or when the oldest kept line is
    /// [`POWER_LOG_FLUSH`] old.
    pub fn take<'a>(&self, lines: impl Iterator<Item = PowerLineRef<'a>>, now: bool) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for l in lines {
            if let Some(tap) = &self.tap {
                tap.reading(&l);
            }
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

/// One line of the file as a reader sees it: `None` for a blank line, `Some(Err(()))` for one
/// that does not parse (cut off by a crash).
fn parse_line(line: &[u8]) -> Option<Result<PowerLine, ()>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(serde_json::from_slice(line).map_err(|_| ()))
}

/// What [`read_power_log`] found.
#[derive(Debug, Default)]
pub struct PowerLogRead {
    /// Every readable line, in file order.
    pub lines: Vec<PowerLine>,
    /// Lines that could not be read (cut off by a crash): skipped.
    pub unreadable: usize,
}

/// The readable lines among the last `max_bytes` of a `power.jsonl` (the first, cut by the
/// start of the tail, is skipped): what a sampler read lately, without reading a long run's
/// whole log.
pub fn read_power_log_tail(path: &Path, max_bytes: u64) -> std::io::Result<Vec<PowerLine>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let from = len.saturating_sub(max_bytes);
    f.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let mut parts = bytes.split(|b| *b == b'\n');
    if from > 0 {
        parts.next();
    }
    Ok(parts.filter_map(|l| parse_line(l)?.ok()).collect())
}

/// Read every line of a `power.jsonl` (none when there is no file); unreadable ones (a line
/// cut off by a crash) are counted and skipped.
pub fn read_power_log(path: &Path) -> std::io::Result<PowerLogRead> {
    let bytes = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PowerLogRead::default()),
        Err(e) => return Err(e),
    };
    let mut read = PowerLogRead::default();
    for line in bytes.split(|b| *b == b'\n') {
        match parse_line(line) {
            None => {}
            Some(Ok(l)) => read.lines.push(l),
            Some(Err(())) => read.unreadable += 1,
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

/// The lines of a `power.jsonl` read one at a time, for logs too big to hold at once
/// (export). Unreadable lines are skipped and counted in [`PowerLogLines::unreadable`].
pub struct PowerLogLines {
    reader: std::io::BufReader<std::fs::File>,
    line: Vec<u8>,
    /// Lines skipped so far because they do not parse (cut off by a crash).
    pub unreadable: usize,
}

impl PowerLogLines {
    /// Open `path` for reading line by line.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            reader: std::io::BufReader::new(std::fs::File::open(path)?),
            line: Vec::new(),
            unreadable: 0,
        })
    }
}

impl Iterator for PowerLogLines {
    type Item = std::io::Result<PowerLine>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            }
            match parse_line(&self.line) {
                None => {}
                Some(Ok(l)) => return Some(Ok(l)),
                Some(Err(())) => self.unreadable += 1,
            }
        }
    }
}

/// A `power.jsonl` written whole from other runs' logs (`ipw merge`), each source's sessions
/// moved up by an offset. It is written through an [`AtomicFile`](super::AtomicFile) and takes
/// the log's place at [`MergedPowerLog::finish`], so a merge cut short never leaves half a log.
pub struct MergedPowerLog {
    path: PathBuf,
    out: std::io::BufWriter<super::AtomicFile>,
    any: bool,
}

impl MergedPowerLog {
    /// Start writing the log at `path` (into a temporary file beside it).
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let file = super::AtomicFile::create(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
            any: false,
        })
    }

    /// Append every readable line of the log at `from` (none if it has no log) with its
    /// `session` moved up by `offset`. Lines are rewritten as JSON values, so fields this ipw
    /// does not know are kept; a line torn by a crash is left out (attribution skips it in the
    /// source too).
    pub fn append_renumbered(&mut self, from: &Path, offset: usize) -> std::io::Result<()> {
        let file = match std::fs::File::open(from) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.any = true;
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(s) = v.get("session").and_then(|s| s.as_u64()) {
                v["session"] = (s + offset as u64).into();
            }
            serde_json::to_writer(&mut self.out, &v)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Sync the new log and move it into place; when no source had a log, drop it (its
    /// temporary file goes) and remove any log an earlier merge left.
    pub fn finish(self) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let file = self.out.into_inner().map_err(|e| io_err(e.into_error()))?;
        if self.any {
            file.commit().map_err(io_err)?;
        } else {
            drop(file);
            let _ = std::fs::remove_file(&self.path);
        }
        Ok(())
    }
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

    fn on_disk(path: &Path) -> Vec<f64> {
        read_power_log(path)
            .unwrap()
            .lines
            .iter()
            .map(|l| l.t)
            .collect()
    }

    fn out(l: &PowerLine) -> PowerLineRef<'_> {
        PowerLineRef::from(l)
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
        // Read line by line, the same lines and the same count.
        let mut lines = PowerLogLines::open(&path).unwrap();
        let streamed: Vec<f64> = lines.by_ref().map(|l| l.unwrap().t).collect();
        assert_eq!(streamed, [1.0, 2.0, 3.0]);
        assert_eq!(lines.unreadable, 1);
    }
}
