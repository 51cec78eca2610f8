//! The manifest — what the catalog knows about one dataset — and its Parquet
//! codec.
//!
//! A manifest is stored as a one-row Parquet file at
//! `_catalog/manifests/<name>.parquet`. Objects are a `List<Struct{key, size,
//! row_count}>` column, so a dataset with many files is still one row and one
//! atomic `put`. Timestamps are microseconds UTC: the in-memory value is
//! truncated to the same precision, so what is served equals what a restart
//! reads back.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::CatalogError;
use crate::name::{name_from_key, validate_name};

/// Where manifests live in the object store.
pub const MANIFEST_PREFIX: &str = "_catalog/manifests/";

/// The namespace of every dataset id. Every id ever issued depends on these
/// bytes: never change them.
pub const DATASET_NAMESPACE: Uuid = Uuid::from_u128(0xa8f3c1d2_4e5b_5a6c_9d8e_7f0a1b2c3d4e);

/// Schema metadata key holding the codec's format version.
const FORMAT_KEY: &str = "lakehouse.manifest.format";
const FORMAT_VERSION: &str = "1";

/// `UUIDv5(DATASET_NAMESPACE, name)`: the same name gives the same id on any
/// machine, so a catalog rebuilt from its objects converges to the same ids.
pub fn dataset_id_for(name: &str) -> Uuid {
    Uuid::new_v5(&DATASET_NAMESPACE, name.as_bytes())
}

/// The current time at the precision manifests store.
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// One Parquet object of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Object key in the store (e.g. `datasets/orders/part-0.parquet`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    pub row_count: u64,
}

/// Everything the catalog knows about one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub dataset_id: Uuid,
    pub name: String,
    pub schema_fingerprint: String,
    pub objects: Vec<ObjectRef>,
    pub row_count: u64,
    /// RFC 3339 on the wire.
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// 1 on creation, +1 on every register; see `expected_version`.
    pub version: u64,
    /// The version of the dataset's Delta table this manifest reflects (0
    /// for the first); `None` for a dataset without a table (its schema has
    /// a type Delta cannot store, or it has no objects yet). Manifests
    /// written before tables existed have no such column and read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<u64>,
}

/// Why bytes are not a valid manifest.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    Invalid(String),
    /// The Parquet or Arrow decoder panicked on malformed bytes (it does on
    /// some; found by fuzzing, see `tests/it/fuzz.rs`).
    #[error("the Parquet decoder failed on malformed bytes: {0}")]
    Malformed(String),
}

fn invalid(msg: impl Into<String>) -> CodecError {
    CodecError::Invalid(msg.into())
}

fn object_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("row_count", DataType::UInt64, false),
    ])
}

fn objects_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(object_fields()), false))
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow schema of a manifest file; `table_version` is a column only
/// when the dataset has a table, so a manifest without one is byte for byte
/// what the codec wrote before tables existed.
pub fn manifest_schema(with_table: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("dataset_id", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("schema_fingerprint", DataType::Utf8, false),
        Field::new("objects", DataType::List(objects_item_field()), false),
        Field::new("row_count", DataType::UInt64, false),
        Field::new("created_at", timestamp_type(), false),
        Field::new("updated_at", timestamp_type(), false),
        Field::new("version", DataType::UInt64, false),
    ];
    if with_table {
        fields.push(Field::new("table_version", DataType::UInt64, false));
    }
    let meta = HashMap::from([(FORMAT_KEY.to_string(), FORMAT_VERSION.to_string())]);
    Arc::new(Schema::new(fields).with_metadata(meta))
}

impl Manifest {
    /// Encodes the manifest as a one-row Parquet file.
    pub fn encode(&self) -> Result<Bytes, CodecError> {
        let schema = manifest_schema(self.table_version.is_some());
        let keys = StringArray::from_iter_values(self.objects.iter().map(|o| o.key.as_str()));
        let sizes = UInt64Array::from_iter_values(self.objects.iter().map(|o| o.size));
        let rows = UInt64Array::from_iter_values(self.objects.iter().map(|o| o.row_count));
        let structs = StructArray::try_new(
            object_fields(),
            vec![Arc::new(keys), Arc::new(sizes), Arc::new(rows)],
            None,
        )?;
        let objects = ListArray::try_new(
            objects_item_field(),
            OffsetBuffer::from_lengths([self.objects.len()]),
            Arc::new(structs),
            None,
        )?;
        let ts = |t: DateTime<Utc>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from(vec![t.timestamp_micros()]).with_timezone("UTC"),
            )
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.dataset_id.to_string()])),
            Arc::new(StringArray::from(vec![self.name.as_str()])),
            Arc::new(StringArray::from(vec![self.schema_fingerprint.as_str()])),
            Arc::new(objects),
            Arc::new(UInt64Array::from(vec![self.row_count])),
            ts(self.created_at),
            ts(self.updated_at),
            Arc::new(UInt64Array::from(vec![self.version])),
        ];
        if let Some(v) = self.table_version {
            columns.push(Arc::new(UInt64Array::from(vec![v])));
        }
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        // Manifests are tiny and read whole: statistics would only add bytes.
        let props = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::None)
            .build();
        let mut buf = Vec::with_capacity(2048);
        let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(Bytes::from(buf))
    }

    /// Decodes the manifest stored at `key` (untrusted bytes): like
    /// [`Manifest::decode`], and the manifest must be for the dataset its key
    /// names. Every error is `CorruptManifest` naming `key`.
    pub fn decode_stored(key: &str, bytes: Bytes) -> Result<Manifest, CatalogError> {
        let corrupt = |source| CatalogError::CorruptManifest {
            key: key.to_string(),
            source,
        };
        let m = Manifest::decode(bytes).map_err(corrupt)?;
        match name_from_key(key) {
            Some(n) if n == m.name => Ok(m),
            Some(n) => Err(corrupt(invalid(format!(
                "the manifest is for dataset {:?}, but its key is for {n:?}",
                m.name
            )))),
            None => Err(corrupt(invalid("the key is not a manifest key"))),
        }
    }

    /// Decodes and checks a manifest file: exactly one row, every column of
    /// the expected type and non-null, a valid name whose UUIDv5 is the
    /// stored id. Never panics: the Parquet and Arrow IPC decoders panic on
    /// some malformed inputs, and such a panic is a `Malformed` error.
    pub fn decode(bytes: Bytes) -> Result<Manifest, CodecError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::decode_inner(bytes)))
            .unwrap_or_else(|panic| {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_string());
                Err(CodecError::Malformed(msg))
            })
    }

    fn decode_inner(bytes: Bytes) -> Result<Manifest, CodecError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        match builder.schema().metadata().get(FORMAT_KEY) {
            Some(v) if v == FORMAT_VERSION => {}
            Some(v) => return Err(invalid(format!("unsupported manifest format {v:?}"))),
            None => return Err(invalid(format!("missing schema metadata {FORMAT_KEY:?}"))),
        }
        let reader = builder.build()?;
        let mut batches = Vec::new();
        for b in reader {
            let b = b?;
            if b.num_rows() > 0 {
                batches.push(b);
            }
        }
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if total != 1 {
            return Err(invalid(format!("expected exactly 1 row, found {total}")));
        }
        let batch = &batches[0];

        let id_str = string_col(batch, "dataset_id")?;
        let dataset_id = Uuid::parse_str(&id_str)
            .map_err(|e| invalid(format!("dataset_id {id_str:?} is not a UUID: {e}")))?;
        let name = string_col(batch, "name")?;
        validate_name(&name).map_err(|e| invalid(format!("invalid name {name:?}: {e}")))?;
        if dataset_id != dataset_id_for(&name) {
            return Err(invalid(format!(
                "dataset_id {dataset_id} is not the UUIDv5 of the name {name:?}"
            )));
        }
        let schema_fingerprint = string_col(batch, "schema_fingerprint")?;
        if schema_fingerprint.is_empty() {
            return Err(invalid("empty schema_fingerprint"));
        }
        let version = u64_col(batch, "version")?;
        if version == 0 {
            return Err(invalid("version 0"));
        }

        let list = column(batch, "objects")?
            .as_list_opt::<i32>()
            .ok_or_else(|| invalid("column \"objects\" is not a list"))?;
        if list.is_null(0) {
            return Err(invalid("column \"objects\" is null"));
        }
        // `value(0)` slices by the row's own offsets, which arrow validated
        // against the child length when the array was read.
        let items = list.value(0);
        let items = items
            .as_struct_opt()
            .ok_or_else(|| invalid("\"objects\" items are not structs"))?;
        let keys = items
            .column_by_name("key")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| invalid("\"objects\" items lack a string \"key\""))?;
        let sizes = items
            .column_by_name("size")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| invalid("\"objects\" items lack a u64 \"size\""))?;
        let rows = items
            .column_by_name("row_count")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| invalid("\"objects\" items lack a u64 \"row_count\""))?;
        if items.null_count() + keys.null_count() + sizes.null_count() + rows.null_count() > 0 {
            return Err(invalid("\"objects\" contains nulls"));
        }
        let objects = (0..items.len())
            .map(|i| ObjectRef {
                key: keys.value(i).to_string(),
                size: sizes.value(i),
                row_count: rows.value(i),
            })
            .collect();

        Ok(Manifest {
            dataset_id,
            name,
            schema_fingerprint,
            objects,
            row_count: u64_col(batch, "row_count")?,
            created_at: ts_col(batch, "created_at")?,
            updated_at: ts_col(batch, "updated_at")?,
            version,
            table_version: optional_u64_col(batch, "table_version")?,
        })
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, CodecError> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| invalid(format!("missing column {name:?}")))?;
    if c.is_null(0) {
        return Err(invalid(format!("column {name:?} is null")));
    }
    Ok(c)
}

fn string_col(batch: &RecordBatch, name: &str) -> Result<String, CodecError> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .map(|a| a.value(0).to_string())
        .ok_or_else(|| invalid(format!("column {name:?} is not a string")))
}

fn u64_col(batch: &RecordBatch, name: &str) -> Result<u64, CodecError> {
    column(batch, name)?
        .as_primitive_opt::<UInt64Type>()
        .map(|a| a.value(0))
        .ok_or_else(|| invalid(format!("column {name:?} is not a u64")))
}

/// A u64 column that manifests without a table lack: missing or null is `None`.
fn optional_u64_col(batch: &RecordBatch, name: &str) -> Result<Option<u64>, CodecError> {
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let a = c
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| invalid(format!("column {name:?} is not a u64")))?;
    Ok(a.is_valid(0).then(|| a.value(0)))
}

fn ts_col(batch: &RecordBatch, name: &str) -> Result<DateTime<Utc>, CodecError> {
    let micros = column(batch, name)?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .map(|a| a.value(0))
        .ok_or_else(|| invalid(format!("column {name:?} is not a microsecond timestamp")))?;
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| invalid(format!("column {name:?} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n_objects: usize) -> Manifest {
        let t = now_micros();
        Manifest {
            dataset_id: dataset_id_for("tpch/lineitem"),
            name: "tpch/lineitem".to_string(),
            schema_fingerprint: "sha256:abc".to_string(),
            objects: (0..n_objects)
                .map(|i| ObjectRef {
                    key: format!("datasets/tpch/lineitem/part-{i}.parquet"),
                    size: 1000 + i as u64,
                    row_count: 10 * i as u64,
                })
                .collect(),
            row_count: 42,
            created_at: t - chrono::Duration::seconds(5),
            updated_at: t,
            version: 3,
            table_version: Some(2),
        }
    }

    #[test]
    fn round_trips() {
        for n in [0, 1, 3, 2000] {
            let m = sample(n);
            let back = Manifest::decode(m.encode().unwrap()).unwrap();
            assert_eq!(back, m, "{n} objects");
        }
    }

    #[test]
    fn garbage_and_wrong_files_are_rejected() {
        assert!(matches!(
            Manifest::decode(Bytes::from_static(b"not parquet")),
            Err(CodecError::Parquet(_))
        ));
        // A valid Parquet file that is not a manifest.
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt64Array::from(vec![1u64]))],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let err = Manifest::decode(Bytes::from(buf)).unwrap_err().to_string();
        assert!(err.contains(FORMAT_KEY), "{err}");
    }

    #[test]
    fn tampered_id_is_rejected() {
        let mut m = sample(1);
        m.dataset_id = Uuid::nil();
        let err = Manifest::decode(m.encode().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("UUIDv5"), "{err}");
    }

    #[test]
    fn json_shape() {
        let m = sample(1);
        let v = serde_json::to_value(&m).unwrap();
        for k in [
            "dataset_id",
            "name",
            "schema_fingerprint",
            "objects",
            "row_count",
            "created_at",
            "updated_at",
            "version",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        // RFC 3339 with an explicit UTC offset.
        let created = v["created_at"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(created).is_ok(), "{created}");
        assert_eq!(
            v["objects"][0]["key"],
            "datasets/tpch/lineitem/part-0.parquet"
        );
    }
}
