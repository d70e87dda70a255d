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

use crate::support::*;
use serde_json::Value;

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
    import_table(dir, &csv)
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

/// `ipw trend` on runs whose every figure is known in closed form. Ten queries; a model gets the
/// same ones right on every accelerator (old: 4, new: 8), every query takes 1 s, and energy per
/// query depends on the accelerator only, so APW = accuracy / watts = a(model) x b(accelerator):
///
/// | run | accuracy | J/query (= W) | APW |
/// |---|---|---|---|
/// | old on gpuA (2022, cloud) | 0.4 | 10 | 0.04 |
/// | new on gpuA | 0.8 | 10 | 0.08 |
/// | old on gpuB (2024-06, cloud) | 0.4 | 4 | 0.10 |
/// | new on gpuB | 0.8 | 4 | 0.20 |
/// | new on laptop (2024-01, local) | 0.8 | 16 | 0.05 |
///
/// old is released 2023-01-01, new 2025-01-01. The best at 2023 is old on gpuA (gpuB is not out
/// yet), at 2025 new on gpuB: x5 = model x2 (0.8 / 0.4) x hardware x2.5 (10 J / 4 J).
#[test]
fn trend_splits_a_known_change_into_its_model_and_hardware_factors() {
    let dir = tempfile::tempdir().unwrap();
    let table = |rows: &[(&str, &str, f64, u32)]| {
        let mut csv = String::from("query_id,model,accelerator,dataset,score,energy_j,latency_s\n");
        for &(model, accel, joules, right) in rows {
            for q in 0..10 {
                let score = u32::from(q < right);
                csv += &format!("q{q},{model},{accel},d,{score},{joules},1\n");
            }
        }
        csv
    };
    let import = |name: &str, csv: String| {
        let file = dir.path().join(format!("{name}.csv"));
        std::fs::write(&file, csv).unwrap();
        let out = dir.path().join(name);
        let o = run_ipw(
            &[
                "import",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        out
    };
    let runs = import(
        "runs",
        table(&[
            ("old", "gpuA", 10.0, 4),
            ("new", "gpuA", 10.0, 8),
            ("old", "gpuB", 4.0, 4),
            ("new", "gpuB", 4.0, 8),
            ("new", "laptop", 16.0, 8),
        ]),
    );
    let meta = dir.path().join("meta.toml");
    std::fs::write(
        &meta,
        "[models.old]\nrelease_date = \"2023-01-01\"\n[models.new]\nrelease_date = \"2025-01-01\"\n\
         [accelerators.gpuA]\nrelease_date = \"2022-01-01\"\nclass = \"cloud\"\n\
         [accelerators.gpuB]\nrelease_date = \"2024-06-01\"\nclass = \"cloud\"\n\
         [accelerators.laptop]\nrelease_date = \"2024-01-01\"\nclass = \"local\"\n",
    )
    .unwrap();
    let trend = |runs: &[&std::path::Path], out: &str| -> Value {
        let out = dir.path().join(out);
        let mut args = vec!["trend".to_string()];
        args.extend(runs.iter().map(|r| r.display().to_string()));
        args.extend([
            "--meta".into(),
            meta.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_ipw(&args, dir.path());
        assert!(o.status.success(), "{}", text(&o));
        assert!(out.join("trend.csv").is_file());
        json(&out.join("trend.json"))
    };
    let r = trend(&[&runs], "all");
    let apw = |model: &str, accel: &str| {
        let p = r["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["model"] == model && p["accelerator"] == accel)
            .unwrap_or_else(|| panic!("no {model} on {accel}"));
        value(&p["value"])
    };
    for (m, a, want) in [
        ("old", "gpuA", 0.04),
        ("new", "gpuA", 0.08),
        ("old", "gpuB", 0.1),
        ("new", "gpuB", 0.2),
        ("new", "laptop", 0.05),
    ] {
        assert!(close(apw(m, a), want), "{m} on {a}: {}", apw(m, a));
    }
    let frontier = r["frontier"].as_array().unwrap();
    assert_eq!(frontier.len(), 2);
    assert_eq!(
        (&frontier[0]["model"], &frontier[0]["accelerator"]),
        (&"old".into(), &"gpuA".into()),
        "gpuB is not released by 2023"
    );
    assert_eq!(frontier[1]["accelerator"], "gpuB");
    let c = &r["change"];
    assert!(close(value(&c["total"]), 5.0), "{c}");
    assert!(close(value(&c["model_factor"]), 2.0), "{c}");
    assert!(close(value(&c["hardware_factor"]), 2.5), "{c}");
    assert!(c["method"].as_str().unwrap().starts_with("Shapley"), "{c}");
    // Two frontier points 731 days apart: x5 over 2.0014 years.
    let years = 731.0 / 365.2425;
    assert!(
        close(value(&r["per_year"]), 5f64.powf(1.0 / years)),
        "{}",
        r["per_year"]
    );
    // Same model, local vs cloud: new's best cloud (gpuB, 0.2) over its laptop (0.05).
    let lc = &r["local_vs_cloud"][0];
    assert_eq!(
        (&lc["model"], &lc["local"], &lc["cloud"]),
        (&"new".into(), &"laptop".into(), &"gpuB".into())
    );
    assert!(close(value(&lc["ratio"]), 4.0), "{lc}");
    // Every interval holds its value.
    for e in [
        &c["total"],
        &c["model_factor"],
        &r["per_year"],
        &lc["ratio"],
    ] {
        let (v, lo, hi) = (
            value(e),
            e["ci95"][0].as_f64().unwrap(),
            e["ci95"][1].as_f64().unwrap(),
        );
        assert!(lo <= v + 1e-12 && v <= hi + 1e-12, "{e}");
    }

    // With an interaction (new on gpuB at 5 J: APW 0.16) the orders disagree; Shapley takes
    // their mean in log space: model sqrt(2 x 1.6), hardware sqrt(2.5 x 2), product x4.
    let interaction = import("interaction", table(&[("new", "gpuB", 5.0, 8)]));
    let parts: Vec<std::path::PathBuf> = ["old@gpuA", "new@gpuA", "old@gpuB"]
        .iter()
        .map(|n| runs.join(n))
        .chain([interaction.join("new@gpuB")])
        .collect();
    let refs: Vec<&std::path::Path> = parts.iter().map(|p| p.as_path()).collect();
    let r = trend(&refs, "interaction-out");
    let c = &r["change"];
    assert!(close(value(&c["total"]), 4.0), "{c}");
    assert!(close(value(&c["model_factor"]), 3.2f64.sqrt()), "{c}");
    assert!(close(value(&c["hardware_factor"]), 5f64.sqrt()), "{c}");
    // Without old on gpuB only one order is measured: model first (x2), then hardware (x2).
    let r = trend(
        &refs[..2]
            .iter()
            .chain(&refs[3..])
            .copied()
            .collect::<Vec<_>>(),
        "one-order",
    );
    let c = &r["change"];
    assert!(
        c["method"].as_str().unwrap().starts_with("model first"),
        "{c}"
    );
    assert!(close(value(&c["model_factor"]), 2.0), "{c}");
    assert!(close(value(&c["hardware_factor"]), 2.0), "{c}");
}

#[test]
fn compare_and_coverage_of_runs_larger_than_their_memory_cap_complete() {
    // 4 models x 60,000 queries (212 MB of records). Held whole, as compare and coverage did
    // until the runs were read one at a time, they peaked at 607 and 542 MiB here; read run by
    // run (a run's compact figures, a few dozen bytes per query for the join) at 120 and 84 MiB.
    // The cap sits between, far from both.
    const CAP_MIB: f64 = 250.0;
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("big.csv");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&table).unwrap());
        writeln!(
            w,
            "query_id,model,dataset,subject,score,energy_j,net_energy_j,latency_s"
        )
        .unwrap();
        for m in 0..4u32 {
            for q in 0..60_000u32 {
                let j = (1 + m) as f64 * (1.0 + (q * 7919 % 1000) as f64 / 1000.0);
                let dataset = if q % 3 == 0 { "facts" } else { "math" };
                let score = u8::from((q * 31 + m * 17) % 10 < 4 + m);
                writeln!(
                    w,
                    "q{q},m{m},{dataset},s{},{score},{:.4},{j:.4},{:.4}",
                    q % 20,
                    j * 1.3,
                    0.1 + (q % 100) as f64 / 100.0
                )
                .unwrap();
            }
        }
    }
    let runs = dir.path().join("runs");
    let o = run_ipw(
        &[
            "import",
            table.to_str().unwrap(),
            "--out",
            runs.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("out");
    let (o, peak) = peak_rss_mib(
        &[
            "compare",
            runs.to_str().unwrap(),
            "--by",
            "subject",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(peak < CAP_MIB, "compare peaked at {peak:.0} MiB");
    let c = json(&out.join("compare.json"));
    // Per run: all and 20 subjects; paired: 3 runs x (all and 20 subjects).
    assert_eq!(c["rows"].as_array().unwrap().len(), 4 * 21, "{c}");
    assert_eq!(c["paired"].as_array().unwrap().len(), 3 * 21);
    assert_eq!(c["paired"][0]["shared"], 60_000);
    let (o, peak) = peak_rss_mib(
        &[
            "coverage",
            runs.to_str().unwrap(),
            "--reference",
            "m3",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(peak < CAP_MIB, "coverage peaked at {peak:.0} MiB");
    let v = json(&out.join("coverage.json"));
    assert_eq!(v["queries"], 60_000, "{v}");
    // The report draws the same runs plus a histogram of every record's joules: with the
    // records held it peaked at 1,056 MiB here; digested as they stream past, at 201 MiB (most
    // of it the query x run table whose columns it labels, which `ipw route` builds too). Its
    // cap sits between those, far from both.
    const REPORT_CAP_MIB: f64 = 450.0;
    let page = out.join("report.html");
    let (o, peak) = peak_rss_mib(
        &[
            "report",
            runs.to_str().unwrap(),
            "--reference",
            "m3",
            "-o",
            page.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(peak < REPORT_CAP_MIB, "report peaked at {peak:.0} MiB");
    let r = json(&out.join("report.json"));
    let hists = r["energy"]["data"].as_array().unwrap();
    assert_eq!(hists.len(), 4, "{r}");
    for (m, h) in hists.iter().enumerate() {
        assert_eq!(h["n"], 60_000, "{h}");
        assert_eq!(r["runs"][m]["records"], 60_000);
        // Net joules per query of model m average (1 + m) x 1.4995 by construction.
        let mean = h["mean"].as_f64().unwrap();
        assert!((mean - (1 + m) as f64 * 1.4995).abs() < 1e-3, "{h}");
    }
}
