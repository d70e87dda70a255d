//! `ipw doctor`: what this machine can measure, through which plugin, at what update period.

use ipw_core::config::{SamplerConfig, ServerKind};
use ipw_core::power::session::open_sampler;
use ipw_core::power::ChannelKind;
use std::path::PathBuf;
use std::process::ExitCode;

fn kind_text(kind: &ChannelKind) -> String {
    match kind {
        ChannelKind::EnergyCounter {
            resolution_j,
            wrap_j,
        } => format!(
            "energy counter, resolution {resolution_j} J{}",
            wrap_j
                .map(|w| format!(", wraps at {w:.0} J"))
                .unwrap_or_default()
        ),
        ChannelKind::PowerGauge { timing, estimated } => {
            format!(
                "power gauge, {timing:?}{}",
                if *estimated { ", ESTIMATED" } else { "" }
            )
        }
        ChannelKind::Telemetry { unit } => format!("telemetry ({unit})"),
    }
}

/// The plugin name a library file stands for (`libipw_sampler_cpu_estimate.so` -> `cpu-estimate`).
fn name_from_file(path: &std::path::Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = file
        .strip_prefix(std::env::consts::DLL_PREFIX)
        .unwrap_or(&file);
    let stem = stem
        .strip_suffix(std::env::consts::DLL_SUFFIX)
        .unwrap_or(stem);
    stem.strip_prefix("ipw_sampler_")
        .unwrap_or(stem)
        .replace('_', "-")
}

/// What a plugin measures, how, and what it needs (from the CLI's table of known plugins;
/// opened channels, printed after, say exactly what this machine gives).
fn print_known(name: &str) {
    match super::sampler::known(name) {
        Some((measures, how, needs)) => {
            println!("  measures: {measures}");
            println!("  how:      {how}");
            println!("  needs:    {needs}");
        }
        None => println!(
            "  (not a first-party plugin: see its README for what it needs; `ipw sampler check` tests it)"
        ),
    }
}

pub fn run(extra: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // Competing load first: a measurement on a busy machine includes someone else's draw.
    match ipw_core::load::measure(std::time::Duration::from_secs(1)) {
        Some(l) if l.cores > ipw_core::load::BUSY_CORES => {
            println!(
                "machine load: NOT IDLE: other processes keep {:.2} cores busy ({}); baselines and energy will include their draw",
                l.cores,
                if l.top.is_empty() { "-".to_string() } else { l.top.join(", ") }
            );
        }
        Some(l) => println!(
            "machine load: idle ({:.2} cores used by other processes)",
            l.cores
        ),
        None => println!("machine load: unknown (no /proc)"),
    }
    super::compute::print();
    println!("managed servers ([models.server], each kind's default program):");
    for kind in [
        ServerKind::LlamaServer,
        ServerKind::Vllm,
        ServerKind::Sglang,
        ServerKind::Ollama,
    ] {
        match ipw_core::server::installed(kind) {
            Ok(found) => println!("  {:<13} {found}", kind.as_str()),
            Err(why) => println!("  {:<13} unavailable: {why}", kind.as_str()),
        }
    }
    let found: Vec<_> = ipw_core::plugins::discover(extra)
        .into_iter()
        .filter(|p| p.kind == "sampler")
        .collect();
    if found.is_empty() {
        println!("no sampler plugins found; searched:");
        for d in ipw_core::plugins::search_path(extra) {
            println!("  {}", d.display());
        }
        return Ok(ExitCode::from(1));
    }
    let mut usable = 0;
    for plugin in found {
        if plugin.path.to_string_lossy().contains("fixture") {
            continue; // test fixtures that live beside the binary in a build tree
        }
        let cfg = SamplerConfig {
            plugin: None,
            path: Some(plugin.path.clone()),
            rate_hz: None,
            config: serde_json::json!({}),
        };
        let name = name_from_file(&plugin.path);
        match open_sampler(&cfg, extra) {
            Ok((lib, handle)) => {
                usable += 1;
                println!(
                    "{} ({}, sdk {})",
                    lib.name,
                    lib.path.display(),
                    lib.sdk_version
                );
                print_known(&lib.name);
                for c in &handle.channels {
                    println!(
                        "  {:<14} {:<12} {:<40} update every {:.3} s{}",
                        c.name,
                        format!("{:?}", c.domain),
                        kind_text(&c.kind),
                        c.update_period_s,
                        c.device
                            .as_ref()
                            .map(|d| format!("  [{d}]"))
                            .unwrap_or_default()
                    );
                }
            }
            Err(e) => {
                println!("{name} ({}): unavailable: {e}", plugin.path.display());
                print_known(&name);
            }
        }
    }
    println!("{usable} sampler(s) usable on this machine");
    Ok(if usable > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
