//! The [`Query`] contract, one suite run against both implementations: the
//! in-process [`QueryEngine`] and the [`QueryClient`] talking to it over a
//! real socket. Both stream the same rows in every format and refuse the
//! same statements with the same code and status.

use http::StatusCode;
use lakehouse_queryd::{EngineConfig, Format, Query, QueryClient};

use super::{Env, bytes, parse_sales};

#[tokio::test]
async fn the_engine_keeps_the_contract() {
    let env = Env::new().await;
    conformance(env.engine(EngineConfig::default()).as_ref()).await;
}

#[tokio::test]
async fn the_client_keeps_the_contract() {
    let env = Env::new().await;
    conformance(&QueryClient::new(&super::serve(&env).await)).await;
}

async fn conformance(q: &dyn Query) {
    let sql = "SELECT id, region, amount FROM sales ORDER BY id";
    let expected = vec![
        (1, "north".to_string(), Some(10.5)),
        (2, "south".to_string(), Some(20.0)),
        (3, "north".to_string(), Some(5.25)),
        (4, "east".to_string(), None),
        (5, "south".to_string(), Some(7.0)),
    ];
    for format in Format::ALL {
        let buf = bytes(q, sql, format).await.unwrap();
        assert_eq!(parse_sales(format, &buf), expected, "{format:?}");
    }
    let csv = bytes(q, "SELECT region FROM sales WHERE id = 2", Format::Csv).await;
    assert_eq!(csv.unwrap(), b"region\nsouth\n");
    let slash = "SELECT count(*) AS n FROM \"web/events\"";
    assert_eq!(bytes(q, slash, Format::Csv).await.unwrap(), b"n\n3\n");
    // An empty result keeps its header.
    let empty = bytes(q, "SELECT id FROM sales WHERE id > 99", Format::Csv).await;
    assert_eq!(empty.unwrap(), b"id\n");

    let refusals = [
        ("SELECT * FROM sales WHERE", "syntax_error"),
        ("SELECT * FROM nope", "unknown_table"),
        ("SELECT nope FROM sales", "plan_error"),
        ("SELECT CAST(region AS INT) FROM sales", "execution_error"),
        ("DROP TABLE sales", "forbidden_statement"),
        ("SELECT 1; SELECT 2", "invalid_request"),
        ("", "invalid_request"),
    ];
    for (sql, code) in refusals {
        let e = bytes(q, sql, Format::Json).await.unwrap_err();
        assert_eq!(
            (e.code(), e.status()),
            (code, StatusCode::BAD_REQUEST),
            "{sql}: {e}"
        );
    }
    let e = bytes(q, "SELECT * FROM nope", Format::Json)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"sales\""), "{e}");
    // Nothing was dropped.
    assert_eq!(
        bytes(q, "SELECT count(*) AS n FROM sales", Format::Csv)
            .await
            .unwrap(),
        b"n\n5\n"
    );
}
