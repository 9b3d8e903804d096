//! Deterministic MCP gateway traffic with labelled attacks, for tests, demos,
//! benchmarks and detector evaluation.
//!
//! [`Simulation`] is an iterator of [`tooltrail_schemas::ToolCallEvent`]s in
//! global time order; once it is exhausted, [`Simulation::incidents`] holds
//! the ground truth. The crate does no IO: the binary writes events and
//! labels wherever they go.
//!
//! ```
//! use tooltrail_sim::{SimConfig, Simulation};
//!
//! let mut sim = Simulation::new(SimConfig { users: 20, days: 2, seed: 7, ..SimConfig::default() })?;
//! let events: Vec<_> = sim.by_ref().collect();
//! assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
//! let labels = sim.incidents(); // ground truth, complete now
//! # let _ = labels;
//! # Ok::<(), tooltrail_sim::SimError>(())
//! ```
//!
//! # Determinism
//!
//! The same [`SimConfig`] gives byte-identical output. Every random choice
//! comes from a ChaCha8 stream derived from the seed and the choice's
//! coordinates (user, day, incident), never from wall-clock time, thread-local
//! generators or hash-map order. A user-day's normal traffic does not depend on
//! other users or on the attacks, so two seeds' worlds differ everywhere while
//! one seed's incidents sit on top of otherwise identical traffic.
//!
//! # Shape: a family of traffic, not one simulator
//!
//! [`SimConfig::shape`] holds eight knobs ([`Shape`]), each a multiplier on
//! one of the simulator's own draws; at 1.0 (the default) they draw nothing
//! and change nothing. They are described with what they shape below. A knob
//! changes only its own part of the world: the attack knobs leave normal
//! traffic and the attack plan alone; a drift knob keeps today's drift (and
//! adds to it, or thins it) and leaves the population alone, because its
//! extra draws come from side streams of their own. Each must be finite,
//! above 0 and at most [`MAX_SHAPE`]; `Simulation::new` names the knob that
//! is not.
//!
//! # Population
//!
//! - **Tenants**: one per ~150 users, at least three (`acme`, `globex`,
//!   `initech`, ...), of uneven sizes, each with a home region (time zones,
//!   gateway ids such as `gw-acme-use1-a`) and office NAT addresses.
//! - **Users** belong to a peer role (engineer, sre, data, sales, support,
//!   finance, admin, manager, service). A role fixes habitual MCP servers
//!   (github, jira, slack, gmail, gdrive, postgres, salesforce, zendesk,
//!   kubernetes, ...) and the access granted; each user keeps a subset, with
//!   Zipf-weighted personal tool preferences and a working set of resources
//!   shared in part with their team. Service accounts (`svc-*`) run around the
//!   clock from a cloud address.
//! - **Rhythm**: fixed UTC offsets per user (no daylight saving), working
//!   hours with a lunch dip, quiet evenings, nights and weekends; per-day
//!   volume varies, with the odd day off. Volume per user is log-normal (from
//!   ~10 to several hundred calls per working day, ~50-150 on average), and
//!   heavier for users who run agents. `rate_spread` multiplies the
//!   log-normal sigma (0.75) and lowers the median to keep the mean: at 2
//!   the 5th and 95th percentile users are about two orders of magnitude
//!   apart (volume stays within 5-900 calls a day). `zones` multiplies the share of
//!   users living outside their tenant's home region (16%, at most all).
//! - **Sessions** are bursts of calls from one client, address and gateway:
//!   a person's at seconds apart, an agent's (principal `agent`, with an
//!   `agent_id`) longer and faster. `burstiness` multiplies the calls per
//!   session and divides the sessions per hour (and on-call night pages),
//!   keeping the day's volume. About 85% are `tools/call`, ~12%
//!   `resources/read`, a few `prompts/get`; sessions may open with
//!   `tools/list`.
//! - **Fields**: decision and status agree (403 with a policy and reason for
//!   denials, 429 rate limits, 401 expired tokens, 400 with JSON-RPC -32602,
//!   404 with -32002, 500 with -32603, 504 with -32001, 200 with `tool_error`);
//!   scopes are the token's grant on the server, `required_scope` the tool's;
//!   latency is log-normal per server; arguments are small objects; trace ids
//!   are random W3C ids; event ids are UUIDv7.
//! - **Resource URIs** are always `<scheme>://<tenant_id>/<path>`, e.g.
//!   `gdrive://acme/docs/finance/budget-plan-1`.
//! - **Noise**: some users' agents are misconfigured and get denied a few
//!   times a day, every working day; a small rate of malformed calls, tool
//!   errors, timeouts and rate limits everywhere.
//!
//! # Benign drift (not labelled; see [`Simulation::drifts`])
//!
//! A team adopts a new server on the same day; users move to a new network
//! or client for good; users travel (another time zone, a hotel network); the
//! on-call engineer of each tenant works nights for a week, in rotation; new
//! users join mid-period with no history.
//!
//! Knobs, each keeping today's drift when above 1 and a random share of it
//! when below: `travel` multiplies the share of people who travel (2%);
//! `adoption` the teams per tenant adopting a new server (one; 2.5 is two or
//! three) and the people moving to a new network (3%) or client (2%) for good;
//! `on_call` the engineers on call at once in each tenant (one; 2 is two at
//! once, 0.5 one in half the weeks), as far as the rota goes.
//!
//! # Attacks
//!
//! Incidents happen only in the attack window (by default the last half of
//! the period), at about [`SimConfig::incident_rate`] per 100 users per week;
//! once there are eight or more, every [`Scenario`] appears. Each incident
//! draws its victim (a person with history before the window), its start
//! (usual hours on a weekday; local night for off-hours; any time for
//! probing) and its [`Intensity`]: 30% are low-and-slow. Sizes, spans, the
//! share of denials and whether a new address is used are drawn from wide
//! ranges; for example probing is 8-60 calls over 2-15 minutes, or 3-10
//! calls over 6-48 hours when low-and-slow. Some scenarios come in two forms,
//! chosen from a side stream of the incident: half of the normal
//! exfiltrations are a burst of 100-800 sensitive reads over 20-120 minutes,
//! the other half raise the victim's own rate 5-40 times for 25-100 minutes
//! on one usual server, 20-60% of the reads on resources new to them (a light
//! user's is a few dozen calls); a quarter of normal enumerations are smaller
//! sweeps of 15-40 resources rather than 40-300. The simulator deliberately
//! knows nothing of any detector's thresholds. An [`Incident`] lists exactly
//! the events it injected; they are mixed into the stream by time.
//!
//! Two knobs reshape normal-intensity incidents; low-and-slow ones stay as
//! they are. `attack_scale` multiplies each scenario's number of calls
//! (rounded, at least 1), which for the sustained exfiltration is its rise
//! over the user's own rate: 0.33 is the "reduced intensity" family, where
//! an 8-30x exfiltration becomes 3.3-11x. `attack_pace` multiplies their spans,
//! kept within 2 seconds and 8 hours (0.02 packs a probe of dozens of calls
//! into seconds; 3 spreads a 3-20 minute sweep over 9-60 minutes); a paced
//! off-hours session still ends by 06:00 local time.

mod attack;
mod call;
mod catalog;
mod config;
mod error;
mod label;
mod materialize;
mod population;
mod rng;
mod simulation;
mod traffic;

pub use config::{MAX_DAYS, MAX_SHAPE, MAX_USERS, Shape, SimConfig, default_start};
pub use error::SimError;
pub use label::{Drift, DriftKind, Incident, Intensity, Scenario};
pub use simulation::Simulation;
