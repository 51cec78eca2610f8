//! `MERGE INTO target [AS t] USING source [AS s] ON … WHEN …`.
//!
//! DataFusion's planner has no MERGE, so the parsed statement is taken
//! apart here: the source (a dataset or a subquery) is planned as a query
//! (read-only, like any), the target's column names are matched to the
//! dataset's (exactly, else ignoring case), and the `ON` condition, clause
//! conditions and values go to delta-rs's merge as SQL, resolved there
//! against the target and source under their aliases. Every clause form is
//! supported: `WHEN MATCHED [AND …] THEN UPDATE SET … | DELETE`,
//! `WHEN NOT MATCHED [BY TARGET] [AND …] THEN INSERT [(cols)] VALUES (…)`,
//! `WHEN NOT MATCHED BY SOURCE [AND …] THEN UPDATE SET … | DELETE`.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Expr as SqlExpr, Ident, Merge, MergeAction, MergeClause as SqlClause,
    MergeClauseKind, MergeInsertKind, ObjectName, Statement as SqlStatement, TableFactor,
};
use lakehouse_table::{Expression, MergeClause, MergeSpec, When};

use super::Outcome;
use super::rows::target_dataset;
use crate::catalog::dataset_schema;
use crate::engine::{Job, verify};
use crate::error::QueryError;

impl Job {
    pub(crate) async fn merge(&self, stmt: &DfStatement) -> Result<Outcome, QueryError> {
        let DfStatement::Statement(s) = stmt else {
            return Err(QueryError::Internal("not MERGE".to_string()));
        };
        let SqlStatement::Merge(m) = s.as_ref() else {
            return Err(QueryError::Internal("not MERGE".to_string()));
        };
        if m.output.is_some() {
            return Err(not_supported("MERGE … OUTPUT"));
        }
        let TableFactor::Table {
            name: target_name,
            alias: target_alias,
            ..
        } = &m.table
        else {
            return Err(not_supported("MERGE into anything but a dataset"));
        };
        let written = last_ident(target_name)?;
        let dataset = target_dataset(&normalized(&written))?;
        let manifest = self.manifest(&dataset).await?;
        let base = manifest
            .table_version
            .map(|v| v as i64)
            .ok_or_else(|| self.no_table(&dataset))?;
        let target = dataset_schema(&self.shared, &manifest)
            .await
            .map_err(|e| self.classify(&e))?;
        let (source, source_alias) = self.merge_source(&m.source).await?;
        let spec = MergeSpec {
            on: Expression::Sql(m.on.to_string()),
            source_alias,
            target_alias: target_alias
                .as_ref()
                .map_or_else(|| normalized(&written), |a| normalized(&a.name)),
            clauses: clauses(m, &target)?,
        };
        let session = self.write_session();
        let source = DataFrame::new(session.clone(), source);
        let ds = dataset.clone();
        let changed = self
            .journaled(&dataset, Some(base), |journal| async move {
                Job::tables(&journal)
                    .merge(&ds, source, spec, &session)
                    .await
                    .map_err(|e| self.table_error(&ds, e))
            })
            .await?;
        if changed.committed {
            self.sync(&dataset).await?;
        }
        Ok(Outcome { dataset, changed })
    }

    /// The source's plan (a read-only query) and its alias.
    async fn merge_source(
        &self,
        source: &TableFactor,
    ) -> Result<(datafusion::logical_expr::LogicalPlan, String), QueryError> {
        let (query, alias) = match source {
            TableFactor::Table { name, alias, .. } => {
                let sql = format!("SELECT * FROM {name}");
                let mut parser = DFParserBuilder::new(sql.as_str())
                    .build()
                    .map_err(|e| self.classify(&e))?;
                let stmt = parser.parse_statement().map_err(|e| self.classify(&e))?;
                let alias = match alias {
                    Some(a) => normalized(&a.name),
                    None => normalized(&last_ident(name)?),
                };
                (stmt, alias)
            }
            TableFactor::Derived {
                lateral: false,
                subquery,
                alias: Some(alias),
                ..
            } => (
                DfStatement::Statement(Box::new(SqlStatement::Query(subquery.clone()))),
                normalized(&alias.name),
            ),
            TableFactor::Derived { alias: None, .. } => {
                return Err(QueryError::InvalidRequest(
                    "the MERGE source subquery needs an alias: USING (SELECT …) AS s".to_string(),
                ));
            }
            _ => return Err(not_supported("this kind of MERGE source")),
        };
        let plan = self.plan(query).await?;
        verify(&plan)?;
        Ok((self.bind(plan)?, alias))
    }
}

fn not_supported(what: &str) -> QueryError {
    QueryError::NotSupported(what.to_string())
}

fn last_ident(name: &ObjectName) -> Result<Ident, QueryError> {
    match name.0.as_slice() {
        [p] => p
            .as_ident()
            .cloned()
            .ok_or_else(|| not_supported("this table name")),
        _ => Err(QueryError::InvalidRequest(format!(
            "{name}: name the dataset alone (quote names with '/' or '.')"
        ))),
    }
}

/// An identifier as SQL resolves it: unquoted ones fold to lower case.
fn normalized(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The target's column written as `c`: its exact name, else the one name
/// equal ignoring case.
fn target_column(target: &SchemaRef, c: &Ident) -> Result<String, QueryError> {
    let names: Vec<&String> = target.fields().iter().map(|f| f.name()).collect();
    if let Some(n) = names.iter().find(|n| ***n == c.value) {
        return Ok((*n).clone());
    }
    let folded: Vec<&&String> = names
        .iter()
        .filter(|n| c.quote_style.is_none() && n.eq_ignore_ascii_case(&c.value))
        .collect();
    match folded.as_slice() {
        [one] => Ok((**one).clone()),
        [] => Err(QueryError::Plan(format!(
            "the MERGE target has no column {:?} (it has {})",
            c.value,
            names
                .iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(QueryError::AmbiguousColumn {
            name: c.value.clone(),
            candidates: many.iter().map(|n| (**n).clone()).collect(),
        }),
    }
}

fn sql(e: &SqlExpr) -> Expression {
    Expression::Sql(e.to_string())
}

fn clauses(m: &Merge, target: &SchemaRef) -> Result<Vec<MergeClause>, QueryError> {
    m.clauses.iter().map(|c| clause(c, target)).collect()
}

fn clause(c: &SqlClause, target: &SchemaRef) -> Result<MergeClause, QueryError> {
    let predicate = c.predicate.as_ref().map(sql);
    let when = match c.clause_kind {
        MergeClauseKind::Matched => Some(When::Matched),
        MergeClauseKind::NotMatchedBySource => Some(When::NotMatchedBySource),
        MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => None,
    };
    match (&c.action, when) {
        (MergeAction::Update(u), Some(when)) => {
            if u.update_predicate.is_some() || u.delete_predicate.is_some() {
                return Err(not_supported("UPDATE … WHERE / DELETE WHERE inside MERGE"));
            }
            let mut set = Vec::new();
            for a in &u.assignments {
                let AssignmentTarget::ColumnName(name) = &a.target else {
                    return Err(not_supported("assigning a tuple of columns"));
                };
                let col = name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .ok_or_else(|| not_supported("this column name"))?;
                set.push((target_column(target, col)?, sql(&a.value)));
            }
            Ok(MergeClause::Update {
                when,
                predicate,
                set,
            })
        }
        (MergeAction::Delete { .. }, Some(when)) => Ok(MergeClause::Delete { when, predicate }),
        (MergeAction::Insert(i), None) => {
            let MergeInsertKind::Values(v) = &i.kind else {
                return Err(not_supported("INSERT ROW in MERGE; list the VALUES"));
            };
            let [row] = v.rows.as_slice() else {
                return Err(QueryError::InvalidRequest(
                    "a MERGE INSERT takes exactly one VALUES row".to_string(),
                ));
            };
            let columns: Vec<String> = if i.columns.is_empty() {
                target.fields().iter().map(|f| f.name().clone()).collect()
            } else {
                i.columns
                    .iter()
                    .map(|n| {
                        let col =
                            n.0.last()
                                .and_then(|p| p.as_ident())
                                .ok_or_else(|| not_supported("this column name"))?;
                        target_column(target, col)
                    })
                    .collect::<Result<_, _>>()?
            };
            if columns.len() != row.content.len() {
                return Err(QueryError::InvalidRequest(format!(
                    "the MERGE INSERT names {} columns but gives {} values",
                    columns.len(),
                    row.content.len()
                )));
            }
            let values = columns
                .into_iter()
                .zip(row.content.iter().map(sql))
                .collect();
            Ok(MergeClause::Insert { predicate, values })
        }
        (MergeAction::Insert(_), Some(_)) => Err(QueryError::InvalidRequest(
            "INSERT is only allowed in WHEN NOT MATCHED clauses".to_string(),
        )),
        (_, None) => Err(QueryError::InvalidRequest(
            "WHEN NOT MATCHED clauses can only INSERT".to_string(),
        )),
    }
}
