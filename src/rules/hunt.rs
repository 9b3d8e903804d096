//! Hunting: rules run over the lake's history, from the command line
//! (`tooltrail rules hunt`) and over HTTP (`POST /v1/rules/hunt`).
//!
//! Both read the events through the query engine, as the caller: the
//! command as the local operator (optionally one `--tenant`), the API as
//! the token's principal, so a hunt sees exactly the tenants a query by the
//! same caller would, and is in the query audit. The rows the rules'
//! prefilter lets through are replayed in event-time order through the
//! same engine the stream runs ([`tooltrail_detect::sigma::hunt`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tooltrail_detect::Alert;
use tooltrail_detect::sigma::hunt::{Hunter, needs_arguments, prefilter};
use tooltrail_detect::sigma::{RuleSet, RuleSource};
use tooltrail_query::{Engine, Principal, QueryError, Transport};
use tooltrail_schemas::http::error_response;
use tooltrail_schemas::lake::EventRows;

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct HuntArgs {
    /// The lake to read.
    #[arg(long, value_name = "LAKE")]
    pub lake: String,
    /// Start of the range, inclusive: RFC 3339 or YYYY-MM-DD.
    #[arg(long, value_name = "TIME", value_parser = crate::lake::parse_time)]
    pub from: DateTime<Utc>,
    /// End of the range, exclusive.
    #[arg(long, value_name = "TIME", value_parser = crate::lake::parse_time)]
    pub to: DateTime<Utc>,
    /// Rules directory [default: detect.rules_dir, else ./rules].
    #[arg(long, value_name = "DIR")]
    pub rules_dir: Option<PathBuf>,
    /// Only this tenant's events.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Also commit the alerts to the lake's `alerts` table (a backfill:
    /// they show in the console and SQL; chat destinations are not paged).
    #[arg(long)]
    pub raise: bool,
    /// Rule ids to run; every loaded rule when none is given.
    pub rules: Vec<String>,
}

/// What a hunt found, as the API returns it.
#[derive(Debug, Serialize)]
pub struct Hunted {
    /// Rules run (with the detection rules their correlations count).
    pub rules: Vec<String>,
    /// Events read and replayed: those the rules' prefilter let through.
    pub events_replayed: u64,
    /// The alerts the rules would have raised, repeats folded in.
    pub alerts: Vec<Alert>,
}

/// The query a hunt reads its events with.
pub fn hunt_sql(
    rules: &RuleSet,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tenant: Option<&str>,
) -> String {
    // Every contract column a replayed event is built from; the JSON ones
    // only when a rule looks into them.
    let json = needs_arguments(rules);
    let mut columns: Vec<&str> = tooltrail_schemas::FIELDS
        .iter()
        .map(|f| f.name)
        .filter(|name| json || *name != "arguments")
        .collect();
    if json {
        columns.push("extra");
    }
    let tenant = tenant
        .map(|t| format!(" AND tenant_id = '{}'", t.replace('\'', "''")))
        .unwrap_or_default();
    format!(
        "SELECT {} FROM events WHERE time >= TIMESTAMPTZ '{}' AND time < TIMESTAMPTZ '{}'{tenant} \
         AND {} ORDER BY time, event_id",
        columns.join(", "),
        tooltrail_schemas::format_time(&from),
        tooltrail_schemas::format_time(&to),
        prefilter(rules),
    )
}

/// Runs `rules` over the events `principal` may read in `[from, to)`.
pub async fn hunt(
    engine: &Engine,
    principal: &Principal,
    transport: Transport,
    rules: RuleSet,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    tenant: Option<&str>,
    suppression_secs: i64,
) -> Result<Hunted, QueryError> {
    let sql = hunt_sql(&rules, from, to, tenant);
    let names = rules.rules().iter().map(|r| r.id.clone()).collect();
    let mut hunter = Hunter::new(rules, suppression_secs);
    let mut stream = engine.execute(principal, &sql, transport, false).await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let rows = EventRows::new(&batch).map_err(|e| QueryError::Internal(e.to_string()))?;
        for row in 0..rows.len() {
            let event = rows
                .event(row)
                .map_err(|e| QueryError::Internal(e.to_string()))?;
            hunter.observe(&event);
        }
    }
    let found = hunter.finish();
    Ok(Hunted {
        rules: names,
        events_replayed: found.events,
        alerts: found.alerts,
    })
}

pub async fn run(args: HuntArgs, config: &Config) -> anyhow::Result<()> {
    if args.from >= args.to {
        anyhow::bail!("--from must be before --to");
    }
    let dir = super::dir_of(args.rules_dir.clone(), config);
    let all = RuleSet::load_dir(&dir);
    for error in all.errors() {
        eprintln!("refused: {error}");
    }
    let rules = if args.rules.is_empty() {
        all
    } else {
        all.select(&args.rules)
            .map_err(|e| anyhow::anyhow!("{e} in {}", dir.display()))?
    };
    if rules.rules().is_empty() {
        anyhow::bail!("no rules to run in {}", dir.display());
    }
    let lake = crate::lake::existing(config, Some(args.lake)).await?;
    let (engine, principal) = crate::sql::local_engine(&lake, &config.query)?;
    let started = Instant::now();
    let suppression = config.detect.suppression.as_secs() as i64;
    let hunted = hunt(
        &engine,
        &principal,
        Transport::Cli,
        rules,
        (args.from, args.to),
        args.tenant.as_deref(),
        suppression,
    )
    .await?;
    for alert in &hunted.alerts {
        println!("{}", alert.to_json());
    }
    eprintln!(
        "{} rules, {} events replayed, {} alerts in {:.2}s",
        hunted.rules.len(),
        hunted.events_replayed,
        hunted.alerts.len(),
        started.elapsed().as_secs_f64()
    );
    if args.raise && !hunted.alerts.is_empty() {
        let mut sink = tooltrail_detect::sink::AlertLake::open(&lake, Default::default()).await?;
        sink.write(&hunted.alerts)
            .await
            .with_context(|| format!("writing the alerts into {lake}"))?;
        eprintln!("{} alerts committed to {lake}", hunted.alerts.len());
    }
    engine.settle_audit().await;
    Ok(())
}

/// What `POST /v1/rules/hunt` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuntRequest {
    /// Rule ids; every loaded rule when empty.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(with = "time")]
    pub from: DateTime<Utc>,
    #[serde(with = "time")]
    pub to: DateTime<Utc>,
}

mod time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        crate::lake::parse_time(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone)]
struct HuntState {
    engine: Engine,
    rules: Arc<RuleSource>,
    suppression_secs: i64,
}

/// `POST /v1/rules/hunt`: any authenticated principal, over the tenants it
/// may read; the running detector's rules. Raises nothing.
pub fn router(engine: Engine, rules: Arc<RuleSource>, suppression_secs: i64) -> Router {
    Router::new()
        .route("/v1/rules/hunt", post(hunt_route))
        .with_state(HuntState {
            engine,
            rules,
            suppression_secs,
        })
}

async fn hunt_route(
    State(state): State<HuntState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let principal = match tooltrail_query::http::principal(&state.engine, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let invalid =
        |message: String| error_response(StatusCode::BAD_REQUEST, "invalid_hunt", message);
    let request: HuntRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return invalid(format!(
                "the body must be JSON {{\"rules\"?: [ids], \"from\", \"to\"}}: {e}"
            ));
        }
    };
    if request.from >= request.to {
        return invalid("`from` must be before `to`".into());
    }
    let (_, all) = state.rules.current();
    let rules = if request.rules.is_empty() {
        (*all).clone()
    } else {
        match all.select(&request.rules) {
            Ok(rules) => rules,
            Err(e) => return invalid(e),
        }
    };
    match hunt(
        &state.engine,
        &principal,
        Transport::Api,
        rules,
        (request.from, request.to),
        None,
        state.suppression_secs,
    )
    .await
    {
        Ok(hunted) => Json(hunted).into_response(),
        Err(e) => e.into_response(),
    }
}
