//! `summary.json`: counts, errors by kind, latency/TTFT/token percentiles and throughput for one
//! run, overall and per dataset, computed from its records.

use super::Distribution;
use crate::records::QueryEnergy;
use crate::records::Record;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the summary format.
pub const SUMMARY_SCHEMA: u32 = 1;

/// The summary of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Format version.
    pub schema: u32,
    /// Model name.
    pub model: String,
    /// Backend kind.
    pub backend: String,
    /// Queries planned for the run.
    pub planned: usize,
    /// Records on disk.
    pub recorded: usize,
    /// Records with a response.
    pub ok: usize,
    /// Records with an error.
    pub errors: usize,
    /// Error count per kind.
    pub errors_by_kind: BTreeMap<String, usize>,
    /// Count per finish reason (successful records).
    pub finish_reasons: BTreeMap<String, usize>,
    /// Successful records whose token counts are estimates.
    pub tokens_estimated: usize,
    /// Seconds from request to last byte (successful records).
    pub latency_s: Option<Distribution>,
    /// Seconds to first token.
    pub ttft_s: Option<Distribution>,
    /// Decode tokens per second.
    pub decode_tps: Option<Distribution>,
    /// Prompt tokens.
    pub input_tokens: Option<Distribution>,
    /// Generated tokens.
    pub output_tokens: Option<Distribution>,
    /// Answered records for which the server served part of the prompt from its cache:
    /// cheaper and faster than a cold query, so not comparable with one.
    #[serde(default)]
    pub prompt_cache_hits: usize,
    /// Seconds during which at least one query was in flight (union of windows).
    pub busy_s: f64,
    /// Recorded queries per busy second.
    pub queries_per_s: f64,
    /// Generated tokens per busy second.
    pub output_tokens_per_s: f64,
    /// The same counts and distributions per dataset.
    pub by_dataset: BTreeMap<String, DatasetSummary>,
    /// Energy, when the run had samplers.
    pub energy: Option<EnergySummary>,
    /// Accuracy, APJ and APW with 95% intervals, when responses were graded.
    pub quality: Option<super::QualitySummary>,
}

/// Energy over the successful records that have it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnergySummary {
    /// Records with a gross energy figure.
    pub queries: usize,
    /// Answered records without one (a session that recorded no power, or readings lost in a
    /// crash): every figure below leaves them out, so they are counted here, not hidden.
    #[serde(default)]
    pub without_energy: usize,
    /// True when any channel's power is modelled, not measured: label every figure "estimated".
    pub estimated: bool,
    /// Mean gross joules per answered query with its bootstrap 95% interval (the sampling
    /// uncertainty of the mean, over records).
    #[serde(default)]
    pub gross_j_mean: Option<super::Estimate>,
    /// Mean net joules per answered query with its bootstrap 95% interval.
    #[serde(default)]
    pub net_j_mean: Option<super::Estimate>,
    /// Gross joules per query.
    pub gross_j: Option<Distribution>,
    /// Net (idle-subtracted) joules per query.
    pub net_j: Option<Distribution>,
    /// Mean power over each query window, watts.
    pub mean_power_w: Option<Distribution>,
    /// Joules per generated token (net where available).
    pub j_per_output_token: Option<Distribution>,
    /// Gross joules before the first token (reading the prompt), per query that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_j: Option<Distribution>,
    /// Gross joules from the first token on (generating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_j: Option<Distribution>,
    /// Decode joules per generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_j_per_output_token: Option<Distribution>,
    /// Sum of gross joules, failed queries included (their energy was spent).
    pub total_gross_j: f64,
    /// Sum of net joules (records with net only), failed queries included.
    pub total_net_j: f64,
    /// Gross joules of failed queries (in the totals, not in the per-query figures).
    #[serde(default)]
    pub failed_gross_j: f64,
    /// How many records carry each quality flag.
    pub flags: BTreeMap<String, usize>,
    /// Sum of gross joules per channel.
    pub channels: BTreeMap<String, f64>,
}

fn energy_summary(records: &[Record], ok: &[&Record], seed: u64) -> Option<EnergySummary> {
    let energies: Vec<&QueryEnergy> = ok.iter().filter_map(|r| r.energy.as_ref()).collect();
    let failed: Vec<&QueryEnergy> = records
        .iter()
        .filter(|r| r.error.is_some())
        .filter_map(|r| r.energy.as_ref())
        .collect();
    if energies.is_empty() && failed.is_empty() {
        return None;
    }
    let failed_gross_j: f64 = failed.iter().filter_map(|e| e.gross_j).sum();
    let failed_net_j: f64 = failed.iter().filter_map(|e| e.net_j).sum();
    let mut flags = BTreeMap::new();
    let mut channels = BTreeMap::new();
    for e in &energies {
        for f in &e.flags {
            let name = serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *flags.entry(name).or_insert(0) += 1;
        }
        for (name, c) in &e.channels {
            *channels.entry(name.clone()).or_insert(0.0) += c.gross_j.unwrap_or(0.0);
        }
    }
    let mean_of = |v: Vec<f64>, salt: u64| {
        super::quality::bootstrap(v.len(), seed ^ salt, |idx| {
            (!idx.is_empty()).then(|| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64)
        })
    };
    // The mean of the records' bound ends, over the records the mean is taken over; `None`
    // when any of them has no bound (attributed before bounds existed).
    let mean_bound = |value: fn(&QueryEnergy) -> Option<f64>,
                      bound: fn(&QueryEnergy) -> Option<[f64; 2]>| {
        let bounds: Option<Vec<[f64; 2]>> = energies
            .iter()
            .filter(|e| value(e).is_some())
            .map(|e| bound(e))
            .collect();
        let bounds = bounds.filter(|b| !b.is_empty())?;
        let n = bounds.len() as f64;
        Some([
            bounds.iter().map(|b| b[0]).sum::<f64>() / n,
            bounds.iter().map(|b| b[1]).sum::<f64>() / n,
        ])
    };
    Some(EnergySummary {
        gross_j_mean: mean_of(energies.iter().filter_map(|e| e.gross_j).collect(), 0x11)
            .map(|e| e.with_measurement(mean_bound(|e| e.gross_j, |e| e.gross_bound_j))),
        net_j_mean: mean_of(energies.iter().filter_map(|e| e.net_j).collect(), 0x12)
            .map(|e| e.with_measurement(mean_bound(|e| e.net_j, |e| e.net_bound_j))),
        queries: energies.iter().filter(|e| e.gross_j.is_some()).count(),
        without_energy: ok
            .iter()
            .filter(|r| r.energy.as_ref().and_then(|e| e.gross_j).is_none())
            .count(),
        estimated: energies.iter().any(|e| e.estimated),
        gross_j: Distribution::of(energies.iter().filter_map(|e| e.gross_j)),
        net_j: Distribution::of(energies.iter().filter_map(|e| e.net_j)),
        mean_power_w: Distribution::of(energies.iter().filter_map(|e| e.mean_power_w)),
        j_per_output_token: Distribution::of(energies.iter().filter_map(|e| e.j_per_output_token)),
        prefill_j: Distribution::of(energies.iter().filter_map(|e| Some(e.phases?.prefill_j))),
        decode_j: Distribution::of(energies.iter().filter_map(|e| Some(e.phases?.decode_j))),
        decode_j_per_output_token: Distribution::of(ok.iter().filter_map(|r| {
            let d = r.energy.as_ref()?.phases?.decode_j;
            let n = r.output_tokens.filter(|&n| n > 0)?;
            Some(d / n as f64)
        })),
        total_gross_j: energies.iter().filter_map(|e| e.gross_j).sum::<f64>() + failed_gross_j,
        total_net_j: energies.iter().filter_map(|e| e.net_j).sum::<f64>() + failed_net_j,
        failed_gross_j,
        flags,
        channels,
    })
}

/// Per-dataset part of a summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Records.
    pub recorded: usize,
    /// With a response.
    pub ok: usize,
    /// With an error.
    pub errors: usize,
    /// Latency of successful records.
    pub latency_s: Option<Distribution>,
    /// Generated tokens of successful records.
    pub output_tokens: Option<Distribution>,
}

/// Summarise records. `planned` is the number of queries in the run's plan; `seed` drives the
/// bootstrap intervals.
pub fn summarize(
    model: &str,
    backend: &str,
    planned: usize,
    records: &[Record],
    seed: u64,
) -> Summary {
    let ok: Vec<&Record> = records.iter().filter(|r| r.error.is_none()).collect();
    let mut errors_by_kind = BTreeMap::new();
    for r in records.iter().filter_map(|r| r.error.as_ref()) {
        *errors_by_kind.entry(r.kind.clone()).or_insert(0) += 1;
    }
    let mut finish_reasons = BTreeMap::new();
    for r in &ok {
        *finish_reasons
            .entry(r.finish_reason.clone().unwrap_or_else(|| "unknown".into()))
            .or_insert(0) += 1;
    }
    let busy_s = busy_seconds(records);
    let out_tokens: u64 = ok.iter().filter_map(|r| r.output_tokens).sum();
    let mut by_dataset: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_dataset.entry(r.dataset.clone()).or_default().push(r);
    }
    Summary {
        schema: SUMMARY_SCHEMA,
        model: model.into(),
        backend: backend.into(),
        planned,
        recorded: records.len(),
        ok: ok.len(),
        errors: records.len() - ok.len(),
        errors_by_kind,
        finish_reasons,
        tokens_estimated: ok.iter().filter(|r| r.tokens_estimated).count(),
        latency_s: Distribution::of(ok.iter().map(|r| r.latency_s)),
        ttft_s: Distribution::of(ok.iter().filter_map(|r| r.ttft_s)),
        decode_tps: Distribution::of(ok.iter().filter_map(|r| r.decode_tps)),
        input_tokens: Distribution::of(ok.iter().filter_map(|r| r.input_tokens.map(|t| t as f64))),
        output_tokens: Distribution::of(
            ok.iter().filter_map(|r| r.output_tokens.map(|t| t as f64)),
        ),
        prompt_cache_hits: ok
            .iter()
            .filter(|r| r.cached_prompt_tokens.is_some_and(|n| n > 0))
            .count(),
        busy_s,
        queries_per_s: if busy_s > 0.0 {
            records.len() as f64 / busy_s
        } else {
            0.0
        },
        output_tokens_per_s: if busy_s > 0.0 {
            out_tokens as f64 / busy_s
        } else {
            0.0
        },
        energy: energy_summary(records, &ok, seed),
        quality: super::quality_summary(records, seed),
        by_dataset: by_dataset
            .into_iter()
            .map(|(name, rs)| {
                let ok: Vec<&&Record> = rs.iter().filter(|r| r.error.is_none()).collect();
                let s = DatasetSummary {
                    recorded: rs.len(),
                    ok: ok.len(),
                    errors: rs.len() - ok.len(),
                    latency_s: Distribution::of(ok.iter().map(|r| r.latency_s)),
                    output_tokens: Distribution::of(
                        ok.iter().filter_map(|r| r.output_tokens.map(|t| t as f64)),
                    ),
                };
                (name, s)
            })
            .collect(),
    }
}

/// Length of the union of all query windows: the sum of their busy shares (the same
/// measure APW divides by). Windows are on the host's monotonic clock, so this stays right
/// across a resumed run (the gap between sessions is not counted).
fn busy_seconds(records: &[Record]) -> f64 {
    let windows: Vec<(f64, f64)> = records
        .iter()
        .map(|r| (r.window.start_s, r.window.end_s))
        .collect();
    super::stats::busy_shares(&windows).iter().sum()
}
