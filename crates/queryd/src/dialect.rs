//! Protocol dialects: what a wire protocol changes about a query.
//!
//! A [`Dialect`] gives the engine a parser (the PostgreSQL protocol parses
//! with PostgreSQL's grammar and rewrites the catalog queries clients send)
//! and read-only schemas to add beside the datasets (`pg_catalog`). Nothing
//! else changes: a dialect's statements pass the same token guard, the same
//! one-statement allow-list and depth check ([`crate::sandbox::check_with`]),
//! the same plan check, and run with the same limits, memory pool and
//! cancellation as HTTP queries (see [`crate::QueryEngine::with_dialect`]).

use std::sync::Arc;

use datafusion::catalog::SchemaProvider;
use datafusion::execution::context::SessionState;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::error::QueryError;

/// A wire protocol's SQL dialect.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// Parses `sql` into statements. Runs on an engine thread, after the
    /// token-depth guard; parser errors should be mapped with
    /// [`crate::error::from_parser_error`].
    fn parse(&self, sql: &str) -> Result<Vec<SqlStatement>, QueryError>;

    /// Schemas added to the `lakehouse` catalog beside `public`.
    fn schemas(&self) -> Vec<(String, Arc<dyn SchemaProvider>)>;

    /// Adjusts the engine's base session once (functions, type planners,
    /// options); the engine's own checked functions must be kept.
    fn configure(&self, state: SessionState) -> Result<SessionState, QueryError>;
}
