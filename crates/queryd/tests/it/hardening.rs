//! The hardening cases (issues 12, 13, 20): statements too deep to plan,
//! functions that allocate from a number, regexes that compile too large,
//! damaged datasets, cancellation, the row cap per format, identifiers in
//! any case, and error text a person reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use lakehouse_queryd::{EngineConfig, Format, Query, QueryEngine, QueryError};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::{Env, assert_err, query_rows, table};

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

async fn body(engine: &QueryEngine, sql: &str, format: Format) -> Result<Vec<u8>, QueryError> {
    let mut s = engine.sql(sql, format).await?;
    let mut buf = Vec::new();
    while let Some(c) = s.next().await {
        buf.extend_from_slice(&c?);
    }
    Ok(buf)
}

/// Each of these killed the process with a stack overflow; now each is a
/// 400 `query_too_complex` (or runs), and the engine answers afterwards.
#[tokio::test]
async fn deep_statements_are_refused_not_fatal() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let nested = |open: &str, close: &str, n: usize| {
        format!("SELECT {}1{}", open.repeat(n), close.repeat(n))
    };
    let cases = [
        format!("SELECT {}", chain("1", "+", 1000)),
        format!("SELECT {}", chain("1", "+", 5000)),
        format!("SELECT 1 WHERE {}", chain("1=1", " AND ", 1000)),
        format!("SELECT 1 WHERE {}", chain("1=0", " OR ", 1000)),
        format!("SELECT {}", chain("'a'", "||", 2000)),
        format!("SELECT {}", chain("1", "-", 5000)),
        format!("SELECT {}", chain("1", "-", 200_000)),
        chain("SELECT 1", " UNION ALL ", 1100),
        nested("(", ")", 1000),
        nested("(SELECT ", ")", 500),
        nested("abs(", ")", 1000),
    ];
    for sql in &cases {
        let e = assert_err(engine.sql(sql, Format::Json).await, "query_too_complex");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("too complex"), "{e}");
    }
    // A type nested 5000 deep is a real (if odd) answer.
    body(
        &engine,
        &format!("SELECT CAST(1 AS INT{})", "[]".repeat(5000)),
        Format::Json,
    )
    .await
    .unwrap();
    // Deep in other ways: refused one way or another, never fatal.
    for sql in [
        format!("{}SELECT 1", "EXPLAIN ".repeat(5000)),
        format!("SELECT {}", chain("-1", "*", 3000)),
        format!("SELECT {}1", "NOT ".repeat(5000)),
        nested("CASE WHEN true THEN ", " END", 1000),
    ] {
        let e = engine.sql(&sql, Format::Json).await.err().unwrap();
        assert!(e.is_client_error(), "{e}");
    }
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

/// Just under the limit, the deepest statements plan and run on the
/// engine's threads (the stack guard).
#[tokio::test]
async fn statements_just_under_the_limit_run() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let sum = format!("SELECT {} AS s", chain("1", "+", 990));
    assert_eq!(query_rows(&engine, &sum).await, table(&[&["990"]]));
    let minus = format!("SELECT {} AS s", chain("1", "-", 990));
    assert_eq!(query_rows(&engine, &minus).await, table(&[&["-988"]]));
    let and = format!(
        "SELECT count(*) FROM sales WHERE {}",
        chain("id > 0", " AND ", 990)
    );
    assert_eq!(query_rows(&engine, &and).await, table(&[&["5"]]));
    let or = format!(
        "SELECT count(*) FROM sales WHERE {}",
        chain("id = 0", " OR ", 990)
    );
    assert_eq!(query_rows(&engine, &or).await, table(&[&["0"]]));
    let concat = format!("SELECT length({}) AS n", chain("'a'", "||", 990));
    assert_eq!(query_rows(&engine, &concat).await, table(&[&["990"]]));
    let unions = format!(
        "SELECT count(*) FROM ({})",
        chain("SELECT 1", " UNION ALL ", 500)
    );
    assert_eq!(query_rows(&engine, &unions).await, table(&[&["500"]]));
    let parens = format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(query_rows(&engine, &parens).await, table(&[&["1"]]));
}

/// Functions that allocate from a number are capped per call (413 naming
/// the function) before they allocate; small calls still work.
#[tokio::test]
async fn allocating_functions_are_capped() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        function_output_limit: Some(16 << 20),
        ..Default::default()
    });
    for (sql, function) in [
        ("SELECT lpad('x', 2000000000)", "lpad"),
        ("SELECT rpad('x', 2000000000, 'é')", "rpad"),
        ("SELECT repeat('ab', 100000000)", "repeat"),
        ("SELECT array_repeat(1, 1000000000)", "array_repeat"),
        ("SELECT array_resize([1], 1000000000)", "array_resize"),
        ("SELECT range(1, 10000000000)", "range"),
        ("SELECT generate_series(1, 10000000000)", "generate_series"),
        (
            "SELECT replace(repeat('a', 100000), 'a', repeat('b', 1000))",
            "replace",
        ),
        (
            "SELECT regexp_replace(repeat('a', 100000), 'a', repeat('b', 1000), 'g')",
            "regexp_replace",
        ),
        ("SELECT repeat(region, 10000000) FROM sales", "repeat"),
    ] {
        let e = assert_err(engine.sql(sql, Format::Json).await, "value_too_large");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE, "{sql}");
        let m = e.to_string();
        assert!(m.starts_with(&format!("{function}(…)")), "{sql}: {m}");
        assert!(m.contains("function_output_limit"), "{m}");
    }
    let small = "SELECT lpad('x', 3) AS a, repeat('ab', 2) AS b, \
                 cardinality(array_repeat(1, 4)) AS c, cardinality(range(1, 5)) AS d, \
                 replace('aXa', 'X', 'yy') AS e, concat('a', 'b') AS f";
    assert_eq!(
        query_rows(&engine, small).await,
        table(&[&["  x", "abab", "4", "4", "ayya", "ab"]])
    );
}

#[tokio::test]
async fn a_regex_too_large_is_a_400() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let e = assert_err(
        engine
            .sql(
                "SELECT regexp_replace(repeat('a', 1000000), '(((a{1,100}){1,100}){1,100})', 'b')",
                Format::Json,
            )
            .await,
        "invalid_regex",
    );
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    assert_err(
        engine
            .sql(
                "SELECT regexp_replace(region, '(', 'b') FROM sales",
                Format::Json,
            )
            .await,
        "invalid_regex",
    );
}

/// Objects that went missing, changed size or are not Parquet are named
/// with their dataset.
#[tokio::test]
async fn damaged_datasets_name_the_dataset_and_object() {
    let env = Env::new().await;
    let key = env.catalog.get("sales").await.unwrap().objects[0]
        .key
        .clone();
    let path = Path::from(key.as_str());
    let original = env.store.get(&path).await.unwrap().bytes().await.unwrap();
    let check = |e: QueryError, what: &str| {
        assert_eq!(e.code(), "dataset_damaged", "{e}");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let m = e.to_string();
        assert!(
            m.contains("\"sales\"") && m.contains(&key) && m.contains(what),
            "{m}"
        );
        let api: lakehouse_common::ApiError = e.into();
        assert_eq!(api.details["dataset"], "sales");
        assert_eq!(api.details["object"], key.as_str());
    };
    // Another size.
    let shorter = original.slice(..original.len() - 10);
    env.store.put(&path, shorter.into()).await.unwrap();
    let engine = env.engine(EngineConfig::default());
    let e = engine
        .sql("SELECT * FROM sales", Format::Json)
        .await
        .err()
        .unwrap();
    check(e, "bytes in the manifest");
    // Same size, not Parquet.
    env.store
        .put(&path, Bytes::from(vec![b'x'; original.len()]).into())
        .await
        .unwrap();
    let engine = env.engine(EngineConfig::default());
    let e = engine
        .sql("SELECT * FROM sales", Format::Json)
        .await
        .err()
        .unwrap();
    check(e, "not a readable Parquet file");
    // Missing, found while planning.
    env.store.delete(&path).await.unwrap();
    let engine = env.engine(EngineConfig::default());
    let e = engine
        .sql("SELECT * FROM sales", Format::Json)
        .await
        .err()
        .unwrap();
    check(e, "missing");
    // Missing, found while reading (the footer was cached before).
    env.store.put(&path, original.clone().into()).await.unwrap();
    let engine = env.engine(EngineConfig::default());
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
    env.store.delete(&path).await.unwrap();
    let e = engine
        .sql("SELECT * FROM sales", Format::Json)
        .await
        .err()
        .unwrap();
    check(e, "missing");
}

async fn wait_idle(engine: &QueryEngine) -> Duration {
    let t = Instant::now();
    while engine.query_stats().running > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{:?}",
            engine.query_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

/// Dropping the request (before the first byte) or the result stream
/// (mid-stream) stops the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_request_cancels_the_query() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let heavy = "SELECT count(*) FROM generate_series(1, 1000000000000) t(v) WHERE v % 7 = 3";
    let pending = tokio::time::timeout(Duration::from_millis(500), engine.sql(heavy, Format::Json));
    assert!(pending.await.is_err(), "the heavy query answered?");
    let waited = wait_idle(&engine).await;
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(engine.query_stats().cancelled_disconnected, 1);
    // Mid-stream.
    let mut s = engine
        .sql(
            "SELECT v FROM generate_series(1, 1000000000000) t(v)",
            Format::Csv,
        )
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_ok());
    drop(s);
    wait_idle(&engine).await;
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

/// The table function `generate_series` makes batches of 8192 rows: the
/// cap is past the first one, so the result starts streaming before it.
fn capped() -> EngineConfig {
    EngineConfig {
        max_rows: 20_000,
        ..Default::default()
    }
}

/// Its row count is not known from the plan: the cap is found while
/// streaming.
const MANY: &str = "SELECT v FROM generate_series(1, 1000000000000) t(v)";

/// Past `max_rows`: a 413 when known before the first byte (always for
/// JSON); otherwise the streaming formats end well-formed with exactly
/// `max_rows` rows and say they were truncated.
#[tokio::test]
async fn row_cap_per_format() {
    let env = Env::new().await;
    let mut csv = String::from("n\n");
    for i in 0..30_000 {
        csv.push_str(&format!("{i}\n"));
    }
    env.ingest("big", lakehouse_ingestd::Format::Csv, &csv)
        .await;
    let engine = env.engine(capped());
    // The dataset's row count is known exactly (Parquet statistics): a 413
    // before the first byte, in every format, although the first batch is
    // under the cap.
    for format in Format::ALL {
        let e = assert_err(
            engine.sql("SELECT * FROM big", format).await,
            "too_many_rows",
        );
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_err(engine.sql(MANY, Format::Json).await, "too_many_rows");

    let text = String::from_utf8(body(&engine, MANY, Format::Ndjson).await.unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20_001);
    assert_eq!(lines[19_999]["v"], 20_000);
    assert_eq!(lines[20_000]["$lakehouse"]["truncated"], true);
    assert_eq!(lines[20_000]["$lakehouse"]["max_rows"], 20_000);

    let text = String::from_utf8(body(&engine, MANY, Format::Csv).await.unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((lines[0], lines[20_000]), ("v", "20000"));
    assert_eq!(lines.len(), 20_002);
    assert!(
        lines[20_001].starts_with("#lakehouse: truncated: "),
        "{}",
        lines[20_001]
    );

    let arrow = body(&engine, MANY, Format::Arrow).await.unwrap();
    let rows: usize = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(arrow), None)
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 20_000);

    // Parquet sends nothing before its first row group (64Ki rows): under
    // that, the cap is found before the first byte.
    assert_err(engine.sql(MANY, Format::Parquet).await, "too_many_rows");
    let wide = env.engine(EngineConfig {
        max_rows: 100_000,
        ..Default::default()
    });
    let pq = body(&wide, MANY, Format::Parquet).await.unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(pq))
            .unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    assert!(
        kv.iter()
            .any(|k| k.key == "lakehouse.truncated" && k.value.as_deref() == Some("true"))
    );
    assert_eq!(reader.metadata().file_metadata().num_rows(), 100_000);

    // Exactly max_rows is a whole result, in every format.
    let exact = "SELECT v FROM generate_series(1, 20000) t(v)";
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&body(&engine, exact, Format::Json).await.unwrap()).unwrap();
    assert_eq!(json.len(), 20_000);
    let text = String::from_utf8(body(&engine, exact, Format::Ndjson).await.unwrap()).unwrap();
    assert_eq!(text.lines().count(), 20_000);
}

/// A failure after the first byte ends the body with the format's error
/// marker (NDJSON, CSV, Parquet) or cuts it (Arrow); JSON is an error status.
#[tokio::test]
async fn errors_after_the_first_byte_per_format() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        max_rows: 300_000,
        ..Default::default()
    });
    // Fails in the 24th batch, long after the first went out (Parquet's
    // first row group too).
    let failing = "SELECT CASE WHEN v < 190000 THEN v ELSE CAST('x' || v AS INT) END AS v \
                   FROM generate_series(1, 200000) t(v)";
    assert_err(engine.sql(failing, Format::Json).await, "execution_error");
    let text = String::from_utf8(body(&engine, failing, Format::Ndjson).await.unwrap()).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["$lakehouse"]["error"]["code"], "execution_error");
    let text = String::from_utf8(body(&engine, failing, Format::Csv).await.unwrap()).unwrap();
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("#lakehouse: error execution_error: ")
    );
    let pq = body(&engine, failing, Format::Parquet).await.unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(pq))
            .unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    assert!(kv.iter().any(|k| k.key == "lakehouse.error.code"));
    assert!(body(&engine, failing, Format::Arrow).await.is_err());
}

/// The HTTP trailer says how a streamed result ended.
#[tokio::test]
async fn http_trailers_say_how_the_result_ended() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let env = Env::new().await;
    let engine: Arc<dyn Query> = env.engine(capped());
    let app = lakehouse_queryd::http::router(engine);
    for (sql, result) in [
        (MANY, "truncated"),
        ("SELECT v FROM generate_series(1, 10) t(v)", "complete"),
    ] {
        let req = http::Request::post("/query/sql?format=arrow")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                serde_json::json!({"sql": sql}).to_string(),
            ))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["trailer"]
                .to_str()
                .unwrap()
                .contains("lakehouse-result")
        );
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["lakehouse-result"], result, "{sql}");
    }
}

/// Unquoted identifiers match columns in any case when unambiguous.
#[tokio::test]
async fn identifiers_match_columns_in_any_case() {
    let env = Env::new().await;
    env.ingest(
        "places",
        lakehouse_ingestd::Format::Csv,
        "Country,City\nNorway,Oslo\nPeru,Lima\n",
    )
    .await;
    // NDJSON keeps both names (a CSV header renames the second, as DuckDB does).
    env.ingest(
        "pairs",
        lakehouse_ingestd::Format::Ndjson,
        "{\"a\": 1, \"A\": 2}\n",
    )
    .await;
    let engine = env.engine(EngineConfig::default());
    for sql in [
        "SELECT Country FROM places ORDER BY Country",
        "select country from PLACES order by COUNTRY",
        "SELECT \"Country\" FROM places ORDER BY 1",
        "SELECT p.country FROM places p ORDER BY p.Country",
        "SELECT country FROM places WHERE city IN ('Oslo', 'Lima') GROUP BY country ORDER BY country",
    ] {
        assert_eq!(
            query_rows(&engine, sql).await,
            table(&[&["Norway"], &["Peru"]]),
            "{sql}"
        );
    }
    // A CTE's lower-case column is not rewritten to the dataset's.
    assert_eq!(
        query_rows(
            &engine,
            "WITH x AS (SELECT 'n' AS country) SELECT country FROM x, places LIMIT 1"
        )
        .await,
        table(&[&["n"]])
    );
    // Quoted names stay exact.
    assert_err(
        engine
            .sql("SELECT \"country\" FROM places", Format::Json)
            .await,
        "plan_error",
    );
    // Two columns differing only in case: an unquoted name is ambiguous.
    for sql in ["SELECT a FROM pairs", "SELECT A FROM pairs"] {
        let e = assert_err(engine.sql(sql, Format::Json).await, "ambiguous_column");
        let m = e.to_string();
        assert!(m.contains("\"A\"") && m.contains("\"a\""), "{m}");
    }
    assert_eq!(
        query_rows(&engine, "SELECT \"a\", \"A\" FROM pairs").await,
        table(&[&["1", "2"]])
    );
}

/// Messages carry no debug wrappers, on every path.
#[tokio::test]
async fn messages_have_no_debug_wrappers() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let e = assert_err(engine.sql("selec 1", Format::Json).await, "syntax_error");
    assert_eq!(
        e.to_string(),
        "syntax error at line 1, column 1: expected a SQL statement, found \"selec\""
    );
    let api: lakehouse_common::ApiError = e.into();
    assert_eq!(
        (api.details["line"].clone(), api.details["column"].clone()),
        (1.into(), 1.into())
    );
    let e = assert_err(
        engine.sql("SELECT * FROM sales WHERE", Format::Json).await,
        "syntax_error",
    );
    assert!(
        e.to_string()
            .starts_with("syntax error at line 1, column 26: "),
        "{e}"
    );
    for sql in [
        "SELECT nope FROM sales",
        "SELECT CAST(region AS INT) FROM sales",
        "SELECT 1/0",
        "SELECT regexp_replace(region, '(', 'b') FROM sales",
        "SELECT * FROM sales s JOIN sales t ON s.nope = t.id",
        "SELECT region FROM sales GROUP BY id",
    ] {
        let e = engine.sql(sql, Format::Json).await.err().unwrap();
        let m = e.to_string();
        for wrapper in [
            "Error during planning",
            "Arrow error",
            "External error",
            "ParserError(",
            "Schema error:",
            "Execution error:",
            "SQL error",
        ] {
            assert!(!m.contains(wrapper), "{sql}: {m}");
        }
    }
}

/// The memory guard cancels the largest running query when the process is
/// over its limit, with a 503 for that query's client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_guard_cancels_the_largest_query() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        // Any test process is over 1 MiB: the guard fires at once.
        process_memory_limit: Some(1 << 20),
        timeout: Duration::from_secs(60),
        ..Default::default()
    });
    let e = assert_err(
        engine
            .sql(
                "SELECT count(*) FROM generate_series(1, 1000000000000) a(v) WHERE v % 3 = 1",
                Format::Json,
            )
            .await,
        "memory_pressure",
    );
    assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(engine.query_stats().cancelled_memory >= 1);
}
