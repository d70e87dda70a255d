//! The on-disk format of a run, and the only code that reads and writes it.
//!
//! A leaf: nothing here imports from the rest of ipw-core. The runner writes through it,
//! `ipw grade` and `ipw attribute` rewrite through it, and analysis reads through it, so every
//! one of them agrees on what a run directory holds:
//!
//! | file | type |
//! |---|---|
//! | `manifest.json` | [`Manifest`] (with [`Session`]s, [`SamplerInfo`], [`Baseline`], [`GraderInfo`]) |
//! | `records.jsonl` | one [`Record`] per line (with its [`GradeRecord`] and [`QueryEnergy`]) |
//! | `records.parquet` | the records as one flat table ([`parquet`]), read when `records.jsonl` is absent |
//! | `records.rejected.jsonl` | [`RejectedLine`]s: unreadable lines moved aside, never erased |
//! | `power.jsonl` | one [`PowerLine`] per sampler reading, appended through [`PowerLog`] while sampling |
//! | `summary.json` | written by analysis through [`RunDir::write_summary`] |
//!
//! Times in records and power readings are on the run clock ([`clock`]).

mod atomic;
pub mod clock;
mod domain;
mod energy;
mod figures;
mod grade;
mod manifest;
pub mod parquet;
mod power_log;
mod record;
mod store;

pub use atomic::{write_atomic, write_atomic_private, AtomicFile};
pub use domain::DomainRecord;
pub use energy::{ChannelEnergy, Flag, PhaseEnergy, QueryEnergy};
pub use figures::Detail;
pub use grade::{GradeRecord, GraderInfo, PAIRWISE_GRADER};
pub use manifest::{
    Baseline, DatasetInfo, DatasetShard, HostInfo, Manifest, MergedShard, ModelFile, OtherLoad,
    RecordedModel, RecorderStats, SamplerInfo, ServerInfo, Session, SettleRecord, ShardInfo,
    SplitMethod, MANIFEST_SCHEMA,
};
pub use power_log::{
    read_power_log, read_power_log_tail, MergedPowerLog, PowerLine, PowerLineRef, PowerLog,
    PowerLogLines, PowerLogRead, ReadingTap, POWER_LOG_FLUSH, POWER_LOG_SYNC,
};
pub use record::{decode_tps, HarnessCpu, QueryError, Record, TokenSource, Window, RECORD_SCHEMA};
pub use store::{
    read_records_at, run_dirs, sanitize, write_json_atomic, LineSpan, RecordsRead, RecordsWriter,
    RejectedLine, RunDir, RunLock, StoreError,
};
