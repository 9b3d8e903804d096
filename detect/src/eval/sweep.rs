//! The sweep behind `tooltrail eval --sweep FILE`: the detectors over a grid of simulated
//! traffic shapes and seeds, scored cell by cell as the held-out sets are
//! (pages only, matched by time; see [`crate::eval::paging`]).
//!
//! A cell is one [`Shape`] of traffic (attack strength and pace, how unequal
//! users are, how bursty, how many travel or go on call, ...); every cell
//! runs on every seed. Cells marked `held_out` are not to be tuned on: they
//! are reported apart, as a check that the defaults generalize. The
//! simulation is generated in process, straight into the engine, on as
//! many threads as there are cores.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::Deserialize;
use tooltrail_sim::{Shape, SimConfig, Simulation};

use crate::alert::merge_repeats;
use crate::config::Settings;
use crate::eval::{Detection, Incident, Paging, paging};
use crate::{Alert, Engine};

/// Recall on normal-intensity incidents every cell must reach.
const NORMAL_RECALL: f64 = 0.95;
/// ... and on a cell whose attacks are at reduced intensity.
const REDUCED_RECALL: f64 = 0.90;
/// False pages per 1,000 user-days no cell may exceed.
const FALSE_PAGES: f64 = 1.0;
/// Pages per paged incident, on average over the sweep.
const PAGES_PER_INCIDENT: f64 = 2.0;

/// A sweep file (TOML).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    #[serde(default = "default_users")]
    pub users: usize,
    #[serde(default = "default_days")]
    pub days: u32,
    /// Attacks only in the last N days [default: the last half].
    pub attack_days: Option<u32>,
    /// Incidents per 100 users per week of attack window.
    #[serde(default = "default_incident_rate")]
    pub incident_rate: f64,
    pub seeds: Vec<u64>,
    #[serde(rename = "cell")]
    pub cells: Vec<Cell>,
}

fn default_users() -> usize {
    300
}
fn default_days() -> u32 {
    28
}
fn default_incident_rate() -> f64 {
    10.0
}

/// One shape of traffic.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub name: String,
    /// Not to be tuned on: reported apart.
    #[serde(default)]
    pub held_out: bool,
    /// Attacks at reduced intensity: held to the lower recall target.
    #[serde(default)]
    pub reduced: bool,
    #[serde(default)]
    pub shape: Shape,
}

/// Why a sweep could not run. Each names the file or the cell.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading sweep file {path}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a sweep file")]
    Parse {
        path: std::path::PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {problem}")]
    Invalid {
        path: std::path::PathBuf,
        problem: String,
    },
    #[error("no cell is named {0:?}")]
    NoSuchCell(String),
    #[error("cell {cell:?} seed {seed}: invalid simulation settings: {problem}")]
    Simulation {
        cell: String,
        seed: u64,
        problem: String,
    },
}

/// Reads and checks a sweep file.
pub fn load(path: &Path) -> Result<SweepFile, SweepError> {
    let invalid = |problem: String| SweepError::Invalid {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: SweepFile = toml::from_str(&text).map_err(|source| SweepError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if file.seeds.is_empty() {
        return Err(invalid("`seeds` is empty".into()));
    }
    if file.cells.is_empty() {
        return Err(invalid("no [[cell]]".into()));
    }
    let mut names = HashSet::new();
    for cell in &file.cells {
        if !names.insert(cell.name.as_str()) {
            return Err(invalid(format!("two cells are named {:?}", cell.name)));
        }
        sim_config(&file, cell, file.seeds[0])
            .validate()
            .map_err(|e| invalid(format!("cell {:?}: {e}", cell.name)))?;
    }
    Ok(file)
}

fn sim_config(file: &SweepFile, cell: &Cell, seed: u64) -> SimConfig {
    SimConfig {
        users: file.users,
        days: file.days,
        seed,
        attack_days: file.attack_days,
        incident_rate: file.incident_rate,
        shape: cell.shape,
        ..SimConfig::default()
    }
}

/// One cell on one seed.
struct Run {
    cell: usize,
    paging: Paging,
    /// The normal-intensity incidents missed, described.
    missed: Vec<String>,
}

/// What a sweep found.
#[derive(Debug)]
pub struct SweepReport {
    /// The table: per cell, then per attack kind, the worst cells and the verdict.
    pub text: String,
    /// The targets missed, described; empty when every cell met them.
    pub failed: Vec<String>,
    /// Every normal-intensity incident no page caught, as (cell, description).
    pub missed: Vec<(String, String)>,
    pub elapsed: std::time::Duration,
}

/// Runs the sweep (only the cells named in `only`, if any) on every core.
pub fn run(
    file: &SweepFile,
    only: &[String],
    settings: &Settings,
) -> Result<SweepReport, SweepError> {
    for name in only {
        if !file.cells.iter().any(|c| &c.name == name) {
            return Err(SweepError::NoSuchCell(name.clone()));
        }
    }
    let cells: Vec<usize> = (0..file.cells.len())
        .filter(|&i| only.is_empty() || only.contains(&file.cells[i].name))
        .collect();
    let jobs: Vec<(usize, u64)> = cells
        .iter()
        .flat_map(|&c| file.seeds.iter().map(move |&s| (c, s)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    tracing::info!(
        cells = cells.len(),
        seeds = file.seeds.len(),
        users = file.users,
        days = file.days,
        threads,
        "sweep starting"
    );
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let runs = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&(cell, seed)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match run_one(sim_config(file, &file.cells[cell], seed), settings) {
                        Ok((paging, missed)) => runs
                            .lock()
                            .expect("no thread panicked holding it")
                            .push(Run {
                                cell,
                                paging,
                                missed,
                            }),
                        Err(problem) => {
                            *failure.lock().expect("no thread panicked holding it") =
                                Some(SweepError::Simulation {
                                    cell: file.cells[cell].name.clone(),
                                    seed,
                                    problem,
                                });
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("threads joined") {
        return Err(e);
    }
    let mut runs = runs.into_inner().expect("threads joined");
    let rendered = render(file, &cells, &runs);
    runs.sort_by_key(|r| r.cell);
    let missed = runs
        .iter()
        .flat_map(|r| {
            r.missed
                .iter()
                .map(|m| (file.cells[r.cell].name.clone(), m.clone()))
        })
        .collect();
    Ok(SweepReport {
        text: rendered.text,
        failed: rendered.failed,
        missed,
        elapsed: started.elapsed(),
    })
}

/// The detectors on one simulation, scored.
fn run_one(config: SimConfig, settings: &Settings) -> Result<(Paging, Vec<String>), String> {
    let seed = config.seed;
    let mut sim = Simulation::new(config).map_err(|e| e.to_string())?;
    let mut engine = Engine::new(settings.clone());
    let mut alerts: Vec<Alert> = Vec::new();
    let mut user_days = HashSet::new();
    for event in sim.by_ref() {
        user_days.insert((
            event.tenant_id.clone(),
            event.user_id.clone(),
            event.time.timestamp().div_euclid(86_400),
        ));
        engine.observe(&event, &mut alerts);
    }
    engine.finish(&mut alerts);
    let detections: Vec<Detection> = merge_repeats(alerts).iter().map(Detection::from).collect();
    let incidents: Vec<Incident> = sim
        .incidents()
        .iter()
        .map(|i| Incident {
            scenario: i.scenario.as_str().to_owned(),
            intensity: match i.intensity {
                tooltrail_sim::Intensity::Normal => "normal",
                tooltrail_sim::Intensity::LowAndSlow => "low_and_slow",
            }
            .to_owned(),
            tenant_id: i.tenant_id.clone(),
            user_id: i.user_id.clone(),
            start: i.start,
            end: i.end,
            event_ids: i.event_ids.clone(),
        })
        .collect();
    let scored = paging(&detections, &incidents, user_days.len() as u64);
    let missed = scored
        .missed
        .iter()
        .map(|&i| &sim.incidents()[i])
        .filter(|i| i.intensity == tooltrail_sim::Intensity::Normal)
        .map(|i| {
            format!(
                "seed {seed} {} {}@{} {}: {}",
                i.scenario,
                i.user_id,
                i.tenant_id,
                i.start.format("%Y-%m-%dT%H:%M:%SZ"),
                i.summary
            )
        })
        .collect();
    Ok((scored, missed))
}

struct Rendered {
    text: String,
    failed: Vec<String>,
}

fn render(file: &SweepFile, cells: &[usize], runs: &[Run]) -> Rendered {
    use std::fmt::Write as _;
    let mut text = String::new();
    let mut failed = Vec::new();
    let _ = writeln!(
        text,
        "{:<28} {:>17} {:>11} {:>17} {:>9} {:>8}  missed (normal); false pages by detector",
        "cell", "normal recall", "low&slow", "false/1kud", "pages/inc", "ttd p50"
    );
    let mut all = Paging::default();
    // (recall, name, held out) of each cell, for the worst.
    let mut worst: Vec<(f64, f64, &str, bool)> = Vec::new();
    for &c in cells {
        let cell = &file.cells[c];
        let mine: Vec<&Run> = runs.iter().filter(|r| r.cell == c).collect();
        let mut total = Paging::default();
        for r in &mine {
            total.add(&r.paging);
        }
        all.add(&total);
        let normal = total
            .by_intensity
            .get("normal")
            .copied()
            .unwrap_or_default();
        let slow = total
            .by_intensity
            .get("low_and_slow")
            .copied()
            .unwrap_or_default();
        let spread = |f: &dyn Fn(&Paging) -> f64| {
            let v: Vec<f64> = mine.iter().map(|r| f(&r.paging)).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.2}-{hi:.2}")
        };
        let normal_spread = spread(&|p| {
            p.by_intensity
                .get("normal")
                .copied()
                .unwrap_or_default()
                .recall()
        });
        let false_spread = spread(&|p| p.false_per_1000_user_days());
        let pages = mean(&total.pages);
        let ttd = median(&total.ttd).map_or("-".to_owned(), duration);
        let missed: Vec<String> = total
            .by_scenario
            .iter()
            .filter(|(k, v)| k.ends_with("/normal") && v.paged < v.incidents)
            .map(|(k, v)| {
                format!(
                    "{} {}/{}",
                    k.trim_end_matches("/normal"),
                    v.incidents - v.paged,
                    v.incidents
                )
            })
            .collect();
        let name = if cell.held_out {
            format!("{} (held out)", cell.name)
        } else {
            cell.name.clone()
        };
        let falses: Vec<String> = total
            .false_by_source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            text,
            "{name:<28} {:>5.3} {:>11} {:>5.3}({:>3}) {:>5.2} {:>11} {:>9.2} {:>8}  {}; {}",
            normal.recall(),
            format!("({normal_spread})"),
            slow.recall(),
            slow.incidents,
            total.false_per_1000_user_days(),
            format!("({false_spread})"),
            pages,
            ttd,
            if missed.is_empty() {
                "-".to_owned()
            } else {
                missed.join(", ")
            },
            if falses.is_empty() {
                "-".to_owned()
            } else {
                falses.join(", ")
            }
        );
        let target = if cell.reduced {
            REDUCED_RECALL
        } else {
            NORMAL_RECALL
        };
        if normal.recall() < target {
            failed.push(format!(
                "{}: normal recall {:.3} < {target}",
                cell.name,
                normal.recall()
            ));
        }
        if total.false_per_1000_user_days() > FALSE_PAGES {
            failed.push(format!(
                "{}: {:.2} false pages per 1,000 user-days > {FALSE_PAGES}",
                cell.name,
                total.false_per_1000_user_days()
            ));
        }
        worst.push((
            normal.recall(),
            total.false_per_1000_user_days(),
            &cell.name,
            cell.held_out,
        ));
    }
    let pages = mean(&all.pages);
    if pages > PAGES_PER_INCIDENT {
        failed.push(format!(
            "{pages:.2} pages per paged incident > {PAGES_PER_INCIDENT}"
        ));
    }
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (k, v) in &all.by_scenario {
        let e = kinds.entry(k.as_str()).or_default();
        e.0 += v.paged;
        e.1 += v.incidents;
    }
    let _ = writeln!(text, "\nby attack kind, over all cells:");
    for (k, (paged, n)) in kinds {
        let _ = writeln!(
            text,
            "  {k:<32} {paged:>4}/{n:<4} {:.3}",
            paged as f64 / n as f64
        );
    }
    for held_out in [false, true] {
        let group: Vec<&(f64, f64, &str, bool)> =
            worst.iter().filter(|w| w.3 == held_out).collect();
        let by_recall = group.iter().min_by(|a, b| a.0.total_cmp(&b.0));
        let by_false = group.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(r), Some(f)) = (by_recall, by_false) {
            let _ = writeln!(
                text,
                "worst {} cell: normal recall {:.3} ({}); false pages {:.2} per 1k user-days ({})",
                if held_out { "held-out" } else { "tuning" },
                r.0,
                r.2,
                f.1,
                f.2
            );
        }
    }
    let _ = writeln!(
        text,
        "pages per paged incident, over all cells: {pages:.2}; time to page p50 {}",
        median(&all.ttd).map_or("-".to_owned(), duration)
    );
    let _ = writeln!(
        text,
        "targets: normal recall >= {NORMAL_RECALL} (reduced cells >= {REDUCED_RECALL}), <= {FALSE_PAGES} false pages per 1k user-days, <= {PAGES_PER_INCIDENT} pages per incident: {}",
        if failed.is_empty() { "met" } else { "MISSED" }
    );
    Rendered { text, failed }
}

fn mean(v: &[usize]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<usize>() as f64 / v.len() as f64
    }
}

fn median(v: &[i64]) -> Option<i64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

fn duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{:.1}m", s as f64 / 60.0),
        s => format!("{:.1}h", s as f64 / 3600.0),
    }
}
