//! `ipw import`: a per-query table from elsewhere (a paper's release, another harness) becomes
//! ordinary run directories, one per model, so it can be re-graded, routed and reported like a
//! measured run.
//!
//! The table is CSV (with a header) or JSONL (one object per line). Columns are found by name;
//! `--map field=column` renames. Fields:
//!
//! | field | meaning | needed |
//! |---|---|---|
//! | `query_id` | the query's id, shared across models | yes |
//! | `model` | which model answered | yes |
//! | `accelerator` | what it ran on: one run per model and accelerator (`<model>@<accelerator>`) | no |
//! | `prompt` | the prompt text | no (empty) |
//! | `response` | the model's answer | no; without it and a `score`, nothing to grade |
//! | `score` | a grade in [0, 1] already given | no |
//! | `answer` | reference answer(s): text, or a JSON list | no |
//! | `dataset`, `subject` | labels | no (`dataset` = the file's stem) |
//! | `input_tokens`, `output_tokens` | token counts | no |
//! | `energy_j` | joules for the query (gross), `net_energy_j` (net) | no |
//! | `latency_s` | seconds for the query | no (0) |
//! | `cost_usd` | what the query cost | no |
//! | `error` | non-empty: the query failed | no |
//!
//! Imported records say so: backend `imported`, token source unknown, energy (when given) in one
//! channel `imported/table` with no readings behind it and no bound. Windows are laid end to end
//! in table order (each as long as its latency), so busy time is the sum of latencies.
//!
//! With `--parquet` ([`Stored::Parquet`]) each run's records go straight into
//! `records.parquet`, the study's columnar store, as `ipw export --format parquet` would write
//! them, and no `records.jsonl` is written: for tables too large to keep twice on disk.

pub mod wide;

pub use wide::WideMapping;

use crate::records::{
    GradeRecord, Manifest, QueryEnergy, QueryError, Record, RunDir, Window, RECORD_SCHEMA,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a table could not be imported. Every error names the file, and a bad row its line and
/// column.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A row is wrong.
    #[error("{}:{line}: {message}", path.display())]
    Row {
        /// The table.
        path: PathBuf,
        /// 1-based line in the file (the header is line 1 of a CSV).
        line: usize,
        /// What is wrong, naming the column.
        message: String,
    },
    /// The mapping or the header is wrong.
    #[error("{}: {message}", path.display())]
    Columns {
        /// The table.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run directory for one of the models exists already.
    #[error("{} exists already: import into an empty directory", path.display())]
    Exists {
        /// The run directory.
        path: PathBuf,
    },
}

/// The fields `--map` may name.
pub const FIELDS: [&str; 16] = [
    "query_id",
    "model",
    "accelerator",
    "prompt",
    "response",
    "score",
    "answer",
    "dataset",
    "subject",
    "input_tokens",
    "output_tokens",
    "energy_j",
    "net_energy_j",
    "latency_s",
    "cost_usd",
    "error",
];

/// How an import stores each run's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stored {
    /// `records.jsonl`, as a measured run keeps them.
    #[default]
    Jsonl,
    /// `records.parquet` only, as `ipw export --format parquet` writes it: a run's channel
    /// columns are fixed by its first rows, so a row with energy after a model's first
    /// [`crate::records::parquet::BATCH_ROWS`] rows had none is refused, naming its line.
    Parquet,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Per model: its run directory and how many records it got.
    pub runs: Vec<(String, PathBuf, usize)>,
}

/// One row as strings by field name, with its line.
struct RawRow {
    line: usize,
    fields: BTreeMap<&'static str, String>,
}

/// Read `path` (CSV or JSONL by extension) and write one run directory per model into `out`.
/// `map` renames fields (`field -> column`).
///
/// Memory does not grow with the table: rows are read one at a time and appended to their
/// model's records in a staging directory beside the runs (`out/.ipw-import-<pid>`); then each
/// model's records are read back, one model at a time, to check for repeated queries and to
/// summarise. Only when every model is done do the run directories move into place, so a bad
/// row anywhere leaves nothing behind.
pub fn import(
    path: &Path,
    out: &Path,
    map: &BTreeMap<String, String>,
) -> Result<Imported, ImportError> {
    import_as(path, out, map, Stored::Jsonl)
}

/// [`import`], storing each run's records as `stored` says.
pub fn import_as(
    path: &Path,
    out: &Path,
    map: &BTreeMap<String, String>,
    stored: Stored,
) -> Result<Imported, ImportError> {
    for field in map.keys() {
        if !FIELDS.contains(&field.as_str()) {
            return Err(ImportError::Columns {
                path: path.into(),
                message: format!(
                    "--map {field}=...: no field `{field}`; the fields are {}",
                    FIELDS.join(", ")
                ),
            });
        }
    }
    let column = |field: &str| map.get(field).cloned().unwrap_or_else(|| field.to_string());
    staged(out, |staging| {
        import_via(path, out, staging, &column, stored, None)
    })
}

/// A wide table (one row per prompt, columns per model: [`wide`]) imported as the long table
/// one row per (query, model) would be.
pub fn import_wide(
    path: &Path,
    out: &Path,
    mapping: &WideMapping,
    stored: Stored,
) -> Result<Imported, ImportError> {
    mapping.check(path)?;
    let column = |field: &str| {
        mapping
            .shared
            .get(field)
            .cloned()
            .unwrap_or_else(|| field.to_string())
    };
    staged(out, |staging| {
        import_via(path, out, staging, &column, stored, Some(mapping))
    })
}

/// Run an import through a staging directory in `out`, removed after.
fn staged(
    out: &Path,
    import: impl FnOnce(&Path) -> Result<Imported, ImportError>,
) -> Result<Imported, ImportError> {
    std::fs::create_dir_all(out).map_err(|e| io(out, &e))?;
    let staging = out.join(format!(".ipw-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| io(&staging, &e))?;
    let result = import(&staging);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn io(p: &Path, e: &dyn std::fmt::Display) -> ImportError {
    ImportError::Io {
        path: p.to_path_buf(),
        message: e.to_string(),
    }
}

/// One model's (and accelerator's) run while its rows are streamed in.
struct Sink {
    model: String,
    accelerator: Option<String>,
    /// `model` or `model@accelerator`: the run directory's name.
    name: String,
    staged: PathBuf,
    lock: crate::records::RunLock,
    writer: Writer,
    /// Records written.
    rows: usize,
}

/// Where a model's records go as its rows stream in.
enum Writer {
    /// `records.jsonl`.
    Jsonl(crate::records::RecordsWriter),
    /// `records.parquet`, a row group at a time.
    Parquet(Box<ParquetWriter>),
}

/// A run's `records.parquet` being written: the file starts with the first row group, whose
/// records fix the channel columns.
struct ParquetWriter {
    path: PathBuf,
    columns: crate::records::parquet::RunColumns,
    file: Option<(
        crate::records::parquet::ParquetFile,
        arrow_schema::SchemaRef,
        std::collections::BTreeSet<String>,
    )>,
    pending: Vec<Record>,
}

impl ParquetWriter {
    /// Take a record read from `line` of the table.
    fn push(&mut self, table: &Path, line: usize, r: Record) -> Result<(), ImportError> {
        if let Some((_, _, channels)) = &self.file {
            let new = r
                .energy
                .iter()
                .flat_map(|e| e.channels.keys())
                .find(|c| !channels.contains(*c));
            if let Some(c) = new {
                return Err(ImportError::Row {
                    path: table.into(),
                    line,
                    message: format!(
                        "energy (channel `{c}`) for model `{}`, whose first {} rows had none: \
                         with --parquet a run's columns are fixed by its first rows; import \
                         without --parquet, or put a row with energy first",
                        r.model,
                        crate::records::parquet::BATCH_ROWS
                    ),
                });
            }
        }
        self.pending.push(r);
        if self.pending.len() >= crate::records::parquet::BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        use crate::records::parquet::{channels_of, records_batch, records_schema, ParquetFile};
        let at = |e: String| io(&self.path, &e);
        if self.file.is_none() {
            let channels = channels_of(&self.pending);
            let schema = records_schema(&channels).map_err(at)?;
            let file = ParquetFile::create(&self.path, schema.clone()).map_err(at)?;
            self.file = Some((file, schema, channels));
        }
        let (file, schema, channels) = self.file.as_mut().expect("just created");
        if !self.pending.is_empty() {
            let batch = records_batch(schema, &self.pending, &self.columns, channels)
                .map_err(|e| io(&self.path, &e))?;
            file.write(&batch).map_err(|e| io(&self.path, &e))?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Write what is pending and put the file in place.
    fn finish(mut self) -> Result<(), ImportError> {
        self.flush()?;
        let (file, _, _) = self.file.take().expect("flushed");
        file.finish().map_err(|e| io(&self.path, &e))
    }
}

fn import_via(
    path: &Path,
    out: &Path,
    staging: &Path,
    column: &dyn Fn(&str) -> String,
    stored: Stored,
    wide: Option<&WideMapping>,
) -> Result<Imported, ImportError> {
    let file = std::fs::File::open(path).map_err(|e| io(path, &e))?;
    let mut reader = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        sha: Sha256::new(),
    };
    let jsonl = path
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let mut sinks: BTreeMap<(String, Option<String>), Sink> = BTreeMap::new();
    let mut clock: BTreeMap<(String, Option<String>), f64> = BTreeMap::new();
    let mut add = |row: RawRow| -> Result<(), ImportError> {
        let accelerator = row
            .fields
            .get("accelerator")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let r = record(path, &row, &stem, &accelerator, &mut clock)?;
        let key = (r.model.clone(), accelerator);
        if !sinks.contains_key(&key) {
            let sink = open_sink(path, out, staging, &key.0, key.1.clone(), stored)?;
            sinks.insert(key.clone(), sink);
        }
        let sink = sinks.get_mut(&key).expect("just opened");
        sink.rows += 1;
        match &mut sink.writer {
            Writer::Jsonl(w) => w.append(&r).map_err(|e| io(&sink.staged, &e)),
            Writer::Parquet(w) => w.push(path, row.line, r),
        }
    };
    if let Some(mapping) = wide {
        if jsonl {
            return Err(ImportError::Columns {
                path: path.into(),
                message: "a wide table is read from CSV".into(),
            });
        }
        wide::read_wide_csv(path, &mut reader, mapping, &mut add)?;
    } else if jsonl {
        read_jsonl(path, &mut reader, column, &mut add)?;
    } else {
        read_csv(path, &mut reader, column, &mut add)?;
    }
    let sha = crate::dataset::hex(&reader.sha.finalize());
    let mut done = Vec::new();
    for (_, sink) in sinks {
        done.push(finish_sink(path, &sha, sink, column)?);
    }
    // Every model is whole: move the runs into place.
    let mut runs = Vec::new();
    for (name, staged, n) in done {
        let dir = out.join(sanitize(&name));
        if RunDir::new(&dir).exists() {
            return Err(ImportError::Exists { path: dir });
        }
        std::fs::rename(&staged, &dir).map_err(|e| io(&dir, &e))?;
        runs.push((name, dir, n));
    }
    Ok(Imported { runs })
}

/// A staged run for a model's first row; refused at once when its run directory exists.
fn open_sink(
    table: &Path,
    out: &Path,
    staging: &Path,
    model: &str,
    accelerator: Option<String>,
    stored: Stored,
) -> Result<Sink, ImportError> {
    let name = match &accelerator {
        Some(a) => format!("{model}@{a}"),
        None => model.to_string(),
    };
    let dir = out.join(sanitize(&name));
    if RunDir::new(&dir).exists() {
        return Err(ImportError::Exists { path: dir });
    }
    let staged = staging.join(sanitize(&name));
    std::fs::create_dir_all(&staged).map_err(|e| io(&staged, &e))?;
    let run = RunDir::new(&staged);
    let lock = run.lock().map_err(|e| io(&staged, &e))?;
    let writer = match stored {
        Stored::Jsonl => Writer::Jsonl(run.create_records(&lock).map_err(|e| io(&staged, &e))?),
        Stored::Parquet => {
            // The columns every row of the run shares, as an export of the run gives them:
            // its directory's name and its accelerator label.
            let bare = manifest(table, "", model, accelerator.as_deref(), &[])
                .map_err(|e| io(&staged, &e))?;
            let (_, label) =
                crate::joined::run_meta(&bare, &BTreeMap::new()).map_err(|e| io(&staged, &e))?;
            Writer::Parquet(Box::new(ParquetWriter {
                path: run.records_parquet_path(),
                columns: crate::records::parquet::RunColumns {
                    run: sanitize(&name),
                    accelerator: label,
                },
                file: None,
                pending: Vec::new(),
            }))
        }
    };
    Ok(Sink {
        model: model.to_string(),
        accelerator,
        name,
        staged,
        lock,
        writer,
        rows: 0,
    })
}

/// Read one model's records back: refuse a query given twice, write the manifest and summary.
/// Returns (run name, staged directory, records).
fn finish_sink(
    path: &Path,
    sha: &str,
    sink: Sink,
    column: &dyn Fn(&str) -> String,
) -> Result<(String, PathBuf, usize), ImportError> {
    let Sink {
        model,
        accelerator,
        name,
        staged,
        lock,
        writer,
        rows,
    } = sink;
    match writer {
        Writer::Jsonl(mut w) => w.sync().map_err(|e| io(&staged, &e))?,
        Writer::Parquet(w) => w.finish()?,
    }
    let run = RunDir::new(&staged);
    // Each record's channel map (a tree node of its own, about 2.5 KB of a record's 3.9) is
    // summed as the records stream past and dropped with the texts no summary reads: a
    // model's million records take 1.4 GB, not 3.9, and the summary is the same.
    let mut records = Vec::with_capacity(rows);
    let mut channels = crate::analysis::ChannelSums::default();
    run.for_each_record(crate::records::parquet::BATCH_ROWS, |batch| {
        for mut r in batch {
            channels.add(&r);
            crate::analysis::ChannelSums::lighten(&mut r);
            records.push(r);
        }
    })
    .map_err(|e| io(&staged, &e))?;
    let mut seen: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(records.len());
    for r in &records {
        if !seen.insert(r.query_id.as_str()) {
            return Err(ImportError::Row {
                path: path.into(),
                line: r.index,
                message: format!(
                    "column `{}`: `{}` appears twice for model `{}`{}",
                    column("query_id"),
                    r.query_id,
                    model,
                    accelerator
                        .as_ref()
                        .map(|a| format!(" on `{a}`"))
                        .unwrap_or_default()
                ),
            });
        }
    }
    let manifest = manifest(path, sha, &model, accelerator.as_deref(), &records)
        .map_err(|e| io(&staged, &e))?;
    run.write_manifest(&lock, &manifest)
        .map_err(|e| io(&staged, &e))?;
    let mut summary = crate::analysis::summarize(&model, "imported", records.len(), &records, 0);
    channels.into_summary(&mut summary);
    run.write_summary(&lock, &summary)
        .map_err(|e| io(&staged, &e))?;
    Ok((name, staged, records.len()))
}

/// A reader that hashes what passes through it: the table's sha256 without holding it.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        Ok(n)
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Hand each row of a CSV to `add`, in order.
fn read_csv(
    path: &Path,
    reader: impl std::io::Read,
    column: &dyn Fn(&str) -> String,
    add: &mut dyn FnMut(RawRow) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let header = reader.headers().map_err(|e| ImportError::Columns {
        path: path.into(),
        message: format!("no CSV header: {e}"),
    })?;
    let index: Vec<(&'static str, usize)> = FIELDS
        .iter()
        .filter_map(|&f| {
            let name = column(f);
            header.iter().position(|h| h.trim() == name).map(|i| (f, i))
        })
        .collect();
    require(
        path,
        &index,
        column,
        &header.iter().collect::<Vec<_>>().join(", "),
    )?;
    each_record(path, &mut reader, |rec, line, _| {
        let fields = index
            .iter()
            .filter_map(|&(f, i)| rec.get(i).map(|v| (f, v.to_string())))
            .collect();
        add(RawRow { line, fields })
    })
}

/// Each data record of a CSV, with its line in the file (1-based; the header is line 1) and
/// its number among the records (1-based), to `each`; a record the CSV reader cannot read is
/// an error naming its line.
fn each_record<R: std::io::Read>(
    path: &Path,
    reader: &mut csv::Reader<R>,
    mut each: impl FnMut(&csv::StringRecord, usize, usize) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut rec = csv::StringRecord::new();
    let mut k = 0;
    loop {
        let more = reader.read_record(&mut rec).map_err(|e| ImportError::Row {
            path: path.into(),
            line: e.position().map(|p| p.line() as usize).unwrap_or(k + 2),
            message: e.to_string(),
        })?;
        if !more {
            return Ok(());
        }
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(k + 2);
        k += 1;
        each(&rec, line, k)?;
    }
}

/// Hand each object of a JSONL file to `add`, in order.
fn read_jsonl(
    path: &Path,
    reader: impl std::io::Read,
    column: &dyn Fn(&str) -> String,
    add: &mut dyn FnMut(RawRow) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    use std::io::BufRead;
    let mut first = true;
    for (k, l) in std::io::BufReader::new(reader).lines().enumerate() {
        let l = l.map_err(|e| ImportError::Io {
            path: path.into(),
            message: format!("line {}: {e}", k + 1),
        })?;
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&l).map_err(|e| ImportError::Row {
            path: path.into(),
            line: k + 1,
            message: format!("not JSON: {e}"),
        })?;
        let obj = v.as_object().ok_or_else(|| ImportError::Row {
            path: path.into(),
            line: k + 1,
            message: "not a JSON object".into(),
        })?;
        let fields: BTreeMap<&'static str, String> = FIELDS
            .iter()
            .filter_map(|&f| {
                let v = obj.get(&column(f))?;
                Some((
                    f,
                    match v {
                        serde_json::Value::Null => return None,
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                ))
            })
            .collect();
        if first {
            // The first object says which fields the table has.
            let index: Vec<(&'static str, usize)> = fields.keys().map(|&f| (f, 0)).collect();
            let present: Vec<String> = fields.keys().map(|f| column(f)).collect();
            require(path, &index, column, &present.join(", "))?;
            first = false;
        }
        add(RawRow {
            line: k + 1,
            fields,
        })?;
    }
    Ok(())
}

fn require(
    path: &Path,
    index: &[(&'static str, usize)],
    column: &dyn Fn(&str) -> String,
    found: &str,
) -> Result<(), ImportError> {
    for needed in ["query_id", "model"] {
        if !index.iter().any(|(f, _)| *f == needed) {
            return Err(ImportError::Columns {
                path: path.into(),
                message: format!(
                    "no column `{}` (field {needed}; rename with --map {needed}=COLUMN); the columns are: {found}",
                    column(needed)
                ),
            });
        }
    }
    Ok(())
}

fn record(
    path: &Path,
    row: &RawRow,
    stem: &str,
    accelerator: &Option<String>,
    clock: &mut BTreeMap<(String, Option<String>), f64>,
) -> Result<Record, ImportError> {
    let bad = |field: &str, message: String| ImportError::Row {
        path: path.into(),
        line: row.line,
        message: format!("column for `{field}`: {message}"),
    };
    let text = |f: &str| {
        row.fields
            .get(f)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    };
    let number = |f: &str| -> Result<Option<f64>, ImportError> {
        match text(f) {
            None => Ok(None),
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| bad(f, format!("`{s}` is not a number"))),
        }
    };
    let count = |f: &str| -> Result<Option<u64>, ImportError> {
        match number(f)? {
            Some(v) if v >= 0.0 && v.fract() == 0.0 => Ok(Some(v as u64)),
            Some(v) => Err(bad(f, format!("`{v}` is not a whole number >= 0"))),
            None => Ok(None),
        }
    };
    let query_id = text("query_id")
        .ok_or_else(|| bad("query_id", "empty".into()))?
        .to_string();
    let model = text("model")
        .ok_or_else(|| bad("model", "empty".into()))?
        .to_string();
    let score = number("score")?;
    if let Some(s) = score {
        if !(0.0..=1.0).contains(&s) {
            return Err(bad("score", format!("{s} is not in [0, 1]")));
        }
    }
    let latency = number("latency_s")?.unwrap_or(0.0);
    if latency < 0.0 {
        return Err(bad("latency_s", format!("{latency} is below 0")));
    }
    let gross = number("energy_j")?;
    let net = number("net_energy_j")?;
    let answers = match text("answer") {
        None => Vec::new(),
        Some(s) if s.starts_with('[') => serde_json::from_str::<Vec<String>>(s)
            .map_err(|e| bad("answer", format!("not a JSON list of strings: {e}")))?,
        Some(s) => vec![s.to_string()],
    };
    let prompt = text("prompt").unwrap_or("").to_string();
    let error = text("error").map(|m| QueryError {
        kind: "imported".into(),
        message: m.to_string(),
    });
    let key = (model.clone(), accelerator.clone());
    let start = *clock.get(&key).unwrap_or(&0.0);
    clock.insert(key, start + latency);
    let (input_tokens, output_tokens) = (count("input_tokens")?, count("output_tokens")?);
    let energy = (gross.is_some() || net.is_some()).then(|| {
        let channel = crate::records::ChannelEnergy {
            gross_j: gross,
            net_j: net,
            idle_w: None,
            gross_bound_j: None,
            net_bound_j: None,
            phases: None,
            flags: Vec::new(),
            domain: None,
        };
        QueryEnergy {
            gross_j: gross,
            net_j: net,
            gross_bound_j: None,
            net_bound_j: None,
            phases: None,
            mean_power_w: gross.filter(|_| latency > 0.0).map(|g| g / latency),
            j_per_output_token: output_tokens
                .filter(|&n| n > 0)
                .and_then(|n| net.or(gross).map(|e| e / n as f64)),
            estimated: false,
            flags: Vec::new(),
            channels: [("imported/table".to_string(), channel)].into(),
        }
    });
    Ok(Record {
        schema: RECORD_SCHEMA,
        query_id,
        index: row.line,
        session: 0,
        dataset: text("dataset").unwrap_or(stem).to_string(),
        subject: text("subject").map(str::to_string),
        category: None,
        prompt_hash: crate::dataset::hex(&Sha256::digest(prompt.as_bytes())),
        prompt,
        answers,
        choices: Vec::new(),
        model,
        backend: "imported".into(),
        response: if error.is_some() {
            None
        } else {
            text("response").map(str::to_string)
        },
        input_tokens,
        output_tokens,
        tokens_estimated: false,
        token_source: None,
        cached_prompt_tokens: None,
        cost_usd: number("cost_usd")?,
        ttft_s: None,
        latency_s: latency,
        decode_tps: None,
        finish_reason: None,
        attempts: 1,
        started_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        window: Window {
            start_s: start,
            end_s: start + latency,
        },
        grade: score.filter(|_| error.is_none()).map(|s| GradeRecord {
            grader: "imported".into(),
            wasm_sha256: String::new(),
            score: Some(s),
            parsed: true,
            extracted: None,
            explanation: Some("score given by the imported table".into()),
            error: None,
            params: None,
        }),
        error,
        grade_history: Vec::new(),
        domain: None,
        domain_history: Vec::new(),
        harness: None,
        energy,
    })
}

fn manifest(
    path: &Path,
    sha: &str,
    model: &str,
    accelerator: Option<&str>,
    records: &[Record],
) -> Result<Manifest, serde_json::Error> {
    let now = chrono::Utc::now();
    let mut datasets: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        *datasets.entry(r.dataset.as_str()).or_default() += 1;
    }
    // Built through JSON so fields with defaults stay defaults. The host that produced the
    // table is unknown: nothing about this machine is written as if it had measured it.
    serde_json::from_value(serde_json::json!({
        "schema": crate::records::MANIFEST_SCHEMA,
        "ipw_version": env!("CARGO_PKG_VERSION"),
        "git_commit": env!("IPW_GIT_COMMIT"),
        "experiment_file": path.display().to_string(),
        "experiment_sha256": sha,
        "experiment": {"imported_from": path.display().to_string()},
        "model": match accelerator {
            Some(a) => serde_json::json!({"name": model, "backend": "imported", "meta": {"accelerator": a}}),
            None => serde_json::json!({"name": model, "backend": "imported"}),
        },
        "model_file": null,
        "backend": {"kind": "imported", "table": path.display().to_string()},
        "datasets": datasets.iter().map(|(name, n)| serde_json::json!({
            "name": name, "source": path.display().to_string(), "sha256": sha,
            "rows": n, "selected": n
        })).collect::<Vec<_>>(),
        "planned": records.len(),
        "plan_sha256": "",
        "host": {"hostname": null, "cpu_model": null, "logical_cores": 0,
                 "physical_cores": null, "memory_bytes": null, "os": "unknown (imported)",
                 "kernel": null, "arch": "unknown"},
        "started_at": now,
        "ended_at": now,
        "status": "completed",
        "sessions": [{"started_at": now, "ended_at": now, "recorded": records.len(),
                      "resumed_from": 0, "model_load_s": null,
                      "startup_to_first_request_s": null, "cpu_s": null,
                      "cpu_per_query_ms": null, "peak_rss_bytes": null}],
    }))
}
