//! The simulator's one error type: configurations it cannot run.

/// Why a [`crate::SimConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("users must be from 1 to {max}, got {users}")]
    Users { users: usize, max: usize },
    #[error("days must be from 1 to {max}, got {days}")]
    Days { days: u32, max: u32 },
    #[error("attack_days must be at most days ({days}), got {attack_days}")]
    AttackWindow { attack_days: u32, days: u32 },
    #[error("incident_rate must be a finite number of 0 or more, got {rate}")]
    IncidentRate { rate: f64 },
    #[error("shape.{knob} must be a finite number above 0 and at most {max}, got {value}")]
    Shape {
        knob: &'static str,
        value: f64,
        max: f64,
    },
}

impl SimError {
    /// Never: a configuration does not become valid by trying again.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
