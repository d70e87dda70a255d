//! Workload over time: an arrival trace (timestamps with prompt and response token counts, e.g.
//! the public BurstGPT format) replayed through a router, to see how much of the reference's
//! load (requests and tokens), in total, per hour and at its peak, the other models take off.
//!
//! Each request of the trace stands for one query of the table: request i draws a row with a
//! seeded generator, so the trace's timing meets the table's query mix. A router's decision
//! depends only on the row, so each row is decided once. Load is counted in requests and in
//! tokens (the trace's own counts); the peak is the busiest minute of tokens sent to the
//! reference, with and without routing.

use super::give_up::Patience;
use super::routers::{Decision, Router};
use crate::joined::Table;
use crate::rng::SplitMix64;
use std::path::Path;

/// One request of an arrival trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Seconds from the trace's start.
    pub t: f64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Response tokens.
    pub output_tokens: u64,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct TraceError {
    /// The file.
    pub path: std::path::PathBuf,
    /// The line, for a bad row.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Read a CSV trace: a time column (`Timestamp` or `t`, seconds), prompt tokens (`Request
/// tokens` or `input_tokens`) and response tokens (`Response tokens` or `output_tokens`).
pub fn read_trace(path: &Path) -> Result<Vec<Arrival>, TraceError> {
    let err = |line: Option<usize>, message: String| TraceError {
        path: path.into(),
        line,
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(None, e.to_string()))?;
    let header = reader
        .headers()
        .map_err(|e| err(None, e.to_string()))?
        .clone();
    let find = |names: &[&str]| header.iter().position(|h| names.contains(&h.trim()));
    let (Some(t), Some(i), Some(o)) = (
        find(&["Timestamp", "timestamp", "t"]),
        find(&["Request tokens", "input_tokens"]),
        find(&["Response tokens", "output_tokens"]),
    ) else {
        return Err(err(
            None,
            format!(
                "needs columns Timestamp (or t), Request tokens (or input_tokens) and Response tokens (or output_tokens); found: {}",
                header.iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let mut out = Vec::new();
    for (k, rec) in reader.records().enumerate() {
        let line = k + 2;
        let rec = rec.map_err(|e| err(Some(line), e.to_string()))?;
        let num = |col: usize, what: &str| -> Result<f64, TraceError> {
            let s = rec.get(col).unwrap_or("").trim();
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| err(Some(line), format!("{what} `{s}` is not a number >= 0")))
        };
        out.push(Arrival {
            t: num(t, "time")?,
            input_tokens: num(i, "request tokens")? as u64,
            output_tokens: num(o, "response tokens")? as u64,
        });
    }
    if out.windows(2).any(|w| w[1].t < w[0].t) {
        out.sort_by(|a, b| a.t.total_cmp(&b.t));
    }
    Ok(out)
}

/// Load in one hour of the trace.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HourLoad {
    /// Hour index from the trace's start.
    pub hour: usize,
    /// Requests that arrived.
    pub requests: usize,
    /// Of those, the ones the router sent to the reference.
    pub to_reference: usize,
    /// Tokens (prompt + response) that arrived.
    pub tokens: u64,
    /// Of those, the tokens sent to the reference.
    pub tokens_to_reference: u64,
}

/// A router's effect on a workload.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadReport {
    /// The router.
    pub router: String,
    /// Requests in the trace.
    pub requests: usize,
    /// Share of requests taken off the reference.
    pub offloaded_requests: f64,
    /// Share of tokens taken off the reference.
    pub offloaded_tokens: f64,
    /// The busiest minute's tokens at the reference when everything goes there.
    pub peak_tokens_per_min_all_reference: u64,
    /// The busiest minute's tokens at the reference under this router.
    pub peak_tokens_per_min_routed: u64,
    /// 1 − routed peak / all-reference peak.
    pub peak_reduction: f64,
    /// Per hour.
    pub hours: Vec<HourLoad>,
}

/// Replay `trace` through `router` over `table`'s queries.
pub fn replay(
    trace: &[Arrival],
    router: &mut dyn Router,
    table: &Table,
    reference: usize,
    seed: u64,
) -> WorkloadReport {
    let mut decided: Vec<Option<bool>> = vec![None; table.rows.len()];
    // A router given up on (see `give_up`) sends its remaining queries to the reference, as
    // a failed decision does.
    let mut patience = Patience::new(router);
    let mut rng = SplitMix64::new(seed ^ 0x574f_524b);
    let mut hours: Vec<HourLoad> = Vec::new();
    let mut minutes_all: Vec<u64> = Vec::new();
    let mut minutes_routed: Vec<u64> = Vec::new();
    for a in trace {
        let row = rng.below(table.rows.len().max(1));
        let to_reference = *decided[row].get_or_insert_with(|| {
            let d = patience
                .decide(router, &table.rows[row], table, Ok)
                .unwrap_or(Decision {
                    tried: vec![reference],
                    confidence: None,
                });
            // A cascade that escalates loads the reference too.
            d.tried.contains(&reference) || d.tried.iter().any(|&c| c >= table.columns.len())
        });
        let tokens = a.input_tokens + a.output_tokens;
        let h = (a.t / 3600.0) as usize;
        if hours.len() <= h {
            hours.resize_with(h + 1, HourLoad::default);
        }
        let hl = &mut hours[h];
        hl.hour = h;
        hl.requests += 1;
        hl.tokens += tokens;
        let m = (a.t / 60.0) as usize;
        if minutes_all.len() <= m {
            minutes_all.resize(m + 1, 0);
            minutes_routed.resize(m + 1, 0);
        }
        minutes_all[m] += tokens;
        if to_reference {
            hl.to_reference += 1;
            hl.tokens_to_reference += tokens;
            minutes_routed[m] += tokens;
        }
    }
    for (i, h) in hours.iter_mut().enumerate() {
        h.hour = i;
    }
    let requests: usize = hours.iter().map(|h| h.requests).sum();
    let tokens: u64 = hours.iter().map(|h| h.tokens).sum();
    let share = |part: f64, all: f64| if all > 0.0 { 1.0 - part / all } else { 0.0 };
    let peak_all = minutes_all.iter().copied().max().unwrap_or(0);
    let peak_routed = minutes_routed.iter().copied().max().unwrap_or(0);
    WorkloadReport {
        router: router.name(),
        requests,
        offloaded_requests: share(
            hours.iter().map(|h| h.to_reference).sum::<usize>() as f64,
            requests as f64,
        ),
        offloaded_tokens: share(
            hours.iter().map(|h| h.tokens_to_reference).sum::<u64>() as f64,
            tokens as f64,
        ),
        peak_tokens_per_min_all_reference: peak_all,
        peak_tokens_per_min_routed: peak_routed,
        peak_reduction: share(peak_routed as f64, peak_all as f64),
        hours,
    }
}
