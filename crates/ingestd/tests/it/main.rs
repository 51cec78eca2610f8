//! ingestd integration tests: the in-process `Ingestor` over an in-memory
//! store and registry, the HTTP router, and the conformance suite run against
//! the ingestor and the client alike.

use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use futures::StreamExt;
use lakehouse_catalogd::{Catalog, Registry};
use lakehouse_ingestd::writer::{Codec, WriterConfig};
use lakehouse_ingestd::{Format, IngestConfig, IngestError, IngestOptions, Ingestor, Mode};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

mod conformance;
mod csv_edges;
mod csv_property;
mod csv_sniff;
mod fuzz;
mod python;

struct Env {
    store: Arc<dyn ObjectStore>,
    catalog: Arc<dyn Catalog>,
    ingestor: Arc<Ingestor>,
    _spool: tempfile::TempDir,
}

async fn env_with(writer: WriterConfig) -> Env {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog: Arc<dyn Catalog> = Arc::new(Registry::open(store.clone()).await.unwrap());
    let spool = tempfile::tempdir().unwrap();
    let ingestor = Arc::new(Ingestor::new(
        store.clone(),
        catalog.clone(),
        IngestConfig {
            spool_dir: spool.path().to_path_buf(),
            writer,
        },
    ));
    Env {
        store,
        catalog,
        ingestor,
        _spool: spool,
    }
}

async fn env() -> Env {
    env_with(WriterConfig::default()).await
}

fn body(
    data: impl Into<Bytes>,
    chunk: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let data: Bytes = data.into();
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..data.len().div_ceil(chunk.max(1)))
        .map(|i| Ok(data.slice(i * chunk..((i + 1) * chunk).min(data.len()))))
        .collect();
    futures::stream::iter(chunks)
}

fn opts(format: Format, mode: Mode) -> IngestOptions {
    let mut o = IngestOptions::new(format);
    o.mode = mode;
    o
}

fn q(pairs: &[(&str, &str)]) -> IngestOptions {
    let v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    IngestOptions::from_query(&v, None).unwrap()
}

/// Every row of a dataset, read back from its objects.
async fn read_all(env: &Env, name: &str) -> Vec<RecordBatch> {
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
        assert_eq!(bytes.len() as u64, o.size, "manifest size of {}", o.key);
        let r = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = r.map(|b| b.unwrap()).collect();
        assert_eq!(
            batches.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
            o.row_count
        );
        out.extend(batches);
    }
    out
}

fn total_rows(b: &[RecordBatch]) -> usize {
    b.iter().map(|b| b.num_rows()).sum()
}

/// Keys under `datasets/<name>/`, for "nothing changed" checks.
/// The data objects under a dataset's prefix (its table's log excluded).
async fn dataset_keys(env: &Env, name: &str) -> Vec<String> {
    let mut keys: Vec<String> = env
        .store
        .list(Some(&Path::parse(format!("datasets/{name}")).unwrap()))
        .map(|m| m.unwrap().location.as_ref().to_string())
        .filter(|k| std::future::ready(!k.contains("/_delta_log/")))
        .collect()
        .await;
    keys.sort();
    keys
}

async fn all_keys(env: &Env) -> Vec<String> {
    let mut keys: Vec<String> = env
        .store
        .list(None)
        .map(|m| m.unwrap().location.as_ref().to_string())
        .collect()
        .await;
    keys.sort();
    keys
}

fn strings(b: &RecordBatch, col: usize) -> Vec<Option<String>> {
    let a = b
        .column(col)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

#[tokio::test]
async fn csv_with_quotes_newlines_unicode_and_nulls() {
    let env = env().await;
    let data = "id,name,score\n1,\"Smith, J\",1.5\n2,\"two\nlines\",\n3,Zoë 日本,NA\n4,\"say \"\"hi\"\"\",2\n";
    for chunk in [1, 7, 4096] {
        let name = format!("people{chunk}");
        let r = env
            .ingestor
            .ingest(
                &name,
                q(&[("format", "csv"), ("null", "NA"), ("null", "")]),
                body(data, chunk),
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.rows, 4);
        let b = read_all(&env, &name).await;
        assert_eq!(total_rows(&b), 4);
        let s = b[0].schema();
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        assert_eq!(s.field(2).data_type(), &DataType::Float64);
        assert_eq!(
            strings(&b[0], 1),
            vec![
                Some("Smith, J".to_string()),
                Some("two\nlines".into()),
                Some("Zoë 日本".into()),
                Some("say \"hi\"".into())
            ]
        );
        let scores = b[0]
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(scores.null_count(), 2, "empty and NA are null");
    }
}

#[tokio::test]
async fn csv_options_header_delimiter_escape_schema() {
    let env = env().await;
    // No header, semicolons, a quoted delimiter, a backslash-escaped quote
    // (escapes apply inside quotes), explicit schema.
    let data = "1;\"a;b\"\n2;\"c\\\"d\"\n";
    let r = env
        .ingestor
        .ingest(
            "opts",
            q(&[
                ("format", "csv"),
                ("header", "false"),
                ("delimiter", ";"),
                ("escape", "\\"),
                ("schema", "k:int64,v:utf8"),
            ]),
            body(data, 3),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, 2);
    let b = read_all(&env, "opts").await;
    assert_eq!(b[0].schema().field(0).name(), "k");
    assert_eq!(
        strings(&b[0], 1),
        vec![Some("a;b".to_string()), Some("c\"d".to_string())]
    );
    // Tabs by name; inference sample of 1 row.
    let r = env
        .ingestor
        .ingest(
            "tabs",
            q(&[("format", "csv"), ("delimiter", "tab"), ("infer_rows", "1")]),
            body("a\tb\n1\tx\n2\ty\n", 64),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, 2);
}

#[tokio::test]
async fn ndjson_parquet_and_arrow() {
    let env = env().await;
    let nd = "{\"id\": 1, \"tag\": \"x\", \"v\": 0.5}\n{\"id\": 2, \"tag\": null}\n\n{\"id\": 3, \"tag\": \"ü\", \"v\": 2}\n";
    let r = env
        .ingestor
        .ingest("nd", opts(Format::Ndjson, Mode::Append), body(nd, 5), None)
        .await
        .unwrap();
    assert_eq!(r.rows, 3);
    let b = read_all(&env, "nd").await;
    assert_eq!(
        strings(&b[0], 1),
        vec![Some("x".into()), None, Some("ü".into())]
    );

    // A batch to send as Parquet and as Arrow IPC (stream and file).
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..1000)),
            Arc::new(StringArray::from_iter(
                (0..1000).map(|i| (i % 3 != 0).then(|| format!("n{i}"))),
            )),
        ],
    )
    .unwrap();
    let mut pq = Vec::new();
    {
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut pq, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let r = env
        .ingestor
        .ingest(
            "pq",
            opts(Format::Parquet, Mode::Append),
            body(pq, 100),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, 1000);
    let mut ipc = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &schema).unwrap();
        w.write(&batch).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let r = env
        .ingestor
        .ingest(
            "ipc",
            opts(Format::Arrow, Mode::Append),
            body(ipc, 333),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, 2000);
    let mut file = Vec::new();
    {
        let mut w = arrow::ipc::writer::FileWriter::try_new(&mut file, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    // Same schema as "pq" (nullability is normalised), so it appends.
    let r = env
        .ingestor
        .ingest(
            "pq",
            opts(Format::Arrow, Mode::Append),
            body(file, 1000),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.manifest.row_count, 2000);
    let b = read_all(&env, "pq").await;
    assert_eq!(total_rows(&b), 2000);
    assert!(b[0].schema().field(0).is_nullable());
}

#[tokio::test]
async fn empty_and_header_only_inputs() {
    let env = env().await;
    let e = env
        .ingestor
        .ingest("e", opts(Format::Csv, Mode::Append), body("", 1), None)
        .await
        .unwrap_err();
    assert!(matches!(e, IngestError::EmptyInput), "{e}");
    let e = env
        .ingestor
        .ingest("e", opts(Format::Ndjson, Mode::Append), body("\n", 1), None)
        .await
        .unwrap_err();
    assert!(matches!(e, IngestError::EmptyInput), "{e}");
    assert!(
        all_keys(&env).await.is_empty(),
        "nothing written: {:?}",
        all_keys(&env).await
    );

    // Header only: the dataset exists with its columns and no rows.
    let r = env
        .ingestor
        .ingest("h", opts(Format::Csv, Mode::Append), body("a,b\n", 2), None)
        .await
        .unwrap();
    assert_eq!(r.rows, 0);
    assert_eq!(r.manifest.row_count, 0);
    assert_eq!(r.manifest.objects.len(), 1);
    let b = read_all(&env, "h").await;
    assert_eq!(total_rows(&b), 0);
    // Rows appended later join the placeholder object: an append never
    // deletes a listed object, whatever its row count says (issue 20).
    let r = env
        .ingestor
        .ingest(
            "h",
            opts(Format::Csv, Mode::Append),
            body("a,b\nx,y\n", 2),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.manifest.row_count, 1);
    assert_eq!(r.manifest.objects.len(), 2);
    assert_eq!(
        dataset_keys(&env, "h").await.len(),
        2,
        "the placeholder was kept"
    );
    assert_eq!(total_rows(&read_all(&env, "h").await), 1);
}

#[tokio::test]
async fn rejected_ingests_change_nothing() {
    let env = env().await;
    env.ingestor
        .ingest(
            "t",
            opts(Format::Csv, Mode::Append),
            body("a,b\n1,x\n", 64),
            None,
        )
        .await
        .unwrap();
    let before_keys = all_keys(&env).await;
    let before = env.catalog.get("t").await.unwrap();
    let mut big = String::from("a,b\n");
    for i in 0..200_000 {
        big.push_str(&format!("{i},v{i}\n"));
    }
    big.push_str("oops,z\n");
    let cases: Vec<(IngestOptions, String, &str)> = vec![
        (
            opts(Format::Csv, Mode::Append),
            "a,b\n2,y\n3\n".into(),
            "CSV line 3: expected 2 fields, found 1",
        ),
        (
            opts(Format::Csv, Mode::Append),
            "a,b\n2,y\nthree,z\n".into(),
            "CSV line 3, column 1 (\"a\")",
        ),
        // Fails after several batches (and objects) were already written.
        (
            opts(Format::Csv, Mode::Append),
            big,
            "CSV line 200002, column 1",
        ),
        (
            opts(Format::Csv, Mode::Replace),
            "a,b\n1,x\n1,\n2,\"unterminated\n".into(),
            "",
        ),
        (
            opts(Format::Csv, Mode::Append),
            "a,c\n1,x\n".into(),
            "column \"c\" (utf8) is new",
        ),
        (
            opts(Format::Ndjson, Mode::Append),
            "{\"a\": 1, \"b\": \"x\"}\n{\"a\": [}\n".into(),
            "NDJSON line 2",
        ),
        (
            opts(Format::Parquet, Mode::Append),
            "PAR1 not really".into(),
            "Parquet",
        ),
        (
            opts(Format::Arrow, Mode::Append),
            "garbage garbage garbage".into(),
            "Arrow IPC",
        ),
    ];
    for (o, data, want) in cases {
        let name = "t";
        let e = env.ingestor.ingest(name, o, body(data, 8192), None).await;
        match e {
            Err(e) => assert!(e.to_string().contains(want), "want {want:?} in {e}"),
            Ok(r) if want.is_empty() => {
                // An unterminated quote at EOF is accepted by the CSV reader;
                // then it was a valid replace and there is nothing to compare.
                let _ = r;
                return;
            }
            Ok(r) => panic!("expected an error containing {want:?}, got {r:?}"),
        }
        assert_eq!(
            all_keys(&env).await,
            before_keys,
            "storage unchanged after {want:?}"
        );
        assert_eq!(
            env.catalog.get("t").await.unwrap(),
            before,
            "manifest unchanged after {want:?}"
        );
    }
}

#[tokio::test]
async fn bad_names_and_options() {
    let env = env().await;
    for name in ["", "Upper", "a//b", "../x", "a/../b", "sp ace"] {
        let e = env
            .ingestor
            .ingest(
                name,
                opts(Format::Csv, Mode::Append),
                body("a\n1\n", 8),
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, IngestError::InvalidName(_)), "{name:?}: {e}");
    }
    assert!(all_keys(&env).await.is_empty());
}

#[tokio::test]
async fn objects_have_bounded_size() {
    let env = env_with(WriterConfig {
        target_object_size: 64 << 10,
        row_group_rows: 4096,
        ..Default::default()
    })
    .await;
    let mut data = String::from("id,payload\n");
    for i in 0..100_000u64 {
        data.push_str(&format!(
            "{i},{:016x}{:016x}\n",
            i.wrapping_mul(0x9E3779B97F4A7C15),
            i ^ 0xdead_beef
        ));
    }
    let r = env
        .ingestor
        .ingest(
            "big",
            opts(Format::Csv, Mode::Append),
            body(data, 1 << 16),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.rows, 100_000);
    assert!(r.objects.len() > 3, "{} objects", r.objects.len());
    for o in &r.objects {
        assert!(o.size < 1 << 20, "object {} is {} bytes", o.key, o.size);
    }
    let b = read_all(&env, "big").await;
    assert_eq!(total_rows(&b), 100_000);
    let ids: Vec<i64> = b
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(
        ids,
        (0..100_000).collect::<Vec<i64>>(),
        "order kept across objects"
    );
}

#[tokio::test]
async fn compression_is_configurable() {
    use parquet::basic::Compression;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    for (codec, want) in [
        (Codec::Zstd, "ZSTD"),
        (Codec::Lz4, "LZ4_RAW"),
        (Codec::Snappy, "SNAPPY"),
        (Codec::None, "UNCOMPRESSED"),
    ] {
        let env = env_with(WriterConfig {
            compression: codec,
            ..Default::default()
        })
        .await;
        let mut data = String::from("id,name\n");
        for i in 0..5000 {
            data.push_str(&format!("{i},name {}\n", i % 17));
        }
        let r = env
            .ingestor
            .ingest("c", opts(Format::Csv, Mode::Append), body(data, 4096), None)
            .await
            .unwrap();
        let bytes = env
            .store
            .get(&object_store::path::Path::from(r.objects[0].key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = SerializedFileReader::new(bytes).unwrap();
        let got: Compression = reader.metadata().row_group(0).column(0).compression();
        assert!(got.to_string().starts_with(want), "{codec:?}: {got}");
        assert_eq!(total_rows(&read_all(&env, "c").await), 5000, "{codec:?}");
    }
}

/// A catalog whose answers get lost: `apply` = the register takes effect but
/// the caller hears an error; `down` = it does not, and the catalog then stays
/// unreachable.
struct LossyCatalog {
    inner: Arc<dyn Catalog>,
    apply: std::sync::atomic::AtomicBool,
    down: std::sync::atomic::AtomicBool,
    fail_next_register: std::sync::atomic::AtomicBool,
}

fn unavailable() -> lakehouse_catalogd::CatalogError {
    lakehouse_catalogd::CatalogError::Unavailable {
        url: "http://catalogd".to_string(),
        source: "connection reset by peer".into(),
    }
}

#[async_trait::async_trait]
impl Catalog for LossyCatalog {
    async fn register(
        &self,
        req: lakehouse_catalogd::RegisterRequest,
    ) -> lakehouse_catalogd::Result<lakehouse_catalogd::RegisterResponse> {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.fail_next_register.swap(false, SeqCst) {
            return self.inner.register(req).await;
        }
        if self.apply.load(SeqCst) {
            self.inner.register(req).await?;
        } else {
            self.down.store(true, SeqCst);
        }
        Err(unavailable())
    }
    async fn get(&self, name: &str) -> lakehouse_catalogd::Result<lakehouse_catalogd::Manifest> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(unavailable());
        }
        self.inner.get(name).await
    }
    async fn list(&self) -> lakehouse_catalogd::Result<Vec<lakehouse_catalogd::Manifest>> {
        self.inner.list().await
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

/// Object keys under `prefix`, tables' logs excluded.
async fn keys_under(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    let mut s = store.list(Some(&Path::from(prefix)));
    let mut v = vec![];
    while let Some(m) = s.next().await {
        let k = m.unwrap().location.to_string();
        if !k.contains("/_delta_log/") {
            v.push(k);
        }
    }
    v
}

/// A registration whose answer is lost is settled by reading the manifest
/// back, never by deleting objects a manifest may reference.
#[tokio::test]
async fn lost_register_answers_are_settled_not_deleted() {
    use std::sync::atomic::Ordering::SeqCst;
    let base = env().await;
    let lossy = Arc::new(LossyCatalog {
        inner: base.catalog.clone(),
        apply: true.into(),
        down: false.into(),
        fail_next_register: false.into(),
    });
    let spool = tempfile::tempdir().unwrap();
    let ingestor = Ingestor::new(
        base.store.clone(),
        lossy.clone(),
        IngestConfig {
            spool_dir: spool.path().to_path_buf(),
            writer: WriterConfig::default(),
        },
    );
    let csv = |n: usize| {
        let mut s = String::from("id,v\n");
        for i in 0..n {
            s.push_str(&format!("{i},{}\n", i * 2));
        }
        s
    };
    let append = |rows: usize| {
        ingestor.ingest(
            "lost",
            opts(Format::Csv, Mode::Append),
            body(csv(rows), 64),
            None,
        )
    };

    // Applied, answer lost: the ingest is acknowledged and the data is there.
    lossy.fail_next_register.store(true, SeqCst);
    let r = append(100)
        .await
        .expect("an applied registration is confirmed");
    assert_eq!(r.rows, 100);
    assert_eq!(total_rows(&read_all(&base, "lost").await), 100);

    // Not applied, catalog reachable: a plain failure, objects removed.
    lossy.apply.store(false, SeqCst);
    lossy.fail_next_register.store(true, SeqCst);
    lossy.down.store(false, SeqCst);
    // `down` is set by the failing register; bring it back before the check.
    let back = {
        let l = lossy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            l.down.store(false, SeqCst);
        })
    };
    let err = append(10).await.unwrap_err();
    back.await.unwrap();
    assert!(matches!(err, IngestError::Catalog(_)), "{err:?}");
    assert_eq!(total_rows(&read_all(&base, "lost").await), 100);
    let m = base.catalog.get("lost").await.unwrap();
    let mut keys = keys_under(&base.store, "datasets/lost").await;
    keys.sort();
    let mut referenced: Vec<String> = m.objects.iter().map(|o| o.key.clone()).collect();
    referenced.sort();
    assert_eq!(keys, referenced, "the unregistered objects were removed");

    // Not applied and the catalog stays away: unconfirmed, nothing deleted.
    lossy.fail_next_register.store(true, SeqCst);
    let err = append(10).await.unwrap_err();
    assert!(matches!(err, IngestError::Unconfirmed { .. }), "{err:?}");
    assert!(keys_under(&base.store, "datasets/lost").await.len() > referenced.len());
    assert_eq!(keys_under(&base.store, "_ingest/inflight").await.len(), 1);
    // The catalog is back; the next start settles it: not registered, removed.
    lossy.down.store(false, SeqCst);
    assert_eq!(ingestor.recover().await.unwrap(), 1);
    let mut keys = keys_under(&base.store, "datasets/lost").await;
    keys.sort();
    assert_eq!(keys, referenced);
    assert!(keys_under(&base.store, "_ingest/inflight").await.is_empty());
    assert_eq!(total_rows(&read_all(&base, "lost").await), 100);
}

#[tokio::test]
async fn concurrent_appends_all_land() {
    let env = env().await;
    let mut tasks = vec![];
    for w in 0..8 {
        let i = env.ingestor.clone();
        tasks.push(tokio::spawn(async move {
            let mut data = String::from("writer,n\n");
            for n in 0..100 {
                data.push_str(&format!("{w},{n}\n"));
            }
            i.ingest(
                "shared",
                opts(Format::Csv, Mode::Append),
                body(data, 50),
                None,
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let m = env.catalog.get("shared").await.unwrap();
    assert_eq!(m.row_count, 800);
    assert_eq!(m.objects.len(), 8);
    assert_eq!(total_rows(&read_all(&env, "shared").await), 800);
}

#[tokio::test]
async fn replace_swaps_objects_and_keeps_the_old_ones_for_history() {
    let env = env().await;
    env.ingestor
        .ingest(
            "r",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n", 8),
            None,
        )
        .await
        .unwrap();
    env.ingestor
        .ingest(
            "r",
            opts(Format::Csv, Mode::Append),
            body("a\n2\n", 8),
            None,
        )
        .await
        .unwrap();
    assert_eq!(dataset_keys(&env, "r").await.len(), 2);
    let r = env
        .ingestor
        .ingest(
            "r",
            opts(Format::Csv, Mode::Replace),
            body("a\n7\n8\n9\n", 8),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.manifest.row_count, 3);
    assert_eq!(r.manifest.version, 3);
    assert_eq!(r.manifest.objects.len(), 1);
    // The old objects stay: the table's versions 0 and 1 list them.
    let keys = dataset_keys(&env, "r").await;
    assert_eq!(keys.len(), 3);
    assert!(keys.contains(&r.manifest.objects[0].key));
    let v1 = env
        .catalog
        .get_at("r", lakehouse_catalogd::At::Version(1))
        .await
        .unwrap();
    assert_eq!(v1.row_count, 2);
    for o in &v1.objects {
        assert!(keys.contains(&o.key), "{} is gone", o.key);
    }
    // Replacing with another schema is refused (the dataset's identity is
    // bound to its schema); nothing changes.
    let e = env
        .ingestor
        .ingest(
            "r",
            opts(Format::Csv, Mode::Replace),
            body("z\nq\n", 8),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, IngestError::SchemaMismatch { .. }), "{e}");
    assert_eq!(dataset_keys(&env, "r").await, keys);
}

#[tokio::test]
async fn idempotency_keys_apply_once_even_after_a_restart() {
    let env = env().await;
    let first = env
        .ingestor
        .ingest(
            "idem",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n2\n", 8),
            Some("req-1"),
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    let again = env
        .ingestor
        .ingest(
            "idem",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n2\n", 8),
            Some("req-1"),
        )
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.manifest, first.manifest);
    // A new process over the same store.
    let catalog: Arc<dyn Catalog> = Arc::new(Registry::open(env.store.clone()).await.unwrap());
    let spool = tempfile::tempdir().unwrap();
    let restarted = Ingestor::new(
        env.store.clone(),
        catalog.clone(),
        IngestConfig {
            spool_dir: spool.path().to_path_buf(),
            writer: WriterConfig::default(),
        },
    );
    let third = restarted
        .ingest(
            "idem",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n2\n", 8),
            Some("req-1"),
        )
        .await
        .unwrap();
    assert!(third.replayed);
    assert_eq!(
        catalog.get("idem").await.unwrap().row_count,
        2,
        "added once"
    );
    // Another key adds again; a failed request with a key can be retried.
    restarted
        .ingest(
            "idem",
            opts(Format::Csv, Mode::Append),
            body("a\n3\n", 8),
            Some("req-2"),
        )
        .await
        .unwrap();
    let e = restarted
        .ingest(
            "idem",
            opts(Format::Csv, Mode::Append),
            body("a\nx\n", 8),
            Some("req-3"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, IngestError::BadData(_)));
    let ok = restarted
        .ingest(
            "idem",
            opts(Format::Csv, Mode::Append),
            body("a\n4\n", 8),
            Some("req-3"),
        )
        .await
        .unwrap();
    assert!(!ok.replayed);
    assert_eq!(catalog.get("idem").await.unwrap().row_count, 4);
}

/// An ingest killed after writing objects but before registering: the next
/// start removes its objects; a registered one is left alone.
#[tokio::test]
async fn recover_removes_objects_of_interrupted_ingests() {
    let env = env().await;
    env.ingestor
        .ingest(
            "keep",
            opts(Format::Csv, Mode::Append),
            body("a\n1\n", 8),
            None,
        )
        .await
        .unwrap();
    let kept = dataset_keys(&env, "keep").await;
    // Simulate a crash: a journal and an object nobody registered.
    let put = |k: &str, v: &str| {
        let store = env.store.clone();
        let (k, v) = (k.to_string(), v.to_string());
        async move { store.put(&Path::parse(k).unwrap(), v.into()).await.unwrap() }
    };
    put(
        "_ingest/inflight/00000-dead.json",
        r#"{"dataset":"keep","ingest_id":"00000-dead"}"#,
    )
    .await;
    put("datasets/keep/00000-dead-00000.parquet", "half").await;
    put("datasets/keep/00000-dead-00001.parquet", "written").await;
    assert_eq!(env.ingestor.recover().await.unwrap(), 1);
    assert_eq!(dataset_keys(&env, "keep").await, kept);
    assert!(
        all_keys(&env)
            .await
            .iter()
            .all(|k| !k.starts_with("_ingest/inflight/"))
    );
    assert_eq!(env.ingestor.recover().await.unwrap(), 0);
}

mod ownership;

mod router {
    use super::*;
    use ::http::{Request, StatusCode};
    use axum::body::Body;
    use tower::ServiceExt;

    async fn post(
        env: &Env,
        uri: &str,
        ct: Option<&str>,
        data: &'static str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method("POST").uri(uri);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = lakehouse_ingestd::http::router(env.ingestor.clone())
            .oneshot(req.body(Body::from(data)).unwrap())
            .await
            .unwrap();
        let status = r.status();
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn statuses() {
        let env = env().await;
        let (s, v) = post(&env, "/ingest/web/events?format=csv", None, "a,b\n1,2\n").await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["manifest"]["name"], "web/events");
        let (s, _) = post(&env, "/ingest/web/events", Some("text/csv"), "a,b\n3,4\n").await;
        assert_eq!(s, StatusCode::OK);
        let cases = [
            (
                "/ingest/web/events",
                None,
                "a,b\n1,2\n",
                StatusCode::BAD_REQUEST,
                "invalid_option",
            ),
            (
                "/ingest/web/events?format=xml",
                None,
                "x",
                StatusCode::BAD_REQUEST,
                "invalid_option",
            ),
            (
                "/ingest/web/events?format=csv&mode=merge",
                None,
                "x",
                StatusCode::BAD_REQUEST,
                "invalid_option",
            ),
            (
                "/ingest/Bad%20Name?format=csv",
                None,
                "a\n1\n",
                StatusCode::BAD_REQUEST,
                "invalid_name",
            ),
            (
                "/ingest/web/events?format=csv",
                None,
                "",
                StatusCode::BAD_REQUEST,
                "empty_input",
            ),
            (
                "/ingest/web/events?format=csv",
                None,
                "a,b\nx,2\n",
                StatusCode::BAD_REQUEST,
                "bad_data",
            ),
            (
                "/ingest/web/events?format=csv",
                None,
                "a,z\n1,2\n",
                StatusCode::CONFLICT,
                "schema_mismatch",
            ),
        ];
        for (uri, ct, data, status, code) in cases {
            let (s, v) = post(&env, uri, ct, data).await;
            assert_eq!(s, status, "{uri}: {v}");
            assert_eq!(v["error"]["code"], code, "{uri}: {v}");
        }
        assert_eq!(env.catalog.get("web/events").await.unwrap().row_count, 2);
    }
}
