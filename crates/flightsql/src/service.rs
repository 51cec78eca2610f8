//! `FlightSqlService` over queryd's engine.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::common::{ParamValues, ScalarValue};
use futures::{Stream, StreamExt, TryStreamExt};
use lakehouse_common::auth::{Authenticator, Role};
use lakehouse_queryd::catalog::{CATALOG_NAME, SCHEMA_NAME};
use lakehouse_queryd::{Access, QueryEngine, WriteCounts};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{authorize, presented_token};
use crate::error::FlightError;
use crate::handle::{Handle, number_placeholders, one_row, parameter_schema};

type DoGetStream = <LakehouseFlightSql as FlightService>::DoGetStream;

/// The Flight SQL service: every statement goes through [`QueryEngine`].
pub struct LakehouseFlightSql {
    engine: Arc<QueryEngine>,
    auth: Option<Arc<Authenticator>>,
    sql_info: SqlInfoData,
}

impl LakehouseFlightSql {
    pub fn new(engine: Arc<QueryEngine>, auth: Option<Arc<Authenticator>>) -> Self {
        Self {
            engine,
            auth,
            sql_info: sql_info(),
        }
    }

    /// Every call needs at least a `read` token; returns what the caller
    /// may do (write statements need `write`, as on HTTP; no auth — loopback
    /// only — writes).
    fn check<T>(&self, req: &Request<T>, what: &str) -> Result<Access, Status> {
        let who = authorize(self.auth.as_deref(), req.metadata(), Role::Read, what)?;
        Ok(Access::of(who.as_ref()))
    }

    /// A FlightInfo whose one endpoint's ticket is `ticket`.
    fn info(
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// Runs `handle` and streams its batches (a write statement's one-row
    /// answer).
    async fn stream(
        &self,
        handle: Handle,
        access: Access,
    ) -> Result<Response<DoGetStream>, Status> {
        let params = handle.param_values()?;
        let batches = self
            .engine
            .run_batches_as(&handle.sql, params, access)
            .await
            .map_err(FlightError::from)?;
        let input = batches
            .stream
            .map_err(|e| arrow_flight::error::FlightError::from_external_error(Box::new(e)));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(batches.schema)
            .build(input)
            .map_err(to_status);
        Ok(Response::new(Box::pin(stream)))
    }

    /// Runs a write statement for ExecuteUpdate; the rows it inserted,
    /// updated and deleted. A query is refused (and cancelled).
    async fn update(
        &self,
        sql: &str,
        params: Option<ParamValues>,
        access: Access,
    ) -> Result<i64, Status> {
        let batches = self
            .engine
            .run_batches_as(sql, params, access)
            .await
            .map_err(FlightError::from)?;
        if batches.write.is_none() {
            return Err(FlightError::BadParameters(
                "ExecuteUpdate runs INSERT, CREATE TABLE AS, DELETE, UPDATE and MERGE; \
                 run a query with Execute"
                    .to_string(),
            )
            .into());
        }
        let answer: Vec<RecordBatch> = batches
            .stream
            .try_collect()
            .await
            .map_err(FlightError::from)?;
        let changed = WriteCounts::of(&answer).unwrap_or_default().total();
        Ok(i64::try_from(changed).unwrap_or(i64::MAX))
    }
}

/// A stream error back to a status: a query error keeps its code.
fn to_status(e: arrow_flight::error::FlightError) -> Status {
    match e {
        arrow_flight::error::FlightError::ExternalError(x) => {
            match x.downcast::<lakehouse_queryd::QueryError>() {
                Ok(q) => FlightError::Query(*q).into(),
                Err(other) => Status::internal(other.to_string()),
            }
        }
        other => Status::from(other),
    }
}

/// Most rows of parameter values one ExecuteUpdate takes (the statement
/// runs once per row).
const MAX_UPDATE_ROWS: usize = 10_000;

/// The parameter batches a DoPut carries, refused as soon as they pass
/// `max_rows` rows (a client cannot make the server hold an endless stream).
async fn parameter_batches(
    request: Request<PeekableFlightDataStream>,
    max_rows: usize,
    what: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let data = request
        .into_inner()
        .map_err(arrow_flight::error::FlightError::from);
    let mut stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data);
    let (mut out, mut rows) = (Vec::new(), 0usize);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| FlightError::BadParameters(e.to_string()))?;
        rows += batch.num_rows();
        if rows > max_rows {
            return Err(FlightError::BadParameters(format!(
                "{what} takes at most {max_rows} row(s) of parameter values"
            )));
        }
        out.push(batch);
    }
    Ok(out)
}

/// Each row of a parameter batch as positional values.
fn row_params(batch: &RecordBatch) -> Result<Vec<ParamValues>, FlightError> {
    (0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<Result<Vec<_>, _>>()
                .map(ParamValues::from)
                .map_err(|e| FlightError::BadParameters(e.to_string()))
        })
        .collect()
}

/// One metadata batch as a DoGet answer.
fn one_batch(
    schema: SchemaRef,
    batch: Result<RecordBatch, arrow_flight::error::FlightError>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// What `GetSqlInfo` answers.
fn sql_info() -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "lakehouse");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().expect("static SqlInfo values")
}

#[tonic::async_trait]
impl FlightSqlService for LakehouseFlightSql {
    type FlightService = LakehouseFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        self.check(&request, "the handshake")?;
        let token = presented_token(request.metadata())?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let stream = futures::stream::once(async move { Ok(reply) });
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream));
        if let Some(t) = token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            response.metadata_mut().insert("authorization", v);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let access = self.check(&request, "a query")?;
        let sql = number_placeholders(&query.query);
        let described = self
            .engine
            .describe_as(&sql, None, access)
            .await
            .map_err(FlightError::from)?;
        let ticket = TicketStatementQuery {
            statement_handle: Handle::new(sql).encode()?,
        };
        Self::info(
            &described.schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let access = self.check(&request, "a query")?;
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let described = self
            .engine
            .describe_as(&handle.sql, handle.param_values()?, access)
            .await
            .map_err(FlightError::from)?;
        Self::info(
            &described.schema,
            cmd.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request, "listing catalogs")?;
        let schema = query.into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request, "listing schemas")?;
        let schema = query.clone().into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request, "listing tables")?;
        let schema = query.clone().into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request, "listing table types")?;
        let schema = query.into_builder().schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request, "server information")?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Self::info(
            &schema,
            query.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.check(&request, "a query")?;
        self.stream(Handle::decode(&ticket.statement_handle)?, access)
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let access = self.check(&request, "a query")?;
        self.stream(Handle::decode(&query.prepared_statement_handle)?, access)
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request, "listing catalogs")?;
        let mut b = query.into_builder();
        b.append(CATALOG_NAME);
        one_batch(b.schema(), b.build())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request, "listing schemas")?;
        let mut b = query.into_builder();
        b.append(CATALOG_NAME, SCHEMA_NAME);
        one_batch(b.schema(), b.build())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request, "listing tables")?;
        let tables = self.engine.tables().await.map_err(FlightError::from)?;
        let mut b = query.into_builder();
        for t in &tables {
            b.append(CATALOG_NAME, SCHEMA_NAME, &t.name, "TABLE", &t.schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        one_batch(b.schema(), b.build())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request, "listing table types")?;
        let mut b = query.into_builder();
        b.append("TABLE");
        one_batch(b.schema(), b.build())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.check(&request, "server information")?;
        let b = query.into_builder(&self.sql_info);
        one_batch(b.schema(), b.build())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.check(&request, "binding parameters")?;
        let mut handle = Handle::decode(&query.prepared_statement_handle)?;
        let batches = parameter_batches(request, 1, "a query").await?;
        handle.params = Some(one_row(batches)?);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()?),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let access = self.check(&request, "preparing a statement")?;
        let sql = number_placeholders(&query.query);
        let described = self
            .engine
            .describe_as(&sql, None, access)
            .await
            .map_err(FlightError::from)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::new(sql).encode()?,
            dataset_schema: ipc_schema(&described.schema)?,
            parameter_schema: ipc_schema(&parameter_schema(&described.params))?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        // Handles hold no server state: nothing to free.
        self.check(&request, "closing a statement")?;
        Ok(())
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let access = self.check(&request, "a write statement")?;
        self.update(&number_placeholders(&cmd.query), None, access)
            .await
    }

    /// Runs the prepared write once per row of parameter values sent (or
    /// once with the values bound before); each run is its own version.
    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let access = self.check(&request, "a write statement")?;
        let handle = Handle::decode(&cmd.prepared_statement_handle)?;
        let batches = parameter_batches(request, MAX_UPDATE_ROWS, "ExecuteUpdate").await?;
        let rows: Vec<ParamValues> = batches
            .iter()
            .map(row_params)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        if rows.is_empty() {
            return self
                .update(&handle.sql, handle.param_values()?, access)
                .await;
        }
        let mut total: i64 = 0;
        for params in rows {
            total = total.saturating_add(self.update(&handle.sql, Some(params), access).await?);
        }
        Ok(total)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
