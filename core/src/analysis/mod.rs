//! Analysis of records on disk. Reads records only, never a live run, so a run can be
//! re-analysed at any time.

mod stats;
mod summary;

pub use stats::Distribution;
pub use summary::{summarize, DatasetSummary, EnergySummary, Summary, SUMMARY_SCHEMA};
