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
//! A client that disconnects drops its response stream, which cancels the
//! query (as on HTTP). A result over `[queryd].max_rows` ends with a
//! `RESOURCE_EXHAUSTED` status, never silently short.

pub mod auth;
pub mod error;
pub mod handle;
pub mod service;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use lakehouse_common::auth::Authenticator;
use lakehouse_queryd::QueryEngine;
use tokio::net::TcpListener;

pub use error::FlightError;
pub use service::LakehouseFlightSql;

/// Largest request message accepted (parameters, handles): 16 MiB.
const MAX_REQUEST: usize = 16 << 20;

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

/// Serves Flight SQL on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    auth: Option<Arc<Authenticator>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(LakehouseFlightSql::new(engine, auth))
        .max_decoding_message_size(MAX_REQUEST);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}
