//! Attribution: energy per query window, per channel, gross and net of idle, with quality
//! flags. Pure functions of channel curves and windows, so they are tested once, exactly.
//!
//! **Overlapping windows** (concurrency > 1): time is cut at every window edge and at every
//! query's first token, so inside each piece the set of active queries is fixed. A piece's energy
//! is split between its active queries in proportion to the tokens each processes per second in
//! that piece (`split = "tokens"`, the default): a query's prompt tokens are spread evenly over
//! its time to first token and its generated tokens over the rest of its window. With
//! `split = "equal"` (or when any active query lacks token counts, e.g. a failed one) a piece is
//! split equally. Energy in pieces with no active query is not attributed to any query. With
//! one query at a time, a query's energy is exactly E(end) - E(start).
//!
//! **Net** energy subtracts idle power x the query's share of time (split by the same weights),
//! so net energies of overlapping queries also add up to the window total minus idle.
//!
//! **Bounds**: each piece's energy range from the curve ([`EnergyCurve::bound_between`]) is
//! shared like its energy; the channel's declared accuracy then widens it (x (1 +- relative),
//! +- absolute watts x the query's time). The idle power gets its own range the same way over
//! the baseline, and the net range is the gross range less the idle range, worst case.

use super::curve::{Anomaly, EnergyCurve};
use crate::config::SplitRule;
pub use crate::records::{ChannelEnergy, Flag, PhaseEnergy, QueryEnergy};
use ipw_sampler_sdk::Accuracy;
use std::collections::BTreeMap;

/// One channel ready for attribution.
pub struct ChannelInput<'a> {
    /// Channel name (unique across samplers: `sampler/channel`).
    pub name: String,
    /// Its energy curve.
    pub curve: &'a EnergyCurve,
    /// How often the underlying value changes.
    pub update_period_s: f64,
    /// The host's sampling interval for this channel.
    pub sample_interval_s: f64,
    /// Power is modelled.
    pub estimated: bool,
    /// Idle power measured before the run, if any.
    pub idle_w: Option<f64>,
    /// Times the sampler failed to read.
    pub errors: &'a [f64],
    /// Whether the channel is also read at every window edge.
    pub edge_reads: bool,
    /// The channel's declared accuracy.
    pub accuracy: Accuracy,
    /// `[low, high]` of the idle power, if there is a baseline.
    pub idle_bound_w: Option<(f64, f64)>,
    /// The power domain the channel measures, copied to each record's channel.
    pub domain: Option<ipw_sampler_sdk::Domain>,
    /// The most power its device may draw, watts, where declared (a telemetry channel of unit
    /// [`ipw_sampler_sdk::POWER_LIMIT_UNIT`] beside it): how high a coarse window may reach.
    pub ceiling_w: Option<f64>,
}

/// Without edge reads, a window shorter than this many sampling intervals is flagged
/// `coarse_sampling`: its edges fall inside intervals whose power is not known, and those two
/// intervals are a large share of it.
pub const COARSE_WINDOW_INTERVALS: f64 = 20.0;

/// One query window.
#[derive(Debug, Clone, Copy)]
pub struct QueryWindow {
    /// Start, run clock seconds.
    pub start: f64,
    /// End.
    pub end: f64,
    /// Seconds to first token, if known.
    pub ttft: Option<f64>,
    /// Prompt tokens, if known.
    pub input_tokens: Option<u64>,
    /// Generated tokens, if known.
    pub output_tokens: Option<u64>,
}

/// Per-window shares of every channel, for all windows at once.
pub fn attribute(
    channels: &[ChannelInput],
    windows: &[QueryWindow],
    split: SplitRule,
) -> Vec<QueryEnergy> {
    let pieces = pieces(windows, split);
    let mut per_query: Vec<BTreeMap<String, ChannelEnergy>> = vec![BTreeMap::new(); windows.len()];
    for ch in channels {
        let shares = channel_shares(ch, windows, &pieces);
        for (q, share) in shares.into_iter().enumerate() {
            per_query[q].insert(ch.name.clone(), share);
        }
    }
    per_query
        .into_iter()
        .zip(windows)
        .map(|(channels, w)| combine(channels, w))
        .collect()
}

/// A piece of time with fixed active queries and their weights.
struct Piece {
    from: f64,
    to: f64,
    /// (query index, weight share in [0,1])
    shares: Vec<(usize, f64)>,
}

/// When a query's first token arrived, if known and inside its window.
fn first_token(w: &QueryWindow) -> Option<f64> {
    let t = w.start + w.ttft?;
    (t > w.start && t < w.end).then_some(t)
}

fn token_rate(w: &QueryWindow, at: f64) -> Option<f64> {
    let (ttft, input, output) = (w.ttft?, w.input_tokens?, w.output_tokens?);
    let first = w.start + ttft;
    if at < first {
        (ttft > 0.0).then(|| input as f64 / ttft)
    } else {
        let decode = w.end - first;
        (decode > 0.0).then(|| output as f64 / decode)
    }
}

fn pieces(windows: &[QueryWindow], split: SplitRule) -> Vec<Piece> {
    let mut edges: Vec<f64> = Vec::with_capacity(windows.len() * 3);
    for w in windows {
        edges.push(w.start);
        edges.push(w.end);
        if let Some(t) = w.ttft {
            if t > 0.0 && w.start + t < w.end {
                edges.push(w.start + t);
            }
        }
    }
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    // Sweep: windows sorted by start; active set updated per piece.
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by(|&a, &b| windows[a].start.total_cmp(&windows[b].start));
    let mut next = 0;
    let mut active: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for pair in edges.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let mid = (from + to) / 2.0;
        while next < order.len() && windows[order[next]].start <= mid {
            active.push(order[next]);
            next += 1;
        }
        active.retain(|&q| windows[q].end > mid);
        let live: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&q| windows[q].start <= mid)
            .collect();
        if live.is_empty() {
            continue;
        }
        let rates: Option<Vec<f64>> = match split {
            SplitRule::Tokens => live.iter().map(|&q| token_rate(&windows[q], mid)).collect(),
            SplitRule::Equal => None,
        };
        let weights = match rates {
            Some(r) if r.iter().sum::<f64>() > 0.0 => r,
            _ => vec![1.0; live.len()],
        };
        let total: f64 = weights.iter().sum();
        out.push(Piece {
            from,
            to,
            shares: live
                .into_iter()
                .zip(weights)
                .map(|(q, w)| (q, w / total))
                .collect(),
        });
    }
    out
}

fn channel_shares(
    ch: &ChannelInput,
    windows: &[QueryWindow],
    pieces: &[Piece],
) -> Vec<ChannelEnergy> {
    let mut gross: Vec<Option<f64>> = vec![Some(0.0); windows.len()];
    let mut bound: Vec<Option<(f64, f64)>> = vec![Some((0.0, 0.0)); windows.len()];
    let mut idle_time = vec![0.0; windows.len()];
    // Per query, [prefill, decode]: gross joules and time share. Pieces are cut at every first
    // token, so each lies wholly in one phase of each query.
    let mut phase_j: Vec<[Option<f64>; 2]> = vec![[Some(0.0); 2]; windows.len()];
    let mut phase_s: Vec<[f64; 2]> = vec![[0.0; 2]; windows.len()];
    for p in pieces {
        let e = ch.curve.between(p.from, p.to);
        let b = ch.curve.bound_between(p.from, p.to);
        for &(q, share) in &p.shares {
            if let Some(first) = first_token(&windows[q]) {
                let k = usize::from(p.from >= first);
                phase_j[q][k] = phase_j[q][k].zip(e).map(|(a, e)| a + e * share);
                phase_s[q][k] += (p.to - p.from) * share;
            }
            gross[q] = match (gross[q], e) {
                (Some(g), Some(e)) => Some(g + e * share),
                _ => None,
            };
            bound[q] = match (bound[q], b) {
                (Some((lo, hi)), Some((l, h))) => Some((lo + l * share, hi + h * share)),
                _ => None,
            };
            idle_time[q] += (p.to - p.from) * share;
        }
    }
    // Jitter stretches an interval to ~1.4 periods and one dropped reading makes two; a gap
    // of three periods (inside the window or across its edge) means the window's power is
    // less known than its neighbours' and is flagged.
    let gap_limit = (2.5 * ch.sample_interval_s).max(2.0 * ch.update_period_s);
    windows
        .iter()
        .enumerate()
        .map(|(q, w)| {
            let mut flags = Vec::new();
            let margin = ch.sample_interval_s.max(ch.update_period_s);
            let (lo, hi) = (w.start - margin, w.end + margin);
            if gross[q].is_none() || ch.curve.largest_gap_in(w.start, w.end) > gap_limit {
                flags.push(Flag::MissingSamples);
            }
            if w.end - w.start < ch.update_period_s {
                flags.push(Flag::ShortWindow);
            }
            let coarse =
                !ch.edge_reads && w.end - w.start < COARSE_WINDOW_INTERVALS * ch.sample_interval_s;
            if coarse {
                flags.push(Flag::CoarseSampling);
            }
            if ch.curve.widened_by_nearby(w.start, w.end) {
                flags.push(Flag::BoundFromNearby);
            }
            // A gauge read only a few times in the window knows its power between those
            // readings no better than its device allows: up to the declared ceiling, down to
            // the least it read nearby. Without a ceiling the readings' own bound stands.
            if let (true, Some(ceiling), Some((lo, hi)), Some((pmin, _))) = (
                coarse,
                ch.ceiling_w,
                bound[q],
                ch.curve.extremes_near(w.start, w.end),
            ) {
                let time = idle_time[q];
                bound[q] = Some((lo.min(pmin.max(0.0) * time), hi.max(ceiling * time)));
                if ceiling * time > hi {
                    flags.push(Flag::BoundFromCeiling);
                }
            }
            if ch.estimated {
                flags.push(Flag::EstimatedPower);
            }
            for a in ch
                .curve
                .anomalies
                .iter()
                .filter(|a| a.time() >= lo && a.time() <= hi)
            {
                flags.push(match a {
                    Anomaly::Wrap(_) => Flag::Wrap,
                    Anomaly::Reset(_) => Flag::CounterReset,
                    Anomaly::Invalid(_) => Flag::SamplerError,
                });
            }
            if ch.errors.iter().any(|&t| t >= lo && t <= hi) {
                flags.push(Flag::SamplerError);
            }
            if ch.idle_w.is_none() {
                flags.push(Flag::NoBaseline);
            }
            let net = match (gross[q], ch.idle_w) {
                (Some(g), Some(idle)) => Some(g - idle * idle_time[q]),
                _ => None,
            };
            if net.is_some_and(|n| n < 0.0) {
                flags.push(Flag::NegativeNet);
            }
            // Idle drew within 10% of what the window drew (both as this query's share, so
            // concurrency cancels): the baseline was hardly idle.
            if let (Some(g), Some(idle)) = (gross[q], ch.idle_w) {
                if g > 0.0 && idle > 0.0 && idle * idle_time[q] >= 0.9 * g {
                    flags.push(Flag::BusyBaseline);
                }
            }
            flags.sort();
            flags.dedup();
            let gross_bound = bound[q].map(|(lo, hi)| widen(lo, hi, idle_time[q], ch.accuracy));
            let phases = first_token(w).and_then(|_| {
                let [p, d] = phase_j[q];
                let net = |j: f64, s: f64| ch.idle_w.map(|idle| j - idle * s);
                Some(PhaseEnergy {
                    prefill_j: p?,
                    decode_j: d?,
                    prefill_net_j: net(p?, phase_s[q][0]),
                    decode_net_j: net(d?, phase_s[q][1]),
                })
            });
            ChannelEnergy {
                gross_j: gross[q],
                net_j: net,
                idle_w: ch.idle_w,
                gross_bound_j: gross_bound.map(|(lo, hi)| [lo, hi]),
                phases,
                net_bound_j: match (gross_bound, ch.idle_bound_w) {
                    (Some((lo, hi)), Some((idle_lo, idle_hi))) => {
                        Some([lo - idle_hi * idle_time[q], hi - idle_lo * idle_time[q]])
                    }
                    _ => None,
                },
                flags,
                domain: ch.domain,
            }
        })
        .collect()
}

fn combine(channels: BTreeMap<String, ChannelEnergy>, w: &QueryWindow) -> QueryEnergy {
    let sum = |f: fn(&ChannelEnergy) -> Option<f64>| -> Option<f64> {
        if channels.is_empty() {
            return None;
        }
        channels.values().map(f).sum()
    };
    let gross = sum(|c| c.gross_j);
    let net = sum(|c| c.net_j);
    let sum_bound = |f: fn(&ChannelEnergy) -> Option<[f64; 2]>| -> Option<[f64; 2]> {
        let mut total = [0.0, 0.0];
        for c in channels.values() {
            let [lo, hi] = f(c)?;
            total = [total[0] + lo, total[1] + hi];
        }
        (!channels.is_empty()).then_some(total)
    };
    let mut flags: Vec<Flag> = channels
        .values()
        .flat_map(|c| c.flags.iter().copied())
        .collect();
    flags.sort();
    flags.dedup();
    let duration = w.end - w.start;
    QueryEnergy {
        gross_j: gross,
        net_j: net,
        gross_bound_j: sum_bound(|c| c.gross_bound_j),
        net_bound_j: sum_bound(|c| c.net_bound_j),
        phases: (!channels.is_empty())
            .then(|| {
                let mut total = PhaseEnergy::default();
                for c in channels.values() {
                    let p = c.phases?;
                    total.prefill_j += p.prefill_j;
                    total.decode_j += p.decode_j;
                    total.prefill_net_j =
                        total.prefill_net_j.zip(p.prefill_net_j).map(|(a, b)| a + b);
                    total.decode_net_j = total.decode_net_j.zip(p.decode_net_j).map(|(a, b)| a + b);
                }
                Some(total)
            })
            .flatten(),
        mean_power_w: gross.filter(|_| duration > 0.0).map(|g| g / duration),
        j_per_output_token: match w.output_tokens {
            Some(n) if n > 0 => net.or(gross).map(|e| e / n as f64),
            _ => None,
        },
        estimated: flags.contains(&Flag::EstimatedPower),
        flags,
        channels,
    }
}

/// Widen an energy range over `seconds` by a declared accuracy; energy is never below 0.
fn widen(lo: f64, hi: f64, seconds: f64, acc: Accuracy) -> (f64, f64) {
    let slack = acc.absolute_w * seconds;
    (
        (lo * (1.0 - acc.relative) - slack).max(0.0),
        hi * (1.0 + acc.relative) + slack,
    )
}

/// `[low, high]` of a channel's idle power over `[from, to]`: the curve's bound, widened by
/// the channel's accuracy, over the time.
pub fn idle_bound(
    curve: &EnergyCurve,
    from: f64,
    to: f64,
    accuracy: Accuracy,
) -> Option<(f64, f64)> {
    let (lo, hi) = curve.bound_between(from, to).filter(|_| to > from)?;
    let (lo, hi) = widen(lo, hi, to - from, accuracy);
    Some((lo / (to - from), hi / (to - from)))
}

/// Idle power of a channel over `[from, to]`: energy / time, if covered.
pub fn idle_power(curve: &EnergyCurve, from: f64, to: f64) -> Option<f64> {
    (to > from)
        .then(|| curve.between(from, to).map(|e| e / (to - from)))
        .flatten()
}

#[cfg(test)]
mod tests;
