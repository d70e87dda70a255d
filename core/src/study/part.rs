//! The study beyond one machine: each run summarised where it lies into a *part* (one Parquet
//! file), and `ipw compare` and `ipw coverage` computed from the parts as from the runs.
//!
//! What a run gives the study splits in two. Its own figures (accuracy, APJ, APW with their
//! intervals, J/query, p50 latency, per group) need every record of that run and nothing of
//! the others: a part carries them finished, for every grouping. The join on query id needs,
//! per query, only what the run's last record of it says: a part carries one row per query id,
//! in the order the run first met them, with its dataset, subject, category, domain, score,
//! energy and token counts (declared energy is applied when the parts are combined, so `--meta`
//! means what it means on runs). Reading every record is the heavy part, and it runs once per
//! run, anywhere (a Slurm array task per run: `examples/slurm/ipw-partial.sbatch`); combining
//! reads one row per query and run. The figures are those the runs give, bit for bit: the
//! part keeps the run's manifest verbatim and its figures as computed, and the join is the
//! same code over the same values.
//!
//! Columns: `query_id`, `dataset` (Utf8), `subject`, `category`, `domain` (Utf8, nullable),
//! `score` (Float64), `net_j`, `gross_j` (Float64, nullable), `input_tokens`, `output_tokens`
//! (UInt64, nullable), `failed`, `unscored`, `pairwise` (Boolean). The key-value metadata
//! `ipw.study_part` holds the header (JSON): format, ipw version, seed, the run's path and
//! manifest, record count, the pairwise references and the figures per grouping.

use super::scan::{Fields, Input, RawCell, Scan};
use super::{CompareRow, GroupBy, RunFigures, StudyError};
use crate::joined::{self, TableError};
use crate::records::parquet::{BatchReader, ParquetFile, BATCH_ROWS};
use crate::records::RunDir;
use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parquet key-value metadata holding a part's header.
pub const PART_META: &str = "ipw.study_part";

/// The part format this ipw writes and reads.
const PART_FORMAT: u32 = 1;

/// A part's header: which run it summarises and that run's own figures.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct PartHeader {
    /// The part format.
    pub format: u32,
    /// The ipw that wrote it.
    pub ipw_version: String,
    /// The seed the figures' intervals were drawn with.
    pub seed: u64,
    /// The run directory, as given when the part was made.
    pub run: PathBuf,
    /// The run's `manifest.json`, verbatim.
    pub manifest: String,
    /// Records read (retries included).
    pub records: u64,
    /// Query ids (rows of the part).
    pub queries: u64,
    /// The models its pairwise grades were judged against, in first-seen order.
    pub against: Vec<String>,
    /// Per grouping (`dataset`, `subject`, `category`, `domain`): the run's compare rows, model
    /// and accelerator left empty (they are the column's, named when the parts are combined).
    pub rows: BTreeMap<String, Vec<CompareRow>>,
}

/// What [`write_part`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartSummary {
    /// The part file.
    pub path: PathBuf,
    /// The run it summarises.
    pub run: PathBuf,
    /// Records read.
    pub records: u64,
    /// Query ids kept.
    pub queries: u64,
}

fn schema(header: &str) -> SchemaRef {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    let fields = vec![
        f("query_id", DataType::Utf8, false),
        f("dataset", DataType::Utf8, false),
        f("subject", DataType::Utf8, true),
        f("category", DataType::Utf8, true),
        f("domain", DataType::Utf8, true),
        f("score", DataType::Float64, false),
        f("net_j", DataType::Float64, true),
        f("gross_j", DataType::Float64, true),
        f("input_tokens", DataType::UInt64, true),
        f("output_tokens", DataType::UInt64, true),
        f("failed", DataType::Boolean, false),
        f("unscored", DataType::Boolean, false),
        f("pairwise", DataType::Boolean, false),
    ];
    let meta = HashMap::from([(PART_META.to_string(), header.to_string())]);
    Arc::new(Schema::new(fields).with_metadata(meta))
}

/// Rows of a part being built, a batch at a time.
#[derive(Default)]
struct Rows {
    query_id: StringBuilder,
    dataset: StringBuilder,
    subject: StringBuilder,
    category: StringBuilder,
    domain: StringBuilder,
    score: Float64Builder,
    net_j: Float64Builder,
    gross_j: Float64Builder,
    input_tokens: UInt64Builder,
    output_tokens: UInt64Builder,
    failed: BooleanBuilder,
    unscored: BooleanBuilder,
    pairwise: BooleanBuilder,
    len: usize,
}

impl Rows {
    fn push(&mut self, id: &str, f: &Fields, c: &RawCell) {
        self.query_id.append_value(id);
        self.dataset.append_value(f.dataset);
        self.subject.append_option(f.subject);
        self.category.append_option(f.category);
        self.domain.append_option(f.domain);
        self.score.append_value(c.score);
        self.net_j.append_option(c.net);
        self.gross_j.append_option(c.gross);
        self.input_tokens.append_option(c.input_tokens);
        self.output_tokens.append_option(c.output_tokens);
        self.failed.append_value(c.failed);
        self.unscored.append_value(c.unscored);
        self.pairwise.append_value(c.pairwise);
        self.len += 1;
    }

    fn batch(&mut self, schema: &SchemaRef) -> Result<RecordBatch, String> {
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.query_id.finish()),
            Arc::new(self.dataset.finish()),
            Arc::new(self.subject.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.domain.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.net_j.finish()),
            Arc::new(self.gross_j.finish()),
            Arc::new(self.input_tokens.finish()),
            Arc::new(self.output_tokens.finish()),
            Arc::new(self.failed.finish()),
            Arc::new(self.unscored.finish()),
            Arc::new(self.pairwise.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}

fn run_err(path: &Path, message: impl ToString) -> StudyError {
    StudyError::Run {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Summarise the run at `run` into the part file `out` (written atomically), its figures'
/// intervals drawn with `seed` (the seed compare must be given to combine it).
pub fn write_part(run: &Path, out: &Path, seed: u64) -> Result<PartSummary, StudyError> {
    let manifest = std::fs::read_to_string(RunDir::new(run).manifest_path())
        .map_err(|e| run_err(run, format!("manifest.json: {e}")))?;
    let mut scan = Scan::open(vec![Input::Run(run.to_path_buf())], &BTreeMap::new())?;
    let mut figures = RunFigures::new(&GroupBy::ALL);
    let mut records = 0u64;
    scan.read_next(|r| {
        records += 1;
        figures.push(r);
    })?;
    let rows: BTreeMap<String, Vec<CompareRow>> = GroupBy::ALL
        .iter()
        .map(|by| by.name().to_string())
        .zip(figures.finish("", "", seed))
        .collect();
    // The header goes in the schema, written before the rows: count them first.
    let mut queries = 0u64;
    scan.each_query(0, |_, _, _| {
        queries += 1;
        Ok(())
    })?;
    let header = PartHeader {
        format: PART_FORMAT,
        ipw_version: env!("CARGO_PKG_VERSION").to_string(),
        seed,
        run: run.to_path_buf(),
        manifest,
        records,
        queries,
        against: scan.against[0].clone(),
        rows,
    };
    let text = serde_json::to_string(&header).expect("a header serialises");
    let schema = schema(&text);
    let mut file = ParquetFile::create(out, schema.clone()).map_err(|e| run_err(out, e))?;
    let mut table = Rows::default();
    let write_err = |e: String| TableError::Run {
        path: out.to_path_buf(),
        message: e,
    };
    scan.each_query(0, |id, f, c| {
        table.push(id, f, c);
        if table.len == BATCH_ROWS {
            let batch = table.batch(&schema).map_err(write_err)?;
            file.write(&batch).map_err(write_err)?;
        }
        Ok(())
    })?;
    if table.len > 0 {
        let batch = table.batch(&schema).map_err(|e| run_err(out, e))?;
        file.write(&batch).map_err(|e| run_err(out, e))?;
    }
    file.finish().map_err(|e| run_err(out, e))?;
    Ok(PartSummary {
        path: out.to_path_buf(),
        run: run.to_path_buf(),
        records,
        queries,
    })
}

/// A part's header, or why `path` is not a part this ipw reads.
pub(crate) fn read_header(path: &Path) -> Result<PartHeader, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a Parquet file: {e}"))?;
    let text = builder
        .schema()
        .metadata()
        .get(PART_META)
        .ok_or_else(|| format!("a Parquet file without `{PART_META}` metadata: not an ipw study part (make one with `ipw partial RUN`)"))?;
    let format = serde_json::from_str::<serde_json::Value>(text)
        .map_err(|e| format!("metadata `{PART_META}`: {e}"))?
        .get("format")
        .and_then(|v| v.as_u64());
    match format {
        Some(f) if f > PART_FORMAT as u64 => {
            return Err(format!(
                "part format {f} is newer than this ipw reads ({PART_FORMAT}); upgrade ipw"
            ))
        }
        Some(_) => {}
        None => return Err(format!("metadata `{PART_META}` has no format")),
    }
    serde_json::from_str(text).map_err(|e| format!("metadata `{PART_META}`: {e}"))
}

/// Every row of the part at `path`, in order: query id, fields, last record.
pub(crate) fn for_each_row(
    path: &Path,
    mut each: impl FnMut(&str, &Fields, RawCell),
) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| e.to_string())?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let b = BatchReader::new(&batch);
        let (ids, datasets) = (b.str_refs("query_id")?, b.str_refs("dataset")?);
        let (subjects, categories) = (b.str_refs("subject")?, b.str_refs("category")?);
        let domains = b.str_refs("domain")?;
        let (score, net, gross) = (b.f64s("score")?, b.f64s("net_j")?, b.f64s("gross_j")?);
        let (input, output) = (b.u64s("input_tokens")?, b.u64s("output_tokens")?);
        let (failed, unscored) = (b.bools("failed")?, b.bools("unscored")?);
        let pairwise = b.bools("pairwise")?;
        for i in 0..batch.num_rows() {
            let need = |v: Option<bool>, name: &str| {
                v.ok_or_else(|| format!("column `{name}` is null in row {}", row + i))
            };
            let id =
                ids[i].ok_or_else(|| format!("column `query_id` is null in row {}", row + i))?;
            let fields = Fields {
                dataset: datasets[i]
                    .ok_or_else(|| format!("column `dataset` is null in row {}", row + i))?,
                subject: subjects[i],
                category: categories[i],
                domain: domains[i],
            };
            let cell = RawCell {
                score: score[i]
                    .ok_or_else(|| format!("column `score` is null in row {}", row + i))?,
                net: net[i],
                gross: gross[i],
                input_tokens: input[i],
                output_tokens: output[i],
                failed: need(failed[i], "failed")?,
                unscored: need(unscored[i], "unscored")?,
                pairwise: need(pairwise[i], "pairwise")?,
            };
            each(id, &fields, cell);
        }
        row += batch.num_rows();
    }
    Ok(())
}

/// The inputs of a study command: each path a run directory, a folder of runs, a part file or
/// a folder of parts (`*.parquet` files carrying a part header, by name).
pub(crate) fn inputs(paths: &[PathBuf]) -> Result<Vec<Input>, TableError> {
    let part = |p: &Path| -> Result<Input, TableError> {
        let header = read_header(p).map_err(|message| TableError::Run {
            path: p.to_path_buf(),
            message,
        })?;
        Ok(Input::Part(p.to_path_buf(), Box::new(header)))
    };
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(part(p)?);
            continue;
        }
        match joined::find_runs(std::slice::from_ref(p)) {
            Ok(runs) => out.extend(runs.into_iter().map(Input::Run)),
            Err(TableError::NoRuns(_)) if p.is_dir() => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                    .map_err(|e| TableError::Run {
                        path: p.clone(),
                        message: e.to_string(),
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|f| f.is_file() && f.extension().is_some_and(|e| e == "parquet"))
                    .collect();
                if files.is_empty() {
                    return Err(TableError::NoRuns(p.display().to_string()));
                }
                files.sort();
                for f in files {
                    out.push(part(&f)?);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
