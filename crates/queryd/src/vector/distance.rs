//! `cosine_distance(a, b)`, `l2_distance(a, b)` and `inner_product(a, b)`:
//! brute-force vector math over any table.
//!
//! Each argument is a vector column (`fixed_size_list`, `list` or
//! `large_list` of any numeric type; computed in `f32` with the same SIMD
//! kernels as the HNSW engine) or a constant such as `[0.1, 0.2]` or
//! `embed('text')`. The answer is a `DOUBLE`; `NULL` when either vector is
//! `NULL`, has a `NULL` element, or (cosine only) has length zero in the
//! Euclidean sense. Vectors of different lengths are an error naming both
//! lengths. The definitions are pgvector's: `l2_distance` is the Euclidean
//! distance (not squared), `cosine_distance` is 1 − cos, `inner_product` is
//! a·b.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, OffsetSizeTrait,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float32Type};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use lakehouse_hnsw::distance::Kernels;

/// Which formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Formula {
    Cosine,
    L2,
    Inner,
}

impl Formula {
    fn name(self) -> &'static str {
        match self {
            Formula::Cosine => "cosine_distance",
            Formula::L2 => "l2_distance",
            Formula::Inner => "inner_product",
        }
    }

    /// The value for two vectors of equal length.
    fn apply(self, k: &Kernels, a: &[f32], b: &[f32]) -> Option<f64> {
        match self {
            Formula::L2 => Some(f64::from((k.l2)(a, b)).sqrt()),
            Formula::Inner => Some(f64::from((k.dot)(a, b))),
            Formula::Cosine => {
                let (ab, aa, bb) = ((k.dot)(a, b), (k.dot)(a, a), (k.dot)(b, b));
                let norms = (f64::from(aa) * f64::from(bb)).sqrt();
                (norms > 0.0).then(|| 1.0 - f64::from(ab) / norms)
            }
        }
    }
}

fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(Kernels::detect)
}

/// The three functions, to register.
pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    [Formula::Cosine, Formula::L2, Formula::Inner]
        .into_iter()
        .map(|f| Arc::new(ScalarUDF::new_from_impl(Distance::new(f))))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Distance {
    formula: Formula,
    signature: Signature,
}

impl Distance {
    fn new(formula: Formula) -> Self {
        Self {
            formula,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// Whether `t` is a vector type the functions take.
pub(crate) fn is_vector_type(t: &DataType) -> bool {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().is_numeric()
        }
        DataType::Null => true,
        _ => false,
    }
}

impl ScalarUDFImpl for Distance {
    fn name(&self) -> &str {
        self.formula.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        for (i, t) in args.iter().enumerate() {
            if !is_vector_type(t) {
                return plan_err!(
                    "{}: argument {} is {t}, not a vector (a list of numbers such as [0.1, 0.2], or a list column)",
                    self.name(),
                    i + 1
                );
            }
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let [a, b] = args.args.as_slice() else {
            return exec_err!("{} takes two vectors", self.name());
        };
        let a = Vectors::of(a, rows)?;
        let b = Vectors::of(b, rows)?;
        let n = if all_scalar { 1 } else { rows };
        let k = kernels();
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let (Some(x), Some(y)) = (a.get(row), b.get(row)) else {
                out.push(None);
                continue;
            };
            if x.len() != y.len() {
                return exec_err!(
                    "{}: the vectors have different lengths ({} and {})",
                    self.name(),
                    x.len(),
                    y.len()
                );
            }
            out.push(self.formula.apply(k, x, y));
        }
        let arr: ArrayRef = Arc::new(Float64Array::from(out));
        if all_scalar {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&arr, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(arr))
    }
}

/// A column (or a constant, broadcast) of vectors as `f32` slices.
pub(crate) struct Vectors {
    values: Float32Array,
    /// (start, len) of each row in `values`; `None` for a NULL vector or
    /// one with a NULL element.
    rows: Vec<Option<(usize, usize)>>,
    /// A constant: every row is row 0.
    broadcast: bool,
}

impl Vectors {
    pub(crate) fn of(v: &ColumnarValue, rows: usize) -> Result<Self> {
        match v {
            ColumnarValue::Array(a) => Self::from_array(a, false),
            ColumnarValue::Scalar(s) => Self::from_array(&s.to_array_of_size(1)?, true),
        }
        .map(|mut v| {
            if !v.broadcast && v.rows.len() < rows {
                v.rows.resize(rows, None);
            }
            v
        })
    }

    fn from_array(a: &ArrayRef, broadcast: bool) -> Result<Self> {
        let (child, spans): (ArrayRef, Vec<Option<(usize, usize)>>) = match a.data_type() {
            DataType::Null => (
                Arc::new(Float32Array::from(Vec::<f32>::new())),
                vec![None; a.len()],
            ),
            DataType::List(_) => list_spans::<i32>(a),
            DataType::LargeList(_) => list_spans::<i64>(a),
            DataType::FixedSizeList(_, size) => {
                let l = a.as_fixed_size_list();
                let size = *size as usize;
                let spans = (0..l.len())
                    .map(|i| l.is_valid(i).then(|| ((l.offset() + i) * size, size)))
                    .collect();
                (l.values().clone(), spans)
            }
            other => return exec_err!("{other} is not a vector"),
        };
        let values = cast(&child, &DataType::Float32)?;
        let values = values.as_primitive::<Float32Type>().clone();
        let rows = if values.null_count() == 0 {
            spans
        } else {
            spans
                .into_iter()
                .map(|s| s.filter(|&(start, len)| (start..start + len).all(|j| values.is_valid(j))))
                .collect()
        };
        Ok(Self {
            values,
            rows,
            broadcast,
        })
    }

    pub(crate) fn get(&self, row: usize) -> Option<&[f32]> {
        let row = if self.broadcast { 0 } else { row };
        let (start, len) = (*self.rows.get(row)?)?;
        Some(&self.values.values()[start..start + len])
    }
}

/// A list array's values and each row's `(offset, length)` (`None` for a
/// null row), for `List` and `LargeList` alike.
fn list_spans<O: OffsetSizeTrait>(a: &ArrayRef) -> (ArrayRef, Vec<Option<(usize, usize)>>) {
    let l = a.as_list::<O>();
    let o = l.value_offsets();
    let spans = (0..l.len())
        .map(|i| {
            l.is_valid(i)
                .then(|| (o[i].as_usize(), (o[i + 1] - o[i]).as_usize()))
        })
        .collect();
    (l.values().clone(), spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> &'static Kernels {
        kernels()
    }

    #[test]
    fn formulas_are_pgvectors() {
        let (a, b) = ([1.0f32, 0.0, 0.0], [0.0f32, 3.0, 4.0]);
        assert_eq!(Formula::L2.apply(k(), &a, &b), Some(26f64.sqrt()));
        assert_eq!(Formula::Inner.apply(k(), &a, &b), Some(0.0));
        assert_eq!(Formula::Cosine.apply(k(), &a, &b), Some(1.0));
        let c = [2.0f32, 0.0, 0.0];
        assert!(Formula::Cosine.apply(k(), &a, &c).unwrap().abs() < 1e-7);
        assert_eq!(Formula::Cosine.apply(k(), &a, &[0.0; 3]), None);
        assert_eq!(Formula::Inner.apply(k(), &b, &b), Some(25.0));
    }
}
