//! End to end on the OpenAI-compatible backend against a real upstream llama.cpp `llama-server`
//! serving the same GGUF on 127.0.0.1 (started here; built by scripts/build-llama-server.sh).
//! Covers a stream that carries usage (`include_usage`) and one that does not.

use crate::support::*;

#[test]
fn profile_against_real_llama_server_with_and_without_usage() {
    let server = LlamaServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/v1", server.url);
    let toml = format!(
        r#"name = "server-e2e"
[generation]
max_tokens = 40
[[models]]
name = "with-usage"
backend = "openai"
base_url = "{url}"
model = "smollm2"
[[models]]
name = "without-usage"
backend = "openai"
base_url = "{url}"
model = "smollm2"
include_usage = false
[[models]]
name = "cache-allowed"
backend = "openai"
base_url = "{url}"
model = "smollm2"
prompt_cache = true
[[datasets]]
builtin = "gsm8k"
max_queries = 4
[[datasets]]
builtin = "mmlu"
max_queries = 4
stratify = true
"#
    );
    let out = profile_ok(dir.path(), "server", &toml);

    for (model, source, estimated) in [
        ("with-usage", "server-usage", false),
        ("without-usage", "tokenizer", true),
    ] {
        let recs = records(&out.join(model));
        assert_eq!(recs.len(), 8, "{model}");
        for r in &recs {
            assert!(r["error"].is_null(), "{model}: {r}");
            assert!(!r["response"].as_str().unwrap().trim().is_empty());
            assert_eq!(r["token_source"], source, "{model}");
            assert_eq!(r["tokens_estimated"], estimated, "{model}");
            assert!(
                r["input_tokens"].as_u64().unwrap() > 0 && r["output_tokens"].as_u64().unwrap() > 0
            );
            let (ttft, latency) = (
                r["ttft_s"].as_f64().unwrap(),
                r["latency_s"].as_f64().unwrap(),
            );
            assert!(ttft > 0.0 && ttft <= latency, "{ttft} {latency}");
            // Self-accounting for a remote model: all of the process's CPU is the harness's.
            let h = &r["harness"];
            assert!(h["cpu_s"].as_f64().unwrap() > 0.0, "{h}");
            assert_eq!(h["cpu_s"], h["process_cpu_s"], "{h}");
            assert!(h["engine_cpu_s"].is_null(), "{h}");
            assert!(
                h["cpu_s"].as_f64().unwrap() < h["machine_cpu_s"].as_f64().unwrap() + 0.03,
                "ipw is part of the machine's busy CPU (ticks are 10 ms): {h}"
            );
            assert!(["stop", "length"].contains(&r["finish_reason"].as_str().unwrap()));
            if r["finish_reason"] == "length" && !estimated {
                assert_eq!(
                    r["output_tokens"], 40,
                    "server usage counts every generated token"
                );
            }
        }
        let s = json(&out.join(model).join("summary.json"));
        assert_eq!(s["ok"], 8);
        assert_eq!(s["tokens_estimated"], if estimated { 8 } else { 0 });
        let m = json(&out.join(model).join("manifest.json"));
        assert!(m["model_file"].is_null(), "remote model: no file hash");
        assert_eq!(m["backend"]["server_model"], "smollm2");
        assert_eq!(
            m["backend"]["transport"], "direct-http1",
            "plain http goes through ipw's own client"
        );
    }
    // The prompt cache: off by default (`cache_prompt: false`), so although the same prompts
    // were just sent, nothing was served from cache; allowed, the server reuses prefixes, and
    // every such record says how many prompt tokens it did not compute.
    for r in records(&out.join("with-usage"))
        .iter()
        .chain(&records(&out.join("without-usage")))
    {
        assert_eq!(r["cached_prompt_tokens"], 0, "{r}");
    }
    let cached = records(&out.join("cache-allowed"));
    assert!(
        cached
            .iter()
            .filter(|r| r["cached_prompt_tokens"].as_u64().unwrap() > 0)
            .count()
            >= 4,
        "{cached:?}"
    );
    let s = json(&out.join("cache-allowed/summary.json"));
    assert!(s["prompt_cache_hits"].as_u64().unwrap() >= 4, "{s}");
    assert_eq!(
        json(&out.join("with-usage/summary.json"))["prompt_cache_hits"],
        0
    );
    // No cross-run equality here: llama-server reuses cached prompt prefixes between requests,
    // which changes the arithmetic slightly, so greedy text can differ late in a response.
}
