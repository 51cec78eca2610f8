//! The engine for wire protocols: results as Arrow batches, statements
//! described before they run, and the catalog's metadata.
//!
//! [`QueryEngine::run_batches`] is [`crate::Query::sql`] without the
//! encoding: the same job on the engine runtime — sandbox, plan check,
//! timeout, memory pool, memory guard, cancellation — handing
//! `RecordBatch`es through a small bounded channel (a slow client pauses
//! the query; memory stays bounded by a few batches). As on HTTP, errors
//! before the first batch are returned, not streamed, and dropping the
//! stream (or the future) cancels the query. The row cap differs in one
//! way: a protocol has no in-band "truncated" marker, so a result over
//! `max_rows` ends with [`QueryError::TooManyRows`] instead of a cut —
//! never a result that looks complete.
//!
//! [`QueryEngine::describe`] parses and plans without running: the result
//! schema and the types of the `$n` parameters (PostgreSQL's Describe,
//! Flight SQL's prepared statements).
//!
//! The `_as` variants take the caller's [`Access`]: a write statement runs
//! as on HTTP (its `$n` values inlined, see `write::params`) and streams
//! its one-row answer, marked by [`Batches::write`].

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::execute_stream;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Visit, Visitor};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::catalog::dataset_schema;
use crate::encode::Format;
use crate::engine::{Job, QueryEngine, Stop, verify};
use crate::error::{QueryError, is_not_found};
use crate::write::{Access, Kind as WriteKind};

/// A result as Arrow batches. Dropping it cancels the query.
pub struct Batches {
    pub schema: SchemaRef,
    /// The statement wrote (its one row is the answer:
    /// [`crate::write_answer_schema`]); `None` for a query.
    pub write: Option<WriteKind>,
    /// Batches with at least one row; an `Err` ends the stream (the query
    /// failed, timed out, or passed `max_rows`).
    pub stream: BoxStream<'static, Result<RecordBatch, QueryError>>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// What a statement returns and takes, before it runs.
#[derive(Debug, Clone)]
pub struct Described {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The parameters `$1`, `$2`, … in order, with the type the planner
    /// inferred for each (`None` when nothing constrains it).
    pub params: Vec<Option<DataType>>,
    /// The statement writes: it answers one row of
    /// [`crate::write_answer_schema`] (and takes its parameters as bound).
    pub write: Option<WriteKind>,
}

/// A dataset as a table: its name and Arrow schema.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub schema: SchemaRef,
}

impl QueryEngine {
    /// Runs one read-only statement with optional `$n` parameter values and
    /// streams its batches. Errors before the first batch are returned here.
    pub async fn run_batches(
        &self,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<Batches, QueryError> {
        self.run_batches_as(sql, params, Access::ReadOnly).await
    }

    /// [`QueryEngine::run_batches`] for a caller with `access`: a write
    /// statement runs as on HTTP and streams its one-row answer
    /// ([`Batches::write`] says so).
    pub async fn run_batches_as(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        access: Access,
    ) -> Result<Batches, QueryError> {
        let (mut job, guard) = self.job(Format::Arrow, params);
        job.access = access;
        let (tx, mut rx) = mpsc::channel::<Result<RecordBatch, QueryError>>(2);
        let sql = sql.to_string();
        let wrote = Arc::new(OnceLock::new());
        let kind = wrote.clone();
        self.exec.handle().spawn(async move {
            let err_tx = tx.clone();
            if let Err(e) = job.run_batches(&sql, tx, &kind).await {
                let _ = err_tx.send(Err(e)).await;
            }
        });
        match rx.recv().await {
            Some(Ok(first)) => {
                let schema = first.schema();
                let rest = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
                    rx.recv().await.map(|item| (item, (rx, guard)))
                });
                let stream = futures::stream::once(async move { Ok(first) })
                    .chain(rest)
                    .filter(|b| std::future::ready(!matches!(b, Ok(b) if b.num_rows() == 0)))
                    .boxed();
                Ok(Batches {
                    schema,
                    write: wrote.get().copied(),
                    stream,
                })
            }
            Some(Err(e)) => Err(e),
            None => Err(QueryError::Internal(
                "the query task ended without a result".to_string(),
            )),
        }
    }

    /// Parses, checks and plans `sql` (binding `params` when given) without
    /// running it.
    pub async fn describe(
        &self,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<Described, QueryError> {
        self.describe_as(sql, params, Access::ReadOnly).await
    }

    /// [`QueryEngine::describe`] for a caller with `access`: a write
    /// statement is described (its answer's schema), not run.
    pub async fn describe_as(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        access: Access,
    ) -> Result<Described, QueryError> {
        let (mut job, guard) = self.job(Format::Arrow, params);
        job.access = access;
        let sql = sql.to_string();
        let task = self.exec.handle().spawn(async move {
            match job.guarded(job.describe(&sql)).await {
                Ok(d) => Ok(d),
                Err(Stop::Error(e)) => Err(e),
                Err(Stop::Gone) => Err(QueryError::Internal("cancelled".to_string())),
            }
        });
        let result = task
            .await
            .map_err(|e| QueryError::Internal(format!("describing the statement: {e}")))?;
        drop(guard);
        result
    }

    /// The dataset names, sorted.
    pub async fn dataset_names(&self) -> Result<Vec<String>, QueryError> {
        let mut names: Vec<String> = self
            .shared
            .catalog
            .list()
            .await?
            .into_iter()
            .map(|m| m.name)
            .collect();
        names.sort();
        *self.shared.caches.names.lock() = names.clone();
        Ok(names)
    }

    /// Every dataset with its schema, sorted by name. A dataset whose schema
    /// cannot be read (a damaged object) is left out and logged: listing
    /// tables must not fail because one of them is broken.
    pub async fn tables(&self) -> Result<Vec<TableInfo>, QueryError> {
        let manifests = self.shared.catalog.list().await?;
        let mut out = Vec::with_capacity(manifests.len());
        for m in manifests {
            match dataset_schema(&self.shared, &m).await {
                Ok(schema) => out.push(TableInfo {
                    name: m.name,
                    schema,
                }),
                Err(e) => tracing::warn!(
                    dataset = %m.name,
                    error = %crate::error::message(&e),
                    "dataset left out of a table listing: its schema cannot be read"
                ),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        *self.shared.caches.names.lock() = out.iter().map(|t| t.name.clone()).collect();
        Ok(out)
    }

    /// One dataset's schema; `None` if there is no such dataset.
    pub async fn table_schema(&self, name: &str) -> Result<Option<SchemaRef>, QueryError> {
        let manifest = match self.shared.catalog.get(name).await {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        dataset_schema(&self.shared, &manifest)
            .await
            .map(Some)
            .map_err(|e| crate::error::classify(&e, ""))
    }
}

impl Job {
    /// Plans, executes and sends batches; see the module docs. A write
    /// statement sets `wrote` before its answer is sent.
    async fn run_batches(
        self,
        sql: &str,
        tx: mpsc::Sender<Result<RecordBatch, QueryError>>,
        wrote: &OnceLock<WriteKind>,
    ) -> Result<(), QueryError> {
        let stmt = self.parse_any(sql)?;
        if let Some(kind) = self.write_kind(&stmt)? {
            let _ = wrote.set(kind);
            if let Some(answer) = self.write_answer(kind, stmt).await? {
                let _ = tx.send(Ok(answer)).await;
            }
            return Ok(());
        }
        let prepared = async {
            let plan = self.logical_stmt(stmt).await?;
            self.prepare_plan(plan).await
        };
        let prepared = match self.guarded(prepared).await {
            Ok(p) => p,
            Err(Stop::Gone) => return Ok(()),
            Err(Stop::Error(e)) => return Err(e),
        };
        let Some((physical, is_explain)) = prepared else {
            return Ok(());
        };
        let mut stream =
            execute_stream(physical, self.state.task_ctx()).map_err(|e| self.classify(&e))?;
        let schema = stream.schema();
        let mut rows: u64 = 0;
        let mut sent_any = false;
        loop {
            let batch = match self.guarded(async { Ok(stream.next().await) }).await {
                Ok(None) => break,
                Ok(Some(Ok(b))) => b,
                Ok(Some(Err(e))) => return Err(self.classify(&e)),
                Err(Stop::Gone) => return Ok(()),
                Err(Stop::Error(e)) => return Err(e),
            };
            rows += batch.num_rows() as u64;
            if !is_explain && rows > self.max_rows {
                return Err(QueryError::TooManyRows {
                    max_rows: self.max_rows,
                });
            }
            if batch.num_rows() == 0 {
                continue;
            }
            // The deadline covers a client that stops reading, too.
            match self.guarded(async { Ok(tx.send(Ok(batch)).await) }).await {
                Ok(Ok(())) => sent_any = true,
                Ok(Err(_)) | Err(Stop::Gone) => {
                    self.gone(rows);
                    return Ok(());
                }
                Err(Stop::Error(e)) => return Err(e),
            }
        }
        if !sent_any {
            // Carries the schema of an empty result.
            let _ = tx.send(Ok(RecordBatch::new_empty(schema))).await;
        }
        Ok(())
    }

    /// The result schema and parameter types of `sql`.
    async fn describe(&self, sql: &str) -> Result<Described, QueryError> {
        let stmt = self.parse_any(sql)?;
        if let Some(kind) = self.write_kind(&stmt)? {
            return Ok(Described {
                schema: crate::write_answer_schema(),
                params: vec![None; crate::write::params::count(&stmt)],
                write: Some(kind),
            });
        }
        let plan = self.logical_stmt(stmt).await?;
        let plan = if self.params.is_some() {
            self.bind(plan)?
        } else {
            plan
        };
        verify(&plan)?;
        let mut types = plan.get_parameter_types().map_err(|e| self.classify(&e))?;
        cast_types(&plan, &mut types);
        // Parameters of vector_search/hybrid_search arguments are not in the
        // plan (the functions took them).
        for (id, ty) in self.vector.unbound() {
            let t = types.entry(id).or_insert(None);
            if t.is_none() {
                *t = ty;
            }
        }
        Ok(Described {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            params: positional(types)?,
            write: None,
        })
    }
}

/// Gives a parameter the planner left untyped the type it is cast to,
/// `CAST($1 AS DATE)` / `$1::date`, as PostgreSQL resolves an `unknown`
/// parameter from its cast. The client's value is then read as that type
/// (JDBC's `setDate` sends `2024-02-03 +00`, which the date reader takes and
/// a text-to-date cast does not). A parameter cast to two different types
/// stays untyped.
fn cast_types(plan: &LogicalPlan, types: &mut HashMap<String, Option<DataType>>) {
    let mut casts: HashMap<String, Option<DataType>> = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                let (inner, to) = match e {
                    Expr::Cast(c) => (&c.expr, c.field.data_type()),
                    Expr::TryCast(c) => (&c.expr, c.field.data_type()),
                    _ => return Ok(TreeNodeRecursion::Continue),
                };
                if let Expr::Placeholder(p) = inner.as_ref() {
                    casts
                        .entry(p.id.clone())
                        .and_modify(|t| {
                            if t.as_ref() != Some(to) {
                                *t = None;
                            }
                        })
                        .or_insert_with(|| Some(to.clone()));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    for (id, to) in casts {
        if let (Some(slot), Some(to)) = (types.get_mut(&id), to)
            && slot.is_none()
        {
            *slot = Some(to);
        }
    }
}

/// `$1 … $n` in order; a gap gets `None`, a named parameter is refused.
fn positional(
    types: HashMap<String, Option<DataType>>,
) -> Result<Vec<Option<DataType>>, QueryError> {
    let mut indexed = Vec::with_capacity(types.len());
    for (name, t) in types {
        let n: usize = name
            .strip_prefix('$')
            .and_then(|d| d.parse().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                QueryError::InvalidRequest(format!(
                    "parameter {name} is not positional: use $1, $2, … (or ?)"
                ))
            })?;
        indexed.push((n, t));
    }
    let count = indexed.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut out = vec![None; count];
    for (n, t) in indexed {
        out[n - 1] = t;
    }
    Ok(out)
}

/// Whether the statement reads a table of `information_schema`.
pub(crate) fn reads_information_schema(stmt: &DfStatement) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            let hit = name.0.iter().any(|p| {
                p.as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("information_schema"))
            });
            if hit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
    }
    match stmt {
        DfStatement::Statement(s) => s.visit(&mut Finder).is_break(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_in_order() {
        let mut m = HashMap::new();
        m.insert("$2".to_string(), Some(DataType::Utf8));
        m.insert("$1".to_string(), None);
        assert_eq!(positional(m).unwrap(), vec![None, Some(DataType::Utf8)]);
        let mut named = HashMap::new();
        named.insert("$foo".to_string(), None);
        assert!(matches!(
            positional(named),
            Err(QueryError::InvalidRequest(_))
        ));
    }

    #[test]
    fn finds_information_schema() {
        let s = crate::sandbox::check("SELECT * FROM information_schema.tables", 100).unwrap();
        assert!(reads_information_schema(&s));
        let s = crate::sandbox::check("SELECT * FROM t JOIN u ON t.a = u.a", 100).unwrap();
        assert!(!reads_information_schema(&s));
    }
}
