//! The sampler conformance check: runs any sampler library through the contract the host relies
//! on (load, `describe`, `read` repeatedly, `close`) and says, per check, whether it holds, with
//! a message a plugin author can act on. `ipw sampler check` and `ipw doctor --plugin` print it.
//!
//! The library goes through the real loader ([`SamplerLibrary`]), so what passes here is what a
//! run loads. The analysis of what was read ([`check_channels`], [`check_reads`]) is pure and
//! unit-tested on made-up readings; [`check_library`] only collects them.

use super::loader::{library_file_name, ReadFailure, SamplerError, SamplerLibrary};
use ipw_sampler_sdk::abi::RawReading;
use ipw_sampler_sdk::{monotonic_now, Channel, ChannelKind, Domain, GaugeTiming};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// The contract holds.
    Pass,
    /// Usable, but something will cost accuracy or time; the message says what.
    Warn,
    /// The host cannot rely on this sampler; the message says what to fix.
    Fail,
}

impl Verdict {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The library loads, exports the entry symbol, and speaks this host's ABI version.
    Load,
    /// The file is named so that `plugin = "<name>"` finds it.
    Name,
    /// `open` accepts the config.
    Open,
    /// `describe` gives a valid channel list.
    Describe,
    /// `read` returns (in time, without panicking, naming only existing channels).
    Read,
    /// Every energy channel gives readings.
    Readings,
    /// Timestamps are finite, monotonic per channel and on the host's clock.
    Timestamps,
    /// Energy counters never go down except by a wrap of the declared modulus.
    Counters,
    /// Power gauges are finite and >= 0 W.
    Gauges,
    /// Telemetry values are finite.
    Telemetry,
    /// Wall time per read.
    ReadCost,
    /// `close` returns.
    Close,
}

impl Check {
    /// The check's name as printed (`describe`, `read-cost`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Check::Load => "load",
            Check::Name => "name",
            Check::Open => "open",
            Check::Describe => "describe",
            Check::Read => "read",
            Check::Readings => "readings",
            Check::Timestamps => "timestamps",
            Check::Counters => "counters",
            Check::Gauges => "gauges",
            Check::Telemetry => "telemetry",
            Check::ReadCost => "read-cost",
            Check::Close => "close",
        }
    }
}

/// One verdict with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Which check.
    pub check: Check,
    /// How it came out.
    pub verdict: Verdict,
    /// One line: what was seen and, unless it passed, what to do about it.
    pub message: String,
}

impl Finding {
    fn new(check: Check, verdict: Verdict, message: impl Into<String>) -> Self {
        Self {
            check,
            verdict,
            message: message.into(),
        }
    }
}

/// Wall time per `read`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadCost {
    /// Reads timed.
    pub reads: usize,
    /// Median seconds per read.
    pub median_s: f64,
    /// Longest read, seconds.
    pub max_s: f64,
}

/// What to run the check with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sampler's config (what an experiment gives it as `config`).
    pub config: serde_json::Value,
    /// Seconds of reading (at least three update periods of the slowest energy channel).
    pub seconds: f64,
    /// A read that has not returned after this long is reported as hung.
    pub read_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: serde_json::json!({}),
            seconds: 3.0,
            read_timeout: Duration::from_secs(3),
        }
    }
}

/// The result of checking one library.
#[derive(Debug, Clone)]
pub struct Report {
    /// The library.
    pub path: PathBuf,
    /// The name it declares, once loaded.
    pub name: Option<String>,
    /// The SDK version it was built with, once loaded.
    pub sdk_version: Option<String>,
    /// Its channels, once described.
    pub channels: Vec<Channel>,
    /// Readings per channel over the run (same order as `channels`).
    pub readings_per_channel: Vec<usize>,
    /// Seconds between reads.
    pub interval_s: f64,
    /// Seconds read for.
    pub seconds: f64,
    /// Wall time per read, when any read returned.
    pub read_cost: Option<ReadCost>,
    /// Every verdict, in the order the checks ran.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst verdict (Pass when nothing was found, which cannot happen after a run).
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Pass)
    }

    /// The worst verdict of one check, if it ran.
    pub fn verdict_of(&self, check: Check) -> Option<Verdict> {
        self.findings
            .iter()
            .filter(|f| f.check == check)
            .map(|f| f.verdict)
            .max()
    }

    /// The checks that failed, by name (for messages and tests).
    pub fn failed(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .map(|f| f.check.name())
            .collect();
        names.dedup();
        names
    }
}

/// Whether the host integrates a channel as energy (the rule attribution uses).
fn is_energy(c: &Channel) -> bool {
    !matches!(c.kind, ChannelKind::Telemetry { .. }) && c.domain != Domain::Telemetry
}

fn bad_nonneg(x: f64) -> bool {
    !x.is_finite() || x < 0.0
}

/// Check a channel list as `describe` returned it.
pub fn check_channels(channels: &[Channel]) -> Vec<Finding> {
    let mut out = Vec::new();
    let fail = |out: &mut Vec<Finding>, m: String| {
        out.push(Finding::new(Check::Describe, Verdict::Fail, m))
    };
    let warn = |out: &mut Vec<Finding>, m: String| {
        out.push(Finding::new(Check::Describe, Verdict::Warn, m))
    };
    let by_name: HashMap<&str, &Channel> = channels.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut seen = HashSet::new();
    for c in channels {
        let n = &c.name;
        if n.is_empty() {
            fail(
                &mut out,
                "a channel has an empty name: give every channel a name unique within the sampler"
                    .into(),
            );
        } else if !seen.insert(n.as_str()) {
            fail(&mut out, format!("channel name `{n}` is used twice: the host keys readings by name, so two channels would be summed into one curve"));
        }
        if !(c.update_period_s.is_finite() && c.update_period_s > 0.0) {
            fail(&mut out, format!("`{n}`: update_period_s is {}; declare how often the value changes, in seconds (> 0)", c.update_period_s));
        }
        match &c.kind {
            ChannelKind::EnergyCounter {
                resolution_j,
                wrap_j,
            } => {
                if bad_nonneg(*resolution_j) {
                    fail(&mut out, format!("`{n}`: resolution_j is {resolution_j}; declare the counter's smallest step in joules (>= 0)"));
                }
                if let Some(w) = wrap_j {
                    if !(w.is_finite() && *w > 0.0) {
                        fail(&mut out, format!("`{n}`: wrap_j is {w}; declare the modulus in joules (> 0), or None if the counter never wraps"));
                    }
                }
            }
            ChannelKind::PowerGauge {
                timing: GaugeTiming::Averaged { window_s },
                ..
            } if !(window_s.is_finite() && *window_s > 0.0) => {
                fail(&mut out, format!("`{n}`: averaged gauge with window_s {window_s}; declare the averaging window in seconds (> 0)"));
            }
            ChannelKind::Telemetry { unit } if unit.is_empty() => {
                warn(&mut out, format!("`{n}`: telemetry without a unit; say what the value is in (`W`, `celsius`, ...)"));
            }
            _ => {}
        }
        if bad_nonneg(c.accuracy.relative) || bad_nonneg(c.accuracy.absolute_w) {
            fail(&mut out, format!("`{n}`: accuracy {{relative: {}, absolute_w: {}}}; both must be finite and >= 0 (0 = not declared)", c.accuracy.relative, c.accuracy.absolute_w));
        }
        if !matches!(c.kind, ChannelKind::Telemetry { .. }) && c.domain == Domain::Telemetry {
            warn(&mut out, format!("`{n}`: an energy kind in the `telemetry` domain is never integrated; give it the domain it measures, or make it telemetry"));
        }
        if let Some(s) = &c.shaped_by {
            match by_name.get(s.as_str()) {
                None => fail(&mut out, format!("`{n}`: shaped_by names `{s}`, which is not a channel of this sampler")),
                Some(_) if s == n => fail(&mut out, format!("`{n}`: shaped_by names the channel itself; name the instant-power channel beside it")),
                Some(p) => {
                    let ok = match &p.kind {
                        ChannelKind::PowerGauge { .. } => true,
                        ChannelKind::Telemetry { unit } => unit == "W",
                        ChannelKind::EnergyCounter { .. } => false,
                    };
                    if !ok {
                        fail(&mut out, format!("`{n}`: shaped_by names `{s}`, which is not power (a power gauge or telemetry in `W`)"));
                    }
                }
            }
            if !matches!(c.kind, ChannelKind::EnergyCounter { .. }) {
                warn(&mut out, format!("`{n}`: shaped_by is set on a channel that is not an energy counter; the host ignores it there"));
            }
        }
    }
    if !channels.iter().any(is_energy) {
        warn(&mut out, "no energy channel (counter or power gauge): runs will record this sampler's telemetry but attribute no energy to it".into());
    }
    if out.iter().all(|f| f.verdict != Verdict::Fail) {
        let count = |f: fn(&ChannelKind) -> bool| channels.iter().filter(|c| f(&c.kind)).count();
        out.insert(
            0,
            Finding::new(
                Check::Describe,
                Verdict::Pass,
                format!(
                    "{} channel(s): {} energy counter(s), {} power gauge(s), {} telemetry",
                    channels.len(),
                    count(|k| matches!(k, ChannelKind::EnergyCounter { .. })),
                    count(|k| matches!(k, ChannelKind::PowerGauge { .. })),
                    count(|k| matches!(k, ChannelKind::Telemetry { .. })),
                ),
            ),
        );
    }
    out
}

/// One call of `read` as the check saw it.
#[derive(Debug, Clone)]
pub struct ReadSample {
    /// `monotonic_now()` just before the call.
    pub started: f64,
    /// `monotonic_now()` just after it returned.
    pub finished: f64,
    /// Wall seconds the call took.
    pub wall_s: f64,
    /// The readings (only those naming an existing channel), or the failure.
    pub result: Result<Vec<RawReading>, ReadFailure>,
    /// Readings that named a channel index past the channel list.
    pub dropped: usize,
}

/// A reading more than this far after the read returned is from the future: another clock.
const FUTURE_SLACK_S: f64 = 1e-3;

/// How old a reading may be when its read returns: a value that changes every
/// `update_period_s` may be reported with the time it was measured, but not much earlier.
fn max_age_s(c: &Channel) -> f64 {
    (10.0 * c.update_period_s).max(5.0)
}

/// Above this median wall time per read, a read at 100 Hz alone costs a tenth of a core.
const SLOW_READ_S: f64 = 1e-3;
/// A read blocking this long delays the window-edge reads behind it.
const BLOCKING_READ_S: f64 = 0.1;

/// Check what a series of reads returned, against the channels they came from. Returns the
/// findings, readings per channel, and the read cost.
pub fn check_reads(
    channels: &[Channel],
    reads: &[ReadSample],
) -> (Vec<Finding>, Vec<usize>, Option<ReadCost>) {
    let mut out = Vec::new();
    let n = channels.len();
    let mut counts = vec![0usize; n];
    let mut last: Vec<Option<RawReading>> = vec![None; n];
    // Per channel: the first problem of each kind only, so one bad channel is one line.
    let mut ts_bad: Vec<Option<String>> = vec![None; n];
    let mut value_bad: Vec<Option<String>> = vec![None; n];
    let mut wraps = vec![0usize; n];
    let mut reset_like: Vec<Option<String>> = vec![None; n];
    let (mut failures, mut panics, mut dropped) = (0usize, 0usize, 0usize);
    let mut first_error: Option<String> = None;
    for r in reads {
        dropped += r.dropped;
        let readings = match &r.result {
            Ok(v) => v,
            Err(e) => {
                failures += 1;
                panics += e.panicked as usize;
                first_error.get_or_insert_with(|| e.message.clone());
                continue;
            }
        };
        for reading in readings {
            let i = reading.channel as usize;
            let c = &channels[i];
            counts[i] += 1;
            let (t, v) = (reading.timestamp_s, reading.value);
            if ts_bad[i].is_none() {
                if !t.is_finite() {
                    ts_bad[i] = Some(format!("`{}`: timestamp {t}", c.name));
                } else if t > r.finished + FUTURE_SLACK_S {
                    ts_bad[i] = Some(format!("`{}`: timestamp {t:.3} is {:.3} s after the read returned (monotonic_now() = {:.3}): stamp readings with ipw_sampler_sdk::monotonic_now()", c.name, t - r.finished, r.finished));
                } else if r.finished - t > max_age_s(c) {
                    ts_bad[i] = Some(format!("`{}`: timestamp {t:.3} is {:.3} s before the read returned (monotonic_now() = {:.3}): stamp readings with ipw_sampler_sdk::monotonic_now()", c.name, r.finished - t, r.finished));
                } else if let Some(p) = last[i].filter(|p| t < p.timestamp_s) {
                    ts_bad[i] = Some(format!("`{}`: timestamp went back from {:.6} to {t:.6}: readings of one channel must come in time order", c.name, p.timestamp_s));
                }
            }
            if value_bad[i].is_none() {
                match &c.kind {
                    ChannelKind::EnergyCounter {
                        wrap_j,
                        resolution_j,
                    } => {
                        if bad_nonneg(v) {
                            value_bad[i] = Some(format!(
                                "`{}`: counter value {v} J; a counter is finite and >= 0",
                                c.name
                            ));
                        } else if let Some(w) = wrap_j.filter(|w| v > *w + resolution_j) {
                            value_bad[i] = Some(format!("`{}`: counter value {v} J is above the declared wrap_j {w}: declare the modulus the counter really wraps at", c.name));
                        } else if let Some(p) = last[i].filter(|p| v < p.value) {
                            match wrap_j {
                                None => value_bad[i] = Some(format!("`{}`: counter went down from {} to {v} J with no wrap_j declared: declare the modulus if it wraps; a counter must never reset", c.name, p.value)),
                                Some(w) => {
                                    wraps[i] += 1;
                                    let step = w - p.value + v;
                                    if step > w / 2.0 && reset_like[i].is_none() {
                                        reset_like[i] = Some(format!("`{}`: a drop from {} to {v} J read as a wrap implies {step:.3} J in {:.3} s, over half the {w} J modulus: looks like a reset, not a wrap", c.name, p.value, t - p.timestamp_s));
                                    }
                                }
                            }
                        }
                    }
                    ChannelKind::PowerGauge { .. } if bad_nonneg(v) => {
                        value_bad[i] = Some(format!("`{}`: power {v} W; a gauge reports finite watts >= 0 (skip the reading, or return an error, when there is no value)", c.name));
                    }
                    ChannelKind::Telemetry { .. } if !v.is_finite() => {
                        value_bad[i] = Some(format!(
                            "`{}`: telemetry value {v}; skip the reading when there is no value",
                            c.name
                        ));
                    }
                    _ => {}
                }
            }
            last[i] = Some(*reading);
        }
    }
    let total = reads.len();
    // read: errors, panics, readings for channels that do not exist.
    if panics > 0 {
        out.push(Finding::new(Check::Read, Verdict::Fail, format!("{panics} of {total} reads panicked (first: {}); a panic is a bug: return Err instead", first_error.clone().unwrap_or_default())));
    } else if total > 0 && failures == total {
        out.push(Finding::new(
            Check::Read,
            Verdict::Fail,
            format!(
                "every read failed ({total}): {}",
                first_error.clone().unwrap_or_default()
            ),
        ));
    } else if failures > 0 {
        out.push(Finding::new(Check::Read, Verdict::Warn, format!("{failures} of {total} reads failed (first: {}); each failure is a gap in the energy curve", first_error.clone().unwrap_or_default())));
    }
    if dropped > 0 {
        out.push(Finding::new(Check::Read, Verdict::Fail, format!("{dropped} readings named a channel index >= {n} (the channel count); the host drops them: index readings by position in channels()")));
    }
    if out.is_empty() {
        out.push(Finding::new(
            Check::Read,
            Verdict::Pass,
            format!("{total} reads, none failed"),
        ));
    }
    // readings: every energy channel gives something.
    let mut any = false;
    for (i, c) in channels.iter().enumerate() {
        let counter = matches!(c.kind, ChannelKind::EnergyCounter { .. });
        if is_energy(c) && counts[i] == 0 {
            any = true;
            out.push(Finding::new(Check::Readings, Verdict::Fail, format!("energy channel `{}` gave no reading in {total} reads: a run with this sampler fails to start", c.name)));
        } else if is_energy(c) && counter && counts[i] < 2 {
            any = true;
            out.push(Finding::new(Check::Readings, Verdict::Warn, format!("counter `{}` gave {} reading in {total} reads; energy needs two: read longer (--seconds) or check the update period", c.name, counts[i])));
        } else if !is_energy(c) && counts[i] == 0 {
            any = true;
            out.push(Finding::new(
                Check::Readings,
                Verdict::Warn,
                format!("telemetry `{}` gave no reading in {total} reads", c.name),
            ));
        }
    }
    if !any {
        out.push(Finding::new(
            Check::Readings,
            Verdict::Pass,
            format!(
                "every channel gave readings ({} in all)",
                counts.iter().sum::<usize>()
            ),
        ));
    }
    // timestamps
    let ts: Vec<Finding> = ts_bad
        .into_iter()
        .flatten()
        .map(|m| Finding::new(Check::Timestamps, Verdict::Fail, m))
        .collect();
    if ts.is_empty() {
        out.push(Finding::new(
            Check::Timestamps,
            Verdict::Pass,
            "finite, in order per channel, on monotonic_now()'s clock",
        ));
    }
    out.extend(ts);
    // values, by kind
    for (check, pass, has) in [
        (
            Check::Counters,
            "non-decreasing or wrapping at the declared modulus",
            channels
                .iter()
                .any(|c| matches!(c.kind, ChannelKind::EnergyCounter { .. })),
        ),
        (
            Check::Gauges,
            "finite and >= 0 W",
            channels
                .iter()
                .any(|c| matches!(c.kind, ChannelKind::PowerGauge { .. })),
        ),
        (
            Check::Telemetry,
            "finite",
            channels
                .iter()
                .any(|c| matches!(c.kind, ChannelKind::Telemetry { .. })),
        ),
    ] {
        if !has {
            continue;
        }
        let of_kind = |c: &Channel| match check {
            Check::Counters => matches!(c.kind, ChannelKind::EnergyCounter { .. }),
            Check::Gauges => matches!(c.kind, ChannelKind::PowerGauge { .. }),
            _ => matches!(c.kind, ChannelKind::Telemetry { .. }),
        };
        // Non-finite telemetry costs a breakdown, not energy: a warning.
        let verdict = if check == Check::Telemetry {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        let bad: Vec<Finding> = channels
            .iter()
            .enumerate()
            .filter(|(_, c)| of_kind(c))
            .filter_map(|(i, _)| value_bad[i].clone())
            .map(|m| Finding::new(check, verdict, m))
            .collect();
        let warns: Vec<Finding> = if check == Check::Counters {
            reset_like
                .iter()
                .flatten()
                .map(|m| Finding::new(check, Verdict::Warn, m.clone()))
                .collect()
        } else {
            Vec::new()
        };
        if bad.is_empty() {
            let wrapped: usize = wraps.iter().sum();
            let extra = if check == Check::Counters && wrapped > 0 {
                format!(" ({wrapped} wrap(s) seen)")
            } else {
                String::new()
            };
            out.push(Finding::new(check, Verdict::Pass, format!("{pass}{extra}")));
        }
        out.extend(bad);
        out.extend(warns);
    }
    // read cost
    let mut walls: Vec<f64> = reads.iter().map(|r| r.wall_s).collect();
    walls.sort_by(f64::total_cmp);
    let cost = (!walls.is_empty()).then(|| ReadCost {
        reads: walls.len(),
        median_s: walls[walls.len() / 2],
        max_s: walls[walls.len() - 1],
    });
    if let Some(c) = cost {
        let text = format!(
            "median {:.3} ms, max {:.3} ms per read over {} reads",
            c.median_s * 1e3,
            c.max_s * 1e3,
            c.reads
        );
        if c.median_s > SLOW_READ_S {
            out.push(Finding::new(Check::ReadCost, Verdict::Warn, format!("{text}: slow; at 100 Hz reading alone takes {:.0}% of a core's time (keep files and handles open between reads)", c.median_s * 100.0 * 100.0)));
        } else if c.max_s > BLOCKING_READ_S {
            out.push(Finding::new(
                Check::ReadCost,
                Verdict::Warn,
                format!(
                    "{text}: a read blocked for {:.0} ms; window-edge reads wait behind it",
                    c.max_s * 1e3
                ),
            ));
        } else {
            out.push(Finding::new(Check::ReadCost, Verdict::Pass, text));
        }
    }
    (out, counts, cost)
}

enum Event {
    Read(ReadSample),
    Closed(f64),
}

/// Load the library at `path` through the real loader and run it through the contract.
pub fn check_library(path: &Path, opts: &Options) -> Report {
    let mut report = Report {
        path: path.to_path_buf(),
        name: None,
        sdk_version: None,
        channels: Vec::new(),
        readings_per_channel: Vec::new(),
        interval_s: 0.0,
        seconds: 0.0,
        read_cost: None,
        findings: Vec::new(),
    };
    let push = |report: &mut Report, check, verdict, m: String| {
        report.findings.push(Finding::new(check, verdict, m))
    };
    let lib = match SamplerLibrary::load(path) {
        Ok(lib) => lib,
        Err(e) => {
            push(&mut report, Check::Load, Verdict::Fail, e.to_string());
            return report;
        }
    };
    report.name = Some(lib.name.clone());
    report.sdk_version = Some(lib.sdk_version.clone());
    push(
        &mut report,
        Check::Load,
        Verdict::Pass,
        format!(
            "ABI v{} accepted; declares `{}`, built with SDK {}",
            ipw_sampler_sdk::abi::ABI_VERSION,
            lib.name,
            lib.sdk_version
        ),
    );
    // name: `plugin = "x"` looks for libipw_sampler_x.so; a file named otherwise works by path only.
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let want = library_file_name(&lib.name);
    if lib.name.is_empty() {
        push(
            &mut report,
            Check::Name,
            Verdict::Fail,
            "the sampler declares an empty name: pass a name to export_sampler!".into(),
        );
    } else if file == want {
        push(
            &mut report,
            Check::Name,
            Verdict::Pass,
            format!("`plugin = \"{}\"` finds {file}", lib.name),
        );
    } else {
        push(&mut report, Check::Name, Verdict::Warn, format!("declares `{}` but the file is {file}: only `path = ...` finds it; name the library {want} (crate [lib] name = \"ipw_sampler_{}\")", lib.name, lib.name.replace('-', "_")));
    }
    let mut handle = match lib.open(&opts.config) {
        Ok(h) => h,
        Err(e @ SamplerError::Describe { .. }) => {
            push(
                &mut report,
                Check::Open,
                Verdict::Pass,
                "open accepted the config".into(),
            );
            push(&mut report, Check::Describe, Verdict::Fail, e.to_string());
            return report;
        }
        Err(e) => {
            push(
                &mut report,
                Check::Open,
                Verdict::Fail,
                format!("{e} (config: {})", opts.config),
            );
            return report;
        }
    };
    push(
        &mut report,
        Check::Open,
        Verdict::Pass,
        "open accepted the config".into(),
    );
    report.channels = handle.channels.clone();
    let described = check_channels(&handle.channels);
    let describe_failed = described.iter().any(|f| f.verdict == Verdict::Fail);
    report.findings.extend(described);
    if describe_failed {
        // Periods or kinds the host cannot use: reading would only repeat the same failure.
        return report;
    }
    // Read at the fastest energy channel's period (as often as a value can change), for at
    // least three periods of the slowest, so every channel has a chance to report twice.
    let energy: Vec<&Channel> = handle.channels.iter().filter(|c| is_energy(c)).collect();
    let periods: Vec<f64> = if energy.is_empty() {
        handle.channels.iter().map(|c| c.update_period_s).collect()
    } else {
        energy.iter().map(|c| c.update_period_s).collect()
    };
    let fastest = periods.iter().copied().fold(f64::INFINITY, f64::min);
    let slowest = periods.iter().copied().fold(0.0, f64::max);
    let interval_s = fastest.clamp(1e-3, 1.0);
    let seconds = opts.seconds.max(3.0 * slowest).min(opts.seconds.max(60.0));
    report.interval_s = interval_s;
    report.seconds = seconds;
    let channels = handle.channels.clone();
    let (tx, rx) = mpsc::channel();
    // The reads run on their own thread so that a read that never returns is reported, not
    // waited for; such a thread (and the instance it holds) is abandoned, never closed.
    std::thread::Builder::new()
        .name("ipw-sampler-check".into())
        .spawn(move || {
            let start = Instant::now();
            let mut k = 0u32;
            loop {
                let mut buf = Vec::new();
                let started = monotonic_now();
                let t0 = Instant::now();
                let result = handle.read_counted(&mut buf);
                let wall_s = t0.elapsed().as_secs_f64();
                let finished = monotonic_now();
                let (result, dropped) = match result {
                    Ok(d) => (Ok(buf), d),
                    Err(e) => (Err(e), 0),
                };
                let sample = ReadSample {
                    started,
                    finished,
                    wall_s,
                    result,
                    dropped,
                };
                if tx.send(Event::Read(sample)).is_err() {
                    return;
                }
                if start.elapsed().as_secs_f64() >= seconds {
                    break;
                }
                k += 1;
                let next = Duration::from_secs_f64(interval_s * k as f64);
                if let Some(wait) = next.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let t0 = Instant::now();
            drop(handle);
            let _ = tx.send(Event::Closed(t0.elapsed().as_secs_f64()));
        })
        .expect("spawn a thread");
    let patience = opts
        .read_timeout
        .max(Duration::from_secs_f64(3.0 * interval_s));
    let mut reads = Vec::new();
    let mut closed = None;
    let mut hung = None;
    loop {
        match rx.recv_timeout(patience) {
            Ok(Event::Read(r)) => reads.push(r),
            Ok(Event::Closed(s)) => {
                closed = Some(s);
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                hung = Some(if reads.is_empty() {
                    "the first read"
                } else {
                    "a read"
                });
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let (findings, counts, cost) = check_reads(&channels, &reads);
    report.findings.extend(findings);
    report.readings_per_channel = counts;
    report.read_cost = cost;
    if let Some(which) = hung {
        // The thread closes once the time is up: a silence after the last read of the run is
        // close hanging, before it a read.
        let during_close = reads
            .last()
            .is_some_and(|r| r.finished - reads[0].started >= seconds);
        if during_close {
            push(&mut report, Check::Close, Verdict::Fail, format!("close did not return within {:.1} s: the host closes samplers when a run ends and would hang there", patience.as_secs_f64()));
        } else {
            push(&mut report, Check::Read, Verdict::Fail, format!("{which} (after {} returned) did not return within {:.1} s: a read must not block (ipw waits {:.0} s when stopping, then abandons the sampler)", reads.len(), patience.as_secs_f64(), super::recorder::STOP_PATIENCE.as_secs_f64()));
            push(
                &mut report,
                Check::Close,
                Verdict::Warn,
                "not closed: a read is still running".to_string(),
            );
        }
    } else if let Some(s) = closed {
        push(
            &mut report,
            Check::Close,
            Verdict::Pass,
            format!("returned in {:.3} ms", s * 1e3),
        );
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipw_sampler_sdk::Accuracy;

    fn channel(name: &str, kind: ChannelKind) -> Channel {
        Channel {
            name: name.into(),
            domain: Domain::Gpu,
            device: None,
            kind,
            update_period_s: 0.01,
            accuracy: Accuracy::default(),
            shaped_by: None,
        }
    }

    fn counter(wrap_j: Option<f64>) -> Channel {
        channel(
            "gpu0",
            ChannelKind::EnergyCounter {
                resolution_j: 1e-3,
                wrap_j,
            },
        )
    }

    fn watts(name: &str) -> Channel {
        channel(name, ChannelKind::Telemetry { unit: "W".into() })
    }

    fn verdict(findings: &[Finding], check: Check) -> Option<Verdict> {
        findings
            .iter()
            .filter(|f| f.check == check)
            .map(|f| f.verdict)
            .max()
    }

    #[test]
    fn a_counter_shaped_by_watts_telemetry_passes_describe() {
        let mut c = counter(Some(100.0));
        c.shaped_by = Some("gpu0-power".into());
        let f = check_channels(&[c, watts("gpu0-power")]);
        assert_eq!(verdict(&f, Check::Describe), Some(Verdict::Pass), "{f:?}");
    }

    #[test]
    fn describe_fails_each_broken_declaration() {
        let fails = |chs: Vec<Channel>| {
            let f = check_channels(&chs);
            assert_eq!(verdict(&f, Check::Describe), Some(Verdict::Fail), "{chs:?}");
        };
        fails(vec![counter(None), counter(None)]);
        let mut c = counter(None);
        c.update_period_s = 0.0;
        fails(vec![c]);
        let mut c = counter(None);
        c.update_period_s = f64::INFINITY;
        fails(vec![c]);
        fails(vec![counter(Some(0.0))]);
        fails(vec![channel(
            "gpu0",
            ChannelKind::EnergyCounter {
                resolution_j: -1.0,
                wrap_j: None,
            },
        )]);
        let mut c = counter(None);
        c.accuracy.relative = f64::NAN;
        fails(vec![c]);
        let mut c = counter(None);
        c.shaped_by = Some("nope".into());
        fails(vec![c]);
        // Shaped by a channel that is not power: a temperature.
        let mut c = counter(None);
        c.shaped_by = Some("temp".into());
        let temp = channel(
            "temp",
            ChannelKind::Telemetry {
                unit: "celsius".into(),
            },
        );
        fails(vec![c, temp]);
    }

    fn read_at(t: f64, values: &[(u32, f64, f64)]) -> ReadSample {
        ReadSample {
            started: t,
            finished: t + 1e-4,
            wall_s: 1e-4,
            result: Ok(values
                .iter()
                .map(|&(channel, timestamp_s, value)| RawReading {
                    channel,
                    reserved: 0,
                    timestamp_s,
                    value,
                })
                .collect()),
            dropped: 0,
        }
    }

    /// A counter read at 100 Hz with these values.
    fn counter_run(values: &[f64]) -> Vec<ReadSample> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let t = 100.0 + i as f64 * 0.01;
                read_at(t, &[(0, t, *v)])
            })
            .collect()
    }

    #[test]
    fn a_drop_is_a_wrap_only_when_a_modulus_is_declared_and_respected() {
        let wrapping = counter_run(&[19.8, 19.9, 0.1, 0.2]);
        let (f, counts, _) = check_reads(&[counter(Some(20.0))], &wrapping);
        assert_eq!(verdict(&f, Check::Counters), Some(Verdict::Pass), "{f:?}");
        assert_eq!(counts, [4]);
        let (f, ..) = check_reads(&[counter(None)], &wrapping);
        assert_eq!(verdict(&f, Check::Counters), Some(Verdict::Fail), "{f:?}");
        // Above the declared modulus: the declaration is wrong.
        let (f, ..) = check_reads(&[counter(Some(10.0))], &wrapping);
        assert_eq!(verdict(&f, Check::Counters), Some(Verdict::Fail), "{f:?}");
        // A drop from mid-range, read as a wrap, would be over half the modulus in 10 ms
        // (20 - 9.9 + 0.5 = 10.6 J): a reset, warned about.
        let (f, ..) = check_reads(&[counter(Some(20.0))], &counter_run(&[9.8, 9.9, 0.5]));
        assert_eq!(verdict(&f, Check::Counters), Some(Verdict::Warn), "{f:?}");
    }

    #[test]
    fn timestamps_must_be_in_order_and_on_the_reads_clock() {
        let gauge = channel(
            "p",
            ChannelKind::PowerGauge {
                timing: GaugeTiming::Instant,
                estimated: false,
            },
        );
        let ok = vec![
            read_at(10.0, &[(0, 10.0, 5.0)]),
            read_at(10.1, &[(0, 10.1, 5.0)]),
        ];
        let (f, ..) = check_reads(std::slice::from_ref(&gauge), &ok);
        assert_eq!(verdict(&f, Check::Timestamps), Some(Verdict::Pass), "{f:?}");
        for bad in [
            // In the future of the read that returned it.
            vec![read_at(10.0, &[(0, 10.5, 5.0)])],
            // Long before it (another clock, or a stale value stamped with its own time).
            vec![read_at(10.0, &[(0, 1.0, 5.0)])],
            // Backwards.
            vec![
                read_at(10.0, &[(0, 10.0, 5.0)]),
                read_at(10.1, &[(0, 9.9, 5.0)]),
            ],
            vec![read_at(10.0, &[(0, f64::NAN, 5.0)])],
        ] {
            let (f, ..) = check_reads(std::slice::from_ref(&gauge), &bad);
            assert_eq!(verdict(&f, Check::Timestamps), Some(Verdict::Fail), "{f:?}");
        }
        // A silent energy channel fails `readings`; failed reads are counted.
        let failed = vec![ReadSample {
            result: Err(ReadFailure {
                message: "gone".into(),
                panicked: false,
            }),
            ..read_at(10.0, &[])
        }];
        let (f, ..) = check_reads(std::slice::from_ref(&gauge), &failed);
        assert_eq!(verdict(&f, Check::Readings), Some(Verdict::Fail), "{f:?}");
        assert_eq!(verdict(&f, Check::Read), Some(Verdict::Fail), "{f:?}");
    }
}
