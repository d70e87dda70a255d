//! IOReport "Energy Model" channels to per-subsystem energy counters. Portable: the macOS
//! part only turns IOReport samples into [`ChannelSample`]s.
//!
//! Channel names vary by chip (public tools report, among others): `CPU Energy` (the CPU
//! total), per-cluster `ECPU`/`PCPU`/`PCPU1` (M1) or `EACC_CPU`/`PACC0_CPU`/`PACC1_CPU` (M1
//! Pro/Max), per-core `EACC_CPU0`, `PACC0_CPU3`; `GPU Energy` or `GPU` (and a separate
//! `GPU SRAM`); `ANE` (`ANE0`.. on multi-die chips); `DRAM` (`DRAM0`..); `DIE_<n>_` prefixes on
//! Ultra chips. Units are `mJ`, `uJ` or `nJ`, per channel.

use std::collections::{BTreeMap, HashMap};

/// The group whose channels are energy.
pub const GROUP: &str = "Energy Model";

/// One channel of one IOReport sample.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSample {
    /// IOReport group, e.g. `Energy Model`.
    pub group: String,
    /// IOReport subgroup (may be empty).
    #[serde(default)]
    pub subgroup: String,
    /// Channel name, e.g. `CPU Energy`, `PACC0_CPU`, `GPU`, `ANE`, `DRAM`.
    pub channel: String,
    /// Unit label, e.g. `mJ`, `uJ`, `nJ`.
    pub unit: String,
    /// The integer value: cumulative, or the change since the previous sample.
    pub value: i64,
}

/// A part of the SoC with its own energy counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subsystem {
    /// CPU clusters.
    Cpu,
    /// GPU.
    Gpu,
    /// Neural engine.
    Ane,
    /// Memory.
    Dram,
}

impl Subsystem {
    /// The sampler's channel name for it.
    pub fn name(self) -> &'static str {
        match self {
            Subsystem::Cpu => "cpu",
            Subsystem::Gpu => "gpu",
            Subsystem::Ane => "ane",
            Subsystem::Dram => "dram",
        }
    }
}

/// Whether a channel is a subsystem's total, or one part (cluster, die) of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Total,
    Part,
}

/// `base` followed by nothing or by digits only.
fn numbered(name: &str, base: &str) -> bool {
    name.strip_prefix(base)
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// What a channel counts, if it is one this sampler uses. Per-core channels (`PACC0_CPU3`)
/// and sub-blocks (`GPU SRAM`, `ISP`, display, media) are not used: the totals or the
/// clusters already hold the cores, and the rest are not a subsystem the host reports.
fn classify(name: &str) -> Option<(Subsystem, Role)> {
    // Multi-die chips prefix each die's channels; each die's total is a part of the whole
    // only in the sense that the totals of all dies are summed, which is what `Total` does.
    let n = match name.strip_prefix("DIE_") {
        Some(rest) => rest.split_once('_').map_or(name, |(_, n)| n),
        None => name,
    };
    if n.ends_with("CPU Energy") {
        return Some((Subsystem::Cpu, Role::Total));
    }
    // Clusters: ECPU, PCPU, PCPU1, MCPU0; EACC_CPU, PACC0_CPU, PACC1_CPU.
    let cluster = ["ECPU", "PCPU", "MCPU"].iter().any(|b| numbered(n, b))
        || n.strip_suffix("_CPU")
            .is_some_and(|c| ["EACC", "PACC", "MACC"].iter().any(|b| numbered(c, b)));
    if cluster {
        return Some((Subsystem::Cpu, Role::Part));
    }
    if n.ends_with("GPU Energy") {
        return Some((Subsystem::Gpu, Role::Total));
    }
    if numbered(n, "GPU") {
        return Some((Subsystem::Gpu, Role::Part));
    }
    if n == "ANE" || n.ends_with("ANE Energy") {
        return Some((Subsystem::Ane, Role::Total));
    }
    if numbered(n, "ANE") {
        return Some((Subsystem::Ane, Role::Part));
    }
    if n == "DRAM" || n.ends_with("DRAM Energy") {
        return Some((Subsystem::Dram, Role::Total));
    }
    if numbered(n, "DRAM") {
        return Some((Subsystem::Dram, Role::Part));
    }
    None
}

/// Joules per unit of an IOReport energy unit label; `None` for a label this code does not
/// know (never guessed: a wrong scale is a wrong measurement).
pub fn joules_per_unit(unit: &str) -> Option<f64> {
    match unit.trim() {
        "J" => Some(1.0),
        "mJ" => Some(1e-3),
        "uJ" | "µJ" | "μJ" => Some(1e-6),
        "nJ" => Some(1e-9),
        _ => None,
    }
}

/// A channel's identity across samples.
type Key = (String, String);

fn key(c: &ChannelSample) -> Key {
    (c.subgroup.clone(), c.channel.clone())
}

/// What one sample added.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Update {
    /// Each subsystem whose channels were all present: its cumulative energy, joules.
    pub energy_j: Vec<(Subsystem, f64)>,
    /// Each subsystem seen at the start with a channel absent from this sample, and that
    /// channel. It has no reading this time: absent is not zero.
    pub missing: Vec<(Subsystem, String)>,
}

/// Per-subsystem cumulative energy from successive samples of the Energy Model group.
#[derive(Debug)]
pub struct EnergyModel {
    /// The channels each subsystem is summed from, fixed by the first sample so a later sample
    /// cannot switch between a total and its clusters (which would double count or drop).
    sources: BTreeMap<Subsystem, Vec<Key>>,
    total_j: BTreeMap<Subsystem, f64>,
    /// For cumulative samples: each channel's last value.
    last: HashMap<Key, i64>,
}

impl EnergyModel {
    /// Decide, from the first sample, which subsystems exist and which channels make each:
    /// its totals where the chip reports one, else the sum of its clusters (never both).
    pub fn new(first: &[ChannelSample]) -> Result<Self, String> {
        let mut totals: BTreeMap<Subsystem, Vec<Key>> = BTreeMap::new();
        let mut parts: BTreeMap<Subsystem, Vec<Key>> = BTreeMap::new();
        for c in first.iter().filter(|c| c.group == GROUP) {
            if let Some((s, role)) = classify(&c.channel) {
                let to = if role == Role::Total {
                    &mut totals
                } else {
                    &mut parts
                };
                to.entry(s).or_default().push(key(c));
            }
        }
        let mut sources = parts;
        sources.extend(totals);
        if sources.is_empty() {
            return Err(format!(
                "apple: no CPU, GPU, ANE or DRAM channel in IOReport's `{GROUP}` group ({} channels seen)",
                first.len()
            ));
        }
        let total_j = sources.keys().map(|s| (*s, 0.0)).collect();
        Ok(Self {
            sources,
            total_j,
            last: HashMap::new(),
        })
    }

    /// The subsystems found in the first sample, in channel order.
    pub fn subsystems(&self) -> Vec<Subsystem> {
        self.sources.keys().copied().collect()
    }

    /// Add a sample of changes since the previous one (`IOReportCreateSamplesDelta`).
    pub fn add_deltas(&mut self, sample: &[ChannelSample]) -> Result<Update, String> {
        self.add(sample, false)
    }

    /// Add a sample of cumulative values (`IOReportCreateSamples`). The first one only sets
    /// the starting point; a channel absent for a while counts its gap when it returns.
    pub fn add_cumulative(&mut self, sample: &[ChannelSample]) -> Result<Update, String> {
        self.add(sample, true)
    }

    fn add(&mut self, sample: &[ChannelSample], cumulative: bool) -> Result<Update, String> {
        let by_key: HashMap<Key, &ChannelSample> = sample
            .iter()
            .filter(|c| c.group == GROUP)
            .map(|c| (key(c), c))
            .collect();
        let mut update = Update::default();
        for (s, keys) in &self.sources {
            if let Some(k) = keys.iter().find(|k| !by_key.contains_key(*k)) {
                update.missing.push((*s, k.1.clone()));
                continue;
            }
            let mut joules = 0.0;
            let mut seen = Vec::new();
            for k in keys {
                let c = by_key[k];
                let scale = joules_per_unit(&c.unit).ok_or_else(|| {
                    format!(
                        "apple: channel `{}` ({}) is in unit `{}`, not one of J, mJ, uJ, nJ",
                        c.channel,
                        s.name(),
                        c.unit
                    )
                })?;
                let delta = if cumulative {
                    match self.last.get(k) {
                        Some(prev) => c.value - prev,
                        None => 0,
                    }
                } else {
                    c.value
                };
                if delta < 0 {
                    return Err(format!(
                        "apple: channel `{}` ({}) went back by {} {}: an energy counter only grows",
                        c.channel,
                        s.name(),
                        -delta,
                        c.unit
                    ));
                }
                joules += delta as f64 * scale;
                seen.push((k.clone(), c.value));
            }
            if cumulative {
                self.last.extend(seen);
            }
            let t = self.total_j.get_mut(s).expect("every source has a total");
            *t += joules;
            update.energy_j.push((*s, *t));
        }
        Ok(update)
    }
}
