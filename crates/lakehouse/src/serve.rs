//! `lakehouse serve`: assemble the services this process runs, bind, serve
//! until SIGINT/SIGTERM.
//!
//! Each service has a builder (`storaged`, `catalogd`, …) that turns its
//! config and its dependencies into a [`Part`]: routes, readiness checks,
//! what starts once the port is bound and what runs after the last request.
//! Dependencies are resolved once, in [`Deps`]: the in-process store and
//! catalog when storaged and catalogd run here, HTTP clients otherwise.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::BoxFuture;
use lakehouse_catalogd::{Catalog, CatalogClient, ErrorKind, MANIFEST_PREFIX, Registry};
use lakehouse_common::server::{self, MetricsSources, ServerOptions};
use lakehouse_common::{Authenticator, ClientOptions, Metrics, ReadyCheck, Service, TextEmbedder};
use lakehouse_gateway::{Gateway, GatewayConfig, Upstream};
use lakehouse_ingestd::{IngestConfig, Ingestor};
use lakehouse_queryd::QueryEngine;
use lakehouse_storaged::backend::BackendKind;
use lakehouse_storaged::{Storage, StoragedClient};
use lakehouse_vectord::{VectorClient, VectorService, Vectors};
use object_store::ObjectStore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

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

/// A part's background work: spawns its tasks into the set.
type Start = Box<dyn FnOnce(CancellationToken, &mut JoinSet<()>) -> anyhow::Result<()> + Send>;

/// How long stopping background tasks (the protocol listeners finishing
/// their in-flight queries) may take at shutdown.
const BACKGROUND_GRACE: Duration = Duration::from_secs(30);

/// What one service adds to the process.
#[derive(Default)]
struct Part {
    router: axum::Router,
    checks: Vec<ReadyCheck>,
    /// Started once the HTTP port is bound, as tasks of the set; they stop
    /// when the token is cancelled and are awaited before `stop` runs.
    start: Option<Start>,
    /// Runs after the last request has finished (state kept in memory).
    stop: Option<BoxFuture<'static, ()>>,
    /// Metrics of other processes shown on this one's `/metrics`.
    metrics_sources: Option<MetricsSources>,
}

/// What the services are built from: the configuration, and each
/// dependency resolved once — in process when its service runs here, an
/// HTTP client to the configured URL otherwise.
struct Deps {
    cfg: Config,
    client_opts: ClientOptions,
    auth: Option<Arc<Authenticator>>,
    /// `--only`: one service per process.
    alone: bool,
    store: Option<Arc<dyn ObjectStore>>,
    catalog: Option<Arc<dyn Catalog>>,
    /// The sentence model of `[embed].model_dir`, loaded once and shared by
    /// vectord (text columns, text searches) and queryd (`embed()`).
    embedder: Option<Arc<dyn TextEmbedder>>,
    /// vectord in process, for queryd's `vector_search`.
    vectors: Option<Arc<dyn Vectors>>,
    /// Held for the life of the process: one server per data directory.
    _lock: Option<File>,
}

impl Deps {
    /// vectord for queryd: in process when it runs here, else the one at
    /// `url` (none: `vector_search` answers that no vectord is reachable).
    fn vectors(&self, url: &Option<String>) -> Option<Arc<dyn Vectors>> {
        if let Some(v) = &self.vectors {
            return Some(v.clone());
        }
        let url = url.as_deref().map(str::trim).filter(|u| !u.is_empty())?;
        Some(Arc::new(VectorClient::with_options(url, &self.client_opts)))
    }

    /// The object store: storaged's own in process, else the one at `url`.
    fn store(&self, url: &Option<String>, key: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let url = upstream(url, key)?;
        tracing::debug!(storaged_url = url, key, "using a remote storaged");
        Ok(Arc::new(StoragedClient::with_options(
            url,
            &self.client_opts,
        )))
    }

    /// The catalog: catalogd's own in process, else the one at `url`.
    fn catalog(&self, url: &Option<String>, key: &str) -> anyhow::Result<Arc<dyn Catalog>> {
        if let Some(c) = &self.catalog {
            return Ok(c.clone());
        }
        let url = upstream(url, key)?;
        Ok(Arc::new(CatalogClient::with_options(
            url,
            &self.client_opts,
        )))
    }
}

/// The sentence model of `[embed].model_dir` (none without the setting: the
/// features that need it answer 501 naming it). A bad directory stops the
/// start, naming it.
async fn load_embedder(cfg: &Config) -> anyhow::Result<Option<Arc<dyn TextEmbedder>>> {
    let Some(dir) = cfg.embed.model_dir.clone() else {
        return Ok(None);
    };
    let shown = dir.display().to_string();
    let model = tokio::task::spawn_blocking(move || lakehouse_embed::Embedder::load(&dir))
        .await
        .context("loading the embedding model")?
        .map_err(|e| {
            anyhow::anyhow!("loading the embedding model from [embed].model_dir {shown:?}: {e}")
        })?;
    tracing::info!(model = model.model(), dir = shown, "embedding model loaded");
    Ok(Some(Arc::new(model)))
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
        refuse_public(&bind, runs(Service::Queryd).then_some(&cfg)).await?;
    }
    // What this process presents to the services it calls (split mode).
    let client_opts = ClientOptions::with_token(cfg.auth.outgoing_token());
    if auth.is_some() && client_opts.token.is_none() && args.only.is_some() {
        tracing::warn!(
            "auth is on but no [auth].service_token (or plaintext admin token) is set: \
             calls to other services go without a token"
        );
    }
    let mut deps = Deps {
        cfg,
        client_opts,
        auth,
        alone: args.only.is_some(),
        store: None,
        catalog: None,
        embedder: None,
        vectors: None,
        _lock: None,
    };
    if runs(Service::Vectord) || runs(Service::Queryd) {
        deps.embedder = load_embedder(&deps.cfg).await?;
    }
    let mut parts = Vec::new();
    // In dependency order: the store, the catalog, then their users.
    if runs(Service::Storaged) {
        parts.push(storaged(&mut deps).await?);
    }
    if runs(Service::Catalogd) {
        parts.push(catalogd(&mut deps).await?);
    }
    if runs(Service::Ingestd) {
        parts.push(ingestd(&deps).await?);
    }
    if runs(Service::Vectord) {
        parts.push(vectord(&mut deps).await?);
    }
    if runs(Service::Queryd) {
        parts.push(queryd(&deps).await?);
    }
    if runs(Service::Gateway) {
        parts.push(gateway(&deps)?);
    }
    // The web console at /ui: all-in-one, and on the gateway of a split deployment.
    if !deps.alone || runs(Service::Gateway) {
        parts.push(console(&deps, &parts)?);
    }
    serve_parts(&deps, &bind, parts).await
}

/// Binds `bind`, serves every part's routes until SIGINT/SIGTERM, then
/// stops the background listeners and runs each part's `stop`.
async fn serve_parts(deps: &Deps, bind: &str, parts: Vec<Part>) -> anyhow::Result<()> {
    let cfg = &deps.cfg;
    let mut router = axum::Router::new();
    let mut checks = Vec::new();
    let (mut starts, mut stops, mut metrics_sources) = (Vec::new(), Vec::new(), None);
    for p in parts {
        router = router.merge(p.router);
        checks.extend(p.checks);
        starts.extend(p.start);
        stops.extend(p.stop);
        metrics_sources = metrics_sources.or(p.metrics_sources);
    }
    let opts = ServerOptions {
        request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
        auth: deps.auth.clone(),
        metrics_sources,
    };
    let app = server::finish_router(router, Metrics::new(), checks, &opts);
    let listener = lakehouse_common::conn::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    if deps.auth.is_some() {
        tracing::info!(tokens = cfg.auth.tokens.len(), "bearer-token auth is on");
    }
    // One line on stdout, for people and for tests that bind port 0.
    announce(&format!("lakehouse listening on http://{addr}"));
    let background = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for start in starts {
        start(background.clone(), &mut tasks)?;
    }
    tracing::info!(%addr, data_dir = %cfg.server.data_dir.display(), "serving");
    server::serve(
        listener,
        app,
        cfg.server.conn_limits(),
        server::shutdown_signal(),
    )
    .await?;
    background.cancel();
    let finished = tokio::time::timeout(BACKGROUND_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!("background listeners did not stop within 30 s; leaving them");
    }
    // Every request has finished (ingests included): what is left is state
    // kept in memory.
    for stop in stops {
        stop.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// An open server on a non-loopback address (HTTP, or queryd's protocol
/// ports when `queryd` is given) is refused before any data is touched.
async fn refuse_public(bind: &str, queryd: Option<&Config>) -> anyhow::Result<()> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(bind)
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
    if let Some(cfg) = queryd {
        protocols::refuse_public(&cfg.queryd).await?;
    }
    Ok(())
}

async fn storaged(deps: &mut Deps) -> anyhow::Result<Part> {
    let cfg = &deps.cfg;
    if cfg.storaged.backend == BackendKind::Fs {
        deps._lock = Some(lock_data_dir(&cfg.server.data_dir)?);
    }
    let backend = cfg
        .storaged
        .open(&cfg.server.data_dir)
        .await
        .context("opening the storage backend")?;
    tracing::info!(backend = %backend.description, "storaged ready");
    let storage = Arc::new(Storage::new(&backend, cfg.storaged.max_object_size.0));
    deps.store = Some(storage.store());
    let router = lakehouse_storaged::http::router(storage.clone());
    let check = ReadyCheck::new("storaged", move || {
        let s = storage.clone();
        async move { s.ping().await.map_err(|e| e.to_string()) }
    });
    Ok(Part {
        router,
        checks: vec![check],
        ..Part::default()
    })
}

async fn catalogd(deps: &mut Deps) -> anyhow::Result<Part> {
    let store = deps.store(&deps.cfg.catalogd.storaged_url, "[catalogd].storaged_url")?;
    // Loaded before binding: a catalog that cannot load must not serve.
    let registry = Registry::open(store.clone())
        .await
        .context("loading the catalog")?;
    registry.set_vacuum_policy(deps.cfg.catalogd.vacuum);
    registry.set_compaction_policy(deps.cfg.catalogd.compaction);
    tracing::info!(datasets = registry.len(), "catalogd ready");
    let registry: Arc<dyn Catalog> = Arc::new(registry);
    deps.catalog = Some(registry.clone());
    let check = ReadyCheck::new("catalogd", move || {
        let store = store.clone();
        async move { ping_manifests(store.as_ref()).await }
    });
    Ok(Part {
        router: lakehouse_catalogd::http::router(registry),
        checks: vec![check],
        ..Part::default()
    })
}

async fn ingestd(deps: &Deps) -> anyhow::Result<Part> {
    let c = &deps.cfg.ingestd;
    let store = deps.store(&c.storaged_url, "[ingestd].storaged_url")?;
    let catalog = deps.catalog(&c.catalogd_url, "[ingestd].catalogd_url")?;
    let spool_dir = c.spool_dir.clone().unwrap_or_else(|| {
        if deps.alone {
            std::env::temp_dir().join("lakehouse-ingest")
        } else {
            deps.cfg.server.data_dir.join("tmp")
        }
    });
    let check = deps_check("ingestd", store.clone(), Some(catalog.clone()));
    let config = IngestConfig {
        spool_dir,
        writer: c.writer(),
    };
    let ingestor = Arc::new(Ingestor::new(store, catalog, config));
    let cleaned = ingestor
        .recover()
        .await
        .context("cleaning up interrupted ingests")?;
    if cleaned > 0 {
        tracing::info!(cleaned, "removed the objects of interrupted ingests");
    }
    Ok(Part {
        router: lakehouse_ingestd::http::router(ingestor),
        checks: vec![check],
        ..Part::default()
    })
}

/// The engine behind `POST /query/sql` and the PostgreSQL and Flight SQL
/// ports (bound here, served once the HTTP port is).
async fn queryd(deps: &Deps) -> anyhow::Result<Part> {
    let q = &deps.cfg.queryd;
    let store = deps.store(&q.storaged_url, "[queryd].storaged_url")?;
    let catalog = deps.catalog(&q.catalogd_url, "[queryd].catalogd_url")?;
    let check = deps_check("queryd", store.clone(), Some(catalog.clone()));
    let mut engine = QueryEngine::new(catalog, store, q.engine())
        .map_err(|e| anyhow::anyhow!("starting queryd: {e}"))?;
    if let Some(v) = deps.vectors(&q.vectord_url) {
        engine = engine.with_vectors(v);
    }
    if let Some(model) = &deps.embedder {
        engine = engine
            .with_embedder(model.clone())
            .map_err(|e| anyhow::anyhow!("starting queryd: {e}"))?;
    }
    let settled = engine
        .recover_writes()
        .await
        .map_err(|e| anyhow::anyhow!("settling interrupted SQL statements: {e}"))?;
    if settled > 0 {
        tracing::info!(settled, "settled interrupted SQL statements");
    }
    tracing::info!(config = ?engine.config(), "queryd ready");
    let engine = Arc::new(engine);
    let listeners = protocols::bind(q).await?;
    let (e, auth) = (engine.clone(), deps.auth.clone());
    Ok(Part {
        router: lakehouse_queryd::http::router(engine),
        checks: vec![check],
        start: Some(Box::new(move |stop, tasks| {
            listeners.spawn(e, auth, stop, tasks)
        })),
        ..Part::default()
    })
}

/// Vector indexes; after the last request, every index written since its
/// last snapshot is snapshotted (a restart loads one file, no log replay).
async fn vectord(deps: &mut Deps) -> anyhow::Result<Part> {
    let v = &deps.cfg.vectord;
    let mut checks = Vec::new();
    let svc = if !v.persist {
        tracing::info!("vectord is ephemeral ([vectord].persist = false)");
        VectorService::ephemeral(v.service())
    } else {
        let store = deps.store(&v.storaged_url, "[vectord].storaged_url")?;
        checks.push(deps_check("vectord", store.clone(), None));
        VectorService::open(store, v.service())
            .await
            .context("loading the vector indexes")?
    };
    // Indexes that follow datasets: the catalog in process, or the one at
    // [vectord].catalogd_url; their objects come from the same store.
    let remote_catalog = v
        .catalogd_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty());
    let svc = if deps.catalog.is_some() || remote_catalog {
        let catalog = deps.catalog(&v.catalogd_url, "[vectord].catalogd_url")?;
        let data = deps.store(&v.storaged_url, "[vectord].storaged_url")?;
        svc.with_datasets(catalog, data)
    } else {
        tracing::info!(
            "vectord has no catalog ([vectord].catalogd_url): indexes cannot follow datasets"
        );
        svc
    };
    let svc = svc.with_embedder(deps.embedder.clone());
    tracing::info!(indexes = svc.list().len(), "vectord ready");
    let svc = Arc::new(svc);
    deps.vectors = Some(svc.clone());
    let flushed = svc.clone();
    let stop = Box::pin(async move {
        match flushed.flush().await {
            Ok(n) => tracing::info!(snapshots = n, "vector indexes flushed"),
            Err(e) => tracing::warn!(
                error = %e,
                "flushing the vector indexes failed; their logs still have every write"
            ),
        }
    });
    Ok(Part {
        router: lakehouse_vectord::http::router(svc),
        checks,
        stop: Some(stop),
        ..Part::default()
    })
}

/// The front door of a split deployment: routes each prefix to its daemon.
fn gateway(deps: &Deps) -> anyhow::Result<Part> {
    let g = &deps.cfg.gateway;
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
        service_token: deps.client_opts.token.clone(),
        connect_timeout: Duration::from_secs(g.connect_timeout_secs.max(1)),
        response_timeout: Duration::from_secs(g.timeout_secs.max(1)),
    }));
    let g2 = gw.clone();
    let sources: MetricsSources = Arc::new(move || {
        let g = g2.clone();
        Box::pin(async move { g.upstream_metrics().await }) as BoxFuture<'static, _>
    });
    Ok(Part {
        checks: gw.ready_checks(),
        router: lakehouse_gateway::router(gw),
        metrics_sources: Some(sources),
        ..Part::default()
    })
}

/// The web console, told which services `parts` run and the config.
fn console(deps: &Deps, parts: &[Part]) -> anyhow::Result<Part> {
    let services: Vec<&str> = parts
        .iter()
        .flat_map(|p| p.checks.iter().map(|c| c.name.as_str()))
        .collect();
    let mode = if deps.alone { "gateway" } else { "all-in-one" };
    let config = serde_json::to_value(&deps.cfg).context("describing the configuration")?;
    let info = lakehouse_console::Info::new(mode, &services, config);
    Ok(Part {
        router: lakehouse_console::router(info),
        ..Part::default()
    })
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
