//! A run directory on disk: the one place that reads and writes `manifest.json`,
//! `records.jsonl` and `summary.json`, for the runner, `ipw grade`, `ipw attribute` and analysis.
//!
//! Guarantees:
//! - **One writer.** Every change goes through a [`RunLock`] (an exclusive `flock` on
//!   `<run>/.ipw.lock`, released by the kernel when the process dies, even by `kill -9`); a
//!   second process gets [`StoreError::Locked`] naming the holder.
//! - **Records survive a crash.** Each record is appended as one complete line with one `write`
//!   call, so a killed process leaves at most one cut-off last line; the file is `fdatasync`ed at
//!   most a second after a record is written and when the writer closes, so an OS crash or power
//!   loss loses at most the last second of records.
//! - **Nothing is erased.** A line that does not parse (cut off by a crash, edited by hand, from
//!   a format this version cannot read) is moved aside to `records.rejected.jsonl` with its line
//!   number and the reason, never a reason to truncate what follows it.
//! - **Whole files or old files.** Manifests, summaries and rewritten records are written to a
//!   temporary file, synced, renamed over the old one and the directory synced
//!   ([`super::atomic`]).

use super::atomic::{write_atomic, AtomicFile};
use super::figures::Detail;
use super::{Manifest, Record, RECORD_SCHEMA};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `records.jsonl` is synced to disk at least this often while records are appended.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// A run directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file (manifest, summary) does not parse.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said, with line and column.
        message: String,
    },
    /// Another process holds the run directory.
    #[error("{}: in use by another ipw process ({holder}); wait for it to finish or stop it", dir.display())]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// What the lock file says about its holder (pid, command).
        holder: String,
    },
    /// A record was written by a newer ipw than this one.
    #[error("{}:{line}: record schema {found} is newer than this ipw reads ({RECORD_SCHEMA}); upgrade ipw", path.display())]
    NewerSchema {
        /// `records.jsonl`.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The schema the line carries.
        found: u32,
    },
    /// `records.parquet` could not be read.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// `records.parquet`.
        path: PathBuf,
        /// What went wrong, naming the column.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A line of `records.jsonl` that is not a readable record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RejectedLine {
    /// 1-based line number in `records.jsonl` when it was found.
    pub line: usize,
    /// Why it was rejected.
    pub reason: String,
    /// The line as it was (lossily decoded if it was not UTF-8).
    pub text: String,
    /// When it was moved aside (absent while only reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Where a record's line lies in `records.jsonl` (without its line break), so that the record
/// can be read again on its own ([`read_records_at`]) instead of being held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSpan {
    /// Byte offset of the line's start.
    pub at: u64,
    /// Bytes in the line.
    pub len: usize,
}

/// The records on the lines `lines` point at, each a (file, the file's path for errors, span)
/// of a `records.jsonl`, in the order given and parsed on every core: a caller that indexed
/// runs with [`RunDir::for_each_record_line`] visits their records in any order, a batch at a
/// time, without holding them all.
pub fn read_records_at(lines: &[(&File, &Path, LineSpan)]) -> Result<Vec<Record>, StoreError> {
    use std::os::unix::fs::FileExt;
    let mut text = Vec::with_capacity(lines.iter().map(|l| l.2.len + 1).sum());
    for (file, path, span) in lines {
        let start = text.len();
        text.resize(start + span.len, 0);
        file.read_exact_at(&mut text[start..], span.at)
            .map_err(io_err(path))?;
        text.push(b'\n');
    }
    let mut slices: Vec<&[u8]> = Vec::with_capacity(lines.len());
    let mut from = 0;
    for (_, _, span) in lines {
        slices.push(&text[from..from + span.len + 1]);
        from += span.len + 1;
    }
    let parsed = parse_lines(&slices, Detail::Full).into_iter().flatten();
    lines
        .iter()
        .zip(parsed)
        .map(|((_, path, span), parsed)| {
            let why = match parsed {
                Some(Ok(r)) => return Ok(r),
                Some(Err(LineError::Newer(found))) => {
                    format!("record schema {found}, newer than this ipw reads")
                }
                Some(Err(LineError::Unreadable(why))) => why,
                None => "a blank line".into(),
            };
            Err(StoreError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "the line at byte {} is no longer the record it was (changed while read?): {why}",
                    span.at
                ),
            })
        })
        .collect()
}

/// Every record of a run that reads, and the lines that do not.
#[derive(Debug, Default)]
pub struct RecordsRead {
    /// Readable records, in file order.
    pub records: Vec<Record>,
    /// Lines that are not readable records.
    pub rejected: Vec<RejectedLine>,
}

/// One run directory (one model of an experiment).
#[derive(Debug, Clone)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// The run directory at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `manifest.json`.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.json")
    }

    /// `records.jsonl`.
    pub fn records_path(&self) -> PathBuf {
        self.dir.join("records.jsonl")
    }

    /// `records.parquet`: the records as a Parquet table (`ipw export --format parquet`), read
    /// when `records.jsonl` is absent.
    pub fn records_parquet_path(&self) -> PathBuf {
        self.dir.join("records.parquet")
    }

    /// `power.parquet`: the power log as a Parquet table (`ipw export --format parquet`).
    pub fn power_parquet_path(&self) -> PathBuf {
        self.dir.join("power.parquet")
    }

    /// `records.rejected.jsonl`: unreadable record lines moved aside.
    pub fn rejected_path(&self) -> PathBuf {
        self.dir.join("records.rejected.jsonl")
    }

    /// `records.retried.jsonl`: failed records set aside by `--retry-failed`, as written.
    pub fn retried_path(&self) -> PathBuf {
        self.dir.join("records.retried.jsonl")
    }

    /// `summary.json`.
    pub fn summary_path(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// `power.jsonl`: raw sampler readings.
    pub fn power_log_path(&self) -> PathBuf {
        self.dir.join("power.jsonl")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(".ipw.lock")
    }

    /// Whether this looks like a run directory (it has a manifest).
    pub fn exists(&self) -> bool {
        self.manifest_path().is_file()
    }

    /// Take the directory for this process (creating it if needed), or say who has it.
    pub fn lock(&self) -> Result<RunLock, StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on a descriptor we own; the lock lives as long as `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown process".into());
                return Err(StoreError::Locked {
                    dir: self.dir.clone(),
                    holder,
                });
            }
            return Err(StoreError::Io { path, source: err });
        }
        let command: Vec<String> = std::env::args().collect();
        let note = format!("pid {}: {}", std::process::id(), command.join(" "));
        file.set_len(0).map_err(io_err(&path))?;
        file.write_all(note.as_bytes()).map_err(io_err(&path))?;
        Ok(RunLock {
            _file: file,
            dir: self.dir.clone(),
        })
    }

    /// Read the manifest.
    pub fn read_manifest(&self) -> Result<Manifest, StoreError> {
        read_json(&self.manifest_path())
    }

    /// Write the manifest atomically.
    pub fn write_manifest(&self, _lock: &RunLock, manifest: &Manifest) -> Result<(), StoreError> {
        let path = self.manifest_path();
        write_json_atomic(&path, manifest).map_err(io_err(&path))
    }

    /// Write the summary atomically.
    pub fn write_summary(
        &self,
        _lock: &RunLock,
        summary: &impl Serialize,
    ) -> Result<(), StoreError> {
        let path = self.summary_path();
        write_json_atomic(&path, summary).map_err(io_err(&path))
    }

    /// Every readable record, and the lines that are not (reported, left in place: reading
    /// changes nothing). A record from a newer ipw is an error, not a rejected line.
    ///
    /// A run with no `records.jsonl` but a `records.parquet` (an exported run) is read from
    /// the Parquet file.
    pub fn read_records(&self) -> Result<RecordsRead, StoreError> {
        self.read_records_with(Detail::Full)
    }

    /// [`RunDir::read_records`], keeping as much of each record as `detail` says.
    pub fn read_records_with(&self, detail: Detail) -> Result<RecordsRead, StoreError> {
        let mut read = RecordsRead::default();
        read.rejected = self.for_each_record_with(usize::MAX, detail, |batch| {
            // One batch holds them all: take it rather than copy records one by one.
            if read.records.is_empty() {
                read.records = batch;
            } else {
                read.records.extend(batch);
            }
        })?;
        Ok(read)
    }

    /// Where the records are read from: `records.jsonl`, else `records.parquet` when only that
    /// exists.
    pub fn records_source(&self) -> PathBuf {
        let jsonl = self.records_path();
        let parquet = self.records_parquet_path();
        if !jsonl.exists() && parquet.is_file() {
            parquet
        } else {
            jsonl
        }
    }

    /// Every readable record in file order, handed to `each` in batches of at most `batch`
    /// records (so a run of any size is read in bounded memory); returns the lines that are
    /// not records (reported, left in place). Reads `records.parquet` when there is no
    /// `records.jsonl` (see [`RunDir::records_source`]).
    pub fn for_each_record(
        &self,
        batch: usize,
        each: impl FnMut(Vec<Record>),
    ) -> Result<Vec<RejectedLine>, StoreError> {
        self.for_each_record_with(batch, Detail::Full, each)
    }

    /// [`RunDir::for_each_record`] at a level of `detail` (from a Parquet file, only the columns
    /// that level needs are read).
    pub fn for_each_record_with(
        &self,
        batch: usize,
        detail: Detail,
        mut each: impl FnMut(Vec<Record>),
    ) -> Result<Vec<RejectedLine>, StoreError> {
        let path = self.records_source();
        if path.extension().is_some_and(|e| e == "parquet") {
            super::parquet::read_records_file_with(&path, detail, |records| {
                for chunk in chunks(records, batch) {
                    each(chunk);
                }
                Ok(())
            })
            .map_err(|message| StoreError::Parquet {
                path: path.clone(),
                message,
            })?;
            return Ok(Vec::new());
        }
        let mut pending = Vec::new();
        let (rejected, _) = scan_records_in(
            &path,
            &mut |r, _| {
                pending.push(r);
                if pending.len() >= batch {
                    each(std::mem::take(&mut pending));
                }
            },
            SCAN_PIECE,
            detail,
        )?;
        if !pending.is_empty() {
            each(pending);
        }
        for r in &rejected {
            tracing::warn!(file = %path.display(), line = r.line, "unreadable record: {}", r.reason);
        }
        Ok(rejected)
    }

    /// Every readable record of `records.jsonl` in file order with the span of its line (see
    /// [`read_records_at`]); returns the lines that are not records (reported, left in place).
    /// Only a `records.jsonl` can be read this way: a run that has only `records.parquet` is
    /// an error naming it.
    pub fn for_each_record_line(
        &self,
        mut each: impl FnMut(Record, LineSpan),
    ) -> Result<Vec<RejectedLine>, StoreError> {
        let path = self.records_path();
        if !path.exists() && self.records_parquet_path().is_file() {
            return Err(StoreError::Parse {
                path: self.records_parquet_path(),
                message: "this run has only its Parquet records, and this reads them line by \
                          line from records.jsonl"
                    .into(),
            });
        }
        let (rejected, _) = scan_records_in(&path, &mut each, SCAN_PIECE, Detail::Full)?;
        for r in &rejected {
            tracing::warn!(file = %path.display(), line = r.line, "unreadable record: {}", r.reason);
        }
        Ok(rejected)
    }

    /// Start a new `records.jsonl`; refuses to touch one that exists.
    pub fn create_records(&self, lock: &RunLock) -> Result<RecordsWriter, StoreError> {
        let path = self.records_path();
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok(RecordsWriter::new(path, file, lock))
    }

    /// Set every failed record (one with an `error`) aside to `records.retried.jsonl`, byte for
    /// byte, so its query is measured again; the other lines stay as they are. Lines that do not
    /// read are left for [`RunDir::resume_records`] to deal with. Returns how many were set aside.
    pub fn set_aside_failed(&self, _lock: &RunLock) -> Result<usize, StoreError> {
        let path = self.records_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let (mut keep, mut failed) = (Vec::with_capacity(bytes.len()), Vec::new());
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let is_failed = line.ends_with(b"\n")
                && parse_record(&line[..line.len() - 1]).is_ok_and(|r| r.error.is_some());
            if is_failed {
                failed.extend_from_slice(line);
            } else {
                keep.extend_from_slice(line);
            }
        }
        if failed.is_empty() {
            return Ok(0);
        }
        let n = failed.iter().filter(|b| **b == b'\n').count();
        let aside = self.retried_path();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&aside)
            .map_err(io_err(&aside))?;
        file.write_all(&failed).map_err(io_err(&aside))?;
        file.sync_data().map_err(io_err(&aside))?;
        // Set aside first, then removed: a crash in between duplicates a failed record in
        // the side file at worst, never loses it.
        write_atomic(&path, &keep).map_err(io_err(&path))?;
        Ok(n)
    }

    /// Continue `records.jsonl` after a stop or a crash: every unreadable line (a cut-off last
    /// line, a corrupted one) is moved aside to `records.rejected.jsonl` and the readable ones are
    /// kept in order. Returns the writer, the records on disk, and the lines moved aside.
    pub fn resume_records(
        &self,
        lock: &RunLock,
    ) -> Result<(RecordsWriter, Vec<Record>, Vec<RejectedLine>), StoreError> {
        let path = self.records_path();
        let (mut read, clean_len) = if path.exists() {
            read_all(&path)?
        } else {
            (RecordsRead::default(), None)
        };
        if !read.rejected.is_empty() {
            let now = chrono::Utc::now();
            for r in &mut read.rejected {
                r.moved_at = Some(now);
            }
            self.move_aside(&read.rejected)?;
            // Everything but the rejected lines, byte for byte where possible.
            let only_cut_tail = read.rejected.len() == 1 && clean_len.is_some();
            match clean_len {
                Some(len) if only_cut_tail => truncate_to(&path, len)?,
                // Keep the readable lines as they were written, not re-serialised: a field this
                // ipw does not know (added by a later minor version) must survive.
                _ => drop_lines(&path, &read.rejected)?,
            }
            for r in &read.rejected {
                tracing::warn!(
                    file = %path.display(),
                    line = r.line,
                    "moved an unreadable record to {}: {}",
                    self.rejected_path().display(),
                    r.reason
                );
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        Ok((
            RecordsWriter::new(path, file, lock),
            read.records,
            read.rejected,
        ))
    }

    /// Replace `records.jsonl` with `records` (atomically: never half a file). Unreadable lines
    /// still in the file are moved aside first, so a rewrite never drops one silently.
    pub fn rewrite_records(&self, _lock: &RunLock, records: &[Record]) -> Result<(), StoreError> {
        let path = self.records_path();
        if path.exists() {
            let (read, _) = read_all(&path)?;
            self.set_aside_now(read.rejected)?;
        }
        rewrite_records(&path, records).map_err(io_err(&path))
    }

    /// Rewrite the records a batch at a time, in bounded memory: each batch (at most `batch`
    /// records, in file order) passes through `change`, and what it leaves is written to a new
    /// `records.jsonl` that replaces the old one atomically once every batch is through (a
    /// crash before that leaves the old file whole). Unreadable lines are moved aside, as
    /// [`RunDir::rewrite_records`] does. Returns the records written.
    pub fn rewrite_records_in_batches(
        &self,
        _lock: &RunLock,
        batch: usize,
        mut change: impl FnMut(&mut [Record]),
    ) -> Result<usize, StoreError> {
        let path = self.records_path();
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            AtomicFile::create(&path).map_err(io_err(&path))?,
        );
        let mut written = 0usize;
        let mut failed: Option<std::io::Error> = None;
        let rejected = self.for_each_record(batch.max(1), |mut records| {
            if failed.is_some() {
                return;
            }
            change(&mut records);
            for r in &records {
                let line = serde_json::to_writer(&mut out, r)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n"));
                if let Err(e) = line {
                    failed = Some(e);
                    return;
                }
            }
            written += records.len();
        })?;
        if let Some(e) = failed {
            return Err(io_err(&path)(e));
        }
        self.set_aside_now(rejected)?;
        let file = out
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        file.commit().map_err(io_err(&path))?;
        Ok(written)
    }

    /// Move unreadable lines found by a rewrite aside, stamped with the time they moved.
    fn set_aside_now(&self, rejected: Vec<RejectedLine>) -> Result<(), StoreError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let moved: Vec<RejectedLine> = rejected
            .into_iter()
            .map(|r| RejectedLine {
                moved_at: Some(now),
                ..r
            })
            .collect();
        self.move_aside(&moved)
    }

    fn move_aside(&self, rejected: &[RejectedLine]) -> Result<(), StoreError> {
        let path = self.rejected_path();
        let mut out = Vec::new();
        for r in rejected {
            serde_json::to_writer(&mut out, r).expect("a rejected line serialises");
            out.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(&out).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))
    }
}

/// Exclusive use of a run directory by this process; writing methods of [`RunDir`] take it.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    dir: PathBuf,
}

impl RunLock {
    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Appends records to `records.jsonl`, one complete line per `write`.
pub struct RecordsWriter {
    path: PathBuf,
    file: File,
    synced_at: Instant,
    unsynced: bool,
}

impl RecordsWriter {
    fn new(path: PathBuf, file: File, _lock: &RunLock) -> Self {
        Self {
            path,
            file,
            synced_at: Instant::now(),
            unsynced: false,
        }
    }

    /// Append one record as one line with one `write` call (a process crash never leaves part
    /// of it mixed with another), and sync if the last sync is a second old.
    pub fn append(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(record).expect("a record serialises");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        self.unsynced = true;
        if self.synced_at.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
        }
        Ok(())
    }

    /// Sync what was appended to disk.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.unsynced = false;
        }
        self.synced_at = Instant::now();
        Ok(())
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RecordsWriter {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!("{e}");
        }
    }
}

/// `records` in pieces of at most `n`.
fn chunks(records: Vec<Record>, n: usize) -> Vec<Vec<Record>> {
    if records.len() <= n {
        return vec![records];
    }
    let mut out = Vec::new();
    let mut it = records.into_iter().peekable();
    while it.peek().is_some() {
        out.push(it.by_ref().take(n).collect());
    }
    out
}

/// [`scan_records`] into memory.
fn read_all(path: &Path) -> Result<(RecordsRead, Option<u64>), StoreError> {
    let mut records = Vec::new();
    let (rejected, clean_len) = scan_records(path, &mut |r, _| records.push(r))?;
    Ok((RecordsRead { records, rejected }, clean_len))
}

/// Read `records.jsonl`: each readable record goes to `sink`, in file order; returns the
/// rejected lines and the length of the file without a cut-off last line when that is the only
/// kind of damage (so recovery can truncate instead of rewriting), `None` otherwise.
fn scan_records(
    path: &Path,
    sink: &mut dyn FnMut(Record, LineSpan),
) -> Result<(Vec<RejectedLine>, Option<u64>), StoreError> {
    scan_records_in(path, sink, SCAN_PIECE, Detail::Full)
}

/// [`scan_records`], reading `piece` bytes at a time.
fn scan_records_in(
    path: &Path,
    sink: &mut dyn FnMut(Record, LineSpan),
    piece: usize,
    detail: Detail,
) -> Result<(Vec<RejectedLine>, Option<u64>), StoreError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut read = RecordsRead::default();
    let (mut offset, mut no) = (0u64, 0usize);
    let mut clean_len = None;
    // The file is read in pieces that end at a line break and each piece's lines are parsed
    // on every core: parsing is most of the time analysis spends on a large run, and memory
    // stays at one piece beyond the records.
    let mut buf: Vec<u8> = Vec::with_capacity(piece + piece / 4);
    let mut eof = false;
    while !eof || !buf.is_empty() {
        if !eof {
            let start = buf.len();
            buf.resize(start + piece, 0);
            let mut filled = start;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_err(path)(e)),
                }
            }
            buf.truncate(filled);
        }
        // Whole lines only, unless the file ends (a cut-off last line is judged below).
        let end = if eof {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', &buf) {
                Some(i) => i + 1,
                None => continue, // one line longer than a piece: read more
            }
        };
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut from = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..end]) {
            lines.push(&buf[from..=nl]);
            from = nl + 1;
        }
        if from < end {
            lines.push(&buf[from..end]);
        }
        let parsed = parse_lines(&lines, detail);
        for (line, parsed) in lines.iter().zip(parsed.into_iter().flatten()) {
            let n = line.len();
            no += 1;
            let complete = line.last() == Some(&b'\n');
            let body = if complete { &line[..n - 1] } else { line };
            let reason = match parsed {
                None if complete => {
                    offset += n as u64;
                    continue; // blank line
                }
                _ if !complete => {
                    clean_len = read.rejected.is_empty().then_some(offset);
                    Some("incomplete line (cut off by a crash)".to_string())
                }
                Some(Ok(r)) => {
                    sink(
                        r,
                        LineSpan {
                            at: offset,
                            len: n - 1,
                        },
                    );
                    None
                }
                Some(Err(LineError::Newer(found))) => {
                    return Err(StoreError::NewerSchema {
                        path: path.to_path_buf(),
                        line: no,
                        found,
                    })
                }
                Some(Err(LineError::Unreadable(e))) => Some(e),
                None => unreachable!("blank lines are complete"),
            };
            if let Some(reason) = reason {
                read.rejected.push(RejectedLine {
                    line: no,
                    reason,
                    text: String::from_utf8_lossy(body).into_owned(),
                    moved_at: None,
                });
            }
            offset += n as u64;
        }
        buf.drain(..end);
    }
    if read.rejected.len() != 1 {
        clean_len = None;
    }
    Ok((read.rejected, clean_len))
}

/// Bytes of `records.jsonl` parsed at a time.
const SCAN_PIECE: usize = 16 << 20;

/// Each complete, non-blank line parsed (`None` for the others), in order, on every core: one
/// list per consecutive part of `lines`.
#[allow(clippy::type_complexity)]
fn parse_lines(lines: &[&[u8]], detail: Detail) -> Vec<Vec<Option<Result<Record, LineError>>>> {
    let one = |line: &&[u8]| {
        let body = line.strip_suffix(b"\n")?;
        (!body.iter().all(u8::is_ascii_whitespace)).then(|| match detail {
            Detail::Full => parse_record(body),
            Detail::Figures => parse_figures(body),
        })
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || lines.len() < 256 {
        return vec![lines.iter().map(one).collect()];
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = lines
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .map(|h| h.join().expect("parsing a line does not panic"))
            .collect()
    })
}

/// Why a line is not a record this version can use.
enum LineError {
    /// Written by a newer ipw: refuse rather than guess (or move aside what a newer reader needs).
    Newer(u32),
    /// Not a record.
    Unreadable(String),
}

/// Parse one record line without its texts; a line that is no record goes through
/// [`parse_record`] for the same verdict and message a full read gives.
fn parse_figures(line: &[u8]) -> Result<Record, LineError> {
    match serde_json::from_slice::<super::figures::Figures>(line) {
        Ok(f) => {
            let r = Record::from(f);
            if r.schema > RECORD_SCHEMA {
                return Err(LineError::Newer(r.schema));
            }
            Ok(r)
        }
        Err(_) => parse_record(line),
    }
}

/// Parse one record line.
fn parse_record(line: &[u8]) -> Result<Record, LineError> {
    #[derive(Deserialize)]
    struct SchemaOnly {
        schema: u32,
    }
    match serde_json::from_slice::<Record>(line) {
        // A newer record that happens to parse as this version's is still refused.
        Ok(r) if r.schema > RECORD_SCHEMA => Err(LineError::Newer(r.schema)),
        Ok(r) => Ok(r),
        Err(e) => {
            // On this rare path only: a newer record may not parse as `Record` at all, and
            // a second parse names the field that is wrong.
            if let Ok(s) = serde_json::from_slice::<SchemaOnly>(line) {
                if s.schema > RECORD_SCHEMA {
                    return Err(LineError::Newer(s.schema));
                }
            }
            let de = &mut serde_json::Deserializer::from_slice(line);
            Err(match serde_path_to_error::deserialize::<_, Record>(de) {
                Err(at) if at.path().to_string() != "." => {
                    LineError::Unreadable(format!("not a record: field `{}`: {e}", at.path()))
                }
                _ => LineError::Unreadable(format!("not a record: {e}")),
            })
        }
    }
}

/// Rewrite `path` (atomically) without the lines numbered in `rejected`, every other byte kept.
fn drop_lines(path: &Path, rejected: &[RejectedLine]) -> Result<(), StoreError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let gone: std::collections::HashSet<usize> = rejected.iter().map(|r| r.line).collect();
    let mut out = Vec::with_capacity(bytes.len());
    for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        // A kept line always ends in a newline (only a cut-off last line lacks one, and that
        // one is rejected).
        if !gone.contains(&(i + 1)) {
            out.extend_from_slice(line);
        }
    }
    write_atomic(path, &out).map_err(io_err(path))
}

fn truncate_to(path: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_data().map_err(io_err(path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Write `records` as JSON lines to `path`, atomically.
fn rewrite_records(path: &Path, records: &[Record]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(records.len() * 1024);
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    write_atomic(path, &out)
}

/// Write pretty JSON to `path` atomically (see [`write_atomic`]).
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    write_atomic(path, &text)
}

/// A file-system-safe version of a name: how experiment, run and shard directories are named
/// after experiments, models and hosts.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The run directories under `dir`: `dir` itself when it holds a `manifest.json` (one model's
/// run), else every subdirectory that does (an experiment directory), in name order.
pub fn run_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.join("manifest.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Window;

    fn record(id: &str) -> Record {
        Record {
            schema: RECORD_SCHEMA,
            query_id: id.into(),
            index: 0,
            session: 0,
            dataset: "d".into(),
            subject: None,
            category: None,
            prompt_hash: "h".into(),
            prompt: "p".into(),
            answers: vec!["a".into()],
            choices: Vec::new(),
            model: "m".into(),
            backend: "embedded".into(),
            response: Some("r".into()),
            input_tokens: Some(3),
            output_tokens: Some(4),
            tokens_estimated: false,
            token_source: None,
            cached_prompt_tokens: None,
            cost_usd: None,
            ttft_s: Some(0.1),
            latency_s: 1.0,
            decode_tps: None,
            finish_reason: Some("stop".into()),
            attempts: 1,
            started_at: chrono::Utc::now(),
            window: Window {
                start_s: 1.0,
                end_s: 2.0,
            },
            error: None,
            grade: None,
            grade_history: Vec::new(),
            domain: None,
            domain_history: Vec::new(),
            harness: None,
            energy: None,
        }
    }

    fn line(r: &Record) -> String {
        serde_json::to_string(r).unwrap() + "\n"
    }

    fn ids(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.query_id.as_str()).collect()
    }

    #[test]
    fn a_cut_off_last_line_is_moved_aside_and_cut_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let good = line(&record("a")) + &line(&record("b"));
        std::fs::write(run.records_path(), format!("{good}{{\"schema\":1,\"que")).unwrap();
        let lock = run.lock().unwrap();
        let (mut w, records, rejected) = run.resume_records(&lock).unwrap();
        assert_eq!(ids(&records), ["a", "b"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].line, 3);
        assert!(rejected[0].reason.contains("incomplete"));
        assert_eq!(std::fs::read_to_string(run.records_path()).unwrap(), good);
        w.append(&record("c")).unwrap();
        drop(w);
        let read = run.read_records().unwrap();
        assert_eq!(ids(&read.records), ["a", "b", "c"]);
        let aside = std::fs::read_to_string(run.rejected_path()).unwrap();
        let moved: RejectedLine = serde_json::from_str(aside.trim()).unwrap();
        assert_eq!(moved.text, "{\"schema\":1,\"que");
        assert!(moved.moved_at.is_some());
    }

    #[test]
    fn a_bad_line_in_the_middle_is_moved_aside_and_the_lines_after_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let (a, c) = (line(&record("a")), line(&record("c")));
        let text = a.clone() + "not json\n" + &c;
        std::fs::write(run.records_path(), &text).unwrap();
        // Reading reports without changing anything.
        let read = run.read_records().unwrap();
        assert_eq!(ids(&read.records), ["a", "c"]);
        assert_eq!(read.rejected[0].line, 2);
        assert_eq!(std::fs::read_to_string(run.records_path()).unwrap(), text);
        // Resuming moves it aside.
        let lock = run.lock().unwrap();
        let (_, records, rejected) = run.resume_records(&lock).unwrap();
        assert_eq!(ids(&records), ["a", "c"]);
        assert_eq!(rejected[0].text, "not json");
        assert_eq!(
            std::fs::read_to_string(run.records_path()).unwrap(),
            a + &c,
            "the other lines are kept byte for byte"
        );
        assert!(run.read_records().unwrap().rejected.is_empty());
    }

    #[test]
    fn a_rewrite_moves_unreadable_lines_aside_before_replacing_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::write(run.records_path(), line(&record("a")) + "garbage\n").unwrap();
        let lock = run.lock().unwrap();
        run.rewrite_records(&lock, &[record("a")]).unwrap();
        let aside = std::fs::read_to_string(run.rejected_path()).unwrap();
        assert!(aside.contains("garbage"), "{aside}");
    }

    #[test]
    fn a_rewrite_in_batches_changes_every_record_in_order_and_sets_bad_lines_aside() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let text: String = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|q| line(&record(q)))
            .collect();
        std::fs::write(run.records_path(), text + "garbage\n").unwrap();
        let lock = run.lock().unwrap();
        let mut sizes = Vec::new();
        let written = run
            .rewrite_records_in_batches(&lock, 2, |batch| {
                sizes.push(batch.len());
                for r in batch.iter_mut() {
                    r.model = format!("seen-{}", r.query_id);
                }
            })
            .unwrap();
        assert_eq!((written, sizes), (5, vec![2, 2, 1]));
        let back = run.read_records().unwrap();
        let models: Vec<&str> = back.records.iter().map(|r| r.model.as_str()).collect();
        assert_eq!(models, ["seen-a", "seen-b", "seen-c", "seen-d", "seen-e"]);
        assert!(back.rejected.is_empty());
        let aside = std::fs::read_to_string(run.rejected_path()).unwrap();
        assert!(aside.contains("garbage"), "{aside}");
    }

    #[test]
    fn records_read_in_small_pieces_on_many_threads_equal_one_pass() {
        // Lines that straddle pieces, one longer than a piece, blank lines, a bad line, and a
        // cut-off last line: every way of reading gives the same records, lines and length.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut text = String::new();
        for i in 0..700 {
            let mut r = record(&format!("q{i}"));
            if i == 123 {
                r.prompt = "x".repeat(5_000);
            }
            text += &line(&r);
            if i % 97 == 0 {
                text += "\n  \n";
            }
            if i == 400 {
                text += "{\"schema\": 1, \"not\": \"a record\"}\n";
            }
        }
        text += &line(&record("cut"))[..40];
        std::fs::write(&path, &text).unwrap();
        let read = |piece: usize| {
            let mut got = Vec::new();
            let (rejected, clean) =
                scan_records_in(&path, &mut |r, _| got.push(r), piece, Detail::Full).unwrap();
            let lines: Vec<(usize, String)> = rejected
                .iter()
                .map(|r| (r.line, r.reason.clone()))
                .collect();
            (got, lines, clean)
        };
        let (whole, rejected, clean) = read(text.len() + 1);
        assert_eq!(whole.len(), 700);
        assert_eq!(whole[123].prompt.len(), 5_000);
        assert_eq!(ids(&whole)[699], "q699");
        // 700 records + 8 × 2 blank lines before the bad one (after q400) and the cut one.
        let bad_line = 401 + 2 * 5 + 1;
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        assert_eq!(rejected[0].0, bad_line, "{rejected:?}");
        assert!(rejected[1].1.contains("incomplete"), "{rejected:?}");
        assert_eq!(rejected[1].0, 700 + 2 * 8 + 2);
        assert_eq!(clean, None, "two kinds of damage: no truncation offer");
        for piece in [1_000, 4_096, 70_000] {
            let (got, rej, c) = read(piece);
            assert_eq!(ids(&got), ids(&whole), "piece {piece}");
            assert_eq!(got, whole, "piece {piece}");
            assert_eq!((rej, c), (rejected.clone(), clean), "piece {piece}");
        }
        // Only a cut-off last line: its offset is where the good bytes end.
        let good = text
            .lines()
            .take(10)
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        std::fs::write(&path, good.clone() + "{\"schema").unwrap();
        for piece in [7, 64, 1 << 20] {
            let (_, rej, c) = read(piece);
            assert_eq!(rej.len(), 1);
            assert_eq!(c, Some(good.len() as u64), "piece {piece}");
        }
    }

    #[test]
    fn a_newer_schema_is_an_error_that_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut newer = record("b");
        newer.schema = RECORD_SCHEMA + 1;
        std::fs::write(run.records_path(), line(&record("a")) + &line(&newer)).unwrap();
        let err = run.read_records().unwrap_err().to_string();
        assert!(err.ends_with(&format!(
            "records.jsonl:2: record schema {} is newer than this ipw reads ({RECORD_SCHEMA}); upgrade ipw",
            RECORD_SCHEMA + 1
        )), "{err}");
        // Even when the newer line does not parse as this version's record at all, and resuming
        // neither moves it aside nor touches the file.
        let text = line(&record("a")) + "{\"schema\": 99, \"new\": true}\n";
        std::fs::write(run.records_path(), &text).unwrap();
        let lock = run.lock().unwrap();
        assert!(matches!(
            run.resume_records(&lock),
            Err(StoreError::NewerSchema {
                line: 2,
                found: 99,
                ..
            })
        ));
        assert_eq!(std::fs::read_to_string(run.records_path()).unwrap(), text);
    }

    #[test]
    fn a_run_directory_has_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let first = run.lock().unwrap();
        match run.lock() {
            Err(StoreError::Locked { holder, .. }) => {
                assert!(
                    holder.starts_with(&format!("pid {}:", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("second lock taken: {other:?}"),
        }
        drop(first);
        run.lock().expect("free once the holder lets go");
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
    }
}
