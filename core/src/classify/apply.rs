//! `ipw classify`: give every record of a run a `domain` from a classifier, under the run lock.
//! The previous domain moves to `domain_history`; measured fields are never touched; records
//! are rewritten atomically.

use super::judge_cache::{judge_identity, JudgeCache};
use super::taxonomy::Taxonomy;
use super::wasm::{ClassifyQuery, WasmClassifier};
use super::{builtin, ClassifyError};
use crate::analysis::{GroupedQuality, Summary};
use crate::config::GradingConfig;
use crate::records::{DomainRecord, Record, RunDir, RunLock};
use crate::sandbox::{Host, JudgeFn, SandboxError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Queries per sandboxed call for table-driven classifiers: large enough that reading the
/// tables once per batch costs nothing per query, small enough that a batch that fails and is
/// retried one query at a time costs little.
pub const DEFAULT_BATCH: usize = 256;
/// Queries per call for the `judge` classifier: each waits on a model, and smaller batches
/// keep every worker (and the judge's concurrency) busy.
pub const JUDGE_BATCH: usize = 4;

/// What to classify with.
#[derive(Clone)]
pub struct ClassifySpec {
    /// A built-in classifier name or a `.wasm` path.
    pub classifier: String,
    /// Its params (a JSON object); `None` = `{}`.
    pub params: Option<serde_json::Value>,
    /// The labels it may give.
    pub taxonomy: Taxonomy,
    /// Queries per call; `None` = [`DEFAULT_BATCH`] ([`JUDGE_BATCH`] for `judge`).
    pub batch: Option<usize>,
}

/// How a run's queries were labelled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassifyReport {
    /// The run directory.
    pub run: String,
    /// Records labelled.
    pub records: usize,
    /// Records per label code, in taxonomy order, labels with none left out.
    pub per_label: Vec<(String, usize)>,
    /// Records the classifier could not place (no error).
    pub unlabelled: usize,
    /// Records on which the classifier failed (also unlabelled).
    pub failed: usize,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// Judge prompts answered from the cache / asked of the judge.
    pub judge_cached: u64,
    /// Judge prompts asked.
    pub judge_asked: u64,
}

/// A classifier ready for any number of runs: loaded once, its judge (if any) connected once
/// with the cache in front.
pub struct Classifying {
    spec: ClassifySpec,
    classifier: WasmClassifier,
    params_text: String,
    judge_name: Option<String>,
    cache: Option<Arc<JudgeCache>>,
}

impl Classifying {
    /// Load the classifier of `spec`. `grading` is the `[grading]` in force (the first run's
    /// with `spec.grading` over it): its limits apply per query and its judge backs `judge`.
    pub async fn load(spec: ClassifySpec, grading: &GradingConfig) -> Result<Self, ClassifyError> {
        // The judge is connected only when the classifier might ask it: the built-in `judge`,
        // or a third-party component (the host cannot know whether it imports `judge`).
        let may_judge = spec.classifier == "judge" || builtin::wasm(&spec.classifier).is_none();
        let (mut judge, mut judge_name, mut cache): (Option<JudgeFn>, _, _) = (None, None, None);
        if may_judge {
            if let Some(model) = &grading.judge {
                if let Some(raw) = crate::grade::connect_judge(grading).await? {
                    let dir = JudgeCache::default_dir()
                        .unwrap_or_else(|| std::env::temp_dir().join("ipw-judge"));
                    let c = JudgeCache::open(&dir, &judge_identity(model)).map_err(|e| {
                        ClassifyError::Input(format!(
                            "cannot open the judge cache in {}: {e}",
                            dir.display()
                        ))
                    })?;
                    judge = Some(c.wrap(raw));
                    judge_name = Some(model.name.clone());
                    cache = Some(c);
                }
            }
        }
        if spec.classifier == "judge" && judge.is_none() {
            return Err(ClassifyError::Input(
                "the judge classifier asks a judge model: the run's manifest names none ([grading.judge]); name one with --judge-config FILE.toml".into(),
            ));
        }
        let limits = grading.limits();
        let name = spec.classifier.clone();
        let classifier = tokio::task::spawn_blocking(move || {
            let host = Host::new(Host::default_cache_dir())?;
            load_classifier(&host, &name, limits, judge)
        })
        .await
        .expect("loading a classifier does not panic")?;
        let params = spec.params.clone().unwrap_or_else(|| serde_json::json!({}));
        Ok(Self {
            params_text: params.to_string(),
            spec,
            classifier,
            judge_name,
            cache,
        })
    }

    /// The loaded classifier.
    pub fn classifier(&self) -> &WasmClassifier {
        &self.classifier
    }

    fn blank(&self) -> DomainRecord {
        let params = self
            .spec
            .params
            .clone()
            .filter(|p| p.as_object().is_none_or(|o| !o.is_empty()));
        DomainRecord {
            label: None,
            confidence: None,
            explanation: None,
            error: None,
            classifier: self.classifier.id.clone(),
            wasm_sha256: self.classifier.sha256.clone(),
            taxonomy: self.spec.taxonomy.name.clone(),
            taxonomy_sha256: self.spec.taxonomy.sha256.clone(),
            params,
            judge: self.judge_name.clone(),
        }
    }

    /// Label `records` in place (the old domain to the history), on every core. Blocking.
    pub fn label_records(&self, records: &mut [Record]) {
        let batch = self
            .spec
            .batch
            .unwrap_or(if self.spec.classifier == "judge" {
                JUDGE_BATCH
            } else {
                DEFAULT_BATCH
            });
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunks: Vec<&mut [Record]> = records.chunks_mut(batch.max(1)).collect();
        let next = std::sync::Mutex::new(chunks.into_iter());
        let blank = self.blank();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let Some(chunk) = next.lock().expect("work lock").next() else {
                        return;
                    };
                    let queries: Vec<ClassifyQuery> = chunk.iter().map(query_of).collect();
                    let verdicts =
                        self.classifier
                            .classify(&queries, &self.spec.taxonomy, &self.params_text);
                    for (r, v) in chunk.iter_mut().zip(verdicts) {
                        let domain = match v {
                            Ok(v) => DomainRecord {
                                label: v.label,
                                confidence: v.confidence,
                                explanation: v.explanation,
                                ..blank.clone()
                            },
                            Err(e) => DomainRecord {
                                error: Some(e),
                                ..blank.clone()
                            },
                        };
                        if let Some(old) = r.domain.replace(domain) {
                            r.domain_history.push(old);
                        }
                    }
                });
            }
        });
    }

    /// Classify every record of the run in `dir` and rewrite its records, [`STREAM_BATCH`]
    /// records at a time (memory for one batch, whatever the run's size).
    pub async fn classify_run(
        self: &Arc<Self>,
        dir: &Path,
    ) -> Result<ClassifyReport, ClassifyError> {
        let lock = RunDir::new(dir).lock()?;
        let before = self.cache.as_ref().map_or((0, 0), |c| c.counts());
        let (this, path) = (self.clone(), dir.to_path_buf());
        let tally = tokio::task::spawn_blocking(move || {
            let run = RunDir::new(&path);
            let mut tally = Tally::default();
            let mut by_domain = GroupedQuality::default();
            run.rewrite_records_in_batches(&lock, STREAM_BATCH, |records| {
                this.label_records(records);
                tally.add(records, &this.spec.taxonomy);
                records.iter().for_each(|r| by_domain.push_by_domain(r));
            })?;
            refresh_summary(&run, &lock, by_domain)?;
            Ok::<_, ClassifyError>(tally)
        })
        .await
        .expect("classifying does not panic: traps are errors")?;
        let after = self.cache.as_ref().map_or((0, 0), |c| c.counts());
        Ok(ClassifyReport {
            run: dir.display().to_string(),
            records: tally.records,
            per_label: tally
                .per_label
                .into_iter()
                .map(|(i, n)| (self.spec.taxonomy.labels[i].code.clone(), n))
                .collect(),
            unlabelled: tally.unlabelled,
            failed: tally.failed,
            first_error: tally.first_error,
            judge_cached: after.0 - before.0,
            judge_asked: after.1 - before.1,
        })
    }
}

/// Put the new per-domain quality into the run's `summary.json` (the rest of it is unchanged:
/// labels touch no measured field nor any grade). A run without a summary, or whose summary
/// cannot be read, is left for `ipw merge`/`ipw grade` to summarise in full.
fn refresh_summary(
    run: &RunDir,
    lock: &RunLock,
    by_domain: GroupedQuality,
) -> Result<(), ClassifyError> {
    let path = run.summary_path();
    let Some(mut summary) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Summary>(&b).ok())
    else {
        tracing::warn!(
            "{}: no readable summary to add the domains to",
            path.display()
        );
        return Ok(());
    };
    let seed = run.read_manifest()?.seed();
    if let Some(q) = summary.quality.as_mut() {
        q.by_domain = by_domain.finish(seed);
    }
    run.write_summary(lock, &summary)?;
    Ok(())
}

/// Records per batch of [`Classifying::classify_run`]: large enough that every core has
/// classifier batches to work on, small enough that a run of any size fits in memory.
pub const STREAM_BATCH: usize = 65_536;

/// Counts over the batches of a run.
#[derive(Default)]
struct Tally {
    records: usize,
    /// By label index in the taxonomy.
    per_label: BTreeMap<usize, usize>,
    unlabelled: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, records: &[Record], taxonomy: &Taxonomy) {
        self.records += records.len();
        for d in records.iter().filter_map(|r| r.domain.as_ref()) {
            match (&d.label, &d.error) {
                (Some(l), _) => {
                    // Labels are checked against the taxonomy before they are kept.
                    if let Some(i) = taxonomy.index(l) {
                        *self.per_label.entry(i).or_default() += 1;
                    }
                }
                (None, Some(e)) => {
                    self.failed += 1;
                    self.first_error.get_or_insert_with(|| e.clone());
                }
                (None, None) => self.unlabelled += 1,
            }
        }
    }
}

/// What a classifier sees of a record: the query and where it comes from, never the response
/// or the grade.
pub fn query_of(r: &Record) -> ClassifyQuery {
    ClassifyQuery {
        id: r.query_id.clone(),
        prompt: r.prompt.clone(),
        dataset: r.dataset.clone(),
        subject: r.subject.clone(),
        category: r.category.clone(),
    }
}

/// Load classifier `name`: a built-in, else a `.wasm` file. The id records carry is the
/// built-in name or the file name.
pub fn load_classifier(
    host: &Host,
    name: &str,
    limits: crate::sandbox::Limits,
    judge: Option<JudgeFn>,
) -> Result<WasmClassifier, SandboxError> {
    if let Some(bytes) = builtin::wasm(name) {
        return WasmClassifier::load(host, name, bytes, limits, judge);
    }
    let path = Path::new(name);
    let bytes = std::fs::read(path).map_err(|e| SandboxError::Load {
        kind: "classifier",
        id: name.to_string(),
        message: format!(
            "not a built-in classifier ({}) and cannot read {}: {e}",
            builtin::describe()
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            path.display()
        ),
    })?;
    let id = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    WasmClassifier::load(host, &id, &bytes, limits, judge)
}
