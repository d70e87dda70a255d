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
    /// Grader costs: compile, cache-hit load, instantiation, and grades/s on one core for
    /// every built-in grader.
    Graders {
        /// Seconds of grading per grader.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
            for rate in rates {
                let cfg = SamplerConfig {
                    plugin: Some(plugin.clone()),
                    path: None,
                    rate_hz: Some(rate),
                    config: config.clone(),
                };
                let session = PowerSession::start(&[cfg], &plugin_dirs, &dir, 0)?;
                let started = Instant::now();
                std::thread::sleep(Duration::from_secs_f64(seconds));
                let infos = session.stop();
                let wall = started.elapsed().as_secs_f64();
                let stats = infos[0].stats.clone().unwrap_or_default();
                println!(
                    "{:<14} {:>8.0} {:>10} {:>10.1} {:>12.4} {:>10.3}",
                    plugin,
                    1.0 / infos[0].interval_s,
                    stats.reads,
                    stats.reads as f64 / wall,
                    stats.cpu_s * 1000.0 / stats.reads.max(1) as f64,
                    stats.cpu_s / wall * 100.0
                );
            }
            let _ = std::fs::remove_dir_all(&dir);
            Ok(ExitCode::SUCCESS)
        }
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
