//! Crash safety: `kill -9` the profiler mid-run, then `--resume`: exactly N unique records, none
//! lost, none duplicated, no cut-off line. And Ctrl-C (SIGINT) stops cleanly with what was
//! measured on disk.

use crate::support::*;
use std::io::Write;
use std::time::{Duration, Instant};

const N: usize = 12;

fn experiment(model: &std::path::Path) -> String {
    format!(
        "name = \"crash\"\n[run]\nwarmup_queries = 0\n[generation]\nmax_tokens = 40\n\
         [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = {N}\n",
        q(model)
    )
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Start `ipw profile` in the background with its output captured.
fn spawn_profile(exp: &std::path::Path, out: &std::path::Path) -> std::process::Child {
    profile_command(exp, out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_records(path: &std::path::Path, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(path) < at_least {
        assert!(
            Instant::now() < deadline,
            "no progress in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_then_resume_gives_exactly_n_unique_records() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), "crash.toml", &experiment(&model_path()));
    let out = dir.path().join("out");
    let records_path = out.join("smollm2/records.jsonl");
    let mut child = spawn_profile(&exp, &out);
    wait_for_records(&records_path, 3);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = records(&out.join("smollm2"));
    assert!(
        before.len() >= 3 && before.len() < N,
        "killed mid-run: {}",
        before.len()
    );

    // Simulate the worst a crash can leave: a record cut off mid-line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&records_path)
        .unwrap()
        .write_all(br#"{"schema":1,"query_id":"gsm8k/99","ind"#)
        .unwrap();

    let o = resume_profile(&exp, &out, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let after = records(&out.join("smollm2"));
    assert_eq!(after.len(), N, "exactly N records");
    let ids: std::collections::HashSet<_> = after
        .iter()
        .map(|r| r["query_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), N, "no duplicates");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "records from before the crash are untouched"
    );
    let m = json(&out.join("smollm2/manifest.json"));
    assert_eq!(m["status"], "completed");
    let sessions = m["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions[1]["resumed_from"].as_u64().unwrap() as usize,
        before.len()
    );
    assert_eq!(
        sessions[1]["rejected_lines"], 1,
        "the cut-off line was moved aside"
    );
    let rejected = std::fs::read_to_string(out.join("smollm2/records.rejected.jsonl")).unwrap();
    assert!(
        rejected.contains(r#"{\"schema\":1,\"query_id\":\"gsm8k/99\",\"ind"#),
        "{rejected}"
    );
    assert_eq!(
        json(&out.join("smollm2/summary.json"))["recorded"]
            .as_u64()
            .unwrap() as usize,
        N
    );

    // Resuming a finished run does nothing and duplicates nothing.
    let o = resume_profile(&exp, &out, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(records(&out.join("smollm2")).len(), N);
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), "int.toml", &experiment(&model_path()));
    let out = dir.path().join("out");
    let records_path = out.join("smollm2/records.jsonl");
    let child = spawn_profile(&exp, &out);
    wait_for_records(&records_path, 2);
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(
        text(&o).contains("--resume"),
        "tells how to continue: {}",
        text(&o)
    );
    let partial = records(&out.join("smollm2"));
    assert!(!partial.is_empty() && partial.len() < N);
    let m = json(&out.join("smollm2/manifest.json"));
    assert_eq!(m["status"], "interrupted");
    assert_eq!(
        json(&out.join("smollm2/summary.json"))["recorded"]
            .as_u64()
            .unwrap() as usize,
        partial.len()
    );

    let o = resume_profile(&exp, &out, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(records(&out.join("smollm2")).len(), N);
}
