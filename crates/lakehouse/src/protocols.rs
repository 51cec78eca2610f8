//! The wire-protocol listeners queryd serves beside HTTP: PostgreSQL
//! (`[queryd].pg_bind`, default 127.0.0.1:5432) and Arrow Flight SQL
//! (`[queryd].flight_bind`, default 127.0.0.1:50051).
//!
//! A default port that is taken (a developer's own PostgreSQL on 5432) is
//! not an error: that listener is skipped with a warning. An address set in
//! the config or environment must bind, like `--bind`; `"off"` disables a
//! listener. Without tokens, a non-loopback address is refused exactly as
//! for HTTP. Each bound listener is announced on stdout after the HTTP line
//! (`lakehouse postgres on 127.0.0.1:PORT`, `lakehouse flight-sql on
//! grpc://127.0.0.1:PORT`) for people and for tests that bind port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use lakehouse_common::Authenticator;
use lakehouse_queryd::QueryEngine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::QuerydConfig;

const PG_DEFAULT: &str = "127.0.0.1:5432";
const FLIGHT_DEFAULT: &str = "127.0.0.1:50051";

/// The bound protocol listeners (either may be off).
pub struct Listeners {
    pg: Option<TcpListener>,
    flight: Option<TcpListener>,
}

/// The address a listener is to bind: `None` when it is off.
fn address<'a>(configured: Option<&'a str>, default: &'a str) -> Option<&'a str> {
    match configured.map(str::trim) {
        Some(a) if a.eq_ignore_ascii_case("off") || a.is_empty() => None,
        Some(a) => Some(a),
        None => Some(default),
    }
}

/// Without auth, refuses a non-loopback protocol address exactly as HTTP's
/// `--bind` is refused; called before any data is touched.
pub async fn refuse_public(cfg: &QuerydConfig) -> anyhow::Result<()> {
    let listeners = [
        (
            "PostgreSQL",
            "[queryd].pg_bind",
            cfg.pg_bind.as_deref(),
            PG_DEFAULT,
        ),
        (
            "Flight SQL",
            "[queryd].flight_bind",
            cfg.flight_bind.as_deref(),
            FLIGHT_DEFAULT,
        ),
    ];
    for (what, key, configured, default) in listeners {
        let Some(addr) = address(configured, default) else {
            continue;
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .with_context(|| format!("resolving the {what} listen address {addr} ({key})"))?
            .collect();
        if let Some(public) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "refusing to serve {what} on {public} without auth: configure tokens ([[auth.tokens]] or \
                 LAKEHOUSE__AUTH__TOKENS=name:role:token), bind a loopback address ({key}), or set \
                 [auth].allow_public_without_auth = true"
            );
        }
    }
    Ok(())
}

/// Binds the configured (or default) protocol listeners; see
/// [`refuse_public`] for the check that comes first.
pub async fn bind(cfg: &QuerydConfig) -> anyhow::Result<Listeners> {
    Ok(Listeners {
        pg: bind_one(
            "PostgreSQL",
            "[queryd].pg_bind",
            cfg.pg_bind.as_deref(),
            PG_DEFAULT,
        )
        .await?,
        flight: bind_one(
            "Flight SQL",
            "[queryd].flight_bind",
            cfg.flight_bind.as_deref(),
            FLIGHT_DEFAULT,
        )
        .await?,
    })
}

async fn bind_one(
    what: &str,
    key: &str,
    configured: Option<&str>,
    default: &str,
) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = address(configured, default) else {
        return Ok(None);
    };
    match lakehouse_common::conn::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if configured.is_none() => {
            tracing::warn!(
                error = %e,
                "the {what} listener is off: its default address {addr} cannot be bound \
                 (set {key} to another address, or \"off\")"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding the {what} listener {addr} ({key})")),
    }
}

impl Listeners {
    /// Announces the listeners on stdout and serves them until `shutdown`.
    /// Serves both listeners as tasks of `tasks` until `shutdown` is
    /// cancelled; each then finishes its in-flight work and ends.
    pub fn spawn(
        self,
        engine: Arc<QueryEngine>,
        auth: Option<Arc<Authenticator>>,
        shutdown: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> anyhow::Result<()> {
        if let Some(l) = self.pg {
            let addr = l.local_addr()?;
            let server = lakehouse_pgwire::PgServer::new(engine.clone(), auth.clone())
                .map_err(|e| anyhow::anyhow!("starting the PostgreSQL listener: {e}"))?;
            crate::serve::announce(&format!("lakehouse postgres on {addr}"));
            tracing::info!(%addr, "serving the PostgreSQL protocol");
            let serve = server.serve(l, shutdown.clone().cancelled_owned());
            tasks.spawn(async move {
                let _ = serve.await;
            });
        }
        if let Some(l) = self.flight {
            let addr = l.local_addr()?;
            crate::serve::announce(&format!("lakehouse flight-sql on grpc://{addr}"));
            tracing::info!(%addr, "serving Arrow Flight SQL");
            tasks.spawn(async move {
                if let Err(e) =
                    lakehouse_flightsql::serve(l, engine, auth, shutdown.cancelled_owned()).await
                {
                    tracing::error!(error = %e, "the Flight SQL listener stopped");
                }
            });
        }
        Ok(())
    }
}
