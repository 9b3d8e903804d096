//! The lake's rows as OCSF, the Open Cybersecurity Schema Framework that
//! SIEMs and Amazon Security Lake read: events as **API Activity** (class
//! 6003) and alerts as **Detection Finding** (class 2004), both with the
//! `security_control` profile, following OCSF [`SCHEMA_VERSION`].
//!
//! Each class is defined once, as a DataFusion SQL select list over the
//! columns of its lake table ([`Class::select_list`], in `ocsf/sql.rs`).
//! Every output goes through that definition:
//! - the query side's views `ocsf_api_activity` and `ocsf_detection_finding`
//!   are `SELECT <list> FROM events` / `FROM alerts` planned over each
//!   session's tenant-scoped tables (`tooltrail_query::session`);
//! - an export in `format: "ocsf"` runs `SELECT <list> FROM events WHERE …`;
//! - the `ocsf` delivery destination runs [`to_json`] over the alert's row
//!   of the `alerts` table.
//!
//! NDJSON is Arrow's JSON writer's: NULL attributes are left out, structs
//! are objects, lists arrays, times integers (milliseconds since the epoch).
//!
//! [`REQUIRED`] is what the schema requires of each class (the class's,
//! its parents', the profile's, and inside each object tooltrail fills),
//! derived by `scripts/ocsf_required.py` from ocsf/ocsf-schema at
//! [`SCHEMA_COMMIT`]; [`missing_required`] checks a record against it.
//!
//! ```no_run
//! # async fn demo(alerts: arrow::array::RecordBatch) -> tooltrail_lake::Result<()> {
//! use tooltrail_lake::ocsf;
//!
//! for finding in ocsf::to_json(&ocsf::DETECTION_FINDING, alerts).await? {
//!     assert!(ocsf::missing_required(&ocsf::DETECTION_FINDING, &finding).is_empty());
//! }
//! # Ok(())
//! # }
//! ```

mod sql;

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde_json::Value;

use crate::{Error, Result};

/// The OCSF version followed: every record's `metadata.version`.
pub const SCHEMA_VERSION: &str = "1.8.0";
/// The ocsf/ocsf-schema commit of [`SCHEMA_VERSION`] (its tag) that
/// [`REQUIRED`] was derived from.
pub const SCHEMA_COMMIT: &str = "6fa6499a0f8c9f449d342816e90e5f687c224b0a";

/// One OCSF class tooltrail emits, and the lake table it comes from.
#[derive(Debug)]
pub struct Class {
    /// The class's OCSF name (`api_activity`, `detection_finding`).
    pub name: &'static str,
    pub class_uid: i32,
    /// The SQL view over the lake table (`ocsf_api_activity`).
    pub view: &'static str,
    /// The lake table the rows come from, as SQL names it.
    pub source: &'static str,
    select: &'static LazyLock<String>,
}

/// Events as API Activity.
pub static API_ACTIVITY: Class = Class {
    name: "api_activity",
    class_uid: 6003,
    view: "ocsf_api_activity",
    source: "events",
    select: &sql::API_ACTIVITY,
};

/// Alerts as Detection Finding.
pub static DETECTION_FINDING: Class = Class {
    name: "detection_finding",
    class_uid: 2004,
    view: "ocsf_detection_finding",
    source: "alerts",
    select: &sql::DETECTION_FINDING,
};

/// Both classes.
pub static CLASSES: [&Class; 2] = [&API_ACTIVITY, &DETECTION_FINDING];

impl Class {
    /// The class as a select list over [`Class::source`]'s columns: the one
    /// definition of its records.
    pub fn select_list(&self) -> &'static str {
        self.select.as_str()
    }

    /// The view's query: every row of [`Class::source`] as this class.
    pub fn sql(&self) -> String {
        format!("SELECT {} FROM {}", self.select_list(), self.source)
    }
}

/// `rows` of [`Class::source`]'s schema as `class`, one JSON object each,
/// NULL attributes left out: what an export line or a delivered finding is.
pub async fn to_json(class: &Class, rows: RecordBatch) -> Result<Vec<Value>> {
    let failed = |source| Error::Ocsf {
        class: class.name,
        source: Box::new(source),
    };
    let ctx = SessionContext::new();
    let table = MemTable::try_new(rows.schema(), vec![vec![rows]]).map_err(failed)?;
    ctx.register_table(class.source, Arc::new(table))
        .map_err(failed)?;
    let frame = ctx.sql(&class.sql()).await.map_err(failed)?;
    let batches = frame.collect().await.map_err(failed)?;
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
        for batch in &batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    out.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| Error::Ocsf {
                class: class.name,
                source: Box::new(datafusion::error::DataFusionError::External(Box::new(e))),
            })
        })
        .collect()
}

/// What the schema requires of a class: one rule per line of
/// `ocsf/required.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `api_activity` or `detection_finding`.
    pub class: &'static str,
    /// Dot-separated attribute path; `.` is the record itself. An array on
    /// the way stands for each of its elements.
    pub path: &'static str,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// The attribute is present and not null in every instance of its
    /// parent object that is present.
    Required,
    /// Every instance of the object at `path` that is present has at least
    /// one of these attributes.
    AtLeastOne(Vec<&'static str>),
}

/// The rules of both classes, from `ocsf/required.tsv`.
pub static REQUIRED: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    include_str!("ocsf/required.tsv")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&'static str> = line.split('\t').collect();
            let kind = match (fields.get(2), fields.get(3)) {
                (Some(&"required"), _) => RuleKind::Required,
                (Some(&"at_least_one"), Some(names)) => {
                    RuleKind::AtLeastOne(names.split(',').collect())
                }
                _ => panic!("ocsf/required.tsv: bad line {line:?}"),
            };
            Rule {
                class: fields[0],
                path: fields[1],
                kind,
            }
        })
        .collect()
});

/// Each rule of [`REQUIRED`] for `class` that `record` breaks, as
/// `<path>: <what is wrong>`. An empty object or array counts as absent.
pub fn missing_required(class: &Class, record: &Value) -> Vec<String> {
    let mut broken = Vec::new();
    for rule in REQUIRED.iter().filter(|r| r.class == class.name) {
        match &rule.kind {
            RuleKind::Required => {
                let (parent, name) = match rule.path.rsplit_once('.') {
                    Some((parent, name)) => (parent, name),
                    None => (".", rule.path),
                };
                for object in instances(record, parent) {
                    if !present(object.get(name)) {
                        broken.push(format!("{}: required, but absent or null", rule.path));
                    }
                }
            }
            RuleKind::AtLeastOne(names) => {
                for object in instances(record, rule.path) {
                    if !names.iter().any(|n| present(object.get(*n))) {
                        broken.push(format!(
                            "{}: needs at least one of {}",
                            rule.path,
                            names.join(", ")
                        ));
                    }
                }
            }
        }
    }
    broken
}

fn present(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => !map.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

/// Every object at `path` in `record` (`.`: the record), arrays flattened.
fn instances<'a>(record: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut found = vec![record];
    if path == "." {
        return found;
    }
    for step in path.split('.') {
        let mut next = Vec::new();
        for value in found {
            match value.get(step) {
                Some(Value::Array(items)) => next.extend(items.iter().filter(|v| !v.is_null())),
                Some(Value::Null) | None => {}
                Some(other) => next.push(other),
            }
        }
        found = next;
    }
    found
}

#[cfg(test)]
mod tests;
