//! Reading the dataset an index follows: its schema checked against the
//! index's columns (at create), and its Parquet objects turned into items,
//! one record batch at a time, reading only the columns the index uses
//! (ranged reads of those column chunks, through the same `ObjectStore` as
//! every other reader).
//!
//! Column rules:
//! - the vector column is `fixed_size_list` or `list` (or `large_list`) of
//!   `float32` or `float64` (narrowed to `float32`);
//! - the text column is `utf8` (or `large_utf8`, `utf8_view`);
//! - the id column and the metadata columns are scalars that have a text
//!   form (numbers, strings, booleans, dates, times, decimals): a hit's `id`
//!   is that text, its metadata the values as JSON (numbers as numbers).
//!
//! A row whose id, vector (or, when the vectors are embedded, text) is null
//! is no item; it is counted as skipped. An object written before a column
//! was added (schema evolution) reads that column as null. A present vector
//! of the wrong length, or with a null, NaN or infinite value (or all zeros
//! in a cosine index), fails the object, naming it and the row.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float32Type, Float64Type, Schema, SchemaRef};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use lakehouse_catalogd::ObjectRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use serde_json::{Map, Value};

use crate::api::{IndexSpec, SourceSpec};
use crate::batch::check_vector;
use crate::error::{Result, VectorError};
use crate::service::path;
use crate::state::item_key;

/// Rows per record batch read (and per engine insert).
const BATCH_ROWS: usize = 4096;

fn invalid(msg: String) -> VectorError {
    VectorError::InvalidSource(msg)
}

/// One dataset object as Parquet input: ranged reads through the store
/// (the footer, then only the projected column chunks).
#[derive(Clone)]
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl ObjectReader {
    fn new(store: &Arc<dyn ObjectStore>, obj: &ObjectRef) -> Result<Self> {
        Ok(Self {
            store: store.clone(),
            path: path(&obj.key)?,
            size: obj.size,
        })
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let opts = options.map(|o| o.metadata_options().clone());
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_metadata_options(opts)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The shape of a vector column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `fixed_size_list` of this many values.
    Fixed(usize),
    /// `list` / `large_list`: each row its own length.
    Ragged,
}

/// The vector column's shape, or why the type is not one.
pub(crate) fn vector_shape(name: &str, t: &DataType) -> Result<Shape> {
    let (item, shape) = match t {
        DataType::FixedSizeList(f, n) => (f.data_type(), Shape::Fixed((*n).max(0) as usize)),
        DataType::List(f) | DataType::LargeList(f) => (f.data_type(), Shape::Ragged),
        other => {
            return Err(invalid(format!(
                "column {name:?} is {other}; a vector column is a fixed_size_list or list of \
                 float32 or float64"
            )));
        }
    };
    match item {
        DataType::Float32 | DataType::Float64 => Ok(shape),
        other => Err(invalid(format!(
            "column {name:?} holds {other}; a vector column holds float32 or float64"
        ))),
    }
}

fn check_text(name: &str, t: &DataType) -> Result<()> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(()),
        other => Err(invalid(format!(
            "column {name:?} is {other}; a text column is utf8"
        ))),
    }
}

/// Id and metadata columns: scalars with a text form.
fn check_scalar(name: &str, what: &str, t: &DataType) -> Result<()> {
    let scalar = !t.is_nested()
        && !matches!(
            t,
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
                | DataType::Null
                | DataType::Dictionary(..)
        )
        && arrow::compute::can_cast_types(t, &DataType::Utf8);
    if scalar {
        Ok(())
    } else {
        Err(invalid(format!(
            "column {name:?} is {t}; an {what} column is a scalar (number, string, boolean, \
             date, time or decimal)"
        )))
    }
}

/// Checks every column the index names against a dataset schema; returns
/// the vector column's shape (`None` when the vectors are embedded).
pub(crate) fn check_schema(s: &SourceSpec, schema: &Schema) -> Result<Option<Shape>> {
    let field = |name: &str| {
        schema.field_with_name(name).map_err(|_| {
            invalid(format!(
                "dataset {:?} has no column {name:?}",
                s.dataset.as_deref().unwrap_or_default()
            ))
        })
    };
    let id = s.id_column.as_deref().unwrap_or_default();
    check_scalar(id, "id", field(id)?.data_type())?;
    for m in &s.metadata_columns {
        check_scalar(m, "metadata", field(m)?.data_type())?;
    }
    if let Some(t) = &s.text_column {
        check_text(t, field(t)?.data_type())?;
    }
    match &s.column {
        Some(c) => Ok(Some(vector_shape(c, field(c)?.data_type())?)),
        None => Ok(None),
    }
}

/// The Arrow schema of one dataset object (its footer only).
pub(crate) async fn object_schema(
    store: &Arc<dyn ObjectStore>,
    obj: &ObjectRef,
) -> Result<SchemaRef> {
    let builder = ParquetRecordBatchStreamBuilder::new(ObjectReader::new(store, obj)?)
        .await
        .map_err(|source| read_error(obj, source))?;
    Ok(builder.schema().clone())
}

fn read_error(obj: &ObjectRef, source: parquet::errors::ParquetError) -> VectorError {
    VectorError::ReadObject {
        key: obj.key.clone(),
        source,
    }
}

/// Which of the index's columns an object has, by name.
#[derive(Debug, Clone)]
struct Present {
    id: bool,
    vector: bool,
    text: bool,
    metadata: Vec<String>,
}

/// Reads one object's rows as items, a record batch at a time.
pub(crate) struct ObjectRows {
    obj: ObjectRef,
    file: u64,
    stream: ParquetRecordBatchStream<ObjectReader>,
    present: Present,
    spec: IndexSpec,
    next_row: u64,
}

/// The items of one record batch: for item `i`, its key, id, metadata,
/// text (with a text column) and vector (`values[i * dim..]`; empty when
/// the vectors are to be embedded from the texts).
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub keys: Vec<u64>,
    pub ids: Vec<String>,
    pub metadata: Vec<Option<Map<String, Value>>>,
    pub texts: Vec<Option<String>>,
    pub values: Vec<f32>,
    /// Rows that are no item (a null id, vector or embedded text).
    pub skipped: u64,
}

impl ObjectRows {
    /// Opens object `obj` (numbered `file` in the index), projecting the
    /// index's columns; checks their types in this object.
    pub async fn open(
        store: &Arc<dyn ObjectStore>,
        obj: &ObjectRef,
        file: u64,
        spec: &IndexSpec,
    ) -> Result<Self> {
        let builder = ParquetRecordBatchStreamBuilder::new(ObjectReader::new(store, obj)?)
            .await
            .map_err(|source| read_error(obj, source))?;
        let schema = builder.schema().clone();
        let s = &spec.source;
        let has = |c: &Option<String>| c.as_ref().is_some_and(|c| schema.index_of(c).is_ok());
        let present = Present {
            id: has(&s.id_column),
            vector: has(&s.column),
            text: has(&s.text_column),
            metadata: s
                .metadata_columns
                .iter()
                .filter(|c| schema.index_of(c).is_ok())
                .cloned()
                .collect(),
        };
        let in_object = |e: VectorError| invalid(format!("object {}: {e}", obj.key));
        let mut roots = Vec::new();
        let mut wanted: Vec<&str> = present.metadata.iter().map(String::as_str).collect();
        for (c, here) in [
            (&s.id_column, present.id),
            (&s.column, present.vector),
            (&s.text_column, present.text),
        ] {
            if let (Some(c), true) = (c, here) {
                wanted.push(c);
            }
        }
        for c in wanted {
            let i = schema.index_of(c).map_err(|e| invalid(e.to_string()))?;
            let t = schema.field(i).data_type();
            let checked = if Some(c) == s.column.as_deref() {
                vector_shape(c, t).map(|_| ())
            } else if Some(c) == s.text_column.as_deref() {
                check_text(c, t)
            } else if Some(c) == s.id_column.as_deref() {
                check_scalar(c, "id", t)
            } else {
                check_scalar(c, "metadata", t)
            };
            checked.map_err(in_object)?;
            roots.push(i);
        }
        roots.sort_unstable();
        roots.dedup();
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let stream = builder
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| read_error(obj, source))?;
        Ok(Self {
            obj: obj.clone(),
            file,
            stream,
            present,
            spec: spec.clone(),
            next_row: 0,
        })
    }

    /// How many rows have been read.
    pub fn rows_read(&self) -> u64 {
        self.next_row
    }

    /// The next record batch's items; `None` at the end. Decoding is
    /// CPU-heavy: drive this from a blocking thread.
    pub async fn next(&mut self) -> Result<Option<Rows>> {
        let Some(batch) = self.stream.next().await else {
            return Ok(None);
        };
        let batch = batch.map_err(|source| read_error(&self.obj, source))?;
        let first = self.next_row;
        self.next_row += batch.num_rows() as u64;
        if self.next_row > 1 << crate::state::ROW_BITS {
            return Err(invalid(format!(
                "object {} has more than 2^32 rows",
                self.obj.key
            )));
        }
        self.rows(&batch, first).map(Some)
    }

    /// Turns one record batch (whose first row is row `first` of the
    /// object) into items.
    fn rows(&self, b: &RecordBatch, first: u64) -> Result<Rows> {
        let s = &self.spec.source;
        let col = |c: &Option<String>, here: bool| -> Option<&ArrayRef> {
            c.as_ref()
                .filter(|_| here)
                .and_then(|c| b.column_by_name(c))
        };
        let ids = col(&s.id_column, self.present.id)
            .map(|c| arrow::compute::cast(c, &DataType::Utf8))
            .transpose()
            .map_err(|e| invalid(format!("object {}: id column: {e}", self.obj.key)))?;
        let ids: Option<&StringArray> = ids.as_ref().map(|a| a.as_string::<i32>());
        let texts = col(&s.text_column, self.present.text)
            .map(|c| arrow::compute::cast(c, &DataType::Utf8))
            .transpose()
            .map_err(|e| invalid(format!("object {}: text column: {e}", self.obj.key)))?;
        let texts: Option<&StringArray> = texts.as_ref().map(|a| a.as_string::<i32>());
        let vectors = col(&s.column, self.present.vector);
        let embedded = s.column.is_none();
        let metadata = metadata_rows(b, &self.present.metadata)
            .map_err(|e| invalid(format!("object {}: metadata: {e}", self.obj.key)))?;
        let mut out = Rows::default();
        let mut scratch = Vec::new();
        for row in 0..b.num_rows() {
            let id = ids.filter(|a| !a.is_null(row)).map(|a| a.value(row));
            let text = texts.filter(|a| !a.is_null(row)).map(|a| a.value(row));
            let at = |reason: String| {
                invalid(format!(
                    "object {} row {}: {reason}",
                    self.obj.key,
                    first + row as u64
                ))
            };
            let vector = match vectors {
                Some(c) => vector_at(c, row, &mut scratch).map_err(at)?,
                None => None,
            };
            let usable = id.is_some()
                && if embedded {
                    text.is_some()
                } else {
                    vector.is_some()
                };
            let (Some(id), true) = (id, usable) else {
                out.skipped += 1;
                continue;
            };
            if let Some(v) = vector {
                check_vector(&self.spec, v).map_err(at)?;
                out.values.extend_from_slice(v);
            }
            out.keys.push(item_key(self.file, first + row as u64));
            out.ids.push(id.to_string());
            out.texts.push(text.map(str::to_string));
            out.metadata
                .push(metadata.as_ref().and_then(|m| m[row].clone()));
        }
        Ok(out)
    }
}

/// Row `row` of a vector column: `None` when null, its values (narrowed to
/// `f32`) otherwise, or why they are refused (a null element).
fn vector_at<'a>(
    c: &'a ArrayRef,
    row: usize,
    scratch: &'a mut Vec<f32>,
) -> std::result::Result<Option<&'a [f32]>, String> {
    if c.is_null(row) {
        return Ok(None);
    }
    let values: ArrayRef = match c.data_type() {
        DataType::FixedSizeList(..) => c.as_fixed_size_list().value(row),
        DataType::LargeList(_) => c.as_list::<i64>().value(row),
        _ => c.as_list::<i32>().value(row),
    };
    if let Some(j) = (0..values.len()).find(|&j| values.is_null(j)) {
        return Err(format!("vector[{j}] is null"));
    }
    scratch.clear();
    match values.data_type() {
        DataType::Float32 => {
            scratch.extend_from_slice(values.as_primitive::<Float32Type>().values())
        }
        DataType::Float64 => scratch.extend(
            values
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|x| *x as f32),
        ),
        other => return Err(format!("the vector holds {other}")),
    }
    Ok(Some(scratch.as_slice()))
}

/// One metadata object (or none) per row.
type MetadataRows = Vec<Option<Map<String, Value>>>;

/// Each row's metadata object (its non-null values), or `None` without
/// metadata columns.
fn metadata_rows(
    b: &RecordBatch,
    columns: &[String],
) -> std::result::Result<Option<MetadataRows>, String> {
    if columns.is_empty() {
        return Ok(None);
    }
    let projected: Vec<(&str, ArrayRef)> = columns
        .iter()
        .filter_map(|c| b.column_by_name(c).map(|a| (c.as_str(), a.clone())))
        .collect();
    let rb = RecordBatch::try_from_iter(projected).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&rb)
            .and_then(|()| w.finish())
            .map_err(|e| e.to_string())?;
    }
    let rows: MetadataRows = buf
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_slice::<Map<String, Value>>(line)
                .map(|m| (!m.is_empty()).then_some(m))
                .map_err(|e| e.to_string())
        })
        .collect::<std::result::Result<_, _>>()?;
    if rows.len() != b.num_rows() {
        return Err(format!(
            "{} metadata rows for {} rows",
            rows.len(),
            b.num_rows()
        ));
    }
    Ok(Some(rows))
}

/// The length of the first non-null vector of `column` in `objects` (in
/// order), to infer a `list` column's dimension; `None` if all are null.
pub(crate) async fn first_vector_len(
    store: &Arc<dyn ObjectStore>,
    objects: &[ObjectRef],
    spec: &IndexSpec,
) -> Result<Option<usize>> {
    let Some(column) = spec.source.column.clone() else {
        return Ok(None);
    };
    // Only the vector column, and no checks on values.
    let probe = IndexSpec {
        source: SourceSpec {
            dataset: spec.source.dataset.clone(),
            column: Some(column.clone()),
            ..SourceSpec::default()
        },
        ..spec.clone()
    };
    for obj in objects {
        let mut r = ObjectRows::open(store, obj, 0, &probe).await?;
        while let Some(batch) = r.stream.next().await {
            let batch = batch.map_err(|source| read_error(obj, source))?;
            let Some(c) = batch.column_by_name(&column) else {
                break;
            };
            let mut scratch = Vec::new();
            for row in 0..batch.num_rows() {
                if let Ok(Some(v)) = vector_at(c, row, &mut scratch) {
                    return Ok(Some(v.len()));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, ListArray};
    use arrow::datatypes::Field;

    #[test]
    fn column_types_are_checked_by_name() {
        let list_f64 = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
        let fixed =
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 4);
        assert_eq!(vector_shape("v", &fixed).unwrap(), Shape::Fixed(4));
        assert_eq!(vector_shape("v", &list_f64).unwrap(), Shape::Ragged);
        let ints = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let e = vector_shape("v", &ints).unwrap_err().to_string();
        assert!(e.contains("\"v\" holds Int32"), "{e}");
        assert!(vector_shape("v", &DataType::Utf8).is_err());
        assert!(check_text("t", &DataType::LargeUtf8).is_ok());
        assert!(check_text("t", &DataType::Int64).is_err());
        assert!(check_scalar("id", "id", &DataType::Int64).is_ok());
        assert!(check_scalar("id", "id", &DataType::Date32).is_ok());
        let e = check_scalar("id", "id", &list_f64).unwrap_err().to_string();
        assert!(e.contains("\"id\""), "{e}");
        assert!(check_scalar("b", "metadata", &DataType::Binary).is_err());
    }

    #[test]
    fn vectors_and_metadata_of_a_batch() {
        let lists = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            None,
            Some(vec![Some(0.5), None]),
        ]);
        let c: ArrayRef = Arc::new(lists);
        let mut scratch = Vec::new();
        assert_eq!(
            vector_at(&c, 0, &mut scratch).unwrap(),
            Some(&[1.0, 2.0][..])
        );
        assert_eq!(vector_at(&c, 1, &mut scratch).unwrap(), None);
        assert!(
            vector_at(&c, 2, &mut scratch)
                .unwrap_err()
                .contains("vector[1]")
        );
        let b = RecordBatch::try_from_iter(vec![
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from(vec![Some(0.5), None, None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let md = metadata_rows(&b, &["n".to_string(), "x".to_string()])
            .unwrap()
            .unwrap();
        assert_eq!(
            md[0].as_ref().map(|m| Value::Object(m.clone())),
            Some(serde_json::json!({"n": 1, "x": 0.5}))
        );
        assert_eq!(md[1], None);
        assert_eq!(
            md[2].as_ref().map(|m| Value::Object(m.clone())),
            Some(serde_json::json!({"n": 3}))
        );
    }
}
