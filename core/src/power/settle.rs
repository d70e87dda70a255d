//! Settled hardware: before the idle baseline and before a model's first measured query, wait
//! until the measured devices have settled (power steady, temperature no longer rising), so
//! that a figure is not taken on a device still warming up from model load or from the
//! previous model. Read from the samplers' own readings (`power.jsonl`'s tail), bounded by a
//! maximum wait; what was waited and seen goes into the manifest.

use crate::config::SettleConfig;
use crate::records::{PowerLine, SamplerInfo, SettleRecord};
use ipw_sampler_sdk::{ChannelKind, Domain};
use std::collections::{BTreeMap, HashMap};

/// Power within this many watts counts as steady whatever the share (an idle device's noise).
const STEADY_FLOOR_W: f64 = 1.0;

/// The channels a settle watches: energy channels of the domains it applies to, and every
/// temperature (`celsius`) channel of the samplers that have one.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// `sampler/channel` of energy channels, and whether each is a counter.
    power: Vec<(String, bool)>,
    /// `sampler/channel` of temperature channels.
    temperature: Vec<String>,
}

impl Watched {
    /// What to watch among `samplers`' channels: energy channels of the accelerators (GPU, GPU
    /// memory, SoC) and of the domains `cfg.domains` adds; temperatures of their samplers.
    pub fn of(samplers: &[SamplerInfo], cfg: &SettleConfig) -> Self {
        let mut w = Watched::default();
        for s in samplers {
            let mut any = false;
            for c in &s.channels {
                let counter = match c.kind {
                    ChannelKind::EnergyCounter { .. } => true,
                    ChannelKind::PowerGauge { .. } => false,
                    ChannelKind::Telemetry { .. } => continue,
                };
                let named = cfg.domains.iter().any(|d| d == c.domain.name());
                let wanted =
                    matches!(c.domain, Domain::Gpu | Domain::GpuMemory | Domain::Soc) || named;
                if wanted {
                    w.power.push((format!("{}/{}", s.name, c.name), counter));
                    any = true;
                }
            }
            if any {
                w.temperature.extend(
                    s.channels
                        .iter()
                        .filter(|c| matches!(&c.kind, ChannelKind::Telemetry { unit } if unit == "celsius"))
                        .map(|c| format!("{}/{}", s.name, c.name)),
                );
            }
        }
        w
    }

    /// Nothing to watch: no settle.
    pub fn is_empty(&self) -> bool {
        self.power.is_empty()
    }

    /// Whether the devices are settled at `now` by `lines` (readings of this session), and the
    /// power and temperatures seen over the last window. `None` until every watched channel
    /// has readings spanning a whole window.
    pub fn judge(&self, lines: &[PowerLine], now: f64, cfg: &SettleConfig) -> Option<Judged> {
        let from = now - cfg.window_s;
        let mut series: HashMap<&str, Vec<(f64, f64)>> = HashMap::new();
        for l in lines {
            if let Some(v) = l.v.filter(|v| v.is_finite()) {
                series.entry(l.channel.as_str()).or_default().push((l.t, v));
            }
        }
        for s in series.values_mut() {
            s.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let window = |name: &str| -> Option<Vec<(f64, f64)>> {
            let s = series.get(name)?;
            // The window must be covered: a reading at or before its start.
            let first = s.iter().rposition(|&(t, _)| t <= from)?;
            Some(s[first..].to_vec())
        };
        let mut judged = Judged {
            settled: true,
            ..Judged::default()
        };
        for (name, counter) in &self.power {
            let w = window(name)?;
            let powers: Vec<f64> = if *counter {
                w.windows(2)
                    .filter(|p| p[1].0 > p[0].0)
                    .map(|p| (p[1].1 - p[0].1) / (p[1].0 - p[0].0))
                    .collect()
            } else {
                w.iter().map(|&(_, v)| v).collect()
            };
            if powers.is_empty() {
                return None;
            }
            let mean = powers.iter().sum::<f64>() / powers.len() as f64;
            let (lo, hi) = powers
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &p| {
                    (a.min(p), b.max(p))
                });
            if hi - lo > (cfg.power_tolerance * mean.abs()).max(STEADY_FLOOR_W) {
                judged.settled = false;
            }
            judged.power_w.insert(name.clone(), mean);
        }
        for name in &self.temperature {
            let Some(w) = window(name) else {
                continue; // a sensor that reads nothing does not hold the run
            };
            let rise = rise_over(&w) * cfg.window_s;
            if rise > cfg.temperature_rise_c {
                judged.settled = false;
            }
            if let Some(&(_, last)) = w.last() {
                judged.temperature_c.insert(name.clone(), last);
            }
        }
        Some(judged)
    }
}

/// What one look at the readings found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judged {
    /// Power steady and temperatures not rising.
    pub settled: bool,
    /// Mean power per watched energy channel over the window, watts.
    pub power_w: BTreeMap<String, f64>,
    /// Last temperature per watched channel, °C.
    pub temperature_c: BTreeMap<String, f64>,
}

impl Judged {
    /// The manifest's record of a settle that waited `waited_s` before `before`.
    pub fn record(self, before: &str, waited_s: f64) -> SettleRecord {
        SettleRecord {
            before: before.into(),
            waited_s,
            settled: self.settled,
            power_w: self.power_w,
            temperature_c: self.temperature_c,
        }
    }
}

/// Least-squares slope of `(t, v)`, per second (0 with fewer than two distinct times).
fn rise_over(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mt, mv) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(t, v)| (a + t / n, b + v / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), &(t, v)| {
        (a + (t - mt) * (v - mv), b + (t - mt) * (t - mt))
    });
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SettleConfig {
        SettleConfig::default()
    }

    fn lines(channel: &str, f: impl Fn(f64) -> f64, until: f64) -> Vec<PowerLine> {
        (0..=(until * 10.0) as usize)
            .map(|i| i as f64 / 10.0)
            .map(|t| PowerLine {
                session: 0,
                channel: channel.into(),
                t,
                v: Some(f(t)),
                error: None,
            })
            .collect()
    }

    fn watched() -> Watched {
        Watched {
            power: vec![("nvml/gpu0".into(), true)],
            temperature: vec!["nvml/gpu0-temp".into()],
        }
    }

    #[test]
    fn a_warming_device_is_not_settled_until_its_temperature_stops_rising() {
        let c = cfg();
        let mut all = lines("nvml/gpu0", |t| 200.0 * t, 20.0); // a 200 W counter
                                                               // 40 °C rising 2 °C/s until t = 10 s, then flat.
        all.extend(lines("nvml/gpu0-temp", |t| 40.0 + 2.0 * t.min(10.0), 20.0));
        let at = |now: f64| {
            let seen: Vec<PowerLine> = all.iter().filter(|l| l.t <= now).cloned().collect();
            watched().judge(&seen, now, &c)
        };
        assert_eq!(at(1.0), None, "less than a window of readings");
        assert!(!at(8.0).unwrap().settled, "still heating");
        let later = at(10.0 + c.window_s + 0.1).unwrap();
        assert!(later.settled, "{later:?}");
        assert!((later.power_w["nvml/gpu0"] - 200.0).abs() < 1e-6);
        assert_eq!(later.temperature_c["nvml/gpu0-temp"], 60.0);
    }

    #[test]
    fn unsteady_power_is_not_settled() {
        let c = cfg();
        // A counter whose power swings 150 <-> 250 W each second.
        let mut e = 0.0;
        let mut prev = 0.0;
        let all: Vec<PowerLine> = lines("nvml/gpu0", |_| 0.0, 10.0)
            .into_iter()
            .map(|mut l| {
                let p = if (l.t as u64).is_multiple_of(2) {
                    150.0
                } else {
                    250.0
                };
                e += p * (l.t - prev);
                prev = l.t;
                l.v = Some(e);
                l
            })
            .collect();
        let w = Watched {
            power: vec![("nvml/gpu0".into(), true)],
            temperature: vec![],
        };
        assert!(!w.judge(&all, 10.0, &c).unwrap().settled);
    }
}
