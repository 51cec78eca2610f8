//! Schema evolution (`schema=merge`), end to end through the real binary:
//! without it a new column is a 409 naming it; with it the dataset gains
//! the column, old and new files read together in one query (old rows have
//! nulls), an input lacking a column fills it with nulls, values that do
//! not fit the dataset's types are refused naming the column, an earlier
//! version keeps its schema, a compaction and a restart change nothing,
//! and the Python `deltalake` package and polars read the evolved table.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, run_cli};
use crate::tables::{count, delta_readers_check, get, ingest, sql};

async fn post(http: &reqwest::Client, url: &str, body: &str) -> (StatusCode, Value) {
    let r = http.post(url).body(body.to_string()).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

/// `SELECT id, amount, note … ORDER BY id` as `[id, amount, note]` rows.
async fn rows(http: &reqwest::Client, url: &str, table: &str) -> Vec<Value> {
    let (s, v) = sql(
        http,
        url,
        &format!("SELECT id, amount, note FROM \"{table}\" ORDER BY id"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["id"], r["amount"], r["note"]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_merge_adds_columns_and_reads_old_and_new_files_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let url = server.url.clone();
    let ing = |q: &str| format!("{url}/ingest/ev?format=csv{q}");

    ingest(&http, &url, "ev", "append", "id,amount\n1,10\n2,20\n").await;
    // Without merge, another schema stays a conflict that names the column.
    let (s, v) = post(&http, &ing(""), "id,amount,note\n3,30,x\n").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("note"), "{v}");
    assert_eq!(count(&http, &url, "ev").await, 2);

    // With it (here from the CLI), the column is added; the old rows read
    // it as null.
    let file = dir.path().join("more.csv");
    std::fs::write(&file, "id,amount,note\n3,30,x\n").unwrap();
    let cli = |merge: bool| {
        let mut args = vec![
            "ingest",
            file.to_str().unwrap(),
            "--dataset",
            "ev",
            "--url",
            &url,
        ];
        if merge {
            args.extend(["-o", "schema=merge"]);
        }
        run_cli(&args, &[])
    };
    let (st, out, err) = cli(false);
    assert!(!st.success() && err.contains("\"note\""), "{out}{err}");
    let (st, out, err) = cli(true);
    assert!(st.success(), "{out}{err}");
    assert!(out.contains("table version 1"), "{out}");
    // An input lacking a column (and in another order): nulls there.
    let (s, v) = post(&http, &ing("&schema=merge"), "note,id\ny,4\n").await;
    assert!(s.is_success(), "{s} {v}");
    let want = json!([[1, 10, null], [2, 20, null], [3, 30, "x"], [4, null, "y"]]);
    assert_eq!(json!(rows(&http, &url, "ev").await), want);
    // The new schema is the dataset's now: a plain append of it works.
    ingest(&http, &url, "ev", "append", "id,amount,note\n5,50,z\n").await;

    // What cannot be merged is refused, naming the column, and changes nothing.
    let (s, v) = post(&http, &ing("&schema=merge"), "id,amount\n6,lots\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("amount"), "{v}");
    let (s, v) = post(&http, &ing("&schema=merge"), "ID,amount\n6,60\n").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v.to_string().contains("only in case"), "{v}");
    let (s, v) = post(
        &http,
        &format!("{url}/ingest/ev?format=ndjson&schema=merge"),
        "{\"id\": 6, \"amount\": 1.5}\n",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(count(&http, &url, "ev").await, 5);

    // Version 0 keeps its schema; a query joins it with the latest.
    let (s, v) = sql(&http, &url, "SELECT * FROM \"ev@v0\" ORDER BY id").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!([{"id": 1, "amount": 10}, {"id": 2, "amount": 20}]));
    let (s, v) = sql(
        &http,
        &url,
        "SELECT count(*) AS n FROM \"ev@v0\" o JOIN ev n ON o.id = n.id WHERE n.note IS NULL",
    )
    .await;
    assert_eq!((s, v[0]["n"].clone()), (StatusCode::OK, json!(2)), "{v}");
    let (_, h) = get(&http, &format!("{url}/catalog/history/ev")).await;
    let fps: Vec<&Value> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["schema_fingerprint"])
        .collect();
    assert_eq!(fps.len(), 4, "{h}");
    assert_eq!(fps[0], fps[2], "{h}");
    assert_ne!(fps[2], fps[3], "{h}");

    // A compaction rewrites old and new files together; a restart reads
    // them the same.
    let (s, v) = post(&http, &format!("{url}/catalog/compact/ev"), "").await;
    assert!(s.is_success(), "{s} {v}");
    assert_eq!(v["manifest"]["objects"].as_array().unwrap().len(), 1, "{v}");
    let mut want5 = want.as_array().unwrap().clone();
    want5.push(json!([5, 50, "z"]));
    assert_eq!(rows(&http, &url, "ev").await, want5);
    server.terminate();
    let server = Server::start(dir.path(), &[], &[]);
    let url = server.url.clone();
    assert_eq!(rows(&http, &url, "ev").await, want5);
    let (s, v) = sql(&http, &url, "SELECT count(*) AS n FROM \"ev@v1\"").await;
    assert_eq!((s, v[0]["n"].clone()), (StatusCode::OK, json!(3)), "{v}");

    other_readers(&dir.path().join("objects/datasets/ev"), &json!(want5));
}

/// The Python `deltalake` package and polars read the evolved table: the
/// latest version with the new column (nulls in the old rows), version 0
/// without it.
fn other_readers(table: &std::path::Path, want: &Value) {
    const SCRIPT: &str = r#"
import json, sys
import deltalake, polars as pl
path, want = sys.argv[1], json.loads(sys.argv[2])
t = deltalake.DeltaTable(path).to_pyarrow_table().sort_by("id")
got = [list(r.values()) for r in t.select(["id", "amount", "note"]).to_pylist()]
assert got == want, f"deltalake: {got} != {want}"
df = pl.read_delta(path).sort("id").select(["id", "amount", "note"])
got = [list(r) for r in df.rows()]
assert got == want, f"polars: {got} != {want}"
old = deltalake.DeltaTable(path, version=0).to_pyarrow_table()
assert old.column_names == ["id", "amount"], old.column_names
print("all checks passed")
"#;
    delta_readers_check(SCRIPT, table, &want.to_string());
}
