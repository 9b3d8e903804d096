//! Ground truth: labelled incidents, and the benign drift that is not one.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The attack scenarios the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Stolen-credential probing: a burst of denied calls across many tools.
    Probing,
    /// An agent following injected instructions: malformed calls, tool errors
    /// and unusual outward-facing tools (sending mail, sharing files).
    PromptInjection,
    /// Many distinct resources touched in minutes.
    Enumeration,
    /// A volume spike of reads of sensitive resources, plus exports.
    Exfiltration,
    /// Activity in the user's local night.
    OffHours,
    /// First use of destructive or bulk tools (`delete_*`, `export_*`, ...).
    SensitiveTool,
    /// A user's session reused from a new IP and client, then sensitive actions.
    SessionHijack,
    /// Resource URIs naming another tenant.
    CrossTenant,
}

impl Scenario {
    /// Every scenario, in a fixed order.
    pub const ALL: [Scenario; 8] = [
        Scenario::Probing,
        Scenario::PromptInjection,
        Scenario::Enumeration,
        Scenario::Exfiltration,
        Scenario::OffHours,
        Scenario::SensitiveTool,
        Scenario::SessionHijack,
        Scenario::CrossTenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Probing => "probing",
            Scenario::PromptInjection => "prompt_injection",
            Scenario::Enumeration => "enumeration",
            Scenario::Exfiltration => "exfiltration",
            Scenario::OffHours => "off_hours",
            Scenario::SensitiveTool => "sensitive_tool",
            Scenario::SessionHijack => "session_hijack",
            Scenario::CrossTenant => "cross_tenant",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loud an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intensity {
    /// A burst: many events in minutes.
    Normal,
    /// The same behaviour, much weaker and spread over hours or days.
    LowAndSlow,
}

/// One injected attack and exactly the events it added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub scenario: Scenario,
    pub intensity: Intensity,
    pub tenant_id: String,
    pub user_id: String,
    /// Time of the first injected event.
    pub start: DateTime<Utc>,
    /// Time of the last injected event.
    pub end: DateTime<Utc>,
    /// The injected events' ids, in time order.
    pub event_ids: Vec<String>,
    /// A human-readable account of what was injected.
    pub summary: String,
}

/// Kinds of benign change the population goes through (never labelled as
/// incidents; listed so that evaluations can tell false positives apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// A whole team starts using a new MCP server on the same day.
    TeamAdoption,
    /// A user moves to a new network for good (new office, VPN).
    IpChange,
    /// A user switches to another MCP client for good.
    ClientChange,
    /// A user travels: another time zone and a hotel network for a few days.
    Travel,
    /// An on-call week: night sessions on incident tooling.
    OnCallWeek,
    /// A user who joins mid-period, with no history.
    NewUser,
}

/// One benign change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub tenant_id: String,
    pub user_ids: Vec<String>,
    pub start: DateTime<Utc>,
    /// When the change ends, for temporary ones.
    pub end: Option<DateTime<Utc>>,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_serialize_as_snake_case_names() {
        for s in Scenario::ALL {
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        let i = serde_json::to_string(&Intensity::LowAndSlow).expect("serializes");
        assert_eq!(i, "\"low_and_slow\"");
    }
}
