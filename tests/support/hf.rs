//! Writing small datasets the way the Hugging Face hub stores them: Parquet shards with the
//! hub's nested column types (`list<string>`, `list<struct>`), built from JSON rows, and the
//! four schemas the recipes read. Shared by core's dataset unit tests (included by path) and
//! the binary's integration tests.
#![allow(dead_code)]

use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, ListArray, NullArray, RecordBatch, StringArray,
    StructArray, TimestampSecondArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A nullable text column.
pub fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

/// `list<item>`.
pub fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// `struct<fields>`.
pub fn structs(fields: Vec<Field>) -> DataType {
    DataType::Struct(Fields::from(fields))
}

/// An Arrow column of type `dt` from JSON values (missing or null = null).
fn column(dt: &DataType, values: &[&Value]) -> ArrayRef {
    match dt {
        DataType::Utf8 => Arc::new(StringArray::from(
            values.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
        )),
        DataType::Int64 => Arc::new(Int64Array::from(
            values.iter().map(|v| v.as_i64()).collect::<Vec<_>>(),
        )),
        DataType::Boolean => Arc::new(BooleanArray::from(
            values.iter().map(|v| v.as_bool()).collect::<Vec<_>>(),
        )),
        DataType::Timestamp(TimeUnit::Second, None) => Arc::new(TimestampSecondArray::from(
            values.iter().map(|v| v.as_i64()).collect::<Vec<_>>(),
        )),
        DataType::Null => Arc::new(NullArray::new(values.len())),
        DataType::List(item) => {
            let mut lengths = Vec::new();
            let mut valid = Vec::new();
            let mut flat: Vec<&Value> = Vec::new();
            for v in values {
                let items = v.as_array();
                lengths.push(items.map_or(0, Vec::len));
                valid.push(items.is_some());
                flat.extend(items.into_iter().flatten());
            }
            Arc::new(ListArray::new(
                item.clone(),
                OffsetBuffer::from_lengths(lengths),
                column(item.data_type(), &flat),
                Some(NullBuffer::from(valid)),
            ))
        }
        DataType::Struct(fields) => {
            let children = fields
                .iter()
                .map(|f| {
                    let vals: Vec<&Value> = values
                        .iter()
                        .map(|v| v.get(f.name()).unwrap_or(&Value::Null))
                        .collect();
                    column(f.data_type(), &vals)
                })
                .collect();
            Arc::new(StructArray::new(fields.clone(), children, None))
        }
        other => panic!("the test writer has no {other}"),
    }
}

/// Write `rows` as a Parquet file of `schema`, two rows per row group (so a shard has several).
pub fn write_parquet(path: &Path, schema: &[Field], rows: &[Value]) {
    let schema = Arc::new(Schema::new(schema.to_vec()));
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| {
            let vals: Vec<&Value> = rows
                .iter()
                .map(|r| r.get(f.name()).unwrap_or(&Value::Null))
                .collect();
            column(f.data_type(), &vals)
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(2))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

// ---- the four schemas -----------------------------------------------------------------------

/// TIGER-Lab/MMLU-Pro.
pub fn mmlu_pro_schema() -> Vec<Field> {
    vec![
        Field::new("question_id", DataType::Int64, true),
        utf8("question"),
        Field::new("options", list_of(DataType::Utf8), true),
        utf8("answer"),
        Field::new("answer_index", DataType::Int64, true),
        utf8("cot_content"),
        utf8("category"),
        utf8("src"),
    ]
}

/// m-a-p/SuperGPQA.
pub fn supergpqa_schema() -> Vec<Field> {
    vec![
        utf8("uuid"),
        utf8("question"),
        Field::new("options", list_of(DataType::Utf8), true),
        utf8("answer"),
        utf8("answer_letter"),
        utf8("discipline"),
        utf8("field"),
        utf8("subfield"),
        utf8("difficulty"),
        Field::new("is_calculation", DataType::Boolean, true),
    ]
}

/// facebook/natural_reasoning.
pub fn natural_reasoning_schema() -> Vec<Field> {
    vec![
        utf8("question"),
        utf8("reference_answer"),
        Field::new(
            "responses",
            list_of(structs(vec![utf8("response_model"), utf8("response")])),
            true,
        ),
    ]
}

/// allenai/WildChat-1M (the columns the recipe reads, a timestamp and a null column).
pub fn wildchat_schema() -> Vec<Field> {
    let turn = structs(vec![
        utf8("content"),
        utf8("role"),
        utf8("language"),
        Field::new("turn_identifier", DataType::Int64, true),
        Field::new("toxic", DataType::Boolean, true),
    ]);
    vec![
        utf8("conversation_hash"),
        utf8("model"),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            true,
        ),
        Field::new("conversation", list_of(turn), true),
        Field::new("turn", DataType::Int64, true),
        utf8("language"),
        Field::new("openai_moderation", DataType::Null, true),
        Field::new("toxic", DataType::Boolean, true),
        Field::new("redacted", DataType::Boolean, true),
    ]
}
