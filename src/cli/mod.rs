//! Argument parsing and the subcommands.

mod attribute;
mod bench;
mod doctor;
mod grade;
mod list;
mod profile;
mod progress;
mod table;
mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// ipw measures intelligence per watt: how much correct work a language model does per joule.
///
/// Start with `ipw profile examples/quickstart.toml`.
#[derive(Debug, Parser)]
#[command(name = "ipw", version, about, long_about)]
pub struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment: every model answers every dataset query; writes one run directory
    /// per model with manifest.json, records.jsonl and summary.json.
    Profile {
        /// The experiment TOML.
        experiment: PathBuf,
        /// Experiment output directory (default: <output.dir>/<name>-<timestamp>).
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue an interrupted experiment directory: queries already recorded are not redone.
        #[arg(long, value_name = "EXPERIMENT_DIR")]
        resume: Option<PathBuf>,
        /// With --resume: measure the failed queries again (their old records are kept in
        /// records.retried.jsonl).
        #[arg(long, requires = "resume")]
        retry_failed: bool,
        /// Refuse to start while other processes keep the machine busy (more than a quarter of
        /// a core), naming them.
        #[arg(long)]
        require_idle: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-grade a finished run's saved responses without running the model again: the new
    /// grade is added beside the old ones (`grade_history`) and summary.json is refreshed.
    Grade {
        /// A run directory (one model) or an experiment directory (every model in it).
        run_dir: PathBuf,
        /// A built-in grader (exact, choice, numeric, regex, includes, f1, judge) or a .wasm path.
        #[arg(long)]
        grader: String,
        /// Grader parameters as a JSON object, e.g. '{"rel_tol": 0.01}'.
        #[arg(long)]
        params: Option<String>,
    },
    /// Recompute every record's energy from the run's power log and manifest (after a crash,
    /// or after an ipw upgrade that fixes attribution) and refresh summary.json.
    Attribute {
        /// A run directory (one model) or an experiment directory (every model in it).
        run_dir: PathBuf,
        /// Add an external meter's log first (CSV or JSONL with Unix-time stamps, read by the
        /// `replay` sampler), placed by each session's recorded clock origin.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// More `replay` settings for --trace as JSON, e.g. '{"kind": "energy", "time_field": "ts"}'
        /// (default channel name: `wall`).
        #[arg(long, value_name = "JSON", requires = "trace")]
        trace_config: Option<String>,
    },
    /// Check an experiment without running it: parse, resolve paths, load datasets.
    Validate {
        /// The experiment TOML.
        experiment: PathBuf,
    },
    /// Show what this machine can measure: every sampler plugin found, opened with default
    /// settings, with its channels, kinds and update periods (or why it cannot work here).
    Doctor {
        /// Also search these plugin directories.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// List backends, built-in datasets and the plugins found on the search path.
    List {
        /// Also search these plugin directories.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
}

/// Route `RUST_LOG` / `-v` to stderr through tracing.
pub fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,llama_cpp_2=off",
        1 => "info,llama_cpp_2=warn",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Run the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Profile {
            experiment,
            out,
            resume,
            retry_failed,
            require_idle,
            quiet,
        } => profile::run(&experiment, out, resume, retry_failed, require_idle, quiet),
        Command::Grade {
            run_dir,
            grader,
            params,
        } => grade::run(&run_dir, grader, params),
        Command::Attribute {
            run_dir,
            trace,
            trace_config,
        } => attribute::run(&run_dir, trace, trace_config),
        Command::Validate { experiment } => validate::run(&experiment),
        Command::List { plugin_dirs } => list::run(&plugin_dirs),
        Command::Doctor { plugin_dirs } => doctor::run(&plugin_dirs),
        Command::Bench { what } => bench::run(what),
    }
}
