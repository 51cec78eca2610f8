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
//!
//! An index that follows a dataset adds `source` to the envelope (and its
//! parameters carry the dataset and columns): the dataset version and the
//! objects it reflects, and its full-text index (base64 of the BM25 index's
//! own checksummed form, so the frame stays the seed's). Envelopes without
//! these fields — every snapshot written before — load as before.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bm25::TextIndex;
use crate::service::IndexSpec;
use crate::state::{ObjectEntry, Reflected};

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
    /// What an index that follows a dataset reflects (absent for a plain
    /// index, and in every snapshot written before datasets could be
    /// followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRecord>,
}

/// The dataset state a snapshot of a dataset index holds: its items are
/// exactly the non-null rows of `objects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The dataset version reflected (`None`: not caught up yet, or the
    /// dataset is gone).
    #[serde(default)]
    pub dataset_version: Option<u64>,
    pub next_file: u64,
    pub objects: Vec<ObjectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The full-text index ([`crate::bm25::TextIndex::encode`]), base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_index: Option<String>,
}

/// One dataset object: its key, the number its items' keys carry, its rows
/// and how many of them are not items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    pub file: u64,
    pub rows: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl SourceRecord {
    pub(crate) fn new(r: &Reflected, text: Option<&[u8]>) -> Self {
        use base64::Engine;
        Self {
            dataset_version: r.version,
            next_file: r.next_file,
            objects: r
                .objects
                .iter()
                .map(|(key, o)| ObjectRecord {
                    key: key.clone(),
                    file: o.file,
                    rows: o.rows,
                    skipped: o.skipped,
                })
                .collect(),
            model: r.model.clone(),
            error: r.error.clone(),
            text_index: text.map(|t| base64::engine::general_purpose::STANDARD.encode(t)),
        }
    }

    /// The reflected state and the text index, or why they are damaged.
    pub(crate) fn into_reflected(self) -> Result<(Reflected, Option<TextIndex>), String> {
        use base64::Engine;
        let mut objects = std::collections::BTreeMap::new();
        for o in self.objects {
            let entry = ObjectEntry {
                file: o.file,
                rows: o.rows,
                skipped: o.skipped,
            };
            if objects.insert(o.key.clone(), entry).is_some() {
                return Err(format!("object {:?} is listed twice", o.key));
            }
        }
        let text = match self.text_index {
            Some(t) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|e| format!("text index: {e}"))?;
                Some(TextIndex::decode(&bytes).map_err(|e| format!("text index: {e}"))?)
            }
            None => None,
        };
        let r = Reflected {
            version: self.dataset_version,
            objects,
            next_file: self.next_file,
            model: self.model,
            error: self.error,
        };
        Ok((r, text))
    }
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
            params: IndexSpec::new("docs", 3, lakehouse_hnsw::Metric::Cosine),
            metadata: EnvelopeMetadata {
                next_key: 2,
                items: vec![ItemRecord {
                    key: 1,
                    id: "a".into(),
                    metadata: None,
                }],
            },
            version: 7,
            source: None,
        }
    }

    #[test]
    fn envelopes_written_before_datasets_still_load() {
        // The envelope as the first versions wrote it.
        let old = br#"{"params":{"name":"docs","dim":3,"metric":"cosine","m":16,"ef_construction":200},"metadata":{"next_key":2,"items":[{"key":1,"id":"a"}]},"version":7}"#;
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&(old.len() as u32).to_be_bytes());
        blob.extend_from_slice(old);
        let (env, _) = decode(&blob).unwrap();
        assert_eq!(env, sample());
        // And a plain index's envelope is still written without the new fields.
        let text = serde_json::to_string(&sample()).unwrap();
        assert!(
            !text.contains("source") && !text.contains("dataset"),
            "{text}"
        );
    }

    #[test]
    fn a_dataset_envelope_round_trips() {
        let mut env = sample();
        env.params.source.dataset = Some("d".into());
        env.params.source.id_column = Some("id".into());
        env.params.source.text_column = Some("body".into());
        let mut text = TextIndex::new();
        text.insert(1, "hello world");
        let mut bytes = Vec::new();
        text.encode(&mut bytes);
        let mut r = Reflected {
            version: Some(4),
            next_file: 1,
            ..Reflected::default()
        };
        r.objects.insert(
            "datasets/d/a.parquet".into(),
            ObjectEntry {
                file: 0,
                rows: 2,
                skipped: 1,
            },
        );
        env.source = Some(SourceRecord::new(&r, Some(&bytes)));
        let blob = encode(&env, b"g");
        let (back, _) = decode(&blob).unwrap();
        assert_eq!(back, env);
        let (r2, t2) = back.source.unwrap().into_reflected().unwrap();
        assert_eq!(
            (r2.version, r2.objects, r2.next_file),
            (r.version, r.objects, 1)
        );
        assert_eq!(t2.map(|t| t.len()), Some(1));
        let mut bad = env.source.clone().unwrap();
        bad.text_index = Some("not base64!".into());
        assert!(bad.into_reflected().unwrap_err().contains("text index"));
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
