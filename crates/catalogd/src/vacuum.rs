//! Vacuum: deleting the files of a dataset that no kept version of its
//! table lists.
//!
//! Kept versions are the catalog's [`VacuumPolicy`]: the latest N and those
//! committed within a duration. A file survives if a kept version lists it,
//! if it belongs to an ingest in flight (its name starts with the id of a
//! journal under `_ingest/inflight/`), or if it was written within the
//! grace period (a compaction writes its files before it commits them).
//! Only files the dataset owns are ever considered ([`crate::owns`]). Before
//! deleting, the oldest kept version is recorded at
//! `_catalog/vacuum/<name>.json`, so an older version is refused by name
//! (404 `no_such_version`, "was vacuumed") rather than read half-deleted.

use std::time::Duration;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use lakehouse_table::{Retention, TableError};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};

use crate::error::{CatalogError, Result};
use crate::owner::owns;
use crate::registry::Inner;
use crate::{VacuumPolicy, VacuumReport};

const MARKER_PREFIX: &str = "_catalog/vacuum/";
const INFLIGHT_PREFIX: &str = "_ingest/inflight/";

fn marker_key(name: &str) -> String {
    format!("{MARKER_PREFIX}{name}.json")
}

fn storage(key: &str) -> impl Fn(object_store::Error) -> CatalogError + '_ {
    move |source| CatalogError::Storage {
        key: key.to_string(),
        source,
    }
}

impl Inner {
    /// See [`crate::Catalog::vacuum`]; the caller holds the register lock.
    pub(crate) async fn vacuum(&self, name: &str, dry_run: bool) -> Result<VacuumReport> {
        let policy: VacuumPolicy = *self.vacuum.read();
        let now = Utc::now();
        let retention = Retention {
            keep_versions: policy.keep_versions,
            keep_for: Duration::from_secs(policy.keep_for_hours.saturating_mul(3600)),
        };
        let kept = self
            .tables
            .kept(name, &retention, now)
            .await
            .map_err(|e| CatalogError::table(name, e))?;
        let in_flight = self.in_flight_ingests().await?;
        let grace = chrono::Duration::seconds(i64::try_from(policy.grace_secs).unwrap_or(i64::MAX));
        let written_before = now
            .checked_sub_signed(grace)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let prefix = format!("datasets/{name}");
        let listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&Path::from(prefix.as_str())))
            .try_collect()
            .await
            .map_err(storage(&prefix))?;
        let mut doomed: Vec<(String, u64)> = listed
            .into_iter()
            .filter(|m| {
                let key = m.location.as_ref();
                let file = key.rsplit('/').next().unwrap_or_default();
                owns(name, key)
                    && !kept.files.contains(key)
                    && m.last_modified < written_before
                    && !in_flight
                        .iter()
                        .any(|id| file.starts_with(&format!("{id}-")))
            })
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        doomed.sort();
        if !dry_run && !doomed.is_empty() {
            self.mark_vacuumed(name, kept.oldest).await?;
            let paths: Vec<object_store::Result<Path>> = doomed
                .iter()
                .map(|(k, _)| Ok(Path::from(k.as_str())))
                .collect();
            let mut deletes = self
                .store
                .delete_stream(futures::stream::iter(paths).boxed());
            while let Some(r) = deletes.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(storage(&prefix)(e)),
                }
            }
            tracing::info!(dataset = %name, files = doomed.len(), oldest_kept = kept.oldest, "vacuumed");
        }
        Ok(VacuumReport {
            name: name.to_string(),
            dry_run,
            oldest_kept_version: kept.oldest,
            latest_version: kept.latest,
            bytes: doomed.iter().map(|(_, s)| s).sum(),
            files: doomed.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// The ids of the ingests whose journals say they are running.
    async fn in_flight_ingests(&self) -> Result<Vec<String>> {
        let journals: Vec<ObjectMeta> = self
            .store
            .list(Some(&Path::from(INFLIGHT_PREFIX.trim_end_matches('/'))))
            .try_collect()
            .await
            .map_err(storage(INFLIGHT_PREFIX))?;
        Ok(journals
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect())
    }

    /// The oldest version of `name` a vacuum kept (0 if never vacuumed).
    pub(crate) async fn vacuumed_before(&self, name: &str) -> Result<i64> {
        let key = marker_key(name);
        let bytes = match self.store.get(&Path::from(key.as_str())).await {
            Ok(r) => r.bytes().await.map_err(storage(&key))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(storage(&key)(e)),
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(v["oldest_kept"].as_i64().unwrap_or(0))
    }

    async fn mark_vacuumed(&self, name: &str, oldest: i64) -> Result<()> {
        if self.vacuumed_before(name).await? >= oldest {
            return Ok(());
        }
        let key = marker_key(name);
        let body = serde_json::json!({ "oldest_kept": oldest }).to_string();
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(body))
            .await
            .map_err(storage(&key))?;
        Ok(())
    }

    /// Refuses a version a vacuum removed.
    pub(crate) async fn check_not_vacuumed(&self, name: &str, version: i64) -> Result<()> {
        let oldest = self.vacuumed_before(name).await?;
        if version < oldest {
            return Err(CatalogError::table(
                name,
                TableError::Vacuumed {
                    name: name.to_string(),
                    version,
                    oldest,
                },
            ));
        }
        Ok(())
    }
}
