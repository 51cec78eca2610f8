//! Server-side cursors: `DECLARE … CURSOR FOR`, `FETCH`, `MOVE`, `CLOSE`.
//!
//! `DECLARE` starts the query (so its errors come back at once) and keeps
//! its batch stream; `FETCH n` pulls n rows from it, encoding them in the
//! format the `FETCH` asks for, without buffering more than the batch being
//! read. Cursors are forward-only. A cursor without `WITH HOLD` closes when
//! its transaction ends, as in PostgreSQL; every cursor closes with its
//! connection. Closing drops the stream, which cancels the query; the query
//! keeps the server's timeout while the cursor is open.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use futures::stream::BoxStream;
use lakehouse_queryd::{Batches, QueryError};
use parking_lot::Mutex;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;
use tokio::sync::OwnedMutexGuard;

use crate::error::{query_error, user_error};
use crate::handler::{PgStatement, cancellable, cursor_statement, cursors, fields, rows};
use crate::session::Command;

/// A cursor's query and where it stands.
pub struct CursorState {
    schema: SchemaRef,
    stream: BoxStream<'static, Result<RecordBatch, QueryError>>,
    /// Rows read from the stream but not fetched yet.
    pending: Option<RecordBatch>,
}

/// An open cursor: whether it is a holdable one, and its state.
type OpenCursor = (bool, Arc<tokio::sync::Mutex<CursorState>>);

/// The cursors of one connection.
#[derive(Default)]
pub struct Cursors {
    open: Mutex<HashMap<String, OpenCursor>>,
}

impl Cursors {
    /// Closes the cursors without `WITH HOLD` (a transaction ended).
    pub fn end_transaction(&self) {
        self.open.lock().retain(|_, (hold, _)| *hold);
    }

    pub fn close_all(&self) {
        self.open.lock().clear();
    }

    fn get(&self, name: &str) -> PgWireResult<Arc<tokio::sync::Mutex<CursorState>>> {
        self.open
            .lock()
            .get(name)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| user_error("34000", format!("cursor \"{name}\" does not exist")))
    }
}

/// Registers a started query as cursor `name`.
pub fn declare_simple<C: ClientInfo>(
    client: &C,
    name: &str,
    hold: bool,
    batches: Batches,
) -> PgWireResult<Response> {
    let state = CursorState {
        schema: batches.schema,
        stream: batches.stream,
        pending: None,
    };
    let store = cursors(client);
    let mut open = store.open.lock();
    if open.contains_key(name) {
        return Err(user_error(
            "42P03",
            format!("cursor \"{name}\" already exists"),
        ));
    }
    open.insert(
        name.to_string(),
        (hold, Arc::new(tokio::sync::Mutex::new(state))),
    );
    Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
}

/// Like [`declare_simple`], and makes the cursor a portal the client can
/// `Describe` (psycopg does).
pub fn declare<C>(
    client: &mut C,
    name: &str,
    hold: bool,
    batches: Batches,
) -> PgWireResult<Response>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore<Statement = PgStatement>,
{
    let r = declare_simple(client, name, hold, batches)?;
    let portal = Portal::new_cursor(name.to_string(), cursor_statement(name));
    client.portal_store().put_portal(Arc::new(portal));
    Ok(r)
}

/// The schema of cursor `name`.
pub async fn schema<C: ClientInfo>(client: &C, name: &str) -> PgWireResult<SchemaRef> {
    let c = cursors(client).get(name)?;
    let state = c.lock().await;
    Ok(state.schema.clone())
}

/// Up to `count` rows (`None` = all) from the cursor, batch by batch.
fn take(
    state: OwnedMutexGuard<CursorState>,
    count: Option<u64>,
) -> BoxStream<'static, Result<RecordBatch, QueryError>> {
    futures::stream::unfold((state, count), |(mut state, left)| async move {
        if left == Some(0) {
            return None;
        }
        let batch = match state.pending.take() {
            Some(b) => b,
            None => match state.stream.next().await? {
                Ok(b) => b,
                Err(e) => return Some((Err(e), (state, Some(0)))),
            },
        };
        let n = batch.num_rows() as u64;
        match left {
            Some(l) if n > l => {
                state.pending = Some(batch.slice(l as usize, (n - l) as usize));
                Some((Ok(batch.slice(0, l as usize)), (state, Some(0))))
            }
            _ => Some((Ok(batch), (state, left.map(|l| l - n)))),
        }
    })
    .boxed()
}

/// `FETCH`, `MOVE` or `CLOSE`, in simple or extended protocol.
pub async fn run_simple<C>(client: &mut C, cmd: &Command) -> PgWireResult<Response>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    run(client, cmd, &Format::UnifiedText).await
}

pub async fn run<C>(client: &mut C, cmd: &Command, format: &Format) -> PgWireResult<Response>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    match cmd {
        Command::Close(name) => {
            let all = cursors(client);
            match name {
                None => {
                    let names: Vec<String> = all.open.lock().keys().cloned().collect();
                    for n in names {
                        client.portal_store().rm_portal(&n);
                    }
                    all.close_all();
                }
                Some(n) => {
                    if all.open.lock().remove(n).is_none() {
                        return Err(user_error(
                            "34000",
                            format!("cursor \"{n}\" does not exist"),
                        ));
                    }
                    client.portal_store().rm_portal(n);
                }
            }
            Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
        }
        Command::Fetch {
            name,
            count,
            moving: true,
        } => {
            let state = cursors(client).get(name)?.lock_owned().await;
            let mut moved = 0usize;
            let mut s = take(state, *count);
            while let Some(b) = s.next().await {
                moved += b.map_err(query_error)?.num_rows();
            }
            Ok(Response::Execution(Tag::new("MOVE").with_rows(moved)))
        }
        Command::Fetch { name, count, .. } => {
            let state = cursors(client).get(name)?.lock_owned().await;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let fields = Arc::new(fields(&state.schema, format, Some(options))?);
            let data = cancellable(client, rows(fields.clone(), take(state, *count))).await;
            let mut response = QueryResponse::new(fields, data);
            response.set_command_tag("FETCH");
            Ok(Response::Query(response))
        }
        _ => Err(user_error("XX000", "not a cursor statement")),
    }
}
