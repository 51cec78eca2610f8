//! `schema_fingerprint`: a hash of the canonical Arrow schema (column names
//! and types, in order; nullability and metadata excluded, since datasets
//! treat every column as nullable).

use arrow::datatypes::{DataType, Schema};
use sha2::{Digest, Sha256};

/// A stable text form of a type; independent of arrow's `Debug` output for
/// the common types so fingerprints survive arrow upgrades.
pub fn canonical_type(dt: &DataType) -> String {
    match dt {
        DataType::Null => "null".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "utf8".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Date32 => "date32".into(),
        DataType::Date64 => "date64".into(),
        DataType::Timestamp(u, tz) => format!("timestamp({u:?},{})", tz.as_deref().unwrap_or("")),
        DataType::Decimal128(p, s) => format!("decimal128({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("list<{}>", canonical_type(f.data_type()))
        }
        DataType::Struct(fs) => {
            let inner: Vec<String> = fs
                .iter()
                .map(|f| format!("{}:{}", f.name(), canonical_type(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(","))
        }
        other => format!("{other:?}"),
    }
}

pub fn fingerprint(schema: &Schema) -> String {
    let mut h = Sha256::new();
    for f in schema.fields() {
        h.update(f.name().as_bytes());
        h.update([0x1f]);
        h.update(canonical_type(f.data_type()).as_bytes());
        h.update([0x1e]);
    }
    let d = h.finalize();
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Human-readable differences between two schemas, column by column.
pub fn differences(have: &Schema, got: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for f in have.fields() {
        match got.field_with_name(f.name()) {
            Err(_) => out.push(format!(
                "column {:?} ({}) is missing",
                f.name(),
                canonical_type(f.data_type())
            )),
            Ok(g) if canonical_type(g.data_type()) != canonical_type(f.data_type()) => {
                out.push(format!(
                    "column {:?} is {} in the dataset but {} in the input",
                    f.name(),
                    canonical_type(f.data_type()),
                    canonical_type(g.data_type())
                ))
            }
            Ok(_) => {}
        }
    }
    for g in got.fields() {
        if have.field_with_name(g.name()).is_err() {
            out.push(format!(
                "column {:?} ({}) is new",
                g.name(),
                canonical_type(g.data_type())
            ));
        }
    }
    if out.is_empty() {
        out.push("the columns are in a different order".to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;

    #[test]
    fn fingerprint_ignores_nullability_but_not_order_or_type() {
        let a = Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("y", DataType::Utf8, true),
        ]);
        let b = Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::LargeUtf8, true),
        ]);
        let c = Schema::new(vec![
            Field::new("y", DataType::Utf8, true),
            Field::new("x", DataType::Int64, true),
        ]);
        let d = Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Utf8, true),
        ]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_ne!(fingerprint(&a), fingerprint(&d));
        assert!(fingerprint(&a).starts_with("sha256:"));
        let diff = differences(&a, &d);
        assert_eq!(diff.len(), 1);
        assert!(
            diff[0].contains("\"x\" is int64 in the dataset but float64"),
            "{diff:?}"
        );
    }
}
