//! Guards against statements too deep to plan, and the stack the query
//! threads get.
//!
//! sqlparser parses a chain like `1+1+…+1`, `a AND b AND …`, `'a'||'a'||…`
//! or `SELECT 1 UNION ALL SELECT 1 …` in a loop, so a few kilobytes of SQL
//! become a tree thousands of levels deep, and everything after the parser
//! — DataFusion's planner, analyzer, optimizer, physical planner, and the
//! derived `Clone`/`Drop`/`Display` of the tree itself — recurses once per
//! level. Three guards keep that from overflowing a stack:
//!
//! 1. [`check_tokens`], before parsing, iteratively: an upper bound of the
//!    tree's depth from the token stream (operators chained within one
//!    parenthesis level, set operations, plus the nesting of parentheses).
//!    A statement over `8 × max_expr_depth` is refused before a tree is built,
//!    so no tree the server ever holds is deeper than that.
//! 2. [`check_statement`], on the parsed tree, before planning: the exact
//!    nesting of expressions, queries, set operations and table factors,
//!    over `[queryd].max_expr_depth` → 400 `query_too_complex`. Its visitor
//!    stops at the limit (and a set-operation chain is measured with an
//!    explicit stack), so the check itself never recurses deeper than the
//!    limit; the bound of guard 1 covers the tree's own `Drop`.
//! 3. [`QUERY_THREAD_STACK`]: every thread that parses, plans, optimises or
//!    executes a query is an engine thread with this stack (virtual memory:
//!    only the pages a query touches are committed), sized so a statement
//!    just under the limit plans and runs (tested), with room to spare.
//!
//! sqlparser's own recursion limit (parentheses, subqueries, function calls
//! nested in each other) is set to [`PARSER_RECURSION_LIMIT`].

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::QueryError;

/// Stack of every engine thread (parse, plan, optimise, execute).
pub const QUERY_THREAD_STACK: usize = 256 << 20;

/// sqlparser's recursion limit: parentheses, subqueries, CASE and function
/// calls nested in each other (its default is 50).
pub const PARSER_RECURSION_LIMIT: usize = 64;

/// The default of `[queryd].max_expr_depth`.
pub const DEFAULT_MAX_EXPR_DEPTH: usize = 1000;

/// How much deeper than `max_expr_depth` the token estimate may go (it
/// counts every operator token, e.g. `NOT BETWEEN … AND` as three).
const TOKEN_FACTOR: usize = 8;

/// A statement over a complexity limit (typed, so it can travel inside a
/// `DataFusionError` and be found again by [`crate::error::find`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} (limit {limit})")]
pub struct TooComplex {
    pub what: String,
    pub limit: usize,
    pub setting: &'static str,
}

impl TooComplex {
    /// sqlparser's recursion limit was hit.
    pub fn parser_nesting() -> Self {
        TooComplex {
            what: "parentheses, subqueries, CASE or function calls are nested too deeply"
                .to_string(),
            limit: PARSER_RECURSION_LIMIT,
            setting: "the SQL parser's nesting limit",
        }
    }
}

impl From<TooComplex> for QueryError {
    fn from(t: TooComplex) -> Self {
        QueryError::TooComplex {
            what: t.what,
            limit: t.limit,
            setting: t.setting,
        }
    }
}

/// Guard 1: the token-level depth bound, before anything is parsed.
/// Tokenizer errors are left for the parser to report with their position.
pub fn check_tokens(sql: &str, max_depth: usize) -> Result<(), QueryError> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let limit = max_depth.saturating_mul(TOKEN_FACTOR);
    // Per open parenthesis: operators since the last comma (siblings reset
    // it) and set operations (a comma does not separate UNION branches).
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    let mut outer = 0usize; // sum of the enclosing levels' counts
    for t in &tokens {
        match t {
            Token::LParen => {
                let (ops, sets) = *levels.last().expect("a level");
                outer += ops + sets + 1;
                levels.push((0, 0));
            }
            Token::RParen => {
                if levels.len() > 1 {
                    levels.pop();
                    let (ops, sets) = *levels.last().expect("a level");
                    outer = outer.saturating_sub(ops + sets + 1);
                }
            }
            Token::Comma => levels.last_mut().expect("a level").0 = 0,
            t if is_set_operation(t) => levels.last_mut().expect("a level").1 += 1,
            t if is_operator(t) => levels.last_mut().expect("a level").0 += 1,
            _ => continue,
        }
        let (ops, sets) = *levels.last().expect("a level");
        if outer + ops + sets > limit {
            return Err(TooComplex {
                what: format!(
                    "it chains or nests more than {limit} operators, set operations and parentheses"
                ),
                limit,
                setting: "8 × [queryd].max_expr_depth",
            }
            .into());
        }
    }
    Ok(())
}

fn is_set_operation(t: &Token) -> bool {
    matches!(t, Token::Word(w) if matches!(
        w.keyword,
        Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS
    ) && w.quote_style.is_none())
}

/// Tokens that can add a level to an expression tree.
fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::XOR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::IN
                        | Keyword::BETWEEN
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::RLIKE
                        | Keyword::REGEXP
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::DIV
                        | Keyword::OVERLAPS
                        | Keyword::EXPLAIN
                        | Keyword::CASE
                        | Keyword::JOIN
                )
        }
        // Values, names and punctuation that only separate siblings.
        Token::EOF
        | Token::Number(_, _)
        | Token::Char(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::Whitespace(_)
        | Token::Comma
        | Token::LParen
        | Token::RParen
        | Token::Period
        | Token::SemiColon
        | Token::RBracket
        | Token::Placeholder(_) => false,
        _ => true,
    }
}

/// Guard 2: the parsed statement's nesting, before planning.
pub fn check_statement(stmt: &DfStatement, max_depth: usize) -> Result<(), QueryError> {
    let mut v = DepthVisitor {
        depth: 0,
        max: max_depth,
    };
    let flow = match stmt {
        DfStatement::Statement(s) => s.visit(&mut v),
        DfStatement::Explain(_) => return check_explain(stmt, max_depth),
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(what) => Err(TooComplex {
            what,
            limit: max_depth,
            setting: "[queryd].max_expr_depth",
        }
        .into()),
    }
}

/// `EXPLAIN EXPLAIN …`: the nesting counts, then the statement inside.
fn check_explain(stmt: &DfStatement, max_depth: usize) -> Result<(), QueryError> {
    let mut inner = stmt;
    let mut depth = 0;
    while let DfStatement::Explain(e) = inner {
        depth += 1;
        inner = &e.statement;
    }
    if depth > 1 {
        return Err(TooComplex {
            what: "EXPLAIN is nested".to_string(),
            limit: 1,
            setting: "one EXPLAIN per statement",
        }
        .into());
    }
    check_statement(inner, max_depth)
}

/// Counts the open expressions, queries and table factors; breaks as soon
/// as the count passes the limit, so it recurses no deeper than that.
struct DepthVisitor {
    depth: usize,
    max: usize,
}

impl DepthVisitor {
    fn enter(&mut self, what: &str) -> ControlFlow<String> {
        self.depth += 1;
        if self.depth > self.max {
            ControlFlow::Break(format!(
                "its {what}s nest more than {} levels deep",
                self.max
            ))
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<String> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for DepthVisitor {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        self.enter("subquerie")?;
        // A UNION chain is a tree of `SetExpr`s without a visitor hook in
        // between: measure it here, with an explicit stack.
        let deepest = set_expr_depth(&query.body, self.max - self.depth + 1);
        if self.depth + deepest > self.max {
            return ControlFlow::Break(format!(
                "its set operations (UNION, EXCEPT, INTERSECT) nest more than {} levels deep",
                self.max
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<String> {
        self.leave()
    }

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<String> {
        self.enter("expression")
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<String> {
        self.leave()
    }

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<String> {
        self.enter("join and table expression")
    }

    fn post_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<String> {
        self.leave()
    }
}

/// Depth of the set-operation tree under `body` (not into subqueries, which
/// the visitor counts), iteratively; stops once `stop` is passed.
fn set_expr_depth(body: &SetExpr, stop: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&SetExpr, usize)> = vec![(body, 1)];
    while let Some((node, d)) = stack.pop() {
        deepest = deepest.max(d);
        if deepest > stop {
            break;
        }
        if let SetExpr::SetOperation { left, right, .. } = node {
            stack.push((left, d + 1));
            stack.push((right, d + 1));
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    fn parse(sql: &str) -> DfStatement {
        crate::sandbox::check(sql, DEFAULT_MAX_EXPR_DEPTH).unwrap()
    }

    /// Deep trees need the engine threads' stack.
    fn on_query_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(QUERY_THREAD_STACK)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn token_bound_refuses_long_chains_before_parsing() {
        let deep = format!("SELECT {}", chain("1", "+", 20_000));
        assert!(matches!(
            check_tokens(&deep, 1000),
            Err(QueryError::TooComplex { .. })
        ));
        // Wide is fine: commas separate siblings.
        let wide = format!("SELECT {}", chain("1+1", ", ", 20_000));
        check_tokens(&wide, 1000).unwrap();
        let in_list = format!("SELECT 1 WHERE 1 IN ({})", chain("-1", ",", 50_000));
        check_tokens(&in_list, 1000).unwrap();
    }

    #[test]
    fn depth_limit_counts_expressions_and_set_operations() {
        on_query_stack(depth_limits);
    }

    fn depth_limits() {
        let ok = parse(&format!("SELECT {}", chain("1", "+", 900)));
        check_statement(&ok, 1000).unwrap();
        let deep =
            crate::sandbox::check(&format!("SELECT {}", chain("1", "+", 1100)), 5000).unwrap();
        assert!(matches!(
            check_statement(&deep, 1000),
            Err(QueryError::TooComplex { limit: 1000, .. })
        ));
        let unions = parse(&chain("SELECT 1", " UNION ALL ", 600));
        check_statement(&unions, 1000).unwrap();
        assert!(matches!(
            check_statement(&unions, 500),
            Err(QueryError::TooComplex { .. })
        ));
    }
}
