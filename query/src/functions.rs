//! The functions a query may call: DataFusion's built-ins minus those that
//! build unbounded output from a tiny query, plus JSON helpers.
//!
//! - Removed: the `generate_series` and `range` table functions and their
//!   array-building scalar twins (`SELECT count(*) FROM generate_series(1,
//!   1e12)` would spin a core until the timeout).
//! - Bounded: `repeat`, `lpad`, `rpad` and `array_repeat` fail with a clear
//!   error when a row would exceed `max_function_output` characters or
//!   elements.
//! - Added: `json_get_str(arguments, 'path', …)`, `json_get_int`,
//!   `json_contains`, the `->` and `->>` operators and the rest of
//!   datafusion-functions-json, so investigators can reach into `arguments`.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

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
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(s, n)`: |s| × n.
    RepeatString,
    /// `lpad(s, n)`, `rpad(s, n)`, `array_repeat(x, n)`: n.
    Length,
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
        for row in 0..counts.len() {
            if counts.is_null(row) {
                continue;
            }
            let n = counts.value(row).max(0) as u128;
            let size = match &lengths {
                Some(l) if !l.is_null(row) => {
                    n * l.as_primitive::<Int64Type>().value(row).max(0) as u128
                }
                _ => n,
            };
            if size > self.max as u128 {
                return Err(DataFusionError::Execution(format!(
                    "{}() would build {size} characters or elements in one value; the limit is {} (query.max_function_output)",
                    self.inner.name(),
                    self.max
                )));
            }
        }
        Ok(())
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
