//! The query engine: sandbox → plan → execute → encode, on a runtime of its
//! own.
//!
//! DataFusion is async but CPU-heavy; its operators run wherever the stream
//! is polled (and spawn their repartition tasks there). So each query runs as
//! one task on a dedicated multi-thread tokio runtime, which plans, executes
//! and encodes, handing encoded chunks to the caller through a small bounded
//! channel (back-pressure: a slow client pauses the query). The request
//! runtime only moves bytes, and stays responsive under heavy queries.
//!
//! The caller gets nothing until the first encoded chunk (which follows the
//! first batch) or an error, so errors before the first byte — syntax, plan,
//! unknown table, the memory limit hit while building a hash table, the row
//! cap, the timeout — are returned as errors, not as a broken stream. An
//! error after that can only end the stream early.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;
use futures::stream::BoxStream;
use lakehouse_catalogd::Catalog;
use object_store::ObjectStore;
use parking_lot::RwLock;
use tokio::sync::mpsc;
use url::Url;

use crate::catalog::{
    CATALOG_NAME, Caches, DatasetSchema, LakehouseCatalog, SCHEMA_NAME, STORE_URL, Shared,
};
use crate::encode::{Encoder, Format};
use crate::error::{QueryError, classify};
use crate::sandbox;

/// An encoded result: chunks of the chosen format, in order. An `Err` item
/// means the query failed after it had started streaming.
pub type ByteStream = BoxStream<'static, Result<Bytes, QueryError>>;

/// SQL over the lakehouse, in process ([`QueryEngine`]) or remote
/// ([`crate::QueryClient`]).
#[async_trait]
pub trait Query: Send + Sync {
    /// Runs one read-only statement and streams its result in `format`.
    /// Errors before the first byte are returned here.
    async fn sql(&self, sql: &str, format: Format) -> Result<ByteStream, QueryError>;
}

/// Limits and tuning, from `[queryd]`.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Longest a query may run, streaming its result included.
    pub timeout: Duration,
    /// DataFusion memory pool size, shared by the running queries (bytes).
    pub memory_limit: u64,
    /// Most rows a result may have.
    pub max_rows: u64,
    /// Parallelism of a plan, and the engine runtime's thread count
    /// (0 = the number of cores).
    pub target_partitions: usize,
    /// Rows per batch inside DataFusion.
    pub batch_size: usize,
    /// Evaluate filters while decoding Parquet (late materialisation).
    pub pushdown_filters: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            memory_limit: 4 << 30,
            max_rows: 1_000_000,
            target_partitions: 0,
            batch_size: 8192,
            pushdown_filters: false,
        }
    }
}

/// Only the lakehouse store: the default registry would also serve
/// `file://`, which nothing in queryd should ever reach.
#[derive(Debug)]
struct LakehouseStores {
    url: Url,
    store: RwLock<Arc<dyn ObjectStore>>,
}

impl ObjectStoreRegistry for LakehouseStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        if url.scheme() == self.url.scheme() && url.host_str() == self.url.host_str() {
            Some(std::mem::replace(&mut *self.store.write(), store))
        } else {
            None
        }
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if url.scheme() == self.url.scheme() && url.host_str() == self.url.host_str() {
            Ok(self.store.read().clone())
        } else {
            Err(DataFusionError::Plan(format!(
                "{url} is outside the lakehouse; only catalogued datasets can be queried"
            )))
        }
    }
}

/// The runtime queries execute on; shut down without blocking when the
/// engine goes (dropping a runtime inside another would panic).
struct ExecRuntime(Option<tokio::runtime::Runtime>);

impl ExecRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime lives as long as the engine")
            .handle()
    }
}

impl Drop for ExecRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// SQL over every catalogued dataset.
pub struct QueryEngine {
    shared: Shared,
    base: SessionState,
    cfg: EngineConfig,
    exec: ExecRuntime,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn ok_or_internal<T>(r: datafusion::error::Result<T>) -> Result<T, QueryError> {
    r.map_err(|e| QueryError::Internal(e.strip_backtrace()))
}

impl QueryEngine {
    /// An engine over `catalog` whose objects are read from `store`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
        mut cfg: EngineConfig,
    ) -> Result<Self, QueryError> {
        if cfg.target_partitions == 0 {
            cfg.target_partitions = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
        }
        let url = Url::parse(STORE_URL).expect("valid store URL");
        let registry = Arc::new(LakehouseStores {
            url: url.clone(),
            store: RwLock::new(store.clone()),
        });
        let runtime: Arc<RuntimeEnv> = ok_or_internal(
            RuntimeEnvBuilder::new()
                .with_object_store_registry(registry)
                .with_memory_limit(cfg.memory_limit as usize, 1.0)
                .build_arc(),
        )?;

        let mut config = SessionConfig::new()
            .with_target_partitions(cfg.target_partitions)
            .with_batch_size(cfg.batch_size.max(1))
            .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false);
        {
            let o = config.options_mut();
            o.execution.parquet.pushdown_filters = cfg.pushdown_filters;
            o.execution.parquet.reorder_filters = cfg.pushdown_filters;
            // Identifiers fold to lower case like every other SQL engine;
            // dataset names are lower case by the catalog's grammar.
            o.sql_parser.enable_ident_normalization = true;
        }
        let base = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .build();

        let exec = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.target_partitions)
            .thread_name("queryd-exec")
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;

        Ok(Self {
            shared: Shared {
                catalog,
                store,
                runtime,
                caches: Arc::new(Caches::default()),
            },
            base,
            cfg,
            exec: ExecRuntime(Some(exec)),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The object store queries read from.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.shared.store.clone()
    }

    /// Runs `sql` and collects the whole result (tests, small answers).
    pub async fn collect(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let mut stream = self.sql(sql, Format::Arrow).await?;
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        let reader =
            datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(buf), None)
                .map_err(|e| QueryError::Internal(e.to_string()))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        Ok((schema, batches))
    }

    /// A session for one query, with its own dataset schema (so the names it
    /// fails to resolve are this query's).
    fn session(&self, schema: Arc<DatasetSchema>) -> SessionState {
        let list = MemoryCatalogProviderList::new();
        list.register_catalog(
            CATALOG_NAME.to_string(),
            Arc::new(LakehouseCatalog::new(schema)),
        );
        SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(Arc::new(list))
            .build()
    }

    fn memory_limit_text(&self) -> String {
        lakehouse_common::size::ByteSize(self.cfg.memory_limit).to_string()
    }
}

#[async_trait]
impl Query for QueryEngine {
    async fn sql(&self, sql: &str, format: Format) -> Result<ByteStream, QueryError> {
        let stmt = sandbox::check(sql)?;
        let schema = Arc::new(DatasetSchema::new(self.shared.clone()));
        let state = self.session(schema.clone());
        let job = Job {
            shared: self.shared.clone(),
            schema,
            state,
            max_rows: self.cfg.max_rows,
            memory_limit: self.memory_limit_text(),
            format,
        };
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, QueryError>>(4);
        let timeout = self.cfg.timeout;
        let secs = timeout.as_secs();
        let err_tx = tx.clone();
        self.exec.handle().spawn(async move {
            match tokio::time::timeout(timeout, job.run(stmt, tx)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = err_tx.send(Err(e)).await;
                }
                Err(_) => {
                    // Dropping `run` dropped the DataFusion stream, which
                    // cancels the query's tasks.
                    let _ = err_tx.send(Err(QueryError::Timeout { secs })).await;
                }
            }
        });
        match rx.recv().await {
            Some(Ok(first)) => {
                let rest = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                Ok(futures::stream::once(async move { Ok(first) })
                    .chain(rest)
                    .boxed())
            }
            Some(Err(e)) => Err(e),
            None => Err(QueryError::Internal(
                "the query task ended without a result".to_string(),
            )),
        }
    }
}

/// One query's work, run on the engine runtime.
struct Job {
    shared: Shared,
    schema: Arc<DatasetSchema>,
    state: SessionState,
    max_rows: u64,
    memory_limit: String,
    format: Format,
}

impl Job {
    async fn run(
        self,
        stmt: DfStatement,
        tx: mpsc::Sender<Result<Bytes, QueryError>>,
    ) -> Result<(), QueryError> {
        let plan = match self.state.statement_to_plan(stmt).await {
            Ok(p) => p,
            Err(e) => return Err(self.planning_error(&e).await),
        };
        // Second line of defence: whatever the parser let through, the plan
        // must not define, modify or configure anything.
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::Forbidden {
                what: e.strip_backtrace(),
            })?;
        let is_explain = matches!(
            plan,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
        );
        // One row past the cap is enough to know it is exceeded, and lets a
        // sort become a top-k instead of sorting everything.
        let plan = if is_explain {
            plan
        } else {
            let capped = usize::try_from(self.max_rows.saturating_add(1)).unwrap_or(usize::MAX);
            LogicalPlanBuilder::from(plan)
                .limit(0, Some(capped))
                .and_then(|b| b.build())
                .map_err(|e| classify(&e, &self.memory_limit))?
        };
        let physical = self
            .state
            .create_physical_plan(&plan)
            .await
            .map_err(|e| classify(&e, &self.memory_limit))?;
        let mut stream = execute_stream(physical, self.state.task_ctx())
            .map_err(|e| classify(&e, &self.memory_limit))?;

        let mut enc = Encoder::new(self.format, stream.schema())?;
        let mut rows: u64 = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| classify(&e, &self.memory_limit))?;
            rows += batch.num_rows() as u64;
            if !is_explain && rows > self.max_rows {
                return Err(QueryError::TooManyRows {
                    max_rows: self.max_rows,
                });
            }
            if batch.num_rows() == 0 {
                continue;
            }
            let bytes = enc.write(&batch)?;
            if !bytes.is_empty() && tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                // The client went away: stop (dropping the stream cancels).
                return Ok(());
            }
        }
        let tail = enc.finish()?;
        let _ = tx.send(Ok(Bytes::from(tail))).await;
        Ok(())
    }

    /// A planning failure: an unknown table if the schema recorded a miss,
    /// a catalog fault if the catalog failed, else by the error's variant.
    async fn planning_error(&self, e: &DataFusionError) -> QueryError {
        if let Some(ce) = self.schema.catalog_error.lock().take() {
            return QueryError::Catalog(ce);
        }
        let misses: Vec<String> = {
            let mut m = self.schema.misses.lock().clone();
            m.dedup();
            m
        };
        if misses.is_empty() {
            return classify(e, &self.memory_limit);
        }
        match self.shared.catalog.list().await {
            Ok(manifests) => {
                let available: Vec<String> = manifests.into_iter().map(|m| m.name).collect();
                *self.shared.caches.names.lock() = available.clone();
                QueryError::UnknownTable {
                    tables: misses,
                    available,
                }
            }
            Err(ce) => QueryError::Catalog(ce),
        }
    }
}

/// The URL objects are registered under (for callers that build plans).
pub fn store_url() -> ObjectStoreUrl {
    ObjectStoreUrl::parse(STORE_URL).expect("valid store URL")
}
