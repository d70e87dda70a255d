//! Footprint figures per run and group, gathered as each run's records stream past.

use super::{Footprint, FootprintError, FootprintInputs, Footprints, Intensity, J_PER_KWH};
use crate::records::{Detail, Record, RunDir};
use crate::study::{group_key, GroupBy};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Records per batch as a run streams past.
const BATCH: usize = 8192;

/// Carbon, water and cost per query for every run and group, with their inputs.
#[derive(Debug, Clone, Serialize)]
pub struct FootprintFigures {
    /// What the figures of runs on accelerators without a section were computed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<FootprintInputs>,
    /// What the figures of runs on each accelerator with a section were computed from.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub accelerators: BTreeMap<String, FootprintInputs>,
    /// Without a footprint file: what each run's own (its experiment's `[footprint]`) figures
    /// were computed from, by run (column) name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub runs: BTreeMap<String, FootprintInputs>,
    /// One row per run and group (`all` first).
    pub rows: Vec<FootprintRow>,
}

/// One run's footprint per query in one group. Energy figures are over the records with
/// energy, on the basis the run's J/query uses (net when every such record has net energy);
/// the hardware's share is over every record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FootprintRow {
    /// Column name of the run.
    pub model: String,
    /// Its accelerator.
    pub accelerator: String,
    /// The group (`all`: every record).
    pub group: String,
    /// Records in the group.
    pub records: usize,
    /// Records with energy.
    pub with_energy: usize,
    /// `net` or `gross`.
    pub energy_basis: &'static str,
    /// Facility kWh per query (the energy x PUE).
    pub kwh_per_query: Option<f64>,
    /// Grams CO2e per query.
    pub g_co2e_per_query: Option<f64>,
    /// Litres of water per query.
    pub water_l_per_query: Option<f64>,
    /// Electricity cost per query.
    pub energy_cost_per_query: Option<f64>,
    /// Hardware amortisation per query.
    pub hardware_cost_per_query: Option<f64>,
    /// Electricity and hardware per query (either, when only one is priced).
    pub cost_per_query: Option<f64>,
}

/// Joules and their intensity-weighted sums on one energy basis.
#[derive(Debug, Default, Clone, Copy)]
struct Energy {
    n: usize,
    j: f64,
    /// Sum of joules x g CO2e/kWh.
    carbon: f64,
    /// Sum of joules x L/kWh.
    water: f64,
}

impl Energy {
    fn add(&mut self, j: f64, carbon: f64, water: f64) {
        self.n += 1;
        self.j += j;
        self.carbon += j * carbon;
        self.water += j * water;
    }
}

/// One group's sums.
#[derive(Debug, Clone, Copy)]
struct Sums {
    records: usize,
    window_s: f64,
    net_all: bool,
    net: Energy,
    gross: Energy,
}

impl Default for Sums {
    fn default() -> Self {
        Sums {
            records: 0,
            window_s: 0.0,
            net_all: true,
            net: Energy::default(),
            gross: Energy::default(),
        }
    }
}

/// The figures of `runs` (run or experiment directories) grouped `by`.
pub fn figures(
    runs: &[PathBuf],
    by: GroupBy,
    footprints: &Footprints,
) -> Result<FootprintFigures, FootprintError> {
    let mut rows = Vec::new();
    let runs = crate::joined::named_runs(runs)?;
    let config = |message: String| FootprintError::Config {
        path: footprints.path.clone(),
        message,
    };
    footprints
        .check_accelerators(runs.iter().map(|r| r.accelerator.as_str()))
        .map_err(config)?;
    let mut uses_default = false;
    let mut own = BTreeMap::new();
    for run in runs {
        let footprint = footprints
            .for_run(&run.dir, &run.manifest, &run.accelerator)
            .map_err(config)?;
        let footprint: &Footprint = &footprint;
        if footprints.from_runs {
            own.insert(run.name.clone(), footprint.inputs.clone());
        }
        uses_default |= !footprints.accelerators.contains_key(&run.accelerator);
        let clocks: Vec<_> = run.manifest.sessions.iter().map(|s| s.clock).collect();
        let RunSums {
            groups,
            busy_s,
            window_s,
        } = run_sums(&run.dir, by, footprint, &clocks)?;
        // With queries in flight together the windows overlap: the machine's busy time is
        // their union, shared out in proportion to each window's length.
        let busy_per_window_s = if window_s > 0.0 {
            busy_s / window_s
        } else {
            0.0
        };
        for (group, s) in groups {
            rows.push(row(
                footprint,
                &run.name,
                &run.accelerator,
                group,
                &s,
                busy_per_window_s,
            ));
        }
    }
    Ok(FootprintFigures {
        inputs: footprints
            .default
            .as_ref()
            .filter(|_| uses_default)
            .map(|f| f.inputs.clone()),
        accelerators: footprints
            .accelerators
            .iter()
            .map(|(k, f)| (k.clone(), f.inputs.clone()))
            .collect(),
        runs: own,
        rows,
    })
}

/// Grams CO2e per joule of a run's IT energy: the facility's PUE times the grid's intensity
/// over each query's window.
#[derive(Debug, Clone, PartialEq)]
pub enum CarbonPerJoule {
    /// The same for every query (a constant intensity).
    Constant(f64),
    /// Per query id (an intensity time series): the query's last record's window.
    PerQuery(HashMap<String, f64>),
}

impl CarbonPerJoule {
    /// The figure for `query_id`.
    pub fn of(&self, query_id: &str) -> Option<f64> {
        match self {
            CarbonPerJoule::Constant(v) => Some(*v),
            CarbonPerJoule::PerQuery(m) => m.get(query_id).copied(),
        }
    }
}

/// The run at `run`'s grams CO2e per joule under `footprint`; `None` when the footprint has no
/// carbon intensity. A time series is joined to each query's window (read from the records);
/// a constant needs no record.
pub fn carbon_per_joule(
    run: &Path,
    footprint: &Footprint,
) -> Result<Option<CarbonPerJoule>, FootprintError> {
    let factor = footprint.pue / J_PER_KWH;
    match footprint.carbon {
        None => Ok(None),
        Some(Intensity::Constant(v)) => Ok(Some(CarbonPerJoule::Constant(v * factor))),
        Some(Intensity::Series) => {
            let dir = RunDir::new(run);
            let manifest = dir
                .read_manifest()
                .map_err(|e| run_err(run, e.to_string()))?;
            let clocks: Vec<_> = manifest.sessions.iter().map(|s| s.clock).collect();
            let mut per = HashMap::new();
            let mut failed: Option<String> = None;
            dir.for_each_record_with(BATCH, Detail::Figures, |batch| {
                for r in batch {
                    if failed.is_some() {
                        return;
                    }
                    match intensities(footprint, &r, &clocks) {
                        // The last record of a query wins, as in the routing table.
                        Ok((carbon, _)) => {
                            per.insert(r.query_id, carbon * factor);
                        }
                        Err(m) => failed = Some(m),
                    }
                }
            })
            .map_err(|e| run_err(run, e.to_string()))?;
            match failed {
                Some(m) => Err(run_err(run, m)),
                None => Ok(Some(CarbonPerJoule::PerQuery(per))),
            }
        }
    }
}

impl FootprintFigures {
    /// Every set of inputs with whose figures it gave, in words: the top level's, each
    /// accelerator section's, each run's own.
    pub fn labelled_inputs(&self) -> Vec<(String, &FootprintInputs)> {
        self.inputs
            .iter()
            .map(|i| ("runs on accelerators without a section".to_string(), i))
            .chain(
                self.accelerators
                    .iter()
                    .map(|(k, i)| (format!("runs on {k}"), i)),
            )
            .chain(self.runs.iter().map(|(k, i)| (format!("run {k}"), i)))
            .collect()
    }

    /// The currency of every cost, if any is priced.
    pub fn currency(&self) -> Option<&str> {
        self.labelled_inputs()
            .into_iter()
            .find_map(|(_, i)| i.currency.as_deref())
    }

    /// The rows as CSV (a header line, then a line per row; empty cells for figures the
    /// footprint has no input for).
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let cell = |v: Option<f64>| v.map(|x| format!("{x:e}")).unwrap_or_default();
        let _ = w.write_record([
            "model",
            "accelerator",
            "group",
            "records",
            "with_energy",
            "energy_basis",
            "kwh_per_query",
            "g_co2e_per_query",
            "water_l_per_query",
            "energy_cost_per_query",
            "hardware_cost_per_query",
            "cost_per_query",
        ]);
        for r in &self.rows {
            let _ = w.write_record([
                r.model.clone(),
                r.accelerator.clone(),
                r.group.clone(),
                r.records.to_string(),
                r.with_energy.to_string(),
                r.energy_basis.to_string(),
                cell(r.kwh_per_query),
                cell(r.g_co2e_per_query),
                cell(r.water_l_per_query),
                cell(r.energy_cost_per_query),
                cell(r.hardware_cost_per_query),
                cell(r.cost_per_query),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

fn run_err(run: &Path, message: String) -> FootprintError {
    FootprintError::Run {
        path: run.to_path_buf(),
        message,
    }
}

/// One run's sums per group (`all` first, then the groups in order), its busy time (the
/// union of its query windows) and the sum of its window lengths.
struct RunSums {
    groups: Vec<(String, Sums)>,
    busy_s: f64,
    window_s: f64,
}

/// Reads one run's records once into its [`RunSums`].
fn run_sums(
    run: &Path,
    by: GroupBy,
    footprint: &Footprint,
    clocks: &[Option<crate::records::clock::ClockOrigin>],
) -> Result<RunSums, FootprintError> {
    let mut all = Sums::default();
    let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
    let mut windows: Vec<[f64; 2]> = Vec::new();
    let mut failed: Option<String> = None;
    RunDir::new(run)
        .for_each_record_with(BATCH, Detail::Figures, |batch| {
            for r in &batch {
                if failed.is_some() {
                    return;
                }
                let (carbon, water) = match intensities(footprint, r, clocks) {
                    Ok(v) => v,
                    Err(m) => {
                        failed = Some(m);
                        return;
                    }
                };
                windows.push([r.window.start_s, r.window.end_s]);
                add(&mut all, r, carbon, water);
                if let Some(g) = group_key(by, r) {
                    add(groups.entry(g).or_default(), r, carbon, water);
                }
            }
        })
        .map_err(|e| run_err(run, e.to_string()))?;
    if let Some(m) = failed {
        return Err(run_err(run, m));
    }
    let window_s = windows.iter().map(|w| (w[1] - w[0]).max(0.0)).sum();
    let busy_s = union_length(windows);
    let mut out = vec![("all".to_string(), all)];
    out.extend(groups);
    Ok(RunSums {
        groups: out,
        busy_s,
        window_s,
    })
}

fn add(s: &mut Sums, r: &Record, carbon: f64, water: f64) {
    s.records += 1;
    s.window_s += (r.window.end_s - r.window.start_s).max(0.0);
    let Some(e) = &r.energy else { return };
    match e.net_j {
        Some(j) => s.net.add(j, carbon, water),
        None => s.net_all = false,
    }
    if let Some(j) = e.gross_j {
        s.gross.add(j, carbon, water);
    }
}

/// The carbon (g/kWh) and water (L/kWh) intensity `r`'s energy was drawn at (0 for one the
/// footprint does not have).
pub(super) fn intensities(
    footprint: &Footprint,
    r: &Record,
    clocks: &[Option<crate::records::clock::ClockOrigin>],
) -> Result<(f64, f64), String> {
    let split = if footprint.needs_time() {
        let clock = clocks.get(r.session).copied().flatten().ok_or_else(|| {
            format!(
                "intensity_csv needs each query's wall-clock time, and session {} of this run recorded no clock (an imported run, or one measured before ipw kept it): give carbon_g_per_kwh instead",
                r.session + 1
            )
        })?;
        let unix = |t: f64| t - clock.monotonic_s + clock.unix_s;
        let (start, end) = (unix(r.window.start_s), unix(r.window.end_s));
        let series = footprint
            .series
            .as_ref()
            .expect("a series when time is needed");
        Some(series.over(start, end).ok_or_else(|| {
            let (first, last) = series.span();
            format!(
                "query {}'s window ({start:.3} to {end:.3}, Unix seconds) is not inside the intensity series ({first:.3} to {last:.3})",
                r.query_id
            )
        })?)
    } else {
        None
    };
    let pick = |i: Option<Intensity>, from_series: Option<f64>| match i {
        Some(Intensity::Constant(v)) => v,
        Some(Intensity::Series) => from_series.unwrap_or(0.0),
        None => 0.0,
    };
    Ok((
        pick(footprint.carbon, split.map(|s| s.carbon)),
        pick(footprint.water, split.and_then(|s| s.water)),
    ))
}

/// Total length covered by `windows`.
pub(super) fn union_length(mut windows: Vec<[f64; 2]>) -> f64 {
    windows.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut total = 0.0;
    let mut current: Option<[f64; 2]> = None;
    for w in windows {
        match &mut current {
            Some(c) if w[0] <= c[1] => c[1] = c[1].max(w[1]),
            _ => {
                if let Some(c) = current {
                    total += (c[1] - c[0]).max(0.0);
                }
                current = Some(w);
            }
        }
    }
    if let Some(c) = current {
        total += (c[1] - c[0]).max(0.0);
    }
    total
}

fn row(
    f: &Footprint,
    model: &str,
    accelerator: &str,
    group: String,
    s: &Sums,
    busy_per_window_s: f64,
) -> FootprintRow {
    let (basis, e) = if s.net_all {
        ("net", s.net)
    } else {
        ("gross", s.gross)
    };
    let per_query = |sum: f64| (e.n > 0).then(|| sum * f.pue / J_PER_KWH / e.n as f64);
    let kwh = per_query(e.j);
    let energy_cost = f.price_per_kwh.zip(kwh).map(|(p, k)| p * k);
    let hardware_cost = f
        .hardware_per_s
        .filter(|_| s.records > 0)
        .map(|per_s| per_s * s.window_s * busy_per_window_s / s.records as f64);
    FootprintRow {
        model: model.to_string(),
        accelerator: accelerator.to_string(),
        group,
        records: s.records,
        with_energy: e.n,
        energy_basis: basis,
        kwh_per_query: kwh,
        g_co2e_per_query: f.carbon.and(per_query(e.carbon)),
        water_l_per_query: f.water.and(per_query(e.water)),
        energy_cost_per_query: energy_cost,
        hardware_cost_per_query: hardware_cost,
        cost_per_query: match (energy_cost, hardware_cost) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_windows_count_once_in_the_busy_time() {
        assert_eq!(union_length(vec![[0.0, 2.0], [1.0, 3.0], [5.0, 6.0]]), 4.0);
        assert_eq!(union_length(vec![[5.0, 6.0], [0.0, 1.0]]), 2.0);
        assert_eq!(union_length(Vec::new()), 0.0);
    }
}
