//! The one error type of the table layer.

use deltalake_core::DeltaTableError;

/// Why a table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// No Delta table exists at the dataset's location.
    #[error("dataset {name:?} has no table history")]
    NoTable { name: String },
    /// The requested version is not in the table's log (never written, or
    /// its log entry was cleaned up).
    #[error("dataset {name:?} has no version {version} (the latest is {latest})")]
    NoSuchVersion {
        name: String,
        version: i64,
        latest: i64,
    },
    /// A column the operation names is not in the table.
    #[error("dataset {name:?} has no column {column:?}")]
    NoSuchColumn { name: String, column: String },
    /// A version whose files vacuum deleted.
    #[error(
        "dataset {name:?}: version {version} was vacuumed; the oldest version kept is {oldest}"
    )]
    Vacuumed {
        name: String,
        version: i64,
        oldest: i64,
    },
    /// A timestamp earlier than the table's first version.
    #[error("dataset {name:?} did not exist at {at}")]
    BeforeFirstVersion { name: String, at: String },
    /// The schema has a type the Delta protocol cannot store.
    #[error("the schema cannot be stored as a Delta table: {0}")]
    UnsupportedSchema(String),
    /// A new schema that drops a column of the table's or changes its type
    /// (schema evolution only adds columns).
    #[error("dataset {name:?}: the new schema is not an evolution of the table's: {}", differences.join("; "))]
    IncompatibleSchema {
        name: String,
        differences: Vec<String>,
    },
    /// Another writer committed the version this commit expected to write.
    #[error("dataset {name:?}: version {version} was committed by another writer")]
    Conflict { name: String, version: i64 },
    /// A stored log entry could not be read as one.
    #[error("dataset {name:?}: log entry {version} is damaged: {detail}")]
    DamagedLog {
        name: String,
        version: i64,
        detail: String,
    },
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("delta: {0}")]
    Delta(#[source] Box<DeltaTableError>),
}

impl From<DeltaTableError> for TableError {
    fn from(e: DeltaTableError) -> Self {
        match e {
            DeltaTableError::ObjectStore { source } => TableError::Storage(source),
            other => TableError::Delta(Box::new(other)),
        }
    }
}

impl TableError {
    /// Whether the object store failed (found by type in the source chain:
    /// delta-rs wraps store errors in its own).
    pub fn is_storage(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if e.downcast_ref::<object_store::Error>().is_some() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

pub type Result<T, E = TableError> = std::result::Result<T, E>;
