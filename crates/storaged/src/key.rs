//! Object keys: the one gate every key passes before reaching a backend.
//!
//! Grammar: UTF-8, 1..=1024 bytes, `/`-separated segments, none empty, `.` or
//! `..` or longer than [`MAX_SEGMENT_LEN`] bytes, no leading `/`, no control
//! characters, and the last segment may not end in `#<digits>` (the local
//! backend stages in-progress uploads under that suffix). The segment limit
//! is the filesystem's `NAME_MAX` (255 bytes) less room for that staging
//! suffix, so a key the grammar accepts can always be written on the local
//! backend; it applies to every backend alike, so a key valid on one is
//! valid on all. A valid key maps to an `object_store` path verbatim (no
//! re-encoding), so `%2F`, spaces and unicode round-trip byte for byte, and no
//! key can name anything outside the store's root.

use object_store::path::Path;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Longest segment, in bytes: `NAME_MAX` (255) less 15 bytes for the
/// `#<n>` suffix of the staging file an upload is written to on the local
/// backend (`<segment>#1`, `<segment>#2`, …).
pub const MAX_SEGMENT_LEN: usize = 240;

/// A validated object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is {len} bytes long; the limit is {MAX_KEY_LEN}")]
    TooLong { len: usize },
    #[error("the key starts with '/'")]
    LeadingSlash,
    #[error("the key has an empty segment ('//' or a trailing '/')")]
    EmptySegment,
    #[error("the key has a '{0}' segment")]
    DotSegment(&'static str),
    #[error(
        "the key has a segment of {len} bytes; the limit is {MAX_SEGMENT_LEN} bytes per segment \
         (the filesystem's NAME_MAX of 255, less room for the upload staging suffix)"
    )]
    SegmentTooLong { len: usize },
    #[error("the key contains the control character U+{0:04X}")]
    ControlCharacter(u32),
    #[error("the key ends in '#' and digits, which is reserved for in-progress uploads")]
    ReservedSuffix,
}

impl ObjectKey {
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong { len: key.len() });
        }
        if let Some(c) = key.chars().find(|c| c.is_control()) {
            return Err(KeyError::ControlCharacter(c as u32));
        }
        if key.starts_with('/') {
            return Err(KeyError::LeadingSlash);
        }
        for seg in key.split('/') {
            match seg {
                "" => return Err(KeyError::EmptySegment),
                "." => return Err(KeyError::DotSegment(".")),
                ".." => return Err(KeyError::DotSegment("..")),
                s if s.len() > MAX_SEGMENT_LEN => {
                    return Err(KeyError::SegmentTooLong { len: s.len() });
                }
                _ => {}
            }
        }
        let last = key.rsplit('/').next().unwrap_or(key);
        if let Some((_, suffix)) = last.rsplit_once('#')
            && !suffix.is_empty()
            && suffix.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(KeyError::ReservedSuffix);
        }
        Ok(Self(key.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The backend path: the key's bytes, unchanged.
    pub fn to_path(&self) -> Path {
        // The grammar above is stricter than `Path::parse` (which rejects only
        // empty/dot segments and ASCII control characters), so this cannot fail.
        Path::parse(&self.0).expect("a validated key is a valid object_store path")
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_keys() {
        let long = "k".repeat(2048);
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::Empty),
            ("../x", KeyError::DotSegment("..")),
            ("a/../../etc/passwd", KeyError::DotSegment("..")),
            ("a//b", KeyError::EmptySegment),
            ("a/", KeyError::EmptySegment),
            ("/abs", KeyError::LeadingSlash),
            ("a/./b", KeyError::DotSegment(".")),
            (".", KeyError::DotSegment(".")),
            ("a\0b", KeyError::ControlCharacter(0)),
            ("a\nb", KeyError::ControlCharacter(10)),
            ("a\u{7f}", KeyError::ControlCharacter(0x7f)),
            ("a\u{85}", KeyError::ControlCharacter(0x85)),
            (&long, KeyError::TooLong { len: 2048 }),
            (&"s".repeat(256), KeyError::SegmentTooLong { len: 256 }),
            (
                &format!("a/{}/b", "s".repeat(MAX_SEGMENT_LEN + 1)),
                KeyError::SegmentTooLong { len: 241 },
            ),
            // Bytes, not characters: 121 two-byte characters are 242 bytes.
            (&"é".repeat(121), KeyError::SegmentTooLong { len: 242 }),
            ("dir/file#12", KeyError::ReservedSuffix),
        ];
        for (key, want) in cases {
            assert_eq!(ObjectKey::parse(key).unwrap_err(), *want, "key {key:?}");
        }
    }

    #[test]
    fn accepts_unusual_valid_keys_verbatim() {
        for key in [
            "a",
            "with space/and more",
            "percent%2Fslash",
            "%48%45%4C%4C%4F/x",
            "ünïcödé/日本語/🙀.parquet",
            "dots.../..a/a..",
            "hash#tag/x#1a",
            "back\\slash",
            // The longest key: 1024 bytes in segments of at most 240.
            &format!(
                "{}/{}",
                vec!["k".repeat(MAX_SEGMENT_LEN); 4].join("/"),
                "k".repeat(60)
            ),
            &"é".repeat(MAX_SEGMENT_LEN / 2),
        ] {
            let k = ObjectKey::parse(key).unwrap();
            assert_eq!(k.as_str(), key);
            assert_eq!(k.to_path().as_ref(), key);
        }
    }
}
