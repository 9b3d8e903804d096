//! The SQL endpoint's settings: `[query]` in the configuration file. Every
//! field has a default; [`QueryConfig::validate`] names each bad field.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Role;

/// The most `max_expr_depth` may allow; the query threads' stacks are sized
/// for it.
pub const MAX_EXPR_DEPTH: usize = 10_000;

/// `[query]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Bearer tokens, stored as SHA-256 hashes: `[[query.tokens]]`.
    pub tokens: Vec<TokenConfig>,
    /// A query running longer than this is cancelled.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Queries running at once, over all principals.
    pub max_concurrent: usize,
    /// Queries running at once for one principal, so that one abusive token
    /// cannot take every slot.
    pub max_concurrent_per_principal: usize,
    /// Longest SQL text accepted, in bytes.
    pub max_sql_bytes: usize,
    /// Rows returned by interactive formats (json, ndjson, csv, table, the
    /// Postgres wire); arrow and parquet exports are uncapped.
    pub max_rows: usize,
    /// The memory all queries share; operators that need more spill to disk.
    pub memory_limit_bytes: usize,
    /// Largest value one function call or operator may build: characters for
    /// `repeat`, `lpad`, `rpad`, `concat`, `concat_ws` and `||`, elements for
    /// `array_repeat`. A query building more fails with 400.
    pub max_function_output: usize,
    /// Deepest nesting of expressions a query may have (`a + a + …` is as
    /// deep as it has terms; so are chains of `OR`, `AND`, `||` and nested
    /// `CASE`). Deeper queries are refused with 400 `query_too_complex`
    /// before they are planned. At most 10000.
    pub max_expr_depth: usize,
    /// Iterations a recursive CTE (`WITH RECURSIVE`) may run before the query
    /// fails with 400.
    pub max_recursion_depth: usize,
    /// Threads that parse, plan and run queries and exports, apart from the
    /// threads of ingest and the HTTP listener, and at a lower priority
    /// (Linux). Default: half the cores, at least one.
    pub threads: Option<usize>,
    /// Moved to `[query.pgwire] listen`; setting it here is an error that
    /// says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pg_listen: Option<String>,
    /// The Postgres wire protocol listener: `[query.pgwire]`.
    pub pgwire: PgWireConfig,
    /// Back-off on failed logins, per source address, on the Postgres wire and
    /// the HTTP API: `[query.login_backoff]`.
    pub login_backoff: LoginBackoffConfig,
    /// Signed compliance exports.
    pub exports: ExportConfig,
    /// The analyst console's sign-in sessions: `[query.console]`.
    pub console: ConsoleConfig,
}

/// `[query.console]`: the console served at `/`. Signing in exchanges a
/// query token for a session cookie (HttpOnly, SameSite=Strict, Secure
/// behind HTTPS); sessions live in the process's memory, so a restart signs
/// everyone out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    #[serde(with = "humantime_serde")]
    pub lifetime: Duration,
    /// Sessions held at once; beyond, the least recently used ends.
    pub max_sessions: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            idle_timeout: Duration::from_secs(60 * 60),
            lifetime: Duration::from_secs(12 * 60 * 60),
            max_sessions: 10_000,
        }
    }
}

/// `[query.exports]`: signed compliance exports (`POST /v1/exports`,
/// `tooltrail export`). Finished exports live in `<data-dir>/exports/<id>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Rows per part file: a part is closed and the next one started after
    /// this many rows.
    pub part_max_rows: u64,
    /// Exports running at once; further exports wait in a queue. Each running
    /// export also holds one of the query slots (`query.max_concurrent` and
    /// `query.max_concurrent_per_principal`) while its query runs.
    pub max_concurrent: usize,
    /// Exports waiting for a slot; when the queue is full, `POST /v1/exports`
    /// answers 429. 0: no queue.
    pub max_queued: usize,
    /// An export still running after this long is cancelled and fails
    /// (`query.timeout` does not apply to exports).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a finished or failed export (its files and its status) is
    /// kept before it is deleted.
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            part_max_rows: 1_000_000,
            max_concurrent: 2,
            max_queued: 32,
            timeout: Duration::from_secs(6 * 3600),
            keep_for: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl ExportConfig {
    /// Checks every field; `(field below exports, problem)` for each bad one.
    pub fn validate(&self) -> Vec<(&'static str, &'static str)> {
        let mut bad = Vec::new();
        if self.part_max_rows == 0 {
            bad.push(("part_max_rows", "must be positive"));
        }
        if self.max_concurrent == 0 {
            bad.push(("max_concurrent", "must be positive"));
        }
        if self.timeout.is_zero() {
            bad.push(("timeout", "must be positive"));
        }
        if self.keep_for < Duration::from_secs(60) {
            bad.push((
                "keep_for",
                "must be at least 1m, so that a finished export can be downloaded",
            ));
        }
        bad
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            tokens: Vec::new(),
            timeout: Duration::from_secs(60),
            max_concurrent: 16,
            max_concurrent_per_principal: 4,
            max_sql_bytes: 64 * 1024,
            max_rows: 100_000,
            memory_limit_bytes: 2 << 30,
            max_function_output: 1 << 20,
            max_expr_depth: 1000,
            max_recursion_depth: 1000,
            threads: None,
            pg_listen: None,
            pgwire: PgWireConfig::default(),
            login_backoff: LoginBackoffConfig::default(),
            console: ConsoleConfig::default(),
            exports: ExportConfig::default(),
        }
    }
}

/// `[query.pgwire]`: the Postgres wire protocol listener, for psql, Grafana,
/// Metabase and DBeaver (the password is a query token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgWireConfig {
    /// Address to listen on (`host:port`); none by default (no listener).
    pub listen: Option<String>,
    /// The server's certificate chain (PEM), leaf first. With `tls_key`, the
    /// listener accepts TLS (`sslmode=require`); without both, it refuses
    /// TLS and tokens cross the network in clear.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Refuse logins that did not negotiate TLS (FATAL 28000). Needs
    /// `tls_cert` and `tls_key`.
    pub require_tls: bool,
    /// Connections open at once; one more is refused with FATAL 53300
    /// (too_many_connections) and closed.
    pub max_connections: usize,
    /// A connection that sends no message for this long is closed with
    /// FATAL 57P05 (idle_session_timeout). A running query is not idle.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PgWireConfig {
    fn default() -> Self {
        PgWireConfig {
            listen: None,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            max_connections: 64,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl PgWireConfig {
    /// Checks every field; `(field below pgwire, problem)` for each bad one.
    pub fn validate(&self) -> Vec<(&'static str, &'static str)> {
        let mut bad = Vec::new();
        if self.max_connections == 0 {
            bad.push(("max_connections", "must be positive"));
        }
        if self.idle_timeout < Duration::from_secs(1) {
            bad.push(("idle_timeout", "must be at least 1s"));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => bad.push(("tls_key", "must be set with tls_cert")),
            (None, Some(_)) => bad.push(("tls_cert", "must be set with tls_key")),
            (None, None) if self.require_tls => bad.push((
                "require_tls",
                "needs tls_cert and tls_key: without them no client can connect",
            )),
            _ => {}
        }
        bad
    }
}

/// `[query.login_backoff]`: after `max_failures` failed logins from one
/// source address (an IPv4 address, or an IPv6 /64), each with less than
/// `window` since the one before, further logins from it are refused for
/// `initial` (Postgres wire: FATAL 28000; HTTP: 429 `too_many_failed_logins`
/// with `Retry-After`), then for twice as long after each further failure,
/// up to `max`. A successful login, or `window` without a failure once the
/// refusal has passed, forgets the address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginBackoffConfig {
    /// Failed logins from one address before it is refused. 0 turns the
    /// back-off off.
    pub max_failures: u32,
    /// Failures further apart than this start the count again.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The first refusal's length.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// The longest refusal.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Addresses remembered at once; beyond, the one whose last failure is
    /// oldest is forgotten, so that a spray of addresses cannot grow memory.
    pub max_addresses: usize,
}

impl Default for LoginBackoffConfig {
    fn default() -> Self {
        LoginBackoffConfig {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5 * 60),
            max_addresses: 10_000,
        }
    }
}

impl LoginBackoffConfig {
    /// Checks every field; `(field below login_backoff, problem)` for each bad one.
    pub fn validate(&self) -> Vec<(&'static str, &'static str)> {
        let mut bad = Vec::new();
        if self.window.is_zero() {
            bad.push(("window", "must be positive"));
        }
        if self.initial.is_zero() {
            bad.push(("initial", "must be positive"));
        }
        if self.max < self.initial {
            bad.push(("max", "must be at least initial"));
        }
        if self.max_addresses == 0 {
            bad.push(("max_addresses", "must be positive"));
        }
        bad
    }
}

/// One `[[query.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token; recorded in the query audit.
    pub name: String,
    /// Lowercase hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    pub role: Role,
    /// Tenants whose rows the token sees; `["*"]` for all.
    pub tenants: Vec<String>,
}

/// A bad field in `[query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path below `query`, e.g. `tokens[0].sha256`.
    pub field: String,
    pub problem: String,
}

impl QueryConfig {
    /// Checks every field, naming each bad one.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bad = |field: String, problem: &str| {
            errors.push(ConfigError {
                field,
                problem: problem.into(),
            })
        };
        for (name, value) in [
            ("max_concurrent", self.max_concurrent),
            (
                "max_concurrent_per_principal",
                self.max_concurrent_per_principal,
            ),
            ("max_sql_bytes", self.max_sql_bytes),
            ("max_rows", self.max_rows),
            ("memory_limit_bytes", self.memory_limit_bytes),
            ("max_function_output", self.max_function_output),
            ("max_expr_depth", self.max_expr_depth),
            ("max_recursion_depth", self.max_recursion_depth),
            ("threads", self.threads.unwrap_or(1)),
        ] {
            if value == 0 {
                bad(name.into(), "must be positive");
            }
        }
        if self.timeout.is_zero() {
            bad("timeout".into(), "must be positive");
        }
        if self.max_expr_depth > MAX_EXPR_DEPTH {
            bad(
                "max_expr_depth".into(),
                "must be at most 10000: deeper expressions do not fit the query threads' stacks",
            );
        }
        for (field, problem) in self.exports.validate() {
            bad(format!("exports.{field}"), problem);
        }
        if self.pg_listen.is_some() {
            bad(
                "pg_listen".into(),
                "has moved: write `[query.pgwire]` with `listen = \"host:port\"`",
            );
        }
        for (field, problem) in self.pgwire.validate() {
            bad(format!("pgwire.{field}"), problem);
        }
        if self.console.idle_timeout.is_zero() {
            bad("console.idle_timeout".into(), "must be positive");
        }
        if self.console.lifetime < self.console.idle_timeout {
            bad(
                "console.lifetime".into(),
                "must be at least console.idle_timeout",
            );
        }
        if self.console.max_sessions == 0 {
            bad("console.max_sessions".into(), "must be at least 1");
        }
        for (field, problem) in self.login_backoff.validate() {
            bad(format!("login_backoff.{field}"), problem);
        }
        let mut names = std::collections::HashSet::new();
        for (i, token) in self.tokens.iter().enumerate() {
            if token.name.is_empty() {
                bad(format!("tokens[{i}].name"), "must not be empty");
            } else if !names.insert(&token.name) {
                bad(format!("tokens[{i}].name"), "is used by another token");
            }
            let hex_ok = token.sha256.len() == 64
                && token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                bad(
                    format!("tokens[{i}].sha256"),
                    "must be 64 lowercase hex digits (the SHA-256 of the token)",
                );
            }
            if token.tenants.is_empty() {
                bad(
                    format!("tokens[{i}].tenants"),
                    "must list at least one tenant, or \"*\" for all",
                );
            }
            if token.tenants.iter().any(|t| t.is_empty()) {
                bad(
                    format!("tokens[{i}].tenants"),
                    "must not hold an empty name",
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields `config.validate()` names, in order.
    fn bad_fields(config: &QueryConfig) -> Vec<String> {
        let errors = config.validate().unwrap_err();
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn bad_export_settings_are_named_by_their_path() {
        let mut config = QueryConfig::default();
        assert_eq!(config.validate(), Ok(()));
        config.exports.part_max_rows = 0;
        config.exports.max_concurrent = 0;
        config.exports.keep_for = Duration::from_secs(1);
        let fields = bad_fields(&config);
        assert_eq!(
            fields,
            [
                "exports.part_max_rows",
                "exports.max_concurrent",
                "exports.keep_for"
            ]
        );
    }

    #[test]
    fn the_old_pg_listen_key_names_its_new_home() {
        let config = QueryConfig {
            pg_listen: Some("127.0.0.1:5433".into()),
            ..QueryConfig::default()
        };
        let errors = config.validate().unwrap_err();
        assert_eq!(errors[0].field, "pg_listen");
        assert!(errors[0].problem.contains("[query.pgwire]"), "{errors:?}");
    }

    #[test]
    fn bad_pgwire_and_backoff_settings_are_named_by_their_path() {
        let mut config = QueryConfig::default();
        config.pgwire.require_tls = true;
        config.pgwire.max_connections = 0;
        config.login_backoff.max = Duration::from_millis(10);
        let fields = bad_fields(&config);
        assert_eq!(
            fields,
            [
                "pgwire.max_connections",
                "pgwire.require_tls",
                "login_backoff.max"
            ]
        );
        config = QueryConfig::default();
        config.pgwire.tls_cert = Some("cert.pem".into());
        let fields = bad_fields(&config);
        assert_eq!(fields, ["pgwire.tls_key"]);
    }
}
