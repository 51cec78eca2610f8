//! Creating an index: a plain one from its parameters, one that follows a
//! dataset after checking the dataset and its columns (and inferring `dim`).
//! The index's (empty) snapshot is stored before the create answers, so
//! the index survives a restart even before its first catch-up.

use std::sync::Arc;

use object_store::{ObjectStore, PutMode, PutPayload};

use super::{VectorService, follow, path, snapshot_key, validate_name};
use crate::api::{IndexInfo, IndexSpec};
use crate::error::{Result, VectorError};
use crate::limits;
use crate::source::{self, Shape};
use crate::state::IndexState;

impl VectorService {
    /// Creates an index; the same parameters again is a no-op (`Ok(false)`),
    /// other parameters are a conflict. An index with a `dataset` is built
    /// from it in the background (its `source.version` stays `None` until
    /// the first catch-up; `sync` waits for it).
    pub async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)> {
        validate_name(&spec.name)?;
        if spec.follows_dataset() {
            limits::check_source(&spec.source)?;
            let d = if spec.dim == 0 { 1 } else { spec.dim };
            limits::check_index_params(d, spec.m, spec.ef_construction)?;
        } else {
            limits::check_index_params(spec.dim, spec.m, spec.ef_construction)?;
            limits::check_plain(&spec.source)?;
        }
        let _admin = self.admin.lock().await;
        if let Some(existing) = self.indexes.read().get(&spec.name) {
            return same_or_conflict(existing, &spec);
        }
        let (spec, model) = if spec.follows_dataset() {
            self.resolve(spec).await?
        } else {
            (spec, None)
        };
        limits::check_index_params(spec.dim, spec.m, spec.ef_construction)?;
        let state = Arc::new(IndexState::new(spec.clone(), model)?);
        if let Some(store) = &self.store {
            // The empty snapshot makes the index itself durable.
            let blob = state.snapshot_blob(0);
            store
                .put_opts(
                    &path(&snapshot_key(&spec.name))?,
                    PutPayload::from(blob),
                    PutMode::Overwrite.into(),
                )
                .await?;
        }
        let info = state.info();
        if state.follows_dataset() {
            follow::spawn(&self.sources, &state, std::time::Duration::ZERO);
        }
        self.indexes.write().insert(spec.name, state);
        Ok((info, true))
    }

    /// A dataset index's spec with its columns checked against the dataset
    /// and `dim` inferred; with the embedding model's name when the
    /// vectors are embedded.
    async fn resolve(&self, mut spec: IndexSpec) -> Result<(IndexSpec, Option<String>)> {
        let catalog = self.sources.catalog()?;
        let data = self.sources.data()?;
        let dataset = spec.source.dataset.clone().unwrap_or_default();
        let manifest = catalog.get(&dataset).await.map_err(|e| {
            if follow::is_gone(&e) {
                VectorError::DatasetNotFound(dataset.clone())
            } else {
                VectorError::Catalog(e)
            }
        })?;
        // The newest object has the dataset's schema (a schema merge adds
        // columns to later objects only).
        let shape = match manifest.objects.last() {
            Some(o) => {
                let schema = source::object_schema(&data, o).await?;
                source::check_schema(&spec.source, &schema)?
            }
            None => None,
        };
        let given = spec.dim;
        let mismatch = |what: String, got: usize| {
            VectorError::InvalidSource(format!("{what} gives {got} dimensions, but dim is {given}"))
        };
        let mut model = None;
        spec.dim = match (&spec.source.column, shape) {
            (None, _) => {
                let e = self.sources.embedder()?;
                model = Some(e.model().to_string());
                if given != 0 && given != e.dim() {
                    return Err(mismatch(
                        format!("the embedding model {:?}", e.model()),
                        e.dim(),
                    ));
                }
                e.dim()
            }
            (Some(c), Some(Shape::Fixed(n))) => {
                if given != 0 && given != n {
                    return Err(mismatch(format!("column {c:?}"), n));
                }
                n
            }
            (_, _) if given != 0 => given,
            (Some(c), _) => source::first_vector_len(&data, &manifest.objects, &spec)
                .await?
                .ok_or_else(|| {
                    VectorError::InvalidSource(format!(
                        "dataset {dataset:?} has no non-null vector in column {c:?} to take \
                         the dimension from: give dim"
                    ))
                })?,
        };
        Ok((spec, model))
    }
}

/// An index of that name exists: the same spec is fine (a dataset index's
/// `dim` may be left out, as at its create), another is a conflict.
fn same_or_conflict(existing: &IndexState, spec: &IndexSpec) -> Result<(IndexInfo, bool)> {
    let mut asked = spec.clone();
    if asked.dim == 0 && asked.follows_dataset() {
        asked.dim = existing.spec.dim;
    }
    if existing.spec == asked {
        return Ok((existing.info(), false));
    }
    let e = &existing.spec;
    let mut desc = format!(
        "dim {}, metric {:?}, m {}, ef_construction {}",
        e.dim, e.metric, e.m, e.ef_construction
    );
    if let Some(d) = &e.source.dataset {
        desc.push_str(&format!(
            ", dataset {d:?}, column {:?}, text_column {:?}, id_column {:?}, metadata_columns {:?}",
            e.source.column, e.source.text_column, e.source.id_column, e.source.metadata_columns
        ));
    }
    Err(VectorError::ParamsConflict {
        name: spec.name.clone(),
        existing: desc,
    })
}
