//! Dataset names: the one gate every name passes before it reaches the
//! registry or an object key.
//!
//! Grammar: 1..=256 bytes of lowercase ASCII letters, digits, `_`, `-`, `.`
//! and `/`; no `..` anywhere; no leading or trailing `/`, no `//`, no `.`
//! segment; no segment longer than [`MAX_NAME_SEGMENT_LEN`] bytes. A name
//! becomes part of object keys (`_catalog/manifests/<name>.parquet`,
//! `datasets/<name>/<ingest-id>-NNNNN.parquet`), so the rules guarantee that
//! every key built from it is a valid storaged key with no path tricks: each
//! segment leaves room for the `.parquet` of the manifest file name within
//! storaged's per-segment limit, and the longest name leaves room for the
//! longest prefix and file name within its key limit (checked at compile
//! time below). [`validate_name`] is the one function every service calls
//! before it builds a key from a name. One extra rule keeps names from colliding on
//! filesystem backends: a segment other than the last may not end in
//! `.parquet`, because dataset `a` owns the file `a.parquet` and dataset
//! `a.parquet/b` would need a directory of that same name. And no segment
//! may be `_delta_log`: dataset `a/_delta_log` would put its files inside
//! the Delta log of dataset `a`.

use lakehouse_storaged::key::{MAX_KEY_LEN, MAX_SEGMENT_LEN};

use crate::manifest::MANIFEST_PREFIX;
use crate::owner::DATASETS_PREFIX;

/// Longest dataset name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest segment of a dataset name, in bytes: the last segment becomes the
/// manifest's file name `<segment>.parquet`, which must fit storaged's
/// per-segment limit.
pub const MAX_NAME_SEGMENT_LEN: usize = MAX_SEGMENT_LEN - MANIFEST_SUFFIX.len();

const MANIFEST_SUFFIX: &str = ".parquet";

/// Longest file name ingest gives an object: `<ingest-id>-NNNNN.parquet`,
/// with room to spare.
const MAX_OBJECT_FILE_LEN: usize = 64;

// The longest name still makes valid keys.
const _: () = assert!(MANIFEST_PREFIX.len() + MAX_NAME_LEN + MANIFEST_SUFFIX.len() <= MAX_KEY_LEN);
const _: () =
    assert!(DATASETS_PREFIX.len() + MAX_NAME_LEN + 1 + MAX_OBJECT_FILE_LEN <= MAX_KEY_LEN);
const _: () = assert!(MAX_OBJECT_FILE_LEN <= MAX_SEGMENT_LEN);

/// Why a dataset name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong { len: usize },
    #[error(
        "the name contains {ch:?} at byte {pos}; allowed are lowercase letters, digits, '_', '-', '.' and '/'"
    )]
    InvalidChar { ch: char, pos: usize },
    #[error("the name contains '..'")]
    DotDot,
    #[error("the name starts or ends with '/'")]
    EdgeSlash,
    #[error("the name contains '//'")]
    DoubleSlash,
    #[error("the name has a '.' segment")]
    DotSegment,
    #[error("the segment '_delta_log' is reserved for tables' logs")]
    DeltaLogSegment,
    #[error("the segment {segment:?} ends in '.parquet', which only the last segment may")]
    ParquetSegment { segment: String },
    #[error(
        "a segment is {len} bytes long; the limit is {MAX_NAME_SEGMENT_LEN} bytes per segment \
         (object keys built from the name must fit the storage's {MAX_SEGMENT_LEN}-byte segments)"
    )]
    SegmentTooLong { len: usize },
}

/// Checks `name` against the grammar above.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some((pos, ch)) = name
        .char_indices()
        .find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.' | '/'))
    {
        return Err(NameError::InvalidChar { ch, pos });
    }
    if name.contains("..") {
        return Err(NameError::DotDot);
    }
    if name.starts_with('/') || name.ends_with('/') {
        return Err(NameError::EdgeSlash);
    }
    if name.contains("//") {
        return Err(NameError::DoubleSlash);
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.contains(&".") {
        return Err(NameError::DotSegment);
    }
    if segments.contains(&"_delta_log") {
        return Err(NameError::DeltaLogSegment);
    }
    if let Some(seg) = segments.iter().find(|s| s.len() > MAX_NAME_SEGMENT_LEN) {
        return Err(NameError::SegmentTooLong { len: seg.len() });
    }
    if let Some(seg) = segments[..segments.len() - 1]
        .iter()
        .find(|s| s.ends_with(".parquet"))
    {
        return Err(NameError::ParquetSegment {
            segment: (*seg).to_string(),
        });
    }
    Ok(())
}

/// The object key of a dataset's manifest: `_catalog/manifests/<name>.parquet`.
pub fn manifest_key(name: &str) -> String {
    format!("{MANIFEST_PREFIX}{name}.parquet")
}

/// The dataset name a manifest key stands for, if it is one.
pub fn name_from_key(key: &str) -> Option<&str> {
    key.strip_prefix(MANIFEST_PREFIX)?.strip_suffix(".parquet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        for n in [
            "a",
            "orders",
            "tpch/lineitem",
            "events-2024.v1",
            "x_y/z-1/.hidden",
            "a.parquet",
            "dir/a.parquet",
            &"a".repeat(MAX_NAME_SEGMENT_LEN),
            &format!("{}/{}", "a".repeat(MAX_NAME_SEGMENT_LEN), "b".repeat(23)),
        ] {
            assert_eq!(validate_name(n), Ok(()), "{n:?}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (
                &"a".repeat(MAX_NAME_LEN + 1),
                NameError::TooLong { len: 257 },
            ),
            // Was a 500 at ingest: `<name>.parquet` is past NAME_MAX.
            (
                &"a".repeat(MAX_NAME_LEN),
                NameError::SegmentTooLong { len: 256 },
            ),
            (
                &format!("x/{}", "a".repeat(MAX_NAME_SEGMENT_LEN + 1)),
                NameError::SegmentTooLong { len: 233 },
            ),
            (
                &format!("{}/x", "a".repeat(MAX_NAME_SEGMENT_LEN + 1)),
                NameError::SegmentTooLong { len: 233 },
            ),
            ("Orders", NameError::InvalidChar { ch: 'O', pos: 0 }),
            ("a b", NameError::InvalidChar { ch: ' ', pos: 1 }),
            ("café", NameError::InvalidChar { ch: 'é', pos: 3 }),
            ("a\\b", NameError::InvalidChar { ch: '\\', pos: 1 }),
            ("a#1", NameError::InvalidChar { ch: '#', pos: 1 }),
            ("a\nb", NameError::InvalidChar { ch: '\n', pos: 1 }),
            ("a..b", NameError::DotDot),
            ("../etc", NameError::DotDot),
            ("/a", NameError::EdgeSlash),
            ("a/", NameError::EdgeSlash),
            ("a//b", NameError::DoubleSlash),
            ("a/./b", NameError::DotSegment),
            (".", NameError::DotSegment),
            ("a/_delta_log", NameError::DeltaLogSegment),
            ("_delta_log", NameError::DeltaLogSegment),
            ("a/_delta_log/b", NameError::DeltaLogSegment),
            (
                "a.parquet/b",
                NameError::ParquetSegment {
                    segment: "a.parquet".to_string(),
                },
            ),
        ];
        for (n, want) in cases {
            assert_eq!(validate_name(n).as_ref(), Err(want), "{n:?}");
        }
    }

    #[test]
    fn keys_round_trip() {
        let k = manifest_key("tpch/lineitem");
        assert_eq!(k, "_catalog/manifests/tpch/lineitem.parquet");
        assert_eq!(name_from_key(&k), Some("tpch/lineitem"));
        assert_eq!(name_from_key("_catalog/manifests/x.json"), None);
        assert_eq!(name_from_key("datasets/x.parquet"), None);
    }

    /// Every key built from a valid name is a valid storaged key, for the
    /// longest names the grammar allows.
    #[test]
    fn keys_built_from_the_longest_names_are_valid() {
        use lakehouse_storaged::ObjectKey;
        let seg = "a".repeat(MAX_NAME_SEGMENT_LEN);
        let long_total = format!(
            "{seg}/{}",
            "b".repeat(MAX_NAME_LEN - MAX_NAME_SEGMENT_LEN - 1)
        );
        for name in [seg.as_str(), long_total.as_str()] {
            assert_eq!(validate_name(name), Ok(()));
            ObjectKey::parse(&manifest_key(name)).unwrap();
            let object =
                format!("{DATASETS_PREFIX}{name}/0000000000000-0123456789ab-00000.parquet");
            ObjectKey::parse(&object).unwrap();
        }
    }
}
