//! The OTLP messages tooltrail reads and answers with: `opentelemetry-proto`'s
//! prost messages (feature `gen-tonic-messages`, which since 0.32 needs no
//! tonic), under the names the rest of [`crate::otlp`] uses.

pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
pub use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
pub use opentelemetry_proto::tonic::resource::v1::Resource;
pub use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// `Status.code` of a failed span.
pub const STATUS_CODE_ERROR: i32 =
    opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32;
