//! A small fault-injecting HTTP server on loopback, standing in for an OpenAI-compatible or
//! Ollama server where the point of a test is a fault (or a protocol we cannot install here).
//! The behaviour is chosen by the `model` field of each request, so one experiment with several
//! `[[models]]` exercises several faults, one run each.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Request path.
    pub path: String,
    /// Lower-cased header names -> values.
    pub headers: HashMap<String, String>,
    /// Parsed JSON body.
    pub body: Value,
    /// When the request arrived, on the run clock (`CLOCK_MONOTONIC`, as record windows).
    pub t: f64,
}

/// The running server; requests are kept for assertions.
pub struct FaultServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Every request seen.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FaultServer {
    /// Start on a free port; serves until the test process exits.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let counters: Arc<Mutex<HashMap<String, usize>>> = Default::default();
        let (seen2, counters2) = (seen.clone(), counters.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, counters) = (seen2.clone(), counters2.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &seen, &counters);
                });
            }
        });
        Self { url, seen }
    }

    /// Requests seen for a model id.
    pub fn requests_for(&self, model: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.body["model"] == model)
            .cloned()
            .collect()
    }
}

fn handle(
    mut stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    counters: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers,
        body: body.clone(),
        t: ipw_core::records::clock::now_s(),
    });
    if path == "/tokenize" {
        return status(&mut stream, 404, "not found", None);
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let n = {
        let mut c = counters.lock().unwrap();
        let n = c.entry(model.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let chunk = |content: &str| {
        format!(
            r#"{{"choices":[{{"index":0,"delta":{{"content":{content:?}}},"finish_reason":null}}]}}"#
        )
    };
    let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_string();
    let usage =
        r#"{"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14}}"#
            .to_string();
    match model.as_str() {
        "ok" => sse(
            &mut stream,
            &[
                chunk("The"),
                chunk(" answer"),
                chunk(" is 5."),
                finish,
                usage,
                "[DONE]".into(),
            ],
        ),
        "slow" => {
            let mut events: Vec<String> = (0..10).map(|i| chunk(&format!("w{i} "))).collect();
            events.extend([finish, usage, "[DONE]".into()]);
            sse_paced(&mut stream, &events, Duration::from_millis(50))
        }
        "no-usage" => sse(
            &mut stream,
            &[chunk("Paris"), chunk("."), finish, "[DONE]".into()],
        ),
        "status-500" => status(&mut stream, 500, r#"{"error":"boom"}"#, None),
        // A reasoning model: thinks (`reasoning_content`) for 0.4 s before the answer.
        "reasoning" => {
            start_sse(&mut stream)?;
            let think = r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Let me think."},"finish_reason":null}]}"#;
            write_chunk(&mut stream, &format!("data: {think}\n\n"))?;
            std::thread::sleep(Duration::from_millis(400));
            for e in [chunk("5"), finish, usage, "[DONE]".into()] {
                write_chunk(&mut stream, &format!("data: {e}\n\n"))?;
            }
            write_chunk(&mut stream, "")
        }
        // Odd requests break mid-stream (never retried: data had arrived), even ones answer.
        "flaky" if n % 2 == 1 => {
            start_sse(&mut stream)?;
            write_chunk(&mut stream, &format!("data: {}\n\n", chunk("partial")))?;
            stream.write_all(b"c8\r\ndata: {\"cho")?;
            Ok(())
        }
        "flaky" => sse(
            &mut stream,
            &[chunk("The answer is 5."), finish, usage, "[DONE]".into()],
        ),
        "rate-limit-once" if n % 2 == 1 => {
            status(&mut stream, 429, r#"{"error":"slow down"}"#, Some("0"))
        }
        "rate-limit-once" => sse(&mut stream, &[chunk("ok"), finish, usage, "[DONE]".into()]),
        "stall" => {
            start_sse(&mut stream)?;
            write_chunk(&mut stream, &format!("data: {}\n\n", chunk("thinking")))?;
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        }
        "close-mid-stream" => {
            start_sse(&mut stream)?;
            write_chunk(&mut stream, &format!("data: {}\n\n", chunk("partial")))?;
            // Announce a 200-byte chunk, send 12 bytes, and hang up.
            stream.write_all(b"c8\r\ndata: {\"cho")?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)
        }
        "malformed" => sse(
            &mut stream,
            &[chunk("fine"), "{this is not json".into(), "[DONE]".into()],
        ),
        "ollama" => ndjson(&mut stream, &ollama_replay()),
        other => status(
            &mut stream,
            404,
            &format!(r#"{{"error":"unknown model {other}"}}"#),
            None,
        ),
    }
}

/// The NDJSON stream of Ollama's documented `/api/chat` streaming example (docs/api.md).
fn ollama_replay() -> Vec<String> {
    let part = |c: &str| {
        format!(
            r#"{{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{{"role":"assistant","content":{c:?},"images":null}},"done":false}}"#
        )
    };
    vec![
        part("The"),
        part(" sky"),
        part(" is blue."),
        r#"{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}"#.into(),
    ]
}

fn status(
    stream: &mut TcpStream,
    code: u16,
    body: &str,
    retry_after: Option<&str>,
) -> std::io::Result<()> {
    let extra = retry_after
        .map(|r| format!("Retry-After: {r}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

fn start_sse(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
}

fn write_chunk(stream: &mut TcpStream, data: &str) -> std::io::Result<()> {
    write!(stream, "{:x}\r\n{data}\r\n", data.len())?;
    stream.flush()
}

fn sse(stream: &mut TcpStream, events: &[String]) -> std::io::Result<()> {
    sse_paced(stream, events, Duration::from_millis(5))
}

fn sse_paced(stream: &mut TcpStream, events: &[String], pause: Duration) -> std::io::Result<()> {
    start_sse(stream)?;
    for e in events {
        write_chunk(stream, &format!("data: {e}\n\n"))?;
        std::thread::sleep(pause);
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}

fn ndjson(stream: &mut TcpStream, lines: &[String]) -> std::io::Result<()> {
    stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    for l in lines {
        write_chunk(stream, &format!("{l}\n"))?;
        std::thread::sleep(Duration::from_millis(5));
    }
    stream.write_all(b"0\r\n\r\n")?;
    stream.flush()
}
