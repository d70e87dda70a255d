//! `records.jsonl`: appended one complete line per query with a single write, so a crash
//! (even `kill -9`) leaves at most one cut-off last line. Opening for resume drops such a line
//! and reports which queries are already done.

use super::record::Record;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Append-only writer of records.
pub struct RecordsFile {
    path: PathBuf,
    file: File,
}

/// What was already on disk when a run was resumed.
#[derive(Debug, Default)]
pub struct Existing {
    /// Query ids with a complete record.
    pub done: HashSet<String>,
    /// Bytes of a cut-off last line that were removed.
    pub truncated_bytes: u64,
}

impl RecordsFile {
    /// Create a fresh file; refuses to overwrite records.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Open an existing file for appending, after removing a cut-off last line.
    ///
    /// A record counts only if its line is complete (ends in a newline) and parses; the first
    /// line that does not is where a crash cut the file, and it and anything after it is removed
    /// so those queries are redone.
    pub fn resume(path: &Path) -> std::io::Result<(Self, Existing)> {
        let mut existing = Existing::default();
        if path.exists() {
            let mut reader = BufReader::new(File::open(path)?);
            let mut good_len = 0u64;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                match serde_json::from_slice::<Record>(&line) {
                    Ok(r) => {
                        existing.done.insert(r.query_id);
                        good_len += n as u64;
                    }
                    Err(_) => break,
                }
            }
            let len = std::fs::metadata(path)?.len();
            if len > good_len {
                existing.truncated_bytes = len - good_len;
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(good_len)?;
            }
        }
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok((
            Self {
                path: path.to_path_buf(),
                file,
            },
            existing,
        ))
    }

    /// Append one record as one line with one `write` call, then flush it to the OS.
    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()
    }

    /// Where the records are.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Read every complete record of a file (a cut-off last line is ignored).
pub fn read_records(path: &Path) -> std::io::Result<Vec<Record>> {
    let reader = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::warn!(file = %path.display(), line = i + 1, "skipping unreadable record: {e}");
            }
        }
    }
    Ok(out)
}
