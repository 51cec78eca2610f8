//! Which objects a dataset owns: the one rule every service applies before
//! it lets a dataset reference an object (catalog register) or deletes an
//! object on a dataset's behalf (ingest replace, recovery).
//!
//! Dataset `n` owns exactly the keys `datasets/<n>/<file>` where `<file>` is
//! a single key segment (no further `/`) that does not start with `_` or
//! `.` (by the Hive/Spark/Delta convention such names are metadata, not
//! data). So every key has at most one owner, found by splitting at its last
//! `/`: `datasets/a/b/x.parquet` belongs to dataset `a/b`, never to `a`.
//! Internal keys — anything starting with `_` (`_catalog/`, `_vectors/`,
//! `_ingest/`) — and keys outside `datasets/` belong to no dataset.
//!
//! A `write` token may register and replace its datasets but not delete
//! anything else; this rule is what makes that true, so it is checked at
//! every point where a key from a request or a stored manifest could lead to
//! a read or a delete.

use lakehouse_storaged::{KeyError, ObjectKey};

use crate::name::validate_name;

/// Where every dataset's objects live.
pub const DATASETS_PREFIX: &str = "datasets/";

/// Why a dataset does not own a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    #[error("it is not a valid object key: {0}")]
    InvalidKey(#[source] KeyError),
    #[error(
        "it is internal to the lakehouse (keys starting with '_', such as _catalog/, _vectors/ \
         and _ingest/, belong to no dataset)"
    )]
    Internal,
    #[error(
        "it is not under {DATASETS_PREFIX}; dataset {dataset:?} owns only {DATASETS_PREFIX}{dataset}/<file>"
    )]
    OutsideDatasets { dataset: String },
    #[error(
        "it belongs to dataset {owner:?}; dataset {dataset:?} owns only {DATASETS_PREFIX}{dataset}/<file>"
    )]
    OtherDataset { owner: String, dataset: String },
    #[error(
        "it belongs to no dataset; dataset {dataset:?} owns only {DATASETS_PREFIX}{dataset}/<file>"
    )]
    NoOwner { dataset: String },
    #[error("its file name starts with {0:?}, which marks metadata, not data")]
    HiddenFile(char),
}

/// The prefix of every key `dataset` owns: `datasets/<dataset>/`.
pub fn dataset_prefix(dataset: &str) -> String {
    format!("{DATASETS_PREFIX}{dataset}/")
}

/// Whether dataset `dataset` owns object `key` (see the module docs).
pub fn owns(dataset: &str, key: &str) -> bool {
    check_owned(dataset, key).is_ok()
}

/// The dataset that owns `key`, if any.
pub fn owner_of(key: &str) -> Option<&str> {
    let (owner, _) = split(key)?;
    owns(owner, key).then_some(owner)
}

/// Like [`owns`], saying why not.
pub fn check_owned(dataset: &str, key: &str) -> Result<(), OwnershipError> {
    ObjectKey::parse(key).map_err(OwnershipError::InvalidKey)?;
    if key.starts_with('_') {
        return Err(OwnershipError::Internal);
    }
    let Some((owner, file)) = split(key) else {
        return Err(if key.starts_with(DATASETS_PREFIX) {
            OwnershipError::NoOwner {
                dataset: dataset.to_string(),
            }
        } else {
            OwnershipError::OutsideDatasets {
                dataset: dataset.to_string(),
            }
        });
    };
    if owner != dataset {
        return Err(if validate_name(owner).is_ok() {
            OwnershipError::OtherDataset {
                owner: owner.to_string(),
                dataset: dataset.to_string(),
            }
        } else {
            OwnershipError::NoOwner {
                dataset: dataset.to_string(),
            }
        });
    }
    if validate_name(owner).is_err() {
        return Err(OwnershipError::NoOwner {
            dataset: dataset.to_string(),
        });
    }
    match file.chars().next() {
        Some(c @ ('_' | '.')) => Err(OwnershipError::HiddenFile(c)),
        _ => Ok(()),
    }
}

/// `datasets/<owner>/<file>` → `(owner, file)`, split at the last `/`.
fn split(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(DATASETS_PREFIX)?.rsplit_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_owns_its_direct_files_only() {
        for (dataset, key) in [
            ("a", "datasets/a/x.parquet"),
            ("a/b", "datasets/a/b/x.parquet"),
            ("sales/2024", "datasets/sales/2024/0190-abc-00000.parquet"),
            ("a", "datasets/a/part 1 (copy).parquet"),
            ("a", "datasets/a/no-extension"),
        ] {
            assert_eq!(check_owned(dataset, key), Ok(()), "{dataset} {key}");
            assert_eq!(owner_of(key), Some(dataset), "{key}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        use OwnershipError::*;
        let other = |owner: &str| OtherDataset {
            owner: owner.to_string(),
            dataset: "a".to_string(),
        };
        let no_owner = NoOwner {
            dataset: "a".to_string(),
        };
        let cases: Vec<(&str, OwnershipError)> = vec![
            // The nested key belongs to dataset a/b, not to a.
            ("datasets/a/b/x.parquet", other("a/b")),
            ("datasets/ab/x.parquet", other("ab")),
            ("datasets/b/x.parquet", other("b")),
            ("_catalog/manifests/a.parquet", Internal),
            ("_catalog/manifests/b.parquet", Internal),
            ("_vectors/docs.wal/00000000000000000001", Internal),
            ("_vectors/docs.lhv1", Internal),
            ("_ingest/inflight/x.json", Internal),
            ("_anything", Internal),
            (
                "raw/a/x.parquet",
                OutsideDatasets {
                    dataset: "a".to_string(),
                },
            ),
            (
                "a/x.parquet",
                OutsideDatasets {
                    dataset: "a".to_string(),
                },
            ),
            ("datasets/x.parquet", no_owner.clone()),
            ("datasets/A/x.parquet", no_owner.clone()),
            ("datasets/a/_delta_log", HiddenFile('_')),
            ("datasets/a/.hidden", HiddenFile('.')),
            ("../../etc/passwd", InvalidKey(KeyError::DotSegment(".."))),
            (
                "datasets/a/../b/x.parquet",
                InvalidKey(KeyError::DotSegment("..")),
            ),
            ("datasets/a/", InvalidKey(KeyError::EmptySegment)),
            ("datasets/a//x", InvalidKey(KeyError::EmptySegment)),
            ("/datasets/a/x", InvalidKey(KeyError::LeadingSlash)),
            ("datasets/a/x#1", InvalidKey(KeyError::ReservedSuffix)),
            ("", InvalidKey(KeyError::Empty)),
        ];
        for (key, want) in cases {
            assert_eq!(check_owned("a", key), Err(want), "{key:?}");
            assert!(!owns("a", key), "{key:?}");
        }
        assert_eq!(owner_of("datasets/a/b/x.parquet"), Some("a/b"));
        assert_eq!(owner_of("datasets/x.parquet"), None);
        assert_eq!(owner_of("_vectors/docs.lhv1"), None);
        assert_eq!(owner_of("datasets/a/_x"), None);
    }

    #[test]
    fn messages_name_the_rule() {
        let e = check_owned("a", "datasets/a/b/x.parquet").unwrap_err();
        assert_eq!(
            e.to_string(),
            "it belongs to dataset \"a/b\"; dataset \"a\" owns only datasets/a/<file>"
        );
    }
}
