//! Runs to Parquet: `records.parquet` (one flat row per record, see
//! [`crate::records::parquet`]) and `power.parquet` (one row per line of `power.jsonl`, every
//! raw reading and failed read as the log has it); with a footprint file, `footprint.parquet`
//! (one row per record, in the order of `records.parquet`: its carbon, water and cost, the
//! inputs they came from in the schema's metadata under `ipw.footprint`).
//!
//! Both are streamed: records are read from `records.jsonl` and written in batches of
//! [`BATCH_ROWS`] (one row group each), the power log line by line, so memory does not grow
//! with the run. Reading records takes two passes over the file: the first finds the energy
//! channels (the columns), the second writes.

use super::ExportError;
use crate::footprint::Footprints;
use crate::power::ChannelKind;
use crate::records::parquet::{
    channels_of, records_batch, records_schema, ParquetFile, RunColumns, BATCH_ROWS,
};
use crate::records::{Manifest, PowerLogLines, RunDir};
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the exported files go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Into each run directory, beside `records.jsonl` (under the run's lock).
    InPlace,
    /// Into `<dir>/<run name>/`, with a copy of the run's `manifest.json` (and `summary.json`)
    /// so the directory is a run directory analysis reads.
    Under(PathBuf),
}

/// What was written for one run.
#[derive(Debug, Clone)]
pub struct ExportedRun {
    /// The run directory read.
    pub run: PathBuf,
    /// The directory written into.
    pub dir: PathBuf,
    /// Rows of `records.parquet`.
    pub records: usize,
    /// Energy channels that have columns.
    pub channels: Vec<String>,
    /// Rows of `power.parquet` (`None`: the run has no power log, no file written).
    pub power_rows: Option<usize>,
    /// Lines of `records.jsonl` that are not records, left out (as analysis leaves them out).
    pub rejected_lines: usize,
    /// Lines of `power.jsonl` that do not read (cut off by a crash), left out.
    pub unreadable_power_lines: usize,
    /// Rows of `footprint.parquet` (`None`: no footprint asked for).
    pub footprint_rows: Option<usize>,
}

/// Export every run under `paths` (run directories or experiment directories).
pub fn export(paths: &[PathBuf], dest: &Destination) -> Result<Vec<ExportedRun>, ExportError> {
    export_with(paths, dest, None)
}

/// [`export`], and with `footprint` each run's `footprint.parquet` under its accelerator's
/// footprint.
pub fn export_with(
    paths: &[PathBuf],
    dest: &Destination,
    footprint: Option<&Footprints>,
) -> Result<Vec<ExportedRun>, ExportError> {
    let mut runs = Vec::new();
    for p in paths {
        let found = crate::records::run_dirs(p).map_err(|source| ExportError::Io {
            path: p.clone(),
            source,
        })?;
        if found.is_empty() {
            return Err(ExportError::NoRuns(p.display().to_string()));
        }
        runs.extend(found);
    }
    // Under one folder, runs with the same directory name (one model measured in two
    // experiments, on two accelerators) are told apart by their experiment's name.
    let base: Vec<String> = runs.iter().map(|r| run_name(r)).collect();
    let names: Vec<String> = runs
        .iter()
        .zip(&base)
        .map(|(r, b)| {
            if base.iter().filter(|o| *o == b).count() > 1 {
                let parent = r
                    .canonicalize()
                    .ok()
                    .and_then(|c| {
                        c.parent()
                            .and_then(|p| p.file_name())
                            .map(|n| n.to_os_string())
                    })
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("{parent}-{b}")
            } else {
                b.clone()
            }
        })
        .collect();
    let mut seen: HashMap<&str, &PathBuf> = HashMap::new();
    for (r, name) in runs.iter().zip(&names) {
        if let Some(first) = seen.insert(name, r) {
            if matches!(dest, Destination::Under(_)) {
                return Err(ExportError::SameName {
                    name: name.clone(),
                    first: first.clone(),
                    second: r.clone(),
                });
            }
        }
    }
    runs.iter()
        .zip(&names)
        .map(|(r, name)| export_run(r, name, dest, footprint))
        .collect()
}

fn run_name(run: &Path) -> String {
    run.canonicalize()
        .ok()
        .as_deref()
        .unwrap_or(run)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pq(path: &Path) -> impl FnOnce(String) -> ExportError + '_ {
    move |message| ExportError::Parquet {
        path: path.to_path_buf(),
        message,
    }
}

/// Export one run directory; `name` is its `run` column and, under a folder, its directory.
pub fn export_run(
    run: &Path,
    name: &str,
    dest: &Destination,
    footprint: Option<&Footprints>,
) -> Result<ExportedRun, ExportError> {
    let src = RunDir::new(run);
    let manifest = src.read_manifest()?;
    let (_, accelerator) =
        crate::joined::run_meta(&manifest, &BTreeMap::new()).map_err(|m| pq(run)(m))?;
    // A footprint that cannot price this run is refused before anything is written.
    let footprint = footprint
        .map(|f| {
            f.for_run(run, &manifest, &accelerator)
                .map_err(|m| pq(run)(m))
                .map(|one| (f, one))
        })
        .transpose()?;
    let ctx = RunColumns {
        run: name.to_string(),
        accelerator: accelerator.clone(),
    };
    // In place: hold the run so nothing rewrites records.jsonl under us.
    let (dir, _lock) = match dest {
        Destination::InPlace => (src.clone(), Some(src.lock()?)),
        Destination::Under(out) => {
            let dir = RunDir::new(out.join(name));
            std::fs::create_dir_all(dir.path()).map_err(io(dir.path()))?;
            for (from, to) in [
                (src.manifest_path(), dir.manifest_path()),
                (src.summary_path(), dir.summary_path()),
            ] {
                if from.is_file() {
                    let bytes = std::fs::read(&from).map_err(io(&from))?;
                    crate::records::write_atomic(&to, &bytes).map_err(io(&to))?;
                }
            }
            (dir, None)
        }
    };
    // Pass 1: the channels (the columns).
    let mut channels = BTreeSet::new();
    src.for_each_record(BATCH_ROWS, |batch| channels.extend(channels_of(&batch)))?;
    let out_path = dir.records_parquet_path();
    let schema = records_schema(&channels).map_err(pq(&out_path))?;
    // Pass 2: the rows, a batch at a time.
    let mut file = ParquetFile::create(&out_path, schema.clone()).map_err(pq(&out_path))?;
    let mut records = 0;
    let mut failed = None;
    let rejected = src.for_each_record(BATCH_ROWS, |batch| {
        if failed.is_some() {
            return;
        }
        records += batch.len();
        let written = records_batch(&schema, &batch, &ctx, &channels).and_then(|b| file.write(&b));
        if let Err(e) = written {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(pq(&out_path)(e));
    }
    file.finish().map_err(pq(&out_path))?;
    let (power_rows, unreadable) = if src.power_log_path().is_file() {
        let (n, bad) = export_power(&src, &dir, &manifest, name)?;
        (Some(n), bad)
    } else {
        (None, 0)
    };
    let footprint_rows = match footprint {
        Some((all, one)) => Some(export_footprint(run, &dir, name, &accelerator, all, &one)?),
        None => None,
    };
    Ok(ExportedRun {
        footprint_rows,
        run: run.to_path_buf(),
        dir: dir.path().to_path_buf(),
        records,
        channels: channels.into_iter().collect(),
        power_rows,
        rejected_lines: rejected.len(),
        unreadable_power_lines: unreadable,
    })
}

/// The schema of `footprint.parquet`; `inputs` (JSON) is its metadata under `ipw.footprint`.
pub fn footprint_schema(inputs: String) -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(
        Schema::new(vec![
            Field::new("run", DataType::Utf8, false),
            Field::new("accelerator", DataType::Utf8, false),
            Field::new("record", DataType::UInt64, false),
            Field::new("query_id", DataType::Utf8, false),
            Field::new("energy_basis", DataType::Utf8, false),
            f("energy_j"),
            f("kwh"),
            f("g_co2e"),
            f("water_l"),
            f("energy_cost"),
            f("hardware_cost"),
        ])
        .with_metadata(HashMap::from([("ipw.footprint".to_string(), inputs)])),
    )
}

/// Write `footprint.parquet`: one row per record, in file order.
fn export_footprint(
    run: &Path,
    dir: &RunDir,
    name: &str,
    accelerator: &str,
    all: &Footprints,
    footprint: &crate::footprint::Footprint,
) -> Result<usize, ExportError> {
    use crate::footprint::per_record;
    let out = dir.path().join("footprint.parquet");
    let inputs = serde_json::json!({
        "file": all.path,
        "accelerator": accelerator,
        "section": all.accelerators.contains_key(accelerator),
        "inputs": footprint.inputs,
    })
    .to_string();
    let schema = footprint_schema(inputs);
    let mut file = ParquetFile::create(&out, schema.clone()).map_err(pq(&out))?;
    let (mut n, mut failed) = (0, None);
    let written = per_record::for_each_record(run, footprint, |basis, chunk| {
        if failed.is_some() {
            return;
        }
        let (m, first) = (chunk.len(), n);
        n += m;
        let col = |f: fn(&per_record::RecordFootprint) -> Option<f64>| -> ArrayRef {
            Arc::new(chunk.iter().map(f).collect::<Float64Array>())
        };
        let text = |v: &str| -> ArrayRef {
            Arc::new(std::iter::repeat_n(Some(v), m).collect::<StringArray>())
        };
        let cols: Vec<ArrayRef> = vec![
            text(name),
            text(accelerator),
            Arc::new(UInt64Array::from_iter_values(
                (first..first + m).map(|i| i as u64),
            )),
            Arc::new(
                chunk
                    .iter()
                    .map(|r| Some(r.query_id.as_str()))
                    .collect::<StringArray>(),
            ),
            text(basis),
            col(|r| r.energy_j),
            col(|r| r.kwh),
            col(|r| r.g_co2e),
            col(|r| r.water_l),
            col(|r| r.energy_cost),
            col(|r| r.hardware_cost),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| e.to_string())
            .and_then(|b| file.write(&b));
        if let Err(e) = batch {
            failed = Some(e);
        }
    });
    written.map_err(|e| pq(run)(e.to_string()))?;
    if let Some(e) = failed {
        return Err(pq(&out)(e));
    }
    file.finish().map_err(pq(&out))?;
    Ok(n)
}

/// The schema of `power.parquet`.
pub fn power_schema() -> SchemaRef {
    let s = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("run", false),
        Field::new("session", DataType::UInt64, false),
        s("sampler", false),
        s("channel", false),
        s("kind", true),
        s("unit", true),
        Field::new("t_s", DataType::Float64, false),
        Field::new("value", DataType::Float64, true),
        s("error", true),
    ]))
}

/// A channel's kind and unit, by `sampler/channel`, from the manifest's sessions.
fn channel_kinds(manifest: &Manifest) -> HashMap<String, (&'static str, String)> {
    let mut out = HashMap::new();
    for s in manifest.sessions.iter().flat_map(|s| s.samplers.iter()) {
        for c in &s.channels {
            let kind = match &c.kind {
                ChannelKind::EnergyCounter { .. } => ("energy-counter", "J".to_string()),
                ChannelKind::PowerGauge { .. } => ("power-gauge", "W".to_string()),
                ChannelKind::Telemetry { unit } => ("telemetry", unit.clone()),
            };
            out.entry(format!("{}/{}", s.name, c.name)).or_insert(kind);
        }
    }
    out
}

struct PowerRows {
    run: String,
    session: Vec<u64>,
    sampler: Vec<String>,
    channel: Vec<String>,
    kind: Vec<Option<&'static str>>,
    unit: Vec<Option<String>>,
    t: Vec<f64>,
    value: Vec<Option<f64>>,
    error: Vec<Option<String>>,
}

impl PowerRows {
    fn new(run: String) -> Self {
        Self {
            run,
            session: Vec::new(),
            sampler: Vec::new(),
            channel: Vec::new(),
            kind: Vec::new(),
            unit: Vec::new(),
            t: Vec::new(),
            value: Vec::new(),
            error: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.t.len()
    }

    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch, String> {
        let n = self.len();
        let run: StringArray = std::iter::repeat_n(Some(self.run.as_str()), n).collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(run),
            Arc::new(UInt64Array::from(std::mem::take(&mut self.session))),
            Arc::new(StringArray::from(std::mem::take(&mut self.sampler))),
            Arc::new(StringArray::from(std::mem::take(&mut self.channel))),
            Arc::new(StringArray::from(std::mem::take(&mut self.kind))),
            Arc::new(StringArray::from(std::mem::take(&mut self.unit))),
            Arc::new(Float64Array::from(std::mem::take(&mut self.t))),
            Arc::new(Float64Array::from(std::mem::take(&mut self.value))),
            Arc::new(StringArray::from(std::mem::take(&mut self.error))),
        ];
        RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())
    }
}

/// Stream `power.jsonl` into `power.parquet`: rows written and unreadable lines skipped.
fn export_power(
    src: &RunDir,
    dir: &RunDir,
    manifest: &Manifest,
    run: &str,
) -> Result<(usize, usize), ExportError> {
    let kinds = channel_kinds(manifest);
    let log = src.power_log_path();
    let out = dir.power_parquet_path();
    let schema = power_schema();
    let mut file = ParquetFile::create(&out, schema.clone()).map_err(pq(&out))?;
    let mut lines = PowerLogLines::open(&log).map_err(io(&log))?;
    let mut rows = PowerRows::new(run.to_string());
    let mut total = 0;
    for l in lines.by_ref() {
        let l = l.map_err(io(&log))?;
        let kind = kinds.get(&l.channel);
        rows.session.push(l.session as u64);
        rows.sampler.push(
            l.channel
                .split_once('/')
                .map_or(l.channel.as_str(), |(s, _)| s)
                .to_string(),
        );
        rows.kind.push(kind.map(|k| k.0));
        rows.unit.push(kind.map(|k| k.1.clone()));
        rows.channel.push(l.channel);
        rows.t.push(l.t);
        rows.value.push(l.v);
        rows.error.push(l.error);
        if rows.len() >= BATCH_ROWS {
            total += rows.len();
            let batch = rows.take(&schema).map_err(pq(&out))?;
            file.write(&batch).map_err(pq(&out))?;
        }
    }
    if rows.len() > 0 {
        total += rows.len();
        let batch = rows.take(&schema).map_err(pq(&out))?;
        file.write(&batch).map_err(pq(&out))?;
    }
    file.finish().map_err(pq(&out))?;
    let unreadable = lines.unreadable;
    if unreadable > 0 {
        tracing::warn!(file = %log.display(), "skipped {unreadable} unreadable power log line(s)");
    }
    Ok((total, unreadable))
}
