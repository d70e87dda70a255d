//! Channel descriptions: what a channel measures and how its values must be interpreted.
//! Sent to the host as JSON by `describe`.

use serde::{Deserialize, Serialize};

/// The power domain a channel covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// A whole GPU board.
    Gpu,
    /// GPU memory only.
    GpuMemory,
    /// A CPU package (socket).
    CpuPackage,
    /// DRAM attached to a socket.
    Dram,
    /// A system on chip (Apple silicon, mobile).
    Soc,
    /// The whole machine (wall meter).
    System,
    /// Not an energy domain: temperature, clocks, memory use, limits.
    Telemetry,
}

impl Domain {
    /// Its name as manifests and records spell it (`gpu`, `cpu-package`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Domain::Gpu => "gpu",
            Domain::GpuMemory => "gpu-memory",
            Domain::CpuPackage => "cpu-package",
            Domain::Dram => "dram",
            Domain::Soc => "soc",
            Domain::System => "system",
            Domain::Telemetry => "telemetry",
        }
    }
}

/// How a power gauge's values relate to time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "timing", rename_all = "kebab-case")]
pub enum GaugeTiming {
    /// The power at the timestamp.
    Instant,
    /// The mean power over the `window_s` seconds before the timestamp.
    Averaged {
        /// Averaging window in seconds.
        window_s: f64,
    },
    /// The mean power since the previous reading of this channel.
    IntervalMean,
}

/// How to interpret a channel's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ChannelKind {
    /// A cumulative energy counter, in joules.
    EnergyCounter {
        /// Smallest step of the counter, joules.
        resolution_j: f64,
        /// The counter wraps to 0 after this many joules, if it wraps.
        wrap_j: Option<f64>,
    },
    /// A power reading, in watts.
    PowerGauge {
        /// How the value relates to time.
        #[serde(flatten)]
        timing: GaugeTiming,
        /// True when the value is modelled, not measured (e.g. from CPU utilisation).
        estimated: bool,
    },
    /// Context that is not energy (temperature, clock, memory, power limit).
    Telemetry {
        /// Unit, e.g. `celsius`, `MHz`, `bytes`, `W`.
        unit: String,
    },
}

impl ChannelKind {
    /// Its values are modelled, not measured (a power gauge that says so).
    pub fn is_estimated(&self) -> bool {
        matches!(
            self,
            ChannelKind::PowerGauge {
                estimated: true,
                ..
            }
        )
    }
}

/// One channel of a sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// Unique within the sampler, e.g. `gpu0`, `cpu-package0`, `dram0`.
    pub name: String,
    /// What it covers.
    pub domain: Domain,
    /// Device identity (GPU UUID, PCI bus id, socket number) where known.
    pub device: Option<String>,
    /// How to read it.
    pub kind: ChannelKind,
    /// How often the underlying value changes, seconds. The host never samples faster.
    pub update_period_s: f64,
    /// How far a value may be from the truth, as the device's maker (or, for an estimate, the
    /// model) declares. The host widens every energy bound by it. Absent: nothing declared.
    #[serde(default, skip_serializing_if = "Accuracy::is_none")]
    pub accuracy: Accuracy,
    /// For an energy counter: the name of a channel of the same sampler that reads instant
    /// power (watts) at about the same times, e.g. NVML's `gpu0-power` beside `gpu0`. The host
    /// uses it to shape the counter's energy inside each interval between two counter reads,
    /// so a window's edges do not smear a step in power across the whole interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaped_by: Option<String>,
}

/// A channel's declared error: `relative` x |value| + `absolute_w` (for a counter, of its mean
/// power between reads). Both 0 when nothing is declared.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// Relative error, e.g. 0.05 for +-5%.
    #[serde(default)]
    pub relative: f64,
    /// Absolute error of a power value, watts.
    #[serde(default)]
    pub absolute_w: f64,
}

impl Accuracy {
    /// Nothing declared.
    pub fn is_none(&self) -> bool {
        self.relative == 0.0 && self.absolute_w == 0.0
    }

    /// +-`relative` x value.
    pub fn relative(relative: f64) -> Self {
        Accuracy {
            relative,
            absolute_w: 0.0,
        }
    }
}

#[cfg(test)]
mod domain_names {
    use super::Domain;

    #[test]
    fn a_domain_name_is_its_serialised_name() {
        for d in [
            Domain::Gpu,
            Domain::GpuMemory,
            Domain::CpuPackage,
            Domain::Dram,
            Domain::Soc,
            Domain::System,
            Domain::Telemetry,
        ] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.name());
        }
    }
}
