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
//! `source = "recorded"` with `file`: replays IOReport samples recorded earlier (JSON lines
//! `{"t": seconds since the first, "channels": [{"group", "subgroup", "channel", "unit",
//! "value"}]}`, cumulative values) through the same channel logic, on any OS: for analysing a
//! capture made on a Mac, and for running the sampler through `ipw sampler check` on Linux.
//! A sample is released once its time has passed.
//!
//! Everything but the IOReport and process calls is portable and tested on any OS; on other
//! systems the live sources fail at `open` saying they need Apple Silicon.

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
    /// `recorded`: the JSON-lines file of samples.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
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
    /// IOReport samples recorded earlier, from `file` (any OS).
    Recorded,
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
pub struct Apple(Backend);

enum Backend {
    /// Live IOReport or powermetrics.
    #[cfg(target_os = "macos")]
    Live(macos::Inner),
    /// Recorded IOReport samples.
    Recorded(Recorded),
}

/// One recorded IOReport sample.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedSample {
    t: f64,
    channels: Vec<energy::ChannelSample>,
}

/// Recorded IOReport samples played back on the host's clock from `open`.
pub struct Recorded {
    model: energy::EnergyModel,
    subsystems: Vec<Subsystem>,
    samples: Vec<RecordedSample>,
    next: usize,
    t0: f64,
}

impl Recorded {
    fn open(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("apple: cannot read {}: {e}", path.display()))?;
        let mut samples = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let s: RecordedSample = serde_json::from_str(line)
                .map_err(|e| format!("apple: {}:{}: {e}", path.display(), i + 1))?;
            if !s.t.is_finite() || samples.last().is_some_and(|p: &RecordedSample| s.t < p.t) {
                return Err(format!(
                    "apple: {}:{}: `t` must be finite and never go back",
                    path.display(),
                    i + 1
                ));
            }
            samples.push(s);
        }
        let first = samples
            .first()
            .ok_or_else(|| format!("apple: {}: no samples", path.display()))?;
        let mut model = energy::EnergyModel::new(&first.channels)?;
        model.add_cumulative(&first.channels)?;
        let subsystems = model.subsystems();
        Ok(Self {
            model,
            subsystems,
            samples,
            next: 1,
            t0: ipw_sampler_sdk::monotonic_now(),
        })
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        let now = ipw_sampler_sdk::monotonic_now() - self.t0;
        let mut result = Ok(());
        while self.next < self.samples.len() && self.samples[self.next].t <= now {
            let s = &self.samples[self.next];
            self.next += 1;
            let update = self.model.add_cumulative(&s.channels)?;
            if let Err(e) = energy_readings(&self.subsystems, &update, self.t0 + s.t, out) {
                result = Err(e);
            }
        }
        result
    }
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
        if cfg.source == Source::Recorded {
            let file = cfg
                .file
                .as_deref()
                .ok_or("apple: source = \"recorded\" needs `file`")?;
            return Ok(Apple(Backend::Recorded(Recorded::open(file)?)));
        }
        #[cfg(target_os = "macos")]
        {
            if std::env::consts::ARCH != "aarch64" {
                return Err(unsupported());
            }
            Ok(Apple(Backend::Live(macos::Inner::open(&cfg)?)))
        }
        #[cfg(not(target_os = "macos"))]
        {
            Err(unsupported())
        }
    }

    fn channels(&self) -> Vec<Channel> {
        match &self.0 {
            #[cfg(target_os = "macos")]
            Backend::Live(inner) => inner.channels(),
            Backend::Recorded(r) => energy_channels(&r.subsystems),
        }
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        match &mut self.0 {
            #[cfg(target_os = "macos")]
            Backend::Live(inner) => inner.read(out),
            Backend::Recorded(r) => r.read(out),
        }
    }
}

export_sampler!(Apple, "apple");
