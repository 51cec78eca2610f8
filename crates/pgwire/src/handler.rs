//! The simple and extended query protocols over queryd's engine.
//!
//! Every query runs through [`QueryEngine::run_batches`] (the PostgreSQL
//! dialect engine): same sandbox, limits, memory pool, timeout and
//! cancellation as HTTP. Rows are encoded from the Arrow batches as they
//! arrive (text or binary per column, as the client asks), so memory stays
//! bounded by a few batches; an error after rows were sent ends the result
//! with an ErrorResponse (a result over `max_rows` included), never a
//! CommandComplete for a short result. A CancelRequest, a dropped
//! connection or a closed cursor drops the batch stream, which cancels the
//! query.
//!
//! Extended protocol: `Parse` plans the statement (errors come back there,
//! as in PostgreSQL) and reports parameter types DataFusion inferred;
//! `Describe` of a portal plans again with the bound values, so the row
//! description matches what `Execute` sends.
//!
//! Write statements (`INSERT`, `CREATE TABLE AS`, `DELETE`, `UPDATE`,
//! `MERGE`) run as on HTTP for a connection whose token may write, each
//! committing its own table version when it completes (autocommit: a
//! later `ROLLBACK` cannot undo it). They answer PostgreSQL's command tags
//! (`INSERT 0 n`, `UPDATE n`, `DELETE n`, `MERGE n`, `SELECT n` for
//! `CREATE TABLE AS`) with no rows; a `read` token gets 42501.

use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use futures::stream::BoxStream;
use futures::{Sink, Stream, StreamExt, TryStreamExt};
use lakehouse_common::auth::Principal;
use lakehouse_queryd::{Access, Described, QueryEngine, QueryError, WriteCounts, WriteKind};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, DescribeResponse, DescribeStatementResponse, FieldInfo, QueryResponse,
    Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ConnectionHandle, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use crate::cursor::{self, Cursors};
use crate::error::{query_error, user_error};
use crate::session::{self, Command};

/// A parsed statement, as the portal store keeps it.
#[derive(Debug, Clone)]
pub enum PgStatement {
    /// A query for the engine, planned once at `Parse`.
    Query { sql: String, described: Described },
    /// A statement the server answers itself.
    Command(Command),
    /// `DECLARE name CURSOR FOR <sql>`.
    Declare {
        name: String,
        sql: String,
        hold: bool,
        described: Described,
    },
    /// The portal a cursor is visible as (for `Describe`).
    Cursor { name: String },
}

/// The handlers of one server (shared by its connections).
pub struct QueryHandler {
    engine: Arc<QueryEngine>,
    parser: Arc<StatementParser>,
}

impl QueryHandler {
    pub fn new(engine: Arc<QueryEngine>) -> Self {
        Self {
            parser: Arc::new(StatementParser {
                engine: engine.clone(),
            }),
            engine,
        }
    }
}

pub struct StatementParser {
    engine: Arc<QueryEngine>,
}

/// What the connection's token may do (the principal saved at startup).
pub fn access<C: ClientInfo>(client: &C) -> Access {
    Access::of(client.session_extensions().get::<Principal>().as_deref())
}

/// PostgreSQL's command tag for a write statement's answer.
fn write_tag(kind: WriteKind, answer: &[RecordBatch]) -> PgWireResult<Tag> {
    let c = WriteCounts::of(answer)
        .ok_or_else(|| user_error("XX000", "the write statement gave no answer"))?;
    let rows = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(match kind {
        WriteKind::Insert => Tag::new("INSERT").with_oid(0).with_rows(rows(c.inserted)),
        WriteKind::CreateTableAs => Tag::new("SELECT").with_rows(rows(c.inserted)),
        WriteKind::Delete => Tag::new("DELETE").with_rows(rows(c.deleted)),
        WriteKind::Update => Tag::new("UPDATE").with_rows(rows(c.updated)),
        WriteKind::Merge => Tag::new("MERGE").with_rows(rows(c.total())),
    })
}

fn pg_types(d: &Described) -> Vec<Type> {
    d.params
        .iter()
        .map(|t| {
            t.as_ref()
                .and_then(|t| into_pg_type(t).ok())
                .unwrap_or(Type::UNKNOWN)
        })
        .collect()
}

/// Parameter type OIDs the client declared become casts, so DataFusion
/// plans `SELECT $1` with the client's type (it cannot infer one).
fn typed_sql(sql: &str, types: &[Option<Type>]) -> String {
    if types.iter().all(|t| t.is_none()) {
        return sql.to_string();
    }
    crate::params::cast_placeholders(sql, types)
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        match session::classify(sql).map_err(|e| user_error(e.sqlstate, e.message))? {
            Some(Command::Declare { name, query, hold }) => {
                let sql = typed_sql(&query, types);
                let described = self
                    .engine
                    .describe(&sql, None)
                    .await
                    .map_err(query_error)?;
                Ok(Some(PgStatement::Declare {
                    name,
                    sql,
                    hold,
                    described,
                }))
            }
            Some(cmd) => Ok(Some(PgStatement::Command(cmd))),
            None => {
                let sql = typed_sql(sql, types);
                let described = self
                    .engine
                    .describe_as(&sql, None, access(client))
                    .await
                    .map_err(query_error)?;
                Ok(Some(PgStatement::Query { sql, described }))
            }
        }
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(match stmt {
            PgStatement::Query { described, .. } | PgStatement::Declare { described, .. } => {
                pg_types(described)
            }
            PgStatement::Command(_) | PgStatement::Cursor { .. } => vec![],
        })
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            PgStatement::Query { described, .. } if described.write.is_none() => fields(
                &described.schema,
                format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            _ => Ok(vec![]),
        }
    }
}

/// Row descriptions for `schema` in `format`.
pub fn fields(
    schema: &SchemaRef,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    arrow_schema_to_pg_fields(schema, format, options)
}

/// Encodes batches to data rows as they arrive; an error ends the rows.
pub fn rows(
    fields: Arc<Vec<FieldInfo>>,
    batches: BoxStream<'static, Result<RecordBatch, QueryError>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    batches.flat_map(move |b| match b {
        Ok(b) => futures::stream::iter(encode_recordbatch(fields.clone(), b)).left_stream(),
        Err(e) => futures::stream::once(std::future::ready(Err(query_error(e)))).right_stream(),
    })
}

/// Ends `rows` with a 57014 error when a CancelRequest for this
/// connection arrives while they stream.
pub async fn cancellable<C>(
    client: &C,
    rows: impl Stream<Item = PgWireResult<DataRow>> + Send + 'static,
) -> BoxStream<'static, PgWireResult<DataRow>>
where
    C: ClientInfo,
{
    let Some(handle) = client.session_extensions().get::<Arc<ConnectionHandle>>() else {
        return rows.boxed();
    };
    let cancel = handle.start_query().await;
    let rows = rows.boxed();
    futures::stream::unfold((rows, Some(cancel)), |(mut rows, cancel)| async move {
        let mut cancel = cancel?;
        tokio::select! {
            biased;
            r = &mut cancel, if !cancel.is_terminated() => {
                if r.is_ok() {
                    let e = user_error("57014", "canceling statement due to user request");
                    return Some((Err(e), (rows, None)));
                }
                rows.next().await.map(|row| (row, (rows, Some(cancel))))
            }
            row = rows.next() => row.map(|row| (row, (rows, Some(cancel)))),
        }
    })
    .boxed()
}

use futures::future::FusedFuture;

impl QueryHandler {
    /// Runs a query and answers its rows in `format`.
    async fn query<C>(
        &self,
        client: &C,
        sql: &str,
        params: Option<ParamValues>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo,
    {
        let batches = self
            .engine
            .run_batches_as(sql, params, access(client))
            .await
            .map_err(query_error)?;
        if let Some(kind) = batches.write {
            let answer: Vec<RecordBatch> =
                batches.stream.try_collect().await.map_err(query_error)?;
            return Ok(Response::Execution(write_tag(kind, &answer)?));
        }
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(fields(&batches.schema, format, Some(options))?);
        let rows = cancellable(client, rows(fields.clone(), batches.stream)).await;
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }

    /// A session statement or a cursor operation.
    async fn command<C>(
        &self,
        client: &mut C,
        cmd: &Command,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
    {
        if let Command::Declare { .. } = cmd {
            return Err(user_error("42601", "DECLARE needs a query"));
        }
        if let Command::Fetch { .. } | Command::Close(_) = cmd {
            return cursor::run(client, cmd, format).await;
        }
        crate::settings::run(client, cmd, format)
    }

    /// `DECLARE`: starts the query and keeps its stream as a cursor.
    async fn declare<C>(
        &self,
        client: &mut C,
        name: &str,
        sql: &str,
        hold: bool,
        params: Option<ParamValues>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
    {
        let batches = self
            .engine
            .run_batches(sql, params)
            .await
            .map_err(query_error)?;
        cursor::declare(client, name, hold, batches)
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut out = Vec::new();
        for sql in session::split(query) {
            let r = match session::classify(&sql) {
                Err(e) => Err(user_error(e.sqlstate, e.message)),
                Ok(Some(Command::Declare { name, query, hold })) => {
                    let batches = self.engine.run_batches(&query, None).await;
                    match batches {
                        Ok(b) => cursor::declare_simple(client, &name, hold, b),
                        Err(e) => Err(query_error(e)),
                    }
                }
                Ok(Some(cmd)) => match cmd {
                    Command::Fetch { .. } | Command::Close(_) => {
                        cursor::run_simple(client, &cmd).await
                    }
                    other => crate::settings::run_simple(client, &other),
                },
                Ok(None) => self.query(client, &sql, None, &Format::UnifiedText).await,
            };
            match r {
                Ok(resp) => out.push(resp),
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// The bound parameter values of `portal`, decoded with the client's
/// declared types or else the planner's.
fn bound<S: Clone>(portal: &Portal<S>, described: &Described) -> PgWireResult<Option<ParamValues>> {
    if portal.parameter_len() == 0 {
        return Ok(None);
    }
    let inferred: Vec<Option<&DataType>> = described.params.iter().map(|t| t.as_ref()).collect();
    Ok(Some(deserialize_parameters(portal, &inferred)?))
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PgStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<PgStatement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let server = self.parser.get_parameter_types(&target.statement)?;
        let params = (0..server.len().max(target.parameter_types.len()))
            .map(|i| {
                target
                    .parameter_types
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| server.get(i).cloned())
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect();
        let fields = self.parser.get_result_schema(&target.statement, None)?;
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = &portal.result_column_format;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let schema = match &portal.statement.statement {
            PgStatement::Query { described, .. } if described.write.is_some() => {
                return Ok(DescribePortalResponse::no_data());
            }
            PgStatement::Query { sql, described } => match bound(portal, described)? {
                None => described.schema.clone(),
                Some(p) => {
                    self.engine
                        .describe(sql, Some(p))
                        .await
                        .map_err(query_error)?
                        .schema
                }
            },
            PgStatement::Cursor { name } => cursor::schema(client, name).await?,
            PgStatement::Command(Command::Fetch {
                name,
                moving: false,
                ..
            }) => cursor::schema(client, name).await?,
            PgStatement::Command(Command::Show(name)) => crate::settings::show_schema(name),
            PgStatement::Command(_) | PgStatement::Declare { .. } => {
                return Ok(DescribePortalResponse::no_data());
            }
        };
        Ok(DescribePortalResponse::new(fields(
            &schema,
            format,
            Some(options),
        )?))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = &portal.result_column_format;
        match &portal.statement.statement {
            PgStatement::Query { sql, described } => {
                let params = bound(portal, described)?;
                self.query(client, sql, params, format).await
            }
            PgStatement::Declare {
                name,
                sql,
                hold,
                described,
            } => {
                let params = bound(portal, described)?;
                self.declare(client, name, sql, *hold, params).await
            }
            PgStatement::Command(cmd) => self.command(client, cmd, format).await,
            PgStatement::Cursor { name } => Err(user_error(
                "0A000",
                format!("cursor \"{name}\" is read with FETCH"),
            )),
        }
    }
}

/// The cursor store of a connection.
pub fn cursors<C: ClientInfo>(client: &C) -> Arc<Cursors> {
    client
        .session_extensions()
        .get_or_insert_with(Cursors::default)
}

/// For a portal store entry that stands for a cursor.
pub fn cursor_statement(name: &str) -> Arc<StoredStatement<PgStatement>> {
    Arc::new(StoredStatement::new(
        name.to_string(),
        PgStatement::Cursor {
            name: name.to_string(),
        },
        vec![],
    ))
}
