//! The measured request over ureq (a blocking HTTP client), in place of ipw's own HTTP/1.1
//! client ([`super::wire`]). Built only with the `ureq-transport` feature and chosen with
//! `IPW_HTTP_CLIENT=ureq`: it exists so that the README's comparison of the two (CPU per
//! streamed query) can be rerun, not as a supported path.
//!
//! Like the direct client, an attempt runs on a thread of the blocking pool and parses each
//! token where the `read` returns it. Unlike it, a query's deadline cannot shut the socket down
//! (ureq does not hand it out): the thread notices at its next read or read timeout.

use super::sse::{Flow, FrameFn, Framer, Framing};
use super::wire::{NoResponse, Streamed};
use super::{BackendError, ErrorKind};
use std::io::Read;
use std::time::{Duration, Instant};

/// One URL reached through a ureq agent (which keeps connections alive by itself).
pub(crate) struct UreqClient {
    agent: ureq::Agent,
    url: String,
}

impl UreqClient {
    /// A client for POSTs to `url`.
    pub fn new(url: &str, connect_timeout: Duration, read_timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(connect_timeout))
            .timeout_per_read(Some(read_timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            agent,
            url: url.into(),
        }
    }

    /// One attempt, with the direct client's contract: `Err` when no response came to stream
    /// (the caller may retry), `Ok(Err(..))` when streaming failed (final).
    pub fn attempt(
        &self,
        body: &[u8],
        bearer: Option<&str>,
        framing: Framing,
        each: &mut FrameFn,
    ) -> Result<Result<Streamed, BackendError>, NoResponse> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(key) = bearer {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.send(body).map_err(no_response)?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(super::wire::retry_after);
            let mut text = String::new();
            let _ = response
                .into_body()
                .into_reader()
                .take(512)
                .read_to_string(&mut text);
            return Err(NoResponse::status(status, &text, retry_after));
        }
        let mut reader = response.into_body().into_reader();
        let mut framer = Framer::new(framing);
        let mut buf = [0u8; 16 * 1024];
        let completed = loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    return Ok(Err(BackendError {
                        kind: if e.kind() == std::io::ErrorKind::TimedOut {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::StreamClosed
                        },
                        message: format!("reading the response: {e}"),
                        attempts: 1,
                    }))
                }
            };
            if n == 0 {
                break match framer.finish(each) {
                    Ok(flow) => matches!(flow, Flow::Done),
                    Err(e) => return Ok(Err(e)),
                };
            }
            match framer.push(&buf[..n], each) {
                Ok(Flow::Done) => break true,
                Ok(Flow::Continue) => {}
                Err(e) => return Ok(Err(e)),
            }
        };
        Ok(Ok(Streamed {
            completed,
            finished_at: Instant::now(),
        }))
    }
}

fn no_response(e: ureq::Error) -> NoResponse {
    let kind = match &e {
        ureq::Error::Timeout(_) => ErrorKind::Timeout,
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => ErrorKind::Connect,
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ErrorKind::Connect
        }
        _ => ErrorKind::StreamClosed,
    };
    NoResponse {
        kind,
        message: format!("ureq: {e}"),
        retry_after: None,
        retryable: matches!(kind, ErrorKind::Connect | ErrorKind::Timeout),
    }
}
