//! The hardened listener (`[query.pgwire]`, `[query.login_backoff]`): TLS
//! with psql and pgjdbc, `require_tls`, the connection limit, the back-off on
//! failed logins (here and over HTTP) and the idle timeout.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn psql_with_sslmode_require_queries_over_tls() {
    let server = Server::start_tls(|_| {}).await;
    let out = server
        .psql_ssl(
            "require",
            ACME,
            &["-c", "SELECT count(*) FROM events", "-c", "\\conninfo"],
            None,
        )
        .await;
    assert!(out.ok, "{out:?}");
    let (count, conninfo) = out.stdout.split_once('\n').expect("two outputs");
    assert_eq!(count, ACME_EVENTS.to_string());
    assert!(
        conninfo.contains("SSL connection (protocol: TLS"),
        "{conninfo}"
    );
    // Plaintext still works while TLS is not required.
    assert_eq!(server.query(ACME, "SELECT 1").await, "1");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_certificate_sslmode_require_is_refused() {
    let server = Server::start(1000).await;
    let out = server
        .psql_ssl("require", ACME, &["-c", "SELECT 1"], None)
        .await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("server does not support SSL"),
        "{out:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn require_tls_refuses_a_plaintext_login_and_names_the_setting() {
    let server = Server::start_tls(|config| config.pgwire.require_tls = true).await;
    let out = server
        .psql_ssl("disable", ACME, &["-c", "SELECT 1"], None)
        .await;
    assert!(!out.ok, "{out:?}");
    // psql shows no SQLSTATE for a failed connection: the raw client checks it.
    assert!(
        out.stderr.contains("query.pgwire.require_tls") && out.stderr.contains("sslmode=require"),
        "{}",
        out.stderr
    );
    // The raw client too: refused before any password is asked for.
    let (_, replies) = Raw::attempt(server.addr, ACME).await;
    assert_eq!(error(&replies)[&b'C'], "28000");
    let out = server
        .psql_ssl("require", ACME, &["-c", "SELECT 1"], None)
        .await;
    assert!(out.ok, "{out:?}");
    assert_eq!(server.refused("tls_required"), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jdbc_connects_with_ssl_require() {
    const PROGRAM: &str = r#"
import java.sql.*;

public class Tls {
    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], "ana", args[1]);
             Statement s = c.createStatement();
             ResultSet r = s.executeQuery("SELECT count(*) FROM events")) {
            if (!r.next() || r.getLong(1) != Long.parseLong(args[2])) throw new AssertionError("count");
        }
        try {
            DriverManager.getConnection(args[0].replace("sslmode=require", "sslmode=disable"), "ana", args[1]);
            throw new AssertionError("a plaintext login was let in");
        } catch (SQLException e) {
            if (!e.getSQLState().equals("28000")) throw new AssertionError(e.getSQLState());
        }
    }
}
"#;
    let Some(jar) = pgjdbc() else { return };
    let server = Server::start_tls(|config| config.pgwire.require_tls = true).await;
    let url = format!(
        "jdbc:postgresql://{}:{}/tooltrail?ssl=true&sslmode=require",
        server.addr.ip(),
        server.addr.port()
    );
    run_java(jar, "Tls", PROGRAM, &[&url, ACME, &ACME_EVENTS.to_string()]).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_over_max_connections_is_refused_with_53300_until_one_closes() {
    let server = Server::start_with(|config| config.pgwire.max_connections = 2).await;
    let first = Raw::login(server.addr, ACME).await.expect("first login");
    let mut second = Raw::login(server.addr, ACME).await.expect("second login");
    let out = server.fails(ACME, "SELECT 1").await;
    assert!(
        out.contains("too many clients already (query.pgwire.max_connections is 2)"),
        "{out}"
    );
    let (_, replies) = Raw::attempt(server.addr, ACME).await;
    assert_eq!(error(&replies)[&b'C'], "53300");
    assert_eq!(server.refused("too_many_connections"), 2);
    // The connections that got in still work.
    assert_eq!(rows(&second.simple("SELECT 7").await), [[Some("7".into())]]);
    drop(first);
    server.wait_for_connections(1).await;
    assert_eq!(server.query(ACME, "SELECT 1").await, "1");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_wrong_tokens_back_the_address_off_even_for_the_right_one() {
    const BACKOFF: Duration = Duration::from_secs(5);
    let server = Server::start_with(|config| {
        config.login_backoff.max_failures = 5;
        config.login_backoff.initial = BACKOFF;
    })
    .await;
    for attempt in 1..=5 {
        let refused = Raw::login(server.addr, "tok-wrong").await.err();
        let code = refused.map(|e| e[&b'C'].clone());
        assert_eq!(code.as_deref(), Some("28P01"), "attempt {attempt}");
    }
    // The sixth, right away, is refused before its token is looked at.
    let refused = Raw::login(server.addr, ACME).await.err().expect("refused");
    assert_eq!(refused[&b'C'], "28000");
    assert!(
        refused[&b'M'].starts_with("too many failed logins from this address: try again in"),
        "{refused:?}"
    );
    let out = server.fails(ACME, "SELECT 1").await;
    assert!(out.contains("too many failed logins"), "{out}");
    // Once the back-off has passed, the right token logs in, and the count
    // starts again: the next wrong token is only a wrong token.
    tokio::time::sleep(BACKOFF).await;
    assert_eq!(server.query(ACME, "SELECT 1").await, "1");
    let refused = Raw::login(server.addr, "tok-wrong")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused[&b'C'], "28P01");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_with_57p05() {
    let server = Server::start_with(|config| {
        config.pgwire.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut pg = Raw::login(server.addr, ACME).await.expect("login");
    assert_eq!(rows(&pg.simple("SELECT 1").await), [[Some("1".into())]]);
    // Nothing more is sent: the server speaks last, then closes.
    let replies = tokio::time::timeout(Duration::from_secs(30), pg.until_ready())
        .await
        .expect("closed within 30s");
    let error = error(&replies);
    assert_eq!(
        (error[&b'S'].as_str(), error[&b'C'].as_str()),
        ("FATAL", "57P05")
    );
    assert!(
        error[&b'M'].contains("query.pgwire.idle_timeout is 1s"),
        "{error:?}"
    );
    let mut rest = Vec::new();
    assert_eq!(pg.stream.read_to_end(&mut rest).await.unwrap(), 0, "closed");
    assert_eq!(server.metrics.idle_closed.get(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_401s_back_the_address_off_with_429_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, logins) = backing_off_after_3_for_60s(dir.path());
    let app = tooltrail_query::auth::peer::guard(tooltrail_query::http::router(engine), logins);
    let (addr, server) = serve_http(app).await;
    let sql = |token: &'static str| http_post(addr, "/v1/sql", token, r#"{"sql": "SELECT 1"}"#);
    assert!(sql(ACME).await.starts_with("HTTP/1.1 200"));
    for _ in 0..3 {
        let reply = sql("tok-wrong").await;
        assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    }
    for token in ["tok-wrong", ACME] {
        let reply = sql(token).await;
        assert_backed_off_for_60s(&reply);
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_let_in_just_before_its_address_backs_off_gets_429_too() {
    use axum::response::IntoResponse;
    let dir = tempfile::tempdir().unwrap();
    let (engine, logins) = backing_off_after_3_for_60s(dir.path());
    // A handler behind the guard in which, before the token is checked, the
    // address fails three times elsewhere: the race of concurrent requests.
    let racing = {
        let logins = Arc::clone(&logins);
        move |headers: axum::http::HeaderMap| async move {
            for _ in 0..3 {
                logins.failure("127.0.0.1".parse().unwrap(), "http");
            }
            match tooltrail_query::http::principal(&engine, &headers) {
                Ok(_) => axum::http::StatusCode::OK.into_response(),
                Err(e) => e.into_response(),
            }
        }
    };
    let app = axum::Router::new().route("/race", axum::routing::post(racing));
    let app = tooltrail_query::auth::peer::guard(app, Arc::clone(&logins));
    let (addr, server) = serve_http(app).await;
    let reply = http_post(addr, "/race", ACME, "").await;
    assert_backed_off_for_60s(&reply);
    server.abort();
}

/// An engine over a fixture lake in `dir`, and a back-off that refuses an
/// address for 60 s after 3 failures.
fn backing_off_after_3_for_60s(dir: &Path) -> (Engine, Arc<LoginLimiter>) {
    let mut config = fixture_config();
    config.login_backoff.max_failures = 3;
    config.login_backoff.initial = Duration::from_secs(60);
    let engine = fixture_engine(dir, &config);
    let logins = Arc::new(LoginLimiter::new(&config.login_backoff, Default::default()));
    (engine, logins)
}

/// Serves `app` on a free local port, with the peer address its back-off
/// needs.
async fn serve_http(
    app: axum::Router,
) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    (addr, server)
}

/// `reply` is the back-off's 429, to retry in 60 s.
fn assert_backed_off_for_60s(reply: &str) {
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    let lower = reply.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: 60\r\n"), "{reply}");
    assert!(
        reply.contains(r#""error":"too_many_failed_logins""#),
        "{reply}"
    );
}

/// `POST path` with a bearer token over a fresh connection: the whole reply.
async fn http_post(addr: SocketAddr, path: &str, token: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: tooltrail\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply))
        .await
        .expect("a reply within 30s")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

impl Server {
    /// Connections refused for `reason`.
    fn refused(&self, reason: &'static str) -> u64 {
        self.metrics
            .refused
            .get_or_create(&pgwire::ReasonLabel { reason })
            .get()
    }

    /// Waits until at most `n` connections are open: the server has seen
    /// the others end.
    async fn wait_for_connections(&self, n: i64) {
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.metrics.connections.get() > n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("connections closed within 30s");
    }
}
