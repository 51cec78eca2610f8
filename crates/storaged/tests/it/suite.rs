//! The `object_store` crate's own integration suite, run against
//! `StoragedClient` talking HTTP to a storaged on each backend, and against
//! the backends as this crate configures them.

use object_store::ObjectStore;
use object_store::integration::*;

use crate::support::{self, TestBackend};

pub(crate) async fn run_suite(store: &dyn ObjectStore, supports_update: bool) {
    put_get_delete_list(store).await;
    get_opts(store).await;
    put_opts(store, supports_update).await;
    list_uses_directories_correctly(store).await;
    list_with_delimiter(store).await;
    rename_and_copy(store).await;
    copy_if_not_exists(store).await;
    copy_rename_nonexistent_object(store).await;
    stream_get(store).await;
    multipart_out_of_order(store).await;
    list_with_offset_exclusivity(store).await;
    let err = get_nonexistent_object(store, None).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
}

async fn client_suite(tb: TestBackend) {
    let client = support::client_for(&tb).await;
    run_suite(&client, true).await;
}

#[tokio::test]
async fn client_over_memory() {
    client_suite(support::memory().await).await;
}

#[tokio::test]
async fn client_over_fs() {
    client_suite(support::fs().await).await;
}

#[tokio::test]
async fn client_over_s3() {
    if let Some(tb) = support::s3().await {
        client_suite(tb).await;
    }
}

#[tokio::test]
async fn s3_backend_direct() {
    if let Some(tb) = support::s3().await {
        // Plain S3 has no compare-and-swap without extra configuration; the
        // conditional writes storaged offers are checked through the client.
        put_get_delete_list(tb.backend.store.as_ref()).await;
        get_opts(tb.backend.store.as_ref()).await;
        list_with_delimiter(tb.backend.store.as_ref()).await;
        stream_get(tb.backend.store.as_ref()).await;
    }
}

#[tokio::test]
async fn fs_backend_direct() {
    let tb = support::fs().await;
    let store = tb.backend.store.as_ref();
    put_get_delete_list(store).await;
    list_with_delimiter(store).await;
    // These three go through the direct-I/O multipart upload.
    stream_get(store).await;
    multipart_out_of_order(store).await;
    multipart_race_condition(store, true).await;
}

#[tokio::test]
async fn fs_backend_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let backend = lakehouse_storaged::Backend::fs_with(dir.path(), false)
        .await
        .unwrap();
    let store = backend.store.as_ref();
    put_get_delete_list(store).await;
    stream_get(store).await;
    multipart_out_of_order(store).await;
    multipart_race_condition(store, true).await;
}
