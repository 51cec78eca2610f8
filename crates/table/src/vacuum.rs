//! Which files a table's kept versions list: what vacuum must not delete.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;

use crate::{At, DATASETS_PREFIX, Result, TableError, Tables, commit_key};

/// Which versions vacuum keeps: the latest `keep_versions` and every one
/// committed within `keep_for` (either is enough; the latest is always kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_versions: u64,
    pub keep_for: Duration,
}

/// The kept versions of a table and every file they list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub oldest: i64,
    pub latest: i64,
    /// Object keys (`datasets/<name>/<file>`).
    pub files: HashSet<String>,
}

impl Tables {
    /// The versions `r` keeps at `now`, and the files they list: the oldest
    /// kept version's files plus every file a later version added.
    pub async fn kept(&self, name: &str, r: &Retention, now: DateTime<Utc>) -> Result<Kept> {
        let Some(latest) = self.latest(name).await? else {
            return Err(TableError::NoTable {
                name: name.to_string(),
            });
        };
        let cutoff = chrono::Duration::from_std(r.keep_for)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut oldest = latest;
        while oldest > 0 {
            let v = oldest - 1;
            let by_count = ((latest - v) as u64) < r.keep_versions.max(1);
            let by_time = match self.root.head(&Path::from(commit_key(name, v))).await {
                Ok(meta) => meta.last_modified >= cutoff,
                // Its log entry was cleaned up: not readable, not kept.
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if !(by_count || by_time) {
                break;
            }
            oldest = v;
        }
        let mut files: HashSet<String> = self
            .snapshot(name, At::Version(oldest))
            .await?
            .files
            .into_iter()
            .map(|f| f.key)
            .collect();
        for v in oldest + 1..=latest {
            files.extend(self.added_in(name, v).await?);
        }
        Ok(Kept {
            oldest,
            latest,
            files,
        })
    }

    /// The keys of the files version `v` adds (from its log entry, or from
    /// its snapshot when the entry was cleaned up).
    async fn added_in(&self, name: &str, v: i64) -> Result<Vec<String>> {
        let bytes = match self.root.get(&Path::from(commit_key(name, v))).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                let snap = self.snapshot(name, At::Version(v)).await?;
                return Ok(snap.files.into_iter().map(|f| f.key).collect());
            }
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut keys = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| TableError::DamagedLog {
                name: name.to_string(),
                version: v,
                detail: e.to_string(),
            })?;
            if let Some(path) = action.pointer("/add/path").and_then(Value::as_str) {
                let file = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
                keys.push(format!("{DATASETS_PREFIX}{name}/{file}"));
            }
        }
        Ok(keys)
    }
}
