//! Several instances of `tooltrail ingest --kafka` in one consumer group, writing one Delta table:
//! three of them on eight partitions while half a million events flow, a random one killed with
//! SIGKILL and restarted ten times over. Every event must land exactly once.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};

use super::harness::{
    CATCH_UP, FIRST_COMMIT, IngestSetup, SplitMix64, assert_committed_at_ends, assert_exactly_once,
    lake_rows_now, log_writers, wait_for_rows,
};
use crate::support::{
    create_topic, high_watermarks, kafka_brokers, wait_out_killed_member_session,
};

const PARTITIONS: i32 = 8;
const INSTANCES: usize = 3;
const KILLS: usize = 10;
const MIN_EVENTS: usize = 500_000;
/// Seed of which instance dies and when; `TOOLTRAIL_TEST_SEED` overrides it.
const SEED: u64 = 0x5ca1_e0ff;

#[tokio::test]
async fn three_instances_on_eight_partitions_keep_every_event_once_through_ten_kills() -> Result<()>
{
    let started = Instant::now();
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "scale", PARTITIONS).await?;
    // Commits of a few hundred records: the three writers race for versions all the time, and
    // the load lasts through the ten kills, each of which waits out the victim's session.
    let ingest = IngestSetup::new(&brokers, &topic)?.with_batches(&[
        ("TOOLTRAIL__INGEST__MAX_BATCH_RECORDS", "250"),
        ("TOOLTRAIL__INGEST__MAX_BATCH_DELAY", "100ms"),
    ]);
    let lake = ingest.lake();
    let sim = super::harness::Simulation {
        users: 1150,
        days: 7,
        seed: 47,
    };
    let expected = sim.event_ids(ingest.dir()).await?;
    ensure!(
        expected.len() >= MIN_EVENTS,
        "the simulation makes {} events; want at least {MIN_EVENTS}",
        expected.len()
    );

    let mut instances = Vec::with_capacity(INSTANCES);
    for _ in 0..INSTANCES {
        instances.push(ingest.start().await?);
    }
    let producing = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        tokio::spawn(async move { sim.produce(&brokers, &topic).await })
    };
    // The kills start once the instances write.
    wait_for_rows(&lake, 1, FIRST_COMMIT).await?;

    let seed = std::env::var("TOOLTRAIL_TEST_SEED")
        .ok()
        .map(|s| s.parse::<u64>().context("TOOLTRAIL_TEST_SEED is a u64"))
        .transpose()?
        .unwrap_or(SEED);
    let mut rng = SplitMix64(seed);
    let mut schedule = Vec::with_capacity(KILLS);
    for round in 1..=KILLS {
        let victim = rng.between(0, INSTANCES as u64 - 1) as usize;
        // However fast the machine, the kill comes before the lake holds more than this
        // round's share, so that every kill lands while the load is still coming in.
        let share = expected.len() * round / (KILLS + 2);
        let kill_at = Instant::now() + Duration::from_millis(rng.between(200, 1500));
        let mut rows = lake_rows_now(&lake).await?;
        while Instant::now() < kill_at && rows < share {
            tokio::time::sleep(Duration::from_millis(50)).await;
            rows = lake_rows_now(&lake).await?;
        }
        let log = instances[victim].stderr();
        let killed = instances.remove(victim);
        killed.kill_9().await?;
        schedule.push(format!("#{victim} at {rows} rows"));
        ensure!(
            rows < expected.len(),
            "kill {round} came after the whole load was in the lake; the victim logged:\n{log}"
        );
        wait_out_killed_member_session().await;
        // The restarted instance joins while the next round's clock runs; the end checks that
        // every event arrived, whichever instance wrote it.
        instances.insert(victim, ingest.start().await?);
    }
    producing.await.context("join the producer")??;
    eprintln!("seed {seed:#x}: {KILLS} kills: {schedule:?}");

    let caught_up = wait_for_rows(&lake, expected.len(), CATCH_UP).await;
    let logs: Vec<String> = instances.iter().map(|i| i.stderr()).collect();
    for instance in instances {
        instance.stop().await?;
    }
    caught_up.with_context(|| format!("the last instances logged:\n{}", logs.join("\n---\n")))?;
    assert_exactly_once(&expected, &lake).await?;
    let ends = high_watermarks(&brokers, &topic, PARTITIONS).await?;
    assert_committed_at_ends(&brokers, ingest.group(), &topic, &ends).await?;
    let writers: std::collections::BTreeSet<String> =
        log_writers(&lake)?.into_iter().map(|(_, w)| w).collect();
    // Several processes wrote the table at once: not only one survivor.
    ensure!(writers.len() >= 2, "one writer only: {writers:?}");
    eprintln!(
        "{} events exactly once with {INSTANCES} instances, {KILLS} kills, {} writers; test took \
         {:.1}s",
        expected.len(),
        writers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
