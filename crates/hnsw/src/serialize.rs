//! Binary snapshot of an index: the exact graph, so a loaded index answers exactly
//! like the saved one (a stored vector searched for finds itself at distance 0).
//! vectord frames these bytes as the "graph bytes" of its LHV1 blob.
//!
//! # Format, version 1 (all integers little-endian)
//! ```text
//! magic      8 bytes  "LHHNSW\0\x01"
//! version    u32      1
//! dim        u32
//! metric     u8       0 cosine, 1 l2, 2 dot
//! m          u32
//! ef_constr  u32
//! seed       u64      level-generator seed (new inserts continue the sequence)
//! slots      u32      n
//! entry      u32      entry slot, u32::MAX when the graph is empty
//! top        u8       entry level
//! vectors    n × dim × f32   stored form (unit length for cosine)
//! per slot   key u64, level u8, state u8 (1 live, 2 deleted)
//! per slot, per level 0..=level:  count u32, count × u32 neighbour slots
//! crc32      u32      CRC-32 (IEEE) of every byte before it
//! ```
//! The decoder checks the checksum first, then every length against the bytes that
//! remain before allocating anything, and every id, level, count and state against
//! the graph's invariants, so corrupt or hostile input gives a [`DecodeError`],
//! never a panic or an oversized allocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering};

use parking_lot::Mutex;

use crate::distance::Metric;
use crate::index::{DELETED, Index, LIVE, MAX_LEVEL, Store};
use crate::{Params, ParamsError};

const MAGIC: &[u8; 8] = b"LHHNSW\0\x01";
const VERSION: u32 = 1;
const NONE: u32 = u32::MAX;

/// Why a snapshot could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an HNSW snapshot (bad magic)")]
    BadMagic,
    #[error("unsupported snapshot version {0}")]
    Version(u32),
    #[error("snapshot checksum mismatch (corrupt or truncated)")]
    Checksum,
    #[error("snapshot truncated: needed {needed} bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("invalid parameters in snapshot: {0}")]
    Params(#[from] ParamsError),
    #[error("invalid snapshot: {0}")]
    Invalid(String),
}

impl Index {
    /// Serialises the whole index (waits for in-flight inserts, blocks new ones
    /// meanwhile; searches continue).
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = *self.params();
        let seed = self.seed;
        let (s0, su) = (self.stride0(), self.stride_up());
        self.with_quiesced(|st, entry| {
            let n = st.slots();
            let mut out = Vec::with_capacity(64 + n * (p.dim * 4 + 10 + s0 * 4));
            out.extend_from_slice(MAGIC);
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&(p.dim as u32).to_le_bytes());
            out.push(p.metric.code());
            out.extend_from_slice(&(p.m as u32).to_le_bytes());
            out.extend_from_slice(&(p.ef_construction as u32).to_le_bytes());
            out.extend_from_slice(&seed.to_le_bytes());
            out.extend_from_slice(&(n as u32).to_le_bytes());
            if entry == u64::MAX {
                out.extend_from_slice(&NONE.to_le_bytes());
                out.push(0);
            } else {
                out.extend_from_slice(&((entry >> 8) as u32).to_le_bytes());
                out.push((entry & 0xff) as u8);
            }
            for x in &st.vectors[..n * p.dim] {
                out.extend_from_slice(&x.to_le_bytes());
            }
            for s in 0..n {
                out.extend_from_slice(&st.keys[s].to_le_bytes());
                out.push(st.levels[s]);
                // Quiesced: no slot is mid-insert, so anything not deleted is live.
                let state = st.state[s].load(Ordering::Acquire);
                out.push(if state == DELETED { DELETED } else { LIVE });
            }
            for s in 0..n {
                for l in 0..=st.levels[s] as usize {
                    let (list, max) = if l == 0 {
                        (&st.links0[s * s0..(s + 1) * s0], s0 - 1)
                    } else {
                        (&st.upper[s][(l - 1) * su..l * su], su - 1)
                    };
                    let cnt = (list[0].load(Ordering::Acquire) as usize).min(max);
                    out.extend_from_slice(&(cnt as u32).to_le_bytes());
                    for a in &list[1..=cnt] {
                        out.extend_from_slice(&a.load(Ordering::Relaxed).to_le_bytes());
                    }
                }
            }
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        })
    }

    /// Rebuilds an index from [`Index::to_bytes`] output, validating everything.
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, DecodeError> {
        let mut r = open(bytes)?;
        let (params, seed, n, entry, top) = read_header(&mut r)?;
        let vectors = read_vectors(&mut r, n, params.dim, params.metric)?;
        let meta = read_meta(&mut r, n)?;
        let (links0, upper) = read_links(&mut r, n, params.m, &meta.levels)?;
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid(format!(
                "{} trailing bytes",
                r.remaining()
            )));
        }
        let entry = entry_word(entry, top, &meta.levels)?;
        let indeg = in_degrees(&links0, n, 1 + 2 * params.m);
        let mut locks = Vec::with_capacity(n);
        locks.resize_with(n, || Mutex::new(()));
        let store = Store {
            vectors,
            links0,
            upper,
            levels: meta.levels,
            keys: meta.keys,
            state: meta.state,
            indeg,
            locks,
            key_to_slot: meta.key_to_slot,
        };
        Ok(Index::from_parts(params, seed, store, entry))
    }
}

/// The magic, the version and the checksum checked; a reader after the version.
fn open(bytes: &[u8]) -> Result<Reader<'_>, DecodeError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes.len() < MAGIC.len() + 8 {
        return Err(DecodeError::Truncated {
            offset: bytes.len(),
            needed: 8,
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let mut r = Reader {
        buf: body,
        pos: MAGIC.len(),
    };
    let version = r.u32()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::Checksum);
    }
    Ok(r)
}

/// Parameters (validated), seed, slot count, entry slot and top level.
fn read_header(r: &mut Reader<'_>) -> Result<(Params, u64, usize, u32, usize), DecodeError> {
    let dim = r.u32()? as usize;
    let metric = Metric::from_code(r.u8()?)
        .ok_or_else(|| DecodeError::Invalid("unknown metric code".into()))?;
    let m = r.u32()? as usize;
    let ef_construction = r.u32()? as usize;
    let params = Params {
        dim,
        metric,
        m,
        ef_construction,
    };
    params.validate()?;
    let seed = r.u64()?;
    let n = r.u32()? as usize;
    if n == NONE as usize {
        return Err(DecodeError::Invalid("slot count out of range".into()));
    }
    let entry = r.u32()?;
    let top = r.u8()? as usize;
    Ok((params, seed, n, entry, top))
}

/// `n` vectors, each one an insert would accept.
fn read_vectors(
    r: &mut Reader<'_>,
    n: usize,
    dim: usize,
    metric: Metric,
) -> Result<Vec<f32>, DecodeError> {
    // Check the length against what remains before allocating.
    let vbytes = n
        .checked_mul(dim)
        .and_then(|x| x.checked_mul(4))
        .ok_or_else(|| DecodeError::Invalid("vector size overflows".into()))?;
    let raw = r.take(vbytes)?;
    let vectors: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if !vectors.iter().all(|x| x.is_finite()) {
        return Err(DecodeError::Invalid("non-finite vector component".into()));
    }
    // Every stored vector must pass the checks an insert makes, or a
    // later rebuild (`compact`) meets one that it refuses (found by
    // fuzzing: a zeroed vector under cosine).
    if metric == Metric::Cosine {
        let zero = vectors.chunks_exact(dim).position(|v| {
            let n2: f32 = v.iter().map(|x| x * x).sum();
            n2 == 0.0 || !n2.is_finite()
        });
        if let Some(s) = zero {
            return Err(DecodeError::Invalid(format!(
                "slot {s} holds a zero-norm vector under cosine"
            )));
        }
    }
    Ok(vectors)
}

/// Each slot's key, level and state.
struct SlotMeta {
    keys: Vec<u64>,
    levels: Vec<u8>,
    state: Vec<AtomicU8>,
    key_to_slot: HashMap<u64, u32>,
}

fn read_meta(r: &mut Reader<'_>, n: usize) -> Result<SlotMeta, DecodeError> {
    let meta = r.take(n * 10)?;
    let mut out = SlotMeta {
        keys: Vec::with_capacity(n),
        levels: Vec::with_capacity(n),
        state: Vec::with_capacity(n),
        key_to_slot: HashMap::new(),
    };
    for (s, c) in meta.chunks_exact(10).enumerate() {
        let key = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (level, st) = (c[8], c[9]);
        if level as usize > MAX_LEVEL {
            return Err(DecodeError::Invalid(format!("slot {s} has level {level}")));
        }
        if st != LIVE && st != DELETED {
            return Err(DecodeError::Invalid(format!("slot {s} has state {st}")));
        }
        if st == LIVE && out.key_to_slot.insert(key, s as u32).is_some() {
            return Err(DecodeError::Invalid(format!("key {key} is live twice")));
        }
        out.keys.push(key);
        out.levels.push(level);
        out.state.push(AtomicU8::new(st));
    }
    Ok(out)
}

/// Level-0 links in fixed-width rows, and each slot's upper levels.
type Links = (Vec<AtomicU32>, Vec<Box<[AtomicU32]>>);

/// The links of every slot; each points at a slot that exists on its level.
fn read_links(r: &mut Reader<'_>, n: usize, m: usize, levels: &[u8]) -> Result<Links, DecodeError> {
    let (s0, su) = (1 + 2 * m, 1 + m);
    // Each slot needs at least one count word: bounds the level-0 array by input.
    if n.checked_mul(4).is_none_or(|x| x > r.remaining()) {
        return Err(DecodeError::Truncated {
            offset: r.pos,
            needed: n * 4,
        });
    }
    let mut links0: Vec<AtomicU32> = Vec::with_capacity(n * s0);
    let mut upper: Vec<Box<[AtomicU32]>> = Vec::with_capacity(n);
    for s in 0..n {
        let lv = levels[s] as usize;
        let mut up: Vec<AtomicU32> = Vec::new();
        for l in 0..=lv {
            let max = if l == 0 { 2 * m } else { m };
            let cnt = r.u32()? as usize;
            if cnt > max {
                return Err(DecodeError::Invalid(format!(
                    "slot {s} level {l} has {cnt} links (max {max})"
                )));
            }
            let ids = r.take(cnt * 4)?;
            let dst_start = if l == 0 {
                links0.len()
            } else {
                if up.is_empty() {
                    up.reserve_exact(lv * su);
                }
                up.len()
            };
            let dst = if l == 0 { &mut links0 } else { &mut up };
            dst.push(AtomicU32::new(cnt as u32));
            for c in ids.chunks_exact(4) {
                let id = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize;
                if id >= n || (levels[id] as usize) < l {
                    return Err(DecodeError::Invalid(format!(
                        "slot {s} level {l} links to invalid slot {id}"
                    )));
                }
                dst.push(AtomicU32::new(id as u32));
            }
            let width = if l == 0 { s0 } else { su };
            dst.resize_with(dst_start + width, || AtomicU32::new(0));
        }
        upper.push(up.into_boxed_slice());
    }
    Ok((links0, upper))
}

/// The packed entry word: the entry slot, which must be on the top level.
fn entry_word(entry: u32, top: usize, levels: &[u8]) -> Result<u64, DecodeError> {
    if entry == NONE {
        if !levels.is_empty() {
            return Err(DecodeError::Invalid(
                "non-empty graph without entry point".into(),
            ));
        }
        return Ok(u64::MAX);
    }
    let e = entry as usize;
    if e >= levels.len() || levels[e] as usize != top || levels.iter().any(|&l| l as usize > top) {
        return Err(DecodeError::Invalid(
            "entry point is not a top-level slot".into(),
        ));
    }
    Ok((entry as u64) << 8 | top as u64)
}

/// How many level-0 links point at each slot.
fn in_degrees(links0: &[AtomicU32], n: usize, s0: usize) -> Vec<AtomicU16> {
    let indeg: Vec<AtomicU16> = (0..n).map(|_| AtomicU16::new(0)).collect();
    for s in 0..n {
        let list = &links0[s * s0..(s + 1) * s0];
        let cnt = list[0].load(Ordering::Relaxed) as usize;
        for a in &list[1..=cnt] {
            let t = a.load(Ordering::Relaxed) as usize;
            let v = indeg[t].load(Ordering::Relaxed);
            indeg[t].store(v.saturating_add(1), Ordering::Relaxed);
        }
    }
    indeg
}

/// Bounds-checked little-endian cursor: every read says how much it needs.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.pos,
                needed: n,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
}
