//! Graders for a run: one per dataset (its `grader`, or the built-in default), loaded once,
//! and the `judge` host call backed by a configured model.

use super::{builtin, Query, WasmGrader};
use crate::backend::{Backend, GenRequest, Message};
use crate::config::{Experiment, GradingConfig};
use crate::records::{GradeRecord, GraderInfo, Record};
use crate::sandbox::{Host, JudgeFn, JudgeFuture, Limits, SandboxError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The graders of an experiment, by dataset label.
#[derive(Clone, Default)]
pub struct DatasetGraders {
    by_dataset: HashMap<String, DatasetGrader>,
}

/// One dataset's grader and its params, kept both as the JSON text the guest receives and as
/// the value records and the manifest carry (parsed once, not per record).
#[derive(Clone)]
struct DatasetGrader {
    grader: WasmGrader,
    params: serde_json::Value,
    params_text: String,
}

impl DatasetGrader {
    fn new(grader: WasmGrader, params: &Option<serde_json::Value>) -> Self {
        let params = params.clone().unwrap_or_else(|| serde_json::json!({}));
        Self {
            grader,
            params_text: params.to_string(),
            params,
        }
    }
}

impl DatasetGraders {
    /// Load every dataset's grader (built-in name or `.wasm` path relative to `base_dir`).
    pub fn load(
        exp: &Experiment,
        base_dir: &Path,
        judge: Option<JudgeFn>,
    ) -> Result<Self, SandboxError> {
        let host = Host::new(Host::default_cache_dir())?;
        let limits: Limits = exp.grading.limits();
        let mut by_dataset = HashMap::new();
        let mut loaded: HashMap<String, WasmGrader> = HashMap::new();
        for d in &exp.datasets {
            let d = d.get_ref();
            let Some(name) = d.grader_name() else {
                continue;
            };
            let grader = match loaded.get(&name) {
                Some(g) => g.clone(),
                None => {
                    let g = load_grader(&host, &name, base_dir, limits, judge.clone())?;
                    loaded.insert(name.clone(), g.clone());
                    g
                }
            };
            by_dataset.insert(d.label(), DatasetGrader::new(grader, &d.grader_params));
        }
        Ok(Self { by_dataset })
    }

    /// One grader with the same `params` for every dataset in `labels` (what `ipw grade` uses).
    pub fn uniform(
        labels: impl IntoIterator<Item = String>,
        grader: WasmGrader,
        params: &Option<serde_json::Value>,
    ) -> Self {
        let one = DatasetGrader::new(grader, params);
        let by_dataset = labels.into_iter().map(|l| (l, one.clone())).collect();
        Self { by_dataset }
    }

    /// Which grader scores each dataset, with its component hash and params, by dataset name.
    pub fn describe(&self) -> Vec<GraderInfo> {
        let mut v: Vec<GraderInfo> = self
            .by_dataset
            .iter()
            .map(|(dataset, d)| GraderInfo {
                dataset: dataset.clone(),
                grader: d.grader.id.clone(),
                wasm_sha256: d.grader.sha256.clone(),
                params: d.params.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.dataset.cmp(&b.dataset));
        v
    }

    /// Whether any dataset is graded.
    pub fn is_empty(&self) -> bool {
        self.by_dataset.is_empty()
    }

    /// Grade a record in place (records without a response are not graded). Blocking: call
    /// off the async runtime.
    pub fn grade_record(&self, r: &mut Record) {
        self.grade_with(r, None);
    }

    /// Grade a record in place against another model's response to the same query (what a
    /// pairwise grader compares): `Ok(reference)` becomes the query's only answer; `Err(why)`
    /// (the reference has no response) leaves the record unscored with `why` as its
    /// explanation, without calling the grader. Blocking: call off the async runtime.
    pub fn grade_against(&self, r: &mut Record, reference: Result<&str, String>) {
        self.grade_with(r, Some(reference));
    }

    fn grade_with(&self, r: &mut Record, reference: Option<Result<&str, String>>) {
        let (Some(d), Some(response)) = (self.by_dataset.get(&r.dataset), r.response.as_ref())
        else {
            return;
        };
        let grader = &d.grader;
        let blank = GradeRecord {
            grader: grader.id.clone(),
            wasm_sha256: grader.sha256.clone(),
            score: None,
            parsed: false,
            extracted: None,
            explanation: None,
            error: None,
            params: d
                .params
                .as_object()
                .is_some_and(|o| !o.is_empty())
                .then(|| d.params.clone()),
        };
        let answers = match reference {
            None => r.answers.clone(),
            Some(Ok(text)) => vec![text.to_string()],
            Some(Err(why)) => {
                r.grade = Some(GradeRecord {
                    explanation: Some(why),
                    ..blank
                });
                return;
            }
        };
        let query = Query {
            id: r.query_id.clone(),
            prompt: r.prompt.clone(),
            answers,
            choices: r.choices.clone(),
            subject: r.subject.clone(),
        };
        let record = match grader.grade(&query, response, &d.params_text) {
            Ok(o) => GradeRecord {
                score: o.score,
                parsed: o.parsed,
                extracted: o.extracted,
                explanation: o.explanation,
                ..blank
            },
            Err(e) => GradeRecord {
                error: Some(e.to_string()),
                ..blank
            },
        };
        r.grade = Some(record);
    }
}

/// The judge of `[grading.judge]`, connected, if one is configured.
pub async fn connect_judge(
    grading: &GradingConfig,
) -> Result<Option<JudgeFn>, crate::backend::BackendSetupError> {
    let Some(model) = &grading.judge else {
        return Ok(None);
    };
    Ok(Some(judge_fn(
        crate::backend::connect(model, 1).await?,
        grading.judge_concurrency.unwrap_or(1),
        tokio::runtime::Handle::current(),
    )))
}

/// The `judge` host call: ask `backend` (greedy, up to 512 tokens), at most `concurrency` at
/// once, retrying a failed call twice. The request runs as a task on `runtime` (the caller's
/// runtime, where the backend's connections live) whatever thread or runtime awaits the
/// reply; dropping the reply's future (the host's judge timeout, a grader deadline) aborts
/// the task, so an abandoned request does not keep a permit or the model busy.
pub fn judge_fn(
    backend: Arc<dyn Backend>,
    concurrency: usize,
    runtime: tokio::runtime::Handle,
) -> JudgeFn {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    Arc::new(move |prompt: String| -> JudgeFuture {
        let req = GenRequest {
            messages: vec![Message {
                role: "user".into(),
                content: prompt,
            }],
            max_tokens: 512,
            temperature: 0.0,
            seed: 0,
            stop: Vec::new(),
        };
        let (backend, permits) = (backend.clone(), permits.clone());
        let task = AbortOnDrop(runtime.spawn(async move {
            let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
            let mut last = String::new();
            for _ in 0..3 {
                match backend.generate(&req).await {
                    Ok(g) => return Ok(g.text),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(format!("judge model failed: {last}"))
        }));
        Box::pin(async move {
            let mut task = task;
            (&mut task.0)
                .await
                .unwrap_or_else(|e| Err(format!("judge task failed: {e}")))
        })
    })
}

/// A spawned task that is aborted when its handle is dropped unfinished.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Load grader `name`: a built-in, else a `.wasm` file (relative paths from `base_dir`). The
/// id a record carries is the built-in name or the file name.
pub fn load_grader(
    host: &Host,
    name: &str,
    base_dir: &Path,
    limits: Limits,
    judge: Option<JudgeFn>,
) -> Result<WasmGrader, SandboxError> {
    if let Some(bytes) = builtin::wasm(name) {
        return WasmGrader::load(host, name, bytes, limits, judge);
    }
    let path = base_dir.join(name);
    let bytes = std::fs::read(&path).map_err(|e| SandboxError::Load {
        kind: "grader",
        id: name.to_string(),
        message: format!(
            "not a built-in grader ({}) and cannot read {}: {e}",
            builtin::names().join(", "),
            path.display()
        ),
    })?;
    let id = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    WasmGrader::load(host, &id, &bytes, limits, judge)
}

impl GradingConfig {
    /// The per-call limits, defaults filled in. (Beside the graders that use them rather than in
    /// `config`, which imports nothing of ipw-core.)
    pub fn limits(&self) -> crate::sandbox::Limits {
        let d = crate::sandbox::Limits::default();
        crate::sandbox::Limits {
            fuel: self.fuel.unwrap_or(d.fuel),
            timeout_ms: self.timeout_ms.unwrap_or(d.timeout_ms),
            memory_mib: self.memory_mib.unwrap_or(d.memory_mib),
            judge_timeout_ms: self.judge_timeout_ms.unwrap_or(d.judge_timeout_ms),
            judge_max_calls: self.judge_max_calls.unwrap_or(d.judge_max_calls),
            judge_max_prompt_bytes: self
                .judge_max_prompt_bytes
                .unwrap_or(d.judge_max_prompt_bytes),
        }
    }
}
