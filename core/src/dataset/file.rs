//! User datasets from JSONL or CSV files, mapped to [`Row`]s through `fields`.
//! Every error names the file and the line.

use super::{hex, DatasetError, Row};
use crate::config::{ChoicesRef, DatasetConfig, DatasetFormat, FieldRef};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Rows of a dataset file and the hash of its bytes.
pub struct Loaded {
    /// Rows in file order.
    pub rows: Vec<Row>,
    /// sha256 of the file.
    pub sha256: String,
}

/// Read a dataset file according to its config.
pub fn load(path: &Path, cfg: &DatasetConfig) -> Result<Loaded, DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let format = cfg.format.unwrap_or_else(|| {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => DatasetFormat::Csv,
            _ => DatasetFormat::Jsonl,
        }
    });
    let rows = match format {
        DatasetFormat::Jsonl => jsonl(path, &bytes, cfg)?,
        DatasetFormat::Csv => csv_rows(path, &bytes, cfg)?,
    };
    Ok(Loaded { rows, sha256 })
}

fn row_error(path: &Path, line: u64, message: impl Into<String>) -> DatasetError {
    DatasetError::Row {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

fn jsonl(path: &Path, bytes: &[u8], cfg: &DatasetConfig) -> Result<Vec<Row>, DatasetError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| row_error(path, 0, format!("not UTF-8: {e}")))?;
    let f = &cfg.fields;
    let name_of = |r: &Option<FieldRef>, field: &str| -> Result<Option<String>, DatasetError> {
        match r {
            None => Ok(None),
            Some(FieldRef::Name(n)) => Ok(Some(n.clone())),
            Some(FieldRef::Index(_)) => Err(DatasetError::Setting {
                dataset: cfg.label(),
                message: format!("fields.{field}: JSONL fields are keys, not column numbers"),
            }),
        }
    };
    let id_key = name_of(&f.id, "id")?;
    let prompt_key = name_of(&f.prompt, "prompt")?;
    let answer_key = name_of(&f.answer, "answer")?.unwrap_or_else(|| "answer".into());
    let subject_key = name_of(&f.subject, "subject")?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let obj: serde_json::Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| row_error(path, n, format!("invalid JSON object: {e}")))?;
        let get_text = |key: &str| obj.get(key).and_then(value_text);
        let question = match &prompt_key {
            Some(k) => get_text(k).ok_or_else(|| {
                row_error(path, n, format!("missing text field `{k}` (fields.prompt)"))
            })?,
            None => get_text("question")
                .or_else(|| get_text("prompt"))
                .ok_or_else(|| {
                    row_error(
                        path,
                        n,
                        "no `question` or `prompt` field; set fields.prompt",
                    )
                })?,
        };
        let id = match &id_key {
            Some(k) => get_text(k)
                .ok_or_else(|| row_error(path, n, format!("missing id field `{k}` (fields.id)")))?,
            None => get_text("id").unwrap_or_else(|| (rows.len()).to_string()),
        };
        let answers = match obj.get(&answer_key) {
            Some(Value::Array(items)) => items.iter().filter_map(value_text).collect(),
            Some(v) => value_text(v).into_iter().collect(),
            None if f.answer.is_some() => {
                return Err(row_error(
                    path,
                    n,
                    format!("missing answer field `{answer_key}` (fields.answer)"),
                ))
            }
            None => Vec::new(),
        };
        let choices = match &f.choices {
            None => Vec::new(),
            Some(ChoicesRef::Field(FieldRef::Name(k))) => match obj.get(k) {
                Some(Value::Array(items)) => items.iter().filter_map(value_text).collect(),
                _ => {
                    return Err(row_error(
                        path,
                        n,
                        format!("`{k}` (fields.choices) is not a list"),
                    ))
                }
            },
            Some(ChoicesRef::Columns(keys)) => {
                let mut out = Vec::new();
                for k in keys {
                    let FieldRef::Name(k) = k else {
                        return Err(row_error(
                            path,
                            n,
                            "fields.choices: JSONL fields are keys, not column numbers",
                        ));
                    };
                    out.push(get_text(k).ok_or_else(|| {
                        row_error(path, n, format!("missing choice field `{k}`"))
                    })?);
                }
                out
            }
            Some(ChoicesRef::Field(FieldRef::Index(_))) => {
                return Err(row_error(
                    path,
                    n,
                    "fields.choices: JSONL fields are keys, not column numbers",
                ))
            }
        };
        let subject = subject_key.as_ref().and_then(|k| get_text(k));
        rows.push(Row {
            id,
            question,
            answers,
            choices,
            subject,
        });
    }
    Ok(rows)
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn csv_rows(path: &Path, bytes: &[u8], cfg: &DatasetConfig) -> Result<Vec<Row>, DatasetError> {
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
                None => rows.len().to_string(),
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
        });
    }
    Ok(rows)
}
