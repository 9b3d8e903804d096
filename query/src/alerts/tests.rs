use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::*;

#[test]
fn results_become_json_rows_with_times_in_rfc3339_and_nulls_kept() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("n", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_795_334_400_000_000, 1_795_334_400_000_001])
                    .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from(vec![Some(3), None])),
        ],
    )
    .unwrap();
    let rows = to_json(&[batch]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "a");
    let time = rows[1]["time"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert_eq!(parsed.timestamp_micros(), 1_795_334_400_000_001, "{time}");
    assert_eq!(rows[1]["n"], Value::Null);
    assert!(to_json(&[]).unwrap().is_empty());
}

#[test]
fn literals_double_quotes_and_ids_are_checked() {
    assert_eq!(literal("o'brien"), "'o''brien'");
    assert!(plausible_id("8a4c1f0e-0000-4000-8000-000000000001"));
    assert!(!plausible_id("a' OR '1'='1"));
    assert!(!plausible_id(""));
    assert!(!plausible_id(&"a".repeat(129)));
}
