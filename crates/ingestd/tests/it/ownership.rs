//! No ingest deletes what its dataset does not own, or what any manifest
//! lists: appends delete nothing that was listed (issue 20 item 7), replace
//! and recovery delete only the dataset's own unlisted objects, even when
//! the catalog's manifests say otherwise.

use std::sync::Arc;

use lakehouse_catalogd::{
    Catalog, Manifest, ObjectRef, RegisterRequest, RegisterResponse, Registry, dataset_id_for,
    manifest_key,
};
use lakehouse_ingestd::writer::WriterConfig;
use lakehouse_ingestd::{Format, IngestConfig, IngestError, Ingestor, Mode};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{all_keys, body, dataset_keys, env, opts, read_all, total_rows};

async fn exists(store: &Arc<dyn ObjectStore>, key: &str) -> bool {
    store.head(&Path::parse(key).unwrap()).await.is_ok()
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: &'static [u8]) {
    store
        .put(&Path::parse(key).unwrap(), PutPayload::from_static(bytes))
        .await
        .unwrap();
}

/// Issue 20 item 7: objects registered with `row_count: 0` (a claim, not a
/// fact) were dropped from the manifest and deleted by the next append.
#[tokio::test]
async fn an_append_never_deletes_a_listed_object_whatever_its_row_count() {
    let env = env().await;
    let first = env
        .ingestor
        .ingest(
            "d",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n2\n", 8),
            None,
        )
        .await
        .unwrap();
    // A write token re-registers the same object claiming no rows.
    let mut claimed: Vec<ObjectRef> = first.manifest.objects.clone();
    claimed[0].row_count = 0;
    env.catalog
        .register(RegisterRequest::new(
            "d",
            first.manifest.schema_fingerprint.clone(),
            claimed.clone(),
        ))
        .await
        .unwrap();

    let r = env
        .ingestor
        .ingest(
            "d",
            opts(Format::Csv, Mode::Append),
            body("a\n3\n", 8),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, 1);
    assert_eq!(r.manifest.objects.len(), 2, "{:?}", r.manifest.objects);
    assert_eq!(r.manifest.objects[0], claimed[0], "listed, unchanged");
    assert!(exists(&env.store, &claimed[0].key).await, "not deleted");
    assert_eq!(total_rows(&read_all_unchecked(&env, "d").await), 3);
    assert_eq!(dataset_keys(&env, "d").await.len(), 2);
}

/// `read_all` checks each object's row count against the manifest; this one
/// only reads the data (the manifest holds a false claim on purpose).
async fn read_all_unchecked(env: &crate::Env, name: &str) -> Vec<arrow::array::RecordBatch> {
    let m = env.catalog.get(name).await.unwrap();
    let mut out = vec![];
    for o in &m.objects {
        let bytes = env
            .store
            .get(&Path::parse(&o.key).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(|b| b.unwrap()));
    }
    out
}

/// An empty append to a dataset that has data adds nothing and leaves
/// nothing behind; the data already there stays.
#[tokio::test]
async fn an_empty_append_adds_and_deletes_nothing() {
    let env = env().await;
    env.ingestor
        .ingest(
            "e",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n", 8),
            None,
        )
        .await
        .unwrap();
    let before = dataset_keys(&env, "e").await;
    let r = env
        .ingestor
        .ingest("e", opts(Format::Csv, Mode::Append), body("a\n", 8), None)
        .await
        .unwrap();
    assert_eq!((r.rows, r.objects.len()), (0, 0));
    assert_eq!(dataset_keys(&env, "e").await, before);
    assert_eq!(total_rows(&read_all(&env, "e").await), 1);
}

/// A catalog that serves what an older catalogd (or a hand-edited store)
/// could: manifests listing other datasets' objects and internal keys.
struct LegacyCatalog {
    inner: Arc<dyn Catalog>,
    /// Extra keys `get("thief")` lists.
    extra: Vec<String>,
    /// An extra manifest `list()` returns.
    legacy: Manifest,
}

#[async_trait::async_trait]
impl Catalog for LegacyCatalog {
    async fn register(&self, req: RegisterRequest) -> lakehouse_catalogd::Result<RegisterResponse> {
        self.inner.register(req).await
    }
    async fn get(&self, name: &str) -> lakehouse_catalogd::Result<Manifest> {
        let mut m = self.inner.get(name).await?;
        if name == "thief" {
            m.objects.extend(self.extra.iter().map(|k| ObjectRef {
                key: k.clone(),
                size: 1,
                row_count: 1,
            }));
        }
        Ok(m)
    }
    async fn list(&self) -> lakehouse_catalogd::Result<Vec<Manifest>> {
        let mut all = self.inner.list().await?;
        all.push(self.legacy.clone());
        Ok(all)
    }
    async fn drop_dataset(
        &self,
        name: &str,
    ) -> lakehouse_catalogd::Result<Option<lakehouse_catalogd::VacuumReport>> {
        self.inner.drop_dataset(name).await
    }
    async fn get_at(
        &self,
        name: &str,
        at: lakehouse_catalogd::At,
    ) -> lakehouse_catalogd::Result<lakehouse_catalogd::Manifest> {
        self.inner.get_at(name, at).await
    }
    async fn history(
        &self,
        name: &str,
        limit: usize,
    ) -> lakehouse_catalogd::Result<Vec<lakehouse_catalogd::Change>> {
        self.inner.history(name, limit).await
    }
    async fn compact(
        &self,
        name: &str,
        opts: lakehouse_catalogd::CompactOptions,
    ) -> lakehouse_catalogd::Result<lakehouse_catalogd::CompactResponse> {
        self.inner.compact(name, opts).await
    }
    async fn restore(
        &self,
        name: &str,
        to: lakehouse_catalogd::At,
    ) -> lakehouse_catalogd::Result<lakehouse_catalogd::Manifest> {
        self.inner.restore(name, to).await
    }
    async fn sync(&self, name: &str) -> lakehouse_catalogd::Result<lakehouse_catalogd::Manifest> {
        self.inner.sync(name).await
    }
    async fn vacuum(
        &self,
        name: &str,
        dry_run: bool,
    ) -> lakehouse_catalogd::Result<lakehouse_catalogd::VacuumReport> {
        self.inner.vacuum(name, dry_run).await
    }
}

/// The attack of the hardening issue, against ingestd alone: whatever the
/// dataset's manifest lists, a replace deletes only the objects the dataset
/// owns that no manifest lists — never another dataset's data, a manifest,
/// a vector log or snapshot, or an ingest journal.
#[tokio::test]
async fn replace_deletes_only_owned_objects_no_manifest_lists() {
    let base = env().await;
    let store = base.store.clone();
    let victim = base
        .ingestor
        .ingest(
            "victim",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n", 8),
            None,
        )
        .await
        .unwrap();
    let nested = base
        .ingestor
        .ingest(
            "thief/sub",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n", 8),
            None,
        )
        .await
        .unwrap();
    base.ingestor
        .ingest(
            "thief",
            opts(Format::Csv, Mode::Append),
            body("a\n5\n", 8),
            None,
        )
        .await
        .unwrap();
    // thief's own object that a legacy manifest of another dataset lists.
    let t = base
        .ingestor
        .ingest(
            "thief",
            opts(Format::Csv, Mode::Append),
            body("a\n6\n", 8),
            None,
        )
        .await
        .unwrap();
    let shared = t.objects[0].key.clone();
    for (k, v) in [
        ("_vectors/docs.lhv1", &b"LHV1"[..]),
        ("_vectors/docs.wal/00000000000000000001", b"entry"),
        ("_ingest/inflight/x.json", b"{}"),
    ] {
        put(&store, k, v).await;
    }
    let mut extra: Vec<String> = victim
        .manifest
        .objects
        .iter()
        .map(|o| o.key.clone())
        .collect();
    extra.extend(nested.manifest.objects.iter().map(|o| o.key.clone()));
    extra.extend([
        manifest_key("victim"),
        "_vectors/docs.lhv1".to_string(),
        "_vectors/docs.wal/00000000000000000001".to_string(),
        "_ingest/inflight/x.json".to_string(),
    ]);
    let mut legacy = victim.manifest.clone();
    legacy.name = "legacy".to_string();
    legacy.dataset_id = dataset_id_for("legacy");
    legacy.objects = vec![ObjectRef {
        key: shared.clone(),
        size: 1,
        row_count: 1,
    }];
    let catalog = Arc::new(LegacyCatalog {
        inner: base.catalog.clone(),
        extra: extra.clone(),
        legacy,
    });
    let spool = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::new(
        store.clone(),
        catalog,
        IngestConfig {
            spool_dir: spool.path().to_path_buf(),
            writer: WriterConfig::default(),
        },
    );
    let before = all_keys(&base).await;
    let r = ingestor
        .ingest(
            "thief",
            opts(Format::Csv, Mode::Replace),
            body("a\n9\n", 8),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.manifest.row_count, 1);

    for k in &extra {
        assert!(exists(&store, k).await, "{k} was deleted");
    }
    assert!(exists(&store, &shared).await, "listed by another manifest");
    let after = all_keys(&base).await;
    let gone: Vec<&String> = before.iter().filter(|k| !after.contains(k)).collect();
    // Nothing at all: thief's first object is replaced in its table, not
    // deleted (its version 0 lists it).
    assert!(gone.is_empty(), "{gone:?}");
    assert_eq!(total_rows(&read_all(&base, "victim").await), 1);
    assert_eq!(total_rows(&read_all(&base, "thief/sub").await), 1);
}

/// Recovery deletes the objects of an interrupted ingest only: before, the
/// journal's prefix `datasets/a/<id>` also matched dataset `a/<id>…`'s objects
/// and another ingest's whose id starts the same.
#[tokio::test]
async fn recovery_deletes_only_the_interrupted_ingests_own_objects() {
    let env = env().await;
    let store = env.store.clone();
    put(
        &store,
        "_ingest/inflight/00000-dead.json",
        br#"{"dataset":"a","ingest_id":"00000-dead"}"#,
    )
    .await;
    put(&store, "datasets/a/00000-dead-00000.parquet", b"half").await;
    // Not this ingest's: dataset a/00000-dead's object, another ingest's.
    put(&store, "datasets/a/00000-dead/x.parquet", b"other dataset").await;
    put(
        &store,
        "datasets/a/00000-deadbeef-00000.parquet",
        b"other ingest",
    )
    .await;
    assert_eq!(env.ingestor.recover().await.unwrap(), 1);
    assert!(!exists(&store, "datasets/a/00000-dead-00000.parquet").await);
    assert!(exists(&store, "datasets/a/00000-dead/x.parquet").await);
    assert!(exists(&store, "datasets/a/00000-deadbeef-00000.parquet").await);
}

/// A dataset whose stored manifest lists objects it does not own is
/// quarantined by the catalog: ingest into it is a 409 that says so, and
/// deletes nothing; start-up recovery leaves its journals for later.
#[tokio::test]
async fn a_quarantined_dataset_refuses_ingest_and_deletes_nothing() {
    let env = env().await;
    let store = env.store.clone();
    let victim = env
        .ingestor
        .ingest(
            "victim",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n", 8),
            None,
        )
        .await
        .unwrap();
    // As an older version could have stored it.
    let mut m = victim.manifest.clone();
    m.name = "thief".to_string();
    m.dataset_id = dataset_id_for("thief");
    store
        .put(
            &Path::from(manifest_key("thief")),
            PutPayload::from(m.encode().unwrap()),
        )
        .await
        .unwrap();
    let catalog: Arc<dyn Catalog> = Arc::new(Registry::open(store.clone()).await.unwrap());
    let spool = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::new(
        store.clone(),
        catalog,
        IngestConfig {
            spool_dir: spool.path().to_path_buf(),
            writer: WriterConfig::default(),
        },
    );
    put(
        &store,
        "_ingest/inflight/00001-beef.json",
        br#"{"dataset":"thief","ingest_id":"00001-beef"}"#,
    )
    .await;
    let before = all_keys(&env).await;
    assert_eq!(ingestor.recover().await.unwrap(), 0);
    for mode in [Mode::Replace, Mode::Append] {
        let e = ingestor
            .ingest("thief", opts(Format::Csv, mode), body("a\n2\n", 8), None)
            .await
            .unwrap_err();
        assert!(matches!(e, IngestError::Quarantined(_)), "{e:?}");
        assert!(e.to_string().contains("quarantined"), "{e}");
    }
    assert_eq!(all_keys(&env).await, before, "nothing written or deleted");
}
