//! `lakehouse serve`: assemble the services this process runs, bind, serve
//! until SIGINT/SIGTERM.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use lakehouse_catalogd::{Catalog, CatalogClient, ErrorKind, MANIFEST_PREFIX, Registry};
use lakehouse_common::server::{self, ServerOptions};
use lakehouse_common::{Authenticator, ClientOptions, Metrics, ReadyCheck, Service};
use lakehouse_gateway::{Gateway, GatewayConfig, Upstream};
use lakehouse_ingestd::writer::WriterConfig;
use lakehouse_ingestd::{IngestConfig, Ingestor};
use lakehouse_queryd::{EngineConfig, QueryEngine};
use lakehouse_storaged::backend::BackendKind;
use lakehouse_storaged::{Storage, StoragedClient};
use lakehouse_vectord::{VectorConfig, VectorService};
use object_store::ObjectStore;

use crate::ServeArgs;
use crate::config::{Config, Overrides, process_env};
use crate::protocols;

/// The listen address a service uses when it runs alone.
fn bind_of(service: Service, cfg: &Config) -> String {
    let configured = match service {
        Service::Storaged => &cfg.storaged.bind,
        Service::Catalogd => &cfg.catalogd.bind,
        Service::Ingestd => &cfg.ingestd.bind,
        Service::Queryd => &cfg.queryd.bind,
        Service::Vectord => &cfg.vectord.bind,
        Service::Gateway => &cfg.gateway.bind,
    };
    configured.clone().unwrap_or_else(|| service.default_bind())
}

/// One line on stdout for people and the programs that started us. A
/// closed stdout (the parent read the first line and went away) is not a
/// reason to stop serving: `println!` would panic on the broken pipe.
pub(crate) fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
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
        (None, Some(s)) => bind_of(s, &cfg),
    };
    // All-in-one runs every service (no gateway: it is the front door itself).
    let runs = |s: Service| match args.only {
        None => s != Service::Gateway,
        Some(o) => o == s,
    };
    let auth = Authenticator::from_config(&cfg.auth)
        .map_err(|e| anyhow::anyhow!("invalid [auth] configuration: {e}"))?
        .map(Arc::new);
    // Refuse an open server on a public address before touching any data.
    if auth.is_none() && !cfg.auth.allow_public_without_auth {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&bind)
            .await
            .with_context(|| format!("resolving the listen address {bind}"))?
            .collect();
        if let Some(public) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "refusing to serve {public} without auth: configure tokens ([[auth.tokens]] or \
                 LAKEHOUSE__AUTH__TOKENS=name:role:token), bind a loopback address, or set \
                 [auth].allow_public_without_auth = true"
            );
        }
        if runs(Service::Queryd) {
            protocols::refuse_public(&cfg.queryd).await?;
        }
    }
    // What this process presents to the services it calls (split mode).
    let client_opts = ClientOptions::with_token(cfg.auth.outgoing_token());
    if auth.is_some() && client_opts.token.is_none() && args.only.is_some() {
        tracing::warn!(
            "auth is on but no [auth].service_token (or plaintext admin token) is set: \
             calls to other services go without a token"
        );
    }

    let metrics = Metrics::new();
    let mut router = axum::Router::new();
    let mut checks = Vec::new();
    // Held for the life of the process: one server per data directory.
    let mut _lock: Option<File> = None;
    // The object store of an in-process storaged, for the other services.
    let mut local_store: Option<Arc<dyn ObjectStore>> = None;
    let mut local_catalog: Option<Arc<dyn Catalog>> = None;
    // queryd's engine and its PostgreSQL / Flight SQL listeners.
    let mut proto_listeners: Option<(Arc<QueryEngine>, protocols::Listeners)> = None;

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
                Arc::new(StoragedClient::with_options(url, &client_opts))
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
            None => Arc::new(StoragedClient::with_options(
                upstream(&cfg.ingestd.storaged_url, "[ingestd].storaged_url")?,
                &client_opts,
            )),
        };
        let catalog: Arc<dyn Catalog> = match &local_catalog {
            Some(c) => c.clone(),
            None => Arc::new(CatalogClient::with_options(
                upstream(&cfg.ingestd.catalogd_url, "[ingestd].catalogd_url")?,
                &client_opts,
            )),
        };
        let spool_dir = cfg.ingestd.spool_dir.clone().unwrap_or_else(|| {
            if args.only.is_some() {
                std::env::temp_dir().join("lakehouse-ingest")
            } else {
                cfg.server.data_dir.join("tmp")
            }
        });
        checks.push(deps_check("ingestd", store.clone(), Some(catalog.clone())));
        let ingestor = Arc::new(Ingestor::new(
            store,
            catalog,
            IngestConfig {
                spool_dir,
                writer: WriterConfig {
                    target_object_size: cfg.ingestd.target_object_size.0 as usize,
                    row_group_rows: cfg.ingestd.row_group_rows,
                    compression: cfg.ingestd.compression,
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
            None => Arc::new(StoragedClient::with_options(
                upstream(&cfg.queryd.storaged_url, "[queryd].storaged_url")?,
                &client_opts,
            )),
        };
        let catalog: Arc<dyn Catalog> = match &local_catalog {
            Some(c) => c.clone(),
            None => Arc::new(CatalogClient::with_options(
                upstream(&cfg.queryd.catalogd_url, "[queryd].catalogd_url")?,
                &client_opts,
            )),
        };
        checks.push(deps_check("queryd", store.clone(), Some(catalog.clone())));
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
                max_expr_depth: q.max_expr_depth,
                function_output_limit: q.function_output_limit.map(|b| b.0),
                process_memory_limit: q.process_memory_limit.map(|b| b.0),
            },
        )
        .map_err(|e| anyhow::anyhow!("starting queryd: {e}"))?;
        tracing::info!(config = ?engine.config(), "queryd ready");
        let engine = Arc::new(engine);
        proto_listeners = Some((engine.clone(), protocols::bind(&cfg.queryd).await?));
        router = router.merge(lakehouse_queryd::http::router(engine));
    }

    let mut vectors: Option<Arc<VectorService>> = None;
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
                None => Arc::new(StoragedClient::with_options(
                    upstream(&cfg.vectord.storaged_url, "[vectord].storaged_url")?,
                    &client_opts,
                )),
            };
            checks.push(deps_check("vectord", store.clone(), None));
            VectorService::open(store, vcfg)
                .await
                .context("loading the vector indexes")?
        };
        tracing::info!(indexes = svc.list().len(), "vectord ready");
        let svc = Arc::new(svc);
        vectors = Some(svc.clone());
        router = router.merge(lakehouse_vectord::http::router(svc));
    }

    let mut metrics_sources = None;
    if runs(Service::Gateway) {
        let g = &cfg.gateway;
        let urls: Vec<(Upstream, String)> = [
            (Upstream::Storaged, &g.storaged_url),
            (Upstream::Catalogd, &g.catalogd_url),
            (Upstream::Ingestd, &g.ingestd_url),
            (Upstream::Queryd, &g.queryd_url),
            (Upstream::Vectord, &g.vectord_url),
        ]
        .into_iter()
        .filter_map(|(u, url)| {
            let url = url.as_deref()?.trim();
            (!url.is_empty()).then(|| (u, url.to_string()))
        })
        .collect();
        if urls.is_empty() {
            bail!(
                "the gateway has no upstreams: set [gateway].storaged_url, catalogd_url, \
                 ingestd_url, queryd_url and/or vectord_url (or LAKEHOUSE__GATEWAY__QUERYD_URL, …)"
            );
        }
        for (u, url) in &urls {
            tracing::info!(upstream = u.name(), url = %url, "gateway route");
        }
        let gw = Arc::new(Gateway::new(GatewayConfig {
            urls,
            service_token: client_opts.token.clone(),
            connect_timeout: Duration::from_secs(g.connect_timeout_secs.max(1)),
            response_timeout: Duration::from_secs(g.timeout_secs.max(1)),
        }));
        checks.extend(gw.ready_checks());
        let g2 = gw.clone();
        metrics_sources = Some(Arc::new(move || {
            let g = g2.clone();
            Box::pin(async move { g.upstream_metrics().await })
                as futures::future::BoxFuture<'static, _>
        }) as lakehouse_common::server::MetricsSources);
        router = router.merge(lakehouse_gateway::router(gw));
    }

    // The web console at /ui: all-in-one, and on the gateway of a split deployment.
    if args.only.is_none() || runs(Service::Gateway) {
        let services: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        let mode = if args.only.is_some() {
            "gateway"
        } else {
            "all-in-one"
        };
        let config = serde_json::to_value(&cfg).context("describing the configuration")?;
        let info = lakehouse_console::Info::new(mode, &services, config);
        router = router.merge(lakehouse_console::router(info));
    }

    let opts = ServerOptions {
        request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
        auth: auth.clone(),
        metrics_sources,
    };
    let app = server::finish_router(router, metrics, checks, &opts);
    let listener = lakehouse_common::conn::bind(&bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    if auth.is_some() {
        tracing::info!(tokens = cfg.auth.tokens.len(), "bearer-token auth is on");
    }
    // One line on stdout, for people and for tests that bind port 0.
    announce(&format!("lakehouse listening on http://{addr}"));
    let stop_protocols = tokio_util::sync::CancellationToken::new();
    if let Some((engine, listeners)) = proto_listeners {
        listeners.spawn(engine, auth.clone(), stop_protocols.clone())?;
    }
    tracing::info!(%addr, data_dir = %cfg.server.data_dir.display(), "serving");
    server::serve(
        listener,
        app,
        cfg.server.conn_limits(),
        server::shutdown_signal(),
    )
    .await?;
    stop_protocols.cancel();
    // Every request has finished (ingests included): what is left is state
    // kept in memory.
    if let Some(v) = vectors {
        match v.flush().await {
            Ok(n) => tracing::info!(snapshots = n, "vector indexes flushed"),
            Err(e) => {
                tracing::warn!(error = %e, "flushing the vector indexes failed; their logs still have every write")
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Readiness of a service that depends on others: the store it writes to
/// (and the catalog it registers in) answer. In-process they always do; in a
/// split deployment this is the round trip to each upstream.
fn deps_check(
    name: &str,
    store: Arc<dyn ObjectStore>,
    catalog: Option<Arc<dyn Catalog>>,
) -> ReadyCheck {
    ReadyCheck::new(name, move || {
        let store = store.clone();
        let catalog = catalog.clone();
        async move {
            ping_manifests(store.as_ref())
                .await
                .map_err(|e| format!("storage: {e}"))?;
            if let Some(c) = catalog {
                match c.get(".ready-probe").await {
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == ErrorKind::NotFound
                            || e.kind() == ErrorKind::InvalidName => {}
                    Err(e) => return Err(format!("catalog: {e}")),
                }
            }
            Ok(())
        }
    })
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
