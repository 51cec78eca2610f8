//! `INSERT INTO t …` and `CREATE TABLE t AS …`: rows from a query, written
//! as new Parquet files and registered with the catalog.
//!
//! The rows are cast to the schema the dataset's files have (an `INSERT`
//! planned by DataFusion already matches the table's column types; views
//! become plain strings) with checked casts, and a NULL for a column that
//! allows none is a 400 naming it. Files roll at [`FILE_BYTES`]; the
//! register is the same compare-and-swap an ingest makes, retried when
//! another writer registered first.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement as SqlStatement};
use futures::StreamExt;
use lakehouse_catalogd::{ErrorKind, ObjectRef, RegisterRequest};
use lakehouse_table::Changed;
use lakehouse_table::journal::Journal;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::Outcome;
use super::rows::target_dataset;
use crate::catalog::{CATALOG_NAME, SCHEMA_NAME, file_schema};
use crate::engine::{Job, verify};
use crate::error::QueryError;
use crate::guard::CancelExec;

/// A file is closed once it holds about this many bytes.
const FILE_BYTES: usize = 128 << 20;
/// Rows per row group (as ingest writes them).
const ROW_GROUP_ROWS: usize = 122_880;
/// Register attempts when other writers keep winning the race.
const REGISTER_ATTEMPTS: usize = 16;

impl Job {
    pub(crate) async fn insert(&self, stmt: &DfStatement) -> Result<Outcome, QueryError> {
        let plan = self.plan(stmt.clone()).await?;
        let LogicalPlan::Dml(DmlStatement {
            table_name,
            op: WriteOp::Insert(op),
            input,
            ..
        }) = plan
        else {
            return Err(QueryError::Internal(
                "INSERT did not plan as one".to_string(),
            ));
        };
        if op != InsertOp::Append {
            return Err(QueryError::NotSupported(format!(
                "{op}; INSERT appends rows (use DELETE, UPDATE or MERGE to change existing ones)"
            )));
        }
        let dataset = target_dataset(table_name.table())?;
        let manifest = self.manifest(&dataset).await?;
        let Some(schema) = file_schema(&self.shared, &manifest)
            .await
            .map_err(|e| self.classify(&e))?
        else {
            return Err(QueryError::InvalidRequest(format!(
                "dataset {dataset:?} has no files yet, so no schema to insert into; ingest its first rows"
            )));
        };
        let schema = plain(&schema);
        let stream = self.execute_input(input.as_ref().clone()).await?;
        let base = manifest.table_version.map(|v| v as i64);
        let fingerprint = manifest.schema_fingerprint.clone();
        self.journaled(&dataset.clone(), base, |journal| async move {
            let (objects, rows) = self
                .write_files(&journal, &dataset, stream, &schema, false)
                .await?;
            if objects.is_empty() {
                let changed = Changed {
                    version: base.unwrap_or(-1),
                    ..Changed::default()
                };
                return Ok(Outcome { dataset, changed });
            }
            let version = self
                .register_append(&dataset, &fingerprint, objects)
                .await?;
            let changed = Changed {
                version,
                committed: true,
                inserted: rows,
                ..Changed::default()
            };
            Ok(Outcome { dataset, changed })
        })
        .await
    }

    pub(crate) async fn create_table_as(&self, stmt: &DfStatement) -> Result<Outcome, QueryError> {
        let DfStatement::Statement(s) = stmt else {
            return Err(QueryError::Internal("not CREATE TABLE".to_string()));
        };
        let SqlStatement::CreateTable(c) = s.as_ref() else {
            return Err(QueryError::Internal("not CREATE TABLE".to_string()));
        };
        if c.or_replace || c.temporary || c.external || !c.columns.is_empty() {
            return Err(QueryError::NotSupported(
                "CREATE OR REPLACE, TEMPORARY or EXTERNAL tables, or a column list, with AS; \
                 write CREATE TABLE name AS SELECT …"
                    .to_string(),
            ));
        }
        let dataset = dataset_name(&c.name)?;
        lakehouse_catalogd::validate_name(&dataset).map_err(|e| {
            QueryError::InvalidRequest(format!("{dataset:?} is not a dataset name: {e}"))
        })?;
        match self.shared.catalog.get(&dataset).await {
            Ok(m) if c.if_not_exists => {
                let changed = Changed {
                    version: m.table_version.map_or(-1, |v| v as i64),
                    ..Changed::default()
                };
                return Ok(Outcome { dataset, changed });
            }
            Ok(_) => return Err(QueryError::TableExists { dataset }),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let query = c.query.clone().expect("CREATE TABLE AS has a query");
        let plan = self
            .plan(DfStatement::Statement(Box::new(SqlStatement::Query(query))))
            .await?;
        let schema = plain(plan.schema().inner());
        let fingerprint = lakehouse_catalogd::fingerprint::fingerprint(&schema);
        let stream = self.execute_input(plan).await?;
        self.journaled(&dataset.clone(), None, |journal| async move {
            let (objects, rows) = self
                .write_files(&journal, &dataset, stream, &schema, true)
                .await?;
            let mut req = RegisterRequest::new(dataset.clone(), fingerprint, objects);
            req.expected_version = Some(0);
            let manifest = match self.shared.catalog.register(req).await {
                Ok(r) => r.manifest,
                Err(e) if e.kind() == ErrorKind::VersionMismatch => {
                    return Err(QueryError::TableExists { dataset });
                }
                Err(e) => return Err(e.into()),
            };
            let changed = Changed {
                version: manifest.table_version.map_or(-1, |v| v as i64),
                committed: true,
                inserted: rows,
                ..Changed::default()
            };
            Ok(Outcome { dataset, changed })
        })
        .await
    }

    /// Plans and starts the query whose rows a statement writes (it must
    /// be read-only, as any query).
    async fn execute_input(
        &self,
        plan: LogicalPlan,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        verify(&plan)?;
        let plan = self.bind(plan)?;
        let physical = self
            .state
            .create_physical_plan(&plan)
            .await
            .map_err(|e| self.classify(&e))?;
        let physical = CancelExec::wrap_all(physical, &self.registration.cancel)
            .map_err(|e| self.classify(&e))?;
        execute_stream(physical, self.state.task_ctx()).map_err(|e| self.classify(&e))
    }

    /// Writes the stream's rows as Parquet files under the dataset through
    /// the journal; `at_least_one` writes a file even for no rows (a new
    /// dataset's schema). Returns the files and the row count.
    async fn write_files(
        &self,
        journal: &Arc<Journal>,
        dataset: &str,
        mut stream: SendableRecordBatchStream,
        schema: &SchemaRef,
        at_least_one: bool,
    ) -> Result<(Vec<ObjectRef>, u64), QueryError> {
        let store = journal.store();
        let mut files = Vec::new();
        let mut total = 0u64;
        let mut current: Option<(AsyncArrowWriter<BufWriter>, String, u64)> = None;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.classify(&e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            let batch = conform(&batch, schema)?;
            if current.is_none() {
                let key = format!(
                    "datasets/{dataset}/sql-{}-{:05}.parquet",
                    journal.statement(),
                    files.len()
                );
                current = Some((open_writer(&store, &key, schema)?, key, 0));
            }
            let (w, _, rows) = current.as_mut().expect("open");
            w.write(&batch).await.map_err(parquet_error)?;
            *rows += batch.num_rows() as u64;
            total += batch.num_rows() as u64;
            if w.bytes_written() + w.in_progress_size() >= FILE_BYTES {
                let (w, key, rows) = current.take().expect("open");
                files.push(close(w, key, rows).await?);
            }
        }
        if let Some((w, key, rows)) = current.take() {
            files.push(close(w, key, rows).await?);
        }
        if files.is_empty() && at_least_one {
            let key = format!(
                "datasets/{dataset}/sql-{}-00000.parquet",
                journal.statement()
            );
            let w = open_writer(&store, &key, schema)?;
            files.push(close(w, key, 0).await?);
        }
        Ok((files, total))
    }

    /// Adds `objects` to the dataset (compare-and-swap, retried when
    /// another register won); the table version it became.
    async fn register_append(
        &self,
        dataset: &str,
        fingerprint: &str,
        objects: Vec<ObjectRef>,
    ) -> Result<i64, QueryError> {
        for attempt in 0..REGISTER_ATTEMPTS {
            let m = self.shared.catalog.get(dataset).await?;
            if m.schema_fingerprint != fingerprint {
                return Err(QueryError::WriteConflict {
                    dataset: dataset.to_string(),
                    version: m.table_version.map_or(-1, |v| v as i64),
                });
            }
            let mut all = m.objects.clone();
            all.extend(objects.iter().cloned());
            let mut req = RegisterRequest::new(dataset, fingerprint, all);
            req.expected_version = Some(m.version);
            match self.shared.catalog.register(req).await {
                Ok(r) => return Ok(r.manifest.table_version.map_or(-1, |v| v as i64)),
                Err(e) if e.kind() == ErrorKind::VersionMismatch => {
                    tokio::time::sleep(Duration::from_millis((attempt as u64 + 1) * 5)).await;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(QueryError::UnknownTable {
                        tables: vec![dataset.to_string()],
                        available: vec![],
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let m = self.shared.catalog.get(dataset).await?;
        Err(QueryError::WriteConflict {
            dataset: dataset.to_string(),
            version: m.table_version.map_or(-1, |v| v as i64),
        })
    }
}

/// The dataset a `CREATE TABLE` names: `t`, `public.t` or `lakehouse.public.t`.
fn dataset_name(name: &ObjectName) -> Result<String, QueryError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| match i.quote_style {
            Some(_) => i.value.clone(),
            None => i.value.to_lowercase(),
        })
        .collect();
    let ok = match parts.as_slice() {
        [_] => true,
        [s, _] => s == SCHEMA_NAME,
        [c, s, _] => c == CATALOG_NAME && s == SCHEMA_NAME,
        _ => false,
    };
    match parts.last() {
        Some(n) if ok && parts.len() == name.0.len() => Ok(n.clone()),
        _ => Err(QueryError::InvalidRequest(format!(
            "{name} is not a dataset name (write the name alone, or {SCHEMA_NAME}.<name>)"
        ))),
    }
}

/// `schema` as files store it: plain strings and binaries for views, no
/// metadata.
fn plain(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Utf8View => DataType::Utf8,
                DataType::BinaryView => DataType::Binary,
                other => other.clone(),
            };
            Field::new(f.name(), t, f.is_nullable())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `batch` cast to `schema` (by position), refusing NULLs where a column
/// allows none.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(QueryError::Plan(format!(
            "the rows have {} columns; the table has {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (col, f) in batch.columns().iter().zip(schema.fields()) {
        if !f.is_nullable() && col.null_count() > 0 {
            return Err(QueryError::Execution(format!(
                "column {:?} does not allow NULL, and {} of the rows give it NULL",
                f.name(),
                col.null_count()
            )));
        }
        let c = if col.data_type() == f.data_type() {
            col.clone()
        } else {
            cast_with_options(col, f.data_type(), &opts)
                .map_err(|e| QueryError::Execution(format!("column {:?}: {e}", f.name())))?
        };
        columns.push(c);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| QueryError::Execution(e.to_string()))
}

fn open_writer(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    schema: &SchemaRef,
) -> Result<AsyncArrowWriter<BufWriter>, QueryError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::LZ4_RAW)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let out = BufWriter::new(store.clone(), Path::from(key));
    AsyncArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(parquet_error)
}

async fn close(
    w: AsyncArrowWriter<BufWriter>,
    key: String,
    rows: u64,
) -> Result<ObjectRef, QueryError> {
    let mut w = w;
    w.finish().await.map_err(parquet_error)?;
    let size = w.bytes_written() as u64;
    Ok(ObjectRef {
        key,
        size,
        row_count: rows,
    })
}

fn parquet_error(e: parquet::errors::ParquetError) -> QueryError {
    QueryError::Internal(format!("writing Parquet: {e}"))
}
