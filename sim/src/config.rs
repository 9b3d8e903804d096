//! What to simulate.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// The most users one simulation holds.
pub const MAX_USERS: usize = 1_000_000;
/// The longest period one simulation covers, in days.
pub const MAX_DAYS: u32 = 3660;
/// The largest value a [`Shape`] knob takes (a hundredfold attack is already
/// a million calls).
pub const MAX_SHAPE: f64 = 100.0;

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
    /// Size of normal-intensity attacks: each scenario's number of calls
    /// (rounded, at least 1), and so the rise over the user's own rate for
    /// the sustained exfiltration, is multiplied by this. 0.33 is the
    /// "reduced intensity" of the held-out hard set. Low-and-slow attacks
    /// stay as they are.
    pub attack_scale: f64,
    /// Spread of normal-intensity attacks: their spans are multiplied by
    /// this, kept within 2 seconds and 8 hours (0.02 packs a probe into
    /// seconds; 3 spreads a sweep over most of an hour); a paced off-hours
    /// session still ends by 06:00 local time.
    pub attack_pace: f64,
    /// Inequality of per-user volume: the log-normal sigma (0.75) of a
    /// user's base rate is multiplied by this, and the median lowered to keep
    /// the mean (2.0 spans about two orders of magnitude).
    pub rate_spread: f64,
    /// Burstiness: calls per session are multiplied by this and sessions
    /// divided by it, keeping the day's volume.
    pub burstiness: f64,
    /// Time zones: the share of users living outside their tenant's home
    /// region (16%) is multiplied by this, up to all of them.
    pub zones: f64,
    /// The share of people who travel once in the period (2%) is multiplied
    /// by this. Benign drift: listed, never labelled.
    pub travel: f64,
    /// On-call rotations: the engineers on call at once in each tenant (one)
    /// is multiplied by this, as far as the rota goes (0.5: one in half the
    /// weeks). Benign drift: listed, never labelled.
    pub on_call: f64,
    /// Adoption: the teams per tenant adopting a new server (one), and the
    /// share of people moving to a new network (3%) or client (2%) for good,
    /// is multiplied by this. Benign drift: listed, never labelled.
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

impl Shape {
    /// Every knob with its name, in declaration order.
    pub fn knobs(&self) -> [(&'static str, f64); 8] {
        [
            ("attack_scale", self.attack_scale),
            ("attack_pace", self.attack_pace),
            ("rate_spread", self.rate_spread),
            ("burstiness", self.burstiness),
            ("zones", self.zones),
            ("travel", self.travel),
            ("on_call", self.on_call),
            ("adoption", self.adoption),
        ]
    }

    /// Checks that every knob is finite, above 0 and at most [`MAX_SHAPE`].
    pub fn validate(&self) -> Result<(), SimError> {
        for (knob, value) in self.knobs() {
            if !value.is_finite() || value <= 0.0 || value > MAX_SHAPE {
                return Err(SimError::Shape {
                    knob,
                    value,
                    max: MAX_SHAPE,
                });
            }
        }
        Ok(())
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
        self.shape.validate()
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
    fn rejects_shape_knobs_that_are_not_positive_and_finite_naming_the_knob() {
        let bad = [
            ("attack_scale", 0.0),
            ("attack_pace", -1.0),
            ("rate_spread", f64::NAN),
            ("burstiness", f64::INFINITY),
            ("zones", 0.0),
            ("travel", -0.5),
            ("on_call", 1e9),
            ("adoption", f64::NEG_INFINITY),
        ];
        for (i, (knob, value)) in bad.into_iter().enumerate() {
            let mut shape = Shape::default();
            match i {
                0 => shape.attack_scale = value,
                1 => shape.attack_pace = value,
                2 => shape.rate_spread = value,
                3 => shape.burstiness = value,
                4 => shape.zones = value,
                5 => shape.travel = value,
                6 => shape.on_call = value,
                _ => shape.adoption = value,
            }
            let cfg = SimConfig {
                shape,
                ..SimConfig::default()
            };
            let err = cfg.validate().expect_err(knob);
            assert!(
                matches!(err, SimError::Shape { knob: k, .. } if k == knob),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("shape.{knob}")) && message.contains(&value.to_string()),
                "{message}"
            );
        }
    }

    #[test]
    fn accepts_the_default_shape_and_sweep_values() {
        for shape in [
            Shape::default(),
            Shape {
                attack_scale: 0.33,
                attack_pace: 0.02,
                rate_spread: 2.0,
                burstiness: 3.0,
                zones: 10.0,
                travel: 0.1,
                on_call: 2.5,
                adoption: MAX_SHAPE,
            },
        ] {
            let cfg = SimConfig {
                shape,
                ..SimConfig::default()
            };
            assert_eq!(cfg.validate(), Ok(()));
        }
    }

    #[test]
    fn shape_reads_from_toml_style_json_with_defaults() {
        let shape: Shape = serde_json::from_str(r#"{"attack_scale":0.33}"#).expect("parses");
        assert_eq!(
            shape,
            Shape {
                attack_scale: 0.33,
                ..Shape::default()
            }
        );
        assert!(serde_json::from_str::<Shape>(r#"{"attack_scal":0.33}"#).is_err());
    }

    #[test]
    fn default_start_is_a_monday() {
        use chrono::Datelike;
        assert_eq!(default_start().weekday(), chrono::Weekday::Mon);
    }
}
