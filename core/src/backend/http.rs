//! HTTP plumbing shared by the remote backends: client settings, retry with backoff on connect
//! errors, 429 and 5xx, and reading a response body with a per-chunk idle timeout.
//!
//! Retries happen only before any response data arrived: a retried query's energy window then
//! covers every attempt (the energy was really spent), and `attempts` in the record says so.

// The framing types are the framer's; backends name them through this module.
use super::sse::FrameFn;
use super::sse::Framer;
pub use super::sse::{Flow, Framing};
use super::wire::{self, Abort, DirectClient, NoResponse};
use super::{BackendError, BackendSetupError, ErrorKind};
use crate::config::ModelConfig;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
async fn send_with_retry(
    policy: &HttpPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(reqwest::Response, u32), BackendError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = tokio::time::timeout(policy.read_timeout, build().send()).await;
        let failure = |kind, message| NoResponse {
            kind,
            message,
            retry_after: None,
            retryable: true,
        };
        let failure = match result {
            Err(_) => failure(
                ErrorKind::Timeout,
                format!("no response head within {:?}", policy.read_timeout),
            ),
            Ok(Err(e)) if e.is_connect() => failure(
                ErrorKind::Connect,
                format!("cannot connect: {}", root_cause(&e)),
            ),
            Ok(Err(e)) if e.is_timeout() => {
                failure(ErrorKind::Timeout, format!("timed out: {}", root_cause(&e)))
            }
            // E.g. a pooled keep-alive connection the server had closed ("connection closed
            // before message completed"): no response arrived, so trying again is safe.
            Ok(Err(e)) => failure(
                ErrorKind::Connect,
                format!("request failed: {}", root_cause(&e)),
            ),
            Ok(Ok(resp)) if resp.status().is_success() => return Ok((resp, attempt)),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(wire::retry_after);
                let body = read_capped(resp, 512).await;
                NoResponse::status(status, &body, retry_after)
            }
        };
        tokio::time::sleep(retry_or_fail(policy, attempt, failure)?).await;
    }
}

/// After attempt `attempt` got no response to read: the wait before the next one, or the
/// error to record when the failure is final or the retries are spent.
fn retry_or_fail(
    policy: &HttpPolicy,
    attempt: u32,
    f: NoResponse,
) -> Result<Duration, BackendError> {
    if !f.retryable {
        return Err(BackendError {
            kind: f.kind,
            message: f.message,
            attempts: attempt,
        });
    }
    if attempt > policy.max_retries {
        return Err(BackendError {
            kind: f.kind,
            message: format!("{} (after {attempt} attempts)", f.message),
            attempts: attempt,
        });
    }
    let backoff = f
        .retry_after
        .unwrap_or_else(|| backoff_before(policy.backoff, attempt));
    tracing::debug!(attempt, ?backoff, message = %f.message, "retrying");
    Ok(backoff)
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
struct ChunkReader {
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
    fn new(resp: reqwest::Response, idle: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            stream: Box::pin(resp.bytes_stream()),
            idle,
            stall: Box::pin(tokio::time::sleep_until(now + idle)),
            last_data: now,
        }
    }

    /// The next chunk; `Ok(None)` at a clean end of body.
    async fn next(&mut self) -> Result<Option<bytes::Bytes>, BackendError> {
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

/// A backend's reading of one streamed response: it gets every frame in order, and keeps what
/// it learns (text, first-token instant, counts) until the stream ends.
pub trait FrameHandler: Send + 'static {
    /// One frame: an SSE event's data or an NDJSON line.
    fn frame(&mut self, frame: &str) -> Result<Flow, BackendError>;
}

/// A response streamed through a [`FrameHandler`].
pub struct Streamed<H> {
    /// The handler, with what it read.
    pub handler: H,
    /// Whether the handler said the response was complete (else the body just ended).
    pub completed: bool,
    /// When the last byte the handler needed arrived.
    pub finished_at: Instant,
    /// HTTP attempts (1 = no retry).
    pub attempts: u32,
}

/// How a backend's measured request reaches its server: over plain `http` (no proxy set) a
/// blocking HTTP/1.1 client on a thread of its own ([`super::wire`]), which costs the least CPU
/// per streamed token; otherwise (TLS, a proxy, credentials in the URL) reqwest.
pub struct Transport {
    url: String,
    policy: HttpPolicy,
    direct: Option<Arc<DirectClient>>,
    /// ureq in place of the direct client (`IPW_HTTP_CLIENT=ureq`), for the comparison only.
    #[cfg(feature = "ureq-transport")]
    ureq: Option<Arc<super::ureq_client::UreqClient>>,
    client: reqwest::Client,
}

/// One blocking attempt: frames go to the handler; the outcome as [`DirectClient::attempt`]'s.
type BlockingAttempt = dyn Fn(&mut FrameFn, &Abort) -> Result<Result<wire::Streamed, BackendError>, NoResponse>
    + Send
    + Sync;

/// Stops a direct attempt's thread when the query's future is dropped (deadline, cancel).
struct AbortOnDrop(Arc<Abort>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Transport {
    /// A transport for POSTs to `url` under `policy`.
    pub fn new(url: &str, policy: &HttpPolicy, model: &str) -> Result<Self, BackendSetupError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| BackendSetupError {
            model: model.into(),
            message: format!("`base_url` gives `{url}`, which is not a URL: {e}"),
        })?;
        let direct = if proxy_configured() {
            None
        } else {
            DirectClient::new(&parsed, policy.connect_timeout, policy.read_timeout).map(Arc::new)
        };
        #[cfg(feature = "ureq-transport")]
        let (direct, ureq) = match std::env::var("IPW_HTTP_CLIENT").as_deref() {
            Ok("ureq") if direct.is_some() => (
                None,
                Some(Arc::new(super::ureq_client::UreqClient::new(
                    url,
                    policy.connect_timeout,
                    policy.read_timeout,
                ))),
            ),
            _ => (direct, None),
        };
        Ok(Self {
            url: url.into(),
            policy: policy.clone(),
            direct,
            #[cfg(feature = "ureq-transport")]
            ureq,
            client: policy.client(model)?,
        })
    }

    /// `direct-http1` or `reqwest`, for the manifest.
    pub fn name(&self) -> &'static str {
        #[cfg(feature = "ureq-transport")]
        if self.ureq.is_some() {
            return "ureq";
        }
        if self.direct.is_some() {
            "direct-http1"
        } else {
            "reqwest"
        }
    }

    /// POST the JSON `body` (with a bearer token when given), retrying as the policy says until
    /// a response head is a success, and stream the response's frames into `handler`.
    pub async fn stream<H: FrameHandler>(
        &self,
        body: Vec<u8>,
        bearer: Option<&str>,
        framing: Framing,
        handler: H,
    ) -> Result<Streamed<H>, BackendError> {
        #[cfg(feature = "ureq-transport")]
        if let Some(client) = &self.ureq {
            return self
                .stream_ureq(client, body, bearer, framing, handler)
                .await;
        }
        match &self.direct {
            Some(direct) => {
                self.stream_direct(direct, body, bearer, framing, handler)
                    .await
            }
            None => self.stream_reqwest(body, bearer, framing, handler).await,
        }
    }

    async fn stream_direct<H: FrameHandler>(
        &self,
        direct: &Arc<DirectClient>,
        body: Vec<u8>,
        bearer: Option<&str>,
        framing: Framing,
        handler: H,
    ) -> Result<Streamed<H>, BackendError> {
        let request: Vec<u8> = direct.request(&body, bearer)?;
        let direct = direct.clone();
        let attempt: Arc<BlockingAttempt> =
            Arc::new(move |each, abort| direct.attempt(&request, framing, each, abort));
        self.stream_blocking(attempt, handler).await
    }

    #[cfg(feature = "ureq-transport")]
    async fn stream_ureq<H: FrameHandler>(
        &self,
        client: &Arc<super::ureq_client::UreqClient>,
        body: Vec<u8>,
        bearer: Option<&str>,
        framing: Framing,
        handler: H,
    ) -> Result<Streamed<H>, BackendError> {
        let (client, bearer) = (client.clone(), bearer.map(str::to_string));
        let attempt: Arc<BlockingAttempt> =
            Arc::new(move |each, _abort| client.attempt(&body, bearer.as_deref(), framing, each));
        self.stream_blocking(attempt, handler).await
    }

    /// Attempts on a thread of the blocking pool, retried as the policy says.
    async fn stream_blocking<H: FrameHandler>(
        &self,
        attempt_once: Arc<BlockingAttempt>,
        mut handler: H,
    ) -> Result<Streamed<H>, BackendError> {
        let abort = Arc::new(Abort::default());
        let _stop = AbortOnDrop(abort.clone());
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (attempt_once, abort) = (attempt_once.clone(), abort.clone());
            // Each attempt is one job on the blocking pool (its threads are kept): the backoff
            // between attempts is an async sleep, so dropping the query stops it at once.
            let (back, outcome) = tokio::task::spawn_blocking(move || {
                let outcome = attempt_once(&mut |f| handler.frame(f), &abort);
                (handler, outcome)
            })
            .await
            .map_err(|e| BackendError {
                kind: ErrorKind::StreamClosed,
                message: format!("the HTTP thread failed: {e}"),
                attempts: attempt,
            })?;
            handler = back;
            match outcome {
                Ok(Ok(s)) => {
                    return Ok(Streamed {
                        handler,
                        completed: s.completed,
                        finished_at: s.finished_at,
                        attempts: attempt,
                    })
                }
                Ok(Err(e)) => {
                    return Err(BackendError {
                        attempts: attempt,
                        ..e
                    })
                }
                Err(failure) => {
                    tokio::time::sleep(retry_or_fail(&self.policy, attempt, failure)?).await
                }
            }
        }
    }

    async fn stream_reqwest<H: FrameHandler>(
        &self,
        body: Vec<u8>,
        bearer: Option<&str>,
        framing: Framing,
        mut handler: H,
    ) -> Result<Streamed<H>, BackendError> {
        let body = bytes::Bytes::from(body);
        let (resp, attempts) = send_with_retry(&self.policy, || {
            let rb = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            match bearer {
                Some(key) => rb.bearer_auth(key),
                None => rb,
            }
        })
        .await?;
        let mut reader = ChunkReader::new(resp, self.policy.read_timeout);
        let mut framer = Framer::new(framing);
        let mut each = |f: &str| handler.frame(f);
        let read = async {
            while let Some(chunk) = reader.next().await? {
                if let Flow::Done = framer.push(&chunk, &mut each)? {
                    return Ok(true);
                }
            }
            // The body ended: a final frame may lack its terminator.
            Ok(matches!(framer.finish(&mut each)?, Flow::Done))
        };
        let completed = read
            .await
            .map_err(|e: BackendError| BackendError { attempts, ..e })?;
        Ok(Streamed {
            handler,
            completed,
            finished_at: Instant::now(),
            attempts,
        })
    }
}

/// Whether the environment names an HTTP proxy (reqwest honours these; the direct client
/// does not, so then reqwest carries the request as before).
fn proxy_configured() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
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
