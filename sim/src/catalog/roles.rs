//! Peer roles: which servers a role uses, how much, and with what access.

use super::Access::{self, Admin, Read, Write};

/// One habitual server of a role: `(server, habit weight, share of members
/// who use it, access granted)`.
pub(crate) type RoleServer = (&'static str, f32, f32, Access);

#[derive(Debug)]
pub(crate) struct Role {
    pub name: &'static str,
    /// Share of the population in this role.
    pub share: f32,
    pub servers: &'static [RoleServer],
    /// Sensitive tools that are part of this role's normal work.
    pub habitual_sensitive: &'static [(&'static str, &'static str)],
    /// Median calls per working day for a member.
    pub calls_median: f64,
    /// Share of members who also run agents.
    pub agent_prob: f64,
    /// Members are service accounts: steady, around the clock.
    pub service: bool,
    /// Members rotate through on-call weeks with night work.
    pub on_call: bool,
}

pub(crate) static ROLES: &[Role] = &[
    Role {
        name: "engineer",
        share: 0.32,
        servers: &[
            ("github", 5.0, 1.0, Write),
            ("jira", 3.0, 0.9, Write),
            ("slack", 2.0, 0.9, Write),
            ("postgres", 1.5, 0.5, Read),
            ("kubernetes", 1.0, 0.35, Read),
            ("datadog", 1.0, 0.4, Read),
            ("gdrive", 0.8, 0.5, Write),
            ("calendar", 0.6, 0.6, Write),
        ],
        habitual_sensitive: &[],
        calls_median: 70.0,
        agent_prob: 0.6,
        service: false,
        on_call: false,
    },
    Role {
        name: "sre",
        share: 0.08,
        servers: &[
            ("kubernetes", 4.0, 1.0, Admin),
            ("datadog", 4.0, 1.0, Write),
            ("pagerduty", 3.0, 1.0, Write),
            ("github", 2.0, 0.9, Write),
            ("slack", 2.0, 0.9, Write),
            ("postgres", 1.0, 0.5, Read),
            ("jira", 1.0, 0.7, Write),
        ],
        habitual_sensitive: &[("kubernetes", "exec_in_pod")],
        calls_median: 60.0,
        agent_prob: 0.5,
        service: false,
        on_call: true,
    },
    Role {
        name: "data",
        share: 0.07,
        servers: &[
            ("postgres", 5.0, 1.0, Admin),
            ("gdrive", 2.0, 0.8, Write),
            ("github", 1.5, 0.7, Write),
            ("slack", 1.5, 0.9, Write),
            ("jira", 1.0, 0.6, Write),
            ("datadog", 0.5, 0.3, Read),
        ],
        habitual_sensitive: &[("postgres", "export_table")],
        calls_median: 65.0,
        agent_prob: 0.5,
        service: false,
        on_call: false,
    },
    Role {
        name: "sales",
        share: 0.14,
        servers: &[
            ("salesforce", 5.0, 1.0, Write),
            ("gmail", 4.0, 1.0, Write),
            ("calendar", 3.0, 0.9, Write),
            ("slack", 2.0, 0.9, Write),
            ("gdrive", 2.0, 0.8, Write),
        ],
        habitual_sensitive: &[("gmail", "send_email")],
        calls_median: 45.0,
        agent_prob: 0.3,
        service: false,
        on_call: false,
    },
    Role {
        name: "support",
        share: 0.14,
        servers: &[
            ("zendesk", 6.0, 1.0, Write),
            ("slack", 2.0, 0.9, Write),
            ("gmail", 2.0, 0.8, Write),
            ("jira", 1.5, 0.7, Write),
            ("salesforce", 1.0, 0.5, Read),
        ],
        habitual_sensitive: &[("gmail", "send_email")],
        calls_median: 80.0,
        agent_prob: 0.5,
        service: false,
        on_call: false,
    },
    Role {
        name: "finance",
        share: 0.07,
        servers: &[
            ("netsuite", 5.0, 1.0, Write),
            ("gdrive", 3.0, 1.0, Write),
            ("gmail", 2.0, 0.9, Write),
            ("salesforce", 1.0, 0.5, Read),
            ("slack", 1.0, 0.8, Write),
            ("postgres", 1.0, 0.4, Read),
        ],
        habitual_sensitive: &[("gmail", "send_email")],
        calls_median: 40.0,
        agent_prob: 0.3,
        service: false,
        on_call: false,
    },
    Role {
        name: "admin",
        share: 0.05,
        servers: &[
            ("okta", 5.0, 1.0, Admin),
            ("slack", 2.0, 0.9, Write),
            ("jira", 2.0, 0.8, Write),
            ("gmail", 1.0, 0.7, Write),
            ("github", 1.0, 0.6, Admin),
            ("gdrive", 1.0, 0.6, Admin),
        ],
        habitual_sensitive: &[("okta", "reset_password"), ("okta", "suspend_user")],
        calls_median: 50.0,
        agent_prob: 0.4,
        service: false,
        on_call: false,
    },
    Role {
        name: "manager",
        share: 0.08,
        servers: &[
            ("calendar", 4.0, 1.0, Write),
            ("gmail", 4.0, 1.0, Write),
            ("slack", 3.0, 1.0, Write),
            ("gdrive", 3.0, 0.9, Write),
            ("jira", 2.0, 0.7, Read),
            ("salesforce", 0.5, 0.3, Read),
        ],
        habitual_sensitive: &[("gmail", "send_email")],
        calls_median: 30.0,
        agent_prob: 0.3,
        service: false,
        on_call: false,
    },
    Role {
        name: "service",
        share: 0.05,
        servers: &[
            ("github", 3.0, 0.4, Write),
            ("postgres", 3.0, 0.4, Read),
            ("slack", 2.0, 0.4, Write),
            ("zendesk", 2.0, 0.3, Write),
            ("datadog", 1.0, 0.3, Read),
            ("jira", 1.0, 0.3, Write),
        ],
        habitual_sensitive: &[],
        calls_median: 100.0,
        agent_prob: 0.0,
        service: true,
        on_call: false,
    },
];

/// Servers a whole team may adopt mid-period (benign drift).
pub(crate) const ADOPTIONS: &[&str] = &["notion", "linear"];
