//! `ipw export`: runs as files other tools read. One format for now, Parquet ([`parquet`]);
//! and the CSV tables the study commands write beside their JSON ([`tables`]).
//!
//! Each run is written on its own, in its own directory (the run's own, or `<out>/<run name>/`
//! beside a copy of its `manifest.json`), so that an exported tree is itself a set of run
//! directories that `ipw compare`, `coverage`, `route` and `trend` read.

pub mod parquet;
pub mod tables;

use std::path::PathBuf;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file system call failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A run directory could not be read.
    #[error(transparent)]
    Store(#[from] crate::records::StoreError),
    /// A Parquet file could not be written.
    #[error("{}: {message}", path.display())]
    Parquet {
        /// The file (or run directory).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No run directory among the paths.
    #[error("no run directory (one with a manifest.json) in {0}")]
    NoRuns(String),
    /// Two runs would be written to the same place.
    #[error("two runs are named `{name}` ({} and {}): export them to different --out directories", first.display(), second.display())]
    SameName {
        /// The run directory name.
        name: String,
        /// The first run.
        first: PathBuf,
        /// The second run.
        second: PathBuf,
    },
}
