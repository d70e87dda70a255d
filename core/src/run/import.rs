//! Adding an external trace to a finished run: a wall meter's log, recorded on its own clock in
//! Unix time, read through a sampler plugin (`replay` with `time_base = "unix"`), placed in
//! each session by the session's recorded clock origin, appended to `power.jsonl`, described in
//! the manifest, and attributed like any reading taken during the run.

use super::finish::{reattribute_locked, Reattributed};
use super::RunError;
use crate::config::SamplerConfig;
use crate::power::loader::SamplerError;
use crate::power::session::open_sampler;
use crate::records::clock::ClockOrigin;
use crate::records::{PowerLine, PowerLog, RunDir, SamplerInfo};
use ipw_sampler_sdk::abi::RawReading;
use std::path::{Path, PathBuf};

/// Import the readings of `cfg` (a sampler whose config has `time_base = "unix"`; it is set
/// when absent) into the run at `dir`, then re-attribute every record.
pub fn import_trace(
    dir: &Path,
    mut cfg: SamplerConfig,
    plugin_dirs: &[PathBuf],
) -> Result<(usize, Reattributed), RunError> {
    let run = RunDir::new(dir);
    let lock = run.lock()?;
    let mut manifest = run.read_manifest()?;
    let refuse = |message: String| RunError::Import {
        dir: dir.to_path_buf(),
        message,
    };
    let origins: Vec<ClockOrigin> = manifest
        .sessions
        .iter()
        .map(|s| s.clock)
        .collect::<Option<_>>()
        .ok_or_else(|| {
            refuse("a session has no clock origin (recorded by an older ipw): a wall-clock trace cannot be placed".into())
        })?;
    if let Some(obj) = cfg.config.as_object_mut() {
        match obj.get("time_base").and_then(|v| v.as_str()) {
            None => {
                obj.insert("time_base".into(), "unix".into());
            }
            Some("unix") => {}
            Some(other) => {
                return Err(refuse(format!(
                    "an imported trace must have time_base = \"unix\" (its own Unix timestamps), not `{other}`"
                )))
            }
        }
    }
    let (lib, mut handle) = open_sampler(&cfg, plugin_dirs)?;
    // The plugin mapped Unix time onto this process's monotonic clock when it opened; undo that
    // with a pair read now, then map onto each session's clock with that session's own pair.
    let now = ClockOrigin::now();
    let mut raw: Vec<RawReading> = Vec::new();
    loop {
        let before = raw.len();
        handle
            .read(&mut raw)
            .map_err(|message| SamplerError::Plugin {
                name: handle.name.clone(),
                path: lib.path.clone(),
                message,
            })?;
        if raw.len() == before {
            break;
        }
    }
    let names: Vec<String> = handle
        .channels
        .iter()
        .map(|c| format!("{}/{}", handle.name, c.name))
        .collect();
    let mut lines = Vec::new();
    let mut per_session = vec![0usize; origins.len()];
    for r in &raw {
        let unix = r.timestamp_s - now.monotonic_s + now.unix_s;
        // The session whose start is the last one at or before this time.
        let Some(s) = origins.iter().rposition(|o| o.unix_s <= unix) else {
            continue;
        };
        per_session[s] += 1;
        lines.push(PowerLine {
            session: s,
            channel: names[r.channel as usize].clone(),
            t: origins[s].to_run_clock(unix),
            v: Some(r.value),
            error: None,
        });
    }
    if lines.is_empty() {
        return Err(refuse(
            "no reading of the trace falls inside the run's sessions (check its time_field is Unix seconds)".into(),
        ));
    }
    for (s, n) in per_session.iter().enumerate().filter(|(_, n)| **n > 0) {
        let session = &mut manifest.sessions[s];
        if let Some(taken) = session
            .samplers
            .iter()
            .flat_map(|i| {
                i.channels
                    .iter()
                    .map(move |c| format!("{}/{}", i.name, c.name))
            })
            .find(|c| names.contains(c))
        {
            return Err(refuse(format!(
                "session {s} already has channel `{taken}`; give the trace another `channel` name"
            )));
        }
        let span = session_span(&lines, s);
        session.samplers.push(SamplerInfo {
            name: lib.name.clone(),
            sha256: crate::power::session::file_sha256(&lib.path),
            path: lib.path.clone(),
            sdk_version: lib.sdk_version.clone(),
            rate_hz: if span > 0.0 { *n as f64 / span } else { 0.0 },
            interval_s: if *n > 1 { span / (*n - 1) as f64 } else { 0.0 },
            edge_reads: false,
            channels: handle.channels.clone(),
            stats: None,
        });
    }
    let log = PowerLog::open(&run.power_log_path()).map_err(|source| RunError::Io {
        path: run.power_log_path(),
        source,
    })?;
    log.append(&lines);
    log.sync();
    run.write_manifest(&lock, &manifest)?;
    let done = reattribute_locked(&run, &lock)?;
    Ok((lines.len(), done))
}

fn session_span(lines: &[PowerLine], s: usize) -> f64 {
    let (lo, hi) = lines
        .iter()
        .filter(|l| l.session == s)
        .fold((f64::MAX, f64::MIN), |(lo, hi), l| {
            (lo.min(l.t), hi.max(l.t))
        });
    (hi - lo).max(0.0)
}
