//! The PostgreSQL dialect of queryd's engine: PostgreSQL's grammar with the
//! catalog-query rewrites clients need, `pg_catalog`, `information_schema`
//! and the PostgreSQL functions psql, JDBC and DBeaver call.
//!
//! The emulation is `datafusion-pg-catalog`'s (vendored, see
//! `vendor/README.md`): its rewriter turns what DataFusion cannot plan
//! (`OPERATOR(pg_catalog.~)`, `::regclass`, psql's catalog queries it knows)
//! into what it can, its `pg_catalog` schema answers `pg_class`,
//! `pg_namespace`, `pg_attribute`, `pg_type`, … from the lakehouse catalog
//! (through [`LakehouseInfo`]), and its functions (`format_type`,
//! `pg_table_is_visible`, `current_schema`, …) are registered next to
//! queryd's own. Everything it adds is read-only; queryd's checked
//! allocating functions stay as they are (the `generate_series` argument
//! widening wraps the checked function).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::SchemaProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    self as pgc, PgCatalogSchemaProvider, PgCatalogStaticTables, array_bounds_udf, format_type,
    has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use lakehouse_queryd::catalog::{CATALOG_NAME, SCHEMA_NAME};
use lakehouse_queryd::{Dialect, QueryEngine, QueryError};

/// The dialect; build once per server.
pub struct PgDialect {
    parser: PostgresCompatibilityParser,
    pg_catalog: Arc<dyn SchemaProvider>,
    static_tables: Arc<PgCatalogStaticTables>,
}

impl std::fmt::Debug for PgDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDialect").finish_non_exhaustive()
    }
}

impl PgDialect {
    /// A dialect whose `pg_catalog` describes `engine`'s datasets.
    pub fn new(engine: Arc<QueryEngine>) -> Result<Self, QueryError> {
        let internal = |e: Box<DataFusionError>| QueryError::Internal(e.to_string());
        let static_tables =
            Arc::new(PgCatalogStaticTables::try_new().map_err(|e| internal(Box::new(e)))?);
        let pg_catalog = PgCatalogSchemaProvider::try_new(
            LakehouseInfo { engine },
            static_tables.clone(),
            EmptyContextProvider,
        )
        .map_err(|e| internal(Box::new(e)))?;
        Ok(Self {
            parser: PostgresCompatibilityParser::new(),
            pg_catalog: Arc::new(pg_catalog),
            static_tables,
        })
    }
}

impl Dialect for PgDialect {
    fn parse(&self, sql: &str) -> Result<Vec<SqlStatement>, QueryError> {
        let mut stmts = self
            .parser
            .parse(sql)
            .map_err(|e| lakehouse_queryd::error::from_parser_error(&e))?;
        stmts.iter_mut().for_each(crate::compat::rewrite);
        Ok(stmts)
    }

    fn schemas(&self) -> Vec<(String, Arc<dyn SchemaProvider>)> {
        vec![("pg_catalog".to_string(), self.pg_catalog.clone())]
    }

    fn configure(&self, state: SessionState) -> Result<SessionState, QueryError> {
        let mut state = state;
        state.config_mut().options_mut().catalog.information_schema = true;
        let ctx = SessionContext::new_with_state(state);
        for udf in [
            pgc::create_current_database_udf(CATALOG_NAME),
            pgc::create_current_schema_udf(),
            pgc::create_current_schemas_udf(),
            pgc::create_pg_get_userbyid_udf(),
            has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
            has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
            pgc::create_pg_table_is_visible(),
            format_type::create_format_type_udf(),
            pgc::create_session_user_udf(),
            pg_get_expr_udf::create_pg_get_expr_udf(),
            pgc::create_pg_get_partkeydef_udf(),
            pgc::create_pg_relation_is_publishable_udf(),
            pgc::create_pg_get_statisticsobjdef_columns_udf(),
            pgc::create_pg_encoding_to_char_udf(),
            pgc::create_pg_backend_pid_udf(),
            pgc::create_pg_relation_size_udf(),
            pgc::create_pg_total_relation_size_udf(),
            pgc::create_pg_stat_get_numscans(),
            pgc::create_pg_get_constraintdef(),
            pgc::create_pg_get_partition_ancestors_udf(),
            quote_ident_udf::create_quote_ident_udf(),
            quote_ident_udf::create_parse_ident_udf(),
            array_bounds_udf::create_array_upper_udf(),
            array_bounds_udf::create_array_lower_udf(),
            version_udf(),
            crate::compat::expandarray_udf(),
        ] {
            ctx.register_udf(udf);
        }
        ctx.register_udtf(
            "pg_get_keywords",
            self.static_tables.pg_get_keywords.clone(),
        );
        datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(&ctx);
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_type_planner(Arc::new(
                datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner,
            ))
            .build();
        Ok(state)
    }
}

/// `version()` as PostgreSQL words it, `PostgreSQL 16.6 (lakehouse …) on …`:
/// clients parse the version after "PostgreSQL " (SQLAlchemy's dialect
/// refuses to connect without it). Replaces DataFusion's own `version()`.
fn version_udf() -> ScalarUDF {
    let text = format!(
        "PostgreSQL {} (lakehouse {}, Apache DataFusion {}) on {}-{}",
        crate::settings::PG_VERSION,
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
        std::env::consts::OS,
    );
    let value = ScalarValue::Utf8(Some(text));
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// `pg_catalog`'s view of the lakehouse: catalog `lakehouse`, schema
/// `public`, one base table per dataset. Listed fresh on every scan of a
/// catalog table, so a dataset ingested a moment ago shows in `\dt`.
#[derive(Clone)]
pub struct LakehouseInfo {
    engine: Arc<QueryEngine>,
}

impl std::fmt::Debug for LakehouseInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakehouseInfo").finish_non_exhaustive()
    }
}

fn df_error(e: QueryError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl CatalogInfo for LakehouseInfo {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![CATALOG_NAME.to_string()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok((catalog == CATALOG_NAME).then(|| {
            vec![
                SCHEMA_NAME.to_string(),
                "pg_catalog".to_string(),
                "information_schema".to_string(),
            ]
        }))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        if catalog != CATALOG_NAME {
            return Ok(None);
        }
        match schema {
            SCHEMA_NAME => Ok(Some(self.engine.dataset_names().await.map_err(df_error)?)),
            "pg_catalog" | "information_schema" => Ok(Some(vec![])),
            _ => Ok(None),
        }
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        if catalog != CATALOG_NAME || schema != SCHEMA_NAME {
            return Ok(None);
        }
        match self.engine.table_schema(table).await {
            Ok(s) => Ok(s),
            Err(e) => {
                // A damaged dataset must not break `\d` for the others.
                tracing::warn!(dataset = table, error = %e, "no schema for pg_catalog");
                Ok(None)
            }
        }
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        _table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        Ok((catalog == CATALOG_NAME && schema == SCHEMA_NAME).then_some(TableType::Base))
    }
}
