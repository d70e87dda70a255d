//! `cpu-estimate`: CPU power modelled from utilisation, for machines with no power counter.
//!
//! power = sockets x `tdp_w` x (`idle_fraction` + (1 - `idle_fraction`) x utilisation), where
//! utilisation is the busy share of `/proc/stat` CPU time since the previous reading. The
//! channel is an `interval-mean` power gauge marked **estimated**: every figure built on it is
//! labelled estimated. Settings: `tdp_w` (per socket, default 65), `idle_fraction` (default
//! 0.3), `sockets` (default: distinct `physical id`s in /proc/cpuinfo), `proc_root` (default
//! `/proc`, for tests), `model_error` (the relative error the model declares, default 0.3; it
//! widens every energy bound built on this channel).

use ipw_sampler_sdk::{
    export_sampler, monotonic_now, Accuracy, Channel, ChannelKind, Domain, GaugeTiming, Reading,
    Sampler,
};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_tdp")]
    tdp_w: f64,
    #[serde(default = "default_idle")]
    idle_fraction: f64,
    #[serde(default)]
    sockets: Option<u32>,
    #[serde(default = "default_proc")]
    proc_root: PathBuf,
    #[serde(default = "default_model_error")]
    model_error: f64,
}

/// A linear utilisation model against a nominal TDP misses frequency scaling, turbo and
/// memory-bound phases; +-30% is the error it declares (every bound built on it says so).
fn default_model_error() -> f64 {
    0.3
}

fn default_tdp() -> f64 {
    65.0
}
fn default_idle() -> f64 {
    0.3
}
fn default_proc() -> PathBuf {
    PathBuf::from("/proc")
}

/// CPU times (busy, total) in jiffies from the aggregate `cpu` line of /proc/stat.
fn cpu_times(proc_root: &std::path::Path) -> Result<(u64, u64), String> {
    let path = proc_root.join("stat");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| format!("{}: no `cpu` line", path.display()))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return Err(format!("{}: malformed `cpu` line", path.display()));
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice)
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Ok((total - idle, total))
}

struct CpuEstimate {
    cfg: Config,
    sockets: u32,
    last: (u64, u64),
    first: Option<f64>,
}

impl CpuEstimate {
    fn power(&self, util: f64) -> f64 {
        self.sockets as f64
            * self.cfg.tdp_w
            * (self.cfg.idle_fraction + (1.0 - self.cfg.idle_fraction) * util.clamp(0.0, 1.0))
    }
}

impl Sampler for CpuEstimate {
    fn open(config: &serde_json::Value) -> Result<Self, String> {
        let cfg: Config = serde_json::from_value(config.clone())
            .map_err(|e| format!("cpu-estimate config: {e}"))?;
        if !cfg.tdp_w.is_finite()
            || cfg.tdp_w <= 0.0
            || !(0.0..=1.0).contains(&cfg.idle_fraction)
            || !(0.0..=1.0).contains(&cfg.model_error)
        {
            return Err(
                "cpu-estimate: tdp_w must be > 0, idle_fraction and model_error in [0, 1]".into(),
            );
        }
        let sockets = cfg.sockets.unwrap_or_else(|| {
            let info = std::fs::read_to_string(cfg.proc_root.join("cpuinfo")).unwrap_or_default();
            let ids: std::collections::BTreeSet<&str> = info
                .lines()
                .filter(|l| l.starts_with("physical id"))
                .filter_map(|l| l.split(':').nth(1))
                .collect();
            ids.len().max(1) as u32
        });
        let last = cpu_times(&cfg.proc_root)?;
        Ok(Self {
            cfg,
            sockets,
            last,
            first: Some(monotonic_now()),
        })
    }

    fn channels(&self) -> Vec<Channel> {
        vec![Channel {
            name: "cpu".into(),
            domain: Domain::CpuPackage,
            device: Some(format!(
                "{} socket(s), {} W TDP each (modelled)",
                self.sockets, self.cfg.tdp_w
            )),
            kind: ChannelKind::PowerGauge {
                timing: GaugeTiming::IntervalMean,
                estimated: true,
            },
            // /proc/stat advances in jiffies (USER_HZ = 100).
            update_period_s: 0.01,
            accuracy: Accuracy::relative(self.cfg.model_error),
            shaped_by: None,
        }]
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), String> {
        let now = monotonic_now();
        if let Some(t0) = self.first.take() {
            // The curve starts at the open time; an interval-mean's first value is not used.
            out.push(Reading {
                channel: 0,
                timestamp_s: t0,
                value: self.power(0.0),
            });
        }
        let (busy, total) = cpu_times(&self.cfg.proc_root)?;
        let (db, dt) = (
            busy.saturating_sub(self.last.0),
            total.saturating_sub(self.last.1),
        );
        if dt == 0 {
            return Ok(()); // no jiffy has passed: nothing new to report
        }
        self.last = (busy, total);
        out.push(Reading {
            channel: 0,
            timestamp_s: now,
            value: self.power(db as f64 / dt as f64),
        });
        Ok(())
    }
}

export_sampler!(CpuEstimate, "cpu-estimate");
