//! Write statements on the engine: each statement's answer and the table
//! after it, NULL semantics, multi-column keys, every MERGE clause, the
//! read-only refusal, time travel to the version before, and a failed
//! statement that leaves nothing behind.

use futures::StreamExt;
use lakehouse_queryd::{Access, Format, Query, QueryEngine, QueryError};
use object_store::ObjectStore;

use super::{Env, query_rows, rows, table};

/// Runs a write statement; its one-row answer as text.
pub(crate) async fn write(engine: &QueryEngine, sql: &str) -> Result<Vec<String>, QueryError> {
    let result = engine
        .execute(sql, Format::Arrow, Access::ReadWrite)
        .await?;
    let mut bytes = result.bytes;
    let mut buf = Vec::new();
    while let Some(chunk) = bytes.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(buf), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    let mut r = rows(&batches);
    assert_eq!(r.len(), 1, "{sql}: one answer row");
    Ok(r.remove(0))
}

async fn ok(engine: &QueryEngine, sql: &str) -> Vec<String> {
    write(engine, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `[dataset, version, inserted, updated, deleted]` minus the version.
fn counts(answer: &[String]) -> (u64, u64, u64) {
    (
        answer[2].parse().unwrap(),
        answer[3].parse().unwrap(),
        answer[4].parse().unwrap(),
    )
}

async fn files_of(store: &dyn ObjectStore) -> Vec<String> {
    let mut out: Vec<String> = store
        .list(None)
        .map(|m| m.unwrap().location.to_string())
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter(|k| !k.contains("/_delta_log/") && !k.starts_with("_catalog/"))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn each_statement_and_the_table_after_it() {
    let env = Env::new().await;
    let engine = env.engine(Default::default());
    let all = "SELECT id, region, amount FROM sales ORDER BY id";

    let a = ok(
        &engine,
        "INSERT INTO sales VALUES (6, 'west', 3.5, '2024-02-01'), (7, NULL, NULL, NULL)",
    )
    .await;
    assert_eq!(a[0], "sales");
    assert_eq!(counts(&a), (2, 0, 0));
    assert_eq!(
        query_rows(&engine, "SELECT count(*), count(region) FROM sales").await,
        table(&[&["7", "6"]])
    );

    let a = ok(
        &engine,
        "INSERT INTO sales (id, region) SELECT id + 100, upper(region) FROM sales WHERE id <= 2",
    )
    .await;
    assert_eq!(counts(&a), (2, 0, 0));
    assert_eq!(
        query_rows(
            &engine,
            "SELECT id, region, amount FROM sales WHERE id > 100 ORDER BY id"
        )
        .await,
        table(&[&["101", "NORTH", "NULL"], &["102", "SOUTH", "NULL"]])
    );

    // NULL never satisfies a predicate: the row with no amount stays.
    let a = ok(&engine, "DELETE FROM sales WHERE amount < 8 OR id > 100").await;
    assert_eq!(counts(&a), (0, 0, 5));
    assert_eq!(
        query_rows(&engine, all).await,
        table(&[
            &["1", "north", "10.5"],
            &["2", "south", "20.0"],
            &["4", "east", "NULL"],
            &["7", "NULL", "NULL"],
        ])
    );

    let a = ok(&engine, "UPDATE sales SET amount = coalesce(amount, 0) + 1, region = 'x' WHERE region IS NULL OR id = 1").await;
    assert_eq!(counts(&a), (0, 2, 0));
    assert_eq!(
        query_rows(&engine, all).await,
        table(&[
            &["1", "x", "11.5"],
            &["2", "south", "20.0"],
            &["4", "east", "NULL"],
            &["7", "x", "1.0"],
        ])
    );

    // Nothing matches: no version.
    let before = ok(&engine, "DELETE FROM sales WHERE id = 999").await;
    assert_eq!(counts(&before), (0, 0, 0));
    let after = ok(&engine, "DELETE FROM sales WHERE id = 998").await;
    assert_eq!(before[1], after[1], "no version for no change");
}

#[tokio::test]
async fn create_table_as_makes_a_dataset() {
    let env = Env::new().await;
    let engine = env.engine(Default::default());
    let a = ok(&engine, "CREATE TABLE by_region AS SELECT region, sum(amount) AS total, count(*) AS n FROM sales GROUP BY region").await;
    assert_eq!(a[0], "by_region");
    assert_eq!(a[1], "0", "the new table's first version");
    assert_eq!(counts(&a), (3, 0, 0));
    let m = env.catalog.get("by_region").await.unwrap();
    assert_eq!(m.row_count, 3);
    assert_eq!(m.table_version, Some(0));
    assert_eq!(
        query_rows(
            &engine,
            "SELECT region, total, n FROM by_region ORDER BY region"
        )
        .await,
        table(&[
            &["east", "NULL", "1"],
            &["north", "15.75", "2"],
            &["south", "27.0", "2"]
        ])
    );
    // The same id rule as any dataset (ADR-020).
    assert_eq!(
        m.dataset_id,
        lakehouse_catalogd::dataset_id_for("by_region")
    );
    let e = write(&engine, "CREATE TABLE by_region AS SELECT 1 AS x")
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::TableExists { .. }), "{e}");
    let a = ok(
        &engine,
        "CREATE TABLE IF NOT EXISTS by_region AS SELECT 1 AS x",
    )
    .await;
    assert_eq!(counts(&a), (0, 0, 0));
    // An empty result still makes a dataset with the query's columns.
    ok(
        &engine,
        "CREATE TABLE nothing AS SELECT id, region FROM sales WHERE false",
    )
    .await;
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM nothing").await,
        table(&[&["0"]])
    );
    ok(&engine, "INSERT INTO nothing VALUES (1, 'a')").await;
    assert_eq!(
        query_rows(&engine, "SELECT id, region FROM nothing").await,
        table(&[&["1", "a"]])
    );
}

#[tokio::test]
async fn merge_with_every_clause_and_a_two_column_key() {
    let env = Env::new().await;
    let engine = env.engine(Default::default());
    env.ingest(
        "stock",
        lakehouse_ingestd::Format::Csv,
        "shop,item,qty\n1,apple,10\n1,pear,5\n2,apple,7\n2,plum,0\n3,fig,1\n",
    )
    .await;
    env.ingest(
        "moves",
        lakehouse_ingestd::Format::Csv,
        "shop,item,delta\n1,apple,5\n1,pear,-5\n2,apple,1\n4,kiwi,9\n4,lime,0\n",
    )
    .await;
    let a = ok(
        &engine,
        "MERGE INTO stock AS t USING moves AS s \
         ON t.shop = s.shop AND t.item = s.item \
         WHEN MATCHED AND t.qty + s.delta = 0 THEN DELETE \
         WHEN MATCHED THEN UPDATE SET qty = t.qty + s.delta \
         WHEN NOT MATCHED AND s.delta > 0 THEN INSERT (shop, item, qty) VALUES (s.shop, s.item, s.delta) \
         WHEN NOT MATCHED BY SOURCE AND t.qty = 0 THEN DELETE \
         WHEN NOT MATCHED BY SOURCE THEN UPDATE SET qty = t.qty * 10",
    )
    .await;
    assert_eq!(counts(&a), (1, 3, 2));
    assert_eq!(
        query_rows(
            &engine,
            "SELECT shop, item, qty FROM stock ORDER BY shop, item"
        )
        .await,
        table(&[
            &["1", "apple", "15"],
            &["2", "apple", "8"],
            &["3", "fig", "10"],
            &["4", "kiwi", "9"],
        ])
    );
    // A subquery source, and INSERT without a column list.
    let a = ok(
        &engine,
        "MERGE INTO stock USING (SELECT 5 AS shop, 'date' AS item, 2 AS qty) AS s \
         ON stock.shop = s.shop AND stock.item = s.item \
         WHEN NOT MATCHED THEN INSERT VALUES (s.shop, s.item, s.qty)",
    )
    .await;
    assert_eq!(counts(&a), (1, 0, 0));
    assert_eq!(
        query_rows(&engine, "SELECT qty FROM stock WHERE shop = 5").await,
        table(&[&["2"]])
    );
}

#[tokio::test]
async fn a_read_token_cannot_write_and_the_sandbox_still_holds() {
    let env = Env::new().await;
    let engine = env.engine(Default::default());
    for sql in [
        "INSERT INTO sales VALUES (9, 'x', 1, '2024-01-01')",
        "DELETE FROM sales",
        "UPDATE sales SET amount = 0",
        "CREATE TABLE t AS SELECT 1",
        "MERGE INTO sales USING sales s ON sales.id = s.id WHEN MATCHED THEN DELETE",
    ] {
        let e = engine
            .execute(sql, Format::Json, Access::ReadOnly)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, QueryError::WriteDenied { .. }), "{sql}: {e}");
        assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
        // The plain query entry point is read-only too.
        let e = engine.sql(sql, Format::Json).await.err().unwrap();
        assert!(matches!(e, QueryError::WriteDenied { .. }), "{sql}: {e}");
    }
    // Writers still get no DDL, COPY or SET.
    for sql in [
        "DROP TABLE sales",
        "CREATE TABLE t (a INT)",
        "COPY sales TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
    ] {
        let e = write(&engine, sql).await.unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{sql}: {e}");
    }
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

#[tokio::test]
async fn the_version_before_a_delete_still_answers() {
    let env = Env::new().await;
    let engine = env.engine(Default::default());
    let v = env
        .catalog
        .get("sales")
        .await
        .unwrap()
        .table_version
        .unwrap();
    let a = ok(&engine, "DELETE FROM sales WHERE region = 'north'").await;
    assert_eq!(a[1], (v + 1).to_string());
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["3"]])
    );
    assert_eq!(
        query_rows(&engine, &format!("SELECT count(*) FROM \"sales@v{v}\"")).await,
        table(&[&["5"]])
    );
    let history = env.catalog.history("sales", 10).await.unwrap();
    assert_eq!(history[0].operation, "DELETE");
}

#[tokio::test]
async fn a_failed_statement_changes_nothing_and_leaves_no_file() {
    let env = Env::new().await;
    let engine = env.engine(Default::default());
    let before = files_of(env.store.as_ref()).await;
    let version = env.catalog.get("sales").await.unwrap().version;
    for sql in [
        // Fails while rewriting (after some rows are read).
        "UPDATE sales SET amount = CAST(region AS DOUBLE)",
        "INSERT INTO sales SELECT id, region, CAST(region AS DOUBLE), day FROM sales",
        "DELETE FROM sales WHERE no_such_column = 1",
        "DELETE FROM sales WHERE id IN (SELECT id FROM sales)",
        "MERGE INTO sales USING sales AS s ON sales.nope = s.id WHEN MATCHED THEN DELETE",
        "INSERT INTO \"sales@v0\" VALUES (1, 'a', 1, '2024-01-01')",
        "DELETE FROM missing",
    ] {
        let e = write(&engine, sql).await.unwrap_err();
        assert!(e.is_client_error(), "{sql}: {e} ({})", e.status());
    }
    assert_eq!(env.catalog.get("sales").await.unwrap().version, version);
    assert_eq!(
        files_of(env.store.as_ref()).await,
        before,
        "no file left behind"
    );
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

#[tokio::test]
async fn the_timeout_and_memory_limit_apply_to_writes() {
    let env = Env::new().await;
    let before = files_of(env.store.as_ref()).await;
    let version = env.catalog.get("sales").await.unwrap().version;

    let engine = env.engine(lakehouse_queryd::EngineConfig {
        timeout: std::time::Duration::from_millis(500),
        ..Default::default()
    });
    // Rows keep coming until the deadline: some files may be written.
    let e = write(
        &engine,
        "INSERT INTO sales SELECT v, 'x', 1.0, DATE '2024-01-01' \
         FROM generate_series(1, 100000000000) t(v)",
    )
    .await
    .unwrap_err();
    assert!(matches!(e, QueryError::Timeout { .. }), "{e}");

    let engine = env.engine(lakehouse_queryd::EngineConfig {
        memory_limit: 1 << 20,
        timeout: std::time::Duration::from_secs(60),
        ..Default::default()
    });
    let e = write(
        &engine,
        "CREATE TABLE joined AS SELECT v FROM generate_series(1, 2000000) a(v) \
         JOIN generate_series(1, 2000000) b(w) ON v = w",
    )
    .await
    .unwrap_err();
    assert!(matches!(e, QueryError::MemoryLimit { .. }), "{e}");

    assert_eq!(env.catalog.get("sales").await.unwrap().version, version);
    assert!(env.catalog.get("joined").await.is_err(), "no dataset made");
    assert_eq!(
        files_of(env.store.as_ref()).await,
        before,
        "no file left behind"
    );
}

/// The protocols' entry points: a write through `run_batches_as` with `$n`
/// values (typed literals, never SQL text), described without running;
/// a read-only caller is refused there too.
#[tokio::test]
async fn writes_through_the_batch_api_take_parameters() {
    use datafusion::common::{ParamValues, ScalarValue};
    use futures::StreamExt;

    let env = Env::new().await;
    let engine = env.engine(Default::default());
    let sql = "UPDATE sales SET region = $1 WHERE id = $2 OR day = $3";
    let d = engine
        .describe_as(sql, None, Access::ReadWrite)
        .await
        .unwrap();
    assert_eq!(d.write, Some(lakehouse_queryd::WriteKind::Update));
    assert_eq!(d.params.len(), 3);
    assert_eq!(d.schema, lakehouse_queryd::write_answer_schema());
    let e = engine.describe(sql, None).await.unwrap_err();
    assert!(matches!(e, QueryError::WriteDenied { .. }), "{e}");
    let e = engine.run_batches(sql, None).await.expect_err("read-only");
    assert!(matches!(e, QueryError::WriteDenied { .. }), "{e}");
    // Unbound values are named; nothing changed.
    let e = engine
        .run_batches_as(sql, None, Access::ReadWrite)
        .await
        .expect_err("no values");
    assert!(e.to_string().contains("$1"), "{e}");

    let params = ParamValues::from(vec![
        ScalarValue::Utf8(Some("it's west".into())),
        ScalarValue::Int64(Some(1)),
        ScalarValue::Date32(Some(19727)), // 2024-01-05: no row
    ]);
    let b = engine
        .run_batches_as(sql, Some(params), Access::ReadWrite)
        .await
        .unwrap();
    assert_eq!(b.write, Some(lakehouse_queryd::WriteKind::Update));
    let batches: Vec<_> = b.stream.map(|r| r.unwrap()).collect().await;
    let answer = rows(&batches);
    assert_eq!(counts(&answer[0]), (0, 1, 0));
    assert_eq!(
        query_rows(&engine, "SELECT region FROM sales WHERE id = 1").await,
        table(&[&["it's west"]])
    );
    // A value of a narrower type than the column (psycopg sends int2):
    // the predicate reaches delta-rs's file pruning with its cast.
    let a = ok(&engine, "DELETE FROM sales WHERE id = CAST(5 AS SMALLINT)").await;
    assert_eq!(counts(&a), (0, 0, 1));
    // A query through the same entry point is not a write.
    let b = engine
        .run_batches_as("SELECT 1", None, Access::ReadWrite)
        .await
        .unwrap();
    assert_eq!(b.write, None);
}
