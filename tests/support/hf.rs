//! Writing small datasets the way the Hugging Face hub stores them: Parquet shards with the
//! hub's nested column types (`list<string>`, `list<struct>`), built from JSON rows.
#![allow(dead_code)]

use arrow_array::{
    ArrayRef, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema};
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

/// Write JSON `rows` as one Parquet file of `schema`.
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
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}
