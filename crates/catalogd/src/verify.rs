//! Register-time checks of the objects a manifest is about to reference:
//! each exists, has the stated size and starts and ends like a Parquet file
//! (the magic `PAR1` first; last, a footer length that fits and `PAR1`).
//!
//! Checks run concurrently, at most [`VERIFY_CONCURRENCY`] at a time, and
//! report the first bad object in request order, so the answer does not
//! depend on timing. Each costs a `HEAD` and ranged `GET`s of its first 4 and last
//! [`TAIL_READ`] bytes (and of the rest of the footer, if it is longer): the
//! footer is decoded, because the table's log records each new file's
//! statistics and the schema comes from it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lakehouse_storaged::ObjectKey;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{CatalogError, Result, truncate_for_message};
use crate::manifest::ObjectRef;
use crate::owner::OwnershipError;

/// Objects checked at once during a register.
pub const VERIFY_CONCURRENCY: usize = 16;

const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
/// The smallest Parquet file: magic, a footer length, magic.
const MIN_PARQUET_LEN: u64 = 12;
/// Bytes read from the end of a file in the first request: most footers fit.
const TAIL_READ: u64 = 64 << 10;
/// Largest footer decoded (a file with very many row groups and columns
/// stays far below it).
pub const MAX_FOOTER_BYTES: u64 = 64 << 20;

/// The decoded footers of verified objects, by key and size.
pub type Footers = HashMap<(String, u64), Arc<ParquetMetaData>>;

/// Why an object cannot be part of a dataset.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    NotOwned(#[from] OwnershipError),
    #[error("no object exists at that key")]
    Missing,
    #[error("the object is {actual} bytes, not the stated {stated}")]
    SizeMismatch { stated: u64, actual: u64 },
    #[error("it is not a Parquet file: {0}")]
    NotParquet(String),
}

impl ObjectError {
    pub(crate) fn at(self, index: usize, key: &str) -> CatalogError {
        CatalogError::InvalidObject {
            index,
            key: truncate_for_message(key),
            source: self,
        }
    }
}

/// Checks every `(index, object)` against the store; the first bad one (in
/// the given order) is the error.
pub(crate) async fn verify_objects(
    store: &Arc<dyn ObjectStore>,
    objects: Vec<(usize, ObjectRef)>,
) -> Result<Footers> {
    futures::stream::iter(objects)
        .map(|(i, o)| {
            let store = store.clone();
            async move {
                let footer = verify_one(store.as_ref(), i, &o).await?;
                Ok(((o.key, o.size), footer))
            }
        })
        .buffered(VERIFY_CONCURRENCY)
        .try_collect()
        .await
}

async fn verify_one(
    store: &dyn ObjectStore,
    index: usize,
    o: &ObjectRef,
) -> Result<Arc<ParquetMetaData>> {
    // A valid storaged key maps to a path verbatim (no re-encoding).
    let path = ObjectKey::parse(&o.key)
        .map_err(|e| ObjectError::from(OwnershipError::InvalidKey(e)).at(index, &o.key))?
        .to_path();
    let storage = |source| CatalogError::Storage {
        key: truncate_for_message(&o.key),
        source,
    };
    let meta = match store.head(&path).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ObjectError::Missing.at(index, &o.key));
        }
        Err(e) => return Err(storage(e)),
    };
    if meta.size != o.size {
        return Err(ObjectError::SizeMismatch {
            stated: o.size,
            actual: meta.size,
        }
        .at(index, &o.key));
    }
    if o.size < MIN_PARQUET_LEN {
        let why = format!(
            "it is {} bytes, shorter than the smallest Parquet file ({MIN_PARQUET_LEN} bytes)",
            o.size
        );
        return Err(ObjectError::NotParquet(why).at(index, &o.key));
    }
    let tail_from = o.size - o.size.min(TAIL_READ);
    let missing_or = |e| match e {
        object_store::Error::NotFound { .. } => ObjectError::Missing.at(index, &o.key),
        e => storage(e),
    };
    let ends = store
        .get_ranges(&path, &[0..4, tail_from..o.size])
        .await
        .map_err(missing_or)?;
    let (head, tail) = match ends.as_slice() {
        [head, tail] if tail.len() as u64 == o.size - tail_from => (head.clone(), tail.clone()),
        _ => (Bytes::new(), Bytes::new()),
    };
    let not_parquet = |why| ObjectError::NotParquet(why).at(index, &o.key);
    let footer_len = parquet_head(&head)
        .and_then(|()| parquet_tail(o.size, &tail))
        .map_err(not_parquet)?;
    if footer_len > MAX_FOOTER_BYTES {
        return Err(not_parquet(format!(
            "its footer is {footer_len} bytes; the limit is {MAX_FOOTER_BYTES}"
        )));
    }
    let footer_start = o.size - 8 - footer_len;
    let footer = if footer_start >= tail_from {
        let at = (footer_start - tail_from) as usize;
        tail.slice(at..tail.len() - 8)
    } else {
        let got = store
            .get_range(&path, footer_start..o.size - 8)
            .await
            .map_err(missing_or)?;
        if got.len() as u64 != footer_len {
            return Err(not_parquet(
                "its footer could not be read whole".to_string(),
            ));
        }
        got
    };
    decode_footer(footer).await.map_err(not_parquet)
}

/// Decodes footer bytes off the request threads; a panic in the decoder
/// (it has some on malformed input) is an error, not a crash.
async fn decode_footer(footer: Bytes) -> Result<Arc<ParquetMetaData>, String> {
    let decoded = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ParquetMetaDataReader::decode_metadata(&footer)
        }))
    })
    .await;
    match decoded {
        Ok(Ok(Ok(m))) => Ok(Arc::new(m)),
        Ok(Ok(Err(e))) => Err(format!("its footer cannot be decoded: {e}")),
        Ok(Err(_)) | Err(_) => Err("its footer cannot be decoded".to_string()),
    }
}

/// Checks the first 4 bytes of a file: the magic `PAR1`.
fn parquet_head(head: &[u8]) -> Result<(), String> {
    if head != PARQUET_MAGIC {
        return Err("it does not start with the Parquet magic \"PAR1\"".to_string());
    }
    Ok(())
}

/// Checks the last bytes of a `size`-byte file: a footer length that fits,
/// then `PAR1`; returns the footer's length.
fn parquet_tail(size: u64, tail: &[u8]) -> Result<u64, String> {
    if size < MIN_PARQUET_LEN {
        return Err(format!(
            "it is {size} bytes, shorter than the smallest Parquet file ({MIN_PARQUET_LEN} bytes)"
        ));
    }
    let Some((len, magic)) = tail.split_last_chunk::<4>() else {
        return Err("its last bytes could not be read".to_string());
    };
    if magic != PARQUET_MAGIC {
        return Err("it does not end in the Parquet magic \"PAR1\"".to_string());
    }
    let Some(len) = len.last_chunk::<4>() else {
        return Err("its last bytes could not be read".to_string());
    };
    let footer = u64::from(u32::from_le_bytes(*len));
    if footer + MIN_PARQUET_LEN > size {
        return Err(format!(
            "its footer claims {footer} bytes, more than the file holds"
        ));
    }
    Ok(footer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_tails() {
        let tail = |len: u32, magic: &[u8; 4]| {
            let mut t = len.to_le_bytes().to_vec();
            t.extend_from_slice(magic);
            t
        };
        assert_eq!(parquet_tail(100, &tail(80, b"PAR1")), Ok(80));
        assert_eq!(parquet_tail(100, &tail(88, b"PAR1")), Ok(88));
        assert!(
            parquet_tail(100, &tail(89, b"PAR1"))
                .unwrap_err()
                .contains("footer claims 89")
        );
        assert!(
            parquet_tail(100, &tail(8, b"PARX"))
                .unwrap_err()
                .contains("magic")
        );
        assert!(
            parquet_tail(11, &tail(0, b"PAR1"))
                .unwrap_err()
                .contains("11 bytes")
        );
        assert!(parquet_tail(100, b"PAR1").is_err());
        assert_eq!(parquet_head(b"PAR1"), Ok(()));
        assert!(parquet_head(b"PARX").unwrap_err().contains("start"));
        assert!(parquet_head(b"").is_err());
    }
}
