//! The edge's view of a [`QueryError`]: its HTTP status, its stable code,
//! its machine-readable details and the JSON envelope ([`ApiError`]) — one
//! table, read by the HTTP router, the client (remote codes mapped back) and
//! the protocol crates (which turn a status class into a SQLSTATE / gRPC
//! code). The core (`error.rs`) knows none of it.

use http::StatusCode;
use lakehouse_catalogd::ErrorKind;
use lakehouse_common::{ApiError, UpstreamError};

use lakehouse_table::TableError;
use lakehouse_table::delta::DeltaTableError;

use crate::error::QueryError;

impl QueryError {
    /// The stable machine code on the wire.
    pub fn code(&self) -> &str {
        match self {
            QueryError::Remote { code, .. } => code,
            other => other.static_code(),
        }
    }

    fn static_code(&self) -> &'static str {
        match self {
            QueryError::InvalidRequest(_) => "invalid_request",
            QueryError::Syntax { .. } => "syntax_error",
            QueryError::TooComplex { .. } => "query_too_complex",
            QueryError::Forbidden { .. } => "forbidden_statement",
            QueryError::WriteDenied { .. } => "write_not_allowed",
            QueryError::WriteConflict { .. } => "write_conflict",
            QueryError::TableExists { .. } => "table_exists",
            QueryError::Table { source, .. } => table_code(source),
            QueryError::UnknownTable { .. } => "unknown_table",
            QueryError::AmbiguousColumn { .. } => "ambiguous_column",
            QueryError::Plan(_) => "plan_error",
            QueryError::Execution(_) => "execution_error",
            QueryError::InvalidRegex(_) => "invalid_regex",
            QueryError::NotSupported(_) => "not_supported",
            QueryError::Timeout { .. } => "query_timeout",
            QueryError::MemoryLimit { .. } => "memory_limit",
            QueryError::ValueTooLarge(_) => "value_too_large",
            QueryError::TooManyRows { .. } => "too_many_rows",
            QueryError::MemoryPressure { .. } => "memory_pressure",
            QueryError::DatasetDamaged(_) => "dataset_damaged",
            QueryError::Vectors(v) => v.code(),
            QueryError::NoEmbeddingModel(_) => "no_embedding_model",
            QueryError::Catalog(e) if e.kind() == ErrorKind::Unavailable => "unavailable",
            QueryError::Catalog(e) if e.kind() == ErrorKind::NoSuchVersion => "no_such_version",
            QueryError::Catalog(e) if e.kind() == ErrorKind::NoTable => "no_table",
            QueryError::Catalog(e) if e.kind() == ErrorKind::InvalidRequest => "invalid_request",
            QueryError::Catalog(_) | QueryError::Internal(_) => "internal",
            QueryError::Upstream(up) => up.code(),
            // A remote answer is passed through with its own code, mapped
            // back to one of ours so no string is leaked into 'static.
            QueryError::Remote { code, .. } => static_code(code),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::InvalidRequest(_)
            | QueryError::Syntax { .. }
            | QueryError::TooComplex { .. }
            | QueryError::Forbidden { .. }
            | QueryError::UnknownTable { .. }
            | QueryError::AmbiguousColumn { .. }
            | QueryError::Plan(_)
            | QueryError::Execution(_)
            | QueryError::InvalidRegex(_)
            | QueryError::NotSupported(_) => StatusCode::BAD_REQUEST,
            QueryError::WriteDenied { .. } => StatusCode::FORBIDDEN,
            QueryError::WriteConflict { .. } | QueryError::TableExists { .. } => {
                StatusCode::CONFLICT
            }
            QueryError::Table { source, .. } => table_status(source),
            QueryError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            QueryError::MemoryLimit { .. }
            | QueryError::ValueTooLarge(_)
            | QueryError::TooManyRows { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            QueryError::MemoryPressure { .. } => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Catalog(e) if e.kind() == ErrorKind::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            QueryError::Catalog(e) if e.kind() == ErrorKind::NoSuchVersion => StatusCode::NOT_FOUND,
            QueryError::Catalog(e) if e.kind() == ErrorKind::NoTable => StatusCode::CONFLICT,
            QueryError::Catalog(e) if e.kind() == ErrorKind::InvalidRequest => {
                StatusCode::BAD_REQUEST
            }
            QueryError::DatasetDamaged(_) | QueryError::Catalog(_) | QueryError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            QueryError::Upstream(up) => up.status(),
            QueryError::Vectors(v) => v.status(),
            QueryError::NoEmbeddingModel(_) => StatusCode::NOT_IMPLEMENTED,
            QueryError::Remote { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    /// Whether the query (not the server) is at fault.
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }

    /// Machine-readable fields beside code and message.
    pub fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut d = serde_json::Map::new();
        match self {
            QueryError::Syntax { line, column, .. } => {
                if let (Some(l), Some(c)) = (line, column) {
                    d.insert("line".into(), (*l).into());
                    d.insert("column".into(), (*c).into());
                }
            }
            QueryError::TooComplex { limit, setting, .. } => {
                d.insert("limit".into(), (*limit).into());
                d.insert("setting".into(), (*setting).into());
            }
            QueryError::AmbiguousColumn { name, candidates } => {
                d.insert("name".into(), name.clone().into());
                d.insert("candidates".into(), candidates.clone().into());
            }
            QueryError::ValueTooLarge(e) => {
                d.insert("function".into(), e.function.clone().into());
                d.insert("limit".into(), e.limit.into());
            }
            QueryError::DatasetDamaged(e) => {
                d.insert("dataset".into(), e.dataset.clone().into());
                d.insert("object".into(), e.object.clone().into());
            }
            QueryError::TooManyRows { max_rows } => {
                d.insert("max_rows".into(), (*max_rows).into());
            }
            QueryError::WriteConflict { dataset, version } => {
                d.insert("dataset".into(), dataset.clone().into());
                d.insert("version".into(), (*version).into());
            }
            QueryError::TableExists { dataset } | QueryError::Table { dataset, .. } => {
                d.insert("dataset".into(), dataset.clone().into());
            }
            QueryError::Remote { details, .. } => d = details.clone(),
            _ => {}
        }
        d
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        // `Upstream` is transparent (its source is the transport error), so
        // it is matched first; other variants may carry one in their chain.
        if let QueryError::Upstream(up) = &e {
            return up.into();
        }
        if let Some(up) = UpstreamError::find(&e) {
            return up.into();
        }
        let status = e.status();
        // A 501 names the setting or feature that is missing: nothing to hide.
        let hidden = status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && !matches!(
                e,
                QueryError::Remote { .. }
                    | QueryError::DatasetDamaged(_)
                    | QueryError::MemoryPressure { .. }
            );
        if hidden {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return ApiError::unavailable(e.to_string());
            }
            return ApiError::internal(&e);
        }
        let code = e.static_code();
        let details = e.details();
        let mut api = ApiError::new(status, code, e.to_string());
        api.details = details;
        api
    }
}

/// A table error's code, by its variant.
fn table_code(e: &TableError) -> &'static str {
    match e {
        TableError::NoTable { .. } => "no_table",
        TableError::NoSuchColumn { .. } => "plan_error",
        TableError::UnsupportedSchema(_) => "not_supported",
        TableError::IncompatibleSchema { .. } => "schema_conflict",
        TableError::Conflict { .. } => "write_conflict",
        TableError::Delta(d) if user_data_error(d) => "execution_error",
        TableError::NoSuchVersion { .. } => "no_such_version",
        TableError::Vacuumed { .. }
        | TableError::BeforeFirstVersion { .. }
        | TableError::DamagedLog { .. }
        | TableError::Storage(_)
        | TableError::Delta(_) => "internal",
    }
}

fn table_status(e: &TableError) -> StatusCode {
    match table_code(e) {
        "no_table" | "schema_conflict" | "write_conflict" => StatusCode::CONFLICT,
        "plan_error" | "not_supported" | "execution_error" => StatusCode::BAD_REQUEST,
        "no_such_version" => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// delta-rs errors that the statement's data or expressions cause.
fn user_data_error(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::SchemaMismatch { .. }
            | DeltaTableError::InvalidData { .. }
            | DeltaTableError::Arrow { .. }
    )
}

/// Maps a remote code back to one of ours, so no string is leaked.
fn static_code(code: &str) -> &'static str {
    const CODES: [&str; 29] = [
        "write_not_allowed",
        "write_conflict",
        "table_exists",
        "schema_conflict",
        "invalid_request",
        "syntax_error",
        "query_too_complex",
        "forbidden_statement",
        "unknown_table",
        "ambiguous_column",
        "plan_error",
        "execution_error",
        "invalid_regex",
        "not_supported",
        "query_timeout",
        "memory_limit",
        "value_too_large",
        "too_many_rows",
        "memory_pressure",
        "dataset_damaged",
        "unavailable",
        "internal",
        "invalid_json",
        "invalid_body",
        "upstream_unavailable",
        "upstream_timeout",
        "bad_gateway",
        "no_such_version",
        "no_table",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("remote_error")
}
