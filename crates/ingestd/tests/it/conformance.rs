//! The [`Ingest`] contract, one suite run against both implementations: the
//! in-process [`Ingestor`] and the [`IngestClient`] (what `lakehouse ingest`
//! uses) talking to it over a real socket. Both must store the same rows and
//! refuse the same inputs with the same [`ErrorKind`], changing nothing.

use lakehouse_ingestd::{
    ErrorKind, Format, Ingest, IngestClient, IngestError, IngestOptions, Mode,
};

use super::{Env, all_keys, body, env, opts, q, read_all, strings, total_rows};

#[tokio::test]
async fn the_ingestor_keeps_the_contract() {
    let env = env().await;
    conformance(env.ingestor.as_ref(), &env).await;
}

#[tokio::test]
async fn the_client_keeps_the_contract() {
    let env = env().await;
    let app = lakehouse_ingestd::http::router(env.ingestor.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    conformance(&IngestClient::new(&url), &env).await;
}

async fn send(
    ing: &dyn Ingest,
    name: &str,
    opts: IngestOptions,
    data: &str,
    key: Option<&str>,
) -> Result<lakehouse_ingestd::IngestResult, IngestError> {
    let data = data.to_string();
    ing.ingest(name, opts, Box::pin(body(data, 7)), key).await
}

async fn conformance(ing: &dyn Ingest, env: &Env) {
    // A CSV with options and no final newline: every row read.
    let csv_opts = q(&[("format", "csv"), ("delimiter", ";"), ("null", "NA")]);
    let r = send(ing, "web/t", csv_opts, "id;name\n1;ann\n2;NA\n3;bob", None)
        .await
        .unwrap();
    assert_eq!((r.rows, r.manifest.version, r.replayed), (3, 1, false));
    assert_eq!(r.csv.as_ref().map(|c| c.delimiter.as_str()), Some(";"));
    let batches = read_all(env, "web/t").await;
    assert_eq!(total_rows(&batches), 3);
    let names: Vec<Option<String>> = batches.iter().flat_map(|b| strings(b, 1)).collect();
    assert_eq!(names, [Some("ann".into()), None, Some("bob".into())]);

    // NDJSON appended; the same idempotency key twice applies once.
    let nd = opts(Format::Ndjson, Mode::Append);
    let line = "{\"id\":4,\"name\":\"cy\"}";
    let first = send(ing, "web/t", nd.clone(), line, Some("k-1"))
        .await
        .unwrap();
    let again = send(ing, "web/t", nd, line, Some("k-1")).await.unwrap();
    assert_eq!((first.rows, first.manifest.row_count), (1, 4));
    assert!(again.replayed);
    assert_eq!(again.manifest, first.manifest);

    refusals(ing, env).await;

    // Replace with an explicit schema.
    let replace = q(&[
        ("format", "csv"),
        ("mode", "replace"),
        ("schema", "id:int64,name:utf8"),
    ]);
    let r = send(ing, "web/t", replace, "id,name\n9,zed\n", None)
        .await
        .unwrap();
    assert_eq!(
        (r.rows, r.manifest.row_count, r.manifest.version),
        (1, 1, 3)
    );
    assert_eq!(total_rows(&read_all(env, "web/t").await), 1);
}

/// Every refusal is its kind and leaves the store as it was.
async fn refusals(ing: &dyn Ingest, env: &Env) {
    let before = all_keys(env).await;
    let csv = || opts(Format::Csv, Mode::Append);
    let cases: [(&str, IngestOptions, &str, ErrorKind); 6] = [
        ("Bad Name", csv(), "id,name\n1,a\n", ErrorKind::InvalidName),
        ("web/t", csv(), "", ErrorKind::EmptyInput),
        ("web/t", csv(), "id,name\n5,a\n6\n", ErrorKind::BadData),
        ("web/t", csv(), "other\n1\n", ErrorKind::SchemaMismatch),
        (
            "web/t",
            opts(Format::Parquet, Mode::Append),
            "PAR1 not parquet",
            ErrorKind::BadData,
        ),
        (
            "web/t",
            opts(Format::Ndjson, Mode::Append),
            "{\"id\": 5,",
            ErrorKind::BadData,
        ),
    ];
    for (name, o, data, kind) in cases {
        let e = send(ing, name, o, data, None).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{name} {data:?}: {e}");
    }
    assert_eq!(all_keys(env).await, before);
}
