//! Backends: configuration to an `Arc<dyn ObjectStore>`.
//!
//! - `fs` (default): `LocalFileSystem` rooted at `<data_dir>/objects`. Writes go
//!   to a staging file `<key>#<n>` and are renamed into place, so a reader
//!   never sees a partial object; staging files a crash left behind are removed
//!   at start-up. Large (multipart) uploads use direct I/O ([`crate::fs`]).
//! - `s3`: any S3-compatible store; credentials from config or the usual AWS
//!   environment variables.
//! - `memory`: in-process, for tests and throwaway servers.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use lakehouse_common::size::ByteSize;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};

use crate::fs::FsStore;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Fs,
    S3,
    Memory,
}

/// `[storaged]` in `lakehouse.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoragedConfig {
    /// Listen address when run alone (`--only storaged`).
    pub bind: Option<String>,
    pub backend: BackendKind,
    /// `fs`: the directory objects live in (default `<data_dir>/objects`).
    pub root: Option<PathBuf>,
    /// Largest object a PUT may store; larger bodies get 413.
    pub max_object_size: ByteSize,
    /// `fs`: write large (multipart) uploads with direct I/O, bypassing the
    /// page cache (falls back to buffered where the filesystem refuses it).
    pub direct_io: bool,
    /// `s3`: bucket name (required).
    pub bucket: Option<String>,
    /// `s3`: endpoint URL for non-AWS stores (MinIO, Ceph, moto…).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `s3`: allow plain-HTTP endpoints (default: true when `endpoint` is http://).
    pub allow_http: Option<bool>,
    /// `s3`: virtual-hosted-style requests instead of path-style.
    pub virtual_hosted_style: bool,
    /// `s3`: keep every object under this prefix of the bucket.
    pub prefix: Option<String>,
}

impl Default for StoragedConfig {
    fn default() -> Self {
        Self {
            bind: None,
            backend: BackendKind::Fs,
            root: None,
            max_object_size: ByteSize(64 << 30),
            direct_io: true,
            bucket: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: None,
            virtual_hosted_style: false,
            prefix: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("storaged configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the object store: {0}")]
    Store(#[from] object_store::Error),
}

/// An opened backend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    pub kind: BackendKind,
    /// Whether `list` yields keys in byte order (S3 and memory do; the local
    /// filesystem does not), which lets paginated listing stop early.
    pub sorted_listing: bool,
    /// Where the data is, for logs.
    pub description: String,
}

impl Backend {
    pub fn memory() -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            kind: BackendKind::Memory,
            sorted_listing: true,
            description: "memory".to_string(),
        }
    }

    /// Opens a local filesystem backend at `root` with direct-I/O uploads.
    pub async fn fs(root: &FsPath) -> Result<Self, BackendError> {
        Self::fs_with(root, true).await
    }

    /// Opens a local filesystem backend at `root`, creating it if needed and
    /// removing staging files left by a crash.
    pub async fn fs_with(root: &FsPath, direct_io: bool) -> Result<Self, BackendError> {
        let root = root.to_path_buf();
        let r = root.clone();
        let removed = tokio::task::spawn_blocking(move || -> Result<usize, BackendError> {
            std::fs::create_dir_all(&r).map_err(|source| BackendError::Io {
                path: r.clone(),
                source,
            })?;
            remove_staging_files(&r)
        })
        .await
        .map_err(|e| BackendError::Config(format!("start-up task failed: {e}")))??;
        if removed > 0 {
            tracing::info!(removed, root = %root.display(), "removed staging files left by an interrupted write");
        }
        let local = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(FsStore::new(local, direct_io)),
            kind: BackendKind::Fs,
            sorted_listing: false,
            description: format!("fs:{}", root.display()),
        })
    }
}

impl StoragedConfig {
    /// Opens the configured backend; `data_dir` anchors the default fs root.
    pub async fn open(&self, data_dir: &FsPath) -> Result<Backend, BackendError> {
        match self.backend {
            BackendKind::Memory => Ok(Backend::memory()),
            BackendKind::Fs => {
                let root = self
                    .root
                    .clone()
                    .unwrap_or_else(|| data_dir.join("objects"));
                Backend::fs_with(&root, self.direct_io).await
            }
            BackendKind::S3 => self.open_s3(),
        }
    }

    fn open_s3(&self) -> Result<Backend, BackendError> {
        let bucket = self.bucket.clone().ok_or_else(|| {
            BackendError::Config("`bucket` is required when backend = \"s3\"".to_string())
        })?;
        // Environment first (AWS_ACCESS_KEY_ID, AWS_REGION, AWS_ENDPOINT, …),
        // then explicit configuration wins.
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some(k) = &self.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &self.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        if let Some(t) = &self.session_token {
            b = b.with_token(t);
        }
        let allow_http = self.allow_http.unwrap_or_else(|| {
            self.endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"))
        });
        b = b
            .with_allow_http(allow_http)
            .with_virtual_hosted_style_request(self.virtual_hosted_style);
        let s3: Arc<dyn ObjectStore> = Arc::new(b.build()?);
        let (store, description): (Arc<dyn ObjectStore>, String) = match &self.prefix {
            Some(p) if !p.trim_matches('/').is_empty() => {
                let p = p.trim_matches('/');
                let path = object_store::path::Path::parse(p)
                    .map_err(|e| BackendError::Config(format!("invalid `prefix` {p:?}: {e}")))?;
                (
                    Arc::new(PrefixStore::new(s3, path)),
                    format!("s3://{bucket}/{p}"),
                )
            }
            _ => (s3, format!("s3://{bucket}")),
        };
        Ok(Backend {
            store,
            kind: BackendKind::S3,
            sorted_listing: true,
            description,
        })
    }
}

/// Deletes `*#<digits>` files under `root`: `LocalFileSystem` stages uploads
/// there and renames on completion, so any still present are from writes
/// that never completed. Keys with that suffix are rejected, so nothing else
/// can match.
fn remove_staging_files(root: &FsPath) -> Result<usize, BackendError> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(source) => return Err(BackendError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| BackendError::Io {
                path: dir.clone(),
                source,
            })?;
            let ft = entry.file_type().map_err(|source| BackendError::Io {
                path: entry.path(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if is_staging_name(&entry.file_name().to_string_lossy()) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|source| BackendError::Io { path, source })?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, s)| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging_name("file.parquet#0"));
        assert!(is_staging_name("x#123"));
        assert!(!is_staging_name("x#"));
        assert!(!is_staging_name("x#1a"));
        assert!(!is_staging_name("plain"));
    }

    #[tokio::test]
    async fn fs_open_removes_leftover_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/obj#3"), b"partial").unwrap();
        std::fs::write(root.join("a/b/obj"), b"whole").unwrap();
        Backend::fs(&root).await.unwrap();
        assert!(!root.join("a/b/obj#3").exists());
        assert_eq!(std::fs::read(root.join("a/b/obj")).unwrap(), b"whole");
    }

    #[test]
    fn s3_requires_bucket() {
        let cfg = StoragedConfig {
            backend: BackendKind::S3,
            ..Default::default()
        };
        let err = cfg.open_s3().unwrap_err();
        assert!(matches!(err, BackendError::Config(_)));
    }
}
