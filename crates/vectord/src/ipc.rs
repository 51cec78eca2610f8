//! Arrow IPC stream bodies (`application/vnd.apache.arrow.stream`): the fast
//! path for batch adds and batch searches, where a vector travels as its raw
//! little-endian floats instead of decimal text.
//!
//! Adds: one row per item, columns
//! - `id`: `utf8` (or `large_utf8` / `utf8_view`), not null;
//! - `vector`: `fixed_size_list<float32>` (or `list` / `large_list`; `float64`
//!   values are narrowed to `float32` as JSON numbers are);
//! - `metadata` (optional): a `utf8` column of JSON objects, or a `struct`
//!   column whose fields become the object's keys; null = no metadata.
//!
//! Searches: one row per query with a `vector` column of the same types.
//!
//! Any other column, or a bad type, is an [`VectorError::InvalidBody`]; a null
//! id or vector is an [`VectorError::InvalidItem`] naming its row (counted
//! across record batches).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, ListArray, RecordBatch,
    StringArray, StructArray,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Schema};
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::error::{Result, VectorError};

pub const CONTENT_TYPE: &str = "application/vnd.apache.arrow.stream";

fn invalid(msg: impl Into<String>) -> VectorError {
    VectorError::InvalidBody(msg.into())
}

/// Reads every record batch of an IPC stream.
///
/// The push decoder only holds bytes that are there: `StreamReader`
/// allocates each message's declared body length up front, so a corrupt
/// length aborted the process (found by `fuzz_add_bodies`). The decoder
/// validates buffers against the schema; a panic inside it (hostile input)
/// is still a 400.
fn read_stream(body: Bytes) -> Result<Vec<RecordBatch>> {
    if body.starts_with(b"ARROW1") {
        return Err(invalid(
            "this is the Arrow IPC file format; send the stream format \
             (application/vnd.apache.arrow.stream)",
        ));
    }
    let read = move || -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
        let mut decoder = StreamDecoder::new();
        let mut buf = Buffer::from(body);
        let mut out = Vec::new();
        while !buf.is_empty() {
            if let Some(b) = decoder.decode(&mut buf)? {
                out.push(b);
            }
        }
        decoder.finish()?;
        Ok(out)
    };
    match std::panic::catch_unwind(read) {
        Ok(Ok(batches)) => Ok(batches),
        Ok(Err(e)) => Err(invalid(format!("not a valid Arrow IPC stream: {e}"))),
        Err(_) => Err(invalid("not a valid Arrow IPC stream")),
    }
}

/// Decodes an add body into a [`Batch`].
pub fn decode_add(body: Bytes) -> Result<Batch> {
    let batches = read_stream(body)?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = Batch::with_capacity(rows.min(crate::limits::MAX_BATCH), 0);
    if rows > crate::limits::MAX_BATCH {
        return Err(VectorError::BatchTooLarge {
            got: rows,
            limit: crate::limits::MAX_BATCH,
        });
    }
    let mut first_row = 0;
    for b in &batches {
        append_record_batch(b, first_row, &mut out)?;
        first_row += b.num_rows();
    }
    Ok(out)
}

/// Appends the rows of one record batch with the add columns (whose first
/// row is item `first_row` of the body) to `out`.
pub fn append_record_batch(b: &RecordBatch, first_row: usize, out: &mut Batch) -> Result<()> {
    let schema = b.schema();
    for f in schema.fields() {
        if !["id", "vector", "metadata"].contains(&f.name().as_str()) {
            return Err(invalid(format!(
                "unexpected column {:?}; an add takes id, vector and metadata",
                f.name()
            )));
        }
    }
    let column = |name: &str| schema.index_of(name).ok().map(|i| b.column(i));
    let ids = column("id").ok_or_else(|| invalid("the body has no `id` column"))?;
    let ids = strings(ids, "id")?;
    let vectors = column("vector").ok_or_else(|| invalid("the body has no `vector` column"))?;
    let vectors = Vectors::new(vectors)?;
    let metadata = match column("metadata") {
        Some(c) => metadata_rows(c)?,
        None => vec![Ok(None); b.num_rows()],
    };
    if metadata.len() != b.num_rows() {
        // Never drop rows silently.
        return Err(invalid(format!(
            "column \"metadata\" gave {} rows of {}",
            metadata.len(),
            b.num_rows()
        )));
    }
    let mut scratch = Vec::new();
    for (row, md) in metadata.into_iter().enumerate() {
        let bad = |reason: String| VectorError::InvalidItem {
            position: first_row + row,
            id: if ids.is_null(row) {
                String::new()
            } else {
                ids.value(row).to_string()
            },
            reason,
        };
        if ids.is_null(row) {
            return Err(bad("the id is null".to_string()));
        }
        let v = vectors.row(row, &mut scratch).map_err(bad)?;
        let md = md.map_err(bad)?;
        out.push(ids.value(row).to_string(), v, md);
    }
    Ok(())
}

/// A string column as `utf8`.
fn strings(c: &ArrayRef, name: &str) -> Result<StringArray> {
    match c.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = arrow::compute::cast(c, &DataType::Utf8)
                .map_err(|e| invalid(format!("column {name:?}: {e}")))?;
            Ok(s.as_string::<i32>().clone())
        }
        other => Err(invalid(format!(
            "column {name:?} must be utf8, not {other}"
        ))),
    }
}

/// The `vector` column, read row by row without copying when it is
/// `fixed_size_list<float32>`.
enum Vectors<'a> {
    Fixed {
        list: &'a FixedSizeListArray,
        values: Option<&'a Float32Array>,
    },
    Other(&'a ArrayRef),
}

impl<'a> Vectors<'a> {
    fn new(c: &'a ArrayRef) -> Result<Self> {
        let item = match c.data_type() {
            DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f) => {
                f.data_type()
            }
            other => {
                return Err(invalid(format!(
                    "column \"vector\" must be a list of float32, not {other}"
                )));
            }
        };
        if !matches!(item, DataType::Float32 | DataType::Float64) {
            return Err(invalid(format!(
                "column \"vector\" must hold float32 (or float64), not {item}"
            )));
        }
        Ok(match c.data_type() {
            DataType::FixedSizeList(..) => {
                let list = c.as_fixed_size_list();
                let values = list.values().as_primitive_opt::<Float32Type>();
                Vectors::Fixed { list, values }
            }
            _ => Vectors::Other(c),
        })
    }

    /// Row `row`'s values (`scratch` holds them when they must be converted).
    fn row<'s>(
        &'s self,
        row: usize,
        scratch: &'s mut Vec<f32>,
    ) -> std::result::Result<&'s [f32], String> {
        if let Vectors::Fixed {
            list,
            values: Some(values),
        } = self
        {
            if list.is_null(row) {
                return Err("the vector is null".into());
            }
            let n = list.value_length() as usize;
            let start = list.value_offset(row) as usize;
            if let Some(j) = (start..start + n).find(|&j| values.is_null(j)) {
                return Err(format!("vector[{}] is null", j - start));
            }
            return Ok(&values.values()[start..start + n]);
        }
        let v = match self {
            Vectors::Fixed { list, .. } if list.is_null(row) => None,
            Vectors::Fixed { list, .. } => Some(list.value(row)),
            Vectors::Other(c) if c.is_null(row) => None,
            Vectors::Other(c) => Some(match c.data_type() {
                DataType::LargeList(_) => c.as_list::<i64>().value(row),
                _ => c.as_list::<i32>().value(row),
            }),
        };
        let v = v.ok_or_else(|| "the vector is null".to_string())?;
        if let Some(j) = (0..v.len()).find(|&j| v.is_null(j)) {
            return Err(format!("vector[{j}] is null"));
        }
        scratch.clear();
        match v.data_type() {
            DataType::Float32 => {
                scratch.extend_from_slice(v.as_primitive::<Float32Type>().values())
            }
            _ => scratch.extend(
                v.as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|x| *x as f32),
            ),
        }
        Ok(scratch.as_slice())
    }
}

/// One metadata object (or none) per row, or why that row's is refused.
type MetadataRows = Vec<std::result::Result<Option<Map<String, Value>>, String>>;

fn metadata_rows(c: &ArrayRef) -> Result<MetadataRows> {
    let object = |text: &[u8]| {
        serde_json::from_slice::<Map<String, Value>>(text)
            .map(Some)
            .map_err(|e| format!("metadata is not a JSON object: {e}"))
    };
    match c.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = strings(c, "metadata")?;
            Ok((0..s.len())
                .map(|row| match s.is_null(row) {
                    true => Ok(None),
                    false => object(s.value(row).as_bytes()),
                })
                .collect())
        }
        DataType::Struct(_) => {
            let st: &StructArray = c.as_struct();
            let rb = RecordBatch::from(st.clone());
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                w.write(&rb)
                    .and_then(|()| w.finish())
                    .map_err(|e| invalid(format!("column \"metadata\": {e}")))?;
            }
            let lines = buf.split(|c| *c == b'\n').filter(|l| !l.is_empty());
            Ok(lines
                .enumerate()
                .map(|(row, line)| match st.is_null(row) {
                    true => Ok(None),
                    false => object(line),
                })
                .collect())
        }
        other => Err(invalid(format!(
            "column \"metadata\" must be utf8 (JSON objects) or a struct, not {other}"
        ))),
    }
}

/// A vector column: `fixed_size_list<float32>` when every vector has the same
/// length, else `list<float32>`.
fn vector_column(values: &[f32], offsets: &[usize]) -> Result<ArrayRef> {
    let lens: Vec<usize> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
    let uniform = lens
        .first()
        .copied()
        .filter(|d| lens.iter().all(|l| l == d));
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vals = Arc::new(Float32Array::from(values.to_vec()));
    let internal = |e: arrow::error::ArrowError| VectorError::Internal(e.to_string());
    Ok(match uniform {
        Some(d) => {
            Arc::new(FixedSizeListArray::try_new(item, d as i32, vals, None).map_err(internal)?)
        }
        None => Arc::new(
            ListArray::try_new(item, OffsetBuffer::from_lengths(lens), vals, None)
                .map_err(internal)?,
        ),
    })
}

fn write_stream(rb: &RecordBatch) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = StreamWriter::try_new(&mut buf, &rb.schema())
        .map_err(|e| VectorError::Internal(e.to_string()))?;
    w.write(rb)
        .and_then(|()| w.finish())
        .map_err(|e| VectorError::Internal(e.to_string()))?;
    drop(w);
    Ok(buf)
}

/// Encodes a batch as an add body (the metadata column only when some item
/// has metadata).
pub fn encode_add(batch: &Batch) -> Result<Vec<u8>> {
    let n = batch.len();
    let ids = StringArray::from_iter_values((0..n).map(|i| batch.id(i)));
    let offsets: Vec<usize> = std::iter::once(0)
        .chain((0..n).scan(0, |end, i| {
            *end += batch.vector(i).len();
            Some(*end)
        }))
        .collect();
    let vectors = vector_column(batch.values(), &offsets)?;
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("vector", vectors.data_type().clone(), false),
    ];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(ids), vectors];
    if (0..n).any(|i| batch.metadata(i).is_some()) {
        let md: StringArray = (0..n)
            .map(|i| {
                batch
                    .metadata(i)
                    .map(|m| Value::Object(m.clone()).to_string())
            })
            .collect();
        fields.push(Field::new("metadata", DataType::Utf8, true));
        columns.push(Arc::new(md));
    }
    let rb = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| VectorError::Internal(e.to_string()))?;
    write_stream(&rb)
}

/// Decodes a batch-search body: one query vector per row.
pub fn decode_queries(body: Bytes) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    for b in read_stream(body)? {
        let schema = b.schema();
        if let Some(f) = schema.fields().iter().find(|f| f.name() != "vector") {
            return Err(invalid(format!(
                "unexpected column {:?}; a search takes one column, vector",
                f.name()
            )));
        }
        let c = schema
            .index_of("vector")
            .map(|i| b.column(i))
            .map_err(|_| invalid("the body has no `vector` column"))?;
        let vectors = Vectors::new(c)?;
        for row in 0..b.num_rows() {
            let v = vectors
                .row(row, &mut scratch)
                .map_err(|e| VectorError::InvalidSearch(format!("query {}: {e}", out.len())))?;
            out.push(v.to_vec());
        }
    }
    Ok(out)
}

/// Encodes query vectors as a batch-search body.
pub fn encode_queries(queries: &[Vec<f32>]) -> Result<Vec<u8>> {
    let mut offsets = vec![0];
    let mut values = Vec::new();
    for q in queries {
        values.extend_from_slice(q);
        offsets.push(values.len());
    }
    let c = vector_column(&values, &offsets)?;
    let schema = Schema::new(vec![Field::new("vector", c.data_type().clone(), false)]);
    let rb = RecordBatch::try_new(Arc::new(schema), vec![c])
        .map_err(|e| VectorError::Internal(e.to_string()))?;
    write_stream(&rb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use serde_json::json;

    fn sample() -> Batch {
        let mut b = Batch::new();
        b.push("a".into(), &[1.0, 2.0], None);
        b.push(
            "b".into(),
            &[3.0, -4.5],
            json!({"lang": "en"}).as_object().cloned(),
        );
        b
    }

    #[test]
    fn add_round_trip() {
        let b = sample();
        assert_eq!(decode_add(encode_add(&b).unwrap().into()).unwrap(), b);
        let mut ragged = sample();
        ragged.push("c".into(), &[1.0], None);
        assert_eq!(
            decode_add(encode_add(&ragged).unwrap().into()).unwrap(),
            ragged
        );
        let q = vec![vec![1.0, 2.0], vec![0.5, 0.25]];
        assert_eq!(
            decode_queries(encode_queries(&q).unwrap().into()).unwrap(),
            q
        );
    }

    fn stream(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
        let rb = RecordBatch::try_from_iter(columns).unwrap();
        write_stream(&rb).unwrap()
    }

    #[test]
    fn lists_float64_and_struct_metadata() {
        let lists = ListArray::from_iter_primitive::<arrow::datatypes::Float64Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(0.5), Some(0.0)]),
        ]);
        let md = StructArray::from(vec![
            (
                Arc::new(Field::new("n", DataType::Int64, true)),
                Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("x", DataType::Float64, true)),
                Arc::new(Float64Array::from(vec![0.5, 2.0])) as ArrayRef,
            ),
        ]);
        let body = stream(vec![
            (
                "id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            ("vector", Arc::new(lists)),
            ("metadata", Arc::new(md)),
        ]);
        let b = decode_add(body.into()).unwrap();
        assert_eq!(b.values(), &[1.0, 2.0, 0.5, 0.0]);
        assert_eq!(
            Value::Object(b.metadata(0).unwrap().clone()),
            json!({"n": 1, "x": 0.5})
        );
        assert_eq!(
            Value::Object(b.metadata(1).unwrap().clone()),
            json!({"x": 2.0})
        );
    }

    #[test]
    fn bad_bodies_say_why() {
        let v = || -> ArrayRef {
            Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
                Some(vec![Some(1.0)]),
                Some(vec![None]),
            ]))
        };
        let ids = || -> ArrayRef { Arc::new(StringArray::from(vec![Some("a"), None])) };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "not a valid Arrow IPC stream"),
            (b"ARROW1\0\0".to_vec(), "file format"),
            (stream(vec![("vector", v())]), "no `id` column"),
            (
                stream(vec![("id", ids()), ("vector", v()), ("x", ids())]),
                "unexpected column \"x\"",
            ),
            (stream(vec![("id", v()), ("vector", v())]), "must be utf8"),
            (
                stream(vec![("id", ids()), ("vector", ids())]),
                "must be a list of float32",
            ),
            (
                stream(vec![("id", ids()), ("vector", v()), ("metadata", v())]),
                "must be utf8 (JSON objects) or a struct",
            ),
        ];
        for (body, want) in cases {
            let e = decode_add(body.into()).unwrap_err();
            assert!(matches!(e, VectorError::InvalidBody(_)), "{e}");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let ok_ids: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let e = decode_add(stream(vec![("id", ok_ids), ("vector", v())]).into()).unwrap_err();
        assert!(
            matches!(e, VectorError::InvalidItem { position: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("vector[0] is null"), "{e}");
        let e = decode_add(stream(vec![("id", ids()), ("vector", v())]).into()).unwrap_err();
        assert!(
            matches!(e, VectorError::InvalidItem { position: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("the id is null"), "{e}");
        let md: ArrayRef = Arc::new(StringArray::from(vec!["{\"a\":1}", "[1]"]));
        let ok_ids: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let fine: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0)]),
            Some(vec![Some(2.0)]),
        ]));
        let e = decode_add(stream(vec![("id", ok_ids), ("vector", fine), ("metadata", md)]).into())
            .unwrap_err();
        assert!(
            matches!(e, VectorError::InvalidItem { position: 1, .. }),
            "{e}"
        );
    }
}
