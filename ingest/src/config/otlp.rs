//! `[otlp]` and `[otlp.mapping]`: how OTLP log records and spans become v1
//! events (see [`crate::otlp`]).

use serde::{Deserialize, Serialize};

/// `[otlp]`: OTLP/HTTP (`POST /v1/logs`, `POST /v1/traces`) and Kafka topics
/// with `kafka.encoding = "otlp_proto"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Treat an OTLP/HTTP request that carries no `Idempotency-Key` as if it
    /// carried one made of the SHA-256 of its (decompressed) body, so that an
    /// exporter's retry of a request already committed is answered without
    /// being written twice. Exporters resend the same bytes; the key is held
    /// for 24 hours, about 200 bytes of memory per request.
    pub dedupe_requests: bool,
    /// Which OTLP attributes fill which field of the event.
    pub mapping: OtlpMapping,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            dedupe_requests: true,
            mapping: OtlpMapping::default(),
        }
    }
}

/// `[otlp.mapping]`: for each field of the v1 event, the OTLP attributes
/// that may fill it, tried in order. Each name is looked up on the log
/// record (or span) first, then its instrumentation scope, then its
/// resource. Values are taken as the field needs them: strings as they are,
/// numbers from integers or numeric strings. Record attributes that fill no
/// field go to the event's `attributes`, as strings. The defaults cover the
/// OpenTelemetry MCP semantic conventions and agentgateway's access log.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpMapping {
    /// The tenant. When no attribute names one and the request's ingest
    /// token (or `kafka.tenants`) is bound to exactly one tenant, that
    /// tenant; otherwise the record is quarantined. A tenant the token may
    /// not write is quarantined as `tenant_not_allowed`.
    pub tenant_id: Vec<String>,
    /// Who made the call (required).
    pub user_id: Vec<String>,
    /// The MCP server (required). agentgateway names it `mcp.target`.
    pub server: Vec<String>,
    /// The MCP method (required). A span without any of these is not an MCP
    /// call: `/v1/traces` skips it (and counts it).
    pub method: Vec<String>,
    /// The tool, required when `method` is `tools/call`.
    pub tool: Vec<String>,
    /// The resource's URI.
    pub resource: Vec<String>,
    /// The MCP session.
    pub session_id: Vec<String>,
    /// The caller's address. An address with a port (`10.0.0.7:51234`,
    /// `[2001:db8::1]:443`, as agentgateway's `src.addr`) gives its IP.
    pub source_ip: Vec<String>,
    /// The HTTP-like status (required). A value outside 100-599 (a JSON-RPC
    /// error code) is passed over for the next attribute. A span with none
    /// takes 500 when its status is ERROR and 200 otherwise.
    pub status: Vec<String>,
    /// An attribute holding the decision (`allow` or `deny`). Without one,
    /// the decision is `deny` when the status is one of `deny_statuses`.
    pub decision: Vec<String>,
    /// Statuses that mean the call was refused.
    pub deny_statuses: Vec<u16>,
    /// The trace id, as 32 hex digits; without one, the record's (or span's)
    /// own trace id.
    pub trace_id: Vec<String>,
    /// The tool call's arguments: a JSON object, or a string holding one.
    pub arguments: Vec<String>,
    /// How long the call took: a number of milliseconds, or a duration
    /// string such as agentgateway's `"12ms"`. A span's own duration when
    /// none is given.
    pub latency_ms: Vec<String>,
    /// Why the call failed.
    pub reason: Vec<String>,
    /// The kind of error.
    pub error_type: Vec<String>,
    /// The JSON-RPC error code, an integer.
    pub jsonrpc_error_code: Vec<String>,
    /// The MCP client or application.
    pub client_id: Vec<String>,
    /// The agent.
    pub agent_id: Vec<String>,
    /// The gateway instance.
    pub gateway_id: Vec<String>,
    /// The caller's user agent.
    pub user_agent: Vec<String>,
    /// The policy that decided.
    pub policy_id: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for OtlpMapping {
    fn default() -> Self {
        OtlpMapping {
            tenant_id: names(&["tenant.id"]),
            user_id: names(&["jwt.sub", "user.id", "enduser.id"]),
            server: names(&["mcp.target", "mcp.server.name", "server.address"]),
            method: names(&["mcp.method.name"]),
            tool: names(&["gen_ai.tool.name"]),
            resource: names(&["mcp.resource.uri"]),
            session_id: names(&["mcp.session.id"]),
            source_ip: names(&["src.addr", "client.address"]),
            status: names(&[
                "http.status",
                "http.response.status_code",
                "rpc.response.status_code",
            ]),
            decision: names(&["tooltrail.decision"]),
            deny_statuses: vec![401, 403],
            trace_id: names(&["trace.id"]),
            arguments: names(&["gen_ai.tool.call.arguments"]),
            latency_ms: names(&["duration"]),
            reason: names(&["mcp.error.message", "error.message", "error"]),
            error_type: names(&["error.type"]),
            jsonrpc_error_code: names(&["mcp.error.code", "rpc.response.status_code"]),
            client_id: names(&["mcp.client.name"]),
            agent_id: names(&["gen_ai.agent.id"]),
            gateway_id: names(&["service.instance.id"]),
            user_agent: names(&["user_agent.original"]),
            policy_id: Vec::new(),
        }
    }
}

impl OtlpMapping {
    /// Each field's attribute list, by the field's name.
    pub fn fields(&self) -> [(&'static str, &[String]); 21] {
        [
            ("tenant_id", &self.tenant_id),
            ("user_id", &self.user_id),
            ("server", &self.server),
            ("method", &self.method),
            ("tool", &self.tool),
            ("resource", &self.resource),
            ("session_id", &self.session_id),
            ("source_ip", &self.source_ip),
            ("status", &self.status),
            ("decision", &self.decision),
            ("trace_id", &self.trace_id),
            ("arguments", &self.arguments),
            ("latency_ms", &self.latency_ms),
            ("reason", &self.reason),
            ("error_type", &self.error_type),
            ("jsonrpc_error_code", &self.jsonrpc_error_code),
            ("client_id", &self.client_id),
            ("agent_id", &self.agent_id),
            ("gateway_id", &self.gateway_id),
            ("user_agent", &self.user_agent),
            ("policy_id", &self.policy_id),
        ]
    }
}

impl OtlpConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mapping = &self.mapping;
        for (field, list) in mapping.fields() {
            if list.iter().any(|name| name.trim().is_empty()) {
                issues.push((
                    format!("otlp.mapping.{field}"),
                    "must not hold an empty attribute name".into(),
                ));
            }
        }
        for (field, list) in [
            ("user_id", &mapping.user_id),
            ("server", &mapping.server),
            ("method", &mapping.method),
        ] {
            if list.is_empty() {
                issues.push((
                    format!("otlp.mapping.{field}"),
                    "must name at least one attribute: the field is required".into(),
                ));
            }
        }
        if let Some(bad) = mapping
            .deny_statuses
            .iter()
            .find(|s| !(100..=599).contains(*s))
        {
            issues.push((
                "otlp.mapping.deny_statuses".into(),
                format!("must hold statuses from 100 to 599, got {bad}"),
            ));
        }
        issues
    }
}

/// `kafka.encoding`: what a record of the topic holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaEncoding {
    /// One v1 event, as JSON.
    #[default]
    Json,
    /// An OTLP `ExportLogsServiceRequest` in protobuf (the OpenTelemetry
    /// Collector's Kafka exporter with `encoding: otlp_proto`): each log
    /// record becomes one event through `[otlp.mapping]`.
    OtlpProto,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mapping_is_valid_and_a_partial_mapping_keeps_the_other_defaults() {
        assert!(OtlpConfig::default().validate().is_empty());
        let config: OtlpConfig =
            toml::from_str("[mapping]\nuser_id = [\"auth.principal\"]\n").expect("valid");
        assert_eq!(config.mapping.user_id, ["auth.principal"]);
        assert_eq!(config.mapping.method, ["mcp.method.name"]);
        assert!(config.dedupe_requests);
    }

    #[test]
    fn bad_mappings_are_named_by_their_path() {
        let config = OtlpConfig {
            mapping: OtlpMapping {
                user_id: Vec::new(),
                tool: vec![" ".into()],
                deny_statuses: vec![403, 42],
                ..OtlpMapping::default()
            },
            ..OtlpConfig::default()
        };
        let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "otlp.mapping.tool",
                "otlp.mapping.user_id",
                "otlp.mapping.deny_statuses"
            ]
        );
        let unknown = toml::from_str::<OtlpConfig>("[mapping]\nuserid = [\"x\"]\n").unwrap_err();
        assert!(unknown.to_string().contains("userid"), "{unknown}");
    }
}
