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
    /// What the instrument itself cost (self-accounting), when records carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<HarnessSummary>,
}

/// The harness's (ipw's own) CPU in the query windows, and its share of CPU-domain energy:
/// how much of the figures above is the instrument. Over every record that carries
/// [`crate::records::HarnessCpu`], failed ones included (their energy is in the totals too).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HarnessSummary {
    /// Records with harness figures.
    pub queries: usize,
    /// Harness CPU milliseconds per query.
    pub cpu_ms: Option<Distribution>,
    /// Harness CPU seconds, summed over records.
    pub cpu_s: f64,
    /// The ipw process's CPU seconds in the windows (an embedded engine included), summed.
    pub process_cpu_s: f64,
    /// The whole machine's busy CPU seconds in the windows, summed; `null` when any record
    /// lacks it.
    pub machine_cpu_s: Option<f64>,
    /// `cpu_s / machine_cpu_s`: the harness's share of all CPU work done in the windows.
    pub share_of_machine_cpu: Option<f64>,
    /// Joules of CPU-domain energy that were the harness's: per record, the gross energy of
    /// its `cpu-package` channels times the harness's share of the machine's busy CPU in the
    /// window (at most 1), summed. `null` without `cpu-package` channels.
    pub cpu_energy_j: Option<f64>,
    /// `cpu_energy_j` over the same records' `cpu-package` gross energy.
    pub share_of_cpu_energy: Option<f64>,
}

fn harness_summary(records: &[Record]) -> Option<HarnessSummary> {
    let with: Vec<(&Record, &crate::records::HarnessCpu)> = records
        .iter()
        .filter_map(|r| Some((r, r.harness.as_ref()?)))
        .collect();
    if with.is_empty() {
        return None;
    }
    let cpu_s: f64 = with.iter().map(|(_, h)| h.cpu_s).sum();
    let machine_cpu_s: Option<f64> = with.iter().map(|(_, h)| h.machine_cpu_s).sum();
    let mut package = PackageSums::default();
    for (r, _) in &with {
        package.add(r);
    }
    let (cpu_energy_j, share_of_cpu_energy) = package.figures();
    Some(HarnessSummary {
        queries: with.len(),
        cpu_ms: Distribution::of(with.iter().map(|(_, h)| h.cpu_s * 1000.0)),
        cpu_s,
        process_cpu_s: with.iter().map(|(_, h)| h.process_cpu_s).sum(),
        machine_cpu_s,
        share_of_machine_cpu: machine_cpu_s.filter(|&m| m > 0.0).map(|m| cpu_s / m),
        cpu_energy_j,
        share_of_cpu_energy,
    })
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
        super::bootstrap::bootstrap(&[&v], seed ^ salt, super::quality::mean)
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

/// The harness's share of the CPU package's energy, summed record by record (in order, so a
/// sum gathered as records stream past is the same number).
#[derive(Debug, Default, Clone, Copy)]
struct PackageSums {
    /// The harness's part of the package joules.
    harness_j: f64,
    /// Package joules of the records counted.
    cpu_j: f64,
    /// Any record counted.
    any: bool,
}

impl PackageSums {
    /// Count a record with harness figures and `cpu-package` channels that all have gross
    /// joules, and the machine's CPU seconds in its window.
    fn add(&mut self, r: &Record) {
        let (Some(h), Some(e)) = (&r.harness, &r.energy) else {
            return;
        };
        let mut package = e
            .channels
            .values()
            .filter(|c| c.domain == Some(ipw_sampler_sdk::Domain::CpuPackage))
            .peekable();
        if package.peek().is_none() {
            return;
        }
        let (Some(j), Some(machine)) = (
            package.map(|c| c.gross_j).sum::<Option<f64>>(),
            h.machine_cpu_s,
        ) else {
            return;
        };
        self.any = true;
        self.cpu_j += j;
        if machine > 0.0 {
            self.harness_j += j * (h.cpu_s / machine).min(1.0);
        }
    }

    /// The harness's package joules and their share of all package joules, where any record
    /// was counted.
    fn figures(&self) -> (Option<f64>, Option<f64>) {
        (
            self.any.then_some(self.harness_j),
            (self.any && self.cpu_j > 0.0).then(|| self.harness_j / self.cpu_j),
        )
    }
}

/// The per-channel gross joules a summary reports, gathered as records stream past: a caller
/// that must hold a run's records to [`summarize`] them can then drop each record's channels
/// (a map of its own per record, most of a record's memory) and put the sums back with
/// [`ChannelSums::into_summary`], giving exactly what `summarize` gives on the whole records.
#[derive(Debug, Default)]
pub struct ChannelSums {
    channels: BTreeMap<String, f64>,
    package: PackageSums,
}

impl ChannelSums {
    /// Count `r`'s channels as [`summarize`] does (answered records only, in order), and its
    /// `cpu-package` channels for the harness's share of them (every record, in order).
    pub fn add(&mut self, r: &Record) {
        self.package.add(r);
        let Some(e) = r.energy.as_ref().filter(|_| r.error.is_none()) else {
            return;
        };
        for (name, c) in &e.channels {
            *self.channels.entry(name.clone()).or_insert(0.0) += c.gross_j.unwrap_or(0.0);
        }
    }

    /// Drop `r`'s channels, after [`ChannelSums::add`] has counted them: nothing else in a
    /// summary reads them.
    pub fn strip(r: &mut Record) {
        if let Some(e) = r.energy.as_mut() {
            e.channels = BTreeMap::new();
        }
    }

    /// [`ChannelSums::strip`] `r`, and drop the texts no summary reads (prompt and its hash,
    /// response, answers, choices, a grade's extracted answer and explanation, a domain's
    /// explanation, the histories): what a caller keeps per record to summarise a run is then
    /// little more than its figures.
    pub fn lighten(r: &mut Record) {
        Self::strip(r);
        for text in [&mut r.prompt, &mut r.prompt_hash] {
            *text = String::new();
        }
        r.response = None;
        r.answers = Vec::new();
        r.choices = Vec::new();
        r.grade_history = Vec::new();
        r.domain_history = Vec::new();
        if let Some(g) = r.grade.as_mut() {
            g.extracted = None;
            g.explanation = None;
        }
        if let Some(d) = r.domain.as_mut() {
            d.explanation = None;
        }
    }

    /// The sums into a summary made from stripped records.
    pub fn into_summary(self, summary: &mut Summary) {
        if let Some(e) = summary.energy.as_mut() {
            e.channels = self.channels;
        }
        if let Some(h) = summary.harness.as_mut() {
            (h.cpu_energy_j, h.share_of_cpu_energy) = self.package.figures();
        }
    }
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
        latency_s: Distribution::of(ok.iter().filter_map(|r| r.measured_latency_s())),
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
        harness: harness_summary(records),
        by_dataset: by_dataset
            .into_iter()
            .map(|(name, rs)| {
                let ok: Vec<&&Record> = rs.iter().filter(|r| r.error.is_none()).collect();
                let s = DatasetSummary {
                    recorded: rs.len(),
                    ok: ok.len(),
                    errors: rs.len() - ok.len(),
                    latency_s: Distribution::of(ok.iter().filter_map(|r| r.measured_latency_s())),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose window had `package_j` J on a cpu-package channel, `gpu_j` J on a GPU
    /// one, and the given harness and machine CPU seconds.
    fn record(i: usize, package_j: f64, gpu_j: f64, harness_s: f64, machine_s: f64) -> Record {
        let channel = |j: f64, domain: &str| {
            serde_json::json!({"gross_j": j, "net_j": null, "idle_w": null, "flags": [],
                               "domain": domain})
        };
        serde_json::from_value(serde_json::json!({
            "schema": 1, "query_id": format!("d/{i}"), "index": i, "session": 0,
            "dataset": "d", "prompt_hash": "h", "prompt": "p", "answers": ["a"], "model": "m",
            "backend": "openai", "response": "r", "latency_s": 1.0, "attempts": 1,
            "started_at": "2026-01-01T00:00:00Z", "tokens_estimated": false,
            "window": {"start_s": i as f64, "end_s": i as f64 + 1.0},
            "energy": {"gross_j": package_j + gpu_j, "net_j": null, "mean_power_w": null,
                       "j_per_output_token": null, "estimated": false, "flags": [],
                       "channels": {"rapl/package-0": channel(package_j, "cpu-package"),
                                    "nvml/gpu0": channel(gpu_j, "gpu")}},
            "harness": {"cpu_s": harness_s, "process_cpu_s": harness_s,
                        "engine_cpu_s": null, "machine_cpu_s": machine_s}
        }))
        .unwrap()
    }

    #[test]
    fn channel_sums_of_stripped_records_give_the_summary_of_the_whole_records() {
        // Answered and failed records, records with and without harness figures, a channel
        // only some records have, one without gross joules.
        let mut records: Vec<Record> = (0..40)
            .map(|i| record(i, 1.0 + i as f64 / 7.0, 3.0 * i as f64 + 0.1, 0.01, 0.5))
            .collect();
        for (i, r) in records.iter_mut().enumerate() {
            if i % 3 == 0 {
                r.harness = None;
            }
            if i % 5 == 0 {
                r.error = Some(
                    serde_json::from_value(
                        serde_json::json!({"kind": "timeout", "message": "slow"}),
                    )
                    .unwrap(),
                );
            }
            let e = r.energy.as_mut().unwrap();
            if i % 4 == 0 {
                let mut extra = e.channels["nvml/gpu0"].clone();
                extra.gross_j = if i % 8 == 0 {
                    None
                } else {
                    Some(0.25 * i as f64)
                };
                e.channels.insert("wall/meter".into(), extra);
            }
        }
        let whole = summarize("m", "openai", 40, &records, 3);
        let mut sums = ChannelSums::default();
        let stripped: Vec<Record> = records
            .into_iter()
            .map(|mut r| {
                sums.add(&r);
                ChannelSums::lighten(&mut r);
                r
            })
            .collect();
        assert!(stripped
            .iter()
            .any(|r| r.energy.as_ref().unwrap().channels.is_empty()));
        let mut summary = summarize("m", "openai", 40, &stripped, 3);
        assert_ne!(
            serde_json::to_value(&summary).unwrap(),
            serde_json::to_value(&whole).unwrap(),
            "stripping must show without the sums"
        );
        sums.into_summary(&mut summary);
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            serde_json::to_value(&whole).unwrap()
        );
        assert_eq!(whole.energy.unwrap().channels.len(), 3);
    }

    #[test]
    fn harness_share_is_its_part_of_the_busy_cpu_times_cpu_package_energy() {
        // Query 0: the harness was 10% of the machine's busy CPU in a 20 J package window;
        // query 1: 50% of 10 J. GPU energy is never the harness's.
        let records = [
            record(0, 20.0, 100.0, 0.1, 1.0),
            record(1, 10.0, 50.0, 0.2, 0.4),
        ];
        let h = summarize("m", "openai", 2, &records, 1).harness.unwrap();
        assert_eq!(h.queries, 2);
        assert!((h.cpu_s - 0.3).abs() < 1e-12);
        assert!((h.machine_cpu_s.unwrap() - 1.4).abs() < 1e-12);
        assert!((h.share_of_machine_cpu.unwrap() - 0.3 / 1.4).abs() < 1e-12);
        assert!((h.cpu_energy_j.unwrap() - (2.0 + 5.0)).abs() < 1e-12);
        assert!((h.share_of_cpu_energy.unwrap() - 7.0 / 30.0).abs() < 1e-12);
        assert!((h.cpu_ms.unwrap().p50 - 150.0).abs() < 1e-9);
    }

    #[test]
    fn records_without_harness_figures_have_no_harness_summary() {
        let mut r = record(0, 1.0, 1.0, 0.1, 1.0);
        r.harness = None;
        assert!(summarize("m", "openai", 1, &[r], 1).harness.is_none());
    }
}
