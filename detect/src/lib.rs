//! Detect: streaming per-user baselines, anomaly detectors and alert delivery.

pub mod alert;
pub mod baseline;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod eval;
pub mod metrics;
pub mod seen;
pub mod sink;

pub use alert::{Alert, DetectorKind, Evidence, Severity};
pub use config::{DetectConfig, Settings};
pub use engine::Engine;
