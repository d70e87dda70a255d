//! ipw-core: the engine behind the `ipw` CLI.
//!
//! Data flows one way: an experiment TOML ([`config`]) becomes a plan of queries
//! ([`dataset`]), the [`run`] module sends them to a model through a [`backend`] and appends one
//! [`records::Record`] per query to disk, and [`analysis`] turns records on disk into summaries.
//! Nothing in analysis reaches back into a live run.
//!
//! Layers, each importing only from itself and the layers below it:
//! - leaves: [`records`] (the on-disk format of a run, and the only code that reads and writes
//!   run directories) and [`config`] (the experiment file);
//! - inputs and readings: [`dataset`], [`power`], [`backend`], [`sandbox`] (the WASM host
//!   every plugin kind runs in), [`grade`];
//! - runs read back: [`analysis`] (one run's summary), [`joined`] (runs joined by query id: the
//!   query x model table), [`identity`] (what makes two runs the same measurement);
//! - the engines of the commands: [`run`] (`ipw profile`), [`scaleout`] (`--shard` and
//!   `ipw merge`), [`routing`], [`study`], [`export`], [`report`].

pub mod analysis;
pub mod backend;
pub mod classify;
pub mod config;
pub mod dataset;
pub mod export;
pub mod footprint;
pub mod grade;
pub mod host;
pub mod identity;
pub mod import;
pub mod joined;
pub mod live;
pub mod load;
pub mod plugins;
pub mod power;
pub mod records;
pub mod report;
pub mod rng;
pub mod routing;
pub mod run;
pub mod sandbox;
pub mod scaleout;
pub mod selfcpu;
pub mod server;
pub mod study;
pub mod watch;

/// The version of ipw that produced a run, stamped into every manifest.
pub const IPW_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit ipw was built from (`unknown` outside a git checkout), with `-dirty` when the
/// working tree had uncommitted changes at build time.
pub const GIT_COMMIT: &str = env!("IPW_GIT_COMMIT");
