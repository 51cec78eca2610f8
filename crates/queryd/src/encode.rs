//! Result formats and their incremental encoders.
//!
//! Each encoder turns record batches into bytes as they arrive, so a result
//! streams out without being held whole. Nothing is emitted before the first
//! batch (or the end of the stream): an error that happens before then can
//! still become a proper JSON error response.
//!
//! A result that streamed can still end in two other ways, and each format
//! says so in band where it can (see the README's "Results past max_rows
//! and errors while streaming"):
//!
//! | format  | truncated at `max_rows`                       | error after the first byte |
//! |---------|-----------------------------------------------|----------------------------|
//! | json    | never (held until complete: 413 instead)      | never (an error status)    |
//! | ndjson  | last line `{"$lakehouse":{"truncated":true,…}}` | last line `{"$lakehouse":{"error":{…}}}` |
//! | csv     | last line `#lakehouse: truncated: …`          | last line `#lakehouse: error <code>: …` |
//! | parquet | footer key `lakehouse.truncated` = `true`      | footer keys `lakehouse.error.code` / `.message` |
//! | arrow   | a complete stream; the HTTP trailer says so   | the body is cut off (no end-of-stream marker) |

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::{self, writer::JsonArray, writer::LineDelimited};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::QueryError;

/// A result format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON array of row objects.
    #[default]
    Json,
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header line.
    Csv,
    /// Arrow IPC stream.
    Arrow,
    /// A Parquet file (zstd), streamed row group by row group.
    Parquet,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Ndjson,
        Format::Csv,
        Format::Arrow,
        Format::Parquet,
    ];

    pub fn parse(s: &str) -> Result<Self, QueryError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "arrow" | "ipc" => Ok(Format::Arrow),
            "parquet" => Ok(Format::Parquet),
            other => Err(QueryError::InvalidRequest(format!(
                "unknown format {other:?}: expected json, ndjson, csv, arrow or parquet"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
            Format::Parquet => "parquet",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The format an `Accept` header asks for: the first media type we
    /// serve, `None` when it names none of ours (e.g. `*/*`).
    pub fn from_accept(accept: &str) -> Option<Self> {
        accept.split(',').find_map(|part| {
            let mt = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match mt.as_str() {
                "application/json" => Some(Format::Json),
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                    Some(Format::Ndjson)
                }
                "text/csv" => Some(Format::Csv),
                "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
                "application/vnd.apache.parquet" | "application/parquet" => Some(Format::Parquet),
                _ => None,
            }
        })
    }
}

/// Parquet output row groups are cut at about this many rows, so the
/// response streams instead of buffering a million-row group.
const PARQUET_ROW_GROUP_ROWS: usize = 64 * 1024;

enum Inner {
    Json(json::Writer<Vec<u8>, JsonArray>),
    Ndjson(json::Writer<Vec<u8>, LineDelimited>),
    /// arrow's CSV writer cannot hand back its buffer, so one is made per
    /// batch; only the first writes the header.
    Csv {
        header_done: bool,
    },
    Arrow(StreamWriter<Vec<u8>>),
    Parquet(ArrowWriter<Vec<u8>>),
}

/// Encodes one result, batch by batch.
pub struct Encoder {
    inner: Inner,
    schema: SchemaRef,
    wrote_any: bool,
}

fn err(e: impl std::fmt::Display) -> QueryError {
    QueryError::Internal(format!("encoding the result: {e}"))
}

impl Encoder {
    pub fn new(format: Format, schema: SchemaRef) -> Result<Self, QueryError> {
        let inner = match format {
            Format::Json => Inner::Json(
                json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(Vec::new()),
            ),
            Format::Ndjson => Inner::Ndjson(
                json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(Vec::new()),
            ),
            Format::Csv => Inner::Csv { header_done: false },
            Format::Arrow => Inner::Arrow(StreamWriter::try_new(Vec::new(), &schema).map_err(err)?),
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(PARQUET_ROW_GROUP_ROWS))
                    .build();
                Inner::Parquet(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(err)?,
                )
            }
        };
        Ok(Self {
            inner,
            schema,
            wrote_any: false,
        })
    }

    /// Encodes `batch`; returns the bytes ready to send (possibly none).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, QueryError> {
        self.wrote_any = true;
        let map = |e: ArrowError| match e {
            // A value the format cannot represent is the query's doing.
            ArrowError::InvalidArgumentError(m) | ArrowError::NotYetImplemented(m) => {
                QueryError::Execution(format!("cannot encode the result: {m}"))
            }
            other => err(other),
        };
        Ok(match &mut self.inner {
            Inner::Json(w) => {
                w.write(batch).map_err(map)?;
                std::mem::take(w.get_mut())
            }
            Inner::Ndjson(w) => {
                w.write(batch).map_err(map)?;
                std::mem::take(w.get_mut())
            }
            Inner::Csv { header_done } => {
                let mut buf = Vec::new();
                csv::WriterBuilder::new()
                    .with_header(!*header_done)
                    .build(&mut buf)
                    .write(batch)
                    .map_err(map)?;
                *header_done = true;
                buf
            }
            Inner::Arrow(w) => {
                w.write(batch).map_err(map)?;
                std::mem::take(w.get_mut())
            }
            Inner::Parquet(w) => {
                w.write(batch)
                    .map_err(|e| QueryError::Execution(format!("cannot encode the result: {e}")))?;
                // The writer flushes a row group when it is full; whatever it
                // has written so far can go out (offsets are tracked by count,
                // not by the buffer).
                std::mem::take(w.inner_mut())
            }
        })
    }

    /// Ends the result: closing bracket, end-of-stream marker or footer.
    pub fn finish(mut self) -> Result<Vec<u8>, QueryError> {
        if !self.wrote_any {
            // An empty result still has its shape: `[]`, a CSV header, an
            // IPC schema, a Parquet file with zero rows.
            let empty = RecordBatch::new_empty(self.schema.clone());
            let mut head = self.write(&empty)?;
            head.extend(self.finish_inner()?);
            return Ok(head);
        }
        self.finish_inner()
    }

    /// Ends a result cut at `max_rows`, saying so in the format's own way.
    pub fn finish_truncated(mut self, max_rows: u64) -> Result<Vec<u8>, QueryError> {
        let message = format!(
            "the result has more than {max_rows} rows (the server's [queryd].max_rows): only the first {max_rows} were sent; add a LIMIT or aggregate"
        );
        let marker = match &mut self.inner {
            Inner::Ndjson(_) => Some(ndjson_marker(serde_json::json!({
                "truncated": true, "max_rows": max_rows, "message": message
            }))),
            Inner::Csv { .. } => Some(format!("#lakehouse: truncated: {message}\n").into_bytes()),
            Inner::Parquet(w) => {
                w.append_key_value_metadata(KeyValue::new(
                    "lakehouse.truncated".to_string(),
                    "true".to_string(),
                ));
                w.append_key_value_metadata(KeyValue::new(
                    "lakehouse.max_rows".to_string(),
                    max_rows.to_string(),
                ));
                None
            }
            Inner::Json(_) | Inner::Arrow(_) => None,
        };
        let mut out = self.finish()?;
        if let Some(m) = marker {
            out.extend(m);
        }
        Ok(out)
    }

    /// Ends a result whose query failed after bytes were sent, for the
    /// formats that can say so in band (NDJSON, CSV, Parquet); `None` for
    /// the others, whose response can only be cut off.
    pub fn finish_error(mut self, e: &QueryError) -> Option<Vec<u8>> {
        let one_line = e.to_string().replace(['\n', '\r'], " ");
        let marker = match &mut self.inner {
            Inner::Ndjson(_) => ndjson_marker(serde_json::json!({
                "error": {"code": e.code(), "message": one_line}
            })),
            Inner::Csv { .. } => {
                format!("#lakehouse: error {}: {one_line}\n", e.code()).into_bytes()
            }
            Inner::Parquet(w) => {
                w.append_key_value_metadata(KeyValue::new(
                    "lakehouse.error.code".to_string(),
                    e.code().to_string(),
                ));
                w.append_key_value_metadata(KeyValue::new(
                    "lakehouse.error.message".to_string(),
                    one_line,
                ));
                Vec::new()
            }
            Inner::Json(_) | Inner::Arrow(_) => return None,
        };
        let mut out = self.finish().ok()?;
        out.extend(marker);
        Some(out)
    }

    fn finish_inner(self) -> Result<Vec<u8>, QueryError> {
        Ok(match self.inner {
            Inner::Json(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner()
            }
            Inner::Ndjson(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner()
            }
            Inner::Csv { .. } => Vec::new(),
            Inner::Arrow(mut w) => {
                w.finish().map_err(err)?;
                w.into_inner().map_err(err)?
            }
            Inner::Parquet(w) => w.into_inner().map_err(err)?,
        })
    }
}

/// An NDJSON line that is not a row: one reserved key, `$lakehouse`.
fn ndjson_marker(v: serde_json::Value) -> Vec<u8> {
    let mut line = serde_json::json!({ "$lakehouse": v })
        .to_string()
        .into_bytes();
    line.push(b'\n');
    line
}

/// Encodes whole results in one go (tests, small answers).
pub fn encode_all(
    format: Format,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, QueryError> {
    let mut enc = Encoder::new(format, Arc::clone(&schema))?;
    let mut out = Vec::new();
    for b in batches {
        out.extend(enc.write(b)?);
    }
    out.extend(enc.finish()?);
    Ok(out)
}
