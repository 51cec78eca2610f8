//! PostgreSQL error responses: a SQLSTATE for every query error, by variant.
//!
//! | queryd error | SQLSTATE |
//! |---|---|
//! | syntax error | 42601 `syntax_error` |
//! | unknown table | 42P01 `undefined_table` |
//! | statement the read-only sandbox refuses | 42501 `insufficient_privilege` |
//! | ambiguous column | 42702 `ambiguous_column` |
//! | plan error (unknown column, types, …) | 42000 |
//! | error on the data (cast, division by zero, …) | 22000 `data_exception` |
//! | invalid regex | 2201B |
//! | not supported | 0A000 `feature_not_supported` |
//! | query too complex | 54001 `statement_too_complex` |
//! | timeout | 57014 `query_canceled` |
//! | memory limit, memory pressure | 53200 `out_of_memory` |
//! | function output over its limit, more rows than `max_rows` | 54000 `program_limit_exceeded` |
//! | damaged dataset | XX001 `data_corrupted` |
//! | a remote service unavailable (or unreachable) | 58000 `system_error` |
//! | a remote service that timed out | 57014 `query_canceled` |
//! | anything else on the server | XX000 `internal_error` (message: an id; details logged) |

use lakehouse_common::upstream::UpstreamKind;
use lakehouse_queryd::QueryError;
use pgwire::error::{ErrorInfo, PgWireError};

/// The SQLSTATE of a query error.
pub fn sqlstate(e: &QueryError) -> &'static str {
    match e {
        QueryError::InvalidRequest(_) => "22023",
        QueryError::Syntax { .. } => "42601",
        QueryError::TooComplex { .. } => "54001",
        QueryError::Forbidden { .. } | QueryError::WriteDenied { .. } => "42501",
        // serialization_failure: the client may run the statement again.
        QueryError::WriteConflict { .. } => "40001",
        QueryError::TableExists { .. } => "42P07",
        QueryError::UnknownTable { .. } => "42P01",
        QueryError::AmbiguousColumn { .. } => "42702",
        QueryError::Plan(_) => "42000",
        QueryError::Execution(_) => "22000",
        QueryError::InvalidRegex(_) => "2201B",
        QueryError::NotSupported(_) => "0A000",
        QueryError::Timeout { .. } => "57014",
        QueryError::MemoryLimit { .. } | QueryError::MemoryPressure { .. } => "53200",
        QueryError::ValueTooLarge(_) | QueryError::TooManyRows { .. } => "54000",
        QueryError::DatasetDamaged(_) => "XX001",
        QueryError::Upstream(up) => match up.kind {
            UpstreamKind::Timeout => "57014",
            UpstreamKind::Unreachable | UpstreamKind::Broken => "58000",
        },
        QueryError::Catalog(_) | QueryError::Internal(_) | QueryError::Table { .. } => {
            match e.status().as_u16() {
                // A table version that does not exist, a bad `@` suffix, a
                // dataset without history.
                404 => "42P01",
                400 => "22023",
                409 => "0A000",
                503 => "58000",
                _ => "XX000",
            }
        }
        QueryError::NoEmbeddingModel(_) => "0A000",
        QueryError::Vectors(v) => match v.status().as_u16() {
            400 | 413 => "22023",
            401 => "28P01",
            403 => "42501",
            404 => "42704",
            409 => "55000",
            501 => "0A000",
            502..=504 => "58000",
            _ => "XX000",
        },
        QueryError::Remote { status, .. } => match status {
            400 => "42000",
            408 => "57014",
            413 => "54000",
            503 => "58000",
            _ => "XX000",
        },
    }
}

/// A query error as the client's ErrorResponse.
pub fn query_error(e: QueryError) -> PgWireError {
    let code = sqlstate(&e);
    let message = if code == "XX000" {
        let id = error_id();
        tracing::error!(error = %e, error_id = %id, "postgres protocol query failed");
        format!("internal error (id {id}); the details are in the server log")
    } else {
        e.to_string()
    };
    user_error(code, message)
}

/// An ErrorResponse with `code` and `message`.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

/// A FATAL ErrorResponse (authentication).
pub fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_string(),
        code.to_string(),
        message.into(),
    )))
}

fn error_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_variant() {
        let syntax = QueryError::Syntax {
            detail: "x".into(),
            line: None,
            column: None,
        };
        assert_eq!(sqlstate(&syntax), "42601");
        let unknown = QueryError::UnknownTable {
            tables: vec!["t".into()],
            available: vec![],
        };
        assert_eq!(sqlstate(&unknown), "42P01");
        assert_eq!(sqlstate(&QueryError::Timeout { secs: 1 }), "57014");
        assert_eq!(
            sqlstate(&QueryError::Forbidden {
                what: "DROP".into()
            }),
            "42501"
        );
        let PgWireError::UserError(info) = query_error(QueryError::Internal("secret".into()))
        else {
            panic!("user error")
        };
        assert_eq!(info.code, "XX000");
        assert!(!info.message.contains("secret"));
    }
}
