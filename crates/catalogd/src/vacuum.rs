//! Vacuum: deleting the files of a dataset that no kept version of its
//! table lists.
//!
//! Kept versions are the catalog's [`VacuumPolicy`]: the latest N and those
//! committed within a duration. A file survives if a kept version lists it,
//! if it belongs to an ingest in flight (its name starts with the id of a
//! journal under `_ingest/inflight/`, or is listed by the journal of a
//! running SQL statement under `_sql/inflight/`), or if it was written within the
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
        let listed = self.listed(&format!("datasets/{name}")).await?;
        let candidates = self
            .candidates(name, &listed, |key| kept.files.contains(key))
            .await?;
        let (doomed, held) = split_by_grace(candidates, &policy);
        if !dry_run && !doomed.is_empty() {
            self.mark_vacuumed(name, kept.oldest).await?;
            self.delete_keys(name, doomed.iter().map(|(k, _)| k.clone()).collect())
                .await?;
            tracing::info!(dataset = %name, files = doomed.len(), oldest_kept = kept.oldest, "vacuumed");
        }
        Ok(VacuumReport {
            name: name.to_string(),
            dry_run,
            oldest_kept_version: kept.oldest,
            latest_version: kept.latest,
            bytes: doomed.iter().map(|(_, s)| s).sum(),
            files: doomed.into_iter().map(|(k, _)| k).collect(),
            dropped: false,
            held_files: held.len() as u64,
            held_until: held_until(&held, &policy),
        })
    }

    /// The files of `name` a vacuum may delete once they are past the
    /// grace period: those it owns that `keep` does not keep, but not those
    /// of ingests in flight; sorted by key.
    async fn candidates(
        &self,
        name: &str,
        listed: &[ObjectMeta],
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<ObjectMeta>> {
        let in_flight = self.in_flight_ingests().await?;
        // Files a running SQL statement wrote and has not committed yet.
        let statements: std::collections::HashSet<String> =
            lakehouse_table::journal::journaled_files(self.store.as_ref())
                .await
                .map_err(|e| CatalogError::table(name, e))?
                .into_iter()
                .collect();
        let mut out: Vec<ObjectMeta> = listed
            .iter()
            .filter(|m| {
                let key = m.location.as_ref();
                let file = key.rsplit('/').next().unwrap_or_default();
                owns(name, key)
                    && !keep(key)
                    && !statements.contains(key)
                    && !in_flight
                        .iter()
                        .any(|id| file.starts_with(&format!("{id}-")))
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    async fn listed(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(storage(prefix))
    }

    /// Deletes `keys` (already gone is fine), in the order given.
    async fn delete_keys(&self, name: &str, keys: Vec<String>) -> Result<()> {
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|k| Ok(Path::from(k.as_str()))).collect();
        let mut deletes = self
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        while let Some(r) = deletes.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage(&format!("datasets/{name}"))(e)),
            }
        }
        Ok(())
    }

    /// Vacuum of a dropped dataset (no manifest; the caller holds the
    /// register lock): every file it owns but those of ingests in flight
    /// and those within the grace period, then — when none is left — its
    /// table's log, newest entry first (so a crash leaves a shorter log
    /// that the next vacuum finishes, never one missing its start), and its
    /// vacuum marker. [`Purge::Plan`] lists everything a vacuum will remove
    /// (now or once the grace period is over): what a drop answers.
    pub(crate) async fn purge(&self, name: &str, mode: Purge) -> Result<VacuumReport> {
        let policy: VacuumPolicy = *self.vacuum.read();
        // One listing: the data files and the table's log.
        let listed = self.listed(&format!("datasets/{name}")).await?;
        let candidates = self.candidates(name, &listed, |_| false).await?;
        let log_prefix = format!("datasets/{name}/_delta_log/");
        let mut log: Vec<(String, u64)> = listed
            .iter()
            .filter(|m| m.location.as_ref().starts_with(&log_prefix))
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        // `_last_checkpoint` first, then each version's commit before its
        // checkpoint, newest version first.
        log.sort_by(|a, b| b.0.cmp(&a.0));
        let latest = log
            .iter()
            .filter_map(|(k, _)| k.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
            .max()
            .unwrap_or(-1i64);
        let planned: Vec<(String, u64)> = candidates
            .iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        let (data, held) = split_by_grace(candidates, &policy);
        // Files held back may yet be read through the log: it stays until
        // they can go too.
        if !held.is_empty() && !matches!(mode, Purge::Plan) {
            log.clear();
        }
        if matches!(mode, Purge::Run) {
            self.delete_keys(name, data.iter().map(|(k, _)| k.clone()).collect())
                .await?;
            // One at a time, in order (a batch delete may run out of order).
            for (key, _) in &log {
                self.delete_keys(name, vec![key.clone()]).await?;
            }
            if !log.is_empty() {
                self.delete_keys(name, vec![marker_key(name)]).await?;
            }
            tracing::info!(dataset = %name, files = data.len(), log_entries = log.len(), "vacuumed a dropped dataset");
        }
        let data = if matches!(mode, Purge::Plan) {
            planned
        } else {
            data
        };
        let mut files: Vec<(String, u64)> = data.into_iter().chain(log).collect();
        files.sort();
        Ok(VacuumReport {
            name: name.to_string(),
            dry_run: !matches!(mode, Purge::Run),
            oldest_kept_version: latest + 1,
            latest_version: latest,
            bytes: files.iter().map(|(_, s)| s).sum(),
            files: files.into_iter().map(|(k, _)| k).collect(),
            dropped: true,
            held_files: held.len() as u64,
            held_until: held_until(&held, &policy),
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

/// What a purge does: list everything a vacuum of the dropped name will
/// remove (the drop's answer), list what one would remove now, or remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purge {
    Plan,
    DryRun,
    Run,
}

/// `files` split into those past the grace period (deletable now, with
/// their sizes) and those within it.
fn split_by_grace(
    files: Vec<ObjectMeta>,
    policy: &VacuumPolicy,
) -> (Vec<(String, u64)>, Vec<ObjectMeta>) {
    let grace = chrono::Duration::seconds(i64::try_from(policy.grace_secs).unwrap_or(i64::MAX));
    let written_before = Utc::now()
        .checked_sub_signed(grace)
        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let (old, new): (Vec<ObjectMeta>, Vec<ObjectMeta>) = files
        .into_iter()
        .partition(|m| m.last_modified < written_before);
    (
        old.into_iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect(),
        new,
    )
}

/// When the last of `held` leaves the grace period (RFC 3339).
fn held_until(held: &[ObjectMeta], policy: &VacuumPolicy) -> Option<String> {
    let grace = chrono::Duration::seconds(i64::try_from(policy.grace_secs).unwrap_or(i64::MAX));
    held.iter()
        .map(|m| m.last_modified)
        .max()
        .and_then(|t| t.checked_add_signed(grace))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
