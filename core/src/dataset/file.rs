//! User datasets from JSONL, CSV or Parquet files (one, or the shards of a directory or glob),
//! mapped to [`Row`]s through `fields` and the recipe. Every error names the file and the line
//! (JSONL, CSV) or row (Parquet).

use super::mapping::{Mapped, Mapping};
use super::{hex, parquet_rows, shards, DatasetError, DatasetShard, Row};
use crate::config::{ChoicesRef, DatasetConfig, DatasetFormat, FieldRef};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Rows of a dataset (one file or its shards) and the hash of its bytes.
pub struct Loaded {
    /// Rows in shard order, then file order.
    pub rows: Vec<Row>,
    /// sha256 of the file; for several shards, over each shard's length (8 bytes,
    /// little-endian) and bytes, in shard order.
    pub sha256: String,
    /// Every shard with its own size and hash, when there is more than one file.
    pub shards: Vec<DatasetShard>,
    /// Rows the recipe left out (see `keep_all_rows`).
    pub skipped: usize,
}

/// Read a dataset file, directory of shards or glob according to its config.
pub fn load(path: &Path, cfg: &DatasetConfig) -> Result<Loaded, DatasetError> {
    let files = shards::resolve(path, cfg.format).map_err(|message| DatasetError::Setting {
        dataset: cfg.label(),
        message,
    })?;
    let mut sink = Sink {
        rows: Vec::new(),
        read: 0,
        skipped: 0,
    };
    let mut whole = Sha256::new();
    let mut infos = Vec::with_capacity(files.len());
    for file in &files {
        let format = shards::format_of(file, cfg.format);
        let (sha256, bytes) = match format {
            DatasetFormat::Parquet => {
                let hashed = hash_file(file, &mut whole)?;
                let mapping = Mapping::new(cfg, "Parquet")?;
                parquet_rows::for_each_row(file, &mapping.keys(), |row, obj| {
                    sink.push(&mapping, obj, |message| DatasetError::Record {
                        path: file.clone(),
                        row,
                        message,
                    })
                })?;
                hashed
            }
            DatasetFormat::Jsonl | DatasetFormat::Csv => {
                let bytes = std::fs::read(file).map_err(|source| DatasetError::Read {
                    path: file.clone(),
                    source,
                })?;
                whole.update((bytes.len() as u64).to_le_bytes());
                whole.update(&bytes);
                if format == DatasetFormat::Jsonl {
                    jsonl(file, &bytes, &Mapping::new(cfg, "JSONL")?, &mut sink)?;
                } else if let Some(recipe) = cfg.recipe {
                    // A recipe maps named fields of the hub's formats; CSV columns are not those.
                    return Err(DatasetError::Setting {
                        dataset: cfg.label(),
                        message: format!(
                            "recipe `{}` reads Parquet or JSONL, not CSV ({})",
                            recipe.as_str(),
                            file.display()
                        ),
                    });
                } else {
                    let first = sink.rows.len();
                    sink.rows.extend(csv_rows(file, &bytes, cfg, first)?);
                }
                (hex(&Sha256::digest(&bytes)), bytes.len() as u64)
            }
        };
        infos.push(DatasetShard {
            file: file.display().to_string(),
            bytes,
            sha256,
        });
    }
    let (sha256, shards) = match <[DatasetShard; 1]>::try_from(infos) {
        // One file: the hash of its bytes, as before shards existed.
        Ok([one]) => (one.sha256, Vec::new()),
        Err(infos) => (hex(&whole.finalize()), infos),
    };
    if sink.skipped > 0 {
        tracing::info!(
            dataset = %cfg.label(),
            "the recipe left out {} of {} rows (keep_all_rows = true keeps them)",
            sink.skipped,
            sink.read
        );
    }
    Ok(Loaded {
        rows: sink.rows,
        sha256,
        shards,
        skipped: sink.skipped,
    })
}

/// Rows gathered across shards; `read` counts every row read, kept or not, so an id taken
/// from the position does not depend on which rows a recipe skips.
struct Sink {
    rows: Vec<Row>,
    read: usize,
    skipped: usize,
}

impl Sink {
    fn push(
        &mut self,
        mapping: &Mapping,
        obj: &Map<String, Value>,
        error: impl Fn(String) -> DatasetError,
    ) -> Result<(), DatasetError> {
        let index = self.read;
        self.read += 1;
        match mapping.row(obj, index).map_err(error)? {
            Mapped::Row(row) => self.rows.push(row),
            Mapped::Skipped => self.skipped += 1,
        }
        Ok(())
    }
}

/// Hash a file without holding it in memory: its own sha256 and size, and its length and bytes
/// into `whole`.
fn hash_file(path: &Path, whole: &mut Sha256) -> Result<(String, u64), DatasetError> {
    use std::io::Read;
    let read_error = |source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    whole.update(len.to_le_bytes());
    let mut own = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        own.update(&buf[..n]);
        whole.update(&buf[..n]);
        total += n as u64;
    }
    if total != len {
        return Err(DatasetError::File {
            path: path.to_path_buf(),
            message: format!("changed while being read ({len} bytes, then {total})"),
        });
    }
    Ok((hex(&own.finalize()), total))
}

fn row_error(path: &Path, line: u64, message: impl Into<String>) -> DatasetError {
    DatasetError::Row {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn jsonl(
    path: &Path,
    bytes: &[u8],
    mapping: &Mapping,
    sink: &mut Sink,
) -> Result<(), DatasetError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| row_error(path, 0, format!("not UTF-8: {e}")))?;
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj: Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| row_error(path, n, format!("invalid JSON object: {e}")))?;
        sink.push(mapping, &obj, |message| row_error(path, n, message))?;
    }
    Ok(())
}

/// CSV rows; `first` is the number of rows earlier shards gave (ids default to the position).
fn csv_rows(
    path: &Path,
    bytes: &[u8],
    cfg: &DatasetConfig,
    first: usize,
) -> Result<Vec<Row>, DatasetError> {
    let has_header = cfg.header.unwrap_or(true);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(has_header)
        .from_reader(bytes);
    let headers: Vec<String> = if has_header {
        reader
            .headers()
            .map_err(|e| row_error(path, 1, format!("bad header row: {e}")))?
            .iter()
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    let setting = |message: String| DatasetError::Setting {
        dataset: cfg.label(),
        message,
    };
    let column = |r: &FieldRef, field: &str| -> Result<usize, DatasetError> {
        match r {
            FieldRef::Index(i) => Ok(*i),
            FieldRef::Name(n) if has_header => headers.iter().position(|h| h == n).ok_or_else(|| {
                setting(format!("fields.{field}: no column `{n}` in the header of {} (columns: {})", path.display(), headers.join(", ")))
            }),
            FieldRef::Name(n) => Err(setting(format!(
                "fields.{field}: `{n}` is a column name, but header = false; use a 0-based column number"
            ))),
        }
    };
    let named = |name: &str| headers.iter().position(|h| h == name);
    let f = &cfg.fields;
    let prompt_col = match &f.prompt {
        Some(r) => column(r, "prompt")?,
        None => named("question").or_else(|| named("prompt")).ok_or_else(|| {
            setting("no `question` or `prompt` column; set fields.prompt (a column name or 0-based number)".into())
        })?,
    };
    let id_col = match &f.id {
        Some(r) => Some(column(r, "id")?),
        None => named("id"),
    };
    let answer_col = match &f.answer {
        Some(r) => Some(column(r, "answer")?),
        None => named("answer"),
    };
    let subject_col = f
        .subject
        .as_ref()
        .map(|r| column(r, "subject"))
        .transpose()?;
    let category_col = f
        .category
        .as_ref()
        .map(|r| column(r, "category"))
        .transpose()?;
    let choice_cols: Vec<usize> = match &f.choices {
        None => Vec::new(),
        Some(ChoicesRef::Columns(cols)) => cols
            .iter()
            .map(|c| column(c, "choices"))
            .collect::<Result<_, _>>()?,
        Some(ChoicesRef::Field(_)) => {
            return Err(setting(
                "fields.choices: in CSV, list one column per option, e.g. [1, 2, 3, 4]".into(),
            ))
        }
    };
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            let message = match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    expected_len, len, ..
                } => {
                    format!("expected {expected_len} fields, found {len}")
                }
                _ => e.to_string(),
            };
            row_error(path, line, message)
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let cell = |c: usize, what: &str| -> Result<String, DatasetError> {
            rec.get(c).map(str::to_string).ok_or_else(|| {
                row_error(
                    path,
                    line,
                    format!("no column {c} ({what}); the row has {} fields", rec.len()),
                )
            })
        };
        let question = cell(prompt_col, "prompt")?;
        if question.trim().is_empty() {
            return Err(row_error(path, line, "empty prompt"));
        }
        rows.push(Row {
            id: match id_col {
                Some(c) => cell(c, "id")?,
                None => (first + rows.len()).to_string(),
            },
            question,
            answers: answer_col
                .map(|c| cell(c, "answer"))
                .transpose()?
                .into_iter()
                .collect(),
            choices: choice_cols
                .iter()
                .map(|&c| cell(c, "choices"))
                .collect::<Result<_, _>>()?,
            subject: subject_col.map(|c| cell(c, "subject")).transpose()?,
            category: category_col.map(|c| cell(c, "category")).transpose()?,
        });
    }
    Ok(rows)
}
