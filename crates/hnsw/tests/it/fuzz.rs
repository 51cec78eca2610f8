//! Fuzzing of the snapshot decoder with proptest: random mutations of real
//! snapshots, half of them with the checksum rewritten so they reach the
//! structural checks. The decoder must return an error or an index, never
//! panic; an index it accepts must then search, insert, delete and re-encode
//! without panicking. Time-boxed by `LAKEHOUSE_FUZZ_SECS` (default 2 s per
//! target); found crashers are kept below as regression tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lakehouse_hnsw::{Index, Metric, Params};
use proptest::prelude::*;
use proptest::sample::Index as At;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{Rng, clustered, reseal};

fn budget() -> Duration {
    let secs = std::env::var("LAKEHOUSE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs.max(0.0))
}

/// Runs `test` on generated cases, in rounds of 64, until the budget is
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
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}");
        }
        cases += 64;
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!(
        "{name}: {cases} cases, {} decoded (all targets so far)",
        DECODED.load(Ordering::Relaxed)
    );
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// XOR a byte.
    Flip(At, u8),
    /// Overwrite 4 bytes with a little-endian u32 (length and count fields).
    SetU32(At, u32),
    Truncate(At),
    Remove(At, u8),
    Insert(At, Vec<u8>),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(u32::MAX),
        Just(u32::MAX - 1),
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

/// Applies edits to bytes, skipping the first `keep` (an outer frame the
/// caller wants intact).
pub fn apply(bytes: &[u8], keep: usize, edits: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in edits {
        if b.len() <= keep {
            break;
        }
        let span = b.len() - keep;
        match m {
            Mutation::Flip(a, x) => b[keep + a.index(span)] ^= x,
            Mutation::SetU32(a, v) => {
                let at = keep + a.index(span);
                for (i, byte) in v.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + i) {
                        *slot = byte;
                    }
                }
            }
            Mutation::Truncate(a) => b.truncate(keep + a.index(span)),
            Mutation::Remove(a, n) => {
                let at = keep + a.index(span);
                let end = (at + *n as usize).min(b.len());
                b.drain(at..end);
            }
            Mutation::Insert(a, bytes) => {
                let at = keep + a.index(span);
                b.splice(at..at, bytes.iter().copied());
            }
        }
    }
    b
}

fn base(metric: Metric) -> (Vec<u8>, Vec<Vec<f32>>) {
    let mut rng = Rng(21 + metric as u64);
    let data = clustered(&mut rng, 60, 4, 4);
    let ix = Index::new(Params {
        dim: 4,
        metric,
        m: 3,
        ef_construction: 16,
    })
    .unwrap();
    for (i, v) in data.iter().enumerate() {
        ix.insert(i as u64, v).unwrap();
    }
    ix.delete(7);
    ix.delete(0);
    (ix.to_bytes(), data)
}

/// Whatever decodes must behave: every operation answers without panicking.
fn exercise(ix: &Index, data: &[Vec<f32>]) {
    for q in data.iter().step_by(13) {
        let _ = ix.search(q, 5, 16);
        let _ = ix.search_filtered(q, 3, 16, &|k| k % 2 == 0);
        let _ = ix.search_exact(q, 3, None);
    }
    let _ = ix.insert(1000, &data[3]);
    let _ = ix.insert_batch(&[(1001, data[4].clone()), (1002, data[5].clone())]);
    ix.delete(1);
    ix.delete(1001);
    let _ = ix.search(&data[3], 5, 16);
    let again = ix.to_bytes();
    Index::from_bytes(&again).expect("an index's own bytes decode");
    let _ = ix.stats();
    let _ = ix.compact().search(&data[2], 5, 16);
}

/// How many mutated inputs decoded (and were exercised), for the report.
static DECODED: AtomicUsize = AtomicUsize::new(0);

fn decode_and_exercise(bytes: &[u8], data: &[Vec<f32>]) -> Result<(), TestCaseError> {
    if let Ok(ix) = Index::from_bytes(bytes) {
        DECODED.fetch_add(1, Ordering::Relaxed);
        exercise(&ix, data);
    }
    Ok(())
}

#[test]
fn fuzz_snapshot_decoder() {
    let cases: Vec<_> = [Metric::L2, Metric::Cosine, Metric::Dot]
        .into_iter()
        .map(base)
        .collect();
    let strategy = (
        0usize..3,
        any::<bool>(),
        prop::collection::vec(mutation(), 1..6),
    );
    fuzz_for("hnsw snapshot", strategy, |(which, seal, edits)| {
        let (bytes, data) = &cases[which];
        let mut b = apply(bytes, 0, &edits);
        if seal && b.len() > 4 {
            b = reseal(b);
        }
        decode_and_exercise(&b, data)
    });
}

/// Structural fields only (header, per-slot metadata, link lists), always
/// resealed: the checks behind the checksum, hit hard.
#[test]
fn fuzz_snapshot_structure() {
    let (bytes, data) = base(Metric::L2);
    let vectors_end = 42 + 60 * 4 * 4;
    let strategy = (any::<bool>(), prop::collection::vec(mutation(), 1..4));
    fuzz_for("hnsw structure", strategy, |(header, edits)| {
        // Edit either the header or what follows the vectors.
        let b = if header {
            let mut head = apply(&bytes[..42], 8, &edits);
            head.extend_from_slice(&bytes[42..]);
            head
        } else {
            apply(&bytes, vectors_end, &edits)
        };
        decode_and_exercise(&reseal(b), &data)
    });
}

/// Crasher found by `fuzz_snapshot_decoder`: a cosine snapshot whose stored
/// vector was zeroed (checksum rewritten) decoded, and `compact` then met a
/// vector that no insert accepts and hit `unreachable!`.
#[test]
fn regression_zero_vector_under_cosine() {
    let (bytes, data) = base(Metric::Cosine);
    let mut b = bytes.clone();
    let at = 42 + 10 * 4 * 4; // slot 10's vector
    b[at..at + 16].fill(0);
    match Index::from_bytes(&reseal(b)) {
        Err(lakehouse_hnsw::DecodeError::Invalid(msg)) => assert!(msg.contains("slot 10"), "{msg}"),
        Err(e) => panic!("{e}"),
        Ok(ix) => exercise(&ix, &data),
    }
}
