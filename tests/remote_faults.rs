//! Remote-backend faults, against a fault-injecting HTTP server on loopback (the point here is
//! the fault, so a scripted server stands in for a real one): 500, 429-then-OK, a stall past the
//! read timeout, a connection closed mid-stream, malformed SSE. Each becomes a per-query error
//! record or a successful retry; the run completes. Also: Ollama's native protocol, replayed
//! from its documented NDJSON stream (Ollama cannot be installed on these machines), and the
//! API key never reaching any output file.

use crate::support::fault_server::FaultServer;
use crate::support::*;

fn remote_model(name: &str, backend: &str, url: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = {name:?}\nbackend = {backend:?}\nbase_url = {url:?}\nmodel = {name:?}\n\
         read_timeout_s = 0.5\nconnect_timeout_s = 2.0\nmax_retries = 2\nretry_backoff_s = 0.01\n{extra}\n"
    )
}

const DATASET: &str = "[[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 3\n";

#[test]
fn faults_become_error_records_or_retries_and_runs_complete() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/v1", server.url);
    let mut toml = String::from("name = \"faults\"\n[run]\nwarmup_queries = 0\n");
    for m in [
        "ok",
        "status-500",
        "rate-limit-once",
        "stall",
        "close-mid-stream",
        "malformed",
        "no-usage",
    ] {
        toml.push_str(&remote_model(m, "openai", &url, ""));
    }
    toml.push_str(DATASET);
    let out = profile_ok(dir.path(), "faults", &toml);

    let by_model = |m: &str| {
        let run = out.join(m);
        let recs = records(&run);
        assert_eq!(recs.len(), 3, "{m}: every query is recorded");
        let summary = json(&run.join("summary.json"));
        assert_eq!(summary["recorded"], 3, "{m}");
        recs
    };
    let kinds = |m: &str| -> Vec<String> {
        by_model(m)
            .iter()
            .map(|r| r["error"]["kind"].as_str().unwrap_or("none").to_string())
            .collect()
    };

    let ok = by_model("ok");
    for r in &ok {
        assert_eq!(r["response"], "The answer is 5.");
        assert_eq!(r["token_source"], "server-usage");
        assert_eq!(r["tokens_estimated"], false);
        assert_eq!(
            (r["input_tokens"].as_u64(), r["output_tokens"].as_u64()),
            (Some(11), Some(3))
        );
        assert_eq!(r["finish_reason"], "stop");
        assert!(r["ttft_s"].as_f64().unwrap() <= r["latency_s"].as_f64().unwrap());
    }
    let body = &server.requests_for("ok")[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);

    assert_eq!(kinds("status-500"), ["http_status"; 3]);
    for r in by_model("status-500") {
        assert_eq!(r["attempts"], 3, "500 is retried max_retries times");
        assert!(r["error"]["message"].as_str().unwrap().contains("500"));
    }
    assert_eq!(server.requests_for("status-500").len(), 9);

    for r in by_model("rate-limit-once") {
        assert!(r["error"].is_null(), "429 then OK succeeds: {r}");
        assert_eq!(r["attempts"], 2);
        assert_eq!(r["response"], "ok");
    }

    assert_eq!(kinds("stall"), ["timeout"; 3]);
    for r in by_model("stall") {
        let latency = r["latency_s"].as_f64().unwrap();
        assert!(
            latency < 4.0,
            "a stall is cut at the read timeout, not waited out: {latency}"
        );
    }
    assert_eq!(kinds("close-mid-stream"), ["stream_closed"; 3]);
    assert_eq!(kinds("malformed"), ["malformed_stream"; 3]);

    for r in by_model("no-usage") {
        assert_eq!(r["response"], "Paris.");
        assert_eq!(
            r["tokens_estimated"], true,
            "no usage in the stream: counts are estimates"
        );
        assert_eq!(
            r["token_source"], "heuristic",
            "this server has no /tokenize"
        );
        assert_eq!(r["output_tokens"], 2, "two content chunks");
    }
    let errors = json(&out.join("stall/summary.json"))["errors_by_kind"].clone();
    assert_eq!(errors["timeout"], 3);
}

#[test]
fn connection_refused_is_retried_then_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let toml = format!(
        "name = \"refused\"\n[run]\nwarmup_queries = 0\n{}{DATASET}",
        remote_model("gone", "openai", &url, "")
    );
    let out = profile_ok(dir.path(), "refused", &toml);
    for r in records(&out.join("gone")) {
        assert_eq!(r["error"]["kind"], "connect");
        assert_eq!(r["attempts"], 3);
    }
}

/// With an HTTP proxy in the environment the measured request goes through reqwest, which
/// honours it, instead of ipw's direct client, which does not. The fault server stands in for
/// the proxy: it answers by the request's `model` whatever the target, and sees the
/// absolute-form target a proxy gets.
#[test]
fn a_proxy_in_the_environment_carries_the_request() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "name = \"proxied\"\n[run]\nwarmup_queries = 0\n{}{DATASET}",
        remote_model("ok", "openai", "http://model-server.invalid:8000/v1", "")
    );
    let exp = write_experiment(dir.path(), "proxied.toml", &toml);
    let out = dir.path().join("out");
    let o = profile_command(&exp, &out)
        .env("HTTP_PROXY", &server.url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for r in records(&out.join("ok")) {
        assert_eq!(r["response"], "The answer is 5.", "{r}");
    }
    let manifest = json(&out.join("ok/manifest.json"));
    assert_eq!(manifest["backend"]["transport"], "reqwest");
    let seen = server.requests_for("ok");
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[0].path, "http://model-server.invalid:8000/v1/chat/completions",
        "sent to the proxy, for the model server"
    );
}

#[test]
fn ollama_native_stream_uses_eval_counts() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "name = \"ollama\"\n[run]\nwarmup_queries = 0\n[generation]\nmax_tokens = 33\nstop = [\"###\"]\n{}{DATASET}",
        remote_model("ollama", "ollama", &server.url, "")
    );
    let out = profile_ok(dir.path(), "ollama", &toml);
    for r in records(&out.join("ollama")) {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["response"], "The sky is blue.");
        assert_eq!(
            (r["input_tokens"].as_u64(), r["output_tokens"].as_u64()),
            (Some(26), Some(282))
        );
        assert_eq!(r["token_source"], "engine");
        assert_eq!(r["tokens_estimated"], false);
        assert_eq!(r["finish_reason"], "stop");
        assert_eq!(r["backend"], "ollama");
    }
    let req = &server.requests_for("ollama")[0];
    assert_eq!(req.path, "/api/chat");
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["options"]["num_predict"], 33);
    assert_eq!(req.body["options"]["stop"][0], "###");
    assert_eq!(req.body["messages"][0]["role"], "user");
}

#[test]
fn api_key_is_sent_but_never_written() {
    let server = FaultServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = "sk-ipw-test-7f3a9c1e5b2d4f6a8c0e";
    let toml = format!(
        "name = \"secret\"\n[run]\nwarmup_queries = 0\n{}{DATASET}",
        remote_model(
            "ok",
            "openai",
            &format!("{}/v1", server.url),
            "api_key_env = \"IPW_TEST_SECRET_KEY\""
        )
    );
    let exp = write_experiment(dir.path(), "secret.toml", &toml);
    let out = dir.path().join("out");
    let o = profile_command(&exp, &out)
        .arg("-vvv")
        .env("IPW_TEST_SECRET_KEY", secret)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains(secret),
        "the key leaked into the terminal output"
    );
    let auth = server.requests_for("ok")[0]
        .headers
        .get("authorization")
        .cloned();
    assert_eq!(
        auth.as_deref(),
        Some(format!("Bearer {secret}").as_str()),
        "the key is used"
    );
    let mut files = 0;
    for entry in walk(&out) {
        files += 1;
        let content = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&content).contains(secret),
            "{} contains the API key",
            entry.display()
        );
    }
    assert!(files >= 4, "manifest, records, summary, experiment copy");
    let manifest = json(&out.join("ok/manifest.json"));
    assert_eq!(
        manifest["model"]["api_key_env"], "IPW_TEST_SECRET_KEY",
        "only the variable name is kept"
    );

    // A missing variable is a clear setup error naming it.
    let o = ipw()
        .args([
            "profile",
            exp.to_str().unwrap(),
            "--out",
            dir.path().join("out2").to_str().unwrap(),
            "-q",
        ])
        .env_remove("IPW_TEST_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("IPW_TEST_SECRET_KEY"), "{}", text(&o));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn failed_queries_count_as_wrong_and_retry_failed_measures_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    // Four questions whose answer is 5; the model answers "5" when it answers at all.
    let rows: String = (0..4)
        .map(|i| format!("{{\"question\":\"q{i}\",\"answer\":\"5\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("fives.jsonl"), rows).unwrap();
    let toml = format!(
        "name = \"flaky\"\n[run]\nwarmup_queries = 0\n{}\
         [[datasets]]\npath = \"fives.jsonl\"\ngrader = \"numeric\"\n",
        remote_model("flaky", "openai", &format!("{}/v1", server.url), "")
    );
    let (o, out) = profile(dir.path(), "flaky", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("flaky");
    let recs = records(&run);
    assert_eq!(recs.len(), 4);
    assert_eq!(recs.iter().filter(|r| r["error"].is_object()).count(), 2);
    let q = &json(&run.join("summary.json"))["quality"]["overall"];
    assert_eq!(q["failed"], 2);
    assert_eq!(q["accuracy"]["value"], 1.0, "every answer given is right");
    assert_eq!(
        q["accuracy_with_failures"]["value"], 0.5,
        "failures count as wrong beside it"
    );

    // --retry-failed: the two failed queries are measured again (one fails again), their old
    // records kept aside.
    let exp = dir.path().join("flaky.toml");
    let o = resume_profile(&exp, &out, dir.path(), &["--retry-failed"]);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&run);
    assert_eq!(recs.len(), 4, "one record per query");
    assert_eq!(recs.iter().filter(|r| r["error"].is_object()).count(), 1);
    assert_eq!(recs.iter().filter(|r| r["session"] == 1).count(), 2);
    let aside = std::fs::read_to_string(run.join("records.retried.jsonl")).unwrap();
    assert_eq!(aside.lines().count(), 2);
    let q = &json(&run.join("summary.json"))["quality"]["overall"];
    assert_eq!(q["accuracy_with_failures"]["value"], 0.75);
    // Without the flag, a resume leaves failed records alone.
    let o = resume_profile(&exp, &out, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        records(&run)
            .iter()
            .filter(|r| r["error"].is_object())
            .count(),
        1
    );
}

#[test]
fn a_reasoning_models_thinking_starts_the_first_token_clock() {
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let toml = format!(
        "name = \"think\"\n[run]\nwarmup_queries = 0\n{}{DATASET}",
        remote_model("reasoning", "openai", &format!("{}/v1", server.url), "")
    );
    let (o, out) = profile(dir.path(), "think", &toml);
    assert!(o.status.success(), "{}", text(&o));
    for r in records(&out.join("reasoning")) {
        let (ttft, latency) = (
            r["ttft_s"].as_f64().unwrap(),
            r["latency_s"].as_f64().unwrap(),
        );
        // Thinking arrives at once, the answer 0.4 s later: TTFT is the thinking's.
        assert!(r["error"].is_null(), "{r}");
        assert!(latency >= 0.4, "{latency}");
        assert!(ttft < latency - 0.2, "ttft {ttft} latency {latency}");
        assert_eq!(r["response"], "5", "thinking is not part of the answer");
    }
}

#[test]
fn warm_up_never_sends_a_measured_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let toml = format!(
        "name = \"warm\"\n[run]\nwarmup_queries = 2\n{}{DATASET}",
        remote_model("ok", "openai", &format!("{}/v1", server.url), "")
    );
    let (o, out) = profile(dir.path(), "warm", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let prompt = |b: &serde_json::Value| b["messages"][0]["content"].as_str().unwrap().to_string();
    let sent: Vec<String> = server
        .requests_for("ok")
        .iter()
        .map(|s| prompt(&s.body))
        .collect();
    assert_eq!(sent.len(), 5, "2 warm-ups + 3 measured");
    let measured: Vec<String> = records(&out.join("ok"))
        .iter()
        .map(|r| r["prompt"].as_str().unwrap().to_string())
        .collect();
    for w in &sent[..2] {
        assert!(
            !measured.contains(w),
            "a warm-up re-sent a measured prompt: {w}"
        );
        assert!(w.starts_with("(warm-up "), "{w}");
    }
    assert_eq!(&sent[2..], &measured[..]);
}

#[test]
fn a_query_that_trickles_past_the_overall_deadline_is_a_timeout_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    // "slow" streams steadily (never silent past the read timeout) for about half a second.
    let toml = format!(
        "name = \"deadline\"\n[run]\nwarmup_queries = 0\nquery_timeout_s = 0.2\n{}{DATASET}",
        remote_model("slow", "openai", &format!("{}/v1", server.url), "")
    );
    let (o, out) = profile(dir.path(), "deadline", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out.join("slow"));
    assert_eq!(recs.len(), 3);
    for r in &recs {
        assert_eq!(r["error"]["kind"], "timeout", "{r}");
        assert!(r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("run.query_timeout_s = 0.2 s"));
        let latency = r["latency_s"].as_f64().unwrap();
        assert!((0.2..0.45).contains(&latency), "{latency}");
    }
}

#[test]
fn at_concurrency_two_grading_waits_until_no_query_is_measured() {
    // A judge call (or any grader's CPU) during another query's window would be billed to
    // that query. The judge here is the fault server's "ok" model; its request times are
    // compared with every record's window.
    let dir = tempfile::tempdir().unwrap();
    let server = FaultServer::start();
    let url = format!("{}/v1", server.url);
    let toml = format!(
        "name = \"conc\"\n[run]\nwarmup_queries = 0\nconcurrency = 2\n{}\
         [grading.judge]\nname = \"judge\"\nbackend = \"openai\"\nbase_url = {url:?}\nmodel = \"ok\"\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 4\ngrader = \"judge\"\n",
        remote_model("slow", "openai", &url, "")
    );
    let (o, out) = profile(dir.path(), "conc", &toml);
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out.join("slow"));
    assert_eq!(recs.len(), 4);
    let last_end = recs
        .iter()
        .map(|r| r["window"]["end_s"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let judged = server.requests_for("ok");
    assert_eq!(judged.len(), 4, "one judge call per record");
    for j in &judged {
        assert!(
            j.t > last_end,
            "a judge call at {} inside the windows (last end {last_end})",
            j.t
        );
    }
    for r in &recs {
        assert_eq!(r["grade"]["grader"], "judge", "{r}");
    }
}
