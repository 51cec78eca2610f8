//! NDJSON decoding that never rounds a number into an integer column.
//!
//! arrow-json reads a number it cannot parse as a column's integer type
//! through `f64` and casts it, so `1.5` in an int64 column becomes `1` —
//! silently. Here integer columns are decoded as text instead (arrow-json
//! keeps a number's literal when it coerces it to a string) and parsed
//! exactly: an integer, or a float with no fraction within ±2^53 (`1.0`,
//! `1e3`); anything else is an error naming the column and the value,
//! which the caller turns into a 400 naming the line.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::reader::Decoder;

/// An arrow-json decoder for `schema` whose integer columns are exact.
pub(crate) struct JsonDecoder {
    inner: Decoder,
    /// The schema the batches have; `None` when it has no integer column
    /// (then the inner decoder reads it directly).
    exact: Option<SchemaRef>,
}

impl JsonDecoder {
    pub(crate) fn new(schema: &SchemaRef, batch_rows: usize) -> Result<Self, ArrowError> {
        let has_ints = schema.fields().iter().any(|f| f.data_type().is_integer());
        let decode_as = if has_ints {
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| match f.data_type().is_integer() {
                    true => f.as_ref().clone().with_data_type(DataType::Utf8),
                    false => f.as_ref().clone(),
                })
                .collect();
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        } else {
            schema.clone()
        };
        let inner = arrow::json::ReaderBuilder::new(decode_as)
            .with_batch_size(batch_rows)
            // A column inferred as a string also takes numbers and booleans.
            .with_coerce_primitive(true)
            .build_decoder()?;
        Ok(Self {
            inner,
            exact: has_ints.then(|| schema.clone()),
        })
    }

    pub(crate) fn decode(&mut self, data: &[u8]) -> Result<usize, ArrowError> {
        self.inner.decode(data)
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    pub(crate) fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(batch) = self.inner.flush()? else {
            return Ok(None);
        };
        let Some(schema) = &self.exact else {
            return Ok(Some(batch));
        };
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (f, col) in schema.fields().iter().zip(batch.columns()) {
            columns.push(match f.data_type().is_integer() {
                true => exact_integers(col, f)?,
                false => col.clone(),
            });
        }
        RecordBatch::try_new(schema.clone(), columns).map(Some)
    }
}

/// Text (number literals) to `field`'s integer type, exactly.
fn exact_integers(col: &ArrayRef, field: &Field) -> Result<ArrayRef, ArrowError> {
    let checked = CastOptions {
        safe: false,
        ..Default::default()
    };
    if let Ok(a) = cast_with_options(col, field.data_type(), &checked) {
        return Ok(a);
    }
    // Integral numbers written as floats are exact; anything else is not.
    let text = col.as_string::<i32>();
    let mut fixed = Vec::with_capacity(text.len());
    for v in text.iter() {
        fixed.push(match v {
            None => None,
            Some(t) => Some(integral(t).ok_or_else(|| not_integer(field, t))?),
        });
    }
    let fixed: ArrayRef = Arc::new(StringArray::from(fixed));
    cast_with_options(&fixed, field.data_type(), &checked).map_err(|_| {
        let bad = text
            .iter()
            .flatten()
            .find(|t| cast_one(t, field.data_type()).is_none())
            .unwrap_or("");
        ArrowError::JsonError(format!(
            "column {:?}: {bad} does not fit its type {}",
            field.name(),
            field.data_type()
        ))
    })
}

fn not_integer(field: &Field, t: &str) -> ArrowError {
    let shown: String = t.chars().take(40).collect();
    ArrowError::JsonError(format!(
        "column {:?} holds integers ({}), but {shown} is not one",
        field.name(),
        field.data_type()
    ))
}

/// `t` as an integer literal, when it is one exactly.
fn integral(t: &str) -> Option<String> {
    if let Ok(i) = t.parse::<i128>() {
        return Some(i.to_string());
    }
    let f: f64 = t.parse().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
        .then(|| format!("{}", f as i64))
}

fn cast_one(t: &str, to: &DataType) -> Option<()> {
    let a: ArrayRef = Arc::new(StringArray::from(vec![integral(t)?]));
    let checked = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(&a, to, &checked).ok().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::Int64Type;

    fn decode(schema: &SchemaRef, text: &str) -> Result<RecordBatch, ArrowError> {
        let mut d = JsonDecoder::new(schema, 1024)?;
        d.decode(text.as_bytes())?;
        Ok(d.flush()?.unwrap())
    }

    fn schema(t: DataType) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("v", t, true),
            Field::new("s", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn integers_are_exact_or_refused() {
        let s = schema(DataType::Int64);
        let b = decode(
            &s,
            "{\"v\": 1, \"s\": 2}\n{\"v\": -9007199254740993}\n{\"v\": 1e3}\n{\"v\": 2.0}\n{\"v\": null}\n{\"v\": \"7\"}\n",
        )
        .unwrap();
        assert_eq!(b.schema(), s);
        let v = b.column(0).as_primitive::<Int64Type>();
        assert_eq!(
            v,
            &Int64Array::from(vec![
                Some(1),
                Some(-9007199254740993),
                Some(1000),
                Some(2),
                None,
                Some(7)
            ])
        );
        assert_eq!(b.column(1).as_string::<i32>().value(0), "2");
        for bad in ["1.5", "1e-3", "1e300", "true", "\"x\""] {
            let e = decode(&s, &format!("{{\"v\": {bad}}}\n")).unwrap_err();
            assert!(e.to_string().contains("\"v\""), "{bad}: {e}");
        }
        let e = decode(&schema(DataType::Int8), "{\"v\": 300}\n").unwrap_err();
        assert!(e.to_string().contains("300"), "{e}");
    }
}
