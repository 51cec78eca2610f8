//! Schema evolution for `schema=merge`: the schema an ingest writes when it
//! may add columns to its dataset, and the batches conformed to it.
//!
//! The dataset's columns keep their names, order and types; the input's new
//! columns are added after them, nullable. An input column narrower than
//! the dataset's (int32 into int64, float32 into float64, a small integer
//! into float64, a decimal with fewer digits) is widened to the dataset's
//! type losslessly; an integer wider than the dataset's is narrowed with a
//! checked cast (a value out of range is a 400 naming the column). A
//! column of the dataset the input lacks is null in the new rows. Anything
//! else (text into a number column, a float into an integer, names that
//! differ only in case) is a conflict naming the columns.
//!
//! The table's own column types never change: Delta's `typeWidening`
//! feature is not one delta-rs reads, and a table it cannot read is not
//! one other engines can either (ARCHITECTURE.md, "Schema evolution").

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::IngestError;
use crate::fingerprint::canonical_type;

/// The schema an ingest with `schema=merge` writes into a dataset whose
/// schema is `table`; the differences that make it impossible otherwise.
pub fn merged(table: &Schema, input: &Schema) -> Result<SchemaRef, Vec<String>> {
    let mut problems = Vec::new();
    let mut fields: Vec<Field> = Vec::with_capacity(table.fields().len());
    for t in table.fields() {
        if let Ok(i) = input.field_with_name(t.name())
            && !fits(i.data_type(), t.data_type())
        {
            problems.push(format!(
                "column {:?} is {} in the dataset but {} in the input; merge adds columns and widens \
                 the input to the dataset's types, it does not change a column's type",
                t.name(),
                canonical_type(t.data_type()),
                canonical_type(i.data_type())
            ));
        }
        fields.push(t.as_ref().clone().with_nullable(true));
    }
    for i in input.fields() {
        if table.field_with_name(i.name()).is_ok() {
            continue;
        }
        // Delta (like Spark) resolves column names ignoring case.
        if let Some(t) = table
            .fields()
            .iter()
            .find(|t| t.name().eq_ignore_ascii_case(i.name()))
        {
            problems.push(format!(
                "column {:?} of the input differs from the dataset's {:?} only in case",
                i.name(),
                t.name()
            ));
            continue;
        }
        fields.push(i.as_ref().clone().with_nullable(true));
    }
    if problems.is_empty() {
        Ok(Arc::new(Schema::new(fields)))
    } else {
        Err(problems)
    }
}

/// Whether an input column of type `from` can be written into a dataset
/// column of type `to` without changing its values.
fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if canonical_type(from) == canonical_type(to) || from.is_null() {
        return true;
    }
    let int_rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    match (from, to) {
        // Widening, and narrowing with a checked cast.
        (a, b) if int_rank(a).is_some() && int_rank(b).is_some() => true,
        (Float32, Float64) => true,
        (Int8 | Int16 | Int32, Float64) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        _ => false,
    }
}

/// `batch` with `schema`'s columns: the batch's own (cast where its type
/// differs), nulls for the ones it lacks.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, IngestError> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    // Checked: a value the dataset's type cannot hold is an error, not a null.
    let checked = CastOptions {
        safe: false,
        ..Default::default()
    };
    for f in schema.fields() {
        let col = match batch.column_by_name(f.name()) {
            None => new_null_array(f.data_type(), rows),
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => cast_with_options(c, f.data_type(), &checked).map_err(|e| {
                IngestError::BadData(format!(
                    "column {:?}: a value does not fit the dataset's type {}: {e}",
                    f.name(),
                    canonical_type(f.data_type())
                ))
            })?,
        };
        columns.push(col);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| IngestError::Internal(format!("conforming a batch to the merged schema: {e}")))
}

/// For text input (CSV, NDJSON) under `schema=merge`: the inferred schema
/// with the dataset's type for each column the dataset has, so values are
/// parsed as the dataset's types (a value that does not parse is a 400
/// naming its line) and only the new columns keep their inferred types.
pub fn with_table_types(inferred: &Schema, table: &Schema) -> SchemaRef {
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| match table.field_with_name(f.name()) {
            Ok(t) if !t.data_type().is_null() => f
                .as_ref()
                .clone()
                .with_data_type(t.data_type().clone())
                .with_nullable(true),
            _ => f.as_ref().clone().with_nullable(true),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Float32Array, Int32Array, Int64Array, StringArray};

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn new_columns_come_after_the_datasets_and_types_stay() {
        let table = schema(&[("id", DataType::Int64), ("v", DataType::Float64)]);
        let input = schema(&[
            ("note", DataType::Utf8),
            ("v", DataType::Float32),
            ("id", DataType::Int32),
        ]);
        let m = merged(&table, &input).unwrap();
        let names: Vec<_> = m.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", "v", "note"]);
        assert_eq!(m.field(0).data_type(), &DataType::Int64);
        assert_eq!(m.field(1).data_type(), &DataType::Float64);
        // The same input again merges to the same schema: nothing changes.
        assert_eq!(merged(&m, &input).unwrap(), m);
    }

    #[test]
    fn incompatible_columns_are_named() {
        let table = schema(&[
            ("id", DataType::Int64),
            ("name", DataType::Utf8),
            ("v", DataType::Int32),
        ]);
        let input = schema(&[
            ("id", DataType::Utf8),
            ("NAME", DataType::Utf8),
            ("v", DataType::Float64),
        ]);
        let problems = merged(&table, &input).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("\"id\" is int64 in the dataset but utf8"));
        assert!(problems[1].contains("\"v\" is int32 in the dataset but float64"));
        assert!(problems[2].contains("\"NAME\"") && problems[2].contains("only in case"));
    }

    #[test]
    fn decimals_widen_only_without_losing_digits() {
        assert!(fits(
            &DataType::Decimal128(10, 2),
            &DataType::Decimal128(12, 2)
        ));
        assert!(fits(
            &DataType::Decimal128(10, 2),
            &DataType::Decimal128(11, 3)
        ));
        assert!(!fits(
            &DataType::Decimal128(10, 2),
            &DataType::Decimal128(10, 3)
        ));
        assert!(!fits(&DataType::Int64, &DataType::Float64));
        assert!(!fits(&DataType::Float64, &DataType::Float32));
    }

    #[test]
    fn conform_casts_fills_and_checks() {
        let target = Arc::new(schema(&[
            ("id", DataType::Int32),
            ("v", DataType::Float64),
            ("note", DataType::Utf8),
        ]));
        let input = Arc::new(schema(&[("v", DataType::Float32), ("id", DataType::Int64)]));
        let b = RecordBatch::try_new(
            input.clone(),
            vec![
                Arc::new(Float32Array::from(vec![1.5, 2.5])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let out = conform(&b, &target).unwrap();
        assert_eq!(out.schema(), target);
        let ids = out.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2]);
        let notes = out
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(notes.null_count(), 2);

        let too_big = RecordBatch::try_new(
            input,
            vec![
                Arc::new(Float32Array::from(vec![1.0])),
                Arc::new(Int64Array::from(vec![i64::MAX])),
            ],
        )
        .unwrap();
        let e = conform(&too_big, &target).unwrap_err();
        assert!(
            matches!(e, IngestError::BadData(ref m) if m.contains("\"id\"")),
            "{e}"
        );
    }
}
