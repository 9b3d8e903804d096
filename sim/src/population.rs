//! The simulated world: tenants, their users, and how each user behaves.
//!
//! Built once from the seed; traffic and attacks only read it.

mod drift;
mod network;
mod people;

use std::net::IpAddr;

use rand::Rng;

use crate::call::{DAY, HOUR, MINUTE, Principal};
use crate::catalog::{Access, CLIENTS, SERVERS, ServerId, ToolId};
use crate::config::{Shape, SimConfig};
use crate::label::Drift;
use crate::rng::{Stream, hash, lognormal, pick_cumulative, stream, unit, zipf_cumulative};

pub(crate) use drift::on_call;
pub(crate) use network::{attacker_ip, home_ip};

/// Ranks in a user's working set of one resource kind.
pub(crate) const WORKING_SET: usize = 40;

/// Everything that does not change while the simulation runs.
#[derive(Debug)]
pub(crate) struct World {
    pub seed: u64,
    /// Start of the period, microseconds since the epoch.
    pub start: i64,
    pub days: u32,
    /// First day of the attack window.
    pub window_day: u32,
    pub tenants: Vec<Tenant>,
    pub users: Vec<User>,
    pub drifts: Vec<Drift>,
    /// Zipf weights over a working set's ranks.
    pub zipf: Vec<f32>,
    /// The traffic family's knobs.
    pub shape: Shape,
}

#[derive(Debug)]
pub(crate) struct Tenant {
    pub id: String,
    pub region: usize,
    pub gateways: Vec<String>,
    pub office_ips: Vec<IpAddr>,
    /// Members, by user index.
    pub users: Vec<u32>,
    /// On-call rotation, by user index (may be empty).
    pub oncall: Vec<u32>,
}

/// One habitual server of a user, from `from_day` on.
#[derive(Debug, Clone)]
pub(crate) struct UserServer {
    pub server: ServerId,
    pub weight: f32,
    pub from_day: u32,
    /// Tool indices the user habitually calls, with cumulative weights.
    pub tools: Vec<u8>,
    pub cumulative: Vec<f32>,
}

/// A scope-denied call a misconfigured agent keeps making.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Misconfig {
    pub tool: ToolId,
    pub per_day: f64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Travel {
    pub from_day: u32,
    pub to_day: u32,
    pub tz_shift_min: i32,
    pub ip: IpAddr,
}

#[derive(Debug)]
pub(crate) struct User {
    pub idx: u32,
    pub tenant: u16,
    pub id: String,
    pub role: u8,
    pub principal: Principal,
    /// UTC offset at home, minutes.
    pub tz_min: i32,
    /// Share of a working day's calls in each local hour (sums to 1).
    pub hour_weights: [f32; 24],
    pub calls_per_day: f64,
    pub weekend_factor: f64,
    /// Median calls per session.
    pub session_len: f64,
    /// Median seconds between calls in a session.
    pub gap_s: f64,
    /// Share of sessions run by the user's agent.
    pub agent_share: f64,
    pub agent_id: Option<String>,
    pub agent_client: u8,
    pub servers: Vec<UserServer>,
    /// Grant per server, by server index.
    pub access: Vec<Option<Access>>,
    pub clients: [u8; 2],
    pub second_client_p: f64,
    /// First user-agent version, and the day the client updates.
    pub ua_version: u8,
    pub ua_upgrade_day: u32,
    pub ips: Vec<IpAddr>,
    /// Probability of working from `ips[0]` on a given day.
    pub office_p: f64,
    pub gateway: u8,
    pub join_day: u32,
    /// Offset of the user's working set within the team's.
    pub res_shift: u32,
    pub night_owl: bool,
    pub misconfig: Option<Misconfig>,
    pub ip_change: Option<(u32, IpAddr)>,
    pub client_change: Option<(u32, u8)>,
    pub travel: Option<Travel>,
}

/// What a user's local calendar day looks like.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalDay {
    /// Local calendar day, days since the epoch.
    pub epoch_day: i64,
    /// Scales the day's volume; 0 when the user is off.
    pub mult: f64,
    pub weekend: bool,
    pub office: bool,
}

impl World {
    pub(crate) fn build(cfg: &SimConfig) -> World {
        let start = cfg.start.timestamp_micros();
        let window_day = cfg.days - cfg.attack_days();
        let mut world = World {
            seed: cfg.seed,
            start,
            days: cfg.days,
            window_day,
            tenants: Vec::new(),
            users: Vec::new(),
            drifts: Vec::new(),
            zipf: zipf_cumulative(WORKING_SET, 1.1),
            shape: cfg.shape,
        };
        let mut rng = stream(cfg.seed, Stream::Population, 0, 0);
        people::populate(&mut world, cfg.users, &mut rng);
        drift::plan(&mut world);
        world
    }

    pub(crate) fn day_start(&self, day: u32) -> i64 {
        self.start + i64::from(day) * DAY
    }

    /// End of the period (exclusive).
    pub(crate) fn end(&self) -> i64 {
        self.day_start(self.days)
    }

    pub(crate) fn window_start(&self) -> i64 {
        self.day_start(self.window_day)
    }

    /// The period's day an instant falls in (clamped to the period).
    pub(crate) fn day_of(&self, t: i64) -> u32 {
        let d = (t - self.start)
            .div_euclid(DAY)
            .clamp(0, i64::from(self.days) - 1);
        d as u32
    }

    pub(crate) fn tenant_of(&self, user: &User) -> &Tenant {
        &self.tenants[usize::from(user.tenant)]
    }

    /// The user's local calendar day `epoch_day`: volume, weekend, office.
    pub(crate) fn local_day(&self, user: &User, epoch_day: i64) -> LocalDay {
        let weekend = weekday(epoch_day) >= 5;
        let h = hash(
            self.seed,
            Stream::LocalDay,
            u64::from(user.idx),
            epoch_day as u64,
        );
        let mut rng = stream(
            self.seed,
            Stream::LocalDay,
            u64::from(user.idx),
            epoch_day as u64,
        );
        let off = user.principal != Principal::Service && unit(h) < 0.03;
        let mult = if off {
            0.0
        } else {
            lognormal(&mut rng, 1.0, 0.35)
        };
        LocalDay {
            epoch_day,
            mult,
            weekend,
            office: rng.random_bool(user.office_p),
        }
    }

    /// Cumulative weights for a working-set rank.
    pub(crate) fn pick_rank<R: Rng>(&self, rng: &mut R) -> usize {
        pick_cumulative(rng, &self.zipf)
    }
}

/// Day of the week, Monday = 0, for days since the epoch.
pub(crate) fn weekday(epoch_day: i64) -> i64 {
    (epoch_day + 3).rem_euclid(7)
}

impl User {
    pub(crate) fn can(&self, server: ServerId, access: Access) -> bool {
        self.access[usize::from(server.0)].is_some_and(|granted| granted >= access)
    }

    /// The user's UTC offset on a day, travel included.
    pub(crate) fn tz_on(&self, day: u32) -> i32 {
        match self.travel {
            Some(t) if (t.from_day..t.to_day).contains(&day) => self.tz_min + t.tz_shift_min,
            _ => self.tz_min,
        }
    }

    /// Local epoch day and local hour of an instant, given the day's offset.
    pub(crate) fn local(&self, t: i64, day: u32) -> (i64, usize) {
        let local = t + i64::from(self.tz_on(day)) * MINUTE;
        let epoch_day = local.div_euclid(DAY);
        (epoch_day, (local.rem_euclid(DAY) / HOUR) as usize)
    }

    /// Source address on a day, given where the user works that day.
    pub(crate) fn ip_on(&self, day: u32, office: bool) -> IpAddr {
        if let Some(t) = self.travel
            && (t.from_day..t.to_day).contains(&day)
        {
            return t.ip;
        }
        if let Some((from, ip)) = self.ip_change
            && day >= from
        {
            return ip;
        }
        if office || self.ips.len() == 1 {
            self.ips[0]
        } else {
            self.ips[1]
        }
    }

    /// The client a non-agent session uses on a day.
    pub(crate) fn client_on<R: Rng>(&self, day: u32, rng: &mut R) -> u8 {
        let primary = match self.client_change {
            Some((from, client)) if day >= from => client,
            _ => self.clients[0],
        };
        if self.second_client_p > 0.0 && rng.random_bool(self.second_client_p) {
            self.clients[1]
        } else {
            primary
        }
    }

    /// The user-agent version of a client on a day.
    pub(crate) fn ua_on(&self, client: u8, day: u32) -> u8 {
        let versions = CLIENTS[usize::from(client)].user_agents.len() as u8;
        let v = self.ua_version + u8::from(day >= self.ua_upgrade_day);
        v.min(versions - 1)
    }

    /// Picks a habitual server in use on `day`.
    pub(crate) fn pick_server<R: Rng>(&self, day: u32, rng: &mut R) -> &UserServer {
        let total: f32 = self
            .servers
            .iter()
            .filter(|s| s.from_day <= day)
            .map(|s| s.weight)
            .sum();
        let mut x = rng.random::<f32>() * total;
        let mut last = &self.servers[0];
        for s in self.servers.iter().filter(|s| s.from_day <= day) {
            if x < s.weight {
                return s;
            }
            x -= s.weight;
            last = s;
        }
        last
    }

    pub(crate) fn habitual(&self, tool: ToolId) -> bool {
        self.servers
            .iter()
            .any(|s| s.server == tool.server && s.tools.contains(&tool.index))
    }

    pub(crate) fn is_service(&self) -> bool {
        self.principal == Principal::Service
    }
}

impl UserServer {
    pub(crate) fn pick_tool<R: Rng>(&self, rng: &mut R) -> u8 {
        self.tools[pick_cumulative(rng, &self.cumulative)]
    }
}

/// Scopes granted on a server up to `access`, as event `scopes`.
pub(crate) fn scopes(server: ServerId, access: Option<Access>) -> Vec<String> {
    let names = &SERVERS[usize::from(server.0)].scopes;
    match access {
        None => Vec::new(),
        Some(a) => names[..=a as usize]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
    }
}
