//! `embed(text)`: a text's sentence embedding, from the model configured in
//! `[embed].model_dir` (all-MiniLM-L6-v2: `fixed_size_list<float>[384]`, unit
//! length), so `vector_search('docs', embed('lakehouse'), 10)` and
//! `cosine_distance(v, embed('…'))` work. A column of texts is embedded one
//! batch at a time, on every core. `NULL` in, `NULL` out. Without a model the
//! call is refused while planning: 501 `no_embedding_model`, naming the
//! setting.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use lakehouse_common::embed::{TextEmbedder, not_configured};

/// The `embed` function over `model` (`None`: refused with the setting's
/// name).
pub(crate) fn function(model: Option<Arc<dyn TextEmbedder>>) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Embed {
        model,
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

struct Embed {
    model: Option<Arc<dyn TextEmbedder>>,
    signature: Signature,
}

impl std::fmt::Debug for Embed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embed")
            .field("model", &self.model.as_ref().map(|m| m.model().to_string()))
            .finish()
    }
}

impl PartialEq for Embed {
    fn eq(&self, other: &Self) -> bool {
        match (&self.model, &other.model) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for Embed {}

impl std::hash::Hash for Embed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.model.is_some().hash(state);
    }
}

fn model_error(e: lakehouse_common::EmbedError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl Embed {
    fn model(&self) -> Result<&Arc<dyn TextEmbedder>> {
        self.model
            .as_ref()
            .ok_or_else(|| model_error(not_configured()))
    }

    fn item_type(dim: usize) -> DataType {
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, true)),
            dim as i32,
        )
    }

    /// Embeds the non-null texts of `texts` (utf8 of any width).
    fn embed_array(&self, texts: &ArrayRef) -> Result<ArrayRef> {
        let model = self.model()?;
        let dim = model.dim();
        let texts = cast(texts, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let present: Vec<&str> = texts.iter().flatten().collect();
        let flat = run_blocking(|| model.embed(&present)).map_err(model_error)?;
        if flat.len() != present.len() * dim {
            return exec_err!(
                "the embedding model returned {} floats for {} texts of {dim} dimensions",
                flat.len(),
                present.len()
            );
        }
        // NULL rows get zeros under a null bit.
        let mut values = Vec::with_capacity(texts.len() * dim);
        let mut vectors = flat.chunks_exact(dim);
        for i in 0..texts.len() {
            match texts.is_valid(i).then(|| vectors.next()).flatten() {
                Some(v) => values.extend_from_slice(v),
                None => values.extend(std::iter::repeat_n(0.0, dim)),
            }
        }
        let nulls = texts.nulls().cloned();
        let field = Arc::new(Field::new("item", DataType::Float32, true));
        Ok(Arc::new(FixedSizeListArray::try_new(
            field,
            dim as i32,
            Arc::new(Float32Array::from(values)),
            nulls,
        )?))
    }
}

/// Runs the model's blocking call without stalling the runtime it is on
/// (queries execute on queryd's own multi-threaded runtime).
fn run_blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        "embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let model = self.model()?;
        match args {
            [DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null] => {
                Ok(Self::item_type(model.dim()))
            }
            [other] => plan_err!("embed takes a text, not {other}"),
            _ => plan_err!("embed takes one text"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(self.embed_array(a)?)),
            ColumnarValue::Scalar(s) => {
                let arr = self.embed_array(&s.to_array_of_size(1)?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&arr, 0)?))
            }
        }
    }
}
