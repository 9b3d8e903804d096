// TEMPORARY calibration tool (to be deleted).
use std::collections::BTreeMap;
use std::io::Write;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users: usize = args.get(1).map_or(1000, |s| s.parse().unwrap());
    let days: u32 = args.get(2).map_or(14, |s| s.parse().unwrap());
    let t0 = std::time::Instant::now();
    let mut sim = tooltrail_sim::Simulation::new(tooltrail_sim::SimConfig {
        users,
        days,
        seed: 7,
        ..Default::default()
    })
    .unwrap();
    println!("population {:?} build {:?}", sim.population(), t0.elapsed());
    let mut n = 0usize;
    let mut bytes = 0usize;
    let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    let mut status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut principals: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = std::io::BufWriter::new(std::fs::File::create("/tmp/simstats.ndjson").unwrap());
    let mut sample = Vec::new();
    for e in sim.by_ref() {
        n += 1;
        serde_json::to_writer(&mut out, &e).unwrap();
        out.write_all(b"\n").unwrap();
        *per_day
            .entry(e.time.format("%a %m-%d").to_string())
            .or_default() += 1;
        *methods.entry(e.method.clone()).or_default() += 1;
        *status.entry(e.status).or_default() += 1;
        *principals
            .entry(format!("{:?}", e.principal_type))
            .or_default() += 1;
        *per_user.entry(e.kafka_key()).or_default() += 1;
        if n % 100_000 == 7 {
            sample.push(e.to_json());
        }
    }
    out.flush().unwrap();
    bytes += std::fs::metadata("/tmp/simstats.ndjson").unwrap().len() as usize;
    let el = t0.elapsed();
    println!(
        "events {n} in {el:?} = {:.0}/s, {} MB",
        n as f64 / el.as_secs_f64(),
        bytes / 1_000_000
    );
    println!("per day {per_day:?}");
    println!("methods {methods:?}");
    println!("status {status:?}");
    println!("principals {principals:?}");
    let mut v: Vec<usize> = per_user.values().copied().collect();
    v.sort();
    println!(
        "per-user totals: min {} p10 {} p50 {} p90 {} max {} users-with-events {}",
        v[0],
        v[v.len() / 10],
        v[v.len() / 2],
        v[v.len() * 9 / 10],
        v[v.len() - 1],
        v.len()
    );
    for s in sample.iter().take(4) {
        println!("{s}");
    }
    let inc = sim.incidents();
    println!("incidents {}", inc.len());
    for i in inc {
        println!(
            "  {} {:?} {}/{} {} .. {} n={} : {}",
            i.scenario,
            i.intensity,
            i.tenant_id,
            i.user_id,
            i.start,
            i.end,
            i.event_ids.len(),
            i.summary
        );
    }
    println!("drifts {}", sim.drifts().len());
    for d in sim.drifts().iter().take(12) {
        println!(
            "  {:?} {} {:?} {} {}",
            d.kind,
            d.tenant_id,
            &d.user_ids[..d.user_ids.len().min(3)],
            d.start,
            d.detail
        );
    }
}
