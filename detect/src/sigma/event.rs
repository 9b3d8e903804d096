//! A tool call as a Sigma event: the contract's field names, read straight
//! from the decoded [`ToolCallEvent`] without building a JSON document.
//! Only a rule that reaches into `arguments` (or a field beyond the
//! contract) parses the event's raw JSON parts, once per event.

use std::borrow::Cow;
use std::cell::OnceCell;

use rsigma_eval::{Event, EventValue};
use serde_json::Value;
use tooltrail_schemas::{RawJson, ToolCallEvent};

/// A [`ToolCallEvent`] seen through rsigma's [`Event`].
pub struct McpEvent<'a> {
    event: &'a ToolCallEvent,
    /// `arguments` and the fields beyond the contract, parsed on first use.
    rest: OnceCell<Value>,
    /// `time` and `source_ip` as text, made on first use.
    time: OnceCell<String>,
    source_ip: OnceCell<Option<String>>,
}

impl<'a> McpEvent<'a> {
    pub fn new(event: &'a ToolCallEvent) -> Self {
        McpEvent {
            event,
            rest: OnceCell::new(),
            time: OnceCell::new(),
            source_ip: OnceCell::new(),
        }
    }

    /// The parsed `arguments` and extra fields, as one JSON object.
    fn rest(&self) -> &Value {
        self.rest.get_or_init(|| {
            let mut map = serde_json::Map::new();
            if let Some(arguments) = &self.event.arguments {
                map.insert("arguments".into(), parse(arguments));
            }
            for (name, value) in &self.event.extra {
                map.insert(name.clone(), parse(value));
            }
            Value::Object(map)
        })
    }

    /// Whether `path` can name a value, judged without parsing: a path
    /// into unescaped arguments needs its first key's name in their text.
    fn may_hold(&self, path: &str) -> bool {
        if !self.event.extra.is_empty() {
            return true;
        }
        let Some(rest) = path.strip_prefix("arguments.") else {
            return path == "arguments" && self.event.arguments.is_some();
        };
        let Some(text) = self.event.arguments.as_ref().map(|a| a.get()) else {
            return false;
        };
        if text.contains('\\') {
            return true;
        }
        let key = rest.split('.').next().unwrap_or(rest);
        // A flat key may hold the whole rest ("a.b"), which contains `key` too.
        memchr::memmem::find(text.as_bytes(), key.as_bytes()).is_some()
    }

    fn source_ip(&self) -> Option<&str> {
        self.source_ip
            .get_or_init(|| self.event.source_ip.map(|ip| ip.to_string()))
            .as_deref()
    }

    /// Each plain string field that is present, with its name.
    fn each_text(&self, visit: &mut dyn FnMut(&'static str, &'a str)) {
        let e = self.event;
        for (name, value) in [
            ("event_id", e.event_id.as_str()),
            ("tenant_id", &e.tenant_id),
            ("user_id", &e.user_id),
            ("server", &e.server),
            ("method", &e.method),
            ("decision", e.decision.as_str()),
        ] {
            visit(name, value);
        }
        for (name, value) in [
            ("tool", &e.tool),
            ("resource", &e.resource),
            ("required_scope", &e.required_scope),
            ("policy_id", &e.policy_id),
            ("reason", &e.reason),
            ("error_type", &e.error_type),
            ("client_id", &e.client_id),
            ("agent_id", &e.agent_id),
            ("session_id", &e.session_id),
            ("gateway_id", &e.gateway_id),
            ("user_agent", &e.user_agent),
            ("trace_id", &e.trace_id),
        ] {
            if let Some(value) = value {
                visit(name, value);
            }
        }
        if let Some(p) = e.principal_type {
            visit("principal_type", p.as_str());
        }
    }

    /// Every string value outside the JSON-valued fields.
    fn each_flat(&self, visit: &mut dyn FnMut(&str)) {
        self.each_text(&mut |_, s| visit(s));
        if let Some(ip) = self.source_ip() {
            visit(ip);
        }
        for scope in self.event.scopes.iter().flatten() {
            visit(scope);
        }
        for value in self.event.attributes.iter().flat_map(|m| m.values()) {
            visit(value);
        }
    }

    /// Every string value of the event, arguments' and extras' one by one.
    fn each_string(&self, visit: &mut dyn FnMut(&str)) {
        self.each_flat(visit);
        if self.event.arguments.is_some() || !self.event.extra.is_empty() {
            visit_json(self.rest(), visit);
        }
    }

    /// The contract's plain string fields, by name.
    fn text(&self, name: &str) -> Option<Option<&'a str>> {
        let e = self.event;
        let some = |s: &'a str| Some(Some(s));
        match name {
            "event_id" => some(&e.event_id),
            "tenant_id" => some(&e.tenant_id),
            "user_id" => some(&e.user_id),
            "server" => some(&e.server),
            "method" => some(&e.method),
            "decision" => some(e.decision.as_str()),
            "tool" => Some(e.tool.as_deref()),
            "resource" => Some(e.resource.as_deref()),
            "required_scope" => Some(e.required_scope.as_deref()),
            "policy_id" => Some(e.policy_id.as_deref()),
            "reason" => Some(e.reason.as_deref()),
            "error_type" => Some(e.error_type.as_deref()),
            "client_id" => Some(e.client_id.as_deref()),
            "agent_id" => Some(e.agent_id.as_deref()),
            "session_id" => Some(e.session_id.as_deref()),
            "gateway_id" => Some(e.gateway_id.as_deref()),
            "user_agent" => Some(e.user_agent.as_deref()),
            "trace_id" => Some(e.trace_id.as_deref()),
            "principal_type" => Some(e.principal_type.map(|p| p.as_str())),
            _ => None,
        }
    }
}

fn parse(raw: &RawJson) -> Value {
    // The decoder has validated it; a failure would leave the field null.
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// `path` in a JSON value: a key holding the whole path first (flat keys
/// such as `"a.b"`), then one segment at a time; through an array, every
/// element is looked in and the values found form an array (which a rule
/// matches when any of them does).
fn lookup<'v>(value: &'v Value, path: &str, depth: usize) -> Option<EventValue<'v>> {
    if depth > 64 {
        return None;
    }
    match value {
        Value::Object(map) => {
            if let Some(v) = map.get(path) {
                return Some(EventValue::from(v));
            }
            let (head, rest) = path.split_once('.')?;
            lookup(map.get(head)?, rest, depth + 1)
        }
        Value::Array(items) => {
            let found: Vec<EventValue<'v>> = items
                .iter()
                .filter_map(|item| lookup(item, path, depth + 1))
                .collect();
            (!found.is_empty()).then_some(EventValue::Array(found))
        }
        _ => None,
    }
}

fn visit_json(value: &Value, visit: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => visit(s),
        Value::Array(items) => items.iter().for_each(|v| visit_json(v, visit)),
        Value::Object(map) => map.values().for_each(|v| visit_json(v, visit)),
        _ => {}
    }
}

impl Event for McpEvent<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if let Some(text) = self.text(path) {
            return text.map(|s| EventValue::Str(Cow::Borrowed(s)));
        }
        let e = self.event;
        match path {
            "status" => Some(EventValue::Int(e.status.into())),
            "schema_version" => Some(EventValue::Int(e.schema_version.into())),
            "jsonrpc_error_code" => e.jsonrpc_error_code.map(EventValue::Int),
            "latency_ms" => e.latency_ms.map(EventValue::Float),
            "time" => Some(EventValue::Str(Cow::Borrowed(
                self.time
                    .get_or_init(|| tooltrail_schemas::format_time(&e.time)),
            ))),
            "source_ip" => self.source_ip().map(|s| EventValue::Str(Cow::Borrowed(s))),
            "scopes" => e.scopes.as_ref().map(|scopes| {
                EventValue::Array(
                    scopes
                        .iter()
                        .map(|s| EventValue::Str(Cow::Borrowed(s.as_str())))
                        .collect(),
                )
            }),
            "attributes" => e.attributes.as_ref().map(|map| {
                EventValue::Map(
                    map.iter()
                        .map(|(k, v)| {
                            (
                                Cow::Borrowed(k.as_str()),
                                EventValue::Str(Cow::Borrowed(v.as_str())),
                            )
                        })
                        .collect(),
                )
            }),
            _ => match path.strip_prefix("attributes.") {
                Some(key) => e
                    .attributes
                    .as_ref()?
                    .get(key)
                    .map(|v| EventValue::Str(Cow::Borrowed(v.as_str()))),
                None => {
                    if !self.may_hold(path) {
                        return None;
                    }
                    lookup(self.rest(), path, 0)
                }
            },
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let mut found = false;
        self.each_string(&mut |s| found = found || pred(s));
        found
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.each_string(&mut |s| out.push(Cow::Owned(s.to_string())));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        self.each_flat(visit);
        // Arguments without escapes hold every string value verbatim: their
        // text stands in for them (a superset, which is what this serves:
        // picking candidate rules, each then evaluated on the real values).
        let raw = self.event.arguments.as_ref().map(|a| a.get());
        match raw {
            Some(text) if self.event.extra.is_empty() && !text.contains('\\') => visit(text),
            None if self.event.extra.is_empty() => {}
            _ => visit_json(self.rest(), visit),
        }
    }

    /// What rsigma keeps of an event a correlation counted: its id and time
    /// (its `Refs` mode). The whole event is never needed there, and building
    /// it for every counted event would cost more than the rules.
    fn to_json(&self) -> Value {
        serde_json::json!({
            "event_id": self.event.event_id,
            "time": tooltrail_schemas::format_time(&self.event.time),
        })
    }

    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        self.each_text(&mut |name, _| visit(name));
        let e = self.event;
        for (name, present) in [
            ("status", true),
            ("schema_version", true),
            ("time", true),
            ("jsonrpc_error_code", e.jsonrpc_error_code.is_some()),
            ("latency_ms", e.latency_ms.is_some()),
            ("source_ip", e.source_ip.is_some()),
            ("scopes", e.scopes.is_some()),
            ("attributes", e.attributes.is_some()),
            ("arguments", e.arguments.is_some()),
        ] {
            if present {
                visit(name);
            }
        }
        for name in e.extra.keys() {
            visit(name);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> ToolCallEvent {
        tooltrail_schemas::decode(json.as_bytes()).expect("a valid event")
    }

    const CALL: &str = r#"{"schema_version":1,"event_id":"e1","time":"2026-11-22T09:30:00Z",
        "tenant_id":"acme","user_id":"alice","server":"github","method":"tools/call",
        "tool":"create_issue","decision":"allow","status":200,"source_ip":"10.1.2.3",
        "scopes":["repo","admin:org"],"attributes":{"region":"eu"},
        "arguments":{"repo":"acme/api","body":{"lines":["a","AKIAABCDEFGHIJKLMNOP"]}},
        "x_vendor":{"tag":"red"}}"#;

    #[test]
    fn fields_read_by_their_contract_names() {
        let call = event(CALL);
        let e = McpEvent::new(&call);
        let text = |path: &str| {
            e.get_field(path)
                .and_then(|v| v.as_str().map(|s| s.into_owned()))
        };
        assert_eq!(text("tool").as_deref(), Some("create_issue"));
        assert_eq!(text("decision").as_deref(), Some("allow"));
        assert_eq!(text("source_ip").as_deref(), Some("10.1.2.3"));
        assert_eq!(text("time").as_deref(), Some("2026-11-22T09:30:00.000000Z"));
        assert_eq!(e.get_field("status"), Some(EventValue::Int(200)));
        assert_eq!(text("attributes.region").as_deref(), Some("eu"));
        assert_eq!(text("arguments.repo").as_deref(), Some("acme/api"));
        assert_eq!(text("x_vendor.tag").as_deref(), Some("red"));
        assert_eq!(e.get_field("resource"), None);
        assert_eq!(e.get_field("arguments.missing"), None);
        assert!(matches!(e.get_field("scopes"), Some(EventValue::Array(v)) if v.len() == 2));
        // Through the array of lines, the values found are an array.
        let call = event(&CALL.replace(
            r#""lines":["a","AKIAABCDEFGHIJKLMNOP"]"#,
            r#""lines":[{"t":"a"},{"t":"b"}]"#,
        ));
        let e = McpEvent::new(&call);
        assert!(
            matches!(e.get_field("arguments.body.lines.t"), Some(EventValue::Array(v)) if v.len() == 2)
        );
    }

    #[test]
    fn keywords_see_every_string_arguments_included() {
        // Escaped arguments are walked value by value, the rest as their text.
        let escaped = event(&CALL.replace(r#"["a","#, r#"["say \"hi\"","#));
        assert!(McpEvent::new(&escaped).any_string_value(&|s| s == r#"say "hi""#));
        let mut seen = Vec::new();
        McpEvent::new(&escaped).visit_string_values(&mut |s| seen.push(s.to_owned()));
        assert!(seen.iter().any(|s| s == r#"say "hi""#), "{seen:?}");
        let call = event(CALL);
        let e = McpEvent::new(&call);
        assert!(e.any_string_value(&|s| s.starts_with("AKIA")));
        assert!(e.any_string_value(&|s| s == "admin:org"));
        assert!(!e.any_string_value(&|s| s == "nowhere"));
        let mut keys = Vec::new();
        e.visit_top_level_keys(&mut |k| keys.push(k.to_string()));
        assert!(keys.iter().any(|k| k == "arguments"));
        assert!(keys.iter().any(|k| k == "x_vendor"));
        assert!(!keys.iter().any(|k| k == "resource"));
    }
}
