//! Accepting connections: TLS, the connection limit and the idle timeout
//! (`[query.pgwire]`). Login (with `require_tls` and the back-off on failed
//! logins) is the startup handler's, in `pgwire.rs`.
//!
//! This is pgwire's `process_socket` loop, kept here so that the wait for a
//! client's next message can time out: pgwire waits forever.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use ::pgwire::error::{ErrorInfo, PgWireError};
use ::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ::pgwire::tokio::TlsAcceptor;
use ::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use ::pgwire::tokio::tokio_rustls::rustls;
use futures::{SinkExt, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Handlers;
use crate::config::PgWireConfig;

/// A client must finish TLS and login within this (as pgwire's own loop).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections over the limit being told so at once; beyond, they are
/// closed without a word.
const MAX_REFUSING: usize = 32;
/// How long a connection over the limit may take to ask to start.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bad `[query.pgwire]` TLS setting.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot read the certificates of query.pgwire.tls_cert {}: {problem}", path.display())]
    TlsCert { path: PathBuf, problem: String },
    #[error("cannot read the private key of query.pgwire.tls_key {}: {problem}", path.display())]
    TlsKey { path: PathBuf, problem: String },
    #[error("query.pgwire.tls_cert and tls_key do not make a TLS configuration: {0}")]
    Tls(String),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// `tooltrail_query_pgwire_*`.
#[derive(Debug, Clone, Default)]
pub struct WireMetrics {
    /// Connections open now.
    pub connections: Gauge,
    /// Connections refused, by reason: `too_many_connections`, `tls_required`.
    /// Logins refused by the back-off are `tooltrail_query_login_refused_total`.
    pub refused: Family<ReasonLabel, Counter>,
    /// Connections closed for idling past `idle_timeout`.
    pub idle_closed: Counter,
}

impl WireMetrics {
    pub fn register(registry: &mut Registry) -> WireMetrics {
        let m = WireMetrics::default();
        let r = registry.sub_registry_with_prefix("tooltrail_query_pgwire");
        r.register(
            "connections",
            "Postgres wire connections open now",
            m.connections.clone(),
        );
        r.register(
            "refused",
            "Postgres wire connections refused, by reason (too_many_connections, tls_required)",
            m.refused.clone(),
        );
        r.register(
            "idle_closed",
            "Postgres wire connections closed after query.pgwire.idle_timeout without a message",
            m.idle_closed.clone(),
        );
        m
    }

    pub(super) fn refuse(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// The TLS acceptor of `cert` and `key` (PEM), with the `ring` provider the
/// workspace builds.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, WireError> {
    let cert_error = |problem: String| WireError::TlsCert {
        path: cert.to_owned(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| WireError::TlsKey {
        path: key.to_owned(),
        problem: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WireError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| WireError::Tls(e.to_string()))?;
    // libpq 17 offers it, and requires it for `sslnegotiation=direct`.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What every connection of one listener shares.
pub(super) struct Shared {
    pub handlers: Handlers,
    pub tls: Option<TlsAcceptor>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub metrics: WireMetrics,
}

impl Shared {
    pub fn new(
        config: &PgWireConfig,
        handlers: Handlers,
        metrics: WireMetrics,
    ) -> Result<Shared, WireError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        Ok(Shared {
            handlers,
            tls,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            metrics,
        })
    }
}

/// Accepts connections on `listener` until `shutdown`, then closes the open
/// ones (a running query is cancelled, and audited as such).
pub(super) async fn accept(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(shared.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let shared = Arc::clone(&shared);
                    if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                        connections.spawn(async move {
                            let _slot = slot;
                            let _open = Open::new(&shared.metrics.connections);
                            if let Err(error) = shared.connection(socket).await {
                                tracing::debug!(%peer, %error, "pgwire connection ended with an error");
                            }
                        });
                        continue;
                    }
                    shared.metrics.refuse("too_many_connections");
                    tracing::warn!(%peer, max_connections = shared.max_connections, "pgwire connection refused: too many connections");
                    if let Ok(slot) = Arc::clone(&refusing).try_acquire_owned() {
                        connections.spawn(async move {
                            let _slot = slot;
                            let _ = tokio::time::timeout(REFUSE_TIMEOUT, shared.refuse(socket)).await;
                        });
                    }
                }
                Err(error) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::warn!(%error, "pgwire accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Counts an open connection for as long as it lives, however it ends.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Shared {
    /// Serves one connection: TLS if asked and offered, login, then messages
    /// until the client leaves, a FATAL error, or `idle_timeout` without one.
    async fn connection(&self, socket: TcpStream) -> io::Result<()> {
        let startup = tokio::time::sleep(STARTUP_TIMEOUT);
        tokio::pin!(startup);
        let negotiated = tokio::select! {
            () = &mut startup => return Ok(()),
            negotiated = negotiate_tls(socket, self.tls.clone()) => negotiated?,
        };
        // A direct TLS handshake without TLS configured: nothing to answer.
        let Some(mut socket) = negotiated else {
            return Ok(());
        };
        let wire = Arc::clone(&self.handlers.wire);
        let copy = self.handlers.copy_handler();
        let cancel = Arc::clone(&self.handlers.cancel);
        loop {
            let logging_in = matches!(
                socket.state(),
                PgWireConnectionState::AwaitingStartup
                    | PgWireConnectionState::AuthenticationInProgress
            );
            let message = if logging_in {
                tokio::select! {
                    () = &mut startup => None,
                    message = socket.next() => message,
                }
            } else {
                match tokio::time::timeout(self.idle_timeout, socket.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        self.metrics.idle_closed.inc();
                        tracing::debug!(peer = %socket.socket_addr(), "pgwire connection idle: closing");
                        let idle = ErrorInfo::new(
                            "FATAL".into(),
                            "57P05".into(),
                            format!(
                                "terminating connection due to idle-session timeout (query.pgwire.idle_timeout is {})",
                                humantime::format_duration(self.idle_timeout)
                            ),
                        );
                        socket
                            .send(PgWireBackendMessage::ErrorResponse(idle.into()))
                            .await?;
                        return socket.close().await;
                    }
                }
            };
            let Some(Ok(message)) = message else {
                return Ok(());
            };
            // The client is leaving; some (asyncpg) wait for us to close.
            if matches!(message, PgWireFrontendMessage::Terminate(_)) {
                return Ok(());
            }
            let extended = match socket.state() {
                PgWireConnectionState::CopyInProgress(extended) => extended,
                _ => message.is_extended_query(),
            };
            let outcome = process_message(
                message,
                &mut socket,
                Arc::clone(&wire),
                Arc::clone(&wire),
                Arc::clone(&wire),
                Arc::clone(&copy),
                Arc::clone(&cancel),
            )
            .await;
            if let Err(e) = outcome {
                let info = ErrorInfo::from(e);
                let fatal = info.is_fatal();
                process_error(
                    &mut socket,
                    PgWireError::UserError(Box::new(info)),
                    extended,
                )
                .await?;
                if fatal {
                    return Ok(());
                }
            }
        }
    }

    /// Tells a connection over the limit so, once it has asked to start
    /// (over TLS if it asked for TLS, as a server at its limit does), and
    /// closes it. A cancel request is still honoured: it frees a slot.
    async fn refuse(&self, socket: TcpStream) -> io::Result<()> {
        let Some(mut socket) = negotiate_tls::<super::Prepared>(socket, self.tls.clone()).await?
        else {
            return Ok(());
        };
        match socket.next().await {
            Some(Ok(PgWireFrontendMessage::CancelRequest(cancel))) => {
                use ::pgwire::api::cancel::CancelHandler;
                self.handlers.cancel.on_cancel_request(cancel).await;
            }
            Some(Ok(PgWireFrontendMessage::Startup(_))) => {
                let full = ErrorInfo::new(
                    "FATAL".into(),
                    "53300".into(),
                    format!(
                        "sorry, too many clients already (query.pgwire.max_connections is {})",
                        self.max_connections
                    ),
                );
                socket
                    .send(PgWireBackendMessage::ErrorResponse(full.into()))
                    .await?;
            }
            _ => {}
        }
        socket.close().await
    }
}
