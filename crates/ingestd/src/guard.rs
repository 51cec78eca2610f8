//! The decoder boundary: hostile bytes must end in a 400, never a panic.
//!
//! The Arrow and Parquet readers are not hardened against every malformed
//! input (some corruptions reach `unwrap`s, slice indexing or assertions in
//! them), so every decoder runs behind [`Guarded`], which catches a panic in
//! `push`, `finish` or while reading batches and turns it into
//! [`IngestError::BadData`]; the decoder is not used again afterwards.
//! Allocations sized from declared lengths are bounded before the readers
//! see the bytes (see [`crate::footer`]): an allocation failure aborts the
//! process and cannot be caught here.
//!
//! Also here: error text without the libraries' debug wrapping
//! ("Csv error: …", "Parquet error: …").

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use parquet::errors::ParquetError;

use crate::decode::{BatchIter, Decode, Finished};
use crate::error::IngestError;
use crate::options::Format;

/// A decoder whose panics are errors.
pub struct Guarded {
    inner: Option<Box<dyn Decode>>,
    format: Format,
}

impl Guarded {
    pub fn new(inner: Box<dyn Decode>, format: Format) -> Self {
        Self {
            inner: Some(inner),
            format,
        }
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Csv => "CSV",
        Format::Ndjson => "NDJSON",
        Format::Parquet => "Parquet",
        Format::Arrow => "Arrow IPC",
    }
}

static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Decoder panics caught since the process started (the fuzz tests keep
/// the inputs that cause them as regression cases).
pub fn panics_caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

fn panicked(format: Format, payload: Box<dyn Any + Send>) -> IngestError {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
    let why = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no detail".to_string());
    tracing::warn!(format = format_name(format), panic = %why, "a decoder panicked on malformed input");
    IngestError::BadData(format!(
        "the {} data is malformed: its reader failed on it ({why})",
        format_name(format)
    ))
}

fn stopped(format: Format) -> IngestError {
    IngestError::BadData(format!(
        "the {} data is malformed: its reader failed on it earlier",
        format_name(format)
    ))
}

impl Decode for Guarded {
    fn push(&mut self, data: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), IngestError> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(stopped(self.format));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.push(data, out))) {
            Ok(r) => r,
            Err(p) => {
                self.inner = None;
                Err(panicked(self.format, p))
            }
        }
    }

    fn finish(self: Box<Self>) -> Result<Finished, IngestError> {
        let format = self.format;
        let inner = self.inner.ok_or_else(|| stopped(format))?;
        let f = catch_unwind(AssertUnwindSafe(|| inner.finish()))
            .map_err(|p| panicked(format, p))??;
        Ok(Finished {
            schema: f.schema,
            batches: Box::new(GuardedBatches {
                inner: Some(f.batches),
                format,
            }),
            csv: f.csv,
        })
    }
}

struct GuardedBatches {
    inner: Option<BatchIter>,
    format: Format,
}

impl Iterator for GuardedBatches {
    type Item = Result<RecordBatch, IngestError>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        match catch_unwind(AssertUnwindSafe(|| inner.next())) {
            Ok(item) => item,
            Err(p) => {
                self.inner = None;
                Some(Err(panicked(self.format, p)))
            }
        }
    }
}

/// An Arrow error's own text, without the "Csv error: " style prefix.
pub fn arrow_message(e: &ArrowError) -> String {
    match e {
        ArrowError::NotYetImplemented(s)
        | ArrowError::CastError(s)
        | ArrowError::MemoryError(s)
        | ArrowError::ParseError(s)
        | ArrowError::SchemaError(s)
        | ArrowError::ComputeError(s)
        | ArrowError::ArithmeticOverflow(s)
        | ArrowError::CsvError(s)
        | ArrowError::JsonError(s)
        | ArrowError::AvroError(s)
        | ArrowError::IoError(s, _)
        | ArrowError::IpcError(s)
        | ArrowError::InvalidArgumentError(s)
        | ArrowError::ParquetError(s)
        | ArrowError::CDataInterface(s) => s.clone(),
        ArrowError::ExternalError(inner) => match inner.downcast_ref::<ParquetError>() {
            Some(p) => parquet_message(p),
            None => inner.to_string(),
        },
        other => other.to_string(),
    }
}

/// A Parquet error's own text, without the "Parquet error: " style prefix.
pub fn parquet_message(e: &ParquetError) -> String {
    match e {
        ParquetError::General(s) | ParquetError::NYI(s) | ParquetError::EOF(s) => s.clone(),
        ParquetError::ArrowError(s) => s.clone(),
        ParquetError::External(inner) => match inner.downcast_ref::<ArrowError>() {
            Some(a) => arrow_message(a),
            None => inner.to_string(),
        },
        ParquetError::NeedMoreData(_) | ParquetError::NeedMoreDataRange(_) => {
            "the file is truncated".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Finished;

    struct Bomb;

    impl Decode for Bomb {
        fn push(&mut self, data: &[u8], _out: &mut Vec<RecordBatch>) -> Result<(), IngestError> {
            if data == b"boom" {
                panic!("index out of bounds: the len is 3 but the index is 7");
            }
            Ok(())
        }
        fn finish(self: Box<Self>) -> Result<Finished, IngestError> {
            Ok(Finished {
                schema: std::sync::Arc::new(arrow::datatypes::Schema::empty()),
                batches: Box::new((0..2).map(|i| {
                    if i == 1 {
                        panic!("bad batch");
                    }
                    Ok(RecordBatch::new_empty(std::sync::Arc::new(
                        arrow::datatypes::Schema::empty(),
                    )))
                })),
                csv: None,
            })
        }
    }

    #[test]
    fn panics_become_bad_data() {
        let mut g = Guarded::new(Box::new(Bomb), Format::Parquet);
        let mut out = vec![];
        g.push(b"fine", &mut out).unwrap();
        let e = g.push(b"boom", &mut out).unwrap_err();
        assert!(matches!(e, IngestError::BadData(_)));
        assert!(e.to_string().contains("index out of bounds"), "{e}");
        assert!(g.push(b"fine", &mut out).is_err(), "not used after a panic");

        let g = Box::new(Guarded::new(Box::new(Bomb), Format::Arrow));
        let mut batches = g.finish().unwrap().batches;
        assert!(batches.next().unwrap().is_ok());
        let e = batches.next().unwrap().unwrap_err();
        assert!(e.to_string().contains("bad batch"), "{e}");
        assert!(batches.next().is_none());
    }

    #[test]
    fn messages_lose_their_wrappers() {
        let e = ArrowError::CsvError("Cannot flush part way through record".into());
        assert_eq!(arrow_message(&e), "Cannot flush part way through record");
        let p = ParquetError::General("bad footer".into());
        assert_eq!(parquet_message(&p), "bad footer");
        let wrapped = ArrowError::ExternalError(Box::new(ParquetError::EOF("eof".into())));
        assert_eq!(arrow_message(&wrapped), "eof");
    }
}
