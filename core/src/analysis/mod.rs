//! Analysis of records on disk. Reads records only, never a live run, so a run can be
//! re-analysed at any time.

pub(crate) mod bootstrap;
pub(crate) mod quality;
pub(crate) mod stats;
mod summary;

pub use bootstrap::{estimate_text, Estimate};
pub use quality::{
    quality_grouped, quality_summary, EnergyRows, EnergyRowsBuilder, GroupedQuality, Quality,
    QualitySummary,
};

pub use stats::Distribution;
pub use summary::{summarize, ChannelSums, DatasetSummary, EnergySummary, Summary, SUMMARY_SCHEMA};
