//! Query: read-only, tenant-isolated SQL over the lake.
//!
//! - [`Engine`]: admission (limits), the query audit, planning in a
//!   per-principal session ([`session`]) with our planner rules
//!   ([`optimizer`]), streaming under a deadline. Besides the lake's tables,
//!   a session holds the OCSF views `ocsf_api_activity` and
//!   `ocsf_detection_finding` ([`session::ocsf`]).
//! - [`http`]: `POST /v1/sql` and the table endpoints (axum).
//! - [`pgwire`]: the Postgres wire protocol, for psql, Grafana and BI tools;
//!   [`pg_catalog`]: the system catalog those clients browse.
//! - [`format`]: result encodings (json, ndjson, csv, arrow, parquet, table).
//! - [`alerts`]: the alerts API (inbox, alert, user page, triage into the
//!   lake's `alert_triage`, server-sent changes); [`console`]: the analyst
//!   console's files and sign-in sessions ([`auth::session`]).
//! - [`export`]: signed compliance exports (`POST /v1/exports`, `tooltrail export`), in
//!   Parquet, CSV, NDJSON or OCSF.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod config;
pub mod console;
pub mod engine;
pub mod error;
pub mod export;
pub mod format;
pub mod functions;
pub mod holds;
pub mod http;
pub mod metrics;
pub mod optimizer;
mod passthrough;
pub mod pg_catalog;
pub mod pgwire;
pub mod session;
pub mod tables;

pub use alerts::AlertsService;
pub use auth::{Principal, Role, Tenants};
pub use config::QueryConfig;
pub use engine::{Engine, QueryStream, Transport};
pub use error::QueryError;
pub use export::{ExportError, ExportFormat, ExportService};
pub use metrics::QueryMetrics;
