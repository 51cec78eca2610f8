//! The PostgreSQL wire protocol over queryd's engine.
//!
//! `psql`, psycopg, JDBC (DBeaver), Grafana and Metabase connect to the
//! lakehouse as to a PostgreSQL 16: database `lakehouse`, schema `public`,
//! one table per dataset; queries, and the write statements of
//! `/query/sql` for a token that may write (autocommit). Built on the
//! `pgwire` crate:
//!
//! - [`dialect`]: PostgreSQL's grammar, `pg_catalog` and `information_schema`
//!   (enough for psql's `\dt`/`\d` and DBeaver's navigator), PostgreSQL's
//!   functions — as a [`lakehouse_queryd::Dialect`] of the same engine, so
//!   queries get queryd's sandbox, limits, memory pool, timeout and
//!   cancellation, exactly as over HTTP;
//! - [`handler`]: simple and extended query protocols (parameters, prepared
//!   statements, text and binary formats, portal suspension), rows encoded
//!   from Arrow batches as they stream ([`arrow_pg`]'s type mapping);
//! - [`session`], [`settings`], [`cursor`]: transactions, `SET`/`SHOW`, and
//!   server-side cursors (`DECLARE`/`FETCH`/`CLOSE`);
//! - [`startup`]: the token as a cleartext password;
//! - [`tls`]: TLS from `[queryd].tls_cert`/`tls_key` (`SSLRequest` answered
//!   `S`), optionally required;
//! - [`error`]: an ErrorResponse with a SQLSTATE for every error.
//!
//! A client that disconnects, or sends a CancelRequest, cancels its query:
//! each connection is watched (a second handle on its socket sees the end
//! of stream) while the protocol handler works.

pub mod compat;
pub mod cursor;
pub mod dialect;
pub mod error;
pub mod handler;
pub mod params;
pub mod session;
pub mod settings;
pub mod startup;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lakehouse_common::auth::Authenticator;
use lakehouse_queryd::{QueryEngine, QueryError};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use pgwire::tokio::TlsAcceptor;
use tokio::net::{TcpListener, TcpStream};

use crate::dialect::PgDialect;
use crate::handler::QueryHandler;
use crate::startup::Startup;
use crate::tls::PgTls;

/// Every handler of one server; cloned per connection.
#[derive(Clone)]
struct Handlers {
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// The PostgreSQL protocol server over `engine`.
pub struct PgServer {
    handlers: Handlers,
    tls: Option<TlsAcceptor>,
}

impl PgServer {
    /// Builds the PostgreSQL dialect of `engine` (sharing its runtime,
    /// memory pool and limits); with `tls`, clients may (or must) switch to
    /// TLS.
    pub fn new(
        engine: Arc<QueryEngine>,
        auth: Option<Arc<Authenticator>>,
        tls: Option<PgTls>,
    ) -> Result<Self, QueryError> {
        let dialect = Arc::new(PgDialect::new(engine.clone())?);
        let pg_engine = Arc::new(engine.with_dialect(dialect)?);
        let manager = Arc::new(ConnectionManager::new());
        Ok(Self {
            handlers: Handlers {
                query: Arc::new(QueryHandler::new(pg_engine)),
                startup: Arc::new(Startup::new(
                    auth,
                    manager.clone(),
                    tls.as_ref().is_some_and(PgTls::required),
                )),
                cancel: Arc::new(DefaultCancelHandler::new(manager)),
            },
            tls: tls.map(|t| t.acceptor),
        })
    }

    /// Serves connections on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((socket, _)) => {
                    tokio::spawn(connection(socket, self.tls.clone(), self.handlers.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    tracing::warn!(error = %e, "accepting a postgres connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One connection: TLS negotiation (when configured) and the protocol,
/// stopped when the client goes away.
async fn connection(socket: TcpStream, tls: Option<TlsAcceptor>, handlers: Handlers) {
    let _ = socket.set_nodelay(true);
    let (socket, watch) = match watched(socket) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "preparing a postgres connection failed");
            return;
        }
    };
    tokio::select! {
        r = pgwire::tokio::process_socket(socket, tls, handlers) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "postgres connection ended with an error");
            }
        }
        _ = closed(watch) => {
            tracing::debug!("postgres client went away; its query (if any) is cancelled");
        }
    }
}

/// The socket and a second handle on it to watch for the end of stream.
fn watched(socket: TcpStream) -> std::io::Result<(TcpStream, TcpStream)> {
    let std = socket.into_std()?;
    let dup = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, TcpStream::from_std(dup)?))
}

/// Resolves when the peer has closed the connection. Bytes the client sent
/// ahead are left for the protocol handler (peek), and looked at again a
/// little later.
async fn closed(watch: TcpStream) {
    let mut buf = [0u8; 1];
    loop {
        match watch.peek(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
