//! `ipw import`: external per-query tables (CSV and JSONL) become run directories that
//! `ipw route` and `ipw grade` read like measured ones; bad rows are refused naming the file,
//! line and column.

use crate::support::*;

/// Two models on four queries: `small` (cheap, right on q1 and q2) and `big` (right on q1-q3).
const CSV: &str = "\
id,llm,question,output,correct,gold,tokens_in,tokens_out,joules,seconds,usd
q1,small,What is 1+1?,2,1,2,10,2,1.5,0.2,0.00001
q2,small,What is 2+2?,4,1,4,10,2,1.5,0.2,0.00001
q3,small,What is 3+3?,5,0,6,10,2,1.5,0.2,0.00001
q4,small,What is 4+4?,9,0,8,10,2,1.5,0.2,0.00001
q1,big,What is 1+1?,2,1,2,10,3,30,1.0,0.001
q2,big,What is 2+2?,4,1,4,10,3,30,1.0,0.001
q3,big,What is 3+3?,6,1,6,10,3,30,1.0,0.001
q4,big,What is 4+4?,7,0,8,10,3,30,1.0,0.001
";

const MAP: [&str; 20] = [
    "--map",
    "query_id=id",
    "--map",
    "model=llm",
    "--map",
    "prompt=question",
    "--map",
    "response=output",
    "--map",
    "score=correct",
    "--map",
    "answer=gold",
    "--map",
    "input_tokens=tokens_in",
    "--map",
    "output_tokens=tokens_out",
    "--map",
    "energy_j=joules",
    "--map",
    "latency_s=seconds",
];

#[test]
fn a_csv_table_imports_as_runs_that_route_and_regrade() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("paper.csv");
    std::fs::write(&table, CSV).unwrap();
    let out = dir.path().join("imported");
    let mut args = vec![
        "import",
        table.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(MAP);
    args.extend(["--map", "cost_usd=usd"]);
    let o = run_ipw(&args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    for (model, score_sum) in [("small", 2.0), ("big", 3.0)] {
        let recs = records(&out.join(model));
        assert_eq!(recs.len(), 4);
        let s: f64 = recs
            .iter()
            .map(|r| r["grade"]["score"].as_f64().unwrap())
            .sum();
        assert_eq!(s, score_sum, "{model}");
        assert_eq!(recs[0]["backend"], "imported");
        let summary = json(&out.join(model).join("summary.json"));
        assert_eq!(summary["recorded"], 4);
    }
    // Routed like measured runs: the oracle keeps small on q1, q2 and q4 (big is wrong on q4
    // too), big on q3: energy 3 x 1.5 + 30 = 34.5 of 120.
    let o = run_ipw(
        &[
            "route",
            out.to_str().unwrap(),
            "--reference",
            "big",
            "--router",
            "oracle",
            "--router",
            "oracle:cost",
            "--workload",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/data/bursty-trace.csv")
                .to_str()
                .unwrap(),
            "--out",
            dir.path().join("analysis").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = json(&dir.path().join("analysis/route.json"));
    // The shipped 3-hour bursty trace through both routers: the oracle sends q3 only (one row
    // in four, drawn per request) to big, so about three quarters of requests are taken off.
    let w = &report["workload"][0];
    assert_eq!(w["hours"].as_array().unwrap().len(), 3);
    let off = w["offloaded_requests"].as_f64().unwrap();
    assert!((0.7..0.8).contains(&off), "{off}");
    assert!(
        text(&o).contains("busiest minute at the reference"),
        "{}",
        text(&o)
    );
    let oracle = &report["routers"][0];
    assert!(
        (oracle["savings"]["energy"]["value"].as_f64().unwrap() - (1.0 - 34.5 / 120.0)).abs()
            < 1e-12
    );
    assert!((oracle["accuracy"]["value"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    // The table's own cost column is what routing charges: 3 x 1e-5 + 1e-3 of 4e-3.
    let by_cost = &report["routers"][1];
    let want = 1.0 - (3.0 * 1e-5 + 1e-3) / 4e-3;
    assert!((by_cost["savings"]["cost"]["value"].as_f64().unwrap() - want).abs() < 1e-9);
    // Re-graded from the imported responses and answers: exact match gives the same scores.
    let o = run_ipw(
        &[
            "grade",
            out.join("big").to_str().unwrap(),
            "--grader",
            "exact",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out.join("big"));
    let scores: Vec<f64> = recs
        .iter()
        .map(|r| r["grade"]["score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores, [1.0, 1.0, 1.0, 0.0]);
    assert_eq!(
        recs[0]["grade_history"][0]["grader"], "imported",
        "the table's grade is kept"
    );
    // Importing into the same place again is refused, not merged.
    let o = run_ipw(&args, dir.path());
    assert!(!o.status.success());
    assert!(text(&o).contains("exists already"), "{}", text(&o));
}

#[test]
fn a_jsonl_table_imports_with_default_names() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.jsonl");
    std::fs::write(
        &table,
        concat!(
            r#"{"query_id": "a", "model": "m", "response": "x", "score": 1, "energy_j": 2.5, "latency_s": 0.5, "answer": ["x", "y"]}"#,
            "\n\n",
            r#"{"query_id": "b", "model": "m", "error": "timeout", "latency_s": 2}"#,
            "\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("o");
    let o = run_ipw(
        &[
            "import",
            table.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let recs = records(&out.join("m"));
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["answers"], serde_json::json!(["x", "y"]));
    assert_eq!(recs[0]["energy"]["gross_j"], 2.5);
    assert_eq!(recs[1]["error"]["message"], "timeout");
    assert!(recs[1]["grade"].is_null(), "a failed query has no grade");
    // Windows laid end to end: busy time is the sum of latencies.
    let s = json(&out.join("m/summary.json"));
    assert!((s["busy_s"].as_f64().unwrap() - 2.5).abs() < 1e-12);
    assert_eq!(s["errors"], 1);
}

#[test]
fn bad_rows_and_columns_are_refused_by_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 6] = [
        ("bad.csv", "query_id,model,score\nq1,m,1\nq2,m,high\n", &["bad.csv:3", "`score`", "`high` is not a number"]),
        ("range.csv", "query_id,model,score\nq1,m,1.5\n", &["range.csv:2", "1.5 is not in [0, 1]"]),
        ("dup.csv", "query_id,model\nq1,m\nq1,m\n", &["dup.csv:3", "appears twice"]),
        ("nocol.csv", "id,model\nq1,m\n", &["no column `query_id`", "--map query_id=COLUMN", "id, model"]),
        ("tok.jsonl", "{\"query_id\": \"a\", \"model\": \"m\"}\n{\"query_id\": \"b\", \"model\": \"m\", \"output_tokens\": -3}\n", &["tok.jsonl:2", "`output_tokens`", "whole number"]),
        ("broken.jsonl", "{\"query_id\": \"a\", \"model\": \"m\"}\n{\"query_id\": \n", &["broken.jsonl:2", "not JSON"]),
    ];
    for (name, body, says) in cases {
        let table = dir.path().join(name);
        std::fs::write(&table, body).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let o = run_ipw(
            &[
                "import",
                table.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(!o.status.success(), "{name}");
        for s in says {
            assert!(text(&o).contains(s), "{name}: `{s}` not in {}", text(&o));
        }
        assert!(
            !out.join("m").join("manifest.json").exists(),
            "{name}: nothing half-written"
        );
        // Nor anything staged.
        let left: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: {left:?}");
    }
    let o = run_ipw(
        &[
            "import",
            dir.path().join("bad.csv").to_str().unwrap(),
            "--out",
            "x",
            "--map",
            "colour=c",
        ],
        dir.path(),
    );
    assert!(text(&o).contains("no field `colour`"), "{}", text(&o));
}

/// Two models priced per query and nothing else (no energy, no latency), as routing papers'
/// tables are: `small` right on q1 and q2 at 1e-5 $, `big` right on q1-q3 at 1e-3 $.
const COSTS: &str = "\
query_id,model,prompt,response,score,cost_usd
q1,small,What is 1+1?,2,1,0.00001
q2,small,What is 2+2?,4,1,0.00001
q3,small,What is 3+3?,5,0,0.00001
q4,small,What is 4+4?,9,0,0.00001
q1,big,What is 1+1?,2,1,0.001
q2,big,What is 2+2?,4,1,0.001
q3,big,What is 3+3?,6,1,0.001
q4,big,What is 4+4?,7,0,0.001
";

#[test]
fn a_table_of_costs_routes_by_cost_and_refuses_energy_naming_cost() {
    let dir = tempfile::tempdir().unwrap();
    let runs = import_table(dir.path(), COSTS);
    let route = |extra: &[&str], out: &str| {
        let out = dir.path().join(out);
        let mut args = vec![
            "route",
            runs.to_str().unwrap(),
            "--reference",
            "big",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (run_ipw(&args, dir.path()), out.join("route.json"))
    };
    // The oracle keeps small on q1, q2 and q4 (big is wrong there too), big on q3:
    // 3 x 1e-5 + 1e-3 of 4 x 1e-3.
    let saving = 1.0 - (3.0 * 1e-5 + 1e-3) / 4e-3;
    // No --by: the runs have costs only, so the oracles minimise cost; a spec may say so too.
    for (extra, out) in [
        (vec![], "default"),
        (
            vec!["--router", "oracle", "--router", "p-accurate:1:cost"],
            "spec",
        ),
        (
            vec![
                "--by",
                "cost",
                "--router",
                "oracle",
                "--router",
                "p-accurate:1",
            ],
            "by",
        ),
    ] {
        let (o, json_path) = route(&extra, out);
        assert!(o.status.success(), "{extra:?}: {}", text(&o));
        assert!(
            text(&o).contains("the oracle minimises cost"),
            "{}",
            text(&o)
        );
        // The table has no latency: the route says so (`-`), it does not average zeros.
        for line in text(&o).lines().filter(|l| l.contains("per query:")) {
            assert!(line.contains("latency - s"), "{line}");
        }
        let report = json(&json_path);
        assert_eq!(report["objective"], "cost");
        for r in report["routers"].as_array().unwrap() {
            let name = r["router"].as_str().unwrap();
            assert!(r["latency_s"].is_null(), "{name}: {r}");
            assert_eq!(r["errors"].as_array().unwrap().len(), 0, "{name}: {r}");
            if name == "oracle" || name.starts_with("p-accurate:1") {
                let got = r["savings"]["cost"]["value"].as_f64().unwrap();
                assert!((got - saving).abs() < 1e-9, "{name}: {got}");
                assert!((r["accuracy"]["value"].as_f64().unwrap() - 0.75).abs() < 1e-12);
            } else {
                // p-accurate:0.8 and random:0.5: a cost saving is there (random's may be 0).
                assert!(r["savings"]["cost"]["value"].as_f64().is_some(), "{r}");
            }
        }
    }
    // Energy asked for, on runs that have none: refused up front, naming what they have.
    for extra in [
        vec!["--by", "energy"],
        vec!["--router", "oracle:energy"],
        vec!["--router", "p-accurate:0.5:random:energy"],
    ] {
        let (o, json_path) = route(&extra, "refused");
        assert!(!o.status.success(), "{extra:?}");
        let said = text(&o);
        assert!(
            said.contains("no run has energy figures"),
            "{extra:?}: {said}"
        );
        assert!(
            said.contains("objectives with figures: cost"),
            "{extra:?}: {said}"
        );
        assert!(!json_path.exists(), "nothing written for a refused route");
    }
    // A missing latency is no latency: `-` in compare, an empty CSV field, not 0.
    let out = dir.path().join("compare");
    let o = run_ipw(
        &[
            "compare",
            runs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    let printed = text(&o);
    assert!(o.status.success(), "{printed}");
    let rows: Vec<&str> = printed.lines().filter(|l| l.contains(" acc ")).collect();
    assert!(!rows.is_empty(), "{printed}");
    for row in rows {
        assert!(row.contains("p50 - s"), "{row}");
    }
    let c = json(&out.join("compare.json"));
    for row in c["rows"].as_array().unwrap() {
        assert!(row["latency_p50_s"].is_null(), "{row}");
    }
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    let line = csv.lines().find(|l| l.starts_with("run,small,")).unwrap();
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields[15], "", "latency_p50_s in {line}");
}

#[test]
fn a_table_larger_than_the_memory_it_may_use_imports_one_model_at_a_time() {
    // 40 models x 2,500 queries with 2 KB prompts: a 200 MB table. Holding it (its bytes, its
    // rows, its records) took over 600 MB; streamed, the import holds one model's records
    // (5 MB of prompts) and buffers. The cap is far above that and far below the table.
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("big.csv");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&table).unwrap());
        writeln!(w, "query_id,model,prompt,score,energy_j,latency_s").unwrap();
        let filler = "x".repeat(2000);
        for q in 0..2500 {
            for m in 0..40 {
                writeln!(w, "q{q},m{m},{filler} {q},{},{},0.1", (q + m) % 2, 1 + m).unwrap();
            }
        }
    }
    let size_mib = std::fs::metadata(&table).unwrap().len() as f64 / (1 << 20) as f64;
    assert!(size_mib > 190.0, "{size_mib}");
    let out = dir.path().join("runs");
    let (o, peak) = peak_rss_mib(
        &[
            "import",
            table.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        peak < 120.0,
        "peak {peak:.0} MiB importing a {size_mib:.0} MiB table"
    );
    assert_eq!(run_dirs(&out).len(), 40);
    let recs = records(&out.join("m7"));
    assert_eq!(recs.len(), 2500);
    assert_eq!(recs[3]["query_id"], "q3");
    let s = json(&out.join("m7/summary.json"));
    assert_eq!(s["recorded"], 2500);
}

#[test]
fn a_table_imported_straight_to_parquet_is_what_import_then_export_give() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.csv");
    std::fs::write(&table, CSV).unwrap();
    let import = |out: &str, extra: &[&str]| {
        let mut args = vec!["import", table.to_str().unwrap(), "--out", out];
        args.extend(MAP);
        args.extend(extra);
        let o = run_ipw(&args, dir.path());
        assert!(o.status.success(), "{}", text(&o));
    };
    import("lines", &[]);
    let o = run_ipw(
        &[
            "export", "lines", "--format", "parquet", "--out", "exported",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    import("straight", &["--parquet"]);
    for model in ["small", "big"] {
        let (exported, straight) = (
            dir.path().join("exported").join(model),
            dir.path().join("straight").join(model),
        );
        assert!(!straight.join("records.jsonl").exists());
        assert_eq!(
            std::fs::read(straight.join("records.parquet")).unwrap(),
            std::fs::read(exported.join("records.parquet")).unwrap(),
            "{model}: records.parquet"
        );
        assert_eq!(
            json(&straight.join("summary.json")),
            json(&dir.path().join("lines").join(model).join("summary.json")),
            "{model}: summary"
        );
    }
    // Analysis reads them as it reads the runs.
    let compare = |runs: &str| {
        let out = dir.path().join(format!("compare-{runs}"));
        let o = run_ipw(
            &["compare", runs, "--out", out.to_str().unwrap()],
            dir.path(),
        );
        assert!(o.status.success(), "{}", text(&o));
        json(&out.join("compare.json"))
    };
    assert_eq!(compare("straight"), compare("lines"));

    // A row with energy after a model's first row group had none: refused by line.
    let late = dir.path().join("late.csv");
    let mut csv = String::from("query_id,model,score,energy_j\n");
    for i in 0..8192 {
        csv.push_str(&format!("q{i},m,1,\n"));
    }
    csv.push_str("q8192,m,1,2.5\n");
    std::fs::write(&late, csv).unwrap();
    let o = run_ipw(
        &[
            "import",
            late.to_str().unwrap(),
            "--out",
            "late",
            "--parquet",
        ],
        dir.path(),
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("late.csv:8194:") && t.contains("imported/table"),
        "{t}"
    );
    assert!(!dir.path().join("late/m").exists(), "nothing left behind");
}

/// A routing table as RouteLLM and RouterBench publish them: one row per prompt, a score and a
/// response column per model, and a column of neither.
const WIDE: &str = "\
prompt,gpt-4-1106-preview,mixtral-8x7b-instruct-v0.1,gpt-4-1106-preview|response,mixtral-8x7b-instruct-v0.1|response,oracle_model_to_route_to
What is 1+1?,1,1,2,2,mixtral
\"Name a colour, any one.\",1,0,red,\"blue, no, 7\",gpt-4
What is 3+3?,0.5,0,six-ish,5,gpt-4
";

const WIDE_TOML: &str = r#"
ignore = ["oracle_model_to_route_to"]
[shared]
prompt = "prompt"
[models.gpt-4]
score = "gpt-4-1106-preview"
response = "gpt-4-1106-preview|response"
[models.mixtral]
score = "mixtral-8x7b-instruct-v0.1"
response = "mixtral-8x7b-instruct-v0.1|response"
"#;

/// The same data reshaped by hand to one row per (query, model).
const LONG: &str = "\
query_id,model,prompt,score,response
row-1,gpt-4,What is 1+1?,1,2
row-1,mixtral,What is 1+1?,1,2
row-2,gpt-4,\"Name a colour, any one.\",1,red
row-2,mixtral,\"Name a colour, any one.\",0,\"blue, no, 7\"
row-3,gpt-4,What is 3+3?,0.5,six-ish
row-3,mixtral,What is 3+3?,0,5
";

fn import_args(
    dir: &std::path::Path,
    table: &str,
    name: &str,
    args: &[&str],
) -> std::process::Output {
    let path = dir.join(name);
    std::fs::write(&path, table).unwrap();
    let out = dir.join(format!("{name}.runs"));
    let mut all = vec![
        "import",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    run_ipw(&all, dir)
}

#[test]
fn a_wide_routing_table_imports_as_the_same_data_reshaped_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("wide.toml");
    std::fs::write(&toml, WIDE_TOML).unwrap();
    // Both tables carry the same file stem, so the dataset label (the stem) is the same.
    let (wide_dir, long_dir) = (dir.path().join("w"), dir.path().join("l"));
    std::fs::create_dir_all(&wide_dir).unwrap();
    std::fs::create_dir_all(&long_dir).unwrap();
    let o = import_args(
        &wide_dir,
        WIDE,
        "table.csv",
        &["--wide", toml.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o2 = import_args(&long_dir, LONG, "table.csv", &[]);
    assert!(o2.status.success(), "{}", text(&o2));
    // Equal record for record, but for `index`: the line of the table each came from.
    let without_index = |mut v: Vec<serde_json::Value>| {
        for r in &mut v {
            r.as_object_mut().unwrap().remove("index");
        }
        v
    };
    for model in ["gpt-4", "mixtral"] {
        let a = records(&wide_dir.join("table.csv.runs").join(model));
        let b = records(&long_dir.join("table.csv.runs").join(model));
        assert_eq!(a.len(), 3);
        assert_eq!(a[2]["index"], 4, "the wide table's fourth line");
        assert_eq!(without_index(a), without_index(b), "{model}");
    }
    let r = records(&wide_dir.join("table.csv.runs/mixtral"));
    assert_eq!(r[1]["response"], "blue, no, 7");
    assert_eq!(r[1]["grade"]["score"], 0.0);
    assert_eq!(r[2]["query_id"], "row-3");

    // Flags for the simple case: each model's score column; the rest ignored by name.
    let o = import_args(
        dir.path(),
        WIDE,
        "flags.csv",
        &[
            "--model",
            "gpt-4=gpt-4-1106-preview",
            "--model",
            "mixtral=mixtral-8x7b-instruct-v0.1",
            "--ignore",
            "gpt-4-1106-preview|response",
            "--ignore",
            "mixtral-8x7b-instruct-v0.1|response",
            "--ignore",
            "oracle_model_to_route_to",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = records(&dir.path().join("flags.csv.runs/gpt-4"));
    assert_eq!(r.len(), 3);
    assert_eq!(r[2]["grade"]["score"], 0.5);
}

#[test]
fn a_wide_table_with_a_column_unmapped_twice_mapped_or_missing_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, args: &[&str], needle: &str| {
        let o = import_args(dir.path(), WIDE, name, args);
        assert!(!o.status.success(), "{name}: {}", text(&o));
        assert!(text(&o).contains(needle), "{name}: {}", text(&o));
        assert!(!dir.path().join(format!("{name}.runs/gpt-4")).exists());
    };
    // The response columns and the oracle column: no model or field maps them.
    refused(
        "unmapped.csv",
        &["--model", "gpt-4=gpt-4-1106-preview", "--model", "mixtral=mixtral-8x7b-instruct-v0.1"],
        "columns no model or field maps: gpt-4-1106-preview|response, mixtral-8x7b-instruct-v0.1|response, oracle_model_to_route_to",
    );
    refused(
        "twice.csv",
        &[
            "--model",
            "a=gpt-4-1106-preview",
            "--model",
            "b=gpt-4-1106-preview",
        ],
        "column `gpt-4-1106-preview` is mapped twice: as score of model a and as score of model b",
    );
    refused(
        "missing.csv",
        &["--model", "gpt-5=gpt-5-preview"],
        "no column `gpt-5-preview` (for score of model gpt-5)",
    );
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "[models.a]\nscore = \"x\"\nreply = \"y\"\n").unwrap();
    refused(
        "field.csv",
        &["--wide", toml.to_str().unwrap()],
        "[models.\"a\"] reply: not a model's field",
    );
}
