//! `ipw coverage` with pairwise grades, on runs whose every grade is made here: a table imported
//! with `ipw import`, then the `chat` grades of the two local models rewritten as the `pairwise`
//! grader writes them (scored against the reference `ref`, which keeps its own grade of 1).
//!
//! | query | dataset | a | b | ref |
//! |---|---|---|---|---|
//! | q1 | math | 1 | 0 | 1 |
//! | q2 | math | 1 | 0 | 0 |
//! | c1 | chat | pairwise 1 | pairwise 0.75 | 1 |
//! | c2 | chat | pairwise 0.5 | pairwise 0.5 | 1 |
//! | c3 | chat | pairwise 0.25 | pairwise 0.5 | 1 |
//! | c4 | chat | pairwise 0 | pairwise unscored | 1 |
//!
//! A pairwise grade is covered at >= 0.5 - tolerance whatever the reference's own score; a gold
//! grade at >= the reference's score - tolerance. Compared with the reference's chat score of 1,
//! as gold scores, a would cover one chat query and b none, so the two rules give different
//! figures.

use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const TABLE: [(&str, &str, [Option<f64>; 3]); 6] = [
    ("q1", "math", [Some(1.0), Some(0.0), Some(1.0)]),
    ("q2", "math", [Some(1.0), Some(0.0), Some(0.0)]),
    ("c1", "chat", [Some(1.0), Some(0.75), Some(1.0)]),
    ("c2", "chat", [Some(0.5), Some(0.5), Some(1.0)]),
    ("c3", "chat", [Some(0.25), Some(0.5), Some(1.0)]),
    ("c4", "chat", [Some(0.0), None, Some(1.0)]),
];
const MODELS: [&str; 3] = ["a", "b", "ref"];

fn run_of(runs: &Path, model: &str) -> PathBuf {
    crate::support::run_dirs(runs)
        .into_iter()
        .find(|r| json(&r.join("manifest.json"))["model"]["name"] == model)
        .unwrap_or_else(|| panic!("no run of {model}"))
}

/// Import the table, then give the local models' chat records pairwise grades judged against
/// `against_model`.
fn runs(dir: &Path, against_model: &str) -> PathBuf {
    let mut csv = String::from("query_id,model,dataset,score,energy_j,latency_s\n");
    for (id, dataset, scores) in TABLE {
        for (m, model) in MODELS.iter().enumerate() {
            let score = scores[m].unwrap_or(0.0);
            csv += &format!("{id},{model},{dataset},{score},1,0.5\n");
        }
    }
    let runs = import_table(dir, &csv);
    let reference = run_of(&runs, "ref");
    for (m, model) in MODELS[..2].iter().enumerate() {
        let run = run_of(&runs, model);
        let mut lines = String::new();
        for mut r in records(&run) {
            let (_, dataset, scores) = TABLE
                .iter()
                .find(|(id, _, _)| r["query_id"].as_str().unwrap().ends_with(id))
                .unwrap();
            if *dataset == "chat" {
                let g = &mut r["grade"];
                g["grader"] = "pairwise".into();
                g["score"] = json!(scores[m]);
                g["parsed"] = scores[m].is_some().into();
                g["params"] = json!({
                    "against": reference.display().to_string(),
                    "against_model": against_model,
                });
            }
            lines += &format!("{r}\n");
        }
        std::fs::write(run.join("records.jsonl"), lines).unwrap();
    }
    runs
}

fn coverage(runs: &Path, tolerance: &str, cwd: &Path) -> Value {
    let out = cwd.join(format!("analysis-{tolerance}"));
    let o = run_ipw(
        &[
            "coverage",
            runs.to_str().unwrap(),
            "--reference",
            "ref",
            "--tolerance",
            tolerance,
            "--out",
            out.to_str().unwrap(),
        ],
        cwd,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("judged pairwise against the reference"),
        "{}",
        text(&o)
    );
    json(&out.join("coverage.json"))
}

fn share(report: &Value, model: &str, group: &str) -> f64 {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model && r["group"] == group)
        .unwrap_or_else(|| panic!("no row {model}/{group}: {report}"))["coverage"]["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn pairwise_grades_are_covered_at_a_tie_and_gold_grades_at_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path(), "ref");
    let r = coverage(&runs, "0", dir.path());
    assert_eq!(r["pairwise_datasets"], json!(["chat"]), "{r}");
    assert_eq!(r["queries"], 6);
    // (model, group, share) by hand from the table.
    let want = [
        ("a", "math", 2.0 / 2.0),
        ("b", "math", 1.0 / 2.0),
        ("a", "chat", 2.0 / 4.0),
        ("b", "chat", 3.0 / 4.0),
        ("best-of-local", "chat", 3.0 / 4.0),
        ("a", "all", 4.0 / 6.0),
        ("b", "all", 4.0 / 6.0),
        ("best-of-local", "all", 5.0 / 6.0),
    ];
    for (model, group, share_) in want {
        let got = share(&r, model, group);
        assert!(
            (got - share_).abs() < 1e-12,
            "{model}/{group}: {got} != {share_}"
        );
    }
    // The tolerance applies to pairwise grades too: 0.25 >= 0.5 - 0.25; an unscored grade
    // (score 0) still is not covered.
    let r = coverage(&runs, "0.25", dir.path());
    for (model, group, share_) in [
        ("a", "chat", 3.0 / 4.0),
        ("b", "chat", 3.0 / 4.0),
        ("b", "math", 1.0 / 2.0),
    ] {
        let got = share(&r, model, group);
        assert!(
            (got - share_).abs() < 1e-12,
            "{model}/{group}: {got} != {share_}"
        );
    }
}

#[test]
fn pairwise_grades_against_another_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path(), "someone-else");
    let o = run_ipw(
        &["coverage", runs.to_str().unwrap(), "--reference", "ref"],
        dir.path(),
    );
    assert!(!o.status.success(), "{}", text(&o));
    let err = text(&o);
    assert!(
        err.contains("judged against `someone-else`, not the reference `ref`"),
        "{err}"
    );
    assert!(err.contains("--grader pairwise --against"), "{err}");
}
