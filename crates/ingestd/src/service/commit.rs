//! Registering an ingest's objects: append = read-modify-write with
//! compare-and-swap on the manifest's version, replace = swap the object
//! list (the old objects stay for the table's earlier versions; a dataset
//! without a table deletes them); a registration whose
//! answer was lost is confirmed by reading the manifest back.

use std::collections::HashSet;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use lakehouse_catalogd::{ErrorKind, Manifest, ObjectRef, RegisterRequest};

use super::{IngestResult, Ingestor, MAX_CAS_ATTEMPTS, catalog_err};
use crate::error::IngestError;
use crate::fingerprint::{differences, fingerprint};
use crate::options::{IngestOptions, Mode};
use crate::writer::WrittenObject;

impl Ingestor {
    /// Registers the new objects: append = read-modify-write with CAS on
    /// `version`; replace = swap the object list, then delete the old objects.
    pub(super) async fn register(
        &self,
        dataset: &str,
        opts: &IngestOptions,
        schema: &SchemaRef,
        objects: &[WrittenObject],
    ) -> Result<IngestResult, IngestError> {
        let fp = fingerprint(schema);
        let new: Vec<ObjectRef> = objects
            .iter()
            .map(|o| ObjectRef {
                key: o.key.clone(),
                size: o.size,
                row_count: o.row_count,
            })
            .collect();
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let prior = self.current(dataset).await?;
            // Under `schema=merge` the pipeline merged the schema it read
            // at the start; the catalog checks it against the latest.
            if let Some(p) = prior.as_ref().filter(|_| !opts.merge) {
                self.check_schema(dataset, p, &fp, schema).await?;
            }
            let (all, old): (Vec<ObjectRef>, Vec<ObjectRef>) = match (opts.mode, &prior) {
                // An append adds its objects and never drops (or deletes)
                // one the manifest lists, whatever its stated row count. A
                // new object without rows only records the schema, which the
                // dataset already has, so it is not added.
                (Mode::Append, Some(p)) if !p.objects.is_empty() => {
                    let mut all = p.objects.clone();
                    // (Under `schema=merge` an empty object carrying a new
                    // schema is added: it is what records the new columns.)
                    let evolves = p.schema_fingerprint != fp;
                    all.extend(new.iter().filter(|o| o.row_count > 0 || evolves).cloned());
                    (all, vec![])
                }
                (Mode::Replace, Some(p)) => (new.clone(), p.objects.clone()),
                _ => (new.clone(), vec![]),
            };
            let req = RegisterRequest {
                name: dataset.to_string(),
                schema_fingerprint: fp.clone(),
                objects: all,
                row_count: None,
                expected_version: Some(prior.as_ref().map_or(0, |p| p.version)),
                evolve_schema: opts.merge,
            };
            let sent: Vec<String> = req.objects.iter().map(|o| o.key.clone()).collect();
            let outcome = match self.catalog.register(req).await {
                Ok(resp) => Ok(resp.manifest),
                // The request may have been applied before the catalog (or
                // the connection) died: find out before anything is deleted.
                Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Internal) => {
                    match self.confirm(dataset, &sent, &new).await {
                        Confirmed::Yes(m) => Ok(m),
                        Confirmed::No => Err(e),
                        Confirmed::Unknown(detail) => {
                            return Err(IngestError::Unconfirmed {
                                dataset: dataset.to_string(),
                                detail,
                            });
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(manifest) => {
                    // A dataset with a table keeps replaced objects for the
                    // versions that list them (vacuum removes them).
                    let old = if manifest.table_version.is_some() {
                        vec![]
                    } else {
                        old
                    };
                    let added = self.registered(dataset, &sent, &new, old).await;
                    return Ok(IngestResult {
                        dataset: dataset.to_string(),
                        mode: opts.mode,
                        rows: added.iter().map(|o| o.row_count).sum(),
                        objects: added,
                        manifest,
                        replayed: false,
                        csv: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::VersionMismatch => {
                    // Another writer registered first: re-read and retry.
                    tokio::time::sleep(Duration::from_millis((attempt as u64 + 1).min(20))).await;
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::FingerprintConflict => {
                    return Err(IngestError::SchemaMismatch {
                        dataset: dataset.to_string(),
                        differences: vec![e.to_string()],
                    });
                }
                Err(e) => return Err(catalog_err(e)),
            }
        }
        Err(IngestError::Contended(dataset.to_string()))
    }

    /// A dataset registered with another fingerprint: the differences, named.
    async fn check_schema(
        &self,
        dataset: &str,
        prior: &Manifest,
        fp: &str,
        schema: &SchemaRef,
    ) -> Result<(), IngestError> {
        if prior.schema_fingerprint == fp {
            return Ok(());
        }
        let differences = match self.dataset_schema(prior).await? {
            Some(have) => differences(&have, schema),
            None => vec!["the dataset has another schema".to_string()],
        };
        Err(IngestError::SchemaMismatch {
            dataset: dataset.to_string(),
            differences,
        })
    }

    /// After a registration of `sent`: the new objects it lists, once the
    /// ones it does not (and, on replace, the `old` ones) are deleted.
    /// Only now are they unreferenced — unless a manifest still lists them,
    /// which `delete_unreferenced` checks.
    async fn registered(
        &self,
        dataset: &str,
        sent: &[String],
        new: &[ObjectRef],
        old: Vec<ObjectRef>,
    ) -> Vec<ObjectRef> {
        let sent: HashSet<&str> = sent.iter().map(String::as_str).collect();
        let (added, unused): (Vec<ObjectRef>, Vec<ObjectRef>) = new
            .iter()
            .cloned()
            .partition(|o| sent.contains(o.key.as_str()));
        let doomed: Vec<String> = old
            .into_iter()
            .chain(unused)
            .map(|o| o.key)
            .filter(|k| !sent.contains(k.as_str()))
            .collect();
        if !doomed.is_empty() {
            self.delete_unreferenced(dataset, doomed).await;
        }
        added
    }
}

/// Whether a registration whose answer was lost took effect.
enum Confirmed {
    Yes(Manifest),
    No,
    Unknown(String),
}

/// How long an ingest waits for an unreachable catalog to say whether its
/// registration took effect.
const CONFIRM_FOR: Duration = Duration::from_secs(10);

impl Ingestor {
    /// Reads the manifest back until the catalog answers: registered when it
    /// lists exactly the objects sent (or every new one of them).
    async fn confirm(&self, dataset: &str, sent: &[String], new: &[ObjectRef]) -> Confirmed {
        let deadline = tokio::time::Instant::now() + CONFIRM_FOR;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.catalog.get(dataset).await {
                Ok(m) => {
                    let has = |k: &String| m.objects.iter().any(|o| &o.key == k);
                    let ours: Vec<&String> = sent
                        .iter()
                        .filter(|k| new.iter().any(|n| &n.key == *k))
                        .collect();
                    let applied = if ours.is_empty() {
                        m.objects.len() == sent.len() && sent.iter().all(has)
                    } else {
                        ours.into_iter().all(has)
                    };
                    return if applied {
                        Confirmed::Yes(m)
                    } else {
                        Confirmed::No
                    };
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Confirmed::No,
                Err(e) => {
                    if tokio::time::Instant::now() + delay > deadline {
                        return Confirmed::Unknown(e.to_string());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
