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
use lakehouse_catalogd::{Catalog, Manifest, ObjectRef};
use object_store::{ObjectMeta, ObjectStore};
use parking_lot::Mutex;

use crate::error::is_not_found;

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
    /// Parquet statistics per object key (keys are immutable).
    stats: Mutex<HashMap<String, Arc<Statistics>>>,
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
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// `lakehouse`: one schema, `public`.
#[derive(Debug)]
pub(crate) struct LakehouseCatalog {
    schema: Arc<DatasetSchema>,
}

impl LakehouseCatalog {
    pub fn new(schema: Arc<DatasetSchema>) -> Self {
        Self { schema }
    }
}

impl CatalogProvider for LakehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        vec![SCHEMA_NAME.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == SCHEMA_NAME).then(|| self.schema.clone() as Arc<dyn SchemaProvider>)
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
}

impl DatasetSchema {
    pub fn new(shared: Shared) -> Self {
        Self {
            shared,
            misses: Mutex::new(Vec::new()),
            catalog_error: Mutex::new(None),
        }
    }
}

#[async_trait]
impl SchemaProvider for DatasetSchema {
    /// The dataset names as of the catalog's last listing (this trait method
    /// is synchronous; the catalog is not).
    fn table_names(&self) -> Vec<String> {
        self.shared.caches.names.lock().clone()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let manifest = match self.shared.catalog.get(name).await {
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
        let table = DatasetTable::open(&self.shared, manifest).await?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.shared.caches.names.lock().iter().any(|n| n == name)
    }
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
                // Boxed: keeps the future `Send` for any lifetime (async-trait).
                async move { file_statistics(&shared, &o, &schema).await }.boxed()
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

async fn dataset_schema(shared: &Shared, manifest: &Manifest) -> DfResult<SchemaRef> {
    let key = (manifest.name.clone(), manifest.schema_fingerprint.clone());
    if let Some(s) = shared.caches.schemas.lock().get(&key) {
        return Ok(s.clone());
    }
    let Some(first) = manifest.objects.first() else {
        // A dataset without objects has no schema to read: an empty table.
        return Ok(Arc::new(Schema::empty()));
    };
    let meta = object_meta(first);
    let schema = DFParquetMetadata::new(shared.store.as_ref(), &meta)
        .with_file_metadata_cache(Some(shared.runtime.cache_manager.get_file_metadata_cache()))
        .fetch_schema()
        .await?;
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

async fn file_statistics(
    shared: &Shared,
    o: &ObjectRef,
    schema: &SchemaRef,
) -> DfResult<Arc<Statistics>> {
    if let Some(s) = shared.caches.stats.lock().get(&o.key) {
        return Ok(s.clone());
    }
    let meta = object_meta(o);
    let stats = DFParquetMetadata::new(shared.store.as_ref(), &meta)
        .with_file_metadata_cache(Some(shared.runtime.cache_manager.get_file_metadata_cache()))
        .fetch_statistics(schema)
        .await?;
    let stats = Arc::new(stats);
    shared
        .caches
        .stats
        .lock()
        .insert(o.key.clone(), stats.clone());
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
