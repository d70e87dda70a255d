//! `ipw export --format parquet`: runs with known records (nulls, a failed query, flags, two
//! energy channels, one channel missing on a record) and a power log are exported by the real
//! binary, then read back by pyarrow (a reader that is not ours) and compared with the JSONL,
//! column by column against the schema the README documents; and analysis on the Parquet-only
//! copy gives what it gives on the JSONL runs.
//!
//! pyarrow comes from `scripts/install-deps.sh --tests` (a venv under `$IPW_CACHE`); without
//! it these tests fail, naming that script.

use crate::support::*;
use ipw_core::records::{
    ChannelEnergy, Flag, GradeRecord, HarnessCpu, PhaseEnergy, QueryEnergy, QueryError, Record,
    RunDir, TokenSource,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The Python with pyarrow.
fn python() -> PathBuf {
    python_with("pyarrow")
}

/// Run a Python script; its stdout is one JSON value.
fn py_json(script: &str, args: &[&Path]) -> Value {
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(o.status.success(), "python: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn channel(gross: f64, net: Option<f64>, flags: Vec<Flag>, domain: &str) -> ChannelEnergy {
    ChannelEnergy {
        gross_j: Some(gross),
        net_j: net,
        idle_w: net.map(|_| 2.5),
        gross_bound_j: Some([gross * 0.9, gross * 1.1]),
        net_bound_j: net.map(|n| [n * 0.8, n * 1.2]),
        phases: Some(PhaseEnergy {
            prefill_j: gross * 0.25,
            decode_j: gross * 0.75,
            prefill_net_j: net.map(|n| n * 0.25),
            decode_net_j: net.map(|n| n * 0.75),
        }),
        flags,
        domain: Some(serde_json::from_value(json!(domain)).unwrap()),
    }
}

/// Replace the imported records with the known ones: per query, what it carries.
///
/// | query | subject | error | grade | energy | channels |
/// |---|---|---|---|---|---|
/// | q1 | algebra | - | 1.0 | gross 3k+5k, net 2k+4k | rapl + nvml, nvml flagged short_window |
/// | q2 | - | timeout | null | null | - |
/// | q3 | algebra | - | 0.0 (unparsed) | gross 7k, net 6k | nvml only, flagged missing_samples |
/// | q4 | - | - | null score, grader error | gross k, net k, estimated | rapl only |
///
/// with k = 1 for the first run, 2 for the second.
fn known_records(mut records: Vec<Record>, k: f64) -> Vec<Record> {
    records.sort_by(|a, b| a.query_id.cmp(&b.query_id));
    for r in &mut records {
        let grade = |score: Option<f64>, parsed: bool, error: Option<&str>| GradeRecord {
            grader: "exact".into(),
            wasm_sha256: "abc".into(),
            score,
            parsed,
            extracted: parsed.then(|| "42".into()),
            explanation: None,
            error: error.map(str::to_string),
            params: error.map(|_| json!({"rel_tol": 0.01})),
        };
        let energy = |channels: Vec<(&str, ChannelEnergy)>, estimated: bool| {
            let channels: BTreeMap<String, ChannelEnergy> = channels
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect();
            let sum = |f: &dyn Fn(&ChannelEnergy) -> Option<f64>| -> Option<f64> {
                channels.values().map(f).sum()
            };
            let mut flags: Vec<Flag> = channels.values().flat_map(|c| c.flags.clone()).collect();
            flags.sort();
            let gross = sum(&|c| c.gross_j);
            Some(QueryEnergy {
                gross_j: gross,
                net_j: sum(&|c| c.net_j),
                gross_bound_j: Some([
                    sum(&|c| c.gross_bound_j.map(|b| b[0])).unwrap(),
                    sum(&|c| c.gross_bound_j.map(|b| b[1])).unwrap(),
                ]),
                net_bound_j: sum(&|c| c.net_bound_j.map(|b| b[0]))
                    .zip(sum(&|c| c.net_bound_j.map(|b| b[1])))
                    .map(|(l, h)| [l, h]),
                phases: Some(PhaseEnergy {
                    prefill_j: sum(&|c| c.phases.map(|p| p.prefill_j)).unwrap(),
                    decode_j: sum(&|c| c.phases.map(|p| p.decode_j)).unwrap(),
                    prefill_net_j: sum(&|c| c.phases.and_then(|p| p.prefill_net_j)),
                    decode_net_j: sum(&|c| c.phases.and_then(|p| p.decode_net_j)),
                }),
                mean_power_w: gross.map(|g| g / 0.5),
                j_per_output_token: sum(&|c| c.net_j).map(|n| n / 10.0),
                estimated,
                flags,
                channels,
            })
        };
        match r.query_id.as_str() {
            "q1" => {
                r.subject = Some("algebra".into());
                r.category = Some("stem".into());
                r.token_source = Some(TokenSource::ServerUsage);
                r.cached_prompt_tokens = Some(3);
                r.ttft_s = Some(0.125);
                r.grade = Some(grade(Some(1.0), true, None));
                r.energy = energy(
                    vec![
                        (
                            "rapl/package-0",
                            channel(3.0 * k, Some(2.0 * k), vec![], "cpu-package"),
                        ),
                        (
                            "nvml/gpu0",
                            channel(5.0 * k, Some(4.0 * k), vec![Flag::ShortWindow], "gpu"),
                        ),
                    ],
                    false,
                );
                r.harness = Some(HarnessCpu {
                    cpu_s: 0.01,
                    process_cpu_s: 0.02,
                    engine_cpu_s: None,
                    machine_cpu_s: Some(0.5),
                    server_cpu_s: Some(0.25),
                });
            }
            "q2" => {
                r.subject = None;
                r.response = None;
                r.output_tokens = None;
                r.ttft_s = None;
                r.error = Some(QueryError {
                    kind: "timeout".into(),
                    message: "no byte in 30 s".into(),
                });
                r.grade = None;
                r.energy = None;
            }
            "q3" => {
                r.subject = Some("algebra".into());
                r.grade = Some(grade(Some(0.0), false, None));
                r.grade_history = vec![grade(Some(1.0), true, None)];
                r.energy = energy(
                    vec![(
                        "nvml/gpu0",
                        channel(7.0 * k, Some(6.0 * k), vec![Flag::MissingSamples], "gpu"),
                    )],
                    false,
                );
            }
            _ => {
                r.grade = Some(grade(None, false, Some("trap: out of fuel")));
                r.energy = energy(
                    vec![("rapl/package-0", channel(k, Some(k), vec![], "cpu-package"))],
                    true,
                );
            }
        }
    }
    records
}

const POWER_LOG: &str = r#"{"session":0,"channel":"rapl/package-0","t":100.0,"v":5000.25}
{"session":0,"channel":"nvml/gpu0","t":100.01,"v":61.5}
{"session":0,"channel":"nvml/gpu0","t":100.11,"error":"NVML_ERROR_GPU_IS_LOST"}
{"session":0,"channel":"rapl/package-0","t":100.1,"v":5003.75}
{"session":0,"channel":"rapl/pack"#;

/// Two runs (`small`, `big`) of four queries each, as ordinary run directories with power logs.
fn fixture(dir: &Path) -> PathBuf {
    let mut csv = String::from("query_id,model,dataset,score,energy_j,latency_s\n");
    for (q, dataset) in [
        ("q1", "math"),
        ("q2", "math"),
        ("q3", "facts"),
        ("q4", "facts"),
    ] {
        for (model, j) in [("small", 1.0), ("big", 2.0)] {
            csv += &format!("{q},{model},{dataset},1,{j},0.5\n");
        }
    }
    let table = dir.join("t.csv");
    std::fs::write(&table, csv).unwrap();
    let runs = dir.join("runs");
    let o = run_ipw(
        &[
            "import",
            table.to_str().unwrap(),
            "--out",
            runs.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    for (model, k) in [("small", 1.0), ("big", 2.0)] {
        let run = RunDir::new(runs.join(model));
        let records = known_records(run.read_records().unwrap().records, k);
        let lock = run.lock().unwrap();
        run.rewrite_records(&lock, &records).unwrap();
        std::fs::write(run.power_log_path(), POWER_LOG).unwrap();
        // The samplers as a measured run's manifest declares them (units for power.parquet).
        let mut manifest = json(&run.manifest_path());
        manifest["sessions"][0]["samplers"] = json!([
            {"name": "rapl", "path": "librapl.so", "sha256": "x", "sdk_version": "1", "rate_hz": 10.0,
             "interval_s": 0.1, "edge_reads": true, "stats": null,
             "channels": [{"name": "package-0", "domain": "cpu-package", "device": null,
                           "kind": {"type": "energy-counter", "resolution_j": 1e-6, "wrap_j": null},
                           "update_period_s": 0.001}]},
            {"name": "nvml", "path": "libnvml.so", "sha256": "y", "sdk_version": "1", "rate_hz": 10.0,
             "interval_s": 0.1, "edge_reads": true, "stats": null,
             "channels": [{"name": "gpu0", "domain": "gpu", "device": "GPU-0",
                           "kind": {"type": "power-gauge", "timing": "instant", "estimated": false},
                           "update_period_s": 0.1}]}
        ]);
        std::fs::write(
            run.manifest_path(),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
        run.read_manifest().expect("the patched manifest reads");
    }
    runs
}

fn export(runs: &Path, out: &Path) {
    let o = run_ipw(
        &[
            "export",
            runs.to_str().unwrap(),
            "--format",
            "parquet",
            "-o",
            out.to_str().unwrap(),
        ],
        runs,
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("4 records (2 energy channels), 4 power readings"),
        "{t}"
    );
    assert!(t.contains("1 unreadable line(s) in power.jsonl"), "{t}");
}

/// The columns and types the README documents for a file (`### records.parquet` ...), as
/// (name, pyarrow type); per-channel rows are written with `<channel>`.
fn documented(file: &str) -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find(&format!("#### `{file}`"))
        .unwrap_or_else(|| panic!("README has no `#### `{file}`` section"));
    let section = &readme[start..];
    let section = &section[..section[5..].find("\n#").map_or(section.len(), |i| i + 5)];
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let ty = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), ty.to_string()))
        })
        .collect()
}

const READ: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc
out = {}
for path in sys.argv[1:]:
    t = pq.read_table(path)
    # Timestamps as integer nanoseconds (Python's datetime stops at microseconds).
    rows = pa.table([pc.cast(c, pa.int64()) if pa.types.is_timestamp(c.type) else c
                     for c in t.columns], names=t.column_names).to_pylist()
    out[path] = {
        "schema": [[f.name, str(f.type), f.nullable] for f in t.schema],
        "rows": rows,
        "num_rows": t.num_rows,
        "row_groups": pq.ParquetFile(path).num_row_groups,
        "sum_net_j": pc.sum(t["energy_net_j"]).as_py() if "energy_net_j" in t.column_names else None,
        "null_net_j": t["energy_net_j"].null_count if "energy_net_j" in t.column_names else None,
    }
print(json.dumps(out))
"#;

#[test]
fn parquet_export_reads_back_in_pyarrow_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let runs = fixture(dir.path());
    let out = dir.path().join("export");
    export(&runs, &out);
    let mut files = Vec::new();
    for model in ["small", "big"] {
        files.push(out.join(model).join("records.parquet"));
        files.push(out.join(model).join("power.parquet"));
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let got = py_json(READ, &refs);

    let docs = documented("records.parquet");
    assert!(docs.len() > 40, "{docs:?}");
    for (model, k) in [("small", 1.0), ("big", 2.0)] {
        let file = &got[out.join(model).join("records.parquet").to_str().unwrap()];
        // The columns: exactly the documented ones, in order, with the documented types; the
        // per-channel ones channel by channel (all of one channel's, then the next's).
        let channels = ["nvml/gpu0", "rapl/package-0"];
        let per_channel: Vec<&(String, String)> = docs
            .iter()
            .filter(|(n, _)| n.contains("<channel>"))
            .collect();
        let mut ordered: Vec<(String, String)> = docs
            .iter()
            .filter(|(n, _)| !n.contains("<channel>"))
            .cloned()
            .collect();
        for c in channels {
            for (n, t) in &per_channel {
                ordered.push((n.replace("<channel>", c), t.clone()));
            }
        }
        let schema: Vec<(String, String)> = file["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
            .collect();
        assert_eq!(schema, ordered, "records.parquet columns vs README");

        // The same numbers as the JSONL.
        let jsonl = records(&runs.join(model));
        assert_eq!(file["num_rows"], jsonl.len());
        let net: f64 = jsonl
            .iter()
            .filter_map(|r| r["energy"]["net_j"].as_f64())
            .sum();
        assert_eq!(file["sum_net_j"].as_f64().unwrap(), net);
        assert_eq!(net, 13.0 * k);
        assert_eq!(file["null_net_j"], 1, "q2 has no energy: null, not 0");
        let rows = file["rows"].as_array().unwrap();
        let row = |q: &str| {
            rows.iter()
                .find(|r| r["query_id"] == q)
                .unwrap_or_else(|| panic!("no {q}"))
        };
        let q1 = row("q1");
        let j1 = jsonl.iter().find(|r| r["query_id"] == "q1").unwrap();
        assert_eq!(q1["run"], model);
        assert_eq!(q1["model"], model);
        let manifest = RunDir::new(runs.join(model)).read_manifest().unwrap();
        assert_eq!(q1["accelerator"], manifest.accelerator());
        assert_eq!(q1["dataset"], "math");
        assert_eq!(q1["subject"], "algebra");
        assert_eq!(q1["category"], "stem");
        assert_eq!(q1["input_tokens"], j1["input_tokens"]);
        assert_eq!(q1["output_tokens"], j1["output_tokens"]);
        assert_eq!(q1["latency_s"], j1["latency_s"]);
        assert_eq!(q1["ttft_s"], 0.125);
        assert_eq!(q1["token_source"], "server-usage");
        assert_eq!(q1["cached_prompt_tokens"], 3);
        assert_eq!(q1["error_kind"], Value::Null);
        assert_eq!(q1["grade_score"], 1.0);
        assert_eq!(q1["grade_parsed"], true);
        assert_eq!(q1["grade_extracted"], "42");
        assert_eq!(q1["energy_gross_j"], 8.0 * k);
        assert_eq!(q1["energy_net_j"], 6.0 * k);
        assert_eq!(q1["energy_prefill_j"], 2.0 * k);
        assert_eq!(q1["energy_decode_j"], 6.0 * k);
        assert_eq!(q1["energy_estimated"], false);
        assert_eq!(q1["energy_flags"], json!(["short_window"]));
        assert_eq!(q1["energy_rapl/package-0_gross_j"], 3.0 * k);
        assert_eq!(q1["energy_rapl/package-0_net_j"], 2.0 * k);
        assert_eq!(q1["energy_rapl/package-0_flags"], json!([]));
        assert_eq!(q1["energy_rapl/package-0_domain"], "cpu-package");
        assert_eq!(q1["energy_nvml/gpu0_gross_j"], 5.0 * k);
        assert_eq!(q1["energy_nvml/gpu0_net_j"], 4.0 * k);
        assert_eq!(q1["energy_nvml/gpu0_idle_w"], 2.5);
        assert_eq!(q1["energy_nvml/gpu0_flags"], json!(["short_window"]));
        assert_eq!(q1["energy_nvml/gpu0_domain"], "gpu");
        assert_eq!(
            q1["energy_nvml/gpu0_gross_low_j"],
            j1["energy"]["channels"]["nvml/gpu0"]["gross_bound_j"][0]
        );
        assert_eq!(q1["harness_machine_cpu_s"], 0.5);
        assert_eq!(q1["harness_server_cpu_s"], 0.25);
        assert_eq!(q1["harness_engine_cpu_s"], Value::Null);
        let rec = RunDir::new(runs.join(model))
            .read_records()
            .unwrap()
            .records;
        let started = rec[0].started_at.timestamp_nanos_opt().unwrap();
        assert_eq!(q1["started_at"], started, "nanoseconds kept");
        // The failed query: nulls stay nulls.
        let q2 = row("q2");
        assert_eq!(q2["error_kind"], "timeout");
        assert_eq!(q2["error_message"], "no byte in 30 s");
        assert_eq!(q2["response"], Value::Null);
        assert_eq!(q2["output_tokens"], Value::Null);
        assert_eq!(q2["subject"], Value::Null);
        for c in [
            "grade_score",
            "grade_parsed",
            "grade_grader",
            "energy_gross_j",
            "energy_net_j",
            "energy_estimated",
            "energy_flags",
            "energy_nvml/gpu0_gross_j",
            "energy_rapl/package-0_flags",
            "harness_cpu_s",
        ] {
            assert_eq!(q2[c], Value::Null, "q2 {c}");
        }
        // A channel missing from a record is null there; the other is not.
        let q3 = row("q3");
        assert_eq!(q3["energy_rapl/package-0_gross_j"], Value::Null);
        assert_eq!(q3["energy_rapl/package-0_flags"], Value::Null);
        assert_eq!(q3["energy_nvml/gpu0_gross_j"], 7.0 * k);
        assert_eq!(q3["energy_nvml/gpu0_flags"], json!(["missing_samples"]));
        assert_eq!(q3["grade_score"], 0.0);
        assert_eq!(q3["grade_parsed"], false);
        assert!(q3["grade_history"]
            .as_str()
            .is_some_and(|h| h.contains("\"score\":1.0")));
        let q4 = row("q4");
        assert_eq!(q4["grade_score"], Value::Null, "unscored is null, not 0");
        assert_eq!(q4["grade_error"], "trap: out of fuel");
        assert_eq!(q4["grade_params"], "{\"rel_tol\":0.01}");
        assert_eq!(q4["energy_estimated"], true);
        assert_eq!(q4["energy_flags"], json!([]));
        assert_eq!(q4["energy_nvml/gpu0_gross_j"], Value::Null);

        // power.parquet: every readable line of the log, as it has them.
        let power = &got[out.join(model).join("power.parquet").to_str().unwrap()];
        let schema: Vec<(String, String)> = power["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f[0].as_str().unwrap().into(), f[1].as_str().unwrap().into()))
            .collect();
        assert_eq!(
            schema,
            documented("power.parquet"),
            "power.parquet columns vs README"
        );
        assert_eq!(power["num_rows"], 4);
        let p = power["rows"].as_array().unwrap();
        assert_eq!(
            p[0],
            json!({"run": model, "session": 0, "sampler": "rapl", "channel": "rapl/package-0",
                   "kind": "energy-counter", "unit": "J", "t_s": 100.0, "value": 5000.25, "error": null})
        );
        assert_eq!(p[1]["kind"], "power-gauge");
        assert_eq!(p[1]["unit"], "W");
        assert_eq!(p[1]["value"], 61.5);
        assert_eq!(p[2]["value"], Value::Null);
        assert_eq!(p[2]["error"], "NVML_ERROR_GPU_IS_LOST");
        assert_eq!(p[3]["t_s"], 100.1);
    }
}

#[test]
fn an_exported_run_reads_back_into_the_same_records() {
    let dir = tempfile::tempdir().unwrap();
    let runs = fixture(dir.path());
    let out = dir.path().join("export");
    export(&runs, &out);
    for model in ["small", "big"] {
        let exported = out.join(model);
        assert!(!exported.join("records.jsonl").exists());
        let back = RunDir::new(&exported).read_records().unwrap().records;
        let orig = RunDir::new(runs.join(model))
            .read_records()
            .unwrap()
            .records;
        assert_eq!(back.len(), 4);
        // Every field, bit for bit (Record's PartialEq compares floats exactly).
        for (a, b) in orig.iter().zip(&back) {
            assert_eq!(a, b, "{}", a.query_id);
        }
    }
}

/// The numbers an analysis report holds, without the paths (which differ between the copies).
fn numbers(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "run" | "runs" | "path" | "dir"))
                .map(|(k, v)| (k.clone(), numbers(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(numbers).collect()),
        Value::String(s) if s.starts_with('/') => Value::Null,
        other => other.clone(),
    }
}

#[test]
fn compare_and_coverage_on_the_parquet_copy_match_the_jsonl_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runs = fixture(dir.path());
    let out = dir.path().join("export");
    export(&runs, &out);
    let report = |cmd: &[&str], src: &Path, name: &str| -> Value {
        let to = dir.path().join(format!(
            "{name}-{}",
            src.file_name().unwrap().to_str().unwrap()
        ));
        let mut args: Vec<&str> = cmd.to_vec();
        args.push(src.to_str().unwrap());
        args.extend(["--by", "subject", "--out", to.to_str().unwrap()]);
        let o = run_ipw(&args, dir.path());
        assert!(o.status.success(), "{}", text(&o));
        json(&to.join(format!("{name}.json")))
    };
    let a = report(&["compare"], &runs, "compare");
    let b = report(&["compare"], &out, "compare");
    assert!(
        a.to_string().contains("\"j_per_query\""),
        "compare reports energy: {a}"
    );
    assert_eq!(numbers(&a), numbers(&b));
    let a = report(&["coverage", "--reference", "big"], &runs, "coverage");
    let b = report(&["coverage", "--reference", "big"], &out, "coverage");
    assert_eq!(numbers(&a), numbers(&b));
}

#[test]
fn export_in_place_writes_beside_the_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let runs = fixture(dir.path());
    let o = run_ipw(&["export", runs.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", text(&o));
    for model in ["small", "big"] {
        let run = runs.join(model);
        assert!(run.join("records.parquet").is_file());
        assert!(run.join("power.parquet").is_file());
        assert!(run.join("records.jsonl").is_file(), "the JSONL stays");
    }
}
