//! The LHV1 snapshot format (seed contract), one blob per index at
//! `_vectors/<name>.lhv1`:
//!
//! ```text
//! [4 bytes "LHV1"][u32 big-endian envelope_len][envelope JSON][graph bytes]
//! ```
//!
//! The envelope holds the parameters, the item metadata (external ids, their
//! engine keys, user metadata) and the version (the last write-ahead-log
//! sequence number the snapshot includes). The graph bytes are the engine's
//! own checksummed export. One blob, so there is no torn pair of files.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::service::IndexSpec;

pub const MAGIC: &[u8; 4] = b"LHV1";
/// Largest envelope a decoder accepts, so a corrupt length cannot make it
/// allocate gigabytes.
const MAX_ENVELOPE: usize = 1 << 31;

/// One item's identity and metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub key: u64,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub params: IndexSpec,
    pub metadata: EnvelopeMetadata,
    /// The last WAL sequence number applied in this snapshot (0 = none).
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeMetadata {
    pub next_key: u64,
    pub items: Vec<ItemRecord>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Lhv1Error {
    #[error("too short to be an LHV1 snapshot ({0} bytes)")]
    TooShort(usize),
    #[error("bad magic (not an LHV1 snapshot)")]
    BadMagic,
    #[error("envelope length {len} exceeds the {available} bytes that follow")]
    BadLength { len: usize, available: usize },
    #[error("envelope is not valid JSON: {0}")]
    Envelope(String),
    #[error("graph: {0}")]
    Graph(String),
    #[error("envelope and graph disagree: {0}")]
    Mismatch(String),
}

pub fn encode(envelope: &Envelope, graph: &[u8]) -> Vec<u8> {
    let env = serde_json::to_vec(envelope).expect("an envelope always serialises");
    let mut out = Vec::with_capacity(8 + env.len() + graph.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(env.len() as u32).to_be_bytes());
    out.extend_from_slice(&env);
    out.extend_from_slice(graph);
    out
}

/// Splits and parses a snapshot. Never panics; never allocates more than the
/// input's size for the envelope.
pub fn decode(blob: &[u8]) -> Result<(Envelope, &[u8]), Lhv1Error> {
    if blob.len() < 8 {
        return Err(Lhv1Error::TooShort(blob.len()));
    }
    if &blob[..4] != MAGIC {
        return Err(Lhv1Error::BadMagic);
    }
    let len = u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]) as usize;
    let available = blob.len() - 8;
    if len > available || len > MAX_ENVELOPE {
        return Err(Lhv1Error::BadLength { len, available });
    }
    let envelope: Envelope = serde_json::from_slice(&blob[8..8 + len])
        .map_err(|e| Lhv1Error::Envelope(e.to_string()))?;
    Ok((envelope, &blob[8 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            params: IndexSpec {
                name: "docs".into(),
                dim: 3,
                metric: lakehouse_hnsw::Metric::Cosine,
                m: 16,
                ef_construction: 200,
            },
            metadata: EnvelopeMetadata {
                next_key: 2,
                items: vec![ItemRecord {
                    key: 1,
                    id: "a".into(),
                    metadata: None,
                }],
            },
            version: 7,
        }
    }

    #[test]
    fn frames_round_trip() {
        let blob = encode(&sample(), b"graph-bytes");
        assert_eq!(&blob[..4], b"LHV1");
        let (env, graph) = decode(&blob).unwrap();
        assert_eq!(env, sample());
        assert_eq!(graph, b"graph-bytes");
    }

    #[test]
    fn every_truncation_and_flip_is_an_error_not_a_panic() {
        let blob = encode(&sample(), b"graph");
        for n in 0..blob.len() - 5 {
            // Cutting into the envelope must fail; cutting only the graph is
            // the engine decoder's job (tested with real graphs elsewhere).
            assert!(decode(&blob[..n]).is_err(), "truncated at {n}");
        }
        let mut huge = blob.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&huge), Err(Lhv1Error::BadLength { .. })));
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0xff;
            let _ = decode(&b); // must not panic
        }
    }
}
