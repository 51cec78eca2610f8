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
//!
//! TLS: with `[queryd].tls_cert` and `tls_key` (PEM files, both or
//! neither), PostgreSQL answers `SSLRequest` with `S` (plaintext clients
//! still connect unless `[queryd].tls_required`) and Flight SQL serves
//! gRPC over TLS only (`grpc+tls://` in its announcement). The files are
//! read and checked when the listeners bind: a missing key, an unreadable
//! file or one that is not a usable PEM certificate or key stops the
//! start-up with an error naming the setting and the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use lakehouse_common::Authenticator;
use lakehouse_flightsql::{FlightServer, Identity};
use lakehouse_pgwire::tls::{PgTls, TlsError};
use lakehouse_queryd::QueryEngine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::QuerydConfig;

const PG_DEFAULT: &str = "127.0.0.1:5432";
const FLIGHT_DEFAULT: &str = "127.0.0.1:50051";

/// The bound protocol listeners (either may be off) and their TLS.
pub struct Listeners {
    pg: Option<TcpListener>,
    flight: Option<TcpListener>,
    tls: Option<Tls>,
}

/// What `[queryd].tls_cert` and `tls_key` hold, checked.
struct Tls {
    pg: PgTls,
    /// The same files for Flight SQL (tonic parses them again; checked by
    /// building the server in [`Listeners::spawn`]).
    flight: Identity,
}

/// A path setting, unless unset or empty (an empty environment value
/// clears a file's setting).
fn path_of(p: Option<&PathBuf>) -> Option<&Path> {
    p.map(PathBuf::as_path)
        .filter(|p| !p.as_os_str().is_empty())
}

/// Reads and checks the TLS certificate and key, if configured.
fn tls(cfg: &QuerydConfig) -> anyhow::Result<Option<Tls>> {
    const CERT: &str = "[queryd].tls_cert (LAKEHOUSE__QUERYD__TLS_CERT)";
    const KEY: &str = "[queryd].tls_key (LAKEHOUSE__QUERYD__TLS_KEY)";
    let (cert, key) = match (
        path_of(cfg.tls_cert.as_ref()),
        path_of(cfg.tls_key.as_ref()),
    ) {
        (None, None) if cfg.tls_required => bail!(
            "[queryd].tls_required = true needs a certificate: set {CERT} and {KEY} (PEM files)"
        ),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            bail!("{CERT} is set but {KEY} is not: TLS needs both (PEM files), or neither")
        }
        (None, Some(_)) => {
            bail!("{KEY} is set but {CERT} is not: TLS needs both (PEM files), or neither")
        }
        (Some(c), Some(k)) => (c, k),
    };
    let read = |what: &str, path: &Path| {
        std::fs::read(path).with_context(|| format!("reading {what}: {}", path.display()))
    };
    let (cert_pem, key_pem) = (read(CERT, cert)?, read(KEY, key)?);
    let pg = PgTls::from_pem(&cert_pem, &key_pem, cfg.tls_required).map_err(|e| match e {
        TlsError::NoCertificate | TlsError::Certificate(_) => {
            anyhow!(e).context(format!("{CERT}: {}", cert.display()))
        }
        TlsError::NoKey | TlsError::Key(_) => {
            anyhow!(e).context(format!("{KEY}: {}", key.display()))
        }
        TlsError::Mismatch(_) => anyhow!(e).context(format!(
            "{KEY} {} does not go with {CERT} {}",
            key.display(),
            cert.display()
        )),
    })?;
    Ok(Some(Tls {
        pg,
        flight: Identity::from_pem(cert_pem, key_pem),
    }))
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

/// Reads the TLS files (if any) and binds the configured (or default)
/// protocol listeners; see [`refuse_public`] for the check that comes
/// first.
pub async fn bind(cfg: &QuerydConfig) -> anyhow::Result<Listeners> {
    let tls = tls(cfg)?;
    Ok(Listeners {
        tls,
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
    /// Announces the listeners on stdout and serves them as tasks of
    /// `tasks` until `shutdown` is cancelled; each then finishes its
    /// in-flight work and ends.
    pub fn spawn(
        self,
        engine: Arc<QueryEngine>,
        auth: Option<Arc<Authenticator>>,
        shutdown: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> anyhow::Result<()> {
        let (pg_tls, flight_tls) = match self.tls {
            Some(t) => (Some(t.pg), Some(t.flight)),
            None => (None, None),
        };
        let with_tls = pg_tls.is_some();
        if let Some(l) = self.pg {
            let addr = l.local_addr()?;
            cleartext_warning("PostgreSQL", addr, auth.is_some(), with_tls);
            let server = lakehouse_pgwire::PgServer::new(engine.clone(), auth.clone(), pg_tls)
                .map_err(|e| anyhow!("starting the PostgreSQL listener: {e}"))?;
            crate::serve::announce(&format!("lakehouse postgres on {addr}"));
            tracing::info!(%addr, tls = with_tls, "serving the PostgreSQL protocol");
            let serve = server.serve(l, shutdown.clone().cancelled_owned());
            tasks.spawn(async move {
                let _ = serve.await;
            });
        }
        if let Some(l) = self.flight {
            let addr = l.local_addr()?;
            cleartext_warning("Flight SQL", addr, auth.is_some(), with_tls);
            let server = FlightServer::new(engine, auth, flight_tls)
                .context("starting the Flight SQL listener with [queryd].tls_cert and tls_key")?;
            let scheme = if server.tls() { "grpc+tls" } else { "grpc" };
            crate::serve::announce(&format!("lakehouse flight-sql on {scheme}://{addr}"));
            tracing::info!(%addr, tls = server.tls(), "serving Arrow Flight SQL");
            tasks.spawn(async move {
                if let Err(e) = server.serve(l, shutdown.cancelled_owned()).await {
                    tracing::error!(error = %e, "the Flight SQL listener stopped");
                }
            });
        }
        Ok(())
    }
}

/// Tokens sent in the clear over a network: a warning, not an error (a
/// trusted network or a TLS proxy in front may be the operator's choice).
fn cleartext_warning(what: &str, addr: SocketAddr, auth: bool, tls: bool) {
    if auth && !tls && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "{what} serves a non-loopback address without TLS: tokens travel in cleartext \
             (set [queryd].tls_cert and [queryd].tls_key)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cert: Option<&str>, key: Option<&str>, required: bool) -> QuerydConfig {
        QuerydConfig {
            tls_cert: cert.map(PathBuf::from),
            tls_key: key.map(PathBuf::from),
            tls_required: required,
            ..QuerydConfig::default()
        }
    }

    fn err(c: &QuerydConfig) -> String {
        format!("{:#}", tls(c).err().expect("an error"))
    }

    #[test]
    fn without_files_there_is_no_tls() {
        assert!(tls(&cfg(None, None, false)).unwrap().is_none());
        assert!(tls(&cfg(Some(""), Some(""), false)).unwrap().is_none());
    }

    #[test]
    fn one_file_without_the_other_names_the_missing_setting() {
        let e = err(&cfg(Some("/c.pem"), None, false));
        assert!(
            e.contains("[queryd].tls_key") && e.contains("is not"),
            "{e}"
        );
        let e = err(&cfg(None, Some("/k.pem"), false));
        assert!(
            e.contains("[queryd].tls_cert (") && e.contains("is not"),
            "{e}"
        );
        let e = err(&cfg(None, None, true));
        assert!(e.contains("tls_required"), "{e}");
    }

    #[test]
    fn unreadable_or_invalid_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let (m, j) = (missing.to_str().unwrap(), junk.to_str().unwrap());
        let e = err(&cfg(Some(m), Some(j), false));
        assert!(
            e.contains("reading [queryd].tls_cert") && e.contains(m),
            "{e}"
        );
        let e = err(&cfg(Some(j), Some(j), false));
        assert!(
            e.contains("[queryd].tls_cert") && e.contains(j) && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
