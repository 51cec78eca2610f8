//! `DELETE FROM t [WHERE …]` and `UPDATE t SET … [WHERE …]`.
//!
//! DataFusion plans the statement against the dataset (so names resolve,
//! whatever their case, and types check exactly as in a query); the
//! predicate and the assignments are taken from the plan, stripped of
//! their table qualifier, and handed to delta-rs's `delete` / `update`.

use datafusion::common::Column;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use lakehouse_table::Expression;

use super::{Kind, Outcome};
use crate::catalog::time_travel;
use crate::engine::Job;
use crate::error::QueryError;

/// What a DELETE or UPDATE does, read off its plan.
pub(crate) struct RowChange {
    pub dataset: String,
    pub predicate: Option<Expr>,
    /// Column and new value (UPDATE).
    pub set: Vec<(String, Expr)>,
}

impl Job {
    pub(crate) async fn change_rows(
        &self,
        kind: Kind,
        stmt: &DfStatement,
    ) -> Result<Outcome, QueryError> {
        if let DfStatement::Statement(s) = stmt
            && let SqlStatement::Update(u) = s.as_ref()
            && u.from.is_some()
        {
            return Err(QueryError::NotSupported(
                "UPDATE … FROM; write it as MERGE INTO t USING (…) s ON … WHEN MATCHED THEN UPDATE SET …".to_string(),
            ));
        }
        let plan = self.plan(stmt.clone()).await?;
        // Type coercion (an analyzer rule): delta-rs prunes files with the
        // predicate as given, so `bigint_col = smallint_value` must arrive
        // with its cast.
        let plan = self
            .state
            .analyzer()
            .execute_and_check(plan, self.state.config_options(), |_, _| {})
            .map_err(|e| self.classify(&e))?;
        let change = row_change(kind, &plan)?;
        let base = self.table_version(&change.dataset).await?;
        let session = self.write_session();
        let dataset = change.dataset.clone();
        let changed = self
            .journaled(&dataset, Some(base), |journal| async move {
                let tables = Job::tables(&journal);
                let predicate = change.predicate.map(Expression::Expr);
                let r = match kind {
                    Kind::Delete => tables.delete(&change.dataset, predicate, &session).await,
                    _ => {
                        let set = change
                            .set
                            .into_iter()
                            .map(|(c, e)| (c, Expression::Expr(e)))
                            .collect();
                        tables
                            .update(&change.dataset, predicate, set, &session)
                            .await
                    }
                };
                r.map_err(|e| self.table_error(&change.dataset, e))
            })
            .await?;
        if changed.committed {
            self.sync(&dataset).await?;
        }
        Ok(Outcome { dataset, changed })
    }

    /// The table version the dataset's manifest records; 409 `no_table` for
    /// a dataset without one.
    pub(crate) async fn table_version(&self, dataset: &str) -> Result<i64, QueryError> {
        let m = self.manifest(dataset).await?;
        m.table_version
            .map(|v| v as i64)
            .ok_or_else(|| self.no_table(dataset))
    }
}

/// The dataset a statement writes: a plain dataset name, not a past version.
pub(crate) fn target_dataset(table: &str) -> Result<String, QueryError> {
    match time_travel(table) {
        Ok((base, lakehouse_catalogd::At::Latest)) => Ok(base.to_string()),
        Ok(_) => Err(QueryError::InvalidRequest(format!(
            "{table:?} is a past version of a dataset; statements change only the latest (restore a version with POST /catalog/restore)"
        ))),
        Err(e) => Err(QueryError::Catalog(e)),
    }
}

fn row_change(kind: Kind, plan: &LogicalPlan) -> Result<RowChange, QueryError> {
    let LogicalPlan::Dml(DmlStatement {
        table_name,
        op,
        input,
        ..
    }) = plan
    else {
        return Err(QueryError::Internal(format!(
            "{} did not plan as a write",
            kind.keyword()
        )));
    };
    let dataset = target_dataset(table_name.table())?;
    let (filter_input, set) = match (op, input.as_ref()) {
        (WriteOp::Delete, other) => (other, vec![]),
        (WriteOp::Update, LogicalPlan::Projection(p)) => {
            let fields = p.schema.fields();
            let mut set = Vec::new();
            for (e, f) in p.expr.iter().zip(fields.iter()) {
                let inner = e.clone().unalias();
                let unchanged = matches!(&inner, Expr::Column(c) if c.name == *f.name());
                if !unchanged {
                    set.push((f.name().clone(), unqualified(inner)?));
                }
            }
            (p.input.as_ref(), set)
        }
        _ => {
            return Err(QueryError::Internal(format!(
                "{} planned in an unexpected shape",
                kind.keyword()
            )));
        }
    };
    let predicate = match filter_input {
        LogicalPlan::Filter(f) => Some(unqualified(f.predicate.clone())?),
        LogicalPlan::TableScan(_) => None,
        _ => {
            return Err(QueryError::NotSupported(format!(
                "this form of {}; use MERGE INTO … USING … for changes that join other tables",
                kind.keyword()
            )));
        }
    };
    Ok(RowChange {
        dataset,
        predicate,
        set,
    })
}

/// `e` with its columns unqualified (delta-rs resolves them against the
/// table); subqueries are refused with the MERGE form that does the same.
fn unqualified(e: Expr) -> Result<Expr, QueryError> {
    let mut subquery = false;
    e.apply(|x| {
        if matches!(
            x,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ) {
            subquery = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    if subquery {
        return Err(QueryError::NotSupported(
            "subqueries in DELETE and UPDATE; write it as MERGE INTO t USING (SELECT …) s ON … WHEN MATCHED THEN DELETE (or UPDATE SET …)".to_string(),
        ));
    }
    e.transform(|x| match x {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(|e| QueryError::Internal(e.to_string()))
}
