//! Parameter types the client declares (`Parse` type OIDs) made visible to
//! the planner: `$n` becomes `CAST($n AS type)` for each declared type
//! DataFusion has a name for. DataFusion infers a parameter's type only
//! from its context (`col = $1`); `SELECT $1` or `$1 + 1` need the cast.
//! The SQL is rewritten on the token stream, by byte offsets, so the rest
//! of the text is untouched.

use datafusion::sql::sqlparser::tokenizer::Token;
use pgwire::api::Type;

use crate::session::{offset, tokens};

/// The SQL name DataFusion plans for a PostgreSQL type, if any.
fn sql_type(t: &Type) -> Option<&'static str> {
    Some(match *t {
        Type::BOOL => "BOOLEAN",
        Type::INT2 => "SMALLINT",
        Type::INT4 => "INT",
        Type::INT8 => "BIGINT",
        Type::FLOAT4 => "REAL",
        Type::FLOAT8 => "DOUBLE",
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => "VARCHAR",
        Type::DATE => "DATE",
        Type::TIMESTAMP => "TIMESTAMP",
        Type::TIMESTAMPTZ => "TIMESTAMPTZ",
        Type::BYTEA => "BYTEA",
        _ => return None,
    })
}

/// Wraps each `$n` whose declared type is known in a cast to it.
pub fn cast_placeholders(sql: &str, types: &[Option<Type>]) -> String {
    let Some(toks) = tokens(sql) else {
        return sql.to_string();
    };
    let mut out = String::with_capacity(sql.len() + 32);
    let mut last = 0;
    for t in &toks {
        let Token::Placeholder(p) = &t.token else {
            continue;
        };
        let Some(ty) = p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .and_then(|n| types.get(n - 1))
            .and_then(|t| t.as_ref())
            .and_then(sql_type)
        else {
            continue;
        };
        let start = offset(sql, t);
        if start < last || !sql[start..].starts_with(p.as_str()) {
            continue;
        }
        out.push_str(&sql[last..start]);
        out.push_str(&format!("CAST({p} AS {ty})"));
        last = start + p.len();
    }
    out.push_str(&sql[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_become_casts() {
        assert_eq!(
            cast_placeholders(
                "SELECT $1, '$2', $2 FROM t",
                &[Some(Type::INT8), Some(Type::TEXT)]
            ),
            "SELECT CAST($1 AS BIGINT), '$2', CAST($2 AS VARCHAR) FROM t"
        );
        assert_eq!(cast_placeholders("SELECT $1", &[None]), "SELECT $1");
        assert_eq!(
            cast_placeholders("SELECT $1", &[Some(Type::JSON)]),
            "SELECT $1"
        );
    }
}
