//! HTTP plumbing shared by the remote backends: client settings, retry with backoff on connect
//! errors, 429 and 5xx, and reading a response body with a per-chunk idle timeout.
//!
//! Retries happen only before any response data arrived: a retried query's energy window then
//! covers every attempt (the energy was really spent), and `attempts` in the record says so.

use super::{BackendError, BackendSetupError, ErrorKind};
use crate::config::ModelConfig;
use futures_util::StreamExt;
use std::time::Duration;

/// Timeouts and retries for one model's server.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Connection establishment limit.
    pub connect_timeout: Duration,
    /// Longest silence between two body chunks (and before the response head).
    pub read_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles each retry.
    pub backoff: Duration,
}

impl HttpPolicy {
    /// The policy a model config asks for, with documented defaults.
    pub fn from_model(m: &ModelConfig) -> Self {
        Self {
            connect_timeout: Duration::from_secs_f64(m.connect_timeout_s.unwrap_or(10.0)),
            read_timeout: Duration::from_secs_f64(m.read_timeout_s.unwrap_or(120.0)),
            max_retries: m.max_retries.unwrap_or(3),
            backoff: Duration::from_secs_f64(m.retry_backoff_s.unwrap_or(0.5)),
        }
    }

    /// A reqwest client with these settings.
    pub fn client(&self, model: &str) -> Result<reqwest::Client, BackendSetupError> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BackendSetupError {
                model: model.into(),
                message: format!("HTTP client: {e}"),
            })
    }
}

/// The longest backoff between two retries, however many there were.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before retry `attempt` (1-based): `first`, doubled per retry, never past
/// [`MAX_BACKOFF`] (with many retries allowed, plain doubling would sleep for hours or
/// overflow).
fn backoff_before(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_BACKOFF)
}

/// Send a request built by `build` until it gets a successful response head, retrying
/// connect errors, 429 and 5xx with exponential backoff (a `Retry-After` header in seconds wins,
/// capped at 30 s). Returns the response and the number of attempts.
pub async fn send_with_retry(
    policy: &HttpPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(reqwest::Response, u32), BackendError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let last = attempt > policy.max_retries;
        let result = tokio::time::timeout(policy.read_timeout, build().send()).await;
        let (kind, message, retry_after) = match result {
            Err(_) => (
                ErrorKind::Timeout,
                format!("no response head within {:?}", policy.read_timeout),
                None,
            ),
            Ok(Err(e)) if e.is_connect() => (
                ErrorKind::Connect,
                format!("cannot connect: {}", root_cause(&e)),
                None,
            ),
            Ok(Err(e)) if e.is_timeout() => (
                ErrorKind::Timeout,
                format!("timed out: {}", root_cause(&e)),
                None,
            ),
            // E.g. a pooled keep-alive connection the server had closed ("connection closed
            // before message completed"): no response arrived, so trying again is safe.
            Ok(Err(e)) => (
                ErrorKind::Connect,
                format!("request failed: {}", root_cause(&e)),
                None,
            ),
            Ok(Ok(resp)) if resp.status().is_success() => return Ok((resp, attempt)),
            Ok(Ok(resp)) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(|s| Duration::from_secs_f64(s.clamp(0.0, 30.0)));
                let body = read_capped(resp, 512).await;
                let kind = if status.as_u16() == 429 {
                    ErrorKind::RateLimited
                } else {
                    ErrorKind::HttpStatus
                };
                let retryable = status.as_u16() == 429 || status.is_server_error();
                let message = format!("HTTP {status}: {body}");
                if !retryable {
                    return Err(BackendError {
                        kind,
                        message,
                        attempts: attempt,
                    });
                }
                (kind, message, retry_after)
            }
        };
        if last {
            return Err(BackendError {
                kind,
                message: format!("{message} (after {attempt} attempts)"),
                attempts: attempt,
            });
        }
        let backoff = retry_after.unwrap_or_else(|| backoff_before(policy.backoff, attempt));
        tracing::debug!(attempt, ?backoff, %message, "retrying");
        tokio::time::sleep(backoff).await;
    }
}

/// Up to `cap` bytes of an error body, for messages.
async fn read_capped(resp: reqwest::Response, cap: usize) -> String {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(2), stream.next()).await
    {
        out.extend_from_slice(&chunk);
        if out.len() >= cap {
            out.truncate(cap);
            break;
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The innermost error message (reqwest nests hyper and io errors).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg = format!("{msg}: {s}");
        cur = s.source();
    }
    msg
}

/// Body chunks of a response, each awaited with the read timeout.
pub struct ChunkReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    idle: Duration,
    /// Fires no later than `idle` after the last chunk. Re-armed only when it fires early, not
    /// per chunk: a fresh timeout per chunk was a timer-wheel insert and removal for every
    /// streamed token, work per token that only needs doing per stall.
    stall: std::pin::Pin<Box<tokio::time::Sleep>>,
    last_data: tokio::time::Instant,
}

impl ChunkReader {
    /// Wrap a response.
    pub fn new(resp: reqwest::Response, idle: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            stream: Box::pin(resp.bytes_stream()),
            idle,
            stall: Box::pin(tokio::time::sleep_until(now + idle)),
            last_data: now,
        }
    }

    /// The next chunk; `Ok(None)` at a clean end of body.
    pub async fn next(&mut self) -> Result<Option<bytes::Bytes>, BackendError> {
        loop {
            tokio::select! {
                // Data first: a chunk that is already there never touches the timer.
                biased;
                item = self.stream.next() => {
                    self.last_data = tokio::time::Instant::now();
                    return match item {
                        None => Ok(None),
                        Some(Ok(b)) => Ok(Some(b)),
                        Some(Err(e)) => Err(BackendError::new(
                            ErrorKind::StreamClosed,
                            format!("connection closed mid-stream: {}", root_cause(&e)),
                        )),
                    };
                }
                () = &mut self.stall => {
                    let due = self.last_data + self.idle;
                    if tokio::time::Instant::now() >= due {
                        return Err(BackendError::new(
                            ErrorKind::Timeout,
                            format!("stream stalled: no data for {:?}", self.idle),
                        ));
                    }
                    self.stall.as_mut().reset(due);
                }
            }
        }
    }
}

/// How a streamed body is cut into messages.
#[derive(Debug, Clone, Copy)]
pub enum Framing {
    /// Server-Sent Events (OpenAI-compatible servers).
    Sse,
    /// Newline-delimited JSON (Ollama).
    Lines,
}

/// What a frame handler wants next.
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The response is complete; stop reading.
    Done,
}

/// Feed every frame of a streamed body to `handle` until it returns [`Flow::Done`] or the body
/// ends. Returns whether the handler said the response was complete.
pub async fn for_each_frame(
    mut reader: ChunkReader,
    framing: Framing,
    mut handle: impl FnMut(&str) -> Result<Flow, BackendError>,
) -> Result<bool, BackendError> {
    let mut sse = super::sse::SseDecoder::default();
    let mut lines = super::sse::LineBuffer::default();
    let mut frames = |chunk: &[u8]| match framing {
        Framing::Sse => sse.push(chunk),
        Framing::Lines => lines
            .push(chunk)
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect(),
    };
    while let Some(chunk) = reader.next().await? {
        for frame in frames(&chunk) {
            if let Flow::Done = handle(&frame)? {
                return Ok(true);
            }
        }
    }
    // The body ended: a final frame may lack its terminator.
    let tail = match framing {
        Framing::Sse => sse.finish(),
        Framing::Lines => {
            let rest = String::from_utf8_lossy(lines.remainder())
                .trim()
                .to_string();
            (!rest.is_empty()).then_some(rest)
        }
    };
    if let Some(frame) = tail {
        if let Flow::Done = handle(&frame)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A `malformed_stream` error quoting the start of the bad frame.
pub fn malformed(frame: &str, e: impl std::fmt::Display) -> BackendError {
    let snippet: String = frame.chars().take(120).collect();
    BackendError::new(
        ErrorKind::MalformedStream,
        format!("cannot parse stream frame `{snippet}`: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_the_cap() {
        let first = Duration::from_millis(500);
        assert_eq!(backoff_before(first, 1), first);
        assert_eq!(backoff_before(first, 3), Duration::from_secs(2));
        assert_eq!(backoff_before(first, 8), MAX_BACKOFF);
        assert_eq!(backoff_before(first, 40), MAX_BACKOFF, "no overflow");
    }
}
