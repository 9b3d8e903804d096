//! What to simulate.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// The most users one simulation holds.
pub const MAX_USERS: usize = 1_000_000;
/// The longest period one simulation covers, in days.
pub const MAX_DAYS: u32 = 3660;

/// A simulation's parameters. Same config, same output, byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// How many principals (people and service accounts), across all tenants.
    pub users: usize,
    /// Length of the period, in days of 24 hours from `start`.
    pub days: u32,
    /// Seeds every random choice: population, traffic, drift and attacks.
    pub seed: u64,
    /// Start of the period; 2026-10-05T00:00:00Z (a Monday) by default.
    pub start: DateTime<Utc>,
    /// Attacks happen only in the last `attack_days` days; by default the last
    /// half of the period (rounded up), so the first half is clean history.
    pub attack_days: Option<u32>,
    /// Incidents per 100 users per week of attack window (default 3).
    pub incident_rate: f64,
    /// What varies between real deployments; the default is the traffic
    /// this simulator has always made.
    pub shape: Shape,
}

/// Knobs for the family of plausible traffic `tooltrail eval --sweep` runs
/// the detectors over. Each is a multiplier on the simulator's own draw
/// (1.0 leaves it as it is), so a sweep cell reads as "attacks at a third of
/// their strength, three times as spread out, users twice as unequal".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Shape {
    /// Size of normal-intensity attacks: the number of calls (and the rise
    /// over the user's own rate, for exfiltration) is multiplied by this.
    /// 0.33 is the "reduced intensity" of the held-out hard set.
    pub attack_scale: f64,
    /// Spread of normal-intensity attacks: their spans are multiplied by
    /// this (0.02 packs a probe into seconds; 3 spreads a sweep over most
    /// of an hour).
    pub attack_pace: f64,
    /// Inequality of per-user volume: the log-normal sigma of a user's base
    /// rate is multiplied by this (2.0 spans about two orders of magnitude).
    pub rate_spread: f64,
    /// Burstiness: calls per session are multiplied by this and sessions
    /// divided by it, keeping the day's volume.
    pub burstiness: f64,
    /// Time zones: the share of users away from their tenant's home zone is
    /// multiplied by this.
    pub zones: f64,
    /// The share of users who travel is multiplied by this.
    pub travel: f64,
    /// On-call rotations: the share of each tenant on call is multiplied by this.
    pub on_call: f64,
    /// Adoption: how many teams adopt a new server, and users a new client
    /// or network, is multiplied by this.
    pub adoption: f64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            attack_scale: 1.0,
            attack_pace: 1.0,
            rate_spread: 1.0,
            burstiness: 1.0,
            zones: 1.0,
            travel: 1.0,
            on_call: 1.0,
            adoption: 1.0,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            users: 100,
            days: 14,
            seed: 1,
            start: default_start(),
            attack_days: None,
            incident_rate: 3.0,
            shape: Shape::default(),
        }
    }
}

/// 2026-10-05T00:00:00Z, a Monday.
pub fn default_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0)
        .single()
        .expect("a valid fixed date")
}

impl SimConfig {
    /// The attack window's length in days, after defaults.
    pub fn attack_days(&self) -> u32 {
        self.attack_days.unwrap_or(self.days.div_ceil(2))
    }

    /// Checks the limits; [`crate::Simulation::new`] calls this.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.users == 0 || self.users > MAX_USERS {
            return Err(SimError::Users {
                users: self.users,
                max: MAX_USERS,
            });
        }
        if self.days == 0 || self.days > MAX_DAYS {
            return Err(SimError::Days {
                days: self.days,
                max: MAX_DAYS,
            });
        }
        if self.attack_days() > self.days {
            return Err(SimError::AttackWindow {
                attack_days: self.attack_days(),
                days: self.days,
            });
        }
        if !self.incident_rate.is_finite() || self.incident_rate < 0.0 {
            return Err(SimError::IncidentRate {
                rate: self.incident_rate,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_attack_window_is_the_last_half() {
        let cfg = SimConfig {
            days: 28,
            ..SimConfig::default()
        };
        assert_eq!(cfg.attack_days(), 14);
        let cfg = SimConfig {
            days: 1,
            ..SimConfig::default()
        };
        assert_eq!(cfg.attack_days(), 1);
    }

    #[test]
    fn rejects_windows_longer_than_the_period() {
        let cfg = SimConfig {
            days: 7,
            attack_days: Some(8),
            ..SimConfig::default()
        };
        assert_eq!(
            cfg.validate(),
            Err(SimError::AttackWindow {
                attack_days: 8,
                days: 7
            })
        );
    }

    #[test]
    fn rejects_empty_populations_and_periods() {
        assert!(
            SimConfig {
                users: 0,
                ..SimConfig::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SimConfig {
                days: 0,
                ..SimConfig::default()
            }
            .validate()
            .is_err()
        );
        let nan = SimConfig {
            incident_rate: f64::NAN,
            ..SimConfig::default()
        };
        assert!(nan.validate().is_err());
    }

    #[test]
    fn default_start_is_a_monday() {
        use chrono::Datelike;
        assert_eq!(default_start().weekday(), chrono::Weekday::Mon);
    }
}
