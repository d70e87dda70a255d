//! Managed servers (`[models.server]`): ipw starts a model's server, waits for its first
//! token, keeps its log and facts, and stops it. Against the real llama-server the tests build
//! (scripts/build-llama-server.sh) on SmolLM2; vLLM, SGLang and Ollama cannot run on a CPU-only
//! CI machine, so their command lines are checked with a stand-in script
//! (tests/fixtures/standin-server/standin.py) that records its arguments and environment and
//! serves a fixed answer in the real server's protocol.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A managed llama-server model on SmolLM2, and `n` GSM8K queries.
fn llama_server_experiment(name: &str, n: usize, extra_server: &str) -> String {
    format!(
        r#"name = "{name}"
[generation]
max_tokens = 16
[[models]]
name = "managed"
backend = "openai"
model = "smollm2"
[models.server]
kind = "llama-server"
program = {program}
model_path = {model}
args = ["-c", "2048", "-t", "2"]
ready_timeout_s = 120
{extra_server}
[[datasets]]
builtin = "gsm8k"
max_queries = {n}
"#,
        program = q(&llama_server_path()),
        model = q(&model_path()),
    )
}

/// Whether a process still runs (a zombie nobody reaped does not).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s[s.rfind(')')? + 2..].chars().next()? != 'Z'))
        .unwrap_or(false)
}

fn wait_gone(pid: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The pid of the managed server once the manifest names it.
fn wait_server_pid(run: &Path, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(run.join("manifest.json")) {
            if let Ok(m) = serde_json::from_str::<Value>(&text) {
                if let Some(pid) = m["sessions"]
                    .as_array()
                    .and_then(|s| s.last())
                    .and_then(|s| s["server"]["pid"].as_u64())
                {
                    return pid;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the manifest never named a server pid");
}

#[test]
fn ipw_starts_a_real_llama_server_measures_through_it_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = profile_ok(
        dir.path(),
        "managed",
        &llama_server_experiment("managed", 3, ""),
    );
    let run = out.join("managed");
    let recs = records(&run);
    assert_eq!(recs.len(), 3);
    let mut server_cpu = 0.0;
    for r in &recs {
        assert!(r["error"].is_null(), "{r}");
        assert!(!r["response"].as_str().unwrap().trim().is_empty(), "{r}");
        assert_eq!(r["token_source"], "server-usage", "{r}");
        server_cpu += r["harness"]["server_cpu_s"]
            .as_f64()
            .expect("the server's CPU per window");
    }
    // llama-server computed the answers on this machine's CPU: its process group shows it.
    assert!(
        server_cpu > 0.0,
        "server CPU over the windows: {server_cpu}"
    );
    let m = json(&run.join("manifest.json"));
    let s = &m["sessions"][0]["server"];
    assert_eq!(s["kind"], "llama-server", "{s}");
    let command: Vec<&str> = s["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command[0], llama_server_path().to_str().unwrap());
    for flag in ["--host", "127.0.0.1", "--port", "--parallel", "-c", "2048"] {
        assert!(command.contains(&flag), "{flag} in {command:?}");
    }
    assert!(s["version"].as_str().unwrap().contains("version"), "{s}");
    assert!(s["ready_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["cpu_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(
        s["base_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{s}"
    );
    assert!(
        s["exit"].as_str().unwrap().starts_with("stopped by ipw"),
        "{s}"
    );
    let log = std::fs::read_to_string(run.join("server.log")).unwrap();
    assert!(
        log.starts_with("==== ipw: session 0, model `managed`"),
        "{log}"
    );
    assert!(
        log.contains("llama"),
        "llama-server's own output is kept: {log}"
    );
    let pid = s["pid"].as_u64().unwrap();
    assert!(
        !alive(pid),
        "the server was stopped when its model was done"
    );
}

#[test]
fn a_server_that_never_answers_is_refused_with_its_log_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let toml = format!(
        r#"name = "never-ready"
[[models]]
name = "never"
backend = "openai"
[models.server]
kind = "command"
program = "sh"
args = ["-c", "echo $$ > {pid}; echo loading the weights, slowly; exec sleep 600"]
ready_timeout_s = 2
[[datasets]]
builtin = "gsm8k"
max_queries = 1
"#,
        pid = pid_file.display()
    );
    let (o, _) = profile(dir.path(), "never", &toml);
    let err = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("did not answer a first token within 2 s"),
        "{err}"
    );
    assert!(
        err.contains("loading the weights, slowly"),
        "the log's tail: {err}"
    );
    let pid: u64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(wait_gone(pid), "the server was stopped after the refusal");
}

#[test]
fn a_taken_port_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (o, _) = profile(
        dir.path(),
        "taken",
        &llama_server_experiment("taken", 1, &format!("port = {port}")),
    );
    let err = text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&format!("server.port {port} is not free")),
        "{err}"
    );
}

#[test]
fn a_server_that_dies_mid_run_fails_the_run_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(
        dir.path(),
        "dies.toml",
        &llama_server_experiment("dies", 6, ""),
    );
    let out = dir.path().join("out");
    let mut child = profile_command(&exp, &out).spawn().unwrap();
    let run = out.join("managed");
    let pid = wait_server_pid(&run, Duration::from_secs(120));
    // Kill it once a query is on disk: the run is then mid-way.
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(run.join("records.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 1
    {
        assert!(Instant::now() < deadline, "no record within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(!status.success());
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["status"], "failed");
    let error = m["error"].as_str().unwrap();
    assert!(error.contains("killed by signal 9 (SIGKILL)"), "{error}");
    assert!(error.contains("last lines of"), "{error}");
    let before = records(&run);
    assert!(before.len() < 6, "the run stopped when its server died");
    for r in before.iter().filter(|r| !r["error"].is_null()) {
        // A query in flight when it died says so.
        assert_eq!(r["error"]["kind"], "server_exited", "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains("SIGKILL"),
            "{r}"
        );
    }
    let o = resume_profile(&exp, &out, dir.path(), &["--retry-failed"]);
    assert!(o.status.success(), "{}", text(&o));
    let after = records(&run);
    let ok: std::collections::BTreeSet<&str> = after
        .iter()
        .filter(|r| r["error"].is_null())
        .map(|r| r["query_id"].as_str().unwrap())
        .collect();
    assert_eq!(ok.len(), 6, "every query measured once the server is back");
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["sessions"].as_array().unwrap().len(), 2, "{m}");
    assert!(m["sessions"][1]["server"]["pid"].as_u64().unwrap() != pid);
}

#[test]
fn kill_9_of_ipw_leaves_no_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), "k.toml", &llama_server_experiment("k", 50, ""));
    let out = dir.path().join("out");
    let mut child = profile_command(&exp, &out).spawn().unwrap();
    let pid = wait_server_pid(&out.join("managed"), Duration::from_secs(120));
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL: no handler of ipw's runs.
    child.wait().unwrap();
    assert!(
        wait_gone(pid),
        "llama-server {pid} outlived a kill -9 of the ipw that started it"
    );
}

#[test]
fn sigterm_to_ipw_stops_its_server_and_the_manifest_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(
        dir.path(),
        "t.toml",
        &llama_server_experiment("t", 50, "stop_grace_s = 5"),
    );
    let out = dir.path().join("out");
    let mut child = profile_command(&exp, &out).spawn().unwrap();
    let run = out.join("managed");
    let pid = wait_server_pid(&run, Duration::from_secs(120));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "a clean stop on SIGTERM");
    assert!(!alive(pid), "the server was stopped before ipw exited");
    let m = json(&run.join("manifest.json"));
    let exit = m["sessions"][0]["server"]["exit"]
        .as_str()
        .unwrap_or_default();
    assert!(exit.starts_with("stopped by ipw"), "{m}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files.extend(walk(&p));
        } else {
            files.push(p);
        }
    }
    files
}

/// The stand-in server script, as `name` (so `program` looks like the real executable).
fn standin(dir: &Path, name: &str) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/standin-server/standin.py");
    let dst = dir.join(name);
    std::fs::copy(src, &dst).unwrap();
    dst
}

#[test]
fn vllm_sglang_and_ollama_get_their_measurement_safe_command_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, backend, program, model_path, want_args, want_env) in [
        (
            "vllm",
            "openai",
            "vllm",
            "model_path = \"org/m\"",
            &[
                "serve",
                "org/m",
                "--served-model-name",
                "m1",
                "--no-enable-prefix-caching",
                "--enable-prompt-tokens-details",
                "--max-num-seqs",
                "2",
            ][..],
            &[][..],
        ),
        (
            "sglang",
            "openai",
            "python3",
            "model_path = \"org/m\"",
            &[
                "-m",
                "sglang.launch_server",
                "--model-path",
                "org/m",
                "--disable-radix-cache",
                "--max-running-requests",
                "2",
            ][..],
            &[][..],
        ),
        (
            "ollama",
            "ollama",
            "ollama",
            "",
            &["serve"][..],
            &[
                ("OLLAMA_KEEP_ALIVE", "-1"),
                ("OLLAMA_NUM_PARALLEL", "2"),
                ("OLLAMA_MAX_LOADED_MODELS", "1"),
            ][..],
        ),
    ] {
        let program_path = standin(dir.path(), program);
        let record = dir.path().join(format!("{kind}.json"));
        let toml = format!(
            r#"name = "standin-{kind}"
[run]
concurrency = 2
[[models]]
name = "m1"
backend = "{backend}"
[models.server]
kind = "{kind}"
program = {program}
{model_path}
env = {{ STANDIN_RECORD = {record}, STANDIN_SECRET = "${{IPW_TEST_SECRET}}" }}
args = ["--api-key", "${{IPW_TEST_KEY}}"]
[[datasets]]
builtin = "gsm8k"
max_queries = 3
"#,
            program = q(&program_path),
            record = q(&record),
        );
        // Secrets come from the environment (`${VAR}`): the experiment file, which ipw
        // copies into the run, holds only their names.
        let exp = write_experiment(dir.path(), &format!("{kind}.toml"), &toml);
        let out = dir.path().join(format!("out-{kind}"));
        let o = profile_command(&exp, &out)
            .env("IPW_TEST_SECRET", "hunter2")
            .env("IPW_TEST_KEY", "sk-never-on-disk")
            .output()
            .unwrap();
        assert!(o.status.success(), "{kind}: {}", text(&o));
        let run = out.join("m1");
        let recs = records(&run);
        assert_eq!(recs.len(), 3, "{kind}");
        for r in &recs {
            assert!(r["error"].is_null(), "{kind}: {r}");
            assert_eq!(r["response"], "42", "{kind}: {r}");
        }
        let seen = json(&record);
        let argv: Vec<&str> = seen["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // The server itself got the secrets.
        assert!(argv.contains(&"sk-never-on-disk"), "{kind}: {argv:?}");
        assert_eq!(seen["env"]["STANDIN_SECRET"], "hunter2", "{kind}");
        for w in want_args {
            assert!(argv.contains(w), "{kind}: {w} missing from {argv:?}");
        }
        assert!(
            argv.contains(&"127.0.0.1") || kind == "ollama",
            "{kind}: {argv:?}"
        );
        for (k, v) in want_env {
            assert_eq!(seen["env"][k], *v, "{kind}: {k}");
        }
        if kind == "ollama" {
            assert!(
                seen["env"]["OLLAMA_HOST"]
                    .as_str()
                    .unwrap()
                    .starts_with("127.0.0.1:"),
                "{seen}"
            );
        }
        let m = json(&run.join("manifest.json"));
        let s = &m["sessions"][0]["server"];
        assert_eq!(s["kind"], kind);
        let expected_version = if kind == "sglang" {
            "sglang 0.0-standin"
        } else {
            "standin version 1.0"
        };
        assert_eq!(s["version"], expected_version, "{s}");
        // Secrets given to the server never reach a file ipw writes.
        for file in walk(&out) {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            assert!(
                !text.contains("sk-never-on-disk") && !text.contains("hunter2"),
                "{kind}: a secret in {}",
                file.display()
            );
        }
        assert!(s.to_string().contains("STANDIN_SECRET=***"), "{s}");
    }
}

#[test]
fn doctor_says_which_servers_can_be_started_and_their_versions() {
    // Stand-ins on a PATH of their own: a `vllm` that reports a version, and a `python3`
    // without SGLang (as on this machine); no `ollama` and no `llama-server` at all.
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("vllm", "echo 'INFO 12-06 vllm version 0.6.3.post1'");
    script(
        "python3",
        "echo \"ModuleNotFoundError: No module named 'sglang'\" >&2; exit 1",
    );
    let o = ipw()
        .arg("doctor")
        .env("PATH", dir.path())
        .output()
        .unwrap();
    let t = text(&o);
    let line = |kind: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with(kind))
            .unwrap_or_else(|| panic!("no `{kind}` line: {t}"))
            .to_string()
    };
    assert!(line("vllm ").contains("vllm version 0.6.3.post1"), "{t}");
    assert!(line("sglang").contains("cannot import sglang"), "{t}");
    assert!(line("ollama").contains("not on PATH"), "{t}");
    assert!(line("llama-server").contains("not on PATH"), "{t}");
}
