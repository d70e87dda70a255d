//! Dispatch: send the session's queries with bounded concurrency, turn each result into a
//! [`Record`], grade it outside its window, and append it to disk the moment it is done.

use super::{Cancel, RunError, RunObserver};
use crate::backend::{Backend, BackendError, ErrorKind, GenRequest, Generation, Message};
use crate::config::{BackendKind, Experiment, ModelConfig};
use crate::dataset::Query;
use crate::grade::DatasetGraders;
use crate::power::EdgeMarker;
use crate::records::clock::RunClock;
use crate::records::{decode_tps, QueryError, Record, RecordsWriter, Window, RECORD_SCHEMA};
use crate::selfcpu::CpuMark;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What a session's queries share.
pub(super) struct Dispatch<'a> {
    pub backend: &'a Arc<dyn Backend>,
    pub exp: &'a Experiment,
    pub model: &'a ModelConfig,
    pub seed: u64,
    pub session: usize,
    pub marker: &'a EdgeMarker,
    pub graders: &'a Arc<DatasetGraders>,
    pub observer: &'a dyn RunObserver,
    pub cancel: &'a Cancel,
}

/// The request for one query.
pub(super) fn request_for(exp: &Experiment, q: &Query, seed: u64) -> GenRequest {
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

impl Dispatch<'_> {
    /// Send `todo` with at most `run.concurrency` in flight; write each record as it finishes.
    /// Returns how many were recorded and when the first request went out. On cancel, queries
    /// in flight are dropped unrecorded (a resume redoes them).
    pub async fn run(
        &self,
        todo: &[(usize, &Query)],
        records: &mut RecordsWriter,
    ) -> Result<(usize, Option<Instant>), RunError> {
        let clock = RunClock::start();
        let mut pending = todo.iter();
        let mut tasks: JoinSet<Record> = JoinSet::new();
        let mut written = 0;
        let mut first_request = None;
        loop {
            // A managed server that died serves nothing more: the queries in flight become
            // error records, the rest wait for `--resume`.
            while tasks.len() < self.exp.run.concurrency
                && !self.cancel.is_cancelled()
                && self.backend.gone().is_none()
            {
                let Some(&(index, q)) = pending.next() else {
                    break;
                };
                let (backend, req, q, name) = (
                    self.backend.clone(),
                    request_for(self.exp, q, self.seed),
                    q.clone(),
                    self.model.name.clone(),
                );
                let (marker, graders, session) =
                    (self.marker.clone(), self.graders.clone(), self.session);
                let deadline = Duration::from_secs_f64(self.exp.run.query_timeout_s);
                let grade_inline = !graders.is_empty() && self.exp.run.concurrency == 1;
                first_request.get_or_insert_with(Instant::now);
                tasks.spawn(async move {
                    let started_at = chrono::Utc::now();
                    // The harness's CPU over the window (self-accounting): read just outside
                    // its edges so that the reads are not timed as the query.
                    let cpu_start =
                        CpuMark::now(backend.engine_cpu_s()).with_server(backend.server_cpu_s());
                    marker.mark();
                    let start = Instant::now();
                    // One deadline over everything (connect, retries, a slow trickle of tokens):
                    // a query never holds the run longer than `query_timeout_s`.
                    let result = match tokio::time::timeout(deadline, backend.generate(&req)).await
                    {
                        Ok(r) => r,
                        Err(_) => Err(BackendError {
                            kind: ErrorKind::Timeout,
                            message: format!(
                                "no complete response within run.query_timeout_s = {} s",
                                deadline.as_secs_f64()
                            ),
                            attempts: 1,
                        }),
                    };
                    let cpu_end =
                        CpuMark::now(backend.engine_cpu_s()).with_server(backend.server_cpu_s());
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
                    record.harness = Some(cpu_start.until(&cpu_end));
                    // Grading is outside the window (it ended with the last byte) and off the
                    // async workers: a grader call may take up to its deadline. With other
                    // queries in flight it would run inside their windows (a judge call, a
                    // grader's CPU), so then it waits for the session's end.
                    if grade_inline {
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
                            records.append(&record)?;
                            written += 1;
                            self.observer.recorded(&record);
                        }
                        Some(Err(e)) if e.is_panic() => tracing::error!("a query task panicked: {e}"),
                        _ => {}
                    }
                }
                _ = self.cancel.cancelled() => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        records.sync()?;
        Ok((written, first_request))
    }
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
        cached_prompt_tokens: None,
        cost_usd: None,
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
        domain: None,
        domain_history: Vec::new(),
        harness: None,
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
            r.cached_prompt_tokens = g.cached_prompt_tokens;
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
