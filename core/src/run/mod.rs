//! Running an experiment: one run per model, each a directory with `manifest.json`,
//! `records.jsonl` and `summary.json` (the format lives in [`crate::records`]).
//!
//! The runner loads the model (outside any window), sends warm-up queries that are not
//! recorded, then dispatches the plan with bounded concurrency. Each finished query becomes a
//! [`Record`] appended to disk at once; a failed query is recorded with its error and the run
//! goes on. On cancel (Ctrl-C) in-flight queries are dropped unrecorded (a resume redoes them)
//! and everything already measured stays on disk.
//!
//! - [`inputs`]: the experiment file and the datasets and graders it names, checked.
//! - [`plan`]: which queries, where results go, the plan's identity.
//! - [`resume`]: opening a run directory, new or resumed, and refusing a resume whose settings
//!   changed.
//! - [`session`]: samplers, model load, warm-up, idle baseline, then dispatch.
//! - [`dispatch`]: the queries themselves, each recorded the moment it finishes.
//! - [`finish`]: attribution, summary and the manifest's final status.

mod cancel;
mod dispatch;
mod finish;
mod import;
mod inputs;
mod plan;
mod resume;
mod session;

pub use cancel::Cancel;
pub use finish::{reattribute, Reattributed};
pub use import::import_trace;
pub use inputs::{check_inputs, load_experiment};
pub use plan::plan_queries;

use crate::analysis::Summary;
use crate::backend;
use crate::classify::{ClassifyError, ClassifySpec, Classifying};
use crate::config::{LoadedExperiment, ModelConfig};
use crate::dataset::{DatasetError, DatasetInfo, Query};
use crate::grade::{connect_judge, DatasetGraders};
use crate::records::{sanitize, Manifest, Record, RunDir, Session, StoreError};
use crate::scaleout::{directory, split, ShardError, ShardRequest, Split};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A run that could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A dataset could not be loaded.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The backend could not be set up.
    #[error(transparent)]
    Backend(#[from] backend::BackendSetupError),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The run directory could not be read, written or locked.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A grader could not be loaded.
    #[error(transparent)]
    Grader(#[from] crate::sandbox::SandboxError),
    /// The `[classification]` classifier or taxonomy could not be loaded, or labelling failed.
    #[error("[classification]: {0}")]
    Classify(#[from] ClassifyError),
    /// A power sampler could not be used.
    #[error(transparent)]
    Sampler(#[from] crate::power::loader::SamplerError),
    /// `--shard` cannot be used as given, or the directory was split another way.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The experiment's `[footprint]` does not resolve.
    #[error("{}: [footprint] {message}", file.display())]
    Footprint {
        /// The experiment file.
        file: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// `--require-idle` and the machine is busy.
    #[error("the machine is not idle (--require-idle): {0}")]
    Busy(String),
    /// A managed model server could not start, was never ready, or died.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// An external trace cannot be added to the run (`ipw attribute --trace`).
    #[error("cannot import a trace into {}: {message}", dir.display())]
    Import {
        /// The run directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
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
    /// With `resume`: measure failed queries again; their old records move to
    /// `records.retried.jsonl`.
    pub retry_failed: bool,
    /// Refuse to start a session while other processes keep the machine busy.
    pub require_idle: bool,
    /// Measure one shard of the plan (`--shard`): into `<out>/shards/<i>-of-<n>@<host>/`,
    /// continuing that directory when it exists.
    pub shard: Option<ShardRequest>,
}

/// Progress callbacks, so the CLI can draw a progress bar without the runner printing.
pub trait RunObserver: Send + Sync {
    /// A model's run begins: `total` planned queries, `done` already on disk.
    fn run_started(&self, _model: &str, _dir: &Path, _total: usize, _done: usize) {}
    /// The model is being loaded or warmed up.
    fn phase(&self, _model: &str, _what: &str) {}
    /// A record was written.
    fn recorded(&self, _record: &Record) {}
    /// A session's samplers are about to start: what to show their readings to as they are
    /// taken (live metrics), if anything.
    fn reading_tap(&self) -> Option<std::sync::Arc<dyn crate::records::ReadingTap>> {
        None
    }
    /// A session's samplers started; they are described.
    fn sampling(&self, _model: &str, _samplers: &[crate::records::SamplerInfo]) {}
    /// A model's run ended.
    fn run_finished(&self, _outcome: &RunOutcome) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl RunObserver for Quiet {}

/// Several observers, each told everything in turn (the first tap offered is used).
pub struct Observers<'a>(pub Vec<&'a dyn RunObserver>);

impl RunObserver for Observers<'_> {
    fn run_started(&self, model: &str, dir: &Path, total: usize, done: usize) {
        self.0
            .iter()
            .for_each(|o| o.run_started(model, dir, total, done));
    }
    fn phase(&self, model: &str, what: &str) {
        self.0.iter().for_each(|o| o.phase(model, what));
    }
    fn recorded(&self, record: &Record) {
        self.0.iter().for_each(|o| o.recorded(record));
    }
    fn reading_tap(&self) -> Option<std::sync::Arc<dyn crate::records::ReadingTap>> {
        self.0.iter().find_map(|o| o.reading_tap())
    }
    fn sampling(&self, model: &str, samplers: &[crate::records::SamplerInfo]) {
        self.0.iter().for_each(|o| o.sampling(model, samplers));
    }
    fn run_finished(&self, outcome: &RunOutcome) {
        self.0.iter().for_each(|o| o.run_finished(outcome));
    }
}

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

/// An embedded model that asks for a GPU this build or machine lacks is refused before the first
/// model is measured, not when its turn comes after hours of other models.
async fn refuse_missing_gpus(exp: &crate::config::Experiment) -> Result<(), RunError> {
    for model in &exp.models {
        let model = model.get_ref().clone();
        if model.backend != crate::config::BackendKind::Embedded {
            continue;
        }
        let placed = tokio::task::spawn_blocking(move || backend::place(&model))
            .await
            .map_err(|e| backend::BackendSetupError {
                model: String::new(),
                message: e.to_string(),
            })??;
        tracing::info!(rule = %placed.rule, devices = placed.devices.len(), "embedded placement");
    }
    Ok(())
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
    let (queries, datasets) = plan_queries(loaded)?;
    if let Some(f) = &exp.footprint {
        // Refused before anything is measured, rather than when the runs are analysed.
        crate::footprint::Footprints::resolve(f, loaded.base_dir()).map_err(|message| {
            RunError::Footprint {
                file: loaded.file.clone(),
                message,
            }
        })?;
    }
    refuse_missing_gpus(exp).await?;
    let layout = match options.shard {
        None => unsharded_layout(loaded, options)?,
        Some(request) => sharded_layout(loaded, options, &queries, request)?,
    };
    if options.retry_failed && !layout.resume {
        tracing::warn!("--retry-failed: nothing to retry in a new run");
    }
    let graders = Arc::new(load_graders(loaded).await?);
    let classifying = load_classifying(exp).await?;
    let mut outcomes = Vec::new();
    for (m, model) in exp.models.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        let model = model.get_ref();
        let dir_name = sanitize(&model.name);
        let run = RunDir::new(layout.dir.join(&dir_name));
        let (model_queries, shard) = match &layout.shard {
            None => (queries.clone(), None),
            Some(s) => {
                let mine: Vec<Query> = s
                    .split
                    .queries_of(m, s.index)
                    .into_iter()
                    .map(|i| queries[i].clone())
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                (mine, Some(s.run_of(&dir_name)?))
            }
        };
        let outcome = run_model(
            loaded,
            model,
            &model_queries,
            &datasets,
            &run,
            options,
            layout.resume,
            shard,
            &graders,
            classifying.as_ref(),
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
    Ok((layout.dir, outcomes))
}

/// Where an experiment's runs go, and whether they continue earlier ones.
struct Layout {
    /// The directory holding one run directory per model.
    dir: PathBuf,
    /// Continue the runs found there.
    resume: bool,
    /// The shard this process measures, when split.
    shard: Option<ShardLayout>,
}

/// One shard's place in a split experiment.
struct ShardLayout {
    index: usize,
    split: Split,
    info: crate::records::ShardInfo,
    /// Directories of the same shard measured on other hosts (a resubmission that landed
    /// elsewhere): what they recorded is not measured again.
    siblings: Vec<PathBuf>,
}

impl ShardLayout {
    /// This shard's record for the run of model directory `dir_name`, with the queries its
    /// siblings already measured.
    fn run_of(&self, dir_name: &str) -> Result<ShardRun, RunError> {
        let mut info = self.info.clone();
        let mut elsewhere = HashSet::new();
        for sib in &self.siblings {
            let run = RunDir::new(sib.join(dir_name));
            if !run.records_path().is_file() {
                continue;
            }
            let ids: Vec<String> = run
                .read_records()?
                .records
                .into_iter()
                .map(|r| r.query_id)
                .collect();
            let name = sib
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            info.measured_elsewhere.insert(name, ids.len());
            elsewhere.extend(ids);
        }
        Ok(ShardRun { info, elsewhere })
    }
}

/// What a model's run in a shard needs to know.
struct ShardRun {
    info: crate::records::ShardInfo,
    elsewhere: HashSet<String>,
}

/// The experiment directory of an unsharded run: `--resume`, `--out`, or a new timestamped one.
fn unsharded_layout(
    loaded: &LoadedExperiment,
    options: &ProfileOptions,
) -> Result<Layout, RunError> {
    let exp = &loaded.experiment;
    let dir = match (&options.resume, &options.out_dir) {
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
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    if options.resume.is_none() {
        let copy = dir.join("experiment.toml");
        crate::records::write_atomic(&copy, loaded.source.as_bytes()).map_err(io_err(&copy))?;
    }
    Ok(Layout {
        dir,
        resume: options.resume.is_some(),
        shard: None,
    })
}

/// A shard's experiment directory, `<out>/shards/<i>-of-<n>@<host>/`: settled against the
/// plan and count the experiment directory fixes, continued when it exists (a resubmitted
/// task), new otherwise. `--out` (or `--resume`) names the experiment directory shared by all
/// shards; without either it is `<output.dir>/<name>` (no timestamp: every task must agree).
fn sharded_layout(
    loaded: &LoadedExperiment,
    options: &ProfileOptions,
    queries: &[Query],
    request: ShardRequest,
) -> Result<Layout, RunError> {
    let exp = &loaded.experiment;
    let top = options
        .resume
        .clone()
        .or_else(|| options.out_dir.clone())
        .unwrap_or_else(|| exp.output.dir.join(sanitize(&exp.name)));
    let plan_text = directory::plan_file_text(queries);
    let count = directory::settle_directory(&top, &plan_text, request)?;
    let split = split::split(queries, exp.models.len(), exp.generation.max_tokens, count);
    let host = directory::host_label();
    let name = directory::shard_dir_name(request.index, count, &host);
    let shards = top.join(directory::SHARDS_DIR);
    let dir = shards.join(&name);
    let resume = dir.join("experiment.toml").is_file();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    if !resume {
        let copy = dir.join("experiment.toml");
        crate::records::write_atomic(&copy, loaded.source.as_bytes()).map_err(io_err(&copy))?;
    }
    let top_copy = top.join("experiment.toml");
    if !top_copy.exists() {
        crate::records::write_atomic(&top_copy, loaded.source.as_bytes())
            .map_err(io_err(&top_copy))?;
    }
    let mut siblings: Vec<PathBuf> = std::fs::read_dir(&shards)
        .map_err(io_err(&shards))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n != name
                && directory::parse_shard_dir_name(&n)
                    .is_some_and(|(i, c, _)| i == request.index && c == count)
        })
        .map(|e| e.path())
        .collect();
    siblings.sort();
    tracing::info!(
        "shard {}/{count} ({:?} split, {} queries of {} x {} models) into {}{}",
        request.index,
        split.method,
        split.units_of(request.index),
        queries.len(),
        exp.models.len(),
        dir.display(),
        if resume { " (continuing)" } else { "" }
    );
    let info = crate::records::ShardInfo {
        index: request.index,
        count,
        method: split.method,
        plan_sha256: directory::plan_file_sha256(&plan_text),
        experiment_sha256: crate::dataset::hex(&sha2::Digest::finalize(
            <sha2::Sha256 as sha2::Digest>::new_with_prefix(loaded.source.as_bytes()),
        )),
        host,
        work_tokens: split.work[request.index],
        measured_elsewhere: Default::default(),
    };
    Ok(Layout {
        dir,
        resume,
        shard: Some(ShardLayout {
            index: request.index,
            split,
            info,
            siblings,
        }),
    })
}

/// The experiment's `[classification]`, loaded before anything is measured: a classifier or
/// taxonomy that cannot load is refused now, not after hours of measuring.
async fn load_classifying(
    exp: &crate::config::Experiment,
) -> Result<Option<Arc<Classifying>>, RunError> {
    let Some(c) = &exp.classification else {
        return Ok(None);
    };
    let taxonomy = crate::classify::Taxonomy::load_or_default(c.taxonomy.as_deref())
        .map_err(ClassifyError::from)?;
    let spec = ClassifySpec {
        classifier: c.classifier.clone(),
        params: c.params.clone(),
        taxonomy,
        batch: c.batch,
    };
    Ok(Some(Arc::new(Classifying::load(spec, &exp.grading).await?)))
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

/// One model's run: open (or resume) its directory, measure what is not on disk yet, finish.
#[allow(clippy::too_many_arguments)]
async fn run_model(
    loaded: &LoadedExperiment,
    model: &ModelConfig,
    queries: &[Query],
    datasets: &[DatasetInfo],
    run: &RunDir,
    options: &ProfileOptions,
    resume: bool,
    shard: Option<ShardRun>,
    graders: &Arc<DatasetGraders>,
    classifying: Option<&Arc<Classifying>>,
    observer: &dyn RunObserver,
    cancel: &Cancel,
) -> Result<RunOutcome, RunError> {
    let exp = &loaded.experiment;
    let file = plan::model_file(model).await?;
    let opened = resume::open_run(
        loaded,
        model,
        queries,
        datasets,
        run,
        resume,
        options.retry_failed,
        graders,
        file,
    )?;
    let resume::OpenedRun {
        lock,
        mut writer,
        mut manifest,
        existing,
        rejected_lines,
    } = opened;
    if let Some(f) = &exp.footprint {
        crate::footprint::keep_series(f, run.path())
            .map_err(|(path, source)| RunError::Io { path, source })?;
    }
    let elsewhere = shard.as_ref().map_or(0, |s| {
        queries
            .iter()
            .filter(|q| s.elsewhere.contains(&q.id))
            .count()
    });
    if let Some(s) = &shard {
        if elsewhere > 0 {
            tracing::info!(
                "{elsewhere} queries of this shard were measured in another directory of it \
                 ({:?}); not measuring them again",
                s.info.measured_elsewhere
            );
        }
        manifest.shard = Some(s.info.clone());
    }
    let mut done: HashSet<&str> = existing.iter().map(|r| r.query_id.as_str()).collect();
    if let Some(s) = &shard {
        done.extend(s.elsewhere.iter().map(String::as_str));
    }
    let todo: Vec<(usize, &Query)> = queries
        .iter()
        .enumerate()
        .filter(|(_, q)| !done.contains(q.id.as_str()))
        .collect();
    manifest.sessions.push(Session {
        started_at: chrono::Utc::now(),
        ended_at: None,
        recorded: 0,
        resumed_from: existing.len(),
        truncated_bytes: 0,
        model_load_s: None,
        startup_to_first_request_s: None,
        cpu_s: None,
        cpu_per_query_ms: None,
        peak_rss_bytes: None,
        baseline: None,
        samplers: Vec::new(),
        graders: graders.describe(),
        rejected_lines,
        clock: Some(crate::records::clock::ClockOrigin::now()),
        preflight_load: None,
        server: None,
        settle: Vec::new(),
    });
    let session_idx = manifest.sessions.len() - 1;
    manifest.status = "running".into();
    run.write_manifest(&lock, &manifest)?;
    observer.run_started(&model.name, run.path(), queries.len(), done.len());

    let interrupted = if todo.is_empty() {
        false
    } else {
        let ctx = session::SessionCtx {
            loaded,
            model,
            queries,
            run,
            lock: &lock,
            graders,
            observer,
            cancel,
            require_idle: options.require_idle,
        };
        match ctx
            .measure(&todo, session_idx, &mut manifest, &mut writer)
            .await
        {
            Ok(interrupted) => interrupted,
            Err(e) => {
                // Leave a manifest that says what happened, not a run forever "running".
                manifest.status = "failed".into();
                manifest.error = Some(e.to_string());
                manifest.ended_at = Some(chrono::Utc::now());
                let _ = run.write_manifest(&lock, &manifest);
                return Err(e);
            }
        }
    };
    drop(writer);
    finish::grade_ungraded(run, &lock, graders).await?;
    let mut records = finish::attribute_run(run, &lock, &manifest, exp.energy.split)?;
    if let Some(c) = classifying {
        records = finish::classify_unlabelled(run, &lock, c, records).await?;
    }
    let summary = finish::write_summary(run, &lock, &manifest, &records, exp.seed)?;
    finish::close_manifest(
        run,
        &lock,
        &mut manifest,
        interrupted,
        records.len() + elsewhere,
    )?;
    Ok(RunOutcome {
        dir: run.path().to_path_buf(),
        summary,
        manifest,
        interrupted,
    })
}
