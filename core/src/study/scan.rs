//! The runs of a study read one at a time, in memory that does not grow with the records.
//!
//! `ipw compare` and `ipw coverage` need two things from the runs: figures of each run over all
//! its records (accuracy, APJ, APW with their intervals, J/query, p50 latency), and the runs
//! joined on query id (paired differences, coverage). The first is gathered while a run
//! streams past and finished before the next run's records are held; the second needs, per run
//! and query, only what the last record of that query says (score, energy, how it was graded).
//! Those cells are written to an anonymous temporary file per run as the run is read (a few
//! dozen bytes a query: the spill a join on query id needs) and read back a column at a time.
//! What stays in memory throughout is one entry per query id (its dataset, subject, category,
//! domain and how many runs have it), so 20 runs of a million queries hold a million entries,
//! not twenty million records.
//!
//! The table this gives is the one [`crate::joined::build`] gives (the same rows, in the same
//! order, the same groups and energy basis), so every figure on it is the same.

use super::part::PartHeader;
use super::{group_key, GroupBy, Groupable};
use crate::config::ModelMeta;
use crate::joined::{self, TableError};
use crate::records::{Detail, Record, RunDir, PAIRWISE_GRADER};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

/// Records handed over at a time while a run is read.
const BATCH: usize = 8192;

/// No run, no string.
const NONE: u32 = u32::MAX;

/// One run: a column of the study.
pub(crate) struct Column {
    /// The model, `@accelerator` when one model ran on several.
    pub name: String,
    /// The model's metadata (the run's, overridden by `--meta`).
    pub meta: ModelMeta,
    /// The accelerator label.
    pub accelerator: String,
    /// The run directory.
    pub run: PathBuf,
    /// The model's name in the run's manifest.
    pub model: String,
    /// Where its data comes from.
    pub source: Source,
}

/// Where a column's data comes from.
pub(crate) enum Source {
    /// A run directory: its records are read.
    Run,
    /// A part made from a run (see [`super::part`]): one row per query id is read.
    Part(Box<PartHeader>),
}

/// A path given to a study command: a run directory or a part file.
pub(crate) enum Input {
    /// A run directory.
    Run(PathBuf),
    /// A part file and its header.
    Part(PathBuf, Box<PartHeader>),
}

/// What a run's last record of a query says, as far as the joined figures need it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Cell {
    /// Grade score; 0 for a failed or unscored query.
    pub score: f64,
    /// Net joules.
    pub net: Option<f64>,
    /// Gross joules.
    pub gross: Option<f64>,
    /// Joules by the model's declared energy model.
    pub declared: Option<f64>,
    /// The query failed (no response).
    pub failed: bool,
    /// The grader gave no score.
    pub unscored: bool,
    /// Graded by `pairwise`, against the reference's response.
    pub pairwise: bool,
}

impl Cell {
    /// The cell of a run's last record, as its model's metadata declares energy.
    fn of(raw: &RawCell, meta: &ModelMeta) -> Self {
        Cell {
            score: raw.score,
            net: raw.net,
            gross: raw.gross,
            declared: joined::declared_tokens_j(meta, raw.input_tokens, raw.output_tokens),
            failed: raw.failed,
            unscored: raw.unscored,
            pairwise: raw.pairwise,
        }
    }

    /// Joules on the table's basis (net or gross), the declared figure where none was measured.
    pub fn energy_j(&self, net: bool) -> Option<f64> {
        if net { self.net } else { self.gross }.or(self.declared)
    }
}

/// What a run's last record of a query says, before its model's metadata is applied (the
/// token counts stand where declared joules will): what a spill file and a part hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RawCell {
    /// Grade score; 0 for a failed or unscored query.
    pub score: f64,
    /// Net joules.
    pub net: Option<f64>,
    /// Gross joules.
    pub gross: Option<f64>,
    /// Prompt tokens.
    pub input_tokens: Option<u64>,
    /// Generated tokens.
    pub output_tokens: Option<u64>,
    /// The query failed (no response).
    pub failed: bool,
    /// The grader gave no score.
    pub unscored: bool,
    /// Graded by `pairwise`, against the reference's response.
    pub pairwise: bool,
}

/// Bytes a cell takes in a spill file: flags, then three little-endian f64s and two u64s.
const CELL_BYTES: usize = 41;

impl RawCell {
    fn of(r: &Record) -> Self {
        let score = r.grade.as_ref().and_then(|g| g.score);
        RawCell {
            score: score.unwrap_or(0.0),
            net: r.energy.as_ref().and_then(|e| e.net_j),
            gross: r.energy.as_ref().and_then(|e| e.gross_j),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            failed: r.error.is_some(),
            unscored: r.error.is_none() && score.is_none(),
            pairwise: r
                .grade
                .as_ref()
                .is_some_and(|g| g.grader == PAIRWISE_GRADER),
        }
    }

    fn encode(cell: Option<&RawCell>) -> [u8; CELL_BYTES] {
        let mut out = [0u8; CELL_BYTES];
        let Some(c) = cell else { return out };
        let bits = [
            true,
            c.net.is_some(),
            c.gross.is_some(),
            c.input_tokens.is_some(),
            c.output_tokens.is_some(),
            c.failed,
            c.unscored,
            c.pairwise,
        ];
        out[0] = bits
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i));
        let words = [
            c.score.to_bits(),
            c.net.unwrap_or(0.0).to_bits(),
            c.gross.unwrap_or(0.0).to_bits(),
            c.input_tokens.unwrap_or(0),
            c.output_tokens.unwrap_or(0),
        ];
        for (i, w) in words.iter().enumerate() {
            out[1 + 8 * i..9 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn decode(b: &[u8; CELL_BYTES]) -> Option<RawCell> {
        let bit = |i: u8| b[0] & (1 << i) != 0;
        if !bit(0) {
            return None;
        }
        let w = |i: usize| u64::from_le_bytes(b[1 + 8 * i..9 + 8 * i].try_into().expect("8 bytes"));
        let f = |i: usize| f64::from_bits(w(i));
        Some(RawCell {
            score: f(0),
            net: bit(1).then(|| f(1)),
            gross: bit(2).then(|| f(2)),
            input_tokens: bit(3).then(|| w(3)),
            output_tokens: bit(4).then(|| w(4)),
            failed: bit(5),
            unscored: bit(6),
            pairwise: bit(7),
        })
    }
}

/// What is known of a query id: where its fields come from (the first run, in the order
/// given, that has it; the first with a domain label for the domain) and how many runs have it.
struct Query {
    dataset: u32,
    subject: u32,
    category: u32,
    domain: u32,
    /// The run its dataset, subject and category come from.
    owner: u32,
    /// The run its domain comes from.
    domain_run: u32,
    /// Runs that have it.
    runs: u32,
}

/// Strings stored once (datasets, subjects, categories, domains repeat across queries).
#[derive(Default)]
struct Interner {
    index: HashMap<Box<str>, u32>,
    list: Vec<Box<str>>,
}

impl Interner {
    fn id(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return NONE };
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    fn get(&self, i: u32) -> Option<&str> {
        (i != NONE).then(|| &*self.list[i as usize])
    }
}

/// A query's fields, for grouping.
pub(crate) struct Fields<'a> {
    /// The dataset label.
    pub dataset: &'a str,
    /// The subject, if any.
    pub subject: Option<&'a str>,
    /// The category, if any.
    pub category: Option<&'a str>,
    /// The domain label, if any.
    pub domain: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn of(r: &'a Record) -> Self {
        Fields {
            dataset: &r.dataset,
            subject: r.subject.as_deref(),
            category: r.category.as_deref(),
            domain: r.domain.as_ref().and_then(|d| d.label.as_deref()),
        }
    }
}

impl Groupable for Fields<'_> {
    fn dataset(&self) -> &str {
        self.dataset
    }
    fn subject(&self) -> Option<&str> {
        self.subject
    }
    fn category(&self) -> Option<&str> {
        self.category
    }
    fn domain(&self) -> Option<&str> {
        self.domain
    }
}

/// The runs of a study, read one after the other (see the module docs).
pub(crate) struct Scan {
    /// The runs, in the order given.
    pub columns: Vec<Column>,
    ids: HashMap<Box<str>, u32>,
    queries: Vec<Query>,
    strings: Interner,
    /// Per run read so far: its cells, one per query id known when it was read.
    spills: Vec<std::fs::File>,
    /// Every run read so far has net energy wherever it has gross.
    all_net: bool,
    /// Per run: the models its pairwise grades were judged against, in first-seen order.
    pub against: Vec<Vec<String>>,
}

fn run_err(run: &std::path::Path, e: impl ToString) -> TableError {
    TableError::Run {
        path: run.to_path_buf(),
        message: e.to_string(),
    }
}

/// One run being read: what [`Scan`] learns of each query id from it.
struct Reading<'a> {
    run: u32,
    ids: &'a mut HashMap<Box<str>, u32>,
    queries: &'a mut Vec<Query>,
    strings: &'a mut Interner,
    /// Per query id known so far: the run's last record of it, if it has one.
    cells: Vec<Option<RawCell>>,
}

impl Reading<'_> {
    /// A record of query `id` (or a part's row for it), in the run's order.
    fn note(&mut self, id: &str, f: &Fields, cell: RawCell) {
        let q = match self.ids.get(id) {
            Some(&q) => q,
            None => {
                let q = self.queries.len() as u32;
                self.ids.insert(id.into(), q);
                self.queries.push(Query {
                    dataset: NONE,
                    subject: NONE,
                    category: NONE,
                    domain: NONE,
                    owner: NONE,
                    domain_run: NONE,
                    runs: 0,
                });
                q
            }
        } as usize;
        if self.cells.len() <= q {
            self.cells.resize(q + 1, None);
        }
        let (run, query) = (self.run, &mut self.queries[q]);
        if self.cells[q].is_none() {
            query.runs += 1;
        }
        // The last record of a query wins (a retried failure is appended after it).
        self.cells[q] = Some(cell);
        if query.owner == NONE || query.owner == run {
            query.owner = run;
            query.dataset = self.strings.id(Some(f.dataset));
            query.subject = self.strings.id(f.subject);
            query.category = self.strings.id(f.category);
        }
        if query.domain_run == NONE || query.domain_run == run {
            query.domain = self.strings.id(f.domain);
            query.domain_run = if f.domain.is_some() { run } else { NONE };
        }
    }
}

impl Scan {
    /// The runs' manifests (a part's copy of its run's) read and their columns named; no
    /// record read yet.
    pub fn open(
        inputs: Vec<Input>,
        overrides: &BTreeMap<String, ModelMeta>,
    ) -> Result<Self, TableError> {
        if inputs.is_empty() {
            return Err(TableError::NoRuns("the paths given".into()));
        }
        let mut heads = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (path, manifest, source) = match input {
                Input::Run(run) => {
                    let manifest = RunDir::new(&run)
                        .read_manifest()
                        .map_err(|e| run_err(&run, e))?;
                    (run, manifest, Source::Run)
                }
                Input::Part(path, header) => {
                    let manifest = serde_json::from_str(&header.manifest)
                        .map_err(|e| run_err(&path, format!("the run's manifest: {e}")))?;
                    (path, manifest, Source::Part(header))
                }
            };
            let (meta, accelerator) =
                joined::run_meta(&manifest, overrides).map_err(|e| run_err(&path, e))?;
            heads.push((manifest.model.name, meta, accelerator, path, source));
        }
        let names = joined::column_names(
            &heads
                .iter()
                .map(|(m, _, a, r, _)| (m.as_str(), a.as_str(), r.as_path()))
                .collect::<Vec<_>>(),
        )?;
        let columns = heads
            .into_iter()
            .zip(names)
            .map(|((model, meta, accelerator, run, source), name)| Column {
                name,
                meta,
                accelerator,
                run,
                model,
                source,
            })
            .collect();
        Ok(Scan {
            columns,
            ids: HashMap::new(),
            queries: Vec::new(),
            strings: Interner::default(),
            spills: Vec::new(),
            all_net: true,
            against: Vec::new(),
        })
    }

    /// The column of a model name.
    pub fn column(&self, name: &str) -> Result<usize, TableError> {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        joined::find_column(&names, name)
    }

    /// Read the next run (runs are read in order, each once), handing each of its records to
    /// `each` in file order (retried queries included), and keep its last record per query.
    /// A part has no records to hand over: its rows per query are read instead.
    pub fn read_next(&mut self, mut each: impl FnMut(&Record)) -> Result<(), TableError> {
        let k = self.spills.len();
        let Scan {
            columns,
            ids,
            queries,
            strings,
            ..
        } = self;
        let col = &columns[k];
        let mut reading = Reading {
            run: k as u32,
            ids,
            queries,
            strings,
            cells: Vec::new(),
        };
        let against = match &col.source {
            Source::Run => {
                let mut against: Vec<String> = Vec::new();
                let rejected =
                    RunDir::new(&col.run).for_each_record_with(BATCH, Detail::Figures, |batch| {
                        for r in &batch {
                            reading.note(&r.query_id, &Fields::of(r), RawCell::of(r));
                            if let Some(model) = r
                                .grade
                                .as_ref()
                                .filter(|g| g.grader == PAIRWISE_GRADER)
                                .and_then(|g| g.params.as_ref()?.get("against_model")?.as_str())
                            {
                                if !against.iter().any(|m| m == model) {
                                    against.push(model.to_string());
                                }
                            }
                            each(r);
                        }
                    });
                rejected.map_err(|e| run_err(&col.run, e))?;
                against
            }
            Source::Part(header) => {
                super::part::for_each_row(&col.run, |id, f, cell| reading.note(id, f, cell))
                    .map_err(|e| run_err(&col.run, e))?;
                header.against.clone()
            }
        };
        let cells = reading.cells;
        self.all_net &= cells
            .iter()
            .flatten()
            .all(|c| c.gross.is_none() || c.net.is_some());
        let spill = tempfile::tempfile().map_err(|e| run_err(&col.run, e))?;
        let mut w = BufWriter::new(spill);
        for c in &cells {
            w.write_all(&RawCell::encode(c.as_ref()))
                .map_err(|e| run_err(&col.run, e))?;
        }
        let spill = w.into_inner().map_err(|e| run_err(&col.run, e))?;
        self.spills.push(spill);
        self.against.push(against);
        Ok(())
    }

    /// Runs not read yet.
    pub fn unread(&self) -> usize {
        self.columns.len() - self.spills.len()
    }

    /// The runs joined, once every run is read: the queries every run has, in the table's
    /// order (the first run's, then ids only later runs have), and their groups.
    pub fn join(&self, by: GroupBy) -> Joined {
        debug_assert_eq!(self.unread(), 0, "join after every run is read");
        let n = self.columns.len() as u32;
        let complete: Vec<bool> = self.queries.iter().map(|q| q.runs == n).collect();
        let rows: Vec<u32> = (0..self.queries.len() as u32)
            .filter(|&q| complete[q as usize])
            .collect();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut datasets = Vec::with_capacity(rows.len());
        for (i, &q) in rows.iter().enumerate() {
            let f = self.fields(q);
            datasets.push(self.queries[q as usize].dataset);
            groups.entry("all".into()).or_default().push(i);
            if let Some(k) = group_key(by, &f) {
                groups.entry(k).or_default().push(i);
            }
        }
        Joined {
            incomplete: self.queries.len() - rows.len(),
            rows,
            complete,
            net: self.all_net,
            groups,
            datasets,
        }
    }

    fn fields(&self, q: u32) -> Fields<'_> {
        let q = &self.queries[q as usize];
        Fields {
            dataset: self.strings.get(q.dataset).unwrap_or_default(),
            subject: self.strings.get(q.subject),
            category: self.strings.get(q.category),
            domain: self.strings.get(q.domain),
        }
    }

    /// A dataset's name by the id [`Joined::datasets`] holds.
    pub fn dataset(&self, id: u32) -> &str {
        self.strings.get(id).unwrap_or_default()
    }

    /// Run `k`'s last records, one per query id known when it was read (`None`: it has none
    /// of that id), in the order of the ids, read back from its spill.
    fn each_spilled(
        &self,
        k: usize,
        mut each: impl FnMut(usize, Option<RawCell>) -> Result<(), TableError>,
    ) -> Result<(), TableError> {
        let run = &self.columns[k].run;
        let mut file = &self.spills[k];
        file.rewind().map_err(|e| run_err(run, e))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut buf = [0u8; CELL_BYTES];
        for q in 0..self.queries.len() {
            match r.read_exact(&mut buf) {
                Ok(()) => {}
                // Ids first seen after this run was read: it has none of them.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(run_err(run, e)),
            }
            each(q, RawCell::decode(&buf))?;
        }
        Ok(())
    }

    /// Run `k`'s cells on the joined rows, read back from its spill.
    pub fn cells(&self, k: usize, joined: &Joined) -> Result<Vec<Cell>, TableError> {
        let meta = &self.columns[k].meta;
        let mut out = Vec::with_capacity(joined.rows.len());
        self.each_spilled(k, |q, raw| {
            if joined.complete[q] {
                let raw = raw.expect("a joined row is in every run");
                out.push(Cell::of(&raw, meta));
            }
            Ok(())
        })?;
        debug_assert_eq!(out.len(), joined.rows.len());
        Ok(out)
    }

    /// Run `k`'s query ids in the order it first met them, each with its fields and last
    /// record (what a part keeps of a run; the scan must hold this run only).
    pub fn each_query(
        &self,
        k: usize,
        mut each: impl FnMut(&str, &Fields, &RawCell) -> Result<(), TableError>,
    ) -> Result<(), TableError> {
        debug_assert_eq!(self.columns.len(), 1, "a part is made from one run");
        let mut names: Vec<&str> = vec![""; self.queries.len()];
        for (id, &q) in &self.ids {
            names[q as usize] = id;
        }
        self.each_spilled(k, |q, raw| match raw {
            Some(raw) => each(names[q], &self.fields(q as u32), &raw),
            None => Ok(()),
        })
    }
}

/// The runs joined on query id (what [`crate::joined::Table`]'s rows are, without the cells).
pub(crate) struct Joined {
    /// The global index of each row's query id, in the table's order.
    pub rows: Vec<u32>,
    /// Per query id: whether every run has it.
    complete: Vec<bool>,
    /// Query ids some runs lack.
    pub incomplete: usize,
    /// Energy is net (every run's last records have net wherever they have gross).
    pub net: bool,
    /// `all` and each group: positions in `rows`.
    pub groups: BTreeMap<String, Vec<usize>>,
    /// Each row's dataset (see [`Scan::dataset`]).
    pub datasets: Vec<u32>,
}

impl Joined {
    /// `net` or `gross`.
    pub fn energy_basis(&self) -> &'static str {
        if self.net {
            "net"
        } else {
            "gross"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_reads_back_as_written_and_an_absent_one_as_absent() {
        let c = RawCell {
            score: 0.25,
            net: Some(1.5),
            gross: None,
            input_tokens: Some(u64::MAX),
            output_tokens: None,
            failed: false,
            unscored: true,
            pairwise: true,
        };
        assert_eq!(RawCell::decode(&RawCell::encode(Some(&c))), Some(c));
        let failed = RawCell {
            gross: Some(-0.0),
            output_tokens: Some(7),
            failed: true,
            ..RawCell::default()
        };
        assert_eq!(
            RawCell::decode(&RawCell::encode(Some(&failed))),
            Some(failed)
        );
        assert_eq!(RawCell::decode(&RawCell::encode(None)), None);
        let plain = RawCell::default();
        assert_eq!(RawCell::decode(&RawCell::encode(Some(&plain))), Some(plain));
    }
}
