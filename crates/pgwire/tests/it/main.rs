//! The PostgreSQL dialect on a real engine: catalog queries clients send,
//! and queryd's limits still in force through it.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use lakehouse_catalogd::{Catalog, Registry};
use lakehouse_ingestd::{IngestConfig, IngestOptions, Ingestor};
use lakehouse_pgwire::dialect::PgDialect;
use lakehouse_queryd::{EngineConfig, QueryEngine, QueryError};
use object_store::ObjectStore;
use object_store::memory::InMemory;

async fn engines() -> (Arc<QueryEngine>, QueryEngine, tempfile::TempDir) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog: Arc<dyn Catalog> = Arc::new(Registry::open(store.clone()).await.unwrap());
    let spool = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::new(
        store.clone(),
        catalog.clone(),
        IngestConfig {
            spool_dir: spool.path().to_path_buf(),
            writer: Default::default(),
        },
    );
    let csv = "id,name\n1,a\n2,b\n";
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(csv))]);
    ingestor
        .ingest(
            "sales",
            IngestOptions::new(lakehouse_ingestd::Format::Csv),
            body,
            None,
        )
        .await
        .unwrap();
    let base = Arc::new(QueryEngine::new(catalog, store, EngineConfig::default()).unwrap());
    let pg = base
        .with_dialect(Arc::new(PgDialect::new(base.clone()).unwrap()))
        .unwrap();
    (base, pg, spool)
}

async fn texts(engine: &QueryEngine, sql: &str) -> Result<Vec<String>, QueryError> {
    let b = engine.run_batches(sql, None).await?;
    let mut out = Vec::new();
    let mut s = b.stream;
    while let Some(batch) = s.next().await {
        let batch = batch?;
        let col = datafusion::arrow::compute::cast(
            batch.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )
        .unwrap();
        let col = col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        out.extend(col.iter().map(|v| v.unwrap_or("NULL").to_string()));
    }
    Ok(out)
}

#[tokio::test]
async fn catalog_queries_see_the_datasets() {
    let (_base, pg, _spool) = engines().await;
    let got = texts(&pg, "SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r' AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'public')").await.unwrap();
    assert_eq!(got, ["sales"]);
    let got = texts(
        &pg,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .await
    .unwrap();
    assert_eq!(got, ["sales"]);
    let got = texts(&pg, "SELECT column_name FROM information_schema.columns WHERE table_name = 'sales' ORDER BY ordinal_position").await.unwrap();
    assert_eq!(got, ["id", "name"]);
    assert_eq!(
        texts(&pg, "SELECT current_database()").await.unwrap(),
        ["lakehouse"]
    );
    // psql's \dt, as psql 15 sends it.
    let dt = "SELECT n.nspname as \"Schema\", c.relname as \"Name\", \
        CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\", \
        pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\" \
        FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
        WHERE c.relkind IN ('r','p','v','m','S','f','') AND n.nspname <> 'pg_catalog' \
        AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' \
        AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2";
    assert_eq!(texts(&pg, dt).await.unwrap(), ["public"]);
    // Plain queries behave as over HTTP.
    assert_eq!(
        texts(&pg, "SELECT name FROM sales WHERE id = 2")
            .await
            .unwrap(),
        ["b"]
    );
}

#[tokio::test]
async fn limits_and_the_sandbox_hold_in_the_dialect() {
    let (base, pg, _spool) = engines().await;
    for (sql, code) in [
        ("SELECT lpad('x', 2000000000)", "value_too_large"),
        ("SELECT array_repeat(1, 1000000000)", "value_too_large"),
        ("DROP TABLE sales", "forbidden_statement"),
        (
            "SET datafusion.execution.batch_size = 1",
            "forbidden_statement",
        ),
        ("COPY sales TO '/tmp/x.csv'", "forbidden_statement"),
        ("SELECT * FROM '/etc/passwd'", "unknown_table"),
    ] {
        let e = pg
            .run_batches(sql, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} ran"));
        assert_eq!(e.code(), code, "{sql}: {e}");
    }
    let deep = format!("SELECT {}", vec!["1"; 20_000].join("+"));
    assert_eq!(
        pg.run_batches(&deep, None).await.err().unwrap().code(),
        "query_too_complex"
    );
    // The dialect's engine shares the running-query registry.
    assert_eq!(base.query_stats().started, pg.query_stats().started);
}
