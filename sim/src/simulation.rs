//! The event stream: day by day, globally sorted by time.

use std::cmp::Reverse;
use std::ops::Range;

use chrono::{DateTime, Utc};
use tooltrail_schemas::ToolCallEvent;

use crate::attack::{self, Schedule};
use crate::call::{Call, to_datetime};
use crate::config::SimConfig;
use crate::error::SimError;
use crate::label::{Drift, Incident};
use crate::materialize::materialize;
use crate::population::World;
use crate::traffic::{self, SessionCtx};

/// A running simulation: an iterator of events in time order.
///
/// Memory is bounded by one day of compact call plans (plus the few that run
/// past midnight); events are built one at a time as they are yielded.
#[derive(Debug)]
pub struct Simulation {
    world: World,
    schedule: Schedule,
    /// The next day to generate.
    day: u32,
    /// Calls planned for days not yet released.
    pending: Vec<Call>,
    /// The current day's calls, latest first (`pop` yields the earliest).
    ready: Vec<Call>,
    incidents: Vec<Incident>,
    sessions: Vec<SessionCtx>,
}

impl Simulation {
    /// Validates the config and builds the population. Cheap: no events are
    /// generated until iteration.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        let world = World::build(&config);
        let schedule = attack::plan(&world, config.incident_rate);
        Ok(Simulation {
            world,
            schedule,
            day: 0,
            pending: Vec::new(),
            ready: Vec::new(),
            incidents: Vec::new(),
            sessions: Vec::new(),
        })
    }

    /// Incidents injected so far, by start time; complete once the iterator
    /// has returned `None`.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// Consumes the simulation, returning its incidents (see [`Self::incidents`]).
    pub fn into_incidents(self) -> Vec<Incident> {
        self.incidents
    }

    /// Every benign change the population goes through (known up front).
    pub fn drifts(&self) -> &[Drift] {
        &self.world.drifts
    }

    /// The whole simulated period.
    pub fn period(&self) -> Range<DateTime<Utc>> {
        to_datetime(self.world.start)..to_datetime(self.world.end())
    }

    /// The part of the period where attacks happen.
    pub fn attack_window(&self) -> Range<DateTime<Utc>> {
        to_datetime(self.world.window_start())..to_datetime(self.world.end())
    }

    /// How many tenants and users the population has.
    pub fn population(&self) -> (usize, usize) {
        (self.world.tenants.len(), self.world.users.len())
    }

    /// Plans day `self.day` and moves every call before its end to `ready`.
    fn advance_day(&mut self) {
        let day = self.day;
        let world = &self.world;
        let mut fresh = Vec::with_capacity(self.ready.capacity().max(1024));
        let mut incidents = Vec::new();
        for user in &world.users {
            self.sessions.clear();
            traffic::user_day(world, user, day, &mut fresh, &mut self.sessions);
            if let Some(planned) = self.schedule.get(&(day, user.idx)) {
                for p in planned {
                    incidents.push(attack::generate(world, p, &self.sessions, &mut fresh));
                }
            }
        }
        incidents.sort_by(|a: &Incident, b| {
            (a.start, &a.tenant_id, &a.user_id).cmp(&(b.start, &b.tenant_id, &b.user_id))
        });
        self.incidents.extend(incidents);

        let day_end = world.day_start(day + 1);
        let period_end = world.end();
        self.ready.clear();
        let mut later = Vec::new();
        for call in self.pending.drain(..).chain(fresh) {
            if call.time < day_end {
                self.ready.push(call);
            } else if call.time < period_end {
                later.push(call);
            }
        }
        self.pending = later;
        self.ready.sort_unstable_by_key(|c| Reverse(c.key()));
        self.day += 1;
    }
}

impl Iterator for Simulation {
    type Item = ToolCallEvent;

    fn next(&mut self) -> Option<ToolCallEvent> {
        loop {
            if let Some(call) = self.ready.pop() {
                return Some(materialize(&self.world, &call));
            }
            if self.day >= self.world.days {
                return None;
            }
            self.advance_day();
        }
    }
}

#[cfg(test)]
mod shape_tests;
#[cfg(test)]
mod tests;
