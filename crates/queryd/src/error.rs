//! queryd's error type and how DataFusion errors map onto it.
//!
//! Classification is structural: by `DataFusionError` variant (after
//! unwrapping context layers with `find_root`), by the typed catalog error
//! kind, and by what the engine itself observed (the schema provider records
//! the table names it could not resolve) — never by matching message text.
//!
//! Status choices (also in the crate docs): bad SQL, plan and data errors are
//! 400; the memory limit and the row cap are 413 (the answer is too large for
//! this server's limits); the timeout is 408; object store faults are 500.

use datafusion::error::DataFusionError;
use http::StatusCode;
use lakehouse_catalogd::{CatalogError, ErrorKind};
use lakehouse_common::{ApiError, UpstreamError};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// 400: the request itself is malformed (empty SQL, unknown format, …).
    #[error("{0}")]
    InvalidRequest(String),
    /// 400: the SQL does not parse. The message carries the line and column.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// 400: a statement the read-only sandbox does not run.
    #[error(
        "{what} is not allowed: queryd is read-only and runs only queries (SELECT, WITH, VALUES) and EXPLAIN [ANALYZE] of them"
    )]
    Forbidden { what: String },
    /// 400: a table that is not a dataset.
    #[error("{}", unknown_table_message(.tables, .available))]
    UnknownTable {
        tables: Vec<String>,
        available: Vec<String>,
    },
    /// 400: the query does not plan (unknown column, type mismatch, …).
    #[error("{0}")]
    Plan(String),
    /// 400: the query failed on the data (bad cast, division by zero, …).
    #[error("{0}")]
    Execution(String),
    /// 400: a feature DataFusion does not implement.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// 408: the query ran longer than `[queryd].timeout_secs`.
    #[error(
        "the query did not finish within {secs} s (the server's [queryd].timeout_secs); narrow it or ask for a higher limit"
    )]
    Timeout { secs: u64 },
    /// 413: the query needed more memory than `[queryd].memory_limit`.
    #[error(
        "the query needs more memory than the server allows ([queryd].memory_limit = {limit}): {detail}"
    )]
    MemoryLimit { limit: String, detail: String },
    /// 413: the result has more rows than `[queryd].max_rows`.
    #[error(
        "the result has more than {max_rows} rows (the server's [queryd].max_rows); add a LIMIT or aggregate"
    )]
    TooManyRows { max_rows: u64 },
    /// The catalog failed (remote unavailable → 503, anything else → 500).
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// 500: a real fault (object store, I/O, a DataFusion internal error).
    #[error("{0}")]
    Internal(String),
    /// storaged (or catalogd) did not answer: 503/504/502 naming it.
    #[error(transparent)]
    Upstream(UpstreamError),
    /// An error answer from a remote queryd (the HTTP client).
    #[error("{message}")]
    Remote {
        status: u16,
        code: String,
        message: String,
    },
    /// The remote queryd could not be reached.
    #[error("query service at {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
}

fn unknown_table_message(tables: &[String], available: &[String]) -> String {
    let names = tables
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let what = if tables.len() == 1 { "table" } else { "tables" };
    if available.is_empty() {
        format!("unknown {what} {names}: the catalog has no datasets yet")
    } else {
        // Quoted as SQL identifiers, since names with `/` or `-` need quotes.
        let list = available
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "unknown {what} {names}; the datasets are: {list} (quote names that contain / or -)"
        )
    }
}

impl QueryError {
    /// The stable machine code on the wire.
    pub fn code(&self) -> &str {
        match self {
            QueryError::InvalidRequest(_) => "invalid_request",
            QueryError::Syntax(_) => "syntax_error",
            QueryError::Forbidden { .. } => "forbidden_statement",
            QueryError::UnknownTable { .. } => "unknown_table",
            QueryError::Plan(_) => "plan_error",
            QueryError::Execution(_) => "execution_error",
            QueryError::NotSupported(_) => "not_supported",
            QueryError::Timeout { .. } => "query_timeout",
            QueryError::MemoryLimit { .. } => "memory_limit",
            QueryError::TooManyRows { .. } => "too_many_rows",
            QueryError::Catalog(e) if e.kind() == ErrorKind::Unavailable => "unavailable",
            QueryError::Catalog(_) | QueryError::Internal(_) => "internal",
            QueryError::Upstream(up) => up.code(),
            QueryError::Remote { code, .. } => code,
            QueryError::Unavailable { .. } => "unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::InvalidRequest(_)
            | QueryError::Syntax(_)
            | QueryError::Forbidden { .. }
            | QueryError::UnknownTable { .. }
            | QueryError::Plan(_)
            | QueryError::Execution(_)
            | QueryError::NotSupported(_) => StatusCode::BAD_REQUEST,
            QueryError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            QueryError::MemoryLimit { .. } | QueryError::TooManyRows { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            QueryError::Catalog(e) if e.kind() == ErrorKind::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            QueryError::Catalog(_) | QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            QueryError::Upstream(up) => up.status(),
            QueryError::Remote { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            QueryError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the query (not the server) is at fault.
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }
}

/// Maps a DataFusion error by its variant. `limit` names the memory limit
/// for the message.
pub(crate) fn classify(e: &DataFusionError, memory_limit: &str) -> QueryError {
    // A store or catalog that did not answer, wherever it sits in the chain.
    if let Some(up) = UpstreamError::find(e) {
        return QueryError::Upstream(up.clone());
    }
    // `find_root` walks Context / Shared / External(DataFusionError) /
    // ArrowError(External) layers down to the innermost DataFusion error.
    let root = e.find_root();
    match root {
        DataFusionError::SQL(_, _) => QueryError::Syntax(strip(root)),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(_, _) => {
            QueryError::Plan(strip(root))
        }
        DataFusionError::Configuration(_) => QueryError::Plan(strip(root)),
        DataFusionError::NotImplemented(_) => QueryError::NotSupported(strip(root)),
        DataFusionError::ResourcesExhausted(_) => QueryError::MemoryLimit {
            limit: memory_limit.to_string(),
            detail: strip(root),
        },
        DataFusionError::Execution(_) => QueryError::Execution(strip(root)),
        DataFusionError::ArrowError(ae, _) => {
            use datafusion::arrow::error::ArrowError as A;
            match ae.as_ref() {
                // Errors computing on the query's data: the query's fault.
                A::CastError(_)
                | A::ParseError(_)
                | A::DivideByZero
                | A::ArithmeticOverflow(_)
                | A::ComputeError(_)
                | A::InvalidArgumentError(_)
                | A::SchemaError(_)
                | A::NotYetImplemented(_)
                | A::DictionaryKeyOverflowError
                | A::RunEndIndexOverflowError => QueryError::Execution(strip(root)),
                _ => QueryError::Internal(strip(root)),
            }
        }
        DataFusionError::Diagnostic(_, inner) => classify(inner, memory_limit),
        DataFusionError::Collection(errs) if !errs.is_empty() => classify(&errs[0], memory_limit),
        _ => QueryError::Internal(strip(root)),
    }
}

fn strip(e: &DataFusionError) -> String {
    e.strip_backtrace()
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        if let Some(up) = UpstreamError::find(&e) {
            return up.into();
        }
        let status = e.status();
        if status.is_server_error() && !matches!(e, QueryError::Remote { .. }) {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return ApiError::unavailable(e.to_string());
            }
            return ApiError::internal(&e);
        }
        let code: &'static str = match &e {
            QueryError::InvalidRequest(_) => "invalid_request",
            QueryError::Syntax(_) => "syntax_error",
            QueryError::Forbidden { .. } => "forbidden_statement",
            QueryError::UnknownTable { .. } => "unknown_table",
            QueryError::Plan(_) => "plan_error",
            QueryError::Execution(_) => "execution_error",
            QueryError::NotSupported(_) => "not_supported",
            QueryError::Timeout { .. } => "query_timeout",
            QueryError::MemoryLimit { .. } => "memory_limit",
            QueryError::TooManyRows { .. } => "too_many_rows",
            // A remote answer is passed through with its own code (leaked
            // into 'static once per distinct code; there are few).
            QueryError::Remote { code, .. } => static_code(code),
            QueryError::Catalog(_)
            | QueryError::Internal(_)
            | QueryError::Unavailable { .. }
            | QueryError::Upstream(_) => "internal",
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Maps a remote code back to one of ours, so no string is leaked.
fn static_code(code: &str) -> &'static str {
    const CODES: [&str; 13] = [
        "invalid_request",
        "syntax_error",
        "forbidden_statement",
        "unknown_table",
        "plan_error",
        "execution_error",
        "not_supported",
        "query_timeout",
        "memory_limit",
        "too_many_rows",
        "unavailable",
        "internal",
        "invalid_json",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("remote_error")
}

/// Whether a catalog error means "no such dataset" (a name the catalog's
/// grammar rejects, like `/etc/passwd`, cannot be one either).
pub(crate) fn is_not_found(e: &CatalogError) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidName)
}
