//! `lakehouse serve`: assemble the services this process runs, bind, serve
//! until SIGINT/SIGTERM.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use lakehouse_catalogd::{Catalog, CatalogClient, MANIFEST_PREFIX, Registry};
use lakehouse_common::server::{self, ServerOptions};
use lakehouse_common::{Metrics, ReadyCheck};
use lakehouse_ingestd::writer::WriterConfig;
use lakehouse_ingestd::{IngestConfig, Ingestor};
use lakehouse_queryd::{EngineConfig, QueryEngine};
use lakehouse_storaged::backend::BackendKind;
use lakehouse_storaged::{Storage, StoragedClient};
use lakehouse_vectord::{VectorConfig, VectorService};
use object_store::ObjectStore;

use crate::ServeArgs;
use crate::config::{Config, Overrides, process_env};

/// The services a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Storaged,
    Catalogd,
    Ingestd,
    Queryd,
    Vectord,
}

impl Service {
    fn default_bind(self) -> &'static str {
        match self {
            Service::Storaged => "127.0.0.1:8081",
            Service::Catalogd => "127.0.0.1:8082",
            Service::Ingestd => "127.0.0.1:8083",
            Service::Queryd => "127.0.0.1:8084",
            Service::Vectord => "127.0.0.1:8085",
        }
    }

    /// The listen address this service uses when it runs alone.
    fn bind(self, cfg: &Config) -> String {
        let configured = match self {
            Service::Storaged => &cfg.storaged.bind,
            Service::Catalogd => &cfg.catalogd.bind,
            Service::Ingestd => &cfg.ingestd.bind,
            Service::Queryd => &cfg.queryd.bind,
            Service::Vectord => &cfg.vectord.bind,
        };
        configured
            .clone()
            .unwrap_or_else(|| self.default_bind().to_string())
    }
}

/// A required upstream URL for a service running alone.
fn upstream<'a>(url: &'a Option<String>, key: &str) -> anyhow::Result<&'a str> {
    url.as_deref().filter(|u| !u.trim().is_empty()).with_context(|| {
        let env = format!("LAKEHOUSE__{}", key.replace('.', "__").replace(['[', ']'], "").to_uppercase());
        format!("this service runs without the one it depends on in-process, so it needs {key} (or {env})")
    })
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = Config::load(args.config.as_deref(), &process_env())?;
    let overrides = Overrides {
        bind: args.bind.clone(),
        data_dir: args.data_dir.clone(),
    };
    if let Some(d) = overrides.data_dir {
        cfg.server.data_dir = d;
    }
    let bind = match (overrides.bind, args.only) {
        (Some(b), _) => b,
        (None, None) => cfg.server.bind.clone(),
        (None, Some(s)) => s.bind(&cfg),
    };
    let runs = |s: Service| args.only.is_none_or(|o| o == s);

    let metrics = Metrics::new();
    let mut router = axum::Router::new();
    let mut checks = Vec::new();
    // Held for the life of the process: one server per data directory.
    let mut _lock: Option<File> = None;
    // The object store of an in-process storaged, for the other services.
    let mut local_store: Option<Arc<dyn ObjectStore>> = None;
    let mut local_catalog: Option<Arc<dyn Catalog>> = None;

    if runs(Service::Storaged) {
        if cfg.storaged.backend == BackendKind::Fs {
            _lock = Some(lock_data_dir(&cfg.server.data_dir)?);
        }
        let backend = cfg
            .storaged
            .open(&cfg.server.data_dir)
            .await
            .context("opening the storage backend")?;
        tracing::info!(backend = %backend.description, "storaged ready");
        let storage = Arc::new(Storage::new(&backend, cfg.storaged.max_object_size.0));
        local_store = Some(storage.store());
        router = router.merge(lakehouse_storaged::http::router(storage.clone()));
        checks.push(ReadyCheck::new("storaged", move || {
            let s = storage.clone();
            async move { s.ping().await.map_err(|e| e.to_string()) }
        }));
    }

    if runs(Service::Catalogd) {
        let store: Arc<dyn ObjectStore> = match &local_store {
            Some(s) => s.clone(),
            None => {
                let url = upstream(&cfg.catalogd.storaged_url, "[catalogd].storaged_url")?;
                tracing::info!(storaged_url = url, "catalogd uses a remote storaged");
                Arc::new(StoragedClient::new(url))
            }
        };
        // Loaded before binding: a catalog that cannot load must not serve.
        let registry = Registry::open(store.clone())
            .await
            .context("loading the catalog")?;
        tracing::info!(datasets = registry.len(), "catalogd ready");
        let registry: Arc<dyn Catalog> = Arc::new(registry);
        local_catalog = Some(registry.clone());
        router = router.merge(lakehouse_catalogd::http::router(registry));
        checks.push(ReadyCheck::new("catalogd", move || {
            let store = store.clone();
            async move { ping_manifests(store.as_ref()).await }
        }));
    }

    if runs(Service::Ingestd) {
        let store: Arc<dyn ObjectStore> = match &local_store {
            Some(s) => s.clone(),
            None => Arc::new(StoragedClient::new(upstream(
                &cfg.ingestd.storaged_url,
                "[ingestd].storaged_url",
            )?)),
        };
        let catalog: Arc<dyn Catalog> = match &local_catalog {
            Some(c) => c.clone(),
            None => Arc::new(CatalogClient::new(upstream(
                &cfg.ingestd.catalogd_url,
                "[ingestd].catalogd_url",
            )?)),
        };
        let spool_dir = cfg.ingestd.spool_dir.clone().unwrap_or_else(|| {
            if args.only.is_some() {
                std::env::temp_dir().join("lakehouse-ingest")
            } else {
                cfg.server.data_dir.join("tmp")
            }
        });
        let ingestor = Arc::new(Ingestor::new(
            store,
            catalog,
            IngestConfig {
                spool_dir,
                writer: WriterConfig {
                    target_object_size: cfg.ingestd.target_object_size.0 as usize,
                    row_group_rows: cfg.ingestd.row_group_rows,
                    ..Default::default()
                },
            },
        ));
        let cleaned = ingestor
            .recover()
            .await
            .context("cleaning up interrupted ingests")?;
        if cleaned > 0 {
            tracing::info!(cleaned, "removed the objects of interrupted ingests");
        }
        router = router.merge(lakehouse_ingestd::http::router(ingestor));
    }

    if runs(Service::Queryd) {
        let store: Arc<dyn ObjectStore> = match &local_store {
            Some(s) => s.clone(),
            None => Arc::new(StoragedClient::new(upstream(
                &cfg.queryd.storaged_url,
                "[queryd].storaged_url",
            )?)),
        };
        let catalog: Arc<dyn Catalog> = match &local_catalog {
            Some(c) => c.clone(),
            None => Arc::new(CatalogClient::new(upstream(
                &cfg.queryd.catalogd_url,
                "[queryd].catalogd_url",
            )?)),
        };
        let q = &cfg.queryd;
        let engine = QueryEngine::new(
            catalog,
            store,
            EngineConfig {
                timeout: Duration::from_secs(q.timeout_secs.max(1)),
                memory_limit: q.memory_limit.0,
                max_rows: q.max_rows,
                target_partitions: q.target_partitions,
                batch_size: q.batch_size,
                pushdown_filters: q.pushdown_filters,
            },
        )
        .map_err(|e| anyhow::anyhow!("starting queryd: {e}"))?;
        tracing::info!(config = ?engine.config(), "queryd ready");
        router = router.merge(lakehouse_queryd::http::router(Arc::new(engine)));
    }

    if runs(Service::Vectord) {
        let vcfg = VectorConfig {
            snapshot_every: cfg.vectord.snapshot_every.max(1),
        };
        let svc = if !cfg.vectord.persist {
            tracing::info!("vectord is ephemeral ([vectord].persist = false)");
            VectorService::ephemeral(vcfg)
        } else {
            let store: Arc<dyn ObjectStore> = match &local_store {
                Some(s) => s.clone(),
                None => Arc::new(StoragedClient::new(upstream(
                    &cfg.vectord.storaged_url,
                    "[vectord].storaged_url",
                )?)),
            };
            VectorService::open(store, vcfg)
                .await
                .context("loading the vector indexes")?
        };
        tracing::info!(indexes = svc.list().len(), "vectord ready");
        router = router.merge(lakehouse_vectord::http::router(Arc::new(svc)));
    }

    let opts = ServerOptions {
        request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
    };
    let app = server::finish_router(router, metrics, checks, &opts);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    // One line on stdout, for people and for tests that bind port 0.
    println!("lakehouse listening on http://{addr}");
    tracing::info!(%addr, data_dir = %cfg.server.data_dir.display(), "serving");
    server::serve(listener, app, server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Readiness of catalogd: its store answers. A HEAD of a key no dataset can
/// have is the cheapest round trip (a listing could be 10 000 manifests).
async fn ping_manifests(store: &dyn ObjectStore) -> Result<(), String> {
    use object_store::ObjectStoreExt;
    let probe = object_store::path::Path::from(format!("{MANIFEST_PREFIX}.ready-probe"));
    match store.head(&probe).await {
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Takes an exclusive lock on `<data_dir>/lakehouse.lock` so two servers never
/// share a data directory (storaged's conditional writes rely on being the
/// only writer).
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lakehouse.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another lakehouse server is using the data directory {}",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}
