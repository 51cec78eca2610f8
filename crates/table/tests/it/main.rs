//! lakehouse-table against an in-memory store and a local directory: create,
//! append, replace, snapshots at each version and time, history, conflicts,
//! and a table other Delta readers accept (the log delta-rs reads back).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use lakehouse_table::{At, Commit, NewFile, OldFile, TableError, Tables};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::ParquetMetaDataReader;

/// Stores a Parquet file of ids `ids` at `datasets/<name>/<file>`.
async fn put_file(store: &Arc<dyn ObjectStore>, name: &str, file: &str, ids: &[i64]) -> NewFile {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let tags: Vec<Option<String>> = ids.iter().map(|i| Some(format!("t{i}"))).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(tags)),
        ],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let key = format!("datasets/{name}/{file}");
    let size = buf.len() as u64;
    let bytes = bytes::Bytes::from(buf);
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .unwrap();
    store
        .put(&Path::from(key.as_str()), PutPayload::from(bytes))
        .await
        .unwrap();
    NewFile {
        key,
        size,
        metadata: Arc::new(metadata),
    }
}

fn commit(name: &str, adds: Vec<NewFile>, removes: Vec<OldFile>, base: Option<i64>) -> Commit {
    Commit {
        name: name.to_string(),
        fingerprint: "fp1".to_string(),
        adds,
        removes,
        base,
    }
}

fn old(f: &NewFile) -> OldFile {
    OldFile {
        key: f.key.clone(),
        size: f.size,
        rows: f.metadata.file_metadata().num_rows() as u64,
    }
}

fn keys(s: &lakehouse_table::Snapshot) -> Vec<(String, Option<u64>)> {
    s.files.iter().map(|f| (f.key.clone(), f.rows)).collect()
}

/// version, operation, files added, files removed, rows added, rows removed
type Summary<'a> = (i64, &'a str, u64, u64, u64, Option<u64>);

#[tokio::test]
async fn create_append_replace_and_read_every_version() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tables = Tables::new(store.clone());
    let name = "shop/orders";
    assert_eq!(tables.latest(name).await.unwrap(), None);
    assert!(matches!(
        tables.snapshot(name, At::Latest).await,
        Err(TableError::NoTable { .. })
    ));

    let a = put_file(&store, name, "a.parquet", &[1, 2, 3]).await;
    assert_eq!(
        tables
            .commit(commit(name, vec![a.clone()], vec![], None))
            .await
            .unwrap(),
        0
    );
    let t0 = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let b = put_file(&store, name, "b.parquet", &[4, 5]).await;
    assert_eq!(
        tables
            .commit(commit(name, vec![b.clone()], vec![], Some(0)))
            .await
            .unwrap(),
        1
    );
    let c = put_file(&store, name, "c.parquet", &[9]).await;
    let replace = commit(name, vec![c.clone()], vec![old(&a), old(&b)], Some(1));
    assert_eq!(tables.commit(replace).await.unwrap(), 2);

    let at = |v| tables.snapshot(name, At::Version(v));
    assert_eq!(keys(&at(0).await.unwrap()), vec![(a.key.clone(), Some(3))]);
    assert_eq!(
        keys(&at(1).await.unwrap()),
        vec![(a.key.clone(), Some(3)), (b.key.clone(), Some(2))]
    );
    let latest = tables.snapshot(name, At::Latest).await.unwrap();
    assert_eq!(
        (latest.version, keys(&latest)),
        (2, vec![(c.key.clone(), Some(1))])
    );
    assert_eq!(latest.fingerprint.as_deref(), Some("fp1"));
    let then = tables.snapshot(name, At::Time(t0)).await.unwrap();
    assert_eq!(then.version, 0);
    assert!(matches!(
        at(3).await,
        Err(TableError::NoSuchVersion {
            version: 3,
            latest: 2,
            ..
        })
    ));

    let h = tables.history(name, 10).await.unwrap();
    let ops: Vec<Summary> = h
        .iter()
        .map(|c| {
            (
                c.version,
                c.operation.as_str(),
                c.files_added,
                c.files_removed,
                c.rows_added,
                c.rows_removed,
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            (2, "WRITE", 1, 2, 1, Some(5)),
            (1, "WRITE", 1, 0, 2, Some(0)),
            (0, "CREATE TABLE", 1, 0, 3, Some(0)),
        ]
    );
    assert_eq!(tables.history(name, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_base_is_a_conflict_and_changes_nothing() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tables = Tables::new(store.clone());
    let a = put_file(&store, "t", "a.parquet", &[1]).await;
    tables
        .commit(commit("t", vec![a], vec![], None))
        .await
        .unwrap();
    let b = put_file(&store, "t", "b.parquet", &[2]).await;
    tables
        .commit(commit("t", vec![b], vec![], Some(0)))
        .await
        .unwrap();
    let c = put_file(&store, "t", "c.parquet", &[3]).await;
    let err = tables
        .commit(commit("t", vec![c], vec![], Some(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TableError::Conflict { version: 1, .. }),
        "{err}"
    );
    assert_eq!(tables.latest("t").await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_table_the_caller_does_not_know_is_replaced_whole() {
    // A dataset dropped and created again: the new version lists only the new files.
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let tables = Tables::new(store.clone());
    let a = put_file(&store, "t", "a.parquet", &[1, 2]).await;
    tables
        .commit(commit("t", vec![a], vec![], None))
        .await
        .unwrap();
    let b = put_file(&store, "t", "b.parquet", &[7]).await;
    let v = tables
        .commit(commit("t", vec![b.clone()], vec![], None))
        .await
        .unwrap();
    assert_eq!(v, 1);
    let s = tables.snapshot("t", At::Latest).await.unwrap();
    assert_eq!(keys(&s), vec![(b.key, Some(1))]);
    assert_eq!(
        tables
            .snapshot("t", At::Version(0))
            .await
            .unwrap()
            .files
            .len(),
        1
    );
}

#[tokio::test]
async fn types_delta_cannot_store_are_named() {
    let schema = Schema::new(vec![
        Field::new("ok", DataType::Int32, true),
        Field::new(
            "when",
            DataType::Time64(arrow::datatypes::TimeUnit::Microsecond),
            true,
        ),
    ]);
    let err = lakehouse_table::arrow_to_kernel(&schema).unwrap_err();
    assert!(
        matches!(err, TableError::UnsupportedSchema(ref m) if m.contains("\"when\"")),
        "{err}"
    );
    let cased = Schema::new(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("A", DataType::Int32, true),
    ]);
    let err = lakehouse_table::arrow_to_kernel(&cased).unwrap_err();
    assert!(
        matches!(err, TableError::UnsupportedSchema(ref m) if m.contains("case")),
        "{err}"
    );
}

#[tokio::test]
async fn a_local_directory_holds_a_standard_delta_log() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let tables = Tables::new(store.clone());
    let a = put_file(&store, "t", "part-1.parquet", &[1, 2]).await;
    tables
        .commit(commit("t", vec![a], vec![], None))
        .await
        .unwrap();
    let log = std::fs::read_to_string(
        dir.path()
            .join("datasets/t/_delta_log/00000000000000000000.json"),
    )
    .unwrap();
    let actions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let add = actions
        .iter()
        .find_map(|a| a.get("add"))
        .expect("an add action");
    assert_eq!(add["path"], "part-1.parquet");
    let stats: serde_json::Value = serde_json::from_str(add["stats"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            stats["numRecords"].as_u64(),
            stats["minValues"]["id"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert!(actions.iter().any(|a| a.get("protocol").is_some()));
    let meta = actions.iter().find_map(|a| a.get("metaData")).unwrap();
    assert_eq!(meta["configuration"]["lakehouse.schemaFingerprint"], "fp1");
    // A filesystem lists in no particular order; the log reads in order anyway.
    for v in 1..13 {
        let f = put_file(&store, "t", &format!("later-{v}.parquet"), &[v]).await;
        assert_eq!(
            tables
                .commit(commit("t", vec![f], vec![], Some(v - 1)))
                .await
                .unwrap(),
            v
        );
    }
    let latest = tables.snapshot("t", At::Latest).await.unwrap();
    assert_eq!((latest.version, latest.files.len()), (12, 13), "{latest:?}");
    assert_eq!(
        tables
            .snapshot("t", At::Version(5))
            .await
            .unwrap()
            .files
            .len(),
        6
    );
    assert_eq!(tables.history("t", 100).await.unwrap().len(), 13);
}
