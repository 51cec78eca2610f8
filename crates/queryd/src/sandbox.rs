//! The read-only sandbox: which statements queryd runs.
//!
//! Allowed: exactly one query (`SELECT`, `WITH`, `VALUES`, set operations)
//! or `EXPLAIN [ANALYZE]` of one, and `DESCRIBE <table>`. Everything else —
//! DDL, DML, `COPY … TO`, `CREATE EXTERNAL TABLE`, `SET`/`RESET` (which
//! could lift the limits), transactions, `PREPARE` — is refused before
//! planning. The plan is then checked again with DataFusion's `SQLOptions`
//! (no DDL, DML or statements), which also catches `SELECT … INTO`. URL
//! tables are never enabled, so `SELECT * FROM '/etc/passwd'` is an unknown
//! table, not a file read.

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::error::{self, QueryError};
use crate::limits;

/// Parses `sql` and returns its one statement if the sandbox allows it and
/// it is within the complexity limits (see [`crate::limits`]).
pub fn check(sql: &str, max_depth: usize) -> Result<DfStatement, QueryError> {
    let stmt = parse(sql, max_depth)?;
    admit(&stmt)?;
    Ok(stmt)
}

/// Parses `sql` into its one statement within the complexity limits,
/// whatever it is (the caller admits it: [`admit`] for queries, or as a
/// write statement for a caller who may write).
pub fn parse(sql: &str, max_depth: usize) -> Result<DfStatement, QueryError> {
    if sql.trim().is_empty() {
        return Err(QueryError::InvalidRequest("the SQL is empty".to_string()));
    }
    limits::check_tokens(sql, max_depth)?;
    // sqlparser locates every error but one: running out of input. That
    // one is placed at the end of the query.
    let end = || {
        let trimmed = sql.trim_end();
        let line = trimmed.lines().count().max(1) as u64;
        let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
        (line, column)
    };
    let syntax = |e: DataFusionError| match e.find_root() {
        DataFusionError::SQL(pe, _) => error::syntax_error(pe, Some(end())),
        other => error::classify(other, ""),
    };
    let mut parser = DFParserBuilder::new(sql)
        .with_recursion_limit(limits::PARSER_RECURSION_LIMIT)
        .build()
        .map_err(syntax)?;
    let mut statements = parser.parse_statements().map_err(syntax)?;
    if statements.len() != 1 {
        return Err(QueryError::InvalidRequest(format!(
            "expected exactly one SQL statement, found {}",
            statements.len()
        )));
    }
    let stmt = statements.pop_front().expect("one statement");
    limits::check_statement(&stmt, max_depth)?;
    Ok(stmt)
}

/// Whether the read-only sandbox runs `stmt` (a query, `EXPLAIN` of one,
/// `DESCRIBE`).
pub fn admit(stmt: &DfStatement) -> Result<(), QueryError> {
    allowed(stmt)
}

/// Like [`check`], with a protocol's own parser (e.g. PostgreSQL's, which
/// rewrites catalog queries): the same token guard first, then exactly one
/// statement, the same allow-list and the same depth check.
pub fn check_with(
    sql: &str,
    max_depth: usize,
    parse: &dyn Fn(&str) -> Result<Vec<SqlStatement>, QueryError>,
) -> Result<DfStatement, QueryError> {
    let stmt = parse_with(sql, max_depth, parse)?;
    allowed(&stmt)?;
    Ok(stmt)
}

/// [`parse`] with a protocol's own parser: one statement within the
/// limits, whatever it is (the caller admits it).
pub fn parse_with(
    sql: &str,
    max_depth: usize,
    parse: &dyn Fn(&str) -> Result<Vec<SqlStatement>, QueryError>,
) -> Result<DfStatement, QueryError> {
    if sql.trim().is_empty() {
        return Err(QueryError::InvalidRequest("the SQL is empty".to_string()));
    }
    limits::check_tokens(sql, max_depth)?;
    let mut statements = parse(sql)?;
    if statements.len() != 1 {
        return Err(QueryError::InvalidRequest(format!(
            "expected exactly one SQL statement, found {}",
            statements.len()
        )));
    }
    let stmt = DfStatement::Statement(Box::new(statements.remove(0)));
    limits::check_statement(&stmt, max_depth)?;
    Ok(stmt)
}

fn allowed(stmt: &DfStatement) -> Result<(), QueryError> {
    match stmt {
        DfStatement::Statement(s) => allowed_sql(s),
        DfStatement::Explain(e) => allowed(&e.statement),
        DfStatement::CreateExternalTable(_) => Err(forbidden("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(forbidden("COPY … TO")),
        DfStatement::Reset(_) => Err(forbidden("RESET")),
    }
}

fn allowed_sql(s: &SqlStatement) -> Result<(), QueryError> {
    match s {
        SqlStatement::Query(_) => Ok(()),
        SqlStatement::Explain { statement, .. } => allowed_sql(statement),
        SqlStatement::ExplainTable { .. } => Ok(()),
        other => Err(forbidden(&statement_kind(other))),
    }
}

fn forbidden(what: &str) -> QueryError {
    QueryError::Forbidden {
        what: what.to_string(),
    }
}

/// The statement's leading keywords, for the message (`INSERT`, `DROP TABLE`).
fn statement_kind(s: &SqlStatement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .take(3)
        .collect();
    // Keep keywords only (uppercase as sqlparser prints them), never user text.
    let kw: Vec<&str> = words
        .into_iter()
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    if kw.is_empty() {
        "this statement".to_string()
    } else {
        kw.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_explain_pass() {
        for sql in [
            "SELECT 1",
            "select * from t where a > 1",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "VALUES (1, 'a'), (2, 'b')",
            "SELECT 1 UNION ALL SELECT 2",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "EXPLAIN VERBOSE SELECT 1",
            "DESCRIBE t",
        ] {
            check(sql, 1000).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn everything_else_is_forbidden() {
        for (sql, what) in [
            ("CREATE TABLE t (a INT)", "CREATE TABLE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("DELETE FROM t", "DELETE"),
            ("UPDATE t SET a = 1", "UPDATE"),
            ("DROP TABLE t", "DROP"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("EXPLAIN INSERT INTO t VALUES (1)", "INSERT"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x'", "COPY"),
        ] {
            match check(sql, 1000) {
                Err(QueryError::Forbidden { what: w }) => {
                    assert!(w.starts_with(what), "{sql}: {w}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_errors_carry_the_position() {
        let syntax = |sql: &str| match check(sql, 1000) {
            Err(e @ QueryError::Syntax { .. }) => e,
            other => panic!("{sql}: {other:?}"),
        };
        let e = syntax("SELECT * FORM t");
        assert!(
            matches!(
                e,
                QueryError::Syntax {
                    line: Some(1),
                    column: Some(10),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = syntax("SELECT *\nFROM t WHERE");
        assert!(
            matches!(
                e,
                QueryError::Syntax {
                    line: Some(2),
                    column: Some(13),
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            syntax("selec 1").to_string(),
            "syntax error at line 1, column 1: expected a SQL statement, found \"selec\""
        );
        let m = syntax("SELECT 'abc").to_string();
        assert!(m.starts_with("syntax error at line 1, column 8: "), "{m}");
        assert!(
            !m.contains("ParserError") && !m.contains("SQL error"),
            "{m}"
        );
        assert!(matches!(
            check("  ", 1000),
            Err(QueryError::InvalidRequest(_))
        ));
        assert!(matches!(
            check("SELECT 1; SELECT 2", 1000),
            Err(QueryError::InvalidRequest(_))
        ));
    }

    #[test]
    fn parser_nesting_is_a_complexity_error() {
        let sql = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        assert!(matches!(
            check(&sql, 1000),
            Err(QueryError::TooComplex { .. })
        ));
    }
}
