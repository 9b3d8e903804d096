//! Detector core throughput and state size, on one thread.
//!
//! ```text
//! cargo run --release -p tooltrail-detect --example detect_bench -- [USERS] [TIMED_EVENTS] [RULES_DIR]
//! ```
//!
//! With RULES_DIR (e.g. `rules/`), the engine also runs those Sigma rules:
//! run it with and without to compare.
//!
//! Simulates USERS users (default 100,000); feeds the first simulated day
//! through the engine untimed (so every active user has state), then times
//! `Engine::observe` over the next TIMED_EVENTS events (default 2,000,000),
//! held in memory so that only the detector is measured. Prints events/s,
//! users with state, and bytes of state per user; then the cost of one
//! checkpoint of that state (as `detect --kafka` writes per partition): its
//! size and the time to write and to read it back. Pin it to one core with
//! `taskset -c 0` for the one-core figure.

use std::time::Instant;

use tooltrail_detect::checkpoint::Checkpoints;
use tooltrail_detect::{DetectConfig, Engine};
use tooltrail_sim::{SimConfig, Simulation};

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(100_000, |a| a.parse().expect("USERS"));
    let timed: usize = args
        .next()
        .map_or(2_000_000, |a| a.parse().expect("TIMED_EVENTS"));
    let mut settings = DetectConfig::default().validate().expect("defaults");
    if let Some(dir) = args.next() {
        let source = tooltrail_detect::sigma::RuleSource::load(std::path::Path::new(&dir));
        let (_, rules) = source.current();
        eprintln!(
            "sigma rules: {} loaded, {} refused, from {dir}",
            rules.rules().len(),
            rules.errors().len()
        );
        settings.rules = Some(std::sync::Arc::new(source));
    }
    let mut engine = Engine::new(settings.clone());
    let mut sim = Simulation::new(SimConfig {
        users,
        days: 3,
        seed: 11,
        ..SimConfig::default()
    })
    .expect("simulation");
    let mut out = Vec::new();
    let warm_until = tooltrail_sim::default_start() + chrono::Duration::days(1);
    let started = Instant::now();
    let mut warm = 0u64;
    let mut next = None;
    for event in sim.by_ref() {
        if event.time >= warm_until {
            next = Some(event);
            break;
        }
        engine.observe(&event, &mut out);
        warm += 1;
    }
    eprintln!(
        "warm-up: {warm} events, {} users with state, {:.1}s",
        engine.users(),
        started.elapsed().as_secs_f64()
    );
    let events: Vec<_> = next
        .into_iter()
        .chain(sim.by_ref().take(timed - 1))
        .collect();
    let alerts_before = out.len();
    eprintln!("timing {} events", events.len());
    let started = Instant::now();
    for event in &events {
        engine.observe(event, &mut out);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let users = engine.users();
    let bytes = engine.user_state_bytes();
    let table = engine.user_table_bytes();
    let sigma = out[alerts_before..]
        .iter()
        .filter(|a| a.detector.builtin().is_none())
        .count();
    println!(
        "detector core: {} events in {elapsed:.2}s = {:.0} events/s on one thread; {} alerts ({sigma} of sigma rules)",
        events.len(),
        events.len() as f64 / elapsed,
        out.len() - alerts_before
    );
    println!(
        "state: {users} users, {:.0} bytes per user (approximate heap accounting), {:.0} with the user table",
        bytes as f64 / users.max(1) as f64,
        (bytes + table) as f64 / users.max(1) as f64
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let lake = tooltrail_lake::Location::local(dir.path()).expect("lake dir");
    let checkpoints =
        Checkpoints::open(&lake, "bench", runtime.handle().clone()).expect("checkpoint dir");
    let started = Instant::now();
    let size = checkpoints
        .save("events", 0, 0, &engine)
        .expect("write the checkpoint");
    let saved = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let restored = checkpoints
        .load("events", 0, &settings)
        .expect("read the checkpoint")
        .expect("a checkpoint");
    let loaded = started.elapsed().as_secs_f64();
    assert_eq!(restored.engine.users(), users);
    println!(
        "checkpoint: {:.1} MB ({:.0} bytes per user), written in {saved:.2}s, read in {loaded:.2}s",
        size as f64 / 1e6,
        size as f64 / users.max(1) as f64
    );
}
