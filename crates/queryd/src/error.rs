//! queryd's error type and how DataFusion errors map onto it.
//!
//! Classification is structural: by `DataFusionError` variant (after
//! unwrapping context layers with `find_root`), by the typed errors found in
//! the error's `source()` chain (our own [`OutputTooLarge`] and
//! [`DamagedObject`], `regex::Error`, `object_store::Error::NotFound`), by
//! the typed catalog error kind, and by what the engine itself observed (the
//! schema provider records the table names it could not resolve) — never by
//! matching message text.
//!
//! Messages are built from the innermost error's own payload (the string a
//! `Plan` or `Execution` variant carries, the Arrow or Parquet error's text),
//! so no `Error during planning:` / `Arrow error:` / `External error:` /
//! `ParserError("…")` wrapper reaches a person.
//!
//! Status choices (also in the README): bad SQL, plan and data errors are
//! 400 (a query nested too deep is 400 `query_too_complex`); the memory limit,
//! a function output over `[queryd].function_output_limit` and the row cap
//! are 413; the timeout is 408; a query cancelled because the process ran low
//! on memory is 503 `memory_pressure`; a dataset whose objects are missing,
//! resized or not Parquet is 500 `dataset_damaged` naming the dataset and
//! the object (the data is at fault, not the request); other object store
//! faults are 500 with only an error id.

use std::error::Error as StdError;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use lakehouse_catalogd::{CatalogError, ErrorKind};
use lakehouse_common::UpstreamError;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// 400: the request itself is malformed (empty SQL, unknown format, …).
    #[error("{0}")]
    InvalidRequest(String),
    /// 400: the SQL does not parse; `line` and `column` locate it.
    #[error("{}", syntax_message(.detail, *.line, *.column))]
    Syntax {
        detail: String,
        line: Option<u64>,
        column: Option<u64>,
    },
    /// 400: the statement is nested deeper (or has more operators) than the
    /// server plans safely.
    #[error(
        "the query is too complex: {what} (the limit is {limit}: {setting}); simplify it, e.g. IN (…) instead of a long OR chain, or a VALUES list instead of many UNION ALL branches"
    )]
    TooComplex {
        what: String,
        limit: usize,
        setting: &'static str,
    },
    /// 400: a statement queryd does not run.
    #[error(
        "{what} is not allowed: queryd runs queries (SELECT, WITH, VALUES), EXPLAIN [ANALYZE] of them and, with a write token, INSERT, CREATE TABLE AS, DELETE, UPDATE and MERGE"
    )]
    Forbidden { what: String },
    /// 403: a write statement from a caller who may only read.
    #[error("{what} changes data and needs a token with the write role; this token may only read")]
    WriteDenied { what: String },
    /// 409: versions other writers committed meanwhile kept conflicting
    /// with the statement (it changed nothing).
    #[error(
        "dataset {dataset:?}: another writer committed version {version} while this statement ran and it touched the same rows; nothing was changed, run the statement again"
    )]
    WriteConflict { dataset: String, version: i64 },
    /// 409: `CREATE TABLE` of a dataset that exists.
    #[error(
        "dataset {dataset:?} already exists (CREATE TABLE IF NOT EXISTS leaves it as it is; INSERT INTO adds rows)"
    )]
    TableExists { dataset: String },
    /// The dataset's table refused or failed a statement (status by the
    /// table error's variant).
    #[error("dataset {dataset:?}: {source}")]
    Table {
        dataset: String,
        #[source]
        source: Box<lakehouse_table::TableError>,
    },
    /// 400: a table that is not a dataset.
    #[error("{}", unknown_table_message(.tables, .available))]
    UnknownTable {
        tables: Vec<String>,
        available: Vec<String>,
    },
    /// 400: an unquoted name matches several columns that differ only in case.
    #[error(
        "column name {name} is ambiguous: it matches {} (which differ only in case); quote the one you mean",
        quoted_list(.candidates)
    )]
    AmbiguousColumn {
        name: String,
        candidates: Vec<String>,
    },
    /// 400: the query does not plan (unknown column, type mismatch, …).
    #[error("{0}")]
    Plan(String),
    /// 400: the query failed on the data (bad cast, division by zero, …).
    #[error("{0}")]
    Execution(String),
    /// 400: a regular expression that does not compile (bad syntax, or it
    /// compiles larger than the regex engine's size limit).
    #[error("invalid regular expression: {0}")]
    InvalidRegex(String),
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
    /// 413: one call of a function would produce more than
    /// `[queryd].function_output_limit`.
    #[error("{0}")]
    ValueTooLarge(#[source] OutputTooLarge),
    /// A vector index search (`vector_search`, `hybrid_search`) failed:
    /// vectord's own status and code.
    #[error("{0}")]
    Vectors(#[from] lakehouse_vectord::VectorError),
    /// 501: `embed()` with no model configured; names the setting.
    #[error("{0}")]
    NoEmbeddingModel(String),
    /// 413: the result has more rows than `[queryd].max_rows`.
    #[error(
        "the result has more than {max_rows} rows (the server's [queryd].max_rows); add a LIMIT or aggregate"
    )]
    TooManyRows { max_rows: u64 },
    /// 503: the process ran low on memory and this query, the largest
    /// running one, was cancelled to keep the server up.
    #[error(
        "the server ran low on memory (process memory {used} over the guard's {limit}, [queryd].process_memory_limit) and cancelled this query, the largest running one; retry later or narrow the query"
    )]
    MemoryPressure { used: String, limit: String },
    /// 500 with its message: the dataset's objects do not match its manifest.
    #[error("{0}")]
    DatasetDamaged(#[source] DamagedObject),
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
        details: serde_json::Map<String, serde_json::Value>,
    },
}

fn syntax_message(detail: &str, line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("syntax error at line {l}, column {c}: {detail}"),
        _ => format!("syntax error: {detail}"),
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
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
        format!(
            "unknown {what} {names}; the datasets are: {} (quote names that contain / or -)",
            quoted_list(available)
        )
    }
}

/// A function call whose output would exceed the per-call cap; raised by the
/// checked functions (see [`crate::udf`]) before anything is allocated.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{function}(…) would produce about {} for one batch of rows, over the server's limit of {} per function call ([queryd].function_output_limit)",
    lakehouse_common::size::ByteSize(*.bytes),
    lakehouse_common::size::ByteSize(*.limit)
)]
pub struct OutputTooLarge {
    pub function: String,
    pub bytes: u64,
    pub limit: u64,
}

/// What is wrong with a dataset's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The manifest lists it; the store does not have it.
    Missing,
    /// The store has it with another size than the manifest records.
    SizeMismatch { manifest: u64, actual: u64 },
    /// It is there with the right size but does not read as Parquet.
    NotParquet { detail: String },
}

/// A dataset object that does not match its manifest, found while querying.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", damaged_message(.dataset, .object, .damage))]
pub struct DamagedObject {
    pub dataset: String,
    pub object: String,
    pub damage: Damage,
}

fn damaged_message(dataset: &str, object: &str, damage: &Damage) -> String {
    let what = match damage {
        Damage::Missing => "is missing from the store".to_string(),
        Damage::SizeMismatch { manifest, actual } => {
            format!("is {actual} bytes in the store but {manifest} bytes in the manifest")
        }
        Damage::NotParquet { detail } => format!("is not a readable Parquet file ({detail})"),
    };
    format!(
        "dataset \"{dataset}\" is damaged: its object {object} {what}; re-ingest the dataset (or restore the object) and query again"
    )
}

/// The first error of type `T` in `e`'s `source()` chain (DataFusion's
/// `source()` walks every wrapping variant, Arrow's and Parquet's external
/// errors included).
pub(crate) fn find<T: StdError + 'static>(e: &DataFusionError) -> Option<&T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Maps a DataFusion error by its variant. `memory_limit` names the memory
/// limit for the message.
pub(crate) fn classify(e: &DataFusionError, memory_limit: &str) -> QueryError {
    // A store or catalog that did not answer, wherever it sits in the chain.
    if let Some(up) = UpstreamError::find(e) {
        return QueryError::Upstream(up.clone());
    }
    if let Some(q) = find_typed(e) {
        return q;
    }
    // `find_root` walks Context / Shared / External(DataFusionError) /
    // ArrowError(External) layers down to the innermost DataFusion error.
    let root = e.find_root();
    match root {
        DataFusionError::SQL(pe, _) => syntax_error(pe, None),
        DataFusionError::Plan(_) | DataFusionError::SchemaError(_, _) => {
            QueryError::Plan(message(root))
        }
        DataFusionError::Configuration(_) => QueryError::Plan(message(root)),
        DataFusionError::NotImplemented(_) => QueryError::NotSupported(message(root)),
        DataFusionError::ResourcesExhausted(_) => QueryError::MemoryLimit {
            limit: memory_limit.to_string(),
            detail: message(root),
        },
        DataFusionError::Execution(_) => QueryError::Execution(message(root)),
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
                | A::RunEndIndexOverflowError => QueryError::Execution(message(root)),
                _ => QueryError::Internal(message(root)),
            }
        }
        DataFusionError::Diagnostic(_, inner) => classify(inner, memory_limit),
        DataFusionError::Collection(errs) if !errs.is_empty() => classify(&errs[0], memory_limit),
        _ => QueryError::Internal(message(root)),
    }
}

/// The typed errors that decide the class whatever wraps them.
fn find_typed(e: &DataFusionError) -> Option<QueryError> {
    if let Some(t) = find::<OutputTooLarge>(e) {
        return Some(QueryError::ValueTooLarge(t.clone()));
    }
    if let Some(d) = find::<DamagedObject>(e) {
        return Some(QueryError::DatasetDamaged(d.clone()));
    }
    if let Some(c) = find::<crate::limits::TooComplex>(e) {
        return Some(c.clone().into());
    }
    if let Some(m) = find::<lakehouse_common::EmbedError>(e) {
        use lakehouse_common::EmbedError as E;
        return Some(match m {
            E::NotConfigured(msg) => QueryError::NoEmbeddingModel(msg.clone()),
            E::Invalid(msg) => QueryError::InvalidRequest(msg.clone()),
            E::Model(_) => QueryError::Internal(m.to_string()),
        });
    }
    if let Some(r) = find::<regex::Error>(e) {
        return Some(QueryError::InvalidRegex(match r {
            regex::Error::Syntax(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    None
}

/// A SQL parser error from a protocol's own parser, classified like ours.
pub fn from_parser_error(e: &ParserError) -> QueryError {
    syntax_error(e, None)
}

/// A parser error as a person reads it: `syntax error at line 1, column 1:
/// expected a SQL statement, found "selec"`, with the position as fields.
/// sqlparser reports only text (`Expected: …, found: … at Line: L, Column:
/// C`), so its own message is taken apart here; `end` is the position of the
/// end of the input, for the one error it does not locate (running out of
/// input).
pub(crate) fn syntax_error(e: &ParserError, end: Option<(u64, u64)>) -> QueryError {
    let text = match e {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.as_str(),
        ParserError::RecursionLimitExceeded => {
            return crate::limits::TooComplex::parser_nesting().into();
        }
    };
    let (text, pos) = match text.rsplit_once(" at Line: ") {
        Some((head, tail)) => {
            let pos = tail.split_once(", Column: ").and_then(|(l, c)| {
                let c = c.split(|ch: char| !ch.is_ascii_digit()).next()?;
                Some((l.trim().parse().ok()?, c.parse().ok()?))
            });
            (head, pos)
        }
        None => (text, None),
    };
    let detail = match text
        .strip_prefix("Expected: ")
        .and_then(|r| r.rsplit_once(", found: "))
    {
        Some((expected, found)) => {
            let expected = expected.replace("an SQL statement", "a SQL statement");
            if found == "EOF" {
                format!("expected {expected}, found the end of the query")
            } else {
                format!("expected {expected}, found \"{found}\"")
            }
        }
        None => lower_first(text),
    };
    let (line, column) = match pos.or(end) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    QueryError::Syntax {
        detail,
        line,
        column,
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) if !c.as_str().starts_with(|x: char| x.is_uppercase()) => {
            f.to_lowercase().chain(c).collect()
        }
        _ => s.to_string(),
    }
}

/// The innermost error's own message, without the variant prefixes
/// DataFusion's `Display` adds (`Error during planning: `, `Arrow error: `,
/// `External error: `, `Schema error: `, …).
pub(crate) fn message(e: &DataFusionError) -> String {
    let root = e.find_root();
    match root {
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::ResourcesExhausted(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Configuration(m)
        | DataFusionError::Internal(m) => m.clone(),
        DataFusionError::SchemaError(se, _) => se.to_string(),
        DataFusionError::SQL(pe, _) => syntax_error(pe, None).to_string(),
        DataFusionError::ArrowError(ae, _) => arrow_message(ae),
        DataFusionError::ParquetError(pe) => parquet_message(pe),
        DataFusionError::ObjectStore(oe) => oe.to_string(),
        DataFusionError::External(x) => innermost(x.as_ref()),
        DataFusionError::Diagnostic(_, inner) => message(inner),
        DataFusionError::Collection(errs) if !errs.is_empty() => message(&errs[0]),
        other => other.strip_backtrace(),
    }
}

fn arrow_message(ae: &datafusion::arrow::error::ArrowError) -> String {
    use datafusion::arrow::error::ArrowError as A;
    match ae {
        A::NotYetImplemented(m)
        | A::CastError(m)
        | A::MemoryError(m)
        | A::ParseError(m)
        | A::SchemaError(m)
        | A::ComputeError(m)
        | A::CsvError(m)
        | A::JsonError(m)
        | A::IpcError(m)
        | A::InvalidArgumentError(m)
        | A::ParquetError(m)
        | A::CDataInterface(m)
        | A::ArithmeticOverflow(m)
        | A::AvroError(m) => m.clone(),
        A::ExternalError(x) => innermost(x.as_ref()),
        A::IoError(m, _) => m.clone(),
        other => other.to_string(),
    }
}

fn parquet_message(pe: &parquet::errors::ParquetError) -> String {
    use parquet::errors::ParquetError as P;
    match pe {
        P::General(m) | P::NYI(m) | P::EOF(m) | P::ArrowError(m) => m.clone(),
        P::External(x) => innermost(x.as_ref()),
        other => other.to_string(),
    }
}

/// An external error's message; a DataFusion error inside is unwrapped.
fn innermost(x: &(dyn StdError + Send + Sync + 'static)) -> String {
    match x.downcast_ref::<DataFusionError>() {
        Some(d) => message(d),
        None => x.to_string(),
    }
}

/// Whether a catalog error means "no such dataset" (a name the catalog's
/// grammar rejects, like `/etc/passwd`, cannot be one either).
pub(crate) fn is_not_found(e: &CatalogError) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidName)
}
