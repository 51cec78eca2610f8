//! The registry core: ADR-020, versions, concurrency, fault injection,
//! rehydrate, delete.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use lakehouse_catalogd::{
    CatalogError, ErrorKind, Manifest, Registry, dataset_id_for, manifest_key,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use uuid::Uuid;

use crate::support::{TestStore, manifest_keys, put_parquet, req};

/// Computed independently with Python:
/// `uuid.uuid5(uuid.UUID('a8f3c1d2-4e5b-5a6c-9d8e-7f0a1b2c3d4e'), name)`.
#[test]
fn dataset_ids_match_independent_uuid5() {
    let vectors = [
        ("orders", "1f2906ae-f562-564c-aa86-f487c2afa750"),
        ("tpch/lineitem", "216616c3-6a1f-5e89-b1bb-6ab388af2ff7"),
        ("events-2024.v1", "3bae70c4-0630-5e4d-8e12-2e5469a212bb"),
        ("a", "e407b3cd-f733-5b16-8857-e7238483c721"),
        ("sales/eu/q1_2025", "904187d1-cd54-5771-beb8-d9351d19d71d"),
    ];
    for (name, want) in vectors {
        assert_eq!(
            dataset_id_for(name),
            Uuid::parse_str(want).unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn register_is_idempotent_per_adr_020() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());

    let a = put_parquet(&store, "datasets/orders/a.parquet", 3).await;
    let b = put_parquet(&store, "datasets/orders/b.parquet", 4).await;
    let c = put_parquet(&store, "datasets/orders/c.parquet", 5).await;
    let first = r.register(req("orders", "fp1", vec![a])).await.unwrap();
    assert!(!first.existing);
    let m1 = first.manifest;
    assert_eq!(m1.dataset_id, dataset_id_for("orders"));
    assert_eq!((m1.version, m1.row_count), (1, 3));
    assert_eq!(m1.created_at, m1.updated_at);

    tokio::time::sleep(Duration::from_millis(2)).await;
    let second = r.register(req("orders", "fp1", vec![b, c])).await.unwrap();
    assert!(second.existing);
    let m2 = second.manifest;
    assert_eq!(m2.dataset_id, m1.dataset_id);
    assert_eq!(m2.created_at, m1.created_at);
    assert!(m2.updated_at > m1.updated_at);
    assert_eq!(m2.version, 2);
    // Objects are replaced, not appended.
    assert_eq!(m2.objects.len(), 2);
    assert_eq!(m2.objects[0].key, "datasets/orders/b.parquet");
    assert_eq!(m2.row_count, 9);
    assert_eq!(r.get("orders").unwrap(), m2);

    let err = r.register(req("orders", "fp2", vec![])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FingerprintConflict);
    match &err {
        CatalogError::FingerprintConflict { name, have, got } => {
            assert_eq!(
                (name.as_str(), have.as_str(), got.as_str()),
                ("orders", "fp1", "fp2")
            );
        }
        other => panic!("{other:?}"),
    }
    // The conflict changed nothing, in memory or in the store.
    assert_eq!(r.get("orders").unwrap(), m2);
    assert_eq!(store.puts.load(Ordering::SeqCst), 2);
    let stored = store
        .get(&Path::from(manifest_key("orders")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(Manifest::decode(stored).unwrap(), m2);
}

#[tokio::test]
async fn expected_version_guards_read_modify_write() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let x = put_parquet(&store, "datasets/d/x.parquet", 1).await;
    let mut create = req("d", "fp", vec![]);
    create.expected_version = Some(0);
    assert_eq!(
        r.register(create.clone()).await.unwrap().manifest.version,
        1
    );

    // "Create only" again: the dataset now exists at version 1.
    match r.register(create).await.unwrap_err() {
        CatalogError::VersionMismatch {
            expected, actual, ..
        } => assert_eq!((expected, actual), (0, 1)),
        other => panic!("{other:?}"),
    }
    let mut stale = req("d", "fp", vec![x.clone()]);
    stale.expected_version = Some(7);
    assert_eq!(
        r.register(stale).await.unwrap_err().kind(),
        ErrorKind::VersionMismatch
    );
    assert_eq!(r.get("d").unwrap().version, 1);

    let mut ok = req("d", "fp", vec![x]);
    ok.expected_version = Some(1);
    assert_eq!(r.register(ok).await.unwrap().manifest.version, 2);

    let mut absent = req("nope", "fp", vec![]);
    absent.expected_version = Some(3);
    match r.register(absent).await.unwrap_err() {
        CatalogError::VersionMismatch { actual, .. } => assert_eq!(actual, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.get("nope").unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registers_same_fingerprint_make_one_dataset() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let mut objects = Vec::new();
    for i in 0..64 {
        objects.push(put_parquet(&store, &format!("datasets/hot/k{i}"), 1).await);
    }
    let tasks: Vec<_> = objects
        .into_iter()
        .map(|o| {
            let r = r.clone();
            tokio::spawn(async move { r.register(req("hot", "fp", vec![o])).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    let mut versions = Vec::new();
    for t in tasks {
        let resp = t.await.unwrap();
        assert_eq!(resp.manifest.dataset_id, dataset_id_for("hot"));
        created += usize::from(!resp.existing);
        versions.push(resp.manifest.version);
    }
    assert_eq!(created, 1, "exactly one register may create the dataset");
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=64).collect::<Vec<_>>(),
        "registers are serialized"
    );
    assert_eq!(
        manifest_keys(store.as_ref()).await,
        vec![manifest_key("hot")]
    );
    assert_eq!(r.len(), 1);
    assert_eq!(r.get("hot").unwrap().version, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registers_different_fingerprints_have_one_winner() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move {
                (
                    i,
                    r.register(req("contested", &format!("fp{i}"), vec![]))
                        .await,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(resp)) => {
                assert!(!resp.existing);
                winners.push(i);
            }
            (_, Err(e)) => assert_eq!(e.kind(), ErrorKind::FingerprintConflict, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let m = r.get("contested").unwrap();
    assert_eq!(m.schema_fingerprint, format!("fp{}", winners[0]));
    assert_eq!(m.version, 1);
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_persist_changes_nothing() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let a = put_parquet(&store, "datasets/d/a", 1).await;
    let b = put_parquet(&store, "datasets/d/b", 2).await;
    let before = r.register(req("d", "fp", vec![a])).await.unwrap().manifest;

    store.fail_puts.store(true, Ordering::SeqCst);
    let err = r
        .register(req("d", "fp", vec![b.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    // The table's version is written first, and failed first.
    assert!(err.to_string().contains("datasets/d/_delta_log"), "{err}");
    let err = r.register(req("new", "fp", vec![])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);

    assert_eq!(r.get("d").unwrap(), before);
    assert_eq!(r.get("new").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(r.list(), vec![before.clone()]);

    // Once the store recovers, the next register continues from `before`.
    store.fail_puts.store(false, Ordering::SeqCst);
    let after = r.register(req("d", "fp", vec![b])).await.unwrap().manifest;
    assert_eq!(after.version, before.version + 1);
}

#[tokio::test]
async fn failed_delete_changes_nothing() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let m = r.register(req("d", "fp", vec![])).await.unwrap().manifest;
    store.fail_deletes.store(true, Ordering::SeqCst);
    assert_eq!(r.delete("d").await.unwrap_err().kind(), ErrorKind::Storage);
    assert_eq!(r.get("d").unwrap(), m);
    assert_eq!(manifest_keys(store.as_ref()).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_wait_on_a_slow_persist() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let m = r.register(req("d", "fp", vec![])).await.unwrap().manifest;
    let b = put_parquet(&store, "datasets/d/b", 1).await;

    let held = store.hold.write().await;
    let writer = {
        let r = r.clone();
        tokio::spawn(async move { r.register(req("d", "fp", vec![b])).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!writer.is_finished(), "the put should be held");
    // The register holds the write mutex across the put; reads must not care.
    let read = tokio::time::timeout(Duration::from_secs(1), async { (r.get("d"), r.list()) })
        .await
        .expect("reads completed while a persist was in flight");
    assert_eq!(
        read.0.unwrap(),
        m,
        "the in-flight candidate is not visible yet"
    );
    assert_eq!(read.1.len(), 1);

    drop(held);
    let resp = writer.await.unwrap().unwrap();
    assert_eq!(resp.manifest.version, 2);
    assert_eq!(r.get("d").unwrap().version, 2);
}

#[tokio::test]
async fn a_dropped_register_still_completes_or_never_happened() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let held = store.hold.write().await;
    let fut = r.register(req("d", "fp", vec![]));
    // Poll it until it is parked on the held put, then drop it (a client
    // that disconnected mid-request).
    assert!(
        tokio::time::timeout(Duration::from_millis(50), fut)
            .await
            .is_err()
    );
    drop(held);
    // Memory and store must agree: the detached write finished, or nothing did.
    for _ in 0..100 {
        if r.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.len(), 1);
    assert_eq!(manifest_keys(store.as_ref()).await, vec![manifest_key("d")]);
}

#[tokio::test]
async fn rehydrate_restores_every_manifest() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    for (i, name) in ["orders", "tpch/lineitem", "tpch/orders", "z.parquet"]
        .iter()
        .enumerate()
    {
        let o = put_parquet(&store, &format!("datasets/{name}/k{i}"), i as u64).await;
        r.register(req(name, "fp", vec![o])).await.unwrap();
    }
    r.register(req("orders", "fp", vec![])).await.unwrap();
    // A non-manifest object under the prefix is ignored.
    store
        .put(
            &Path::from("_catalog/manifests/README.txt"),
            PutPayload::from_static(b"hi"),
        )
        .await
        .unwrap();

    let reopened = Registry::open(store.clone()).await.unwrap();
    assert_eq!(reopened.list(), r.list());
    assert_eq!(reopened.get("orders").unwrap().version, 2);
    let names: Vec<String> = reopened.list().into_iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        ["orders", "tpch/lineitem", "tpch/orders", "z.parquet"]
    );
}

#[tokio::test]
async fn rehydrate_fails_on_a_corrupt_manifest_naming_its_key() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    for i in 0..50 {
        r.register(req(&format!("good{i}"), "fp", vec![]))
            .await
            .unwrap();
    }
    store
        .put(
            &Path::from("_catalog/manifests/bad.parquet"),
            PutPayload::from_static(b"PAR1 not really"),
        )
        .await
        .unwrap();
    let err = Registry::open(store.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptManifest);
    assert!(
        err.to_string().contains("_catalog/manifests/bad.parquet"),
        "{err}"
    );
}

#[tokio::test]
async fn rehydrate_rejects_a_manifest_stored_under_another_name() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    r.register(req("real", "fp", vec![])).await.unwrap();
    let bytes: Bytes = store
        .get(&Path::from(manifest_key("real")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    store
        .put(&Path::from(manifest_key("copy")), PutPayload::from(bytes))
        .await
        .unwrap();
    let err = Registry::open(store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptManifest);
    assert!(
        err.to_string().contains("_catalog/manifests/copy.parquet"),
        "{err}"
    );
}

#[tokio::test]
async fn delete_removes_the_object_then_the_entry() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    r.register(req("d", "fp1", vec![])).await.unwrap();
    r.register(req("d", "fp1", vec![])).await.unwrap();
    assert!(r.delete("d").await.unwrap());
    assert_eq!(r.get("d").unwrap_err().kind(), ErrorKind::NotFound);
    assert!(manifest_keys(store.as_ref()).await.is_empty());
    assert!(
        !r.delete("d").await.unwrap(),
        "deleting twice is not an error"
    );
    assert_eq!(
        r.delete("Bad Name").await.unwrap_err().kind(),
        ErrorKind::InvalidName
    );

    // A new fingerprint is allowed now, and the id is the same UUIDv5.
    let again = r.register(req("d", "fp2", vec![])).await.unwrap();
    assert!(!again.existing);
    assert_eq!(again.manifest.version, 1);
    assert_eq!(again.manifest.dataset_id, dataset_id_for("d"));
    assert!(
        Registry::open(store as Arc<dyn ObjectStore>)
            .await
            .unwrap()
            .get("d")
            .is_ok()
    );
}

#[tokio::test]
async fn bad_input_is_rejected_before_anything_changes() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    for (bad, kind) in [
        (req("", "fp", vec![]), ErrorKind::InvalidName),
        (req("Has Caps", "fp", vec![]), ErrorKind::InvalidName),
        (req("a/../b", "fp", vec![]), ErrorKind::InvalidName),
        (req("a", "", vec![]), ErrorKind::EmptyFingerprint),
        (
            req("a", "fp", vec![crate::support::obj("", 1, 1)]),
            ErrorKind::InvalidObject,
        ),
    ] {
        assert_eq!(r.register(bad).await.unwrap_err().kind(), kind);
    }
    assert!(r.is_empty());
    assert_eq!(store.puts.load(Ordering::SeqCst), 0);
    assert_eq!(r.get("UPPER").unwrap_err().kind(), ErrorKind::InvalidName);
}

/// The table's version is committed but the manifest cannot be written: the
/// register took effect (the log is the truth), memory says so, and the
/// next start writes the manifest from the log.
#[tokio::test]
async fn a_committed_version_survives_a_failed_manifest_write() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let a = put_parquet(&store, "datasets/d/a", 1).await;
    let b = put_parquet(&store, "datasets/d/b", 2).await;
    r.register(req("d", "fp", vec![a.clone()])).await.unwrap();
    store.fail_manifest_puts.store(true, Ordering::SeqCst);
    let m = r
        .register(req("d", "fp", vec![a.clone(), b.clone()]))
        .await
        .unwrap()
        .manifest;
    assert_eq!((m.table_version, m.row_count), (Some(1), 3));
    assert_eq!(r.get("d").unwrap(), m);
    // A register that changes no file has nothing durable: it fails.
    let err = r
        .register(req("d", "fp", vec![a.clone(), b.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage);
    store.fail_manifest_puts.store(false, Ordering::SeqCst);
    let reopened = Registry::open(store.clone()).await.unwrap();
    let back = reopened.get("d").unwrap();
    assert_eq!((back.objects, back.table_version), (vec![a, b], Some(1)));
}
