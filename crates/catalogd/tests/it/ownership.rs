//! A dataset references only what it owns: register refuses other
//! datasets' objects, internal keys, missing objects, wrong sizes and
//! non-Parquet bytes; a stored manifest that lists such keys is quarantined
//! at start-up, not served.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use http::{Request, StatusCode};
use lakehouse_catalogd::http::router;
use lakehouse_catalogd::{
    CatalogError, ErrorKind, Manifest, ObjectError, ObjectRef, OwnershipError, Registry,
    dataset_id_for, manifest_key,
};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tower::ServiceExt;

use crate::support::{TestStore, obj, put_parquet, req};

/// The attack of the hardening issue: a `write` token registers a dataset
/// whose objects are someone else's. Every variant is a 400 naming the
/// object and the reason, and changes nothing.
#[tokio::test]
async fn register_refuses_keys_the_dataset_does_not_own() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let victim = put_parquet(&store, "datasets/victim/0000-a-00000.parquet", 5).await;
    r.register(req("victim", "fp", vec![victim.clone()]))
        .await
        .unwrap();
    let nested = put_parquet(&store, "datasets/evil/sub/x.parquet", 1).await;
    for (key, why) in [
        (victim.key.as_str(), "belongs to dataset \"victim\""),
        ("_catalog/manifests/victim.parquet", "internal"),
        ("_vectors/docs.wal/00000000000000000001", "internal"),
        ("_vectors/docs.lhv1", "internal"),
        ("_ingest/inflight/x.json", "internal"),
        // Dataset evil does not own the objects of dataset evil/sub.
        (nested.key.as_str(), "belongs to dataset \"evil/sub\""),
        ("../../etc/passwd", "'..' segment"),
        ("datasets/evil/../victim/x", "'..' segment"),
        ("raw/x.parquet", "not under datasets/"),
        ("datasets/evil/_delta_log", "metadata"),
    ] {
        let mut objects = vec![];
        // The bad object is second: the index in the message is exact.
        objects.push(put_parquet(&store, "datasets/evil/ok.parquet", 1).await);
        objects.push(obj(key, 100, 1));
        let err = r.register(req("evil", "fp", objects)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidObject, "{key}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("objects[1] {key:?}")), "{msg}");
        assert!(msg.contains(why), "{key}: {msg}");
    }
    assert_eq!(r.get("evil").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        store.puts.load(Ordering::SeqCst),
        1,
        "only victim's manifest"
    );
}

#[tokio::test]
async fn register_refuses_missing_resized_and_non_parquet_objects() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let good = put_parquet(&store, "datasets/d/good.parquet", 3).await;
    let first = put_parquet(&store, "datasets/d/first.parquet", 3).await;
    store
        .inner
        .put(
            &Path::from("datasets/d/notes.json"),
            PutPayload::from_static(br#"{"not": "parquet, but long enough"}"#),
        )
        .await
        .unwrap();
    store
        .inner
        .put(
            &Path::from("datasets/d/tiny"),
            PutPayload::from_static(b"PAR1"),
        )
        .await
        .unwrap();
    for (key, bytes) in [
        // Ends like Parquet, but the head is not the magic.
        ("datasets/d/headless", b"JUNKPAR1\0\0\0\0PAR1".to_vec()),
        // Starts like Parquet, but the tail is not.
        ("datasets/d/tailless", b"PAR1 then no footer".to_vec()),
    ] {
        store
            .inner
            .put(&Path::from(key), PutPayload::from(bytes))
            .await
            .unwrap();
    }
    let mut lying_footer = b"PAR1".repeat(4);
    lying_footer[8..12].copy_from_slice(&1000u32.to_le_bytes());
    store
        .inner
        .put(
            &Path::from("datasets/d/lying"),
            PutPayload::from(lying_footer),
        )
        .await
        .unwrap();
    let resized = format!("is {} bytes, not the stated {}", good.size, good.size + 1);
    let cases: Vec<(ObjectRef, &str)> = vec![
        (obj("datasets/d/missing.parquet", 10, 1), "no object exists"),
        (obj(&good.key, good.size + 1, 3), &resized),
        (
            obj("datasets/d/notes.json", 35, 1),
            "does not start with the Parquet magic",
        ),
        (
            obj("datasets/d/headless", 16, 1),
            "does not start with the Parquet magic",
        ),
        (
            obj("datasets/d/tailless", 19, 1),
            "does not end in the Parquet magic",
        ),
        (
            obj("datasets/d/tiny", 4, 1),
            "shorter than the smallest Parquet file",
        ),
        (obj("datasets/d/lying", 16, 1), "footer claims 1000 bytes"),
    ];
    for (o, why) in cases {
        let err = r
            .register(req("d", "fp", vec![first.clone(), o.clone()]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidObject, "{err}");
        assert!(matches!(
            &err,
            CatalogError::InvalidObject { index: 1, key, .. } if *key == o.key
        ));
        assert!(err.to_string().contains(why), "{err}");
    }
    assert!(r.is_empty());
    assert_eq!(store.puts.load(Ordering::SeqCst), 0);
    // The good object alone is fine.
    r.register(req("d", "fp", vec![good])).await.unwrap();
}

/// Objects the manifest already lists (same key and size) are not fetched
/// again: an append costs checks for its new objects only.
#[tokio::test]
async fn only_new_objects_are_checked() {
    let store = TestStore::new();
    let r = Registry::empty(store.clone());
    let mut objects = vec![];
    for i in 0..20 {
        objects.push(put_parquet(&store, &format!("datasets/d/{i}"), 1).await);
    }
    let gets = || store.gets.load(Ordering::SeqCst);
    r.register(req("d", "fp", objects.clone())).await.unwrap();
    assert_eq!(gets(), 40, "a HEAD and a ranged GET per object");
    objects.push(put_parquet(&store, "datasets/d/new", 1).await);
    r.register(req("d", "fp", objects.clone())).await.unwrap();
    assert_eq!(gets(), 42);
    // A listed key with another size is checked again (and refused).
    objects[0].size += 1;
    let err = r.register(req("d", "fp", objects)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidObject);
}

/// Writes a manifest for `name` listing `keys` straight into the store, as an
/// older version (or a hand edit) could have.
async fn store_manifest(store: &TestStore, name: &str, keys: &[&str]) {
    let t = lakehouse_catalogd::manifest::now_micros();
    let m = Manifest {
        dataset_id: dataset_id_for(name),
        name: name.to_string(),
        schema_fingerprint: "fp".to_string(),
        objects: keys.iter().map(|k| obj(k, 10, 1)).collect(),
        row_count: keys.len() as u64,
        created_at: t,
        updated_at: t,
        version: 1,
        table_version: None,
    };
    store
        .inner
        .put(
            &Path::from(manifest_key(name)),
            PutPayload::from(m.encode().unwrap()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn stored_manifests_with_foreign_keys_are_quarantined_not_served() {
    let store = TestStore::new();
    let victim = put_parquet(&store, "datasets/victim/a.parquet", 2).await;
    Registry::empty(store.clone())
        .register(req("victim", "fp", vec![victim.clone()]))
        .await
        .unwrap();
    store_manifest(&store, "thief", &["datasets/thief/x", &victim.key]).await;
    store_manifest(&store, "inner", &["_vectors/docs.lhv1"]).await;
    store_manifest(&store, "escape", &["../../etc/passwd"]).await;
    store_manifest(&store, "fine", &["datasets/fine/x"]).await;

    let r = Registry::open(store.clone()).await.unwrap();
    // Everything is accounted for: listed, nothing silently dropped.
    let names: Vec<String> = r.list().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["escape", "fine", "inner", "thief", "victim"]);
    let quarantined: Vec<(String, String)> = r
        .quarantined()
        .into_iter()
        .map(|(n, q)| (n, q.object))
        .collect();
    assert_eq!(
        quarantined,
        [
            ("escape".to_string(), "../../etc/passwd".to_string()),
            ("inner".to_string(), "_vectors/docs.lhv1".to_string()),
            ("thief".to_string(), victim.key.clone()),
        ]
    );
    // But not served: nothing reads (or deletes) through them.
    let err = r.get("thief").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Quarantined);
    let msg = err.to_string();
    assert!(
        msg.contains("\"thief\"")
            && msg.contains(&victim.key)
            && msg.contains("belongs to dataset \"victim\"")
            && msg.contains("DELETE /catalog/manifest/thief"),
        "{msg}"
    );
    assert!(matches!(
        r.get("escape").unwrap_err(),
        CatalogError::Quarantined {
            source: OwnershipError::InvalidKey(_),
            ..
        }
    ));
    assert!(r.get("fine").is_ok() && r.get("victim").is_ok());

    // Over HTTP: 409 with the reason.
    let app = router(Arc::new(r.clone()));
    let resp = app
        .oneshot(
            Request::get("/catalog/manifest/thief")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "quarantined");

    // Registering it again with objects it owns lifts the quarantine; the
    // keys it listed are forgotten, not deleted.
    let own = put_parquet(&store, "datasets/thief/mine", 1).await;
    let resp = r.register(req("thief", "fp", vec![own])).await.unwrap();
    assert!(resp.existing);
    assert_eq!(resp.manifest.version, 2);
    assert!(r.get("thief").is_ok());
    // An admin delete removes a quarantined manifest too.
    assert!(r.delete("inner").await.unwrap());
    let reopened = Registry::open(store.clone()).await.unwrap();
    assert_eq!(reopened.quarantined().len(), 1, "only escape is left");
    assert!(
        store
            .inner
            .head(&Path::from(victim.key.as_str()))
            .await
            .is_ok()
    );
}

/// A quarantined manifest's keys are untrusted: registering the same list
/// again checks every object, not just the new ones.
#[tokio::test]
async fn a_quarantined_manifest_vouches_for_nothing() {
    let store = TestStore::new();
    store_manifest(
        &store,
        "q",
        &["datasets/q/gone", "_catalog/manifests/x.parquet"],
    )
    .await;
    let r = Registry::open(store.clone()).await.unwrap();
    let err = r
        .register(req("q", "fp", vec![obj("datasets/q/gone", 10, 1)]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CatalogError::InvalidObject {
                source: ObjectError::Missing,
                ..
            }
        ),
        "{err}"
    );
}

/// A manifest too large to be one of ours is not read into memory.
#[tokio::test]
async fn an_oversized_manifest_object_stops_start_up_naming_its_key() {
    let store = TestStore::new();
    let big = vec![0u8; (lakehouse_catalogd::registry::MAX_MANIFEST_BYTES + 1) as usize];
    store
        .inner
        .put(&Path::from(manifest_key("huge")), PutPayload::from(big))
        .await
        .unwrap();
    let err = Registry::open(store).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptManifest);
    let msg = err.to_string();
    assert!(
        msg.contains("_catalog/manifests/huge.parquet") && msg.contains("at most"),
        "{msg}"
    );
}
