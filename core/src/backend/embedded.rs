//! The embedded backend: llama.cpp in-process (via `llama-cpp-2`) from a GGUF file. The default,
//! because it needs no server.
//!
//! The model is loaded once (outside any measured window). Each concurrency slot is a worker
//! thread owning its own llama.cpp context; generation is blocking work, so workers take jobs
//! from a channel and answer through a oneshot. The chat template comes from the GGUF.

use super::{
    Backend, BackendError, BackendSetupError, ErrorKind, GenRequest, Generation, TokenSource,
};
use crate::config::{BackendKind, ModelConfig};
use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use serde_json::{json, Value};
use std::num::NonZeroU32;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// Names of the generation threads (and so of the OpenMP workers they start): the engine's
/// CPU is these threads' ([`Backend::engine_cpu_s`]).
const WORKER_THREAD_PREFIX: &str = "ipw-llama-";

/// Creating contexts in parallel is unsound in llama.cpp (it mutates the model); serialise it.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

struct Job {
    req: GenRequest,
    reply: tokio::sync::oneshot::Sender<Result<Generation, BackendError>>,
}

/// A GGUF model served by in-process worker threads.
pub struct EmbeddedBackend {
    /// `None` only while dropping: closing the channel is what tells the workers to end.
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    info: Value,
}

/// Dropping the backend ends its workers and waits for them: a worker still inside llama.cpp
/// when the process exits races the library's global teardown and can crash the process after
/// every record is written (seen as a SIGTERM-stopped run dying by a signal under load). A
/// worker in a generation stops at its next token, since nobody can still be waiting for it.
impl Drop for EmbeddedBackend {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::warn!("an embedded generation thread panicked");
            }
        }
        tracing::debug!("embedded generation threads stopped");
    }
}

impl EmbeddedBackend {
    /// Load the model and start `workers` generation threads. Blocking; call off the runtime.
    pub fn load(m: &ModelConfig, workers: usize) -> Result<Self, BackendSetupError> {
        let setup = |message: String| BackendSetupError {
            model: m.name.clone(),
            message,
        };
        let path = m
            .path
            .clone()
            .ok_or_else(|| setup("`path` is required".into()))?;
        let runtime = super::llama_runtime::runtime().map_err(setup)?;
        let llama = &runtime.backend;
        let placement = super::placement::plan(m, &runtime.inventory).map_err(setup)?;
        let started = Instant::now();
        let mut params = LlamaModelParams::default().with_n_gpu_layers(placement.gpu_layers);
        if placement.devices_named {
            let indices: Vec<usize> = placement.devices.iter().map(|d| d.index).collect();
            params = params
                .with_devices(&indices)
                .map_err(|e| setup(format!("cannot use devices {:?}: {e}", m.devices)))?;
        }
        let model = LlamaModel::load_from_file(llama, &path, &params)
            .map_err(|e| setup(format!("cannot load {}: {e}", path.display())))?;
        let load_s = started.elapsed().as_secs_f64();
        // llama.cpp counts the output layer as one more than the repeating ones.
        let layers_total = model.n_layer() + 1;
        let layers_offloaded = if placement.devices.is_empty() {
            0
        } else {
            placement.gpu_layers.min(layers_total)
        };
        let template = model.chat_template(None).map_err(|e| {
            setup(format!(
                "{} has no usable chat template: {e}",
                path.display()
            ))
        })?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let threads = m.threads.unwrap_or(cores).max(1);
        let workers = workers.max(1);
        let per_worker = (threads / workers as u32).max(1) as i32;
        let n_ctx = m.context.unwrap_or(4096).min(model.n_ctx_train().max(512));
        let info = json!({
            "path": path,
            "load_s": load_s,
            "parameters": model.n_params(),
            "size_bytes": model.size(),
            "context": n_ctx,
            "threads": threads,
            "workers": workers,
            "placement": {
                "rule": placement.rule,
                "gpu_layers": placement.requested,
                "layers_offloaded": layers_offloaded,
                "layers_total": layers_total,
                "devices": placement.devices,
                "gpu_backends": runtime.inventory.gpu_backends,
                "backend_log": runtime.inventory.backend_log,
            },
        });
        let model = Arc::new(model);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel();
        // Owned from the start: any early return below joins the workers already started
        // (they end when the job channel closes).
        let mut backend = Self {
            jobs: Some(tx),
            workers: Vec::with_capacity(workers),
            info,
        };
        for w in 0..workers {
            let (model, rx, template, ready) = (
                model.clone(),
                rx.clone(),
                template.clone(),
                ready_tx.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("{WORKER_THREAD_PREFIX}{w}"))
                .spawn(move || worker(llama, &model, &template, n_ctx, per_worker, &rx, ready))
                .map_err(|e| setup(format!("cannot start worker thread: {e}")))?;
            backend.workers.push(handle);
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(setup(e)),
                Err(_) => return Err(setup("worker thread died while starting".into())),
            }
        }
        Ok(backend)
    }
}

fn worker(
    backend: &LlamaBackend,
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    n_ctx: u32,
    threads: i32,
    jobs: &Mutex<mpsc::Receiver<Job>>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let ctx = {
        let _guard = CONTEXT_CREATION.lock().unwrap_or_else(|p| p.into_inner());
        model.new_context(backend, params)
    };
    let mut ctx = match ctx {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create llama.cpp context: {e}")));
            return;
        }
    };
    loop {
        // Hold the lock only while waiting for a job, not while generating.
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // backend dropped
        };
        if job.reply.is_closed() {
            continue; // the run was interrupted while this job waited
        }
        let result = generate(model, template, &mut ctx, &job.req, n_ctx, &job.reply);
        let _ = job.reply.send(result);
    }
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::new(ErrorKind::Engine, format!("{what}: {e}"))
}

fn generate(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    req: &GenRequest,
    n_ctx: u32,
    reply: &tokio::sync::oneshot::Sender<Result<Generation, BackendError>>,
) -> Result<Generation, BackendError> {
    let messages = req
        .messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| engine_err("chat message", e))?;
    let prompt = model
        .apply_chat_template(template, &messages, true)
        .map_err(|e| engine_err("chat template", e))?;
    let vocab = model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
    if tokens.len() + 1 >= n_ctx as usize {
        return Err(BackendError::new(
            ErrorKind::PromptTooLong,
            format!(
                "prompt is {} tokens; the context holds {n_ctx}",
                tokens.len()
            ),
        ));
    }
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(n_ctx as usize, 1);
    let last = tokens.len() - 1;
    for (i, t) in tokens.iter().enumerate() {
        batch
            .add(*t, i as i32, &[0], i == last)
            .map_err(|e| engine_err("batch", e))?;
    }
    ctx.decode(&mut batch)
        .map_err(|e| engine_err("prompt decode", e))?;
    let mut sampler = if req.temperature <= 0.0 {
        LlamaSampler::greedy()
    } else {
        LlamaSampler::chain_simple([
            LlamaSampler::temp(req.temperature),
            LlamaSampler::dist(req.seed as u32),
        ])
    };
    let mut bytes: Vec<u8> = Vec::new();
    let mut first_token_at = None;
    let mut output_tokens = 0u64;
    let mut pos = tokens.len() as i32;
    let mut cut: Option<usize> = None;
    let finish_reason = loop {
        let token = sampler.sample(ctx, batch.n_tokens() - 1);
        first_token_at.get_or_insert_with(Instant::now);
        if vocab.is_eog(token) {
            break "stop";
        }
        output_tokens += 1;
        bytes.extend(vocab.token_to_piece(token, false, None));
        if !req.stop.is_empty() {
            if let Some(at) = super::find_stop(&String::from_utf8_lossy(&bytes), &req.stop) {
                cut = Some(at);
                break "stop";
            }
        }
        if output_tokens >= req.max_tokens as u64 || pos + 1 >= n_ctx as i32 {
            break "length";
        }
        if reply.is_closed() {
            return Err(BackendError::new(ErrorKind::Cancelled, "run interrupted"));
        }
        batch.clear();
        batch
            .add(token, pos, &[0], true)
            .map_err(|e| engine_err("batch", e))?;
        pos += 1;
        ctx.decode(&mut batch)
            .map_err(|e| engine_err("decode", e))?;
    };
    let finished_at = Instant::now();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if let Some(at) = cut {
        text.truncate(at);
    }
    Ok(Generation {
        text,
        first_token_at,
        finished_at,
        input_tokens: Some(tokens.len() as u64),
        output_tokens: Some(output_tokens),
        token_source: TokenSource::Engine,
        finish_reason: Some(finish_reason.to_string()),
        attempts: 1,
        cached_prompt_tokens: None,
    })
}

#[async_trait]
impl Backend for EmbeddedBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Embedded
    }

    async fn generate(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .as_ref()
            .expect("the job channel is open until drop")
            .send(Job {
                req: req.clone(),
                reply,
            })
            .map_err(|_| BackendError::new(ErrorKind::Engine, "embedded workers have stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(BackendError::new(ErrorKind::Engine, "embedded worker died")))
    }

    fn describe(&self) -> Value {
        self.info.clone()
    }

    /// The generation threads are named `ipw-llama-<n>`, and the OpenMP workers llama.cpp
    /// starts from them inherit that name, so summing those threads is the engine's CPU.
    /// Template, tokenisation and detokenisation run on the generation thread too: they are
    /// the engine's work (a server does them as well), not the harness's.
    fn engine_cpu_s(&self) -> Option<f64> {
        crate::selfcpu::threads_cpu_s(WORKER_THREAD_PREFIX)
    }
}
