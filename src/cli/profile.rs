//! `ipw profile`: run an experiment with a progress bar; Ctrl-C stops cleanly.

use super::{progress::Progress, table};
use anyhow::Context;
use ipw_core::run::{Cancel, ProfileOptions};
use ipw_core::scaleout::ShardArg;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `ipw profile`'s options.
pub struct Options {
    pub out: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub retry_failed: bool,
    pub require_idle: bool,
    pub shard: Option<ShardArg>,
    pub quiet: bool,
    pub metrics: Option<String>,
    pub metrics_linger: f64,
}

pub fn run(file: &Path, opts: Options) -> anyhow::Result<ExitCode> {
    let Options {
        out,
        resume,
        retry_failed,
        require_idle,
        shard,
        quiet,
        metrics,
        metrics_linger,
    } = opts;
    if !(metrics_linger.is_finite() && metrics_linger >= 0.0) {
        anyhow::bail!("--metrics-linger must be a number of seconds >= 0");
    }
    if retry_failed && resume.is_none() && shard.is_none() {
        anyhow::bail!("--retry-failed needs --resume (or --shard, to retry in an existing shard)");
    }
    let shard = shard
        .map(|s| s.resolve(|k| std::env::var(k).ok()))
        .transpose()?;
    let loaded = ipw_core::run::load_experiment(file)?;
    // One thread for all the async work: it is waiting on sockets (a streamed token is a few
    // microseconds of parsing), and a single thread wakes once per token where a work-stealing
    // pool also wakes its other workers. Blocking work (model load, grading, the summary)
    // goes to the blocking pool; the samplers and embedded generation have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cancel = Cancel::default();
    let progress = Progress::new(quiet);
    let live = ipw_core::live::LiveMetrics::default();
    let server = match &metrics {
        Some(addr) => {
            let server = ipw_core::live::MetricsServer::start(addr, live.clone())?;
            eprintln!("metrics: http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let mut observers: Vec<&dyn ipw_core::run::RunObserver> = vec![&progress];
    if server.is_some() {
        observers.push(&live);
    }
    let observer = ipw_core::run::Observers(observers);
    let options = ProfileOptions {
        out_dir: out,
        resume,
        retry_failed,
        require_idle,
        shard,
    };
    let (ran, interrupted) = runtime.block_on(async {
        // Registered before any work starts (not when the watcher is first polled), so a stop
        // signal at any moment of the run is a clean stop, never the default kill.
        let signals = stop_signals();
        tokio::spawn(watch_stop_signals(signals, cancel.clone()));
        let ran = ipw_core::run::profile(&loaded, &options, &observer, &cancel).await;
        // A stop signal while lingering ends the linger, not the (finished) run.
        let interrupted = cancel.is_cancelled();
        if server.is_some() && metrics_linger > 0.0 && !interrupted {
            eprintln!(
                "metrics: the run is over; /metrics keeps its final values for {metrics_linger} s"
            );
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs_f64(metrics_linger)) => {}
                _ = cancel.cancelled() => {}
            }
        }
        (ran, interrupted)
    });
    drop(server);
    let (dir, outcomes) = ran?;
    table::print(&outcomes);
    println!("results: {}", dir.display());
    if interrupted {
        // The signal's conventional status (128 + its number): 130 for SIGINT, 143 for SIGTERM.
        let code = SIGNALLED
            .get()
            .map_or(130, |s| u8::try_from(exit_code(s)).unwrap_or(130));
        if shard.is_some() {
            println!(
                "interrupted; continue by running the same shard again (same --shard and --out)"
            );
        } else {
            println!(
                "interrupted; continue with: ipw profile {} --resume {}",
                file.display(),
                dir.display()
            );
        }
        return Ok(ExitCode::from(code));
    }
    Ok(ExitCode::SUCCESS)
}

/// The first stop signal received.
static SIGNALLED: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

type StopSignals = Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>;

/// SIGINT and SIGTERM handlers, installed now; `None` if the OS refuses.
fn stop_signals() -> StopSignals {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(int), Ok(term)) => Some((int, term)),
        _ => {
            tracing::warn!("cannot watch SIGINT/SIGTERM; a stop signal will end the run at once");
            None
        }
    }
}

/// SIGTERM (Slurm, Kubernetes, systemd) is a request to stop, like Ctrl-C: the first of either
/// cancels the run, which finishes up with everything measured on disk; a second exits at once.
async fn watch_stop_signals(signals: StopSignals, cancel: Cancel) {
    let Some((mut int, mut term)) = signals else {
        return;
    };
    loop {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        if SIGNALLED.set(name).is_err() {
            std::process::exit(exit_code(name));
        }
        eprintln!("\ninterrupted ({name}): finishing up; records so far are on disk (Ctrl-C again to exit now)");
        cancel.cancel();
    }
}

fn exit_code(signal: &str) -> i32 {
    if signal == "SIGTERM" {
        143
    } else {
        130
    }
}
