//! [`RulesStore`] — what services in storaged's process use — keeps
//! storaged's rules: the `object_store` suite passes over every backend, and
//! the key grammar, the size cap and the commit locks hold as they do over
//! HTTP.

use std::sync::Arc;

use bytes::Bytes;
use lakehouse_storaged::{ObjectKey, PutCondition, StorageError};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use crate::support::{self, BIG, TestBackend};

async fn suite_over(tb: TestBackend) {
    let store = tb.storage(BIG).store();
    crate::suite::run_suite(store.as_ref(), true).await;
}

#[tokio::test]
async fn rules_store_over_memory() {
    suite_over(support::memory().await).await;
}

#[tokio::test]
async fn rules_store_over_fs() {
    suite_over(support::fs().await).await;
}

#[tokio::test]
async fn rules_store_over_s3() {
    if let Some(tb) = support::s3().await {
        suite_over(tb).await;
    }
}

/// The storaged error inside an `object_store::Error`.
fn storage_error(e: &object_store::Error) -> &StorageError {
    match e {
        object_store::Error::Generic { source, .. } => source
            .downcast_ref::<StorageError>()
            .unwrap_or_else(|| panic!("not a storaged error: {e}")),
        other => panic!("not a storaged error: {other}"),
    }
}

#[tokio::test]
async fn keys_and_sizes_are_refused_as_over_http() {
    let tb = support::fs().await;
    let store = tb.storage(1000).store();
    // A key `Path` accepts but the grammar does not (reserved upload suffix).
    let reserved = Path::parse("data/x#123").unwrap();
    for e in [
        store
            .put(&reserved, PutPayload::from("x"))
            .await
            .unwrap_err(),
        store.get(&reserved).await.unwrap_err(),
        store.delete(&reserved).await.unwrap_err(),
    ] {
        assert!(
            matches!(storage_error(&e), StorageError::InvalidKey { .. }),
            "{e}"
        );
    }
    let big = Path::from("data/big");
    let e = store
        .put(&big, PutPayload::from(vec![0u8; 1001]))
        .await
        .unwrap_err();
    assert!(
        matches!(storage_error(&e), StorageError::TooLarge { limit: 1000 }),
        "{e}"
    );
    let mut upload = store.put_multipart(&big).await.unwrap();
    upload
        .put_part(PutPayload::from(vec![0u8; 600]))
        .await
        .unwrap();
    let e = upload
        .put_part(PutPayload::from(vec![0u8; 600]))
        .await
        .unwrap_err();
    assert!(
        matches!(storage_error(&e), StorageError::TooLarge { .. }),
        "{e}"
    );
    upload.abort().await.unwrap();
    assert!(matches!(
        store.head(&big).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert!(
        tb.fs_files().iter().all(|f| !f.contains("big")),
        "{:?}",
        tb.fs_files()
    );
}

#[tokio::test]
async fn conditional_writes_hold_on_the_filesystem() {
    let tb = support::fs().await;
    let store = tb.storage(BIG).store();
    let p = Path::from("wal/1.bin");
    let first = store
        .put_opts(&p, PutPayload::from("a"), PutMode::Create.into())
        .await
        .unwrap();
    let again = store
        .put_opts(&p, PutPayload::from("b"), PutMode::Create.into())
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    let stale = UpdateVersion {
        e_tag: Some("not-the-etag".into()),
        version: None,
    };
    let refused = store
        .put_opts(&p, PutPayload::from("c"), PutMode::Update(stale).into())
        .await;
    assert!(
        matches!(refused, Err(object_store::Error::Precondition { .. })),
        "{refused:?}"
    );
    let current = UpdateVersion {
        e_tag: first.e_tag,
        version: None,
    };
    store
        .put_opts(&p, PutPayload::from("d"), PutMode::Update(current).into())
        .await
        .unwrap();
    let body = store.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(body, Bytes::from("d"));
}

/// Creates of one key through the HTTP core and through the in-process
/// store at once: exactly one wins, because both commit under the same
/// lock.
#[tokio::test]
async fn the_core_and_the_store_share_their_locks() {
    let tb = support::fs().await;
    let storage = tb.storage(BIG);
    let store = storage.store();
    for round in 0..20 {
        let key = format!("race/{round}");
        let path = Path::from(key.as_str());
        let obj = ObjectKey::parse(&key).unwrap();
        let core = {
            let storage = Arc::clone(&storage);
            async move {
                let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("core"))]);
                storage
                    .put(&obj, body, PutCondition::IfNoneMatchAny, None)
                    .await
            }
        };
        let other = store.put_opts(&path, PutPayload::from("store"), PutMode::Create.into());
        let (a, b) = tokio::join!(core, other);
        assert_ne!(a.is_ok(), b.is_ok(), "round {round}: {a:?} / {b:?}");
        let body = store.get(&path).await.unwrap().bytes().await.unwrap();
        let winner = if a.is_ok() { "core" } else { "store" };
        assert_eq!(body, Bytes::from(winner));
    }
}
