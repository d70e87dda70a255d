//! Pairwise grading end to end through the `ipw` binary with real parts: two real runs of
//! SmolLM2 on the embedded backend (a model and the reference, sampled with different seeds so
//! their responses differ) over open-ended queries with no answers, then `ipw grade --grader
//! pairwise --against` with the same model judging behind a real llama-server (named by
//! `--judge-config`, since the runs' manifests have no judge), then `ipw coverage` on the
//! result. A 135M judge's verdicts are noise: what is checked is the flow (both orders asked
//! for each judged query, the responses swapped; grades that name the reference; verdicts read
//! or left unscored; queries the reference did not answer left unscored and not judged; prompt
//! mismatches refused).

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const PROMPTS: [(&str, &str); 4] = [
    ("p1", "Say hello to a friend."),
    ("p2", "Name a colour you like."),
    ("p3", "Describe the sea in a few words."),
    ("p4", "Give one tip for sleeping well."),
];

/// The bytes each way on one connection through the proxy: `sent` by the client, `received`
/// from the judge.
#[derive(Default)]
struct Conn {
    sent: Vec<u8>,
    received: Vec<u8>,
}

/// Every connection through the proxy.
type Conns = Arc<Mutex<Vec<Arc<Mutex<Conn>>>>>;

/// A transparent TCP proxy in front of the judge that keeps every byte each way, so the test
/// sees the judge prompts `ipw grade` really sent and what the judge really replied.
fn recording_proxy(upstream: &str) -> (String, Conns) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let conns: Conns = Default::default();
    let all = conns.clone();
    // Copy `from` into `to`, keeping what passed in the field `side` picks.
    fn pump(
        mut from: TcpStream,
        mut to: TcpStream,
        log: Arc<Mutex<Conn>>,
        side: fn(&mut Conn) -> &mut Vec<u8>,
    ) {
        let mut buf = [0u8; 65536];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            side(&mut log.lock().unwrap()).extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    }
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(&upstream).unwrap();
            let log: Arc<Mutex<Conn>> = Default::default();
            all.lock().unwrap().push(log.clone());
            let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let l = log.clone();
            std::thread::spawn(move || pump(c, s, l, |c| &mut c.sent));
            std::thread::spawn(move || pump(server, client, log, |c| &mut c.received));
        }
    });
    (url, conns)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` in an HTTP head.
fn header(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The user message of every chat-completion request the client sent on one connection, in
/// order (a request cut off by the connection closing is left out).
fn requests(bytes: &[u8]) -> Vec<String> {
    let mut prompts = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, b"POST /v1/chat/completions") {
        let request = &rest[start..];
        let Some(head) = find(request, b"\r\n\r\n") else {
            break; // cut off: the connection closed mid-request
        };
        let length: usize = header(&request[..head], "content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        let body = &request[head + 4..];
        if body.len() < length {
            break;
        }
        let json: Value = serde_json::from_slice(&body[..length]).unwrap();
        prompts.push(json["messages"][0]["content"].as_str().unwrap().to_string());
        rest = &body[length..];
    }
    prompts
}

/// The text of every complete chat-completion response on one connection, in order: a
/// streamed (SSE) reply's deltas joined, or a whole reply's message.
fn replies(bytes: &[u8]) -> Vec<String> {
    let mut texts = Vec::new();
    let mut rest = bytes;
    while let Some(head) = find(rest, b"\r\n\r\n") {
        let (h, mut body) = (&rest[..head], &rest[head + 4..]);
        let mut content = Vec::new();
        if header(h, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let Some(eol) = find(body, b"\r\n") else {
                    return texts; // cut off
                };
                let size_field = String::from_utf8_lossy(&body[..eol]);
                let size = usize::from_str_radix(size_field.split(';').next().unwrap().trim(), 16)
                    .unwrap();
                body = &body[eol + 2..];
                if size == 0 {
                    body = &body[find(body, b"\r\n").map_or(body.len(), |e| e + 2)..];
                    break;
                }
                if body.len() < size + 2 {
                    return texts;
                }
                content.extend_from_slice(&body[..size]);
                body = &body[size + 2..];
            }
        } else {
            let length: usize = header(h, "content-length").map_or(0, |v| v.parse().unwrap());
            if body.len() < length {
                return texts;
            }
            content.extend_from_slice(&body[..length]);
            body = &body[length..];
        }
        rest = body;
        let text = String::from_utf8(content).unwrap();
        if header(h, "content-type").is_some_and(|v| v.contains("event-stream")) {
            let mut reply = String::new();
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let event: Value = serde_json::from_str(data).unwrap();
                if let Some(t) = event["choices"][0]["delta"]["content"].as_str() {
                    reply.push_str(t);
                }
            }
            texts.push(reply);
        } else {
            let json: Value = serde_json::from_str(&text).unwrap();
            texts.push(
                json["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    texts
}

/// The user message of every chat-completion request sent through the proxy (a request the
/// client sent again, on a fresh connection after a stale one, appears twice).
fn judge_prompts(conns: &Conns) -> Vec<String> {
    let conns = conns.lock().unwrap();
    conns
        .iter()
        .flat_map(|c| requests(&c.lock().unwrap().sent))
        .collect()
}

/// Every judge call that was answered: its prompt and the judge's reply text (requests and
/// responses on one connection pair up in order; HTTP/1.1 without pipelining).
fn judge_calls(conns: &Conns) -> Vec<(String, String)> {
    let conns = conns.lock().unwrap();
    conns
        .iter()
        .flat_map(|c| {
            let c = c.lock().unwrap();
            requests(&c.sent).into_iter().zip(replies(&c.received))
        })
        .collect()
}

/// The verdict a reply gives, read here independently of the grader (the default prompt ends
/// with `VERDICT:`): the word after the last `VERDICT`, else a first line that is only a
/// verdict; `?` when neither (the grader's mark for an unread reply).
fn verdict_in(reply: &str) -> String {
    let upper = reply.to_uppercase();
    let word = |s: &str| -> Option<String> {
        let w: String = s
            .trim_start_matches([':', ' ', '*', '=', '"', '\'', '['])
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        ["A", "B", "TIE"].contains(&w.as_str()).then_some(w)
    };
    if let Some(w) = upper
        .rfind("VERDICT")
        .and_then(|i| word(&upper[i + "VERDICT".len()..]))
    {
        return w;
    }
    let first = upper.trim_start().lines().next().unwrap_or_default().trim();
    match word(first) {
        Some(w)
            if first
                .trim_start_matches(['*', '"', '\'', '['])
                .get(w.len()..)
                .is_some_and(|after| after.trim().chars().all(|c| ".,:;)]!*\"'".contains(c))) =>
        {
            w
        }
        _ => "?".into(),
    }
}

/// An experiment profiling one model named `name`, sampled at temperature 1 with `seed`.
fn experiment(dir: &Path, name: &str, seed: u64) -> String {
    let data = dir.join("chat.jsonl");
    let lines: String = PROMPTS
        .iter()
        .map(|(id, p)| format!("{}\n", serde_json::json!({"id": id, "prompt": p})))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let model = q(&model_path());
    format!(
        "name = \"{name}\"\nseed = {seed}\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0\n\
         [generation]\nmax_tokens = 12\ntemperature = 1.0\n\
         [[models]]\nname = \"{name}\"\npath = {model}\nthreads = 2\n\
         [[datasets]]\npath = {}\nname = \"chat\"\n",
        q(&data)
    )
}

fn by_id(run: &Path) -> std::collections::BTreeMap<String, Value> {
    records(run)
        .into_iter()
        .map(|r| (r["query_id"].as_str().unwrap().to_string(), r))
        .collect()
}

fn write_records(run: &Path, recs: &[Value]) {
    let text: String = recs.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(run.join("records.jsonl"), text).unwrap();
}

/// The model's points in one order from the verdict letter (`model_first`: the model was A).
fn points(verdict: &str, model_first: bool) -> Option<f64> {
    match (verdict, model_first) {
        ("TIE", _) => Some(0.5),
        ("A", true) | ("B", false) => Some(1.0),
        ("A", false) | ("B", true) => Some(0.0),
        _ => None,
    }
}

#[test]
fn a_real_run_is_judged_pairwise_against_a_real_reference_run_then_covered() {
    let dir = tempfile::tempdir().unwrap();
    let exp = profile_ok(dir.path(), "small", &experiment(dir.path(), "small", 1));
    let ref_exp = profile_ok(dir.path(), "ref", &experiment(dir.path(), "ref", 2));
    let (small, reference) = (exp.join("small"), ref_exp.join("ref"));
    assert_eq!(records(&small).len(), 4);
    assert!(
        records(&small)
            .iter()
            .all(|r| r["grade"].is_null() && r["response"].is_string()),
        "no answers, no grader: ungraded"
    );
    // The two orders' prompts differ only where the responses do.
    let (small_text, ref_text) = (by_id(&small), by_id(&reference));
    for (id, r) in &small_text {
        assert_ne!(
            r["response"], ref_text[id]["response"],
            "{id}: sampled alike"
        );
    }

    // The reference did not answer two queries: p3's record is gone, p4 failed.
    let mut refs = records(&reference);
    refs.retain(|r| !r["query_id"].as_str().unwrap().ends_with("p3"));
    for r in refs
        .iter_mut()
        .filter(|r| r["query_id"].as_str().unwrap().ends_with("p4"))
    {
        r["response"] = Value::Null;
        r["error"] = serde_json::json!({"kind": "timeout", "message": "no reply in 1 s"});
    }
    write_records(&reference, &refs);
    let reference_before = std::fs::read(reference.join("records.jsonl")).unwrap();

    let server = LlamaServer::start();
    let (judge_url, sent) = recording_proxy(&server.url);
    let judge = dir.path().join("judge.toml");
    std::fs::write(
        &judge,
        format!(
            "[grading]\njudge_timeout_ms = 300000\n[grading.judge]\nname = \"judge\"\n\
             backend = \"openai\"\nbase_url = \"{judge_url}/v1\"\nmodel = \"smollm2\"\n"
        ),
    )
    .unwrap();
    let grade = |run: &Path, against: Option<&Path>, judge: Option<&Path>| {
        let mut args = vec!["grade", run.to_str().unwrap(), "--grader", "pairwise"];
        if let Some(a) = against {
            args.extend(["--against", a.to_str().unwrap()]);
        }
        if let Some(j) = judge {
            args.extend(["--judge-config", j.to_str().unwrap()]);
        }
        run_ipw(&args, dir.path())
    };

    // Refusals first, each before anything is graded or rewritten.
    let small_before = std::fs::read(small.join("records.jsonl")).unwrap();
    let o = grade(&small, None, Some(&judge));
    assert!(!o.status.success());
    assert!(text(&o).contains("--against REFRUN"), "{}", text(&o));
    let o = grade(&small, Some(&reference), None);
    assert!(!o.status.success());
    assert!(text(&o).contains("--judge-config"), "{}", text(&o));
    // A reference asked another prompt for p1 is not the same query.
    let other = dir.path().join("other-ref");
    std::fs::create_dir(&other).unwrap();
    std::fs::copy(reference.join("manifest.json"), other.join("manifest.json")).unwrap();
    let mut changed = refs.clone();
    for r in changed
        .iter_mut()
        .filter(|r| r["query_id"].as_str().unwrap().ends_with("p1"))
    {
        r["prompt_hash"] = "0000".into();
    }
    write_records(&other, &changed);
    let o = grade(&small, Some(&other), Some(&judge));
    assert!(!o.status.success());
    let err = text(&o);
    let p1 = by_id(&small)
        .keys()
        .find(|k| k.ends_with("p1"))
        .unwrap()
        .clone();
    assert!(
        err.contains(&format!("query {p1} was asked with different prompts")),
        "{err}"
    );
    assert!(err.contains(small.to_str().unwrap()), "{err}");
    assert!(err.contains("other-ref"), "{err}");
    assert!(
        judge_prompts(&sent).is_empty(),
        "no judge call before a refusal"
    );
    assert_eq!(
        std::fs::read(small.join("records.jsonl")).unwrap(),
        small_before
    );

    // An experiment directory with the reference in it: every other run is graded against it.
    std::fs::rename(&reference, exp.join("ref")).unwrap();
    let reference = exp.join("ref");
    let o = grade(&exp, Some(&reference), Some(&judge));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(reference.join("records.jsonl")).unwrap(),
        reference_before,
        "the reference is not graded against itself"
    );
    // Both orders asked for p1 and p2, the responses swapped; nothing for p3 and p4, which the
    // reference did not answer.
    let prompts = judge_prompts(&sent);
    let distinct: BTreeSet<&String> = prompts.iter().collect();
    assert_eq!(distinct.len(), 4, "{prompts:#?}");
    // Two calls per judged query (p1, p2), each answered once.
    let calls = judge_calls(&sent);
    assert_eq!(calls.len(), 2 * 2, "{calls:#?}");
    let pair = |a: &Value, b: &Value| {
        format!(
            "[Response A]\n{}\n\n[Response B]\n{}\n",
            a.as_str().unwrap(),
            b.as_str().unwrap()
        )
    };
    for (i, (id, question)) in PROMPTS.iter().enumerate() {
        let key = small_text.keys().find(|k| k.ends_with(id)).unwrap();
        let asked: Vec<&String> = distinct
            .iter()
            .copied()
            .filter(|p| p.contains(question))
            .collect();
        if i >= 2 {
            assert!(asked.is_empty(), "{id}: {asked:#?}");
            continue;
        }
        let (m, r) = (&small_text[key]["response"], &ref_text[key]["response"]);
        assert_eq!(asked.len(), 2, "{id}: {asked:#?}");
        assert!(asked.iter().any(|p| p.contains(&pair(m, r))), "{asked:#?}");
        assert!(asked.iter().any(|p| p.contains(&pair(r, m))), "{asked:#?}");
    }
    let canonical: PathBuf = reference.canonicalize().unwrap();
    let mut scored = 0;
    for (id, r) in by_id(&small) {
        let g = &r["grade"];
        assert_eq!(g["grader"], "pairwise", "{g}");
        assert!(g["error"].is_null(), "{g}");
        assert_eq!(g["params"]["against"], canonical.to_str().unwrap(), "{g}");
        assert_eq!(g["params"]["against_model"], "ref", "{g}");
        let why = g["explanation"].as_str().unwrap();
        if id.ends_with("p3") {
            assert!(g["score"].is_null(), "{g}");
            assert!(why.contains(&format!("has no record of query {id}")), "{g}");
            continue;
        }
        if id.ends_with("p4") {
            assert!(g["score"].is_null(), "{g}");
            assert!(why.contains(&format!("failed query {id} (timeout")), "{g}");
            continue;
        }
        // Judged: both verdicts recorded; the score is their mean, or none when one is unread.
        let extracted = g["extracted"].as_str().unwrap();
        let (first, second) = extracted
            .strip_prefix("model-first: ")
            .and_then(|s| s.split_once(", reference-first: "))
            .unwrap_or_else(|| panic!("{g}"));
        // Each recorded verdict is what the judge replied to that order's prompt.
        let (m, rf) = (&small_text[&id]["response"], &ref_text[&id]["response"]);
        for (order, recorded, a, b) in [
            ("model-first", first, m, rf),
            ("reference-first", second, rf, m),
        ] {
            let shown = pair(a, b);
            let replied: Vec<&String> = calls
                .iter()
                .filter(|(p, _)| p.contains(&shown))
                .map(|(_, reply)| reply)
                .collect();
            assert_eq!(replied.len(), 1, "{id} {order}: {calls:#?}");
            assert_eq!(
                recorded,
                verdict_in(replied[0]),
                "{id} {order}: the judge replied {:?}",
                replied[0]
            );
        }
        match (points(first, true), points(second, false)) {
            (Some(a), Some(b)) => {
                assert_eq!(g["score"].as_f64(), Some((a + b) / 2.0), "{g}");
                assert_eq!(g["parsed"], true, "{g}");
                assert!(why.contains("model vs reference `ref`"), "{g}");
                scored += 1;
            }
            (a, b) => {
                assert!(g["score"].is_null(), "unreadable verdict = unscored: {g}");
                assert_eq!(g["parsed"], false, "{g}");
                assert_eq!(a.is_none(), why.contains("model-first order"), "{g}");
                assert_eq!(b.is_none(), why.contains("reference-first order"), "{g}");
                assert!(why.contains("judge reply has no VERDICT"), "{g}");
            }
        }
    }
    let summary = json(&small.join("summary.json"));
    assert_eq!(summary["quality"]["overall"]["scored"], scored, "{summary}");

    // Coverage on the graded runs: p3 is missing from the reference (left out), the rest are
    // covered when the pairwise score reaches 0.5 (unscored: not covered).
    let out = dir.path().join("analysis");
    let o = run_ipw(
        &[
            "coverage",
            exp.to_str().unwrap(),
            "--reference",
            "ref",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let c = json(&out.join("coverage.json"));
    assert_eq!(c["pairwise_datasets"], serde_json::json!(["chat"]), "{c}");
    assert_eq!(c["queries"], 3, "{c}");
    let graded = by_id(&small);
    let covered = graded
        .iter()
        .filter(|(id, _)| !id.ends_with("p3"))
        .filter(|(_, r)| r["grade"]["score"].as_f64().is_some_and(|s| s >= 0.5))
        .count();
    let row = c["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "small" && r["group"] == "all")
        .unwrap();
    assert_eq!(
        row["coverage"]["value"].as_f64(),
        Some(covered as f64 / 3.0),
        "{c}"
    );
}
