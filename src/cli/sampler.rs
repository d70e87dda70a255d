//! `ipw sampler`: tools for sampler plugin authors: `check` runs a library through the
//! conformance check (`ipw_core::power::conformance`) and prints a verdict per check; `new`
//! writes a crate that builds into a working sampler.

use anyhow::{bail, Context};
use clap::Subcommand;
use ipw_core::power::conformance::{self, Options, Report, Verdict};
use ipw_core::power::loader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum SamplerCommand {
    /// Run a sampler library through the contract: ABI, describe, read repeatedly (readings,
    /// timestamps, counters, gauges, read cost), close. Exits non-zero on any FAIL.
    Check {
        /// A library path, or a plugin name found on the plugin search path (e.g. rapl).
        target: String,
        /// The sampler's settings as JSON (what an experiment gives it as `config`).
        #[arg(long, default_value = "{}")]
        config: String,
        /// Seconds of reading (at least three update periods of the slowest energy channel).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Also search these plugin directories (for a name).
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
    },
    /// Write a new sampler crate (Cargo.toml, src/lib.rs, README.md) that builds into a
    /// working sampler and passes `ipw sampler check`.
    New {
        /// The sampler's name: lowercase letters, digits and `-` (e.g. `my-meter`).
        name: String,
        /// Where to write the crate (default: ./ipw-sampler-NAME). Must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on the SDK at this path (default: this ipw checkout's sdk/sampler when ipw
        /// runs from one, else the published version).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

pub fn run(cmd: SamplerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SamplerCommand::Check {
            target,
            config,
            seconds,
            plugin_dirs,
        } => check(&target, &config, seconds, &plugin_dirs),
        SamplerCommand::New {
            name,
            dir,
            sdk_path,
        } => new(&name, dir, sdk_path),
    }
}

/// A path when it names a file (or looks like one), else a plugin name on the search path.
pub fn resolve(target: &str, plugin_dirs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let p = Path::new(target);
    if p.is_file() || target.contains('/') || target.ends_with(std::env::consts::DLL_SUFFIX) {
        if !p.is_file() {
            bail!("{target}: no such file");
        }
        return Ok(p.to_path_buf());
    }
    Ok(loader::find(
        target,
        &ipw_core::plugins::search_path(plugin_dirs),
    )?)
}

/// Run the check and print it; FAIL anywhere is exit code 1.
pub fn check(
    target: &str,
    config: &str,
    seconds: f64,
    plugin_dirs: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let config: serde_json::Value = serde_json::from_str(config).context("--config is not JSON")?;
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be > 0");
    }
    let path = resolve(target, plugin_dirs)?;
    let opts = Options {
        config,
        seconds,
        read_timeout: Duration::from_secs(3),
    };
    println!("checking {}", path.display());
    let report = conformance::check_library(&path, &opts);
    print_report(&report);
    Ok(if report.verdict() == Verdict::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(r: &Report) {
    if r.interval_s > 0.0 {
        println!("read every {:.3} s for {:.1} s", r.interval_s, r.seconds);
    }
    for f in &r.findings {
        println!(
            "  {} {:<10} {}",
            f.verdict.label(),
            f.check.name(),
            f.message
        );
    }
    if !r.readings_per_channel.is_empty() {
        let per: Vec<String> = r
            .channels
            .iter()
            .zip(&r.readings_per_channel)
            .map(|(c, n)| format!("{}: {n}", c.name))
            .collect();
        println!("readings per channel: {}", per.join(", "));
    }
    let warns = r
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Warn)
        .count();
    match r.verdict() {
        Verdict::Fail => println!("verdict: FAIL ({})", r.failed().join(", ")),
        Verdict::Warn => println!("verdict: PASS with {warns} warning(s)"),
        Verdict::Pass => println!("verdict: PASS"),
    }
}

/// What ipw knows about its first-party samplers without opening them: what each measures,
/// how, and what it needs. Keyed by plugin name; a plugin not listed is shown as third-party.
/// Kept in the CLI, not core: a new plugin changes nothing in core.
pub const KNOWN: &[(&str, &str, &str, &str)] = &[
    (
        "nvml",
        "NVIDIA GPU board energy; telemetry: instant power, temperature, memory, clocks, power limit, other processes",
        "energy counter (mJ), period from the driver",
        "NVIDIA driver (libnvidia-ml.so.1); no root",
    ),
    (
        "amdsmi",
        "AMD GPU board energy; current socket power on MI300-class boards",
        "energy counter (~15.3 uJ), 10 ms",
        "ROCm AMD SMI (libamd_smi.so, or lib_path); access to the GPU (render/video group)",
    ),
    (
        "rapl",
        "CPU package and DRAM energy per socket (Intel, AMD)",
        "energy counter (1 uJ, wraps), 1 ms",
        "Linux powercap (intel_rapl); read access to energy_uj (root-only since Linux 5.10: chmod/udev rule)",
    ),
    (
        "hwmon",
        "hwmon power/energy sensors: amd_energy, amdgpu, ACPI power meter, PSUs, ina2xx",
        "energy counter (uJ) or power gauge (averaged/instant), the driver's update_interval else 0.1 s",
        "the sensor's kernel driver; read access to /sys/class/hwmon (amd_energy: root-only)",
    ),
    (
        "jetson",
        "INA3221 power rails of NVIDIA Jetson boards (VDD_IN, VDD_GPU_SOC, ...)",
        "power gauge, instant (V x I), the driver's update interval",
        "L4T kernel with the ina3221 driver; no root",
    ),
    (
        "apple",
        "Apple Silicon CPU, GPU, ANE and DRAM energy",
        "energy counters (IOReport); powermetrics fallback: averaged gauges",
        "macOS on Apple Silicon; no root (powermetrics fallback: sudo)",
    ),
    (
        "cpu-estimate",
        "CPU power ESTIMATED from /proc/stat utilisation x TDP",
        "power gauge, interval mean, estimated, 10 ms",
        "Linux /proc/stat; nothing else (set tdp_w)",
    ),
    (
        "replay",
        "a recorded power or energy trace (e.g. a wall meter's log)",
        "gauge or counter as configured, the trace's step",
        "a trace file (`file` setting)",
    ),
    (
        "wallmeter",
        "wall power of a Shelly Gen2+ or Tasmota plug (example third-party sampler)",
        "energy counter shaped by instant power",
        "the plug on the local network (`url` setting)",
    ),
];

/// The [`KNOWN`] row for a plugin name.
pub fn known(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    KNOWN
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, measures, how, needs)| (*measures, *how, *needs))
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// This checkout's SDK, when ipw runs from the checkout it was built in.
fn checkout_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/sampler");
    sdk.join("Cargo.toml").is_file().then_some(sdk)
}

/// Write the new crate.
pub fn new(
    name: &str,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    if !valid_name(name) {
        bail!("sampler name `{name}`: use lowercase letters, digits and `-`, starting with a letter (e.g. `my-meter`)");
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(format!("ipw-sampler-{name}")));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("{}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        );
    }
    let sdk = sdk_path.or_else(checkout_sdk);
    let dependency = match &sdk {
        Some(p) => {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            format!(
                "ipw-sampler-sdk = {{ path = {:?} }}",
                p.display().to_string()
            )
        }
        None => format!("ipw-sampler-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    };
    let lib = format!("ipw_sampler_{}", name.replace('-', "_"));
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("create {}", dir.display()))?;
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
    };
    write("Cargo.toml", cargo_toml(name, &lib, &dependency))?;
    write("src/lib.rs", LIB_RS.replace("{{NAME}}", name))?;
    write("README.md", readme(name, &lib))?;
    write(".gitignore", "/target\n".into())?;
    // Pin the dependency versions this ipw was built and tested with (cargo prunes the rest
    // on the first build); it also lets the crate build offline from an existing cache.
    if let Some(lock) = sdk
        .as_ref()
        .and_then(|s| s.parent()?.parent().map(|root| root.join("Cargo.lock")))
        .filter(|l| l.is_file())
    {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("copy {}", lock.display()))?;
    }
    let so = loader::library_file_name(name);
    println!(
        "wrote {} ({})",
        dir.display(),
        match &sdk {
            Some(p) => format!("SDK by path: {}", p.display()),
            None => format!(
                "SDK ipw-sampler-sdk {} from the registry",
                env!("CARGO_PKG_VERSION")
            ),
        }
    );
    println!("next:");
    println!("  cd {} && cargo build --release", dir.display());
    println!("  echo 12.5 > /tmp/watts");
    println!("  ipw sampler check target/release/{so} --config '{{\"file\": \"/tmp/watts\"}}'");
    Ok(ExitCode::SUCCESS)
}

fn cargo_toml(name: &str, lib: &str, dependency: &str) -> String {
    format!(
        r#"[package]
name = "ipw-sampler-{name}"
version = "0.1.0"
edition = "2021"
publish = false

# Its own workspace root: a sampler is its own project, not part of another workspace.
[workspace]

[lib]
# ipw finds `plugin = "{name}"` as lib{lib}.so (.dylib, .dll): keep this name.
name = "{lib}"
crate-type = ["cdylib"]

[dependencies]
{dependency}
"#
    )
}

fn readme(name: &str, lib: &str) -> String {
    format!(
        r#"# ipw-sampler-{name}

An [ipw](https://github.com/ipw-dev/ipw) power sampler: a native library ipw loads to read
power or energy while it measures a model. As generated, it reads a power value in watts from
a text file (`file` setting) and reports it as an instant power gauge; replace the reading in
`src/lib.rs` with your device's.

## Build and check

```sh
cargo build --release
echo 12.5 > /tmp/watts
ipw sampler check target/release/lib{lib}.so --config '{{"file": "/tmp/watts"}}'
```

`ipw sampler check` runs the library through the contract ipw relies on (ABI, channel
description, readings, timestamps, counters, gauges, read cost, close) and prints a verdict per
check with what to fix. Run it after every change.

## Use it

```toml
[[samplers]]
path = "/path/to/target/release/lib{lib}.so"   # or copy it into a plugin_dirs entry and use plugin = "{name}"
config = {{ file = "/tmp/watts" }}
```

Settings (`config`): `file` (required): a file holding the power in watts; `scale` (default 1:
multiply the value, e.g. 1e-6 for a sysfs file in microwatts); `channel` (default `power`);
`update_period_s` (default 0.1: how often the value changes).

## The contract, in short

- `open` gets the `config` table as JSON; fail with a message naming what is wrong.
- `channels` describes each channel: a cumulative **energy counter** (joules, with its
  resolution and wrap) is best; else a **power gauge** (watts, instant or averaged); anything
  else is **telemetry**. Declare the update period honestly: ipw never samples faster.
- `read` appends readings stamped with `ipw_sampler_sdk::monotonic_now()`. No value is no
  reading (or an error), never a 0. Keep it fast and never block.
"#
    )
}

const LIB_RS: &str = r#"//! `{{NAME}}`: an ipw power sampler.
//!
//! As generated, it reads a power value in watts from a text file and reports it as an instant
//! power gauge. To measure your device, change [`read_watts`] (and the channel description in
//! `channels` if your device gives energy, or several values). Check it with
//! `ipw sampler check target/release/<library> --config '{"file": "/tmp/watts"}'`.

use ipw_sampler_sdk::serde_json::Value;
use ipw_sampler_sdk::{
    export_sampler, monotonic_now, Channel, ChannelKind, Domain, GaugeTiming, Reading, Sampler,
};
use std::path::PathBuf;

/// One open instance: what `open` learned from the config. ipw opens one per `[[samplers]]`
/// entry and calls `read` on it from one thread at a time.
struct Meter {
    /// The file holding the power.
    file: PathBuf,
    /// Multiplies the file's number into watts.
    scale: f64,
    /// The channel's name.
    channel: String,
    /// How often the value changes, seconds.
    update_period_s: f64,
}

/// Read the power now, in watts. Replace this with your device's reading. An error is
/// reported by ipw as a failed read (a gap), never as 0 W.
fn read_watts(file: &PathBuf, scale: f64) -> Result<f64, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{}: {:?} is not a number: {e}", file.display(), text.trim()))?;
    let watts = value * scale;
    if !watts.is_finite() || watts < 0.0 {
        return Err(format!("{}: {watts} W is not a power", file.display()));
    }
    Ok(watts)
}

impl Sampler for Meter {
    /// Called once with the experiment's `config` table as JSON. Check everything here, and
    /// read once, so that a wrong setting fails when the run starts, naming what is wrong.
    fn open(config: &Value) -> Result<Self, String> {
        let file = config
            .get("file")
            .and_then(Value::as_str)
            .ok_or("set `file`: the file holding the power in watts")?;
        let number = |key: &str, default: f64| -> Result<f64, String> {
            match config.get(key) {
                None => Ok(default),
                Some(v) => v.as_f64().ok_or(format!("`{key}` must be a number")),
            }
        };
        let meter = Meter {
            file: PathBuf::from(file),
            scale: number("scale", 1.0)?,
            channel: config
                .get("channel")
                .and_then(Value::as_str)
                .unwrap_or("power")
                .to_string(),
            update_period_s: number("update_period_s", 0.1)?,
        };
        if !(meter.update_period_s > 0.0 && meter.update_period_s.is_finite()) {
            return Err("`update_period_s` must be > 0".into());
        }
        read_watts(&meter.file, meter.scale)?;
        Ok(meter)
    }

    /// What each channel measures and how its values are to be read; a reading's `channel`
    /// is an index into this list.
    fn channels(&self) -> Vec<Channel> {
        vec![Channel {
            name: self.channel.clone(),
            // What the power covers: the whole machine (a wall meter), a GPU, a CPU package...
            domain: Domain::System,
            device: Some(format!("{}", self.file.display())),
            // A power value at the time of reading. A device with a cumulative energy counter
            // should report `ChannelKind::EnergyCounter` instead: ipw integrates it exactly.
            kind: ChannelKind::PowerGauge {
                timing: GaugeTiming::Instant,
                estimated: false,
            },
            update_period_s: self.update_period_s,
            // The error the device's maker declares, if any (widens every energy bound).
            accuracy: Default::default(),
            shaped_by: None,
        }]
    }

    /// Append the readings available now, stamped on ipw's clock (`monotonic_now`). Called
    /// at the run's sampling rate (20 Hz by default): keep it fast and never block.
    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        let watts = read_watts(&self.file, self.scale)?;
        out.push(Reading {
            channel: 0,
            timestamp_s: monotonic_now(),
            value: watts,
        });
        Ok(())
    }
}

// Exports the C entry point ipw looks for, under the sampler's name; every call is guarded so
// that a panic becomes an error message, never a crash of the profiler.
export_sampler!(Meter, "{{NAME}}");
"#;
