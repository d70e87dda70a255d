//! The field mapping of key/value rows (JSONL lines, Parquet rows turned into JSON objects):
//! which keys hold the id, prompt, answers, choices, subject and category, and which rows a
//! recipe skips. Written once for every format that has named fields.

use super::recipe::{self, Skip};
use super::{DatasetError, Row};
use crate::config::{ChoicesRef, DatasetConfig, FieldRef};
use serde_json::{Map, Value};

/// Where the choices of a row are.
#[derive(Debug, Clone)]
enum Choices {
    None,
    /// One key holding a list.
    List(String),
    /// One key per option.
    Keys(Vec<String>),
}

/// The resolved mapping of one dataset: explicit `fields` over the recipe's preset.
#[derive(Debug, Clone)]
pub struct Mapping {
    id: Option<String>,
    prompt: Option<String>,
    answer: String,
    answer_required: bool,
    choices: Choices,
    subject: Option<String>,
    category: Option<String>,
    skip: Skip,
    skip_empty_prompt: bool,
}

/// What one row became.
pub enum Mapped {
    /// A row to keep.
    Row(Row),
    /// A row the recipe leaves out.
    Skipped,
}

impl Mapping {
    /// The mapping a dataset config asks for; `Setting` errors for column numbers, which only
    /// CSV has.
    pub fn new(cfg: &DatasetConfig, format: &str) -> Result<Self, DatasetError> {
        let preset = cfg.recipe.map(recipe::preset);
        let fields = match &preset {
            Some(p) => recipe::merge_fields(&cfg.fields, &p.fields),
            None => cfg.fields.clone(),
        };
        let key = |r: &Option<FieldRef>, field: &str| -> Result<Option<String>, DatasetError> {
            match r {
                None => Ok(None),
                Some(FieldRef::Name(n)) => Ok(Some(n.clone())),
                Some(FieldRef::Index(_)) => Err(DatasetError::Setting {
                    dataset: cfg.label(),
                    message: format!(
                        "fields.{field}: {format} fields are names, not column numbers"
                    ),
                }),
            }
        };
        let choices = match &fields.choices {
            None => Choices::None,
            Some(ChoicesRef::Field(r)) => {
                Choices::List(key(&Some(r.clone()), "choices")?.unwrap_or_default())
            }
            Some(ChoicesRef::Columns(refs)) => Choices::Keys(
                refs.iter()
                    .map(|r| key(&Some(r.clone()), "choices").map(Option::unwrap_or_default))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let keep_all = cfg.keep_all_rows;
        Ok(Self {
            id: key(&fields.id, "id")?,
            prompt: key(&fields.prompt, "prompt")?,
            answer: key(&fields.answer, "answer")?.unwrap_or_else(|| "answer".into()),
            answer_required: cfg.fields.answer.is_some()
                || preset.as_ref().is_some_and(|p| p.answer_required),
            choices,
            subject: key(&fields.subject, "subject")?,
            category: key(&fields.category, "category")?,
            skip: match &preset {
                Some(p) if !keep_all => p.skip,
                _ => Skip::Nothing,
            },
            skip_empty_prompt: preset.as_ref().is_some_and(|p| p.skip_empty_prompt),
        })
    }

    /// Every key the mapping may read (a Parquet reader decodes only these columns).
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        match &self.id {
            Some(k) => keys.push(k),
            None => keys.push("id"),
        }
        match &self.prompt {
            Some(k) => keys.push(k),
            None => keys.extend(["question", "prompt"]),
        }
        keys.push(&self.answer);
        match &self.choices {
            Choices::None => {}
            Choices::List(k) => keys.push(k),
            Choices::Keys(ks) => keys.extend(ks.iter().map(String::as_str)),
        }
        keys.extend(self.subject.as_deref());
        keys.extend(self.category.as_deref());
        if let Skip::Flagged(flags) = self.skip {
            keys.extend(flags.iter().copied());
        }
        keys
    }

    /// Map one row. `index` is its 0-based position among every row read so far (all shards),
    /// the id of rows without one. An error is a message naming the field; the caller adds
    /// the file and row.
    pub fn row(&self, obj: &Map<String, Value>, index: usize) -> Result<Mapped, String> {
        if let Skip::Flagged(flags) = self.skip {
            for flag in flags {
                match obj.get(*flag) {
                    Some(Value::Bool(true)) => return Ok(Mapped::Skipped),
                    None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                    Some(v) => return Err(format!("`{flag}` is {}, expected true/false", kind(v))),
                }
            }
        }
        let question = match &self.prompt {
            Some(k) => prompt_text(obj.get(k), k)?
                .ok_or_else(|| format!("missing text field `{k}` (fields.prompt)"))?,
            None => match (obj.get("question"), obj.get("prompt")) {
                (Some(v), _) if !v.is_null() => {
                    prompt_text(Some(v), "question")?.unwrap_or_default()
                }
                (_, Some(v)) if !v.is_null() => prompt_text(Some(v), "prompt")?.unwrap_or_default(),
                _ => return Err("no `question` or `prompt` field; set fields.prompt".into()),
            },
        };
        if self.skip_empty_prompt && question.trim().is_empty() {
            return Ok(Mapped::Skipped);
        }
        let id = match &self.id {
            Some(k) => text(obj.get(k), k, "id")?
                .ok_or_else(|| format!("missing id field `{k}` (fields.id)"))?,
            None => text(obj.get("id"), "id", "id")?.unwrap_or_else(|| index.to_string()),
        };
        let answers: Vec<String> = match obj.get(&self.answer) {
            Some(Value::Array(items)) => texts(items, &self.answer, "answer")?,
            None | Some(Value::Null) if self.answer_required => {
                return Err(format!(
                    "missing answer field `{}` (fields.answer)",
                    self.answer
                ))
            }
            v => text(v, &self.answer, "answer")?.into_iter().collect(),
        };
        // A blank reference is no reference (NaturalReasoning stores "" for none).
        let answers: Vec<String> = answers
            .into_iter()
            .filter(|a| !a.trim().is_empty())
            .collect();
        if answers.is_empty() && self.skip == Skip::Unanswered {
            return Ok(Mapped::Skipped);
        }
        let choices = match &self.choices {
            Choices::None => Vec::new(),
            Choices::List(k) => match obj.get(k) {
                Some(Value::Array(items)) => texts(items, k, "choices")?,
                Some(v) => {
                    return Err(format!("`{k}` (fields.choices) is {}, not a list", kind(v)))
                }
                None => return Err(format!("missing list field `{k}` (fields.choices)")),
            },
            Choices::Keys(keys) => keys
                .iter()
                .map(|k| {
                    text(obj.get(k), k, "choices")?
                        .ok_or_else(|| format!("missing choice field `{k}`"))
                })
                .collect::<Result<_, _>>()?,
        };
        let subject = match &self.subject {
            Some(k) => text(obj.get(k), k, "subject")?,
            None => None,
        };
        let category = match &self.category {
            Some(k) => text(obj.get(k), k, "category")?,
            None => None,
        };
        Ok(Mapped::Row(Row {
            id,
            question,
            answers,
            choices,
            subject,
            category,
        }))
    }
}

/// The text of a scalar; `None` when absent or null; an error naming `key` and `field` for a
/// list or object.
fn text(v: Option<&Value>, key: &str, field: &str) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => value_text(v)
            .map(Some)
            .ok_or_else(|| format!("`{key}` (fields.{field}) is {}, expected text", kind(v))),
    }
}

/// The items of a list, each text.
fn texts(items: &[Value], key: &str, field: &str) -> Result<Vec<String>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            value_text(v).ok_or_else(|| {
                format!(
                    "`{key}` (fields.{field}) item {} is {}, expected text",
                    i + 1,
                    kind(v)
                )
            })
        })
        .collect()
}

/// A prompt: text, or a conversation (a list of `{role, content}` turns, as chat datasets
/// store them), whose first `user` turn is the prompt.
fn prompt_text(v: Option<&Value>, key: &str) -> Result<Option<String>, String> {
    let Some(Value::Array(turns)) = v else {
        return text(v, key, "prompt");
    };
    for (i, turn) in turns.iter().enumerate() {
        let Value::Object(turn) = turn else {
            return Err(format!(
                "`{key}` (fields.prompt) item {} is {}, expected a turn with `role` and `content`",
                i + 1,
                kind(turn)
            ));
        };
        if turn.get("role").and_then(Value::as_str) == Some("user") {
            return match turn.get("content") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Null) | None => Ok(Some(String::new())),
                Some(v) => Err(format!(
                    "`{key}` (fields.prompt) turn {}: `content` is {}, expected text",
                    i + 1,
                    kind(v)
                )),
            };
        }
    }
    Err(format!("`{key}` (fields.prompt) has no `user` turn"))
}

/// The text of a scalar JSON value.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What kind of JSON value `v` is, for errors.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
