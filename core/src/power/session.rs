//! A run's power measurement: open the experiment's samplers, record for the whole session,
//! measure the idle baseline, read at window edges, and afterwards attribute energy to every
//! record of the run from what is on disk (`power.jsonl` + manifest).

use super::attribution::{attribute, idle_bound, idle_power, ChannelInput, QueryWindow};
use super::curve::EnergyCurve;
use super::loader::{find, SamplerError, SamplerLibrary};
use super::recorder::{EdgeMarker, Recorder};
use crate::config::{SamplerConfig, SplitRule};
use crate::dataset::hex;
use crate::records::{read_power_log, Flag, PowerLog, RunDir};
pub use crate::records::{Baseline, SamplerInfo};
use ipw_sampler_sdk::{ChannelKind, Domain};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Windows edges are read on demand only for samplers whose energy channels update at least
/// this often; a slower counter read at an edge would carry a stale value with a fresh timestamp.
const EDGE_READ_MAX_PERIOD_S: f64 = 0.005;

/// How long a sampler may take to give every energy channel its first reading (at least three
/// of its intervals).
const START_PATIENCE_S: f64 = 1.0;

/// Stop recorders started before a later sampler failed the start.
fn stop_all(recorders: Vec<Recorder>) {
    for r in recorders {
        r.stop();
    }
}

/// Samplers recording during a session.
pub struct PowerSession {
    recorders: Vec<Recorder>,
    infos: Vec<SamplerInfo>,
    log: std::sync::Arc<PowerLog>,
}

pub(crate) fn file_sha256(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| hex(&Sha256::digest(&b)))
        .unwrap_or_default()
}

/// Load and open one configured sampler.
pub fn open_sampler(
    cfg: &SamplerConfig,
    plugin_dirs: &[PathBuf],
) -> Result<(SamplerLibrary, super::loader::SamplerHandle), SamplerError> {
    let path = match (&cfg.path, &cfg.plugin) {
        (Some(p), _) => p.clone(),
        (None, Some(name)) => find(name, &crate::plugins::search_path(plugin_dirs))?,
        (None, None) => unreachable!("validated: plugin or path"),
    };
    let lib = SamplerLibrary::load(&path)?;
    let handle = lib.open(&cfg.config)?;
    Ok((lib, handle))
}

impl PowerSession {
    /// Open every sampler and start recording into `<dir>/power.jsonl` (shown to `tap` too). A sampler that cannot
    /// be opened fails the start (a run without the energy it asked for is not the run asked for).
    pub fn start(
        samplers: &[SamplerConfig],
        plugin_dirs: &[PathBuf],
        dir: &Path,
        session: usize,
        tap: Option<std::sync::Arc<dyn crate::records::ReadingTap>>,
    ) -> Result<Self, SamplerError> {
        let path = RunDir::new(dir).power_log_path();
        let log = PowerLog::open_tapped(&path, tap).map_err(|e| SamplerError::Library {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut recorders: Vec<Recorder> = Vec::new();
        let mut infos: Vec<SamplerInfo> = Vec::new();
        let mut channel_names: HashMap<String, String> = HashMap::new();
        for cfg in samplers {
            let (lib, handle) = open_sampler(cfg, plugin_dirs)?;
            // Two channels of one name would be summed into one curve: refuse, naming both.
            for c in &handle.channels {
                let name = format!("{}/{}", handle.name, c.name);
                if let Some(other) =
                    channel_names.insert(name.clone(), lib.path.display().to_string())
                {
                    stop_all(recorders);
                    return Err(SamplerError::Plugin {
                        name: handle.name.clone(),
                        path: lib.path.clone(),
                        message: format!(
                            "channel `{name}` is already given by {other}; give one of them another `channel` name in its config"
                        ),
                    });
                }
            }
            let slowest = handle
                .channels
                .iter()
                .filter(|c| !matches!(c.kind, ChannelKind::Telemetry { .. }))
                .map(|c| c.update_period_s)
                .fold(0.0, f64::max);
            let rate_hz = cfg.rate_hz.unwrap_or(20.0);
            let interval_s = (1.0 / rate_hz).max(slowest);
            let edge_reads = slowest <= EDGE_READ_MAX_PERIOD_S;
            infos.push(SamplerInfo {
                name: lib.name.clone(),
                sha256: file_sha256(&lib.path),
                path: lib.path.clone(),
                sdk_version: lib.sdk_version.clone(),
                rate_hz,
                interval_s,
                edge_reads,
                channels: handle.channels.clone(),
                stats: None,
            });
            let needed: Vec<(usize, String)> = handle
                .channels
                .iter()
                .enumerate()
                .filter(|(_, c)| !matches!(c.kind, ChannelKind::Telemetry { .. }))
                .map(|(i, c)| (i, format!("{}/{}", handle.name, c.name)))
                .collect();
            let (name, path) = (handle.name.clone(), lib.path.clone());
            let recorder = Recorder::start(
                handle,
                Duration::from_secs_f64(interval_s),
                edge_reads,
                session,
                log.clone(),
            );
            // A channel that gives nothing (a sensor that opens but answers every read with
            // "not supported") fails the start loudly instead of leaving silent gaps.
            let patience = Duration::from_secs_f64((3.0 * interval_s).max(START_PATIENCE_S));
            let started = std::time::Instant::now();
            let silent = loop {
                let first = recorder.first_readings();
                let silent: Vec<&str> = needed
                    .iter()
                    .filter(|(i, _)| !first.seen.get(*i).copied().unwrap_or(false))
                    .map(|(_, n)| n.as_str())
                    .collect();
                if silent.is_empty() || started.elapsed() >= patience {
                    break (!silent.is_empty()).then(|| (silent.join(", "), first.last_error));
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            recorders.push(recorder);
            if let Some((channels, last_error)) = silent {
                stop_all(recorders);
                return Err(SamplerError::Plugin {
                    name,
                    path,
                    message: format!(
                        "no reading from {channels} within {:.1} s of opening{}; a run would have no energy for them",
                        patience.as_secs_f64(),
                        last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default()
                    ),
                });
            }
        }
        Ok(Self {
            recorders,
            infos,
            log,
        })
    }

    /// Pairs of samplers whose energy channels measure overlapping domains (`a` and `b`:
    /// `domain` and `domain`): their channels are all summed into a record's total, which then
    /// counts the shared part twice.
    pub fn overlapping_domains(&self) -> Vec<String> {
        let domains = |i: &SamplerInfo| -> Vec<Domain> {
            let mut d: Vec<Domain> = i
                .channels
                .iter()
                .filter(|c| {
                    c.domain != Domain::Telemetry
                        && !matches!(c.kind, ChannelKind::Telemetry { .. })
                })
                .map(|c| c.domain)
                .collect();
            d.dedup();
            d
        };
        let mut out = Vec::new();
        for (i, a) in self.infos.iter().enumerate() {
            for b in &self.infos[i + 1..] {
                for da in domains(a) {
                    for db in domains(b) {
                        if domains_overlap(da, db) {
                            out.push(format!("{} ({da:?}) and {} ({db:?})", a.name, b.name));
                        }
                    }
                }
            }
        }
        out
    }

    /// A handle the runner uses to read edge-capable samplers when a window starts or ends.
    pub fn marker(&self) -> EdgeMarker {
        let mut m = EdgeMarker::default();
        for r in self.recorders.iter().filter_map(Recorder::marker) {
            m.extend(r);
        }
        m
    }

    /// The session's power log, for lines beside the samplers' (other load).
    pub fn log(&self) -> std::sync::Arc<PowerLog> {
        self.log.clone()
    }

    /// What the manifest keeps about each sampler, before any stats exist: written as soon as
    /// the samplers open, so a killed session's readings can still be attributed.
    pub fn describe(&self) -> Vec<SamplerInfo> {
        self.infos.clone()
    }

    /// Stop every thread (each takes a final reading) and return what the manifest keeps.
    pub fn stop(self) -> Vec<SamplerInfo> {
        let mut infos = self.infos;
        for (info, r) in infos.iter_mut().zip(self.recorders) {
            info.stats = Some(r.stop());
        }
        self.log.sync();
        infos
    }

    /// The longest background interval, for waiting until every channel has a reading past a
    /// window edge.
    pub fn max_interval(&self) -> Duration {
        Duration::from_secs_f64(self.infos.iter().map(|i| i.interval_s).fold(0.0, f64::max))
    }
}

/// Whether two energy domains can count the same joules: the whole machine or a SoC holds
/// everything; a GPU board holds its memory; the same domain twice is the same hardware.
fn domains_overlap(a: Domain, b: Domain) -> bool {
    use Domain::*;
    a == b
        || matches!((a, b), (System, _) | (_, System) | (Soc, _) | (_, Soc))
        || matches!((a, b), (Gpu, GpuMemory) | (GpuMemory, Gpu))
}

/// What attribution needs to know about one session of a run.
pub struct SessionPower<'a> {
    /// Samplers of the session.
    pub samplers: &'a [SamplerInfo],
    /// Its baseline, if measured.
    pub baseline: Option<Baseline>,
    /// Flag records that other processes' load overlapped (in-process inference only).
    pub flag_other_load: bool,
}

/// Fill `energy` for every record of a run, from `power.jsonl` and the sessions' sampler
/// descriptions. Records of a session without samplers keep `energy: null`.
pub fn attribute_records(
    records: &mut [crate::records::Record],
    power_log: &Path,
    sessions: &[SessionPower],
    split: SplitRule,
) -> std::io::Result<()> {
    let lines = read_power_log(power_log)?.lines;
    // (session, channel) -> readings / error times
    let mut readings: HashMap<(usize, &str), Vec<(f64, f64)>> = HashMap::new();
    let mut errors: HashMap<(usize, &str), Vec<f64>> = HashMap::new();
    for l in &lines {
        match l.v {
            Some(v) => readings
                .entry((l.session, &l.channel))
                .or_default()
                .push((l.t, v)),
            None => errors.entry((l.session, &l.channel)).or_default().push(l.t),
        }
    }
    for (s, sp) in sessions.iter().enumerate() {
        let idx: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].session == s)
            .collect();
        if idx.is_empty() || sp.samplers.is_empty() {
            continue;
        }
        let mut curves = Vec::new();
        for info in sp.samplers {
            for ch in &info.channels {
                if matches!(ch.kind, ChannelKind::Telemetry { .. })
                    || ch.domain == Domain::Telemetry
                {
                    continue;
                }
                let name = format!("{}/{}", info.name, ch.name);
                let mut curve = EnergyCurve::build(&ch.kind, readings_of(&readings, s, &name));
                if let Some(power) = &ch.shaped_by {
                    let instant = ChannelKind::PowerGauge {
                        timing: ipw_sampler_sdk::GaugeTiming::Instant,
                        estimated: false,
                    };
                    curve.shape_with(EnergyCurve::build(
                        &instant,
                        readings_of(&readings, s, &format!("{}/{power}", info.name)),
                    ));
                }
                let estimated = ch.kind.is_estimated();
                // The device's declared ceiling: the highest value a power-limit channel of the
                // same sampler and device reported in this session.
                let ceiling = info
                    .channels
                    .iter()
                    .filter(|t| {
                        t.device == ch.device
                            && matches!(&t.kind, ChannelKind::Telemetry { unit }
                                if unit == ipw_sampler_sdk::POWER_LIMIT_UNIT)
                    })
                    .flat_map(|t| readings_of(&readings, s, &format!("{}/{}", info.name, t.name)))
                    .map(|&(_, w)| w)
                    .filter(|w| w.is_finite() && *w > 0.0)
                    .reduce(f64::max);
                curves.push((
                    name,
                    curve,
                    ch.update_period_s,
                    info.interval_s,
                    estimated,
                    info.edge_reads,
                    ch.accuracy,
                    ch.domain,
                    ceiling,
                ));
            }
        }
        let empty = Vec::new();
        let inputs: Vec<ChannelInput> = curves
            .iter()
            .map(
                |(
                    name,
                    curve,
                    period,
                    interval,
                    estimated,
                    edge_reads,
                    accuracy,
                    domain,
                    ceiling,
                )| {
                    ChannelInput {
                        name: name.clone(),
                        curve,
                        update_period_s: *period,
                        sample_interval_s: *interval,
                        estimated: *estimated,
                        idle_w: sp
                            .baseline
                            .and_then(|b| idle_power(curve, b.from_s, b.to_s)),
                        idle_bound_w: sp
                            .baseline
                            .and_then(|b| idle_bound(curve, b.from_s, b.to_s, *accuracy)),
                        errors: errors.get(&(s, name.as_str())).unwrap_or(&empty),
                        edge_reads: *edge_reads,
                        accuracy: *accuracy,
                        domain: Some(*domain),
                        ceiling_w: *ceiling,
                    }
                },
            )
            .collect();
        let windows: Vec<QueryWindow> = idx
            .iter()
            .map(|&i| {
                let r = &records[i];
                QueryWindow {
                    start: r.window.start_s,
                    end: r.window.end_s,
                    ttft: r.ttft_s,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                }
            })
            .collect();
        // Telemetry that marks a window when any of its readings near the window is above 0:
        // other processes on a measured device (e.g. NVML's process list), a device
        // throttling. Each reading covers the span up to the next one, a period of its channel.
        let marks = |unit: &str| {
            let spans: Vec<(&[(f64, f64)], f64)> = sp
                .samplers
                .iter()
                .flat_map(|info| info.channels.iter().map(move |ch| (info, ch)))
                .filter(
                    |(_, ch)| matches!(&ch.kind, ChannelKind::Telemetry { unit: u } if u == unit),
                )
                .map(|(info, ch)| {
                    (
                        readings_of(&readings, s, &format!("{}/{}", info.name, ch.name)),
                        ch.update_period_s.max(info.interval_s),
                    )
                })
                .collect();
            move |from: f64, to: f64| {
                spans.iter().any(|(r, period)| {
                    r.iter()
                        .any(|&(t, v)| v > 0.0 && t + period >= from && t - period <= to)
                })
            }
        };
        let others_on_device = marks(ipw_sampler_sdk::OTHER_PROCESSES_UNIT);
        let throttled = marks(ipw_sampler_sdk::THROTTLE_UNIT);
        let busy_baseline = sp
            .baseline
            .and_then(|b| b.other_cpu_cores)
            .is_some_and(|c| c > crate::load::BUSY_CORES)
            || (sp.flag_other_load
                && sp
                    .baseline
                    .is_some_and(|b| others_on_device(b.from_s, b.to_s)));
        let other_cpu = readings_of(&readings, s, crate::load::CHANNEL);
        let legacy_load = readings_of(&readings, s, crate::load::LEGACY_CHANNEL);
        for (&i, mut e) in idx.iter().zip(attribute(&inputs, &windows, split)) {
            let w = &records[i].window;
            let loaded = sp.flag_other_load
                && if other_cpu.is_empty() {
                    // Runs from before the counter: each reading covers the half second
                    // around its time.
                    legacy_load.iter().any(|&(t, cores)| {
                        cores > crate::load::BUSY_CORES
                            && t + 0.25 >= w.start_s
                            && t - 0.25 <= w.end_s
                    })
                } else {
                    crate::load::other_cores_over(other_cpu, w.start_s, w.end_s)
                        .is_some_and(|c| c > crate::load::BUSY_CORES)
                };
            if loaded {
                e.flags.push(Flag::OtherLoad);
            }
            if sp.flag_other_load && others_on_device(w.start_s, w.end_s) {
                e.flags.push(Flag::SharedDevice);
            }
            if busy_baseline {
                e.flags.push(Flag::BusyBaseline);
            }
            if throttled(w.start_s, w.end_s) {
                e.flags.push(Flag::Throttled);
            }
            e.flags.sort();
            e.flags.dedup();
            records[i].energy = Some(e);
        }
    }
    Ok(())
}

/// A session's readings of one channel (none if it gave none). A function, not a closure, so
/// the slice borrows the map rather than the name looked up.
fn readings_of<'m>(
    readings: &'m HashMap<(usize, &str), Vec<(f64, f64)>>,
    session: usize,
    channel: &str,
) -> &'m [(f64, f64)] {
    readings
        .iter()
        .find(|((s, c), _)| *s == session && *c == channel)
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}
