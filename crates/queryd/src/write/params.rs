//! Bound `$n` values in a write statement (PostgreSQL's extended protocol,
//! Flight SQL's prepared statements).
//!
//! A query binds its values into its logical plan. A write statement runs
//! its parts through delta-rs and the append path, which plan the pieces on
//! their own, so its values go into the statement itself as typed literals
//! (`CAST('2024-01-02' AS DATE)`), built as syntax-tree nodes — never by
//! pasting text into SQL, so a value cannot change the statement.

use std::ops::ControlFlow;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{CastKind, Expr, Value, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::QueryError;

/// Replaces every `$n` in `stmt` with its value from `params`; a
/// placeholder without a value is 400 `invalid_request`.
pub(crate) fn inline(
    stmt: DfStatement,
    params: Option<&ParamValues>,
) -> Result<DfStatement, QueryError> {
    let DfStatement::Statement(mut s) = stmt else {
        return Ok(stmt);
    };
    let mut failed = None;
    let _ = visit_expressions_mut(s.as_mut(), |e| {
        let Expr::Value(v) = e else {
            return ControlFlow::Continue(());
        };
        let Value::Placeholder(name) = &v.value else {
            return ControlFlow::Continue(());
        };
        match literal(name, params) {
            Ok(x) => {
                *e = x;
                ControlFlow::Continue(())
            }
            Err(err) => {
                failed = Some(err);
                ControlFlow::Break(())
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(DfStatement::Statement(s)),
    }
}

/// The literal for placeholder `name`.
fn literal(name: &str, params: Option<&ParamValues>) -> Result<Expr, QueryError> {
    let Some(params) = params else {
        return Err(QueryError::InvalidRequest(format!(
            "the statement has the parameter {name} but no values were bound"
        )));
    };
    let value = params
        .get_placeholders_with_values(name)
        .map_err(|_| QueryError::InvalidRequest(format!("no value was bound for {name}")))?
        .value;
    scalar_expr(&value, name)
}

/// A value as an expression of its own type.
fn scalar_expr(value: &ScalarValue, name: &str) -> Result<Expr, QueryError> {
    if value.is_null() {
        return Ok(Expr::Value(Value::Null.into()));
    }
    let text = |v: &ScalarValue| {
        v.to_array()
            .and_then(|a| Ok(array_value_to_string(&a, 0)?))
            .map_err(|e| QueryError::InvalidRequest(format!("parameter {name}: {e}")))
    };
    let sql_type = match value.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            return Ok(Expr::Value(Value::SingleQuotedString(text(value)?).into()));
        }
        DataType::Boolean => "BOOLEAN".to_string(),
        DataType::Int8 => "TINYINT".to_string(),
        DataType::Int16 => "SMALLINT".to_string(),
        DataType::Int32 => "INT".to_string(),
        DataType::Int64 => "BIGINT".to_string(),
        DataType::UInt8 => "TINYINT UNSIGNED".to_string(),
        DataType::UInt16 => "SMALLINT UNSIGNED".to_string(),
        DataType::UInt32 => "INT UNSIGNED".to_string(),
        DataType::UInt64 => "BIGINT UNSIGNED".to_string(),
        DataType::Float32 => "REAL".to_string(),
        DataType::Float64 => "DOUBLE".to_string(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Date32 | DataType::Date64 => "DATE".to_string(),
        DataType::Time64(_) | DataType::Time32(_) => "TIME".to_string(),
        DataType::Timestamp(_, None) => "TIMESTAMP".to_string(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".to_string(),
        other => {
            return Err(QueryError::NotSupported(format!(
                "parameter {name} has type {other}, which a write statement cannot take: \
                 bind a number, text, boolean, date or timestamp"
            )));
        }
    };
    // The canonical text of a timestamp with a zone keeps its offset.
    let value = match value {
        ScalarValue::TimestampSecond(v, Some(_))
        | ScalarValue::TimestampMillisecond(v, Some(_))
        | ScalarValue::TimestampMicrosecond(v, Some(_))
        | ScalarValue::TimestampNanosecond(v, Some(_)) => {
            let unit = match value.data_type() {
                DataType::Timestamp(u, _) => u,
                _ => TimeUnit::Nanosecond,
            };
            utc(*v, unit)
        }
        v => v.clone(),
    };
    let data_type = Parser::new(&GenericDialect {})
        .try_with_sql(&sql_type)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| QueryError::Internal(format!("the type {sql_type}: {e}")))?;
    Ok(Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(Expr::Value(Value::SingleQuotedString(text(&value)?).into())),
        data_type,
        array: false,
        format: None,
    })
}

/// A zoned timestamp as the same instant in UTC (printed with `Z`).
fn utc(v: Option<i64>, unit: TimeUnit) -> ScalarValue {
    let tz = Some("+00:00".into());
    match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(v, tz),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v, tz),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v, tz),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v, tz),
    }
}

/// How many distinct `$n` a statement takes (their types are unknown
/// until bound: the values' own types are kept).
pub(crate) fn count(stmt: &DfStatement) -> usize {
    let DfStatement::Statement(s) = stmt else {
        return 0;
    };
    let mut max = 0;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(s.as_ref(), |e| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(name) = &v.value
            && let Some(n) = name.strip_prefix('$').and_then(|d| d.parse::<usize>().ok())
        {
            max = max.max(n);
        }
        ControlFlow::<()>::Continue(())
    });
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(values: Vec<ScalarValue>) -> ParamValues {
        ParamValues::from(values)
    }

    fn inlined(sql: &str, values: Vec<ScalarValue>) -> String {
        let stmt = crate::sandbox::parse(sql, 100).unwrap();
        inline(stmt, Some(&list(values))).unwrap().to_string()
    }

    #[test]
    fn values_become_typed_literals() {
        let sql = inlined(
            "UPDATE t SET name = $2, day = $3 WHERE id = $1 AND ok = $4 AND x = $5",
            vec![
                ScalarValue::Int64(Some(7)),
                ScalarValue::Utf8(Some("it's".into())),
                ScalarValue::Date32(Some(19723)),
                ScalarValue::Boolean(None),
                ScalarValue::Decimal128(Some(-250), 5, 2),
            ],
        );
        assert_eq!(
            sql,
            "UPDATE t SET name = 'it''s', day = CAST('2024-01-01' AS DATE) \
             WHERE id = CAST('7' AS BIGINT) AND ok = NULL AND x = CAST('-2.50' AS DECIMAL(5,2))"
        );
    }

    #[test]
    fn a_value_cannot_change_the_statement() {
        let sql = inlined(
            "DELETE FROM t WHERE name = $1",
            vec![ScalarValue::Utf8(Some("x' OR '1'='1".into()))],
        );
        let again = crate::sandbox::parse(&sql, 100).unwrap().to_string();
        assert_eq!(again, "DELETE FROM t WHERE name = 'x'' OR ''1''=''1'");
    }

    #[test]
    fn missing_values_and_counts() {
        let stmt = crate::sandbox::parse("INSERT INTO t VALUES ($1, $3)", 100).unwrap();
        assert_eq!(count(&stmt), 3);
        assert!(matches!(
            inline(stmt.clone(), None),
            Err(QueryError::InvalidRequest(_))
        ));
        let one = list(vec![ScalarValue::Int64(Some(1))]);
        assert!(matches!(
            inline(stmt, Some(&one)),
            Err(QueryError::InvalidRequest(_))
        ));
    }

    #[test]
    fn zoned_timestamps_keep_their_instant() {
        let sql = inlined(
            "INSERT INTO t VALUES ($1)",
            vec![ScalarValue::TimestampMicrosecond(
                Some(1_000_000),
                Some("+02:00".into()),
            )],
        );
        assert_eq!(
            sql,
            "INSERT INTO t VALUES (CAST('1970-01-01T00:00:01Z' AS TIMESTAMPTZ))"
        );
    }
}
