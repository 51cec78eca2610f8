//! Arrow Flight SQL over queryd's engine.
//!
//! A gRPC server (`tonic`, with arrow-flight's Flight SQL service and its
//! generated protocol code, so no `protoc` at build time) whose every
//! statement runs through [`lakehouse_queryd::QueryEngine`]: the same
//! sandbox, limits, memory pool, timeout and cancellation as
//! `POST /query/sql`, with results streamed as Arrow batches.
//!
//! - Statements: `GetFlightInfo(CommandStatementQuery)` plans the statement
//!   (errors come back here) and returns a ticket holding it; `DoGet` runs it.
//! - Prepared statements with parameters: `?` or `$n` placeholders; see
//!   [`handle`] for the stateless handles.
//! - Metadata: `GetCatalogs` (`lakehouse`), `GetDbSchemas` (`public`),
//!   `GetTables` with Arrow schemas (one table per dataset), `GetTableTypes`
//!   (`TABLE`), `GetSqlInfo` — what ADBC's `adbc_get_objects` and JDBC
//!   navigators ask for.
//! - Write statements (`INSERT`, `CREATE TABLE AS`, `DELETE`, `UPDATE`,
//!   `MERGE`): through `Execute` they answer their one row (dataset,
//!   version, rows inserted/updated/deleted); `ExecuteUpdate`
//!   (`CommandStatementUpdate`, `CommandPreparedStatementUpdate`, run once
//!   per row of parameters) returns the rows changed.
//! - Auth ([`auth`]): `authorization: Bearer <token>`, or the Basic-auth
//!   handshake with the token as the password; the same roles as HTTP (a
//!   query needs `read`, a write statement `write`).
//! - Errors ([`error`]): a gRPC status by the query error's variant, the
//!   stable code in `lakehouse-error-code` metadata.
//!
//! - TLS ([`FlightServer::new`] with an [`Identity`]): `grpc+tls://`; the
//!   listener is then TLS-only (gRPC cannot tell a plaintext client from a
//!   TLS one before reading it), with ALPN `h2` and a bounded handshake.
//!
//! A client that disconnects drops its response stream, which cancels the
//! query (as on HTTP). A result over `[queryd].max_rows` ends with a
//! `RESOURCE_EXHAUSTED` status, never silently short.

pub mod auth;
pub mod error;
pub mod handle;
pub mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use lakehouse_common::auth::Authenticator;
use lakehouse_queryd::QueryEngine;
use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tonic::transport::{Server, ServerTlsConfig};

pub use error::FlightError;
pub use service::LakehouseFlightSql;
pub use tonic::transport::Identity;

/// Largest request message accepted (parameters, handles): 16 MiB.
const MAX_REQUEST: usize = 16 << 20;

/// Longest a client may take over its TLS handshake (a connection that
/// never finishes one would otherwise be held forever).
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Accepted connections with Nagle's algorithm off, as gRPC expects: tonic
/// sets `TCP_NODELAY` only on listeners it binds itself, and without it a
/// unary answer (`GetFlightInfo`) can wait for the client's delayed ACK.
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    })
}

/// The process-default rustls crypto provider, installing *ring*'s when
/// none is installed yet: tonic's TLS builds its rustls configuration with
/// the process default, and with more than one provider compiled in there
/// is none until one is installed. Never panics when another part of the
/// process installed one first (that one is used, as pgwire's TLS does).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The Flight SQL server, built (and its TLS identity checked) before it
/// serves.
pub struct FlightServer {
    router: Router,
    tls: bool,
}

impl FlightServer {
    /// The service over `engine`; with `tls` (a PEM certificate chain and
    /// key) it serves gRPC over TLS only. A certificate or key rustls
    /// cannot use is an error here, not at the first connection.
    pub fn new(
        engine: Arc<QueryEngine>,
        auth: Option<Arc<Authenticator>>,
        tls: Option<Identity>,
    ) -> Result<Self, tonic::transport::Error> {
        let service = FlightServiceServer::new(LakehouseFlightSql::new(engine, auth))
            .max_decoding_message_size(MAX_REQUEST);
        let mut server = Server::builder();
        let with_tls = tls.is_some();
        if let Some(identity) = tls {
            ensure_crypto_provider();
            server = server.tls_config(
                ServerTlsConfig::new()
                    .identity(identity)
                    .timeout(TLS_HANDSHAKE),
            )?;
        }
        Ok(Self {
            router: server.add_service(service),
            tls: with_tls,
        })
    }

    /// Whether it serves TLS (`grpc+tls://`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Serves Flight SQL on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        self.router
            .serve_with_incoming_shutdown(incoming(listener), shutdown)
            .await
    }
}
