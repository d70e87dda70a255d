//! The run directory cannot be corrupted: unreadable record lines are moved aside, never a
//! reason to truncate; one process at a time; a resume whose settings changed is refused with
//! the fields named; a record from a newer ipw is refused, not dropped; and run directories
//! written by earlier versions of ipw still read.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const N: usize = 4;

fn experiment(max_tokens: u32, extra: &str) -> String {
    format!(
        "name = \"rd\"\nseed = 7\n[run]\nwarmup_queries = 0\n[generation]\nmax_tokens = {max_tokens}\n\
         [[models]]\nname = \"smollm2\"\npath = {}\nthreads = 2\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = {N}\n{extra}",
        q(&model_path())
    )
}

/// A finished run of [`experiment`] with max_tokens 16: (temp dir, experiment file, out dir).
fn finished_run(extra: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let exp = write_experiment(dir.path(), "rd.toml", &experiment(16, extra));
    let out = dir.path().join("out");
    let o = profile_file(&exp, &out, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    (dir, exp, out)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_unreadable_record_line_is_moved_aside_and_every_other_record_kept() {
    let (dir, exp, out) = finished_run("");
    let run = out.join("smollm2");
    let path = run.join("records.jsonl");
    let before = lines(&path);
    assert_eq!(before.len(), N);
    // Line 2 becomes unreadable (a hand edit, a disk error, a field an older ipw required):
    // today's main truncated the file there, erasing lines 3 and 4 with it.
    let mut damaged = before.clone();
    let victim: Value = serde_json::from_str(&damaged[1]).unwrap();
    damaged[1] = damaged[1].replace("\"latency_s\":", "\"latency_s\":\"oops\",\"x\":");
    std::fs::write(&path, damaged.join("\n") + "\n").unwrap();

    let o = resume_profile(&exp, &out, dir.path(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let after = lines(&path);
    assert_eq!(after.len(), N, "the damaged query is measured again");
    for keep in [0, 2, 3] {
        assert!(
            after.contains(&before[keep]),
            "record {} kept byte for byte",
            keep + 1
        );
    }
    let redone: Vec<Value> = after
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["query_id"] == victim["query_id"])
        .collect();
    assert_eq!(redone.len(), 1);
    assert_eq!(
        redone[0]["session"], 1,
        "measured again in the second session"
    );
    let rejected = lines(&run.join("records.rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    let r: Value = serde_json::from_str(&rejected[0]).unwrap();
    assert_eq!(r["line"], 2);
    assert_eq!(r["text"], damaged[1], "the line itself is kept");
    assert!(r["reason"].as_str().unwrap().contains("latency_s"), "{r}");
    let m = json(&run.join("manifest.json"));
    assert_eq!(m["sessions"][1]["rejected_lines"], 1);
    assert_eq!(m["status"], "completed");
}

#[test]
fn a_record_from_a_newer_ipw_is_refused_by_line_not_dropped() {
    let (dir, exp, out) = finished_run("");
    let path = out.join("smollm2/records.jsonl");
    let mut on_disk = lines(&path);
    on_disk[2] = on_disk[2].replacen("\"schema\":1", "\"schema\":99", 1);
    std::fs::write(&path, on_disk.join("\n") + "\n").unwrap();
    let o = resume_profile(&exp, &out, dir.path(), &[]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("records.jsonl:3: record schema 99 is newer than this ipw reads"),
        "{msg}"
    );
    assert_eq!(lines(&path), on_disk, "nothing changed on disk");
}

#[test]
fn resume_refuses_changed_settings_and_names_every_field() {
    let (dir, _, out) = finished_run("");
    // The same queries, other settings: generation, grader, model threads and a sampler.
    let changed = experiment(32, "grader = \"includes\"\n").replace("threads = 2", "threads = 1")
        + "[[samplers]]\nplugin = \"cpu-estimate\"\nrate_hz = 20\n[energy]\nbaseline_s = 0\n";
    let exp2 = write_experiment(dir.path(), "changed.toml", &changed);
    let records_before = lines(&out.join("smollm2/records.jsonl"));
    let o = resume_profile(&exp2, &out, dir.path(), &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    for field in [
        "generation.max_tokens: 16 -> 32",
        "model.threads: 2 -> 1",
        "samplers: [] -> [",
        "graders[0].grader: \"numeric\" -> \"includes\"",
    ] {
        assert!(msg.contains(field), "names `{field}`: {msg}");
    }
    assert_eq!(
        lines(&out.join("smollm2/records.jsonl")),
        records_before,
        "nothing touched"
    );
}

#[test]
fn a_run_directory_in_use_is_refused_with_its_holder_named() {
    let (dir, _, out) = finished_run("");
    let run = ipw_core::records::RunDir::new(out.join("smollm2"));
    let lock = run.lock().expect("free after the run");
    let o = run_ipw(
        &["grade", out.to_str().unwrap(), "--grader", "includes"],
        dir.path(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("in use by another ipw process")
            && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(lock);
    let o = run_ipw(
        &["grade", out.to_str().unwrap(), "--grader", "includes"],
        dir.path(),
    );
    assert!(o.status.success(), "free again once released: {}", text(&o));
}

/// A run directory written by ipw 0.1.0 at commit 719ac2b (the last version before the records
/// layer): embedded SmolLM2, GSM8K and MMLU, a replay sampler, graded, then re-graded once.
fn legacy_run() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs/v0.1.0-719ac2b")
}

#[test]
fn a_run_directory_from_ipw_0_1_reads_and_regrades() {
    let src = legacy_run().join("smollm2");
    let read = ipw_core::records::RunDir::new(&src).read_records().unwrap();
    assert!(read.rejected.is_empty(), "{:?}", read.rejected);
    assert_eq!(read.records.len(), 6);
    for r in &read.records {
        assert_eq!(r.schema, 1);
        let g = r.grade.as_ref().expect("graded");
        assert!(!g.wasm_sha256.is_empty());
        assert_eq!(r.grade_history.len(), 1, "re-graded once");
        let e = r.energy.as_ref().expect("replay energy");
        assert!(e.gross_j.unwrap() > 0.0);
        assert!(e.channels.contains_key("replay/trace"));
    }
    let m = ipw_core::records::RunDir::new(&src)
        .read_manifest()
        .unwrap();
    assert_eq!(m.model.name, "smollm2");
    assert_eq!(m.model.backend, "embedded");
    assert_eq!(m.sessions[0].samplers[0].name, "replay");

    // Re-grading a copy works and keeps every earlier grade.
    let (dir, copy) = legacy_copy();
    let o = run_ipw(
        &["grade", copy.to_str().unwrap(), "--grader", "includes"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    for r in records(&copy) {
        assert_eq!(r["grade"]["grader"], "includes");
        assert_eq!(r["grade_history"].as_array().unwrap().len(), 2);
    }
    assert_eq!(json(&copy.join("summary.json"))["recorded"], 6);
}

/// A copy of the legacy run to change.
fn legacy_copy() -> (tempfile::TempDir, PathBuf) {
    let src = legacy_run().join("smollm2");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("smollm2");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
    }
    (dir, copy)
}

#[test]
fn a_grader_that_sleeps_forever_ends_as_each_records_error_and_grading_goes_on() {
    // Today's main hung here for good: the sleep is a blocking WASI call, out of reach of
    // the epoch that stops guest code.
    let (dir, copy) = legacy_copy();
    let sleeper = ipw_core::grade::test_support::fixture_grader("sleep");
    let o = run_ipw(
        &[
            "grade",
            copy.to_str().unwrap(),
            "--grader",
            sleeper.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let records = records(&copy);
    assert_eq!(records.len(), 6);
    for r in &records {
        let g = &r["grade"];
        assert_eq!(g["grader"], "ipw_fixture_grader_sleep.wasm");
        assert!(g["score"].is_null());
        let err = g["error"].as_str().unwrap_or_default();
        assert!(err.contains("grader exceeded its 1000 ms deadline"), "{r}");
        // The earlier grades are kept.
        assert_eq!(r["grade_history"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn ipw_list_names_the_builtin_graders_and_never_shows_test_fixtures() {
    // The fixture libraries are built beside the binary, where the search path looks first.
    assert!(plugin_lib("ipw_testfixture_faulty_sampler").is_file());
    let o = run_ipw(&["list"], Path::new("."));
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(!out.contains("fixture"), "{out}");
    let graders: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("graders"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    for name in [
        "choice", "exact", "f1", "includes", "judge", "numeric", "regex",
    ] {
        let line = graders
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("`{name}` listed: {out}"));
        assert!(
            line.split_whitespace().count() > 3,
            "`{name}` has a description: {line}"
        );
    }
    assert!(
        out.contains("libipw_sampler_replay"),
        "real plugins still shown: {out}"
    );
}
