//! A BM25 full-text index over one text per item, and reciprocal rank fusion,
//! for hybrid ranking (full-text relevance fused with vector distance).
//!
//! # Why our own index rather than tantivy
//! The text index lives in the same in-memory index state as the vectors and
//! in the same single-blob LHV1 snapshot, so a snapshot is one consistent
//! version of both; tantivy keeps a segment directory, which does not fit an
//! object store with create-only puts nor a single blob. BM25 itself is small:
//! an inverted index, document lengths and a scoring loop.
//!
//! # Tokenizer ([`tokens`])
//! A token is a maximal run of alphanumeric characters (`char::is_alphanumeric`,
//! so letters and digits of every script), lowercased character by character
//! (lowercase characters that are not alphanumeric, such as the combining dot
//! of `İ`, are dropped) and truncated to its first [`MAX_TOKEN_CHARS`]
//! characters. Everything else separates tokens. Documents and queries use the
//! same tokenizer ([`tokens`] yields owned `String`s; the index itself reuses
//! one buffer). There is no stemming and no stop-word list. Scripts written
//! without spaces (Chinese, Japanese) give one token per run of ideographs.
//!
//! # Scoring
//! Okapi BM25 with `k1 = 1.2`, `b = 0.75` and Lucene's idf:
//!
//! ```text
//! score(D, Q) = Σ over query tokens t   idf(t) · tf(t, D) · (k1 + 1) / (tf(t, D) + k1 · (1 − b + b · |D| / avgdl))
//! idf(t)      = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))
//! ```
//!
//! `N` is the number of documents with at least one token (Lucene's
//! `docCount`: an empty text is kept under its key but is no part of the
//! statistics), `n(t)` the number of documents containing `t`, `|D|` the
//! document's token count and `avgdl` the mean token count over those `N`
//! documents. As in Lucene, every occurrence of a token in the query
//! contributes (`"rust rust"` weighs `rust` twice); query tokens no document
//! has are ignored. The `(k1 + 1)` factor is the classic form: Lucene 8+ drops
//! it, which scales every score by the same constant and ranks identically.
//!
//! # Layout
//! * a term dictionary (`Box<str>` → term id) and, per term id, its postings
//!   `(slot, tf)` in no particular order;
//! * per document slot: its key, its token count, and its terms with each
//!   one's position in that term's postings, sorted by term id.
//!
//! Removing a document touches only its own postings: each is swap-removed
//! from its list, and the posting moved into its place has its position fixed
//! in its own document's term list (a binary search). Free slots and term ids
//! are reused. Terms left with no postings stay in the dictionary (a later
//! insert revives them) until they are more than half of it; then the
//! dictionary is compacted, which is amortised O(1) per removal.
//!
//! A search adds up the query terms' contributions per slot, term at a time,
//! the heaviest (rarest) term first: through a sorted list when the postings
//! touched are few, else through a dense score array with max-score pruning
//! (once the k-th best allowed partial score beats what the remaining, common
//! terms could add to any document, those terms are looked up in the
//! surviving candidates' own term lists instead of scanning their long
//! postings). It then keeps the best `k` in a bounded heap; an `allow` filter
//! is asked only about candidates that would enter the heap. Results are
//! exact, and equal contents give bit-identical scores whatever the history.
//!
//! # Binary form ([`TextIndex::encode`])
//! ```text
//! magic    4 bytes "LHTX", then a version byte (1)
//! docs     varint count, then each live key ascending: the first as is, the
//!          others as the (non-zero) difference from the previous one
//! terms    varint count, then each term in ascending byte order:
//!          varint byte length, UTF-8 bytes, varint posting count,
//!          postings as (varint document number delta, varint tf) by ascending
//!          document number (the position of its key in the docs section)
//! crc32    u32 little-endian, CRC-32 (IEEE) of every byte before it
//! ```
//! Varints are unsigned LEB128. Document lengths are not stored: a
//! document's length is the sum of its term frequencies. The form is
//! canonical: equal contents encode to equal bytes (a decoded index renumbers
//! its slots and term ids, which no answer depends on). A term must be
//! non-empty and at most [`MAX_TOKEN_CHARS`] characters. Decoding checks the checksum first, then every count against the
//! bytes left, so hostile bytes neither panic nor make it allocate more than
//! a small multiple of their own size.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::mem::size_of;

/// BM25's term-frequency saturation.
pub const K1: f64 = 1.2;
/// BM25's document-length normalisation.
pub const B: f64 = 0.75;
/// Longest token, in characters; longer runs are truncated.
pub const MAX_TOKEN_CHARS: usize = 64;

const MAGIC: &[u8; 4] = b"LHTX";
const VERSION: u8 = 1;
/// Magic, version and checksum.
const FRAME_BYTES: usize = MAGIC.len() + 1 + 4;
/// Dead terms tolerated in the dictionary before it may be compacted.
const MIN_DEAD_TERMS: usize = 32;

/// Why bytes are not a text index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bm25Error {
    #[error("too short to be a text index ({0} bytes)")]
    TooShort(usize),
    #[error("not a text index (bad magic)")]
    BadMagic,
    #[error("unsupported text index version {0}")]
    Version(u8),
    #[error("text index checksum mismatch (corrupt or truncated)")]
    Checksum,
    #[error("text index truncated while reading {0}")]
    Truncated(&'static str),
    #[error("text index {what} count {count} exceeds what the {left} bytes left can hold")]
    Count {
        what: &'static str,
        count: u64,
        left: usize,
    },
    #[error("invalid text index: {0}")]
    Invalid(&'static str),
    #[error("{0} bytes after the end of the text index")]
    Trailing(usize),
}

/// The tokenizer used for documents and queries (see the module docs):
/// lowercased alphanumeric runs, at most [`MAX_TOKEN_CHARS`] characters each.
///
/// ```
/// use lakehouse_vectord::bm25::tokens;
/// let t: Vec<String> = tokens("Crème brûlée, 東京 & CO2-émissions!").collect();
/// assert_eq!(t, ["crème", "brûlée", "東京", "co2", "émissions"]);
/// ```
pub fn tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut t = Tokens::new(text);
    std::iter::from_fn(move || {
        let mut buf = String::new();
        t.next_into(&mut buf).then_some(buf)
    })
}

/// The tokenizer's state; [`Tokens::next_into`] reuses the caller's buffer.
struct Tokens<'a> {
    rest: std::str::Chars<'a>,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: text.chars() }
    }

    /// Puts the next token in `buf`; false when there is none.
    fn next_into(&mut self, buf: &mut String) -> bool {
        buf.clear();
        let mut chars = 0;
        for c in self.rest.by_ref() {
            if c.is_alphanumeric() {
                if chars < MAX_TOKEN_CHARS {
                    chars += push_lower(c, buf, MAX_TOKEN_CHARS - chars);
                }
            } else if !buf.is_empty() {
                return true;
            }
        }
        !buf.is_empty()
    }
}

/// Appends `c` lowercased (alphanumeric characters only, at most `room`);
/// returns how many characters it appended.
fn push_lower(c: char, buf: &mut String, room: usize) -> usize {
    if c.is_ascii() {
        buf.push(c.to_ascii_lowercase());
        return 1;
    }
    let mut n = 0;
    for l in c.to_lowercase() {
        if n < room && l.is_alphanumeric() {
            buf.push(l);
            n += 1;
        }
    }
    n
}

/// Decode's check on a term: non-empty and at most [`MAX_TOKEN_CHARS`]
/// characters. Deliberately not "alphanumeric and lowercase": those follow
/// the Unicode tables of the toolchain, which a snapshot must outlive.
fn is_term(term: &str) -> bool {
    !term.is_empty() && term.chars().count() <= MAX_TOKEN_CHARS
}

/// One document's occurrences of one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Posting {
    slot: u32,
    tf: u32,
}

/// One of a document's terms and the index of its posting in that term's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DocTerm {
    term: u32,
    pos: u32,
}

/// An inverted index over short-to-medium texts, keyed by the caller's u64
/// item keys (see the module docs).
#[derive(Clone, Default)]
pub struct TextIndex {
    /// Term → term id (index into `postings`). Includes dead terms (no postings).
    dict: HashMap<Box<str>, u32>,
    /// Per term id, its postings, unordered.
    postings: Vec<Vec<Posting>>,
    /// Term ids in no dictionary entry, ready for reuse (their postings empty).
    free_terms: Vec<u32>,
    /// Dictionary entries whose postings are empty.
    dead_terms: usize,
    /// Per slot: the key, the token count, the terms sorted by term id.
    doc_keys: Vec<u64>,
    doc_lens: Vec<u32>,
    doc_terms: Vec<Box<[DocTerm]>>,
    /// Slots no key holds (length 0, no terms).
    free_slots: Vec<u32>,
    /// Key → slot of every live document.
    slots: HashMap<u64, u32>,
    /// Live documents with at least one token: BM25's `N`.
    scored_docs: usize,
    /// Tokens over live documents.
    total_len: u64,
}

impl fmt::Debug for TextIndex {
    /// A summary: an index can hold millions of postings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextIndex")
            .field("docs", &self.slots.len())
            .field("scored_docs", &self.scored_docs)
            .field("terms", &(self.dict.len() - self.dead_terms))
            .field("total_len", &self.total_len)
            .finish_non_exhaustive()
    }
}

impl TextIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes `text` under `key`, replacing what `key` had.
    pub fn insert(&mut self, key: u64, text: &str) {
        self.remove(key);
        let mut ids = Vec::new();
        let mut buf = String::new();
        let mut toks = Tokens::new(text);
        while toks.next_into(&mut buf) {
            ids.push(self.term_id(&buf));
        }
        ids.sort_unstable();
        // Memory runs out long before 2^32 tokens, slots or terms.
        let len = ids.len() as u32;
        let slot = self.alloc_slot(key, len);
        let mut terms = Vec::with_capacity(ids.chunk_by(|a, b| a == b).count());
        for run in ids.chunk_by(|a, b| a == b) {
            let term = run[0];
            let list = &mut self.postings[term as usize];
            if list.is_empty() {
                self.dead_terms -= 1;
            }
            let pos = list.len() as u32;
            list.push(Posting {
                slot,
                tf: run.len() as u32,
            });
            terms.push(DocTerm { term, pos });
        }
        self.doc_terms[slot as usize] = terms.into_boxed_slice();
        if len > 0 {
            self.scored_docs += 1;
            self.total_len += u64::from(len);
        }
    }

    /// The id of `term`, creating a (dead, until given a posting) entry.
    fn term_id(&mut self, term: &str) -> u32 {
        if let Some(&id) = self.dict.get(term) {
            return id;
        }
        let id = self.free_terms.pop().unwrap_or_else(|| {
            self.postings.push(Vec::new());
            (self.postings.len() - 1) as u32
        });
        self.dict.insert(term.into(), id);
        self.dead_terms += 1;
        id
    }

    fn alloc_slot(&mut self, key: u64, len: u32) -> u32 {
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.doc_keys[s as usize] = key;
                self.doc_lens[s as usize] = len;
                s
            }
            None => {
                self.doc_keys.push(key);
                self.doc_lens.push(len);
                self.doc_terms.push(Box::default());
                (self.doc_keys.len() - 1) as u32
            }
        };
        self.slots.insert(key, slot);
        slot
    }

    /// Forgets `key`; false if it was absent.
    pub fn remove(&mut self, key: u64) -> bool {
        let Some(slot) = self.slots.remove(&key) else {
            return false;
        };
        let s = slot as usize;
        let terms = std::mem::take(&mut self.doc_terms[s]);
        for &DocTerm { term, pos } in terms.iter() {
            let list = &mut self.postings[term as usize];
            list.swap_remove(pos as usize);
            if let Some(moved) = list.get(pos as usize) {
                let moved_terms = &mut self.doc_terms[moved.slot as usize];
                if let Ok(i) = moved_terms.binary_search_by_key(&term, |d| d.term) {
                    moved_terms[i].pos = pos;
                }
            }
            if list.is_empty() {
                self.dead_terms += 1;
                *list = Vec::new();
            } else if list.capacity() > 16 && list.len() < list.capacity() / 4 {
                list.shrink_to(list.len() * 2);
            }
        }
        let len = std::mem::take(&mut self.doc_lens[s]);
        if len > 0 {
            self.scored_docs -= 1;
            self.total_len -= u64::from(len);
        }
        self.free_slots.push(slot);
        self.compact_terms();
        true
    }

    /// Drops dead terms from the dictionary once they are more than half of it.
    fn compact_terms(&mut self) {
        if self.dead_terms < MIN_DEAD_TERMS || self.dead_terms * 2 <= self.dict.len() {
            return;
        }
        let postings = &self.postings;
        let free = &mut self.free_terms;
        self.dict.retain(|_, &mut id| {
            let live = !postings[id as usize].is_empty();
            if !live {
                free.push(id);
            }
            live
        });
        self.dict.shrink_to_fit();
        self.dead_terms = 0;
    }

    /// Live documents (keys), including those whose text had no token.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether `key` is indexed.
    pub fn contains(&self, key: u64) -> bool {
        self.slots.contains_key(&key)
    }

    /// The `k` best keys for `query` by BM25 (see the module docs), best
    /// first, ties broken by key ascending; only keys with a score > 0 (at
    /// least one query term). Keys for which `allow` returns false are
    /// skipped: the result is still the exact top `k` among allowed keys.
    pub fn search(
        &self,
        query: &str,
        k: usize,
        allow: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<(u64, f32)> {
        if k == 0 || self.scored_docs == 0 {
            return Vec::new();
        }
        let weights = self.query_weights(query);
        if weights.is_empty() {
            return Vec::new();
        }
        let touched: usize = weights
            .iter()
            .map(|&(t, _)| self.postings[t as usize].len())
            .sum();
        let candidates = if touched.saturating_mul(16) < self.doc_keys.len() {
            self.accumulate_sparse(&weights, touched)
        } else {
            let prune = Prune {
                k,
                allow,
                lookup_cost: LOOKUP_COST,
            };
            self.accumulate_dense(&weights, Some(prune))
        };
        ranked_list(self.best(candidates, k, allow).into_sorted_vec())
    }

    /// Per distinct known query term: its id and `idf · (k1 + 1) · occurrences`
    /// (the most one document can get from it), heaviest first, equal weights
    /// in the terms' byte order. Scores are summed in this order, which depends
    /// on the contents only (not on ids, which insertion history and decoding
    /// assign): equal contents give bit-identical scores.
    fn query_weights(&self, query: &str) -> Vec<(u32, f32)> {
        let mut found: Vec<(&str, u32)> = Vec::new();
        let mut buf = String::new();
        let mut toks = Tokens::new(query);
        while toks.next_into(&mut buf) {
            if let Some((term, &id)) = self.dict.get_key_value(buf.as_str())
                && !self.postings[id as usize].is_empty()
            {
                found.push((term, id));
            }
        }
        found.sort_unstable();
        let n = self.scored_docs as f64;
        let mut weights: Vec<(&str, u32, f32)> = found
            .chunk_by(|a, b| a.1 == b.1)
            .map(|run| {
                let (term, id) = run[0];
                let df = self.postings[id as usize].len() as f64;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                (term, id, (idf * (K1 + 1.0) * run.len() as f64) as f32)
            })
            .collect();
        weights.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
        weights.into_iter().map(|(_, id, w)| (id, w)).collect()
    }

    /// The constants of the length normalisation `c0 + c1 · |D|`.
    fn norm_constants(&self) -> (f32, f32) {
        let avgdl = self.total_len as f64 / self.scored_docs as f64;
        ((K1 * (1.0 - B)) as f32, (K1 * B / avgdl) as f32)
    }

    /// Scores term at a time through a dense per-slot array: for queries
    /// touching many slots. With `prune`, once the k-th best
    /// allowed partial score exceeds what the remaining terms could add to any
    /// one document (each adds less than its weight), documents not yet touched
    /// cannot make the top `k`: the remaining terms are then looked up in the
    /// candidates' own term lists instead of scanning their (typically long,
    /// common-word) postings, and candidates that cannot catch up are dropped
    /// (only when the candidates are few enough for that to be cheaper).
    /// The scores of the candidates kept are the same, bit for bit.
    fn accumulate_dense(
        &self,
        weights: &[(u32, f32)],
        prune: Option<Prune<'_>>,
    ) -> Vec<(u32, f32)> {
        let norm = self.norm_constants();
        let mut scores = vec![0f32; self.doc_keys.len()];
        let mut touched = Vec::new();
        // rest[i]: the most terms i.. can add to one document; left[i]: their postings.
        let mut rest = vec![0f64; weights.len() + 1];
        let mut left = vec![0usize; weights.len() + 1];
        for i in (0..weights.len()).rev() {
            rest[i] = rest[i + 1] + f64::from(weights[i].1);
            left[i] = left[i + 1] + self.postings[weights[i].0 as usize].len();
        }
        for (i, &(term, w)) in weights.iter().enumerate() {
            // No partial score exceeds rest[0] - rest[i], so only then can one
            // beat rest[i]; and looking terms up pays only for few candidates.
            if let Some(Prune {
                k,
                allow,
                lookup_cost,
            }) = prune
                && rest[0] - rest[i] > rest[i]
                && touched
                    .len()
                    .saturating_mul(lookup_cost * (weights.len() - i))
                    < left[i]
            {
                let partials = touched.iter().map(|&s| (s, scores[s as usize]));
                let best = self.best(partials, k, allow);
                if best.len() == k
                    && let Some(theta) = best.peek().map(|r| f64::from(r.score))
                    && theta > rest[i] * SLACK
                {
                    let lookup = Lookup {
                        terms: &weights[i..],
                        rest: rest[i],
                        theta,
                        norm,
                    };
                    return self.finish_by_documents(&scores, &touched, &lookup);
                }
            }
            for p in &self.postings[term as usize] {
                let s = &mut scores[p.slot as usize];
                // Every contribution is > 0, so 0 means untouched.
                if *s == 0.0 {
                    touched.push(p.slot);
                }
                *s += contribution(w, p.tf, self.doc_lens[p.slot as usize], norm);
            }
        }
        touched
            .into_iter()
            .map(|slot| (slot, scores[slot as usize]))
            .collect()
    }

    /// The pruned end of [`Self::accumulate_dense`]: the candidates that can
    /// still reach `theta`, their remaining terms found in their term lists.
    fn finish_by_documents(
        &self,
        scores: &[f32],
        touched: &[u32],
        lookup: &Lookup<'_>,
    ) -> Vec<(u32, f32)> {
        let mut out = Vec::new();
        for &slot in touched {
            let partial = scores[slot as usize];
            if (f64::from(partial) + lookup.rest) * SLACK < lookup.theta {
                continue;
            }
            let terms = &self.doc_terms[slot as usize];
            let dl = self.doc_lens[slot as usize];
            let mut score = partial;
            for &(term, w) in lookup.terms {
                if let Ok(i) = terms.binary_search_by_key(&term, |d| d.term) {
                    let tf = self.postings[term as usize][terms[i].pos as usize].tf;
                    score += contribution(w, tf, dl, lookup.norm);
                }
            }
            out.push((slot, score));
        }
        out
    }

    /// Scores through a sorted list of contributions: for queries touching
    /// few slots. Adds in the same order as the dense path (term by term).
    fn accumulate_sparse(&self, weights: &[(u32, f32)], touched: usize) -> Vec<(u32, f32)> {
        let norm = self.norm_constants();
        let mut contributions = Vec::with_capacity(touched);
        for &(term, w) in weights {
            for p in &self.postings[term as usize] {
                let c = contribution(w, p.tf, self.doc_lens[p.slot as usize], norm);
                contributions.push((p.slot, c));
            }
        }
        // Stable, so one slot's contributions stay in term order.
        contributions.sort_by_key(|&(slot, _)| slot);
        contributions.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        contributions
    }

    /// The best `k` allowed candidates, in a heap with the worst on top.
    /// `allow` is asked only about candidates that would enter the heap.
    fn best(
        &self,
        candidates: impl IntoIterator<Item = (u32, f32)>,
        k: usize,
        allow: Allow<'_>,
    ) -> BinaryHeap<Ranked> {
        let mut heap = BinaryHeap::new();
        for (slot, score) in candidates {
            let hit = Ranked {
                score,
                key: self.doc_keys[slot as usize],
            };
            let full = heap.len() == k;
            if full && heap.peek().is_some_and(|worst| hit >= *worst) {
                continue;
            }
            if allow.is_some_and(|f| !f(hit.key)) {
                continue;
            }
            if full {
                heap.pop();
            }
            heap.push(hit);
        }
        heap
    }

    /// Approximate heap bytes held: every table at its allocated capacity
    /// (the dictionary as hashbrown lays it out: one entry and one control
    /// byte per bucket).
    pub fn memory_bytes(&self) -> usize {
        let dict = self.dict.capacity() * (size_of::<(Box<str>, u32)>() + 1)
            + self.dict.keys().map(|t| t.len()).sum::<usize>();
        let postings = self.postings.capacity() * size_of::<Vec<Posting>>()
            + self
                .postings
                .iter()
                .map(|p| p.capacity() * size_of::<Posting>())
                .sum::<usize>();
        let doc_terms = self.doc_terms.capacity() * size_of::<Box<[DocTerm]>>()
            + self
                .doc_terms
                .iter()
                .map(|t| t.len() * size_of::<DocTerm>())
                .sum::<usize>();
        dict + postings
            + doc_terms
            + self.free_terms.capacity() * 4
            + self.doc_keys.capacity() * 8
            + self.doc_lens.capacity() * 4
            + self.free_slots.capacity() * 4
            + self.slots.capacity() * (size_of::<(u64, u32)>() + 1)
    }
}

/// A scored key, ordered so that a worse hit is greater: lower score, then
/// (equal scores) higher key. A max-heap of these keeps the worst on top.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f32,
    key: u64,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.key.cmp(&other.key))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// A search's optional key filter.
type Allow<'a> = Option<&'a (dyn Fn(u64) -> bool + Sync)>;

/// Slack on the pruning bounds, far above the rounding of f32 sums of a few
/// dozen terms: pruning never drops a document that could make the top k.
const SLACK: f64 = 1.0 + 1e-4;

/// What looking one term up in one document's term list costs, in postings
/// scanned (a cache miss or two against a sequential read): pruning switches
/// to lookups only when they cost less than scanning the remaining postings.
const LOOKUP_COST: usize = 16;

/// How [`TextIndex::accumulate_dense`] may prune.
#[derive(Clone, Copy)]
struct Prune<'a> {
    k: usize,
    allow: Allow<'a>,
    /// [`LOOKUP_COST`] (tests use 0, to prune whenever the bounds allow).
    lookup_cost: usize,
}

/// What [`TextIndex::finish_by_documents`] needs.
struct Lookup<'a> {
    /// The terms not yet scored, with their weights.
    terms: &'a [(u32, f32)],
    /// The most they can add to one document.
    rest: f64,
    /// The k-th best allowed partial score: the final k-th best is at least this.
    theta: f64,
    /// [`TextIndex::norm_constants`].
    norm: (f32, f32),
}

/// One posting's BM25 contribution; every scoring path uses this expression,
/// so equal inputs give bit-identical scores.
#[inline]
fn contribution(w: f32, tf: u32, dl: u32, (c0, c1): (f32, f32)) -> f32 {
    let tf = tf as f32;
    w * tf / (tf + c0 + c1 * dl as f32)
}

fn ranked_list(best_first: Vec<Ranked>) -> Vec<(u64, f32)> {
    best_first.into_iter().map(|r| (r.key, r.score)).collect()
}

/// Reciprocal rank fusion: score(key) = Σ over lists containing it of
/// 1 / (k + rank), rank starting at 1 (k = 60 is usual). A key listed twice in
/// one list counts once, at its first rank. Returns at most `limit` keys, best
/// first, ties (equal `f32` scores) by key ascending.
///
/// `k` should be finite and ≥ 0 (the caller validates what users send); a
/// negative, infinite or NaN `k` is taken as 0, so scores are never NaN.
pub fn rrf(lists: &[&[u64]], k: f32, limit: usize) -> Vec<(u64, f32)> {
    if limit == 0 {
        return Vec::new();
    }
    let k = if k.is_finite() && k >= 0.0 {
        f64::from(k)
    } else {
        0.0
    };
    let mut scores: HashMap<u64, f64> = HashMap::new();
    let mut seen = HashSet::new();
    for list in lists {
        seen.clear();
        for (i, &key) in list.iter().enumerate() {
            if seen.insert(key) {
                *scores.entry(key).or_default() += 1.0 / (k + (i + 1) as f64);
            }
        }
    }
    let mut ranked: Vec<Ranked> = scores
        .into_iter()
        .map(|(key, score)| Ranked {
            score: score as f32,
            key,
        })
        .collect();
    if ranked.len() > limit {
        ranked.select_nth_unstable(limit - 1);
        ranked.truncate(limit);
    }
    ranked.sort_unstable();
    ranked_list(ranked)
}

// ---------------------------------------------------------------- binary form

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads the body of an encoded index, checking every count against the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, Bm25Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let &b = self.bytes.get(self.pos).ok_or(Bm25Error::Truncated(what))?;
            self.pos += 1;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(Bm25Error::Invalid("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Bm25Error::Invalid("varint longer than 10 bytes"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Bm25Error> {
        u32::try_from(self.varint(what)?).map_err(|_| Bm25Error::Invalid(what))
    }

    /// A count of items each taking at least `min_bytes` of what follows.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, Bm25Error> {
        let count = self.varint(what)?;
        let left = self.left();
        match usize::try_from(count) {
            Ok(n) if n <= left / min_bytes => Ok(n),
            _ => Err(Bm25Error::Count { what, count, left }),
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Bm25Error> {
        if n > self.left() {
            return Err(Bm25Error::Truncated(what));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

/// Strictly ascending values stored as the first, then non-zero differences.
fn next_ascending(prev: Option<u64>, delta: u64, what: &'static str) -> Result<u64, Bm25Error> {
    match prev {
        None => Ok(delta),
        Some(_) if delta == 0 => Err(Bm25Error::Invalid(what)),
        Some(p) => p.checked_add(delta).ok_or(Bm25Error::Invalid(what)),
    }
}

impl TextIndex {
    /// A compact, canonical binary form for snapshots (see the module docs),
    /// appended to `out`. It does not record its own length: a container
    /// holding more than the index must frame it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        let mut live: Vec<(u64, u32)> = self.slots.iter().map(|(&k, &s)| (k, s)).collect();
        live.sort_unstable();
        let mut number = vec![u32::MAX; self.doc_keys.len()];
        put_varint(out, live.len() as u64);
        let mut prev = 0;
        for (i, &(key, slot)) in live.iter().enumerate() {
            put_varint(out, key - prev);
            prev = key;
            number[slot as usize] = i as u32;
        }
        let mut terms: Vec<(&str, u32)> = self
            .dict
            .iter()
            .filter(|&(_, &id)| !self.postings[id as usize].is_empty())
            .map(|(t, &id)| (&**t, id))
            .collect();
        terms.sort_unstable();
        put_varint(out, terms.len() as u64);
        let mut scratch: Vec<(u32, u32)> = Vec::new();
        for (term, id) in terms {
            put_varint(out, term.len() as u64);
            out.extend_from_slice(term.as_bytes());
            scratch.clear();
            let list = &self.postings[id as usize];
            scratch.extend(list.iter().map(|p| (number[p.slot as usize], p.tf)));
            scratch.sort_unstable();
            put_varint(out, scratch.len() as u64);
            let mut prev = 0;
            for &(doc, tf) in &scratch {
                put_varint(out, u64::from(doc - prev));
                put_varint(out, u64::from(tf));
                prev = doc;
            }
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// The inverse of [`TextIndex::encode`], over exactly `bytes`. Never
    /// panics; rejects anything that would break the index's invariants.
    pub fn decode(bytes: &[u8]) -> Result<Self, Bm25Error> {
        if bytes.len() < FRAME_BYTES {
            return Err(Bm25Error::TooShort(bytes.len()));
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(Bm25Error::BadMagic);
        }
        if bytes[MAGIC.len()] != VERSION {
            return Err(Bm25Error::Version(bytes[MAGIC.len()]));
        }
        let (data, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(data) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(Bm25Error::Checksum);
        }
        let mut r = Reader {
            bytes: data,
            pos: MAGIC.len() + 1,
        };
        let mut ix = Self::decode_docs(&mut r)?;
        ix.decode_terms(&mut r)?;
        if r.left() != 0 {
            return Err(Bm25Error::Trailing(r.left()));
        }
        ix.finish_decode();
        Ok(ix)
    }

    /// The docs section: keys, each in the slot of its document number.
    fn decode_docs(r: &mut Reader<'_>) -> Result<Self, Bm25Error> {
        let n = r.count("document", 1)?;
        let mut ix = Self {
            doc_keys: Vec::with_capacity(n),
            slots: HashMap::with_capacity(n),
            ..Self::default()
        };
        let mut prev = None;
        for i in 0..n {
            let key = next_ascending(prev, r.varint("document key")?, "keys not ascending")?;
            prev = Some(key);
            ix.doc_keys.push(key);
            ix.slots.insert(key, i as u32);
        }
        ix.doc_lens = vec![0; n];
        Ok(ix)
    }

    /// The terms section: the dictionary, the postings, the document lengths.
    fn decode_terms(&mut self, r: &mut Reader<'_>) -> Result<(), Bm25Error> {
        let n_terms = r.count("term", 3)?;
        self.dict.reserve(n_terms);
        self.postings.reserve(n_terms);
        let mut prev_term: &[u8] = &[];
        for id in 0..n_terms as u32 {
            let len = r.count("term byte", 1)?;
            let bytes = r.take(len, "term")?;
            let term =
                std::str::from_utf8(bytes).map_err(|_| Bm25Error::Invalid("term not UTF-8"))?;
            if !is_term(term) {
                return Err(Bm25Error::Invalid("term empty or too long"));
            }
            if id > 0 && bytes <= prev_term {
                return Err(Bm25Error::Invalid("terms not ascending"));
            }
            prev_term = bytes;
            let list = self.decode_postings(r)?;
            self.dict.insert(term.into(), id);
            self.postings.push(list);
        }
        Ok(())
    }

    /// One term's postings; adds their frequencies to the document lengths.
    fn decode_postings(&mut self, r: &mut Reader<'_>) -> Result<Vec<Posting>, Bm25Error> {
        let n_docs = self.doc_keys.len();
        let df = r.count("posting", 2)?;
        if df == 0 || df > n_docs {
            return Err(Bm25Error::Invalid("posting count out of range"));
        }
        let mut list = Vec::with_capacity(df);
        let mut prev = None;
        for _ in 0..df {
            let doc = next_ascending(prev, r.varint("posting")?, "postings not ascending")?;
            prev = Some(doc);
            let tf = r.u32("term frequency")?;
            let slot = match usize::try_from(doc) {
                Ok(d) if d < n_docs && tf > 0 => d,
                _ => return Err(Bm25Error::Invalid("posting out of range")),
            };
            let dl = &mut self.doc_lens[slot];
            *dl = dl
                .checked_add(tf)
                .ok_or(Bm25Error::Invalid("document longer than 2^32 tokens"))?;
            list.push(Posting {
                slot: slot as u32,
                tf,
            });
        }
        Ok(list)
    }

    /// Builds each document's term list from the postings (one exact
    /// allocation per document; term ids ascend, so each list is sorted)
    /// and the corpus statistics.
    fn finish_decode(&mut self) {
        let mut counts = vec![0usize; self.doc_keys.len()];
        for p in self.postings.iter().flatten() {
            counts[p.slot as usize] += 1;
        }
        let mut lists: Vec<Vec<DocTerm>> = counts.into_iter().map(Vec::with_capacity).collect();
        for (term, list) in self.postings.iter().enumerate() {
            for (pos, p) in list.iter().enumerate() {
                lists[p.slot as usize].push(DocTerm {
                    term: term as u32,
                    pos: pos as u32,
                });
            }
        }
        self.doc_terms = lists.into_iter().map(Vec::into_boxed_slice).collect();
        self.scored_docs = self.doc_lens.iter().filter(|&&l| l > 0).count();
        self.total_len = self.doc_lens.iter().map(|&l| u64::from(l)).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Instant;

    use proptest::prelude::*;

    /// Every structural invariant of the index; panics (the test fails) on a breach.
    fn check_invariants(ix: &TextIndex) {
        let slots = ix.doc_keys.len();
        assert_eq!(ix.doc_lens.len(), slots);
        assert_eq!(ix.doc_terms.len(), slots);
        assert_eq!(ix.slots.len() + ix.free_slots.len(), slots);
        let mut live = vec![false; slots];
        for (&key, &slot) in &ix.slots {
            assert_eq!(ix.doc_keys[slot as usize], key);
            live[slot as usize] = true;
        }
        for &s in &ix.free_slots {
            assert!(!live[s as usize], "free slot {s} is live");
            assert_eq!(ix.doc_lens[s as usize], 0);
            assert!(ix.doc_terms[s as usize].is_empty());
        }
        let (mut scored, mut total, mut doc_postings) = (0, 0u64, 0);
        for s in (0..slots).filter(|&s| live[s]) {
            let terms = &ix.doc_terms[s];
            assert!(terms.windows(2).all(|w| w[0].term < w[1].term));
            let mut len = 0u32;
            for dt in terms.iter() {
                let p = ix.postings[dt.term as usize][dt.pos as usize];
                assert_eq!(p.slot as usize, s);
                assert!(p.tf > 0);
                len += p.tf;
            }
            assert_eq!(ix.doc_lens[s], len);
            scored += usize::from(len > 0);
            total += u64::from(len);
            doc_postings += terms.len();
        }
        assert_eq!(ix.scored_docs, scored);
        assert_eq!(ix.total_len, total);
        let postings: usize = ix.postings.iter().map(Vec::len).sum();
        assert_eq!(postings, doc_postings);
        let mut owner = vec![0u8; ix.postings.len()];
        let mut dead = 0;
        for (term, &id) in &ix.dict {
            assert!(is_term(term), "{term:?}");
            owner[id as usize] += 1;
            dead += usize::from(ix.postings[id as usize].is_empty());
        }
        assert_eq!(ix.dead_terms, dead);
        for &id in &ix.free_terms {
            owner[id as usize] += 1;
            assert!(ix.postings[id as usize].is_empty());
        }
        assert!(owner.iter().all(|&o| o == 1), "term ids not a partition");
    }

    /// BM25 recomputed from scratch over `docs`, every positive score, best first.
    fn naive(
        docs: &BTreeMap<u64, String>,
        query: &str,
        allow: &dyn Fn(u64) -> bool,
    ) -> Vec<(u64, f64)> {
        let toks: BTreeMap<u64, Vec<String>> = docs
            .iter()
            .map(|(&k, t)| (k, tokens(t).collect()))
            .collect();
        let n = toks.values().filter(|t| !t.is_empty()).count() as f64;
        let avgdl = toks.values().map(Vec::len).sum::<usize>() as f64 / n;
        let query: Vec<String> = tokens(query).collect();
        let mut out = Vec::new();
        for (&key, doc) in toks.iter().filter(|&(&k, _)| allow(k)) {
            let mut score = 0.0;
            for t in &query {
                let df = toks.values().filter(|d| d.contains(t)).count() as f64;
                let tf = doc.iter().filter(|x| *x == t).count() as f64;
                if tf > 0.0 {
                    let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                    let norm = K1 * (1.0 - B + B * doc.len() as f64 / avgdl);
                    score += idf * tf * (K1 + 1.0) / (tf + norm);
                }
            }
            if score > 0.0 {
                out.push((key, score));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// `got` is the top `k` of the reference: same length, same keys in order
    /// (a swap allowed only between near-equal scores), scores within 1e-4.
    fn assert_matches(got: &[(u64, f32)], reference: &[(u64, f64)], k: usize) {
        assert_eq!(
            got.len(),
            reference.len().min(k),
            "{got:?} vs {reference:?}"
        );
        let by_key: HashMap<u64, f64> = reference.iter().copied().collect();
        let mut seen = HashSet::new();
        for (i, &(key, score)) in got.iter().enumerate() {
            let (rkey, rscore) = reference[i];
            assert!(
                (f64::from(score) - rscore).abs() <= 1e-4,
                "rank {i}: {got:?} vs {reference:?}"
            );
            assert!(seen.insert(key), "{key} twice");
            if key != rkey {
                let own = by_key.get(&key).copied().unwrap_or(f64::NAN);
                assert!(
                    (own - rscore).abs() <= 1e-6,
                    "rank {i}: {got:?} vs {reference:?}"
                );
            }
        }
    }

    fn index_of(docs: &[(u64, &str)]) -> TextIndex {
        let mut ix = TextIndex::new();
        for &(k, t) in docs {
            ix.insert(k, t);
        }
        check_invariants(&ix);
        ix
    }

    fn round_trip(ix: &TextIndex) -> TextIndex {
        let mut bytes = vec![0xAA];
        ix.encode(&mut bytes);
        let back = TextIndex::decode(&bytes[1..]).unwrap();
        check_invariants(&back);
        let mut again = Vec::new();
        back.encode(&mut again);
        assert_eq!(again, bytes[1..], "encoding is canonical");
        back
    }

    #[test]
    fn bm25_scores_match_hand_computed_values() {
        // N = 3 (the empty text is not counted), avgdl = 9 / 3 = 3.
        let ix = index_of(&[
            (1, "apple banana apple"),
            (2, "banana cherry"),
            (3, "cherry date elderberry fig"),
            (4, ""),
        ]);
        // idf(apple) = ln(1 + 2.5 / 1.5); doc 1: tf 2, |D| = avgdl so the norm is k1:
        // 2 · 2.2 / (2 + 1.2) = 1.375.
        let apple = (1.0f64 + 2.5 / 1.5).ln() * 1.375;
        assert!((apple - 1.348_640_222_891_123_6).abs() < 1e-12);
        let got = ix.search("apple", 10, None);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 1);
        assert!((f64::from(got[0].1) - apple).abs() < 1e-5, "{got:?}");
        // idf(banana) = idf(cherry) = ln(1.6). Doc 2: |D| = 2, norm 1.2 · (0.25 + 0.5) = 0.9;
        // doc 1: norm 1.2; doc 3: |D| = 4, norm 1.5.
        let got = ix.search("Banana, CHERRY", 10, None);
        let expect = [
            (2, 1.088_429_457_200_651),
            (1, 0.470_003_629_245_735_6),
            (3, 0.413_603_193_736_247_4),
        ];
        assert_eq!(got.len(), 3, "{got:?}");
        for ((k, s), (ek, es)) in got.iter().zip(expect) {
            assert_eq!(*k, ek);
            assert!((f64::from(*s) - es).abs() < 1e-5, "{got:?}");
        }
        // Each query occurrence contributes, as in Lucene.
        let twice = ix.search("apple apple", 10, None);
        assert!(
            (f64::from(twice[0].1) - 2.0 * apple).abs() < 1e-5,
            "{twice:?}"
        );
    }

    #[test]
    fn bm25_ties_by_key_and_filter_and_k() {
        let ix = index_of(&[
            (9, "x y"),
            (5, "x y"),
            (3, "y x"),
            (7, "z"),
            (1, "x x x x x y y"),
        ]);
        let keys = |r: Vec<(u64, f32)>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(ix.search("x", 10, None)), [1, 3, 5, 9]);
        assert_eq!(keys(ix.search("x", 3, None)), [1, 3, 5]);
        assert_eq!(keys(ix.search("x", 0, None)), Vec::<u64>::new());
        let odd_not_1 = |k: u64| k % 2 == 1 && k != 1 && k != 3;
        assert_eq!(keys(ix.search("x", 2, Some(&odd_not_1))), [5, 9]);
        let none = |_: u64| false;
        assert!(ix.search("x", 10, Some(&none)).is_empty());
        let all = ix.search("x", 10, None);
        assert_eq!(all[1].1, all[2].1);
        assert_eq!(all[2].1, all[3].1);
        assert!(all[0].1 > all[1].1);
    }

    #[test]
    fn bm25_unicode_empty_and_unknown() {
        let got: Vec<String> =
            tokens("Crème BRÛLÉE, 東京 タワー; İstanbul ﬁ 🚀rocket Ωmega_2x").collect();
        assert_eq!(
            got,
            [
                "crème",
                "brûlée",
                "東京",
                "タワー",
                "istanbul",
                "ﬁ",
                "rocket",
                "ωmega",
                "2x"
            ]
        );
        let long = "A".repeat(100);
        assert_eq!(
            tokens(&long).collect::<Vec<_>>(),
            ["a".repeat(MAX_TOKEN_CHARS)]
        );
        assert_eq!(tokens("").count(), 0);
        assert_eq!(tokens("  --- 🚀🎉 ...").count(), 0);

        let mut ix = index_of(&[
            (1, "Crème brûlée au café"),
            (2, "東京 タワー"),
            (3, "🚀🎉"),
            (4, ""),
            (5, &long),
        ]);
        assert_eq!(ix.len(), 5);
        assert_eq!(ix.search("CRÈME", 10, None)[0].0, 1);
        assert_eq!(ix.search("東京", 10, None)[0].0, 2);
        assert_eq!(ix.search(&"a".repeat(80), 10, None)[0].0, 5);
        assert!(ix.search("🚀", 10, None).is_empty());
        assert!(ix.search("", 10, None).is_empty());
        assert!(ix.search("   ,,, ", 10, None).is_empty());
        assert!(ix.search("unknown words", 10, None).is_empty());
        assert!(ix.remove(3));
        assert!(!ix.remove(3));
        assert!(ix.remove(4));
        check_invariants(&ix);
        assert_eq!(ix.len(), 3);
        let empty = TextIndex::new();
        assert!(empty.is_empty());
        assert!(empty.search("anything", 10, None).is_empty());
        assert!(round_trip(&empty).is_empty());
    }

    #[test]
    fn bm25_tokenizer_is_idempotent_over_unicode() {
        // A stored term queried verbatim finds itself: every token is its own tokenization.
        let mut buf = [0u8; 4];
        for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
            for t in tokens(c.encode_utf8(&mut buf)) {
                let again: Vec<String> = tokens(&t).collect();
                assert_eq!(
                    again,
                    std::slice::from_ref(&t),
                    "{c:?} (U+{:04X})",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn bm25_replace_remove_and_compaction() {
        let mut ix = TextIndex::new();
        let mut model = BTreeMap::new();
        for i in 0..1000u64 {
            let text = format!("common unique{i} word{}", i % 7);
            ix.insert(i, &text);
            model.insert(i, text);
        }
        check_invariants(&ix);
        // Few postings (the sparse accumulator), then many (the dense one).
        for q in ["unique17 unique400 unique17", "word3 unique17 common"] {
            check_query(&ix, &model, q, 10, 3);
        }
        let full = ix.memory_bytes();
        assert!(full > 1000 * 3 * size_of::<Posting>());
        ix.insert(5, "replaced text");
        check_invariants(&ix);
        assert!(ix.search("unique5", 10, None).is_empty());
        assert_eq!(ix.search("replaced", 10, None)[0].0, 5);
        for i in 0..1000u64 {
            assert!(ix.remove(i));
            check_invariants(&ix);
        }
        assert!(ix.is_empty());
        assert!(
            ix.dict.len() < MIN_DEAD_TERMS * 2,
            "{} terms left",
            ix.dict.len()
        );
        assert!(ix.memory_bytes() < full);
        let ids = ix.postings.len();
        for i in 0..500u64 {
            ix.insert(i, &format!("again{i}"));
        }
        check_invariants(&ix);
        assert_eq!(ix.postings.len(), ids, "term ids are reused");
        assert_eq!(ix.doc_keys.len(), 1000, "slots are reused");
    }

    #[test]
    fn bm25_decode_rejects_bad_frames() {
        let ix = index_of(&[(1, "alpha beta"), (u64::MAX, "beta gamma gamma")]);
        let mut bytes = Vec::new();
        ix.encode(&mut bytes);
        let back = round_trip(&ix);
        assert_eq!(
            back.search("gamma beta", 5, None),
            ix.search("gamma beta", 5, None)
        );
        assert_eq!(
            TextIndex::decode(&bytes[..3]).unwrap_err(),
            Bm25Error::TooShort(3)
        );
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(TextIndex::decode(&bad).unwrap_err(), Bm25Error::BadMagic);
        bad = bytes.clone();
        bad[4] = 9;
        assert_eq!(TextIndex::decode(&bad).unwrap_err(), Bm25Error::Version(9));
        for cut in 0..bytes.len() {
            assert!(TextIndex::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(TextIndex::decode(&longer).is_err());
        // A huge count behind a valid checksum is refused before allocating.
        let framed = |body: &[u8]| {
            let mut b = MAGIC.to_vec();
            b.push(VERSION);
            b.extend_from_slice(body);
            let crc = crc32fast::hash(&b);
            b.extend_from_slice(&crc.to_le_bytes());
            b
        };
        let huge = framed(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(matches!(
            TextIndex::decode(&huge),
            Err(Bm25Error::Count { .. })
        ));
        // Keys not ascending; an empty term; trailing bytes.
        assert_eq!(
            TextIndex::decode(&framed(&[2, 5, 0, 0])).unwrap_err(),
            Bm25Error::Invalid("keys not ascending")
        );
        assert_eq!(
            TextIndex::decode(&framed(&[1, 5, 1, 0, 1, 0, 1])).unwrap_err(),
            Bm25Error::Invalid("term empty or too long")
        );
        assert_eq!(
            TextIndex::decode(&framed(&[1, 5, 0, 7])).unwrap_err(),
            Bm25Error::Trailing(1)
        );
        let one = TextIndex::decode(&framed(&[1, 5, 1, 1, b'a', 1, 0, 3])).unwrap();
        check_invariants(&one);
        assert_eq!(one.search("a", 1, None).len(), 1);
    }

    #[test]
    fn bm25_pruning_skips_common_postings() {
        let mut ix = TextIndex::new();
        let mut model = BTreeMap::new();
        for i in 0..200u64 {
            let text = match i % 50 {
                0 => format!("rare common filler{i}"),
                7 => "rare rare common".to_owned(),
                _ => format!("common filler{}", i % 3),
            };
            ix.insert(i, &text);
            model.insert(i, text);
        }
        let weights = ix.query_weights("common rare");
        assert_eq!(weights[0].0, ix.dict["rare"], "heaviest (rarest) first");
        let all = ix.accumulate_dense(&weights, None);
        assert_eq!(all.len(), 200);
        let prune = Prune {
            k: 3,
            allow: None,
            lookup_cost: LOOKUP_COST,
        };
        let pruned = ix.accumulate_dense(&weights, Some(prune));
        // Of the 8 documents with "rare", the 4 with it twice: the others cannot catch up.
        assert_eq!(pruned.len(), 4, "{pruned:?}");
        let even = |k: u64| k.is_multiple_of(2);
        for (k, allow) in [(3, None), (5, Some(&even as &(dyn Fn(u64) -> bool + Sync)))] {
            assert_paths_agree(&ix, "common rare", k, allow);
            assert_paths_agree(&ix, "rare filler1 common", k, allow);
        }
        check_query(&ix, &model, "common rare", 3, 2);
        check_query(&ix, &model, "rare common filler2 filler100", 4, 3);
    }

    #[test]
    fn bm25_rrf() {
        // a: 1/61 + 1/62; b: 1/62 + 1/61; c: 1/63; d: 1/63.
        let got = rrf(&[&[1, 2, 3], &[2, 1, 4]], 60.0, 10);
        let both = 1.0 / 61.0 + 1.0 / 62.0;
        let keys: Vec<u64> = got.iter().map(|h| h.0).collect();
        assert_eq!(keys, [1, 2, 3, 4]);
        assert!((f64::from(got[0].1) - both).abs() < 1e-7);
        assert_eq!(got[0].1, got[1].1);
        assert!((f64::from(got[2].1) - 1.0 / 63.0).abs() < 1e-7);
        // A key in both lists, even low, beats the top of one list.
        let got = rrf(&[&[7, 8, 9, 5], &[6, 10, 11, 5]], 60.0, 3);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 5);
        assert!((f64::from(got[0].1) - 2.0 / 64.0).abs() < 1e-7);
        assert_eq!((got[1].0, got[2].0), (6, 7));
        // Limit, empty input, a duplicate inside one list, a bad k.
        assert_eq!(rrf(&[&[1, 2, 3]], 60.0, 2).len(), 2);
        assert!(rrf(&[&[1, 2, 3]], 60.0, 0).is_empty());
        assert!(rrf(&[], 60.0, 10).is_empty());
        assert!(rrf(&[&[], &[]], 60.0, 10).is_empty());
        let dup = rrf(&[&[4, 4, 5]], 0.0, 10);
        assert_eq!(dup, [(4, 1.0), (5, 1.0 / 3.0)]);
        assert_eq!(rrf(&[&[1]], f32::NAN, 1), [(1, 1.0)]);
        assert_eq!(rrf(&[&[1]], -5.0, 1), [(1, 1.0)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, String),
        Remove(u64),
        Query(String, usize, u64),
    }

    const WORDS: &[&str] = &[
        "a", "b", "c", "d", "e", "f", "apple", "Apple", "ÉTÉ", "été", "東京", "x1", "🚀", "the",
    ];

    fn text() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            3 => proptest::sample::select(WORDS).prop_map(str::to_owned),
            1 => (0u32..200).prop_map(|n| format!("u{n}")),
        ];
        let sep = proptest::sample::select(&[" ", ", ", "-", "  ", "\n"][..]);
        proptest::collection::vec((word, sep), 0..10)
            .prop_map(|ws| ws.into_iter().map(|(w, s)| w + s).collect())
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..24, text()).prop_map(|(k, t)| Op::Insert(k, t)),
            1 => (0u64..24).prop_map(Op::Remove),
            2 => (text(), 0usize..8, 0u64..4).prop_map(|(q, k, m)| Op::Query(q, k, m)),
        ]
    }

    /// search picks one of two accumulators by size, and prunes the dense one:
    /// the three ways give the same candidates' scores and the same top k, bit for bit.
    fn assert_paths_agree(ix: &TextIndex, q: &str, k: usize, allow: Allow<'_>) {
        let weights = ix.query_weights(q);
        let touched = weights.iter().map(|&(t, _)| ix.postings[t as usize].len());
        let sparse = ix.accumulate_sparse(&weights, touched.sum());
        let mut dense = ix.accumulate_dense(&weights, None);
        dense.sort_by_key(|&(slot, _)| slot);
        assert_eq!(sparse, dense);
        let prune = Prune {
            k,
            allow,
            lookup_cost: 0,
        };
        let pruned = ix.accumulate_dense(&weights, Some(prune));
        assert!(
            pruned.iter().all(|c| dense.contains(c)),
            "{pruned:?} ⊄ {dense:?}"
        );
        let top = |c: Vec<(u32, f32)>| ranked_list(ix.best(c, k, allow).into_sorted_vec());
        assert_eq!(top(pruned), top(dense));
    }

    fn check_query(ix: &TextIndex, model: &BTreeMap<u64, String>, q: &str, k: usize, m: u64) {
        let everything = |_: u64| true;
        assert_matches(&ix.search(q, k, None), &naive(model, q, &everything), k);
        assert_paths_agree(ix, q, k, None);
        let allow = move |key: u64| m < 2 || !key.is_multiple_of(m);
        assert_matches(&ix.search(q, k, Some(&allow)), &naive(model, q, &allow), k);
        assert_paths_agree(ix, q, k, Some(&allow));
    }

    /// An index built by random operations, and its valid encoding.
    fn encoded() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec((0u64..1000, text()), 0..12).prop_map(|docs| {
            let mut ix = TextIndex::new();
            for (k, t) in docs {
                ix.insert(k, &t);
            }
            let mut out = Vec::new();
            ix.encode(&mut out);
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn bm25_matches_naive_scorer(ops in proptest::collection::vec(op(), 1..60)) {
            let mut ix = TextIndex::new();
            let mut model = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Insert(k, t) => {
                        ix.insert(*k, t);
                        model.insert(*k, t.clone());
                    }
                    Op::Remove(k) => prop_assert_eq!(ix.remove(*k), model.remove(k).is_some()),
                    Op::Query(q, k, m) => check_query(&ix, &model, q, *k, *m),
                }
                check_invariants(&ix);
                prop_assert_eq!(ix.len(), model.len());
            }
            let back = round_trip(&ix);
            for op in &ops {
                if let Op::Query(q, k, m) = op {
                    check_query(&back, &model, q, *k, *m);
                    prop_assert_eq!(back.search(q, *k, None), ix.search(q, *k, None));
                }
            }
        }

        #[test]
        fn bm25_decode_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(ix) = TextIndex::decode(&bytes) {
                check_invariants(&ix);
            }
            // The same bytes behind a valid frame reach the structural checks.
            let mut framed = MAGIC.to_vec();
            framed.push(VERSION);
            framed.extend_from_slice(&bytes);
            let crc = crc32fast::hash(&framed);
            framed.extend_from_slice(&crc.to_le_bytes());
            if let Ok(ix) = TextIndex::decode(&framed) {
                check_invariants(&ix);
                round_trip(&ix);
            }
        }

        #[test]
        fn bm25_decode_mutated(bytes in encoded(), at in any::<usize>(), flip in 1u8..=255, cut in any::<usize>()) {
            let at = at % bytes.len();
            let mut bad = bytes.clone();
            bad[at] ^= flip;
            prop_assert!(TextIndex::decode(&bad).is_err(), "CRC-32 catches any one-byte change");
            prop_assert!(TextIndex::decode(&bytes[..cut % bytes.len()]).is_err());
            // With the checksum recomputed: structural checks only.
            let end = bad.len() - 4;
            let crc = crc32fast::hash(&bad[..end]);
            bad[end..].copy_from_slice(&crc.to_le_bytes());
            if let Ok(ix) = TextIndex::decode(&bad) {
                check_invariants(&ix);
                round_trip(&ix);
            }
        }
    }

    /// xorshift64*: the benchmark's deterministic random numbers.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Zipf (s = 1) over `cdf`'s ranks.
    fn zipf(rng: &mut Rng, cdf: &[f64]) -> usize {
        let u = rng.unit() * cdf[cdf.len() - 1];
        cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
    }

    fn percentile(sorted: &[f64], p: f64) -> f64 {
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }

    /// Latencies (µs, sorted) of `queries` searches with k = 10.
    fn time_queries(ix: &TextIndex, queries: &[String]) -> Vec<f64> {
        let mut lat: Vec<f64> = queries
            .iter()
            .map(|q| {
                let t = Instant::now();
                let hits = ix.search(q, 10, None);
                let us = t.elapsed().as_secs_f64() * 1e6;
                assert!(!hits.is_empty() && hits.len() <= 10, "{q}");
                us
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        lat
    }

    #[test]
    #[ignore = "benchmark: cargo test --release ... bm25_bench -- --ignored --nocapture"]
    fn bm25_bench_100k_docs() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let vocab: Vec<String> = (0..20_000)
            .map(|i| {
                let len = 3 + rng.next() % 7;
                let w: String = (0..len)
                    .map(|_| (b'a' + (rng.next() % 26) as u8) as char)
                    .collect();
                format!("{w}{i}")
            })
            .collect();
        let mut acc = 0.0;
        let cdf: Vec<f64> = (1..=vocab.len())
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        let texts: Vec<String> = (0..100_000)
            .map(|_| {
                let n = 25 + rng.next() % 11;
                let words: Vec<&str> = (0..n)
                    .map(|_| vocab[zipf(&mut rng, &cdf)].as_str())
                    .collect();
                words.join(" ")
            })
            .collect();
        let mut ix = TextIndex::new();
        let t = Instant::now();
        for (k, text) in texts.iter().enumerate() {
            ix.insert(k as u64, text);
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(ix.len(), texts.len());
        println!(
            "insert: {} docs in {secs:.3} s = {:.0} docs/s; {} terms; memory {:.1} MiB",
            texts.len(),
            texts.len() as f64 / secs,
            ix.dict.len(),
            ix.memory_bytes() as f64 / (1 << 20) as f64
        );
        let zipf_queries: Vec<String> = (0..2000)
            .map(|i| {
                let n = 2 + i % 2;
                let ws: Vec<&str> = (0..n)
                    .map(|_| vocab[zipf(&mut rng, &cdf)].as_str())
                    .collect();
                ws.join(" ")
            })
            .collect();
        let uniform_queries: Vec<String> = (0..2000)
            .map(|i| {
                let n = 2 + i % 2;
                let ws: Vec<&str> = (0..n)
                    .map(|_| vocab[(rng.next() % 2000) as usize].as_str())
                    .collect();
                ws.join(" ")
            })
            .collect();
        for (name, queries) in [
            ("zipf", &zipf_queries),
            ("uniform top-2000", &uniform_queries),
        ] {
            let lat = time_queries(&ix, queries);
            println!(
                "query ({name} words, 2-3 terms, k=10): p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs",
                percentile(&lat, 0.5),
                percentile(&lat, 0.9),
                percentile(&lat, 0.99)
            );
        }
        let t = Instant::now();
        let mut bytes = Vec::new();
        ix.encode(&mut bytes);
        let enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let back = TextIndex::decode(&bytes).unwrap();
        let dec = t.elapsed().as_secs_f64();
        assert_eq!(
            back.search(&zipf_queries[0], 10, None),
            ix.search(&zipf_queries[0], 10, None)
        );
        println!(
            "encode {:.1} MiB in {enc:.3} s, decode in {dec:.3} s",
            bytes.len() as f64 / (1 << 20) as f64
        );
        let t = Instant::now();
        for k in 0..10_000u64 {
            ix.remove(k * 10);
        }
        println!("remove: {:.0} docs/s", 10_000.0 / t.elapsed().as_secs_f64());
    }
}
