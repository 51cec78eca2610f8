//! Fuzzing of vectord's decoders of stored and received bytes, with proptest:
//! LHV1 snapshots (frame, envelope, graph), write-ahead-log entries (binary
//! and the first JSON format) and add bodies (Arrow IPC, JSON). Each target
//! mutates real encodings; the decoder must answer with a value or an error,
//! never panic, and loading damaged objects at start-up must fail with
//! [`VectorError::Corrupt`] naming the object's key (or load something that
//! then works). Time-boxed by `LAKEHOUSE_FUZZ_SECS` (default 2 s per target);
//! crashers found are kept as regression tests at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lakehouse_hnsw::Metric;
use lakehouse_vectord::batch::JsonAddBody;
use lakehouse_vectord::wal::{self, WalFormat, WalOp};
use lakehouse_vectord::{
    Batch, IndexSpec, SearchRequest, VectorConfig, VectorError, VectorService, ipc, lhv1,
};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;
use proptest::sample::Index as At;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

fn budget() -> Duration {
    let secs = std::env::var("LAKEHOUSE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs.max(0.0))
}

/// Runs `test` on generated cases, in rounds of 32, until the budget is
/// spent (at least one round). A failure panics with proptest's minimal case.
fn fuzz_for<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let deadline = Instant::now() + budget();
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: 32,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        cases += 32;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("{name}: {cases} cases");
}

/// With `LAKEHOUSE_FUZZ_DUMP=FILE`, writes each input there before it is
/// decoded: the input of a crash no panic hook sees (an abort) is left behind.
fn dump(input: &[u8]) {
    if let Ok(path) = std::env::var("LAKEHOUSE_FUZZ_DUMP") {
        std::fs::write(path, input).unwrap();
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(At, u8),
    /// Overwrite 4 bytes with a little-endian u32 (length and count fields).
    SetU32(At, u32),
    Truncate(At),
    Remove(At, u8),
    Insert(At, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0u32),
        Just(1),
        Just(u32::MAX),
        Just(1 << 31),
        0u32..64,
        any::<u32>(),
    ];
    prop_oneof![
        4 => (any::<At>(), 1u8..).prop_map(|(a, m)| Mutation::Flip(a, m)),
        3 => (any::<At>(), interesting).prop_map(|(a, v)| Mutation::SetU32(a, v)),
        1 => any::<At>().prop_map(Mutation::Truncate),
        1 => (any::<At>(), 1u8..16).prop_map(|(a, n)| Mutation::Remove(a, n)),
        1 => (any::<At>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..5)
}

/// Applies edits to `bytes[from..]`.
fn apply(bytes: &[u8], from: usize, edits: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in edits {
        if b.len() <= from {
            break;
        }
        let span = b.len() - from;
        match m {
            Mutation::Flip(a, x) => b[from + a.index(span)] ^= x,
            Mutation::SetU32(a, v) => {
                let at = from + a.index(span);
                for (i, byte) in v.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + i) {
                        *slot = byte;
                    }
                }
            }
            Mutation::Truncate(a) => b.truncate(from + a.index(span)),
            Mutation::Remove(a, n) => {
                let at = from + a.index(span);
                let end = (at + *n as usize).min(b.len());
                b.drain(at..end);
            }
            Mutation::Insert(a, bytes) => {
                let at = from + a.index(span);
                b.splice(at..at, bytes.iter().copied());
            }
        }
    }
    b
}

/// Rewrites a trailing CRC-32 over everything before it (engine graphs and
/// binary log entries end with one), so edits reach the checks behind it.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= 4 {
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }
    b
}

const DIM: usize = 4;

fn vector(i: usize) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.37) * 0.731).sin())
        .collect()
}

fn sample_batch(from: usize, n: usize) -> Batch {
    let mut b = Batch::new();
    for i in from..from + n {
        let md = (i % 3 != 0).then(|| json!({"g": i % 5, "t": format!("x{i}")}));
        b.push(
            format!("id-{i}"),
            &vector(i),
            md.and_then(|m| m.as_object().cloned()),
        );
    }
    b
}

fn spec() -> IndexSpec {
    IndexSpec {
        name: "fz".into(),
        dim: DIM,
        metric: Metric::Cosine,
        m: 4,
        ef_construction: 16,
        source: Default::default(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A real snapshot of index "fz": 40 items with metadata, one deleted.
fn base_snapshot(rt: &tokio::runtime::Runtime) -> Vec<u8> {
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let svc = VectorService::open(store.clone(), VectorConfig::default())
            .await
            .unwrap();
        svc.create(spec()).await.unwrap();
        svc.add_batch("fz", sample_batch(0, 40)).await.unwrap();
        svc.delete_item("fz", "id-3").await.unwrap();
        svc.snapshot_now("fz").await.unwrap();
        store
            .get(&Path::from("_vectors/fz.lhv1"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    })
}

/// Stores `objects` and opens a service over them: either a clear error
/// naming `bad_key`, or a service whose indexes all work.
fn open_with(
    rt: &tokio::runtime::Runtime,
    objects: &[(&str, Vec<u8>)],
    bad_key: &str,
) -> Result<(), TestCaseError> {
    rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (k, v) in objects {
            store
                .put(&Path::from(*k), PutPayload::from(v.clone()))
                .await
                .unwrap();
        }
        match VectorService::open(store, VectorConfig::default()).await {
            Err(VectorError::Corrupt { key, reason }) => {
                prop_assert_eq!(&key, bad_key, "{}", reason);
                prop_assert!(!reason.is_empty());
            }
            Err(other) => prop_assert!(false, "not a Corrupt error: {other:?}"),
            Ok(svc) => exercise(&svc).await?,
        }
        Ok(())
    })
}

/// Whatever loaded must answer searches, adds and deletes without panicking
/// (a panic on a blocking thread comes back as `Internal`); other errors are
/// fine: a mutated envelope may declare another dimension.
async fn exercise(svc: &VectorService) -> Result<(), TestCaseError> {
    fn no_bug<T>(r: Result<T, VectorError>) -> Result<(), TestCaseError> {
        if let Err(VectorError::Internal(e)) = r {
            return Err(TestCaseError::fail(format!("internal error: {e}")));
        }
        Ok(())
    }
    for info in svc.list() {
        let q: Vec<f32> = (0..info.dim).map(|d| d as f32 + 0.5).collect();
        no_bug(
            svc.search(
                &info.name,
                SearchRequest {
                    vector: q.clone(),
                    k: 5,
                    ef: None,
                    filter: Some(json!({"g": 1}).as_object().cloned().unwrap()),
                    text: None,
                    hybrid: false,
                },
            )
            .await,
        )?;
        let mut b = Batch::new();
        b.push("new".into(), &q, None);
        b.push("id-5".into(), &q, None);
        no_bug(svc.add_batch(&info.name, b).await)?;
        no_bug(svc.delete_item(&info.name, "id-7").await)?;
        no_bug(
            svc.search(
                &info.name,
                SearchRequest {
                    vector: q,
                    k: 50,
                    ef: Some(64),
                    filter: None,
                    text: None,
                    hybrid: false,
                },
            )
            .await,
        )?;
        no_bug(svc.snapshot_now(&info.name).await)?;
    }
    Ok(())
}

const SNAP: &str = "_vectors/fz.lhv1";

#[test]
fn fuzz_snapshot_bytes() {
    let rt = runtime();
    let blob = base_snapshot(&rt);
    let env_len = u32::from_be_bytes(blob[4..8].try_into().unwrap()) as usize;
    let graph_at = 8 + env_len;
    // 0: anywhere; 1: the envelope only; 2: the graph only, resealed.
    let strategy = (0u8..3, mutations());
    fuzz_for("lhv1 bytes", strategy, |(region, edits)| {
        let b = match region {
            0 => apply(&blob, 0, &edits),
            1 => {
                let mut env = apply(&blob[..graph_at], 8, &edits);
                let len = (env.len() - 8) as u32;
                env[4..8].copy_from_slice(&len.to_be_bytes());
                env.extend_from_slice(&blob[graph_at..]);
                env
            }
            _ => {
                let mut b = blob[..graph_at].to_vec();
                b.extend(reseal(apply(&blob[graph_at..], 8, &edits)));
                b
            }
        };
        dump(&b);
        let _ = lhv1::decode(&b);
        open_with(&rt, &[(SNAP, b)], SNAP)
    });
}

/// One edit of the envelope's JSON, keeping it JSON: the consistency checks
/// between envelope and graph.
#[derive(Debug, Clone)]
enum EnvEdit {
    Version(u64),
    NextKey(u64),
    DropItem(At),
    DuplicateItem(At),
    ItemKey(At, u64),
    SameKey(At, At),
    SameId(At, At),
    Param(&'static str, u64),
    Metric(&'static str),
    Name(String),
    Metadata(At, Value),
}

fn env_edit() -> impl Strategy<Value = EnvEdit> {
    let num = prop_oneof![Just(0u64), Just(u64::MAX), 0u64..100, any::<u64>()];
    prop_oneof![
        num.clone().prop_map(EnvEdit::Version),
        num.clone().prop_map(EnvEdit::NextKey),
        any::<At>().prop_map(EnvEdit::DropItem),
        any::<At>().prop_map(EnvEdit::DuplicateItem),
        (any::<At>(), num.clone()).prop_map(|(a, k)| EnvEdit::ItemKey(a, k)),
        (any::<At>(), any::<At>()).prop_map(|(a, b)| EnvEdit::SameKey(a, b)),
        (any::<At>(), any::<At>()).prop_map(|(a, b)| EnvEdit::SameId(a, b)),
        (
            prop::sample::select(vec!["dim", "m", "ef_construction"]),
            num
        )
            .prop_map(|(p, v)| EnvEdit::Param(p, v)),
        prop::sample::select(vec!["l2", "dot", "cosine", "hamming"]).prop_map(EnvEdit::Metric),
        "[a-z./]{0,6}".prop_map(EnvEdit::Name),
        (
            any::<At>(),
            prop_oneof![Just(Value::Null), Just(json!([1])), Just(json!({"g": 1}))]
        )
            .prop_map(|(a, v)| EnvEdit::Metadata(a, v)),
    ]
}

fn edit_envelope(env: &mut Value, e: &EnvEdit) {
    let items = env["metadata"]["items"].as_array_mut().unwrap();
    let n = items.len().max(1);
    match e {
        EnvEdit::Version(v) => env["version"] = json!(v),
        EnvEdit::NextKey(v) => env["metadata"]["next_key"] = json!(v),
        EnvEdit::DropItem(a) if !items.is_empty() => {
            items.remove(a.index(n));
        }
        EnvEdit::DuplicateItem(a) if !items.is_empty() => {
            let it = items[a.index(n)].clone();
            items.push(it);
        }
        EnvEdit::ItemKey(a, k) if !items.is_empty() => items[a.index(n)]["key"] = json!(k),
        EnvEdit::SameKey(a, b) if !items.is_empty() => {
            let k = items[a.index(n)]["key"].clone();
            items[b.index(n)]["key"] = k;
        }
        EnvEdit::SameId(a, b) if !items.is_empty() => {
            let id = items[a.index(n)]["id"].clone();
            items[b.index(n)]["id"] = id;
        }
        EnvEdit::Metadata(a, v) if !items.is_empty() => items[a.index(n)]["metadata"] = v.clone(),
        EnvEdit::Param(p, v) => env["params"][*p] = json!(v),
        EnvEdit::Metric(m) => env["params"]["metric"] = json!(m),
        EnvEdit::Name(s) => env["params"]["name"] = json!(s),
        _ => {}
    }
}

#[test]
fn fuzz_snapshot_envelope() {
    let rt = runtime();
    let blob = base_snapshot(&rt);
    let env_len = u32::from_be_bytes(blob[4..8].try_into().unwrap()) as usize;
    let env: Value = serde_json::from_slice(&blob[8..8 + env_len]).unwrap();
    let graph = blob[8 + env_len..].to_vec();
    let strategy = prop::collection::vec(env_edit(), 1..4);
    fuzz_for("lhv1 envelope", strategy, |edits| {
        let mut e = env.clone();
        for ed in &edits {
            edit_envelope(&mut e, ed);
        }
        let text = serde_json::to_vec(&e).unwrap();
        let mut b = b"LHV1".to_vec();
        b.extend_from_slice(&(text.len() as u32).to_be_bytes());
        b.extend_from_slice(&text);
        b.extend_from_slice(&graph);
        open_with(&rt, &[(SNAP, b)], SNAP)
    });
}

/// A real log entry of each kind, with its key.
fn base_entries() -> Vec<(String, Vec<u8>)> {
    let add = sample_batch(100, 6);
    let bin = "_vectors/fz.wal/00000000000000000001.bin";
    let json = "_vectors/fz.wal/00000000000000000001.json";
    vec![
        (bin.into(), wal::encode_add(1, &add, DIM)),
        (bin.into(), wal::encode_delete(1, "id-9")),
        (json.into(), wal::encode_json_legacy(1, &WalOp::Add(add))),
        (
            json.into(),
            wal::encode_json_legacy(1, &WalOp::Delete { id: "id-9".into() }),
        ),
    ]
}

#[test]
fn fuzz_wal_entries() {
    let rt = runtime();
    // The index's snapshot before any write: the entry is replayed on it.
    let snap = rt.block_on(async {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let svc = VectorService::open(store.clone(), VectorConfig::default())
            .await
            .unwrap();
        svc.create(spec()).await.unwrap();
        let p = Path::from(SNAP);
        store.get(&p).await.unwrap().bytes().await.unwrap().to_vec()
    });
    let entries = base_entries();
    let strategy = (0..entries.len(), any::<bool>(), mutations());
    fuzz_for("wal entries", strategy, |(which, seal, edits)| {
        let (key, bytes) = &entries[which];
        let mut b = apply(bytes, 0, &edits);
        if seal && key.ends_with(".bin") {
            b = reseal(b);
        }
        let format = if key.ends_with(".bin") {
            WalFormat::Binary
        } else {
            WalFormat::Json
        };
        dump(&b);
        let _ = wal::decode(&b, format, 1);
        open_with(&rt, &[(SNAP, snap.clone()), (key, b)], key)
    });
}

#[test]
fn fuzz_add_bodies() {
    let arrow = ipc::encode_add(&sample_batch(0, 8)).unwrap();
    let json_body = serde_json::to_vec(&json!({"items": sample_batch(0, 4).into_items()})).unwrap();
    let strategy = (any::<bool>(), mutations());
    fuzz_for("add bodies", strategy, |(is_arrow, edits)| {
        if is_arrow {
            let body = apply(&arrow, 0, &edits);
            dump(&body);
            match ipc::decode_add(body.into()) {
                Ok(_)
                | Err(VectorError::InvalidBody(_))
                | Err(VectorError::InvalidItem { .. })
                | Err(VectorError::BatchTooLarge { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        } else {
            let body = apply(&json_body, 0, &edits);
            dump(&body);
            let _ = serde_json::from_slice::<JsonAddBody>(&body);
        }
        Ok(())
    });
}

/// Crashers found by `fuzz_add_bodies`: IPC messages declaring a body of
/// terabytes. arrow's `StreamReader` allocated the declared length before
/// reading, and the allocation failure aborted the process (no panic to
/// catch). Each must now be a 400.
#[test]
fn regression_arrow_bodies_declaring_huge_lengths() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/crashers");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        match ipc::decode_add(body.into()) {
            Err(VectorError::InvalidBody(msg)) => assert!(msg.contains("Arrow"), "{msg}"),
            other => panic!("{}: {other:?}", path.display()),
        }
        seen += 1;
    }
    assert!(seen >= 3);
}

/// Crashers found by `fuzz_snapshot_envelope`: counters at the top of u64
/// loaded, then the first add overflowed `next_key` (or the log's sequence
/// number) and panicked. They are damage and refuse the load.
#[test]
fn regression_envelope_counters_at_the_top_of_u64() {
    let rt = runtime();
    let blob = base_snapshot(&rt);
    let env_len = u32::from_be_bytes(blob[4..8].try_into().unwrap()) as usize;
    let env: Value = serde_json::from_slice(&blob[8..8 + env_len]).unwrap();
    for edit in [EnvEdit::NextKey(u64::MAX), EnvEdit::Version(u64::MAX - 1)] {
        let mut e = env.clone();
        edit_envelope(&mut e, &edit);
        let text = serde_json::to_vec(&e).unwrap();
        let mut b = b"LHV1".to_vec();
        b.extend_from_slice(&(text.len() as u32).to_be_bytes());
        b.extend_from_slice(&text);
        b.extend_from_slice(&blob[8 + env_len..]);
        let err = rt
            .block_on(async {
                let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
                store
                    .put(&Path::from(SNAP), PutPayload::from(b))
                    .await
                    .unwrap();
                VectorService::open(store, VectorConfig::default()).await
            })
            .err()
            .expect("refused");
        assert!(
            matches!(&err, VectorError::Corrupt { key, reason } if key == SNAP && reason.contains("out of range")),
            "{edit:?}: {err}"
        );
    }
}
