//! `hwmon`: power and energy sensors of Linux hwmon (`/sys/class/hwmon`).
//!
//! Every `hwmonN` device with a `name` is searched for three kinds of files, per index `i`:
//! - `energy<i>_input`: a cumulative counter in µJ (amd_energy, i915/xe, some PSUs) -> an
//!   energy counter in joules;
//! - `power<i>_average`: µW averaged over `power<i>_average_interval` ms (ACPI power meter,
//!   amdgpu) -> an averaged power gauge;
//! - `power<i>_input`: µW at the time of reading (ina2xx, PSUs, amdgpu) -> an instant gauge.
//!
//! When one index has several, the counter wins (the host integrates it exactly), then an
//! average whose window the driver states (no aliasing between reads), then an instant
//! reading, then an average whose window is unknown (assumed to be the update interval).
//! A power gauge's `power<i>_cap` (µW) becomes `<name>-cap`, telemetry of unit `power-limit-w`:
//! the ceiling of its bounds in coarse windows. Temperatures, voltages, currents and other
//! limits (`_max`, ...) are ignored.
//!
//! Channels are named `<device name>/<label>` (`amd_energy/Esocket0`, `amdgpu/PPT`), the file
//! stem (`power1`) standing in for a missing label; two devices of one name get their hwmon
//! index (`amdgpu-hwmon3/PPT`). The domain is a guess from the driver name and label, stated
//! per channel; an unknown driver is `system`, which ipw's overlap check treats as covering
//! everything (a warning rather than a silent double count).
//!
//! **Overlap inside one device.** ipw sums every energy channel of a sampler into a record's
//! total, and warns about overlap only *between* samplers. Some devices expose a whole and its
//! parts: amd_energy's `Esocket<n>` and per-core `Ecore<nnn>`, a PSU's `pin` and `pout<n>`,
//! corsair-psu's `power total` and its rails, amdgpu's `slowPPT` and `fastPPT` (the same APU
//! power averaged twice), xe's `card` and `pkg`. Such parts are left out by default; selected
//! by name beside their whole (`channels`), they are reported as telemetry in W or J, so they
//! are recorded but never summed.
//!
//! Settings: `root` (default `/sys/class/hwmon`), `devices` (hwmon device names or `hwmonN`
//! directory names to include), `channels` (labels, file stems such as `power1`, or full
//! channel names to include). A name that matches nothing, or an empty selection, is an error
//! that lists what was found. A file that cannot be read or parsed is an error of `open` or
//! `read` naming the file, never a 0.

use ipw_sampler_sdk::{
    export_sampler, read_each, Channel, ChannelKind, Domain, GaugeTiming, Reading, Sampler,
    POWER_LIMIT_UNIT,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Assumed refresh period of a device without `update_interval`. hwmon does not say how often
/// most drivers refresh; 0.1 s is no faster than the slow ones (PSUs, averaging meters), and a
/// period claimed too long only costs sampling rate, while one claimed too short would make the
/// host treat stale values as fresh.
const DEFAULT_UPDATE_PERIOD_S: f64 = 0.1;

/// Drivers whose power or energy files cover a CPU package (or its core/SoC rails).
const CPU_DRIVERS: &[&str] = &[
    "amd_energy",
    "zenpower",
    "zenergy",
    "k10temp",
    "fam15h_power",
];

/// Drivers of GPU boards.
const GPU_DRIVERS: &[&str] = &["amdgpu", "radeon", "nouveau", "i915", "xe"];

/// Per-device listing cap in error messages: amd_energy alone has a counter per core.
const LIST_CAP: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_root")]
    root: PathBuf,
    #[serde(default)]
    devices: Option<Vec<String>>,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

fn default_root() -> PathBuf {
    PathBuf::from("/sys/class/hwmon")
}

/// Which file of an index a channel reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    /// `energy<i>_input`, µJ counter.
    Energy,
    /// `power<i>_average`, µW.
    Averaged,
    /// `power<i>_input`, µW.
    Instant,
}

/// One readable power or energy file found during discovery, before selection.
struct Candidate {
    /// Index into `devices`.
    device: usize,
    index: u32,
    source: Source,
    label: Option<String>,
    /// Channel name, unique across all candidates (so selection does not rename channels).
    name: String,
}

impl Candidate {
    /// `energy<i>` or `power<i>`.
    fn stem(&self) -> String {
        match self.source {
            Source::Energy => format!("energy{}", self.index),
            Source::Averaged | Source::Instant => format!("power{}", self.index),
        }
    }

    fn file_name(&self) -> String {
        match self.source {
            Source::Energy => format!("energy{}_input", self.index),
            Source::Averaged => format!("power{}_average", self.index),
            Source::Instant => format!("power{}_input", self.index),
        }
    }

    fn label_or_stem(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.stem())
    }

    /// Whether a `channels` entry names this candidate.
    fn is_named(&self, wanted: &str) -> bool {
        [self.label_or_stem(), self.stem(), self.name.clone()]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(wanted))
    }
}

/// One `hwmonN` directory with a `name`.
struct Device {
    /// Directory name, `hwmonN`.
    hwmon: String,
    /// Contents of its `name` file (the driver's name for the chip).
    name: String,
    /// The directory holding its attribute files.
    base: PathBuf,
}

struct Sensor {
    file: PathBuf,
    channel: Channel,
}

/// The `hwmon` sampler: one channel per selected power or energy file.
pub struct Hwmon {
    sensors: Vec<Sensor>,
}

fn read_text(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                format!(
                    "cannot read {}: permission denied (most hwmon files are world-readable, but \
                     some drivers, e.g. amd_energy, make theirs root-only; run as root, or grant \
                     read access: sudo chmod a+r {})",
                    p.display(),
                    p.display()
                )
            } else {
                // ENODATA / EIO land here: a sensor that has no value now is an error, not 0.
                format!("cannot read {}: {e}", p.display())
            }
        })
}

/// An integer hwmon value (µW, µJ, ms).
fn read_int(p: &Path) -> Result<f64, String> {
    let t = read_text(p)?;
    t.parse::<i64>()
        .map(|v| v as f64)
        .map_err(|_| format!("{}: not a number: `{t}`", p.display()))
}

/// The numeric suffix of `hwmonN`, for a natural order (hwmon2 before hwmon10).
fn hwmon_number(dir_name: &str) -> u64 {
    dir_name
        .strip_prefix("hwmon")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Split `power3_average` into (`power`, 3, `_average`); `None` for other files.
fn parse_attr(file: &str) -> Option<(&str, u32, &str)> {
    let (kind, rest) = if let Some(r) = file.strip_prefix("power") {
        ("power", r)
    } else if let Some(r) = file.strip_prefix("energy") {
        ("energy", r)
    } else {
        return None;
    };
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    let index = rest[..end].parse().ok()?;
    Some((kind, index, &rest[end..]))
}

/// Keep characters that are safe in a channel name and in a file path; the rest become `-`.
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

/// A guess at what a sensor covers, from its driver's name and its label.
fn domain_of(device: &str, label: &str) -> Domain {
    let (d, l) = (device.to_ascii_lowercase(), label.to_ascii_lowercase());
    let memory = l.contains("dram") || l.contains("mem");
    if GPU_DRIVERS.contains(&d.as_str()) {
        return if memory {
            Domain::GpuMemory
        } else {
            Domain::Gpu
        };
    }
    if memory {
        return Domain::Dram;
    }
    if CPU_DRIVERS.contains(&d.as_str()) {
        return Domain::CpuPackage;
    }
    // PSU drivers (corsair-psu, pmbus and its many chips), ACPI power meters, ina2xx shunt
    // monitors and anything unknown: a board- or supply-level sensor is the likeliest reading,
    // and `system` makes ipw's overlap check warn beside any other sampler instead of letting
    // the same joules be counted twice in silence.
    Domain::System
}

/// Whether a label names the whole of what its device measures, so its siblings are parts of
/// it (see the module documentation).
fn is_whole(label: &str) -> bool {
    let l = label.to_ascii_lowercase();
    l.starts_with("esocket")
        || l.contains("total")
        || l == "slowppt"
        || l == "card"
        || l.strip_prefix("pin")
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// Where a device's attribute files are: `hwmonN/` itself, or `hwmonN/device/` for drivers
/// of the old style; `None` without a `name`.
fn attribute_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("device")]
        .into_iter()
        .find(|d| d.join("name").is_file())
}

/// `hwmon2 amdgpu: PPT (power1_average); hwmon1 k10temp: no power or energy files`.
fn describe_found(devices: &[Device], candidates: &[Candidate]) -> String {
    if devices.is_empty() {
        return "no hwmon devices".into();
    }
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mine: Vec<String> = candidates
                .iter()
                .filter(|c| c.device == i)
                .map(|c| format!("{} ({})", c.label_or_stem(), c.file_name()))
                .collect();
            let list = if mine.is_empty() {
                "no power or energy files".to_string()
            } else if mine.len() > LIST_CAP {
                format!(
                    "{} and {} more",
                    mine[..LIST_CAP].join(", "),
                    mine.len() - LIST_CAP
                )
            } else {
                mine.join(", ")
            };
            format!("{} {}: {list}", d.hwmon, d.name)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every hwmon device under `root` and every power/energy file it offers, one per index.
fn discover(root: &Path) -> Result<(Vec<Device>, Vec<Candidate>), String> {
    let entries =
        std::fs::read_dir(root).map_err(|e| format!("no hwmon at {}: {e}", root.display()))?;
    let mut dirs: Vec<(u64, String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (hwmon_number(&n), n, e.path())
        })
        .collect();
    dirs.sort();
    let mut devices = Vec::new();
    let mut candidates = Vec::new();
    for (_, hwmon, dir) in dirs {
        let Some(base) = attribute_dir(&dir) else {
            continue;
        };
        let Ok(name) = read_text(&base.join("name")) else {
            continue;
        };
        // Which kinds each index offers: (energy input, power average + its interval,
        // power input, power average without interval).
        let mut offers: BTreeMap<u32, [bool; 4]> = BTreeMap::new();
        let mut files: HashSet<String> = HashSet::new();
        for f in
            std::fs::read_dir(&base).map_err(|e| format!("cannot list {}: {e}", base.display()))?
        {
            let Ok(f) = f else { continue };
            files.insert(f.file_name().to_string_lossy().into_owned());
        }
        for f in &files {
            let Some((kind, index, suffix)) = parse_attr(f) else {
                continue;
            };
            let slot = offers.entry(index).or_default();
            match (kind, suffix) {
                ("energy", "_input") => slot[0] = true,
                ("power", "_average") => {
                    if files.contains(&format!("power{index}_average_interval")) {
                        slot[1] = true
                    } else {
                        slot[3] = true
                    }
                }
                ("power", "_input") => slot[2] = true,
                _ => {}
            }
        }
        let device = devices.len();
        for (index, o) in offers {
            let source = if o[0] {
                Source::Energy
            } else if o[1] {
                Source::Averaged
            } else if o[2] {
                Source::Instant
            } else if o[3] {
                Source::Averaged
            } else {
                continue;
            };
            let mut c = Candidate {
                device,
                index,
                source,
                label: None,
                name: String::new(),
            };
            // A label that cannot be read is treated as absent: the file stem still names the
            // channel, and the value file itself is checked before it is used.
            c.label = read_text(&base.join(format!("{}_label", c.stem())))
                .ok()
                .filter(|l| !l.is_empty());
            candidates.push(c);
        }
        devices.push(Device { hwmon, name, base });
    }
    // Names, unique across everything found, so a selection never changes a channel's name.
    let mut name_count: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &devices {
        *name_count.entry(d.name.as_str()).or_default() += 1;
    }
    let prefixes: Vec<String> = devices
        .iter()
        .map(|d| {
            if name_count[d.name.as_str()] > 1 {
                format!("{}-{}", sanitize(&d.name), d.hwmon)
            } else {
                sanitize(&d.name)
            }
        })
        .collect();
    let mut taken = HashSet::new();
    for c in &mut candidates {
        let base = format!("{}/{}", prefixes[c.device], sanitize(&c.label_or_stem()));
        let mut name = base.clone();
        if taken.contains(&name) {
            name = format!("{base}-{}", c.stem());
        }
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(name.clone());
        c.name = name;
    }
    Ok((devices, candidates))
}

impl Sampler for Hwmon {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("hwmon config: {e}"))?;
        let (devices, candidates) = discover(&cfg.root)?;
        let found = || {
            format!(
                "found under {}: {}",
                cfg.root.display(),
                describe_found(&devices, &candidates)
            )
        };
        let device_wanted = |d: &Device| {
            cfg.devices.as_ref().is_none_or(|list| {
                list.iter()
                    .any(|w| w.eq_ignore_ascii_case(&d.name) || w == &d.hwmon)
            })
        };
        if let Some(list) = &cfg.devices {
            for w in list {
                if !devices
                    .iter()
                    .any(|d| w.eq_ignore_ascii_case(&d.name) || w == &d.hwmon)
                {
                    return Err(format!("hwmon: no device `{w}`; {}", found()));
                }
            }
        }
        let in_devices: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| device_wanted(&devices[c.device]))
            .collect();
        if let Some(list) = &cfg.channels {
            for w in list {
                if !in_devices.iter().any(|c| c.is_named(w)) {
                    return Err(format!(
                        "hwmon: no channel `{w}` in the selected devices; {}",
                        found()
                    ));
                }
            }
        }
        let has_whole = |device: usize, among: &[&Candidate]| {
            among
                .iter()
                .any(|c| c.device == device && is_whole(&c.label_or_stem()))
        };
        let selected: Vec<&Candidate> = match &cfg.channels {
            Some(list) => in_devices
                .iter()
                .copied()
                .filter(|c| list.iter().any(|w| c.is_named(w)))
                .collect(),
            // By default a part is left out when its whole is there (see the module doc).
            None => in_devices
                .iter()
                .copied()
                .filter(|c| is_whole(&c.label_or_stem()) || !has_whole(c.device, &in_devices))
                .collect(),
        };
        if selected.is_empty() {
            return Err(format!(
                "hwmon: no power or energy sensor selected (devices: {}, channels: {}); {}",
                cfg.devices.as_ref().map_or("all".into(), |l| l.join(", ")),
                cfg.channels.as_ref().map_or("all".into(), |l| l.join(", ")),
                found()
            ));
        }
        let mut sensors = Vec::new();
        for c in &selected {
            let d = &devices[c.device];
            let interval_file = d.base.join("update_interval");
            let (update_period_s, update_text) = if interval_file.exists() {
                let ms = read_int(&interval_file)?;
                (ms / 1e3, format!("update interval {ms} ms"))
            } else {
                (
                    DEFAULT_UPDATE_PERIOD_S,
                    format!("update interval not exposed, assumed {DEFAULT_UPDATE_PERIOD_S} s"),
                )
            };
            let file = d.base.join(c.file_name());
            read_int(&file)?; // fail at open, with the reason, not at every read
            let (mut kind, how) = match c.source {
                // hwmon exposes no counter range (drivers such as amd_energy accumulate the
                // hardware's 32-bit counter into 64 bits themselves), so no wrap is declared;
                // a drop would still be caught by the host as a reset.
                Source::Energy => (
                    ChannelKind::EnergyCounter {
                        resolution_j: 1e-6,
                        wrap_j: None,
                    },
                    "µJ counter".to_string(),
                ),
                Source::Instant => (
                    ChannelKind::PowerGauge {
                        timing: GaugeTiming::Instant,
                        estimated: false,
                    },
                    "µW, instant".to_string(),
                ),
                Source::Averaged => {
                    let window_file = d.base.join(format!("power{}_average_interval", c.index));
                    let (window_s, how) = if window_file.exists() {
                        let ms = read_int(&window_file)?;
                        (ms / 1e3, format!("µW, averaged over {} s", ms / 1e3))
                    } else {
                        (
                            update_period_s,
                            format!(
                                "µW, averaging window not exposed, assumed to be the update \
                                 interval ({update_period_s} s)"
                            ),
                        )
                    };
                    (
                        ChannelKind::PowerGauge {
                            timing: GaugeTiming::Averaged { window_s },
                            estimated: false,
                        },
                        how,
                    )
                }
            };
            let mut domain = domain_of(&d.name, &c.label_or_stem());
            let mut device = format!(
                "{} ({}), {} ({how}), {update_text}",
                d.hwmon,
                d.name,
                c.file_name()
            );
            if !is_whole(&c.label_or_stem()) && has_whole(c.device, &selected) {
                let wholes: Vec<&str> = selected
                    .iter()
                    .filter(|w| w.device == c.device && is_whole(&w.label_or_stem()))
                    .map(|w| w.name.as_str())
                    .collect();
                let unit = if c.source == Source::Energy { "J" } else { "W" };
                kind = ChannelKind::Telemetry { unit: unit.into() };
                domain = Domain::Telemetry;
                device.push_str(&format!(
                    "; part of {}: telemetry in {unit}, not summed",
                    wholes.join(", ")
                ));
            }
            // A power gauge's cap is the most its device may draw: the ceiling the host lets a
            // coarsely sampled window's bound reach (see `POWER_LIMIT_UNIT`).
            let cap = d.base.join(format!("power{}_cap", c.index));
            let capped = matches!(kind, ChannelKind::PowerGauge { .. })
                && read_int(&cap).is_ok_and(|v| v > 0.0);
            let cap_channel = capped.then(|| Sensor {
                file: cap,
                channel: Channel {
                    name: format!("{}-cap", c.name),
                    domain: Domain::Telemetry,
                    device: Some(device.clone()),
                    kind: ChannelKind::Telemetry {
                        unit: POWER_LIMIT_UNIT.into(),
                    },
                    update_period_s,
                    accuracy: Default::default(),
                    shaped_by: None,
                },
            });
            sensors.push(Sensor {
                file,
                channel: Channel {
                    name: c.name.clone(),
                    domain,
                    device: Some(device),
                    kind,
                    update_period_s,
                    // hwmon carries no accuracy figure; each chip's datasheet differs.
                    accuracy: Default::default(),
                    shaped_by: None,
                },
            });
            sensors.extend(cap_channel);
        }
        Ok(Self { sensors })
    }

    fn channels(&self) -> Vec<Channel> {
        self.sensors.iter().map(|s| s.channel.clone()).collect()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        // µJ -> J and µW -> W alike.
        read_each(&self.sensors, out, |s| read_int(&s.file).map(|v| v * 1e-6))
    }
}

export_sampler!(Hwmon, "hwmon");

#[cfg(test)]
mod tests;
