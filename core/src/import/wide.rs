//! Wide routing tables, as routing benchmarks publish them (RouteLLM's CSVs, RouterBench):
//! one row per prompt with columns per model (its score, response, cost...). Each wide row
//! becomes one long row per model, so the rest of the import is the long table's.
//!
//! The mapping is a small TOML (`ipw import --wide FILE`) or flags (`--model NAME=COLUMN` for a
//! model's score column, `--ignore COLUMN`):
//!
//! ```toml
//! ignore = ["oracle_model_to_route_to"]   # columns that are neither a field nor a model's
//! [shared]                                 # fields every model's row shares (as --map)
//! prompt = "prompt"
//! query_id = "sample_id"                  # without one, the row's number (`row-7`)
//! [models."gpt-4-1106-preview"]
//! score = "gpt-4-1106-preview"
//! response = "gpt-4-1106-preview|model_response"
//! cost_usd = "gpt-4-1106-preview|total_cost"
//! ```
//!
//! Every column of the header must be used exactly once (a shared field, a model's field, or
//! ignored): a column nobody maps is refused by name, so a model is never dropped silently,
//! and so is a column two places map.

use super::{ImportError, RawRow, FIELDS};
use std::collections::BTreeMap;
use std::path::Path;

/// The fields a model's columns may give.
pub const MODEL_FIELDS: [&str; 9] = [
    "score",
    "response",
    "input_tokens",
    "output_tokens",
    "energy_j",
    "net_energy_j",
    "latency_s",
    "cost_usd",
    "error",
];

/// How a wide table's columns map to models and fields.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WideMapping {
    /// Columns to leave out.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Shared fields (`query_id`, `prompt`, `dataset`, ...) and their columns.
    #[serde(default)]
    pub shared: BTreeMap<String, String>,
    /// Per model: its fields ([`MODEL_FIELDS`]) and their columns.
    #[serde(default)]
    pub models: BTreeMap<String, BTreeMap<String, String>>,
}

impl WideMapping {
    /// Read a mapping file.
    pub fn read(path: &Path) -> Result<Self, ImportError> {
        let err = |message: String| ImportError::Columns {
            path: path.into(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Check the fields it names (naming the mapping `source` in errors).
    pub fn check(&self, source: &Path) -> Result<(), ImportError> {
        let err = |message: String| ImportError::Columns {
            path: source.into(),
            message,
        };
        if self.models.is_empty() {
            return Err(err(
                "a wide table needs its models: [models.NAME] score = \"COLUMN\" (or --model NAME=COLUMN)"
                    .into(),
            ));
        }
        let shared: Vec<&str> = FIELDS
            .iter()
            .copied()
            .filter(|f| *f != "model" && !MODEL_FIELDS.contains(f))
            .collect();
        for field in self.shared.keys() {
            if !shared.contains(&field.as_str()) {
                return Err(err(format!(
                    "[shared] {field}: not a shared field; they are {}",
                    shared.join(", ")
                )));
            }
        }
        for (model, fields) in &self.models {
            for field in fields.keys() {
                if !MODEL_FIELDS.contains(&field.as_str()) {
                    return Err(err(format!(
                        "[models.{model:?}] {field}: not a model's field; they are {}",
                        MODEL_FIELDS.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What a header column is used for.
#[derive(Clone)]
enum Use {
    Shared(&'static str),
    Model(usize, &'static str),
    Ignored,
}

fn describe(u: &Use, models: &[&String]) -> String {
    match u {
        Use::Shared(f) => format!("shared field {f}"),
        Use::Model(m, f) => format!("{f} of model {}", models[*m]),
        Use::Ignored => "ignore".into(),
    }
}

fn field_name(f: &str) -> &'static str {
    FIELDS
        .iter()
        .copied()
        .find(|x| *x == f)
        .expect("checked against FIELDS")
}

/// Hand one long row per model of each wide row of a CSV to `add`.
pub(super) fn read_wide_csv(
    path: &Path,
    reader: impl std::io::Read,
    mapping: &WideMapping,
    add: &mut dyn FnMut(RawRow) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let err = |message: String| ImportError::Columns {
        path: path.into(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| err(format!("no CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let models: Vec<&String> = mapping.models.keys().collect();
    let mut uses: Vec<Option<Use>> = vec![None; header.len()];
    let mut claim = |column: &str, what: Use| -> Result<usize, ImportError> {
        let i = header.iter().position(|h| h == column).ok_or_else(|| {
            err(format!(
                "no column `{column}` (for {}); the columns are: {}",
                describe(&what, &models),
                header.join(", ")
            ))
        })?;
        if let Some(before) = &uses[i] {
            return Err(err(format!(
                "column `{column}` is mapped twice: as {} and as {}",
                describe(before, &models),
                describe(&what, &models)
            )));
        }
        uses[i] = Some(what);
        Ok(i)
    };
    let mut shared = Vec::new();
    for (field, column) in &mapping.shared {
        let f = field_name(field);
        shared.push((f, claim(column, Use::Shared(f))?));
    }
    let mut per_model = Vec::new();
    for (m, (name, fields)) in mapping.models.iter().enumerate() {
        let mut cols = Vec::new();
        for (field, column) in fields {
            let f = field_name(field);
            cols.push((f, claim(column, Use::Model(m, f))?));
        }
        per_model.push((name.clone(), cols));
    }
    for column in &mapping.ignore {
        claim(column, Use::Ignored)?;
    }
    // A shared field not mapped is found by its own name, if the header has it.
    for f in [
        "query_id",
        "prompt",
        "answer",
        "dataset",
        "subject",
        "accelerator",
    ] {
        if !mapping.shared.contains_key(f) {
            if let Some(i) = header.iter().position(|h| h == f) {
                if uses[i].is_none() {
                    uses[i] = Some(Use::Shared(f));
                    shared.push((f, i));
                }
            }
        }
    }
    let unmapped: Vec<&str> = header
        .iter()
        .zip(&uses)
        .filter(|(_, u)| u.is_none())
        .map(|(h, _)| h.as_str())
        .collect();
    if !unmapped.is_empty() {
        return Err(err(format!(
            "columns no model or field maps: {} (map each to a model, e.g. --model NAME={}, or leave it out with --ignore)",
            unmapped.join(", "),
            unmapped[0]
        )));
    }
    let has_id = shared.iter().any(|(f, _)| *f == "query_id");
    super::each_record(path, &mut reader, |rec, line, k| {
        let mut common: BTreeMap<&'static str, String> = shared
            .iter()
            .filter_map(|&(f, i)| rec.get(i).map(|v| (f, v.to_string())))
            .collect();
        if !has_id {
            common.insert("query_id", format!("row-{k}"));
        }
        for (name, cols) in &per_model {
            let mut fields = common.clone();
            fields.insert("model", name.clone());
            for &(f, i) in cols {
                if let Some(v) = rec.get(i) {
                    fields.insert(f, v.to_string());
                }
            }
            add(RawRow { line, fields })?;
        }
        Ok(())
    })
}
