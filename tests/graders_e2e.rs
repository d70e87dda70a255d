//! Graders end to end through the `ipw` binary with real parts: the `judge` grader asking the
//! real SmolLM2 model behind a real llama-server, a third-party grader crate built from
//! `examples/grader-concise` with cargo exactly as its README says and loaded by path, and
//! `ipw grade` re-grading saved responses without the model.

use crate::support::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn graded(recs: &[serde_json::Value], dataset: &str) -> Vec<serde_json::Value> {
    recs.iter()
        .filter(|r| r["dataset"] == dataset)
        .map(|r| r["grade"].clone())
        .collect()
}

#[test]
fn judge_replies_from_the_real_model_are_parsed_or_left_unscored() {
    let server = LlamaServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/v1", server.url);
    let csv = q(&repo().join("examples/data/capitals.csv"));
    // Two prompts for the same real judge. The first asks for the grading format and ends
    // with `GRADE:` (SmolLM2-135M follows that one most of the time; whether its verdicts are
    // right is not the point here); the second asks for something else, so the reply cannot
    // be read and those queries must be unscored (score null), not counted as wrong.
    let toml = format!(
        r#"name = "judge-e2e"
[generation]
max_tokens = 24
[[models]]
name = "answerer"
backend = "openai"
base_url = "{url}"
model = "smollm2"
[grading]
timeout_ms = 60000
[grading.judge]
name = "judge"
backend = "openai"
base_url = "{url}"
model = "smollm2"
[[datasets]]
path = {csv}
name = "judged"
fields = {{ id = "id", prompt = "question", answer = "answer" }}
grader = "judge"
grader_params = {{ template = "Question: {{question}}\nReference answer: {{reference}}\nStudent response: {{response}}\n\nIs the student response correct? Reply in the format 'GRADE: C' (correct) or 'GRADE: I' (incorrect).\nGRADE:" }}
[[datasets]]
path = {csv}
name = "unreadable"
fields = {{ id = "id", prompt = "question", answer = "answer" }}
grader = "judge"
grader_params = {{ template = "Write one short sentence about the weather." }}
"#
    );
    let out = profile_ok(dir.path(), "judge", &toml);
    let run = out.join("answerer");
    let recs = records(&run);
    assert_eq!(recs.len(), 8);

    let mut parsed_scores = Vec::new();
    for g in graded(&recs, "judged") {
        assert_eq!(g["grader"], "judge", "{g}");
        assert!(g["error"].is_null(), "{g}");
        let reply = g["explanation"].as_str().unwrap();
        if g["parsed"] == true {
            let want = match g["extracted"].as_str().unwrap() {
                "C" => 1.0,
                "P" => 0.5,
                "I" => 0.0,
                other => panic!("extracted {other}"),
            };
            assert_eq!(g["score"], want, "{g}");
            assert!(
                reply.to_uppercase().contains("GRADE"),
                "the reply is kept: {g}"
            );
            parsed_scores.push(want);
        } else {
            assert!(g["score"].is_null(), "{g}");
            assert!(reply.contains("judge reply has no GRADE"), "{g}");
        }
    }
    assert!(
        !parsed_scores.is_empty(),
        "the real judge's replies are read: {recs:?}"
    );
    for g in graded(&recs, "unreadable") {
        assert!(g["error"].is_null(), "{g}");
        assert!(g["score"].is_null(), "unreadable reply = unscored: {g}");
        assert_eq!(g["parsed"], false, "{g}");
        assert!(
            g["explanation"]
                .as_str()
                .unwrap()
                .contains("judge reply has no GRADE"),
            "{g}"
        );
    }
    let s = json(&run.join("summary.json"));
    let quality = &s["quality"];
    assert_eq!(
        quality["overall"]["scored"],
        parsed_scores.len(),
        "unscored queries are not counted"
    );
    let mean = parsed_scores.iter().sum::<f64>() / parsed_scores.len() as f64;
    let acc = quality["overall"]["accuracy"]["value"].as_f64().unwrap();
    assert!((acc - mean).abs() < 1e-12, "{acc} vs {mean}");
    assert_eq!(quality["by_dataset"]["unreadable"]["scored"], 0);
}

fn sha256_file(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn third_party_grader_by_path_then_regrade_without_the_model() {
    let wasm = build_wasm_example("grader-concise");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The example experiment exactly as shipped (paths are relative to the file).
    let o = profile_file(
        &repo().join("examples/third-party-grader.toml"),
        &out,
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = out.join("smollm2-135m");
    let recs = records(&run);
    assert_eq!(recs.len(), 4);
    let sha = sha256_file(&wasm);
    for r in &recs {
        let g = &r["grade"];
        assert_eq!(g["grader"], "grader_concise.wasm", "{g}");
        assert_eq!(
            g["wasm_sha256"],
            sha.as_str(),
            "the record names the exact component"
        );
        assert_eq!(
            g["params"]["max_words"], 30,
            "and the params it was called with"
        );
        assert!(g["error"].is_null(), "{g}");
        let score = g["score"].as_f64().unwrap();
        assert!(score == 0.0 || score == 1.0);
        let words = r["response"].as_str().unwrap().split_whitespace().count();
        if g["parsed"] == true {
            assert_eq!(score == 1.0, words <= 30 + 5, "{r}"); // word split differs a little
        }
    }
    let manifest = json(&run.join("manifest.json"));
    assert_eq!(
        manifest["sessions"][0]["graders"],
        serde_json::json!([{
            "dataset": "capitals",
            "grader": "grader_concise.wasm",
            "wasm_sha256": sha,
            "params": { "max_words": 30 }
        }]),
        "the manifest names each dataset's grader component"
    );
    let before = json(&run.join("summary.json"));
    assert_eq!(before["quality"]["graders"][0], "grader_concise.wasm");

    // Re-grade with `includes`: no model, the old grade kept beside the new one.
    let o = run_ipw(
        &["grade", out.to_str().unwrap(), "--grader", "includes"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("accuracy"), "{}", text(&o));
    let after = records(&run);
    assert_eq!(after.len(), 4);
    for (old, new) in recs.iter().zip(&after) {
        assert_eq!(old["response"], new["response"], "responses untouched");
        assert_eq!(old["latency_s"], new["latency_s"]);
        assert_eq!(new["grade"]["grader"], "includes");
        assert_eq!(new["grade_history"].as_array().unwrap().len(), 1);
        assert_eq!(new["grade_history"][0], old["grade"]);
        let said = new["response"].as_str().unwrap().to_lowercase();
        let answer = new["answers"][0].as_str().unwrap().to_lowercase();
        assert_eq!(
            new["grade"]["score"] == 1.0,
            said.contains(&answer),
            "{new}"
        );
    }
    let refreshed = json(&run.join("summary.json"));
    assert_eq!(refreshed["quality"]["graders"][0], "includes");

    // And again, with params: the history grows.
    let o = run_ipw(
        &[
            "grade",
            run.to_str().unwrap(),
            "--grader",
            wasm.to_str().unwrap(),
            "--params",
            r#"{"max_words": 1000}"#,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    for r in records(&run) {
        assert_eq!(r["grade_history"].as_array().unwrap().len(), 2);
        assert_eq!(r["grade"]["params"]["max_words"], 1000);
        assert_eq!(
            r["grade"]["score"] == 1.0,
            r["grade"]["parsed"] == true,
            "{r}"
        );
    }

    // Mistakes are named.
    let o = run_ipw(
        &["grade", run.to_str().unwrap(), "--grader", "nope.wasm"],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("nope.wasm"), "{}", text(&o));
    let o = run_ipw(
        &[
            "grade",
            run.to_str().unwrap(),
            "--grader",
            "numeric",
            "--params",
            "[1]",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--params must be a JSON object"),
        "{}",
        text(&o)
    );
    let o = run_ipw(
        &["grade", dir.path().to_str().unwrap(), "--grader", "exact"],
        dir.path(),
    );
    assert!(text(&o).contains("no run here"), "{}", text(&o));
}
