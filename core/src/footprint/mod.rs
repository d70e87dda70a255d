//! What a query costs beyond joules: grams of CO2e, litres of water and money.
//!
//! A footprint file (TOML, given to `ipw compare --footprint`) says where and how the energy
//! was drawn: grid carbon and water intensity (a region from the shipped table, a constant, or
//! a time series joined to each query's window), the facility's PUE, the electricity price and
//! the hardware's amortisation. Every figure is labelled with the inputs it came from
//! ([`FootprintInputs`]).
//!
//! ```toml
//! region = "DEU"              # core/data/footprint/regions.csv: carbon and water per kWh
//! # carbon_g_per_kwh = 380    # or a constant of your own
//! # intensity_csv = "grid.csv"  # or a time series: time, g_co2e_per_kwh[, water_l_per_kwh]
//! pue = 1.2                   # facility energy / IT energy (default 1: no facility overhead)
//! price_per_kwh = 0.30
//! currency = "EUR"
//! [hardware]                  # amortisation over the machine's busy time
//! price = 2500.0
//! lifetime_years = 4
//! share = 1.0                 # the share of the machine the run had
//!
//! [accelerators."H100 (eu-north)"]  # runs on this accelerator: their own grid, PUE, prices
//! region = "SWE"              # naming any grid field replaces the whole grid of the top level
//! pue = 1.1                   # the other fields replace the top level's one by one
//! ```
//!
//! Runs on different machines draw from different grids, so a file may give an
//! `[accelerators.NAME]` section per accelerator (as the runs' manifests name it); what a
//! routing objective of carbon trades between is then real. A section naming no run's
//! accelerator is refused (a typo would otherwise price runs on the wrong grid).

mod figures;
pub mod per_record;
pub mod series;

pub use crate::config::{FootprintConfig, HardwareConfig};

pub use figures::{carbon_per_joule, figures, CarbonPerJoule, FootprintFigures, FootprintRow};
pub use series::Series;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The shipped grid table (see `scripts/footprint-regions.py` for its sources).
const REGIONS: &str = include_str!("../../data/footprint/regions.csv");

/// Joules in a kilowatt-hour.
const J_PER_KWH: f64 = 3.6e6;

/// Seconds in a year (365.25 days).
const S_PER_YEAR: f64 = 365.25 * 86_400.0;

/// Why a footprint could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    /// The footprint file is unreadable or wrong.
    #[error("{}: {message}", path.display())]
    Config {
        /// The footprint file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A line of the intensity time series is wrong.
    #[error("{}:{line}: {message}", path.display())]
    Series {
        /// The CSV.
        path: PathBuf,
        /// Its line (1: the header).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A run cannot be read, or lacks what the footprint needs.
    #[error("{}: {message}", path.display())]
    Run {
        /// The run directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The runs could not be found or named.
    #[error(transparent)]
    Table(#[from] crate::joined::TableError),
}

impl FootprintConfig {
    /// Whether any field of the grid (where the intensities come from) is given.
    fn names_grid(&self) -> bool {
        self.region.is_some()
            || self.carbon_g_per_kwh.is_some()
            || self.water_l_per_kwh.is_some()
            || self.intensity_csv.is_some()
    }

    /// Whether anything a figure is computed from is given (PUE alone scales, it computes
    /// nothing: at the top level of a file with sections it is what the sections share).
    fn prices_anything(&self) -> bool {
        self.names_grid() || self.price_per_kwh.is_some() || self.hardware.is_some()
    }

    /// This (top-level) configuration with the section `over` laid on it: a section that names
    /// any grid field names the whole grid; the other fields replace one by one. The error
    /// names the field.
    fn overlaid(&self, over: &FootprintConfig) -> Result<FootprintConfig, String> {
        if !over.accelerators.is_empty() {
            return Err("accelerators: a section cannot have sections of its own".into());
        }
        let mut c = self.clone();
        c.accelerators.clear();
        if over.names_grid() {
            c.region.clone_from(&over.region);
            c.carbon_g_per_kwh = over.carbon_g_per_kwh;
            c.water_l_per_kwh = over.water_l_per_kwh;
            c.intensity_csv.clone_from(&over.intensity_csv);
        }
        c.pue = over.pue.or(self.pue);
        c.price_per_kwh = over.price_per_kwh.or(self.price_per_kwh);
        if over.hardware.is_some() {
            c.hardware.clone_from(&over.hardware);
        }
        match (&self.currency, &over.currency) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "currency: `{b}` differs from the top level's `{a}`; costs of one file are in one currency"
                ))
            }
            (None, Some(b)) => c.currency = Some(b.clone()),
            _ => {}
        }
        Ok(c)
    }
}

/// What every footprint figure was computed from, in words and numbers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FootprintInputs {
    /// Where the carbon intensity comes from.
    pub carbon: Option<String>,
    /// Where the water intensity comes from.
    pub water: Option<String>,
    /// The facility's PUE (every joule is multiplied by it before the grid sees it).
    pub pue: f64,
    /// The electricity price per kWh.
    pub price_per_kwh: Option<f64>,
    /// The hardware's cost per second of busy time, and how it was derived.
    pub hardware: Option<String>,
    /// The currency label of every cost.
    pub currency: Option<String>,
    /// How a run's machine time is split among its queries.
    pub busy_time: &'static str,
}

/// Carbon or water intensity: one value, or the time series.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Intensity {
    Constant(f64),
    Series,
}

/// A footprint file, resolved: the intensities, factors and their labels.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// The inputs, labelled.
    pub inputs: FootprintInputs,
    carbon: Option<Intensity>,
    water: Option<Intensity>,
    series: Option<Series>,
    pue: f64,
    price_per_kwh: Option<f64>,
    hardware_per_s: Option<f64>,
}

/// One row of the shipped grid table.
struct Region {
    code: String,
    name: String,
    year: String,
    carbon: f64,
    water: f64,
    water_counted: f64,
}

fn regions() -> impl Iterator<Item = Region> {
    REGIONS.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        Some(Region {
            code: f.first()?.to_string(),
            name: f.get(1)?.to_string(),
            year: f.get(2)?.to_string(),
            carbon: f.get(3)?.parse().ok()?,
            water: f.get(4)?.parse().ok()?,
            water_counted: f.get(5)?.parse().ok()?,
        })
    })
}

/// Copies the intensity series `config` names into the run directory `run` (by file name,
/// unless a copy is there: a resumed run keeps the series it started with), so the run is read
/// with the series it was measured under on any machine ([`Footprints::from_runs`]).
pub fn keep_series(config: &FootprintConfig, run: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let series = config.intensity_csv.iter().chain(
        config
            .accelerators
            .values()
            .filter_map(|s| s.intensity_csv.as_ref()),
    );
    for from in series {
        let Some(name) = from.file_name() else {
            continue;
        };
        let to = run.join(name);
        if !to.exists() {
            std::fs::copy(from, &to).map_err(|e| (from.clone(), e))?;
        }
    }
    Ok(())
}

/// A footprint file, resolved: the footprint of every run, and of runs on named accelerators.
#[derive(Debug, Clone)]
pub struct Footprints {
    /// The file (named in errors).
    pub path: PathBuf,
    /// The top level's footprint; `None` when the file gives sections only.
    pub default: Option<Footprint>,
    /// Per accelerator name, the top level with its section laid on it.
    pub accelerators: BTreeMap<String, Footprint>,
    /// No file: each run's own footprint, from its experiment's `[footprint]`
    /// ([`Footprints::from_runs`]).
    pub from_runs: bool,
}

impl Footprints {
    /// Reads and resolves a footprint file; the error names the file and the field.
    pub fn load(path: &Path) -> Result<Self, FootprintError> {
        let err = |message: String| FootprintError::Config {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        // toml's message names the line, column and key.
        let config: FootprintConfig = toml::from_str(&text)
            .map_err(|e: toml::de::Error| err(e.to_string().trim().replace('\n', " ")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::resolve(&config, base).map_err(err).map(|mut f| {
            f.path = path.to_path_buf();
            f
        })
    }

    /// Resolves `config` (relative paths from `base`); the error names the field, and the
    /// section it is in.
    pub fn resolve(config: &FootprintConfig, base: &Path) -> Result<Self, String> {
        let default = if config.accelerators.is_empty() || config.prices_anything() {
            Some(Footprint::resolve(config, base)?)
        } else {
            None
        };
        let mut accelerators = BTreeMap::new();
        for (name, section) in &config.accelerators {
            let laid = config
                .overlaid(section)
                .and_then(|c| Footprint::resolve(&c, base))
                .map_err(|m| format!("[accelerators.\"{name}\"] {m}"))?;
            accelerators.insert(name.clone(), laid);
        }
        Ok(Footprints {
            path: PathBuf::new(),
            default,
            accelerators,
            from_runs: false,
        })
    }

    /// The footprint file `file` when given (read before any run), else what the runs under
    /// `runs` carry ([`Footprints::from_runs`]).
    pub fn given_or_from_runs(
        file: Option<&Path>,
        runs: &[PathBuf],
    ) -> Result<Option<Self>, FootprintError> {
        match file {
            Some(f) => Self::load(f).map(Some),
            None => Self::from_runs(runs),
        }
    }

    /// The footprints the runs under `paths` carry from their experiments' `[footprint]`:
    /// `None` when not every run has one (a warning names the runs without, when some have).
    /// Paths without run directories (a study's parts, `*.part.parquet`) have none: the
    /// command reading them says what they are.
    pub fn from_runs(paths: &[PathBuf]) -> Result<Option<Self>, FootprintError> {
        let Ok(runs) = crate::joined::find_runs(paths) else {
            return Ok(None);
        };
        let mut without = Vec::new();
        let mut currencies = BTreeMap::new();
        for dir in &runs {
            let manifest = crate::records::RunDir::new(dir)
                .read_manifest()
                .map_err(|e| FootprintError::Run {
                    path: dir.clone(),
                    message: e.to_string(),
                })?;
            if manifest
                .experiment
                .get("footprint")
                .is_none_or(|f| f.is_null())
            {
                without.push(dir.display().to_string());
            }
            let currency = manifest.experiment["footprint"]["currency"].as_str();
            if let Some(c) = currency {
                currencies
                    .entry(c.to_string())
                    .or_insert_with(|| dir.display().to_string());
            }
        }
        if without.len() == runs.len() {
            return Ok(None);
        }
        if !without.is_empty() {
            tracing::warn!(
                "no footprint: some runs' experiments have a [footprint] and these have none (give --footprint FILE for all): {}",
                without.join(", ")
            );
            return Ok(None);
        }
        if currencies.len() > 1 {
            // Costs in two currencies would be printed, averaged and compared as one.
            return Err(FootprintError::Config {
                path: PathBuf::from("the runs' [footprint]"),
                message: format!(
                    "the runs price in different currencies ({}): give --footprint FILE with one",
                    currencies
                        .iter()
                        .map(|(c, run)| format!("{c} in {run}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        Ok(Some(Footprints {
            path: PathBuf::from("the runs' [footprint]"),
            default: None,
            accelerators: BTreeMap::new(),
            from_runs: true,
        }))
    }

    /// The footprint of the run in `dir` (its manifest `manifest`, on `accelerator`): the
    /// file's, or with [`Footprints::from_runs`] the run's own, its intensity series read from
    /// the copy in the run directory where there is one.
    pub fn for_run(
        &self,
        dir: &Path,
        manifest: &crate::records::Manifest,
        accelerator: &str,
    ) -> Result<std::borrow::Cow<'_, Footprint>, String> {
        if !self.from_runs {
            return self
                .for_accelerator(accelerator)
                .map(std::borrow::Cow::Borrowed);
        }
        let raw = manifest
            .experiment
            .get("footprint")
            .cloned()
            .unwrap_or_default();
        let mut config: FootprintConfig = serde_json::from_value(raw)
            .map_err(|e| format!("{}: the manifest's [footprint]: {e}", dir.display()))?;
        let kept = |p: &mut Option<PathBuf>| {
            if let Some(copy) = p.as_ref().and_then(|p| p.file_name()).map(|n| dir.join(n)) {
                if copy.is_file() {
                    *p = Some(copy);
                }
            }
        };
        kept(&mut config.intensity_csv);
        for s in config.accelerators.values_mut() {
            kept(&mut s.intensity_csv);
        }
        let mut own = Footprints::resolve(&config, dir)
            .map_err(|m| format!("{}: the experiment's [footprint] {m}", dir.display()))?;
        own.path = dir.to_path_buf();
        own.for_accelerator(accelerator)
            .cloned()
            .map(std::borrow::Cow::Owned)
    }

    /// The footprint of runs on `accelerator`: its section's, else the top level's.
    pub fn for_accelerator(&self, accelerator: &str) -> Result<&Footprint, String> {
        self.accelerators
            .get(accelerator)
            .or(self.default.as_ref())
            .ok_or_else(|| {
                format!(
                    "{}: no [accelerators.\"{accelerator}\"] section and no top-level footprint for runs on it (sections: {})",
                    self.path.display(),
                    self.accelerators.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// Refuses a section that names none of `present` (the runs' accelerators).
    pub fn check_accelerators<'a>(
        &self,
        present: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), String> {
        let present: std::collections::BTreeSet<&str> = present.into_iter().collect();
        match self
            .accelerators
            .keys()
            .find(|k| !present.contains(k.as_str()))
        {
            None => Ok(()),
            Some(k) => Err(format!(
                "{}: [accelerators.\"{k}\"] names no run's accelerator (the runs are on: {})",
                self.path.display(),
                present.into_iter().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Gives every cell of `table` its grams CO2e: each column's run under its accelerator's
    /// footprint (a time series joined to each query's window). Columns whose footprint has no
    /// carbon intensity are left without.
    pub fn apply_carbon(&self, table: &mut crate::joined::Table) -> Result<(), FootprintError> {
        let config = |message: String| FootprintError::Config {
            path: self.path.clone(),
            message,
        };
        self.check_accelerators(table.columns.iter().map(|c| c.accelerator.as_str()))
            .map_err(config)?;
        for c in 0..table.columns.len() {
            let column = &table.columns[c];
            let manifest = crate::records::RunDir::new(&column.run)
                .read_manifest()
                .map_err(|e| FootprintError::Run {
                    path: column.run.clone(),
                    message: e.to_string(),
                })?;
            let footprint = self
                .for_run(&column.run, &manifest, &column.accelerator)
                .map_err(config)?;
            if let Some(per) = carbon_per_joule(&column.run, &footprint)? {
                table.apply_carbon(c, |q| per.of(q));
            }
        }
        Ok(())
    }
}

impl Footprint {
    /// Resolves `config` (relative paths from `base`); the error names the field.
    pub fn resolve(config: &FootprintConfig, base: &Path) -> Result<Self, String> {
        let positive = |name: &str, v: Option<f64>| -> Result<Option<f64>, String> {
            match v {
                Some(x) if !(x.is_finite() && x >= 0.0) => {
                    Err(format!("{name}: {x} is not a number >= 0"))
                }
                _ => Ok(v),
            }
        };
        let region = match &config.region {
            None => None,
            Some(r) => Some(
                regions()
                    .find(|g| g.code.eq_ignore_ascii_case(r) || g.name.eq_ignore_ascii_case(r))
                    .ok_or_else(|| {
                        format!(
                            "region: `{r}` is not in the shipped table (ISO 3166 alpha-3 codes such as DEU, FRA, USA, or country names: core/data/footprint/regions.csv); give carbon_g_per_kwh instead"
                        )
                    })?,
            ),
        };
        let series = match &config.intensity_csv {
            None => None,
            Some(p) => Some(Series::read(&base.join(p)).map_err(|e| e.to_string())?),
        };
        let carbon_given = positive("carbon_g_per_kwh", config.carbon_g_per_kwh)?;
        if carbon_given.is_some() && series.is_some() {
            return Err(
                "carbon_g_per_kwh and intensity_csv both give carbon intensity: keep one".into(),
            );
        }
        let source = "Our World in Data (Ember, Energy Institute) via CodeCarbon";
        let (carbon, carbon_label) = match (carbon_given, &series, &region) {
            (Some(v), _, _) => (
                Some(Intensity::Constant(v)),
                Some(format!("{v} g CO2e/kWh, given")),
            ),
            (None, Some(_), _) => (
                Some(Intensity::Series),
                config.intensity_csv.as_ref().map(|p| {
                    format!(
                        "time series {} (g_co2e_per_kwh, split over each query's window)",
                        p.display()
                    )
                }),
            ),
            (None, None, Some(g)) => (
                Some(Intensity::Constant(g.carbon)),
                Some(format!(
                    "{} g CO2e/kWh: {} ({}), {}, {source}",
                    g.carbon, g.code, g.name, g.year
                )),
            ),
            (None, None, None) => (None, None),
        };
        let water_given = positive("water_l_per_kwh", config.water_l_per_kwh)?;
        let (water, water_label) = match (water_given, &series, &region) {
            (Some(v), _, _) => (Some(Intensity::Constant(v)), Some(format!("{v} L/kWh, given"))),
            (None, Some(s), _) if s.has_water() => (
                Some(Intensity::Series),
                config
                    .intensity_csv
                    .as_ref()
                    .map(|p| format!("time series {} (water_l_per_kwh)", p.display())),
            ),
            (None, _, Some(g)) => (
                Some(Intensity::Constant(g.water)),
                Some(format!(
                    "{} L/kWh: {} ({}), {} generation mix x life-cycle water per source (Meldrum et al. 2013) via CodeCarbon; covers {:.0}% of generation (hydro, oil, bioenergy not counted): a lower bound",
                    g.water,
                    g.code,
                    g.name,
                    g.year,
                    100.0 * g.water_counted
                )),
            ),
            _ => (None, None),
        };
        let pue = config.pue.unwrap_or(1.0);
        if !(pue.is_finite() && pue >= 1.0) {
            return Err(format!(
                "pue: {pue} is below 1 (facility energy over IT energy)"
            ));
        }
        let price_per_kwh = positive("price_per_kwh", config.price_per_kwh)?;
        let hardware_per_s = match &config.hardware {
            None => None,
            Some(h) => {
                positive("hardware.price", Some(h.price))?;
                if !(h.lifetime_years.is_finite() && h.lifetime_years > 0.0) {
                    return Err(format!(
                        "hardware.lifetime_years: {} is not a number > 0",
                        h.lifetime_years
                    ));
                }
                if !(h.share > 0.0 && h.share <= 1.0) {
                    return Err(format!("hardware.share: {} is not in (0, 1]", h.share));
                }
                Some(h.price * h.share / (h.lifetime_years * S_PER_YEAR))
            }
        };
        if (price_per_kwh.is_some() || hardware_per_s.is_some()) && config.currency.is_none() {
            return Err("currency: prices are given, so name their currency (e.g. \"USD\")".into());
        }
        if carbon.is_none()
            && water.is_none()
            && price_per_kwh.is_none()
            && hardware_per_s.is_none()
        {
            return Err(
                "nothing to compute: give region, carbon_g_per_kwh, intensity_csv, water_l_per_kwh, price_per_kwh or [hardware]"
                    .into(),
            );
        }
        let currency = config.currency.clone();
        Ok(Footprint {
            inputs: FootprintInputs {
                carbon: carbon_label,
                water: water_label,
                pue,
                price_per_kwh,
                hardware: config.hardware.as_ref().zip(hardware_per_s).map(|(h, per_s)| {
                    format!(
                        "{} {} x share {} over {} years: {:.6e} {} per busy second",
                        h.price,
                        currency.as_deref().unwrap_or(""),
                        h.share,
                        h.lifetime_years,
                        per_s,
                        currency.as_deref().unwrap_or("")
                    )
                }),
                currency,
                busy_time: "a run's busy time (the union of its query windows) shared among its queries in proportion to their windows' lengths",
            },
            carbon,
            water,
            series,
            pue,
            price_per_kwh,
            hardware_per_s,
        })
    }

    /// Whether a query's wall-clock window is needed (an intensity comes from the series).
    fn needs_time(&self) -> bool {
        self.carbon == Some(Intensity::Series) || self.water == Some(Intensity::Series)
    }
}
