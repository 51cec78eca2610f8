//! Checked versions of the functions that allocate from a number.
//!
//! `lpad('x', 2000000000)`, `repeat(s, n)`, `array_repeat(v, n)`,
//! `range(0, n)` allocate their whole output inside one call, outside
//! DataFusion's memory pool, so the pool's limit never sees them and one
//! query can grow the process until the kernel kills it. Each function below
//! is re-registered wrapped in [`Checked`], which computes an upper bound of
//! the call's output from its arguments (lengths and counts, not values)
//! *before* calling the real function, and fails with
//! [`OutputTooLarge`] (413 `value_too_large`, naming the function) when the
//! bound is over `[queryd].function_output_limit`. The bound is for one call,
//! i.e. one batch of rows, since that is what is allocated at once.
//!
//! Functions whose output is at most a small multiple of their input
//! (`upper`, `to_hex`, `overlay`, `make_array`, …) need no cap: their input
//! already exists and is bounded the same way; aggregates such as
//! `string_agg` and `array_agg` report their state to the memory pool.
//! `concat`/`concat_ws` and `replace`/`regexp_replace` (whose replacement can
//! multiply the input) are checked too. Anything that still escapes is what
//! the process memory guard ([`crate::guard`]) is for.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalUnit, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

use crate::error::OutputTooLarge;

/// How a function's output size is bounded from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: len(s) × n.
    Repeat,
    /// `lpad/rpad(s, n [, fill])`: n characters of up to 4 bytes.
    Pad,
    /// `array_repeat(v, n)`: size(v) × n.
    ArrayRepeat,
    /// `array_resize(a, n [, v])`: n elements.
    ArrayResize,
    /// `range/generate_series([start,] stop [, step])`: the element count.
    Series,
    /// `replace(s, from, to)`.
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`.
    RegexpReplace,
    /// `concat(…)`, `concat_ws(sep, …)`: the sum of the arguments.
    Concat,
}

const CHECKED: [(&str, Bound); 10] = [
    ("repeat", Bound::Repeat),
    ("lpad", Bound::Pad),
    ("rpad", Bound::Pad),
    ("array_repeat", Bound::ArrayRepeat),
    ("array_resize", Bound::ArrayResize),
    ("range", Bound::Series),
    ("generate_series", Bound::Series),
    ("replace", Bound::Replace),
    ("regexp_replace", Bound::RegexpReplace),
    ("concat", Bound::Concat),
];

/// Replaces the registered functions above (and `concat_ws`) with checked
/// versions capped at `limit` bytes per call.
pub(crate) fn register_checked(state: &mut SessionState, limit: u64) -> Result<()> {
    let mut list: Vec<(&str, Bound)> = CHECKED.to_vec();
    list.push(("concat_ws", Bound::Concat));
    for (name, bound) in list {
        let Some(inner) = state.scalar_functions().get(name).cloned() else {
            continue;
        };
        let checked = Checked {
            inner,
            bound,
            limit,
        };
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(checked)))?;
    }
    Ok(())
}

/// A function with its output bounded before it runs.
#[derive(Debug)]
struct Checked {
    inner: Arc<ScalarUDF>,
    bound: Bound,
    limit: u64,
}

impl PartialEq for Checked {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.bound == other.bound && self.limit == other.limit
    }
}

impl Eq for Checked {}

impl Hash for Checked {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.bound.hash(state);
        self.limit.hash(state);
    }
}

impl ScalarUDFImpl for Checked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    // `simplify` is deliberately not forwarded: a rewrite would call the
    // unchecked function.

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows.max(1);
        let bytes = output_bound(self.bound, &args.args, rows)?;
        if bytes > u128::from(self.limit) {
            return Err(DataFusionError::External(Box::new(OutputTooLarge {
                function: self.inner.name().to_string(),
                bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
                limit: self.limit,
            })));
        }
        self.inner.invoke_with_args(args)
    }
}

/// An upper bound of the bytes one call produces, summed over its rows.
fn output_bound(bound: Bound, args: &[ColumnarValue], rows: usize) -> Result<u128> {
    let arg = |i: usize| args.get(i);
    let sum_rows = |f: &dyn Fn(usize) -> u128| -> u128 { (0..rows).map(f).sum() };
    Ok(match bound {
        Bound::Repeat => {
            let (s, n) = (lens(arg(0), rows)?, ints(arg(1), rows)?);
            sum_rows(&|r| s[r] * pos(n[r]))
        }
        Bound::Pad => {
            let n = ints(arg(1), rows)?;
            let wide = !ascii(arg(0), rows)? || !ascii(arg(2), rows)?;
            let width = if wide { 4 } else { 1 };
            sum_rows(&|r| pos(n[r]) * width)
        }
        Bound::ArrayRepeat => {
            let (v, n) = (elem_size(arg(0), rows), ints(arg(1), rows)?);
            sum_rows(&|r| pos(n[r]) * (v + 8))
        }
        Bound::ArrayResize => {
            let n = ints(arg(1), rows)?;
            let v = arg(2).map_or(0, |a| elem_size(Some(a), rows));
            sum_rows(&|r| pos(n[r]) * (v + 8))
        }
        Bound::Series => series_bound(args, rows)?,
        Bound::Replace => {
            let (s, from, to) = (
                lens(arg(0), rows)?,
                lens(arg(1), rows)?,
                lens(arg(2), rows)?,
            );
            sum_rows(&|r| {
                if to[r] <= from[r] {
                    s[r]
                } else {
                    s[r] + (s[r] / from[r].max(1) + 1) * to[r]
                }
            })
        }
        Bound::RegexpReplace => {
            let (s, rep) = (lens(arg(0), rows)?, lens(arg(2), rows)?);
            let global = strings(arg(3), rows)?;
            let refs = strings(arg(2), rows)?;
            sum_rows(&|r| {
                let matches = if global[r].contains('g') { s[r] + 1 } else { 1 };
                // Group references expand to text of disjoint matches.
                let group_refs = refs[r].matches(['\\', '$']).count() as u128;
                s[r] + matches * rep[r] + group_refs * s[r]
            })
        }
        Bound::Concat => {
            let mut total = 0u128;
            for a in args {
                total += lens(Some(a), rows)?.iter().sum::<u128>();
            }
            total
        }
    })
}

fn pos(n: i64) -> u128 {
    u128::try_from(n.max(0)).unwrap_or(0)
}

/// One row's worth of an argument: scalars broadcast.
fn per_row<T: Clone>(v: Vec<T>, rows: usize) -> Vec<T> {
    if v.len() == 1 && rows > 1 {
        vec![v[0].clone(); rows]
    } else {
        v
    }
}

fn as_array(a: &ColumnarValue) -> Result<ArrayRef> {
    match a {
        ColumnarValue::Array(arr) => Ok(arr.clone()),
        ColumnarValue::Scalar(s) => s.to_array_of_size(1),
    }
}

/// Integer arguments (counts, lengths); nulls and non-integers are 0.
fn ints(a: Option<&ColumnarValue>, rows: usize) -> Result<Vec<i64>> {
    let Some(a) = a else {
        return Ok(vec![0; rows]);
    };
    let arr = as_array(a)?;
    let Ok(cast) = datafusion::arrow::compute::cast(&arr, &DataType::Int64) else {
        return Ok(vec![0; rows]);
    };
    let ints = cast.as_primitive::<Int64Type>();
    Ok(per_row(
        (0..ints.len())
            .map(|i| if ints.is_null(i) { 0 } else { ints.value(i) })
            .collect(),
        rows,
    ))
}

/// String arguments' values (empty for nulls or a missing argument).
fn strings(a: Option<&ColumnarValue>, rows: usize) -> Result<Vec<String>> {
    let Some(a) = a else {
        return Ok(vec![String::new(); rows]);
    };
    if let ColumnarValue::Scalar(s) = a {
        let v = match s {
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)) => v.clone(),
            _ => String::new(),
        };
        return Ok(vec![v; rows]);
    }
    let arr = as_array(a)?;
    let Ok(cast) = datafusion::arrow::compute::cast(&arr, &DataType::Utf8) else {
        return Ok(vec![String::new(); rows]);
    };
    let s = cast.as_string::<i32>();
    Ok((0..s.len())
        .map(|i| {
            if s.is_null(i) {
                String::new()
            } else {
                s.value(i).to_string()
            }
        })
        .collect())
}

/// Byte lengths of a string (or binary) argument, per row.
fn lens(a: Option<&ColumnarValue>, rows: usize) -> Result<Vec<u128>> {
    let Some(a) = a else {
        return Ok(vec![0; rows]);
    };
    if let ColumnarValue::Scalar(s) = a {
        let n = match s {
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)) => v.len(),
            ScalarValue::Binary(Some(v))
            | ScalarValue::LargeBinary(Some(v))
            | ScalarValue::BinaryView(Some(v)) => v.len(),
            other if other.is_null() => 0,
            other => other.to_string().len(),
        };
        return Ok(vec![n as u128; rows]);
    }
    let arr = as_array(a)?;
    let n = arr.len();
    let out: Vec<u128> = match arr.data_type() {
        DataType::Utf8 => {
            let s = arr.as_string::<i32>();
            (0..n).map(|i| s.value_length(i) as u128).collect()
        }
        DataType::LargeUtf8 => {
            let s = arr.as_string::<i64>();
            (0..n).map(|i| s.value_length(i) as u128).collect()
        }
        DataType::Utf8View => {
            let s = arr.as_string_view();
            (0..n).map(|i| s.value(i).len() as u128).collect()
        }
        // Anything else is printed; a generous per-row size.
        _ => {
            let each = (arr.get_array_memory_size() / n.max(1)) as u128 + 24;
            vec![each; n]
        }
    };
    Ok(per_row(out, rows))
}

/// Whether every value of a string argument is ASCII (absent: yes).
fn ascii(a: Option<&ColumnarValue>, _rows: usize) -> Result<bool> {
    Ok(match a {
        None => true,
        Some(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)),
        )) => v.is_ascii(),
        Some(ColumnarValue::Scalar(_)) => true,
        Some(ColumnarValue::Array(arr)) => match arr.data_type() {
            DataType::Utf8 => arr.as_string::<i32>().value_data().is_ascii(),
            DataType::LargeUtf8 => arr.as_string::<i64>().value_data().is_ascii(),
            DataType::Utf8View => arr.as_string_view().iter().flatten().all(str::is_ascii),
            _ => true,
        },
    })
}

/// The average size of one value of an argument.
fn elem_size(a: Option<&ColumnarValue>, _rows: usize) -> u128 {
    match a {
        None => 0,
        Some(ColumnarValue::Scalar(s)) => s.size() as u128,
        Some(ColumnarValue::Array(arr)) => (arr.get_array_memory_size() / arr.len().max(1)) as u128,
    }
}

/// Elements of `range`/`generate_series` × 8 bytes. Integer series are
/// counted exactly; date and timestamp series by their span over the
/// step's shortest possible length (a month ≥ 28 days, a day ≥ 23 hours).
fn series_bound(args: &[ColumnarValue], rows: usize) -> Result<u128> {
    let temporal = args.first().is_some_and(|a| {
        matches!(
            a.data_type(),
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
    });
    let (start, stop, step) = if temporal {
        let ns = |a: Option<&ColumnarValue>| -> Result<Vec<i64>> {
            let Some(a) = a else {
                return Ok(vec![0; rows]);
            };
            let arr = as_array(a)?;
            let Ok(t) = datafusion::arrow::compute::cast(
                &arr,
                &DataType::Timestamp(TimeUnit::Nanosecond, None),
            ) else {
                return Ok(vec![0; rows]);
            };
            let t = datafusion::arrow::compute::cast(&t, &DataType::Int64)?;
            ints(Some(&ColumnarValue::Array(t)), rows)
        };
        (
            ns(args.first())?,
            ns(args.get(1))?,
            step_nanos(args.get(2), rows)?,
        )
    } else if args.len() == 1 {
        (vec![0; rows], ints(args.first(), rows)?, vec![1; rows])
    } else {
        let step = match args.get(2) {
            Some(a) => ints(Some(a), rows)?,
            None => vec![1; rows],
        };
        (ints(args.first(), rows)?, ints(args.get(1), rows)?, step)
    };
    let mut total = 0u128;
    for r in 0..rows {
        let span = i128::from(stop[r]) - i128::from(start[r]);
        let step = i128::from(step[r]);
        if step == 0 || (span != 0 && span.signum() != step.signum()) {
            continue; // the function itself refuses or returns nothing
        }
        total += (span / step).unsigned_abs() + 1;
    }
    Ok(total * 8)
}

/// The shortest length of an interval step, in nanoseconds.
fn step_nanos(a: Option<&ColumnarValue>, rows: usize) -> Result<Vec<i64>> {
    let Some(a) = a else {
        // The default step of a temporal series is one day.
        return Ok(vec![23 * 3_600_000_000_000; rows]);
    };
    let arr = as_array(a)?;
    let Ok(iv) =
        datafusion::arrow::compute::cast(&arr, &DataType::Interval(IntervalUnit::MonthDayNano))
    else {
        return exec_err!("range step must be an interval");
    };
    let iv = iv.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
    const DAY: i64 = 23 * 3_600_000_000_000;
    Ok(per_row(
        (0..iv.len())
            .map(|i| {
                let v = iv.value(i);
                i64::from(v.months)
                    .saturating_mul(28 * DAY)
                    .saturating_add(i64::from(v.days).saturating_mul(DAY))
                    .saturating_add(v.nanoseconds)
            })
            .collect(),
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_i(n: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))
    }

    fn scalar_s(s: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(s.to_string())))
    }

    #[test]
    fn bounds_follow_the_arguments() {
        let b = |bound, args: &[ColumnarValue], rows| output_bound(bound, args, rows).unwrap();
        assert_eq!(b(Bound::Repeat, &[scalar_s("ab"), scalar_i(10)], 3), 60);
        assert_eq!(
            b(Bound::Pad, &[scalar_s("x"), scalar_i(2_000_000_000)], 1),
            2_000_000_000
        );
        assert_eq!(b(Bound::Pad, &[scalar_s("é"), scalar_i(10)], 1), 40);
        assert_eq!(b(Bound::Series, &[scalar_i(1), scalar_i(10)], 1), 80);
        assert_eq!(b(Bound::Series, &[scalar_i(10), scalar_i(1)], 1), 0);
        assert_eq!(
            b(
                Bound::Series,
                &[scalar_i(0), scalar_i(100), scalar_i(10)],
                2
            ),
            176
        );
        assert_eq!(
            b(
                Bound::Replace,
                &[scalar_s("aaaa"), scalar_s("a"), scalar_s("bb")],
                1
            ),
            14
        );
        assert_eq!(b(Bound::Concat, &[scalar_s("ab"), scalar_s("cde")], 4), 20);
        let negative = b(Bound::Repeat, &[scalar_s("ab"), scalar_i(-5)], 1);
        assert_eq!(negative, 0);
    }
}
