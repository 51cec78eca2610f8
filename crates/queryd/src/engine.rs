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
//! cap, the timeout — are returned as errors, not as a broken stream. JSON
//! results are held until complete (their buffer counted in the memory
//! pool), so a JSON answer is always a whole document or an error. After
//! the first byte of another format, the row cap and errors end the result
//! the way [`crate::encode`] describes, and [`StreamEnd`] tells the HTTP
//! layer what to put in the trailer.
//!
//! Everything about a query — parsing included — runs on the engine
//! runtime, whose threads have [`crate::limits::QUERY_THREAD_STACK`]. A
//! query is registered in [`crate::guard`] while it runs; dropping its
//! result stream (or the future that waits for the first chunk) cancels it,
//! so a client that disconnects stops its query.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::common::ParamValues;
use datafusion::common::stats::Precision;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;
use futures::stream::BoxStream;
use lakehouse_catalogd::Catalog;
use object_store::ObjectStore;
use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::catalog::{
    CATALOG_NAME, Caches, DatasetSchema, LakehouseCatalog, SCHEMA_NAME, STORE_URL, Shared,
};
use crate::dialect::Dialect;
use crate::encode::{Encoder, Format};
use crate::error::{Damage, DamagedObject, QueryError, classify, find, message};
use crate::guard::{CancelExec, QueryPool, QueryStats, Registration, Running};
use crate::write::{Access, Kind};
use crate::{idents, limits, sandbox, udf};

/// An encoded result: chunks of the chosen format, in order. An `Err` item
/// means the query failed after it had started streaming.
pub type ByteStream = BoxStream<'static, Result<Bytes, QueryError>>;

/// How a streamed result ended (for the HTTP trailer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Every row was sent.
    Complete { rows: u64 },
    /// Cut at `max_rows`; the format's marker says so in band too.
    Truncated { max_rows: u64 },
    /// Failed after the first byte; the format's marker carries the error.
    Failed { code: String, message: String },
}

/// A result stream and, when the engine knows it, how it ended.
pub struct ResultStream {
    pub bytes: ByteStream,
    pub end: Option<oneshot::Receiver<StreamEnd>>,
}

/// SQL over the lakehouse, in process ([`QueryEngine`]) or remote
/// ([`crate::QueryClient`]).
#[async_trait]
pub trait Query: Send + Sync {
    /// Runs one read-only statement and streams its result in `format`.
    /// Errors before the first byte are returned here.
    async fn sql(&self, sql: &str, format: Format) -> Result<ByteStream, QueryError>;

    /// Like [`Query::sql`], with how the result ended when it is known.
    async fn sql_result(&self, sql: &str, format: Format) -> Result<ResultStream, QueryError> {
        Ok(ResultStream {
            bytes: self.sql(sql, format).await?,
            end: None,
        })
    }

    /// Runs one statement with the caller's `access`: queries for anyone,
    /// and with [`Access::ReadWrite`] the write statements (`INSERT`,
    /// `CREATE TABLE AS`, `DELETE`, `UPDATE`, `MERGE`; see
    /// [`crate::write`]), whose answer is one row saying what changed. A
    /// remote engine decides from the caller's token instead.
    async fn execute(
        &self,
        sql: &str,
        format: Format,
        access: Access,
    ) -> Result<ResultStream, QueryError> {
        let _ = access;
        self.sql_result(sql, format).await
    }

    /// Counters of the running queries, when this is the engine itself.
    fn stats(&self) -> Option<QueryStats> {
        None
    }
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
    /// Deepest nesting of expressions / subqueries / set operations.
    pub max_expr_depth: usize,
    /// Most bytes one call of an allocating function may produce
    /// (`None` = `memory_limit / 16`).
    pub function_output_limit: Option<u64>,
    /// Process memory over which the largest query is cancelled
    /// (`None` = 90 % of the machine's or cgroup's memory; `Some(0)` = off).
    pub process_memory_limit: Option<u64>,
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
            max_expr_depth: limits::DEFAULT_MAX_EXPR_DEPTH,
            function_output_limit: None,
            process_memory_limit: None,
        }
    }
}

impl EngineConfig {
    /// The per-call cap of the checked functions.
    pub fn function_output_limit(&self) -> u64 {
        self.function_output_limit
            .unwrap_or((self.memory_limit / 16).max(1 << 20))
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
pub(crate) struct ExecRuntime(Option<tokio::runtime::Runtime>);

impl ExecRuntime {
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
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
///
/// [`QueryEngine::with_dialect`] derives an engine for a wire protocol that
/// shares everything with this one — runtime, memory pool, running-query
/// registry and memory guard, caches, limits — and adds only the protocol's
/// parser and metadata schemas.
pub struct QueryEngine {
    pub(crate) shared: Shared,
    pub(crate) base: SessionState,
    pub(crate) cfg: EngineConfig,
    pub(crate) running: Arc<Running>,
    pub(crate) exec: Arc<ExecRuntime>,
    pub(crate) dialect: Option<Arc<dyn Dialect>>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn ok_or_internal<T>(r: datafusion::error::Result<T>) -> Result<T, QueryError> {
    r.map_err(|e| QueryError::Internal(message(&e)))
}

fn session_config(cfg: &EngineConfig) -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(cfg.target_partitions)
        .with_batch_size(cfg.batch_size.max(1))
        .with_default_catalog_and_schema(CATALOG_NAME, SCHEMA_NAME)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(false);
    let o = config.options_mut();
    o.execution.parquet.pushdown_filters = cfg.pushdown_filters;
    o.execution.parquet.reorder_filters = cfg.pushdown_filters;
    // Identifiers fold to lower case like every other SQL engine; dataset
    // names are lower case by the catalog's grammar, and columns whose
    // names are not are matched by `idents`.
    o.sql_parser.enable_ident_normalization = true;
    config
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
        cfg.max_expr_depth = cfg.max_expr_depth.max(16);
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
        let mut base = SessionStateBuilder::new()
            .with_config(session_config(&cfg))
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .build();
        ok_or_internal(udf::register_checked(
            &mut base,
            cfg.function_output_limit(),
        ))?;
        ok_or_internal(crate::vector::register_functions(&mut base, None))?;

        let exec = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.target_partitions)
            .thread_name("queryd-exec")
            .thread_stack_size(limits::QUERY_THREAD_STACK)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;

        let running = Arc::new(Running::default());
        let guard_limit = match cfg.process_memory_limit {
            None => crate::guard::default_process_limit(),
            Some(0) => None,
            Some(n) => Some(n),
        };
        if let Some(limit) = guard_limit {
            crate::guard::spawn_watchdog(&running, limit)
                .map_err(|e| QueryError::Internal(format!("starting the memory guard: {e}")))?;
        }
        Ok(Self {
            shared: Shared {
                catalog,
                store,
                runtime,
                caches: Arc::new(Caches::default()),
                vectors: None,
            },
            base,
            cfg,
            running,
            exec: Arc::new(ExecRuntime(Some(exec))),
            dialect: None,
        })
    }

    /// An engine for a wire protocol's `dialect`, sharing this engine's
    /// runtime, memory pool, running queries, caches and limits.
    pub fn with_dialect(&self, dialect: Arc<dyn Dialect>) -> Result<QueryEngine, QueryError> {
        let base = dialect.configure(self.base.clone())?;
        Ok(QueryEngine {
            shared: self.shared.clone(),
            base,
            cfg: self.cfg.clone(),
            running: self.running.clone(),
            exec: self.exec.clone(),
            dialect: Some(dialect),
        })
    }

    /// `vector_search` and `hybrid_search` read `vectors`' indexes (vectord
    /// in process, or its HTTP client in a split deployment).
    pub fn with_vectors(mut self, vectors: Arc<dyn lakehouse_vectord::Vectors>) -> Self {
        self.shared.vectors = Some(vectors);
        self
    }

    /// `embed(text)` uses `model` (without one it is refused, naming the
    /// setting).
    pub fn with_embedder(
        mut self,
        model: Arc<dyn lakehouse_common::TextEmbedder>,
    ) -> Result<Self, QueryError> {
        ok_or_internal(crate::vector::register_functions(
            &mut self.base,
            Some(model),
        ))?;
        Ok(self)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The object store queries read from.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.shared.store.clone()
    }

    /// Counters of the running queries.
    pub fn query_stats(&self) -> QueryStats {
        self.running.stats()
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
    /// fails to resolve are this query's) and its own view of the memory
    /// pool (so the guard knows what it holds).
    fn session(&self, schema: Arc<DatasetSchema>, pool: Arc<QueryPool>) -> SessionState {
        let list = MemoryCatalogProviderList::new();
        let extra = self
            .dialect
            .as_ref()
            .map(|d| d.schemas())
            .unwrap_or_default();
        list.register_catalog(
            CATALOG_NAME.to_string(),
            Arc::new(LakehouseCatalog::new(schema, extra)),
        );
        let rt = &self.shared.runtime;
        let runtime = RuntimeEnv {
            memory_pool: pool,
            disk_manager: rt.disk_manager.clone(),
            cache_manager: rt.cache_manager.clone(),
            object_store_registry: rt.object_store_registry.clone(),
        };
        SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(Arc::new(list))
            .with_runtime_env(Arc::new(runtime))
            .build()
    }

    fn memory_limit_text(&self) -> String {
        lakehouse_common::size::ByteSize(self.cfg.memory_limit).to_string()
    }

    /// A registered query with its own session; dropping the guard (the
    /// caller's side) cancels it.
    pub(crate) fn job(&self, format: Format, params: Option<ParamValues>) -> (Job, CancelOnDrop) {
        let pool = Arc::new(QueryPool::new(self.shared.runtime.memory_pool.clone()));
        let registration = self.running.register(pool.clone());
        let schema = Arc::new(DatasetSchema::new(self.shared.clone()));
        let mut state = self.session(schema.clone(), pool.clone());
        let vector = Arc::new(crate::vector::Prepared::new(params.clone()));
        crate::vector::register_search(&mut state, self.shared.vectors.clone(), &vector);
        let guard = CancelOnDrop(registration.cancel.clone());
        let job = Job {
            shared: self.shared.clone(),
            schema,
            state,
            pool,
            max_rows: self.cfg.max_rows,
            max_depth: self.cfg.max_expr_depth,
            memory_limit: self.memory_limit_text(),
            format,
            deadline: Instant::now() + self.cfg.timeout,
            timeout_secs: self.cfg.timeout.as_secs(),
            running: self.running.clone(),
            registration,
            dialect: self.dialect.clone(),
            params,
            access: Access::ReadOnly,
            vector,
        };
        (job, guard)
    }
}

/// Cancels the query when the consumer drops its side (the HTTP client
/// went away, or the caller stopped reading).
pub(crate) struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[async_trait]
impl Query for QueryEngine {
    async fn sql(&self, sql: &str, format: Format) -> Result<ByteStream, QueryError> {
        Ok(self.sql_result(sql, format).await?.bytes)
    }

    fn stats(&self) -> Option<QueryStats> {
        Some(self.running.stats())
    }

    async fn sql_result(&self, sql: &str, format: Format) -> Result<ResultStream, QueryError> {
        self.execute(sql, format, Access::ReadOnly).await
    }

    async fn execute(
        &self,
        sql: &str,
        format: Format,
        access: Access,
    ) -> Result<ResultStream, QueryError> {
        let (mut job, guard) = self.job(format, None);
        job.access = access;
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, QueryError>>(4);
        let (end_tx, end_rx) = oneshot::channel();
        let sql = sql.to_string();
        // From here on, dropping this future or the stream stops the query.
        self.exec.handle().spawn(async move {
            let err_tx = tx.clone();
            match job.run(sql, tx).await {
                Ok(end) => {
                    let _ = end_tx.send(end);
                }
                Err(e) => {
                    let _ = err_tx.send(Err(e)).await;
                }
            }
        });
        match rx.recv().await {
            Some(Ok(first)) => {
                let rest = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
                    rx.recv().await.map(|item| (item, (rx, guard)))
                });
                Ok(ResultStream {
                    bytes: futures::stream::once(async move { Ok(first) })
                        .chain(rest)
                        .boxed(),
                    end: Some(end_rx),
                })
            }
            Some(Err(e)) => Err(e),
            None => Err(QueryError::Internal(
                "the query task ended without a result".to_string(),
            )),
        }
    }
}

/// One query's work, run on the engine runtime.
pub(crate) struct Job {
    pub(crate) shared: Shared,
    pub(crate) schema: Arc<DatasetSchema>,
    pub(crate) state: SessionState,
    pub(crate) pool: Arc<QueryPool>,
    pub(crate) max_rows: u64,
    pub(crate) max_depth: usize,
    pub(crate) memory_limit: String,
    pub(crate) format: Format,
    pub(crate) deadline: Instant,
    pub(crate) timeout_secs: u64,
    pub(crate) running: Arc<Running>,
    /// Unregisters the query when the job ends.
    pub(crate) registration: Registration,
    /// The protocol's parser and schemas, if not plain SQL over HTTP.
    pub(crate) dialect: Option<Arc<dyn Dialect>>,
    /// Values of the statement's `$n` placeholders (prepared statements).
    pub(crate) params: Option<ParamValues>,
    /// Whether the caller may run write statements.
    pub(crate) access: Access,
    /// The vector indexes the statement names, described before planning.
    pub(crate) vector: Arc<crate::vector::Prepared>,
}

/// Whether `run` may go on.
pub(crate) enum Stop {
    /// The consumer went away: stop quietly.
    Gone,
    /// The query must end with this error.
    Error(QueryError),
}

impl From<QueryError> for Stop {
    fn from(e: QueryError) -> Self {
        Stop::Error(e)
    }
}

impl Job {
    /// Plans, executes and streams; returns how the stream ended, or the
    /// error to report before the first byte (or to cut the stream with).
    async fn run(
        self,
        sql: String,
        tx: mpsc::Sender<Result<Bytes, QueryError>>,
    ) -> Result<StreamEnd, QueryError> {
        // Parsing runs here, on the engine's big-stack threads.
        let stmt = self.parse_any(&sql)?;
        if let Some(kind) = self.write_kind(&stmt)? {
            return self.run_write(kind, stmt, tx).await;
        }
        let prepared = async {
            let plan = self.logical_stmt(stmt).await?;
            self.prepare_plan(plan).await
        };
        let physical = match self.guarded(prepared).await {
            Ok(p) => p,
            Err(Stop::Gone) => return Ok(StreamEnd::Complete { rows: 0 }),
            Err(Stop::Error(e)) => return Err(e),
        };
        let Some((physical, is_explain)) = physical else {
            return Ok(StreamEnd::Complete { rows: 0 });
        };
        let stream =
            execute_stream(physical, self.state.task_ctx()).map_err(|e| self.classify(&e))?;
        self.stream_out(stream, is_explain, tx).await
    }

    /// Awaits `fut` unless the deadline passes or the query is cancelled.
    pub(crate) async fn guarded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, QueryError>>,
    ) -> Result<T, Stop> {
        let cancel = self.registration.cancel.clone();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(self.interrupted()),
            _ = tokio::time::sleep_until(self.deadline) => Err(Stop::Error(QueryError::Timeout {
                secs: self.timeout_secs,
            })),
            r = fut => r.map_err(Stop::Error),
        }
    }

    /// Why the query was cancelled: the guard's reason, else its client left.
    pub(crate) fn interrupted(&self) -> Stop {
        match self.registration.reason.lock().take() {
            Some(e) => Stop::Error(e),
            None => {
                self.running.note_disconnected();
                Stop::Gone
            }
        }
    }

    /// Binds, checks, caps and builds the physical plan of a statement's
    /// plan; `None` if there is nothing to run.
    pub(crate) async fn prepare_plan(
        &self,
        plan: LogicalPlan,
    ) -> Result<Option<(Arc<dyn ExecutionPlan>, bool)>, QueryError> {
        let plan = self.bind(plan)?;
        verify(&plan)?;
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
                .map_err(|e| self.classify(&e))?
        };
        let physical = self
            .state
            .create_physical_plan(&plan)
            .await
            .map_err(|e| self.classify(&e))?;
        if is_explain {
            return Ok(Some((physical, true)));
        }
        // The plan's row count known to exceed the cap: 413 before running.
        if exact_rows(physical.as_ref()).is_some_and(|n| n > self.max_rows) {
            return Err(QueryError::TooManyRows {
                max_rows: self.max_rows,
            });
        }
        let physical = CancelExec::wrap_all(physical, &self.registration.cancel)
            .map_err(|e| self.classify(&e))?;
        Ok(Some((physical, false)))
    }

    /// Parses `sql` (with the dialect's parser, if any) into one statement
    /// within the limits, whatever it is: the caller admits it.
    pub(crate) fn parse_any(&self, sql: &str) -> Result<DfStatement, QueryError> {
        match &self.dialect {
            None => sandbox::parse(sql, self.max_depth),
            Some(d) => sandbox::parse_with(sql, self.max_depth, &|s| d.parse(s)),
        }
    }

    /// The statement's kind if it writes (and the caller may write);
    /// `None` if it is a query the read-only sandbox admits.
    pub(crate) fn write_kind(&self, stmt: &DfStatement) -> Result<Option<Kind>, QueryError> {
        match Kind::of(stmt) {
            Some(kind) if self.access != Access::ReadWrite => Err(QueryError::WriteDenied {
                what: kind.keyword().to_string(),
            }),
            Some(kind) => Ok(Some(kind)),
            None => {
                sandbox::admit(stmt)?;
                Ok(None)
            }
        }
    }

    /// Plans a statement the sandbox admitted.
    pub(crate) async fn logical_stmt(&self, stmt: DfStatement) -> Result<LogicalPlan, QueryError> {
        if self.dialect.is_some() && crate::batches::reads_information_schema(&stmt) {
            // DataFusion lists tables synchronously from the names cache.
            let names = self.shared.catalog.list().await?;
            *self.shared.caches.names.lock() = names.into_iter().map(|m| m.name).collect();
        }
        self.plan(stmt).await
    }

    /// Substitutes the bound parameter values; a statement with parameters
    /// and no values is refused with their names.
    pub(crate) fn bind(&self, plan: LogicalPlan) -> Result<LogicalPlan, QueryError> {
        match &self.params {
            Some(p) => plan
                .with_param_values(p.clone())
                .map_err(|e| self.classify(&e)),
            None => {
                let mut names: Vec<String> = plan
                    .get_parameter_names()
                    .map_err(|e| self.classify(&e))?
                    .into_iter()
                    .chain(self.vector.unbound().into_iter().map(|(id, _)| id))
                    .collect();
                names.sort();
                names.dedup();
                if names.is_empty() {
                    return Ok(plan);
                }
                Err(QueryError::InvalidRequest(format!(
                    "the statement has parameters ({}) but no values were bound",
                    names.join(", ")
                )))
            }
        }
    }

    /// Plans the statement; a column that only differs in case from the
    /// name written is matched (see [`idents`]).
    pub(crate) async fn plan(&self, mut stmt: DfStatement) -> Result<LogicalPlan, QueryError> {
        self.describe_indexes(&stmt).await?;
        for _ in 0..idents::MAX_RENAMES {
            let e = match self.state.statement_to_plan(stmt.clone()).await {
                Ok(plan) => {
                    idents::check_ambiguous(&stmt, &self.schema.opened_schemas())?;
                    return Ok(plan);
                }
                Err(e) => e,
            };
            match idents::resolve(&e) {
                idents::Resolution::Rename { from, to }
                    if idents::rename(&mut stmt, &from, &to) =>
                {
                    // Tables are resolved again on the next attempt.
                    self.schema.opened.lock().clear();
                    continue;
                }
                idents::Resolution::Ambiguous(a) => return Err(a),
                _ => return Err(self.planning_error(&e).await),
            }
        }
        Err(QueryError::TooComplex {
            what: "too many column names differ in case from the columns".to_string(),
            limit: idents::MAX_RENAMES,
            setting: "max_expr_depth",
        })
    }

    /// Looks up the vector indexes the statement's `vector_search` /
    /// `hybrid_search` calls name (table functions plan synchronously).
    async fn describe_indexes(&self, stmt: &DfStatement) -> Result<(), QueryError> {
        let names = crate::vector::search::index_names(stmt);
        let Some(vectors) = self.shared.vectors.as_ref().filter(|_| !names.is_empty()) else {
            return Ok(());
        };
        let schema = self.schema.clone();
        self.vector
            .fetch(vectors, names, move |dataset| {
                let schema = schema.clone();
                async move {
                    use datafusion::catalog::SchemaProvider;
                    match schema.table(&dataset).await {
                        Ok(t) => Ok(t.map(|t| t.schema())),
                        Err(e) => Err(QueryError::Plan(message(&e))),
                    }
                }
            })
            .await
    }

    /// Classifies an error, naming the dataset of an object that vanished
    /// while the query read it.
    pub(crate) fn classify(&self, e: &DataFusionError) -> QueryError {
        if let Some(v) = self.vector.take_error() {
            return QueryError::Vectors(v);
        }
        if let Some(object_store::Error::NotFound { path, .. }) = find::<object_store::Error>(e)
            && let Some(dataset) = self.schema.dataset_of(path)
        {
            return QueryError::DatasetDamaged(DamagedObject {
                dataset,
                object: path.clone(),
                damage: Damage::Missing,
            });
        }
        classify(e, &self.memory_limit)
    }

    /// Encodes and sends the batches; see the module docs for how it ends.
    pub(crate) async fn stream_out(
        &self,
        mut stream: SendableRecordBatchStream,
        is_explain: bool,
        tx: mpsc::Sender<Result<Bytes, QueryError>>,
    ) -> Result<StreamEnd, QueryError> {
        let mut enc = Encoder::new(self.format, stream.schema())?;
        // JSON is held until complete: an answer is a whole document or an
        // error. The buffer counts against the memory pool.
        let hold = self.format == Format::Json;
        let pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> = self.pool.clone();
        let held_reservation = MemoryConsumer::new("json result").register(&pool);
        let mut held: Vec<u8> = Vec::new();
        let mut sent_any = false;
        let mut rows: u64 = 0;
        loop {
            let next = self.guarded(async { Ok(stream.next().await) }).await;
            let batch = match next {
                Ok(None) => break,
                Ok(Some(Ok(b))) => b,
                Ok(Some(Err(e))) => return self.fail(self.classify(&e), enc, sent_any, &tx).await,
                Err(Stop::Gone) => return Ok(StreamEnd::Complete { rows }),
                Err(Stop::Error(e)) => return self.fail(e, enc, sent_any, &tx).await,
            };
            let room = self.max_rows.saturating_sub(rows);
            let over = !is_explain && batch.num_rows() as u64 > room;
            if over && !sent_any {
                return Err(QueryError::TooManyRows {
                    max_rows: self.max_rows,
                });
            }
            let batch = if over {
                batch.slice(0, room as usize)
            } else {
                batch
            };
            rows += batch.num_rows() as u64;
            if batch.num_rows() > 0 {
                let bytes = match enc.write(&batch) {
                    Ok(b) => b,
                    Err(e) => return self.fail(e, enc, sent_any, &tx).await,
                };
                if hold {
                    held_reservation
                        .try_grow(bytes.len())
                        .map_err(|e| self.classify(&e))?;
                    held.extend(bytes);
                } else if !bytes.is_empty() {
                    if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                        return Ok(self.gone(rows));
                    }
                    sent_any = true;
                }
            }
            if over {
                let tail = enc.finish_truncated(self.max_rows)?;
                let _ = tx.send(Ok(Bytes::from(tail))).await;
                return Ok(StreamEnd::Truncated {
                    max_rows: self.max_rows,
                });
            }
        }
        let tail = enc.finish()?;
        held.extend(tail);
        let _ = tx.send(Ok(Bytes::from(held))).await;
        Ok(StreamEnd::Complete { rows })
    }

    /// The consumer went away mid-stream.
    pub(crate) fn gone(&self, rows: u64) -> StreamEnd {
        self.running.note_disconnected();
        StreamEnd::Complete { rows }
    }

    /// Ends a failed query: before the first byte, as an error; after it,
    /// with the format's in-band error marker where it has one, else by
    /// cutting the stream.
    async fn fail(
        &self,
        e: QueryError,
        enc: Encoder,
        sent_any: bool,
        tx: &mpsc::Sender<Result<Bytes, QueryError>>,
    ) -> Result<StreamEnd, QueryError> {
        if !sent_any {
            return Err(e);
        }
        tracing::warn!(error = %e, "query failed while streaming");
        match enc.finish_error(&e) {
            Some(tail) => {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
                Ok(StreamEnd::Failed {
                    code: e.code().to_string(),
                    message: e.to_string(),
                })
            }
            None => Err(e),
        }
    }

    /// A planning failure: an unknown table if the schema recorded a miss,
    /// a catalog fault if the catalog failed, else by the error's variant.
    async fn planning_error(&self, e: &DataFusionError) -> QueryError {
        if let Some(ce) = self.schema.catalog_error.lock().take() {
            return QueryError::Catalog(ce);
        }
        let misses: Vec<String> = {
            let mut m = self.schema.misses.lock().clone();
            // DataFusion looks table functions (generate_series,
            // vector_search, …) up as tables first: a statement calling one
            // fails for its own reason.
            let functions = self.state.table_functions();
            m.retain(|n| !functions.contains_key(n));
            m.dedup();
            m
        };
        if misses.is_empty() {
            return self.classify(e);
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

/// Second line of defence: whatever the parser let through, the plan must
/// not define, modify or configure anything.
pub(crate) fn verify(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| QueryError::Forbidden { what: message(&e) })
}

/// The plan's row count, when its statistics know it exactly.
fn exact_rows(plan: &dyn ExecutionPlan) -> Option<u64> {
    let ctx = datafusion::physical_plan::statistics::StatisticsContext::new();
    let args = datafusion::physical_plan::statistics::StatisticsArgs::new();
    match ctx.compute(plan, &args).ok()?.num_rows {
        Precision::Exact(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// The URL objects are registered under (for callers that build plans).
pub fn store_url() -> ObjectStoreUrl {
    ObjectStoreUrl::parse(STORE_URL).expect("valid store URL")
}
