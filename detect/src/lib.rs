//! Detect: streaming per-user baselines and alert delivery.
//!
//! Built under the detect issue; this crate holds only its place in the
//! workspace until then.
