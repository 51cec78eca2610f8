//! SQL that writes: `INSERT`, `CREATE TABLE … AS`, `DELETE`, `UPDATE` and
//! `MERGE`, each one new table version of one dataset.
//!
//! A write statement runs as a job like a query (the same runtime, memory
//! pool, memory guard, timeout and cancellation), with the caller's
//! [`Access`] checked first: a `read` token gets 403 `write_not_allowed`.
//! The statement reads the dataset's latest version and commits exactly one
//! version:
//!
//! - `INSERT` and `CREATE TABLE AS` ([`append`]) run their query, cast the
//!   rows to the dataset's schema and write Parquet files, then register
//!   them with the catalog like an ingest (an append retries when another
//!   register won the race; `CREATE TABLE` of an existing name is 409
//!   `table_exists`);
//! - `DELETE`, `UPDATE` ([`rows`]) and `MERGE` ([`merge`]) are delta-rs's
//!   operations on the dataset's Delta table (only files whose statistics
//!   can hold affected rows are rewritten), then the catalog records the
//!   version ([`lakehouse_catalogd::Catalog::sync`]).
//!
//! Isolation: delta-rs commits only if no version committed meanwhile
//! touched what the statement read; otherwise the statement is run again
//! on the new version, up to [`ATTEMPTS`] times, then fails with 409
//! `write_conflict` naming the version — an update is never lost.
//!
//! Every data file is written through the statement's journal
//! ([`lakehouse_table::journal`]): a statement that fails, is cancelled or
//! times out deletes what it wrote, and a start after `kill -9` deletes what
//! no version took. The answer is one row: the dataset, the version and the
//! rows inserted, updated and deleted.

mod append;
mod merge;
pub(crate) mod params;
mod rows;

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use lakehouse_common::auth::{Principal, Role};
use lakehouse_table::journal::Journal;
use lakehouse_table::{Changed, TableError, Tables};
use object_store::ObjectStore;
use parking_lot::RwLock;
use tokio::sync::mpsc;
use url::Url;

use crate::engine::{Job, Stop, StreamEnd};
use crate::error::QueryError;

/// How many times a statement runs when concurrent versions conflict.
pub(crate) const ATTEMPTS: usize = 4;

/// What the caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Queries only (a `read` token).
    #[default]
    ReadOnly,
    /// Queries and write statements (a `write` or `admin` token, or no auth).
    ReadWrite,
}

impl Access {
    /// What the holder of `principal` may do; `None` (auth off: loopback
    /// only) may write, as every other route allows. Every edge — HTTP,
    /// PostgreSQL, Flight SQL — maps its caller through this.
    pub fn of(principal: Option<&Principal>) -> Access {
        match principal {
            Some(p) if p.role < Role::Write => Access::ReadOnly,
            _ => Access::ReadWrite,
        }
    }
}

/// The write statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Insert,
    CreateTableAs,
    Delete,
    Update,
    Merge,
}

impl Kind {
    /// The statement's kind, if it is a write statement queryd runs.
    pub(crate) fn of(stmt: &DfStatement) -> Option<Kind> {
        let DfStatement::Statement(s) = stmt else {
            return None;
        };
        match s.as_ref() {
            SqlStatement::Insert(_) => Some(Kind::Insert),
            SqlStatement::CreateTable(c) if c.query.is_some() => Some(Kind::CreateTableAs),
            SqlStatement::Delete(_) => Some(Kind::Delete),
            SqlStatement::Update(_) => Some(Kind::Update),
            SqlStatement::Merge(_) => Some(Kind::Merge),
            _ => None,
        }
    }

    /// The statement's name, as in error messages (`CREATE TABLE AS`).
    pub fn keyword(self) -> &'static str {
        match self {
            Kind::Insert => "INSERT",
            Kind::CreateTableAs => "CREATE TABLE AS",
            Kind::Delete => "DELETE",
            Kind::Update => "UPDATE",
            Kind::Merge => "MERGE",
        }
    }
}

/// What a statement did, as its answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub dataset: String,
    pub changed: Changed,
}

/// The schema of a write statement's one-row answer.
pub fn answer_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("dataset", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("rows_inserted", DataType::UInt64, false),
        Field::new("rows_updated", DataType::UInt64, false),
        Field::new("rows_deleted", DataType::UInt64, false),
    ]))
}

/// The rows a write statement changed, read off its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl WriteCounts {
    /// The counts in a write statement's answer (batches of
    /// [`answer_schema`]); `None` if `answer` holds no answer row.
    pub fn of(answer: &[RecordBatch]) -> Option<WriteCounts> {
        let batch = answer.iter().find(|b| b.num_rows() > 0)?;
        let count = |name: &str| {
            batch
                .column_by_name(name)?
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.value(0))
        };
        Some(WriteCounts {
            inserted: count("rows_inserted")?,
            updated: count("rows_updated")?,
            deleted: count("rows_deleted")?,
        })
    }

    /// Every row the statement changed.
    pub fn total(self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

impl Outcome {
    fn batch(&self) -> Result<RecordBatch, QueryError> {
        let c = &self.changed;
        RecordBatch::try_new(
            answer_schema(),
            vec![
                Arc::new(StringArray::from(vec![self.dataset.clone()])),
                Arc::new(Int64Array::from(vec![c.version])),
                Arc::new(UInt64Array::from(vec![c.inserted])),
                Arc::new(UInt64Array::from(vec![c.updated])),
                Arc::new(UInt64Array::from(vec![c.deleted])),
            ],
        )
        .map_err(|e| QueryError::Internal(e.to_string()))
    }
}

impl crate::QueryEngine {
    /// Settles the write statements a crash interrupted (run once at
    /// start-up, before serving): deletes the files no version took, and
    /// has the catalog record versions that were committed but not yet
    /// recorded. Returns how many statements it settled.
    pub async fn recover_writes(&self) -> Result<usize, QueryError> {
        let store = self.shared.store.clone();
        let (settled, committed) = lakehouse_table::journal::recover(store)
            .await
            .map_err(|e| QueryError::Internal(format!("settling interrupted statements: {e}")))?;
        for dataset in committed {
            match self.shared.catalog.sync(&dataset).await {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        lakehouse_catalogd::ErrorKind::NotFound
                            | lakehouse_catalogd::ErrorKind::NoTable
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(settled)
    }
}

/// A statement's object stores: the lakehouse store, plus the stores
/// delta-rs registers for the table it works on (its own view of the
/// same store). Queries never get this registry: only code registers here.
#[derive(Debug)]
struct StatementStores {
    base: Arc<dyn ObjectStoreRegistry>,
    extra: RwLock<Vec<(Url, Arc<dyn ObjectStore>)>>,
}

fn same_store(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str()
}

impl ObjectStoreRegistry for StatementStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        if self.base.get_store(url).is_ok() {
            return self.base.register_store(url, store);
        }
        let mut extra = self.extra.write();
        let old = extra
            .iter()
            .position(|(u, _)| same_store(u, url))
            .map(|i| extra.remove(i).1);
        extra.push((url.clone(), store));
        old
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if let Some((_, s)) = self.extra.read().iter().find(|(u, _)| same_store(u, url)) {
            return Ok(s.clone());
        }
        self.base.get_store(url)
    }
}

/// Runs `op` with the statement's journal: on failure the files it wrote
/// are deleted (also when the future is dropped: cancelled or timed out).
struct Armed(Option<Arc<Journal>>);

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(j) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { j.abort().await });
        }
    }
}

impl Job {
    /// A session for a write statement: this job's, with a registry that
    /// accepts the table's store from delta-rs.
    pub(crate) fn write_session(&self) -> SessionState {
        let rt = self.state.runtime_env();
        let runtime = RuntimeEnv {
            memory_pool: rt.memory_pool.clone(),
            disk_manager: rt.disk_manager.clone(),
            cache_manager: rt.cache_manager.clone(),
            object_store_registry: Arc::new(StatementStores {
                base: rt.object_store_registry.clone(),
                extra: RwLock::new(Vec::new()),
            }),
        };
        SessionStateBuilder::new_from_existing(self.state.clone())
            .with_runtime_env(Arc::new(runtime))
            // delta-rs plans its DELETE/UPDATE/MERGE with custom logical nodes
            // (metric observers, the merge barrier) that only its planner lowers.
            .with_query_planner(lakehouse_table::delta::DeltaPlanner::new())
            .build()
    }

    /// Runs a write statement and sends its one-row answer.
    pub(crate) async fn run_write(
        &self,
        kind: Kind,
        stmt: DfStatement,
        tx: mpsc::Sender<Result<bytes::Bytes, QueryError>>,
    ) -> Result<StreamEnd, QueryError> {
        let Some(batch) = self.write_answer(kind, stmt).await? else {
            return Ok(StreamEnd::Complete { rows: 0 });
        };
        let schema = batch.schema();
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(async move { Ok(batch) }),
        ));
        self.stream_out(stream, true, tx).await
    }

    /// Runs a write statement (its `$n` replaced by the bound values) and
    /// returns its one-row answer; `None` if the caller went away.
    pub(crate) async fn write_answer(
        &self,
        kind: Kind,
        stmt: DfStatement,
    ) -> Result<Option<RecordBatch>, QueryError> {
        let stmt = params::inline(stmt, self.params.as_ref())?;
        match self.guarded(self.write_with_retries(kind, &stmt)).await {
            Ok(o) => o.batch().map(Some),
            Err(Stop::Gone) => Ok(None),
            Err(Stop::Error(e)) => Err(e),
        }
    }

    async fn write_with_retries(
        &self,
        kind: Kind,
        stmt: &DfStatement,
    ) -> Result<Outcome, QueryError> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Re-resolve tables: the retry reads the new version.
                self.schema.opened.lock().clear();
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            match self.write_once(kind, stmt).await {
                Err(QueryError::WriteConflict { dataset, version }) => {
                    tracing::info!(%dataset, version, attempt, "write statement conflicted; running it again");
                    last = Some(QueryError::WriteConflict { dataset, version });
                }
                other => return other,
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn write_once(&self, kind: Kind, stmt: &DfStatement) -> Result<Outcome, QueryError> {
        match kind {
            Kind::Insert => self.insert(stmt).await,
            Kind::CreateTableAs => self.create_table_as(stmt).await,
            Kind::Delete | Kind::Update => self.change_rows(kind, stmt).await,
            Kind::Merge => self.merge(stmt).await,
        }
    }

    /// Runs `op` against the dataset's table through a new journal;
    /// deletes what it wrote unless it succeeds.
    pub(crate) async fn journaled<T, F, Fut>(
        &self,
        dataset: &str,
        base: Option<i64>,
        op: F,
    ) -> Result<T, QueryError>
    where
        F: FnOnce(Arc<Journal>) -> Fut,
        Fut: std::future::Future<Output = Result<T, QueryError>>,
    {
        let statement = uuid::Uuid::new_v4().simple().to_string();
        let journal = Journal::begin(self.shared.store.clone(), dataset, &statement, base)
            .await
            .map_err(|e| self.table_error(dataset, e))?;
        let mut armed = Armed(Some(journal.clone()));
        let result = op(journal.clone()).await;
        armed.0 = None;
        match &result {
            Ok(_) => journal.finish().await,
            Err(_) => journal.abort().await,
        }
        result
    }

    /// The dataset's tables, written through `journal`.
    pub(crate) fn tables(journal: &Arc<Journal>) -> Tables {
        Tables::new(journal.store())
    }

    /// The dataset's manifest; a name that is none is `UnknownTable`.
    pub(crate) async fn manifest(
        &self,
        dataset: &str,
    ) -> Result<lakehouse_catalogd::Manifest, QueryError> {
        match self.shared.catalog.get(dataset).await {
            Ok(m) => Ok(m),
            Err(e) if e.kind() == lakehouse_catalogd::ErrorKind::NotFound => {
                let available = self
                    .shared
                    .catalog
                    .list()
                    .await?
                    .into_iter()
                    .map(|m| m.name)
                    .collect();
                Err(QueryError::UnknownTable {
                    tables: vec![dataset.to_string()],
                    available,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A dataset whose rows cannot be changed in place: 409 `no_table`.
    pub(crate) fn no_table(&self, dataset: &str) -> QueryError {
        QueryError::Catalog(lakehouse_catalogd::CatalogError::NoTable {
            name: dataset.to_string(),
            why: "its schema cannot be stored as a Delta table, so its rows cannot be changed in place".to_string(),
        })
    }

    /// Records a committed version in the catalog; the manifest after it.
    pub(crate) async fn sync(&self, dataset: &str) -> Result<(), QueryError> {
        self.shared.catalog.sync(dataset).await?;
        Ok(())
    }
}

impl Job {
    /// A table-layer failure of a statement on `dataset`: a conflict, an
    /// error of the statement's own evaluation (by its DataFusion error, as
    /// for queries), or the table's.
    pub(crate) fn table_error(&self, dataset: &str, e: TableError) -> QueryError {
        if let TableError::Conflict { version, .. } = e {
            return QueryError::WriteConflict {
                dataset: dataset.to_string(),
                version,
            };
        }
        if let Some(df) = find_in::<DataFusionError>(&e) {
            return self.classify(df);
        }
        QueryError::Table {
            dataset: dataset.to_string(),
            source: Box::new(e),
        }
    }
}

/// The first `T` in `e`'s source chain.
fn find_in<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_the_role() {
        let who = |role| Principal {
            name: "t".to_string(),
            role,
        };
        assert_eq!(Access::of(Some(&who(Role::Read))), Access::ReadOnly);
        assert_eq!(Access::of(Some(&who(Role::Write))), Access::ReadWrite);
        assert_eq!(Access::of(Some(&who(Role::Admin))), Access::ReadWrite);
        assert_eq!(Access::of(None), Access::ReadWrite);
    }

    #[test]
    fn counts_come_from_the_answer() {
        let outcome = Outcome {
            dataset: "d".to_string(),
            changed: Changed {
                version: 3,
                inserted: 1,
                updated: 2,
                deleted: 4,
                ..Default::default()
            },
        };
        let c = WriteCounts::of(&[outcome.batch().unwrap()]).unwrap();
        assert_eq!((c.inserted, c.updated, c.deleted, c.total()), (1, 2, 4, 7));
        assert_eq!(WriteCounts::of(&[]), None);
    }
}
