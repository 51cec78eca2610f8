//! The HNSW graph: storage layout, insertion, search, upsert and delete.
//!
//! # Storage layout
//! Every item lives in a dense `u32` *slot*. Per-slot data is kept in flat,
//! structure-of-arrays vectors so the hot loops touch contiguous memory:
//! - `vectors`: one `Vec<f32>` of `slots × dim` (normalised copies for cosine);
//! - `links0`: level-0 neighbour lists, `1 + 2m` `u32`s per slot (`[count, ids…]`);
//! - `upper`: per slot with level ≥ 1, `level × (1 + m)` `u32`s (most slots have none);
//! - `levels`, `keys`, `state` (reserved / live / deleted) and one byte-sized
//!   mutex per slot that serialises *writers* of that slot's neighbour lists.
//!
//! # Locking
//! - One `RwLock` over the arrays. Searches and the linking phase of inserts hold
//!   it in *read* mode (one acquisition per search / per inserted item); it is taken
//!   in write mode only to append slots (growth) and to delete, which are short.
//! - Neighbour lists are `AtomicU32`s: readers load them without locking (plain
//!   `mov`s on x86); writers hold the slot's mutex, write the ids, then publish the
//!   count with `Release`. A reader racing a rewrite may see a mix of old and new
//!   ids — every one of them is a valid slot, so the search stays memory-safe and
//!   merely explores a slightly different neighbourhood (hnswlib has the same race).
//! - Entry-point promotion (an item whose level exceeds the current top) is
//!   serialised by `entry_lock`, held for that item's whole insertion as in hnswlib;
//!   searches read the entry point from an atomic.
//! - `batch_gate`: inserts hold it shared; snapshots and compaction take it
//!   exclusively so they see no half-linked item.
//!
//! # Insertion
//! hnswlib's algorithm (best-first search with `ef_construction`, Malkov's
//! neighbour-selection heuristic, reverse links re-pruned when full) with two
//! additions: a node's lists are written bottom-up after all its searches, so a
//! concurrent insert never reaches a node whose lower levels are still empty; and
//! every level-0 in-degree is tracked, so a node whose last incoming link was
//! pruned away gets one back (otherwise no search could ever return it). Batches
//! are linked by one rayon worker per core taking slots in order.
//!
//! # Keys, upsert and delete
//! Callers address items by a `u64` key; a map turns keys into slots. Deleting marks
//! the slot as a *tombstone*: it is skipped in results but still used for navigation
//! (removing nodes from an HNSW graph degrades its connectivity). Re-inserting a key
//! tombstones its old slot and inserts a new one. Tombstones cost memory until
//! [`Index::compact`] rebuilds the index from the live items.
//!
//! # Filtered search
//! [`Index::search_filtered`] samples the predicate to estimate its selectivity. Small
//! indexes and selective predicates (≤ 5 % match) use an exact scan, which is both
//! cheaper and exact there; otherwise it runs HNSW keeping only accepted items in the
//! result set (navigation still uses every node) and falls back to the exact scan if
//! that finds fewer than `k` items.

use std::cell::RefCell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use rayon::prelude::*;

use crate::distance::{DistFn, Isa, Kernels, Metric, prefetch};
use crate::{Error, Params, VectorError};

/// A search hit: the item's key and its distance to the query (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub key: u64,
    pub distance: f32,
}

/// Slot states.
pub(crate) const RESERVED: u8 = 0;
pub(crate) const LIVE: u8 = 1;
pub(crate) const DELETED: u8 = 2;

/// Highest level a node may get (the level distribution makes > 16 practically
/// impossible for m ≥ 4; the cap bounds memory for adversarial snapshots too).
pub(crate) const MAX_LEVEL: usize = 31;

/// Entry point packed as `slot << 8 | level`; `NO_ENTRY` when the graph is empty.
const NO_ENTRY: u64 = u64::MAX;

/// Below this many live items a filtered search is always exact.
const EXACT_SMALL: usize = 4096;
/// Estimated match fraction at or below which a filtered search is exact.
const EXACT_SELECTIVITY: f64 = 0.05;
/// Slots sampled to estimate a filter's selectivity.
const FILTER_SAMPLE: usize = 512;

pub(crate) struct Store {
    pub(crate) vectors: Vec<f32>,
    pub(crate) links0: Vec<AtomicU32>,
    pub(crate) upper: Vec<Box<[AtomicU32]>>,
    pub(crate) levels: Vec<u8>,
    pub(crate) keys: Vec<u64>,
    pub(crate) state: Vec<AtomicU8>,
    /// Incoming level-0 links per slot, to spot nodes pruning left unreachable.
    pub(crate) indeg: Vec<AtomicU16>,
    pub(crate) locks: Vec<Mutex<()>>,
    pub(crate) key_to_slot: HashMap<u64, u32>,
}

impl Store {
    fn empty() -> Store {
        Store {
            vectors: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            levels: Vec::new(),
            keys: Vec::new(),
            state: Vec::new(),
            indeg: Vec::new(),
            locks: Vec::new(),
            key_to_slot: HashMap::new(),
        }
    }

    #[inline(always)]
    pub(crate) fn slots(&self) -> usize {
        self.levels.len()
    }
}

/// Grow `v` to hold `additional` more items: exactly when that is a big step (a
/// bulk load), geometrically (1.5×) otherwise, so memory stays near the data size.
fn reserve<T>(v: &mut Vec<T>, additional: usize) {
    let need = v.len() + additional;
    if need > v.capacity() {
        let target = need.max(v.capacity() + v.capacity() / 2);
        v.reserve_exact(target - v.len());
    }
}

/// Candidate ordered so that `BinaryHeap` pops the *nearest* first.
#[derive(Clone, Copy)]
struct Near(f32, u32);
/// Candidate ordered so that `BinaryHeap` pops the *farthest* first.
#[derive(Clone, Copy)]
struct Far(f32, u32);

impl PartialEq for Near {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Near {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
}
impl PartialEq for Far {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Far {}
impl PartialOrd for Far {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Far {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Per-thread search state, reused so a search allocates nothing in steady state.
#[derive(Default)]
struct Scratch {
    /// `visited[slot] == tag` means seen in the current search (no clearing per search).
    visited: Vec<u16>,
    tag: u16,
    cand: BinaryHeap<Near>,
    res: BinaryHeap<Far>,
    found: Vec<(f32, u32)>,
    pool: Vec<(f32, u32)>,
    selected2: Vec<u32>,
    batch: Vec<u32>,
    /// Slots whose last incoming level-0 link this thread's insert pruned.
    orphans: Vec<u32>,
}

impl Scratch {
    fn start(&mut self, slots: usize) {
        if self.visited.len() < slots {
            self.visited.resize(slots, 0);
        }
        self.tag = self.tag.wrapping_add(1);
        if self.tag == 0 {
            self.visited.fill(0);
            self.tag = 1;
        }
        self.cand.clear();
        self.res.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Run `f` with this thread's scratch; a re-entrant call (a filter callback that
/// searches) gets a fresh one instead of panicking on the borrow.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Summary numbers of an index (for metrics and benchmarks).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexStats {
    /// Live items.
    pub live: usize,
    /// Tombstoned slots still in the graph.
    pub deleted: usize,
    /// All slots (live + deleted + being inserted).
    pub slots: usize,
    /// Top level of the graph.
    pub max_level: usize,
    /// Bytes of vector data (`slots × dim × 4`).
    pub vector_bytes: usize,
    /// Bytes of neighbour ids at full capacity: `slots × 2m × 4` for level 0 plus
    /// `m × 4` per upper level of each slot (the "raw" link size hnswlib reports).
    pub link_bytes: usize,
    /// Everything the index holds on the heap (see [`Index::memory_bytes`]).
    pub memory_bytes: usize,
    /// Which SIMD kernels are in use.
    pub isa: Isa,
}

/// An HNSW index. `Send + Sync`; every method takes `&self`.
pub struct Index {
    params: Params,
    kernel: DistFn,
    /// Cosine and dot distances are `1 − dot`; l2 is the kernel's value.
    one_minus: bool,
    isa: Isa,
    kernels: Kernels,
    m0: usize,
    stride0: usize,
    stride_up: usize,
    level_mult: f64,
    pub(crate) seed: u64,
    pub(crate) store: RwLock<Store>,
    entry_lock: Mutex<()>,
    entry: AtomicU64,
    batch_gate: RwLock<()>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("params", &self.params)
            .field("isa", &self.isa)
            .field("len", &self.len())
            .finish()
    }
}

impl Index {
    /// An empty index using the fastest distance kernels this CPU supports.
    pub fn new(params: Params) -> Result<Index, Error> {
        Self::with_kernels(params, Kernels::detect())
    }

    /// An empty index with the portable kernels (for comparisons and tests).
    pub fn new_portable(params: Params) -> Result<Index, Error> {
        Self::with_kernels(params, Kernels::portable())
    }

    fn with_kernels(params: Params, k: Kernels) -> Result<Index, Error> {
        params.validate()?;
        Ok(Self::build(params, k, 0x5EED_4E5F_1D2C_3B4A))
    }

    pub(crate) fn build(params: Params, k: Kernels, seed: u64) -> Index {
        let (kernel, one_minus) = match params.metric {
            Metric::L2 => (k.l2, false),
            Metric::Cosine | Metric::Dot => (k.dot, true),
        };
        Index {
            params,
            kernel,
            one_minus,
            isa: k.isa,
            kernels: k,
            m0: 2 * params.m,
            stride0: 1 + 2 * params.m,
            stride_up: 1 + params.m,
            level_mult: 1.0 / (params.m as f64).ln(),
            seed,
            store: RwLock::new(Store::empty()),
            entry_lock: Mutex::new(()),
            entry: AtomicU64::new(NO_ENTRY),
            batch_gate: RwLock::new(()),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn dim(&self) -> usize {
        self.params.dim
    }
    pub fn metric(&self) -> Metric {
        self.params.metric
    }
    pub fn m(&self) -> usize {
        self.params.m
    }
    pub fn ef_construction(&self) -> usize {
        self.params.ef_construction
    }
    /// The SIMD instruction set of the distance kernels in use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Number of live items (inserted and not deleted).
    pub fn len(&self) -> usize {
        self.store.read().key_to_slot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, key: u64) -> bool {
        self.store.read().key_to_slot.contains_key(&key)
    }

    /// The stored vector of `key` (normalised for cosine).
    pub fn get(&self, key: u64) -> Option<Vec<f32>> {
        let st = self.store.read();
        let slot = *st.key_to_slot.get(&key)? as usize;
        let d = self.params.dim;
        Some(st.vectors[slot * d..(slot + 1) * d].to_vec())
    }

    /// Keys of all live items, in slot order.
    pub fn keys(&self) -> Vec<u64> {
        let st = self.store.read();
        (0..st.slots())
            .filter(|&s| st.state[s].load(Ordering::Acquire) != DELETED)
            .map(|s| st.keys[s])
            .collect()
    }

    /// Heap bytes held by the index: vectors, neighbour lists (with their counts),
    /// per-slot metadata, the key map, at allocated capacity. Per-thread search
    /// scratch (2 bytes per slot per searching thread) is not included.
    pub fn memory_bytes(&self) -> usize {
        let st = self.store.read();
        self.memory_of(&st)
    }

    fn memory_of(&self, st: &Store) -> usize {
        use std::mem::size_of;
        let upper: usize = st.upper.iter().map(|b| b.len() * 4).sum();
        // hashbrown: one (key, value) pair plus one control byte per bucket.
        let map = st.key_to_slot.capacity() * (size_of::<(u64, u32)>() + 1);
        std::mem::size_of::<Index>()
            + st.vectors.capacity() * 4
            + st.links0.capacity() * 4
            + st.upper.capacity() * size_of::<Box<[AtomicU32]>>()
            + upper
            + st.levels.capacity()
            + st.keys.capacity() * 8
            + st.state.capacity()
            + st.indeg.capacity() * 2
            + st.locks.capacity() * size_of::<Mutex<()>>()
            + map
    }

    pub fn stats(&self) -> IndexStats {
        let st = self.store.read();
        let slots = st.slots();
        let deleted = (0..slots)
            .filter(|&s| st.state[s].load(Ordering::Acquire) == DELETED)
            .count();
        let upper_levels: usize = st.levels.iter().map(|&l| l as usize).sum();
        let entry = self.entry.load(Ordering::Acquire);
        IndexStats {
            live: st.key_to_slot.len(),
            deleted,
            slots,
            max_level: if entry == NO_ENTRY {
                0
            } else {
                (entry & 0xff) as usize
            },
            vector_bytes: slots * self.params.dim * 4,
            link_bytes: slots * self.m0 * 4 + upper_levels * self.params.m * 4,
            memory_bytes: self.memory_of(&st),
            isa: self.isa,
        }
    }

    #[inline(always)]
    fn dist(&self, a: &[f32], b: &[f32]) -> f32 {
        let r = (self.kernel)(a, b);
        if self.one_minus { 1.0 - r } else { r }
    }

    #[inline(always)]
    fn vec<'a>(&self, st: &'a Store, slot: u32) -> &'a [f32] {
        let d = self.params.dim;
        let i = slot as usize * d;
        &st.vectors[i..i + d]
    }

    /// The `[count, ids…]` list of `slot` at `level`; empty if the slot has no such
    /// level (never happens in a well-formed graph; keeps a bug from panicking).
    #[inline(always)]
    fn links<'a>(&self, st: &'a Store, slot: u32, level: usize) -> &'a [AtomicU32] {
        let s = slot as usize;
        if level == 0 {
            &st.links0[s * self.stride0..(s + 1) * self.stride0]
        } else {
            st.upper[s]
                .get((level - 1) * self.stride_up..level * self.stride_up)
                .unwrap_or(&[])
        }
    }

    fn random_level(&self, slot: usize) -> u8 {
        // Uniform in (0, 1]: never 0, so ln is finite.
        let r = splitmix64(self.seed ^ (slot as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let u = ((r >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let l = (-u.ln() * self.level_mult).floor();
        (l as usize).min(MAX_LEVEL) as u8
    }

    /// Checks a vector; returns its squared norm (needed for cosine).
    fn check(&self, v: &[f32]) -> Result<f32, VectorError> {
        if v.len() != self.params.dim {
            return Err(VectorError::Dimension {
                expected: self.params.dim,
                got: v.len(),
            });
        }
        if !v.iter().all(|x| x.is_finite()) {
            return Err(VectorError::NonFinite);
        }
        let n2: f32 = v.iter().map(|x| x * x).sum();
        if self.params.metric == Metric::Cosine && (n2 == 0.0 || !n2.is_finite()) {
            return Err(VectorError::ZeroNorm);
        }
        Ok(n2)
    }

    /// Inserts or replaces one item.
    pub fn insert(&self, key: u64, vector: &[f32]) -> Result<(), Error> {
        self.insert_batch(&[(key, vector)])
    }

    /// Inserts or replaces many items, linking them on every core. The batch is
    /// validated whole first: one bad vector and nothing changes. A key repeated in
    /// the batch keeps its last vector. Returns once every item is searchable.
    pub fn insert_batch<V: AsRef<[f32]> + Sync>(&self, items: &[(u64, V)]) -> Result<(), Error> {
        for (position, (_, v)) in items.iter().enumerate() {
            self.check(v.as_ref())
                .map_err(|error| Error::BatchItem { position, error })?;
        }
        if items.is_empty() {
            return Ok(());
        }
        let _gate = self.batch_gate.read();
        let first = self.reserve_slots(items)?;
        let range = first..first + items.len();
        if items.len() == 1 {
            self.link_slot(range.start as u32);
        } else {
            // Workers take slots in order from a shared counter (as hnswlib does), so
            // the graph grows in insertion order rather than in rayon's split blocks.
            let next = AtomicUsize::new(range.start);
            let workers = rayon::current_num_threads().min(items.len());
            (0..workers).into_par_iter().for_each(|_| {
                loop {
                    let s = next.fetch_add(1, Ordering::Relaxed);
                    if s >= range.end {
                        break;
                    }
                    self.link_slot(s as u32);
                }
            });
        }
        Ok(())
    }

    /// Gives `x` an incoming level-0 link again. Pruning a full list (when a newer
    /// node is linked) can drop a node's last incoming edge, leaving it unreachable
    /// by any search. The link comes from `x`'s nearest out-neighbour: appended if
    /// that list has room, else replacing its farthest link whose target keeps
    /// another incoming link, so no new orphan appears.
    fn repair_orphan(&self, st: &Store, x: u32) {
        if st.indeg[x as usize].load(Ordering::Acquire) > 0
            || st.state[x as usize].load(Ordering::Acquire) == DELETED
        {
            return;
        }
        let vx = self.vec(st, x);
        let list = self.links(st, x, 0);
        let cnt = (list[0].load(Ordering::Acquire) as usize).min(self.m0);
        let mut outs: Vec<(f32, u32)> = list[1..=cnt]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&t| t != x)
            .map(|t| (self.dist(vx, self.vec(st, t)), t))
            .collect();
        outs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        for &(_, t) in &outs {
            let _g = st.locks[t as usize].lock();
            let tl = self.links(st, t, 0);
            let tc = (tl[0].load(Ordering::Acquire) as usize).min(self.m0);
            if tl[1..=tc].iter().any(|a| a.load(Ordering::Relaxed) == x) {
                return; // someone linked it meanwhile
            }
            if tc < self.m0 {
                tl[1 + tc].store(x, Ordering::Relaxed);
                tl[0].store(tc as u32 + 1, Ordering::Release);
                st.indeg[x as usize].fetch_add(1, Ordering::AcqRel);
                return;
            }
            let vt = self.vec(st, t);
            let mut victims: Vec<(f32, usize, u32)> = tl[1..=tc]
                .iter()
                .enumerate()
                .map(|(j, a)| (j, a.load(Ordering::Relaxed)))
                .map(|(j, y)| (self.dist(vt, self.vec(st, y)), j, y))
                .collect();
            victims.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
            for (_, j, y) in victims {
                let ok = st.indeg[y as usize]
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        (v > 1).then(|| v - 1)
                    })
                    .is_ok();
                if ok {
                    tl[1 + j].store(x, Ordering::Release);
                    st.indeg[x as usize].fetch_add(1, Ordering::AcqRel);
                    return;
                }
            }
        }
    }

    /// Appends the batch's slots (vectors, empty link lists, levels) under the write
    /// lock and updates the key map; tombstones slots the batch replaces.
    fn reserve_slots<V: AsRef<[f32]>>(&self, items: &[(u64, V)]) -> Result<usize, Error> {
        let mut st: RwLockWriteGuard<'_, Store> = self.store.write();
        let first = st.slots();
        let n = items.len();
        if first + n >= u32::MAX as usize {
            return Err(Error::Full(first));
        }
        let d = self.params.dim;
        reserve(&mut st.vectors, n * d);
        reserve(&mut st.links0, n * self.stride0);
        reserve(&mut st.upper, n);
        reserve(&mut st.levels, n);
        reserve(&mut st.keys, n);
        reserve(&mut st.state, n);
        reserve(&mut st.indeg, n);
        reserve(&mut st.locks, n);
        for (i, (key, v)) in items.iter().enumerate() {
            let slot = first + i;
            let v = v.as_ref();
            let start = st.vectors.len();
            st.vectors.extend_from_slice(v);
            if self.params.metric == Metric::Cosine {
                let inv = 1.0 / v.iter().map(|x| x * x).sum::<f32>().sqrt();
                st.vectors[start..].iter_mut().for_each(|x| *x *= inv);
            }
            let new_len = st.links0.len() + self.stride0;
            st.links0.resize_with(new_len, || AtomicU32::new(0));
            let level = self.random_level(slot);
            let up: Box<[AtomicU32]> = (0..level as usize * self.stride_up)
                .map(|_| AtomicU32::new(0))
                .collect();
            st.upper.push(up);
            st.levels.push(level);
            st.keys.push(*key);
            st.state.push(AtomicU8::new(RESERVED));
            st.indeg.push(AtomicU16::new(0));
            st.locks.push(Mutex::new(()));
            if let Some(old) = st.key_to_slot.insert(*key, slot as u32) {
                st.state[old as usize].store(DELETED, Ordering::Release);
            }
        }
        Ok(first)
    }

    /// Connects a reserved slot into the graph (hnswlib's `addPoint`), then makes it
    /// visible in results.
    fn link_slot(&self, slot: u32) {
        let st = self.store.read();
        let level = st.levels[slot as usize] as usize;
        let promote = self.entry_lock.lock();
        let entry = self.entry.load(Ordering::Acquire);
        if entry == NO_ENTRY {
            self.entry
                .store((slot as u64) << 8 | level as u64, Ordering::Release);
            drop(promote);
            let _ = st.state[slot as usize].compare_exchange(
                RESERVED,
                LIVE,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return;
        }
        let top = (entry & 0xff) as usize;
        // Keep the promotion lock for the whole insertion only if this item becomes
        // the new entry point (rare), so others do not start from a half-linked top.
        let promote = if level > top {
            Some(promote)
        } else {
            drop(promote);
            None
        };
        let ep = (entry >> 8) as u32;
        let q = self.vec(&st, slot);
        let mut cur = ep;
        let mut cur_d = self.dist(q, self.vec(&st, cur));
        for l in (level + 1..=top).rev() {
            (cur, cur_d) = self.greedy(&st, q, cur, cur_d, l);
        }
        // Phase 1, top-down: find and select the neighbours at every level.
        // Phase 2, bottom-up: write this node's lists, then the reverse links. A
        // concurrent insert can only reach this node through a reverse link at some
        // level, and by then every lower level is linked, so it never lands on a
        // node without neighbours (hnswlib instead locks the node for the whole
        // insertion and every reader locks each list it reads).
        let top_linked = level.min(top);
        let mut per_level: Vec<Vec<u32>> = Vec::with_capacity(top_linked + 1);
        with_scratch(|sc| {
            for l in (0..=top_linked).rev() {
                self.search_layer(
                    &st,
                    q,
                    cur,
                    cur_d,
                    self.params.ef_construction,
                    l,
                    sc,
                    |_| true,
                );
                sc.found.clear();
                sc.found.extend(
                    sc.res
                        .drain()
                        .map(|Far(d, i)| (d, i))
                        .filter(|&(_, i)| i != slot),
                );
                sc.found
                    .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                if let Some(&(d, i)) = sc.found.first() {
                    (cur, cur_d) = (i, d);
                }
                let mut selected = Vec::with_capacity(self.params.m);
                self.select_heuristic(&st, &sc.found, self.params.m, &mut selected);
                per_level.push(selected);
            }
            per_level.reverse();
            sc.orphans.clear();
            for (l, selected) in per_level.iter().enumerate() {
                {
                    let _g = st.locks[slot as usize].lock();
                    self.write_links(self.links(&st, slot, l), selected);
                }
                if l == 0 {
                    for &n in selected {
                        st.indeg[n as usize].fetch_add(1, Ordering::AcqRel);
                    }
                }
                for &n in selected {
                    self.add_link(&st, n, slot, l, sc);
                }
            }
            if st.indeg[slot as usize].load(Ordering::Acquire) == 0 {
                sc.orphans.push(slot);
            }
            let orphans = std::mem::take(&mut sc.orphans);
            for &x in &orphans {
                self.repair_orphan(&st, x);
            }
            sc.orphans = orphans;
        });
        if promote.is_some() {
            self.entry
                .store((slot as u64) << 8 | level as u64, Ordering::Release);
        }
        drop(promote);
        let _ = st.state[slot as usize].compare_exchange(
            RESERVED,
            LIVE,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    fn write_links(&self, list: &[AtomicU32], ids: &[u32]) {
        let n = ids.len().min(list.len().saturating_sub(1));
        for (a, &id) in list[1..=n].iter().zip(ids) {
            a.store(id, Ordering::Relaxed);
        }
        if let Some(c) = list.first() {
            c.store(n as u32, Ordering::Release);
        }
    }

    /// Adds `new` to `n`'s list at `level`; when full, re-selects with the heuristic
    /// among the old neighbours plus `new`.
    fn add_link(&self, st: &Store, n: u32, new: u32, level: usize, sc: &mut Scratch) {
        let max = if level == 0 { self.m0 } else { self.params.m };
        let _g = st.locks[n as usize].lock();
        let list = self.links(st, n, level);
        if list.is_empty() {
            return;
        }
        let cnt = (list[0].load(Ordering::Acquire) as usize).min(max);
        if list[1..=cnt]
            .iter()
            .any(|a| a.load(Ordering::Relaxed) == new)
        {
            return;
        }
        if cnt < max {
            list[1 + cnt].store(new, Ordering::Relaxed);
            list[0].store(cnt as u32 + 1, Ordering::Release);
            if level == 0 {
                st.indeg[new as usize].fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        let vn = self.vec(st, n);
        sc.pool.clear();
        sc.pool.push((self.dist(vn, self.vec(st, new)), new));
        for a in &list[1..=cnt] {
            let id = a.load(Ordering::Relaxed);
            sc.pool.push((self.dist(vn, self.vec(st, id)), id));
        }
        sc.pool
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let pool = std::mem::take(&mut sc.pool);
        let mut sel = std::mem::take(&mut sc.selected2);
        self.select_heuristic(st, &pool, max, &mut sel);
        self.write_links(list, &sel);
        if level == 0 {
            // `pool` is the old list plus `new`; account for what was dropped/kept.
            for &(_, id) in &pool {
                let kept = sel.contains(&id);
                if id == new {
                    if kept {
                        st.indeg[id as usize].fetch_add(1, Ordering::AcqRel);
                    }
                } else if !kept && st.indeg[id as usize].fetch_sub(1, Ordering::AcqRel) == 1 {
                    sc.orphans.push(id);
                }
            }
        }
        sc.pool = pool;
        sc.selected2 = sel;
    }

    /// Malkov's neighbour-selection heuristic: walk candidates from nearest, keep
    /// one only if it is closer to the base than to every neighbour kept so far.
    /// This keeps links pointing in diverse directions, which is what makes the
    /// graph navigable on clustered data.
    fn select_heuristic(&self, st: &Store, sorted: &[(f32, u32)], m: usize, out: &mut Vec<u32>) {
        out.clear();
        if sorted.len() <= m {
            out.extend(sorted.iter().map(|&(_, i)| i));
            return;
        }
        for &(d, c) in sorted {
            if out.len() >= m {
                break;
            }
            let vc = self.vec(st, c);
            if out.iter().all(|&r| self.dist(vc, self.vec(st, r)) >= d) {
                out.push(c);
            }
        }
    }

    /// Greedy descent on an upper layer (ef = 1).
    fn greedy(
        &self,
        st: &Store,
        q: &[f32],
        mut cur: u32,
        mut cur_d: f32,
        level: usize,
    ) -> (u32, f32) {
        loop {
            let mut changed = false;
            let list = self.links(st, cur, level);
            let cnt = list
                .first()
                .map_or(0, |c| c.load(Ordering::Acquire) as usize);
            for a in list.iter().skip(1).take(cnt) {
                let id = a.load(Ordering::Relaxed);
                let d = self.dist(q, self.vec(st, id));
                if d < cur_d {
                    (cur, cur_d) = (id, d);
                    changed = true;
                }
            }
            if !changed {
                return (cur, cur_d);
            }
        }
    }

    /// Best-first search of one layer from one entry; the `ef` best *accepted*
    /// nodes end in `sc.res`. Rejected nodes are still expanded (navigation).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn search_layer<F: Fn(u32) -> bool>(
        &self,
        st: &Store,
        q: &[f32],
        ep: u32,
        ep_d: f32,
        ef: usize,
        level: usize,
        sc: &mut Scratch,
        accept: F,
    ) {
        sc.start(st.slots());
        let tag = sc.tag;
        sc.visited[ep as usize] = tag;
        sc.cand.push(Near(ep_d, ep));
        if accept(ep) {
            sc.res.push(Far(ep_d, ep));
        }
        let mut bound = if sc.res.len() >= ef {
            ep_d
        } else {
            f32::INFINITY
        };
        while let Some(Near(d, c)) = sc.cand.pop() {
            if d > bound {
                break;
            }
            // The next candidate's list is read after this one's neighbours are
            // scored; start loading it now (links live apart from vectors).
            if let Some(Near(_, next)) = sc.cand.peek() {
                prefetch(self.links(st, *next, level));
            }
            let list = self.links(st, c, level);
            let cnt = list
                .first()
                .map_or(0, |c| c.load(Ordering::Acquire) as usize);
            let ids = list.get(1..1 + cnt).unwrap_or(&[]);
            // Two passes: first collect the unvisited neighbours and prefetch all of
            // their vectors, then compute distances. The loads of up to 2m vectors
            // overlap instead of each distance waiting on its own cache misses.
            sc.batch.clear();
            for a in ids {
                let id = a.load(Ordering::Relaxed);
                let seen = &mut sc.visited[id as usize];
                if *seen != tag {
                    *seen = tag;
                    prefetch(self.vec(st, id));
                    sc.batch.push(id);
                }
            }
            for &id in &sc.batch {
                let dd = self.dist(q, self.vec(st, id));
                if dd < bound || sc.res.len() < ef {
                    sc.cand.push(Near(dd, id));
                    if accept(id) {
                        sc.res.push(Far(dd, id));
                        if sc.res.len() > ef {
                            sc.res.pop();
                        }
                        if sc.res.len() >= ef {
                            bound = sc.res.peek().map_or(f32::INFINITY, |f| f.0);
                        }
                    }
                }
            }
        }
    }

    /// Normalises a cosine query; checks dimension and finiteness.
    fn prepare_query<'q>(&self, query: &'q [f32]) -> Result<std::borrow::Cow<'q, [f32]>, Error> {
        let n2 = self.check(query)?;
        if self.params.metric == Metric::Cosine {
            let inv = 1.0 / n2.sqrt();
            Ok(query.iter().map(|x| x * inv).collect::<Vec<_>>().into())
        } else {
            Ok(query.into())
        }
    }

    /// Approximate k nearest live items, sorted by distance (ties by slot).
    /// `ef` (clamped to ≥ k) trades speed for recall.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Neighbour>, Error> {
        let q = self.prepare_query(query)?;
        let st = self.store.read();
        Ok(self.hnsw_search(&st, &q, k, ef, |s| {
            st.state[s as usize].load(Ordering::Relaxed) == LIVE
        }))
    }

    fn hnsw_search<F: Fn(u32) -> bool>(
        &self,
        st: &Store,
        q: &[f32],
        k: usize,
        ef: usize,
        accept: F,
    ) -> Vec<Neighbour> {
        let entry = self.entry.load(Ordering::Acquire);
        if k == 0 || entry == NO_ENTRY {
            return Vec::new();
        }
        let (ep, top) = ((entry >> 8) as u32, (entry & 0xff) as usize);
        let mut cur = ep;
        let mut cur_d = self.dist(q, self.vec(st, cur));
        for l in (1..=top).rev() {
            (cur, cur_d) = self.greedy(st, q, cur, cur_d, l);
        }
        with_scratch(|sc| {
            self.search_layer(st, q, cur, cur_d, ef.max(k), 0, sc, accept);
            sc.found.clear();
            sc.found.extend(sc.res.drain().map(|Far(d, i)| (d, i)));
            sc.found
                .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            sc.found
                .iter()
                .take(k)
                .map(|&(d, s)| Neighbour {
                    key: st.keys[s as usize],
                    distance: d,
                })
                .collect()
        })
    }

    /// The top-k among live items whose key `filter` accepts.
    ///
    /// Exact scan (the true top-k) when the index is small (< 4096 items) or the
    /// filter is estimated (from 512 sampled slots) to match ≤ 5 %: there a graph
    /// walk would visit most of the index anyway. Broader filters run HNSW keeping
    /// only accepted items as results (same recall as an unfiltered search at that
    /// `ef`), falling back to the exact scan if it finds fewer than `k`.
    ///
    /// `filter` runs while the index is read-locked: it must not call back into
    /// this index's mutating methods.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<Vec<Neighbour>, Error> {
        let q = self.prepare_query(query)?;
        let st = self.store.read();
        let live = st.key_to_slot.len();
        if k == 0 || live == 0 {
            return Ok(Vec::new());
        }
        let is_live = |s: usize| st.state[s].load(Ordering::Relaxed) == LIVE;
        if live >= EXACT_SMALL {
            let slots = st.slots();
            let step = (slots / FILTER_SAMPLE).max(1);
            let (mut seen, mut hit) = (0usize, 0usize);
            for s in (0..slots).step_by(step) {
                if is_live(s) {
                    seen += 1;
                    hit += filter(st.keys[s]) as usize;
                }
            }
            let frac = if seen == 0 {
                0.0
            } else {
                hit as f64 / seen as f64
            };
            if frac > EXACT_SELECTIVITY {
                let r = self.hnsw_search(&st, &q, k, ef, |s| {
                    is_live(s as usize) && filter(st.keys[s as usize])
                });
                if r.len() >= k {
                    return Ok(r);
                }
            }
        }
        Ok(self.exact(&st, &q, k, Some(filter)))
    }

    /// Brute-force k nearest live items (optionally only those `filter` accepts).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Result<Vec<Neighbour>, Error> {
        let q = self.prepare_query(query)?;
        let st = self.store.read();
        Ok(self.exact(&st, &q, k, filter))
    }

    fn exact(
        &self,
        st: &Store,
        q: &[f32],
        k: usize,
        filter: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<Neighbour> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Far> = BinaryHeap::with_capacity(k.min(st.slots()) + 1);
        for s in 0..st.slots() {
            if st.state[s].load(Ordering::Relaxed) != LIVE {
                continue;
            }
            if let Some(f) = filter
                && !f(st.keys[s])
            {
                continue;
            }
            let d = self.dist(q, self.vec(st, s as u32));
            if heap.len() < k {
                heap.push(Far(d, s as u32));
            } else if heap.peek().is_some_and(|t| Far(d, s as u32) < *t) {
                heap.pop();
                heap.push(Far(d, s as u32));
            }
        }
        heap.into_sorted_vec()
            .into_iter()
            .map(|Far(d, s)| Neighbour {
                key: st.keys[s as usize],
                distance: d,
            })
            .collect()
    }

    /// Removes `key`; returns whether it was present. Its slot stays in the graph as
    /// a tombstone (navigable, never returned) until [`Index::compact`].
    pub fn delete(&self, key: u64) -> bool {
        let mut st = self.store.write();
        match st.key_to_slot.remove(&key) {
            Some(slot) => {
                st.state[slot as usize].store(DELETED, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// A new index with the same parameters holding only the live items (drops
    /// tombstones and their memory). The original is unchanged.
    pub fn compact(&self) -> Index {
        let _gate = self.batch_gate.write();
        let st = self.store.read();
        let items: Vec<(u64, &[f32])> = (0..st.slots())
            .filter(|&s| st.state[s].load(Ordering::Acquire) == LIVE)
            .map(|s| (st.keys[s], self.vec(&st, s as u32)))
            .collect();
        let out = Index::build(self.params, self.kernels(), self.seed);
        // Stored vectors already passed validation (cosine ones are unit length).
        if let Err(e) = out.insert_batch(&items) {
            unreachable!("stored vectors are valid: {e}");
        }
        out
    }

    pub(crate) fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Blocks inserts and returns a read view of consistent storage (every slot
    /// either live/deleted and fully linked) plus the entry point, for snapshots.
    pub(crate) fn with_quiesced<R>(&self, f: impl FnOnce(&Store, u64) -> R) -> R {
        let _gate = self.batch_gate.write();
        let st = self.store.read();
        f(&st, self.entry.load(Ordering::Acquire))
    }

    /// Builds an index from decoded parts (the decoder validated them).
    pub(crate) fn from_parts(params: Params, seed: u64, store: Store, entry: u64) -> Index {
        let ix = Index::build(params, Kernels::detect(), seed);
        *ix.store.write() = store;
        ix.entry.store(entry, Ordering::Release);
        ix
    }

    pub(crate) fn stride0(&self) -> usize {
        self.stride0
    }
    pub(crate) fn stride_up(&self) -> usize {
        self.stride_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Index>();
    }

    #[test]
    fn huge_k_does_not_preallocate() {
        let ix = Index::new(Params::new(2, Metric::L2)).unwrap();
        ix.insert(1, &[1.0, 2.0]).unwrap();
        assert_eq!(
            ix.search_exact(&[0.0, 0.0], usize::MAX, None)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(ix.search(&[0.0, 0.0], usize::MAX, 10).unwrap().len(), 1);
    }

    #[test]
    fn heap_orders() {
        let mut near = BinaryHeap::new();
        let mut far = BinaryHeap::new();
        for (d, i) in [(3.0, 1), (1.0, 2), (2.0, 3)] {
            near.push(Near(d, i));
            far.push(Far(d, i));
        }
        assert_eq!(near.pop().map(|n| n.1), Some(2));
        assert_eq!(far.pop().map(|n| n.1), Some(1));
    }

    #[test]
    fn levels_follow_geometric_distribution() {
        let ix = Index::new(Params::new(4, Metric::L2)).unwrap();
        let n = 100_000;
        let zero = (0..n).filter(|&s| ix.random_level(s) == 0).count();
        // P(level 0) = 1 - 1/m = 0.9375 for m = 16.
        let p = zero as f64 / n as f64;
        assert!((p - 0.9375).abs() < 0.01, "{p}");
    }

    #[test]
    fn reserve_is_exact_for_bulk_and_geometric_for_small() {
        let mut v: Vec<u8> = Vec::new();
        reserve(&mut v, 1000);
        assert_eq!(v.capacity(), 1000);
        v.resize(1000, 0);
        reserve(&mut v, 1);
        assert!(v.capacity() >= 1500);
    }
}
