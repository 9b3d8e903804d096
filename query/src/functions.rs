//! The functions a query may call: DataFusion's built-ins minus those that
//! build unbounded output from a tiny query, plus JSON helpers.
//!
//! - Removed: the `generate_series` and `range` table functions and their
//!   array-building scalar twins (`SELECT count(*) FROM generate_series(1,
//!   1e12)` would spin a core until the timeout).
//! - Bounded: `repeat`, `lpad`, `rpad`, `concat`, `concat_ws`,
//!   `array_repeat` and the `||` operator on strings fail with a clear error
//!   when a row would exceed `max_function_output` characters (bytes) or
//!   elements, or one call's rows together [`BATCH_FACTOR`] times that. Their
//!   output is not counted by DataFusion's memory pool, so the bound is what
//!   keeps a doubling `s || s` in a recursive CTE from taking the machine.
//!   `||` is an operator, not a function: [`ConcatPlanner`] plans it on
//!   strings as the bounded function [`ConcatOp`], with the operator's null
//!   semantics and name.
//! - Added: `json_get_str(arguments, 'path', …)`, `json_get_int`,
//!   `json_contains`, the `->` and `->>` operators and the rest of
//!   datafusion-functions-json, so investigators can reach into `arguments`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// One call of a bounded function may build, over all its rows, this many
/// times `max_function_output`.
pub const BATCH_FACTOR: usize = 64;

/// Table functions every session lacks.
pub const REMOVED_TABLE_FUNCTIONS: [&str; 2] = ["generate_series", "range"];
/// Scalar functions every session lacks.
pub const REMOVED_SCALAR_FUNCTIONS: [&str; 2] = ["generate_series", "range"];

/// Applies the rules above to `state`.
pub fn restrict(state: &mut SessionState, max_output: usize) -> Result<()> {
    for name in REMOVED_TABLE_FUNCTIONS {
        state.deregister_udtf(name)?;
    }
    for name in REMOVED_SCALAR_FUNCTIONS {
        state.deregister_udf(name)?;
    }
    for (name, kind) in [
        ("repeat", Bound::RepeatString),
        ("lpad", Bound::Length),
        ("rpad", Bound::Length),
        ("array_repeat", Bound::Length),
        ("concat", Bound::Concat),
        ("concat_ws", Bound::ConcatWs),
    ] {
        let inner = state
            .udf(name)
            .map_err(|e| DataFusionError::Internal(format!("no built-in {name}: {e}")))?;
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(Bounded {
            inner,
            kind,
            max: max_output,
        })))?;
    }
    datafusion_functions_json::register_all(state)?;
    let concat = Arc::new(ScalarUDF::new_from_impl(ConcatOp::new(max_output)));
    state.register_expr_planner(Arc::new(ConcatPlanner { concat }))?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: |s| × n.
    RepeatString,
    /// `lpad(s, n)`, `rpad(s, n)`, `array_repeat(x, n)`: n.
    Length,
    /// `concat(a, b, …)`: |a| + |b| + ….
    Concat,
    /// `concat_ws(sep, a, b, …)`: |a| + |b| + … + |sep| × (arguments - 2).
    ConcatWs,
}

/// A built-in whose output size is checked before it runs.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    kind: Bound,
    max: usize,
}

impl Bounded {
    fn check(&self, args: &ScalarFunctionArgs) -> Result<()> {
        if matches!(self.kind, Bound::Concat | Bound::ConcatWs) {
            let sizes = string_lengths(&args.args, args.number_rows)?;
            let separators = match self.kind {
                Bound::ConcatWs => args.args.len().saturating_sub(2) as u128,
                _ => 0,
            };
            return check_sizes(
                &format!("{}()", self.inner.name()),
                self.max,
                args.number_rows,
                |row| {
                    sizes.iter().enumerate().fold(0, |total, (i, lengths)| {
                        let times = if i == 0 && separators > 0 {
                            separators
                        } else {
                            1
                        };
                        total + times * lengths.get(row).copied().unwrap_or(0)
                    })
                },
            );
        }
        let Some(count) = args.args.get(1) else {
            return Ok(());
        };
        let counts = count.to_array(args.number_rows)?;
        let counts = arrow::compute::cast(&counts, &DataType::Int64)?;
        let counts = counts.as_primitive::<Int64Type>();
        let lengths = match (self.kind, args.args.first()) {
            (Bound::RepeatString, Some(first)) => {
                let strings = first.to_array(args.number_rows)?;
                Some(arrow::compute::kernels::length::length(&strings)?)
            }
            _ => None,
        };
        let lengths = lengths
            .map(|l| arrow::compute::cast(&l, &DataType::Int64))
            .transpose()?;
        check_sizes(
            &format!("{}()", self.inner.name()),
            self.max,
            counts.len(),
            |row| {
                if counts.is_null(row) {
                    return 0;
                }
                let n = counts.value(row).max(0) as u128;
                match &lengths {
                    Some(l) if !l.is_null(row) => {
                        n * l.as_primitive::<Int64Type>().value(row).max(0) as u128
                    }
                    _ => n,
                }
            },
        )
    }
}

/// Fails when one of `rows` values (sized by `size`) exceeds `max`, or all of
/// them together [`BATCH_FACTOR`] × `max`.
fn check_sizes(name: &str, max: usize, rows: usize, size: impl Fn(usize) -> u128) -> Result<()> {
    let mut total = 0u128;
    for row in 0..rows {
        let size = size(row);
        if size > max as u128 {
            return Err(DataFusionError::Execution(format!(
                "{name} would build {size} characters or elements in one value; the limit is {max} (query.max_function_output)"
            )));
        }
        total += size;
        if total > (max as u128) * BATCH_FACTOR as u128 {
            return Err(DataFusionError::Execution(format!(
                "{name} would build more than {total} characters or elements in {rows} rows; the limit is {BATCH_FACTOR} × {max} (query.max_function_output)"
            )));
        }
    }
    Ok(())
}

/// The byte length of each argument's value in each row (0 for null; a
/// non-string argument as its text form).
fn string_lengths(args: &[ColumnarValue], rows: usize) -> Result<Vec<Vec<u128>>> {
    args.iter()
        .map(|arg| {
            let array = arg.to_array(rows)?;
            let strings = match array.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => array,
                _ => arrow::compute::cast(&array, &DataType::Utf8)?,
            };
            let lengths = arrow::compute::kernels::length::length(&strings)?;
            let lengths = arrow::compute::cast(&lengths, &DataType::Int64)?;
            let lengths = lengths.as_primitive::<Int64Type>();
            Ok((0..rows)
                .map(|row| {
                    if lengths.is_null(row) {
                        0
                    } else {
                        lengths.value(row).max(0) as u128
                    }
                })
                .collect())
        })
        .collect()
}

/// Plans `a || b` on strings as [`ConcatOp`]; lists are left to
/// DataFusion's planner (`array_concat` and friends), which runs first.
#[derive(Debug)]
pub struct ConcatPlanner {
    concat: Arc<ScalarUDF>,
}

impl ExprPlanner for ConcatPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let is_list = |e: &Expr| {
            e.get_type(schema).map(|t| {
                matches!(
                    t,
                    DataType::List(_)
                        | DataType::LargeList(_)
                        | DataType::FixedSizeList(..)
                        | DataType::ListView(_)
                        | DataType::LargeListView(_)
                )
            })
        };
        if is_list(&expr.left)? || is_list(&expr.right)? {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::clone(&self.concat), vec![expr.left, expr.right]),
        )))
    }
}

/// `a || b` on strings, bounded by `max_function_output`: null when either
/// side is null (unlike `concat`), a non-string side as its text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ConcatOp {
    signature: Signature,
    max: usize,
}

impl ConcatOp {
    pub fn new(max: usize) -> ConcatOp {
        ConcatOp {
            signature: Signature::user_defined(Volatility::Immutable),
            max,
        }
    }
}

impl ScalarUDFImpl for ConcatOp {
    fn name(&self) -> &str {
        "string_concat_operator"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let large = arg_types.contains(&DataType::LargeUtf8);
        let target = if large {
            DataType::LargeUtf8
        } else {
            DataType::Utf8
        };
        Ok(vec![target; arg_types.len()])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Utf8))
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [left, right] => Ok(format!("{} || {}", left.schema_name(), right.schema_name())),
            _ => Err(DataFusionError::Internal("|| takes two operands".into())),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let sizes = string_lengths(&args.args, rows)?;
        check_sizes("||", self.max, rows, |row| {
            sizes.iter().map(|s| s.get(row).copied().unwrap_or(0)).sum()
        })?;
        let [left, right] = args.args.as_slice() else {
            return Err(DataFusionError::Internal("|| takes two operands".into()));
        };
        let left: ArrayRef = left.to_array(rows)?;
        let right: ArrayRef = right.to_array(rows)?;
        let joined = arrow::compute::kernels::concat_elements::concat_elements_dyn(&left, &right)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &joined, 0,
            )?));
        }
        Ok(ColumnarValue::Array(joined))
    }
}

impl ScalarUDFImpl for Bounded {
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

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args)?;
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
