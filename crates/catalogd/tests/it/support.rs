//! A store wrapper for fault injection: fails or holds puts and deletes on
//! demand, and counts puts; and real Parquet objects to register.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use lakehouse_catalogd::{ObjectRef, RegisterRequest};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

#[derive(Debug, Default)]
pub struct TestStore {
    pub inner: InMemory,
    pub fail_puts: AtomicBool,
    pub fail_deletes: AtomicBool,
    /// Fails only puts of manifests (`_catalog/…`).
    pub fail_manifest_puts: AtomicBool,
    /// Puts, table log entries excepted.
    pub puts: AtomicUsize,
    /// Gets, heads included, table log entries excepted.
    pub gets: AtomicUsize,
    /// Puts wait while a test holds this for writing.
    pub hold: tokio::sync::RwLock<()>,
}

impl TestStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

impl fmt::Display for TestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestStore")
    }
}

/// A table log entry: the counters leave them out, so tests count manifest
/// writes and object checks as before tables existed.
fn is_log(location: &Path) -> bool {
    location.as_ref().contains("/_delta_log/")
}

fn injected(op: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "TestStore",
        source: format!("injected {op} failure").into(),
    }
}

#[async_trait]
impl ObjectStore for TestStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let _held = self.hold.read().await;
        if self.fail_puts.load(Ordering::SeqCst)
            || (self.fail_manifest_puts.load(Ordering::SeqCst)
                && location.as_ref().starts_with("_catalog/"))
        {
            return Err(injected("put"));
        }
        if !is_log(location) {
            self.puts.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !is_log(location) {
            self.gets.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Box::pin(futures::stream::once(async { Err(injected("delete")) }));
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A real Parquet file with `rows` rows of one u64 column.
pub fn parquet(rows: u64) -> bytes::Bytes {
    use arrow::array::{RecordBatch, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(UInt64Array::from_iter_values(0..rows))],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    buf.into()
}

/// Stores a Parquet object of `rows` rows at `key` (past the put counter and
/// the fault injection) and returns its entry.
pub async fn put_parquet(store: &TestStore, key: &str, rows: u64) -> ObjectRef {
    let bytes = parquet(rows);
    let size = bytes.len() as u64;
    store
        .inner
        .put(&Path::parse(key).unwrap(), PutPayload::from(bytes))
        .await
        .unwrap();
    obj(key, size, rows)
}

pub fn obj(key: &str, size: u64, rows: u64) -> ObjectRef {
    ObjectRef {
        key: key.to_string(),
        size,
        row_count: rows,
    }
}

pub fn req(name: &str, fp: &str, objects: Vec<ObjectRef>) -> RegisterRequest {
    RegisterRequest::new(name, fp, objects)
}

/// Keys of every stored manifest object.
pub async fn manifest_keys(store: &dyn ObjectStore) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = store
        .list(Some(&Path::from("_catalog/manifests")))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}
