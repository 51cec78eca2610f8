//! Every dataset a Delta table, the catalog's side: registers commit table
//! versions, past versions and the history are served, a version the log
//! has but the manifest does not (a crash between the two writes) is
//! rolled forward at start-up, a dataset from before tables is converted,
//! and a schema Delta cannot store leaves a dataset without a table.

use std::sync::Arc;

use arrow::array::{RecordBatch, Time64MicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use lakehouse_catalogd::{
    At, Catalog, ErrorKind, Manifest, ObjectRef, Registry, VacuumPolicy, dataset_id_for,
    manifest_key,
};
use lakehouse_table::{Commit, NewFile, Tables};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::file::metadata::ParquetMetaDataReader;

use crate::support::{TestStore, put_parquet, req};

fn keys(m: &Manifest) -> Vec<&str> {
    m.objects.iter().map(|o| o.key.as_str()).collect()
}

#[tokio::test]
async fn registers_are_table_versions_and_past_ones_are_served() {
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    let a = put_parquet(&store, "datasets/d/a.parquet", 3).await;
    let b = put_parquet(&store, "datasets/d/b.parquet", 2).await;
    let c = put_parquet(&store, "datasets/d/c.parquet", 1).await;

    let r0 = reg.register(req("d", "fp", vec![a.clone()])).await.unwrap();
    assert_eq!(r0.manifest.table_version, Some(0));
    let r1 = reg
        .register(req("d", "fp", vec![a.clone(), b.clone()]))
        .await
        .unwrap();
    assert_eq!(r1.manifest.table_version, Some(1));
    // The same objects again: a new manifest version, no new table version.
    let same = reg
        .register(req("d", "fp", vec![a.clone(), b.clone()]))
        .await
        .unwrap();
    assert_eq!(
        (same.manifest.version, same.manifest.table_version),
        (3, Some(1))
    );
    let r2 = reg.register(req("d", "fp", vec![c.clone()])).await.unwrap();
    assert_eq!(r2.manifest.table_version, Some(2));

    let v0 = reg.get_at("d", At::Version(0)).await.unwrap();
    assert_eq!(
        (keys(&v0), v0.row_count, v0.table_version),
        (vec![a.key.as_str()], 3, Some(0))
    );
    let v1 = reg.get_at("d", At::Version(1)).await.unwrap();
    assert_eq!(
        (keys(&v1), v1.row_count),
        (vec![a.key.as_str(), b.key.as_str()], 5)
    );
    assert_eq!(
        reg.get_at("d", At::Latest).await.unwrap(),
        reg.get("d").unwrap()
    );
    let err = reg.get_at("d", At::Version(3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchVersion, "{err}");
    let err = reg.get_at("nope", At::Version(0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let h = reg.history("d", 10).await.unwrap();
    let versions: Vec<i64> = h.iter().map(|c| c.version).collect();
    assert_eq!(versions, vec![2, 1, 0]);
    assert_eq!((h[0].files_removed, h[0].rows_removed), (2, Some(5)));
    // Replaced objects stay stored for the versions that list them.
    assert!(store.head(&Path::from(a.key.as_str())).await.is_ok());
}

#[tokio::test]
async fn a_version_the_manifest_missed_is_rolled_forward_at_start() {
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    let a = put_parquet(&store, "datasets/d/a.parquet", 3).await;
    reg.register(req("d", "fp", vec![a.clone()])).await.unwrap();
    let before = reg.get("d").unwrap();

    // The catalog committed version 1 and died before writing the manifest.
    let b = put_parquet(&store, "datasets/d/b.parquet", 4).await;
    let bytes = store
        .get(&Path::from(b.key.as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&bytes)
        .unwrap();
    let tables = Tables::new(store.clone());
    let commit = Commit {
        name: "d".to_string(),
        fingerprint: "fp".to_string(),
        adds: vec![NewFile {
            key: b.key.clone(),
            size: b.size,
            metadata: Arc::new(metadata),
        }],
        removes: vec![],
        base: Some(0),
    };
    assert_eq!(tables.commit(commit).await.unwrap(), 1);

    let reopened = Registry::open(store.clone()).await.unwrap();
    let m = reopened.get("d").unwrap();
    assert_eq!(keys(&m), vec![a.key.as_str(), b.key.as_str()]);
    assert_eq!(
        (m.row_count, m.table_version, m.version),
        (7, Some(1), before.version + 1)
    );
    // And it is what the stored manifest says now.
    let again = Registry::open(store.clone()).await.unwrap();
    assert_eq!(again.get("d").unwrap(), m);
}

#[tokio::test]
async fn a_dataset_from_before_tables_is_converted_at_start() {
    let store = TestStore::new();
    let a = put_parquet(&store, "datasets/old/a.parquet", 3).await;
    let b = put_parquet(&store, "datasets/old/b.parquet", 2).await;
    let t = chrono::DateTime::from_timestamp_micros(1_767_225_600_000_000).unwrap();
    let legacy = Manifest {
        dataset_id: dataset_id_for("old"),
        name: "old".to_string(),
        schema_fingerprint: "fp".to_string(),
        objects: vec![a.clone(), b.clone()],
        row_count: 5,
        created_at: t,
        updated_at: t,
        version: 4,
        table_version: None,
    };
    store
        .put(
            &Path::from(manifest_key("old")),
            PutPayload::from(legacy.encode().unwrap()),
        )
        .await
        .unwrap();
    let reg = Registry::open(store.clone()).await.unwrap();
    let m = reg.get("old").unwrap();
    assert_eq!((m.table_version, m.version, m.row_count), (Some(0), 4, 5));
    let h = reg.history("old", 5).await.unwrap();
    assert_eq!(
        (h.len(), h[0].operation.as_str(), h[0].rows_added),
        (1, "CREATE TABLE", 5)
    );
    let c = put_parquet(&store, "datasets/old/c.parquet", 1).await;
    let r = reg.register(req("old", "fp", vec![a, b, c])).await.unwrap();
    assert_eq!(r.manifest.table_version, Some(1));
}

#[tokio::test]
async fn a_schema_delta_cannot_store_leaves_the_dataset_without_a_table() {
    let store = TestStore::new();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "at",
        DataType::Time64(TimeUnit::Microsecond),
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Time64MicrosecondArray::from(vec![1, 2]))],
    )
    .unwrap();
    let obj = put_batch(&store, "datasets/t/a.parquet", &batch).await;
    let reg = Registry::empty(store.clone());
    let r = reg
        .register(req("t", "fp", vec![obj.clone()]))
        .await
        .unwrap();
    assert_eq!(r.manifest.table_version, None);
    let err = reg.history("t", 5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoTable, "{err}");
    let err = reg.get_at("t", At::Version(0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoTable, "{err}");
    // Everything else works as before.
    let r = reg.register(req("t", "fp", vec![])).await.unwrap();
    assert_eq!((r.manifest.version, r.manifest.table_version), (2, None));
    assert!(
        Registry::open(store.clone())
            .await
            .unwrap()
            .get("t")
            .is_ok()
    );
}

#[tokio::test]
async fn a_dropped_dataset_created_again_starts_from_its_new_objects() {
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    let a = put_parquet(&store, "datasets/d/a.parquet", 3).await;
    reg.register(req("d", "fp", vec![a])).await.unwrap();
    assert!(Catalog::delete(&reg, "d").await.unwrap());
    let b = put_parquet(&store, "datasets/d/b.parquet", 2).await;
    let r = reg
        .register(req("d", "fp2", vec![b.clone()]))
        .await
        .unwrap();
    assert_eq!((r.existing, r.manifest.table_version), (false, Some(1)));
    let now = reg.get_at("d", At::Version(1)).await.unwrap();
    assert_eq!(
        (keys(&now), now.schema_fingerprint.as_str()),
        (vec![b.key.as_str()], "fp2")
    );
}

/// `batch` stored as a Parquet file at `key`.
async fn put_batch(store: &TestStore, key: &str, batch: &RecordBatch) -> ObjectRef {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let size = buf.len() as u64;
    store
        .put(&Path::from(key), PutPayload::from(buf))
        .await
        .unwrap();
    ObjectRef {
        key: key.to_string(),
        size,
        row_count: batch.num_rows() as u64,
    }
}

/// A Parquet file at `key` with nullable Int64 columns `names` (one row).
async fn put_columns(store: &TestStore, key: &str, names: &[&str]) -> ObjectRef {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(*n, DataType::Int64, true))
        .collect();
    let columns: Vec<arrow::array::ArrayRef> = names
        .iter()
        .map(|_| Arc::new(arrow::array::Int64Array::from(vec![1])) as _)
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    put_batch(store, key, &batch).await
}

/// Schema evolution is asked for (`evolve_schema`): without it another
/// fingerprint is a conflict; with it a schema that keeps every column
/// commits (the old version keeps its fingerprint), one that drops a
/// column is refused naming it, and nothing changes.
#[tokio::test]
async fn an_evolved_schema_must_keep_every_column() {
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    let a = put_columns(&store, "datasets/d/a.parquet", &["id", "v"]).await;
    reg.register(req("d", "fp1", vec![a.clone()]))
        .await
        .unwrap();
    let b = put_columns(&store, "datasets/d/b.parquet", &["id", "v", "note"]).await;
    let plain = req("d", "fp2", vec![a.clone(), b.clone()]);
    let err = reg.register(plain.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FingerprintConflict, "{err}");

    let mut evolve = plain;
    evolve.evolve_schema = true;
    let r = reg.register(evolve).await.unwrap();
    assert_eq!(r.manifest.table_version, Some(1));
    assert_eq!(r.manifest.schema_fingerprint, "fp2");
    assert_eq!(
        reg.get_at("d", At::Version(0))
            .await
            .unwrap()
            .schema_fingerprint,
        "fp1"
    );

    let c = put_columns(&store, "datasets/d/c.parquet", &["id", "note"]).await;
    let mut dropped = req("d", "fp3", vec![a, b, c]);
    dropped.evolve_schema = true;
    let err = reg.register(dropped).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FingerprintConflict, "{err}");
    assert!(err.to_string().contains("column \"v\" is missing"), "{err}");
    let now = reg.get("d").unwrap();
    assert_eq!(
        (now.table_version, now.schema_fingerprint.as_str()),
        (Some(1), "fp2")
    );
    assert_eq!(reg.history("d", 10).await.unwrap().len(), 2);
}

/// Dropping a dataset says what a vacuum of the name will remove: every
/// file it owns (not a nested dataset's, not an in-flight ingest's) and its
/// table's log; the vacuum does exactly that, after which the name starts a
/// new table at version 0.
#[tokio::test]
async fn drop_says_what_vacuum_removes_and_vacuum_removes_it() {
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    reg.set_vacuum_policy(VacuumPolicy {
        keep_versions: 1,
        keep_for_hours: 0,
        grace_secs: 0,
    });
    let a = put_parquet(&store, "datasets/d/a.parquet", 3).await;
    reg.register(req("d", "fp", vec![a.clone()])).await.unwrap();
    let b = put_parquet(&store, "datasets/d/b.parquet", 2).await;
    reg.register(req("d", "fp", vec![a.clone(), b.clone()]))
        .await
        .unwrap();
    let nested = put_parquet(&store, "datasets/d/sub/x.parquet", 1).await;
    reg.register(req("d/sub", "fp", vec![nested.clone()]))
        .await
        .unwrap();

    let report = reg.drop_dataset("d").await.unwrap().expect("it existed");
    assert!(report.dropped && report.dry_run, "{report:?}");
    assert_eq!(report.latest_version, 1);
    let log: Vec<&String> = report
        .files
        .iter()
        .filter(|k| k.contains("/_delta_log/"))
        .collect();
    assert_eq!(log.len(), 2, "{report:?}");
    let data: Vec<&String> = report
        .files
        .iter()
        .filter(|k| !k.contains("/_delta_log/"))
        .collect();
    assert_eq!(data, [&a.key, &b.key]);
    assert!(report.bytes >= a.size + b.size);
    assert!(reg.drop_dataset("d").await.unwrap().is_none());
    assert!(
        store.head(&Path::from(a.key.as_str())).await.is_ok(),
        "drop deletes nothing"
    );

    // The vacuum removes what the drop said, and nothing else.
    assert_eq!(reg.vacuum("d", true).await.unwrap().files, report.files);
    let done = reg.vacuum("d", false).await.unwrap();
    assert_eq!(
        (done.files.clone(), done.dry_run),
        (report.files.clone(), false)
    );
    for k in &report.files {
        assert!(
            store.head(&Path::from(k.as_str())).await.is_err(),
            "{k} survived"
        );
    }
    assert_eq!(reg.get("d/sub").unwrap().row_count, 1);
    assert!(store.head(&Path::from(nested.key.as_str())).await.is_ok());
    // Nothing is left: the name is unknown to vacuum, and starts afresh.
    assert_eq!(
        reg.vacuum("d", false).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let c = put_parquet(&store, "datasets/d/c.parquet", 4).await;
    let r = reg.register(req("d", "fp", vec![c])).await.unwrap();
    assert_eq!(r.manifest.table_version, Some(0));
    assert_eq!(reg.history("d", 10).await.unwrap().len(), 1);

    // Within the grace period the drop still lists everything (and says
    // until when the files stay); a vacuum then removes nothing yet.
    reg.set_vacuum_policy(VacuumPolicy::default());
    let e = put_parquet(&store, "datasets/e/a.parquet", 1).await;
    reg.register(req("e", "fp", vec![e.clone()])).await.unwrap();
    let report = reg.drop_dataset("e").await.unwrap().unwrap();
    assert!(report.files.contains(&e.key), "{report:?}");
    assert!(
        report.files.iter().any(|k| k.contains("/_delta_log/")),
        "{report:?}"
    );
    assert_eq!(report.held_files, 1, "{report:?}");
    assert!(report.held_until.is_some(), "{report:?}");
    let now = reg.vacuum("e", false).await.unwrap();
    assert!(now.files.is_empty() && now.held_files == 1, "{now:?}");
    assert!(store.head(&Path::from(e.key.as_str())).await.is_ok());
}

/// Vacuum deletes exactly the files no kept version lists — never an
/// in-flight ingest's, never one inside the grace period, never another
/// dataset's — and a vacuumed version is refused by name afterwards.
#[tokio::test]
async fn vacuum_keeps_what_kept_versions_and_running_ingests_use() {
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    // Versions 0..=3, each replacing the last: four files, one per version.
    let mut files = vec![];
    for i in 0..4 {
        let f = put_parquet(&store, &format!("datasets/d/v{i}.parquet"), i + 1).await;
        reg.register(req("d", "fp", vec![f.clone()])).await.unwrap();
        files.push(f);
    }
    let nested = put_parquet(&store, "datasets/d/sub/x.parquet", 1).await;
    reg.register(req("d/sub", "fp", vec![nested.clone()]))
        .await
        .unwrap();
    // An ingest in flight: its journal, and an object it has not registered yet.
    store
        .put(
            &Path::from("_ingest/inflight/00ab-cd.json"),
            PutPayload::from_static(b"{}"),
        )
        .await
        .unwrap();
    let pending = put_parquet(&store, "datasets/d/00ab-cd-00000.parquet", 1).await;
    let stray = put_parquet(&store, "datasets/d/stray.parquet", 1).await;

    // The default grace (an hour) protects everything just written.
    let r = reg.vacuum("d", true).await.unwrap();
    assert!(r.files.is_empty(), "{r:?}");

    reg.set_vacuum_policy(VacuumPolicy {
        keep_versions: 2,
        keep_for_hours: 0,
        grace_secs: 0,
    });
    let dry = reg.vacuum("d", true).await.unwrap();
    assert_eq!((dry.oldest_kept_version, dry.latest_version), (2, 3));
    let doomed = vec![
        stray.key.clone(),
        files[0].key.clone(),
        files[1].key.clone(),
    ];
    let mut want = doomed.clone();
    want.sort();
    assert_eq!(dry.files, want);
    assert!(
        store.head(&Path::from(files[0].key.as_str())).await.is_ok(),
        "dry run deletes nothing"
    );
    assert_eq!(reg.get_at("d", At::Version(0)).await.unwrap().row_count, 1);

    let done = reg.vacuum("d", false).await.unwrap();
    assert_eq!(done.files, want);
    for k in &doomed {
        assert!(
            store.head(&Path::from(k.as_str())).await.is_err(),
            "{k} survived"
        );
    }
    for k in [&files[2].key, &files[3].key, &nested.key, &pending.key] {
        assert!(
            store.head(&Path::from(k.as_str())).await.is_ok(),
            "{k} was deleted"
        );
    }
    let err = reg.get_at("d", At::Version(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchVersion, "{err}");
    assert!(err.to_string().contains("vacuumed"), "{err}");
    assert_eq!(reg.get_at("d", At::Version(2)).await.unwrap().row_count, 3);
    let err = reg.restore("d", At::Version(0)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchVersion, "{err}");
    // Nothing left to do, and the history is intact.
    assert!(reg.vacuum("d", false).await.unwrap().files.is_empty());
    assert_eq!(reg.history("d", 10).await.unwrap().len(), 4);
}

/// With a compaction policy, a dataset past N small files is compacted in
/// the background: one file, the same rows, an OPTIMIZE version.
#[tokio::test]
async fn small_files_past_the_policy_are_compacted_in_the_background() {
    use lakehouse_catalogd::CompactionPolicy;
    let store = TestStore::new();
    let reg = Registry::empty(store.clone());
    reg.set_compaction_policy(CompactionPolicy {
        auto_after_files: 5,
        small_file_bytes: 1 << 20,
    });
    let mut objects = vec![];
    for i in 0..5 {
        objects.push(put_parquet(&store, &format!("datasets/d/p{i}.parquet"), 10).await);
        reg.register(req("d", "fp", objects.clone())).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = reg.get("d").unwrap();
        if m.objects.len() == 1 {
            assert_eq!(m.row_count, 50);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not compacted: {m:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let h = reg.history("d", 10).await.unwrap();
    assert_eq!(h[0].operation, "OPTIMIZE");
}
