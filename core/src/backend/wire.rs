//! A minimal blocking HTTP/1.1 client for the measured request: one POST whose streamed
//! response is read on a thread of its own, over plain `http://` (a model server on this
//! machine or network). [`super::http::Transport`] picks it; TLS and proxies stay with reqwest.
//!
//! Why: where ipw shares the CPU with the model, what ipw spends per streamed token is inside
//! the energy it reports. Through reqwest each token crossed hyper's connection task, a body
//! channel and the async runtime's wake-up path (ipw used 1.3x the CPU of `curl -N` per query).
//! Here the thread blocks in `read` and parses the token where it lands: one system call and no
//! hand-over per token, and the instants of the first token and the last byte are taken on the
//! thread that read them.

use super::sse::{Flow, FrameFn, Framer, Framing};
use super::{BackendError, ErrorKind};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most of an error response's body quoted in the error message.
const ERROR_BODY_CAP: usize = 512;

/// One server (scheme `http`, host, port) and one path on it, with idle kept-alive connections.
pub(crate) struct DirectClient {
    /// Host name or address, without IPv6 brackets (for resolving).
    host: String,
    port: u16,
    /// The `Host` header: as written in the URL.
    authority: String,
    /// Path and query of the URL.
    target: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Connections whose last response ended cleanly with keep-alive, newest last.
    idle: Mutex<Vec<TcpStream>>,
}

/// Why an attempt got no response to stream; the retry policy decides what happens next.
#[derive(Debug)]
pub(crate) struct NoResponse {
    /// The error kind a record would carry.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// The server's `Retry-After`, in seconds, capped at 30.
    pub retry_after: Option<Duration>,
    /// Whether another attempt may help (connect errors, timeouts, 429 and 5xx).
    pub retryable: bool,
}

impl NoResponse {
    /// A response whose status is not a success: 429 and 5xx may be retried.
    pub fn status(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let shown = reqwest::StatusCode::from_u16(status)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| status.to_string());
        Self {
            kind: if status == 429 {
                ErrorKind::RateLimited
            } else {
                ErrorKind::HttpStatus
            },
            message: format!("HTTP {shown}: {body}"),
            retry_after,
            retryable: status == 429 || status >= 500,
        }
    }
}

/// A `Retry-After` header's value in seconds, capped at 30 (an HTTP date is not read).
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 30.0)))
}

/// A response streamed to its end (or to the handler's `Done`).
#[derive(Debug)]
pub(crate) struct Streamed {
    /// Whether the handler said the response was complete.
    pub completed: bool,
    /// When the last byte the handler needed arrived.
    pub finished_at: Instant,
}

/// Lets another thread stop an attempt: shutting the connection down wakes a blocked `read`.
#[derive(Default)]
pub(crate) struct Abort {
    state: Mutex<AbortState>,
}

#[derive(Default)]
struct AbortState {
    aborted: bool,
    /// A second handle on the connection in use (a `dup`), to shut it down.
    conn: Option<TcpStream>,
}

impl Abort {
    /// Stop the attempt in progress, and any later one.
    pub fn abort(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.aborted = true;
        if let Some(conn) = s.conn.take() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    /// Watch `conn`; false when already aborted.
    fn watch(&self, conn: &TcpStream) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.aborted {
            return false;
        }
        s.conn = conn.try_clone().ok();
        true
    }

    /// Stop watching; false when aborted meanwhile (the connection is then not reusable).
    fn release(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.conn = None;
        !s.aborted
    }
}

impl DirectClient {
    /// A client for `url` when it is plain `http` without credentials in it; `None` otherwise.
    pub fn new(
        url: &reqwest::Url,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Option<Self> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host_str = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_string(),
        };
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        Some(Self {
            host: host_str
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            authority,
            target,
            connect_timeout,
            read_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The bytes of a JSON POST of `body`, with a bearer token when given. The token never
    /// appears in an error message.
    pub fn request(&self, body: &[u8], bearer: Option<&str>) -> Result<Vec<u8>, BackendError> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: */*\r\nContent-Length: {}\r\n",
            self.target,
            self.authority,
            body.len()
        );
        if let Some(token) = bearer {
            if token.bytes().any(|b| b.is_ascii_control()) {
                return Err(BackendError::new(
                    ErrorKind::Connect,
                    "the API key contains a control character (a line break?); it cannot be sent in a header",
                ));
            }
            head.push_str("Authorization: Bearer ");
            head.push_str(token);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Ok(bytes)
    }

    /// One attempt: send `request` (from [`Self::request`]), and if the response head is a
    /// success, stream its body through `framing` into `each`. `Err` when no response came to
    /// stream (the caller may retry); `Ok(Err(..))` when streaming failed (final).
    pub fn attempt(
        &self,
        request: &[u8],
        framing: Framing,
        each: &mut FrameFn,
        abort: &Abort,
    ) -> Result<Result<Streamed, BackendError>, NoResponse> {
        let mut pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        loop {
            let reused = pooled.is_some();
            let conn = match pooled.take() {
                Some(c) => c,
                None => self.connect().map_err(|e| NoResponse {
                    kind: ErrorKind::Connect,
                    message: format!("cannot connect to {}: {e}", self.authority),
                    retry_after: None,
                    retryable: true,
                })?,
            };
            if !abort.watch(&conn) {
                return Err(cancelled());
            }
            let mut conn = Conn::new(conn);
            let head = conn.send(request).and_then(|()| conn.read_head());
            let head = match head {
                Ok(h) => h,
                // A kept-alive connection the server has closed since: nothing of this request
                // was answered, so a fresh connection is not another attempt.
                Err(e) if reused && e.is_stale_connection() => {
                    abort.release();
                    continue;
                }
                Err(e) => {
                    let aborted = !abort.release();
                    return Err(if aborted {
                        cancelled()
                    } else {
                        e.into_no_response(self.read_timeout)
                    });
                }
            };
            if !(200..300).contains(&head.status) {
                let body = conn.error_body(&head);
                abort.release();
                return Err(NoResponse::status(head.status, &body, head.retry_after));
            }
            let result = conn.stream_body(&head, framing, each, self.read_timeout);
            if !abort.release() {
                return Err(cancelled());
            }
            if matches!(result, Ok((_, true))) {
                self.idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(conn.into_inner());
            }
            return Ok(result.map(|(streamed, _)| streamed));
        }
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    // The read timeout is the longest silence allowed: before the head and
                    // between two pieces of the body, as with reqwest.
                    s.set_read_timeout(Some(self.read_timeout))?;
                    s.set_write_timeout(Some(self.read_timeout))?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the host name resolved to no address",
            )
        }))
    }
}

fn cancelled() -> NoResponse {
    NoResponse {
        kind: ErrorKind::Cancelled,
        message: "the query was cancelled".into(),
        retry_after: None,
        retryable: false,
    }
}

/// What a response head says about the body that follows.
#[derive(Debug)]
struct Head {
    status: u16,
    body: BodyKind,
    /// Whether the connection may carry another request after this response.
    keep_alive: bool,
    retry_after: Option<Duration>,
}

/// How the end of a body is found.
#[derive(Debug, Clone, Copy)]
enum BodyKind {
    Chunked,
    Length(u64),
    UntilClose,
}

#[derive(Debug)]
enum HeadError {
    /// The connection ended before a complete head (`any_bytes`: after part of one).
    Closed {
        any_bytes: bool,
    },
    Io(io::Error),
    Malformed(String),
}

impl HeadError {
    /// What a kept-alive connection the server closed while idle looks like: the request
    /// was refused or answered with nothing.
    fn is_stale_connection(&self) -> bool {
        match self {
            Self::Closed { any_bytes } => !any_bytes,
            Self::Io(e) => !is_timeout(e),
            Self::Malformed(_) => false,
        }
    }

    fn into_no_response(self, read_timeout: Duration) -> NoResponse {
        let (kind, message) = match self {
            Self::Closed { .. } => (
                ErrorKind::Connect,
                "request failed: connection closed before a response head".to_string(),
            ),
            Self::Io(e) if is_timeout(&e) => (
                ErrorKind::Timeout,
                format!("no response head within {read_timeout:?}"),
            ),
            Self::Io(e) => (ErrorKind::Connect, format!("request failed: {e}")),
            Self::Malformed(m) => (
                ErrorKind::MalformedStream,
                format!("bad response head: {m}"),
            ),
        };
        let retryable = kind != ErrorKind::MalformedStream;
        NoResponse {
            kind,
            message,
            retry_after: None,
            retryable,
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A connection with its read buffer (bytes `start..end` are read but not yet used).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    fn into_inner(self) -> TcpStream {
        self.stream
    }

    fn send(&mut self, request: &[u8]) -> Result<(), HeadError> {
        self.stream.write_all(request).map_err(HeadError::Io)
    }

    /// Read more bytes after those buffered; 0 at the end of the stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Read the response head, skipping interim (1xx) responses.
    fn read_head(&mut self) -> Result<Head, HeadError> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf[self.start..self.end]) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = head_of(&resp)?;
                    self.start += n;
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {
                    if self.end - self.start > MAX_HEAD {
                        return Err(HeadError::Malformed(format!(
                            "longer than {MAX_HEAD} bytes"
                        )));
                    }
                    let any_bytes = self.end > 0;
                    match self.fill() {
                        Ok(0) => return Err(HeadError::Closed { any_bytes }),
                        Ok(_) => {}
                        Err(e) => return Err(HeadError::Io(e)),
                    }
                }
                Err(e) => return Err(HeadError::Malformed(e.to_string())),
            }
        }
    }

    /// Up to [`ERROR_BODY_CAP`] bytes of an error response's body, for the message.
    fn error_body(&mut self, head: &Head) -> String {
        let mut out = Vec::new();
        let mut body = Body::new(head.body);
        // An error body is short, and the server may keep the connection open after it: a
        // short timeout, not the read timeout, ends the wait.
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(2)));
        while out.len() < ERROR_BODY_CAP {
            let input = &self.buf[self.start..self.end];
            let fed = body.feed(input, &mut |data| {
                out.extend_from_slice(data);
                Ok(Flow::Continue)
            });
            let Ok((used, state)) = fed else { break };
            self.start += used;
            if !matches!(state, BodyState::More) || !matches!(self.fill(), Ok(n) if n > 0) {
                break;
            }
        }
        out.truncate(ERROR_BODY_CAP);
        String::from_utf8_lossy(&out).trim().to_string()
    }

    /// Stream the body into the framer and `each`. Also returns whether the connection can be
    /// reused (the body ended cleanly, nothing after it, keep-alive).
    fn stream_body(
        &mut self,
        head: &Head,
        framing: Framing,
        each: &mut FrameFn,
        read_timeout: Duration,
    ) -> Result<(Streamed, bool), BackendError> {
        let mut framer = Framer::new(framing);
        let mut body = Body::new(head.body);
        loop {
            let input = &self.buf[self.start..self.end];
            let (used, state) = body.feed(input, &mut |data| framer.push(data, each))?;
            self.start += used;
            match state {
                BodyState::Stopped => {
                    let finished_at = Instant::now();
                    let reusable = head.keep_alive && self.drain(&mut body);
                    return Ok((
                        Streamed {
                            completed: true,
                            finished_at,
                        },
                        reusable,
                    ));
                }
                BodyState::End => {
                    let finished_at = Instant::now();
                    let completed = matches!(framer.finish(each)?, Flow::Done);
                    let reusable = head.keep_alive && self.start == self.end;
                    return Ok((
                        Streamed {
                            completed,
                            finished_at,
                        },
                        reusable,
                    ));
                }
                BodyState::More => {}
            }
            match self.fill() {
                Ok(0) if matches!(head.body, BodyKind::UntilClose) => {
                    let finished_at = Instant::now();
                    let completed = matches!(framer.finish(each)?, Flow::Done);
                    return Ok((
                        Streamed {
                            completed,
                            finished_at,
                        },
                        false,
                    ));
                }
                Ok(0) => {
                    return Err(BackendError::new(
                        ErrorKind::StreamClosed,
                        "connection closed mid-stream: the body ended early",
                    ))
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    return Err(BackendError::new(
                        ErrorKind::Timeout,
                        format!("stream stalled: no data for {read_timeout:?}"),
                    ))
                }
                Err(e) => {
                    return Err(BackendError::new(
                        ErrorKind::StreamClosed,
                        format!("connection closed mid-stream: {e}"),
                    ))
                }
            }
        }
    }

    /// After the handler's last frame: read the body's end if it is already here (without
    /// waiting), so the connection can carry the next request. False when it is not.
    fn drain(&mut self, body: &mut Body) -> bool {
        let mut discard = |_: &[u8]| Ok(Flow::Continue);
        let mut ended = false;
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        loop {
            let input = &self.buf[self.start..self.end];
            match body.feed(input, &mut discard) {
                Ok((used, BodyState::End)) => {
                    self.start += used;
                    ended = self.start == self.end;
                    break;
                }
                Ok((used, _)) => self.start += used,
                Err(_) => break,
            }
            if !matches!(self.fill(), Ok(n) if n > 0) {
                break;
            }
        }
        self.stream.set_nonblocking(false).is_ok() && ended
    }
}

/// The parts of a parsed head ipw uses.
fn head_of(resp: &httparse::Response) -> Result<Head, HeadError> {
    let status = resp
        .code
        .ok_or_else(|| HeadError::Malformed("no status code".into()))?;
    let mut chunked = false;
    let mut length = None;
    let mut close = resp.version != Some(1);
    let mut retry_after = None;
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| HeadError::Malformed(format!("Content-Length `{value}`")))?;
            if length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("two different Content-Lengths".into()));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && resp.version == Some(0) {
                    close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = self::retry_after(value);
        }
    }
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        BodyKind::Length(0)
    } else if chunked {
        BodyKind::Chunked
    } else if let Some(n) = length {
        BodyKind::Length(n)
    } else {
        BodyKind::UntilClose
    };
    Ok(Head {
        status,
        body,
        keep_alive: !close && !matches!(body, BodyKind::UntilClose),
        retry_after,
    })
}

/// Where a body stands after some input.
#[derive(Debug, PartialEq)]
enum BodyState {
    /// More body to come.
    More,
    /// The body ended.
    End,
    /// The sink said `Done`.
    Stopped,
}

/// Finds the body's bytes in what the connection delivers: chunked transfer coding, a
/// Content-Length, or everything until the connection closes.
#[derive(Debug)]
enum Body {
    Chunked(Chunk),
    Length(u64),
    UntilClose,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// In a chunk-size line: the value so far, its digits, whether past them (extension).
    Size {
        n: u64,
        digits: u8,
        past: bool,
    },
    /// After the size line's CR.
    SizeLf {
        n: u64,
    },
    /// Inside chunk data.
    Data {
        left: u64,
    },
    /// After chunk data: its CR, then its LF.
    DataCr,
    DataLf,
    /// In the trailer section; `empty`: the current line has no byte yet.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    End,
}

impl Body {
    fn new(kind: BodyKind) -> Self {
        match kind {
            BodyKind::Chunked => Self::Chunked(Chunk::Size {
                n: 0,
                digits: 0,
                past: false,
            }),
            BodyKind::Length(n) => Self::Length(n),
            BodyKind::UntilClose => Self::UntilClose,
        }
    }

    /// Hand the body bytes in `input` to `sink`, in order; returns how much of `input` was
    /// used and where the body stands.
    fn feed(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<Flow, BackendError>,
    ) -> Result<(usize, BodyState), BackendError> {
        match self {
            Self::UntilClose => {
                if !input.is_empty() && matches!(sink(input)?, Flow::Done) {
                    return Ok((input.len(), BodyState::Stopped));
                }
                Ok((input.len(), BodyState::More))
            }
            Self::Length(left) => {
                let take = (*left).min(input.len() as u64) as usize;
                *left -= take as u64;
                if take > 0 && matches!(sink(&input[..take])?, Flow::Done) {
                    return Ok((take, BodyState::Stopped));
                }
                Ok((
                    take,
                    if *left == 0 {
                        BodyState::End
                    } else {
                        BodyState::More
                    },
                ))
            }
            Self::Chunked(state) => decode_chunked(state, input, sink),
        }
    }
}

fn bad_chunk(what: &str) -> BackendError {
    BackendError::new(
        ErrorKind::MalformedStream,
        format!("invalid chunked transfer coding: {what}"),
    )
}

fn decode_chunked(
    state: &mut Chunk,
    input: &[u8],
    sink: &mut dyn FnMut(&[u8]) -> Result<Flow, BackendError>,
) -> Result<(usize, BodyState), BackendError> {
    let size_done = |n: u64, digits: u8| -> Result<Chunk, BackendError> {
        match (digits, n) {
            (0, _) => Err(bad_chunk("a chunk-size line without a size")),
            (_, 0) => Ok(Chunk::Trailer { empty: true }),
            (_, n) => Ok(Chunk::Data { left: n }),
        }
    };
    let mut i = 0;
    while i < input.len() {
        if let Chunk::Data { left } = state {
            let take = (*left).min((input.len() - i) as u64) as usize;
            let flow = sink(&input[i..i + take])?;
            i += take;
            *left -= take as u64;
            if *left == 0 {
                *state = Chunk::DataCr;
            }
            if let Flow::Done = flow {
                return Ok((i, BodyState::Stopped));
            }
            continue;
        }
        let b = input[i];
        i += 1;
        *state = match *state {
            Chunk::Size { n, digits, past } => match b {
                b'\r' => {
                    size_done(n, digits)?;
                    Chunk::SizeLf { n }
                }
                b'\n' => size_done(n, digits)?,
                _ if past => Chunk::Size { n, digits, past },
                b';' | b' ' | b'\t' => Chunk::Size {
                    n,
                    digits,
                    past: true,
                },
                _ => {
                    let d = (b as char)
                        .to_digit(16)
                        .ok_or_else(|| bad_chunk(&format!("byte {b:#04x} in a chunk size")))?;
                    if digits >= 15 {
                        return Err(bad_chunk("a chunk size over 15 hex digits"));
                    }
                    Chunk::Size {
                        n: n * 16 + u64::from(d),
                        digits: digits + 1,
                        past: false,
                    }
                }
            },
            Chunk::SizeLf { n } if b == b'\n' => size_done(n, 1)?,
            Chunk::SizeLf { .. } => return Err(bad_chunk("CR without LF after a chunk size")),
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataCr | Chunk::DataLf if b == b'\n' => Chunk::Size {
                n: 0,
                digits: 0,
                past: false,
            },
            Chunk::DataCr | Chunk::DataLf => {
                return Err(bad_chunk("chunk data longer than its size"))
            }
            Chunk::Trailer { empty } if b == b'\r' => Chunk::TrailerLf { empty },
            Chunk::Trailer { empty: true } | Chunk::TrailerLf { empty: true } if b == b'\n' => {
                *state = Chunk::End;
                return Ok((i, BodyState::End));
            }
            Chunk::Trailer { empty: false } | Chunk::TrailerLf { empty: false } if b == b'\n' => {
                Chunk::Trailer { empty: true }
            }
            Chunk::TrailerLf { .. } => return Err(bad_chunk("CR without LF in the trailer")),
            Chunk::Trailer { .. } => Chunk::Trailer { empty: false },
            Chunk::Data { .. } => unreachable!("data is taken above"),
            Chunk::End => return Ok((i - 1, BodyState::End)),
        };
    }
    let state = if matches!(state, Chunk::End) {
        BodyState::End
    } else {
        BodyState::More
    };
    Ok((i, state))
}

#[cfg(test)]
mod tests;
