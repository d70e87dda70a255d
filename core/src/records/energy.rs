//! The energy a record carries: per query, per channel, gross and net of idle, with quality
//! flags. Written by attribution (`power`), read by analysis.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A quality flag on a query's energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// A counter wrapped inside the window (handled).
    Wrap,
    /// A counter went backwards inside the window (treated as a restart from 0).
    CounterReset,
    /// Readings are missing: the window is not fully covered, or a gap is too long.
    MissingSamples,
    /// The window is shorter than the channel's update period.
    ShortWindow,
    /// No reading at the window's edges and the window is shorter than 20 sampling intervals:
    /// the edge intervals, whose power is not known, are a large share of it.
    CoarseSampling,
    /// An instant gauge caught spikes or dips near the window, so others may sit between its
    /// readings: the bound reaches the highest and lowest power it read nearby (10 s).
    BoundFromNearby,
    /// A coarsely sampled window (`coarse_sampling`) of an instant gauge whose device declares
    /// the most it can draw (an enforced power limit or cap, a meter's range): between its few
    /// readings the gauge knows nothing more, so the bound reaches that ceiling.
    BoundFromCeiling,
    /// Power is modelled, not measured.
    EstimatedPower,
    /// The sampler reported an error or an invalid value during the window.
    SamplerError,
    /// No idle baseline: net energy unavailable.
    NoBaseline,
    /// Net energy came out below zero: the "idle" baseline drew more than the window did (a
    /// baseline taken while something else ran, or noise larger than the query's own draw).
    NegativeNet,
    /// Other processes kept the machine busy during the window (embedded backend only: a
    /// model server on the same machine is itself "other" load).
    OtherLoad,
    /// Another process used a measured device during the window (e.g. a CUDA process on the
    /// GPU that NVML lists), with the model inside ipw: the meter measured both.
    SharedDevice,
    /// A measured device slowed its clocks for power or heat during the window (NVML's
    /// power-cap, thermal or power-brake clock event reasons): its energy and speed are those
    /// of a throttled device.
    Throttled,
    /// The idle baseline was not idle: other processes were busy during it, or its power is
    /// within 10% of the window's, so net energy is understated.
    BusyBaseline,
}

/// Energy of one query on one channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelEnergy {
    /// Joules attributed to the query; `null` when the readings do not cover it.
    pub gross_j: Option<f64>,
    /// Gross minus the query's share of idle energy.
    pub net_j: Option<f64>,
    /// Idle power used for net, watts.
    pub idle_w: Option<f64>,
    /// `[low, high]`: the range of gross energy the readings allow, widened by the channel's
    /// declared accuracy (see "Uncertainty" in the README). `null` in runs attributed before
    /// bounds existed (`ipw attribute` adds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_bound_j: Option<[f64; 2]>,
    /// `[low, high]` of net energy: the gross bound less the idle bound, worst case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_bound_j: Option<[f64; 2]>,
    /// Split at the first token, when the query has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseEnergy>,
    /// Quality flags.
    pub flags: Vec<Flag>,
    /// The power domain the channel measures (its sampler's declaration), so that readers can
    /// pick out CPU-domain energy; absent in runs attributed before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<ipw_sampler_sdk::Domain>,
}

/// A query's energy before its first token (prefill: reading the prompt) and after (decode:
/// generating). Overlapping queries share each piece of time by the same rule as the total.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PhaseEnergy {
    /// Gross joules from the request to the first token.
    pub prefill_j: f64,
    /// Gross joules from the first token to the last byte.
    pub decode_j: f64,
    /// Prefill less idle power over its time, when there is a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_net_j: Option<f64>,
    /// Decode less idle power over its time, when there is a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_net_j: Option<f64>,
}

impl Default for PhaseEnergy {
    fn default() -> Self {
        Self {
            prefill_j: 0.0,
            decode_j: 0.0,
            prefill_net_j: Some(0.0),
            decode_net_j: Some(0.0),
        }
    }
}

/// Energy of one query over all channels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryEnergy {
    /// Sum of channel gross energies; `null` if any channel is uncovered.
    pub gross_j: Option<f64>,
    /// Sum of channel net energies; `null` if any is unavailable.
    pub net_j: Option<f64>,
    /// `[low, high]` of `gross_j`: the sum of the channels' bounds (each channel is a separate
    /// instrument, so their worst cases add).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gross_bound_j: Option<[f64; 2]>,
    /// `[low, high]` of `net_j`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_bound_j: Option<[f64; 2]>,
    /// Summed over channels, when every channel has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseEnergy>,
    /// Gross energy over the window length, watts.
    pub mean_power_w: Option<f64>,
    /// Net (else gross) joules per generated token.
    pub j_per_output_token: Option<f64>,
    /// Whether any channel's power is modelled rather than measured.
    pub estimated: bool,
    /// Union of channel flags.
    pub flags: Vec<Flag>,
    /// Per channel.
    pub channels: BTreeMap<String, ChannelEnergy>,
}
