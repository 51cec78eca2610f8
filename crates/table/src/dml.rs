//! DELETE, UPDATE and MERGE of a table's rows, through delta-rs's operations.
//!
//! Each statement reads the table's latest version, rewrites only the files
//! that can hold affected rows (delta-rs prunes the rest with the `add`
//! actions' statistics) and commits one version with delta-rs's conflict
//! checks: a version committed meanwhile is accepted if it touched nothing
//! the statement read (an append whose files cannot match the predicate),
//! else the commit fails with [`TableError::Conflict`] and nothing changes.
//! The caller supplies the DataFusion session, so its memory pool, limits
//! and cancellation apply to the rewrite.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Column;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use datafusion::prelude::DataFrame;
use deltalake_core::kernel::transaction::TransactionError;
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use serde_json::Value;

use crate::{DATASETS_PREFIX, Tables, commit_key, version_of};
use crate::{Result, TableError};

/// An expression of a statement: planned by the caller, or SQL text that
/// delta-rs parses against the table (and, in MERGE, the source).
#[derive(Debug, Clone)]
pub enum Expression {
    Expr(Expr),
    Sql(String),
}

/// What a statement changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Changed {
    /// The version committed, or the version read when nothing changed.
    pub version: i64,
    /// Whether a version was committed.
    pub committed: bool,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// `MERGE INTO target USING source ON …`.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    pub on: Expression,
    pub source_alias: String,
    pub target_alias: String,
    /// In the statement's order (the first clause whose predicate holds acts).
    pub clauses: Vec<MergeClause>,
}

/// Which rows a MERGE clause applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Matched,
    NotMatchedBySource,
}

/// One `WHEN … THEN …` clause.
#[derive(Debug, Clone)]
pub enum MergeClause {
    Update {
        when: When,
        predicate: Option<Expression>,
        /// Target column (as the table spells it) and its new value.
        set: Vec<(String, Expression)>,
    },
    Delete {
        when: When,
        predicate: Option<Expression>,
    },
    /// `WHEN NOT MATCHED [BY TARGET]`: columns not set are NULL.
    Insert {
        predicate: Option<Expression>,
        values: Vec<(String, Expression)>,
    },
}

macro_rules! with_expr {
    ($builder:expr, $method:ident, $e:expr) => {
        match $e {
            Expression::Expr(x) => $builder.$method(x),
            Expression::Sql(s) => $builder.$method(s),
        }
    };
    ($builder:expr, $method:ident, $col:expr, $e:expr) => {
        match $e {
            Expression::Expr(x) => $builder.$method(column($col), x),
            Expression::Sql(s) => $builder.$method(column($col), s),
        }
    };
}

/// A target column by its exact name (no qualifier parsing, case kept).
fn column(name: String) -> Column {
    Column::new_unqualified(name)
}

impl Tables {
    /// The table to change, at its latest version.
    async fn for_write(&self, name: &str) -> Result<(DeltaTable, i64)> {
        match self.open(name).await? {
            Some(t) => {
                let v = version_of(&t).unwrap_or(-1);
                Ok((t, v))
            }
            None => Err(TableError::NoTable {
                name: name.to_string(),
            }),
        }
    }

    /// `DELETE FROM name [WHERE predicate]`.
    pub async fn delete(
        &self,
        name: &str,
        predicate: Option<Expression>,
        session: &SessionState,
    ) -> Result<Changed> {
        let (table, read) = self.for_write(name).await?;
        let before = table.clone();
        let mut builder = table.delete().with_session_state(Arc::new(session.clone()));
        if let Some(p) = predicate {
            builder = with_expr!(builder, with_predicate, p);
        }
        let (after, metrics) = builder.await.map_err(|e| dml_error(e, name, read))?;
        let changed = committed(&after, read);
        let deleted = match metrics.num_deleted_rows {
            Some(n) => n as u64,
            None if changed.committed => {
                self.rows_removed(name, &before, changed.version).await?
                    - metrics.num_copied_rows as u64
            }
            None => 0,
        };
        Ok(Changed { deleted, ..changed })
    }

    /// `UPDATE name SET … [WHERE predicate]`.
    pub async fn update(
        &self,
        name: &str,
        predicate: Option<Expression>,
        set: Vec<(String, Expression)>,
        session: &SessionState,
    ) -> Result<Changed> {
        let (table, read) = self.for_write(name).await?;
        let mut builder = table
            .update()
            .with_session_state(Arc::new(session.clone()))
            .with_safe_cast(false);
        if let Some(p) = predicate {
            builder = with_expr!(builder, with_predicate, p);
        }
        for (c, e) in set {
            builder = with_expr!(builder, with_update, c, e);
        }
        let (after, metrics) = builder.await.map_err(|e| dml_error(e, name, read))?;
        Ok(Changed {
            updated: metrics.num_updated_rows as u64,
            ..committed(&after, read)
        })
    }

    /// `MERGE INTO name USING source ON …`.
    pub async fn merge(
        &self,
        name: &str,
        source: DataFrame,
        spec: MergeSpec,
        session: &SessionState,
    ) -> Result<Changed> {
        let (table, read) = self.for_write(name).await?;
        let on = spec.on;
        let mut builder = match on {
            Expression::Expr(x) => table.merge(source, x),
            Expression::Sql(s) => table.merge(source, s),
        }
        .with_source_alias(spec.source_alias)
        .with_target_alias(spec.target_alias)
        .with_session_state(Arc::new(session.clone()));
        for clause in spec.clauses {
            builder = add_clause(builder, clause).map_err(|e| dml_error(e, name, read))?;
        }
        let (after, metrics) = builder.await.map_err(|e| dml_error(e, name, read))?;
        Ok(Changed {
            inserted: metrics.num_target_rows_inserted as u64,
            updated: metrics.num_target_rows_updated as u64,
            deleted: metrics.num_target_rows_deleted as u64,
            ..committed(&after, read)
        })
    }

    /// Rows of the files `version` removed, from `before`'s statistics.
    async fn rows_removed(&self, name: &str, before: &DeltaTable, version: i64) -> Result<u64> {
        let state = before.snapshot()?;
        let views: Vec<_> = state
            .snapshot()
            .file_views(before.log_store().as_ref(), None)
            .try_collect()
            .await?;
        let rows: HashMap<String, u64> = views
            .iter()
            .map(|f| {
                let n = f.num_records().unwrap_or(0) as u64;
                (f.path().to_string(), n)
            })
            .collect();
        let removed = self.log_paths(name, version, "remove").await?;
        Ok(removed.iter().filter_map(|p| rows.get(p)).sum())
    }

    /// The paths (as the log writes them, decoded) of one kind of action
    /// (`add` / `remove`) in the log entry of `version`; empty if the entry
    /// is gone.
    pub(crate) async fn log_paths(
        &self,
        name: &str,
        version: i64,
        kind: &str,
    ) -> Result<Vec<String>> {
        let key = object_store::path::Path::from(commit_key(name, version));
        let bytes = match object_store::ObjectStoreExt::get(self.root.as_ref(), &key).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|a| {
                let p = a.get(kind)?.get("path")?.as_str()?.to_string();
                Some(
                    percent_encoding::percent_decode_str(&p)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
            .collect())
    }

    /// The keys of the files the versions after `base` added (`None`: every
    /// version), as far as their log entries are still stored.
    pub async fn added_since(
        &self,
        name: &str,
        base: Option<i64>,
    ) -> Result<std::collections::HashSet<String>> {
        let Some(latest) = self.latest(name).await? else {
            return Ok(Default::default());
        };
        let mut out = std::collections::HashSet::new();
        for v in base.map_or(0, |b| b + 1)..=latest {
            for p in self.log_paths(name, v, "add").await? {
                out.insert(format!("{DATASETS_PREFIX}{name}/{p}"));
            }
        }
        Ok(out)
    }
}

fn add_clause(
    b: deltalake_core::operations::merge::MergeBuilder,
    clause: MergeClause,
) -> std::result::Result<deltalake_core::operations::merge::MergeBuilder, DeltaTableError> {
    match clause {
        MergeClause::Update {
            when,
            predicate,
            set,
        } => {
            let f = move |mut u: deltalake_core::operations::merge::UpdateBuilder| {
                if let Some(p) = predicate {
                    u = with_expr!(u, predicate, p);
                }
                for (c, e) in set {
                    u = with_expr!(u, update, c, e);
                }
                u
            };
            match when {
                When::Matched => b.when_matched_update(f),
                When::NotMatchedBySource => b.when_not_matched_by_source_update(f),
            }
        }
        MergeClause::Delete { when, predicate } => {
            let f = move |mut d: deltalake_core::operations::merge::DeleteBuilder| {
                if let Some(p) = predicate {
                    d = with_expr!(d, predicate, p);
                }
                d
            };
            match when {
                When::Matched => b.when_matched_delete(f),
                When::NotMatchedBySource => b.when_not_matched_by_source_delete(f),
            }
        }
        MergeClause::Insert { predicate, values } => b.when_not_matched_insert(move |mut i| {
            if let Some(p) = predicate {
                i = with_expr!(i, predicate, p);
            }
            for (c, e) in values {
                i = with_expr!(i, set, c, e);
            }
            i
        }),
    }
}

/// The outcome's version: the new one if the operation committed.
fn committed(after: &DeltaTable, read: i64) -> Changed {
    let v = version_of(after).unwrap_or(read);
    Changed {
        version: v,
        committed: v > read,
        ..Changed::default()
    }
}

/// A failed statement: a conflicting concurrent version is `Conflict`.
fn dml_error(e: DeltaTableError, name: &str, read: i64) -> TableError {
    match e {
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_),
        }
        | DeltaTableError::VersionAlreadyExists(_) => TableError::Conflict {
            name: name.to_string(),
            version: read + 1,
        },
        other => other.into(),
    }
}
