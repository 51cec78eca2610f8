//! Unquoted identifiers that match columns whatever their case, as in
//! DuckDB.
//!
//! DataFusion folds unquoted identifiers to lower case
//! (`enable_ident_normalization`) and then matches columns exactly, so after
//! ingesting a CSV whose header is `Country`, `SELECT Country FROM t` fails.
//! Dataset names are lower case by the catalog's grammar, so tables already
//! match; columns keep the case of their source.
//!
//! The hook is the planner's own structured error: when planning fails with
//! `SchemaError::FieldNotFound` for a name that matches exactly one valid
//! field ignoring case, every unquoted identifier with that name is
//! rewritten in the statement as the quoted, exact column name and the
//! statement is planned again (a bounded number of times). Names that do
//! resolve exactly — CTE columns, aliases, lower-case columns — are never
//! touched, so TPC-H style lower-case SQL plans as before. Quoted
//! identifiers stay exact. A name that matches several columns differing
//! only in case (`a` and `A`) is a 400 `ambiguous_column` naming them, both
//! when it fails to resolve and when it resolves to one of them exactly.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Ident, visit_expressions, visit_expressions_mut};

use crate::error::{QueryError, find};

/// Most renames one statement gets (each fixes one name).
pub(crate) const MAX_RENAMES: usize = 64;

/// What to do about a planning failure.
pub(crate) enum Resolution {
    /// Rewrite unquoted `from` (as normalised) to quoted `to`, and re-plan.
    Rename { from: String, to: String },
    /// The name matches several columns.
    Ambiguous(QueryError),
    /// Not a case problem.
    None,
}

/// Looks for a field the planner could not find that matches valid fields
/// ignoring case.
pub(crate) fn resolve(e: &DataFusionError) -> Resolution {
    let Some(SchemaError::FieldNotFound {
        field,
        valid_fields,
    }) = find::<SchemaError>(e)
    else {
        return Resolution::None;
    };
    let wanted = field.name.to_lowercase();
    let candidates: BTreeSet<&str> = valid_fields
        .iter()
        .filter(|c| match (&field.relation, &c.relation) {
            (Some(want), Some(have)) => want.table() == have.table(),
            _ => true,
        })
        .map(|c| c.name.as_str())
        .filter(|n| n.to_lowercase() == wanted && *n != field.name)
        .collect();
    match candidates.len() {
        0 => Resolution::None,
        1 => Resolution::Rename {
            from: field.name.clone(),
            to: candidates.into_iter().next().expect("one").to_string(),
        },
        _ => Resolution::Ambiguous(QueryError::AmbiguousColumn {
            name: field.name.clone(),
            candidates: candidates.into_iter().map(str::to_string).collect(),
        }),
    }
}

/// The statement's unquoted names (as normalised: lower case) in column
/// positions.
fn unquoted_names(stmt: &DfStatement) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut note = |id: &Ident| {
        if id.quote_style.is_none() {
            names.insert(id.value.to_lowercase());
        }
    };
    let _ = with_statement(stmt, |s| {
        visit_expressions(s, |e: &Expr| {
            match e {
                Expr::Identifier(id) => note(id),
                Expr::CompoundIdentifier(parts) => {
                    if let Some(last) = parts.last() {
                        note(last)
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        })
    });
    names
}

fn with_statement<R>(
    stmt: &DfStatement,
    f: impl FnOnce(&datafusion::sql::sqlparser::ast::Statement) -> ControlFlow<R>,
) -> ControlFlow<R> {
    match stmt {
        DfStatement::Statement(s) => f(s),
        DfStatement::Explain(e) => with_statement(&e.statement, f),
        _ => ControlFlow::Continue(()),
    }
}

/// Rewrites every unquoted identifier `from` (compared as normalised) into
/// the quoted `to`; returns whether anything changed.
pub(crate) fn rename(stmt: &mut DfStatement, from: &str, to: &str) -> bool {
    let mut changed = false;
    let mut fix = |id: &mut Ident| {
        if id.quote_style.is_none() && id.value.to_lowercase() == from {
            *id = Ident::with_quote('"', to);
            changed = true;
        }
    };
    let target: &mut datafusion::sql::sqlparser::ast::Statement = match stmt {
        DfStatement::Statement(s) => s,
        DfStatement::Explain(e) => match e.statement.as_mut() {
            DfStatement::Statement(s) => s,
            _ => return false,
        },
        _ => return false,
    };
    let _ = visit_expressions_mut(target, |e: &mut Expr| {
        match e {
            Expr::Identifier(id) => fix(id),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last_mut() {
                    fix(last)
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// After a successful plan: an unquoted name that matches several columns
/// of the datasets the query read, differing only in case, is ambiguous.
pub(crate) fn check_ambiguous(stmt: &DfStatement, tables: &[SchemaRef]) -> Result<(), QueryError> {
    let mut by_lower: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for schema in tables {
        for f in schema.fields() {
            by_lower
                .entry(f.name().to_lowercase())
                .or_default()
                .insert(f.name().clone());
        }
    }
    if by_lower.values().all(|v| v.len() < 2) {
        return Ok(());
    }
    for name in unquoted_names(stmt) {
        if let Some(c) = by_lower.get(&name)
            && c.len() > 1
        {
            return Err(QueryError::AmbiguousColumn {
                name,
                candidates: c.iter().cloned().collect(),
            });
        }
    }
    Ok(())
}
