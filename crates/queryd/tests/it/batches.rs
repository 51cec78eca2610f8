//! The engine for wire protocols: Arrow batches, described statements,
//! parameters, the row cap as an error, cancellation when the stream is
//! dropped, and table metadata.

use std::time::{Duration, Instant};

use arrow::datatypes::DataType;
use datafusion::common::{ParamValues, ScalarValue};
use futures::StreamExt;
use lakehouse_queryd::{EngineConfig, QueryError};

use crate::{Env, assert_err, rows, table};

async fn collect(
    b: lakehouse_queryd::Batches,
) -> Result<Vec<arrow::array::RecordBatch>, QueryError> {
    let mut out = Vec::new();
    let mut s = b.stream;
    while let Some(batch) = s.next().await {
        out.push(batch?);
    }
    Ok(out)
}

#[tokio::test]
async fn batches_with_parameters_and_descriptions() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let sql = "SELECT id, region FROM sales WHERE id > $1 AND region = $2 ORDER BY id";
    let d = engine.describe(sql, None).await.unwrap();
    assert_eq!(
        d.params,
        vec![Some(DataType::Int64), Some(DataType::Utf8View)]
    );
    // A parameter the planner cannot type takes the type it is cast to;
    // one cast to two types, or not cast, stays untyped.
    let cast = engine
        .describe(
            "SELECT CAST($1 AS DATE) a, TRY_CAST($2 AS BIGINT) b, $3 c, CAST($4 AS INT) d, CAST($4 AS DOUBLE) e",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        cast.params,
        vec![Some(DataType::Date32), Some(DataType::Int64), None, None]
    );
    let names: Vec<&str> = d
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["id", "region"]);
    let params = ParamValues::from(vec![
        ScalarValue::Int64(Some(1)),
        ScalarValue::Utf8(Some("north".into())),
    ]);
    let b = engine.run_batches(sql, Some(params)).await.unwrap();
    assert_eq!(rows(&collect(b).await.unwrap()), table(&[&["3", "north"]]));
    // Unbound parameters are named, not planned as nulls.
    let e = assert_err(engine.run_batches(sql, None).await, "invalid_request");
    assert!(e.to_string().contains("$1, $2"), "{e}");
    // An empty result still has its schema.
    let b = engine
        .run_batches("SELECT id FROM sales WHERE id > 99", None)
        .await
        .unwrap();
    assert_eq!(b.schema.field(0).name(), "id");
    assert!(collect(b).await.unwrap().is_empty());
    // The sandbox and the errors are the HTTP ones.
    assert_err(
        engine.run_batches("DROP TABLE sales", None).await,
        "forbidden_statement",
    );
    assert_err(
        engine.describe("SELECT * FROM nope", None).await,
        "unknown_table",
    );
}

#[tokio::test]
async fn the_row_cap_ends_a_stream_with_an_error() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        max_rows: 10,
        batch_size: 4,
        ..Default::default()
    });
    // Over the cap: an error, up front or after some rows — never a short result.
    match engine
        .run_batches("SELECT * FROM generate_series(1, 100)", None)
        .await
    {
        Err(e) => assert_eq!(e.code(), "too_many_rows"),
        Ok(b) => {
            assert_err(collect(b).await, "too_many_rows");
        }
    }
    // Found while streaming: rows, then the error — never a short result.
    let sql = "SELECT v FROM generate_series(1, 100) t(v) WHERE v % 2 = 0 OR v < 50";
    match engine.run_batches(sql, None).await {
        Err(e) => assert_eq!(e.code(), "too_many_rows"),
        Ok(b) => {
            assert_err(collect(b).await, "too_many_rows");
        }
    }
    let b = engine
        .run_batches("SELECT v FROM generate_series(1, 10) t(v)", None)
        .await
        .unwrap();
    assert_eq!(
        collect(b)
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        10
    );
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_query() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        timeout: Duration::from_secs(120),
        ..Default::default()
    });
    let slow = "SELECT sum(v) FROM generate_series(1, 1000000000000) t(v)";
    let running = engine.clone();
    let fut = tokio::spawn(async move { running.run_batches(slow, None).await.map(|_| ()) });
    let t = Instant::now();
    while engine.query_stats().running == 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fut.abort();
    let t = Instant::now();
    while engine.query_stats().running > 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "query still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(engine.query_stats().cancelled_disconnected >= 1);
}

#[tokio::test]
async fn tables_and_schemas_for_metadata_calls() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let tables = engine.tables().await.unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["sales", "web/events"]);
    assert_eq!(tables[0].schema.field(0).name(), "id");
    assert_eq!(
        engine.dataset_names().await.unwrap(),
        ["sales", "web/events"]
    );
    assert!(engine.table_schema("nope").await.unwrap().is_none());
    assert_eq!(
        engine
            .table_schema("web/events")
            .await
            .unwrap()
            .unwrap()
            .fields()
            .len(),
        3
    );
}
