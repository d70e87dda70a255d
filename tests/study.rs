//! `ipw compare` and `ipw coverage` on runs whose every answer is known in closed form: a table
//! made here, imported with `ipw import` (so the runs are ordinary run directories).
//!
//! | query | dataset | small (1 J) | mid (4 J) | big (20 J, reference) |
//! |---|---|---|---|---|
//! | q1 | math | 1 | 1 | 1 |
//! | q2 | math | 0 | 1 | 1 |
//! | q3 | math | 0 | 0 | 1 |
//! | q4 | math | 1 | 0 | 0 |
//! | q5 | facts | 1 | 1 | 1 |
//! | q6 | facts | 0 | 0 | 0 |
//! | q7 | facts | 0 | 1 | 0 |
//! | q8 | facts | 1 | 1 | 1 |

mod support;

use serde_json::Value;
use support::*;

const SCORES: [[u8; 3]; 8] = [
    [1, 1, 1],
    [0, 1, 1],
    [0, 0, 1],
    [1, 0, 0],
    [1, 1, 1],
    [0, 0, 0],
    [0, 1, 0],
    [1, 1, 1],
];

fn runs(dir: &std::path::Path) -> std::path::PathBuf {
    let mut csv = String::from("query_id,model,dataset,score,energy_j,latency_s\n");
    for (q, s) in SCORES.iter().enumerate() {
        let dataset = if q < 4 { "math" } else { "facts" };
        for (m, (name, joules)) in [("small", 1.0), ("mid", 4.0), ("big", 20.0)]
            .iter()
            .enumerate()
        {
            csv += &format!("q{},{name},{dataset},{},{joules},0.5\n", q + 1, s[m]);
        }
    }
    let table = dir.join("study.csv");
    std::fs::write(&table, csv).unwrap();
    let out = dir.join("runs");
    let o = run_ipw(
        &[
            "import",
            table.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    out
}

fn value(v: &Value) -> f64 {
    v["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no value in {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn coverage_matches_the_table_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    let meta = dir.path().join("meta.toml");
    std::fs::write(
        &meta,
        "[models.small]\nrelease_date = \"2024-01-01\"\n[models.mid]\nrelease_date = \"2025-01-01\"\n",
    )
    .unwrap();
    let out = dir.path().join("analysis");
    let o = run_ipw(
        &[
            "coverage",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--meta",
            meta.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&out.join("coverage.json"));
    let cov = |model: &str, group: &str| {
        let row = r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["model"] == model && x["group"] == group)
            .unwrap_or_else(|| panic!("no {model}/{group}"));
        value(&row["coverage"])
    };
    // small covers q1 q4 q5 q6 q7 q8; mid all but q3; nobody covers q3.
    assert!(close(cov("small", "all"), 6.0 / 8.0));
    assert!(close(cov("mid", "all"), 7.0 / 8.0));
    assert!(close(cov("best-of-local", "all"), 7.0 / 8.0));
    assert!(close(cov("small", "math"), 2.0 / 4.0));
    assert!(close(cov("mid", "math"), 3.0 / 4.0));
    assert!(close(cov("small", "facts"), 4.0 / 4.0));
    let t = r["over_time"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(
        (
            t[0]["date"].as_str().unwrap(),
            t[1]["date"].as_str().unwrap()
        ),
        ("2024-01-01", "2025-01-01")
    );
    assert!(close(t[0]["coverage"].as_f64().unwrap(), 0.75));
    assert!(close(t[1]["coverage"].as_f64().unwrap(), 0.875));
    // A tolerance of 1 covers everything.
    let o = run_ipw(
        &[
            "coverage",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--tolerance",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&out.join("coverage.json"));
    assert!(r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| close(value(&x["coverage"]), 1.0)));
    assert!(std::fs::read_to_string(out.join("coverage.csv"))
        .unwrap()
        .starts_with("model,group,queries,coverage"));
}

#[test]
fn compare_gives_each_run_and_paired_differences_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let runs = runs(dir.path());
    let out = dir.path().join("analysis");
    let o = run_ipw(
        &[
            "compare",
            runs.to_str().unwrap(),
            "--baseline",
            "big",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&out.join("compare.json"));
    let row = |model: &str, group: &str| -> Value {
        r["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["model"] == model && x["group"] == group)
            .unwrap_or_else(|| panic!("no {model}/{group}"))
            .clone()
    };
    // Accuracy 4/8, 5/8, 5/8; APJ = accuracy / J per query.
    assert!(close(value(&row("small", "all")["accuracy"]), 0.5));
    assert!(close(value(&row("small", "all")["apj"]), 0.5));
    assert!(close(value(&row("mid", "all")["apj"]), 0.625 / 4.0));
    assert!(close(value(&row("big", "math")["accuracy"]), 0.75));
    assert!(close(
        row("small", "all")["latency_p50_s"].as_f64().unwrap(),
        0.5
    ));
    let paired = |model: &str, group: &str| -> Value {
        r["paired"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["model"] == model && x["group"] == group)
            .unwrap()
            .clone()
    };
    let s = paired("small", "all");
    assert!(close(value(&s["accuracy_delta"]), -0.125));
    assert!(close(value(&s["energy_ratio"]), 0.05));
    assert!(close(value(&s["apj_ratio"]), 16.0));
    let m = paired("mid", "all");
    assert!(close(value(&m["accuracy_delta"]), 0.0));
    assert!(close(value(&m["apj_ratio"]), 5.0));
    // math only: small 2/4 vs big 3/4.
    assert!(close(
        value(&paired("small", "math")["accuracy_delta"]),
        -0.25
    ));
    assert_eq!(r["baseline"], "big");
    assert!(text(&o).contains("paired against big"), "{}", text(&o));
}
