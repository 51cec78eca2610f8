//! PostgreSQL forms drivers send that DataFusion does not plan, rewritten on
//! the syntax tree after `datafusion-pg-catalog`'s own rewrites:
//!
//! - `(expr).field`, PostgreSQL's access to a field of a composite value:
//!   DataFusion plans the field only when it is written as a string, so the
//!   identifier becomes one (folded to lower case unless quoted).
//! - `information_schema._pg_expandarray(a)`, the set-returning function
//!   pgjdbc's `getPrimaryKeys` and `getIndexInfo` call on `pg_index.indkey`:
//!   one row `(x, n)` per element, `x` the element and `n` its 1-based
//!   position. It becomes `unnest(_pg_expandarray_items(a))`, the items a list
//!   of such structs built by [`expandarray_udf`].
//! - `to_regtype(name)` (psycopg's `TypeInfo.fetch`, which SQLAlchemy runs on
//!   connect): the type's oid, NULL when there is none, as
//!   `(SELECT min(oid) FROM pg_catalog.pg_type WHERE typname = name)`.
//! - `pg_catalog.generate_series(…)` in `FROM` (pgjdbc's `getImportedKeys`):
//!   the table function is registered unqualified.
//!
//! With these, pgjdbc's `DatabaseMetaData.getPrimaryKeys` and
//! `getImportedKeys` plan (Metabase's sync calls both) and answer what the
//! catalog holds: no keys.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, ListBuilder, StructBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::sql::sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    SelectItem, SetExpr, Statement, Value, visit_expressions_mut, visit_relations_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The scalar half of `_pg_expandarray` (see the module docs).
pub const EXPANDARRAY_ITEMS: &str = "_pg_expandarray_items";

/// Applies this module's rewrites to `stmt`.
pub fn rewrite(stmt: &mut Statement) {
    let _ = visit_relations_mut(stmt, |name| {
        if named(name, "generate_series") && name.0.len() == 2 {
            name.0.remove(0);
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = visit_expressions_mut(stmt, |e| {
        rewrite_expr(e);
        ControlFlow::<()>::Continue(())
    });
}

fn rewrite_expr(e: &mut Expr) {
    match e {
        Expr::CompoundFieldAccess { access_chain, .. } => {
            for access in access_chain {
                if let AccessExpr::Dot(Expr::Identifier(id)) = access {
                    let name = match id.quote_style {
                        Some(_) => id.value.clone(),
                        None => id.value.to_lowercase(),
                    };
                    *access = AccessExpr::Dot(Expr::value(Value::SingleQuotedString(name)));
                }
            }
        }
        Expr::Function(f) if named(&f.name, "to_regtype") && one_arg(f) => {
            if let Some(arg) = first_arg(f) {
                *e = to_regtype(arg);
            }
        }
        Expr::Function(f) if named(&f.name, "_pg_expandarray") && one_arg(f) => {
            let mut items = f.clone();
            items.name = ObjectName::from(vec![Ident::new(EXPANDARRAY_ITEMS)]);
            f.name = ObjectName::from(vec![Ident::new("unnest")]);
            if let FunctionArguments::List(list) = &mut f.args {
                list.args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(
                    items,
                )))];
            }
        }
        _ => {}
    }
}

/// `name`, bare or qualified by one of the schemas PostgreSQL keeps it in.
fn named(name: &ObjectName, function: &str) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_lowercase()))
        .collect();
    match parts.as_slice() {
        [f] => f == function,
        [s, f] => (s == "information_schema" || s == "pg_catalog") && f == function,
        _ => false,
    }
}

fn first_arg(f: &Function) -> Option<Expr> {
    match &f.args {
        FunctionArguments::List(l) => match l.args.first() {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `(SELECT min(oid) FROM pg_catalog.pg_type WHERE typname = arg)`.
fn to_regtype(arg: Expr) -> Expr {
    let template = "SELECT (SELECT min(oid) FROM pg_catalog.pg_type WHERE typname = NULL)";
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, template).expect("template parses");
    let mut arg = Some(arg);
    let _ = visit_expressions_mut(&mut stmts[0], |e| {
        if let Expr::Value(v) = e
            && v.value == Value::Null
            && let Some(a) = arg.take()
        {
            *e = a;
        }
        ControlFlow::<()>::Continue(())
    });
    let Statement::Query(q) = stmts.remove(0) else {
        unreachable!("the template is a query")
    };
    match *q.body {
        SetExpr::Select(mut s) => match s.projection.remove(0) {
            SelectItem::UnnamedExpr(e) => e,
            _ => unreachable!("the template selects one expression"),
        },
        _ => unreachable!("the template is a SELECT"),
    }
}

fn one_arg(f: &Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l) if l.args.len() == 1)
}

fn item_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("n", DataType::Int32, false),
    ])
}

/// The list's item: one `{x, n}` struct.
fn item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(item_fields()), true))
}

/// `_pg_expandarray_items(a)`: the list of `{x, n}` for an `int2vector` in
/// its text form (`"1 2"`, how `pg_index.indkey` is held). NULL gives an
/// empty list, so no row, as in PostgreSQL.
pub fn expandarray_udf() -> ScalarUDF {
    create_udf(
        EXPANDARRAY_ITEMS,
        vec![DataType::Utf8],
        DataType::List(item_field()),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            Ok(ColumnarValue::Array(expand(&args[0])?))
        }),
    )
}

fn expand(input: &ArrayRef) -> DfResult<ArrayRef> {
    let mut out = ListBuilder::new(StructBuilder::from_fields(item_fields(), input.len()))
        .with_field(item_field());
    let strings = input.as_string_opt::<i32>();
    for row in 0..input.len() {
        if input.is_null(row) {
            out.append(true);
            continue;
        }
        let Some(strings) = strings else {
            return exec_err!("_pg_expandarray takes an int2vector or text");
        };
        for (i, word) in strings.value(row).split_whitespace().enumerate() {
            let x: i32 = word.parse().map_err(|_| {
                DataFusionError::Execution(format!("_pg_expandarray: {word:?} is not an integer"))
            })?;
            let items = out.values();
            items
                .field_builder::<Int32Builder>(0)
                .expect("x")
                .append_value(x);
            items
                .field_builder::<Int32Builder>(1)
                .expect("n")
                .append_value(i as i32 + 1);
            items.append(true);
        }
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ListArray, StringArray, StructArray};

    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        rewrite(&mut stmts[0]);
        stmts[0].to_string()
    }

    #[test]
    fn composite_fields_become_strings() {
        assert_eq!(
            rewritten("SELECT (r.keys).x, (f(a)).\"N\" FROM r"),
            "SELECT (r.keys).'x', (f(a)).'N' FROM r"
        );
        assert_eq!(rewritten("SELECT r.keys FROM r"), "SELECT r.keys FROM r");
    }

    #[test]
    fn expandarray_becomes_unnest_of_items() {
        assert_eq!(
            rewritten("SELECT (information_schema._pg_expandarray(i.indkey)).n FROM i"),
            "SELECT (unnest(_pg_expandarray_items(i.indkey))).'n' FROM i"
        );
        // Another arity is not the function drivers call: left for the planner.
        assert_eq!(
            rewritten("SELECT _pg_expandarray(a, b) FROM i"),
            "SELECT _pg_expandarray(a, b) FROM i"
        );
    }

    #[test]
    fn to_regtype_becomes_a_lookup() {
        assert_eq!(
            rewritten("SELECT oid FROM pg_type t WHERE t.oid = to_regtype($1)"),
            "SELECT oid FROM pg_type t WHERE t.oid = (SELECT min(oid) FROM pg_catalog.pg_type WHERE typname = $1)"
        );
    }

    #[test]
    fn qualified_generate_series_is_unqualified() {
        assert_eq!(
            rewritten(
                "SELECT pos.n FROM pg_catalog.generate_series(1, 32) pos(n), pg_catalog.pg_class c"
            ),
            "SELECT pos.n FROM generate_series(1, 32) pos (n), pg_catalog.pg_class c"
        );
    }

    #[test]
    fn items_number_each_key() {
        let input: ArrayRef = Arc::new(StringArray::from(vec![Some("3 1"), None, Some("")]));
        let out = expand(&input).unwrap();
        let list = out.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(list.value_length(0), 2);
        assert_eq!(list.value_length(1), 0);
        assert_eq!(list.value_length(2), 0);
        let items = list.value(0);
        let items = items.as_any().downcast_ref::<StructArray>().unwrap();
        let x = items
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let n = items
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(
            (x.value(0), n.value(0), x.value(1), n.value(1)),
            (3, 1, 1, 2)
        );
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["1 x"]));
        assert!(expand(&bad).is_err());
    }
}
