//! End to end on the default embedded backend with the real SmolLM2-135M GGUF: a profile over
//! GSM8K and MMLU queries, then records and summary must agree; greedy decoding is repeatable.

use crate::support::*;

fn experiment(model: &std::path::Path, gsm8k: usize, mmlu: usize, max_tokens: u32) -> String {
    format!(
        r#"name = "embedded-e2e"
seed = 7
[run]
warmup_queries = 1
[generation]
max_tokens = {max_tokens}
[[models]]
name = "smollm2"
path = {model}
threads = 2
[[datasets]]
builtin = "gsm8k"
max_queries = {gsm8k}
shuffle = true
[[datasets]]
builtin = "mmlu"
max_queries = {mmlu}
stratify = true
"#,
        model = q(model)
    )
}

#[test]
fn profile_embedded_model_over_gsm8k_and_mmlu() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = profile(dir.path(), "e2e", &experiment(&model_path(), 6, 6, 48));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("smollm2"),
        "summary table printed: {}",
        text(&o)
    );

    let run = out.join("smollm2");
    let recs = records(&run);
    assert_eq!(recs.len(), 12);
    let mut ids = std::collections::HashSet::new();
    for r in &recs {
        assert!(
            ids.insert(r["query_id"].as_str().unwrap().to_string()),
            "duplicate id"
        );
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["schema"], 1);
        assert_eq!(r["backend"], "embedded");
        assert!(
            !r["response"].as_str().unwrap().trim().is_empty(),
            "empty response: {r}"
        );
        assert!(r["input_tokens"].as_u64().unwrap() > 10);
        let out_tokens = r["output_tokens"].as_u64().unwrap();
        assert!(out_tokens > 0 && out_tokens <= 48);
        assert_eq!(r["tokens_estimated"], false);
        let (ttft, latency) = (
            r["ttft_s"].as_f64().unwrap(),
            r["latency_s"].as_f64().unwrap(),
        );
        assert!(
            ttft > 0.0 && ttft <= latency,
            "ttft {ttft} latency {latency}"
        );
        let w = &r["window"];
        let span = w["end_s"].as_f64().unwrap() - w["start_s"].as_f64().unwrap();
        assert!(
            (span - latency).abs() < 1e-3,
            "window {span} vs latency {latency}"
        );
        assert!(["stop", "length"].contains(&r["finish_reason"].as_str().unwrap()));
        if r["finish_reason"] == "length" {
            assert_eq!(out_tokens, 48);
        }
        assert_eq!(r["prompt_hash"].as_str().unwrap().len(), 64);
        assert!(r["energy"].is_null(), "no sampler, no energy");
        // Self-accounting: the harness's CPU in the window is its own, not the model's: the
        // engine's threads spent most of the process's CPU, ipw itself a sliver. (Not a share
        // of wall time: on a busy machine the process may get little of it.)
        let h = &r["harness"];
        let (harness, process, engine) = (
            h["cpu_s"].as_f64().unwrap(),
            h["process_cpu_s"].as_f64().unwrap(),
            h["engine_cpu_s"].as_f64().unwrap(),
        );
        assert!(harness > 0.0, "the harness did some work: {h}");
        assert!(process > 0.01, "generation used the CPU: {h}");
        assert!(
            engine > 0.8 * process,
            "the engine's threads (ipw-llama-* and their OpenMP workers) did the work: {h}"
        );
        assert!(
            harness < 0.1 * process && (harness + engine - process).abs() < 1e-9,
            "harness = process - engine, a small part of it: {h}"
        );
        assert!(h["machine_cpu_s"].as_f64().unwrap() > 0.0, "{h}");
        let g = &r["grade"];
        let want = if r["dataset"] == "gsm8k" {
            "numeric"
        } else {
            "choice"
        };
        assert_eq!(g["grader"], want, "{g}");
        assert_eq!(g["wasm_sha256"].as_str().unwrap().len(), 64);
        assert!(g["error"].is_null(), "{g}");
        let score = g["score"].as_f64().unwrap();
        assert!(score == 0.0 || score == 1.0);
        assert!(g["parsed"].is_boolean());
    }
    let mmlu: Vec<_> = recs.iter().filter(|r| r["dataset"] == "mmlu").collect();
    assert_eq!(mmlu.len(), 6);
    assert!(mmlu.iter().all(|r| r["subject"].is_string()
        && r["category"].is_string()
        && r["choices"].as_array().unwrap().len() == 4));

    let s = json(&run.join("summary.json"));
    assert_eq!(
        (
            s["planned"].as_u64(),
            s["recorded"].as_u64(),
            s["ok"].as_u64()
        ),
        (Some(12), Some(12), Some(12))
    );
    assert_eq!(s["errors"], 0);
    let mean_latency = recs
        .iter()
        .map(|r| r["latency_s"].as_f64().unwrap())
        .sum::<f64>()
        / 12.0;
    assert!((s["latency_s"]["mean"].as_f64().unwrap() - mean_latency).abs() < 1e-9);
    let total_out: u64 = recs
        .iter()
        .map(|r| r["output_tokens"].as_u64().unwrap())
        .sum();
    let d = &s["output_tokens"];
    assert!(
        (d["mean"].as_f64().unwrap() * d["n"].as_f64().unwrap() - total_out as f64).abs() < 1e-6
    );
    assert_eq!(s["by_dataset"]["gsm8k"]["recorded"], 6);
    assert_eq!(s["by_dataset"]["mmlu"]["recorded"], 6);
    assert!(s["decode_tps"]["p50"].as_f64().unwrap() > 1.0);
    let harness = &s["harness"];
    assert_eq!(harness["queries"], 12);
    let summed: f64 = recs
        .iter()
        .map(|r| r["harness"]["cpu_s"].as_f64().unwrap())
        .sum();
    assert!((harness["cpu_s"].as_f64().unwrap() - summed).abs() < 1e-9);
    let share = harness["share_of_machine_cpu"].as_f64().unwrap();
    assert!(share > 0.0 && share < 0.2, "{harness}");
    assert!(harness["cpu_energy_j"].is_null(), "no sampler: {harness}");

    let m = json(&run.join("manifest.json"));
    assert_eq!(m["status"], "completed");
    assert_eq!(m["model_file"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        m["model_file"]["size_bytes"].as_u64().unwrap(),
        std::fs::metadata(model_path()).unwrap().len()
    );
    assert!(m["host"]["logical_cores"].as_u64().unwrap() >= 1);
    assert!(m["host"]["memory_bytes"].as_u64().unwrap() > 0);
    assert!(m["host"]["kernel"].is_string());
    assert_eq!(m["datasets"][0]["rows"], 1319);
    assert_eq!(m["datasets"][0]["selected"], 6);
    assert!(m["git_commit"].is_string() && m["ipw_version"].is_string());
    assert!(m["sessions"][0]["model_load_s"].as_f64().unwrap() > 0.0);
    assert!(m["ended_at"].is_string());
}

#[test]
fn greedy_decoding_is_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let toml = experiment(&model_path(), 2, 1, 24);
    let responses = |name: &str| -> Vec<String> {
        let out = profile_ok(dir.path(), name, &toml);
        records(&out.join("smollm2"))
            .iter()
            .map(|r| r["response"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(responses("a"), responses("b"));
}
