//! OpenAI-compatible streaming chat completions (vLLM, llama.cpp server, SGLang, LM Studio,
//! Ollama /v1, cloud endpoints).
//!
//! Token counts come from the stream's `usage` when the server sends it (we ask with
//! `stream_options.include_usage`). Otherwise they are counted another way and flagged as
//! estimated: with the server's tokenizer endpoint when it has one (llama.cpp `/tokenize`), else
//! output = streamed content chunks and input = characters / 4.

use super::http::{malformed, Flow, FrameHandler, Framing, HttpPolicy, Transport};
use super::{
    Backend, BackendError, BackendSetupError, ErrorKind, GenRequest, Generation, TokenSource,
};
use crate::config::{BackendKind, ModelConfig};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

/// One streamed chat-completion frame: only the fields ipw reads (others are skipped unparsed).
/// Strings borrow from the frame unless they hold escapes.
#[derive(serde::Deserialize)]
struct StreamFrame<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<StreamChoice<'a>>>,
    #[serde(default)]
    usage: Option<StreamUsage>,
    #[serde(default)]
    timings: Option<StreamTimings>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(serde::Deserialize)]
struct StreamChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<StreamDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct StreamDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct StreamUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(serde::Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(serde::Deserialize)]
struct StreamTimings {
    #[serde(default)]
    cache_n: Option<u64>,
}

/// What a chat-completions stream said so far.
#[derive(Default)]
struct ChatStream {
    text: String,
    first_token_at: Option<Instant>,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    cached_prompt_tokens: Option<u64>,
    content_chunks: u64,
}

impl FrameHandler for ChatStream {
    fn frame(&mut self, frame: &str) -> Result<Flow, BackendError> {
        if frame.trim() == "[DONE]" {
            return Ok(Flow::Done);
        }
        // Typed and borrowing: a streamed token is one small frame, so parsing it into a
        // `Value` tree (a map and strings per field) was most of the work per token.
        let v: StreamFrame = serde_json::from_str(frame).map_err(|e| malformed(frame, e))?;
        if let Some(err) = v.error {
            return Err(BackendError::new(
                ErrorKind::ServerError,
                format!("server error in stream: {err}"),
            ));
        }
        if let Some(choice) = v.choices.as_deref().and_then(<[_]>::first) {
            if let Some(delta) = &choice.delta {
                if let Some(piece) = delta.content.as_deref().filter(|p| !p.is_empty()) {
                    self.first_token_at.get_or_insert_with(Instant::now);
                    self.content_chunks += 1;
                    self.text.push_str(piece);
                }
                // A reasoning model's thinking is generated output too: it starts the clock
                // for TTFT and counts as output (it is not part of the answer).
                let reasoning = [&delta.reasoning_content, &delta.reasoning]
                    .into_iter()
                    .any(|r| r.as_deref().is_some_and(|p| !p.is_empty()));
                if reasoning {
                    self.first_token_at.get_or_insert_with(Instant::now);
                    self.content_chunks += 1;
                }
            }
            if let Some(r) = &choice.finish_reason {
                self.finish_reason = Some(r.to_string());
            }
        }
        if let Some(u) = v.usage {
            if let (Some(p), Some(c)) = (u.prompt_tokens, u.completion_tokens) {
                self.usage = Some((p, c));
            }
            if let Some(n) = u.prompt_tokens_details.and_then(|d| d.cached_tokens) {
                self.cached_prompt_tokens = Some(n);
            }
        }
        if let Some(n) = v.timings.and_then(|t| t.cache_n) {
            self.cached_prompt_tokens = Some(self.cached_prompt_tokens.map_or(n, |c| c.max(n)));
        }
        Ok(Flow::Continue)
    }
}

/// An OpenAI-compatible server.
pub struct OpenAiBackend {
    transport: Transport,
    tokenizer_client: reqwest::Client,
    policy: HttpPolicy,
    chat_url: String,
    tokenize_url: String,
    model: String,
    api_key_env: Option<String>,
    /// Read from the environment once; never serialized, logged or written anywhere.
    api_key: Option<String>,
    include_usage: bool,
    /// Let the server reuse cached prompt prefixes (otherwise `cache_prompt: false` is sent).
    prompt_cache: bool,
    /// 2 once the server answered that it has no tokenizer endpoint.
    tokenizer_state: AtomicU8,
}

impl OpenAiBackend {
    /// Set up a client for a model config (reads the API key variable, if any).
    pub fn new(m: &ModelConfig) -> Result<Self, BackendSetupError> {
        let setup = |message: String| BackendSetupError {
            model: m.name.clone(),
            message,
        };
        let base = m
            .base_url
            .as_deref()
            .ok_or_else(|| setup("`base_url` is required".into()))?;
        let base = base.trim_end_matches('/');
        let api_key = match &m.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                setup(format!(
                    "api_key_env names `{var}`, but that environment variable is not set"
                ))
            })?),
            None => None,
        };
        let policy = HttpPolicy::from_model(m);
        let root = base.strip_suffix("/v1").unwrap_or(base);
        let chat_url = format!("{base}/chat/completions");
        Ok(Self {
            transport: Transport::new(&chat_url, &policy, &m.name)?,
            // Token counting is rare and off the measured path; a fresh connection each time
            // avoids keep-alive connections the server has already closed.
            tokenizer_client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .connect_timeout(policy.connect_timeout)
                .build()
                .map_err(|e| setup(format!("HTTP client: {e}")))?,
            policy,
            chat_url,
            tokenize_url: m
                .tokenize_url
                .clone()
                .unwrap_or_else(|| format!("{root}/tokenize")),
            model: m.server_model().to_string(),
            api_key_env: m.api_key_env.clone(),
            api_key,
            include_usage: m.include_usage.unwrap_or(true),
            prompt_cache: m.prompt_cache.unwrap_or(false),
            tokenizer_state: AtomicU8::new(0),
        })
    }

    fn request_body(&self, req: &GenRequest) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": req.messages,
            "stream": true,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "seed": req.seed,
        });
        if !req.stop.is_empty() {
            body["stop"] = json!(req.stop);
        }
        if self.include_usage {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if !self.prompt_cache {
            // llama.cpp reuses a cached prompt prefix unless told not to, which makes a repeated
            // prompt nearly free and a measurement of it meaningless.
            body["cache_prompt"] = json!(false);
        }
        body
    }

    /// Count tokens of `text` with the server's tokenizer endpoint, remembering if it is missing.
    async fn tokenize(&self, text: &str) -> Option<u64> {
        if self.tokenizer_state.load(Ordering::Relaxed) == 2 {
            return None;
        }
        let mut rb = self
            .tokenizer_client
            .post(&self.tokenize_url)
            .json(&json!({ "content": text }))
            .timeout(self.policy.read_timeout);
        if let Some(key) = &self.api_key {
            rb = rb.bearer_auth(key);
        }
        let counted: Result<u64, String> = async {
            let resp = rb.send().await.map_err(|e| super::http::root_cause(&e))?;
            let status = resp.status();
            if matches!(status.as_u16(), 404 | 405 | 501) {
                // No tokenizer endpoint on this server: stop asking.
                self.tokenizer_state.store(2, Ordering::Relaxed);
            }
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            let v: Value = resp.json().await.map_err(|e| e.to_string())?;
            v.get("tokens")
                .and_then(Value::as_array)
                .map(|t| t.len() as u64)
                .ok_or_else(|| "no `tokens` list".into())
        }
        .await;
        counted
            .map_err(|e| tracing::debug!(url = %self.tokenize_url, "token count failed: {e}"))
            .ok()
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Openai
    }

    async fn generate(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        let body = serde_json::to_vec(&self.request_body(req)).expect("a JSON value serialises");
        let streamed = self
            .transport
            .stream(
                body,
                self.api_key.as_deref(),
                Framing::Sse,
                ChatStream::default(),
            )
            .await?;
        let (attempts, finished_at) = (streamed.attempts, streamed.finished_at);
        let ChatStream {
            text,
            first_token_at,
            finish_reason,
            usage,
            cached_prompt_tokens,
            content_chunks,
        } = streamed.handler;
        if !streamed.completed && finish_reason.is_none() {
            return Err(BackendError {
                kind: ErrorKind::StreamClosed,
                message: format!(
                    "stream ended before the response was complete (no finish_reason, no [DONE]; {} chars received)",
                    text.len()
                ),
                attempts,
            });
        }
        let (input_tokens, output_tokens, token_source) = match usage {
            Some((p, c)) => (p, c, TokenSource::ServerUsage),
            None => {
                let prompt: String = req
                    .messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                match (self.tokenize(&prompt).await, self.tokenize(&text).await) {
                    (Some(p), Some(c)) => (p, c, TokenSource::Tokenizer),
                    _ => (
                        (prompt.chars().count() as u64).div_ceil(4),
                        content_chunks,
                        TokenSource::Heuristic,
                    ),
                }
            }
        };
        Ok(Generation {
            text,
            first_token_at,
            finished_at,
            input_tokens: Some(input_tokens),
            output_tokens: Some(output_tokens),
            token_source,
            finish_reason,
            attempts,
            cached_prompt_tokens,
        })
    }

    fn describe(&self) -> Value {
        json!({
            "chat_url": self.chat_url,
            "transport": self.transport.name(),
            "server_model": self.model,
            "api_key_env": self.api_key_env,
            "include_usage": self.include_usage,
            "prompt_cache": self.prompt_cache,
        })
    }
}
