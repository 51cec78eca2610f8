//! Stored manifests are untrusted bytes: the decoder that reads them at
//! start-up is fuzzed with mutations of valid manifests (truncations, bit
//! flips, overwritten, inserted and deleted bytes, biased towards the
//! Parquet footer). Every outcome must be a decoded manifest for the key's
//! dataset or a `CorruptManifest` error naming the key — never a panic.
//!
//! The run is time-boxed by `LAKEHOUSE_FUZZ_SECS` (default 3 seconds); CI
//! can give it longer. Inputs that ever failed are kept in [`CRASHERS`] and
//! replayed on every run. (The first runs found panics inside the `parquet`
//! and `arrow-ipc` crates; `Manifest::decode` now turns a decoder panic into
//! an error, and prints the panic message to stderr as any panic does.)

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lakehouse_catalogd::{ErrorKind, Manifest, ObjectRef, dataset_id_for, manifest_key};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const NAME: &str = "fuzz/target";

/// One edit of the bytes; positions are fractions of the current length.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip {
        at: Index,
        bit: u8,
    },
    Set {
        at: Index,
        byte: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Delete {
        at: Index,
        len: usize,
    },
    /// The same edits near the end, where the footer (thrift metadata,
    /// its length and the magic) lives.
    InFooter(Box<Mutation>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let leaf = prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ];
    leaf.prop_recursive(1, 2, 1, |inner| {
        inner.prop_map(|m| Mutation::InFooter(Box::new(m)))
    })
}

/// A mutation at absolute positions: what a failure reports, and what
/// [`CRASHERS`] keep.
#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    Xor(usize, u8),
    Set(usize, u8),
    Insert(usize, &'static [u8]),
    Delete(usize, usize),
}

impl Edit {
    fn apply(&self, b: &mut Vec<u8>) {
        let clamp = |p: usize, b: &Vec<u8>| p.min(b.len());
        match *self {
            Edit::Truncate(p) => b.truncate(p),
            Edit::Xor(p, x) if p < b.len() => b[p] ^= x,
            Edit::Set(p, v) if p < b.len() => b[p] = v,
            Edit::Xor(..) | Edit::Set(..) => {}
            Edit::Insert(p, bytes) => {
                let p = clamp(p, b);
                b.splice(p..p, bytes.iter().copied());
            }
            Edit::Delete(p, len) => {
                let p = clamp(p, b);
                let end = (p + len).min(b.len());
                b.drain(p..end);
            }
        }
    }
}

/// The absolute edit `m` makes on `len` bytes; `window` is where positions
/// fall.
fn resolve(m: &Mutation, len: usize, window: std::ops::Range<usize>) -> Option<Edit> {
    if len == 0 {
        return None;
    }
    let span = window.end.min(len).saturating_sub(window.start).max(1);
    let pos = |at: &Index| (window.start + at.index(span)).min(len - 1);
    Some(match m {
        Mutation::Truncate(at) => Edit::Truncate(pos(at)),
        Mutation::Flip { at, bit } => Edit::Xor(pos(at), 1 << bit),
        Mutation::Set { at, byte } => Edit::Set(pos(at), *byte),
        // Leaked: a test process makes a bounded number of these.
        Mutation::Insert { at, bytes } => Edit::Insert(pos(at), Vec::leak(bytes.clone())),
        Mutation::Delete { at, len } => Edit::Delete(pos(at), *len),
        Mutation::InFooter(inner) => {
            let start = len.saturating_sub(len / 4 + 8);
            return resolve(inner, len, start..len);
        }
    })
}

/// A valid manifest; the same bytes on every run, so kept crashers replay.
fn manifest(objects: usize, key_len: usize) -> Bytes {
    let t = chrono::DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap();
    Manifest {
        dataset_id: dataset_id_for(NAME),
        name: NAME.to_string(),
        schema_fingerprint: "sha256:0123456789abcdef".to_string(),
        objects: (0..objects)
            .map(|i| ObjectRef {
                key: format!("datasets/{NAME}/{i:0key_len$}.parquet"),
                size: 1000 + i as u64,
                row_count: i as u64 * 7,
            })
            .collect(),
        row_count: 42,
        created_at: t,
        updated_at: t,
        version: 9,
        table_version: None,
    }
    .encode()
    .unwrap()
}

fn seeds() -> Vec<Bytes> {
    vec![manifest(0, 1), manifest(1, 8), manifest(7, 40)]
}

/// Decodes `bytes` as the manifest stored at `NAME`'s key: a manifest for
/// that dataset, or a `CorruptManifest` naming the key; never a panic.
fn check(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let key = manifest_key(NAME);
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Manifest::decode_stored(&key, Bytes::from(bytes))
    }));
    match decoded {
        Err(_) => Err(TestCaseError::fail("the manifest decoder panicked")),
        Ok(Ok(m)) => {
            prop_assert_eq!(&m.name, NAME);
            prop_assert_eq!(m.dataset_id, dataset_id_for(NAME));
            prop_assert!(m.version > 0);
            Ok(())
        }
        Ok(Err(e)) => {
            prop_assert_eq!(e.kind(), ErrorKind::CorruptManifest);
            let msg = e.to_string();
            prop_assert!(msg.contains(&key), "{}", msg);
            Ok(())
        }
    }
}

/// The seed after `muts`, and the absolute edits that made it.
fn mutated(seed: &Bytes, muts: &[Mutation]) -> (Vec<u8>, Vec<Edit>) {
    let mut b = seed.to_vec();
    let mut edits = Vec::new();
    for m in muts {
        if let Some(e) = resolve(m, b.len(), 0..b.len()) {
            e.apply(&mut b);
            edits.push(e);
        }
    }
    (b, edits)
}

fn fuzz_secs() -> f64 {
    std::env::var("LAKEHOUSE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

#[test]
fn the_manifest_decoder_survives_mutations() {
    let seeds = seeds();
    for s in &seeds {
        check(s.to_vec()).unwrap();
    }
    let strategy = (0..seeds.len(), prop::collection::vec(mutation(), 1..6));
    let deadline = Instant::now() + Duration::from_secs_f64(fuzz_secs());
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let outcome = runner.run(&strategy, |(i, muts)| {
            let (bytes, edits) = mutated(&seeds[i], &muts);
            check(bytes).map_err(|e| {
                TestCaseError::fail(format!("{e}; keep in CRASHERS: ({i}, &{edits:?})"))
            })
        });
        if let Err(e) = outcome {
            panic!("{e}");
        }
        cases += 64;
    }
    eprintln!("fuzzed {cases} mutated manifests");
}

/// Every prefix and every single-bit flip of a small manifest, exhaustively
/// (about 25k decodes): the mutations a torn or bit-rotted object makes.
#[test]
fn every_truncation_and_bit_flip_of_a_small_manifest() {
    let seed = manifest(1, 8);
    for len in 0..seed.len() {
        check(seed[..len].to_vec()).unwrap_or_else(|e| panic!("truncated to {len}: {e}"));
    }
    for pos in 0..seed.len() {
        for bit in 0..8 {
            let mut b = seed.to_vec();
            b[pos] ^= 1 << bit;
            check(b).unwrap_or_else(|e| panic!("bit {bit} of byte {pos} flipped: {e}"));
        }
    }
}

/// Inputs that once failed, replayed on every run: (seed, edits).
const CRASHERS: &[(usize, &[Edit])] = &[
    // parquet 59.3 `byte_array.rs`: attempt to divide by zero (a flipped bit
    // in the first data page's header).
    (1, &[Edit::Xor(12, 2)]),
    // arrow-ipc 59.3 `convert.rs`: "Int type with bit width of … not
    // supported" (a flipped bit in the embedded Arrow schema).
    (2, &[Edit::Xor(2957, 1)]),
];

#[test]
fn kept_crashers_stay_fixed() {
    let seeds = seeds();
    for (i, edits) in CRASHERS {
        let mut b = seeds[*i].to_vec();
        for e in *edits {
            e.apply(&mut b);
        }
        check(b).unwrap_or_else(|e| panic!("crasher ({i}, {edits:?}): {e}"));
    }
}

/// At start-up a crasher is a corrupt manifest naming its key, not a panic
/// that takes the server down.
#[tokio::test]
async fn a_crasher_in_the_store_is_a_corrupt_manifest_at_start_up() {
    use object_store::{ObjectStoreExt, PutPayload};
    let store = crate::support::TestStore::new();
    for (i, edits) in CRASHERS {
        let mut b = seeds()[*i].to_vec();
        for e in *edits {
            e.apply(&mut b);
        }
        let key = manifest_key(NAME);
        store
            .inner
            .put(
                &object_store::path::Path::from(key.as_str()),
                PutPayload::from(b),
            )
            .await
            .unwrap();
        let err = lakehouse_catalogd::Registry::open(store.clone())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptManifest);
        let msg = err.to_string();
        assert!(msg.contains(&key) && msg.contains("malformed"), "{msg}");
    }
}
