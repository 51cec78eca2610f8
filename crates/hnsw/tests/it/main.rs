//! Integration tests of the HNSW engine: recall against brute force, exact filtered
//! search, upsert/delete, concurrency, snapshot round trips and decoder robustness.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use lakehouse_hnsw::{DecodeError, Error, Index, Metric, Params, ParamsError, VectorError};

mod fuzz;

/// Deterministic generator (splitmix64) so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Gaussian mixture like `bench/gen_vectors.py`: overlapping clusters.
fn clustered(rng: &mut Rng, n: usize, dim: usize, clusters: usize) -> Vec<Vec<f32>> {
    let centers: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| rng.gauss() * 0.7).collect())
        .collect();
    (0..n)
        .map(|_| {
            let c = &centers[rng.below(clusters)];
            c.iter().map(|x| x + rng.gauss()).collect()
        })
        .collect()
}

fn reference_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Metric::Dot => 1.0 - dot,
        Metric::Cosine => {
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

/// Brute-force top-k keys (key = row number) among rows `keep` accepts.
fn brute_force(
    metric: Metric,
    data: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(u64) -> bool,
) -> Vec<(u64, f32)> {
    let mut all: Vec<(u64, f32)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i as u64))
        .map(|(i, v)| (i as u64, reference_distance(metric, q, v)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.truncate(k);
    all
}

fn build(metric: Metric, data: &[Vec<f32>], m: usize, efc: usize) -> Index {
    let ix = Index::new(Params {
        dim: data[0].len(),
        metric,
        m,
        ef_construction: efc,
    })
    .unwrap();
    let items: Vec<(u64, &[f32])> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, v.as_slice()))
        .collect();
    ix.insert_batch(&items).unwrap();
    ix
}

fn recall_for(metric: Metric) -> f64 {
    let mut rng = Rng(42 + metric as u64);
    let data = clustered(&mut rng, 6000, 32, 60);
    let queries = clustered(&mut rng, 100, 32, 60);
    let ix = build(metric, &data, 16, 100);
    assert_eq!(ix.len(), data.len());
    let mut hits = 0;
    for q in &queries {
        let truth: HashSet<u64> = brute_force(metric, &data, q, 10, |_| true)
            .iter()
            .map(|r| r.0)
            .collect();
        let got = ix.search(q, 10, 100).unwrap();
        assert_eq!(got.len(), 10);
        assert!(
            got.windows(2).all(|w| w[0].distance <= w[1].distance),
            "sorted"
        );
        for h in &got {
            let d = reference_distance(metric, q, &data[h.key as usize]);
            assert!(
                (d - h.distance).abs() < 1e-3,
                "distance {d} vs {}",
                h.distance
            );
        }
        hits += got.iter().filter(|h| truth.contains(&h.key)).count();
    }
    let recall = hits as f64 / (queries.len() * 10) as f64;
    eprintln!("{metric}: recall@10 {recall:.4}");
    recall
}

#[test]
fn recall_l2() {
    let r = recall_for(Metric::L2);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn recall_cosine() {
    let r = recall_for(Metric::Cosine);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn recall_dot() {
    let r = recall_for(Metric::Dot);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn distances_follow_documented_definitions() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let ix = Index::new(Params::new(3, metric)).unwrap();
        ix.insert(7, &[1.0, 2.0, 2.0]).unwrap();
        let got = ix.search(&[2.0, 0.0, 0.0], 1, 10).unwrap();
        let want = match metric {
            Metric::L2 => 1.0 + 4.0 + 4.0,
            Metric::Cosine => 1.0 - 1.0 / 3.0,
            Metric::Dot => 1.0 - 2.0,
        };
        assert_eq!(got[0].key, 7);
        assert!(
            (got[0].distance - want).abs() < 1e-6,
            "{metric}: {}",
            got[0].distance
        );
    }
}

#[test]
fn filtered_one_percent_equals_brute_force() {
    let mut rng = Rng(7);
    let data = clustered(&mut rng, 10_000, 16, 40);
    let ix = build(Metric::L2, &data, 16, 64);
    let keep = |key: u64| key % 100 == 37;
    for q in clustered(&mut rng, 30, 16, 40) {
        let want = brute_force(Metric::L2, &data, &q, 10, keep);
        let got = ix.search_filtered(&q, 10, 32, &keep).unwrap();
        assert_eq!(got.len(), 10);
        let got_keys: Vec<u64> = got.iter().map(|h| h.key).collect();
        let want_keys: Vec<u64> = want.iter().map(|r| r.0).collect();
        assert_eq!(got_keys, want_keys);
        for (g, w) in got.iter().zip(&want) {
            assert!((g.distance - w.1).abs() < 1e-3);
        }
    }
}

#[test]
fn filtered_wide_filter_uses_graph_and_respects_filter() {
    let mut rng = Rng(8);
    let data = clustered(&mut rng, 8000, 16, 40);
    let ix = build(Metric::L2, &data, 16, 64);
    let keep = |key: u64| key.is_multiple_of(2);
    let mut hits = 0;
    let queries = clustered(&mut rng, 50, 16, 40);
    for q in &queries {
        let want: HashSet<u64> = brute_force(Metric::L2, &data, q, 10, keep)
            .iter()
            .map(|r| r.0)
            .collect();
        let got = ix.search_filtered(q, 10, 64, &keep).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|h| keep(h.key)));
        hits += got.iter().filter(|h| want.contains(&h.key)).count();
    }
    let recall = hits as f64 / (queries.len() * 10) as f64;
    assert!(recall >= 0.95, "filtered recall {recall}");
}

#[test]
fn filtered_with_fewer_matches_than_k_returns_all_matches() {
    let mut rng = Rng(9);
    let data = clustered(&mut rng, 5000, 8, 20);
    let ix = build(Metric::Cosine, &data, 8, 40);
    let keep = |key: u64| key == 5 || key == 4321 || key == 17;
    let got = ix.search_filtered(&data[0], 10, 16, &keep).unwrap();
    let keys: HashSet<u64> = got.iter().map(|h| h.key).collect();
    assert_eq!(keys, HashSet::from([5, 4321, 17]));
    assert!(
        ix.search_filtered(&data[0], 10, 16, &|_| false)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn upsert_replaces_vector_and_delete_hides_item() {
    let mut rng = Rng(10);
    let data = clustered(&mut rng, 2000, 12, 10);
    let ix = build(Metric::L2, &data, 12, 64);
    let new_vec: Vec<f32> = (0..12).map(|_| rng.gauss() * 5.0).collect();

    ix.insert(3, &new_vec).unwrap();
    assert_eq!(ix.len(), 2000, "upsert keeps the count");
    assert_eq!(ix.get(3).unwrap(), new_vec);
    let hit = ix.search(&new_vec, 1, 64).unwrap();
    assert_eq!((hit[0].key, hit[0].distance), (3, 0.0));
    // The old vector no longer maps to key 3 at distance 0.
    let old = ix.search(&data[3], 5, 64).unwrap();
    assert!(old.iter().all(|h| h.key != 3 || h.distance > 0.0));
    assert_eq!(ix.stats().deleted, 1);

    assert!(ix.delete(10));
    assert!(!ix.delete(10), "second delete is a no-op");
    assert!(!ix.contains(10));
    assert_eq!(ix.len(), 1999);
    let r = ix.search(&data[10], 10, 64).unwrap();
    assert!(r.iter().all(|h| h.key != 10));
    let r = ix.search_exact(&data[10], 10, None).unwrap();
    assert!(r.iter().all(|h| h.key != 10));

    // Re-inserting a deleted key brings it back.
    ix.insert(10, &data[10]).unwrap();
    assert_eq!(ix.search(&data[10], 1, 64).unwrap()[0].key, 10);

    // A key repeated inside one batch keeps its last vector.
    ix.insert_batch(&[(99_999, vec![1.0; 12]), (99_999, vec![2.0; 12])])
        .unwrap();
    assert_eq!(ix.get(99_999).unwrap(), vec![2.0; 12]);

    // Compaction drops tombstones and keeps every live item.
    let c = ix.compact();
    assert_eq!(c.len(), ix.len());
    assert_eq!(c.stats().deleted, 0);
    assert_eq!(c.search(&new_vec, 1, 64).unwrap()[0].key, 3);
    assert!(c.memory_bytes() <= ix.memory_bytes());
}

#[test]
fn invalid_batch_changes_nothing() {
    let ix = Index::new(Params::new(4, Metric::Cosine)).unwrap();
    ix.insert(1, &[1.0, 0.0, 0.0, 0.0]).unwrap();
    let bad_nan = [
        (2u64, vec![1.0, 2.0, 3.0, 4.0]),
        (3, vec![f32::NAN, 0.0, 0.0, 0.0]),
    ];
    assert_eq!(
        ix.insert_batch(&bad_nan),
        Err(Error::BatchItem {
            position: 1,
            error: VectorError::NonFinite
        })
    );
    let bad_dim = [(2u64, vec![1.0, 2.0, 3.0])];
    assert!(matches!(
        ix.insert_batch(&bad_dim),
        Err(Error::BatchItem {
            position: 0,
            error: VectorError::Dimension {
                expected: 4,
                got: 3
            }
        })
    ));
    let zero = [(2u64, vec![0.0; 4])];
    assert!(matches!(
        ix.insert_batch(&zero),
        Err(Error::BatchItem {
            error: VectorError::ZeroNorm,
            ..
        })
    ));
    assert_eq!(ix.len(), 1);
    assert_eq!(ix.stats().slots, 1);
    assert!(matches!(
        ix.search(&[1.0; 3], 1, 1),
        Err(Error::Vector(VectorError::Dimension { .. }))
    ));
    assert!(matches!(
        ix.search(&[f32::INFINITY; 4], 1, 1),
        Err(Error::Vector(VectorError::NonFinite))
    ));
}

#[test]
fn params_are_validated() {
    let p = Params::new(8, Metric::L2);
    assert!(matches!(
        Index::new(Params { dim: 0, ..p }),
        Err(Error::Params(ParamsError::Dim(0)))
    ));
    assert!(Index::new(Params { dim: 65_537, ..p }).is_err());
    assert!(matches!(
        Index::new(p.with_m(1)),
        Err(Error::Params(ParamsError::M(1)))
    ));
    assert!(Index::new(p.with_m(129)).is_err());
    assert!(matches!(
        Index::new(p.with_ef_construction(0)),
        Err(Error::Params(ParamsError::EfConstruction(0)))
    ));
    assert!(Index::new(p.with_m(2)).is_ok());
    let ix = Index::new(p).unwrap();
    assert!(ix.is_empty());
    assert!(ix.search(&[0.0; 8], 5, 10).unwrap().is_empty());
    assert_eq!(
        (ix.dim(), ix.metric(), ix.m(), ix.ef_construction()),
        (8, Metric::L2, 16, 200)
    );
}

#[test]
fn concurrent_searches_and_inserts() {
    let mut rng = Rng(11);
    let dim = 16;
    let data = clustered(&mut rng, 6000, dim, 30);
    let ix = build(Metric::L2, &data[..2000], 12, 48);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (ix, data, done) = (&ix, &data, &done);
        // Two inserters: one in batches, one item by item.
        let batches = s.spawn(move || {
            for chunk in (2000..4000).collect::<Vec<_>>().chunks(100) {
                let items: Vec<(u64, &[f32])> = chunk
                    .iter()
                    .map(|&i| (i as u64, data[i].as_slice()))
                    .collect();
                ix.insert_batch(&items).unwrap();
            }
        });
        let singles = s.spawn(move || {
            for (i, v) in data.iter().enumerate().skip(4000) {
                ix.insert(i as u64, v).unwrap();
            }
        });
        let searchers: Vec<_> = (0..3u64)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(100 + t);
                    let mut n = 0;
                    while !done.load(Ordering::Relaxed) || n < 50 {
                        let q = &data[rng.below(data.len())];
                        let r = ix.search(q, 10, 32).unwrap();
                        assert!(r.len() <= 10 && !r.is_empty());
                        assert!(r.windows(2).all(|w| w[0].distance <= w[1].distance));
                        assert!(r.iter().all(|h| (h.key as usize) < data.len()));
                        let keys: HashSet<u64> = r.iter().map(|h| h.key).collect();
                        assert_eq!(keys.len(), r.len(), "no duplicate keys");
                        if t == 0 {
                            ix.delete(rng.below(2000) as u64 + 10_000); // absent: no-op
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        batches.join().unwrap();
        singles.join().unwrap();
        done.store(true, Ordering::Relaxed);
        for h in searchers {
            h.join().unwrap();
        }
    });
    assert_eq!(ix.len(), 6000);
    // Every item inserted under contention is reachable.
    let mut found = 0;
    for i in (0..6000).step_by(7) {
        let r = ix.search(&data[i], 1, 64).unwrap();
        found += (r[0].key == i as u64) as usize;
    }
    let total = (0..6000).step_by(7).count();
    assert!(found * 100 >= total * 99, "self-recall {found}/{total}");
}

fn sample_index(metric: Metric) -> (Index, Vec<Vec<f32>>) {
    let mut rng = Rng(12 + metric as u64);
    let data = clustered(&mut rng, 3000, 24, 20);
    // Item by item, so the graph (and this test) is deterministic; parallel builds
    // are covered by the concurrency test.
    let ix = Index::new(Params {
        dim: 24,
        metric,
        m: 10,
        ef_construction: 64,
    })
    .unwrap();
    for (i, v) in data.iter().enumerate() {
        ix.insert(i as u64, v).unwrap();
    }
    ix.delete(5);
    ix.delete(77);
    ix.insert(9, &data[1234]).unwrap(); // upsert: key 9 now holds row 1234's vector
    (ix, data)
}

#[test]
fn snapshot_round_trip_is_exact() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let (ix, data) = sample_index(metric);
        let bytes = ix.to_bytes();
        let back = Index::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes, "{metric}: re-encoding is identical");
        // The loaded index keeps working (checked on a second copy).
        let more = Index::from_bytes(&bytes).unwrap();
        more.insert(5, &data[5]).unwrap();
        assert_eq!(more.search(&data[5], 1, 64).unwrap()[0].key, 5);
        assert_eq!(back.len(), ix.len());
        assert_eq!(back.params(), ix.params());
        assert_eq!(back.stats().deleted, ix.stats().deleted);
        for q in data.iter().step_by(97) {
            assert_eq!(
                ix.search(q, 10, 40).unwrap(),
                back.search(q, 10, 40).unwrap()
            );
        }
        if metric == Metric::Dot {
            // Under the inner product a vector's best match need not be itself.
            continue;
        }
        // Every stored vector finds itself at distance 0.
        let mut misses = 0;
        for key in back.keys() {
            let v = back.get(key).unwrap();
            let r = back.search(&v, 1, 100).unwrap();
            if r[0].key != key || r[0].distance.abs() > 1e-5 {
                // Duplicate vectors (key 9 and 1234 share one) may return the twin.
                let twin = (key == 9 || key == 1234) && r[0].distance.abs() <= 1e-5;
                if !twin {
                    eprintln!("{metric} key {key}: got {r:?}");
                }
                misses += (!twin) as usize;
            }
        }
        assert_eq!(misses, 0, "{metric}: stored vectors not finding themselves");
    }
}

#[test]
fn empty_index_round_trips() {
    let ix = Index::new(Params::new(5, Metric::Dot)).unwrap();
    let back = Index::from_bytes(&ix.to_bytes()).unwrap();
    assert!(back.is_empty());
    back.insert(1, &[1.0; 5]).unwrap();
    assert_eq!(back.search(&[1.0; 5], 1, 10).unwrap()[0].key, 1);
}

#[test]
fn decoder_rejects_every_truncation_and_corruption() {
    let mut rng = Rng(13);
    let data = clustered(&mut rng, 150, 6, 5);
    let ix = build(Metric::L2, &data, 4, 16);
    ix.delete(3);
    let bytes = ix.to_bytes();
    for len in 0..bytes.len() {
        assert!(
            Index::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    for _ in 0..3000 {
        let mut b = bytes.clone();
        let pos = rng.below(b.len());
        b[pos] ^= 1 << rng.below(8);
        assert!(Index::from_bytes(&b).is_err(), "flip at {pos}");
    }
    let mut extended = bytes.clone();
    extended.push(0);
    assert!(Index::from_bytes(&extended).is_err());
}

/// Rewrites the checksum so a hand-made blob reaches the structural checks.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    let n = b.len() - 4;
    let crc = crc32(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// CRC-32 (IEEE), bitwise: independent of the crate's implementation.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// Header offsets: magic 8, version 4, dim 4, metric 1, m 4, efc 4, seed 8 → slots at 33.
const SLOTS_AT: usize = 33;

#[test]
fn decoder_refuses_huge_claims_and_bad_structure() {
    let mut rng = Rng(14);
    let data = clustered(&mut rng, 40, 4, 3);
    let ix = build(Metric::L2, &data, 4, 16);
    let bytes = ix.to_bytes();
    assert_eq!(
        u32::from_le_bytes(bytes[SLOTS_AT..SLOTS_AT + 4].try_into().unwrap()),
        40
    );

    // A header claiming ~4 billion slots (or dim 65536 × many slots) with a valid
    // checksum must fail on the length check, not try to allocate.
    for claim in [u32::MAX - 1, 1 << 30, 41] {
        let mut b = bytes.clone();
        b[SLOTS_AT..SLOTS_AT + 4].copy_from_slice(&claim.to_le_bytes());
        let err = Index::from_bytes(&reseal(b)).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { .. } | DecodeError::Invalid(_)),
            "{err:?}"
        );
    }
    let mut b = bytes.clone();
    b[12..16].copy_from_slice(&65_536u32.to_le_bytes()); // dim
    assert!(Index::from_bytes(&reseal(b)).is_err());

    // Bad params, metric, version, magic.
    let mut b = bytes.clone();
    b[17..21].copy_from_slice(&1u32.to_le_bytes()); // m = 1
    assert!(matches!(
        Index::from_bytes(&reseal(b)),
        Err(DecodeError::Params(_))
    ));
    let mut b = bytes.clone();
    b[16] = 9; // metric
    assert!(matches!(
        Index::from_bytes(&reseal(b)),
        Err(DecodeError::Invalid(_))
    ));
    let mut b = bytes.clone();
    b[8] = 2; // version
    assert!(matches!(
        Index::from_bytes(&reseal(b)),
        Err(DecodeError::Version(2))
    ));
    assert_eq!(
        Index::from_bytes(b"nope").unwrap_err(),
        DecodeError::BadMagic
    );

    // A neighbour id beyond the slot count: first level-0 list starts after the
    // header (42 bytes), vectors (40 × 4 × 4) and per-slot metadata (40 × 10).
    let links_at = 42 + 40 * 4 * 4 + 40 * 10;
    let count = u32::from_le_bytes(bytes[links_at..links_at + 4].try_into().unwrap());
    assert!(count > 0);
    let mut b = bytes.clone();
    b[links_at + 4..links_at + 8].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(
        Index::from_bytes(&reseal(b)),
        Err(DecodeError::Invalid(_))
    ));
    // A count above 2m.
    let mut b = bytes.clone();
    b[links_at..links_at + 4].copy_from_slice(&9u32.to_le_bytes());
    assert!(Index::from_bytes(&reseal(b)).is_err());
    // A NaN component.
    let mut b = bytes.clone();
    b[42..46].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(matches!(
        Index::from_bytes(&reseal(b)),
        Err(DecodeError::Invalid(_))
    ));
    // Unchanged bytes still decode (the offsets above are right).
    assert!(Index::from_bytes(&reseal(bytes)).is_ok());
}

#[test]
fn memory_is_close_to_raw_size() {
    let mut rng = Rng(15);
    let data = clustered(&mut rng, 4000, 64, 20);
    let ix = build(Metric::L2, &data, 16, 40);
    let s = ix.stats();
    assert_eq!(s.vector_bytes, 4000 * 64 * 4);
    let raw = (s.vector_bytes + s.link_bytes) as f64;
    assert!(
        s.memory_bytes as f64 <= 1.2 * raw,
        "memory {} vs raw {raw}",
        s.memory_bytes
    );
    assert!(s.memory_bytes as f64 >= raw);
}

#[test]
fn portable_kernels_give_the_same_answers() {
    let mut rng = Rng(16);
    let data = clustered(&mut rng, 500, 37, 5);
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let fast = build(metric, &data, 8, 32);
        let portable = Index::new_portable(*fast.params()).unwrap();
        let items: Vec<(u64, &[f32])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v.as_slice()))
            .collect();
        portable.insert_batch(&items).unwrap();
        for q in data.iter().step_by(50) {
            let a = fast.search_exact(q, 5, None).unwrap();
            let b = portable.search_exact(q, 5, None).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x.distance - y.distance).abs() < 1e-3, "{metric}");
            }
            let r = portable.search(q, 5, 32).unwrap();
            assert_eq!(r.len(), 5);
        }
    }
}
