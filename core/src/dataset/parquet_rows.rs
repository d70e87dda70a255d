//! Parquet dataset shards, read one record batch at a time (never the whole file), with only
//! the columns the mapping reads decoded. Each row becomes the JSON object a JSONL line would
//! be, so the field mapping ([`super::mapping`]) is the same for both.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::Array;
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde_json::{Map, Value};
use std::path::Path;

use super::DatasetError;

/// Rows per decoded batch: large enough to amortise decoding, small enough that a shard of
/// long conversations does not sit in memory at once.
const BATCH_ROWS: usize = 1024;

/// Call `each(row, object)` for every row of a Parquet file, `row` 1-based within the file.
/// Only the columns named in `keys` are decoded (those the file has).
pub fn for_each_row(
    path: &Path,
    keys: &[&str],
    mut each: impl FnMut(u64, &Map<String, Value>) -> Result<(), DatasetError>,
) -> Result<(), DatasetError> {
    let file_error = |message: String| DatasetError::File {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| DatasetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| file_error(format!("not a readable Parquet file: {e}")))?;
    // Top-level Arrow fields are the Parquet schema's roots, in the same order.
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| keys.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| file_error(format!("cannot read Parquet: {e}")))?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch
            .map_err(|e| file_error(format!("cannot decode the row group after row {row}: {e}")))?;
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            row += 1;
            let mut obj = Map::with_capacity(batch.num_columns());
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                let value = to_json(column.as_ref(), i).map_err(|m| DatasetError::Record {
                    path: path.to_path_buf(),
                    row,
                    message: format!("column `{}` {m}", field.name()),
                })?;
                obj.insert(field.name().clone(), value);
            }
            each(row, &obj)?;
        }
    }
    Ok(())
}

/// Value `i` of an Arrow array as JSON: strings, integers, floats, booleans, nulls, lists and
/// structs (nested as deep as they go), dictionary-encoded values by their value. Any other
/// type is an error saying which.
fn to_json(a: &dyn Array, i: usize) -> Result<Value, String> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    let number = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    Ok(match a.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i).into(),
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i).into(),
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i).into(),
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i).into(),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i).into(),
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i).into(),
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i).into(),
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(i).into(),
        DataType::Float32 => number(a.as_primitive::<Float32Type>().value(i) as f64),
        DataType::Float64 => number(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => a.as_string::<i32>().value(i).into(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).into(),
        DataType::Utf8View => a.as_string_view().value(i).into(),
        DataType::List(_) => list(a.as_list::<i32>().value(i).as_ref())?,
        DataType::LargeList(_) => list(a.as_list::<i64>().value(i).as_ref())?,
        DataType::FixedSizeList(_, _) => list(a.as_fixed_size_list().value(i).as_ref())?,
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let mut obj = Map::with_capacity(fields.len());
            for (field, column) in fields.iter().zip(s.columns()) {
                let v = to_json(column.as_ref(), i)
                    .map_err(|m| format!("field `{}` {m}", field.name()))?;
                obj.insert(field.name().clone(), v);
            }
            Value::Object(obj)
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let key = match to_json(d.keys(), i)? {
                Value::Number(n) => n.as_u64(),
                _ => None,
            };
            let key = key.ok_or("has a dictionary key that is not an index")? as usize;
            to_json(d.values().as_ref(), key)?
        }
        other => return Err(format!("has type {other}, which a dataset field cannot be")),
    })
}

fn list(values: &dyn Array) -> Result<Value, String> {
    (0..values.len())
        .map(|j| to_json(values, j).map_err(|m| format!("item {} {m}", j + 1)))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}
