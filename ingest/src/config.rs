//! Ingest's configuration sections. Every field is documented: these comments
//! are the user documentation of `[ingest]`, `[http]` and `[kafka]`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tooltrail_schemas::SecretMap;

use crate::batch::TimeWindow;

mod otlp;
pub use otlp::{KafkaEncoding, OtlpConfig, OtlpMapping};

/// `[digest]`: the lake's signed digest chain (see `lake::digest`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// How often `up` writes a signed digest of what the lake committed,
    /// compacted and deleted since the previous one (and one at start), even
    /// when nothing changed. `tooltrail ingest` writes none: with Kafka
    /// ingest, run `tooltrail lake digest` from cron at this interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            interval: Duration::from_secs(3600),
        }
    }
}

/// `[ingest]`: how records become lake files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The lake: a directory, or `s3://bucket/prefix` (S3 takes the usual
    /// AWS settings from the environment: `AWS_REGION`, `AWS_ENDPOINT_URL`,
    /// the credential chain, `AWS_ALLOW_HTTP` for a local test server).
    /// `tooltrail up` defaults it to `<data-dir>/lake`.
    pub lake: Option<String>,
    /// Commit a transaction once this many records are buffered.
    pub max_batch_records: usize,
    /// Commit a transaction once the oldest buffered record has waited this long.
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// Quarantine events whose `time` is older than this, relative to receipt.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    /// Quarantine events whose `time` is further than this in the future.
    #[serde(with = "humantime_serde")]
    pub max_event_future: Duration,
    /// Zstandard level for Parquet pages (1 fastest … 22 smallest). On the
    /// lake's small hourly files, 1 is both faster and no larger than 3.
    pub zstd_level: i32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            lake: None,
            max_batch_records: 200_000,
            max_batch_delay: Duration::from_secs(2),
            max_event_age: Duration::from_secs(366 * 24 * 3600),
            max_event_future: Duration::from_secs(3600),
            zstd_level: 1,
        }
    }
}

impl IngestConfig {
    pub fn time_window(&self) -> TimeWindow {
        TimeWindow {
            max_age: self.max_event_age,
            max_future: self.max_event_future,
        }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.max_batch_records == 0 {
            issues.push((
                "ingest.max_batch_records".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            issues.push((
                "ingest.zstd_level".into(),
                format!("must be 1 to 22, got {}", self.zstd_level),
            ));
        }
        issues
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.max_inflight_bytes < self.max_body_bytes {
            issues.push((
                "http.max_inflight_bytes".into(),
                format!(
                    "must be at least http.max_body_bytes ({}), or the largest request could never be taken",
                    self.max_body_bytes
                ),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, token) in self.ingest_tokens.iter().enumerate() {
            let at = |field: &str| format!("http.ingest_tokens[{i}].{field}");
            if token.name.trim().is_empty() {
                issues.push((at("name"), "must not be empty".into()));
            } else if !names.insert(token.name.as_str()) {
                issues.push((
                    at("name"),
                    format!("`{}` names another token too", token.name),
                ));
            }
            if !is_sha256_hex(&token.sha256) {
                issues.push((
                    at("sha256"),
                    "must be 64 lowercase hex digits, the SHA-256 of the token (printf %s \"$TOKEN\" | sha256sum)".into(),
                ));
            } else if !hashes.insert(token.sha256.as_str()) {
                issues.push((
                    at("sha256"),
                    "is the hash of another token too: each token must be its own".into(),
                ));
            }
            if token.tenants.is_empty() {
                issues.push((
                    at("tenants"),
                    "must list at least one tenant, or \"*\" for all".into(),
                ));
            } else if token.tenants.iter().any(|t| t.is_empty()) {
                issues.push((at("tenants"), "must not hold an empty tenant id".into()));
            } else if token.tenants.len() > 1 && token.tenants.iter().any(|t| t == "*") {
                issues.push((
                    at("tenants"),
                    "\"*\" already means every tenant; list it alone".into(),
                ));
            }
        }
        issues
    }
}

impl KafkaConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if let Some(tenants) = &self.tenants {
            if tenants.is_empty() {
                issues.push((
                    "kafka.tenants".into(),
                    "must list at least one tenant; remove the key to allow every tenant".into(),
                ));
            } else if tenants.iter().any(|t| t.is_empty() || t == "*") {
                issues.push((
                    "kafka.tenants".into(),
                    "must hold tenant ids; remove the key to allow every tenant".into(),
                ));
            }
        }
        issues
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `[[http.ingest_tokens]]`: a bearer token a gateway presents to
/// `POST /v1/events`, and the tenants whose events it may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestToken {
    /// Who holds the token (e.g. the gateway's name). Recorded with the events
    /// it was refused for, in the quarantine's `error`.
    pub name: String,
    /// Lowercase hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`):
    /// the token itself is never stored.
    pub sha256: String,
    /// Tenants whose events the token may write; `["*"]` for all. An event
    /// of any other tenant is quarantined with reason `tenant_not_allowed`;
    /// the rest of the request lands as usual.
    pub tenants: Vec<String>,
}

/// [`IngestToken`]'s fields as written; a plain string (the removed
/// `ingest_tokens = ["..."]` form) gets a message showing the new one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestTokenFields {
    name: String,
    sha256: String,
    tenants: Vec<String>,
}

/// What a plain-string ingest token is told. Never echoes the string: it is
/// the token.
pub const PLAIN_INGEST_TOKEN: &str = "plain token strings are no longer accepted; give each token a name, its SHA-256 and the tenants it may write: [[http.ingest_tokens]] name = \"gateway-a\" sha256 = \"<printf %s \"$TOKEN\" | sha256sum>\" tenants = [\"acme\"]  (or [\"*\"] for every tenant)";

impl<'de> Deserialize<'de> for IngestToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IngestToken;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table with name, sha256 and tenants")
            }
            fn visit_str<E: serde::de::Error>(self, _token: &str) -> Result<IngestToken, E> {
                Err(E::custom(PLAIN_INGEST_TOKEN))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<IngestToken, A::Error> {
                let fields = IngestTokenFields::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(IngestToken {
                    name: fields.name,
                    sha256: fields.sha256,
                    tenants: fields.tenants,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[http]`: the HTTP listener (ingest endpoint, health, metrics).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted by `POST /v1/events`; larger gets 413.
    pub max_body_bytes: usize,
    /// Request bodies `POST /v1/events` holds at once (being read, decoded
    /// or waiting for their commit), counted by `Content-Length`, or as
    /// `max_body_bytes` when a request does not say. A request that would go
    /// over waits up to 5 s for room, then gets 503 `overloaded` with
    /// `Retry-After: 1`: many clients at once cannot run ingest out of
    /// memory. Decoded, batched and handed to the detector, a body takes
    /// about nine times its size: 64 MiB kept `tooltrail up` under 750 MiB
    /// with 48 clients sending 16 MiB bodies at once. At least
    /// `max_body_bytes`.
    pub max_inflight_bytes: usize,
    /// Bearer tokens gateways present to `POST /v1/events`
    /// (`[[http.ingest_tokens]]`), each bound to tenants. None configured:
    /// no token is needed and any tenant may be written, which suits the
    /// embedded default on `127.0.0.1` only.
    pub ingest_tokens: Vec<IngestToken>,
    /// The longest the group commit waits for requests still being decoded
    /// to share its flush; with none on the way it flushes at once.
    #[serde(with = "humantime_serde")]
    pub group_commit_delay: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 << 20,
            max_inflight_bytes: 64 << 20,
            ingest_tokens: Vec::new(),
            group_commit_delay: Duration::from_millis(5),
        }
    }
}

/// `[kafka]`: the source topic. Absent: `tooltrail up` ingests over HTTP only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic gateways produce events to.
    pub topic: String,
    /// What a record holds: `"json"`, one v1 event; or `"otlp_proto"`, an
    /// OTLP `ExportLogsServiceRequest` in protobuf (the OpenTelemetry
    /// Collector's Kafka exporter), whose log records become events through
    /// `[otlp.mapping]`, all of a record's in the same lake commit as its
    /// offset.
    #[serde(default)]
    pub encoding: KafkaEncoding,
    /// Consumer group of the ingest service.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Optional topic that rejected records are also forwarded to.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Tenants whose events this topic may carry. Absent: every tenant. A
    /// record of any other tenant is quarantined with reason
    /// `tenant_not_allowed` (and forwarded to `dead_letter_topic`). Producers
    /// are authenticated by the broker (SASL or mTLS, with topic ACLs): this
    /// bounds what a producer allowed on the topic can claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// Extra librdkafka properties, e.g. `"security.protocol" = "sasl_ssl"`,
    /// `"sasl.password" = "..."`. Values of credential-like keys (password,
    /// secret, jaas, token, key, ...) are shown as `<redacted>`.
    #[serde(default)]
    pub properties: SecretMap,
}

fn default_group() -> String {
    "tooltrail-ingest".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn http(text: &str) -> Result<HttpConfig, String> {
        toml::from_str::<HttpConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn ingest_tokens_parse_with_their_tenants() {
        let config = http(&format!(
            "[[ingest_tokens]]\nname = \"gw-acme\"\nsha256 = \"{HASH}\"\ntenants = [\"acme\"]\n\
             [[ingest_tokens]]\nname = \"gw-all\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n",
            HASH.replace('9', "8")
        ))
        .expect("valid");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.ingest_tokens[0].name, "gw-acme");
        assert_eq!(config.ingest_tokens[0].tenants, ["acme"]);
        assert_eq!(config.ingest_tokens[1].tenants, ["*"]);
    }

    #[test]
    fn the_old_plain_token_list_is_refused_with_the_new_form_and_without_the_token() {
        // Through a parsed table, as the config loader does: a TOML parse
        // error would quote the source line itself.
        let table: toml::Table = toml::from_str("ingest_tokens = [\"s3cret-canary\"]").unwrap();
        let err = table.try_into::<HttpConfig>().unwrap_err().to_string();
        assert!(err.contains("[[http.ingest_tokens]]"), "{err}");
        assert!(err.contains("sha256") && err.contains("tenants"), "{err}");
        assert!(!err.contains("s3cret-canary"), "{err}");
    }

    #[test]
    fn unknown_ingest_token_keys_are_refused() {
        let err = http(&format!(
            "[[ingest_tokens]]\nname = \"a\"\nsha256 = \"{HASH}\"\ntenants = [\"x\"]\nrole = \"admin\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("role"), "{err}");
    }

    #[test]
    fn each_bad_ingest_token_field_is_named() {
        let token = |name: &str, sha256: &str, tenants: &[&str]| IngestToken {
            name: name.into(),
            sha256: sha256.into(),
            tenants: tenants.iter().map(|t| (*t).to_string()).collect(),
        };
        let config = HttpConfig {
            ingest_tokens: vec![
                token("", &HASH.to_uppercase(), &[]),
                token("a", HASH, &[""]),
                token("a", "abc", &["*", "acme"]),
                token("b", HASH, &["acme"]),
            ],
            ..HttpConfig::default()
        };
        let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "http.ingest_tokens[0].name",
                "http.ingest_tokens[0].sha256",
                "http.ingest_tokens[0].tenants",
                "http.ingest_tokens[1].tenants",
                "http.ingest_tokens[2].name",
                "http.ingest_tokens[2].sha256",
                "http.ingest_tokens[2].tenants",
                "http.ingest_tokens[3].sha256",
            ]
        );
    }

    #[test]
    fn an_empty_or_wildcard_kafka_allow_list_is_refused() {
        let kafka = |tenants: Option<Vec<&str>>| KafkaConfig {
            brokers: "b:9092".into(),
            topic: "t".into(),
            encoding: KafkaEncoding::Json,
            group_id: default_group(),
            dead_letter_topic: None,
            tenants: tenants.map(|t| t.into_iter().map(String::from).collect()),
            properties: SecretMap::default(),
        };
        assert!(kafka(None).validate().is_empty());
        assert!(kafka(Some(vec!["acme"])).validate().is_empty());
        for bad in [vec![], vec!["*"], vec![""]] {
            let issues = kafka(Some(bad)).validate();
            assert_eq!(issues.len(), 1);
            assert_eq!(issues[0].0, "kafka.tenants");
        }
    }

    #[test]
    fn kafka_credentials_are_masked_when_shown() {
        let kafka: KafkaConfig = toml::from_str(
            "brokers = \"b:9092\"\ntopic = \"t\"\n[properties]\n\"sasl.password\" = \"canary\"\n\"sasl.username\" = \"svc\"\n",
        )
        .expect("valid");
        let shown = toml::to_string(&kafka).expect("serializes");
        assert!(!shown.contains("canary"), "{shown}");
        assert!(shown.contains("svc"), "{shown}");
        assert!(!format!("{kafka:?}").contains("canary"));
    }

    #[test]
    fn the_room_for_bodies_in_flight_must_hold_the_largest_body() {
        assert!(HttpConfig::default().validate().is_empty());
        let tight = HttpConfig {
            max_body_bytes: 2 << 20,
            max_inflight_bytes: 1 << 20,
            ..HttpConfig::default()
        };
        let issues = tight.validate();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, "http.max_inflight_bytes");
        assert!(
            issues[0].1.contains("max_body_bytes (2097152)"),
            "{}",
            issues[0].1
        );
    }
}
