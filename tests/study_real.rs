//! The study on real data, end to end: SmolLM2 profiled for real on the embedded backend twice,
//! with one and with two threads standing in for two accelerators (labelled `cpu-1t` and
//! `cpu-2t`), on the same MMLU and GSM8K queries, measured by the CPU estimator; then
//! `ipw compare`, `ipw report` and `ipw export --format parquet` on the two runs. Every figure
//! checked here is recomputed from the runs' records, and the Parquet copy must compare the same.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const QUERIES: usize = 6;

fn experiment(label: &str, threads: u32) -> String {
    format!(
        "name = \"real-{label}\"\nseed = 5\n[run]\nwarmup_queries = 0\n\
         [energy]\nbaseline_s = 0\n[generation]\nmax_tokens = 24\n\
         [[models]]\nname = \"smollm2\"\npath = {}\nthreads = {threads}\n\
         [models.meta]\naccelerator = \"{label}\"\nparams_b = 0.135\n\
         [[samplers]]\nplugin = \"cpu-estimate\"\nrate_hz = 50\n\
         [[datasets]]\nbuiltin = \"mmlu\"\nmax_queries = 4\n\
         [[datasets]]\nbuiltin = \"gsm8k\"\nmax_queries = 2\n",
        q(&model_path())
    )
}

/// query id -> (score, gross joules) of a run's records.
fn outcomes(run: &Path) -> BTreeMap<String, (f64, f64)> {
    records(run)
        .into_iter()
        .map(|r| {
            (
                r["query_id"].as_str().unwrap().to_string(),
                (
                    r["grade"]["score"].as_f64().unwrap(),
                    r["energy"]["gross_j"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn row<'a>(compare: &'a Value, accelerator: &str) -> &'a Value {
    compare["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["accelerator"] == accelerator && r["group"] == "all")
        .unwrap_or_else(|| panic!("no `all` row for {accelerator}: {compare}"))
}

fn compare(runs: &[&Path], out: &Path, cwd: &Path) -> Value {
    let mut args = vec!["compare"];
    args.extend(runs.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", out.to_str().unwrap()]);
    let o = run_ipw(&args, cwd);
    assert!(o.status.success(), "{}", text(&o));
    json(&out.join("compare.json"))
}

#[test]
fn two_real_runs_are_compared_reported_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let one = profile_ok(dir.path(), "one", &experiment("cpu-1t", 1)).join("smollm2");
    let two = profile_ok(dir.path(), "two", &experiment("cpu-2t", 2)).join("smollm2");
    let (a, b) = (outcomes(&one), outcomes(&two));
    assert_eq!(a.len(), QUERIES);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same queries"
    );
    let n = QUERIES as f64;
    let mean = |m: &BTreeMap<String, (f64, f64)>, f: fn(&(f64, f64)) -> f64| {
        m.values().map(f).sum::<f64>() / n
    };

    // compare: each run's accuracy and J/query, and the paired accuracy difference, as the
    // records give them.
    let c = compare(&[&one, &two], &dir.path().join("cmp"), dir.path());
    assert_eq!(c["energy_basis"], "gross", "no baseline was taken");
    for (label, m) in [("cpu-1t", &a), ("cpu-2t", &b)] {
        let r = row(&c, label);
        assert_eq!(r["scored"], QUERIES, "{r}");
        assert!(close(
            r["accuracy"]["value"].as_f64().unwrap(),
            mean(m, |o| o.0)
        ));
        let j = r["j_per_query"].as_f64().unwrap();
        assert!(close(j, mean(m, |o| o.1)), "{r}");
        assert!(j > 0.0);
        assert_eq!(
            r["energy_estimated"], true,
            "the CPU estimator models power"
        );
    }
    let paired = c["paired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["group"] == "all")
        .unwrap();
    assert_eq!(paired["shared"], QUERIES);
    let delta: f64 = a.keys().map(|k| b[k].0 - a[k].0).sum::<f64>() / n;
    assert!(close(
        paired["accuracy_delta"]["value"].as_f64().unwrap(),
        delta
    ));
    let ratio = b.values().map(|o| o.1).sum::<f64>() / a.values().map(|o| o.1).sum::<f64>();
    assert!(close(
        paired["energy_ratio"]["value"].as_f64().unwrap(),
        ratio
    ));

    // report: the page and its numbers, the same as compare's; the measured power trace drawn.
    let page = dir.path().join("report/report.html");
    let o = run_ipw(
        &[
            "report",
            one.to_str().unwrap(),
            two.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.matches("<svg").count() >= 4, "charts drawn");
    let r = json(&dir.path().join("report/report.json"));
    let points = r["pareto"]["data"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for p in points {
        let m = if p["run"].as_str().unwrap().contains("cpu-1t") {
            &a
        } else {
            &b
        };
        assert!(close(p["accuracy"].as_f64().unwrap(), mean(m, |o| o.0)));
        assert!(close(p["j_per_query"].as_f64().unwrap(), mean(m, |o| o.1)));
    }
    let trace = &r["trace"]["data"];
    assert!(
        !trace["channels"].as_array().unwrap().is_empty(),
        "the CPU estimator's readings are drawn: {}",
        r["trace"]
    );

    // export: Parquet copies of both runs compare exactly as the JSONL runs do.
    let pq = dir.path().join("parquet");
    let o = run_ipw(
        &[
            "export",
            one.to_str().unwrap(),
            two.to_str().unwrap(),
            "--format",
            "parquet",
            "-o",
            pq.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let copies: Vec<PathBuf> = run_dirs(&pq);
    // Both runs are `smollm2`: under one folder they are named by their experiments.
    let names: Vec<String> = copies
        .iter()
        .map(|c| c.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["out-one-smollm2", "out-two-smollm2"]);
    for c in &copies {
        assert!(c.join("records.parquet").is_file());
        assert!(c.join("power.parquet").is_file());
        assert!(!c.join("records.jsonl").exists(), "read from Parquet only");
    }
    let from_parquet = compare(&[&pq], &dir.path().join("cmp-pq"), dir.path());
    assert_eq!(from_parquet["rows"], c["rows"]);
    assert_eq!(from_parquet["paired"], c["paired"]);
}
