//! `apple`: Apple Silicon energy through IOReport's "Energy Model" group (the counters
//! `powermetrics` itself reads, without root), or by running `powermetrics` (root).
//!
//! IOReport source (default): one cumulative energy counter per subsystem the chip reports at
//! open: `cpu` (the CPU total, else the sum of its clusters), `gpu`, `ane` (neural engine),
//! `dram`. A subsystem whose channel is absent from a later sample gets no reading, and the
//! read reports the absence by name: an absent channel is not zero watts.
//!
//! `source = "powermetrics"`: `cpu`, `gpu`, `ane` power gauges, each the mean over
//! `interval_ms` (default 500), and `combined-power` telemetry; a line powermetrics leaves
//! out gives no reading.
//!
//! Everything but the IOReport and process calls is portable and tested on any OS; on other
//! systems the sampler builds, loads and fails at `open` saying it needs Apple Silicon.

use ipw_sampler_sdk::{
    export_sampler, Channel, ChannelKind, Domain, GaugeTiming, Reading, Sampler,
};
use serde::Deserialize;

pub mod energy;
pub mod powermetrics;

#[cfg(target_os = "macos")]
mod macos;
#[cfg(test)]
mod tests;

use energy::{Subsystem, Update};
use powermetrics::PowerSample;

/// Settings.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `ioreport` (default) or `powermetrics`.
    #[serde(default)]
    pub source: Source,
    /// powermetrics' sample interval, milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
}

/// Where the figures come from.
#[derive(Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// IOReport's Energy Model counters (no root needed).
    #[default]
    Ioreport,
    /// The `powermetrics` tool's power lines (needs root).
    Powermetrics,
}

fn default_interval() -> u64 {
    500
}

/// The IOReport energy counters change with each sample IOReport takes; Apple does not
/// document the rate. 10 ms keeps the host from sampling faster than any plausible update.
const IOREPORT_PERIOD_S: f64 = 0.01;

fn domain(s: Subsystem) -> Domain {
    match s {
        Subsystem::Cpu => Domain::CpuPackage,
        Subsystem::Gpu => Domain::Gpu,
        Subsystem::Dram => Domain::Dram,
        // The SDK has no accelerator domain; the neural engine is a block of the SoC.
        Subsystem::Ane => Domain::Soc,
    }
}

/// The channels of the IOReport source: one energy counter per subsystem found at open.
pub fn energy_channels(subsystems: &[Subsystem]) -> Vec<Channel> {
    subsystems
        .iter()
        .map(|s| Channel {
            name: s.name().into(),
            domain: domain(*s),
            device: None,
            kind: ChannelKind::EnergyCounter {
                // IOReport counts in whole units of the channel's label; nJ is the finest
                // label seen, mJ the coarsest. Declare the coarsest: a bound, not a guess.
                resolution_j: 1e-3,
                // 64-bit integers in nJ wrap after ~584 years.
                wrap_j: None,
            },
            update_period_s: IOREPORT_PERIOD_S,
            // Apple declares no accuracy for these estimates-from-the-PMU: none is claimed.
            accuracy: Default::default(),
            shaped_by: None,
        })
        .collect()
}

/// Readings for one [`Update`] at time `t`, channels indexed as [`energy_channels`] lists
/// `subsystems`. Every subsystem present is pushed; any absent one then makes this an error
/// naming it and the channel that was missing.
pub fn energy_readings(
    subsystems: &[Subsystem],
    update: &Update,
    t: f64,
    out: &mut Vec<Reading>,
) -> Result<(), String> {
    for (s, joules) in &update.energy_j {
        if let Some(i) = subsystems.iter().position(|x| x == s) {
            out.push(Reading {
                channel: i as u32,
                timestamp_s: t,
                value: *joules,
            });
        }
    }
    if update.missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "apple: no reading for {} this time: IOReport's sample lacks {}",
        update
            .missing
            .iter()
            .map(|(s, _)| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        update
            .missing
            .iter()
            .map(|(s, c)| format!("`{c}` ({})", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The channels of the powermetrics source, in this order: `cpu`, `gpu`, `ane` gauges (mean
/// power over the interval) and `combined-power` telemetry (their sum: as a gauge it would
/// count the same joules twice).
pub fn powermetrics_channels(interval_s: f64) -> Vec<Channel> {
    let gauge = |s: Subsystem| Channel {
        name: s.name().into(),
        domain: domain(s),
        device: None,
        kind: ChannelKind::PowerGauge {
            timing: GaugeTiming::Averaged {
                window_s: interval_s,
            },
            estimated: false,
        },
        update_period_s: interval_s,
        accuracy: Default::default(),
        shaped_by: None,
    };
    vec![
        gauge(Subsystem::Cpu),
        gauge(Subsystem::Gpu),
        gauge(Subsystem::Ane),
        Channel {
            name: "combined-power".into(),
            domain: Domain::Telemetry,
            device: None,
            kind: ChannelKind::Telemetry { unit: "W".into() },
            update_period_s: interval_s,
            accuracy: Default::default(),
            shaped_by: None,
        },
    ]
}

/// Readings for one powermetrics sample completed at `t`; absent lines give none.
pub fn powermetrics_readings(s: &PowerSample, t: f64, out: &mut Vec<Reading>) {
    for (i, v) in [s.cpu_w, s.gpu_w, s.ane_w, s.combined_w].iter().enumerate() {
        if let Some(w) = v {
            out.push(Reading {
                channel: i as u32,
                timestamp_s: t,
                value: *w,
            });
        }
    }
}

/// The sampler.
pub struct Apple {
    #[cfg(target_os = "macos")]
    inner: macos::Inner,
}

/// Why `open` fails off Apple Silicon.
pub fn unsupported() -> String {
    format!(
        "apple: Apple Silicon only (IOReport and powermetrics exist on macOS on M-series Macs); this is {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

impl Sampler for Apple {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("apple config: {e}"))?;
        #[cfg(target_os = "macos")]
        {
            if std::env::consts::ARCH != "aarch64" {
                return Err(unsupported());
            }
            Ok(Apple {
                inner: macos::Inner::open(&cfg)?,
            })
        }
        #[cfg(not(target_os = "macos"))]
        {
            let _ = cfg;
            Err(unsupported())
        }
    }

    fn channels(&self) -> Vec<Channel> {
        #[cfg(target_os = "macos")]
        {
            self.inner.channels()
        }
        #[cfg(not(target_os = "macos"))]
        Vec::new()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        #[cfg(target_os = "macos")]
        {
            self.inner.read(out)
        }
        #[cfg(not(target_os = "macos"))]
        {
            let _ = out;
            Err(unsupported())
        }
    }
}

export_sampler!(Apple, "apple");
