//! Pairwise grading end to end through the `ipw` binary with real parts: two real runs of
//! SmolLM2 on the embedded backend (a model and the reference) over open-ended queries with no
//! answers, then `ipw grade --grader pairwise --against` with the same model judging behind a
//! real llama-server (named by `--judge-config`, since the runs' manifests have no judge), then
//! `ipw coverage` on the result. A 135M judge's verdicts are noise: what is checked is the flow
//! (two judge calls per judged query, grades that name the reference, verdicts read or left
//! unscored, queries the reference did not answer left unscored, prompt mismatches refused).

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

const PROMPTS: [(&str, &str); 4] = [
    ("p1", "Say hello to a friend."),
    ("p2", "Name a colour you like."),
    ("p3", "Describe the sea in a few words."),
    ("p4", "Give one tip for sleeping well."),
];

/// A transparent TCP proxy in front of the judge that counts chat-completion requests: the
/// number of judge calls `ipw grade` really made.
fn counting_proxy(upstream: &str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(&upstream).unwrap();
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let needle = b"POST /v1/chat/completions";
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    // Each request starts a fresh read on a quiet keep-alive connection.
                    if buf[..n].windows(needle.len()).any(|w| w == needle) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (url, calls)
}

fn experiment(dir: &Path) -> String {
    let data = dir.join("chat.jsonl");
    let lines: String = PROMPTS
        .iter()
        .map(|(id, p)| format!("{}\n", serde_json::json!({"id": id, "prompt": p})))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let model = q(&model_path());
    format!(
        "name = \"pairwise\"\n[run]\nwarmup_queries = 0\n[energy]\nbaseline_s = 0\n\
         [generation]\nmax_tokens = 12\n\
         [[models]]\nname = \"small\"\npath = {model}\nthreads = 2\n\
         [[models]]\nname = \"ref\"\npath = {model}\nthreads = 1\n\
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
    let exp = profile_ok(dir.path(), "pairwise", &experiment(dir.path()));
    let (small, reference) = (exp.join("small"), exp.join("ref"));
    assert_eq!(records(&small).len(), 4);
    assert!(
        records(&small)
            .iter()
            .all(|r| r["grade"].is_null() && r["response"].is_string()),
        "no answers, no grader: ungraded"
    );

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
    let (judge_url, calls) = counting_proxy(&server.url);
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
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no judge call before a refusal"
    );
    assert_eq!(
        std::fs::read(small.join("records.jsonl")).unwrap(),
        small_before
    );

    // The experiment directory holds the reference: every other run is graded against it.
    let o = grade(&exp, Some(&reference), Some(&judge));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(reference.join("records.jsonl")).unwrap(),
        reference_before,
        "the reference is not graded against itself"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "two judge calls for each of p1, p2; none where the reference has no answer"
    );
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
