//! The command line of a managed server: each kind's executable, address flags and the
//! settings that keep a measurement honest (no prefix or prompt caches, parallelism pinned to
//! the run's concurrency).

use crate::config::{ServerConfig, ServerKind};
use std::collections::BTreeMap;

/// What to execute, and what ipw chose for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// Executable (a bare name is looked up on `PATH`).
    pub program: String,
    /// Arguments: ipw's, then the experiment's.
    pub args: Vec<String>,
    /// Environment ipw sets (its pinned settings) and the experiment's `env`.
    pub env: BTreeMap<String, String>,
    /// The measurement-safe settings ipw added, as flags or `NAME=value`, for the manifest.
    pub settings: Vec<String>,
}

/// The host a managed server listens on: only this machine can reach it.
pub const HOST: &str = "127.0.0.1";

/// The command line for `cfg` serving `model_id` on `port`, for `concurrency` queries at once.
/// The program a server kind runs when the experiment names none (found on `PATH`).
pub fn default_program(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::LlamaServer => "llama-server",
        ServerKind::Vllm => "vllm",
        ServerKind::Sglang => "python3",
        ServerKind::Ollama => "ollama",
        ServerKind::Command => "",
    }
}

pub fn launch(cfg: &ServerConfig, model_id: &str, port: u16, concurrency: usize) -> Launch {
    let fill = |s: &str| {
        s.replace("{port}", &port.to_string())
            .replace("{host}", HOST)
    };
    let program = cfg
        .program
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| default_program(cfg.kind).into());
    let model = cfg.model_path.clone().unwrap_or_default();
    let (port_s, parallel) = (port.to_string(), concurrency.max(1).to_string());
    let s = |x: &[&str]| x.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // (arguments before the settings, the settings, pinned environment)
    let (mut args, settings, pinned): (Vec<String>, Vec<String>, Vec<(&str, String)>) =
        match cfg.kind {
            ServerKind::LlamaServer => (
                s(&[
                    "-m", &model, "--host", HOST, "--port", &port_s, "--alias", model_id,
                ]),
                // Prompt caching is refused per request (`cache_prompt: false`); one slot per
                // query in flight, so no query waits for a slot inside its window.
                s(&["--parallel", &parallel]),
                vec![],
            ),
            ServerKind::Vllm => (
                s(&[
                    "serve",
                    &model,
                    "--host",
                    HOST,
                    "--port",
                    &port_s,
                    "--served-model-name",
                    model_id,
                ]),
                s(&[
                    "--no-enable-prefix-caching",
                    "--enable-prompt-tokens-details",
                    "--max-num-seqs",
                    &parallel,
                ]),
                vec![],
            ),
            ServerKind::Sglang => (
                s(&[
                    "-m",
                    "sglang.launch_server",
                    "--model-path",
                    &model,
                    "--host",
                    HOST,
                    "--port",
                    &port_s,
                    "--served-model-name",
                    model_id,
                ]),
                s(&["--disable-radix-cache", "--max-running-requests", &parallel]),
                vec![],
            ),
            ServerKind::Ollama => (
                s(&["serve"]),
                Vec::new(),
                // The model stays loaded for the whole run (an unload and reload inside the
                // run would be measured), one model at a time, the run's parallelism.
                vec![
                    ("OLLAMA_HOST", format!("{HOST}:{port}")),
                    ("OLLAMA_KEEP_ALIVE", "-1".into()),
                    ("OLLAMA_NUM_PARALLEL", parallel.clone()),
                    ("OLLAMA_MAX_LOADED_MODELS", "1".into()),
                ],
            ),
            ServerKind::Command => (Vec::new(), Vec::new(), vec![]),
        };
    args.extend(settings.iter().cloned());
    args.extend(cfg.args.iter().map(|a| fill(a)));
    let mut env: BTreeMap<String, String> = pinned
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut all_settings = settings;
    all_settings.extend(pinned.iter().map(|(k, v)| format!("{k}={v}")));
    for (k, v) in &cfg.env {
        env.insert(k.clone(), fill(v));
    }
    Launch {
        program,
        args,
        env,
        settings: all_settings,
    }
}

/// The command line as the manifest keeps it: the program, then the arguments with the values
/// of secret-looking flags (`--api-key`, `--hf-token=...`) as `***`.
pub fn redacted(program: &str, args: &[String]) -> Vec<String> {
    let mut out = vec![program.to_string()];
    out.extend(crate::config::redact_args(args));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: ServerKind) -> ServerConfig {
        ServerConfig {
            kind,
            program: None,
            model_path: Some("org/model".into()),
            args: vec!["--extra".into(), "{host}:{port}".into()],
            env: BTreeMap::from([("TOKEN".into(), "t-{port}".into())]),
            port: None,
            ready_timeout_s: None,
            stop_grace_s: None,
        }
    }

    #[test]
    fn each_kind_gets_its_measurement_safe_settings() {
        let v = launch(&cfg(ServerKind::Vllm), "m", 8001, 4);
        assert_eq!(v.program, "vllm");
        let line = v.args.join(" ");
        assert!(
            line.starts_with("serve org/model --host 127.0.0.1 --port 8001 --served-model-name m"),
            "{line}"
        );
        for flag in [
            "--no-enable-prefix-caching",
            "--enable-prompt-tokens-details",
            "--max-num-seqs 4",
        ] {
            assert!(line.contains(flag), "{flag} missing: {line}");
        }
        assert!(line.ends_with("--extra 127.0.0.1:8001"), "{line}");
        assert_eq!(v.env["TOKEN"], "t-8001");
        let s = launch(&cfg(ServerKind::Sglang), "m", 8002, 1)
            .args
            .join(" ");
        assert!(
            s.starts_with("-m sglang.launch_server --model-path org/model"),
            "{s}"
        );
        assert!(s.contains("--disable-radix-cache"), "{s}");
        let o = launch(&cfg(ServerKind::Ollama), "m", 8003, 2);
        assert_eq!(o.args[0], "serve");
        assert_eq!(o.env["OLLAMA_HOST"], "127.0.0.1:8003");
        assert_eq!(o.env["OLLAMA_KEEP_ALIVE"], "-1");
        assert_eq!(o.env["OLLAMA_NUM_PARALLEL"], "2");
        assert!(o.settings.contains(&"OLLAMA_KEEP_ALIVE=-1".to_string()));
        let l = launch(&cfg(ServerKind::LlamaServer), "m", 8004, 3)
            .args
            .join(" ");
        assert!(l.contains("--parallel 3") && l.contains("--alias m"), "{l}");
    }
}
