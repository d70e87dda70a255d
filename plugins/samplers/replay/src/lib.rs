//! `replay`: plays back a recorded power or energy trace, so a user with an external wall meter
//! can import its log, and tests have exact ground truth.
//!
//! Settings: `file` (CSV with a header, or JSONL; required), `kind` = `power` (watts, default)
//! or `energy` (cumulative joules), `time_field` (default `t`, seconds), `value_field` (default
//! `value`), `time_base` = `open` (trace time 0 is when the sampler opens, default) or
//! `monotonic` (trace times are already on CLOCK_MONOTONIC) or `unix` (Unix seconds, e.g. a wall
//! meter's own log; mapped onto the monotonic clock when the sampler opens), `timing` for power = `instant`
//! (default) | `interval-mean` | `averaged` with `window_s`, `wrap_j` for energy, `channel`
//! (default `trace`), `domain` (default `system`), `update_period_s` (default: the median step of
//! the trace), `accuracy_rel` / `accuracy_w` (the meter's declared error: relative, and watts;
//! default 0), `max_w` (the most the metered device can draw: a `<channel>-max` channel of unit
//! `power-limit-w`, the ceiling of the trace's bounds between coarse readings). A reading is
//! released once its time has passed.

use ipw_sampler_sdk::{
    export_sampler, monotonic_now, Accuracy, Channel, ChannelKind, Domain, GaugeTiming, Reading,
    Sampler, POWER_LIMIT_UNIT,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    file: std::path::PathBuf,
    #[serde(default = "power")]
    kind: String,
    #[serde(default = "t")]
    time_field: String,
    #[serde(default = "value")]
    value_field: String,
    #[serde(default = "open")]
    time_base: String,
    #[serde(default)]
    timing: Option<String>,
    #[serde(default)]
    window_s: Option<f64>,
    #[serde(default)]
    wrap_j: Option<f64>,
    #[serde(default = "trace")]
    channel: String,
    #[serde(default)]
    domain: Option<Domain>,
    #[serde(default)]
    update_period_s: Option<f64>,
    #[serde(default)]
    accuracy_rel: f64,
    #[serde(default)]
    accuracy_w: f64,
    #[serde(default)]
    max_w: Option<f64>,
}

fn power() -> String {
    "power".into()
}
fn t() -> String {
    "t".into()
}
fn value() -> String {
    "value".into()
}
fn open() -> String {
    "open".into()
}
fn trace() -> String {
    "trace".into()
}

struct Replay {
    points: Vec<(f64, f64)>,
    next: usize,
    channel: Channel,
    /// The declared ceiling and its channel, reported with every reading.
    max: Option<(f64, Channel)>,
}

fn load(cfg: &Config) -> Result<Vec<(f64, f64)>, String> {
    let path = &cfg.file;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("replay: cannot read {}: {e}", path.display()))?;
    let is_csv = path.extension().is_some_and(|e| e == "csv");
    let mut points = Vec::new();
    if is_csv {
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| format!("replay: {}: no column `{name}` in header", path.display()))
        };
        let (ti, vi) = (col(&cfg.time_field)?, col(&cfg.value_field)?);
        for (n, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            let num = |i: usize| cells.get(i).and_then(|c| c.parse::<f64>().ok());
            match (num(ti), num(vi)) {
                (Some(t), Some(v)) => points.push((t, v)),
                _ => {
                    return Err(format!(
                        "replay: {}:{}: expected numbers in `{}` and `{}`",
                        path.display(),
                        n + 2,
                        cfg.time_field,
                        cfg.value_field
                    ))
                }
            }
        }
    } else {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("replay: {}:{}: {e}", path.display(), n + 1))?;
            let num = |k: &str| v.get(k).and_then(Value::as_f64);
            match (num(&cfg.time_field), num(&cfg.value_field)) {
                (Some(t), Some(x)) => points.push((t, x)),
                _ => {
                    return Err(format!(
                        "replay: {}:{}: expected numbers in `{}` and `{}`",
                        path.display(),
                        n + 1,
                        cfg.time_field,
                        cfg.value_field
                    ))
                }
            }
        }
    }
    if points.len() < 2 {
        return Err(format!(
            "replay: {}: need at least two samples",
            path.display()
        ));
    }
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(points)
}

impl Sampler for Replay {
    fn open(config: &Value) -> Result<Self, String> {
        let cfg: Config =
            serde_json::from_value(config.clone()).map_err(|e| format!("replay config: {e}"))?;
        let mut points = load(&cfg)?;
        match cfg.time_base.as_str() {
            "open" => {
                let t0 = monotonic_now();
                for p in &mut points {
                    p.0 += t0;
                }
            }
            "monotonic" => {}
            "unix" => {
                // A wall meter's log: map Unix seconds onto the monotonic clock with one paired
                // reading of both (the meter's own clock error is the user's to state).
                let mono = monotonic_now();
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| format!("replay: the system clock is before 1970: {e}"))?
                    .as_secs_f64();
                for p in &mut points {
                    p.0 += mono - unix;
                }
            }
            other => {
                return Err(format!(
                    "replay: time_base `{other}`: use `open`, `monotonic` or `unix`"
                ))
            }
        }
        let mut steps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
        steps.sort_by(f64::total_cmp);
        let period = cfg.update_period_s.unwrap_or(steps[steps.len() / 2]);
        let kind = match cfg.kind.as_str() {
            "energy" => ChannelKind::EnergyCounter { resolution_j: 0.0, wrap_j: cfg.wrap_j },
            "power" => ChannelKind::PowerGauge {
                timing: match (cfg.timing.as_deref(), cfg.window_s) {
                    (None | Some("instant"), _) => GaugeTiming::Instant,
                    (Some("interval-mean"), _) => GaugeTiming::IntervalMean,
                    (Some("averaged"), Some(window_s)) => GaugeTiming::Averaged { window_s },
                    (Some(other), _) => return Err(format!("replay: timing `{other}`: use instant, interval-mean or averaged (with window_s)")),
                },
                estimated: false,
            },
            other => return Err(format!("replay: kind `{other}`: use `power` or `energy`")),
        };
        let channel = Channel {
            name: cfg.channel.clone(),
            domain: cfg.domain.unwrap_or(Domain::System),
            device: Some(cfg.file.display().to_string()),
            kind,
            update_period_s: period,
            accuracy: Accuracy {
                relative: cfg.accuracy_rel,
                absolute_w: cfg.accuracy_w,
            },
            shaped_by: None,
        };
        let max = match cfg.max_w {
            None => None,
            Some(w) if !(w.is_finite() && w > 0.0) => {
                return Err(format!("replay: max_w {w}: a power in watts above 0"))
            }
            Some(w) => Some((
                w,
                Channel {
                    name: format!("{}-max", cfg.channel),
                    domain: Domain::Telemetry,
                    device: channel.device.clone(),
                    kind: ChannelKind::Telemetry {
                        unit: POWER_LIMIT_UNIT.into(),
                    },
                    update_period_s: period,
                    accuracy: Accuracy::default(),
                    shaped_by: None,
                },
            )),
        };
        Ok(Self {
            points,
            next: 0,
            channel,
            max,
        })
    }

    fn channels(&self) -> Vec<Channel> {
        let mut out = vec![self.channel.clone()];
        out.extend(self.max.as_ref().map(|(_, c)| c.clone()));
        out
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        let now = monotonic_now();
        while self.next < self.points.len() && self.points[self.next].0 <= now {
            let (t, v) = self.points[self.next];
            out.push(Reading {
                channel: 0,
                timestamp_s: t,
                value: v,
            });
            if let Some((w, _)) = self.max {
                out.push(Reading {
                    channel: 1,
                    timestamp_s: t,
                    value: w,
                });
            }
            self.next += 1;
        }
        Ok(())
    }
}

export_sampler!(Replay, "replay");
