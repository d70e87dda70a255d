//! Datasets: turn a `[[datasets]]` entry into a reproducible list of [`Query`]s.
//!
//! Rows come from a built-in dataset ([`builtin`]) or user files ([`file`]: JSONL, CSV or
//! Parquet ([`parquet_rows`]); one file or the shards a directory or glob names ([`shards`]);
//! named fields mapped by `fields` over a Hugging Face [`recipe`] ([`mapping`])), are filtered
//! and sampled ([`select`]: seeded shuffle, subject stratification, `max_queries`) and rendered
//! into prompts ([`template`]).

pub mod builtin;
pub mod file;
pub mod mapping;
pub mod parquet_rows;
pub mod recipe;
pub mod select;
pub mod shards;
pub mod template;

use crate::config::{BuiltinDataset, DatasetConfig, TemplateName};
pub use crate::records::{DatasetInfo, DatasetShard};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// One row of a dataset, before its prompt is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Id unique within the dataset.
    pub id: String,
    /// The question text.
    pub question: String,
    /// Acceptable reference answers.
    pub answers: Vec<String>,
    /// Multiple-choice options, in letter order.
    pub choices: Vec<String>,
    /// Subject label, if the dataset has one.
    pub subject: Option<String>,
    /// Category read from the data (a `categories` entry for the subject wins).
    pub category: Option<String>,
}

/// A query ready to send: a row, its rendered prompt and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Query {
    /// `<dataset>/<row id>`: unique within a run.
    pub id: String,
    /// Dataset label.
    pub dataset: String,
    /// Subject, if known.
    pub subject: Option<String>,
    /// Category of the subject (e.g. STEM), if known.
    pub category: Option<String>,
    /// The rendered prompt sent as the user message.
    pub prompt: String,
    /// Acceptable reference answers.
    pub answers: Vec<String>,
    /// Multiple-choice options.
    pub choices: Vec<String>,
}

impl Query {
    /// sha256 of the prompt, so records can be matched across runs without storing duplicates.
    pub fn prompt_hash(&self) -> String {
        hex(&Sha256::digest(self.prompt.as_bytes()))
    }
}

/// A dataset error that names the file and, where it applies, the line or row.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("{}: cannot read dataset: {source}", path.display())]
    Read {
        /// Dataset file.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Row {
        /// Dataset file.
        path: PathBuf,
        /// 1-based line (JSONL) or record line (CSV).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A Parquet row is malformed.
    #[error("{}: row {row}: {message}", path.display())]
    Record {
        /// Dataset file (the shard).
        path: PathBuf,
        /// 1-based row within the file.
        row: u64,
        /// What is wrong, naming the column.
        message: String,
    },
    /// A whole file cannot be used (not Parquet, unreadable row group).
    #[error("{}: {message}", path.display())]
    File {
        /// Dataset file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A setting does not fit the data (unknown subject, missing field, ...).
    #[error("dataset `{dataset}`: {message}")]
    Setting {
        /// Dataset label.
        dataset: String,
        /// What is wrong.
        message: String,
    },
}

/// Load, filter, sample and render one dataset.
pub fn load_dataset(
    cfg: &DatasetConfig,
    seed: u64,
) -> Result<(Vec<Query>, DatasetInfo), DatasetError> {
    let label = cfg.label();
    let (rows, source, sha256, categories, shards) = match (cfg.builtin, &cfg.path) {
        (Some(which), _) => {
            let b = builtin::load(which);
            (
                b.rows,
                format!("builtin:{}", label_of(which)),
                b.sha256,
                b.categories,
                Vec::new(),
            )
        }
        (None, Some(path)) => {
            let loaded = file::load(path, cfg)?;
            (
                loaded.rows,
                path.display().to_string(),
                loaded.sha256,
                cfg.categories.clone(),
                loaded.shards,
            )
        }
        (None, None) => {
            return Err(DatasetError::Setting {
                dataset: label,
                message: "neither `builtin` nor `path` is set".into(),
            })
        }
    };
    let rows =
        select::filter_subjects(rows, &cfg.subjects).map_err(|message| DatasetError::Setting {
            dataset: label.clone(),
            message,
        })?;
    let total = rows.len();
    let chosen = select::sample(rows, cfg.max_queries, cfg.shuffle, cfg.stratify, seed);
    let template = template::Template::from_config(
        cfg.template.or(match (cfg.builtin, cfg.recipe) {
            (Some(BuiltinDataset::Gsm8k), _) => Some(TemplateName::Gsm8k),
            (Some(BuiltinDataset::Mmlu), _) => Some(TemplateName::Mmlu),
            (None, Some(recipe)) => recipe::preset(recipe).template,
            (None, None) => None,
        }),
        cfg.template_text.as_deref(),
    );
    let mut queries = Vec::with_capacity(chosen.len());
    let mut seen = std::collections::HashSet::new();
    for row in chosen {
        if !seen.insert(row.id.clone()) {
            return Err(DatasetError::Setting {
                dataset: label.clone(),
                message: format!(
                    "duplicate id `{}`; map `fields.id` to a unique column",
                    row.id
                ),
            });
        }
        // The experiment's own `categories` win over a category column.
        let category = row
            .subject
            .as_ref()
            .and_then(|s| categories.get(s).cloned())
            .or_else(|| row.category.clone());
        queries.push(Query {
            id: format!("{label}/{}", row.id),
            dataset: label.clone(),
            prompt: template.render(&row),
            subject: row.subject,
            category,
            answers: row.answers,
            choices: row.choices,
        });
    }
    let info = DatasetInfo {
        name: label,
        source,
        sha256,
        rows: total,
        selected: queries.len(),
        shards,
    };
    Ok((queries, info))
}

fn label_of(which: BuiltinDataset) -> &'static str {
    match which {
        BuiltinDataset::Gsm8k => "gsm8k",
        BuiltinDataset::Mmlu => "mmlu",
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests;
