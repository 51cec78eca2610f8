//! Errors of the Flight SQL service and their gRPC status.
//!
//! Query errors map by variant (never by text) to the gRPC code closest to
//! the HTTP status queryd gives them; the stable machine code (`syntax_error`,
//! `unknown_table`, `too_many_rows`, …) travels in the `lakehouse-error-code`
//! metadata. Server faults carry only an id; the details are logged.

use lakehouse_common::upstream::UpstreamKind;
use lakehouse_queryd::QueryError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum FlightError {
    /// The query failed (see [`QueryError`]).
    #[error(transparent)]
    Query(#[from] QueryError),
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials whose role is too small.
    #[error("{0}")]
    Forbidden(String),
    /// A statement handle or ticket this server did not make.
    #[error("invalid statement handle: {0}")]
    BadHandle(String),
    /// Parameter values that cannot be bound.
    #[error("invalid parameter values: {0}")]
    BadParameters(String),
    /// A result batch could not be encoded for the wire.
    #[error("encoding the result: {0}")]
    Encode(#[source] arrow::error::ArrowError),
}

impl FlightError {
    /// The stable machine code, as on HTTP.
    pub fn code(&self) -> &str {
        match self {
            FlightError::Query(q) => q.code(),
            FlightError::Unauthenticated(_) => "unauthorized",
            FlightError::Forbidden(_) => "forbidden",
            FlightError::BadHandle(_) | FlightError::BadParameters(_) => "invalid_request",
            FlightError::Encode(_) => "internal",
        }
    }

    fn grpc_code(&self) -> Code {
        match self {
            FlightError::Query(q) => query_code(q),
            FlightError::Unauthenticated(_) => Code::Unauthenticated,
            FlightError::Forbidden(_) => Code::PermissionDenied,
            FlightError::BadHandle(_) | FlightError::BadParameters(_) => Code::InvalidArgument,
            FlightError::Encode(_) => Code::Internal,
        }
    }
}

fn query_code(q: &QueryError) -> Code {
    match q {
        QueryError::InvalidRequest(_)
        | QueryError::Syntax { .. }
        | QueryError::TooComplex { .. }
        | QueryError::AmbiguousColumn { .. }
        | QueryError::Plan(_)
        | QueryError::Execution(_)
        | QueryError::InvalidRegex(_) => Code::InvalidArgument,
        QueryError::Forbidden { .. } | QueryError::WriteDenied { .. } => Code::PermissionDenied,
        QueryError::WriteConflict { .. } => Code::Aborted,
        QueryError::TableExists { .. } => Code::AlreadyExists,
        QueryError::UnknownTable { .. } => Code::NotFound,
        QueryError::NotSupported(_) => Code::Unimplemented,
        QueryError::Timeout { .. } => Code::DeadlineExceeded,
        QueryError::MemoryLimit { .. }
        | QueryError::ValueTooLarge(_)
        | QueryError::TooManyRows { .. } => Code::ResourceExhausted,
        QueryError::MemoryPressure { .. } => Code::Unavailable,
        QueryError::Upstream(up) => match up.kind {
            UpstreamKind::Timeout => Code::DeadlineExceeded,
            UpstreamKind::Unreachable | UpstreamKind::Broken => Code::Unavailable,
        },
        QueryError::Catalog(_) | QueryError::Table { .. } => match q.status().as_u16() {
            400 => Code::InvalidArgument,
            404 => Code::NotFound,
            409 => Code::FailedPrecondition,
            503 => Code::Unavailable,
            _ => Code::Internal,
        },
        QueryError::DatasetDamaged(_) => Code::DataLoss,
        QueryError::Internal(_) => Code::Internal,
        QueryError::NoEmbeddingModel(_) => Code::Unimplemented,
        QueryError::Vectors(v) => match v.status().as_u16() {
            400 | 413 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::FailedPrecondition,
            501 => Code::Unimplemented,
            502..=504 => Code::Unavailable,
            _ => Code::Internal,
        },
        QueryError::Remote { status, .. } => match status {
            400 => Code::InvalidArgument,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            408 => Code::DeadlineExceeded,
            413 => Code::ResourceExhausted,
            503 => Code::Unavailable,
            _ => Code::Internal,
        },
    }
}

impl From<FlightError> for Status {
    fn from(e: FlightError) -> Status {
        let code = e.grpc_code();
        let hidden = matches!(code, Code::Internal)
            || matches!(&e, FlightError::Query(q @ QueryError::Catalog(_)) if !q.is_client_error());
        let message = if hidden {
            let id = format!("{:016x}", rand_id());
            tracing::error!(error = %e, error_id = %id, "flight sql request failed");
            format!("internal error (id {id}); the details are in the server log")
        } else {
            e.to_string()
        };
        let mut status = Status::new(code, message);
        if let Ok(v) = e.code().parse() {
            status.metadata_mut().insert("lakehouse-error-code", v);
        }
        status
    }
}

/// An id to find a hidden error in the log (not a secret).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_variant() {
        let s: Status = FlightError::Query(QueryError::TooManyRows { max_rows: 5 }).into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(
            s.metadata().get("lakehouse-error-code").unwrap(),
            "too_many_rows"
        );
        let s: Status = FlightError::Query(QueryError::Timeout { secs: 1 }).into();
        assert_eq!(s.code(), Code::DeadlineExceeded);
        let s: Status = FlightError::Query(QueryError::Internal("disk on fire".into())).into();
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("disk on fire"), "{}", s.message());
        let s: Status = FlightError::Forbidden("no".into()).into();
        assert_eq!(s.code(), Code::PermissionDenied);
    }
}
