//! The direct client against byte-exact responses: chunked decoding at every split point,
//! heads, and small scripted servers on loopback for keep-alive, a closed idle connection,
//! abort, interim responses, error statuses, stalls and early ends (the point of each is a
//! protocol case a real model server rarely shows on demand).

use super::*;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Feed `input` to a fresh chunked decoder cut at `cuts`; returns the data and the final state.
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, BodyState), BackendError> {
    let mut body = Body::new(BodyKind::Chunked);
    let mut data = Vec::new();
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(input.len());
    let mut state = BodyState::More;
    for w in bounds.windows(2) {
        let piece = &input[w[0]..w[1]];
        let (used, s) = body.feed(piece, &mut |d| {
            data.extend_from_slice(d);
            Ok(Flow::Continue)
        })?;
        state = s;
        if state == BodyState::End {
            assert_eq!(
                w[0] + used,
                input.len() - b"EXTRA".len(),
                "the body ends right after its last CRLF"
            );
            break;
        }
        assert_eq!(used, piece.len(), "an unfinished body takes all its input");
    }
    Ok((data, state))
}

#[test]
fn chunked_bodies_decode_the_same_at_every_split() {
    // Extensions, upper-case hex, a bare LF, a trailer field, and bytes after the end.
    let input = b"5;name=v\r\nhello\r\nA \r\n, world!:)\r\n1\nx\n0\r\nExpires: never\r\n\r\nEXTRA";
    let want = b"hello, world!:)x".to_vec();
    for cut in 0..=input.len() {
        let (data, state) = decode_in_pieces(input, &[cut]).unwrap();
        assert_eq!(
            (data, state),
            (want.clone(), BodyState::End),
            "cut at {cut}"
        );
    }
    let every: Vec<usize> = (1..input.len()).collect();
    let (data, state) = decode_in_pieces(input, &every).unwrap();
    assert_eq!((data, state), (want, BodyState::End), "one byte at a time");
}

#[test]
fn broken_chunked_coding_is_a_malformed_stream() {
    for (input, what) in [
        (&b"zz\r\nhello\r\n0\r\n\r\n"[..], "chunk size"),
        (b"3\r\nhello\r\n0\r\n\r\n", "longer than its size"),
        (b"\r\nhello\r\n", "without a size"),
        (b"1234567890abcdef0\r\n", "over 15 hex digits"),
        (b"3\rxabc", "CR without LF"),
    ] {
        let err = decode_in_pieces(input, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedStream, "{input:?}");
        assert!(err.message.contains(what), "{input:?}: {}", err.message);
    }
}

#[test]
fn a_sink_that_is_done_stops_the_body_mid_chunk() {
    let mut body = Body::new(BodyKind::Chunked);
    let (used, state) = body
        .feed(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", &mut |d| {
            Ok(if d == b"abc" {
                Flow::Done
            } else {
                Flow::Continue
            })
        })
        .unwrap();
    assert_eq!((used, state), (6, BodyState::Stopped));
    let mut body = Body::new(BodyKind::Length(4));
    let (used, state) = body
        .feed(b"abcdEXTRA", &mut |_| Ok(Flow::Continue))
        .unwrap();
    assert_eq!((used, state), (4, BodyState::End));
}

fn head(raw: &str) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    assert!(resp.parse(raw.as_bytes()).unwrap().is_complete());
    head_of(&resp).unwrap()
}

#[test]
fn heads_say_how_the_body_ends_and_whether_the_connection_stays() {
    let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n");
    assert!(
        matches!(h.body, BodyKind::Chunked) && h.keep_alive,
        "chunked wins"
    );
    let h = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\nConnection: Close\r\n\r\n");
    assert!(matches!(h.body, BodyKind::Length(9)) && !h.keep_alive);
    let h = head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert!(!h.keep_alive, "HTTP/1.0 closes unless it says keep-alive");
    let h = head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n");
    assert!(h.keep_alive);
    let h = head("HTTP/1.1 200 OK\r\n\r\n");
    assert!(matches!(h.body, BodyKind::UntilClose) && !h.keep_alive);
    let h = head("HTTP/1.1 429 Slow down\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        (h.status, h.retry_after),
        (429, Some(Duration::from_secs(7)))
    );
    let h = head("HTTP/1.1 503 X\r\nRetry-After: 3600\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.retry_after, Some(Duration::from_secs(30)), "capped");
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut resp = httparse::Response::new(&mut headers);
    let raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n";
    resp.parse(raw.as_bytes()).unwrap();
    assert!(matches!(head_of(&resp), Err(HeadError::Malformed(_))));
}

/// A loopback server running `serve(connection index, reader, stream)` for each connection.
struct Scripted {
    url: reqwest::Url,
    connections: Arc<AtomicUsize>,
}

fn scripted(
    serve: impl Fn(usize, &mut BufReader<TcpStream>, TcpStream) + Send + Sync + 'static,
) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        listener.local_addr().unwrap()
    );
    let connections = Arc::new(AtomicUsize::new(0));
    let (count, serve) = (connections.clone(), Arc::new(serve));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let i = count.fetch_add(1, Ordering::SeqCst);
            let serve = serve.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                serve(i, &mut reader, stream)
            });
        }
    });
    Scripted {
        url: reqwest::Url::parse(&url).unwrap(),
        connections,
    }
}

/// Read one request (head and Content-Length body); `None` when the client closed.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

const SSE_OK: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
    9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";

fn client(url: &reqwest::Url, read_timeout: Duration) -> DirectClient {
    DirectClient::new(url, Duration::from_secs(2), read_timeout).unwrap()
}

/// One attempt that collects the frames until `[DONE]`.
fn run(
    c: &DirectClient,
    abort: &Abort,
) -> (
    Vec<String>,
    Result<Result<Streamed, BackendError>, NoResponse>,
) {
    let mut frames = Vec::new();
    let request = c.request(b"{}", Some("sk-test")).unwrap();
    let outcome = c.attempt(
        &request,
        Framing::Sse,
        &mut |f| {
            frames.push(f.to_string());
            Ok(if f == "[DONE]" {
                Flow::Done
            } else {
                Flow::Continue
            })
        },
        abort,
    );
    (frames, outcome)
}

#[test]
fn a_kept_alive_connection_carries_the_next_request() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let server = scripted(move |_, reader, mut stream| {
        while let Some((head, body)) = read_request(reader) {
            seen2.lock().unwrap().push((head, body));
            stream.write_all(SSE_OK.as_bytes()).unwrap();
        }
    });
    let c = client(&server.url, Duration::from_secs(10));
    for _ in 0..3 {
        let (frames, outcome) = run(&c, &Abort::default());
        assert!(outcome.unwrap().unwrap().completed);
        assert_eq!(frames, ["a", "b", "[DONE]"]);
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "one connection, reused"
    );
    let seen = seen.lock().unwrap();
    let (head, body) = &seen[0];
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Host: {}\r\n", server.url.authority())),
        "{head}"
    );
    assert!(head.contains("Authorization: Bearer sk-test\r\n"));
    assert_eq!(body, b"{}");
}

#[test]
fn an_idle_connection_the_server_closed_is_replaced_without_an_attempt() {
    // Each connection answers one request with keep-alive, then closes: the pooled
    // connection is dead when the next request goes out.
    let server = scripted(|_, reader, mut stream| {
        if read_request(reader).is_some() {
            stream.write_all(SSE_OK.as_bytes()).unwrap();
        }
    });
    let c = client(&server.url, Duration::from_secs(10));
    for _ in 0..3 {
        let (frames, outcome) = run(&c, &Abort::default());
        assert_eq!(frames, ["a", "b", "[DONE]"]);
        assert!(outcome.expect("no failed attempt").unwrap().completed);
        // Let the server's close reach the client before the next request.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn abort_wakes_a_blocked_read_at_once() {
    let server = scripted(|_, reader, mut stream| {
        read_request(reader);
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_secs(30));
    });
    let c = client(&server.url, Duration::from_secs(20));
    let abort = Arc::new(Abort::default());
    let abort2 = abort.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        abort2.abort();
    });
    let t = Instant::now();
    let (frames, outcome) = run(&c, &abort);
    stopper.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(frames, ["a"]);
    assert_eq!(outcome.unwrap_err().kind, ErrorKind::Cancelled);
    let (_, outcome) = run(&c, &abort);
    assert_eq!(
        outcome.unwrap_err().kind,
        ErrorKind::Cancelled,
        "an aborted query sends nothing more"
    );
}

#[test]
fn interim_responses_are_skipped_and_error_statuses_quote_their_body() {
    let server = scripted(|i, reader, mut stream| {
        read_request(reader);
        let reply = match i {
            0 => format!("HTTP/1.1 100 Continue\r\n\r\n{SSE_OK}"),
            _ => "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 12\r\n\r\nmodel busy\r\n".into(),
        };
        stream.write_all(reply.as_bytes()).unwrap();
    });
    let c = client(&server.url, Duration::from_secs(10));
    let (frames, outcome) = run(&c, &Abort::default());
    assert_eq!(frames, ["a", "b", "[DONE]"]);
    assert!(outcome.unwrap().unwrap().completed);
    std::thread::sleep(Duration::from_millis(50));
    let (_, outcome) = run(&c, &Abort::default());
    let failure = outcome.unwrap_err();
    assert_eq!(failure.kind, ErrorKind::HttpStatus);
    assert!(failure.retryable);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(failure.message, "HTTP 503 Service Unavailable: model busy");
}

#[test]
fn a_stall_is_a_timeout_and_an_early_end_is_a_closed_stream() {
    let server = scripted(|i, reader, mut stream| {
        read_request(reader);
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: a\n\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        if i == 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let c = client(&server.url, Duration::from_millis(300));
    let (frames, outcome) = run(&c, &Abort::default());
    assert_eq!(frames, ["a"]);
    let err = outcome.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{}", err.message);
    assert!(err.message.contains("stream stalled"), "{}", err.message);
    let (_, outcome) = run(&c, &Abort::default());
    let err = outcome.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::StreamClosed, "{}", err.message);
}

#[test]
fn no_server_is_a_retryable_connect_failure_and_https_is_not_direct() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap();
    let (_, outcome) = run(&client(&url, Duration::from_secs(1)), &Abort::default());
    let failure = outcome.unwrap_err();
    assert_eq!(
        (failure.kind, failure.retryable),
        (ErrorKind::Connect, true)
    );
    for other in [
        "https://api.example.com/v1",
        "http://user:pw@localhost:8080/v1",
    ] {
        let url = reqwest::Url::parse(other).unwrap();
        assert!(
            DirectClient::new(&url, Duration::ZERO, Duration::ZERO).is_none(),
            "{other}"
        );
    }
    let url = reqwest::Url::parse("http://[::1]:8080/v1/chat?x=1").unwrap();
    let c = DirectClient::new(&url, Duration::ZERO, Duration::ZERO).unwrap();
    assert_eq!((c.host.as_str(), c.port), ("::1", 8080));
    assert_eq!(
        (c.authority.as_str(), c.target.as_str()),
        ("[::1]:8080", "/v1/chat?x=1")
    );
    assert!(
        c.request(b"{}", Some("a\r\nX-Evil: 1")).is_err(),
        "no header injection"
    );
}
