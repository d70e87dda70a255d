//! The table built one run at a time: each run streams past once and leaves, per query, only
//! its cell (what the outcome needs before the model's metadata and the table's energy basis
//! are applied) and, from the first run, the query's texts. Memory is the table, not the runs'
//! records: `ipw route` and `ipw report` read 20 runs of a million records each this way.
//!
//! It gives exactly the table [`super::build_with`] builds with every record held (a test in
//! `study/reference.rs` compares the two).

use super::{
    aggregates, column_names, open, run_error, Cell, Column, EnergySource, Opened, Outcome, Row,
    Table, TableError,
};
use crate::config::ModelMeta;
use crate::records::{Detail, Record};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Records handed over at a time while a run streams past.
const BATCH: usize = 8192;

/// One run, read: its cells by query number (the table's numbering of query ids).
struct RunCells {
    name: String,
    meta: ModelMeta,
    accelerator: String,
    run: PathBuf,
    /// Each query's last record as a cell, and its domain label; `None` where the run has no
    /// record of the query.
    cells: Vec<Option<(Cell, Option<String>)>>,
}

impl RunCells {
    fn cell(&self, q: usize) -> Option<&(Cell, Option<String>)> {
        self.cells.get(q).and_then(Option::as_ref)
    }
}

/// What a row takes from the first run: the query as it was asked.
struct Texts {
    dataset: String,
    subject: Option<String>,
    category: Option<String>,
    prompt: String,
}

/// Query ids numbered in the order they are first seen (the first run's order, then ids only
/// later runs have).
#[derive(Default)]
struct Queries {
    ids: Vec<String>,
    number: HashMap<String, usize>,
}

impl Queries {
    fn number(&mut self, id: &str) -> usize {
        if let Some(&q) = self.number.get(id) {
            return q;
        }
        let q = self.ids.len();
        self.ids.push(id.to_string());
        self.number.insert(id.to_string(), q);
        q
    }
}

/// See [`super::build`].
pub(super) fn build(
    runs: &[PathBuf],
    overrides: &BTreeMap<String, ModelMeta>,
) -> Result<Table, TableError> {
    if runs.is_empty() {
        return Err(TableError::NoRuns("the paths given".into()));
    }
    let mut queries = Queries::default();
    let mut texts: Vec<Option<Texts>> = Vec::new();
    let mut read = Vec::with_capacity(runs.len());
    for (k, run) in runs.iter().enumerate() {
        // Only the first run's texts reach the table: the others are read without them.
        let first = k == 0;
        read.push(read_run(
            run,
            overrides,
            &mut queries,
            first.then_some(&mut texts),
        )?);
    }
    let Queries { mut ids, .. } = queries; // the numbering is done with
    let heads: Vec<(&str, &str, &Path)> = read
        .iter()
        .map(|r| (r.name.as_str(), r.accelerator.as_str(), r.run.as_path()))
        .collect();
    let names = column_names(&heads)?;
    let net = read
        .iter()
        .flat_map(|r| r.cells.iter().flatten())
        .all(|(c, _)| !c.gross_without_net());
    let energy_basis = if net { "net" } else { "gross" };
    // The rows: queries every run has; the others are named with the runs that lack them.
    let mut in_rows = Vec::new();
    let mut incomplete = Vec::new();
    for (q, id) in ids.iter().enumerate() {
        let missing: Vec<String> = read
            .iter()
            .zip(&names)
            .filter(|(r, _)| r.cell(q).is_none())
            .map(|(_, n)| n.clone())
            .collect();
        if missing.is_empty() {
            in_rows.push(q);
        } else {
            incomplete.push((id.clone(), missing));
        }
    }
    // Run by run, each run's cells become its outcomes and are dropped, so the cells and the
    // outcomes are not both held whole. A row's domain and prompt tokens are the first run's
    // (in the order given) that has them.
    let mut outcomes: Vec<Vec<Outcome>> = in_rows
        .iter()
        .map(|_| Vec::with_capacity(read.len()))
        .collect();
    let mut domain: Vec<Option<String>> = vec![None; in_rows.len()];
    let mut prompt_tokens: Vec<Option<u64>> = vec![None; in_rows.len()];
    let mut measured = vec![false; read.len()];
    for (i, r) in read.iter_mut().enumerate() {
        let cells = std::mem::take(&mut r.cells);
        for (k, &q) in in_rows.iter().enumerate() {
            let (cell, label) = cells[q].as_ref().expect("a row's query is in every run");
            measured[i] |= cell.gross_j.is_some();
            outcomes[k].push(cell.outcome(&r.meta, net));
            if domain[k].is_none() {
                domain[k].clone_from(label);
            }
            if prompt_tokens[k].is_none() {
                prompt_tokens[k] = cell.input_tokens;
            }
        }
    }
    let rows: Vec<Row> = in_rows
        .into_iter()
        .zip(outcomes)
        .zip(domain.into_iter().zip(prompt_tokens))
        .map(|((q, outcomes), (domain, prompt_tokens))| {
            let t = texts[q]
                .take()
                .expect("a row's query is in the first run, whose texts are kept");
            Row {
                query_id: std::mem::take(&mut ids[q]),
                dataset: t.dataset,
                subject: t.subject,
                category: t.category,
                domain,
                prompt: t.prompt,
                prompt_tokens,
                outcomes,
            }
        })
        .collect();
    let columns = read
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(i, (r, name))| Column {
            aggregates: aggregates(&rows, i),
            name,
            energy: EnergySource::of(measured[i], &r.meta),
            meta: r.meta,
            accelerator: r.accelerator,
            run: r.run,
        })
        .collect();
    Ok(Table {
        columns,
        rows,
        incomplete,
        energy_basis,
    })
}

/// Stream one run past, keeping each query's last record as a cell (and, when `texts` is
/// given, its texts).
fn read_run(
    run: &Path,
    overrides: &BTreeMap<String, ModelMeta>,
    queries: &mut Queries,
    mut texts: Option<&mut Vec<Option<Texts>>>,
) -> Result<RunCells, TableError> {
    let Opened {
        dir,
        manifest,
        meta,
        accelerator,
    } = open(run, overrides)?;
    let err = run_error(run);
    let detail = if texts.is_some() {
        Detail::Full
    } else {
        Detail::Figures
    };
    let mut cells: Vec<Option<(Cell, Option<String>)>> = Vec::new();
    dir.for_each_record_with(BATCH, detail, |batch| {
        for r in batch {
            let q = queries.number(&r.query_id);
            if cells.len() <= q {
                cells.resize_with(q + 1, || None);
            }
            // The last record of a query wins (a retried failure is appended after it).
            let label = r.domain.as_ref().and_then(|d| d.label.clone());
            cells[q] = Some((Cell::of(&r), label));
            if let Some(texts) = texts.as_deref_mut() {
                if texts.len() <= q {
                    texts.resize_with(q + 1, || None);
                }
                texts[q] = Some(texts_of(r));
            }
        }
    })
    .map_err(|e| err(e.to_string()))?;
    Ok(RunCells {
        name: manifest.model.name.clone(),
        meta,
        accelerator,
        run: run.to_path_buf(),
        cells,
    })
}

fn texts_of(r: Record) -> Texts {
    Texts {
        dataset: r.dataset,
        subject: r.subject,
        category: r.category,
        prompt: r.prompt,
    }
}
