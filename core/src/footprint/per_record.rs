//! Each record's footprint, for the Parquet export: the figures of [`super::figures`] before
//! they are averaged, one per record in file order, so a user's own query engine can sum them
//! by any grouping and get the per-query means `compare --footprint` prints.

use super::figures::{intensities, union_length};
use super::{Footprint, FootprintError, J_PER_KWH};
use crate::records::{Detail, Record, RunDir};
use std::path::Path;

/// Records per batch as a run streams past.
const BATCH: usize = 8192;

/// One record's carbon, water and cost (each `None` where the footprint has no input for it
/// or the record no energy).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordFootprint {
    /// The record's query.
    pub query_id: String,
    /// Joules on the run's energy basis.
    pub energy_j: Option<f64>,
    /// Facility kWh (the energy x PUE).
    pub kwh: Option<f64>,
    /// Grams CO2e.
    pub g_co2e: Option<f64>,
    /// Litres of water.
    pub water_l: Option<f64>,
    /// Electricity cost.
    pub energy_cost: Option<f64>,
    /// The record's share of the hardware's amortisation: its window's share of the run's
    /// busy time.
    pub hardware_cost: Option<f64>,
}

/// The run at `run` under `footprint`, a batch of records' footprints at a time (file order,
/// retried queries included, as `records.parquet` has them), each with the run's energy basis
/// (`net` when every record with energy has net energy, as the run's J/query).
pub fn for_each_record(
    run: &Path,
    footprint: &Footprint,
    mut each: impl FnMut(&'static str, Vec<RecordFootprint>),
) -> Result<(), FootprintError> {
    let err = |message: String| FootprintError::Run {
        path: run.to_path_buf(),
        message,
    };
    let dir = RunDir::new(run);
    let manifest = dir.read_manifest().map_err(|e| err(e.to_string()))?;
    let clocks: Vec<_> = manifest.sessions.iter().map(|s| s.clock).collect();
    // Pass 1: the basis and the busy time per second of window (overlapping windows share
    // the machine).
    let (mut windows, mut net_all) = (Vec::new(), true);
    dir.for_each_record_with(BATCH, Detail::Figures, |batch| {
        for r in &batch {
            windows.push([r.window.start_s, r.window.end_s]);
            if r.energy.as_ref().is_some_and(|e| e.net_j.is_none()) {
                net_all = false;
            }
        }
    })
    .map_err(|e| err(e.to_string()))?;
    let window_s: f64 = windows.iter().map(|w| (w[1] - w[0]).max(0.0)).sum();
    let busy_per_window_s = if window_s > 0.0 {
        union_length(windows) / window_s
    } else {
        0.0
    };
    // Pass 2: the figures.
    let basis = if net_all { "net" } else { "gross" };
    let mut failed = None;
    dir.for_each_record_with(BATCH, Detail::Figures, |batch| {
        if failed.is_some() {
            return;
        }
        let mut out = Vec::with_capacity(batch.len());
        for r in batch {
            match one(footprint, &r, &clocks, net_all, busy_per_window_s) {
                Ok(f) => out.push(f),
                Err(m) => {
                    failed = Some(m);
                    return;
                }
            }
        }
        each(basis, out);
    })
    .map_err(|e| err(e.to_string()))?;
    match failed {
        Some(m) => Err(err(m)),
        None => Ok(()),
    }
}

fn one(
    f: &Footprint,
    r: &Record,
    clocks: &[Option<crate::records::clock::ClockOrigin>],
    net: bool,
    busy_per_window_s: f64,
) -> Result<RecordFootprint, String> {
    let energy_j = r
        .energy
        .as_ref()
        .and_then(|e| if net { e.net_j } else { e.gross_j });
    // The series is joined only where there is energy to weigh.
    let (carbon, water) = match energy_j {
        Some(_) => intensities(f, r, clocks)?,
        None => (0.0, 0.0),
    };
    let kwh = energy_j.map(|j| j * f.pue / J_PER_KWH);
    Ok(RecordFootprint {
        query_id: r.query_id.clone(),
        energy_j,
        kwh,
        g_co2e: f.carbon.and(kwh.map(|k| k * carbon)),
        water_l: f.water.and(kwh.map(|k| k * water)),
        energy_cost: f.price_per_kwh.zip(kwh).map(|(p, k)| p * k),
        hardware_cost: f
            .hardware_per_s
            .map(|per_s| per_s * (r.window.end_s - r.window.start_s).max(0.0) * busy_per_window_s),
    })
}
