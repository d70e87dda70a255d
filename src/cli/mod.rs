//! Argument parsing and the subcommands.

mod attribute;
mod bench;
mod bench_embedded;
mod classify;
mod compute;
mod doctor;
mod export;
mod grade;
mod import;
mod init;
mod list;
mod merge;
mod profile;
mod progress;
mod report;
mod route;
mod sampler;
mod study;
mod table;
mod validate;
mod watch;

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

/// What `ipw route` does besides routing.
#[derive(Debug, Subcommand)]
enum RouteAction {
    /// Learn from runs which queries a cheaper model answers as well as the reference, from
    /// what a router may see (prompt text, dataset, subject, prompt tokens), and write the
    /// router as one .wasm that `ipw route --router` runs in the sandbox. Queries held out of
    /// training (by a hash of the query id) are routed after training against random, a
    /// prompt-length threshold and the oracle.
    Train {
        /// Run directories (one model each) or experiment directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The model to route away from.
        #[arg(long)]
        reference: String,
        /// What a cheaper model is cheaper in: energy, compute, cost or carbon (with
        /// --footprint). Default: energy, else the first with figures.
        #[arg(long)]
        objective: Option<String>,
        /// Share of queries held out of training and routed after it to test the router.
        #[arg(long, default_value_t = 0.2)]
        holdout: f64,
        /// Seed of the split and the training order: the same runs and seed give the same bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Hash buckets, log2 (weights per cheaper model).
        #[arg(long, default_value_t = 14)]
        dim_log2: u32,
        /// Passes over the training queries (default: enough for two million updates, one to
        /// five).
        #[arg(long)]
        epochs: Option<u32>,
        /// Nearest neighbours instead of a logistic regression: the N training queries most
        /// like a query (by the same features) vote on whether a cheaper model will do.
        #[arg(long, value_name = "N")]
        neighbours: Option<u32>,
        /// Training queries the neighbours router keeps (a seeded sample).
        #[arg(long, default_value_t = 4096, requires = "neighbours")]
        prototypes: usize,
        /// Model metadata overriding the runs' own (as `ipw route --meta`).
        #[arg(long, value_name = "FILE")]
        meta: Option<PathBuf>,
        /// A footprint file, for --objective carbon (as `ipw route --footprint`).
        #[arg(long, value_name = "FILE")]
        footprint: Option<PathBuf>,
        /// The router to write.
        #[arg(short, long, value_name = "ROUTER.wasm")]
        out: PathBuf,
    },
}

// One value per process, parsed once: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// With --resume (or --shard, on a shard that exists): measure the failed queries again
        /// (their old records are kept in records.retried.jsonl).
        #[arg(long)]
        retry_failed: bool,
        /// Refuse to start while other processes keep the machine busy (more than a quarter of
        /// a core), naming them.
        #[arg(long)]
        require_idle: bool,
        /// Measure one shard of the plan: `i/n` (0 <= i < n) or `auto` (SLURM_ARRAY_TASK_ID, or
        /// JOB_COMPLETION_INDEX with IPW_SHARD_COUNT). Writes <out>/shards/<i>-of-<n>@<host>/
        /// and continues it when it exists; join the shards with `ipw merge <out>`.
        #[arg(long, value_name = "i/n|auto")]
        shard: Option<ipw_core::scaleout::ShardArg>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Serve live metrics (Prometheus text format) on http://ADDR/metrics while the run
        /// lasts, e.g. 127.0.0.1:9464 (port 0 picks a free one; the address is printed).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// With --metrics: keep serving the final values this many seconds after the run, so
        /// the last scrape sees them.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 0.0,
            requires = "metrics"
        )]
        metrics_linger: f64,
    },
    /// Join the shards of a split experiment (`ipw profile --shard`) into one run per model and
    /// accelerator: checks they belong to one experiment and plan, and that every planned query
    /// was measured exactly once (naming what is missing or doubled). Safe to run again.
    Merge {
        /// The experiment directory the shards were written into (`--out` of the shards).
        dir: PathBuf,
        /// Merge even when queries are missing or doubled (a doubled query keeps its first
        /// record); the merged runs say `partial`.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Re-grade a finished run's saved responses without running the model again: the new
    /// grade is added beside the old ones (`grade_history`) and summary.json is refreshed.
    Grade {
        /// A run directory (one model) or an experiment directory (every model in it).
        run_dir: PathBuf,
        /// A built-in grader (exact, choice, numeric, regex, includes, f1, judge, pairwise) or a
        /// .wasm path.
        #[arg(long)]
        grader: String,
        /// Grader parameters as a JSON object, e.g. '{"rel_tol": 0.01}'.
        #[arg(long)]
        params: Option<String>,
        /// The reference run (one model): each response is graded against the reference model's
        /// response to the same query, joined by query id. Required by `pairwise`.
        #[arg(long, value_name = "REFRUN")]
        against: Option<PathBuf>,
        /// A TOML file with a [grading.judge] table (an experiment file works): the judge model
        /// to ask when the run's manifest names none, or another one. Its [grading] fields
        /// replace the run's.
        #[arg(long, value_name = "FILE")]
        judge_config: Option<PathBuf>,
    },
    /// Place every query of finished runs in a domain: one label of a taxonomy (default: the
    /// 22 SOC 2018 major groups) from a sandboxed classifier. The label goes beside each
    /// record's grade (`domain`, earlier ones kept in `domain_history`); measured fields are
    /// never touched. Then `--by domain` in compare, coverage and report.
    Classify {
        /// Run directories (one model) or experiment directories (every model in them).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// A built-in classifier (keywords, mapping, judge) or a .wasm path.
        #[arg(long, value_name = "SPEC")]
        classifier: String,
        /// Classifier parameters as a JSON object, e.g. '{"keywords": {"23-0000": ["court"]}}'.
        #[arg(long)]
        params: Option<String>,
        /// A shipped taxonomy (soc-2018) or a .toml / .csv file of labels (code, title,
        /// description).
        #[arg(long, value_name = "NAME|FILE", default_value = "soc-2018")]
        taxonomy: String,
        /// A CSV of hand labels (`query_id`, `label`): print how well the classifier agrees
        /// (accuracy, per-label precision and recall, the confusion matrix).
        #[arg(long, value_name = "LABELS.csv")]
        against: Option<PathBuf>,
        /// A TOML file with a [grading.judge] table (an experiment file works): the judge model
        /// the `judge` classifier asks when a run's manifest names none. Its [grading] fields
        /// (limits) replace the run's.
        #[arg(long, value_name = "FILE")]
        judge_config: Option<PathBuf>,
        /// Queries per sandboxed call (default 256; 4 for `judge`).
        #[arg(long)]
        batch: Option<usize>,
    },
    /// Route queries between models: join runs of several models on query id and report, per
    /// router, accuracy kept and energy, compute and cost saved against the reference model.
    /// `ipw route train` learns a router from runs and writes it as one .wasm.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Route {
        #[command(subcommand)]
        action: Option<RouteAction>,
        /// Run directories (one model each) or experiment directories (every model in them).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The model every saving is measured against (e.g. the large or cloud model).
        #[arg(long, required = true)]
        reference: Option<String>,
        /// A router (repeatable): always:<model>, random[:<share>], oracle[:energy|compute|cost],
        /// p-accurate:<p>[:reference|random][:energy|compute|cost],
        /// threshold:prompt_tokens|prompt_chars:<n>:<model>,
        /// threshold:subject:<a>|<b>:<model>,
        /// cascade:<model>[:<min score>]. Default: oracle, p-accurate:0.8, random:0.5.
        #[arg(long = "router", value_name = "SPEC")]
        routers: Vec<String>,
        /// What oracle-based routers minimise unless their spec says: energy, compute, cost or
        /// carbon (with --footprint). Default: energy, or where no run has energy the first of
        /// compute and cost that has figures. An objective no run has figures for is refused.
        #[arg(long)]
        objective: Option<String>,
        /// Every router's figures also per dataset, subject, category or domain (the label
        /// `ipw classify` gave each query; unlabelled queries are a group of their own). For
        /// compatibility `--by energy|compute|cost` still sets the objective.
        #[arg(long)]
        by: Option<String>,
        /// The weak model for APGR/CPT (default: the least accurate); the strong one is the
        /// reference.
        #[arg(long)]
        weak: Option<String>,
        /// A TOML file of model metadata overriding the runs' own: `[models.NAME]` tables with
        /// the fields of `[models.meta]` (params_b, price_in_per_mtok, energy_model, ...).
        #[arg(long, value_name = "FILE")]
        meta: Option<PathBuf>,
        /// Seed for random routers and intervals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// An arrival trace (CSV: Timestamp, Request tokens, Response tokens, as BurstGPT) to
        /// replay through every router: the reference's load taken off, per hour and at peak.
        #[arg(long, value_name = "FILE")]
        workload: Option<PathBuf>,
        /// A footprint file (as for `compare --footprint`; `[accelerators.NAME]` sections give
        /// runs on each accelerator their own grid): every router's grams CO2e per query and
        /// its carbon saving, and `--objective carbon`.
        #[arg(long, value_name = "FILE")]
        footprint: Option<PathBuf>,
        /// Route only the queries a trained router (`ipw route train`) held out of its
        /// training: the figures that test it.
        #[arg(long, value_name = "ROUTER.wasm")]
        held_out_of: Option<PathBuf>,
        /// Where route.json and route.csv go (default: the first run's `analysis/`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Compare runs (models x accelerators): accuracy, APJ, APW, J/query and latency per group
    /// with 95% intervals, and paired differences against a baseline on shared queries.
    Compare {
        /// Run directories or experiment directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Group by dataset, subject, category or domain (`ipw classify`; queries without a
        /// label are the `unlabelled` group).
        #[arg(long, default_value = "dataset")]
        by: String,
        /// The run paired differences are taken against (default: the first).
        #[arg(long)]
        baseline: Option<String>,
        /// Seed for the intervals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where compare.json and compare.csv go (default: the first run's `analysis/`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// A footprint file (TOML: region or grid intensity, PUE, electricity price, hardware
        /// amortisation): adds g CO2e, litres of water and cost per query to compare.json
        /// (`footprint`, with every input named) and writes footprint.csv.
        #[arg(long, value_name = "FILE")]
        footprint: Option<PathBuf>,
    },
    /// Summarise runs into study parts, one Parquet file per run (`<run>.part.parquet`): the
    /// run's own figures per grouping and one row per query id. `ipw compare` and `ipw
    /// coverage` given the parts (files or their folder) give what they give on the runs; the
    /// heavy reading happens here, once per run, wherever the run lies (a Slurm array task per
    /// run: examples/slurm/ipw-partial.sbatch).
    Partial {
        /// Run directories or experiment directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The folder the parts go to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Seed for the intervals (compare must be given the same).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print a JSON Schema of the experiment file (for editors: Taplo / Even Better TOML read
    /// it from a `#:schema ./ipw.schema.json` line at the top of the file).
    Schema,
    /// Trends: APW (or APJ) per model x accelerator against release dates, the best available
    /// at each date, a log-linear fit, and the change between two dates split into a model and
    /// a hardware factor; the same model on local vs cloud accelerators.
    Trend {
        /// Run directories or experiment directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// `apw` (intelligence per watt) or `apj`.
        #[arg(long, default_value = "apw")]
        metric: String,
        /// Metadata overriding the runs' own: `[models.NAME]` (release_date, accelerator, ...)
        /// and `[accelerators.NAME]` (release_date, class = "local" | "cloud").
        #[arg(long, value_name = "FILE")]
        meta: Option<PathBuf>,
        /// Start date of the change (default: the first model release date).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// End date of the change (default: the last).
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: Option<String>,
        /// Seed for the intervals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where trend.json and trend.csv go (default: the first run's `analysis/`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Coverage: the share of queries each model answers at least as well as the reference,
    /// best-of-local, per group and over release dates.
    Coverage {
        /// Run directories or experiment directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The reference model.
        #[arg(long)]
        reference: String,
        /// Covered when score >= reference score - tolerance.
        #[arg(long, default_value_t = 0.0)]
        tolerance: f64,
        /// Group by dataset, subject, category or domain (`ipw classify`; queries without a
        /// label are the `unlabelled` group).
        #[arg(long, default_value = "dataset")]
        by: String,
        /// Model metadata overriding the runs' own (release dates): `[models.NAME]` tables.
        #[arg(long, value_name = "FILE")]
        meta: Option<PathBuf>,
        /// Seed for the intervals.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where coverage.json and coverage.csv go (default: the first run's `analysis/`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// One self-contained HTML page over runs: summary with intervals, accuracy vs energy with
    /// the Pareto frontier, APJ/APW, coverage, a power trace, the energy distribution and
    /// routing results, each figure with its provenance; JSON and CSV with the numbers beside it.
    Report(report::Args),
    /// Watch a run as it happens: queries/s, running accuracy and APJ with intervals, power per
    /// channel as a sparkline, the last errors. Reads the run directory only (never its lock),
    /// so it also watches a run elsewhere through a shared file system.
    Watch(watch::Args),
    /// Export runs as Parquet: per run, `records.parquet` (one flat row per record, a column
    /// per field and per energy channel) and `power.parquet` (the raw power log). See
    /// "Exporting to Parquet" in the README for the columns. Analysis commands read an exported
    /// run (a `records.parquet` without `records.jsonl`) like any other.
    Export {
        /// Run directories or experiment directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The format.
        #[arg(long, value_enum, default_value = "parquet")]
        format: export::Format,
        /// Write `<DIR>/<run name>/` (with a copy of each run's manifest.json, so DIR is an
        /// experiment directory analysis reads) instead of into each run directory.
        #[arg(long, short, value_name = "DIR")]
        out: Option<PathBuf>,
        /// A footprint file (as for `ipw compare --footprint`): also `footprint.parquet` per
        /// run, a row per record (in the order of records.parquet) with its grams CO2e, litres
        /// of water and costs, the inputs in the schema's metadata (`ipw.footprint`).
        #[arg(long, value_name = "FILE")]
        footprint: Option<PathBuf>,
    },
    /// Import a per-query table (CSV with a header, or JSONL) as run directories, one per
    /// model, to grade, route and report like measured runs. See "Importing a table" in the
    /// README for the columns.
    Import {
        /// The table: `.csv`, or `.jsonl` / `.json` (one object per line).
        table: PathBuf,
        /// Where the run directories go (one per model).
        #[arg(long)]
        out: PathBuf,
        /// Rename a field's column (repeatable), e.g. `--map query_id=id --map score=correct`.
        #[arg(long = "map", value_name = "FIELD=COLUMN")]
        map: Vec<String>,
        /// Write each run's records straight to `records.parquet` (as `ipw export --format
        /// parquet` would), with no `records.jsonl`: for tables too large to keep twice.
        #[arg(long)]
        parquet: bool,
        /// A wide table (one row per prompt, columns per model, as RouteLLM publishes): a TOML
        /// mapping its columns to models and fields (`[models.NAME] score = "COLUMN"`,
        /// `[shared] prompt = "prompt"`, `ignore = [...]`).
        #[arg(long, value_name = "FILE", conflicts_with = "map")]
        wide: Option<PathBuf>,
        /// A wide table's model and its score column (repeatable): `--model gpt-4=gpt-4-1106-preview`.
        #[arg(long = "model", value_name = "NAME=COLUMN", conflicts_with = "wide")]
        models: Vec<String>,
        /// A wide table's column to leave out (repeatable).
        #[arg(long = "ignore", value_name = "COLUMN", requires = "models")]
        ignore: Vec<String>,
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
    /// Write a commented starter experiment (it validates as written).
    Init {
        /// Where to write it, e.g. `my-exp.toml`; an existing file is never overwritten.
        #[arg(default_value = "experiment.toml")]
        path: PathBuf,
        /// The experiment's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a shell completion script: `ipw completions bash > /etc/bash_completion.d/ipw`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Check an experiment without running it: parse, resolve paths, load datasets.
    Validate {
        /// The experiment TOML.
        experiment: PathBuf,
    },
    /// Show what this machine can measure: every sampler plugin found, opened with default
    /// settings, with its channels, kinds and update periods (or why it cannot work here).
    ///
    /// With --plugin, run that one library (a path or a name) through the conformance check
    /// instead, as `ipw sampler check` does.
    Doctor {
        /// Also search these plugin directories.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        /// Check this sampler library (a path, or a plugin name) against the sampler contract.
        #[arg(long, value_name = "PATH_OR_NAME")]
        plugin: Option<String>,
        /// With --plugin: the sampler's settings as JSON.
        #[arg(long, default_value = "{}", requires = "plugin")]
        config: String,
        /// With --plugin: seconds of reading.
        #[arg(long, default_value_t = 3.0, requires = "plugin")]
        seconds: f64,
    },
    /// Sampler plugin authoring: check a library against the contract, or start a new one.
    Sampler {
        #[command(subcommand)]
        what: sampler::SamplerCommand,
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
            shard,
            quiet,
            metrics,
            metrics_linger,
        } => profile::run(
            &experiment,
            profile::Options {
                out,
                resume,
                retry_failed,
                require_idle,
                shard,
                quiet,
                metrics,
                metrics_linger,
            },
        ),
        Command::Merge { dir, allow_partial } => merge::run(&dir, allow_partial),
        Command::Grade {
            run_dir,
            grader,
            params,
            against,
            judge_config,
        } => grade::run(&run_dir, grader, params, against, judge_config),
        Command::Classify {
            runs,
            classifier,
            params,
            taxonomy,
            against,
            judge_config,
            batch,
        } => classify::run(classify::Args {
            runs,
            classifier,
            params,
            taxonomy,
            against,
            judge_config,
            batch,
        }),
        Command::Attribute {
            run_dir,
            trace,
            trace_config,
        } => attribute::run(&run_dir, trace, trace_config),
        Command::Route {
            action:
                Some(RouteAction::Train {
                    runs,
                    reference,
                    objective,
                    holdout,
                    seed,
                    dim_log2,
                    epochs,
                    neighbours,
                    prototypes,
                    meta,
                    footprint,
                    out,
                }),
            ..
        } => route::train(route::TrainArgs {
            runs,
            reference,
            objective,
            holdout,
            seed,
            dim_log2,
            epochs,
            neighbours,
            prototypes,
            meta,
            footprint,
            out,
        }),
        Command::Route {
            action: None,
            runs,
            reference,
            routers,
            objective,
            by,
            weak,
            meta,
            seed,
            workload,
            footprint,
            held_out_of,
            out,
        } => route::run(route::Args {
            runs,
            reference: reference.unwrap_or_default(),
            routers,
            objective,
            by,
            weak,
            meta,
            seed,
            workload,
            footprint,
            held_out_of,
            out,
        }),
        Command::Compare {
            runs,
            by,
            baseline,
            seed,
            out,
            footprint,
        } => study::compare(
            &runs,
            &by,
            baseline.as_deref(),
            seed,
            out,
            footprint.as_deref(),
        ),
        Command::Partial { runs, out, seed } => study::partial(&runs, &out, seed),
        Command::Schema => {
            use std::io::Write;
            let text = serde_json::to_string_pretty(&ipw_core::config::experiment_schema())?;
            // A closed pipe (`ipw schema | head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Trend {
            runs,
            metric,
            meta,
            from,
            to,
            seed,
            out,
        } => study::trend(
            &runs,
            &metric,
            meta,
            from.as_deref(),
            to.as_deref(),
            seed,
            out,
        ),
        Command::Coverage {
            runs,
            reference,
            tolerance,
            by,
            meta,
            seed,
            out,
        } => study::coverage(&runs, &reference, tolerance, &by, meta, seed, out),
        Command::Report(args) => report::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Export {
            runs,
            format,
            out,
            footprint,
        } => export::run(&runs, format, out, footprint),
        Command::Import {
            table,
            out,
            map,
            parquet,
            wide,
            models,
            ignore,
        } => import::run(import::Args {
            table,
            out,
            map,
            parquet,
            wide,
            models,
            ignore,
        }),
        Command::Init { path, name } => init::init(&path, name),
        Command::Completions { shell } => init::completions(shell),
        Command::Validate { experiment } => validate::run(&experiment),
        Command::List { plugin_dirs } => list::run(&plugin_dirs),
        Command::Doctor {
            plugin_dirs,
            plugin: Some(target),
            config,
            seconds,
        } => sampler::check(&target, &config, seconds, &plugin_dirs),
        Command::Doctor { plugin_dirs, .. } => doctor::run(&plugin_dirs),
        Command::Sampler { what } => sampler::run(what),
        Command::Bench { what } => bench::run(what),
    }
}

/// A `--params` value: a JSON object (`example` shows one in the error), or `None`.
fn params_arg(text: Option<String>, example: &str) -> anyhow::Result<Option<serde_json::Value>> {
    use anyhow::Context;
    let Some(text) = text else {
        return Ok(None);
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("--params is not JSON: {text}"))?;
    if !v.is_object() {
        anyhow::bail!("--params must be a JSON object, e.g. {example}");
    }
    Ok(Some(v))
}

/// An error and its causes on one line, each cause after a colon, as `{:#}` prints them, less
/// the causes a message already ends with: many errors name their file and quote their cause
/// (`path: No such file or directory`), and the cause printed again says nothing new.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

#[cfg(test)]
mod error_text_tests {
    use super::error_text;

    /// An error that quotes its cause, as the library's `{path}: {source}` errors do.
    #[derive(Debug)]
    struct Quoting {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Quoting {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_its_error_already_quotes_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Quoting {
            path: "run/manifest.json".into(),
            source: io,
        })
        .context("watching run");
        assert_eq!(
            error_text(&e),
            "watching run: run/manifest.json: no such file"
        );
        // A cause that says something new is kept, as {:#} keeps it.
        let e = anyhow::anyhow!("disk full").context("writing out.json");
        assert_eq!(error_text(&e), "writing out.json: disk full");
        assert_eq!(error_text(&e), format!("{e:#}"));
    }
}
