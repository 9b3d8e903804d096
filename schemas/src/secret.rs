//! Credentials from configuration, which never leave the process in print.
//!
//! - [`Secret`]: a token, password or signing key. `Debug`, `Display` and
//!   `Serialize` all write `<redacted>`; [`Secret::expose`] is the only way
//!   to the value, so every use of it can be found with a grep.
//! - [`SecretUrl`]: a URL whose path and query are the credential (Slack and
//!   Teams incoming webhooks, signed webhook URLs). It prints as its origin
//!   and `/<redacted>`; [`SecretUrl::origin`] names the destination in errors
//!   and logs.
//! - [`SecretMap`]: client properties (librdkafka's) where some keys hold
//!   credentials: values of keys that look like one
//!   ([`SecretMap::is_sensitive`]) print as `<redacted>`.
//!
//! Deserializing reads the value as written: a config file is where secrets
//! come from. Printing a config (`tooltrail config show`) never shows one.
//!
//! ```
//! use tooltrail_schemas::{Secret, SecretUrl};
//!
//! let secret: Secret = serde_json::from_str(r#""hunter2-hunter2""#).unwrap();
//! assert_eq!(secret.to_string(), "<redacted>");
//! assert_eq!(serde_json::to_string(&secret).unwrap(), r#""<redacted>""#);
//! assert_eq!(secret.expose(), "hunter2-hunter2");
//!
//! let url = SecretUrl::new("https://hooks.slack.com/services/T0/B0/XYZ?x=1");
//! assert_eq!(url.to_string(), "https://hooks.slack.com/<redacted>");
//! assert_eq!(url.origin(), "https://hooks.slack.com");
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// What every masked value prints as.
pub const REDACTED: &str = "<redacted>";

/// A credential: printed, logged and serialized as `<redacted>`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call it only where the credential is used (signing a
    /// request, handing it to a client library), never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Secret {
    /// In constant time for values of equal length.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REDACTED:?}")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// A URL whose path, query and user info are a credential. Printed as its
/// origin followed by `/<redacted>`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(Secret::new(url))
    }

    /// The whole URL, to send a request to. Never print it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// `scheme://host[:port]`, without user info, path or query: what names
    /// the destination in errors and logs. Empty when the URL has no `://`.
    pub fn origin(&self) -> &str {
        let url = self.expose();
        let Some(scheme_end) = url.find("://") else {
            return "";
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if rest[..authority_end].contains('@') {
            // User info is a credential too; an origin cannot be borrowed
            // without it, so name the scheme only.
            return &url[..scheme_end];
        }
        &url[..scheme_end + 3 + authority_end]
    }

    /// The host (name or address, without port), for logs.
    pub fn host(&self) -> &str {
        let origin = self.origin();
        let authority = origin.split_once("://").map_or("", |(_, a)| a);
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split(']').next().unwrap_or("");
        }
        authority.split(':').next().unwrap_or("")
    }

    /// What to print: the origin, the rest masked.
    pub fn redacted(&self) -> String {
        match self.origin() {
            "" => REDACTED.to_owned(),
            origin if !origin.contains("://") => format!("{origin}://{REDACTED}"),
            origin => format!("{origin}/{REDACTED}"),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// String properties for a client library, some of them credentials (e.g.
/// `sasl.password`). The values of sensitive keys are masked in `Debug` and
/// `Serialize`; [`SecretMap::expose`] hands them all to the client.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretMap(BTreeMap<String, String>);

/// Parts of a property name that mark its value as a credential. Generous
/// on purpose: masking a harmless value costs a look at the file.
const SENSITIVE_KEY_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "jaas",
    "token",
    "key",
    "credential",
    "oauthbearer",
    "pem",
    "auth",
];

impl SecretMap {
    /// Whether the value of property `key` is treated as a credential.
    pub fn is_sensitive(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        SENSITIVE_KEY_PARTS.iter().any(|part| key.contains(part))
    }

    /// Every property with its real value, to configure the client. Never
    /// print what this yields.
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn masked(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| {
            let shown = if Self::is_sensitive(k) { REDACTED } else { v };
            (k.as_str(), shown)
        })
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for SecretMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        SecretMap(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for SecretMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.masked()).finish()
    }
}

impl Serialize for SecretMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_masked_in_every_printed_form_and_read_as_written() {
        let secret: Secret = serde_json::from_str(r#""canary-1234""#).unwrap();
        assert_eq!(secret.expose(), "canary-1234");
        for shown in [
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{secret:#?}"),
            serde_json::to_string(&secret).unwrap(),
            format!("{:?}", Some(&secret)),
        ] {
            assert!(!shown.contains("canary"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn secrets_compare_by_value() {
        assert_eq!(Secret::new("abc"), Secret::new("abc"));
        assert_ne!(Secret::new("abc"), Secret::new("abd"));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
    }

    #[test]
    fn a_url_prints_its_origin_only() {
        for (url, origin, host, shown) in [
            (
                "https://hooks.slack.com/services/T0/B0/canary",
                "https://hooks.slack.com",
                "hooks.slack.com",
                "https://hooks.slack.com/<redacted>",
            ),
            (
                "http://127.0.0.1:9/hook?sig=canary",
                "http://127.0.0.1:9",
                "127.0.0.1",
                "http://127.0.0.1:9/<redacted>",
            ),
            (
                "https://x.example.com?canary",
                "https://x.example.com",
                "x.example.com",
                "https://x.example.com/<redacted>",
            ),
            (
                "http://[::1]:8080#canary",
                "http://[::1]:8080",
                "::1",
                "http://[::1]:8080/<redacted>",
            ),
            (
                "https://user:canary@x.example.com/p",
                "https",
                "",
                "https://<redacted>",
            ),
            ("canary", "", "", "<redacted>"),
        ] {
            let url = SecretUrl::new(url);
            assert_eq!(url.origin(), origin, "{url:?}");
            assert_eq!(url.host(), host, "{url:?}");
            assert_eq!(url.to_string(), shown);
            assert_eq!(format!("{url:?}"), format!("{shown:?}"));
            assert_eq!(
                serde_json::to_string(&url).unwrap(),
                format!("{shown:?}"),
                "serialized"
            );
            assert!(url.expose().contains("canary"));
        }
    }

    #[test]
    fn credential_properties_are_masked_and_the_rest_shown() {
        let props: SecretMap = serde_json::from_str(
            r#"{"security.protocol": "sasl_ssl", "sasl.username": "svc",
                "sasl.password": "canary-1", "sasl.jaas.config": "canary-2",
                "ssl.key.password": "canary-3", "ssl.keystore.password": "canary-4",
                "sasl.oauthbearer.client.secret": "canary-5", "SASL.PASSWORD": "canary-6",
                "ssl.key.pem": "canary-7", "session.timeout.ms": "6000"}"#,
        )
        .unwrap();
        let serialized = serde_json::to_string(&props).unwrap();
        let debug = format!("{props:?}");
        for shown in [&serialized, &debug] {
            assert!(!shown.contains("canary"), "{shown}");
            assert!(
                shown.contains("sasl_ssl") && shown.contains("6000"),
                "{shown}"
            );
            assert!(shown.contains("svc"), "{shown}");
        }
        let exposed: BTreeMap<&str, &str> = props.expose().collect();
        assert_eq!(exposed["sasl.password"], "canary-1");
        assert_eq!(exposed.len(), 10);
    }
}
