//! Running an experiment: one run per model, each a directory with `manifest.json`,
//! `records.jsonl` and `summary.json`.
//!
//! The runner loads the model (outside any window), sends warm-up queries that are not
//! recorded, then dispatches the plan with bounded concurrency. Each finished query becomes a
//! [`Record`] appended to disk at once; a failed query is recorded with its error and the run
//! goes on. On cancel (Ctrl-C) in-flight queries are dropped unrecorded (a resume redoes them)
//! and everything already measured stays on disk.

mod cancel;
pub mod clock;
mod manifest;
mod record;
mod records_file;

pub use cancel::Cancel;
pub use manifest::{write_json_atomic, Manifest, ModelFile, Session, MANIFEST_SCHEMA};
pub use record::{decode_tps, QueryError, Record, Window, RECORD_SCHEMA};
pub use records_file::{read_records, RecordsFile};

use crate::analysis::{summarize, Summary};
use crate::backend::{self, Backend, BackendError, GenRequest, Generation, Message};
use crate::config::{BackendKind, LoadedExperiment, ModelConfig};
use crate::dataset::{hex, load_dataset, DatasetError, DatasetInfo, Query};
use crate::grade::{connect_judge, DatasetGraders};
use crate::host::{self_usage, HostInfo};
use crate::power::{attribute_records, Baseline, EdgeMarker, PowerSession, SessionPower};
use clock::RunClock;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// A run that could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A dataset could not be loaded.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The backend could not be set up.
    #[error(transparent)]
    Backend(#[from] backend::BackendSetupError),
    /// Reading or writing the run directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A grader could not be loaded.
    #[error(transparent)]
    Grader(#[from] crate::grade::GraderError),
    /// A power sampler could not be used.
    #[error(transparent)]
    Sampler(#[from] crate::power::loader::SamplerError),
    /// `--resume` on a directory that does not match this experiment.
    #[error("cannot resume {}: {message}", dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where an experiment's results go, and whether to continue an earlier run.
#[derive(Debug, Clone, Default)]
pub struct ProfileOptions {
    /// Experiment output directory; default `<output.dir>/<name>-<UTC timestamp>`.
    pub out_dir: Option<PathBuf>,
    /// Continue the experiment directory given (its runs' records are kept, not redone).
    pub resume: Option<PathBuf>,
}

/// Progress callbacks, so the CLI can draw a progress bar without the runner printing.
pub trait RunObserver: Send + Sync {
    /// A model's run begins: `total` planned queries, `done` already on disk.
    fn run_started(&self, _model: &str, _dir: &Path, _total: usize, _done: usize) {}
    /// The model is being loaded or warmed up.
    fn phase(&self, _model: &str, _what: &str) {}
    /// A record was written.
    fn recorded(&self, _record: &Record) {}
    /// A model's run ended.
    fn run_finished(&self, _outcome: &RunOutcome) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl RunObserver for Quiet {}

/// The result of one model's run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// The summary written to `summary.json`.
    pub summary: Summary,
    /// The manifest as written at the end.
    pub manifest: Manifest,
    /// Whether the run was cut short by cancellation.
    pub interrupted: bool,
}

/// The queries of an experiment, in order, and what each dataset contributed.
pub fn plan_queries(
    loaded: &LoadedExperiment,
) -> Result<(Vec<Query>, Vec<DatasetInfo>), DatasetError> {
    let exp = &loaded.experiment;
    let mut queries = Vec::new();
    let mut infos = Vec::new();
    for d in &exp.datasets {
        let (q, info) = load_dataset(d.get_ref(), exp.seed)?;
        queries.extend(q);
        infos.push(info);
    }
    Ok((queries, infos))
}

/// Run every model of an experiment. Returns the experiment directory and one outcome per
/// model run (fewer if cancelled).
pub async fn profile(
    loaded: &LoadedExperiment,
    options: &ProfileOptions,
    observer: &dyn RunObserver,
    cancel: &Cancel,
) -> Result<(PathBuf, Vec<RunOutcome>), RunError> {
    let exp = &loaded.experiment;
    let exp_dir = match (&options.resume, &options.out_dir) {
        (Some(dir), _) => {
            if !dir.join("experiment.toml").is_file() {
                return Err(RunError::Resume {
                    dir: dir.clone(),
                    message: "not an ipw experiment directory (no experiment.toml)".into(),
                });
            }
            dir.clone()
        }
        (None, Some(dir)) => dir.clone(),
        (None, None) => exp.output.dir.join(format!(
            "{}-{}",
            sanitize(&exp.name),
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    std::fs::create_dir_all(&exp_dir).map_err(io_err(&exp_dir))?;
    if options.resume.is_none() {
        let copy = exp_dir.join("experiment.toml");
        std::fs::write(&copy, &loaded.source).map_err(io_err(&copy))?;
    }
    let (queries, datasets) = plan_queries(loaded)?;
    let graders = Arc::new(load_graders(loaded).await?);
    let mut outcomes = Vec::new();
    for model in &exp.models {
        if cancel.is_cancelled() {
            break;
        }
        let model = model.get_ref();
        let dir = exp_dir.join(sanitize(&model.name));
        let outcome = run_model(
            loaded,
            model,
            &queries,
            &datasets,
            &dir,
            options.resume.is_some(),
            &graders,
            observer,
            cancel,
        )
        .await?;
        observer.run_finished(&outcome);
        let interrupted = outcome.interrupted;
        outcomes.push(outcome);
        if interrupted {
            break;
        }
    }
    Ok((exp_dir, outcomes))
}

/// The experiment's graders (and the judge model, if one is configured).
async fn load_graders(loaded: &LoadedExperiment) -> Result<DatasetGraders, RunError> {
    let exp = &loaded.experiment;
    let judge = connect_judge(&exp.grading).await?;
    let (exp, base) = (exp.clone(), loaded.base_dir().to_path_buf());
    let graders = tokio::task::spawn_blocking(move || DatasetGraders::load(&exp, &base, judge))
        .await
        .expect("loading graders does not panic")?;
    Ok(graders)
}

/// A file-system-safe version of a name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn plan_hash(queries: &[Query]) -> String {
    let mut h = Sha256::new();
    for q in queries {
        h.update(q.id.as_bytes());
        h.update([0]);
        h.update(q.prompt_hash().as_bytes());
        h.update([b'\n']);
    }
    hex(&h.finalize())
}

async fn model_file(model: &ModelConfig) -> Result<Option<ModelFile>, RunError> {
    let (BackendKind::Embedded, Some(path)) = (model.backend, model.path.clone()) else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(io_err(&path))?;
        let mut h = Sha256::new();
        let size = std::io::copy(&mut file, &mut h).map_err(io_err(&path))?;
        Ok(Some(ModelFile {
            path: path.display().to_string(),
            size_bytes: size,
            sha256: hex(&h.finalize()),
        }))
    })
    .await
    .expect("hashing task does not panic")
}

#[allow(clippy::too_many_arguments)]
async fn run_model(
    loaded: &LoadedExperiment,
    model: &ModelConfig,
    queries: &[Query],
    datasets: &[DatasetInfo],
    dir: &Path,
    resume: bool,
    graders: &Arc<DatasetGraders>,
    observer: &dyn RunObserver,
    cancel: &Cancel,
) -> Result<RunOutcome, RunError> {
    let exp = &loaded.experiment;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let manifest_path = dir.join("manifest.json");
    let records_path = dir.join("records.jsonl");
    let plan_sha256 = plan_hash(queries);
    let file = model_file(model).await?;

    let (mut records, existing, mut manifest) = if resume && manifest_path.exists() {
        let manifest = Manifest::read(&manifest_path).map_err(io_err(&manifest_path))?;
        if manifest.plan_sha256 != plan_sha256 {
            return Err(RunError::Resume {
                dir: dir.to_path_buf(),
                message: "the experiment now selects different queries than when the run started; \
                          resume with the same experiment file and seed"
                    .into(),
            });
        }
        if manifest.model_file.as_ref().map(|f| &f.sha256) != file.as_ref().map(|f| &f.sha256) {
            return Err(RunError::Resume {
                dir: dir.to_path_buf(),
                message: format!(
                    "the model file of `{}` changed since the run started",
                    model.name
                ),
            });
        }
        let (records, existing) =
            RecordsFile::resume(&records_path).map_err(io_err(&records_path))?;
        (records, existing, manifest)
    } else {
        if records_path.exists() {
            return Err(RunError::Io {
                path: records_path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "records already exist here; use --resume to continue this run, or another --out",
                ),
            });
        }
        let records = RecordsFile::create(&records_path).map_err(io_err(&records_path))?;
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA,
            ipw_version: crate::IPW_VERSION.into(),
            git_commit: crate::GIT_COMMIT.into(),
            experiment_file: loaded.file.display().to_string(),
            experiment_sha256: hex(&Sha256::digest(loaded.source.as_bytes())),
            experiment: serde_json::to_value(exp).expect("experiment serialises"),
            model: model.clone(),
            model_file: file,
            backend: serde_json::Value::Null,
            datasets: datasets.to_vec(),
            planned: queries.len(),
            plan_sha256,
            host: HostInfo::detect(),
            started_at: chrono::Utc::now(),
            ended_at: None,
            status: "running".into(),
            error: None,
            sessions: Vec::new(),
        };
        (records, Default::default(), manifest)
    };
    let todo: Vec<(usize, &Query)> = queries
        .iter()
        .enumerate()
        .filter(|(_, q)| !existing.done.contains(&q.id))
        .collect();
    manifest.sessions.push(Session {
        started_at: chrono::Utc::now(),
        ended_at: None,
        recorded: 0,
        resumed_from: existing.done.len(),
        truncated_bytes: existing.truncated_bytes,
        model_load_s: None,
        startup_to_first_request_s: None,
        cpu_s: None,
        cpu_per_query_ms: None,
        peak_rss_bytes: None,
        baseline: None,
        samplers: Vec::new(),
        graders: graders.describe(),
    });
    let session_idx = manifest.sessions.len() - 1;
    manifest.status = "running".into();
    manifest
        .write(&manifest_path)
        .map_err(io_err(&manifest_path))?;
    observer.run_started(&model.name, dir, queries.len(), existing.done.len());

    let interrupted = if todo.is_empty() {
        false
    } else {
        let measured = measure_session(
            loaded,
            model,
            queries,
            &todo,
            dir,
            session_idx,
            &mut manifest,
            &mut records,
            graders,
            observer,
            cancel,
        )
        .await;
        match measured {
            Ok(interrupted) => interrupted,
            Err(e) => {
                // Leave a manifest that says what happened, not a run forever "running".
                manifest.status = "failed".into();
                manifest.error = Some(e.to_string());
                manifest.ended_at = Some(chrono::Utc::now());
                let _ = manifest.write(&manifest_path);
                return Err(e);
            }
        }
    };
    drop(records);
    let mut all = read_records(&records_path).map_err(io_err(&records_path))?;
    if manifest.sessions.iter().any(|s| !s.samplers.is_empty()) {
        let sessions: Vec<SessionPower> = manifest
            .sessions
            .iter()
            .map(|s| SessionPower {
                samplers: &s.samplers,
                baseline: s.baseline,
            })
            .collect();
        let power_log = dir.join("power.jsonl");
        attribute_records(&mut all, &power_log, &sessions, exp.energy.split)
            .map_err(io_err(&power_log))?;
        rewrite_records(&records_path, &all).map_err(io_err(&records_path))?;
    }
    let summary = summarize(
        &model.name,
        model.backend.as_str(),
        queries.len(),
        &all,
        exp.seed,
    );
    let summary_path = dir.join("summary.json");
    write_json_atomic(&summary_path, &summary).map_err(io_err(&summary_path))?;
    let now = chrono::Utc::now();
    manifest.ended_at = Some(now);
    manifest.status = if interrupted || all.len() < queries.len() {
        "interrupted"
    } else {
        "completed"
    }
    .into();
    manifest.sessions.last_mut().expect("pushed above").ended_at = Some(now);
    manifest
        .write(&manifest_path)
        .map_err(io_err(&manifest_path))?;
    Ok(RunOutcome {
        dir: dir.to_path_buf(),
        summary,
        manifest,
        interrupted,
    })
}

/// One session's measurement: samplers, model load, warm-up, idle baseline, the queries.
/// Returns whether it was interrupted.
#[allow(clippy::too_many_arguments)]
async fn measure_session(
    loaded: &LoadedExperiment,
    model: &ModelConfig,
    queries: &[Query],
    todo: &[(usize, &Query)],
    dir: &Path,
    session_idx: usize,
    manifest: &mut Manifest,
    records: &mut RecordsFile,
    graders: &Arc<DatasetGraders>,
    observer: &dyn RunObserver,
    cancel: &Cancel,
) -> Result<bool, RunError> {
    let exp = &loaded.experiment;
    // Samplers first: a sampler that cannot open fails the run before a model is loaded, and
    // the timeline then covers model load and warm-up too.
    let samplers: Vec<_> = exp.samplers.iter().map(|s| s.get_ref().clone()).collect();
    let power = if samplers.is_empty() {
        None
    } else {
        observer.phase(&model.name, "starting samplers");
        Some(PowerSession::start(
            &samplers,
            &exp.plugin_dirs,
            dir,
            session_idx,
        )?)
    };
    observer.phase(&model.name, "loading model");
    let load_started = Instant::now();
    let backend = backend::connect(model, exp.run.concurrency).await?;
    let session = manifest.sessions.last_mut().expect("pushed above");
    if model.backend == BackendKind::Embedded {
        session.model_load_s = Some(load_started.elapsed().as_secs_f64());
    }
    manifest.backend = backend.describe();
    let seed = exp.generation.seed.unwrap_or(exp.seed);
    let warmups = exp.run.warmup_queries.min(queries.len());
    if warmups > 0 {
        observer.phase(&model.name, "warming up");
    }
    let mut first_request: Option<Instant> = None;
    for q in queries.iter().take(warmups) {
        if cancel.is_cancelled() {
            break;
        }
        first_request.get_or_insert_with(Instant::now);
        if let Err(e) = backend.generate(&request_for(exp, q, seed)).await {
            tracing::warn!(model = %model.name, "warm-up query failed: {e}");
        }
    }
    if let Some(p) = &power {
        if exp.energy.baseline_s > 0.0 && !cancel.is_cancelled() {
            observer.phase(&model.name, "measuring idle baseline");
            let from_s = clock::now_s();
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs_f64(exp.energy.baseline_s)) => {}
                _ = cancel.cancelled() => {}
            }
            manifest.sessions[session_idx].baseline = Some(Baseline {
                from_s,
                to_s: clock::now_s(),
            });
        }
        // Let every channel take a reading inside the baseline's end before queries start.
        tokio::time::sleep(p.max_interval().min(std::time::Duration::from_millis(200))).await;
    }
    let marker = power.as_ref().map(PowerSession::marker).unwrap_or_default();
    let (cpu_before, _) = self_usage();
    let (n, first) = dispatch(
        &backend,
        exp,
        model,
        todo,
        seed,
        session_idx,
        &marker,
        records,
        graders,
        observer,
        cancel,
    )
    .await?;
    let (cpu_after, peak_rss) = self_usage();
    if let Some(p) = power {
        // One more background reading after the last window ends, then stop.
        tokio::time::sleep(p.max_interval()).await;
        manifest.sessions[session_idx].samplers = tokio::task::spawn_blocking(move || p.stop())
            .await
            .expect("stopping samplers does not panic");
    }
    let first_request = first_request.or(first);
    let session = manifest.sessions.last_mut().expect("pushed above");
    session.recorded = n;
    session.startup_to_first_request_s =
        first_request.map(|t| (t - clock::process_start()).as_secs_f64());
    session.cpu_s = Some(cpu_after - cpu_before);
    session.cpu_per_query_ms = (n > 0).then(|| (cpu_after - cpu_before) * 1000.0 / n as f64);
    session.peak_rss_bytes = Some(peak_rss);
    Ok(cancel.is_cancelled())
}

/// Replace `records.jsonl` with `records` (temp file + rename: never half a file).
pub fn rewrite_records(path: &Path, records: &[Record]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.part");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(std::io::Error::other)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    std::io::Write::flush(&mut out)?;
    out.get_ref().sync_all()?;
    std::fs::rename(&tmp, path)
}

fn request_for(exp: &crate::config::Experiment, q: &Query, seed: u64) -> GenRequest {
    let g = &exp.generation;
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &g.system_prompt {
        messages.push(Message {
            role: "system".into(),
            content: system.clone(),
        });
    }
    messages.push(Message {
        role: "user".into(),
        content: q.prompt.clone(),
    });
    GenRequest {
        messages,
        max_tokens: g.max_tokens,
        temperature: g.temperature,
        seed,
        stop: g.stop.clone(),
    }
}

/// Send the queries with at most `run.concurrency` in flight; write each record as it finishes.
/// Returns how many were recorded and when the first request went out.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    backend: &Arc<dyn Backend>,
    exp: &crate::config::Experiment,
    model: &ModelConfig,
    todo: &[(usize, &Query)],
    seed: u64,
    session: usize,
    marker: &EdgeMarker,
    records: &mut RecordsFile,
    graders: &Arc<DatasetGraders>,
    observer: &dyn RunObserver,
    cancel: &Cancel,
) -> Result<(usize, Option<Instant>), RunError> {
    let clock = RunClock::start();
    let mut pending = todo.iter();
    let mut tasks: JoinSet<Record> = JoinSet::new();
    let mut written = 0;
    let mut first_request = None;
    loop {
        while tasks.len() < exp.run.concurrency && !cancel.is_cancelled() {
            let Some(&(index, q)) = pending.next() else {
                break;
            };
            let (backend, req, q, name) = (
                backend.clone(),
                request_for(exp, q, seed),
                q.clone(),
                model.name.clone(),
            );
            let marker = marker.clone();
            let graders = graders.clone();
            first_request.get_or_insert_with(Instant::now);
            tasks.spawn(async move {
                let started_at = chrono::Utc::now();
                marker.mark();
                let start = Instant::now();
                let result = backend.generate(&req).await;
                marker.mark();
                let mut record = build_record(
                    &q,
                    index,
                    session,
                    &name,
                    backend.kind(),
                    started_at,
                    start,
                    clock,
                    result,
                );
                // Grading is outside the window (it ended with the last byte) and off the
                // async workers: a grader call may take up to its deadline.
                if !graders.is_empty() {
                    record = tokio::task::spawn_blocking(move || {
                        graders.grade_record(&mut record);
                        record
                    })
                    .await
                    .expect("grading never panics: traps are errors");
                }
                record
            });
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            joined = tasks.join_next() => {
                match joined {
                    Some(Ok(record)) => {
                        records.append(&record).map_err(io_err(records.path()))?;
                        written += 1;
                        observer.recorded(&record);
                    }
                    Some(Err(e)) if e.is_panic() => tracing::error!("a query task panicked: {e}"),
                    _ => {}
                }
            }
            _ = cancel.cancelled() => {
                // Queries in flight are dropped unrecorded; a resume redoes them.
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    Ok((written, first_request))
}

#[allow(clippy::too_many_arguments)]
fn build_record(
    q: &Query,
    index: usize,
    session: usize,
    model: &str,
    backend: BackendKind,
    started_at: chrono::DateTime<chrono::Utc>,
    start: Instant,
    clock: RunClock,
    result: Result<Generation, BackendError>,
) -> Record {
    let mut r = Record {
        schema: RECORD_SCHEMA,
        query_id: q.id.clone(),
        index,
        session,
        dataset: q.dataset.clone(),
        subject: q.subject.clone(),
        category: q.category.clone(),
        prompt_hash: q.prompt_hash(),
        prompt: q.prompt.clone(),
        answers: q.answers.clone(),
        choices: q.choices.clone(),
        model: model.to_string(),
        backend: backend.as_str().to_string(),
        response: None,
        input_tokens: None,
        output_tokens: None,
        tokens_estimated: false,
        token_source: None,
        ttft_s: None,
        latency_s: 0.0,
        decode_tps: None,
        finish_reason: None,
        attempts: 1,
        started_at,
        window: Window {
            start_s: clock.at(start),
            end_s: clock.at(start),
        },
        error: None,
        grade: None,
        grade_history: Vec::new(),
        energy: None,
    };
    match result {
        Ok(g) => {
            let latency = (g.finished_at - start).as_secs_f64();
            let ttft = g.first_token_at.map(|t| (t - start).as_secs_f64());
            r.window.end_s = clock.at(g.finished_at);
            r.latency_s = latency;
            r.ttft_s = ttft;
            r.input_tokens = g.input_tokens;
            r.output_tokens = g.output_tokens;
            r.tokens_estimated = g.token_source.is_estimate();
            r.token_source = Some(g.token_source);
            r.decode_tps = decode_tps(g.output_tokens, ttft, latency);
            r.finish_reason = g.finish_reason;
            r.attempts = g.attempts;
            r.response = Some(g.text);
        }
        Err(e) => {
            let end = Instant::now();
            r.window.end_s = clock.at(end);
            r.latency_s = (end - start).as_secs_f64();
            r.attempts = e.attempts;
            r.error = Some(QueryError {
                kind: e.kind.as_str().into(),
                message: e.message,
            });
        }
    }
    r
}
