//! The Postgres wire endpoint against real clients: `psql` (Debian
//! `postgresql-client`, required), and when installed psycopg 3 (Debian
//! `python3-psycopg`) and pgjdbc, the driver of DBeaver and Metabase (Debian
//! `libpostgresql-jdbc-java` and a JRE); the tests of those two say
//! "skipped" without them. What no client sends on demand (row-limited
//! Execute, cancel requests, a failure after some rows, injection attempts in
//! parameters) goes through a raw protocol client written here from the
//! protocol documentation.
//!
//! Each test starts the server on `127.0.0.1:0` over a temporary lake holding
//! 8 events of tenant `acme` and 3 of tenant `globex`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tooltrail_ingest::batch::{Pending, TimeWindow};
use tooltrail_ingest::metrics::Metrics;
use tooltrail_query::auth::backoff::LoginLimiter;
use tooltrail_query::auth::token_hash;
use tooltrail_query::config::TokenConfig;
use tooltrail_query::pgwire::{self, WireMetrics};
use tooltrail_query::{Engine, QueryConfig, QueryMetrics, Role};
use tooltrail_schemas::lake::Source;

#[path = "pgwire/hardening.rs"]
mod hardening;

const ACME: &str = "tok-acme";
const GLOBEX: &str = "tok-globex";
const ADMIN: &str = "tok-admin";
const ACME_EVENTS: usize = 8;
const GLOBEX_EVENTS: usize = 3;

/// Writes the fixture lake: 8 acme events (every fourth denied), 3 globex.
fn write_lake(root: &Path) {
    let location = tooltrail_lake::Location::local(root).expect("a lake location");
    // A runtime of its own, on a thread of its own: callers may be async.
    let run = |future| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime")
                        .block_on(future)
                })
                .join()
                .expect("the writer thread")
        })
    };
    let mut pending = Pending::new(TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(3600),
    });
    let received = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    let mut line = 0;
    for (tenant, n) in [("acme", ACME_EVENTS), ("globex", GLOBEX_EVENTS)] {
        for i in 0..n {
            let (decision, status) = if i % 4 == 3 {
                ("deny", 403)
            } else {
                ("allow", 200)
            };
            let event = format!(
                r#"{{"schema_version":1,"event_id":"{tenant}-{i}","time":"2026-11-22T09:{i:02}:00Z","tenant_id":"{tenant}","user_id":"u{}@{tenant}.com","server":"github","method":"tools/call","tool":"create_issue","decision":"{decision}","status":{status},"scopes":["repo","read:org"],"attributes":{{"team":"red"}}}}"#,
                i % 3
            );
            line += 1;
            pending
                .push(
                    event.as_bytes(),
                    received,
                    Source::File {
                        path: "fixture",
                        line,
                    },
                )
                .expect("a valid fixture event");
        }
    }
    let metrics = Metrics::register(&mut Default::default());
    run(Box::pin(async {
        let mut lake = tooltrail_lake::Writer::open(&location, 3, Default::default())
            .await
            .expect("open lake");
        pending
            .commit_to(&mut lake, &metrics, "file")
            .await
            .expect("commit fixture")
            .map(drop)
    }));
}

/// Three tokens: acme's analyst, globex's analyst, and an admin.
fn fixture_config() -> QueryConfig {
    let token = |name: &str, secret: &str, role, tenants: &[&str]| TokenConfig {
        name: name.into(),
        sha256: token_hash(secret),
        role,
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
    };
    QueryConfig {
        tokens: vec![
            token("acme-analyst", ACME, Role::Analyst, &["acme"]),
            token("globex-analyst", GLOBEX, Role::Analyst, &["globex"]),
            token("root", ADMIN, Role::Admin, &["*"]),
        ],
        ..Default::default()
    }
}

/// The engine over the fixture lake, written under `dir`.
fn fixture_engine(dir: &Path, config: &QueryConfig) -> Engine {
    let lake = dir.join("lake");
    write_lake(&lake);
    config.validate().expect("valid config");
    Engine::open(
        &tooltrail_lake::Location::local(&lake).expect("lake location"),
        config,
        &dir.join("spill"),
        QueryMetrics::unregistered(),
    )
    .expect("open engine")
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    metrics: WireMetrics,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(max_rows: usize) -> Server {
        Server::start_with(|config| config.max_rows = max_rows).await
    }

    async fn start_with(configure: impl FnOnce(&mut QueryConfig)) -> Server {
        Server::start_inner(false, configure).await
    }

    /// With TLS: a self-signed certificate for `localhost` and 127.0.0.1,
    /// made now.
    async fn start_tls(configure: impl FnOnce(&mut QueryConfig)) -> Server {
        Server::start_inner(true, configure).await
    }

    async fn start_inner(tls: bool, configure: impl FnOnce(&mut QueryConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fixture_config();
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let made =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .unwrap();
            std::fs::write(&cert, made.cert.pem()).unwrap();
            std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
            config.pgwire.tls_cert = Some(cert);
            config.pgwire.tls_key = Some(key);
        }
        configure(&mut config);
        let engine = fixture_engine(dir.path(), &config);
        let metrics = WireMetrics::default();
        let logins = LoginLimiter::new(&config.login_backoff, Default::default());
        let server =
            pgwire::Server::build(&config.pgwire, engine, Arc::new(logins), metrics.clone())
                .expect("the certificate loads");
        assert_eq!(server.tls(), tls);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
            metrics,
            _dir: dir,
        }
    }

    /// Runs psql with `args` (and `stdin`), logging in with `token`.
    async fn psql(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Psql {
        self.psql_ssl("disable", token, args, stdin).await
    }

    /// [`Server::psql`] with `sslmode`.
    async fn psql_ssl(
        &self,
        sslmode: &str,
        token: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Psql {
        let mut command = tokio::process::Command::new("psql");
        command
            .arg(format!(
                "host={} port={} user=ana dbname=tooltrail sslmode={sslmode} connect_timeout=10",
                self.addr.ip(),
                self.addr.port()
            ))
            .args([
                "-X",
                "-w",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
            ])
            .args(args)
            .env("PGPASSWORD", token)
            .env_remove("PGSERVICE")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .expect("psql is installed (Debian: postgresql-client)");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("psql finished within a minute")
            .unwrap();
        Psql {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `psql -c sql` as `token`, which must succeed; its output.
    async fn query(&self, token: &str, sql: &str) -> String {
        let out = self.psql(token, &["-c", sql], None).await;
        assert!(out.ok, "{sql}: {out:?}");
        out.stdout
    }

    /// `psql -c sql` as `token`, which must fail; its error output.
    async fn fails(&self, token: &str, sql: &str) -> String {
        let out = self.psql(token, &["-c", sql], None).await;
        assert!(!out.ok, "{sql} succeeded: {out:?}");
        out.stderr
    }

    async fn shutdown(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

#[derive(Debug)]
struct Psql {
    ok: bool,
    stdout: String,
    stderr: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_sees_only_the_rows_of_its_tokens_tenants() {
    let server = Server::start(1000).await;
    assert_eq!(
        server
            .query(ACME, "SELECT DISTINCT tenant_id FROM events")
            .await,
        "acme"
    );
    assert_eq!(
        server.query(ACME, "SELECT count(*) FROM events").await,
        ACME_EVENTS.to_string()
    );
    assert_eq!(
        server.query(GLOBEX, "SELECT count(*) FROM events").await,
        GLOBEX_EVENTS.to_string()
    );
    assert_eq!(
        server
            .query(
                ACME,
                "SELECT count(*) FROM events WHERE tenant_id = 'globex'"
            )
            .await,
        "0"
    );
    assert_eq!(
        server
            .query(
                ACME,
                "SELECT count(*) FROM events WHERE tenant_id = 'globex' OR true"
            )
            .await,
        ACME_EVENTS.to_string()
    );
    assert_eq!(
        server.query(ADMIN, "SELECT count(*) FROM events").await,
        (ACME_EVENTS + GLOBEX_EVENTS).to_string()
    );
    // Every column, the map `attributes` among them (sent as text).
    let row = server
        .query(ACME, "SELECT * FROM events WHERE event_id = 'acme-3'")
        .await;
    assert!(
        row.contains("|acme|") && row.contains("deny") && row.contains("team"),
        "{row}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_at_login() {
    let server = Server::start(1000).await;
    for wrong in ["tok-nope", &token_hash(ACME), "tok-acme "] {
        let out = server.psql(wrong, &["-c", "SELECT 1"], None).await;
        assert!(!out.ok, "{wrong:?} logged in: {out:?}");
        assert!(
            out.stderr
                .contains("password authentication failed for user \"ana\""),
            "{out:?}"
        );
        assert!(out.stdout.is_empty());
    }
    let refused = Raw::login(server.addr, "tok-nope")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.get(&b'S').map(String::as_str), Some("FATAL"));
    assert_eq!(refused.get(&b'C').map(String::as_str), Some("28P01"));
    // A client that carries on after the FATAL gets no rows.
    let (mut refused, _) = Raw::attempt(server.addr, "tok-nope").await;
    let _ = refused
        .try_send(b'Q', cstring("SELECT count(*) FROM events"))
        .await;
    let replies = refused.until_ready().await;
    assert!(replies.iter().all(|m| m.tag != b'D'), "{replies:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_copy_and_engine_settings_are_refused_as_read_only() {
    let server = Server::start(1000).await;
    for sql in [
        "DROP TABLE events",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO events (event_id) VALUES ('x')",
        "SET datafusion.execution.batch_size = 1",
        "COPY events TO STDOUT",
        "COPY events FROM STDIN",
        "COPY (SELECT * FROM events) TO '/tmp/tooltrail-pgwire-test.csv'",
    ] {
        let stderr = server.fails(ACME, sql).await;
        assert!(
            stderr.contains("42501") && stderr.contains("read-only"),
            "{sql}: {stderr}"
        );
    }
    // The first error ends a multi-statement string: what came before ran.
    let out = server
        .psql(
            ACME,
            &["-c", "SELECT 'before'; DROP TABLE events; SELECT 'after'"],
            None,
        )
        .await;
    assert!(
        !out.ok && out.stdout.contains("before") && !out.stdout.contains("after"),
        "{out:?}"
    );
    assert!(out.stderr.contains("read-only"), "{out:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sql_error_reports_the_engines_message_and_sqlstate() {
    let server = Server::start(1000).await;
    let stderr = server
        .fails(ACME, "SELECT no_such_column FROM events")
        .await;
    assert!(
        stderr.contains("ERROR:  42601:") && stderr.contains("no_such_column"),
        "{stderr}"
    );
    let stderr = server.fails(ACME, "SELECT * FROM query_audit").await;
    assert!(
        stderr.contains("42501") && stderr.contains("admin"),
        "{stderr}"
    );
    // The connection survives an error.
    let out = server
        .psql(ACME, &["-v", "ON_ERROR_STOP=0", "-c", "SELECT nope"], None)
        .await;
    assert!(out.stderr.contains("nope"), "{out:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_session_chatter_is_answered_on_the_connection() {
    let server = Server::start(1000).await;
    assert_eq!(
        server.query(ACME, "SET application_name = 'grafana'").await,
        "SET"
    );
    assert_eq!(
        server
            .query(
                ACME,
                "SET extra_float_digits = 3; SET application_name TO dbeaver; SHOW application_name"
            )
            .await
            .lines()
            .last(),
        Some("dbeaver")
    );
    assert_eq!(
        server.query(ACME, "SHOW transaction isolation level").await,
        "read committed"
    );
    assert_eq!(
        server
            .query(ACME, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            .await,
        "SET"
    );
    let out = server
        .query(ACME, "BEGIN; SELECT count(*) FROM events; COMMIT")
        .await;
    assert_eq!(out.lines().collect::<Vec<_>>(), ["BEGIN", "8", "COMMIT"]);
    assert!(
        server
            .query(ACME, "SELECT version()")
            .await
            .starts_with("PostgreSQL 16")
    );
    assert_eq!(
        server
            .query(
                ACME,
                "SELECT current_schema(), current_database(), current_user AS who"
            )
            .await,
        "public|tooltrail|acme-analyst"
    );
    let stderr = server.fails(ACME, "SET client_encoding = 'LATIN1'").await;
    assert!(
        stderr.contains("22023") && stderr.contains("UTF8"),
        "{stderr}"
    );
    // Chatter never reached the engine: only the count is in the audit.
    let audited = server
        .query(
            ADMIN,
            "SELECT sql FROM query_audit WHERE principal = 'acme-analyst' AND phase = 'start'",
        )
        .await;
    assert_eq!(audited, "SELECT count(*) FROM events", "{audited}");
    let transports = server
        .query(ADMIN, "SELECT DISTINCT transport FROM query_audit")
        .await;
    assert_eq!(transports, "pgwire");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_row_cap_ends_a_long_result_with_a_notice() {
    let server = Server::start(5).await;
    let out = server
        .psql(
            ACME,
            &["-c", "SELECT event_id FROM events ORDER BY event_id"],
            None,
        )
        .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout.lines().count(), 5, "{out:?}");
    assert!(
        out.stderr
            .contains("NOTICE:  01000: the result was capped at 5 rows (query.max_rows)"),
        "{out:?}"
    );
    // Exactly at the cap: nothing was left out, no notice.
    let out = server
        .psql(ACME, &["-c", "SELECT event_id FROM events LIMIT 5"], None)
        .await;
    assert!(out.ok && !out.stderr.contains("capped"), "{out:?}");
    server.shutdown().await;
}

/// psql 15's only use of the extended protocol is `\gdesc` (Parse and
/// Describe); its follow-up query needs `pg_catalog.format_type`, which the
/// engine lacks, so only the refusal at Parse is checked here.
#[tokio::test(flavor = "multi_thread")]
async fn psql_prepares_through_the_engines_read_only_check() {
    let server = Server::start(1000).await;
    let out = server
        .psql(ACME, &["-f", "-"], Some("DROP TABLE events \\gdesc\n"))
        .await;
    assert!(
        !out.ok && out.stderr.contains("42501") && out.stderr.contains("read-only"),
        "{out:?}"
    );
    server.shutdown().await;
}

/// psql 16 added `\bind`; older ones are covered by the raw client below.
#[tokio::test(flavor = "multi_thread")]
async fn psql_binds_parameters() {
    let version = std::process::Command::new("psql")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let major: u32 = version
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.split('.').next()?.parse().ok())
        .unwrap_or(0);
    if major < 16 {
        eprintln!("skipped: {} has no \\bind", version.trim());
        return;
    }
    let server = Server::start(1000).await;
    let script = "SELECT $1::text AS greeting \\bind hello \\g\n\
                  SELECT count(*) FROM events WHERE tenant_id = $1 \\bind globex \\g\n\
                  SELECT count(*) FROM events WHERE status = $1 \\bind 403 \\g\n";
    let out = server.psql(ACME, &["-f", "-"], Some(script)).await;
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["hello", "0", "2"]);
    server.shutdown().await;
}

/// psycopg 3, a libpq driver that binds parameters on the server: named
/// prepared statements, binary parameters and results, `DEALLOCATE ALL` on
/// rollback. Skipped without it (Debian: python3-psycopg).
#[tokio::test(flavor = "multi_thread")]
async fn psycopg_binds_parameters_and_reads_binary_results() {
    const SCRIPT: &str = r#"
import datetime, sys, psycopg
utc = datetime.timezone.utc
with psycopg.connect(sys.argv[1]) as conn:
    assert conn.info.server_version >= 160000
    cur = conn.cursor()
    for _ in range(7):  # past prepare_threshold: named statements
        cur.execute("SELECT count(*) FROM events WHERE tenant_id = %s", ("acme",))
        assert cur.fetchone() == (8,)
    cur.execute("SELECT count(*) FROM events WHERE tenant_id = %s", ("acme' OR tenant_id = 'globex",))
    assert cur.fetchone() == (0,)
    cur.execute("SELECT count(*) FROM events WHERE status = %s", (403,))
    assert cur.fetchone() == (2,)
    since = datetime.datetime(2026, 11, 22, 9, 6, tzinfo=utc)
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT event_id, time, status, scopes, attributes FROM events "
                    "WHERE time >= %s ORDER BY event_id", (since,))
        rows = cur.fetchall()
        assert rows == [("acme-6", since, 200, ["repo", "read:org"], "{team: red}"),
                        ("acme-7", since + datetime.timedelta(minutes=1), 403, ["repo", "read:org"],
                         "{team: red}")], rows
    conn.rollback()
    try:
        cur.execute("DROP TABLE events")
        raise AssertionError("DROP TABLE ran")
    except psycopg.errors.InsufficientPrivilege as e:
        assert "read-only" in str(e)
    conn.rollback()
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
"#;
    let python = "/usr/bin/python3";
    let available = std::process::Command::new(python)
        .args(["-c", "import psycopg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("skipped: no psycopg 3 for {python} (Debian: python3-psycopg)");
        return;
    }
    let server = Server::start(1000).await;
    let conninfo = format!(
        "host={} port={} user=ana dbname=tooltrail sslmode=disable password={ACME}",
        server.addr.ip(),
        server.addr.port()
    );
    let out = tokio::process::Command::new(python)
        .args(["-c", SCRIPT, &conninfo])
        .output()
        .await
        .unwrap();
    assert_succeeded(&out);
    server.shutdown().await;
}

/// Fails with the client's stderr unless it exited successfully.
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pgjdbc's jar, if java and the driver are installed (Debian:
/// libpostgresql-jdbc-java); else the test says it is skipped.
fn pgjdbc() -> Option<&'static str> {
    let jar = "/usr/share/java/postgresql.jar";
    let java = std::process::Command::new("java").arg("-version").output();
    if !java.is_ok_and(|o| o.status.success()) || !Path::new(jar).exists() {
        eprintln!("skipped: needs java and {jar} (Debian: libpostgresql-jdbc-java)");
        return None;
    }
    Some(jar)
}

/// Runs the one-file Java `program` (class `class`) with pgjdbc on its
/// class path and `args`, and asserts that it succeeds.
async fn run_java(jar: &str, class: &str, program: &str, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join(format!("{class}.java"));
    std::fs::write(&source, program).unwrap();
    let out = tokio::process::Command::new("java")
        .args(["-cp", jar])
        .arg(&source)
        .args(args)
        .output()
        .await
        .unwrap();
    assert_succeeded(&out);
}

/// pgjdbc, the driver of DBeaver and Metabase: server-prepared statements
/// with binary transfer, a read-only connection, manual commit, a cursor
/// (fetch size). Skipped without java and the driver (Debian:
/// libpostgresql-jdbc-java).
#[tokio::test(flavor = "multi_thread")]
async fn jdbc_prepares_binds_and_fetches_in_pages() {
    const PROGRAM: &str = r#"
import java.sql.*;
import java.time.*;

public class Check {
    static void check(boolean ok, String what) { if (!ok) throw new AssertionError(what); }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], "ana", args[1])) {
            check(c.getMetaData().getDatabaseMajorVersion() == 16, "major version");
            c.setReadOnly(true);
            String sql = "SELECT event_id, time, status, scopes FROM events "
                + "WHERE tenant_id = ? AND status = ? AND time >= ? ORDER BY event_id";
            try (PreparedStatement p = c.prepareStatement(sql)) {
                for (int i = 0; i < 7; i++) {  // past prepareThreshold
                    p.setString(1, "acme");
                    p.setInt(2, 403);
                    p.setObject(3, OffsetDateTime.of(2026, 11, 22, 9, 5, 0, 0, ZoneOffset.UTC));
                    try (ResultSet r = p.executeQuery()) {
                        check(r.next(), "a row");
                        check(r.getString(1).equals("acme-7"), r.getString(1));
                        check(r.getObject(2, OffsetDateTime.class).getMinute() == 7, "time");
                        check(r.getInt(3) == 403, "status");
                        check(((Object[]) r.getArray(4).getArray()).length == 2, "scopes");
                        check(!r.next(), "one row");
                    }
                }
            }
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("SELECT event_id FROM events")) {
                p.setFetchSize(3);
                int n = 0;
                try (ResultSet r = p.executeQuery()) { while (r.next()) n++; }
                check(n == 8, "rows in pages: " + n);
            }
            c.commit();
            try (Statement s = c.createStatement()) {
                s.executeQuery("DROP TABLE events");
                check(false, "DROP TABLE ran");
            } catch (SQLException e) {
                check(e.getSQLState().equals("42501"), e.getSQLState());
                c.rollback();
            }
            try (Statement s = c.createStatement();
                 ResultSet r = s.executeQuery("SELECT current_schema(), session_user")) {
                check(r.next() && r.getString(2).equals("acme-analyst"), "session_user");
            }
            // What DBeaver's navigator and Metabase's sync ask first.
            DatabaseMetaData meta = c.getMetaData();
            java.util.List<String> tables = new java.util.ArrayList<>();
            try (ResultSet r = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (r.next()) tables.add(r.getString("TABLE_NAME"));
            }
            check(tables.equals(java.util.List.of("alert_triage", "alerts", "events", "invalid_fields", "ocsf_api_activity", "ocsf_detection_finding")), "tables: " + tables);
            java.util.Map<String, Integer> columns = new java.util.HashMap<>();
            try (ResultSet r = meta.getColumns(null, "public", "events", "%")) {
                while (r.next()) columns.put(r.getString("COLUMN_NAME"), r.getInt("DATA_TYPE"));
            }
            check(columns.get("tenant_id") == Types.VARCHAR, "tenant_id: " + columns);
            check(columns.get("status") == Types.SMALLINT, "status: " + columns);
            check(columns.get("time") == Types.TIMESTAMP, "time: " + columns);
            check(columns.size() == 37, "columns: " + columns.keySet());
        }
        try {
            DriverManager.getConnection(args[0], "ana", "wrong");
            check(false, "a wrong token logged in");
        } catch (SQLException e) {
            check(e.getSQLState().equals("28P01"), e.getSQLState());
        }
    }
}
"#;
    let Some(jar) = pgjdbc() else { return };
    let server = Server::start(1000).await;
    let url = format!(
        "jdbc:postgresql://{}:{}/tooltrail?sslmode=disable",
        server.addr.ip(),
        server.addr.port()
    );
    run_java(jar, "Check", PROGRAM, &[&url, ACME]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_parameters_are_values_never_sql() {
    let server = Server::start(1000).await;
    let mut pg = Raw::login(server.addr, ACME).await.expect("login");
    let count = "SELECT count(*) AS n FROM events WHERE tenant_id = $1";
    for (value, expected) in [
        ("acme", ACME_EVENTS),
        ("globex", 0),
        ("acme' OR tenant_id = 'globex", 0),
        ("x' OR true OR 'x", 0),
    ] {
        let replies = pg
            .extended(count, &[0], &[Some(value.as_bytes())], &[0], 0)
            .await;
        assert_eq!(
            rows(&replies),
            [[Some(expected.to_string())]],
            "{value}: {replies:?}"
        );
    }
    // Declared types are casts; binary int8 in, binary int8 out.
    let replies = pg
        .extended(
            "SELECT count(*) AS n FROM events WHERE status = $1",
            &[20],
            &[Some(&403i64.to_be_bytes()[..])],
            &[1],
            1,
        )
        .await;
    let description = replies
        .iter()
        .find(|m| m.tag == b'T')
        .expect("RowDescription");
    assert_eq!(field_types(description), [20], "count is int8");
    let binary = replies.iter().find(|m| m.tag == b'D').expect("a row");
    assert_eq!(data_row(binary), [Some(2i64.to_be_bytes().to_vec())]);
    // A NULL parameter, and a parameter the query does not compare to text.
    let replies = pg
        .extended(
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            &[0],
            &[None],
            &[0],
            0,
        )
        .await;
    assert_eq!(rows(&replies), [[Some("0".to_string())]]);
    // Too few parameters is the client's error, and the connection goes on.
    let replies = pg.extended(count, &[0], &[], &[0], 0).await;
    assert_eq!(
        error(&replies).get(&b'C').map(String::as_str),
        Some("08P01"),
        "{replies:?}"
    );
    let replies = pg.simple("SELECT 1").await;
    assert_eq!(rows(&replies), [[Some("1".to_string())]]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_limited_execute_suspends_the_portal_and_the_cap_still_notices() {
    let server = Server::start(5).await;
    let mut pg = Raw::login(server.addr, ACME).await.expect("login");
    pg.send(
        b'P',
        parse("", "SELECT event_id FROM events ORDER BY event_id", &[]),
    )
    .await;
    pg.send(b'B', bind(&[0])).await;
    pg.send(b'E', execute(2)).await;
    pg.send(b'E', execute(0)).await;
    pg.send(b'S', Vec::new()).await;
    let replies = pg.until_ready().await;
    let tags: Vec<char> = replies.iter().map(|m| m.tag as char).collect();
    assert_eq!(
        tags,
        ['1', '2', 'D', 'D', 's', 'D', 'D', 'D', 'C', 'N', 'Z'],
        "{replies:?}"
    );
    let ids: Vec<_> = rows(&replies).into_iter().flatten().flatten().collect();
    assert_eq!(ids, ["acme-0", "acme-1", "acme-2", "acme-3", "acme-4"]);
    let notice = fields(replies.iter().find(|m| m.tag == b'N').unwrap());
    assert!(notice[&b'M'].contains("capped at 5 rows"), "{notice:?}");
    // A read-only refusal at Parse, then the connection goes on after Sync.
    let replies = pg.extended("DELETE FROM events", &[], &[], &[0], 0).await;
    assert_eq!(
        error(&replies).get(&b'C').map(String::as_str),
        Some("42501")
    );
    let replies = pg
        .extended("SHOW transaction_read_only", &[], &[], &[0], 0)
        .await;
    assert_eq!(rows(&replies), [[Some("on".to_string())]]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting() {
    let server = Server::start(1000).await;
    let addr = server.addr;
    let open = Raw::login(addr, ACME).await.expect("login");
    server.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    drop(open);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_some_rows_ends_the_result_with_an_error() {
    let server = Server::start_with(|config| config.max_rows = usize::MAX).await;
    let mut pg = Raw::login(server.addr, ACME).await.expect("login");
    // 8^5 rows through one stream (row_number needs one) in batches of at
    // most 8,192; the 20,000th divides by zero, after two whole batches.
    let sql = "SELECT 1 / (CAST(row_number() OVER () AS BIGINT) - 20000) AS x \
               FROM events a, events b, events c, events d, events e";
    pg.send(b'Q', cstring(sql)).await;
    let (mut tags, mut rows) = (String::new(), 0u64);
    let failure = loop {
        let message = pg.recv().await;
        match message.tag {
            b'D' => rows += 1,
            b'E' => break fields(&message),
            tag => tags.push(tag as char),
        }
    };
    assert!(rows > 0, "the failure came before any row: {failure:?}");
    assert_eq!(tags, "T", "a result cut short was reported complete");
    assert!(failure[&b'M'].contains("Divide by zero"), "{failure:?}");
    assert_eq!(pg.recv().await.tag, b'Z');
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_request_stops_the_running_query() {
    let server = Server::start_with(|config| config.max_rows = usize::MAX).await;
    let mut pg = Raw::login(server.addr, ACME).await.expect("login");
    let sql = "SELECT a.event_id FROM events a, events b, events c, events d, \
               events e, events f, events g, events h";
    pg.send(b'Q', cstring(sql)).await;
    while pg.recv().await.tag != b'D' {}
    let mut cancel = 16i32.to_be_bytes().to_vec();
    cancel.extend(80877102i32.to_be_bytes());
    cancel.extend(pg.pid_and_key);
    TcpStream::connect(server.addr)
        .await
        .unwrap()
        .write_all(&cancel)
        .await
        .unwrap();
    let failure = loop {
        let message = pg.recv().await;
        match message.tag {
            b'D' => {}
            b'E' => break fields(&message),
            other => panic!("unexpected {}", other as char),
        }
    };
    assert_eq!(failure[&b'C'], "57014", "{failure:?}");
    assert_eq!(pg.recv().await.tag, b'Z');
    assert_eq!(
        rows(&pg.simple("SELECT 1").await),
        [[Some("1".to_string())]]
    );
    server.shutdown().await;
}

/// A message from the server.
#[derive(Debug)]
struct Message {
    tag: u8,
    body: Vec<u8>,
}

/// A minimal Postgres protocol 3.0 client.
struct Raw {
    stream: tokio::io::BufStream<TcpStream>,
    /// From BackendKeyData: what a cancel request names.
    pid_and_key: [u8; 8],
}

impl Raw {
    /// Logs in with a cleartext password; the ErrorResponse fields if refused.
    async fn login(addr: SocketAddr, token: &str) -> Result<Raw, HashMap<u8, String>> {
        let (raw, replies) = Raw::attempt(addr, token).await;
        match replies.iter().find(|m| m.tag == b'E') {
            Some(e) => Err(fields(e)),
            None => Ok(raw),
        }
    }

    /// Sends a login and returns the connection, whatever the answer.
    async fn attempt(addr: SocketAddr, token: &str) -> (Raw, Vec<Message>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut startup = 196608i32.to_be_bytes().to_vec();
        for s in ["user", "raw", "database", "tooltrail", ""] {
            startup.extend(cstring(s));
        }
        let mut packet = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend(startup);
        stream.write_all(&packet).await.unwrap();
        let mut raw = Raw {
            stream: tokio::io::BufStream::new(stream),
            pid_and_key: [0; 8],
        };
        let request = raw.recv().await;
        if request.tag == b'E' {
            // Refused before the password: too many connections, no TLS, or
            // backing off.
            return (raw, vec![request]);
        }
        assert_eq!(
            (request.tag, &request.body[..]),
            (b'R', &3i32.to_be_bytes()[..]),
            "cleartext"
        );
        raw.send(b'p', cstring(token)).await;
        let replies = raw.until_ready().await;
        if let Some(key) = replies.iter().find(|m| m.tag == b'K') {
            raw.pid_and_key.copy_from_slice(&key.body);
        }
        (raw, replies)
    }

    async fn send(&mut self, tag: u8, body: Vec<u8>) {
        self.try_send(tag, body).await.expect("the server reads");
    }

    async fn try_send(&mut self, tag: u8, body: Vec<u8>) -> std::io::Result<()> {
        let mut packet = vec![tag];
        packet.extend(((body.len() + 4) as i32).to_be_bytes());
        packet.extend(body);
        self.stream.write_all(&packet).await?;
        self.stream.flush().await
    }

    async fn recv(&mut self) -> Message {
        let tag = self.stream.read_u8().await.expect("a message");
        let len = self.stream.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        self.stream.read_exact(&mut body).await.unwrap();
        Message { tag, body }
    }

    /// Messages up to and including ReadyForQuery (or the end of the stream).
    async fn until_ready(&mut self) -> Vec<Message> {
        let mut messages = Vec::new();
        loop {
            let Ok(tag) = tokio::time::timeout(Duration::from_secs(30), self.stream.read_u8())
                .await
                .expect("a reply within 30s")
            else {
                return messages;
            };
            let len = self.stream.read_i32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            self.stream.read_exact(&mut body).await.unwrap();
            messages.push(Message { tag, body });
            if tag == b'Z' {
                return messages;
            }
        }
    }

    async fn simple(&mut self, sql: &str) -> Vec<Message> {
        self.send(b'Q', cstring(sql)).await;
        self.until_ready().await
    }

    /// Parse, Describe (statement), Bind, Execute, Sync.
    async fn extended(
        &mut self,
        sql: &str,
        types: &[u32],
        params: &[Option<&[u8]>],
        param_formats: &[i16],
        result_format: i16,
    ) -> Vec<Message> {
        self.send(b'P', parse("", sql, types)).await;
        let mut describe = vec![b'S'];
        describe.extend(cstring(""));
        self.send(b'D', describe).await;
        let mut body = cstring("");
        body.extend(cstring(""));
        body.extend((param_formats.len() as i16).to_be_bytes());
        for f in param_formats {
            body.extend(f.to_be_bytes());
        }
        body.extend((params.len() as i16).to_be_bytes());
        for p in params {
            match p {
                Some(v) => {
                    body.extend((v.len() as i32).to_be_bytes());
                    body.extend(*v);
                }
                None => body.extend((-1i32).to_be_bytes()),
            }
        }
        body.extend(1i16.to_be_bytes());
        body.extend(result_format.to_be_bytes());
        self.send(b'B', body).await;
        self.send(b'E', execute(0)).await;
        self.send(b'S', Vec::new()).await;
        self.until_ready().await
    }
}

fn cstring(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut body = cstring(name);
    body.extend(cstring(sql));
    body.extend((types.len() as i16).to_be_bytes());
    for t in types {
        body.extend(t.to_be_bytes());
    }
    body
}

/// Bind of the unnamed statement, without parameters, to the unnamed portal.
fn bind(result_formats: &[i16]) -> Vec<u8> {
    let mut body = cstring("");
    body.extend(cstring(""));
    body.extend(0i16.to_be_bytes());
    body.extend(0i16.to_be_bytes());
    body.extend((result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend(f.to_be_bytes());
    }
    body
}

fn execute(max_rows: i32) -> Vec<u8> {
    let mut body = cstring("");
    body.extend(max_rows.to_be_bytes());
    body
}

/// The fields of an ErrorResponse or NoticeResponse.
fn fields(message: &Message) -> HashMap<u8, String> {
    message
        .body
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

fn error(replies: &[Message]) -> HashMap<u8, String> {
    fields(
        replies
            .iter()
            .find(|m| m.tag == b'E')
            .expect("an ErrorResponse"),
    )
}

fn data_row(message: &Message) -> Vec<Option<Vec<u8>>> {
    let body = &message.body;
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            at += 4;
            (len >= 0).then(|| {
                let value = body[at..at + len as usize].to_vec();
                at += len as usize;
                value
            })
        })
        .collect()
}

/// The text rows among `replies`.
fn rows(replies: &[Message]) -> Vec<Vec<Option<String>>> {
    replies
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            data_row(m)
                .into_iter()
                .map(|v| v.map(|v| String::from_utf8(v).unwrap()))
                .collect()
        })
        .collect()
}

/// The type OIDs of a RowDescription.
fn field_types(message: &Message) -> Vec<u32> {
    let body = &message.body;
    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            at += body[at..].iter().position(|b| *b == 0).unwrap() + 1;
            let oid = u32::from_be_bytes(body[at + 6..at + 10].try_into().unwrap());
            at += 18;
            oid
        })
        .collect()
}

/// psql's `\dt` and `\d` read `pg_catalog`: it lists the tables the token's
/// role may read, and nothing else, with their columns, and the object ids
/// it hands out hold from one query to the next (`\d` looks a table's oid up
/// in one query and its columns by that oid in another).
#[tokio::test(flavor = "multi_thread")]
async fn psql_lists_and_describes_only_the_tables_its_token_may_read() {
    let server = Server::start(1000).await;
    assert_eq!(
        server.query(ACME, "\\dt").await,
        "public|alert_triage|table|postgres\npublic|alerts|table|postgres\n\
         public|events|table|postgres\n\
         public|invalid_fields|table|postgres\n\
         public|ocsf_api_activity|table|postgres\npublic|ocsf_detection_finding|table|postgres"
    );
    let all = server.query(ADMIN, "\\dt").await;
    for table in [
        "alerts",
        "alert_triage",
        "events",
        "quarantine",
        "query_audit",
        "ocsf_api_activity",
        "ocsf_detection_finding",
    ] {
        assert!(all.contains(&format!("public|{table}|table|")), "{all}");
    }
    let described = server.query(ACME, "\\d events").await;
    for column in [
        "event_id|text||not null|",
        "time|timestamp with time zone||not null|",
        "tenant_id|text||not null|",
        "status|smallint||not null|",
        "scopes|text[]|||",
        "latency_ms|double precision|||",
        "dt|text||not null|",
    ] {
        assert!(
            described.lines().any(|l| l == column),
            "{column} in\n{described}"
        );
    }
    assert_eq!(server.query(ACME, "\\d events").await, described);
    // A table beyond the role is not there to describe, by any route.
    let missing = server.psql(ACME, &["-c", "\\d query_audit"], None).await;
    assert!(
        missing.stderr.contains("Did not find any relation"),
        "{missing:?}"
    );
    assert_eq!(
        server
            .query(
                ACME,
                "SELECT count(*) FROM pg_catalog.pg_class WHERE relname IN ('quarantine', 'query_audit')"
            )
            .await,
        "0"
    );
    assert_eq!(
        server
            .query(
                ACME,
                "SELECT count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c \
                 ON a.attrelid = c.oid WHERE c.relname = 'query_audit'"
            )
            .await,
        "0"
    );
    // Nothing about the rows: the size figures are the same whoever asks
    // (acme holds 8 events, globex 3, the admin sees 11), so they tell no
    // tenant's volume.
    let sizes = "SELECT reltuples, relpages FROM pg_class WHERE relname = 'events'";
    let acme = server.query(ACME, sizes).await;
    assert_eq!(server.query(GLOBEX, sizes).await, acme);
    assert_eq!(server.query(ADMIN, sizes).await, acme);
    // Catalog queries are rewritten for DataFusion (the rewriter blanks
    // correlated subqueries in select lists); an investigator's are not.
    assert_eq!(
        server
            .query(
                ACME,
                "SELECT e.event_id, (SELECT count(*) FROM events x WHERE x.user_id = e.user_id) \
                 FROM events e WHERE e.event_id = 'acme-0'"
            )
            .await,
        "acme-0|3"
    );
    server.shutdown().await;
}
