//! tooltrail's event contract, v1.
//!
//! Gateways emit one JSON object per MCP call (one Kafka record value, or one
//! NDJSON line). This crate is the single definition of that contract:
//!
//! - [`ToolCallEvent`]: the typed event; every value satisfies the contract.
//! - [`decode`]: untrusted bytes to an event, or a [`DecodeError`] that names
//!   the field and what is wrong with it. Never panics.
//! - [`lake::events_schema`] and [`lake::EventBatchBuilder`]: the lake's Arrow
//!   schema and the builder ingest feeds.
//! - [`Secret`], [`SecretUrl`], [`SecretMap`]: credentials from configuration,
//!   masked wherever they are printed or serialized.
//! - `schemas/tool-call-event.v1.json`: the JSON Schema for gateway authors,
//!   kept in step with the decoder by tests.
//!
//! Invariants: this crate does no IO and needs no async runtime. The contract
//! and the lake schema are persisted formats: fields are only ever added.
//!
//! ```
//! let line = br#"{"schema_version":1,"event_id":"e1","time":"2026-11-22T09:30:00Z",
//!   "tenant_id":"acme","user_id":"alice","server":"github","method":"tools/call",
//!   "tool":"create_issue","decision":"allow","status":200}"#;
//! let event = tooltrail_schemas::decode(line).unwrap();
//! assert_eq!(event.kafka_key(), "acme/alice");
//!
//! let err = tooltrail_schemas::decode(br#"{"schema_version":1,"status":"ok"}"#).unwrap_err();
//! assert_eq!(err.field_name(), Some("status"));
//! ```

mod decode;
mod error;
mod event;
pub mod http;
pub mod lake;
mod report;
mod secret;
pub mod signing;
mod view;

pub use decode::{
    INVALID_PREFIX, MAX_ARGUMENTS_BYTES, MAX_EVENT_BYTES, MAX_ID_BYTES, decode, decode_view,
    invalid_field,
};
pub use error::{DecodeError, Problem};
pub use event::{
    Decision, FIELDS, FieldSpec, PrincipalType, RawJson, SCHEMA_VERSION, ToolCallEvent, WireType,
    format_time, kafka_key,
};
pub use report::Report;
pub use secret::{REDACTED, Secret, SecretMap, SecretUrl};
pub use view::{EventView, Extra, Ip, StrList, StrMap};

/// The JSON Schema for contract v1, as shipped to gateway authors.
pub const JSON_SCHEMA_V1: &str = include_str!("../tool-call-event.v1.json");
