//! One session of a run: open the samplers, load the model, warm it up, measure the idle
//! baseline, then dispatch the queries that are not on disk yet. What attribution needs (the
//! samplers' channel descriptions, the baseline) is written to the manifest the moment it is
//! known, so a killed session's readings can still be attributed.

use super::dispatch::{request_for, Dispatch};
use super::{Cancel, RunError, RunObserver};
use crate::backend;
use crate::config::{BackendKind, LoadedExperiment, ModelConfig};
use crate::dataset::Query;
use crate::grade::DatasetGraders;
use crate::host::self_usage;
use crate::load;
use crate::power::settle::Watched;
use crate::power::{Baseline, PowerSession};
use crate::records::{
    clock, read_power_log_tail, Manifest, PowerLine, RecordsWriter, RunDir, RunLock,
};
use crate::server::{ManagedServer, Served};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the machine is watched for other load before a session starts.
const PREFLIGHT: Duration = Duration::from_millis(500);
/// How often a settle looks at the readings again.
const SETTLE_POLL: Duration = Duration::from_millis(500);
/// How much of `power.jsonl`'s end a settle reads: seconds of readings of a busy sampler set.
const SETTLE_TAIL_BYTES: u64 = 4 << 20;
/// How often other load is logged while queries run.
const LOAD_INTERVAL: Duration = Duration::from_millis(500);

/// Everything one session works with.
pub(super) struct SessionCtx<'a> {
    pub loaded: &'a LoadedExperiment,
    pub model: &'a ModelConfig,
    pub queries: &'a [Query],
    pub run: &'a RunDir,
    pub lock: &'a RunLock,
    pub graders: &'a Arc<DatasetGraders>,
    pub observer: &'a dyn RunObserver,
    pub cancel: &'a Cancel,
    /// Refuse to start on a busy machine.
    pub require_idle: bool,
}

impl SessionCtx<'_> {
    /// Enter a phase: the observer shows it, and the log says it (`-v`), which is also how the
    /// crash tests know where a kill lands.
    fn phase(&self, what: &str) {
        tracing::info!(model = %self.model.name, "phase: {what}");
        self.observer.phase(&self.model.name, what);
    }

    /// Wait (at most `[energy.settle] max_wait_s`) until the measured devices have settled, and
    /// record the wait in the manifest. Nothing to watch, or settling off: no wait.
    async fn settle(
        &self,
        power: &PowerSession,
        before: &str,
        session_idx: usize,
        manifest: &mut Manifest,
    ) -> Result<(), RunError> {
        let cfg = &self.loaded.experiment.energy.settle;
        let watched = Watched::of(&manifest.sessions[session_idx].samplers, cfg);
        if cfg.max_wait_s <= 0.0 || watched.is_empty() {
            return Ok(());
        }
        self.phase(&format!(
            "waiting for the devices to settle before the {before}"
        ));
        let path = self.run.power_log_path();
        let started = Instant::now();
        let judged = loop {
            power.log().flush();
            let lines: Vec<PowerLine> = read_power_log_tail(&path, SETTLE_TAIL_BYTES)
                .map_err(|source| RunError::Io {
                    path: path.clone(),
                    source,
                })?
                .into_iter()
                .filter(|l| l.session == session_idx)
                .collect();
            let judged = watched.judge(&lines, clock::now_s(), cfg);
            let out_of_time = started.elapsed().as_secs_f64() >= cfg.max_wait_s;
            match judged {
                Some(j) if j.settled => break j,
                j if out_of_time || self.cancel.is_cancelled() => break j.unwrap_or_default(),
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(SETTLE_POLL) => {}
                _ = self.cancel.cancelled() => {}
            }
        };
        let waited = started.elapsed().as_secs_f64();
        if !judged.settled && !self.cancel.is_cancelled() {
            tracing::warn!(
                model = %self.model.name,
                "the measured devices did not settle within {} s before the {before} (power {:?} W, temperature {:?} °C); measuring anyway",
                cfg.max_wait_s,
                judged.power_w,
                judged.temperature_c
            );
        }
        manifest.sessions[session_idx]
            .settle
            .push(judged.record(before, waited));
        self.run.write_manifest(self.lock, manifest)?;
        Ok(())
    }

    /// Measure `todo` (plan index, query) in session `session_idx` of `manifest`. Returns
    /// whether the session was interrupted.
    pub async fn measure(
        &self,
        todo: &[(usize, &Query)],
        session_idx: usize,
        manifest: &mut Manifest,
        records: &mut RecordsWriter,
    ) -> Result<bool, RunError> {
        let (exp, model, cancel) = (&self.loaded.experiment, self.model, self.cancel);
        // Before anything of ours runs: is something else keeping the machine busy?
        let preflight = tokio::task::spawn_blocking(|| load::measure(PREFLIGHT))
            .await
            .expect("reading /proc does not panic");
        if let Some(l) = &preflight {
            if l.cores > load::BUSY_CORES {
                let culprits = if l.top.is_empty() {
                    String::new()
                } else {
                    format!(": {}", l.top.join(", "))
                };
                if self.require_idle {
                    return Err(RunError::Busy(format!(
                        "other processes keep {:.2} cores busy{culprits}; stop them or run without --require-idle",
                        l.cores
                    )));
                }
                tracing::warn!(
                    "the machine is not idle: other processes keep {:.2} cores busy{culprits}; energy figures will include their draw",
                    l.cores
                );
            }
        }
        manifest.sessions[session_idx].preflight_load = preflight;
        // Samplers first: a sampler that cannot open fails the run before a model is loaded,
        // and the timeline then covers model load and warm-up too.
        let mut samplers: Vec<_> = exp.samplers.iter().map(|s| s.get_ref().clone()).collect();
        if model.backend == BackendKind::Embedded && model.server.is_none() {
            let placement = backend::place(model)?;
            for change in backend::placement::follow(&mut samplers, &placement) {
                tracing::info!("{change}");
            }
        }
        let power = if samplers.is_empty() {
            None
        } else {
            self.phase("starting samplers");
            let p = PowerSession::start(
                &samplers,
                &exp.plugin_dirs,
                self.run.path(),
                session_idx,
                self.observer.reading_tap(),
            )?;
            self.observer.sampling(&model.name, &p.describe());
            let overlaps = p.overlapping_domains();
            if !overlaps.is_empty() && exp.energy.overlap == crate::config::OverlapPolicy::Warn {
                tracing::warn!(
                    "samplers measure overlapping domains: {}; every channel is summed into a record's total, so the shared part counts twice (set [energy] overlap = \"sum\" if that is meant, or drop one sampler)",
                    overlaps.join("; ")
                );
            }
            manifest.sessions[session_idx].samplers = p.describe();
            self.run.write_manifest(self.lock, manifest)?;
            Some(p)
        };
        let mut server = match &model.server {
            Some(cfg) => {
                self.phase("starting server");
                let mut s =
                    ManagedServer::start(model, exp.run.concurrency, self.run.path(), session_idx)?;
                let inner = backend::connect(&s.model_config(model), exp.run.concurrency).await?;
                let timeout = Duration::from_secs_f64(cfg.ready_timeout_s.unwrap_or(300.0));
                tokio::select! {
                    ready = s.wait_ready(inner.as_ref(), timeout) => ready?,
                    _ = cancel.cancelled() => {}
                }
                manifest.sessions[session_idx].server = Some(s.info().clone());
                self.run.write_manifest(self.lock, manifest)?;
                Some((s, inner))
            }
            None => None,
        };
        self.phase("loading model");
        let load_started = Instant::now();
        let (backend, server) = match server.take() {
            Some((s, inner)) => {
                let s = Arc::new(s);
                let b: Arc<dyn backend::Backend> = Arc::new(Served::new(inner, s.clone()));
                (b, Some(s))
            }
            None => (backend::connect(model, exp.run.concurrency).await?, None),
        };
        if model.backend == BackendKind::Embedded {
            manifest.sessions[session_idx].model_load_s =
                Some(load_started.elapsed().as_secs_f64());
        }
        manifest.backend = backend.describe();
        let seed = exp.generation.seed.unwrap_or(exp.seed);
        let warmups = exp.run.warmup_queries.min(self.queries.len());
        if warmups > 0 {
            self.phase("warming up");
        }
        let mut first_request: Option<Instant> = None;
        for (i, q) in self.queries.iter().take(warmups).enumerate() {
            if cancel.is_cancelled() {
                break;
            }
            first_request.get_or_insert_with(Instant::now);
            if let Err(e) = backend
                .generate(&request_for(exp, &warmup_query(q, i), seed))
                .await
            {
                tracing::warn!(model = %model.name, "warm-up query failed: {e}");
            }
        }
        if let Some(p) = &power {
            if exp.energy.baseline_s > 0.0 && !cancel.is_cancelled() {
                self.settle(p, "baseline", session_idx, manifest).await?;
                self.phase("measuring idle baseline");
                let from_s = clock::now_s();
                let cpu_from = load::snapshot(false);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(exp.energy.baseline_s)) => {}
                    _ = cancel.cancelled() => {}
                }
                let other = cpu_from
                    .zip(load::snapshot(false))
                    .map(|(a, b)| load::between(&a, &b).cores);
                if let Some(c) = other.filter(|c| *c > load::BUSY_CORES) {
                    tracing::warn!(
                        "the idle baseline was not idle: other processes kept {c:.2} cores busy; net energy will be understated (the summary flags it)"
                    );
                }
                p.log().flush();
                manifest.sessions[session_idx].baseline = Some(Baseline {
                    from_s,
                    to_s: clock::now_s(),
                    other_cpu_cores: other,
                });
                self.run.write_manifest(self.lock, manifest)?;
            }
            // Let every channel take a reading inside the baseline's end before queries start.
            tokio::time::sleep(p.max_interval().min(Duration::from_millis(200))).await;
            if !cancel.is_cancelled() {
                self.settle(p, "queries", session_idx, manifest).await?;
            }
        }
        let marker = power.as_ref().map(PowerSession::marker).unwrap_or_default();
        let (cpu_before, _) = self_usage();
        let server_cpu_before = server.as_ref().and_then(|s| s.cpu_s());
        let dispatch = Dispatch {
            backend: &backend,
            exp,
            model,
            seed,
            session: session_idx,
            marker: &marker,
            graders: self.graders,
            observer: self.observer,
            cancel,
        };
        self.phase("measuring queries");
        // Other processes' CPU while the queries run, into the power log beside the readings,
        // so attribution can flag the records it overlapped: one reading before the first
        // window, one after the last, and every half second between.
        let other_cpu = power.as_ref().map(|p| {
            let log = p.log();
            move || {
                if let Some(now) = load::snapshot(false) {
                    log.append(&[PowerLine {
                        session: session_idx,
                        channel: load::CHANNEL.into(),
                        t: clock::now_s(),
                        v: Some(now.other_cpu_s()),
                        error: None,
                    }]);
                }
            }
        });
        let monitor = other_cpu.clone().map(|read| {
            read();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOAD_INTERVAL).await;
                    read();
                }
            })
        });
        let (n, first) = dispatch.run(todo, records).await?;
        if let Some(m) = monitor {
            m.abort();
        }
        if let Some(read) = &other_cpu {
            read();
        }
        let mut stopped_server_failed = None;
        let (cpu_after, peak_rss) = self_usage();
        let server_gone = backend.gone();
        // Stopped now that its model is done, before the next model's server starts.
        drop(backend);
        // Every query task held the backend, and with it the server; all have ended.
        if let Some(mut s) = server.and_then(Arc::into_inner) {
            s.note_session_cpu(server_cpu_before);
            if manifest.sessions[session_idx].baseline.is_some() {
                s.note_idle_baseline();
            }
            let failure = server_gone.map(|why| s.error(why));
            let info = tokio::task::spawn_blocking(move || s.stop())
                .await
                .expect("stopping a server does not panic");
            manifest.sessions[session_idx].server = Some(info);
            if let Some(e) = failure {
                stopped_server_failed = Some(e);
            }
        }
        if let Some(p) = power {
            // One more background reading after the last window ends, then stop.
            tokio::time::sleep(p.max_interval()).await;
            manifest.sessions[session_idx].samplers = tokio::task::spawn_blocking(move || p.stop())
                .await
                .expect("stopping samplers does not panic");
        }
        let first_request = first_request.or(first);
        let session = &mut manifest.sessions[session_idx];
        session.recorded = n;
        session.startup_to_first_request_s =
            first_request.map(|t| (t - clock::process_start()).as_secs_f64());
        session.cpu_s = Some(cpu_after - cpu_before);
        session.cpu_per_query_ms = (n > 0).then(|| (cpu_after - cpu_before) * 1000.0 / n as f64);
        session.peak_rss_bytes = Some(peak_rss);
        if let Some(e) = stopped_server_failed {
            // The records of this session are on disk; `--resume` starts the server again.
            return Err(e.into());
        }
        Ok(cancel.is_cancelled())
    }
}

/// A warm-up query shaped like `q` (same length, same generation settings) but never one that
/// is measured: its prompt reversed, so no prompt or KV cache can make a measured prompt
/// cheaper because it was sent as a warm-up.
fn warmup_query(q: &Query, i: usize) -> Query {
    let mut w = q.clone();
    w.prompt = format!(
        "(warm-up {i}) {}",
        q.prompt.chars().rev().collect::<String>()
    );
    w.id = format!("warm-up/{i}");
    w
}
