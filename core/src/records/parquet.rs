//! `records.parquet`: the records of a run as one flat table (one row per record, one scalar
//! column per field, one set of columns per energy channel), and the way back to [`Record`]s.
//!
//! `ipw export --format parquet` writes it; [`RunDir::read_records`](super::RunDir::read_records)
//! reads it when a run directory has no `records.jsonl`, so analysis works on exported runs.
//! The columns are listed in the README ("Exporting to Parquet"); every field of a record has
//! one, so reading back gives the record that was written (floats bit for bit, nulls as nulls).
//!
//! Which nested values are absent is kept by a column that is never null when they are
//! present: no `grade` ⇔ `grade_grader` null, no `energy` ⇔ `energy_estimated` null, no
//! `phases` ⇔ `*_prefill_j` null, no `harness` ⇔ `harness_cpu_s` null, a channel missing from a
//! record ⇔ its `energy_<channel>_flags` null.
//!
//! Records are written and read in batches of at most [`BATCH_ROWS`] rows (one Parquet row
//! group each), so a run of any size needs memory for one batch only.

use super::{
    ChannelEnergy, Detail, DomainRecord, Flag, GradeRecord, HarnessCpu, PhaseEnergy, QueryEnergy,
    QueryError, Record, TokenSource, Window, RECORD_SCHEMA,
};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Rows per batch (and per Parquet row group) when records are written or read.
pub const BATCH_ROWS: usize = 8192;

/// Parquet key-value metadata: the record format version of the rows.
pub const META_SCHEMA: &str = "ipw.record_schema";
/// Parquet key-value metadata: the energy channels that have columns, as a JSON array.
pub const META_CHANNELS: &str = "ipw.channels";

/// Per-channel column suffixes, after `energy_<channel>_`.
const CHANNEL_F64: [&str; 11] = [
    "gross_j",
    "net_j",
    "idle_w",
    "gross_low_j",
    "gross_high_j",
    "net_low_j",
    "net_high_j",
    "prefill_j",
    "decode_j",
    "prefill_net_j",
    "decode_net_j",
];

/// What every row of one run's file shares: the run it came from.
#[derive(Debug, Clone)]
pub struct RunColumns {
    /// The run directory's name.
    pub run: String,
    /// The accelerator label (`[models.meta] accelerator`, else what the host showed).
    pub accelerator: String,
}

/// The Arrow schema of `records.parquet` for a run whose records carry `channels`.
/// Fails when a channel's columns would take the name of another column.
pub fn records_schema(channels: &BTreeSet<String>) -> Result<SchemaRef, String> {
    let ctx = RunColumns {
        run: String::new(),
        accelerator: String::new(),
    };
    let cols = columns(&[], &ctx, channels);
    let mut seen = BTreeSet::new();
    for (f, _) in &cols {
        if !seen.insert(f.name().as_str()) {
            return Err(format!(
                "channel columns clash: two columns are named `{}` (rename the channel)",
                f.name()
            ));
        }
    }
    let meta = HashMap::from([
        (META_SCHEMA.to_string(), RECORD_SCHEMA.to_string()),
        (
            META_CHANNELS.to_string(),
            serde_json::to_string(channels).expect("names serialise"),
        ),
    ]);
    Ok(Arc::new(Schema::new_with_metadata(
        cols.into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
        meta,
    )))
}

/// The channel names of a set of records (the union: a channel missing from some records has
/// nulls there).
pub fn channels_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in records {
        if let Some(e) = &r.energy {
            out.extend(e.channels.keys().cloned());
        }
    }
    out
}

/// One batch of records as rows of `schema` (from [`records_schema`] with the same channels).
pub fn records_batch(
    schema: &SchemaRef,
    records: &[Record],
    ctx: &RunColumns,
    channels: &BTreeSet<String>,
) -> Result<RecordBatch, String> {
    let arrays: Vec<ArrayRef> = columns(records, ctx, channels)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

fn flag_name(f: &Flag) -> String {
    match serde_json::to_value(f) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("a flag serialises as a string"),
    }
}

fn text_of<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

type Col = (Field, ArrayRef);

fn f64_col(name: &str, rs: &[Record], f: impl Fn(&Record) -> Option<f64>) -> Col {
    let a: Float64Array = rs.iter().map(f).collect();
    (Field::new(name, DataType::Float64, true), Arc::new(a))
}

fn f64_req(name: &str, rs: &[Record], f: impl Fn(&Record) -> f64) -> Col {
    let a: Float64Array = rs.iter().map(|r| Some(f(r))).collect();
    (Field::new(name, DataType::Float64, false), Arc::new(a))
}

fn u64_col(name: &str, nullable: bool, rs: &[Record], f: impl Fn(&Record) -> Option<u64>) -> Col {
    let a: UInt64Array = rs.iter().map(f).collect();
    (Field::new(name, DataType::UInt64, nullable), Arc::new(a))
}

fn u32_req(name: &str, rs: &[Record], f: impl Fn(&Record) -> u32) -> Col {
    let a: UInt32Array = rs.iter().map(|r| Some(f(r))).collect();
    (Field::new(name, DataType::UInt32, false), Arc::new(a))
}

fn bool_col(name: &str, nullable: bool, rs: &[Record], f: impl Fn(&Record) -> Option<bool>) -> Col {
    let a: BooleanArray = rs.iter().map(f).collect();
    (Field::new(name, DataType::Boolean, nullable), Arc::new(a))
}

fn str_col(name: &str, rs: &[Record], f: impl Fn(&Record) -> Option<String>) -> Col {
    let a: StringArray = rs.iter().map(f).collect();
    (Field::new(name, DataType::Utf8, true), Arc::new(a))
}

fn str_ref<'a>(name: &str, rs: &'a [Record], f: impl Fn(&'a Record) -> Option<&'a str>) -> Col {
    let a: StringArray = rs.iter().map(f).collect();
    (Field::new(name, DataType::Utf8, true), Arc::new(a))
}

fn str_req<'a>(name: &str, rs: &'a [Record], f: impl Fn(&'a Record) -> &'a str) -> Col {
    let a: StringArray = rs.iter().map(|r| Some(f(r))).collect();
    (Field::new(name, DataType::Utf8, false), Arc::new(a))
}

fn list_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Utf8, true))
}

fn list_col(
    name: &str,
    nullable: bool,
    rs: &[Record],
    f: impl Fn(&Record) -> Option<Vec<String>>,
) -> Col {
    let mut b = ListBuilder::new(StringBuilder::new()).with_field(list_item());
    for r in rs {
        match f(r) {
            Some(items) => {
                for s in items {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            None => b.append(false),
        }
    }
    (
        Field::new(name, DataType::List(list_item()), nullable),
        Arc::new(b.finish()),
    )
}

fn channel<'a>(r: &'a Record, name: &str) -> Option<&'a ChannelEnergy> {
    r.energy.as_ref()?.channels.get(name)
}

fn channel_f64(c: &ChannelEnergy, suffix: &str) -> Option<f64> {
    match suffix {
        "gross_j" => c.gross_j,
        "net_j" => c.net_j,
        "idle_w" => c.idle_w,
        "gross_low_j" => c.gross_bound_j.map(|b| b[0]),
        "gross_high_j" => c.gross_bound_j.map(|b| b[1]),
        "net_low_j" => c.net_bound_j.map(|b| b[0]),
        "net_high_j" => c.net_bound_j.map(|b| b[1]),
        "prefill_j" => c.phases.map(|p| p.prefill_j),
        "decode_j" => c.phases.map(|p| p.decode_j),
        "prefill_net_j" => c.phases.and_then(|p| p.prefill_net_j),
        "decode_net_j" => c.phases.and_then(|p| p.decode_net_j),
        _ => unreachable!("a known suffix"),
    }
}

/// Every column, in order, with its values for `rs` (none for an empty slice: the schema).
/// The one definition of the file's layout: the schema is this with no records.
fn columns(rs: &[Record], ctx: &RunColumns, channels: &BTreeSet<String>) -> Vec<Col> {
    fn e(r: &Record) -> Option<&QueryEnergy> {
        r.energy.as_ref()
    }
    fn g(r: &Record) -> Option<&GradeRecord> {
        r.grade.as_ref()
    }
    fn h(r: &Record) -> Option<&HarnessCpu> {
        r.harness.as_ref()
    }
    let started: TimestampNanosecondArray = rs
        .iter()
        .map(|r| r.started_at.timestamp_nanos_opt())
        .collect::<TimestampNanosecondArray>()
        .with_timezone("UTC");
    let mut cols = vec![
        str_req("run", rs, |_| &ctx.run),
        str_req("model", rs, |r| &r.model),
        str_req("accelerator", rs, |_| &ctx.accelerator),
        str_req("backend", rs, |r| &r.backend),
        u32_req("schema", rs, |r| r.schema),
        str_req("query_id", rs, |r| &r.query_id),
        u64_col("index", false, rs, |r| Some(r.index as u64)),
        u64_col("session", false, rs, |r| Some(r.session as u64)),
        str_req("dataset", rs, |r| &r.dataset),
        str_ref("subject", rs, |r| r.subject.as_deref()),
        str_ref("category", rs, |r| r.category.as_deref()),
        str_req("prompt_hash", rs, |r| &r.prompt_hash),
        str_req("prompt", rs, |r| &r.prompt),
        list_col("answers", false, rs, |r| Some(r.answers.clone())),
        list_col("choices", false, rs, |r| Some(r.choices.clone())),
        str_ref("response", rs, |r| r.response.as_deref()),
        u64_col("input_tokens", true, rs, |r| r.input_tokens),
        u64_col("output_tokens", true, rs, |r| r.output_tokens),
        bool_col("tokens_estimated", false, rs, |r| Some(r.tokens_estimated)),
        str_col("token_source", rs, |r| r.token_source.as_ref().map(text_of)),
        u64_col("cached_prompt_tokens", true, rs, |r| r.cached_prompt_tokens),
        f64_col("cost_usd", rs, |r| r.cost_usd),
        f64_col("ttft_s", rs, |r| r.ttft_s),
        f64_req("latency_s", rs, |r| r.latency_s),
        f64_col("decode_tps", rs, |r| r.decode_tps),
        str_ref("finish_reason", rs, |r| r.finish_reason.as_deref()),
        u32_req("attempts", rs, |r| r.attempts),
        (
            Field::new(
                "started_at",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Arc::new(started),
        ),
        f64_req("window_start_s", rs, |r| r.window.start_s),
        f64_req("window_end_s", rs, |r| r.window.end_s),
        str_ref("error_kind", rs, |r| {
            r.error.as_ref().map(|e| e.kind.as_str())
        }),
        str_ref("error_message", rs, |r| {
            r.error.as_ref().map(|e| e.message.as_str())
        }),
        str_ref("grade_grader", rs, |r| g(r).map(|g| g.grader.as_str())),
        str_ref("grade_wasm_sha256", rs, |r| {
            g(r).map(|g| g.wasm_sha256.as_str())
        }),
        f64_col("grade_score", rs, |r| g(r).and_then(|g| g.score)),
        bool_col("grade_parsed", true, rs, |r| g(r).map(|g| g.parsed)),
        str_ref("grade_extracted", rs, |r| {
            g(r).and_then(|g| g.extracted.as_deref())
        }),
        str_ref("grade_explanation", rs, |r| {
            g(r).and_then(|g| g.explanation.as_deref())
        }),
        str_ref("grade_error", rs, |r| g(r).and_then(|g| g.error.as_deref())),
        str_col("grade_params", rs, |r| {
            g(r).and_then(|g| g.params.as_ref()).map(|p| p.to_string())
        }),
        str_col("grade_history", rs, |r| {
            (!r.grade_history.is_empty())
                .then(|| serde_json::to_string(&r.grade_history).expect("grades serialise"))
        }),
        str_ref("domain_label", rs, |r| {
            r.domain.as_ref().and_then(|d| d.label.as_deref())
        }),
        str_col("domain", rs, |r| {
            r.domain
                .as_ref()
                .map(|d| serde_json::to_string(d).expect("domains serialise"))
        }),
        str_col("domain_history", rs, |r| {
            (!r.domain_history.is_empty())
                .then(|| serde_json::to_string(&r.domain_history).expect("domains serialise"))
        }),
        f64_col("energy_gross_j", rs, |r| e(r).and_then(|e| e.gross_j)),
        f64_col("energy_net_j", rs, |r| e(r).and_then(|e| e.net_j)),
        f64_col("energy_gross_low_j", rs, |r| {
            e(r).and_then(|e| e.gross_bound_j).map(|b| b[0])
        }),
        f64_col("energy_gross_high_j", rs, |r| {
            e(r).and_then(|e| e.gross_bound_j).map(|b| b[1])
        }),
        f64_col("energy_net_low_j", rs, |r| {
            e(r).and_then(|e| e.net_bound_j).map(|b| b[0])
        }),
        f64_col("energy_net_high_j", rs, |r| {
            e(r).and_then(|e| e.net_bound_j).map(|b| b[1])
        }),
        f64_col("energy_prefill_j", rs, |r| {
            e(r).and_then(|e| e.phases).map(|p| p.prefill_j)
        }),
        f64_col("energy_decode_j", rs, |r| {
            e(r).and_then(|e| e.phases).map(|p| p.decode_j)
        }),
        f64_col("energy_prefill_net_j", rs, |r| {
            e(r).and_then(|e| e.phases).and_then(|p| p.prefill_net_j)
        }),
        f64_col("energy_decode_net_j", rs, |r| {
            e(r).and_then(|e| e.phases).and_then(|p| p.decode_net_j)
        }),
        f64_col("energy_mean_power_w", rs, |r| {
            e(r).and_then(|e| e.mean_power_w)
        }),
        f64_col("energy_j_per_output_token", rs, |r| {
            e(r).and_then(|e| e.j_per_output_token)
        }),
        bool_col("energy_estimated", true, rs, |r| e(r).map(|e| e.estimated)),
        list_col("energy_flags", true, rs, |r| {
            e(r).map(|e| e.flags.iter().map(flag_name).collect())
        }),
        f64_col("harness_cpu_s", rs, |r| h(r).map(|h| h.cpu_s)),
        f64_col("harness_process_cpu_s", rs, |r| {
            h(r).map(|h| h.process_cpu_s)
        }),
        f64_col("harness_engine_cpu_s", rs, |r| {
            h(r).and_then(|h| h.engine_cpu_s)
        }),
        f64_col("harness_machine_cpu_s", rs, |r| {
            h(r).and_then(|h| h.machine_cpu_s)
        }),
        f64_col("harness_server_cpu_s", rs, |r| {
            h(r).and_then(|h| h.server_cpu_s)
        }),
    ];
    for name in channels {
        for suffix in CHANNEL_F64 {
            cols.push(f64_col(&format!("energy_{name}_{suffix}"), rs, |r| {
                channel(r, name).and_then(|c| channel_f64(c, suffix))
            }));
        }
        cols.push(list_col(&format!("energy_{name}_flags"), true, rs, |r| {
            channel(r, name).map(|c| c.flags.iter().map(flag_name).collect())
        }));
        cols.push(str_col(&format!("energy_{name}_domain"), rs, |r| {
            channel(r, name).and_then(|c| c.domain.as_ref().map(text_of))
        }));
    }
    cols
}

/// Reads the rows of `records.parquet` back into records.
pub struct BatchReader<'a> {
    batch: &'a RecordBatch,
}

/// What went wrong reading a batch: the message names the column.
pub type ReadError = String;

impl<'a> BatchReader<'a> {
    /// A reader of `batch`'s columns by name.
    pub(crate) fn new(batch: &'a RecordBatch) -> Self {
        Self { batch }
    }

    fn column(&self, name: &str) -> Result<&'a ArrayRef, ReadError> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| format!("no column `{name}`"))
    }

    fn typed<T: Array + 'static>(&self, name: &str, want: &str) -> Result<&'a T, ReadError> {
        let c = self.column(name)?;
        c.as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| format!("column `{name}` is {}, not {want}", c.data_type()))
    }

    pub(crate) fn f64s(&self, name: &str) -> Result<Vec<Option<f64>>, ReadError> {
        let a = self.column(name)?;
        let a = a
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| format!("column `{name}` is {}, not Float64", a.data_type()))?;
        Ok(a.iter().collect())
    }

    pub(crate) fn u64s(&self, name: &str) -> Result<Vec<Option<u64>>, ReadError> {
        let a = self.column(name)?;
        let a = a
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| format!("column `{name}` is {}, not UInt64", a.data_type()))?;
        Ok(a.iter().collect())
    }

    fn u32s(&self, name: &str) -> Result<Vec<Option<u32>>, ReadError> {
        let a = self.column(name)?;
        let a = a
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| format!("column `{name}` is {}, not UInt32", a.data_type()))?;
        Ok(a.iter().collect())
    }

    pub(crate) fn bools(&self, name: &str) -> Result<Vec<Option<bool>>, ReadError> {
        Ok(self
            .typed::<BooleanArray>(name, "Boolean")?
            .iter()
            .collect())
    }

    /// A Utf8 column's values, borrowed.
    pub(crate) fn str_refs(&self, name: &str) -> Result<Vec<Option<&'a str>>, ReadError> {
        Ok(self.typed::<StringArray>(name, "Utf8")?.iter().collect())
    }

    fn strs(&self, name: &str) -> Result<Vec<Option<String>>, ReadError> {
        Ok(self
            .typed::<StringArray>(name, "Utf8")?
            .iter()
            .map(|s| s.map(str::to_string))
            .collect())
    }

    fn lists(&self, name: &str) -> Result<Vec<Option<Vec<String>>>, ReadError> {
        let a = self.typed::<ListArray>(name, "List<Utf8>")?;
        (0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    return Ok(None);
                }
                let v = a.value(i);
                let s = v
                    .as_string_opt::<i32>()
                    .ok_or_else(|| format!("column `{name}` holds {}, not Utf8", v.data_type()))?;
                Ok(Some(
                    s.iter().map(|x| x.unwrap_or("").to_string()).collect(),
                ))
            })
            .collect()
    }

    fn times(&self, name: &str) -> Result<Vec<Option<i64>>, ReadError> {
        let a = self.column(name)?;
        let a = a
            .as_primitive_opt::<TimestampNanosecondType>()
            .ok_or_else(|| format!("column `{name}` is {}, not Timestamp(ns)", a.data_type()))?;
        Ok(a.iter().collect())
    }
}

fn need<T>(v: Option<T>, name: &str, row: usize) -> Result<T, ReadError> {
    v.ok_or_else(|| format!("column `{name}` is null in row {row}"))
}

fn parse_text<T: serde::de::DeserializeOwned>(s: &str, name: &str) -> Result<T, ReadError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("column `{name}`: `{s}`: {e}"))
}

fn flags(names: &[String], column: &str) -> Result<Vec<Flag>, ReadError> {
    names.iter().map(|n| parse_text(n, column)).collect()
}

/// The records of one batch of `records.parquet` rows, with the file's `channels`.
pub fn batch_records(
    batch: &RecordBatch,
    channels: &BTreeSet<String>,
) -> Result<Vec<Record>, ReadError> {
    batch_records_with(batch, channels, Detail::Full)
}

/// The columns [`Detail::Figures`] leaves unread (each record's texts and hashes; the
/// per-channel columns go too).
const NOT_FIGURES: [&str; 11] = [
    "prompt",
    "prompt_hash",
    "answers",
    "choices",
    "response",
    "finish_reason",
    "grade_wasm_sha256",
    "grade_extracted",
    "grade_explanation",
    "grade_history",
    "domain_history",
];

/// [`batch_records`] at a level of `detail`: with [`Detail::Figures`] the batch may lack the
/// [`NOT_FIGURES`] and channel columns (they are not read), and the records have what
/// [`Detail::Figures`] says.
fn batch_records_with(
    batch: &RecordBatch,
    channels: &BTreeSet<String>,
    detail: Detail,
) -> Result<Vec<Record>, ReadError> {
    let figures = detail == Detail::Figures;
    let no_channels = BTreeSet::new();
    let channels = if figures { &no_channels } else { channels };
    let b = BatchReader { batch };
    let n = batch.num_rows();
    // A column figures do not need: all null when only figures are read.
    let text = |name: &str| {
        if figures {
            Ok(vec![None; n])
        } else {
            b.strs(name)
        }
    };
    let list = |name: &str| {
        if figures {
            Ok(vec![None; n])
        } else {
            b.lists(name)
        }
    };
    let schema = b.u32s("schema")?;
    let query_id = b.strs("query_id")?;
    let index = b.u64s("index")?;
    let session = b.u64s("session")?;
    let dataset = b.strs("dataset")?;
    let subject = b.strs("subject")?;
    let category = b.strs("category")?;
    let prompt_hash = text("prompt_hash")?;
    let prompt = text("prompt")?;
    let answers = list("answers")?;
    let choices = list("choices")?;
    let model = b.strs("model")?;
    let backend = b.strs("backend")?;
    let response = text("response")?;
    let input_tokens = b.u64s("input_tokens")?;
    let output_tokens = b.u64s("output_tokens")?;
    let tokens_estimated = b.bools("tokens_estimated")?;
    let token_source = b.strs("token_source")?;
    let cached = b.u64s("cached_prompt_tokens")?;
    let cost_usd = b.f64s("cost_usd")?;
    let ttft_s = b.f64s("ttft_s")?;
    let latency_s = b.f64s("latency_s")?;
    let decode_tps = b.f64s("decode_tps")?;
    let finish_reason = text("finish_reason")?;
    let attempts = b.u32s("attempts")?;
    let started_at = b.times("started_at")?;
    let window_start = b.f64s("window_start_s")?;
    let window_end = b.f64s("window_end_s")?;
    let error_kind = b.strs("error_kind")?;
    let error_message = b.strs("error_message")?;
    let grader = b.strs("grade_grader")?;
    let wasm = text("grade_wasm_sha256")?;
    let score = b.f64s("grade_score")?;
    let parsed = b.bools("grade_parsed")?;
    let extracted = text("grade_extracted")?;
    let explanation = text("grade_explanation")?;
    let grade_error = b.strs("grade_error")?;
    let params = b.strs("grade_params")?;
    let history = text("grade_history")?;
    // Absent in files exported before classifiers.
    let optional_strs = |name: &str| match b.batch.column_by_name(name) {
        Some(_) => b.strs(name),
        None => Ok(vec![None; n]),
    };
    let domain = optional_strs("domain")?;
    let domain_history = if figures {
        vec![None; n]
    } else {
        optional_strs("domain_history")?
    };
    let gross = b.f64s("energy_gross_j")?;
    let net = b.f64s("energy_net_j")?;
    let gross_low = b.f64s("energy_gross_low_j")?;
    let gross_high = b.f64s("energy_gross_high_j")?;
    let net_low = b.f64s("energy_net_low_j")?;
    let net_high = b.f64s("energy_net_high_j")?;
    let prefill = b.f64s("energy_prefill_j")?;
    let decode = b.f64s("energy_decode_j")?;
    let prefill_net = b.f64s("energy_prefill_net_j")?;
    let decode_net = b.f64s("energy_decode_net_j")?;
    let mean_power = b.f64s("energy_mean_power_w")?;
    let j_per_token = b.f64s("energy_j_per_output_token")?;
    let estimated = b.bools("energy_estimated")?;
    let energy_flags = b.lists("energy_flags")?;
    let h_cpu = b.f64s("harness_cpu_s")?;
    let h_process = b.f64s("harness_process_cpu_s")?;
    let h_engine = b.f64s("harness_engine_cpu_s")?;
    let h_machine = b.f64s("harness_machine_cpu_s")?;
    // Absent in files exported before managed servers.
    let h_server = match b.batch.column_by_name("harness_server_cpu_s") {
        Some(_) => b.f64s("harness_server_cpu_s")?,
        None => vec![None; h_machine.len()],
    };
    struct ChannelCols {
        name: String,
        f: BTreeMap<&'static str, Vec<Option<f64>>>,
        flags: Vec<Option<Vec<String>>>,
        domain: Vec<Option<String>>,
    }
    let chans: Vec<ChannelCols> = channels
        .iter()
        .map(|name| {
            let mut f = BTreeMap::new();
            for suffix in CHANNEL_F64 {
                f.insert(suffix, b.f64s(&format!("energy_{name}_{suffix}"))?);
            }
            Ok(ChannelCols {
                name: name.clone(),
                f,
                flags: b.lists(&format!("energy_{name}_flags"))?,
                domain: b.strs(&format!("energy_{name}_domain"))?,
            })
        })
        .collect::<Result<_, ReadError>>()?;
    let bound = |lo: Option<f64>, hi: Option<f64>| lo.zip(hi).map(|(l, h)| [l, h]);
    let phases = |p: Option<f64>, d: Option<f64>, pn: Option<f64>, dn: Option<f64>| {
        p.zip(d).map(|(prefill_j, decode_j)| PhaseEnergy {
            prefill_j,
            decode_j,
            prefill_net_j: pn,
            decode_net_j: dn,
        })
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let schema_i = need(schema[i], "schema", i)?;
        if schema_i > RECORD_SCHEMA {
            return Err(format!(
                "row {i}: record schema {schema_i} is newer than this ipw reads ({RECORD_SCHEMA}); upgrade ipw"
            ));
        }
        let grade = match &grader[i] {
            None => None,
            Some(gr) => Some(GradeRecord {
                grader: gr.clone(),
                wasm_sha256: wasm[i].clone().unwrap_or_default(),
                score: score[i],
                parsed: need(parsed[i], "grade_parsed", i)?,
                extracted: extracted[i].clone(),
                explanation: explanation[i].clone(),
                error: grade_error[i].clone(),
                params: params[i]
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| format!("column `grade_params` row {i}: {e}"))?,
            }),
        };
        let grade_history: Vec<GradeRecord> = match &history[i] {
            None => Vec::new(),
            Some(t) => serde_json::from_str(t)
                .map_err(|e| format!("column `grade_history` row {i}: {e}"))?,
        };
        fn json_at<T: serde::de::DeserializeOwned>(
            col: &[Option<String>],
            name: &str,
            i: usize,
        ) -> Result<Option<T>, String> {
            col[i]
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| format!("column `{name}` row {i}: {e}"))
        }
        let domain: Option<DomainRecord> = json_at(&domain, "domain", i)?;
        let domain_history: Vec<DomainRecord> =
            json_at(&domain_history, "domain_history", i)?.unwrap_or_default();
        let energy = match estimated[i] {
            None => None,
            Some(estimated) => {
                let mut channels = BTreeMap::new();
                for c in &chans {
                    let Some(fl) = &c.flags[i] else { continue };
                    let v = |s: &str| c.f[s][i];
                    channels.insert(
                        c.name.clone(),
                        ChannelEnergy {
                            gross_j: v("gross_j"),
                            net_j: v("net_j"),
                            idle_w: v("idle_w"),
                            gross_bound_j: bound(v("gross_low_j"), v("gross_high_j")),
                            net_bound_j: bound(v("net_low_j"), v("net_high_j")),
                            phases: phases(
                                v("prefill_j"),
                                v("decode_j"),
                                v("prefill_net_j"),
                                v("decode_net_j"),
                            ),
                            flags: flags(fl, &format!("energy_{}_flags", c.name))?,
                            domain: c.domain[i]
                                .as_deref()
                                .map(|d| parse_text(d, &format!("energy_{}_domain", c.name)))
                                .transpose()?,
                        },
                    );
                }
                Some(QueryEnergy {
                    gross_j: gross[i],
                    net_j: net[i],
                    gross_bound_j: bound(gross_low[i], gross_high[i]),
                    net_bound_j: bound(net_low[i], net_high[i]),
                    phases: phases(prefill[i], decode[i], prefill_net[i], decode_net[i]),
                    mean_power_w: mean_power[i],
                    j_per_output_token: j_per_token[i],
                    estimated,
                    flags: flags(
                        energy_flags[i].as_deref().unwrap_or_default(),
                        "energy_flags",
                    )?,
                    channels,
                })
            }
        };
        let nanos = need(started_at[i], "started_at", i)?;
        out.push(Record {
            schema: schema_i,
            query_id: need(query_id[i].clone(), "query_id", i)?,
            index: need(index[i], "index", i)? as usize,
            session: need(session[i], "session", i)? as usize,
            dataset: need(dataset[i].clone(), "dataset", i)?,
            subject: subject[i].clone(),
            category: category[i].clone(),
            prompt_hash: if figures {
                String::new()
            } else {
                need(prompt_hash[i].clone(), "prompt_hash", i)?
            },
            prompt: if figures {
                String::new()
            } else {
                need(prompt[i].clone(), "prompt", i)?
            },
            answers: answers[i].clone().unwrap_or_default(),
            choices: choices[i].clone().unwrap_or_default(),
            model: need(model[i].clone(), "model", i)?,
            backend: need(backend[i].clone(), "backend", i)?,
            response: response[i].clone(),
            input_tokens: input_tokens[i],
            output_tokens: output_tokens[i],
            tokens_estimated: need(tokens_estimated[i], "tokens_estimated", i)?,
            token_source: token_source[i]
                .as_deref()
                .map(|s| parse_text::<TokenSource>(s, "token_source"))
                .transpose()?,
            cached_prompt_tokens: cached[i],
            cost_usd: cost_usd[i],
            ttft_s: ttft_s[i],
            latency_s: need(latency_s[i], "latency_s", i)?,
            decode_tps: decode_tps[i],
            finish_reason: finish_reason[i].clone(),
            attempts: need(attempts[i], "attempts", i)?,
            started_at: chrono::DateTime::from_timestamp_nanos(nanos),
            window: Window {
                start_s: need(window_start[i], "window_start_s", i)?,
                end_s: need(window_end[i], "window_end_s", i)?,
            },
            error: match (&error_kind[i], &error_message[i]) {
                (None, None) => None,
                (kind, message) => Some(QueryError {
                    kind: kind.clone().unwrap_or_default(),
                    message: message.clone().unwrap_or_default(),
                }),
            },
            grade,
            grade_history,
            domain,
            domain_history,
            energy,
            harness: h_cpu[i].map(|cpu_s| HarnessCpu {
                cpu_s,
                process_cpu_s: h_process[i].unwrap_or(cpu_s),
                engine_cpu_s: h_engine[i],
                machine_cpu_s: h_machine[i],
                server_cpu_s: h_server[i],
            }),
        });
    }
    Ok(out)
}

/// Every record in a `records.parquet` file, in row order, handed to `each` one batch at a
/// time (at most [`BATCH_ROWS`] records in memory).
pub fn read_records_file(
    path: &Path,
    each: impl FnMut(Vec<Record>) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    read_records_file_with(path, Detail::Full, each)
}

/// [`read_records_file`] at a level of `detail`: with [`Detail::Figures`] the columns figures
/// do not need are not even decoded.
pub fn read_records_file_with(
    path: &Path,
    detail: Detail,
    mut each: impl FnMut(Vec<Record>) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let meta = builder.schema().metadata();
    if let Some(v) = meta.get(META_SCHEMA) {
        match v.parse::<u32>() {
            Ok(found) if found > RECORD_SCHEMA => {
                return Err(format!(
                "record schema {found} is newer than this ipw reads ({RECORD_SCHEMA}); upgrade ipw"
            ))
            }
            Ok(_) => {}
            Err(_) => return Err(format!("metadata `{META_SCHEMA}` is `{v}`, not a number")),
        }
    }
    let channels: BTreeSet<String> = match meta.get(META_CHANNELS) {
        Some(text) => {
            serde_json::from_str(text).map_err(|e| format!("metadata `{META_CHANNELS}`: {e}"))?
        }
        // Written by another tool from an export: the channels are the `energy_<c>_flags`
        // columns that are not the record-wide `energy_flags`.
        None => builder
            .schema()
            .fields()
            .iter()
            .filter_map(|f| {
                f.name()
                    .strip_prefix("energy_")?
                    .strip_suffix("_flags")
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
            })
            .collect(),
    };
    let builder = if detail == Detail::Figures {
        // Exact names: a channel called `net` must not take `energy_net_j` with it.
        let per_channel: BTreeSet<String> = channels
            .iter()
            .flat_map(|c| {
                CHANNEL_F64
                    .iter()
                    .chain(&["flags", "domain"])
                    .map(move |suffix| format!("energy_{c}_{suffix}"))
            })
            .collect();
        let wanted: Vec<usize> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                let name = f.name().as_str();
                !NOT_FIGURES.contains(&name) && !per_channel.contains(name)
            })
            .map(|(i, _)| i)
            .collect();
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), wanted);
        builder.with_projection(mask)
    } else {
        builder
    };
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| e.to_string())?;
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        each(batch_records_with(&batch, &channels, detail)?)?;
    }
    Ok(())
}

/// A Parquet file being written: batches go to a temporary file beside `path`, renamed over
/// it by [`ParquetFile::finish`] (a reader, or a crash, sees the old file or the whole new one;
/// see [`super::AtomicFile`]).
pub struct ParquetFile {
    path: std::path::PathBuf,
    writer: parquet::arrow::ArrowWriter<super::AtomicFile>,
}

impl ParquetFile {
    /// Start writing `path` with `schema`: Snappy-compressed, a row group per
    /// [`BATCH_ROWS`] rows.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<Self, String> {
        use parquet::basic::Compression;
        use parquet::file::properties::WriterProperties;
        let file =
            super::AtomicFile::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(BATCH_ROWS))
            .set_created_by(format!("ipw {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Append a batch (written out as soon as a row group fills).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.writer
            .write(batch)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Close the file, sync it and rename it into place. Dropped unfinished (an error on the
    /// way), no half-written file is left behind.
    pub fn finish(self) -> Result<(), String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let file = self.writer.into_inner().map_err(|e| at(&e))?;
        file.commit().map_err(|e| at(&e))
    }
}
