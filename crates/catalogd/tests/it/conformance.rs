//! The [`Catalog`] contract, one suite run against every implementation: the
//! in-process [`Registry`] and the [`CatalogClient`] talking to it over a
//! real socket (as `object_store`'s integration suite is run against every
//! store). Both must answer alike: the same manifests, and every failure as
//! the same [`ErrorKind`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use lakehouse_catalogd::http::router;
use lakehouse_catalogd::{
    At, Catalog, CatalogClient, CatalogError, ErrorKind, RegisterRequest, Registry,
};

use crate::support::{TestStore, put_parquet, req};

#[tokio::test]
async fn the_registry_keeps_the_contract() {
    let store = TestStore::new();
    let registry = Registry::empty(store.clone());
    conformance(&registry, &store, ErrorKind::Storage).await;
}

#[tokio::test]
async fn the_client_keeps_the_contract() {
    let store = TestStore::new();
    let registry = Registry::empty(store.clone());
    let url = crate::http::serve(router(Arc::new(registry))).await;
    // A failing store is reported by a remote catalog as its 500, `Internal`.
    conformance(&CatalogClient::new(&url), &store, ErrorKind::Internal).await;
}

/// Table versions: the manifest of each, the history, and the refusals.
async fn versions(catalog: &dyn Catalog, now: &lakehouse_catalogd::Manifest) {
    assert_eq!(now.table_version, Some(1));
    let v0 = catalog.get_at("tpch/orders", At::Version(0)).await.unwrap();
    assert_eq!((v0.row_count, v0.table_version), (4, Some(0)));
    assert_eq!(
        catalog.get_at("tpch/orders", At::Version(1)).await.unwrap(),
        *now
    );
    assert_eq!(
        catalog.get_at("tpch/orders", At::Latest).await.unwrap(),
        *now
    );
    let later = chrono::Utc::now() + chrono::Duration::days(1);
    assert_eq!(
        catalog
            .get_at("tpch/orders", At::Time(later))
            .await
            .unwrap()
            .table_version,
        Some(1)
    );
    let h = catalog.history("tpch/orders", 10).await.unwrap();
    assert_eq!(h.iter().map(|c| c.version).collect::<Vec<_>>(), vec![1, 0]);
    assert_eq!(
        catalog.history("tpch/orders", 1).await.unwrap(),
        h[..1].to_vec()
    );
    assert_eq!(
        kind(catalog.get_at("tpch/orders", At::Version(2)).await),
        ErrorKind::NoSuchVersion
    );
    let before = chrono::DateTime::from_timestamp(0, 0).unwrap();
    assert_eq!(
        kind(catalog.get_at("tpch/orders", At::Time(before)).await),
        ErrorKind::NoSuchVersion
    );
    // One file: nothing to compact, the manifest stays.
    let c = catalog
        .compact("tpch/orders", Default::default())
        .await
        .unwrap();
    assert_eq!((c.compacted, &c.manifest), (None, now));
    // Restore version 0 as version 2.
    let restored = catalog
        .restore("tpch/orders", At::Version(0))
        .await
        .unwrap();
    assert_eq!((restored.row_count, restored.table_version), (4, Some(2)));
    assert_eq!(catalog.get("tpch/orders").await.unwrap(), restored);
    assert_eq!(
        kind(catalog.restore("tpch/orders", At::Version(9)).await),
        ErrorKind::NoSuchVersion
    );
    assert_eq!(
        kind(catalog.compact("nope", Default::default()).await),
        ErrorKind::NotFound
    );
    assert_eq!(kind(catalog.history("nope", 5).await), ErrorKind::NotFound);
    assert_eq!(
        kind(catalog.get_at("nope", At::Version(0)).await),
        ErrorKind::NotFound
    );
}

fn kind<T: std::fmt::Debug>(r: Result<T, CatalogError>) -> ErrorKind {
    r.unwrap_err().kind()
}

/// The whole contract against `catalog`, whose objects live in `store`;
/// `storage_failure` is how a failing store is reported.
async fn conformance(catalog: &dyn Catalog, store: &TestStore, storage_failure: ErrorKind) {
    assert!(catalog.list().await.unwrap().is_empty());
    assert_eq!(kind(catalog.get("tpch/orders").await), ErrorKind::NotFound);
    assert!(!catalog.delete("tpch/orders").await.unwrap());

    let k = put_parquet(store, "datasets/tpch/orders/k", 4).await;
    let k2 = put_parquet(store, "datasets/tpch/orders/k2", 5).await;
    let r = catalog
        .register(req("tpch/orders", "fp", vec![k]))
        .await
        .unwrap();
    assert!(!r.existing);
    assert_eq!((r.manifest.row_count, r.manifest.version), (4, 1));

    // ADR-020: the same fingerprint again keeps the id and the creation time.
    let r2 = catalog
        .register(req("tpch/orders", "fp", vec![k2.clone()]))
        .await
        .unwrap();
    assert!(r2.existing);
    assert_eq!(r2.manifest.dataset_id, r.manifest.dataset_id);
    assert_eq!(r2.manifest.created_at, r.manifest.created_at);
    assert_eq!((r2.manifest.row_count, r2.manifest.version), (5, 2));
    assert_eq!(catalog.get("tpch/orders").await.unwrap(), r2.manifest);
    assert_eq!(catalog.list().await.unwrap(), vec![r2.manifest.clone()]);

    refusals(catalog, k2).await;
    versions(catalog, &r2.manifest).await;

    store.fail_puts.store(true, Ordering::SeqCst);
    assert_eq!(
        kind(catalog.register(req("x", "fp", vec![])).await),
        storage_failure
    );
    store.fail_puts.store(false, Ordering::SeqCst);
    assert_eq!(kind(catalog.get("x").await), ErrorKind::NotFound);

    assert!(catalog.delete("tpch/orders").await.unwrap());
    assert!(!catalog.delete("tpch/orders").await.unwrap());
    assert_eq!(kind(catalog.get("tpch/orders").await), ErrorKind::NotFound);
    assert!(catalog.list().await.unwrap().is_empty());

    let mut create_only = RegisterRequest::new("fresh", "fp", vec![]);
    create_only.expected_version = Some(0);
    assert_eq!(
        catalog
            .register(create_only.clone())
            .await
            .unwrap()
            .manifest
            .version,
        1
    );
    assert_eq!(
        kind(catalog.register(create_only).await),
        ErrorKind::VersionMismatch
    );
}

/// Every refusal leaves `tpch/orders` as it was.
async fn refusals(catalog: &dyn Catalog, k2: lakehouse_catalogd::ObjectRef) {
    let before = catalog.get("tpch/orders").await.unwrap();
    let conflict = catalog.register(req("tpch/orders", "other", vec![])).await;
    assert_eq!(kind(conflict), ErrorKind::FingerprintConflict);
    let mut stale = req("tpch/orders", "fp", vec![]);
    stale.expected_version = Some(1);
    assert_eq!(
        kind(catalog.register(stale).await),
        ErrorKind::VersionMismatch
    );
    assert_eq!(
        kind(catalog.register(req("BAD", "fp", vec![])).await),
        ErrorKind::InvalidName
    );
    assert_eq!(
        kind(catalog.register(req("ok", "", vec![])).await),
        ErrorKind::EmptyFingerprint
    );
    assert_eq!(kind(catalog.get("a b").await), ErrorKind::InvalidName);
    assert_eq!(kind(catalog.delete("a b").await), ErrorKind::InvalidName);
    // Another dataset's object, and one listed twice.
    let theirs = catalog.register(req("other", "fp", vec![k2.clone()])).await;
    assert_eq!(kind(theirs), ErrorKind::InvalidObject);
    let twice = catalog
        .register(req("tpch/orders", "fp", vec![k2.clone(), k2]))
        .await;
    assert_eq!(kind(twice), ErrorKind::InvalidRequest);
    assert_eq!(catalog.get("tpch/orders").await.unwrap(), before);
    assert_eq!(kind(catalog.get("ok").await), ErrorKind::NotFound);
}
