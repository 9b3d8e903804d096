//! Per-file statistics for a Delta `add` action, computed from the batch
//! being written: `numRecords`, and `minValues`, `maxValues` and `nullCount`
//! for the columns a table names (those predicates filter on). Readers
//! (DataFusion here, and Spark, Trino, DuckDB) skip files with them.
//!
//! Bounds are conservative, as the protocol requires of a reader's trust:
//! timestamps keep milliseconds, so a minimum is rounded down and a maximum
//! up; a string minimum is cut to [`STRING_PREFIX`] characters, and a longer
//! maximum is left out (a cut maximum would be too small).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{max, max_string, min, min_string};
use arrow::datatypes::{
    DataType, Float64Type, Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use chrono::DateTime;
use serde_json::{Map, Value, json};

/// Characters kept of a string bound, as Delta writers do by default.
pub const STRING_PREFIX: usize = 32;

/// The `stats` JSON of an `add` action for `batch`.
pub fn of(batch: &RecordBatch, columns: &[&str]) -> String {
    let mut mins = Map::new();
    let mut maxs = Map::new();
    let mut nulls = Map::new();
    for &name in columns {
        let Some(array) = batch.column_by_name(name) else {
            continue;
        };
        nulls.insert(name.to_owned(), json!(array.null_count()));
        if let Some((lo, hi)) = bounds(array.as_ref()) {
            mins.insert(name.to_owned(), lo);
            if let Some(hi) = hi {
                maxs.insert(name.to_owned(), hi);
            }
        }
    }
    json!({
        "numRecords": batch.num_rows(),
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    })
    .to_string()
}

/// The least and (when it can be stated exactly or rounded up) greatest
/// value of a column; `None` for an all-null column or a type without bounds.
fn bounds(array: &dyn Array) -> Option<(Value, Option<Value>)> {
    match array.data_type() {
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            let lo = min_string(strings)?;
            let hi = max_string(strings)?;
            let lo: String = lo.chars().take(STRING_PREFIX).collect();
            let hi = (hi.chars().count() <= STRING_PREFIX).then(|| json!(hi));
            Some((json!(lo), hi))
        }
        DataType::Int16 => {
            let a = array.as_primitive::<Int16Type>();
            Some((json!(min(a)?), Some(json!(max(a)?))))
        }
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            Some((json!(min(a)?), Some(json!(max(a)?))))
        }
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            Some((json!(min(a)?), Some(json!(max(a)?))))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            let (lo, hi) = (min(a)?, max(a)?);
            // NaN has no place in an order; leave the column unbounded.
            (lo.is_finite() && hi.is_finite()).then(|| (json!(lo), Some(json!(hi))))
        }
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => {
            let a = array.as_primitive::<TimestampMicrosecondType>();
            let lo = min(a)?.div_euclid(1000);
            let hi = (max(a)? + 999).div_euclid(1000);
            Some((json!(millis(lo)?), Some(json!(millis(hi)?))))
        }
        _ => None,
    }
}

fn millis(ms: i64) -> Option<String> {
    Some(
        DateTime::from_timestamp_millis(ms)?
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int16Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let long = "x".repeat(STRING_PREFIX + 5);
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("arguments", DataType::Utf8, true),
            Field::new("status", DataType::Int16, false),
            Field::new("latency_ms", DataType::Float64, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("tool", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("bob"), None, Some("alice")])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some(long.as_str()),
                    None,
                ])),
                Arc::new(Int16Array::from(vec![200, 403, 500])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_500, 2_000_001, 999])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![None::<&str>, None, None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn bounds_are_conservative_and_name_only_the_asked_columns() {
        let columns = [
            "user_id",
            "arguments",
            "status",
            "latency_ms",
            "time",
            "tool",
        ];
        let stats: Value = serde_json::from_str(&of(&batch(), &columns)).unwrap();
        assert_eq!(stats["numRecords"], 3);
        assert_eq!(stats["minValues"]["user_id"], "alice");
        assert_eq!(stats["maxValues"]["user_id"], "bob");
        assert_eq!(stats["nullCount"]["user_id"], 1);
        // A long string: the minimum is a prefix, and no maximum is claimed.
        assert_eq!(stats["minValues"]["arguments"], "a");
        assert!(stats["maxValues"].get("arguments").is_none());
        assert_eq!(stats["minValues"]["status"], 200);
        assert_eq!(stats["maxValues"]["status"], 500);
        // NaN leaves a float column unbounded.
        assert!(stats["minValues"].get("latency_ms").is_none());
        // Microseconds rounded outwards to milliseconds.
        assert_eq!(stats["minValues"]["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(stats["maxValues"]["time"], "1970-01-01T00:00:02.001Z");
        // An all-null column has a null count and no bounds.
        assert_eq!(stats["nullCount"]["tool"], 3);
        assert!(stats["minValues"].get("tool").is_none());
        let only: Value = serde_json::from_str(&of(&batch(), &["status"])).unwrap();
        assert_eq!(only["nullCount"].as_object().unwrap().len(), 1);
    }
}
