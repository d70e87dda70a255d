//! Live metrics of a profile run, for Prometheus: `ipw profile --metrics ADDR` serves them on
//! `/metrics` while the run lasts.
//!
//! What is counted and where it comes from:
//! - per model: queries, failures, tokens, time to first token and latency (histograms),
//!   graded queries and their scores, the harness's CPU inside the query windows: from each
//!   record as it is written (the same record that goes to `records.jsonl`, counted after it
//!   is on disk, so a scrape never counts more than the file holds);
//! - per energy channel: power, energy, readings, failed reads and the age of the last
//!   reading (sampler health): from every reading as the power log takes it ([`ReadingTap`]),
//!   folded by [`channels`];
//! - at the end of a model's run: the energy attributed to its queries and the records per
//!   quality flag (attribution runs after the last query, so these appear then);
//! - the process's CPU, and the metrics thread's own.
//!
//! The metrics thread is an ordinary thread of the ipw process, so its CPU is inside the
//! harness CPU every record carries; it never runs on a query's path (a query's task only
//! takes a lock to add its record, after its window has closed).

mod channels;
mod serve;
mod text;

use crate::records::{PowerLineRef, ReadingTap, Record, SamplerInfo};
use crate::run::{RunObserver, RunOutcome};
use channels::Channel;
use ipw_sampler_sdk::{ChannelKind, Domain};
pub use serve::{MetricsServer, ServeError};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use text::{Exposition, Histogram};

/// Live counters of one profile process, shared by the run (which adds to them) and the
/// metrics server (which reads them).
#[derive(Clone, Default)]
pub struct LiveMetrics {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    models: BTreeMap<String, ModelStats>,
    channels: BTreeMap<String, Channel>,
    /// Sampler sessions started so far.
    generation: u64,
    /// The latest session whose samplers were described.
    described: u64,
    /// CPU seconds the metrics thread has used.
    server_cpu_s: f64,
}

#[derive(Default)]
struct ModelStats {
    planned: usize,
    queries: u64,
    failed: u64,
    prompt_tokens: u64,
    generated_tokens: u64,
    ttft: Histogram,
    latency: Histogram,
    graded: u64,
    score: f64,
    harness_cpu_s: f64,
    attributed: Option<Attributed>,
}

/// What attribution gave a finished run.
struct Attributed {
    gross_j: f64,
    net_j: f64,
    flags: BTreeMap<String, usize>,
}

/// The readings of one sampler session, shown to the live counters.
struct SessionTap {
    state: Arc<Mutex<State>>,
    generation: u64,
}

impl ReadingTap for SessionTap {
    fn reading(&self, line: &PowerLineRef<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let described = s.described == self.generation;
        // No `String` per reading: the channel's entry is made once.
        if !s.channels.contains_key(line.channel) {
            let c = Channel::new(self.generation);
            s.channels.insert(line.channel.to_string(), c);
        }
        let Some(c) = s.channels.get_mut(line.channel) else {
            return;
        };
        // A line of a channel no sampler describes (the host's own readings of other load)
        // is not energy.
        if described && !c.is_described(self.generation) {
            c.telemetry(self.generation);
        }
        c.add(self.generation, line.t, line.v);
    }
}

impl LiveMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fold the readings waiting in every channel (the metrics thread does this about once a
    /// second, and before each scrape).
    pub fn fold(&self) {
        for c in self.lock().channels.values_mut() {
            c.fold();
        }
    }

    /// Record the metrics thread's CPU so far.
    fn server_cpu(&self, cpu_s: f64) {
        self.lock().server_cpu_s = cpu_s;
    }

    /// The metrics as Prometheus text, folded up to now.
    pub fn render(&self) -> String {
        self.fold();
        let s = self.lock();
        let mut e = Exposition::default();
        render_models(&mut e, &s.models);
        render_channels(&mut e, &s.channels);
        e.family(
            "ipw_process_cpu_seconds_total",
            "counter",
            "CPU seconds of the ipw process (an embedded model's threads included).",
        );
        e.sample(
            "ipw_process_cpu_seconds_total",
            &[],
            crate::selfcpu::process_cpu_s(),
        );
        e.family(
            "ipw_metrics_cpu_seconds_total",
            "counter",
            "CPU seconds of the metrics thread itself (inside the harness CPU the records carry).",
        );
        e.sample("ipw_metrics_cpu_seconds_total", &[], s.server_cpu_s);
        e.finish()
    }
}

fn render_models(e: &mut Exposition, models: &BTreeMap<String, ModelStats>) {
    type Figure = fn(&ModelStats) -> Option<f64>;
    let per_model: [(&str, &str, &str, Figure); 10] = [
        ("ipw_queries_planned", "gauge", "Queries the run plans.", |m| {
            Some(m.planned as f64)
        }),
        (
            "ipw_queries_total",
            "counter",
            "Queries finished (answered or failed) and written.",
            |m| Some(m.queries as f64),
        ),
        (
            "ipw_queries_failed_total",
            "counter",
            "Queries that ended in an error.",
            |m| Some(m.failed as f64),
        ),
        (
            "ipw_prompt_tokens_total",
            "counter",
            "Prompt tokens of the finished queries.",
            |m| Some(m.prompt_tokens as f64),
        ),
        (
            "ipw_generated_tokens_total",
            "counter",
            "Generated tokens of the finished queries.",
            |m| Some(m.generated_tokens as f64),
        ),
        (
            "ipw_graded_queries_total",
            "counter",
            "Queries graded so far (inline grading; with concurrency above 1 grading waits for the session's end).",
            |m| Some(m.graded as f64),
        ),
        (
            "ipw_score_total",
            "counter",
            "Sum of the scores of the graded queries.",
            |m| Some(m.score),
        ),
        (
            "ipw_accuracy_ratio",
            "gauge",
            "Mean score of the graded queries so far.",
            |m| (m.graded > 0).then(|| m.score / m.graded as f64),
        ),
        (
            "ipw_harness_window_cpu_seconds_total",
            "counter",
            "CPU seconds the harness (ipw itself) spent inside the finished queries' windows.",
            |m| Some(m.harness_cpu_s),
        ),
        (
            "ipw_attributed_energy_joules",
            "gauge",
            "Energy attributed to the run's queries (gross), once attribution has run at the run's end.",
            |m| m.attributed.as_ref().map(|a| a.gross_j),
        ),
    ];
    for (name, kind, help, figure) in per_model {
        e.family(name, kind, help);
        for (model, m) in models {
            if let Some(v) = figure(m) {
                e.sample(name, &[("model", model)], v);
            }
        }
    }
    e.family(
        "ipw_attributed_net_energy_joules",
        "gauge",
        "Energy attributed to the run's queries above idle (net), once attribution has run.",
    );
    for (model, m) in models {
        if let Some(a) = &m.attributed {
            e.sample(
                "ipw_attributed_net_energy_joules",
                &[("model", model)],
                a.net_j,
            );
        }
    }
    e.family(
        "ipw_flagged_queries",
        "gauge",
        "Records carrying each energy quality flag, once attribution has run.",
    );
    for (model, m) in models {
        for (flag, n) in m.attributed.iter().flat_map(|a| &a.flags) {
            e.sample(
                "ipw_flagged_queries",
                &[("model", model), ("flag", flag)],
                *n as f64,
            );
        }
    }
    type Of = fn(&ModelStats) -> &Histogram;
    let histograms: [(&str, &str, Of); 2] = [
        (
            "ipw_ttft_seconds",
            "Seconds from request to first token.",
            |m| &m.ttft,
        ),
        (
            "ipw_query_latency_seconds",
            "Seconds from request to last byte (answered queries).",
            |m| &m.latency,
        ),
    ];
    for (name, help, h) in histograms {
        e.family(name, "histogram", help);
        for (model, m) in models {
            e.histogram(name, &[("model", model)], h(m));
        }
    }
}

fn render_channels(e: &mut Exposition, channels: &BTreeMap<String, Channel>) {
    let now = std::time::Instant::now();
    type Figure = fn(&Channel, std::time::Instant) -> Option<f64>;
    let per_channel: [(&str, &str, &str, Figure); 5] = [
        (
            "ipw_channel_power_watts",
            "gauge",
            "Mean power of the channel over its latest second of readings.",
            |c, _| c.watts,
        ),
        (
            "ipw_channel_energy_joules_total",
            "counter",
            "Energy of the channel since its first reading in this process (sessions added up).",
            |c, _| Some(c.energy_j),
        ),
        (
            "ipw_sampler_readings_total",
            "counter",
            "Readings taken of the channel.",
            |c, _| Some(c.readings as f64),
        ),
        (
            "ipw_sampler_read_errors_total",
            "counter",
            "Failed or non-finite reads of the channel.",
            |c, _| Some(c.errors as f64),
        ),
        (
            "ipw_sampler_last_reading_age_seconds",
            "gauge",
            "Seconds since the channel's last reading (a stuck sampler grows this).",
            |c, now| c.last_reading.map(|t| now.duration_since(t).as_secs_f64()),
        ),
    ];
    for (name, kind, help, figure) in per_channel {
        e.family(name, kind, help);
        for (channel, c) in channels.iter().filter(|(_, c)| c.is_energy()) {
            if let Some(v) = figure(c, now) {
                let estimated = if c.estimated { "true" } else { "false" };
                e.sample(
                    name,
                    &[
                        ("channel", channel),
                        ("domain", &c.domain),
                        ("estimated", estimated),
                    ],
                    v,
                );
            }
        }
    }
}

impl RunObserver for LiveMetrics {
    fn run_started(&self, model: &str, _dir: &Path, total: usize, _done: usize) {
        self.lock()
            .models
            .entry(model.to_string())
            .or_default()
            .planned = total;
    }

    fn recorded(&self, r: &Record) {
        let mut s = self.lock();
        let m = s.models.entry(r.model.clone()).or_default();
        m.queries += 1;
        if r.error.is_some() {
            m.failed += 1;
        } else {
            m.latency.observe(r.latency_s);
        }
        m.prompt_tokens += r.input_tokens.unwrap_or(0);
        m.generated_tokens += r.output_tokens.unwrap_or(0);
        if let Some(t) = r.ttft_s {
            m.ttft.observe(t);
        }
        if let Some(score) = r.grade.as_ref().and_then(|g| g.score) {
            m.graded += 1;
            m.score += score;
        }
        if let Some(h) = &r.harness {
            m.harness_cpu_s += h.cpu_s;
        }
    }

    fn reading_tap(&self) -> Option<Arc<dyn ReadingTap>> {
        let mut s = self.lock();
        s.generation += 1;
        Some(Arc::new(SessionTap {
            state: self.state.clone(),
            generation: s.generation,
        }))
    }

    fn sampling(&self, _model: &str, samplers: &[SamplerInfo]) {
        let mut s = self.lock();
        let generation = s.generation;
        s.described = generation;
        for info in samplers {
            for ch in &info.channels {
                let channel = s
                    .channels
                    .entry(format!("{}/{}", info.name, ch.name))
                    .or_insert_with(|| Channel::new(generation));
                if matches!(ch.kind, ChannelKind::Telemetry { .. })
                    || ch.domain == Domain::Telemetry
                {
                    channel.telemetry(generation);
                    continue;
                }
                channel.describe(generation, ch.kind.clone(), ch.domain.name().to_string());
            }
        }
        for c in s.channels.values_mut() {
            if !c.is_described(generation) {
                c.telemetry(generation);
            }
        }
    }

    fn run_finished(&self, outcome: &RunOutcome) {
        let summary = &outcome.summary;
        let mut s = self.lock();
        // Its samplers have stopped: what a counter held back waiting for a next reading is
        // counted now.
        for c in s.channels.values_mut() {
            c.flush();
        }
        let m = s.models.entry(summary.model.clone()).or_default();
        if let Some(energy) = &summary.energy {
            m.attributed = Some(Attributed {
                gross_j: energy.total_gross_j,
                net_j: energy.total_net_j,
                flags: energy.flags.clone(),
            });
        }
    }
}
