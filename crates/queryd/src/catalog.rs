//! The DataFusion catalog backed by the lakehouse catalog.
//!
//! One [`DatasetSchema`] per query: its `table(name)` fetches the manifest
//! through the [`Catalog`] trait at planning time, so a dataset registered a
//! moment ago is visible at once, and returns a [`DatasetTable`] that scans
//! exactly the manifest's objects — no directory listing. Names the schema
//! cannot resolve are recorded, so the engine can report an unknown table
//! structurally rather than by reading DataFusion's message.
//!
//! Objects are immutable (keys are unique per ingest), so what is derived
//! from them is cached by key for the life of the engine: the Arrow schema
//! per (dataset, schema fingerprint), the Parquet footer (DataFusion's file
//! metadata cache on the shared `RuntimeEnv`) and the per-file statistics the
//! planner uses to order joins.
//!
//! An object that does not match its manifest — missing, another size, not
//! Parquet — is diagnosed when its footer cannot be read (a `HEAD` of the
//! object tells which) and reported as a typed [`DamagedObject`] naming the
//! dataset and the object; the schema also remembers which object belongs
//! to which dataset, so a read that fails later in the query is named too.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::{Statistics, project_schema};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, transform_schema_to_view,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::{FutureExt, StreamExt, TryStreamExt};
use lakehouse_catalogd::{At, Catalog, Manifest, ObjectRef};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;

use crate::error::{Damage, DamagedObject, find, is_not_found, message};

/// The catalog and schema every dataset lives in; they are the session's
/// defaults, so bare (or quoted) names resolve to datasets.
pub const CATALOG_NAME: &str = "lakehouse";
pub const SCHEMA_NAME: &str = "public";

/// The URL the lakehouse object store is registered under on the
/// `RuntimeEnv`; every object path is relative to it.
pub const STORE_URL: &str = "lakehouse://data/";

/// Caches shared by every query of one engine.
#[derive(Debug, Default)]
pub(crate) struct Caches {
    /// Arrow schema per (dataset, schema fingerprint).
    schemas: Mutex<HashMap<(String, String), SchemaRef>>,
    /// Parquet statistics per (object key, the dataset's schema
    /// fingerprint): keys are immutable, but after a schema evolution the
    /// same file is read with more columns.
    stats: Mutex<HashMap<(String, String), Arc<Statistics>>>,
    /// The dataset names the catalog returned last (for `table_names`).
    pub(crate) names: Mutex<Vec<String>>,
}

/// What the engine gives each query's catalog.
#[derive(Clone)]
pub(crate) struct Shared {
    pub catalog: Arc<dyn Catalog>,
    pub store: Arc<dyn ObjectStore>,
    pub runtime: Arc<RuntimeEnv>,
    pub caches: Arc<Caches>,
    /// The vector indexes `vector_search` reads (in process or vectord's
    /// client); `None` where no vectord is configured.
    pub vectors: Option<Arc<dyn lakehouse_vectord::Vectors>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// `lakehouse`: the datasets in `public`, plus the read-only schemas a
/// protocol's dialect adds (`pg_catalog` for PostgreSQL clients).
#[derive(Debug)]
pub(crate) struct LakehouseCatalog {
    schema: Arc<DatasetSchema>,
    extra: Vec<(String, Arc<dyn SchemaProvider>)>,
}

impl LakehouseCatalog {
    pub fn new(schema: Arc<DatasetSchema>, extra: Vec<(String, Arc<dyn SchemaProvider>)>) -> Self {
        Self { schema, extra }
    }
}

impl CatalogProvider for LakehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        std::iter::once(SCHEMA_NAME.to_string())
            .chain(self.extra.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SCHEMA_NAME {
            return Some(self.schema.clone() as Arc<dyn SchemaProvider>);
        }
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }
}

/// Every dataset as a table, resolved at planning time. One per query, so
/// the names it failed to resolve belong to that query.
#[derive(Debug)]
pub(crate) struct DatasetSchema {
    shared: Shared,
    /// Names `table()` was asked for that are not datasets.
    pub(crate) misses: Mutex<Vec<String>>,
    /// Set when the catalog itself failed during resolution.
    pub(crate) catalog_error: Mutex<Option<lakehouse_catalogd::CatalogError>>,
    /// The datasets this query opened: name, schema and object keys.
    pub(crate) opened: Mutex<Vec<(String, SchemaRef, Vec<String>)>>,
}

impl DatasetSchema {
    pub fn new(shared: Shared) -> Self {
        Self {
            shared,
            misses: Mutex::new(Vec::new()),
            catalog_error: Mutex::new(None),
            opened: Mutex::new(Vec::new()),
        }
    }

    /// The schemas of the datasets this query opened.
    pub(crate) fn opened_schemas(&self) -> Vec<SchemaRef> {
        self.opened
            .lock()
            .iter()
            .map(|(_, s, _)| s.clone())
            .collect()
    }

    /// The dataset an object key belongs to, among those this query opened.
    pub(crate) fn dataset_of(&self, key: &str) -> Option<String> {
        self.opened
            .lock()
            .iter()
            .find(|(_, _, keys)| keys.iter().any(|k| k == key))
            .map(|(name, _, _)| name.clone())
    }
}

#[async_trait]
impl SchemaProvider for DatasetSchema {
    /// The dataset names as of the catalog's last listing (this trait method
    /// is synchronous; the catalog is not).
    fn table_names(&self) -> Vec<String> {
        self.shared.caches.names.lock().clone()
    }

    /// A dataset by name; `name@v<N>` is its table at version N and
    /// `name@<time>` (RFC 3339 or a date) the version current then.
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let found = match time_travel(name) {
            Ok((base, at)) => self.shared.catalog.get_at(base, at).await,
            Err(e) => Err(e),
        };
        let manifest = match found {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => {
                self.misses.lock().push(name.to_string());
                return Ok(None);
            }
            Err(e) => {
                let msg = e.to_string();
                *self.catalog_error.lock() = Some(e);
                return Err(DataFusionError::External(msg.into()));
            }
        };
        let name = manifest.name.clone();
        let keys = manifest.objects.iter().map(|o| o.key.clone()).collect();
        let table = DatasetTable::open(&self.shared, manifest).await?;
        self.opened.lock().push((name, table.schema.clone(), keys));
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.shared.caches.names.lock().iter().any(|n| n == name)
    }
}

/// Splits a table name into the dataset and the state asked for: `sales`
/// is the latest, `sales@v3` table version 3, `sales@2026-12-01T10:00:00Z`
/// (or `sales@2026-12-01`) the version current at that time. Dataset names
/// never contain `@`.
pub(crate) fn time_travel(name: &str) -> Result<(&str, At), lakehouse_catalogd::CatalogError> {
    let Some((base, suffix)) = name.rsplit_once('@') else {
        return Ok((name, At::Latest));
    };
    if let Some(v) = suffix
        .strip_prefix('v')
        .or_else(|| suffix.strip_prefix('V'))
        && !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
    {
        let v = v.parse::<i64>().map_err(|_| {
            lakehouse_catalogd::CatalogError::InvalidRequest(format!("version {v} is too large"))
        })?;
        return Ok((base, At::Version(v)));
    }
    let at = lakehouse_catalogd::http::parse_timestamp(suffix).map_err(|_| {
        lakehouse_catalogd::CatalogError::InvalidRequest(format!(
            "{name:?}: after '@' comes a table version (v3) or a time (2026-12-01T10:00:00Z or 2026-12-01)"
        ))
    })?;
    Ok((base, At::Time(at)))
}

/// One dataset: its schema and its objects with their statistics.
#[derive(Debug)]
pub(crate) struct DatasetTable {
    schema: SchemaRef,
    files: Vec<PartitionedFile>,
    statistics: Statistics,
}

fn object_meta(o: &ObjectRef) -> ObjectMeta {
    // Objects are immutable, so a fixed modification time is exact enough for
    // DataFusion's metadata cache (which validates by size and time).
    PartitionedFile::new(o.key.clone(), o.size).object_meta
}

impl DatasetTable {
    async fn open(shared: &Shared, manifest: Manifest) -> DfResult<Self> {
        let schema = dataset_schema(shared, &manifest).await?;
        // Footers are fetched concurrently the first time (then cached).
        let fetches: Vec<_> = manifest
            .objects
            .iter()
            .cloned()
            .map(|o| {
                let (shared, schema) = (shared.clone(), schema.clone());
                let dataset = manifest.name.clone();
                let fp = manifest.schema_fingerprint.clone();
                // Boxed: keeps the future `Send` for any lifetime (async-trait).
                async move {
                    match file_statistics(&shared, &o, &fp, &schema).await {
                        Ok(s) => Ok(s),
                        Err(e) => Err(diagnose(&shared, &dataset, &o, e).await),
                    }
                }
                .boxed()
            })
            .collect();
        let stats: Vec<Arc<Statistics>> = futures::stream::iter(fetches)
            .buffered(8)
            .try_collect()
            .await?;
        let files: Vec<PartitionedFile> = manifest
            .objects
            .iter()
            .zip(stats.iter())
            .map(|(o, s)| PartitionedFile::new(o.key.clone(), o.size).with_statistics(s.clone()))
            .collect();
        let statistics = if stats.is_empty() {
            Statistics::new_unknown(&schema)
        } else {
            Statistics::try_merge_iter(stats.iter().map(|s| s.as_ref()), &schema)?
        };
        Ok(Self {
            schema,
            files,
            statistics,
        })
    }
}

pub(crate) async fn dataset_schema(shared: &Shared, manifest: &Manifest) -> DfResult<SchemaRef> {
    let key = (manifest.name.clone(), manifest.schema_fingerprint.clone());
    if let Some(s) = shared.caches.schemas.lock().get(&key) {
        return Ok(s.clone());
    }
    let Some(schema) = file_schema(shared, manifest).await? else {
        // A dataset without objects has no schema to read: an empty table.
        return Ok(Arc::new(Schema::empty()));
    };
    // Like DataFusion's own Parquet tables: no schema or field metadata (the
    // writer's blobs are noise here), strings read as views (faster).
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    let schema = Arc::new(transform_schema_to_view(&Schema::new(fields)));
    shared.caches.schemas.lock().insert(key, schema.clone());
    Ok(schema)
}

/// The dataset's schema as its files store it: the newest object with the
/// manifest's fingerprint has it (after a schema evolution older ones lack
/// the new columns, which read as nulls); the newest object's when none
/// has it; the table log's for a dataset without objects (every row
/// deleted); `None` when there is neither.
pub(crate) async fn file_schema(
    shared: &Shared,
    manifest: &Manifest,
) -> DfResult<Option<SchemaRef>> {
    if manifest.objects.is_empty() {
        let Some(v) = manifest.table_version else {
            return Ok(None);
        };
        return lakehouse_table::Tables::new(shared.store.clone())
            .arrow_schema(&manifest.name, v as i64)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)));
    }
    let mut newest = None;
    for o in manifest.objects.iter().rev().take(SCHEMA_PROBES) {
        let s = object_schema(shared, &manifest.name, o).await?;
        if lakehouse_catalogd::fingerprint::fingerprint(&s) == manifest.schema_fingerprint {
            return Ok(Some(s));
        }
        newest.get_or_insert(s);
    }
    Ok(newest)
}

/// How many of a dataset's newest objects are read for its schema.
const SCHEMA_PROBES: usize = 16;

/// One object's Arrow schema, from its (cached) footer.
async fn object_schema(shared: &Shared, dataset: &str, o: &ObjectRef) -> DfResult<SchemaRef> {
    let meta = object_meta(o);
    match DFParquetMetadata::new(shared.store.as_ref(), &meta)
        .with_file_metadata_cache(Some(shared.runtime.cache_manager.get_file_metadata_cache()))
        .fetch_schema()
        .await
    {
        Ok(s) => Ok(Arc::new(s)),
        Err(e) => Err(diagnose(shared, dataset, o, e).await),
    }
}

/// Why an object's footer could not be read: a `HEAD` tells a missing
/// object or a size that differs from the manifest; a Parquet error on an
/// object of the right size means it is not (readable) Parquet. Anything
/// else (the store failing) is returned as it was.
async fn diagnose(
    shared: &Shared,
    dataset: &str,
    o: &ObjectRef,
    e: DataFusionError,
) -> DataFusionError {
    let path = object_store::path::Path::from(o.key.as_str());
    let damage = match shared.store.head(&path).await {
        Err(object_store::Error::NotFound { .. }) => Damage::Missing,
        Ok(meta) if meta.size != o.size => Damage::SizeMismatch {
            manifest: o.size,
            actual: meta.size,
        },
        Ok(_) if find::<parquet::errors::ParquetError>(&e).is_some() => Damage::NotParquet {
            detail: message(&e),
        },
        _ => return e,
    };
    DataFusionError::External(Box::new(DamagedObject {
        dataset: dataset.to_string(),
        object: o.key.clone(),
        damage,
    }))
}

async fn file_statistics(
    shared: &Shared,
    o: &ObjectRef,
    fingerprint: &str,
    schema: &SchemaRef,
) -> DfResult<Arc<Statistics>> {
    let key = (o.key.clone(), fingerprint.to_string());
    if let Some(s) = shared.caches.stats.lock().get(&key) {
        return Ok(s.clone());
    }
    let meta = object_meta(o);
    let stats = DFParquetMetadata::new(shared.store.as_ref(), &meta)
        .with_file_metadata_cache(Some(shared.runtime.cache_manager.get_file_metadata_cache()))
        .fetch_statistics(schema)
        .await?;
    let stats = Arc::new(stats);
    shared.caches.stats.lock().insert(key, stats.clone());
    Ok(stats)
}

#[async_trait]
impl TableProvider for DatasetTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: DataFusion keeps the filter above the scan and the
        // physical optimizer pushes it into the Parquet reader (row-group
        // and page pruning, and row filtering when enabled).
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.files.is_empty() {
            let projected = project_schema(&self.schema, projection)?;
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let url = ObjectStoreUrl::parse(STORE_URL)?;
        let store = state.runtime_env().object_store(&url)?;
        let parquet_opts = state.table_options().parquet.clone();
        let source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(parquet_opts)
            // Footers come from the shared metadata cache: read once per object.
            .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
                store,
                state.runtime_env().cache_manager.get_file_metadata_cache(),
            )));
        let target = state.config().target_partitions().max(1);
        let groups = FileGroup::new(self.files.clone()).split_files(target);
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(self.statistics.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
