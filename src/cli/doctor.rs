//! `ipw doctor`: what this machine can measure, through which plugin, at what update period.

use ipw_core::config::SamplerConfig;
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
        match open_sampler(&cfg, extra) {
            Ok((lib, handle)) => {
                usable += 1;
                println!(
                    "{} ({}, sdk {})",
                    lib.name,
                    lib.path.display(),
                    lib.sdk_version
                );
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
            Err(e) => println!("{}: unavailable: {e}", plugin.path.display()),
        }
    }
    println!("{usable} sampler(s) usable on this machine");
    Ok(if usable > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
