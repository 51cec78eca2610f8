//! Statement handles and tickets, and `?` placeholders.
//!
//! The server keeps no per-statement state: a ticket or a prepared
//! statement's handle carries the SQL itself and, once parameters are
//! bound (`DoPut`), their values as an Arrow IPC stream. `DoPut` answers
//! with the new handle, which Flight SQL clients send back. A handle is
//! only ever SQL plus values the client could have sent directly, and every
//! call is authenticated again, so nothing is gained by forging one; it is
//! still decoded defensively (lengths checked, one parameter row).
//!
//! Layout: `b"LH1"`, the SQL's length (u32 LE), the SQL (UTF-8), then
//! optionally the parameters' IPC stream.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::FlightError;

const MAGIC: &[u8] = b"LH1";

/// A statement as the client holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Handle {
    pub sql: String,
    /// One row: the value of `$1`, `$2`, … in column order.
    pub params: Option<RecordBatch>,
}

impl Handle {
    pub fn new(sql: String) -> Self {
        Self { sql, params: None }
    }

    pub fn encode(&self) -> Result<Bytes, FlightError> {
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + self.sql.len());
        out.extend_from_slice(MAGIC);
        let len = u32::try_from(self.sql.len())
            .map_err(|_| FlightError::BadHandle("the SQL is too long".to_string()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(self.sql.as_bytes());
        if let Some(batch) = &self.params {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema())
                .map_err(|e| FlightError::BadHandle(e.to_string()))?;
            w.write(batch)
                .and_then(|_| w.finish())
                .map_err(|e| FlightError::BadHandle(e.to_string()))?;
        }
        Ok(Bytes::from(out))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FlightError> {
        let bad = |why: &str| FlightError::BadHandle(why.to_string());
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a statement handle of this server"))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        let (sql, ipc) = rest.split_at(len);
        let sql = std::str::from_utf8(sql)
            .map_err(|_| bad("the SQL is not UTF-8"))?
            .to_string();
        let params = if ipc.is_empty() {
            None
        } else {
            let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
                .map_err(|e| FlightError::BadHandle(e.to_string()))?;
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| FlightError::BadHandle(e.to_string()))?;
            Some(one_row(batches)?)
        };
        Ok(Self { sql, params })
    }

    /// The bound values as DataFusion parameters.
    pub fn param_values(&self) -> Result<Option<ParamValues>, FlightError> {
        let Some(batch) = &self.params else {
            return Ok(None);
        };
        let values = batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FlightError::BadParameters(e.to_string()))?;
        Ok(Some(ParamValues::from(values)))
    }
}

/// The parameter rows of a `DoPut`: exactly one row (a query runs once).
pub fn one_row(batches: Vec<RecordBatch>) -> Result<RecordBatch, FlightError> {
    let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows != 1 {
        return Err(FlightError::BadParameters(format!(
            "a query takes exactly one row of parameter values, got {rows}"
        )));
    }
    Ok(batches.into_iter().next().expect("one batch with the row"))
}

/// The schema of a statement's parameters for the client: `$1`, `$2`, …
/// with the inferred type (`Null` when nothing constrains it).
pub fn parameter_schema(types: &[Option<DataType>]) -> Schema {
    Schema::new(
        types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Arc::new(Field::new(
                    format!("${}", i + 1),
                    t.clone().unwrap_or(DataType::Null),
                    true,
                ))
            })
            .collect::<Vec<_>>(),
    )
}

/// Rewrites `?` placeholders (what JDBC/ADBC clients write) to `$1`, `$2`,
/// … in the order they appear. Quoted text and comments are left alone
/// (the tokenizer sees them as strings); SQL that does not tokenize is
/// returned as it is, for the parser to report.
pub fn number_placeholders(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p == "?"))
    {
        return sql.to_string();
    }
    let mut n = 0;
    tokens
        .into_iter()
        .map(|t| match t {
            Token::Placeholder(p) if p == "?" => {
                n += 1;
                format!("${n}")
            }
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    #[test]
    fn handles_round_trip() {
        let h = Handle::new("SELECT 1".to_string());
        assert_eq!(Handle::decode(&h.encode().unwrap()).unwrap(), h);
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![7])),
                Arc::new(StringArray::from(vec!["x"])),
            ],
        )
        .unwrap();
        let h = Handle {
            sql: "SELECT $1, $2".to_string(),
            params: Some(batch),
        };
        let back = Handle::decode(&h.encode().unwrap()).unwrap();
        assert_eq!(back, h);
        let ParamValues::List(v) = back.param_values().unwrap().unwrap() else {
            panic!("positional")
        };
        assert_eq!(v[0].value, ScalarValue::Int64(Some(7)));
    }

    #[test]
    fn bad_handles_are_errors() {
        for bad in [&b""[..], b"XYZ", b"LH1\x05\0\0\0ab", b"LH1\x01\0\0\0\xff"] {
            assert!(matches!(
                Handle::decode(bad),
                Err(FlightError::BadHandle(_))
            ));
        }
        let mut h = Handle::new("SELECT 1".into()).encode().unwrap().to_vec();
        h.extend_from_slice(b"garbage ipc");
        assert!(Handle::decode(&h).is_err());
    }

    #[test]
    fn question_marks_become_numbered() {
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c > ?"),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND c > $2"
        );
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
    }
}
