//! The embedded backend on a GPU, tested on a machine without one: Mesa's llvmpipe is a real,
//! conformant Vulkan implementation (it runs the shaders on the CPU), so an ipw built with
//! `--features vulkan` (scripts/build-vulkan.sh) offloads every layer of the real SmolLM2 to it
//! through the same code path as a discrete GPU. llama.cpp skips CPU-type Vulkan devices unless
//! `GGML_VK_VISIBLE_DEVICES` names them, which is also how the tests see both outcomes: a device,
//! and a GPU backend that sees none.

use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The ipw built with the Vulkan backend.
fn vulkan_ipw() -> PathBuf {
    cached(
        "IPW_VULKAN_BIN",
        "bin/ipw-vulkan",
        "the Vulkan build of ipw",
        "scripts/build-vulkan.sh",
    )
}

/// The Vulkan build, set up as [`ipw()`] is; `llvmpipe` makes Mesa's device visible.
fn vulkan_command(llvmpipe: bool) -> Command {
    let mut c = ipw_at(&vulkan_ipw());
    if llvmpipe {
        c.env("GGML_VK_VISIBLE_DEVICES", "0");
    } else {
        c.env_remove("GGML_VK_VISIBLE_DEVICES");
    }
    c
}

/// Short prompts and answers: llvmpipe runs the shaders on this machine's CPU, ~1.7 s a token.
/// Greedy continuations of the two backends part after a dozen tokens or so (their float
/// arithmetic differs: seen here on GSM8K prompts at 24 tokens), so the answers compared are the
/// first 8 tokens.
fn experiment(dir: &Path, gpu_layers: Option<&str>) -> String {
    let data = dir.join("short.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"prompt\": \"What is 2 + 3?\", \"answer\": \"5\"}\n\
         {\"id\": \"b\", \"prompt\": \"Name the capital of France.\", \"answer\": \"Paris\"}\n",
    )
    .unwrap();
    format!(
        r#"name = "offload"
seed = 3
[run]
warmup_queries = 0
[generation]
max_tokens = 8
temperature = 0.0
[[models]]
name = "smollm2"
path = {model}
threads = 2
{layers}
[[datasets]]
name = "short"
path = {data}
template = "raw"
grader = "includes"
"#,
        model = q(&model_path()),
        data = q(&data),
        layers = gpu_layers
            .map(|l| format!("gpu_layers = {l}"))
            .unwrap_or_default()
    )
}

fn run(mut cmd: Command, dir: &Path, name: &str, toml: &str) -> (Output, PathBuf) {
    let exp = write_experiment(dir, &format!("{name}.toml"), toml);
    let out = dir.join(format!("out-{name}"));
    let o = cmd
        .args(["profile", exp.to_str().unwrap(), "--out"])
        .arg(&out)
        .arg("-q")
        .current_dir(dir)
        .output()
        .expect("ipw runs");
    (o, out)
}

fn responses(run: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = records(run)
        .iter()
        .map(|r| {
            assert!(r["error"].is_null(), "{r}");
            (
                r["query_id"].as_str().unwrap().to_string(),
                r["response"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn placement(run: &Path) -> Value {
    let m = json(&run.join("manifest.json"));
    m["backend"]
        .get("placement")
        .unwrap_or_else(|| panic!("no placement in the manifest: {m:#}"))
        .clone()
}

#[test]
fn every_layer_on_a_real_vulkan_device_gives_the_cpu_runs_greedy_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (cpu, cpu_out) = run(ipw(), dir.path(), "cpu", &experiment(dir.path(), None));
    assert!(cpu.status.success(), "{}", text(&cpu));
    let cpu_run = cpu_out.join("smollm2");
    let p = placement(&cpu_run);
    assert_eq!(p["layers_offloaded"], 0, "{p:#}");
    assert!(p["devices"].as_array().unwrap().is_empty(), "{p:#}");

    let (gpu, gpu_out) = run(
        vulkan_command(true),
        dir.path(),
        "vulkan",
        &experiment(dir.path(), Some(r#""all""#)),
    );
    assert!(gpu.status.success(), "{}", text(&gpu));
    let gpu_run = gpu_out.join("smollm2");
    let p = placement(&gpu_run);
    let devices = p["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{p:#}");
    let d = &devices[0];
    assert_eq!(d["backend"], "Vulkan", "{p:#}");
    assert_eq!(d["name"], "Vulkan0", "{p:#}");
    assert!(
        d["description"].as_str().unwrap().contains("llvmpipe"),
        "the manifest names Mesa's device: {p:#}"
    );
    assert!(d["memory_total_bytes"].as_u64().unwrap() > 0, "{p:#}");
    // The API and driver, from the Vulkan loader (vulkaninfo shows the same for llvmpipe).
    assert!(
        d["api_version"].as_str().unwrap().starts_with("1."),
        "{p:#}"
    );
    assert!(d["driver"].as_str().unwrap().contains("Mesa"), "{p:#}");
    assert_eq!(p["gpu_layers"], "all");
    let total = p["layers_total"].as_u64().unwrap();
    assert!(total > 20, "SmolLM2-135M has 30 layers + output: {p:#}");
    assert_eq!(p["layers_offloaded"].as_u64(), Some(total), "{p:#}");
    assert!(
        p["backend_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("llvmpipe")),
        "the backend's own account of the device (driver, features) is kept: {p:#}"
    );

    // Same model, same queries, greedy: the GPU run answers as the CPU run does.
    assert_eq!(responses(&gpu_run), responses(&cpu_run));
}

#[test]
fn asking_for_gpu_layers_without_a_gpu_is_refused_before_anything_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    // A build without a GPU backend: names what to build. The model that asks comes second,
    // and is refused before the first is measured.
    let cpu_first = experiment(dir.path(), Some("12")).replace(
        "[[models]]",
        &format!(
            "[[models]]\nname = \"first\"\npath = {}\ngpu_layers = 0\n\n[[models]]",
            q(&model_path())
        ),
    );
    let (o, out) = run(ipw(), dir.path(), "cpu-build", &cpu_first);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("built without a GPU backend"), "{t}");
    assert!(t.contains("--features vulkan"), "{t}");
    assert!(t.contains("model `smollm2`"), "{t}");
    assert!(
        !out.join("first/records.jsonl").exists(),
        "nothing measured, not even the model before: {t}"
    );

    // A Vulkan build on a machine whose Vulkan sees no GPU: names what to install.
    let (o, out) = run(
        vulkan_command(false),
        dir.path(),
        "no-device",
        &experiment(dir.path(), Some(r#""all""#)),
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("sees no device"), "{t}");
    assert!(t.contains("mesa-vulkan-drivers"), "{t}");
    assert!(!out.join("smollm2/records.jsonl").exists(), "{t}");

    // The same build without a device and without the setting runs on the CPU and says so.
    let (o, out) = run(
        vulkan_command(false),
        dir.path(),
        "fallback",
        &experiment(dir.path(), None),
    );
    assert!(o.status.success(), "{}", text(&o));
    let p = placement(&out.join("smollm2"));
    assert_eq!(p["layers_offloaded"], 0, "{p:#}");
    assert!(p["rule"].as_str().unwrap().contains("sees no GPU"), "{p:#}");
}

#[test]
fn doctor_and_list_name_the_compute_backends_and_their_devices() {
    let cpu = ipw().arg("list").output().unwrap();
    assert!(cpu.status.success(), "{}", text(&cpu));
    let t = text(&cpu);
    assert!(t.contains("GPU backends in this build: none"), "{t}");
    assert!(t.contains("CPU"), "{t}");

    let mut doctor = vulkan_command(true);
    let o = doctor.arg("doctor").output().unwrap();
    let t = text(&o);
    assert!(t.contains("GPU backends in this build: Vulkan"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.contains("Vulkan0") && l.contains("llvmpipe") && l.contains("gpu")),
        "{t}"
    );
}
