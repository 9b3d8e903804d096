//! Detect: streaming per-user baselines, anomaly detectors and alert
//! delivery for tooltrail.
//!
//! - [`Engine`]: the detector core. `observe(event, &mut alerts)` updates the
//!   event's user and emits [`Alert`]s; windows are judged by event time
//!   once the watermark passes them. Deterministic, no IO, no clock: the same
//!   events give the same alerts with the same ids.
//! - [`alert`]: the alert record, a persisted format.
//! - [`config`]: `[detect]` settings, validated into [`Settings`].
//! - [`baseline`] and [`seen`]: the statistics and the first-seen memory
//!   the engine keeps per user.
//! - [`eval`]: scoring alerts against labelled incidents, and two naive
//!   anchor rules.
//! - [`checkpoint`]: an engine's state with its source position, per Kafka
//!   partition, for `tooltrail detect --kafka`.
//! - [`sink`]: alerts in the lake; [`deliver`]: the outbox and the webhook,
//!   Slack, Teams and OCSF senders; [`metrics`]: the detector's Prometheus metrics.
//! - [`sigma`]: Sigma rules over tool calls, run inside the [`Engine`]
//!   (alerts of `sigma:<rule id>`), tested, linted and hunted over history.
//! - [`replay`]: an NDJSON event file in event-time order (`detect --replay`, `eval`).
//! - [`publish`]: the one path every alert takes (outbox, topic, lake),
//!   which writes no alert version twice.
//! - [`service`]: the engine running on a stream: in process beside ingest
//!   ([`service::Detector`]), or as its own consumer group
//!   ([`service::kafka`]), warmed from the lake ([`service::warm`]); its
//!   wall clock injected ([`clock`]).
//!
//! ```
//! use tooltrail_detect::{DetectConfig, DetectorKind, Engine};
//!
//! let mut engine = Engine::new(DetectConfig::default().validate().unwrap());
//! let event = tooltrail_schemas::decode(br#"{"schema_version":1,"event_id":"e1",
//!   "time":"2026-11-22T09:30:00Z","tenant_id":"acme","user_id":"alice",
//!   "server":"gdrive","method":"tools/call","tool":"read_file",
//!   "resource":"gdrive://globex/finance/payroll.xlsx","decision":"allow","status":200}"#).unwrap();
//! let mut alerts = Vec::new();
//! engine.observe(&event, &mut alerts);
//! assert_eq!(alerts[0].detector, DetectorKind::CrossTenant);
//! assert!(alerts[0].explanation.contains("globex"));
//! ```

pub mod alert;
pub mod baseline;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod eval;
pub mod metrics;
mod prefetch;
pub mod publish;
pub mod replay;
pub mod seen;
pub mod service;
pub mod sigma;
pub mod sink;

pub use alert::{Alert, Detector, DetectorKind, Evidence, Severity};
pub use config::{DetectConfig, Settings};
pub use engine::Engine;
