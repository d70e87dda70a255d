//! `ipw bench`: benchmarks that print figures (not timed tests).

use clap::Subcommand;
use ipw_core::config::SamplerConfig;
use ipw_core::power::PowerSession;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Sampler host overhead: CPU used by the sampling thread, as % of one core, per rate.
    Sampler {
        /// Plugin name (e.g. cpu-estimate, rapl, replay).
        #[arg(long, default_value = "cpu-estimate")]
        plugin: String,
        /// Plugin settings as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Rates to measure, Hz.
        #[arg(long, value_delimiter = ',', default_value = "20,100")]
        rates: Vec<f64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Also search these plugin directories.
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
    /// Routing speed: every built-in router over a synthetic table (default 1M queries x 20
    /// models), the full report with intervals on a slice, and a WASM router's decisions/s.
    Route {
        /// Queries in the synthetic table.
        #[arg(long, default_value_t = 1_000_000)]
        queries: usize,
        /// Models in the synthetic table.
        #[arg(long, default_value_t = 20)]
        models: usize,
        /// A WASM router to time (e.g. the example: examples/router-short-prompts).
        #[arg(long, value_name = "PATH")]
        wasm: Option<PathBuf>,
        /// Seconds of WASM decisions.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Also train a learned router (`ipw route train`) on the table, with prompts, and time
        /// its decisions in the sandbox.
        #[arg(long)]
        learned: bool,
        /// Training passes for --learned (default: as `ipw route train` chooses).
        #[arg(long)]
        epochs: Option<u32>,
    },
    /// Study speed: `compare` and `coverage` over generated records (default 4 models x 250k
    /// queries = 1M records, imported as run directories), timed stage by stage.
    Analyze {
        /// Queries per model.
        #[arg(long, default_value_t = 250_000)]
        queries: usize,
        /// Models (one run directory each).
        #[arg(long, default_value_t = 4)]
        models: usize,
        /// Where the generated runs go (default: a temporary directory, removed after).
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Times each of compare and coverage runs per source (min and median are printed).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Import each model's rows straight into `records.parquet` (`ipw import --parquet`),
        /// one model's table at a time, and time compare and coverage from Parquet only: the
        /// JSONL stages need about 1 GB of disk per million records, this about 40 MB.
        #[arg(long)]
        straight_to_parquet: bool,
    },
    /// The embedded backend against llama-server on the same GGUF, threads and context:
    /// decode tokens/s and TTFT side by side, alternating query by query, in one run.
    Embedded {
        /// The GGUF model.
        #[arg(long, env = "IPW_TEST_MODEL")]
        model: PathBuf,
        /// The llama-server binary (scripts/build-llama-server.sh builds one).
        #[arg(long, env = "IPW_LLAMA_SERVER")]
        server: PathBuf,
        /// Threads for both (generation and prompt processing).
        #[arg(long, default_value_t = 2)]
        threads: u32,
        /// Context length for both.
        #[arg(long, default_value_t = 4096)]
        context: u32,
        /// Queries per round (each side).
        #[arg(long, default_value_t = 30)]
        queries: usize,
        /// Rounds, each with fresh prompts.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Maximum new tokens per query.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
    },
    /// Grader costs: compile, cache-hit load, instantiation, and grades/s on one core for
    /// every built-in grader.
    Graders {
        /// Seconds of grading per grader.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Classifier costs: queries/s on one core through the sandbox for `keywords` and
    /// `mapping`, then a run of `--records` records (MMLU questions, imported) classified with
    /// `mapping` on every core and compared per domain, timed.
    Classify {
        /// Seconds of classifying per classifier.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Records in the timed run (0: skip it).
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Analyze {
            queries,
            models,
            keep,
            repeat,
            straight_to_parquet,
        } => analyze(queries, models, keep, repeat.max(1), straight_to_parquet),
        BenchCommand::Sampler {
            plugin,
            config,
            rates,
            seconds,
            plugin_dirs,
        } => {
            let config: serde_json::Value = serde_json::from_str(&config)?;
            let dir = std::env::temp_dir().join(format!("ipw-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            println!(
                "{:<14} {:>8} {:>10} {:>10} {:>12} {:>10}",
                "plugin", "rate Hz", "reads", "reads/s", "CPU ms/read", "CPU %core"
            );
            // The floor: the same sampling thread with a sampler that reads nothing (replay,
            // past the end of a two-point trace, declaring 1 ms updates so no rate is capped):
            // what waking a thread at this rate costs on this machine, before any reading.
            let trace = dir.join("floor.csv");
            std::fs::write(&trace, "t,value\n0,0\n1,0\n")?;
            let floor = serde_json::json!({
                "file": trace, "update_period_s": 0.001, "time_base": "monotonic"
            });
            for &rate in &rates {
                let row = sampler_row(&plugin, &config, rate, seconds, &plugin_dirs, &dir)?;
                // At the rate the plugin really ran at (the host caps it at its update period).
                let base = sampler_row("replay", &floor, row.rate_hz, seconds, &plugin_dirs, &dir)?;
                print_sampler_row("(floor)", &base);
                print_sampler_row(&plugin, &row);
                println!(
                    "{:<14} {:>8.0} {:>46.3}",
                    "  above floor",
                    row.rate_hz,
                    row.percent - base.percent
                );
            }
            println!(
                "(floor): the sampling thread with a sampler that reads nothing, i.e. this machine's cost of waking a thread at that rate"
            );
            let _ = std::fs::remove_dir_all(&dir);
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Route {
            queries,
            models,
            wasm,
            seconds,
            learned,
            epochs,
        } => {
            use ipw_core::routing::bench;
            let started = Instant::now();
            let table = bench::synthetic_table(queries, models.max(2), 1);
            println!(
                "synthetic table: {queries} queries x {models} models, built in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            println!(
                "{:<34} {:>10} {:>10} {:>14}",
                "router", "queries", "seconds", "decisions/s"
            );
            let mut total = 0.0;
            for r in bench::bench_builtin(&table) {
                total += r.seconds;
                println!(
                    "{:<34} {:>10} {:>10.3} {:>14.0}",
                    r.router, r.queries, r.seconds, r.per_s
                );
            }
            println!(
                "all built-in routers: {} (one thread; decisions and point figures)",
                seconds_or_ms(total)
            );
            let slice = bench::synthetic_table(queries.min(10_000), models.max(2), 1);
            println!(
                "full report with paired bootstrap intervals (1000 resamples), oracle, {} queries: {}",
                slice.rows.len(),
                seconds_or_ms(bench::bench_full_report(&slice))
            );
            if let Some(path) = wasm {
                let r = bench::bench_wasm(&path, &table, seconds)?;
                println!(
                    "WASM router {}: {:.0} decisions/s on one thread ({} decisions, a fresh instance each)",
                    r.router, r.per_s, r.queries
                );
            }
            if learned {
                let mut table = table;
                let started = Instant::now();
                bench::add_prompts(&mut table, 2);
                println!(
                    "prompts (20-60 words) added in {:.2} s",
                    started.elapsed().as_secs_f64()
                );
                let (took, trained) = bench::bench_train(&table, epochs)?;
                println!(
                    "learned router: trained on {} queries x {} models ({} cheaper than the reference), {} passes, in {:.1} s: {:.0} query-passes/s; {} KiB",
                    trained.meta.train_queries,
                    table.columns.len(),
                    trained.meta.models.iter().filter(|m| m.routable).count(),
                    trained.meta.epochs,
                    took,
                    trained.meta.train_queries as f64 * f64::from(trained.meta.epochs) / took,
                    trained.component.len() / 1024
                );
                let path = std::env::temp_dir()
                    .join(format!("ipw-bench-learned-{}.wasm", std::process::id()));
                std::fs::write(&path, &trained.component)?;
                let r = bench::bench_wasm(&path, &table, seconds);
                let _ = std::fs::remove_file(&path);
                let r = r?;
                println!(
                    "learned router in the sandbox: {:.0} decisions/s on one thread ({} decisions, a fresh instance each)",
                    r.per_s, r.queries
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Embedded {
            model,
            server,
            threads,
            context,
            queries,
            rounds,
            max_tokens,
        } => super::bench_embedded::run(super::bench_embedded::Settings {
            model,
            server,
            threads,
            context,
            queries,
            rounds,
            max_tokens,
        }),
        BenchCommand::Classify { seconds, records } => classify(seconds, records),
        BenchCommand::Graders { seconds } => {
            let rows = ipw_core::grade::bench::bench_builtin_graders(seconds)?;
            println!(
                "{:<10} {:>9} {:>11} {:>14} {:>15} {:>13}",
                "grader",
                "wasm KiB",
                "compile ms",
                "cache load ms",
                "instantiate us",
                "grades/s/core"
            );
            for r in rows {
                println!(
                    "{:<10} {:>9.0} {:>11.1} {:>14.2} {:>15.1} {:>13.0}",
                    r.grader,
                    r.wasm_bytes as f64 / 1024.0,
                    r.compile_ms,
                    r.cache_load_ms,
                    r.instantiate_us,
                    r.grades_per_s
                );
            }
            println!("(one thread; every grade is a fresh sandboxed instance; judge timed with an instant in-process judge)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Generate `models` x `queries` records (as a table `ipw import` reads: scores, energy,
/// latency, tokens, subjects), import them, and time the study commands on them.
fn analyze(
    queries: usize,
    models: usize,
    keep: Option<PathBuf>,
    repeat: usize,
    straight: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    anyhow::ensure!(
        models >= 2,
        "--models: coverage needs a reference and another model"
    );
    let scratch = keep.is_none();
    let root = keep.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ipw-bench-analyze-{}", std::process::id()))
    });
    std::fs::create_dir_all(&root)?;
    let started = Instant::now();
    let mut rng = ipw_core::rng::SplitMix64::new(7);
    let mut unit = move || rng.next_u64() as f64 / 2f64.powi(64);
    // One model's rows, written as generated: the table of a 20M-record bench does not fit
    // in memory.
    let mut rows = |csv: &mut dyn std::io::Write, m: usize| -> std::io::Result<()> {
        // Bigger models: more accurate, more energy per query.
        let skill = 0.4 + 0.5 * m as f64 / (models - 1) as f64;
        for q in 0..queries {
            let score = u8::from(unit() < skill);
            let out_tokens = 20 + (unit() * 300.0) as u32;
            let joules = (1.0 + m as f64) * out_tokens as f64 * (0.05 + 0.02 * unit());
            writeln!(
                csv,
                "gsm/{q},model-{m},acc-{a},{d},s{s},{score},{g:.4},{joules:.4},{l:.4},{i},{out_tokens}",
                a = m % 2,
                d = if q % 3 == 0 { "mmlu" } else { "gsm8k" },
                s = q % 57,
                g = joules * 1.3,
                l = out_tokens as f64 / 40.0,
                i = 50 + q % 400,
            )?;
        }
        Ok(())
    };
    let header = b"query_id,model,accelerator,dataset,subject,score,energy_j,net_energy_j,latency_s,input_tokens,output_tokens\n";
    let runs = root.join("runs");
    let parquet = root.join("parquet");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let gib = |g: Option<f64>| g.map_or("-".to_string(), |g| format!("{g:.2} GiB"));
    let records = models * queries;
    let per_core = |s: f64| records as f64 / s / cores;
    if straight {
        // A table per model, imported into Parquet and removed: disk holds one model's table.
        let (mut generated, mut import_s, mut import_peak) = (0.0, 0.0, None);
        for m in 0..models {
            let t = Instant::now();
            let table = root.join(format!("model-{m}.csv"));
            let mut csv = std::io::BufWriter::new(std::fs::File::create(&table)?);
            csv.write_all(header)?;
            rows(&mut csv, m)?;
            csv.into_inner()?.sync_all()?;
            generated += t.elapsed().as_secs_f64();
            reset_peak_rss();
            let t = Instant::now();
            ipw_core::import::import_as(
                &table,
                &parquet,
                &Default::default(),
                ipw_core::import::Stored::Parquet,
            )?;
            import_s += t.elapsed().as_secs_f64();
            import_peak = max_of(import_peak, peak_rss_gib());
            std::fs::remove_file(&table)?;
        }
        println!(
            "{records} records ({models} models x {queries} queries), generated in {generated:.1} s, a table per model"
        );
        println!(
            "  import --parquet  {import_s:>7.2} s  {:>9.0} records/s/core  peak resident {}",
            per_core(import_s),
            gib(import_peak)
        );
    } else {
        let table = root.join("generated.csv");
        let mut csv = std::io::BufWriter::new(std::fs::File::create(&table)?);
        csv.write_all(header)?;
        for m in 0..models {
            rows(&mut csv, m)?;
        }
        csv.flush()?;
        drop(csv);
        let generated = started.elapsed().as_secs_f64();
        reset_peak_rss();
        let t = Instant::now();
        let imported = ipw_core::import::import(&table, &runs, &Default::default())?;
        let import_s = t.elapsed().as_secs_f64();
        let import_peak = peak_rss_gib();
        // The import's writes reach the disk before anything is timed, so writeback does not
        // run inside the figures.
        for (_, dir, _) in &imported.runs {
            std::fs::File::open(dir.join("records.jsonl"))?.sync_all()?;
        }
        // The same runs as the study's columnar store: records.parquet per run.
        reset_peak_rss();
        let t = Instant::now();
        ipw_core::export::parquet::export(
            std::slice::from_ref(&runs),
            &ipw_core::export::parquet::Destination::Under(parquet.clone()),
        )?;
        let export_s = t.elapsed().as_secs_f64();
        let export_peak = peak_rss_gib();
        println!(
            "{records} records ({models} models x {queries} queries), generated in {generated:.1} s"
        );
        println!(
            "  import            {import_s:>7.2} s  {:>9.0} records/s/core  peak resident {}",
            per_core(import_s),
            gib(import_peak)
        );
        println!(
            "  export parquet    {export_s:>7.2} s  {:>9.0} records/s/core  peak resident {}",
            per_core(export_s),
            gib(export_peak)
        );
    }
    let reference = format!("model-{}", models - 1);
    let by = ipw_core::study::GroupBy::Dataset;
    let mut from_parquet = None;
    let sources = [("jsonl", &runs), ("parquet", &parquet)];
    for (source, dir) in &sources[usize::from(straight)..] {
        let dirs = [dir.to_path_buf()];
        // `repeat` times each: min and median, since one run on a shared machine can be slow.
        let mut compare_s = Vec::new();
        let mut coverage_s = Vec::new();
        let (mut c, mut v) = (None, None);
        let (mut compare_peak, mut coverage_peak) = (None, None);
        for _ in 0..repeat {
            reset_peak_rss();
            let t = Instant::now();
            c = Some(ipw_core::study::compare(&dirs, by, None, 0)?);
            compare_s.push(t.elapsed().as_secs_f64());
            compare_peak = max_of(compare_peak, peak_rss_gib());
            reset_peak_rss();
            let t = Instant::now();
            v = Some(ipw_core::study::coverage(
                &dirs,
                &reference,
                0.0,
                by,
                &Default::default(),
                0,
            )?);
            coverage_s.push(t.elapsed().as_secs_f64());
            coverage_peak = max_of(coverage_peak, peak_rss_gib());
        }
        let (c, v) = (c.expect("ran"), v.expect("ran"));
        let min_median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let (compare_min, compare_median) = min_median(&mut compare_s);
        let (coverage_min, coverage_median) = min_median(&mut coverage_s);
        println!(
            "  compare  {source:<8} min {compare_min:>7.2} s  median {compare_median:>7.2} s  {:>9.0} records/s/core  peak resident {}  ({} rows, {} paired)",
            per_core(compare_min),
            gib(compare_peak),
            c.rows.len(),
            c.paired.len()
        );
        println!(
            "  coverage {source:<8} min {coverage_min:>7.2} s  median {coverage_median:>7.2} s  {:>9.0} records/s/core  peak resident {}  ({} rows)",
            per_core(coverage_min),
            gib(coverage_peak),
            v.rows.len()
        );
        from_parquet = Some((c, v));
    }
    // The other study commands over the columnar store, once each: the report (every figure
    // but the page's drawing) and the routing simulation with its default routers.
    let dirs = [parquet.clone()];
    reset_peak_rss();
    let t = Instant::now();
    let r = ipw_core::report::build(&ipw_core::report::ReportRequest {
        runs: dirs.to_vec(),
        reference: Some(reference.clone()),
        tolerance: 0.0,
        by,
        trace_run: None,
        route: None,
        seed: 0,
        footprint: None,
        command: Vec::new(),
    })?;
    let report_s = t.elapsed().as_secs_f64();
    let report_peak = peak_rss_gib();
    println!(
        "  report   parquet {report_s:>7.2} s  {:>9.0} records/s/core  peak resident {}  ({} runs, {} histogram bins)",
        per_core(report_s),
        gib(report_peak),
        r.runs.len(),
        r.energy.data.iter().flatten().map(|h| h.bins.len()).sum::<usize>()
    );
    drop(r);
    reset_peak_rss();
    let t = Instant::now();
    let r = ipw_core::routing::route(&ipw_core::routing::RouteRequest {
        runs: dirs.to_vec(),
        reference: reference.clone(),
        routers: vec![
            "oracle".into(),
            "p-accurate:0.8".into(),
            "random:0.5".into(),
        ],
        objective: None,
        seed: 0,
        meta: Default::default(),
        weak: None,
        workload: None,
        held_out_of: None,
        by: None,
        footprint: None,
    })?;
    let route_s = t.elapsed().as_secs_f64();
    let route_peak = peak_rss_gib();
    println!(
        "  route    parquet {route_s:>7.2} s  {:>9.0} records/s/core  peak resident {}  ({} queries in every run)",
        per_core(route_s),
        gib(route_peak),
        r.queries
    );
    drop(r);
    // Beyond one machine: a part per run (each a task of its own on a cluster; here one
    // after the other), then compare and coverage from the parts, checked against the above.
    let parts = root.join("parts");
    std::fs::create_dir_all(&parts)?;
    reset_peak_rss();
    let t = Instant::now();
    let mut slowest = 0.0f64;
    for run in ipw_core::joined::find_runs(std::slice::from_ref(&parquet))? {
        let one = Instant::now();
        let name = run.file_name().expect("a run dir").to_string_lossy();
        ipw_core::study::part::write_part(&run, &parts.join(format!("{name}.part.parquet")), 0)?;
        slowest = slowest.max(one.elapsed().as_secs_f64());
    }
    let partial_s = t.elapsed().as_secs_f64();
    let partial_peak = peak_rss_gib();
    let dirs = [parts.clone()];
    reset_peak_rss();
    let t = Instant::now();
    let c = ipw_core::study::compare(&dirs, by, None, 0)?;
    let combine_compare_s = t.elapsed().as_secs_f64();
    let combine_compare_peak = peak_rss_gib();
    reset_peak_rss();
    let t = Instant::now();
    let v = ipw_core::study::coverage(&dirs, &reference, 0.0, by, &Default::default(), 0)?;
    let combine_coverage_s = t.elapsed().as_secs_f64();
    let combine_coverage_peak = peak_rss_gib();
    let (pc, pv) = from_parquet.expect("ran");
    let same = serde_json::to_string(&c)? == serde_json::to_string(&pc)?
        && serde_json::to_string(&v)? == serde_json::to_string(&pv)?;
    println!(
        "  partial  parquet {partial_s:>7.2} s for {models} parts (slowest {slowest:.2} s: a cluster's wall time)  {:>9.0} records/s/core  peak resident {}",
        per_core(partial_s),
        gib(partial_peak)
    );
    println!(
        "  compare  parts   {combine_compare_s:>7.2} s  peak resident {}; coverage parts {combine_coverage_s:.2} s  peak resident {}; equal to one machine's: {}",
        gib(combine_compare_peak),
        gib(combine_coverage_peak),
        if same { "yes" } else { "NO" }
    );
    if !same {
        anyhow::bail!("compare or coverage from the parts differs from the runs'");
    }
    println!("  (peak resident: the process's high-water mark over the stage, reset before it; {cores} cores)");
    println!("  targets on a 2-core machine: 1M records, each under 5 s; 20M, each under 60 s from parquet and every stage under 4 GiB");
    if scratch {
        std::fs::remove_dir_all(&root)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `ipw bench classify`: one-core throughput, then a run of `records` classified and compared
/// per domain.
fn classify(seconds: f64, records: usize) -> anyhow::Result<ExitCode> {
    use ipw_core::classify::{ClassifySpec, Classifying, Taxonomy};
    let rows = ipw_core::classify::bench::bench_builtin_classifiers(seconds)?;
    println!(
        "{:<10} {:>15} {:>10} {:>10}",
        "classifier", "queries/s/core", "labelled", "queries"
    );
    for r in &rows {
        println!(
            "{:<10} {:>15.0} {:>9.1}% {:>10}",
            r.classifier,
            r.queries_per_s,
            100.0 * r.labelled_share,
            r.queries
        );
    }
    println!(
        "(one thread, batches of {} queries per sandboxed instance; target: 100k queries/s/core)",
        ipw_core::classify::apply::DEFAULT_BATCH
    );
    if records == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let root = std::env::temp_dir().join(format!("ipw-bench-classify-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let queries = ipw_core::classify::bench::builtin_queries();
    let table = root.join("generated.csv");
    let mut w = csv::Writer::from_path(&table)?;
    w.write_record([
        "query_id",
        "model",
        "dataset",
        "subject",
        "prompt",
        "score",
        "energy_j",
        "latency_s",
    ])?;
    for i in 0..records {
        let q = &queries[i % queries.len()];
        let id = format!("{}#{}", q.id, i / queries.len());
        let score = if i % 3 == 0 { "0" } else { "1" };
        w.write_record([
            id.as_str(),
            "model",
            &q.dataset,
            q.subject.as_deref().unwrap_or(""),
            &q.prompt,
            score,
            "2.5",
            "0.5",
        ])?;
    }
    w.flush()?;
    drop(w);
    let runs = root.join("runs");
    let t = Instant::now();
    let imported = ipw_core::import::import(&table, &runs, &Default::default())?;
    let import_s = t.elapsed().as_secs_f64();
    let run = imported.runs[0].1.clone();
    std::fs::File::open(run.join("records.jsonl"))?.sync_all()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let spec = ClassifySpec {
        classifier: "mapping".into(),
        params: None,
        taxonomy: Taxonomy::default_taxonomy(),
        batch: None,
    };
    let t = Instant::now();
    let classifying =
        std::sync::Arc::new(runtime.block_on(Classifying::load(spec, &Default::default()))?);
    let report = runtime.block_on(classifying.classify_run(&run))?;
    let classify_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let compare = ipw_core::study::compare(
        std::slice::from_ref(&run),
        ipw_core::study::GroupBy::Domain,
        None,
        0,
    )?;
    let compare_s = t.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{records} records (MMLU and GSM8K questions cycled), imported in {import_s:.1} s");
    println!(
        "  classify (mapping, {cores} cores)  {classify_s:>6.2} s  ({} labelled, {} unlabelled)",
        report.records - report.unlabelled - report.failed,
        report.unlabelled
    );
    println!(
        "  compare --by domain           {compare_s:>6.2} s  ({} groups)",
        compare.rows.len()
    );
    println!(
        "  together                      {:>6.2} s  (target: under 30 s for 1M records on 2 cores)",
        classify_s + compare_s
    );
    std::fs::remove_dir_all(&root)?;
    Ok(ExitCode::SUCCESS)
}

/// One `ipw bench sampler` measurement.
struct SamplerRow {
    rate_hz: f64,
    reads: u64,
    reads_per_s: f64,
    ms_per_read: f64,
    percent: f64,
}

/// A duration for a person: seconds above one, milliseconds below (a small table's figures
/// would otherwise print as `0.00 s`).
fn seconds_or_ms(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else {
        format!("{:.3} ms", seconds * 1e3)
    }
}

/// Run `plugin` with `config` at `rate` Hz for `seconds` and read its thread's CPU.
fn sampler_row(
    plugin: &str,
    config: &serde_json::Value,
    rate: f64,
    seconds: f64,
    plugin_dirs: &[PathBuf],
    dir: &std::path::Path,
) -> anyhow::Result<SamplerRow> {
    let cfg = SamplerConfig {
        plugin: Some(plugin.to_string()),
        path: None,
        rate_hz: Some(rate),
        config: config.clone(),
    };
    let session = PowerSession::start(&[cfg], plugin_dirs, dir, 0, None)?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let infos = session.stop();
    let wall = started.elapsed().as_secs_f64();
    let stats = infos[0].stats.clone().unwrap_or_default();
    Ok(SamplerRow {
        rate_hz: 1.0 / infos[0].interval_s,
        reads: stats.reads,
        reads_per_s: stats.reads as f64 / wall,
        ms_per_read: stats.cpu_s * 1000.0 / stats.reads.max(1) as f64,
        percent: stats.cpu_s / wall * 100.0,
    })
}

fn print_sampler_row(label: &str, r: &SamplerRow) {
    println!(
        "{:<14} {:>8.0} {:>10} {:>10.1} {:>12.4} {:>10.3}",
        label, r.rate_hz, r.reads, r.reads_per_s, r.ms_per_read, r.percent
    );
}

/// The process's peak resident memory since the last [`reset_peak_rss`], in GiB (Linux's
/// `VmHWM`); `None` where /proc does not say.
fn peak_rss_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// Start a new high-water mark at the current resident memory (Linux: `5` to `clear_refs`), so
/// each stage's peak is its own. What earlier stages freed is handed back to the kernel first
/// (glibc keeps freed heap resident), or a stage would be charged with its predecessor's.
fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; no precondition.
        unsafe {
            malloc_trim(0);
        }
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The larger of two optional figures.
fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
