//! OTLP log records and spans as v1 events.
//!
//! Gateways that speak OpenTelemetry (agentgateway's access log, anything
//! behind an OpenTelemetry Collector) send OTLP, not our contract. This
//! module turns each log record, or each span that is an MCP call, into the
//! contract's JSON object through `[otlp.mapping]`
//! ([`crate::config::OtlpMapping`]). That object then takes the path every
//! other record takes: [`tooltrail_schemas::decode`], the event-time window,
//! the token's tenants, the quarantine. So every rule of the contract applies
//! to OTLP input too, and what the quarantine keeps as `raw` is the object
//! the mapping made.
//!
//! - [`Mapper::logs`], [`Mapper::traces`]: a request into [`Mapped`]: the
//!   objects back to back in one buffer, and per record its range and, when
//!   a required field could not be filled, why (a `missing_field` naming the
//!   attributes looked for).
//! - [`decode_logs`], [`decode_traces`]: a request body, protobuf or OTLP's
//!   JSON encoding, into the messages of [`proto`] (the upstream field
//!   numbers; see there why not the `opentelemetry-proto` crate).
//!
//! Invariants: `event_id` is `otlp-` and 32 hex digits of a BLAKE3 hash of
//! the resource, the scope, the record (their fields' values, the same
//! whether they came as protobuf or JSON) and the tenant, so the same record
//! sent again, over HTTP or Kafka, in protobuf or JSON, gets the same id;
//! mapping never panics and never fails a whole request for one record.

mod json;
mod map;
pub mod proto;
#[cfg(test)]
mod tests;

use std::ops::Range;

use prost::Message;
use tooltrail_schemas::DecodeError;

pub use map::Mapper;
use proto::{ExportLogsServiceRequest, ExportTraceServiceRequest};

/// Which OTLP signal a record came from (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }

    /// What a record of this signal is called in messages.
    pub fn record(self) -> &'static str {
        match self {
            Signal::Logs => "log record",
            Signal::Traces => "span",
        }
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`: OTLP's JSON mapping of the same messages.
    Json,
}

/// The events one request (or Kafka record) maps to.
#[derive(Debug, Default)]
pub struct Mapped {
    /// Every record's contract object, back to back.
    pub body: Vec<u8>,
    pub records: Vec<MappedRecord>,
    /// Spans that are not MCP calls (no `method` attribute), left out.
    pub skipped: u64,
}

/// One record's object in [`Mapped::body`], and why it could not be mapped.
#[derive(Debug)]
pub struct MappedRecord {
    pub range: Range<usize>,
    /// A required field none of its attributes could fill; the object is
    /// then what could be mapped, for the quarantine.
    pub unmapped: Option<DecodeError>,
}

impl Mapped {
    /// Records whose object is complete enough to decode.
    pub fn mapped(&self) -> u64 {
        self.records.iter().filter(|r| r.unmapped.is_none()).count() as u64
    }

    pub fn unmapped(&self) -> u64 {
        self.records.len() as u64 - self.mapped()
    }
}

/// Decodes an `ExportLogsServiceRequest`.
pub fn decode_logs(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => json::logs(body),
    }
}

/// Decodes an `ExportTraceServiceRequest`.
pub fn decode_traces(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string()),
        Encoding::Json => json::traces(body),
    }
}

impl Mapper {
    /// Maps a Kafka record of an `otlp_proto` topic: an
    /// `ExportLogsServiceRequest` in protobuf.
    pub fn kafka_record(
        &self,
        payload: &[u8],
        default_tenant: Option<&str>,
    ) -> Result<Mapped, DecodeError> {
        let request = decode_logs(payload, Encoding::Protobuf)
            .map_err(|message| DecodeError::NotOtlp { message })?;
        Ok(self.logs(&request, default_tenant))
    }
}
