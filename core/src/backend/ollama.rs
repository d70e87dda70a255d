//! Ollama's native `/api/chat` streaming API (NDJSON). Token counts are Ollama's own
//! `prompt_eval_count` / `eval_count` from the final `done` message.

use super::http::{malformed, Flow, FrameHandler, Framing, HttpPolicy, Transport};
use super::{
    Backend, BackendError, BackendSetupError, ErrorKind, GenRequest, Generation, TokenSource,
};
use crate::config::{BackendKind, ModelConfig};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::time::Instant;

/// What an `/api/chat` stream said so far.
#[derive(Default)]
struct ChatStream {
    text: String,
    first_token_at: Option<Instant>,
    /// The final message (`"done": true`), with the counts.
    done: Option<Value>,
}

impl FrameHandler for ChatStream {
    fn frame(&mut self, frame: &str) -> Result<Flow, BackendError> {
        let v: Value = serde_json::from_str(frame).map_err(|e| malformed(frame, e))?;
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            return Err(BackendError::new(
                ErrorKind::ServerError,
                format!("ollama: {err}"),
            ));
        }
        if let Some(piece) = v.pointer("/message/content").and_then(Value::as_str) {
            if !piece.is_empty() {
                self.first_token_at.get_or_insert_with(Instant::now);
                self.text.push_str(piece);
            }
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = Some(v);
            return Ok(Flow::Done);
        }
        Ok(Flow::Continue)
    }
}

/// An Ollama server.
pub struct OllamaBackend {
    transport: Transport,
    url: String,
    model: String,
}

impl OllamaBackend {
    /// Set up a client for a model config.
    pub fn new(m: &ModelConfig) -> Result<Self, BackendSetupError> {
        let base = m.base_url.as_deref().ok_or_else(|| BackendSetupError {
            model: m.name.clone(),
            message: "`base_url` is required".into(),
        })?;
        let url = format!("{}/api/chat", base.trim_end_matches('/'));
        Ok(Self {
            transport: Transport::new(&url, &HttpPolicy::from_model(m), &m.name)?,
            url,
            model: m.server_model().to_string(),
        })
    }
}

#[async_trait]
impl Backend for OllamaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Ollama
    }

    async fn generate(&self, req: &GenRequest) -> Result<Generation, BackendError> {
        let mut options = json!({
            "temperature": req.temperature,
            "num_predict": req.max_tokens,
            "seed": req.seed,
        });
        if !req.stop.is_empty() {
            options["stop"] = json!(req.stop);
        }
        let body = json!({ "model": self.model, "messages": req.messages, "stream": true, "options": options });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        let streamed = self
            .transport
            .stream(body, None, Framing::Lines, ChatStream::default())
            .await?;
        let (attempts, finished_at) = (streamed.attempts, streamed.finished_at);
        let ChatStream {
            text,
            first_token_at,
            done,
        } = streamed.handler;
        let Some(done) = done else {
            return Err(BackendError {
                kind: ErrorKind::StreamClosed,
                message: format!(
                    "stream ended without a `done` message ({} chars received)",
                    text.len()
                ),
                attempts,
            });
        };
        Ok(Generation {
            text,
            first_token_at,
            finished_at,
            input_tokens: done.get("prompt_eval_count").and_then(Value::as_u64),
            output_tokens: done.get("eval_count").and_then(Value::as_u64),
            token_source: TokenSource::Engine,
            finish_reason: done
                .get("done_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            attempts,
            cached_prompt_tokens: None,
        })
    }

    fn describe(&self) -> Value {
        json!({ "url": self.url, "server_model": self.model, "transport": self.transport.name() })
    }
}
