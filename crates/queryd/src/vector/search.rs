//! `vector_search(index, query, k [, filter] [, ef])` and
//! `hybrid_search(index, text, k [, filter] [, ef])`: an index's nearest items
//! as a table, to join with the dataset it follows.
//!
//! `query` is a vector (`[0.1, …]`, `embed('text')`, any constant
//! expression) or a text, which vectord embeds; `filter` is a JSON object of
//! metadata equalities (`'{"lang": "en"}'`), as in the search API; `ef` (an
//! integer, told from the filter by its type) is the HNSW candidate list of
//! the search, as the search API's `ef`: larger is slower and finds more of
//! the true nearest (default 64, raised to `k`). The
//! search runs when the plan executes, through the [`Vectors`] trait: in
//! process, or vectord's HTTP client in a split deployment.
//!
//! For an index that follows a dataset the columns are the dataset's id
//! column (its name and type, so `JOIN docs USING (doc_id)` works), the
//! index's metadata columns (their dataset types), `distance`, `score`
//! (hybrid only: the reciprocal-rank-fusion score) and `dataset_version`
//! (the table version the index reflected when it answered). A plain index
//! gives `id`, `distance`, `score` and `metadata` (JSON text). Rows come
//! nearest first.
//!
//! **Filters go into the index.** `WHERE v.lang = 'en'` on a metadata column
//! is pushed into the search, so the answer is the `k` nearest rows *with*
//! `lang = 'en'` (exact top-k, as the search API's filter), not the `k`
//! nearest filtered afterwards. Other predicates apply after the search.
//!
//! Table functions are planned synchronously and the index's description is
//! not: [`Prepared::fetch`] looks up every index a statement names before it
//! is planned.
//!
//! **Parameters.** The query, `k`, the filter and `ef` may be `$n` (or `?`)
//! parameters, as a PostgreSQL or Flight SQL client binds an embedding:
//! their values replace them when the function is planned. A statement
//! described before its values are bound plans with the columns alone (the
//! search runs only when a plan with values executes); its parameters are
//! reported by [`Prepared::unbound`] with the type the argument takes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, RecordBatchOptions, StringArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, ParamValues, Result, ScalarValue, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
};
use lakehouse_vectord::{Hit, IndexInfo, SearchRequest, Vectors};
use parking_lot::Mutex;
use serde_json::{Map, Value as Json};

/// The two function names.
pub(crate) const VECTOR_SEARCH: &str = "vector_search";
pub(crate) const HYBRID_SEARCH: &str = "hybrid_search";

/// The indexes a statement names, described before planning.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    views: Mutex<HashMap<String, Arc<View>>>,
    /// The error of a search that failed while the plan was built (a
    /// DataFusion error cannot carry it by value).
    failed: Mutex<Option<lakehouse_vectord::VectorError>>,
    /// The statement's parameter values, for `$n` in the arguments.
    params: Option<ParamValues>,
    /// `$n` in the arguments while no values are bound, with the type the
    /// argument takes when there is one.
    unbound: Mutex<Vec<(String, Option<DataType>)>>,
}

/// What planning needs to know of one index.
#[derive(Debug)]
struct View {
    info: IndexInfo,
    /// The id column (name, type) for a dataset index.
    id: Option<Field>,
    /// The metadata columns with their dataset types.
    metadata: Vec<Field>,
}

/// The index names (first arguments, string literals) of the table
/// functions in `stmt`.
pub(crate) fn index_names(stmt: &DfStatement) -> Vec<String> {
    struct Finder(Vec<String>);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> std::ops::ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = t
                && let Some(f) = name.0.last().and_then(|p| p.as_ident())
                && [VECTOR_SEARCH, HYBRID_SEARCH]
                    .iter()
                    .any(|n| f.value.eq_ignore_ascii_case(n))
                && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(
                    datafusion::sql::sqlparser::ast::Expr::Value(v),
                ))) = args.args.first()
                && let Value::SingleQuotedString(s) = &v.value
            {
                self.0.push(s.clone());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut f = Finder(Vec::new());
    if let DfStatement::Statement(s) = stmt {
        let _ = s.visit(&mut f);
    }
    f.0.sort();
    f.0.dedup();
    f.0
}

impl Prepared {
    /// For a statement whose `$n` parameters have `params`.
    pub(crate) fn new(params: Option<ParamValues>) -> Self {
        Self {
            params,
            ..Self::default()
        }
    }

    /// The parameters in the functions' arguments that had no value when
    /// they were planned, each with the type its argument takes if known.
    pub(crate) fn unbound(&self) -> Vec<(String, Option<DataType>)> {
        self.unbound.lock().clone()
    }

    /// `e` with its parameters replaced by their values; `None` when there
    /// are no values (the placeholders are then recorded, an argument that
    /// is just `$n` with the type `ty`).
    fn bind(&self, e: &Expr, ty: Option<DataType>) -> Result<Option<Expr>> {
        let mut missing = Vec::new();
        let bound = e
            .clone()
            .transform(|x| match (x, &self.params) {
                (Expr::Placeholder(p), Some(values)) => {
                    let v = values.get_placeholders_with_values(&p.id)?;
                    Ok(Transformed::yes(Expr::Literal(v.value, None)))
                }
                (Expr::Placeholder(p), None) => {
                    missing.push(p.id.clone());
                    Ok(Transformed::no(Expr::Placeholder(p)))
                }
                (other, _) => Ok(Transformed::no(other)),
            })?
            .data;
        if missing.is_empty() {
            return Ok(Some(bound));
        }
        let ty = ty.filter(|_| matches!(e, Expr::Placeholder(_)));
        let mut unbound = self.unbound.lock();
        for id in missing {
            unbound.push((id, ty.clone()));
        }
        Ok(None)
    }

    /// Describes each index `names` lists: its info from vectord and, for
    /// one that follows a dataset, its columns' types from `schema_of`.
    pub(crate) async fn fetch<F, Fut>(
        &self,
        vectors: &Arc<dyn Vectors>,
        names: Vec<String>,
        schema_of: F,
    ) -> Result<(), crate::error::QueryError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<SchemaRef>, crate::error::QueryError>>,
    {
        for name in names {
            let info = vectors.get(&name).await?;
            let (mut id, mut metadata) = (None, Vec::new());
            if let Some(src) = &info.source {
                let Some(schema) = schema_of(src.dataset.clone()).await? else {
                    return Err(crate::error::QueryError::Plan(format!(
                        "index {name:?} follows dataset {:?}, which does not exist",
                        src.dataset
                    )));
                };
                let field = |c: &str| {
                    let f = schema.field_with_name(c).map_err(|_| {
                        crate::error::QueryError::Plan(format!(
                            "index {name:?}: dataset {:?} has no column {c:?} any more",
                            src.dataset
                        ))
                    })?;
                    Ok::<_, crate::error::QueryError>(f.clone().with_nullable(true))
                };
                id = Some(field(&src.id_column)?);
                for c in &src.metadata_columns {
                    metadata.push(field(c)?);
                }
            }
            let view = View { info, id, metadata };
            self.views.lock().insert(name, Arc::new(view));
        }
        Ok(())
    }

    fn view(&self, name: &str) -> Option<Arc<View>> {
        self.views.lock().get(name).cloned()
    }

    /// The error of a search that failed, once.
    pub(crate) fn take_error(&self) -> Option<lakehouse_vectord::VectorError> {
        self.failed.lock().take()
    }
}

/// One of the two table functions, for one query.
pub(crate) struct SearchFunction {
    pub(crate) hybrid: bool,
    pub(crate) vectors: Option<Arc<dyn Vectors>>,
    pub(crate) prepared: Arc<Prepared>,
}

impl std::fmt::Debug for SearchFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchFunction")
            .field("hybrid", &self.hybrid)
            .finish_non_exhaustive()
    }
}

impl SearchFunction {
    fn fname(&self) -> &'static str {
        if self.hybrid {
            HYBRID_SEARCH
        } else {
            VECTOR_SEARCH
        }
    }
}

/// The value of a constant argument.
fn constant(session: &dyn Session, e: &Expr, what: &str, f: &str) -> Result<ScalarValue> {
    let schema = DFSchema::empty();
    let phys = session
        .create_physical_expr(e.clone(), &schema)
        .map_err(|_| plan_err_of(f, what))?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let v = phys.evaluate(&batch)?.to_array(1)?;
    ScalarValue::try_from_array(&v, 0)
}

fn plan_err_of(f: &str, what: &str) -> DataFusionError {
    DataFusionError::Plan(format!("{f}: {what} must be a constant"))
}

/// A constant list of numbers as `f32`s.
fn vector_of(v: &ScalarValue, f: &str) -> Result<Vec<f32>> {
    let arr = v.to_array_of_size(1)?;
    let rows =
        super::distance::Vectors::of(&datafusion::logical_expr::ColumnarValue::Array(arr), 1)?;
    match rows.get(0) {
        Some(x) => Ok(x.to_vec()),
        None => plan_err!("{f}: the query vector is NULL or has a NULL element"),
    }
}

impl TableFunctionImpl for SearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let f = self.fname();
        let (exprs, session) = (args.exprs(), args.session());
        if !(3..=5).contains(&exprs.len()) {
            return plan_err!("{f}(index, query, k [, filter] [, ef]) takes 3 to 5 arguments");
        }
        let Some(vectors) = self.vectors.clone() else {
            return plan_err!("{f}: this queryd has no vector service ([queryd].vectord_url)");
        };
        let name = match constant(session, &exprs[0], "the index name", f)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => s,
            _ => return plan_err!("{f}: the index name must be a string literal"),
        };
        let Some(view) = self.prepared.view(&name) else {
            return plan_err!("{f}: the index name must be a string literal");
        };
        let mut req = SearchRequest {
            vector: Vec::new(),
            k: 10,
            ef: None,
            filter: None,
            text: None,
            hybrid: self.hybrid,
        };
        let mut bound = Vec::with_capacity(exprs.len() - 1);
        for (i, e) in exprs.iter().enumerate().skip(1) {
            let ty = match i {
                1 if self.hybrid => Some(DataType::Utf8),
                2 => Some(DataType::Int64),
                _ => None,
            };
            bound.extend(self.prepared.bind(e, ty)?);
        }
        if bound.len() + 1 < exprs.len() {
            // Described before its values are bound: the columns are known,
            // the search is not (a scan refuses).
            let table = SearchTable::new(vectors, name, view, req, self.prepared.clone());
            return Ok(Arc::new(SearchTable {
                unbound: true,
                ..table
            }));
        }
        let exprs: Vec<&Expr> = std::iter::once(&exprs[0]).chain(bound.iter()).collect();
        match constant(session, exprs[1], "the query", f)? {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => req.text = Some(s),
            _ if self.hybrid => return plan_err!("{f}: the query must be a text"),
            v => req.vector = vector_of(&v, f)?,
        }
        if !req.vector.is_empty() && req.vector.len() != view.info.dim {
            return plan_err!(
                "{f}: the query vector has {} dimensions; index {name:?} has {}",
                req.vector.len(),
                view.info.dim
            );
        }
        req.k = positive(&constant(session, exprs[2], "k", f)?, "k", f)?;
        for e in exprs[3..].iter().copied() {
            let v = constant(session, e, "the filter or ef", f)?;
            if v.data_type().is_integer() {
                if req.ef.is_some() {
                    return plan_err!("{f}: ef is given twice");
                }
                req.ef = Some(positive(&v, "ef", f)?);
            } else if req.filter.is_some() {
                return plan_err!("{f}: the filter is given twice");
            } else {
                req.filter = Some(filter_of(&v, f)?);
            }
        }
        Ok(Arc::new(SearchTable::new(
            vectors,
            name,
            view,
            req,
            self.prepared.clone(),
        )))
    }
}

/// `k` or `ef`: an integer of at least 1 (vectord checks the upper bounds).
fn positive(v: &ScalarValue, what: &str, f: &str) -> Result<usize> {
    if !v.data_type().is_integer() || v.is_null() {
        return plan_err!("{f}: {what} must be an integer");
    }
    match v.cast_to(&DataType::Int64)? {
        ScalarValue::Int64(Some(n)) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => plan_err!("{f}: {what} must be at least 1"),
    }
}

fn filter_of(v: &ScalarValue, f: &str) -> Result<Map<String, Json>> {
    let text = match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s,
        _ => {
            return plan_err!(
                "{f}: the filter must be a JSON object in a string, e.g. '{{\"lang\": \"en\"}}'"
            );
        }
    };
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => Ok(m),
        _ => plan_err!(
            "{f}: the filter must be a JSON object in a string, e.g. '{{\"lang\": \"en\"}}'"
        ),
    }
}

/// One search, as a table.
struct SearchTable {
    vectors: Arc<dyn Vectors>,
    name: String,
    view: Arc<View>,
    req: SearchRequest,
    schema: SchemaRef,
    prepared: Arc<Prepared>,
    /// Planned without its parameters' values: never searched.
    unbound: bool,
}

impl std::fmt::Debug for SearchTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchTable")
            .field("index", &self.name)
            .field("request", &self.req)
            .finish_non_exhaustive()
    }
}

impl SearchTable {
    fn new(
        vectors: Arc<dyn Vectors>,
        name: String,
        view: Arc<View>,
        req: SearchRequest,
        prepared: Arc<Prepared>,
    ) -> Self {
        let mut fields = Vec::new();
        match &view.id {
            Some(id) => {
                fields.push(id.clone());
                fields.extend(view.metadata.iter().cloned());
            }
            None => fields.push(Field::new("id", DataType::Utf8, false)),
        }
        fields.push(Field::new("distance", DataType::Float64, true));
        fields.push(Field::new("score", DataType::Float64, true));
        match &view.id {
            Some(_) => fields.push(Field::new("dataset_version", DataType::UInt64, true)),
            None => fields.push(Field::new("metadata", DataType::Utf8, true)),
        }
        let schema = Arc::new(Schema::new(fields));
        Self {
            vectors,
            name,
            view,
            req,
            schema,
            prepared,
            unbound: false,
        }
    }

    /// `column = literal` on a metadata column, as a filter entry.
    fn pushable(&self, e: &Expr) -> Option<(String, Json)> {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = e
        else {
            return None;
        };
        let (col, lit) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                (c, v)
            }
            _ => return None,
        };
        self.view.metadata.iter().find(|f| f.name() == &col.name)?;
        let json = match lit {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Json::String(s.clone()),
            ScalarValue::Boolean(Some(b)) => Json::Bool(*b),
            v if v.data_type().is_integer() && !v.is_null() => {
                match v.cast_to(&DataType::Int64).ok()? {
                    ScalarValue::Int64(Some(i)) => Json::from(i),
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some((col.name.clone(), json))
    }

    /// The hits as one batch of this table's schema.
    fn batch(&self, hits: &[Hit]) -> Result<RecordBatch> {
        let mut cols: Vec<ArrayRef> = Vec::new();
        let text = |vals: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(vals)) };
        match &self.view.id {
            Some(id) => {
                let ids = text(hits.iter().map(|h| Some(h.id.clone())).collect());
                cols.push(cast(&ids, id.data_type())?);
                for f in &self.view.metadata {
                    let vals = hits
                        .iter()
                        .map(
                            |h| match h.metadata.as_ref().and_then(|m| m.get(f.name())) {
                                None | Some(Json::Null) => None,
                                Some(Json::String(s)) => Some(s.clone()),
                                Some(other) => Some(other.to_string()),
                            },
                        )
                        .collect();
                    cols.push(cast(&text(vals), f.data_type())?);
                }
            }
            None => cols.push(text(hits.iter().map(|h| Some(h.id.clone())).collect())),
        }
        let distance: Float64Array = hits.iter().map(|h| Some(f64::from(h.distance))).collect();
        cols.push(Arc::new(distance));
        let score: Float64Array = hits.iter().map(|h| h.score.map(f64::from)).collect();
        cols.push(Arc::new(score));
        match &self.view.id {
            Some(_) => {
                let v: UInt64Array = hits.iter().map(|h| h.version).collect();
                cols.push(Arc::new(v));
            }
            None => cols.push(text(
                hits.iter()
                    .map(|h| {
                        h.metadata
                            .as_ref()
                            .map(|m| Json::Object(m.clone()).to_string())
                    })
                    .collect(),
            )),
        }
        Ok(RecordBatch::try_new(self.schema.clone(), cols)?)
    }
}

#[async_trait]
impl TableProvider for SearchTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: the engine applies them again, so a value the index
        // holds in another form can only shorten the answer, never widen it.
        Ok(filters
            .iter()
            .map(|e| match self.pushable(e) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.unbound {
            return plan_err!("the statement has parameters but no values were bound");
        }
        let mut req = self.req.clone();
        for (k, v) in filters.iter().filter_map(|e| self.pushable(e)) {
            let filter = req.filter.get_or_insert_with(Map::new);
            match filter.get(&k) {
                // Two different values for one column: nothing matches.
                Some(old) if old != &v => {
                    let empty = RecordBatch::new_empty(self.schema.clone());
                    return Ok(MemorySourceConfig::try_new_exec(
                        &[vec![empty]],
                        self.schema.clone(),
                        projection.cloned(),
                    )?);
                }
                _ => {
                    filter.insert(k, v);
                }
            }
        }
        let hits = match self.vectors.search(&self.name, req).await {
            Ok(hits) => hits,
            Err(e) => {
                let msg = e.to_string();
                *self.prepared.failed.lock() = Some(e);
                return Err(DataFusionError::External(msg.into()));
            }
        };
        let batch = self.batch(&hits)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
