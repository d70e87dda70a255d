//! `ipw init` (a commented starter experiment) and `ipw completions` (shell completion scripts).

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// The starter experiment: the smallest useful run, with a comment on every choice a new user
/// makes. `NAME` is replaced by the experiment's name.
const STARTER: &str = r#"# An ipw experiment. Run it with `ipw profile NAME.toml`; check it without running with
# `ipw validate NAME.toml`. Every setting, with its default, is in examples/annotated.toml.

name = "NAME"          # names the output directory: runs/NAME-<timestamp>/
seed = 42              # drives shuffling and sampling: the same seed, the same queries

[run]
concurrency = 1        # queries in flight; 1 gives each query's energy to it alone
warmup_queries = 1     # unmeasured queries first, on prompts that are never measured

[generation]
max_tokens = 192
temperature = 0.0      # greedy: the same answers run after run

# One run per [[models]] entry. The embedded backend runs a GGUF inside ipw (llama.cpp);
# backend = "openai" talks to a server (llama-server, vLLM, SGLang, a cloud API) instead.
[[models]]
name = "smollm2-135m"
backend = "embedded"
path = "${IPW_TEST_MODEL:-~/.cache/ipw/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
# For `ipw route` and the study (optional):
# [models.meta]
# params_b = 0.135
# price_in_per_mtok = 0.0
# price_out_per_mtok = 0.0

# What measures energy. `ipw doctor` lists what this machine has: rapl (Intel/AMD CPUs),
# nvml (NVIDIA), amdsmi (AMD GPUs), hwmon, jetson, apple, replay (a meter's log). The CPU
# estimate below is a model, so every figure built on it is labelled ESTIMATED.
[[samplers]]
plugin = "cpu-estimate"
rate_hz = 20

[energy]
baseline_s = 10        # idle power measured first; net energy = gross - idle

[[datasets]]
builtin = "gsm8k"      # or mmlu, or path = "my.jsonl" with [datasets.fields]
max_queries = 10
shuffle = true
"#;

pub fn init(path: &Path, name: Option<String>) -> Result<ExitCode> {
    if path.exists() {
        bail!("{} exists already; choose another path", path.display());
    }
    let name = name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into())
    });
    if name.is_empty() || name.contains(['"', '\\', '\n']) {
        bail!("experiment name {name:?}: use letters, digits, `-` and `_`");
    }
    std::fs::write(path, STARTER.replace("NAME", &name))
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {}; run it with `ipw profile {}`",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "ipw", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
