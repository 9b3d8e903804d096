//! The Postgres wire protocol, so that psql, Grafana, Metabase, DBeaver and
//! any libpq or JDBC client query the lake with the same tokens, the same
//! tenant isolation and the same limits as `POST /v1/sql`.
//!
//! [`serve`] answers connections on a bound listener until shutdown. Every
//! statement that reads the lake goes through [`Engine::execute`] (limits, the
//! query audit, read-only planning in the principal's tenant-filtered session,
//! the interactive row cap); this module only speaks the protocol.
//!
//! Supported:
//! - Login with a cleartext password that is a query token
//!   (`PGPASSWORD=$TOKEN psql "host=… user=ana dbname=tooltrail"`). The user
//!   and database names are informational. A wrong token is a FATAL 28P01.
//! - TLS (rustls) with `query.pgwire.tls_cert` and `tls_key`:
//!   `sslmode=require`, and libpq 17's `sslnegotiation=direct` (ALPN
//!   `postgresql`). With `require_tls`, a login without TLS is a FATAL 28000.
//!   Without TLS the token crosses the network in clear.
//! - Hardening (`pgwire/server.rs`): at most `max_connections` at once (one
//!   more is a FATAL 53300 and closed); a connection idle for `idle_timeout`
//!   is closed with a FATAL 57P05; an address with repeated failed logins is
//!   refused for a while, a back-off shared with the HTTP API
//!   ([`LoginLimiter`]).
//! - The simple query protocol, several statements per query string (run one
//!   after the other, each its own query; the first error skips the rest).
//! - The extended protocol: Parse, Bind, Describe, Execute (row-limited ones
//!   suspend the portal), Close, Sync; text and binary result formats.
//!   Parameters (`$1`, `$2`, …) are substituted into the SQL at Execute as
//!   quoted literals, cast to the type the client declared, if any: the
//!   engine never sees a placeholder and the audit records the SQL as run.
//!   Parameters come in text format, or in binary for bool, integer, float,
//!   text, date and time types.
//! - Results stream batch by batch. A failure after some rows ends the result
//!   with an ErrorResponse, never a silently short one; a result cut by
//!   `query.max_rows` is followed by a NOTICE. Columns with no Postgres type
//!   (maps, unions) are sent as text.
//! - Cancel requests (psql's Ctrl-C) cancel the running query. `COPY … TO
//!   STDOUT` and `FROM STDIN` are refused as read-only.
//! - Session chatter that clients send on their own is answered here and never
//!   reaches the engine, which rightly refuses `SET`: `SET` (and `SHOW`) of the
//!   client parameters in [`PARAMETERS`], `SET [SESSION CHARACTERISTICS AS]
//!   TRANSACTION …`, `SHOW transaction isolation level` and a few read-only
//!   facts, `BEGIN`/`START TRANSACTION`/`COMMIT`/`END`/`ROLLBACK`/`ABORT`
//!   (reads are not transactional: these only track the status clients
//!   expect), `DEALLOCATE` (drivers' housekeeping), and `SELECT` of
//!   `version()`, `current_schema()`, `current_database()`,
//!   `current_catalog`, `current_user`, `session_user`. Anything else,
//!   `SET datafusion.…` included, goes to the engine.
//!
//! Not supported: client certificates, SCRAM and MD5 logins, `COPY`, cursors, savepoints,
//! `pg_catalog` (the schema browsers of BI tools; `information_schema` and
//! plain SQL work), time zones other than UTC.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use ::pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use ::pgwire::api::portal::{Format, Portal};
use ::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use ::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use ::pgwire::api::stmt::QueryParser;
use ::pgwire::api::store::PortalStore;
use ::pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, METADATA_DATABASE,
    METADATA_USER, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use ::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use ::pgwire::messages::data::{DataRow, RowDescription};
use ::pgwire::messages::extendedquery::Execute;
use ::pgwire::messages::response::{EmptyQueryResponse, NoticeResponse, ReadyForQuery};
use ::pgwire::messages::simplequery::Query;
use ::pgwire::messages::startup::{Authentication, ParameterStatus};
use ::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use ::pgwire::types::format::FormatOptions;
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::util::display::ArrayFormatter;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, field_into_pg_type};
use arrow_pg::row_encoder::RowEncoder;
use async_trait::async_trait;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpListener;

use crate::auth::Principal;
use crate::auth::backoff::LoginLimiter;
use crate::config::PgWireConfig;
use crate::engine::{Engine, QueryStream, Transport};
use crate::error::QueryError;

mod chatter;
mod encoding;
mod params;
mod server;
mod statement;

pub use self::server::{ReasonLabel, WireError, WireMetrics, tls_acceptor};

use self::chatter::*;
use self::encoding::*;
use self::params::*;
use self::statement::*;

/// What `server_version` reports. Clients gate features on the major version.
pub const SERVER_VERSION: &str = concat!("16.0 (tooltrail ", env!("CARGO_PKG_VERSION"), ")");

/// A Postgres wire server: the engine, and `[query.pgwire]`'s TLS, limits
/// and idle timeout. [`Server::build`] loads the certificate (failing fast);
/// [`Server::serve`] answers connections.
pub struct Server {
    shared: Arc<server::Shared>,
}

impl Server {
    /// `logins` is the process's back-off on failed logins, shared with the
    /// HTTP API.
    pub fn build(
        config: &PgWireConfig,
        engine: Engine,
        logins: Arc<LoginLimiter>,
        metrics: WireMetrics,
    ) -> Result<Server, WireError> {
        let handlers = Handlers::new(engine, config.require_tls, logins, metrics.clone());
        let shared = server::Shared::new(config, handlers, metrics)?;
        Ok(Server {
            shared: Arc::new(shared),
        })
    }

    /// Whether the server accepts TLS (`sslmode=require`).
    pub fn tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Answers Postgres clients on `listener` until `shutdown` resolves, then
    /// stops accepting and closes the open connections (a running query is
    /// cancelled, and audited as such).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        server::accept(self.shared, listener, shutdown).await;
    }
}

/// [`Server::serve`] with the default `[query.pgwire]` (no TLS) and a back-off
/// of its own.
pub async fn serve(listener: TcpListener, engine: Engine, shutdown: impl Future<Output = ()>) {
    let server = Server::build(
        &PgWireConfig::default(),
        engine,
        Arc::new(LoginLimiter::unregistered()),
        WireMetrics::default(),
    );
    match server {
        Ok(server) => server.serve(listener, shutdown).await,
        // Unreachable: the default loads no file.
        Err(error) => tracing::error!(%error, "pgwire server not started"),
    }
}

/// The handlers every connection shares.
struct Handlers {
    wire: Arc<Wire>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(
        engine: Engine,
        require_tls: bool,
        logins: Arc<LoginLimiter>,
        metrics: WireMetrics,
    ) -> Handlers {
        let connections = Arc::new(ConnectionManager::new());
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_owned();
        parameters.is_superuser = false;
        parameters.default_transaction_read_only = true;
        Handlers {
            wire: Arc::new(Wire {
                parser: Arc::new(Parser {
                    engine: engine.clone(),
                }),
                engine,
                parameters,
                pids: RandomPidSecretKeyGenerator::default(),
                connections: Arc::clone(&connections),
                require_tls,
                logins,
                metrics,
            }),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.wire)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.wire)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.wire)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Login, queries and session chatter for one server.
struct Wire {
    engine: Engine,
    parser: Arc<Parser>,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    connections: Arc<ConnectionManager>,
    /// Refuse logins that did not negotiate TLS.
    require_tls: bool,
    logins: Arc<LoginLimiter>,
    metrics: WireMetrics,
}

/// Set on a connection when a result was cut by the row cap and the client
/// still has to be told (extended protocol: after the Execute that ended it).
#[derive(Default)]
struct Capped(AtomicBool);

#[async_trait]
impl StartupHandler for Wire {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(startup) => {
                if self.require_tls && !client.is_secure() {
                    self.metrics.refuse("tls_required");
                    tracing::info!(peer = %client.socket_addr(), "pgwire login refused: no TLS");
                    return Err(error(
                        "FATAL",
                        "28000",
                        "this server requires TLS (query.pgwire.require_tls): connect with sslmode=require".into(),
                    ));
                }
                self.backing_off(client.socket_addr())?;
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(password)
                if matches!(
                    client.state(),
                    PgWireConnectionState::AuthenticationInProgress
                ) =>
            {
                let password = password.into_password()?;
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let peer = client.socket_addr();
                // Again: other connections from the address may have failed
                // since this one started.
                self.backing_off(peer)?;
                let principal = match self.engine.authenticate(&password.password) {
                    Ok(principal) => {
                        self.logins.success(peer.ip());
                        principal
                    }
                    Err(e) => {
                        self.logins.failure(peer.ip(), "pgwire");
                        tracing::info!(%peer, user, "pgwire login refused");
                        return Err(error(
                            "FATAL",
                            e.sqlstate(),
                            format!(
                                "password authentication failed for user \"{user}\": the password must be a tooltrail query token"
                            ),
                        ));
                    }
                };
                let (pid, secret) = self.pids.generate(&*client);
                client.set_pid_and_secret_key(pid, secret.clone());
                let (handle, guard) = self.connections.register(pid, secret);
                let extensions = client.session_extensions();
                extensions.insert(handle);
                extensions.insert(guard);
                extensions.insert(principal);
                finish_authentication(client, &self.parameters).await?;
            }
            _ => {
                return Err(error(
                    "FATAL",
                    "08P01",
                    "unexpected message during login".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Wire {
    /// FATAL 28000 if `peer`'s address is backing off after failed logins.
    fn backing_off(&self, peer: SocketAddr) -> PgWireResult<()> {
        match self.logins.check(peer.ip(), "pgwire") {
            Ok(()) => Ok(()),
            Err(refused) => {
                tracing::info!(%peer, "pgwire login refused: backing off after failed logins");
                Err(error(
                    "FATAL",
                    "28000",
                    format!(
                        "too many failed logins from this address: try again in {}",
                        retry_after(refused.retry_after)
                    ),
                ))
            }
        }
    }
}

/// A wait as people read it, rounded up to the millisecond (`1s 500ms`).
fn retry_after(wait: Duration) -> String {
    let ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

#[async_trait]
impl SimpleQueryHandler for Wire {
    /// Runs each statement of the string in turn, streaming its rows; the
    /// first error ends the string.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let principal = principal(client)?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = split(&query.query, self.engine.config().max_sql_bytes);
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        }
        let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
        let cancel = cancelled(handle.as_deref().cloned()).await;
        tokio::pin!(cancel);
        for statement in &statements {
            let outcome = tokio::select! {
                outcome = self.simple_statement(client, &principal, statement) => outcome,
                () = &mut cancel => Err(error("ERROR", "57014", "canceling statement due to user request".into())),
            };
            match outcome {
                Ok(()) => {}
                Err(e @ PgWireError::IoError(_)) => return Err(e),
                Err(e) => {
                    let info = ErrorInfo::from(e);
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(info.into()))
                        .await?;
                    client.set_transaction_status(client.transaction_status().to_error_state());
                    break;
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                client.transaction_status(),
            )))
            .await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // `on_query` above does the work and never comes here.
        Err(error(
            "ERROR",
            "XX000",
            "the simple query protocol is handled by on_query".into(),
        ))
    }
}

impl Wire {
    /// One statement of a simple query: its rows or its tag, sent.
    async fn simple_statement<C>(
        &self,
        client: &mut C,
        principal: &Principal,
        statement: &Statement<'_>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (batch, tag) = match Chatter::classify(&statement.tokens) {
            Some(chatter) => match self.answer(client, principal, &chatter).await? {
                Answer::Tag(tag) => return send_tag(client, tag).await,
                Answer::Begin(tag) => {
                    client.set_transaction_status(
                        client.transaction_status().to_in_transaction_state(),
                    );
                    return send_tag(client, tag).await;
                }
                Answer::End(tag) => {
                    client.set_transaction_status(client.transaction_status().to_idle_state());
                    return send_tag(client, tag).await;
                }
                Answer::Rows(batch, tag) => (Some(batch), tag),
            },
            None => (None, "SELECT"),
        };
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let capped = Arc::new(Capped::default());
        let (fields, mut rows) = match batch {
            Some(batch) => {
                let encoding = Encoding::new(&batch.schema(), &Format::UnifiedText, Some(options))?;
                (
                    Arc::clone(&encoding.fields),
                    fixed_rows(batch, encoding).boxed(),
                )
            }
            None => {
                let stream = self
                    .engine
                    .execute(principal, statement.sql, Transport::Pgwire, true)
                    .await
                    .map_err(query_error)?;
                let encoding =
                    Encoding::new(&stream.schema(), &Format::UnifiedText, Some(options))?;
                let fields = Arc::clone(&encoding.fields);
                (fields, rows(stream, encoding, Arc::clone(&capped)).boxed())
            }
        };
        client
            .feed(PgWireBackendMessage::RowDescription(row_description(
                &fields,
            )))
            .await?;
        let mut sent = 0;
        while let Some(row) = rows.next().await {
            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
            sent += 1;
        }
        if capped.0.load(Ordering::Relaxed) {
            client.feed(self.capped_notice()).await?;
        }
        let tag = match tag {
            "SELECT" => Tag::new(tag).with_rows(sent),
            _ => Tag::new(tag),
        };
        client
            .feed(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    fn capped_notice(&self) -> PgWireBackendMessage {
        let max = self.engine.config().max_rows;
        let mut info = ErrorInfo::new(
            "NOTICE".into(),
            "01000".into(),
            format!("the result was capped at {max} rows (query.max_rows)"),
        );
        info.hint = Some(
            "add a LIMIT or aggregate; export full results over HTTP with format arrow or parquet"
                .into(),
        );
        PgWireBackendMessage::NoticeResponse(NoticeResponse::from(info))
    }

    /// Does what `chatter` asks, on this connection.
    async fn answer<C>(
        &self,
        client: &mut C,
        principal: &Principal,
        chatter: &Chatter,
    ) -> PgWireResult<Answer>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match chatter {
            Chatter::Set { name, value } => {
                let value = match value {
                    Some(value) => Some(check_parameter(name, value)?),
                    None => None,
                };
                let metadata = client.metadata_mut();
                metadata.retain(|k, _| !k.eq_ignore_ascii_case(name));
                if let Some(value) = &value {
                    metadata.insert((*name).to_owned(), value.clone());
                }
                if let Some(reported) = reported_as(name) {
                    let value = value.unwrap_or_else(|| parameter_default(name));
                    client
                        .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                            reported.to_owned(),
                            value,
                        )))
                        .await?;
                }
                Answer::Tag("SET")
            }
            Chatter::SetTransaction => Answer::Tag("SET"),
            Chatter::Copy => return Err(copy_refused()),
            Chatter::Deallocate(name) => match name {
                Some(name) => {
                    client.portal_store().rm_statement(name);
                    Answer::Tag("DEALLOCATE")
                }
                // pgwire's store cannot list statements: they stay until the
                // client reuses their names or disconnects.
                None => Answer::Tag("DEALLOCATE ALL"),
            },
            Chatter::Begin(tag) => Answer::Begin(tag),
            Chatter::End(tag) => Answer::End(tag),
            Chatter::Show { name, column } => {
                let value = show(client, name);
                Answer::Rows(text_batch(&[(column.as_str(), value)]), "SHOW")
            }
            Chatter::Functions(functions) => {
                let database = || {
                    client
                        .metadata()
                        .get(METADATA_DATABASE)
                        .cloned()
                        .unwrap_or_else(|| "tooltrail".into())
                };
                let columns: Vec<(&str, String)> = functions
                    .iter()
                    .map(|(function, column)| {
                        let value = match function {
                            Function::Version => format!(
                                "PostgreSQL {SERVER_VERSION}, Apache DataFusion {}",
                                datafusion::DATAFUSION_VERSION
                            ),
                            Function::CurrentSchema => "public".into(),
                            Function::CurrentDatabase => database(),
                            Function::CurrentUser => principal.name.clone(),
                        };
                        (column.as_str(), value)
                    })
                    .collect();
                Answer::Rows(text_batch(&columns), "SELECT")
            }
        })
    }
}

/// What a piece of chatter produced.
enum Answer {
    Tag(&'static str),
    Begin(&'static str),
    End(&'static str),
    Rows(RecordBatch, &'static str),
}

#[async_trait]
impl ExtendedQueryHandler for Wire {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// As pgwire's, then the row-cap notice if this Execute ended a capped
    /// result.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self._on_execute(client, message).await;
        let capped = client.session_extensions().get::<Capped>();
        if capped.is_some_and(|c| c.0.swap(false, Ordering::Relaxed)) {
            client.send(self.capped_notice()).await?;
        }
        result
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let principal = principal(client)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let format = &portal.result_column_format;
        match &portal.statement.statement {
            Prepared::Chatter(chatter) => {
                Ok(match self.answer(client, &principal, chatter).await? {
                    Answer::Tag(tag) => Response::Execution(Tag::new(tag)),
                    Answer::Begin(tag) => Response::TransactionStart(Tag::new(tag)),
                    Answer::End(tag) => Response::TransactionEnd(Tag::new(tag)),
                    Answer::Rows(batch, tag) => {
                        let encoding = Encoding::new(&batch.schema(), format, Some(options))?;
                        let mut response = QueryResponse::new(
                            Arc::clone(&encoding.fields),
                            fixed_rows(batch, encoding),
                        );
                        response.set_command_tag(tag);
                        Response::Query(response)
                    }
                })
            }
            Prepared::Query(query) => {
                let sql = query.bind(portal)?;
                let stream = self
                    .engine
                    .execute(&principal, &sql, Transport::Pgwire, true)
                    .await
                    .map_err(query_error)?;
                let encoding = Encoding::new(&stream.schema(), format, Some(options))?;
                let described = Encoding::new(&query.schema, format, None)?;
                let types = |e: &Encoding| {
                    e.fields
                        .iter()
                        .map(|f| f.datatype().clone())
                        .collect::<Vec<_>>()
                };
                if types(&encoding) != types(&described) {
                    return Err(error(
                        "ERROR",
                        "0A000",
                        "cached plan must not change result type".into(),
                    ));
                }
                let capped = client
                    .session_extensions()
                    .get_or_insert_with(Capped::default);
                let fields = Arc::clone(&encoding.fields);
                Ok(Response::Query(QueryResponse::new(
                    fields,
                    rows(stream, encoding, capped),
                )))
            }
        }
    }
}

/// A statement prepared by Parse.
#[derive(Debug, Clone)]
enum Prepared {
    Chatter(Chatter),
    Query(PreparedQuery),
}

/// A query prepared by Parse, described but not run.
#[derive(Debug, Clone)]
struct PreparedQuery {
    sql: String,
    /// `(byte offset, length, 0-based index)` of each `$n` in `sql`.
    placeholders: Vec<(usize, usize, usize)>,
    /// Parameters the statement takes: the highest `$n`.
    params: usize,
    /// Types the client declared in Parse, by parameter.
    types: Vec<Option<Type>>,
    /// The result's columns, as Describe reports them.
    schema: SchemaRef,
}

impl PreparedQuery {
    /// The SQL with each placeholder replaced by its literal: the bound value
    /// or, with no portal, a NULL of the same type (to describe it).
    fn render(&self, values: impl Fn(usize) -> PgWireResult<String>) -> PgWireResult<String> {
        let mut sql = String::with_capacity(self.sql.len() + 16 * self.placeholders.len());
        let mut at = 0;
        for &(offset, len, index) in &self.placeholders {
            sql.push_str(&self.sql[at..offset]);
            sql.push_str(&values(index)?);
            at = offset + len;
        }
        sql.push_str(&self.sql[at..]);
        Ok(sql)
    }

    fn bind(&self, portal: &Portal<Prepared>) -> PgWireResult<String> {
        if portal.parameters.len() != self.params {
            return Err(error(
                "ERROR",
                "08P01",
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    portal.parameters.len(),
                    self.params
                ),
            ));
        }
        self.render(|i| {
            let binary = match &portal.parameter_format {
                Format::UnifiedBinary => true,
                Format::UnifiedText => false,
                Format::Individual(codes) => codes.get(i) == Some(&1),
            };
            literal(
                self.types.get(i).cloned().flatten().as_ref(),
                portal.parameters[i].as_deref(),
                binary,
            )
        })
    }
}

/// Prepares statements for the extended protocol: chatter is recognised,
/// queries are described by the engine (with NULL parameters) for the
/// principal of the connection.
struct Parser {
    engine: Engine,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let principal = principal(client)?;
        let mut statements = split(sql, self.engine.config().max_sql_bytes);
        if statements.len() > 1 {
            return Err(error(
                "ERROR",
                "42601",
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        if let Some(chatter) = Chatter::classify(&statement.tokens) {
            if chatter == Chatter::Copy {
                return Err(copy_refused());
            }
            return Ok(Some(Prepared::Chatter(chatter)));
        }
        let mut placeholders = Vec::new();
        for (token, offset) in &statement.tokens {
            if let Token::Placeholder(p) = token
                && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            {
                if n == 0 || n > u16::MAX as usize {
                    return Err(error(
                        "ERROR",
                        "42P02",
                        format!("there is no parameter ${n}"),
                    ));
                }
                placeholders.push((*offset, p.len(), n - 1));
            }
        }
        let params = placeholders.iter().map(|p| p.2 + 1).max().unwrap_or(0);
        let mut query = PreparedQuery {
            sql: statement.sql.to_owned(),
            placeholders,
            params,
            types: types.to_vec(),
            schema: Arc::new(Schema::empty()),
        };
        let described =
            query.render(|i| literal(types.get(i).cloned().flatten().as_ref(), None, false))?;
        let schema = self
            .engine
            .describe(&principal, &described)
            .await
            .map_err(query_error)?;
        query.schema = Arc::clone(&Encoding::wire_schema(&schema).0);
        Ok(Some(Prepared::Query(query)))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        // Undeclared parameters are text: their value becomes a string literal.
        Ok(match statement {
            Prepared::Query(query) => vec![Type::TEXT; query.params],
            Prepared::Chatter(_) => Vec::new(),
        })
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.cloned().unwrap_or_default();
        let schema = match statement {
            Prepared::Query(query) => Arc::clone(&query.schema),
            Prepared::Chatter(chatter) => {
                let fields: Vec<Field> = chatter
                    .columns()
                    .into_iter()
                    .map(|c| Field::new(c, DataType::Utf8, true))
                    .collect();
                Arc::new(Schema::new(fields))
            }
        };
        Ok(Encoding::new(&schema, &format, None)?
            .fields
            .as_ref()
            .clone())
    }
}

async fn send_tag<C>(client: &mut C, tag: &str) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .feed(PgWireBackendMessage::CommandComplete(Tag::new(tag).into()))
        .await?;
    Ok(())
}

/// The principal the connection logged in as.
fn principal<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Principal>> {
    client
        .session_extensions()
        .get::<Principal>()
        .ok_or_else(|| error("FATAL", "28000", "the connection is not logged in".into()))
}

/// Resolves when the client sends a cancel request for the connection of
/// `handle`.
async fn cancelled(handle: Option<Arc<ConnectionHandle>>) -> impl Future<Output = ()> {
    let receiver = match handle {
        Some(handle) => Some(handle.start_query().await),
        None => None,
    };
    async move {
        match receiver {
            Some(receiver) => {
                if receiver.await.is_err() {
                    // Replaced by the next query's: never cancelled.
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

fn error(severity: &str, code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_owned(),
        code.to_owned(),
        message,
    )))
}

fn query_error(e: QueryError) -> PgWireError {
    error("ERROR", e.sqlstate(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<&str> {
        split(sql, 1 << 20).iter().map(|s| s.sql).collect()
    }

    fn chatter(sql: &str) -> Option<Chatter> {
        let mut statements = split(sql, 1 << 20);
        assert_eq!(statements.len(), 1, "{sql}");
        Chatter::classify(&statements.pop().unwrap().tokens)
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(
            statements("SELECT 'a;b'; -- c;\n SELECT \"x;\" FROM t /* ; */ ;; SELECT $$;$$ ;"),
            [
                "SELECT 'a;b'",
                "-- c;\n SELECT \"x;\" FROM t /* ; */",
                "SELECT $$;$$"
            ]
        );
        assert!(statements(" ; -- nothing\n ;").is_empty());
        assert_eq!(
            statements("SELECT 'unterminated; x"),
            ["SELECT 'unterminated; x"]
        );
        assert_eq!(
            split("SELECT 1; SELECT 2", 5).len(),
            1,
            "too long: left to the engine"
        );
    }

    #[test]
    fn placeholders_are_found_after_multibyte_text() {
        let statement = split("SELECT 'é—x', $2, '$1', $1 -- $3", 1 << 20)
            .pop()
            .unwrap();
        let found: Vec<&str> = statement
            .tokens
            .iter()
            .filter(|(t, _)| matches!(t, Token::Placeholder(_)))
            .map(|(t, at)| &statement.sql[*at..*at + t.to_string().len()])
            .collect();
        assert_eq!(found, ["$2", "$1"]);
    }

    #[test]
    fn recognises_client_chatter_and_nothing_else() {
        let set = |name, value: Option<&str>| Chatter::Set {
            name,
            value: value.map(Into::into),
        };
        assert_eq!(
            chatter("SET extra_float_digits = 3"),
            Some(set("extra_float_digits", Some("3")))
        );
        assert_eq!(
            chatter("set Application_Name to 'psql'"),
            Some(set("application_name", Some("psql")))
        );
        assert_eq!(
            chatter("SET SESSION DateStyle = ISO, MDY"),
            Some(set("datestyle", Some("ISO, MDY")))
        );
        assert_eq!(
            chatter("SET TIME ZONE 'UTC'"),
            Some(set("timezone", Some("UTC")))
        );
        assert_eq!(
            chatter("SET search_path TO DEFAULT"),
            Some(set("search_path", None))
        );
        assert_eq!(
            chatter("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
            Some(Chatter::SetTransaction)
        );
        assert_eq!(chatter("begin read only"), Some(Chatter::Begin("BEGIN")));
        assert_eq!(chatter("COMMIT WORK"), Some(Chatter::End("COMMIT")));
        assert_eq!(chatter("ABORT"), Some(Chatter::End("ROLLBACK")));
        assert_eq!(
            chatter("SHOW TRANSACTION ISOLATION LEVEL"),
            Some(Chatter::Show {
                name: "transaction_isolation",
                column: "transaction_isolation".into()
            })
        );
        assert_eq!(
            chatter("SELECT current_schema(), session_user AS who"),
            Some(Chatter::Functions(vec![
                (Function::CurrentSchema, "current_schema".into()),
                (Function::CurrentUser, "who".into()),
            ]))
        );
        assert_eq!(chatter("copy events to stdout"), Some(Chatter::Copy));
        assert_eq!(chatter("DEALLOCATE ALL"), Some(Chatter::Deallocate(None)));
        assert_eq!(
            chatter("deallocate prepare _pg3_0"),
            Some(Chatter::Deallocate(Some("_pg3_0".into())))
        );
        assert_eq!(
            chatter("COPY events FROM STDIN (FORMAT csv)"),
            Some(Chatter::Copy)
        );
        for engine in [
            "COPY events TO '/tmp/x.csv'",
            "SET datafusion.execution.batch_size = 1",
            "SET \"application_name\" = 'x'",
            "SET work_mem = '1GB'",
            "SHOW TABLES",
            "SHOW ALL",
            "ROLLBACK TO SAVEPOINT a",
            "SELECT version() FROM events",
            "SELECT current_database",
            "SELECT 1",
            "DROP TABLE events",
        ] {
            assert_eq!(chatter(engine), None, "{engine}");
        }
    }

    #[test]
    fn parameters_become_quoted_literals_of_their_declared_type() {
        let text = |v: &str| literal(None, Some(v.as_bytes()), false).unwrap();
        assert_eq!(text("it's"), "'it''s'");
        assert_eq!(text("a\\' OR true --"), "'a\\'' OR true --'");
        assert_eq!(
            literal(Some(&Type::INT8), Some(b"42"), false).unwrap(),
            "CAST('42' AS BIGINT)"
        );
        assert_eq!(
            literal(Some(&Type::INT4), Some(&7i32.to_be_bytes()), true).unwrap(),
            "CAST('7' AS INT)"
        );
        assert_eq!(
            literal(Some(&Type::BOOL), Some(&[1]), true).unwrap(),
            "CAST('true' AS BOOLEAN)"
        );
        assert_eq!(literal(None, None, false).unwrap(), "CAST(NULL AS VARCHAR)");
        assert_eq!(
            literal(Some(&Type::TIMESTAMPTZ), None, false).unwrap(),
            "CAST(NULL AS TIMESTAMP WITH TIME ZONE)"
        );
        assert!(literal(None, Some(b"a\0b"), false).is_err());
        assert!(literal(Some(&Type::INT8), Some(&[1, 2]), true).is_err());
        assert!(literal(Some(&Type::NUMERIC), Some(&[0; 8]), true).is_err());
        let micros = (86_400 * 365 + 3_600) * 1_000_000i64 + 5;
        assert_eq!(
            literal(Some(&Type::TIMESTAMPTZ), Some(&micros.to_be_bytes()), true).unwrap(),
            "CAST('2000-12-31T01:00:00.000005Z' AS TIMESTAMP WITH TIME ZONE)"
        );
        assert_eq!(
            literal(Some(&Type::DATE), Some(&(-1i32).to_be_bytes()), true).unwrap(),
            "CAST('1999-12-31' AS DATE)"
        );
    }

    #[test]
    fn refuses_parameter_values_the_server_cannot_honour() {
        assert_eq!(check_parameter("client_encoding", "utf-8").unwrap(), "UTF8");
        assert!(check_parameter("client_encoding", "LATIN1").is_err());
        assert!(check_parameter("timezone", "Europe/Paris").is_err());
        assert!(check_parameter("extra_float_digits", "4").is_err());
        assert!(check_parameter("datestyle", "ISO, MDY").is_ok());
        assert!(check_parameter("datestyle", "Klingon").is_err());
        assert_eq!(
            check_parameter("application_name", "Metabase").unwrap(),
            "Metabase"
        );
    }

    #[test]
    fn unencodable_columns_travel_as_text() {
        // The lake's `attributes` column: a map, which pgwire has no type for.
        let map = tooltrail_schemas::lake::events_schema()
            .field_with_name("attributes")
            .expect("the lake has attributes")
            .data_type()
            .clone();
        assert!(matches!(map, DataType::Map(..)));
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("m", map, true),
        ]);
        let encoding = Encoding::new(&schema, &Format::UnifiedText, None).unwrap();
        let types: Vec<Type> = encoding
            .fields
            .iter()
            .map(|f| f.datatype().clone())
            .collect();
        assert_eq!(types, [Type::INT8, Type::TEXT]);
        assert_eq!(&*encoding.as_text, [false, true]);
    }
}
