//! `ipw bench`: every subcommand run with its smallest settings, its figures read back from what
//! it prints. Benchmarks print figures rather than assert timings, so what is pinned here is
//! that each figure is produced, finite and positive, and that figures which must be in an
//! order are (a cached grader loads faster than it compiles, a minimum is not above its median,
//! a sampler reads about as often as it was asked). No timing thresholds: a slow, shared
//! machine passes as surely as a fast one.

use crate::support::*;

/// Run `ipw bench <args>`, asserting success; its stdout.
fn bench(args: &[&str]) -> String {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let dir = tempfile::tempdir().unwrap();
    let o = run_ipw(&all, dir.path());
    assert!(o.status.success(), "ipw {all:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The whitespace-separated numbers of `line` (words that are not numbers are skipped).
fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .filter_map(|w| w.trim_end_matches([',', 'x', ';']).parse().ok())
        .collect()
}

/// The number right after `label` in `text` (the first occurrence).
fn after(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in\n{text}"));
    numbers(&text[at + label.len()..])
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no number after `{label}` in\n{text}"))
}

/// The line of `out` that starts (after its indent) with `what`.
fn line_of<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(what))
        .unwrap_or_else(|| panic!("no `{what}` line in\n{out}"))
}

fn sane(v: f64, what: &str) {
    assert!(v.is_finite() && v > 0.0, "{what}: {v}");
}

#[test]
fn bench_sampler_measures_the_plugin_and_the_floor_at_the_rate_asked() {
    let out = bench(&[
        "sampler",
        "--plugin",
        "cpu-estimate",
        "--rates",
        "50",
        "--seconds",
        "1",
        "--plugin-dir",
        plugin_dir().to_str().unwrap(),
    ]);
    for label in ["(floor)", "cpu-estimate"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row in\n{out}"));
        // rate Hz, reads, reads/s, CPU ms/read, CPU %core
        let v = numbers(&line[label.len()..]);
        assert_eq!(v.len(), 5, "{line}");
        assert_eq!(v[0], 50.0, "{line}");
        for (x, what) in v
            .iter()
            .zip(["rate", "reads", "reads/s", "ms/read", "%core"])
        {
            sane(*x, &format!("{label} {what}"));
        }
        // About one read per period over the second (the thread may start late or be
        // scheduled late on a busy machine, never read ahead of its clock by much).
        assert!(v[2] <= 50.0 * 1.5, "{line}");
        assert!(v[1] >= 1.0, "{line}");
        assert!(
            v[3] < 1000.0 / 50.0,
            "a read costs less than its period: {line}"
        );
    }
    let above = line_of(&out, "above floor");
    let v = numbers(above);
    assert_eq!(v.len(), 2, "{above}");
    assert!(v[1].is_finite(), "{above}");
}

#[test]
fn bench_route_times_every_builtin_router_the_full_report_and_a_wasm_router() {
    let wasm = build_wasm_example("router-short-prompts");
    let out = bench(&[
        "route",
        "--queries",
        "2000",
        "--models",
        "3",
        "--wasm",
        wasm.to_str().unwrap(),
        "--seconds",
        "0.3",
    ]);
    assert!(
        out.contains("synthetic table: 2000 queries x 3 models"),
        "{out}"
    );
    let start = out.lines().position(|l| l.starts_with("router ")).unwrap() + 1;
    let rows: Vec<&str> = out
        .lines()
        .skip(start)
        .take_while(|l| !l.starts_with("all built-in"))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for want in ["oracle", "random", "cascade"] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "no {want} row: {names:?}"
        );
    }
    for row in &rows {
        // queries, seconds, decisions/s (the name may hold numbers too: the last three).
        let v = numbers(row);
        let [queries, seconds, per_s] = v[v.len() - 3..] else {
            panic!("{row}")
        };
        assert_eq!(queries, 2000.0, "{row}");
        assert!(seconds.is_finite() && seconds >= 0.0, "{row}");
        sane(per_s, row);
    }
    sane(after(&out, "all built-in routers:"), "all routers");
    sane(after(&out, "oracle, 2000 queries:"), "full report");
    let wasm_per_s = after(&out, &format!("WASM router {}:", wasm.display()));
    sane(wasm_per_s, "wasm decisions/s");
}

#[test]
fn bench_analyze_times_compare_and_coverage_on_imported_records() {
    let out = bench(&["analyze", "--queries", "300", "--models", "2"]);
    assert!(
        out.contains("600 records (2 models x 300 queries)"),
        "{out}"
    );
    // Each from the imported JSONL and from the same runs exported to Parquet.
    for what in [
        "compare  jsonl",
        "coverage jsonl",
        "compare  parquet",
        "coverage parquet",
    ] {
        let line = line_of(&out, what);
        let (min, median) = (after(line, "min"), after(line, "median"));
        sane(min, what);
        assert!(min <= median, "{line}");
        assert!(line.contains("records/s/core"), "{line}");
        // Linux says each stage's own peak.
        assert!(after(line, "resident") > 0.0, "{line}");
    }
    for what in ["import", "export parquet"] {
        let line = line_of(&out, what);
        sane(after(line, what), what);
        assert!(after(line, "resident") > 0.0, "{line}");
    }
    // compare: one row per model and group (all, gsm8k, mmlu); paired against the baseline.
    assert_eq!(out.matches("(6 rows, 3 paired)").count(), 2, "{out}");
    // A part per run, and the figures from the parts checked against the runs'.
    let partial = line_of(&out, "partial  parquet");
    sane(after(partial, "parquet"), "partial");
    assert!(partial.contains("for 2 parts"), "{partial}");
    let parts = line_of(&out, "compare  parts");
    sane(after(parts, "parts"), "compare from parts");
    assert!(parts.ends_with("equal to one machine's: yes"), "{parts}");
}

#[test]
fn bench_graders_times_every_builtin_grader() {
    let out = bench(&["graders", "--seconds", "0.3"]);
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("grader"))
        .skip(1)
        .take_while(|l| !l.starts_with('('))
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    for want in ["exact", "choice", "numeric", "judge", "pairwise"] {
        assert!(names.contains(&want), "no {want}: {names:?}\n{out}");
    }
    for row in &rows {
        // wasm KiB, compile ms, cache load ms, instantiate us, grades/s/core
        let v = numbers(row);
        assert_eq!(v.len(), 5, "{row}");
        for (x, what) in v
            .iter()
            .zip(["KiB", "compile", "cache load", "instantiate", "grades/s"])
        {
            sane(*x, &format!("{row}: {what}"));
        }
        assert!(
            v[2] < v[1],
            "a cached module loads faster than it compiles: {row}"
        );
    }
}

#[test]
fn bench_embedded_compares_decode_and_ttft_with_llama_server() {
    let out = bench(&[
        "embedded",
        "--model",
        model_path().to_str().unwrap(),
        "--server",
        llama_server_path().to_str().unwrap(),
        "--queries",
        "2",
        "--rounds",
        "1",
        "--max-tokens",
        "8",
    ]);
    let row = out
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no round row in\n{out}"));
    // round, emb tok/s, srv tok/s, ratio, emb TTFT, srv TTFT, ratio, tokens e/s
    let v = numbers(row);
    assert!(v.len() >= 7, "{row}");
    for (x, what) in v[1..7].iter().zip([
        "emb tok/s",
        "srv tok/s",
        "ratio",
        "emb TTFT",
        "srv TTFT",
        "ratio",
    ]) {
        sane(*x, what);
    }
    assert!((v[3] - v[1] / v[2]).abs() < 0.01 * v[3].max(1.0), "{row}");
    sane(after(&out, "embedded / server: decode"), "decode ratio");
    sane(after(&out, ", TTFT"), "TTFT ratio");
}
