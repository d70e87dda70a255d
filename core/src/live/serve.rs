//! The `/metrics` endpoint: a small HTTP/1.1 server on one thread of its own.
//!
//! It answers `GET` and `HEAD` of `/metrics` and nothing else (405 for other methods, 404 for
//! other paths), reads only a request's head (never a body), one connection at a time with
//! short timeouts, and is bound to exactly the address given: a scrape can read the counters
//! and can change nothing. It runs on its own thread, never on the async runtime that drives
//! the queries, and its CPU is reported as `ipw_metrics_cpu_seconds_total`.

use super::LiveMetrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the server looks for a connection (and for the stop flag) when idle.
const POLL: Duration = Duration::from_millis(100);

/// How often waiting readings are folded when nobody scrapes.
const FOLD_EVERY: Duration = Duration::from_secs(1);

/// The most of a request's head read; a longer one is refused.
const MAX_HEAD: usize = 8 * 1024;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is not `host:port`.
    #[error("--metrics {addr}: not an address (give host:port, e.g. 127.0.0.1:9464): {message}")]
    Address {
        /// What was given.
        addr: String,
        /// Why it does not resolve.
        message: String,
    },
    /// Binding failed (in use, not ours, no permission).
    #[error("--metrics {addr}: cannot listen there: {source}")]
    Bind {
        /// What was given.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A running `/metrics` endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listen on `addr` (`host:port`; port 0 picks a free one) and serve `metrics`.
    pub fn start(addr: &str, metrics: LiveMetrics) -> Result<Self, ServeError> {
        use std::net::ToSocketAddrs;
        let bad = |message: String| ServeError::Address {
            addr: addr.to_string(),
            message,
        };
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| bad(e.to_string()))?
            .next()
            .ok_or_else(|| bad("it resolves to nothing".into()))?;
        let listener = TcpListener::bind(resolved).map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let bind_err = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let local = listener.local_addr().map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ipw-metrics".into())
            .spawn(move || serve(listener, metrics, flag))
            .map_err(bind_err)?;
        Ok(Self {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen, when 0 was given).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, metrics: LiveMetrics, stop: Arc<AtomicBool>) {
    let cpu0 = crate::selfcpu::thread_cpu_s();
    let mut folded = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                metrics.server_cpu(crate::selfcpu::thread_cpu_s() - cpu0);
                if let Err(e) = answer(stream, &metrics) {
                    tracing::debug!("metrics: a scrape failed: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                tracing::warn!("metrics: accepting a connection failed: {e}");
                std::thread::sleep(POLL);
            }
        }
        if folded.elapsed() >= FOLD_EVERY {
            metrics.fold();
            metrics.server_cpu(crate::selfcpu::thread_cpu_s() - cpu0);
            folded = Instant::now();
        }
    }
}

/// Read one request's head and answer it.
fn answer(mut stream: TcpStream, metrics: &LiveMetrics) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                &[],
                "",
                false,
            );
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => respond(
            &mut stream,
            "200 OK",
            &[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
            &metrics.render(),
            method == "HEAD",
        ),
        ("GET" | "HEAD", _) => respond(
            &mut stream,
            "404 Not Found",
            &[],
            "ipw serves /metrics only\n",
            method == "HEAD",
        ),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            "ipw's /metrics is read-only: GET or HEAD\n",
            false,
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out += &format!("{k}: {v}\r\n");
    }
    out += &format!("Content-Length: {}\r\n\r\n", body.len());
    if !head_only {
        out += body;
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}
