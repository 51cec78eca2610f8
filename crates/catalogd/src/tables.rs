//! Every dataset a Delta table: the catalog's side.
//!
//! The catalog is the one writer of each dataset's Delta log
//! (`datasets/<name>/_delta_log/`, through `lakehouse-table`). A register
//! that changes a dataset's files commits one table version — `add` actions
//! with each new file's statistics from its footer, `remove` actions for the
//! files it drops — and only then writes the manifest, which records the
//! version in `table_version`.
//!
//! **The log is the source of truth.** Once a version is committed the
//! change is durable: if the manifest write then fails or the process dies,
//! the next start rolls the manifest forward from the log (one `HEAD` of the
//! next version's log entry per dataset). Removed files stay stored for the
//! versions that list them. A dataset from before tables existed is
//! converted at start-up (one version 0 listing its objects); one whose
//! schema has a type Delta cannot store stays without a table (it has no
//! history; everything else works as before).

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use lakehouse_table::{At, Change, Commit, NewFile, OldFile, TableError, TableFile};

use crate::error::{CatalogError, Result};
use crate::manifest::{Manifest, ObjectRef, now_micros};
use crate::owner::check_owned;
use crate::registry::{Entry, Inner};
use crate::verify::{Footers, verify_objects};

/// Datasets settled at once at start-up.
const SETTLE_CONCURRENCY: usize = 16;

impl Inner {
    /// Commits the table version for a register that turns `prior` into
    /// `next`; returns the table's version after it (`None`: no table).
    pub(crate) async fn commit_table(
        &self,
        next: &Manifest,
        prior: Option<&Manifest>,
        footers: &Footers,
    ) -> Result<Option<u64>> {
        let base = prior.and_then(|p| p.table_version);
        if prior.is_some_and(|p| p.table_version.is_none() && !p.objects.is_empty()) {
            // Start-up found that this dataset cannot be a table.
            return Ok(None);
        }
        let key_size = |o: &ObjectRef| (o.key.clone(), o.size);
        let old: HashSet<(String, u64)> = prior
            .map(|p| p.objects.iter().map(key_size).collect())
            .unwrap_or_default();
        let new: HashSet<(String, u64)> = next.objects.iter().map(key_size).collect();
        let removes: Vec<OldFile> = prior
            .map(|p| p.objects.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|o| !new.contains(&key_size(o)))
            .map(|o| OldFile {
                key: o.key.clone(),
                size: o.size,
                rows: o.row_count,
            })
            .collect();
        let added: Vec<&ObjectRef> = next
            .objects
            .iter()
            .filter(|o| !old.contains(&key_size(o)))
            .collect();
        if added.is_empty() && (removes.is_empty() || base.is_none()) {
            return Ok(base);
        }
        let adds = self.new_files(&added, footers).await?;
        let commit = Commit {
            name: next.name.clone(),
            fingerprint: next.schema_fingerprint.clone(),
            adds,
            removes,
            base: base.map(|v| v as i64),
        };
        match self.tables.commit(commit).await {
            Ok(v) => Ok(Some(v as u64)),
            Err(TableError::UnsupportedSchema(why)) if base.is_none() => {
                tracing::info!(dataset = %next.name, %why, "the dataset has no table");
                Ok(None)
            }
            Err(TableError::Conflict { .. }) if prior.is_some() => {
                // Another writer moved the log: record what it holds now, and
                // let the caller re-read and try again.
                let prior = prior.cloned().unwrap_or_else(|| next.clone());
                let now = self.roll_forward(&prior).await?;
                Err(CatalogError::VersionMismatch {
                    name: next.name.clone(),
                    expected: prior.version,
                    actual: now.version,
                })
            }
            Err(e) => Err(CatalogError::table(&next.name, e)),
        }
    }

    /// The files a commit adds, each with its footer (read now if the
    /// register's checks did not).
    async fn new_files(&self, added: &[&ObjectRef], footers: &Footers) -> Result<Vec<NewFile>> {
        let missing: Vec<(usize, ObjectRef)> = added
            .iter()
            .enumerate()
            .filter(|(_, o)| !footers.contains_key(&(o.key.clone(), o.size)))
            .map(|(i, o)| (i, (*o).clone()))
            .collect();
        let extra = verify_objects(&self.store, missing).await?;
        added
            .iter()
            .map(|o| {
                let k = (o.key.clone(), o.size);
                let metadata = footers.get(&k).or_else(|| extra.get(&k)).cloned();
                metadata
                    .map(|metadata| NewFile {
                        key: o.key.clone(),
                        size: o.size,
                        metadata,
                    })
                    .ok_or_else(|| {
                        CatalogError::InvalidRequest(format!("{:?} has no footer", o.key))
                    })
            })
            .collect()
    }

    /// Records the table's latest version in `m`'s dataset's manifest.
    pub(crate) async fn roll_forward(&self, m: &Manifest) -> Result<Manifest> {
        let snap = self
            .tables
            .snapshot(&m.name, At::Latest)
            .await
            .map_err(|e| CatalogError::table(&m.name, e))?;
        let objects = self.objects_of(&m.name, &snap.files).await?;
        let next = Manifest {
            row_count: objects.iter().map(|o| o.row_count).sum(),
            objects,
            schema_fingerprint: snap
                .fingerprint
                .unwrap_or_else(|| m.schema_fingerprint.clone()),
            updated_at: now_micros().max(m.updated_at),
            version: m.version + 1,
            table_version: Some(snap.version as u64),
            ..m.clone()
        };
        self.persist(&next).await?;
        tracing::info!(dataset = %m.name, table_version = snap.version, "manifest rolled forward to the table's log");
        self.map
            .write()
            .insert(next.name.clone(), Entry::trusted(next.clone()));
        Ok(next)
    }

    /// A table version's files as manifest objects: each must be one the
    /// dataset owns (a log written by another engine could name anything);
    /// row counts come from the statistics, or the footer when absent.
    async fn objects_of(&self, name: &str, files: &[TableFile]) -> Result<Vec<ObjectRef>> {
        for f in files {
            check_owned(name, &f.key).map_err(|e| CatalogError::Table {
                name: name.to_string(),
                source: TableError::DamagedLog {
                    name: name.to_string(),
                    version: -1,
                    detail: format!("it lists {:?}, which the dataset does not own: {e}", f.key),
                },
            })?;
        }
        let unknown: Vec<(usize, ObjectRef)> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.rows.is_none())
            .map(|(i, f)| {
                (
                    i,
                    ObjectRef {
                        key: f.key.clone(),
                        size: f.size,
                        row_count: 0,
                    },
                )
            })
            .collect();
        let footers = verify_objects(&self.store, unknown).await?;
        Ok(files
            .iter()
            .map(|f| ObjectRef {
                key: f.key.clone(),
                size: f.size,
                row_count: f.rows.unwrap_or_else(|| {
                    footers
                        .get(&(f.key.clone(), f.size))
                        .map_or(0, |m| m.file_metadata().num_rows().max(0) as u64)
                }),
            })
            .collect())
    }

    /// The manifest in memory of `name` (not quarantined).
    pub(crate) fn current(&self, name: &str) -> Result<Manifest> {
        let entry = self.map.read().get(name).cloned();
        match entry {
            Some(e) if e.quarantine.is_none() => Ok(e.manifest.clone()),
            _ => Err(CatalogError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Under the register lock: rolls `name`'s manifest forward if the table
    /// version `committed` (a compaction's, committed by delta-rs) is past it.
    pub(crate) async fn catch_up(&self, name: &str, committed: Option<i64>) -> Result<Manifest> {
        let _serial = self.write.lock().await;
        let current = self.current(name)?;
        match (committed, current.table_version) {
            (Some(c), Some(v)) if c > v as i64 => self.roll_forward(&current).await,
            _ => Ok(current),
        }
    }

    /// `current`'s dataset at a past version or time.
    pub(crate) async fn manifest_at(&self, current: Manifest, at: At) -> Result<Manifest> {
        if current.table_version.is_none() {
            return Err(no_table(&current));
        }
        let snap = self
            .tables
            .snapshot(&current.name, at)
            .await
            .map_err(|e| CatalogError::table(&current.name, e))?;
        self.check_not_vacuumed(&current.name, snap.version).await?;
        let objects = self.objects_of(&current.name, &snap.files).await?;
        Ok(Manifest {
            row_count: objects.iter().map(|o| o.row_count).sum(),
            objects,
            schema_fingerprint: snap
                .fingerprint
                .unwrap_or_else(|| current.schema_fingerprint.clone()),
            table_version: Some(snap.version as u64),
            ..current
        })
    }

    pub(crate) async fn history(&self, current: &Manifest, limit: usize) -> Result<Vec<Change>> {
        if current.table_version.is_none() {
            return Err(no_table(current));
        }
        self.tables
            .history(&current.name, limit)
            .await
            .map_err(|e| CatalogError::table(&current.name, e))
    }

    /// At start-up: every dataset's manifest agrees with its table's log.
    pub(crate) async fn settle_all(&self) -> Result<()> {
        let manifests: Vec<Manifest> = self
            .map
            .read()
            .values()
            .filter(|e| e.quarantine.is_none())
            .map(|e| e.manifest.clone())
            .collect();
        futures::stream::iter(manifests)
            .map(|m| async move { self.settle(m).await })
            .buffer_unordered(SETTLE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn settle(&self, m: Manifest) -> Result<()> {
        match m.table_version {
            Some(v) => {
                let ahead = self
                    .tables
                    .has_version(&m.name, v as i64 + 1)
                    .await
                    .map_err(|e| CatalogError::table(&m.name, e))?;
                if ahead {
                    self.roll_forward(&m).await?;
                }
            }
            None if !m.objects.is_empty() => self.convert(&m).await,
            None => {}
        }
        Ok(())
    }

    /// Makes a dataset from before tables existed a table (version 0 lists
    /// its objects). A dataset that cannot be one stays as it is.
    async fn convert(&self, m: &Manifest) {
        let all: Vec<(usize, ObjectRef)> = m.objects.iter().cloned().enumerate().collect();
        let footers = match verify_objects(&self.store, all).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dataset = %m.name, error = %e, "not converted to a table");
                return;
            }
        };
        let empty = Manifest {
            objects: vec![],
            ..m.clone()
        };
        let converted = match self.commit_table(m, Some(&empty), &footers).await {
            Ok(Some(v)) => Manifest {
                table_version: Some(v),
                ..m.clone()
            },
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(dataset = %m.name, error = %e, "not converted to a table");
                return;
            }
        };
        match self.persist(&converted).await {
            Ok(()) => {
                tracing::info!(dataset = %m.name, "converted to a Delta table");
                self.map
                    .write()
                    .insert(m.name.clone(), Entry::trusted(converted));
            }
            Err(e) => {
                tracing::warn!(dataset = %m.name, error = %e, "converted, manifest not written")
            }
        }
    }
}

pub(crate) fn no_table(m: &Manifest) -> CatalogError {
    CatalogError::NoTable {
        name: m.name.clone(),
        why: "its schema cannot be stored as a Delta table (a type Delta has no \
              equivalent for, or columns whose names differ only in case)"
            .to_string(),
    }
}
