//! `jetson`: the INA3221 power monitors of NVIDIA Jetson and similar embedded boards.
//!
//! Two sysfs layouts are read, under a configurable `root` (default `/`):
//! - newer kernels: hwmon devices named `ina3221` under `<root>/sys/class/hwmon`, with per
//!   channel `in<i>_label` (the rail), `in<i>_input` (bus voltage, mV) and `curr<i>_input`
//!   (current, mA); power is V x I, in W;
//! - older L4T: `<root>/sys/bus/i2c/drivers/ina3221x/<bus-addr>/iio:device<n>/` with
//!   `rail_name_<i>` and `in_power<i>_input` (mW, computed by the driver), or, where that file
//!   is missing, `in_voltage<i>_input` (mV) x `in_current<i>_input` (mA).
//!
//! Each connected rail is one instant power gauge named as the board names it (`VDD_GPU_SOC`,
//! `VDD_CPU_CV`, `VDD_IN`; a second rail of the same name gets its device appended). Rails
//! labelled `NC`, without a label, or disabled (`in<i>_enable` = 0) are skipped. The domain is
//! read from the name: a rail feeding both CPU and GPU -> `soc`, `GPU` -> `gpu`, `CPU` ->
//! `cpu-package`, `DDR`/`MEM`/`VDDQ` -> `dram`, `SOC`/`CV` -> `soc`, and the board's input,
//! `VIN`/`SYS` rails and unknown rails -> `system`.
//!
//! **Do not sum the input with its sub-rails.** Where the board monitors its total input
//! (`VDD_IN` on Orin NX/Nano, Xavier NX, TX1/TX2; `POM_5V_IN` on Nano), every other rail is a
//! part of it: summing them counts those joules twice. ipw sums every energy channel of one
//! sampler into a record's total and warns about overlapping domains only *between* samplers,
//! so this sampler settles it itself: when a total-input rail is selected, it alone is a power
//! gauge (domain `system`, its `device` saying it is the total) and the other selected rails
//! are reported as telemetry in W, recorded for a breakdown but never summed. Boards without
//! a total-input monitor (AGX Orin: `VDD_GPU_SOC`, `VDD_CPU_CV`, `VIN_SYS_5V0`,
//! `VDDQ_VDD2_1V8AO`; `VIN_SYS_5V0` is the 5 V system supply, not the input) get every rail
//! as a gauge; their sum leaves out what no monitor sees (regulator losses, carrier board).
//! Beside another sampler (nvml, rapl), the `system` domain makes ipw warn about overlap.
//!
//! Settings: `root`, `rails` (rail names to include; default all connected rails). A rail
//! that is not found, or finding none, is an error listing what was found. A value file that
//! cannot be read or parsed is an error naming the file, never a 0. Newer boards whose input
//! is monitored by an INA238 or similar with `power<i>_input` (Thor's `VIN`) are read by the
//! `hwmon` sampler.

use ipw_sampler_sdk::{
    export_sampler, read_each, Channel, ChannelKind, Domain, GaugeTiming, Reading, Sampler,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Assumed refresh period where the driver does not state it (the old `ina3221x` driver, or
/// a hwmon device without `update_interval`). An INA3221 converting three channels with
/// averaging refreshes in some ms to some tens of ms; 0.1 s is no faster than that, and a
/// period claimed too long only costs sampling rate, while one claimed too short would make
/// the host treat stale values as fresh.
const DEFAULT_UPDATE_PERIOD_S: f64 = 0.1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_root")]
    root: PathBuf,
    #[serde(default)]
    rails: Option<Vec<String>>,
}

fn default_root() -> PathBuf {
    PathBuf::from("/")
}

/// How a rail's power is obtained.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// Bus voltage (mV) times current (mA).
    VoltsAmps { volts: PathBuf, amps: PathBuf },
    /// The driver's own power value, mW.
    Milliwatts(PathBuf),
}

/// One connected, labelled monitor channel found during discovery.
struct Rail {
    /// The board's name for the rail, as read.
    label: String,
    /// Where it was found, for names and messages: `hwmon3` or `1-0040 iio:device0`.
    place: String,
    /// `device` text: chip, channel and the files read.
    how: String,
    source: Source,
    update_period_s: f64,
    update_text: String,
    /// Unique channel name.
    name: String,
}

struct Gauge {
    source: Source,
    channel: Channel,
}

/// The `jetson` sampler: one channel per selected INA3221 rail.
pub struct Jetson {
    gauges: Vec<Gauge>,
}

fn read_text(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!(
                    "cannot read {}: permission denied (INA3221 files are normally \
                     world-readable; run as root, or grant read access: sudo chmod a+r {})",
                    p.display(),
                    p.display()
                )
            } else {
                // ENODATA / EIO (a disabled or failing channel) land here: an error, not 0.
                format!("cannot read {}: {e}", p.display())
            }
        })
}

/// An integer sysfs value (mV, mA, mW, ms).
fn read_int(p: &Path) -> Result<f64, String> {
    let t = read_text(p)?;
    t.parse::<i64>()
        .map(|v| v as f64)
        .map_err(|_| format!("{}: not a number: `{t}`", p.display()))
}

/// A rail's power in watts.
fn read_watts(s: &Source) -> Result<f64, String> {
    match s {
        // The two files are read one after the other, not as one sample; at the update
        // periods in question the skew is far below a conversion.
        Source::VoltsAmps { volts, amps } => Ok(read_int(volts)? * read_int(amps)? * 1e-6),
        Source::Milliwatts(p) => Ok(read_int(p)? * 1e-3),
    }
}

/// Keep characters that are safe in a channel name; the rest become `-`.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

/// Upper-case words of a rail name (`VDD_CPU_GPU_CV` -> `VDD`, `CPU`, `GPU`, `CV`).
fn words(rail: &str) -> Vec<String> {
    rail.to_ascii_uppercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a rail name names a part of the SoC or memory rather than the board's supply.
fn names_a_component(rail: &str) -> bool {
    let up = rail.to_ascii_uppercase();
    ["GPU", "CPU", "SOC", "DDR", "MEM"]
        .iter()
        .any(|c| up.contains(c))
        || words(rail).iter().any(|w| w == "CV" || w == "VDDQ")
}

/// Whether a rail is the board's total input (`VDD_IN`, `POM_5V_IN`, `VIN`), which every other
/// rail is a part of.
fn is_total_input(rail: &str) -> bool {
    let up = rail.to_ascii_uppercase();
    up == "VIN"
        || up.contains("TOTAL")
        || (words(rail).last().is_some_and(|w| w == "IN") && !names_a_component(rail))
}

/// What a rail covers, from its name (see the module documentation).
fn domain_of(rail: &str) -> Domain {
    if is_total_input(rail) {
        return Domain::System;
    }
    let up = rail.to_ascii_uppercase();
    let w = words(rail);
    let (gpu, cpu) = (up.contains("GPU"), up.contains("CPU"));
    if gpu && cpu {
        // One rail feeding both (Orin NX's VDD_CPU_GPU_CV): neither domain alone.
        Domain::Soc
    } else if gpu {
        Domain::Gpu
    } else if cpu {
        Domain::CpuPackage
    } else if up.contains("DDR")
        || up.contains("MEM")
        || w.iter().any(|w| w == "VDDQ" || w == "VDD2")
    {
        // VDDQ/VDD2 are LPDDR supplies (AGX Orin's VDDQ_VDD2_1V8AO).
        Domain::Dram
    } else if up.contains("SOC") || w.iter().any(|w| w == "CV") {
        Domain::Soc
    } else {
        // VIN_SYS_5V0, SYS5V, VDD_4V0_WIFI and rails of unknown boards: supplies of the board
        // at large. `system` also makes ipw warn beside any other sampler.
        Domain::System
    }
}

/// A rail label that means nothing is connected.
fn disconnected(label: &str) -> bool {
    label.is_empty() || label.eq_ignore_ascii_case("NC")
}

/// Files of `dir` whose names are `<prefix><n>`, as (n, path), in index order.
fn indexed(dir: &Path, prefix: &str, suffix: &str) -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let i = n.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()?;
            Some((i, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Sorted entries of a directory, or none if it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    // Natural order for hwmonN (hwmon2 before hwmon10), plain order otherwise.
    v.sort_by_key(|p| {
        let n = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let num = n.strip_prefix("hwmon").and_then(|d| d.parse::<u64>().ok());
        (num.unwrap_or(u64::MAX), n)
    });
    v
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// What discovery saw, for error messages: every device searched and every channel skipped.
#[derive(Default)]
struct Seen {
    hwmon_names: Vec<String>,
    skipped: Vec<String>,
}

/// Update period of a hwmon device: its `update_interval` (ms), else the default.
fn update_period(dir: &Path) -> Result<(f64, String), String> {
    let f = dir.join("update_interval");
    if f.exists() {
        let ms = read_int(&f)?;
        Ok((ms / 1e3, format!("update interval {ms} ms")))
    } else {
        Ok((
            DEFAULT_UPDATE_PERIOD_S,
            format!("update interval not exposed, assumed {DEFAULT_UPDATE_PERIOD_S} s"),
        ))
    }
}

/// Layout (a): hwmon `ina3221` devices.
fn discover_hwmon(root: &Path, rails: &mut Vec<Rail>, seen: &mut Seen) -> Result<(), String> {
    for dir in entries(&root.join("sys/class/hwmon")) {
        // Attribute files sit in hwmonN/ (or hwmonN/device/ for old-style drivers).
        let Some(base) = [dir.clone(), dir.join("device")]
            .into_iter()
            .find(|d| d.join("name").is_file())
        else {
            continue;
        };
        let hwmon = file_name(&dir);
        let Ok(name) = read_text(&base.join("name")) else {
            continue;
        };
        seen.hwmon_names.push(format!("{hwmon} {name}"));
        if name != "ina3221" {
            continue;
        }
        let mut update = None;
        for (i, label_file) in indexed(&base, "in", "_label") {
            let label = read_text(&label_file)?;
            let enable = base.join(format!("in{i}_enable"));
            let disabled = enable.exists() && read_text(&enable)? == "0";
            let volts = base.join(format!("in{i}_input"));
            let amps = base.join(format!("curr{i}_input"));
            if disconnected(&label) || disabled || !volts.exists() || !amps.exists() {
                seen.skipped.push(format!("{hwmon} channel {i} `{label}`"));
                continue;
            }
            if update.is_none() {
                update = Some(update_period(&base)?);
            }
            let (update_period_s, update_text) = update.clone().unwrap();
            rails.push(Rail {
                label,
                place: hwmon.clone(),
                how: format!(
                    "{hwmon} (ina3221) channel {i}, in{i}_input mV x curr{i}_input mA, instant"
                ),
                source: Source::VoltsAmps { volts, amps },
                update_period_s,
                update_text,
                name: String::new(),
            });
        }
    }
    Ok(())
}

/// Layout (b): the old L4T `ina3221x` IIO driver.
fn discover_iio(root: &Path, rails: &mut Vec<Rail>, seen: &mut Seen) -> Result<(), String> {
    for chip in entries(&root.join("sys/bus/i2c/drivers/ina3221x")) {
        let addr = file_name(&chip);
        for dev in entries(&chip)
            .into_iter()
            .filter(|p| file_name(p).starts_with("iio:device"))
        {
            let place = format!("{addr} {}", file_name(&dev));
            for (i, label_file) in indexed(&dev, "rail_name_", "") {
                let label = read_text(&label_file)?;
                if disconnected(&label) {
                    seen.skipped.push(format!("{place} channel {i} `{label}`"));
                    continue;
                }
                let power = dev.join(format!("in_power{i}_input"));
                let volts = dev.join(format!("in_voltage{i}_input"));
                let amps = dev.join(format!("in_current{i}_input"));
                let (source, files) = if power.exists() {
                    (Source::Milliwatts(power), format!("in_power{i}_input mW"))
                } else if volts.exists() && amps.exists() {
                    (
                        Source::VoltsAmps { volts, amps },
                        format!("in_voltage{i}_input mV x in_current{i}_input mA"),
                    )
                } else {
                    seen.skipped
                        .push(format!("{place} channel {i} `{label}` (no power file)"));
                    continue;
                };
                rails.push(Rail {
                    label,
                    place: place.clone(),
                    how: format!("ina3221x {place} channel {i}, {files}, instant"),
                    source,
                    update_period_s: DEFAULT_UPDATE_PERIOD_S,
                    update_text: format!(
                        "update interval not exposed, assumed {DEFAULT_UPDATE_PERIOD_S} s"
                    ),
                    name: String::new(),
                });
            }
        }
    }
    Ok(())
}

/// `VDD_IN (hwmon3), VDD_SOC (hwmon3); skipped: hwmon3 channel 3 `NC`; hwmon devices: ...`.
fn describe_found(root: &Path, rails: &[Rail], seen: &Seen) -> String {
    let mut s = if rails.is_empty() {
        format!(
            "no INA3221 rail found under {} (searched sys/class/hwmon and \
             sys/bus/i2c/drivers/ina3221x)",
            root.display()
        )
    } else {
        let list: Vec<String> = rails
            .iter()
            .map(|r| format!("{} ({})", r.label, r.place))
            .collect();
        format!("rails found: {}", list.join(", "))
    };
    if !seen.skipped.is_empty() {
        s.push_str(&format!("; skipped: {}", seen.skipped.join(", ")));
    }
    s.push_str(&format!(
        "; hwmon devices: {}",
        if seen.hwmon_names.is_empty() {
            "none".into()
        } else {
            seen.hwmon_names.join(", ")
        }
    ));
    s
}

impl Sampler for Jetson {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("jetson config: {e}"))?;
        let mut rails = Vec::new();
        let mut seen = Seen::default();
        discover_hwmon(&cfg.root, &mut rails, &mut seen)?;
        discover_iio(&cfg.root, &mut rails, &mut seen)?;
        // Unique names over everything found, so a selection never renames a channel.
        let mut taken = HashSet::new();
        for r in &mut rails {
            let base = sanitize(&r.label);
            let mut name = base.clone();
            if taken.contains(&name) {
                name = format!("{base}-{}", sanitize(&r.place));
            }
            let mut n = 2;
            while taken.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            taken.insert(name.clone());
            r.name = name;
        }
        let named =
            |r: &Rail, w: &str| r.label.eq_ignore_ascii_case(w) || r.name.eq_ignore_ascii_case(w);
        if let Some(list) = &cfg.rails {
            for w in list {
                if !rails.iter().any(|r| named(r, w)) {
                    return Err(format!(
                        "jetson: no rail `{w}`; {}",
                        describe_found(&cfg.root, &rails, &seen)
                    ));
                }
            }
        }
        let selected: Vec<&Rail> = rails
            .iter()
            .filter(|r| {
                cfg.rails
                    .as_ref()
                    .is_none_or(|list| list.iter().any(|w| named(r, w)))
            })
            .collect();
        if selected.is_empty() {
            return Err(format!(
                "jetson: no power rail to read; {}",
                describe_found(&cfg.root, &rails, &seen)
            ));
        }
        let totals: Vec<&str> = selected
            .iter()
            .filter(|r| is_total_input(&r.label))
            .map(|r| r.name.as_str())
            .collect();
        let mut gauges = Vec::new();
        for r in selected {
            read_watts(&r.source)?; // fail at open, with the reason, not at every read
            let mut device = format!("{}, {}", r.how, r.update_text);
            let (kind, domain) = if is_total_input(&r.label) {
                device.push_str(
                    "; the board's total input: it includes the other rails, do not add them to it",
                );
                (
                    ChannelKind::PowerGauge {
                        timing: GaugeTiming::Instant,
                        estimated: false,
                    },
                    Domain::System,
                )
            } else if !totals.is_empty() {
                device.push_str(&format!(
                    "; part of {}: telemetry in W, not summed",
                    totals.join(", ")
                ));
                (
                    ChannelKind::Telemetry { unit: "W".into() },
                    Domain::Telemetry,
                )
            } else {
                (
                    ChannelKind::PowerGauge {
                        timing: GaugeTiming::Instant,
                        estimated: false,
                    },
                    domain_of(&r.label),
                )
            };
            gauges.push(Gauge {
                source: r.source.clone(),
                channel: Channel {
                    name: r.name.clone(),
                    domain,
                    device: Some(device),
                    kind,
                    update_period_s: r.update_period_s,
                    // The INA3221's error depends on each board's shunt resistors; nothing
                    // board-independent can be declared.
                    accuracy: Default::default(),
                    shaped_by: None,
                },
            });
        }
        Ok(Self { gauges })
    }

    fn channels(&self) -> Vec<Channel> {
        self.gauges.iter().map(|g| g.channel.clone()).collect()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        read_each(&self.gauges, out, |g| read_watts(&g.source))
    }
}

export_sampler!(Jetson, "jetson");

#[cfg(test)]
mod tests;
