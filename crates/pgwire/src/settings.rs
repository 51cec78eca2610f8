//! Transaction control and session settings.
//!
//! Transactions are accepted and trivially serialisable: every statement
//! reads committed, immutable table versions, and a write statement
//! commits its own version when it completes (autocommit: `ROLLBACK`
//! cannot undo it). `SET` records a value that
//! `SHOW` reports (the connection's startup parameters count too); it never
//! reaches the engine, so no limit can be changed from a connection.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::PgWireResult;

use crate::error::user_error;
use crate::handler::{cursors, fields, rows};
use crate::session::Command;

/// The PostgreSQL version this server answers as: what `SHOW server_version`,
/// the start-up's `server_version` and `version()` report. Clients read it to
/// pick their SQL (SQLAlchemy refuses a server whose `version()` names none).
pub const PG_VERSION: &str = "16.6";

/// Settings `SHOW` knows without a `SET`, PostgreSQL's values where they
/// describe this server.
const DEFAULTS: &[(&str, &str)] = &[
    ("server_version", PG_VERSION),
    ("server_version_num", "160006"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("search_path", "public"),
    ("transaction_isolation", "serializable"),
    ("default_transaction_isolation", "serializable"),
    ("transaction_read_only", "off"),
    ("default_transaction_read_only", "off"),
    ("standard_conforming_strings", "on"),
    ("integer_datetimes", "on"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("timezone", "UTC"),
    ("max_identifier_length", "63"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
    ("is_superuser", "off"),
    ("extra_float_digits", "1"),
    ("application_name", ""),
    ("statement_timeout", "0"),
];

/// The key a setting is stored under in the connection's metadata.
fn key(name: &str) -> String {
    format!("lakehouse.setting.{}", name.to_ascii_lowercase())
}

fn current<C: ClientInfo>(client: &C, name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    if let Some(v) = client.metadata().get(&key(&name)) {
        return Some(v.clone());
    }
    // Startup parameters (application_name, client_encoding, …).
    if let Some((_, v)) = client
        .metadata()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&name))
    {
        return Some(v.clone());
    }
    if name == "session_authorization" {
        return client.metadata().get("user").cloned();
    }
    DEFAULTS
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The one-column schema of `SHOW name`.
pub fn show_schema(name: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]))
}

pub fn run_simple<C>(client: &mut C, cmd: &Command) -> PgWireResult<Response>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    run(client, cmd, &Format::UnifiedText)
}

pub fn run<C>(client: &mut C, cmd: &Command, format: &Format) -> PgWireResult<Response>
where
    C: ClientInfo + ClientPortalStore,
    C::PortalStore: PortalStore,
{
    Ok(match cmd {
        Command::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Command::Commit => {
            cursors(client).end_transaction();
            Response::TransactionEnd(Tag::new("COMMIT"))
        }
        Command::Rollback => {
            cursors(client).end_transaction();
            Response::TransactionEnd(Tag::new("ROLLBACK"))
        }
        Command::Savepoint(tag) => Response::Execution(Tag::new(tag)),
        Command::Set { name, value } => {
            client.metadata_mut().insert(key(name), value.clone());
            Response::Execution(Tag::new("SET"))
        }
        Command::Reset(name) => {
            match name {
                Some(n) => {
                    client.metadata_mut().remove(&key(n));
                }
                None => client
                    .metadata_mut()
                    .retain(|k, _| !k.starts_with("lakehouse.setting.")),
            }
            Response::Execution(Tag::new("RESET"))
        }
        Command::Show(name) => show(client, name, format)?,
        Command::Discard => {
            cursors(client).close_all();
            Response::Execution(Tag::new("DISCARD ALL"))
        }
        Command::Deallocate(name) => {
            if let Some(n) = name {
                client.portal_store().rm_statement(n);
            }
            Response::Execution(Tag::new("DEALLOCATE"))
        }
        Command::Declare { .. } | Command::Fetch { .. } | Command::Close(_) => {
            return Err(user_error("XX000", "not a session statement"));
        }
    })
}

fn show<C: ClientInfo>(client: &C, name: &str, format: &Format) -> PgWireResult<Response> {
    let Some(value) = current(client, name) else {
        return Err(user_error(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        ));
    };
    let schema = show_schema(name);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![value]))],
    )
    .map_err(|e| user_error("XX000", e.to_string()))?;
    let fields = Arc::new(fields(&schema, format, None)?);
    let data = rows(
        fields.clone(),
        futures::stream::once(async move { Ok(batch) }).boxed(),
    );
    let mut response = QueryResponse::new(fields, data);
    response.set_command_tag("SHOW");
    Ok(Response::Query(response))
}
