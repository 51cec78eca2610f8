//! Write-ahead-log entries: one object per write under `_vectors/<name>.wal/`,
//! named by its zero-padded sequence number.
//!
//! New entries are binary (`<seq>.bin`), so logging 20 000 × 384 floats costs a
//! copy, not a float-to-text conversion (and replaying them costs no parsing):
//!
//! ```text
//! magic     8 bytes  "LHVWAL\0\x01"
//! seq       u64      must equal the sequence number in the key
//! op        u8       1 add, 2 delete
//! add:      count u32, dim u32,
//!           count × (id_len u32, id UTF-8, md_len u32 (u32::MAX = none), metadata JSON),
//!           count × dim × f32 values
//! delete:   id_len u32, id UTF-8
//! crc32     u32      CRC-32 (IEEE) of every byte before it
//! ```
//! All integers are little-endian. Entries written before this format
//! (`<seq>.json`: `{"seq", "op": "add", "items": [...]}` or
//! `{"seq", "op": "delete", "id"}`) are still read.
//!
//! Decoding never panics and never allocates more than the input's size: the
//! checksum is checked first, then every length against the bytes left.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::service::Item;

const MAGIC: &[u8; 8] = b"LHVWAL\0\x01";
const OP_ADD: u8 = 1;
const OP_DELETE: u8 = 2;
const NO_METADATA: u32 = u32::MAX;

/// One logged write.
#[derive(Debug, Clone, PartialEq)]
pub enum WalOp {
    Add(Batch),
    Delete { id: String },
}

/// How an entry is stored, from its key's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFormat {
    Binary,
    /// The first format, JSON; read, never written.
    Json,
}

/// The log directory of an index: `_vectors/<name>.wal`.
pub fn dir(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}.wal")
}

/// The key of a new entry.
pub fn key(prefix: &str, name: &str, seq: u64) -> String {
    format!("{}/{seq:020}.bin", dir(prefix, name))
}

/// The sequence number and format of a log key's file name (`None` when the
/// name is not an entry's).
pub fn parse_name(file_name: &str) -> Option<(u64, WalFormat)> {
    let (digits, format) = if let Some(d) = file_name.strip_suffix(".bin") {
        (d, WalFormat::Binary)
    } else {
        (file_name.strip_suffix(".json")?, WalFormat::Json)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, format))
}

/// Why an entry cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    #[error("not a write-ahead-log entry (bad magic)")]
    BadMagic,
    #[error("checksum mismatch (corrupt or truncated)")]
    Checksum,
    #[error("truncated: needed {needed} bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("holds sequence number {found}, its key says {expected}")]
    SeqMismatch { expected: u64, found: u64 },
    #[error("invalid entry: {0}")]
    Invalid(String),
}

/// A binary add entry. The batch is validated, so every vector has `dim`
/// values.
pub fn encode_add(seq: u64, batch: &Batch, dim: usize) -> Vec<u8> {
    let mut meta = Vec::new();
    let mut out = Vec::with_capacity(32 + batch.len() * (24 + dim * 4));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(OP_ADD);
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    for i in 0..batch.len() {
        put_bytes(&mut out, batch.id(i).as_bytes());
        match batch.metadata(i) {
            Some(md) => {
                meta.clear();
                // A Map always serialises.
                let _ = serde_json::to_writer(&mut meta, md);
                put_bytes(&mut out, &meta);
            }
            None => out.extend_from_slice(&NO_METADATA.to_le_bytes()),
        }
    }
    for x in batch.values() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    seal(out)
}

pub fn encode_delete(seq: u64, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + id.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(OP_DELETE);
    put_bytes(&mut out, id.as_bytes());
    seal(out)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes an entry stored under sequence number `seq` in `format`.
pub fn decode(bytes: &[u8], format: WalFormat, seq: u64) -> Result<WalOp, WalError> {
    let (found, op) = match format {
        WalFormat::Binary => decode_binary(bytes)?,
        WalFormat::Json => decode_json(bytes)?,
    };
    if found != seq {
        return Err(WalError::SeqMismatch {
            expected: seq,
            found,
        });
    }
    Ok(op)
}

fn decode_binary(bytes: &[u8]) -> Result<(u64, WalOp), WalError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(WalError::BadMagic);
    }
    if bytes.len() < MAGIC.len() + 4 {
        return Err(WalError::Truncated {
            offset: bytes.len(),
            needed: 4,
        });
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) {
        return Err(WalError::Checksum);
    }
    let mut r = Reader {
        buf: body,
        pos: MAGIC.len(),
    };
    let seq = r.u64()?;
    let op = match r.u8()? {
        OP_ADD => WalOp::Add(decode_add(&mut r)?),
        OP_DELETE => WalOp::Delete { id: r.string()? },
        other => return Err(WalError::Invalid(format!("unknown operation {other}"))),
    };
    if r.remaining() != 0 {
        return Err(WalError::Invalid(format!(
            "{} trailing bytes",
            r.remaining()
        )));
    }
    Ok((seq, op))
}

fn decode_add(r: &mut Reader<'_>) -> Result<Batch, WalError> {
    let count = r.u32()? as usize;
    let dim = r.u32()? as usize;
    // Each item takes at least 8 bytes of header and dim × 4 of values:
    // bound the allocations by what is actually there.
    let per_item = dim
        .checked_mul(4)
        .and_then(|v| v.checked_add(8))
        .ok_or_else(|| WalError::Invalid("dimension overflows".into()))?;
    if count
        .checked_mul(per_item)
        .is_none_or(|n| n > r.remaining())
    {
        return Err(WalError::Truncated {
            offset: r.pos,
            needed: count.saturating_mul(per_item),
        });
    }
    let mut heads = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.string()?;
        let md_len = r.u32()?;
        let md = if md_len == NO_METADATA {
            None
        } else {
            let raw = r.take(md_len as usize)?;
            let md: Map<String, Value> = serde_json::from_slice(raw)
                .map_err(|e| WalError::Invalid(format!("metadata of {id:?}: {e}")))?;
            Some(md)
        };
        heads.push((id, md));
    }
    let raw = r.take(count * dim * 4)?;
    let mut batch = Batch::with_capacity(count, dim);
    let mut vector = Vec::with_capacity(dim);
    for ((id, md), chunk) in heads.into_iter().zip(raw.chunks_exact(dim.max(1) * 4)) {
        vector.clear();
        vector.extend(
            chunk
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        batch.push(id, &vector, md);
    }
    if batch.len() != count {
        return Err(WalError::Invalid("items without vectors".into()));
    }
    Ok(batch)
}

/// The first format: JSON, tagged by `op`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum JsonOp {
    Add { items: Vec<Item> },
    Delete { id: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct JsonEntry {
    seq: u64,
    #[serde(flatten)]
    op: JsonOp,
}

fn decode_json(bytes: &[u8]) -> Result<(u64, WalOp), WalError> {
    let e: JsonEntry = serde_json::from_slice(bytes)
        .map_err(|e| WalError::Invalid(format!("not a JSON entry: {e}")))?;
    let op = match e.op {
        JsonOp::Add { items } => WalOp::Add(Batch::from_items(items)),
        JsonOp::Delete { id } => WalOp::Delete { id },
    };
    Ok((e.seq, op))
}

/// A JSON entry as the first format wrote it (tests of old logs use this).
pub fn encode_json_legacy(seq: u64, op: &WalOp) -> Vec<u8> {
    let op = match op {
        WalOp::Add(b) => JsonOp::Add {
            items: b.clone().into_items(),
        },
        WalOp::Delete { id } => JsonOp::Delete { id: id.clone() },
    };
    // Items and ids always serialise.
    serde_json::to_vec(&JsonEntry { seq, op }).unwrap_or_default()
}

/// Bounds-checked little-endian cursor.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WalError> {
        if n > self.remaining() {
            return Err(WalError::Truncated {
                offset: self.pos,
                needed: n,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WalError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WalError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WalError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn string(&mut self) -> Result<String, WalError> {
        let n = self.u32()? as usize;
        let at = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| WalError::Invalid(format!("id at offset {at} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Batch {
        let mut b = Batch::new();
        b.push("a".into(), &[1.0, -2.5, 3.0], None);
        let md = json!({"lang": "en", "n": [1, 2]});
        b.push(
            "é/ü".into(),
            &[0.0, 1e-30, f32::MAX],
            md.as_object().cloned(),
        );
        b
    }

    #[test]
    fn binary_round_trip() {
        let b = sample();
        let bytes = encode_add(7, &b, 3);
        assert_eq!(decode(&bytes, WalFormat::Binary, 7).unwrap(), WalOp::Add(b));
        let d = encode_delete(8, "x/y");
        assert_eq!(
            decode(&d, WalFormat::Binary, 8).unwrap(),
            WalOp::Delete { id: "x/y".into() }
        );
        assert_eq!(
            decode(&d, WalFormat::Binary, 9).unwrap_err(),
            WalError::SeqMismatch {
                expected: 9,
                found: 8
            }
        );
        let empty = encode_add(1, &Batch::new(), 0);
        assert_eq!(
            decode(&empty, WalFormat::Binary, 1).unwrap(),
            WalOp::Add(Batch::new())
        );
    }

    #[test]
    fn legacy_json_entries_still_read() {
        let old =
            br#"{"seq":3,"op":"add","items":[{"id":"a","vector":[1.0,2.0],"metadata":{"k":1}}]}"#;
        let WalOp::Add(b) = decode(old, WalFormat::Json, 3).unwrap() else {
            panic!("an add");
        };
        assert_eq!((b.id(0), b.vector(0)), ("a", &[1.0, 2.0][..]));
        assert_eq!(b.metadata(0).unwrap()["k"], 1);
        let del = br#"{"seq":4,"op":"delete","id":"a"}"#;
        assert_eq!(
            decode(del, WalFormat::Json, 4).unwrap(),
            WalOp::Delete { id: "a".into() }
        );
        let op = WalOp::Add(sample());
        assert_eq!(
            decode(&encode_json_legacy(5, &op), WalFormat::Json, 5).unwrap(),
            op
        );
    }

    #[test]
    fn every_truncation_and_flip_is_an_error() {
        let bytes = encode_add(7, &sample(), 3);
        for n in 0..bytes.len() {
            assert!(
                decode(&bytes[..n], WalFormat::Binary, 7).is_err(),
                "cut at {n}"
            );
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b, WalFormat::Binary, 7).is_err(), "flip {i}.{bit}");
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            key("_vectors/", "d", 12),
            "_vectors/d.wal/00000000000000000012.bin"
        );
        assert_eq!(
            parse_name("00000000000000000012.bin"),
            Some((12, WalFormat::Binary))
        );
        assert_eq!(
            parse_name("00000000000000000003.json"),
            Some((3, WalFormat::Json))
        );
        for bad in [
            "x.bin",
            ".json",
            "12",
            "-1.bin",
            "99999999999999999999999.bin",
            "1.bin.tmp",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
