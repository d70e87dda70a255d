//! `ipw report`: one self-contained HTML page over a set of runs, with the numbers behind every
//! figure beside it as JSON (and CSV where they are tables).
//!
//! Gathering ([`build`]) and rendering ([`html`]) are separate: [`Report`] holds every number
//! the page draws, and the page is drawn from it alone, so the JSON written beside the page is
//! exactly what the page shows.
//!
//! Figures, all computed from run directories only (through the same code as `ipw compare`,
//! `ipw coverage` and attribution, so the page cannot disagree with them):
//! - summary per run (model x accelerator): `compare`'s `all` rows;
//! - accuracy vs J/query with the Pareto frontier: a run is on it when no other run is at least
//!   as accurate for at most as much energy (and better on one of the two);
//! - APJ and APW with their intervals;
//! - per-group coverage against a reference: `--reference`, else the run with the most energy
//!   per query (the one a cheaper model would replace); skipped, with a note, with fewer than
//!   two runs or no energy to choose by;
//! - one run's power trace from its `power.jsonl` ([`trace`]);
//! - the distribution of J/query per run (histograms);
//! - routing results, when `ipw route` left a `route.json` in the first run's `analysis/`;
//! - carbon, water and cost per query per run, with `--footprint` (as `ipw compare
//!   --footprint`, every input named).

mod digest;
pub mod html;
mod svg;
pub mod trace;

use crate::analysis::Estimate;
use crate::joined::{self, EnergySource};
use crate::records::RunDir;
use crate::study::{self, CompareRow, CoverageReport, GroupBy, StudyError};
use digest::RunDigest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use trace::{Trace, TraceChannel, TRACE_POINTS};

/// Version of `report.json`.
pub const REPORT_SCHEMA: u32 = 1;

/// Histograms never have more bins than this, however many queries a run has.
const MAX_BINS: usize = 30;

/// What `ipw report` was asked.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    /// Run directories, or folders of them.
    pub runs: Vec<PathBuf>,
    /// The coverage reference (default: the run with the most energy per query).
    pub reference: Option<String>,
    /// Score margin for coverage.
    pub tolerance: f64,
    /// How coverage groups queries.
    pub by: GroupBy,
    /// The run whose power trace is drawn, by column name (`model` or `model@accelerator`) or
    /// directory name (default: the first run with a power log).
    pub trace_run: Option<String>,
    /// A `route.json` (default: the first run's `analysis/route.json`, where `ipw route`
    /// writes it).
    pub route: Option<PathBuf>,
    /// Seed for the bootstrap intervals.
    pub seed: u64,
    /// A footprint file: carbon, water and cost per query per run.
    pub footprint: Option<crate::footprint::Footprints>,
    /// The command line, for provenance.
    pub command: Vec<String>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The runs could not be read or joined, or an option is wrong.
    #[error(transparent)]
    Study(#[from] StudyError),
    /// The runs could not be joined.
    #[error(transparent)]
    Table(#[from] joined::TableError),
    /// The footprint could not be applied to a run.
    #[error(transparent)]
    Footprint(#[from] crate::footprint::FootprintError),
    /// A run's files could not be read.
    #[error("{}: {message}", path.display())]
    Run {
        /// The run directory, or the file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// `--trace-run` names no run.
    #[error("--trace-run `{name}`: no such run; the runs are: {known}")]
    UnknownTraceRun {
        /// The name given.
        name: String,
        /// The runs' names, comma-separated.
        known: String,
    },
}

/// Where a run's energy figures come from, as the page labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyKind {
    /// Measured by samplers during the run.
    Measured,
    /// Some channel's power is modelled, not measured.
    Estimated,
    /// From the model's declared energy model (J per token).
    Declared,
    /// Given by an imported table: no readings behind it.
    Imported,
    /// No energy.
    None,
}

impl EnergyKind {
    /// The label the page prints.
    pub fn label(self) -> &'static str {
        match self {
            EnergyKind::Measured => "measured",
            EnergyKind::Estimated => "estimated (modelled power)",
            EnergyKind::Declared => "declared (energy model)",
            EnergyKind::Imported => "imported (no readings)",
            EnergyKind::None => "none",
        }
    }

    /// One word, for a table cell.
    pub fn short(self) -> &'static str {
        match self {
            EnergyKind::Measured => "measured",
            EnergyKind::Estimated => "estimated",
            EnergyKind::Declared => "declared",
            EnergyKind::Imported => "imported",
            EnergyKind::None => "none",
        }
    }
}

/// One run (a model on an accelerator).
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Column name: the model, `@accelerator` when one model ran on several.
    pub name: String,
    /// Accelerator label.
    pub accelerator: String,
    /// The run directory.
    pub path: PathBuf,
    /// The ipw version that measured it.
    pub ipw_version: String,
    /// Its git commit.
    pub git_commit: String,
    /// `completed`, `interrupted`, ...
    pub status: String,
    /// Records in the run.
    pub records: usize,
    /// Where its energy comes from.
    pub energy: EnergyKind,
}

/// A run in the accuracy/energy plane.
#[derive(Debug, Clone, Serialize)]
pub struct ParetoPoint {
    /// The run.
    pub run: String,
    /// Mean score.
    pub accuracy: f64,
    /// Mean joules per query.
    pub j_per_query: f64,
    /// On the frontier: no other run is as accurate for as little energy.
    pub frontier: bool,
}

/// One bin of a histogram: `[lo, hi)`, the last one closed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bin {
    /// Lower edge, joules.
    pub lo: f64,
    /// Upper edge, joules.
    pub hi: f64,
    /// Queries in it.
    pub count: usize,
}

/// J/query of one run, binned.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    /// The run.
    pub run: String,
    /// Queries with energy.
    pub n: usize,
    /// Mean joules per query (the summary's J/query).
    pub mean: f64,
    /// `ceil(sqrt(n))` equal bins (at most 30) from the least to the most.
    pub bins: Vec<Bin>,
}

/// The routing results `ipw route` wrote: what the page shows of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteSummary {
    /// The reference model savings are measured against.
    pub reference: String,
    /// `net` or `gross`.
    pub energy_basis: String,
    /// Queries routed.
    pub queries: usize,
    /// The models routed between, with their runs.
    #[serde(default)]
    pub models: Vec<RouteModel>,
    /// One per router.
    pub routers: Vec<RouterSummary>,
    /// Accuracy and energy over each sweepable router's parameter.
    #[serde(default)]
    pub curves: BTreeMap<String, Vec<RouteCurvePoint>>,
}

/// A model `ipw route` routed between.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteModel {
    /// Column name.
    pub name: String,
    /// Its run directory.
    pub run: PathBuf,
}

/// One router's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterSummary {
    /// The router's spec.
    pub router: String,
    /// Mean score.
    pub accuracy: Option<Estimate>,
    /// Accuracy minus the reference's.
    pub accuracy_delta: Option<Estimate>,
    /// Mean joules per query.
    pub energy_j: Option<Estimate>,
    /// Savings against sending everything to the reference.
    pub savings: RouteSavings,
    /// Some energy is declared, not measured.
    #[serde(default)]
    pub energy_estimated: bool,
}

/// A router's savings: each a share of the reference's, where the runs have that figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteSavings {
    /// Share of the reference's energy saved.
    pub energy: Option<Estimate>,
    /// Share of the reference's compute (FLOPs) saved.
    #[serde(default)]
    pub compute: Option<Estimate>,
    /// Share of the reference's cost saved.
    #[serde(default)]
    pub cost: Option<Estimate>,
    /// Share of the reference's carbon saved (`ipw route --footprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon: Option<Estimate>,
}

/// One point of a router's sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteCurvePoint {
    /// Parameter value.
    pub param: f64,
    /// Mean score.
    pub accuracy: f64,
    /// Mean joules per query.
    pub energy_j: Option<f64>,
}

/// Routing results and the file they came from.
#[derive(Debug, Clone, Serialize)]
pub struct Routing {
    /// `route.json`.
    pub path: PathBuf,
    /// What it says.
    pub route: RouteSummary,
}

/// Coverage and how its reference was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// `--reference`, or why this run was chosen.
    pub reference_chosen: String,
    /// What `ipw coverage` gives.
    pub report: CoverageReport,
    /// By domain: which classifiers labelled the records, into which taxonomies (one line
    /// each: `mapping (sha256 1a2b3c4d5e6f) into soc-2018 (sha256 ...)`); empty otherwise.
    pub labelled_by: Vec<String>,
    /// By domain: the title of each label code, where the taxonomy is a shipped one.
    pub domain_titles: BTreeMap<String, String>,
}

/// Where a figure's numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// The runs it draws (names in [`Report::runs`]).
    pub runs: Vec<String>,
    /// A file it reads beyond the runs' records (a power log, `route.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// A figure: its data when there is any, a note saying what it shows or why it is empty, and
/// where its numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Figure<T> {
    /// The numbers; `None` when the figure could not be drawn (see `note`).
    pub data: Option<T>,
    /// What the figure shows, or why it is empty.
    pub note: String,
    /// Where its numbers come from.
    pub provenance: Provenance,
}

/// Everything the page shows (written as `report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Format version.
    pub schema: u32,
    /// The ipw that made the report.
    pub ipw_version: String,
    /// Its git commit.
    pub git_commit: String,
    /// The command line.
    pub command: Vec<String>,
    /// `net` or `gross` (as `ipw compare`).
    pub energy_basis: &'static str,
    /// The runs, in the order given.
    pub runs: Vec<RunInfo>,
    /// Per run: accuracy, APJ, APW, J/query, p50 latency, markers.
    pub summary: Figure<Vec<CompareRow>>,
    /// Accuracy vs J/query.
    pub pareto: Figure<Vec<ParetoPoint>>,
    /// Coverage per group.
    pub coverage: Figure<Coverage>,
    /// One run's power trace.
    pub trace: Figure<Trace>,
    /// J/query per run.
    pub energy: Figure<Vec<Histogram>>,
    /// Routing results.
    pub routing: Figure<Routing>,
    /// Carbon, water and cost per query per run (the `all` rows of `compare --footprint`).
    pub footprint: Figure<crate::footprint::FootprintFigures>,
}

fn run_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Run {
        path: path.to_path_buf(),
        message,
    }
}

/// The runs on the accuracy/energy frontier: sorted by energy, a run is on it when it is more
/// accurate than every cheaper one (ties in energy: the more accurate one only).
pub fn pareto(points: &mut [ParetoPoint]) {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .j_per_query
            .total_cmp(&points[b].j_per_query)
            .then(points[b].accuracy.total_cmp(&points[a].accuracy))
    });
    let mut best = f64::NEG_INFINITY;
    for i in order {
        points[i].frontier = points[i].accuracy > best;
        best = best.max(points[i].accuracy);
    }
}

/// `ceil(sqrt(n))` equal bins (at most [`MAX_BINS`]) between the least and the most value.
pub fn histogram(values: &[f64]) -> Vec<Bin> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Vec::new();
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if hi <= lo {
        return vec![Bin {
            lo,
            hi,
            count: v.len(),
        }];
    }
    let k = ((v.len() as f64).sqrt().ceil() as usize).clamp(1, MAX_BINS);
    let width = (hi - lo) / k as f64;
    let mut bins: Vec<Bin> = (0..k)
        .map(|i| Bin {
            lo: lo + width * i as f64,
            hi: if i + 1 == k {
                hi
            } else {
                lo + width * (i + 1) as f64
            },
            count: 0,
        })
        .collect();
    for x in v {
        let i = (((x - lo) / width).floor() as usize).min(k - 1);
        bins[i].count += 1;
    }
    bins
}

/// How a run's energy should be labelled, from its records and the table's view of it.
fn energy_kind(run: &RunDigest, source: EnergySource) -> EnergyKind {
    if run.any_estimated {
        return EnergyKind::Estimated;
    }
    if run.imported_only {
        return EnergyKind::Imported;
    }
    match source {
        EnergySource::Measured => EnergyKind::Measured,
        EnergySource::Declared => EnergyKind::Declared,
        EnergySource::None => EnergyKind::None,
    }
}

/// Gather every figure's numbers.
pub fn build(req: &ReportRequest) -> Result<Report, ReportError> {
    // The runs' names, accelerators and manifests; their records are read once each below,
    // as they stream past, and what the page needs of them kept.
    let named = joined::named_runs(&req.runs)?;
    let dirs: Vec<PathBuf> = named.iter().map(|r| r.dir.clone()).collect();
    let all_names: Vec<String> = named.iter().map(|r| r.name.clone()).collect();
    let everyone = || Provenance {
        runs: all_names.clone(),
        file: None,
    };

    let mut runs = Vec::new();
    let mut digests: Vec<RunDigest> = Vec::new();
    for col in &named {
        let dir = RunDir::new(&col.dir);
        let run = digest::digest(&dir).map_err(|e| run_err(&col.dir)(e.to_string()))?;
        let manifest = &col.manifest;
        runs.push(RunInfo {
            name: col.name.clone(),
            accelerator: col.accelerator.clone(),
            path: col.dir.clone(),
            ipw_version: manifest.ipw_version.clone(),
            git_commit: manifest.git_commit.clone(),
            status: manifest.status.clone(),
            records: run.records,
            energy: energy_kind(&run, EnergySource::of(run.measured, &col.meta)),
        });
        digests.push(run);
    }

    let compare = study::compare(&dirs, GroupBy::Dataset, None, req.seed)?;
    let rows: Vec<CompareRow> = compare
        .rows
        .into_iter()
        .filter(|r| r.group == "all")
        .collect();
    let graded = rows.len();
    let summary = Figure {
        note: if graded == runs.len() {
            format!("{graded} runs; energy basis: {}", compare.energy_basis)
        } else {
            format!(
                "{graded} of {} runs have graded records; the others have no accuracy",
                runs.len()
            )
        },
        data: Some(rows.clone()),
        provenance: everyone(),
    };

    let mut points: Vec<ParetoPoint> = rows
        .iter()
        .filter_map(|r| {
            Some(ParetoPoint {
                run: r.model.clone(),
                accuracy: r.accuracy?.value,
                j_per_query: r.j_per_query?,
                frontier: false,
            })
        })
        .collect();
    pareto(&mut points);
    let pareto = Figure {
        note: if points.is_empty() {
            "no run has both graded records and energy".into()
        } else {
            format!(
                "{} runs with accuracy and energy; {} on the frontier",
                points.len(),
                points.iter().filter(|p| p.frontier).count()
            )
        },
        data: (!points.is_empty()).then_some(points),
        provenance: everyone(),
    };

    let coverage = coverage_figure(req, &dirs, &rows, &all_names, &digests)?;
    let trace = trace_figure(req, &named, &runs)?;

    let hists: Vec<Histogram> = runs
        .iter()
        .zip(&digests)
        .filter_map(|(run, digest)| {
            let v = &digest.energies;
            (!v.is_empty()).then(|| Histogram {
                run: run.name.clone(),
                n: v.len(),
                mean: v.iter().sum::<f64>() / v.len() as f64,
                bins: histogram(v),
            })
        })
        .collect();
    let energy = Figure {
        note: if hists.is_empty() {
            "no run has energy per query".into()
        } else {
            format!(
                "joules per query ({} basis per run, as J/query in the summary)",
                compare.energy_basis
            )
        },
        data: (!hists.is_empty()).then_some(hists),
        provenance: everyone(),
    };

    let routing = routing_figure(req, &dirs, &runs)?;
    let footprint = match &req.footprint {
        None => Figure {
            data: None,
            note: "no footprint file given (ipw report --footprint FILE: grid region or intensity, PUE, prices)".into(),
            provenance: everyone(),
        },
        Some(f) => {
            let mut figures = crate::footprint::figures(&dirs, GroupBy::Dataset, f)?;
            figures.rows.retain(|r| r.group == "all");
            Figure {
                note: format!(
                    "per query of each run; energy x PUE is the facility's, the grid's intensity applied to it; {}",
                    figures
                        .labelled_inputs()
                        .first()
                        .map(|(_, i)| i.busy_time)
                        .unwrap_or_default()
                ),
                data: Some(figures),
                provenance: Provenance {
                    runs: all_names.clone(),
                    file: Some(f.path.clone()),
                },
            }
        }
    };

    Ok(Report {
        schema: REPORT_SCHEMA,
        ipw_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: env!("IPW_GIT_COMMIT").into(),
        command: req.command.clone(),
        energy_basis: compare.energy_basis,
        runs,
        summary,
        pareto,
        coverage,
        trace,
        energy,
        routing,
        footprint,
    })
}

fn coverage_figure(
    req: &ReportRequest,
    dirs: &[PathBuf],
    rows: &[CompareRow],
    names: &[String],
    digests: &[RunDigest],
) -> Result<Figure<Coverage>, ReportError> {
    let provenance = Provenance {
        runs: names.to_vec(),
        file: None,
    };
    let skip = |note: String| {
        Ok(Figure {
            data: None,
            note,
            provenance: provenance.clone(),
        })
    };
    if names.len() < 2 {
        return skip("coverage needs two runs or more".into());
    }
    let (reference, chosen) = match &req.reference {
        Some(r) => (r.clone(), format!("{r} (--reference)")),
        None => {
            let most = rows
                .iter()
                .filter_map(|r| Some((r.model.clone(), r.j_per_query?)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match most {
                Some((name, j)) => (
                    name.clone(),
                    format!(
                        "{name}: the run with the most energy per query ({}); choose another with --reference",
                        svg::fmt_sig(j)
                    ),
                ),
                None => {
                    return skip(
                        "no --reference given and no run has energy per query to choose one by"
                            .into(),
                    )
                }
            }
        }
    };
    let report = study::coverage(
        dirs,
        &reference,
        req.tolerance,
        req.by,
        &BTreeMap::new(),
        req.seed,
    )?;
    Ok(Figure {
        note: format!(
            "share of queries each run scores at least as well as {} (tolerance {}), per {}",
            report.reference,
            report.tolerance,
            req.by.name()
        ),
        data: Some(Coverage {
            reference_chosen: chosen,
            report,
            labelled_by: if req.by == GroupBy::Domain {
                digest::labelled_by(digests)
            } else {
                Vec::new()
            },
            domain_titles: if req.by == GroupBy::Domain {
                digest::domain_titles(digests)
            } else {
                BTreeMap::new()
            },
        }),
        provenance,
    })
}

fn trace_figure(
    req: &ReportRequest,
    named: &[joined::NamedRun],
    runs: &[RunInfo],
) -> Result<Figure<Trace>, ReportError> {
    let candidates: Vec<usize> = match &req.trace_run {
        Some(name) => {
            let by_dir = |i: &usize| {
                runs[*i].path.file_name().and_then(|f| f.to_str()) == Some(name.as_str())
            };
            let names: Vec<&str> = named.iter().map(|r| r.name.as_str()).collect();
            let i = joined::find_column(&names, name)
                .ok()
                .or_else(|| (0..runs.len()).find(by_dir))
                .ok_or_else(|| ReportError::UnknownTraceRun {
                    name: name.clone(),
                    known: runs
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            vec![i]
        }
        None => (0..runs.len()).collect(),
    };
    for i in candidates {
        let dir = RunDir::new(&runs[i].path);
        let path = dir.power_log_path();
        // The records are read again only for the session the trace draws.
        let mut unread = None;
        let found = trace::trace(&named[i].manifest, &path, &runs[i].name, |session| {
            digest::session_windows(&dir, session).map_err(|e| {
                let message = e.to_string();
                unread = Some(run_err(&runs[i].path)(message.clone()));
                std::io::Error::other(message)
            })
        });
        if let Some(e) = unread {
            return Err(e);
        }
        let found = found.map_err(|e| run_err(&path)(e.to_string()))?;
        if let Some(tr) = found {
            return Ok(Figure {
                note: format!(
                    "{}: session {} of {}, {} readings over {} channels drawn as at most {} points each",
                    tr.run,
                    tr.session + 1,
                    tr.sessions,
                    tr.readings,
                    tr.channels.len(),
                    TRACE_POINTS
                ),
                data: Some(tr),
                provenance: Provenance {
                    runs: vec![runs[i].name.clone()],
                    file: Some(path),
                },
            });
        }
    }
    Ok(Figure {
        data: None,
        note: match &req.trace_run {
            Some(name) => format!("{name} has no power log with described energy channels"),
            None => "no run has a power log with described energy channels".into(),
        },
        provenance: Provenance {
            runs: Vec::new(),
            file: None,
        },
    })
}

fn routing_figure(
    req: &ReportRequest,
    dirs: &[PathBuf],
    runs: &[RunInfo],
) -> Result<Figure<Routing>, ReportError> {
    let (path, given) = match &req.route {
        Some(p) => (p.clone(), true),
        None => (dirs[0].join("analysis").join("route.json"), false),
    };
    if !given && !path.is_file() {
        return Ok(Figure {
            data: None,
            note: format!(
                "no routing results ({} does not exist; run `ipw route` on these runs first)",
                path.display()
            ),
            provenance: Provenance {
                runs: Vec::new(),
                file: None,
            },
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| run_err(&path)(e.to_string()))?;
    let route: RouteSummary =
        serde_json::from_str(&text).map_err(|e| run_err(&path)(e.to_string()))?;
    Ok(Figure {
        note: format!(
            "{} routers over {} queries against {} ({} energy)",
            route.routers.len(),
            route.queries,
            route.reference,
            route.energy_basis
        ),
        provenance: Provenance {
            // The report's runs that route.json routed between (by directory: names may
            // differ when it was made from other runs).
            runs: runs
                .iter()
                .filter(|r| route.models.iter().any(|m| m.run == r.path))
                .map(|r| r.name.clone())
                .collect(),
            file: Some(path.clone()),
        },
        data: Some(Routing { path, route }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(acc: f64, j: f64) -> ParetoPoint {
        ParetoPoint {
            run: String::new(),
            accuracy: acc,
            j_per_query: j,
            frontier: false,
        }
    }

    #[test]
    fn the_frontier_keeps_runs_no_other_beats_on_both() {
        let mut v = vec![
            p(0.5, 1.0),
            p(0.625, 4.0),
            p(0.625, 20.0),
            p(0.4, 2.0),
            p(0.9, 4.0),
        ];
        pareto(&mut v);
        let on: Vec<bool> = v.iter().map(|x| x.frontier).collect();
        assert_eq!(on, [true, false, false, false, true]);
    }

    #[test]
    fn histogram_bins_cover_every_value_once() {
        let b = histogram(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(b.len(), 3);
        assert_eq!(b.iter().map(|b| b.count).sum::<usize>(), 5);
        assert_eq!(b[2].hi, 5.0);
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 1, 2]);
        assert_eq!(histogram(&[2.0, 2.0])[0].count, 2);
        assert!(histogram(&[]).is_empty());
    }
}
