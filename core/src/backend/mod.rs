//! Backends: the code that talks to a model. One trait, [`Backend`]; built-ins are the
//! embedded llama.cpp ([`embedded`], default), OpenAI-compatible HTTP ([`openai`]) and Ollama's
//! native API ([`ollama`]). HTTP plumbing shared by the remote ones lives in [`http`]; their
//! measured request goes over plain `http` through a minimal client of ipw's own (`wire`).

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod http;
#[cfg(feature = "embedded")]
pub mod llama_runtime;
pub mod ollama;
pub mod openai;
pub mod placement;
mod sse;
#[cfg(feature = "ureq-transport")]
mod ureq_client;
#[cfg(feature = "vulkan")]
mod vulkan_facts;
mod wire;

use crate::config::{BackendKind, ModelConfig};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Text.
    pub content: String,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// The conversation (an optional system message and the user prompt).
    pub messages: Vec<Message>,
    /// Maximum new tokens.
    pub max_tokens: u32,
    /// 0 = greedy.
    pub temperature: f32,
    /// Sampling seed.
    pub seed: u64,
    /// Stop strings.
    pub stop: Vec<String>,
}

pub use crate::records::TokenSource;

/// A finished generation, with the instants the runner turns into a window and TTFT.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Response text (stop string removed).
    pub text: String,
    /// When the first generated token arrived.
    pub first_token_at: Option<Instant>,
    /// When the last byte of the response arrived (before any post-processing).
    pub finished_at: Instant,
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Generated tokens.
    pub output_tokens: Option<u64>,
    /// Where the counts came from.
    pub token_source: TokenSource,
    /// `stop`, `length`, ... as the engine reported it.
    pub finish_reason: Option<String>,
    /// HTTP attempts (1 = no retry).
    pub attempts: u32,
    /// Prompt tokens the server took from its prompt cache instead of computing them, when it
    /// says (`usage.prompt_tokens_details.cached_tokens`, llama.cpp's `timings.cache_n`).
    pub cached_prompt_tokens: Option<u64>,
}

/// Why a query failed, as recorded in `error.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Could not connect.
    Connect,
    /// No data within the read timeout.
    Timeout,
    /// HTTP 429 after every retry.
    RateLimited,
    /// Another non-success HTTP status.
    HttpStatus,
    /// The connection closed before the response was complete.
    StreamClosed,
    /// The stream could not be parsed.
    MalformedStream,
    /// The server reported an error inside the stream.
    ServerError,
    /// The prompt does not fit the context.
    PromptTooLong,
    /// The in-process engine failed.
    Engine,
    /// The run was interrupted while this query was in flight.
    Cancelled,
    /// The model server ipw started exited (`[models.server]`).
    ServerExited,
}

impl ErrorKind {
    /// Snake-case name, as in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::RateLimited => "rate_limited",
            Self::HttpStatus => "http_status",
            Self::StreamClosed => "stream_closed",
            Self::MalformedStream => "malformed_stream",
            Self::ServerError => "server_error",
            Self::PromptTooLong => "prompt_too_long",
            Self::Engine => "engine",
            Self::Cancelled => "cancelled",
            Self::ServerExited => "server_exited",
        }
    }
}

/// A failed query.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct BackendError {
    /// Category.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
    /// HTTP attempts made.
    pub attempts: u32,
}

impl BackendError {
    /// An error after one attempt.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            attempts: 1,
        }
    }
}

/// A backend that cannot be set up (model file unreadable, bad URL, missing API key variable).
#[derive(Debug, thiserror::Error)]
#[error("model `{model}`: {message}")]
pub struct BackendSetupError {
    /// Model name from the experiment.
    pub model: String,
    /// What went wrong.
    pub message: String,
}

/// Talks to one model. Implementations must be cheap to call concurrently.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `embedded`, `openai` or `ollama`.
    fn kind(&self) -> BackendKind;
    /// Generate a response. Timing instants are taken as close to the wire/engine as possible.
    async fn generate(&self, req: &GenRequest) -> Result<Generation, BackendError>;
    /// Facts about the model for the manifest (file hash, load time, server model id).
    fn describe(&self) -> serde_json::Value;
    /// CPU seconds used so far by an in-process engine's threads, so that a record can tell the
    /// harness's own CPU from the model's. `None` for a model in another process.
    fn engine_cpu_s(&self) -> Option<f64> {
        None
    }
    /// CPU seconds used so far by the model's server, when ipw started it and can see it
    /// (`[models.server]`). `None` otherwise.
    fn server_cpu_s(&self) -> Option<f64> {
        None
    }
    /// Why the backend can serve no more queries (its managed server exited), if so.
    fn gone(&self) -> Option<String> {
        None
    }
}

/// What this build's embedded backend has and sees: GPU backends compiled in, devices found
/// (initialising llama.cpp on first call). An error when llama.cpp cannot start; empty when this
/// build has no embedded backend.
pub fn compute_inventory() -> Result<placement::Inventory, String> {
    #[cfg(feature = "embedded")]
    {
        llama_runtime::runtime().map(|r| r.inventory.clone())
    }
    #[cfg(not(feature = "embedded"))]
    {
        Ok(placement::Inventory::default())
    }
}

/// Where an embedded model would run, refused (with what to build or install) when it asks for a
/// GPU this build or machine lacks. Cheap after the first call; call before anything is measured.
pub fn place(model: &ModelConfig) -> Result<placement::Placement, BackendSetupError> {
    let setup = |message: String| BackendSetupError {
        model: model.name.clone(),
        message,
    };
    placement::plan(model, &compute_inventory().map_err(setup)?).map_err(setup)
}

/// Build the backend a model config asks for. `concurrency` sizes the embedded worker pool.
pub async fn connect(
    model: &ModelConfig,
    concurrency: usize,
) -> Result<Arc<dyn Backend>, BackendSetupError> {
    match model.backend {
        BackendKind::Embedded => {
            #[cfg(feature = "embedded")]
            {
                let model = model.clone();
                let b = tokio::task::spawn_blocking(move || {
                    embedded::EmbeddedBackend::load(&model, concurrency)
                })
                .await
                .map_err(|e| BackendSetupError {
                    model: String::new(),
                    message: e.to_string(),
                })??;
                Ok(Arc::new(b))
            }
            #[cfg(not(feature = "embedded"))]
            {
                let _ = concurrency;
                Err(BackendSetupError {
                    model: model.name.clone(),
                    message: "this ipw was built without the `embedded` feature".into(),
                })
            }
        }
        BackendKind::Openai => Ok(Arc::new(openai::OpenAiBackend::new(model)?)),
        BackendKind::Ollama => Ok(Arc::new(ollama::OllamaBackend::new(model)?)),
    }
}

/// Apply stop strings to accumulated text: returns the cut position of the earliest stop.
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}
