//! Resource kinds and their URIs.
//!
//! Every URI is `<scheme>://<tenant_id>/<path>`, so whoever reads the lake can
//! tell which tenant a resource belongs to from the URI alone. A resource is an
//! index into its kind's per-tenant pool (and, for mailboxes, calendars and
//! directory entries, an owner); the path is a pure function of both.

use std::fmt::Write;

use crate::rng::mix;

/// A kind of resource a tool or `resources/read` touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    GithubIssue,
    GithubPull,
    GithubFile,
    JiraIssue,
    SlackChannel,
    GmailMessage,
    GdriveDoc,
    GdriveSheet,
    PgTable,
    CalendarEvent,
    SfAccount,
    SfContact,
    SfOpportunity,
    ZdTicket,
    PdIncident,
    DdDashboard,
    K8sDeployment,
    OktaUser,
    NsInvoice,
    NotionPage,
    LinearIssue,
}

const REPOS: &[&str] = &[
    "api",
    "web",
    "mobile",
    "infra",
    "billing",
    "auth",
    "search",
    "data-pipeline",
    "docs",
    "sdk-python",
    "sdk-js",
    "terraform",
    "ml-models",
    "gateway",
    "admin-console",
    "design-system",
];
const DIRS: &[&str] = &[
    "src",
    "src/handlers",
    "src/models",
    "tests",
    "config",
    "scripts",
    "docs",
    "deploy",
];
const FILES: &[&str] = &[
    "main.rs",
    "lib.rs",
    "server.ts",
    "index.ts",
    "config.yaml",
    "Dockerfile",
    "schema.sql",
    "README.md",
    "handlers.go",
    "models.py",
    "client.py",
    "values.yaml",
    "Makefile",
    "auth.ts",
];
const JIRA_KEYS: &[&str] = &["ENG", "OPS", "SEC", "DATA", "WEB", "MOB", "SUP", "FIN"];
const CHANNELS: &[&str] = &[
    "general",
    "engineering",
    "incidents",
    "deploys",
    "sales",
    "support",
    "random",
    "finance",
    "security",
    "design",
    "product",
    "oncall",
    "data-team",
    "customer-feedback",
    "announcements",
    "hiring",
    "infra",
    "releases",
    "marketing",
    "leadership",
];
const FOLDERS: &[&str] = &[
    "eng",
    "sales",
    "finance",
    "hr",
    "legal",
    "marketing",
    "ops",
    "product",
];
const SENSITIVE_FOLDERS: &[&str] = &["finance", "hr", "legal"];
/// `(database, table, sensitive)`.
const TABLES: &[(&str, &str, bool)] = &[
    ("app", "users", true),
    ("app", "accounts", true),
    ("app", "sessions", false),
    ("app", "projects", false),
    ("app", "feature_flags", false),
    ("app", "audit_log", false),
    ("app", "api_keys", true),
    ("app", "invites", false),
    ("billing", "customers", true),
    ("billing", "payments", true),
    ("billing", "invoices", true),
    ("billing", "subscriptions", false),
    ("billing", "payouts", true),
    ("billing", "plans", false),
    ("analytics", "events", false),
    ("analytics", "daily_active_users", false),
    ("analytics", "funnels", false),
    ("analytics", "experiments", false),
    ("analytics", "revenue_daily", true),
    ("analytics", "churn_scores", false),
    ("analytics", "page_views", false),
    ("analytics", "signups", false),
    ("app", "orders", true),
    ("app", "shipments", false),
];
const CLUSTERS: &[&str] = &["prod-us", "prod-eu", "staging"];
const NAMESPACES: &[&str] = &[
    "api",
    "web",
    "workers",
    "billing",
    "search",
    "ingest",
    "auth",
    "monitoring",
];
const DEPLOYMENTS: &[&str] = &[
    "server",
    "worker",
    "scheduler",
    "gateway",
    "cache",
    "consumer",
];
const SLUG_WORDS: &[&str] = &[
    "q3",
    "q4",
    "roadmap",
    "plan",
    "budget",
    "review",
    "onboarding",
    "guide",
    "hiring",
    "offsite",
    "pricing",
    "launch",
    "retro",
    "postmortem",
    "forecast",
    "okrs",
    "strategy",
    "runbook",
    "design",
    "proposal",
    "contract",
    "policy",
    "benefits",
    "payroll",
    "vendor",
    "security",
    "audit",
    "board",
    "metrics",
    "notes",
    "customer",
    "partner",
    "migration",
    "architecture",
    "spec",
    "faq",
];

impl Kind {
    pub(crate) fn scheme(self) -> &'static str {
        use Kind::*;
        match self {
            GithubIssue | GithubPull | GithubFile => "github",
            JiraIssue => "jira",
            SlackChannel => "slack",
            GmailMessage => "gmail",
            GdriveDoc | GdriveSheet => "gdrive",
            PgTable => "postgres",
            CalendarEvent => "calendar",
            SfAccount | SfContact | SfOpportunity => "salesforce",
            ZdTicket => "zendesk",
            PdIncident => "pagerduty",
            DdDashboard => "datadog",
            K8sDeployment => "k8s",
            OktaUser => "okta",
            NsInvoice => "netsuite",
            NotionPage => "notion",
            LinearIssue => "linear",
        }
    }

    /// How many distinct resources of this kind a tenant has (per owner for
    /// owned kinds).
    pub(crate) fn pool(self) -> u32 {
        use Kind::*;
        match self {
            GithubIssue => 16 * 600,
            GithubPull => 16 * 400,
            GithubFile => (16 * DIRS.len() * FILES.len()) as u32,
            JiraIssue => 8 * 2000,
            SlackChannel => CHANNELS.len() as u32 * 4,
            GmailMessage | CalendarEvent => 1 << 24,
            GdriveDoc => FOLDERS.len() as u32 * 180,
            GdriveSheet => FOLDERS.len() as u32 * 60,
            PgTable => TABLES.len() as u32,
            SfAccount => 6000,
            SfContact => 40_000,
            SfOpportunity => 9000,
            ZdTicket => 80_000,
            PdIncident => 4000,
            DdDashboard => 150,
            K8sDeployment => (CLUSTERS.len() * NAMESPACES.len() * DEPLOYMENTS.len()) as u32,
            // The directory's size is the tenant's; `idx` is unused, see `owned`.
            OktaUser => 1,
            NsInvoice => 30_000,
            NotionPage => 2500,
            LinearIssue => 8 * 1500,
        }
    }

    /// Whether the URI names a user (a mailbox, a calendar, a directory entry).
    pub(crate) fn owned(self) -> bool {
        matches!(
            self,
            Kind::GmailMessage | Kind::CalendarEvent | Kind::OktaUser
        )
    }

    /// How fast a user's working set of this kind moves on (new tickets, new
    /// issues), in ranks per day.
    pub(crate) fn churn_per_day(self) -> u32 {
        use Kind::*;
        match self {
            GithubIssue | GithubPull | JiraIssue | LinearIssue => 2,
            ZdTicket | PdIncident => 6,
            GmailMessage | CalendarEvent => 15,
            _ => 0,
        }
    }

    /// Whether this resource holds data worth stealing (customer records,
    /// finance, HR, mail, credentials); [`Kind::sensitive_index`] picks these.
    #[cfg(test)]
    pub(crate) fn sensitive(self, idx: u32) -> bool {
        use Kind::*;
        match self {
            SfContact | GmailMessage | OktaUser | NsInvoice => true,
            PgTable => TABLES[idx as usize % TABLES.len()].2,
            GdriveDoc | GdriveSheet => {
                SENSITIVE_FOLDERS.contains(&FOLDERS[idx as usize % FOLDERS.len()])
            }
            _ => false,
        }
    }

    /// Appends `<scheme>://<tenant>/<path>` to `out`.
    pub(crate) fn write_uri(self, out: &mut String, tenant: &str, idx: u32, owner: &str) {
        use Kind::*;
        out.push_str(self.scheme());
        out.push_str("://");
        out.push_str(tenant);
        out.push('/');
        let i = idx as usize;
        let r = write_path(self, out, i, idx, owner);
        r.expect("writing to a String cannot fail");
        fn write_path(
            kind: Kind,
            out: &mut String,
            i: usize,
            idx: u32,
            owner: &str,
        ) -> std::fmt::Result {
            match kind {
                GithubIssue | GithubPull => {
                    let what = if kind == GithubIssue {
                        "issues"
                    } else {
                        "pulls"
                    };
                    let repo = REPOS[i % REPOS.len()];
                    write!(out, "repos/{repo}/{what}/{}", i / REPOS.len() + 1)
                }
                GithubFile => {
                    let repo = REPOS[i % REPOS.len()];
                    let dir = DIRS[(i / REPOS.len()) % DIRS.len()];
                    let file = FILES[(i / (REPOS.len() * DIRS.len())) % FILES.len()];
                    write!(out, "repos/{repo}/blob/main/{dir}/{file}")
                }
                JiraIssue => {
                    let key = JIRA_KEYS[i % JIRA_KEYS.len()];
                    write!(
                        out,
                        "projects/{key}/issues/{key}-{}",
                        i / JIRA_KEYS.len() + 1
                    )
                }
                SlackChannel => {
                    let name = CHANNELS[i % CHANNELS.len()];
                    match i / CHANNELS.len() {
                        0 => write!(out, "channels/{name}"),
                        n => write!(out, "channels/{name}-{}", SLUG_WORDS[n % SLUG_WORDS.len()]),
                    }
                }
                GmailMessage => write!(out, "users/{owner}/messages/{:016x}", mix(u64::from(idx))),
                CalendarEvent => {
                    write!(
                        out,
                        "users/{owner}/events/{:012x}",
                        mix(u64::from(idx)) >> 16
                    )
                }
                GdriveDoc | GdriveSheet => {
                    let what = if kind == GdriveDoc { "docs" } else { "sheets" };
                    let folder = FOLDERS[i % FOLDERS.len()];
                    let n = i / FOLDERS.len();
                    let a = SLUG_WORDS[n % SLUG_WORDS.len()];
                    let b = SLUG_WORDS[(n / SLUG_WORDS.len() + n * 7 + 3) % SLUG_WORDS.len()];
                    write!(out, "{what}/{folder}/{a}-{b}-{}", n / SLUG_WORDS.len() + 1)
                }
                PgTable => {
                    let (db, table, _) = TABLES[i % TABLES.len()];
                    write!(out, "{db}/tables/{table}")
                }
                SfAccount | SfContact | SfOpportunity => {
                    let (what, prefix) = match kind {
                        SfAccount => ("accounts", "001"),
                        SfContact => ("contacts", "003"),
                        _ => ("opportunities", "006"),
                    };
                    out.push_str(what);
                    out.push('/');
                    out.push_str(prefix);
                    push_base36(out, mix(u64::from(idx) ^ 0x5f), 12, true);
                    Ok(())
                }
                ZdTicket => write!(out, "tickets/{}", idx + 10_000),
                PdIncident => {
                    out.push_str("incidents/P");
                    push_base36(out, mix(u64::from(idx) ^ 0x9d), 6, true);
                    Ok(())
                }
                DdDashboard => {
                    out.push_str("dashboards/");
                    let h = mix(u64::from(idx) ^ 0xdd);
                    push_base36(out, h, 3, false);
                    out.push('-');
                    push_base36(out, h >> 20, 3, false);
                    out.push('-');
                    push_base36(out, h >> 40, 3, false);
                    Ok(())
                }
                K8sDeployment => {
                    let cluster = CLUSTERS[i % CLUSTERS.len()];
                    let ns = NAMESPACES[(i / CLUSTERS.len()) % NAMESPACES.len()];
                    let dep =
                        DEPLOYMENTS[(i / (CLUSTERS.len() * NAMESPACES.len())) % DEPLOYMENTS.len()];
                    write!(
                        out,
                        "clusters/{cluster}/namespaces/{ns}/deployments/{ns}-{dep}"
                    )
                }
                OktaUser => write!(out, "users/{owner}"),
                NsInvoice => write!(out, "invoices/INV-{}", idx + 100_000),
                NotionPage => {
                    let a = SLUG_WORDS[i % SLUG_WORDS.len()];
                    write!(out, "pages/{a}-{:08x}", mix(u64::from(idx)) as u32)
                }
                LinearIssue => {
                    let key = JIRA_KEYS[i % JIRA_KEYS.len()];
                    write!(out, "issues/{key}-{}", i / JIRA_KEYS.len() + 1)
                }
            }
        }
    }

    /// A sensitive index of this kind, if the kind has any: `pick` chooses
    /// among them.
    pub(crate) fn sensitive_index(self, pick: u64) -> Option<u32> {
        use Kind::*;
        match self {
            SfContact | GmailMessage | OktaUser | NsInvoice => {
                Some((pick % u64::from(self.pool())) as u32)
            }
            PgTable => {
                let sensitive: Vec<u32> = (0..TABLES.len() as u32)
                    .filter(|&i| TABLES[i as usize].2)
                    .collect();
                Some(sensitive[(pick % sensitive.len() as u64) as usize])
            }
            GdriveDoc | GdriveSheet => {
                let folders = FOLDERS.len() as u64;
                let sensitive: Vec<u64> = (0..folders)
                    .filter(|&f| SENSITIVE_FOLDERS.contains(&FOLDERS[f as usize]))
                    .collect();
                let folder = sensitive[(pick % sensitive.len() as u64) as usize];
                let n = (pick / 8) % (u64::from(self.pool()) / folders);
                Some((n * folders + folder) as u32)
            }
            _ => None,
        }
    }
}

fn push_base36(out: &mut String, mut v: u64, digits: usize, upper: bool) {
    const LOWER: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const UPPER: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let table = if upper { UPPER } else { LOWER };
    for _ in 0..digits {
        out.push(char::from(table[(v % 36) as usize]));
        v /= 36;
    }
}

/// The last path segment of a URI: what a tool's `id` argument names.
pub(crate) fn last_segment(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Kind] = &[
        Kind::GithubIssue,
        Kind::GithubPull,
        Kind::GithubFile,
        Kind::JiraIssue,
        Kind::SlackChannel,
        Kind::GmailMessage,
        Kind::GdriveDoc,
        Kind::GdriveSheet,
        Kind::PgTable,
        Kind::CalendarEvent,
        Kind::SfAccount,
        Kind::SfContact,
        Kind::SfOpportunity,
        Kind::ZdTicket,
        Kind::PdIncident,
        Kind::DdDashboard,
        Kind::K8sDeployment,
        Kind::OktaUser,
        Kind::NsInvoice,
        Kind::NotionPage,
        Kind::LinearIssue,
    ];

    #[test]
    fn uris_name_scheme_and_tenant_first() {
        for &kind in ALL {
            for idx in [0, 1, 77, kind.pool() - 1] {
                let mut uri = String::new();
                kind.write_uri(&mut uri, "acme", idx, "alice.ng");
                let prefix = format!("{}://acme/", kind.scheme());
                assert!(uri.starts_with(&prefix), "{uri}");
                assert!(uri.len() > prefix.len(), "{uri}");
                assert!(!uri.contains(' '), "{uri}");
            }
        }
    }

    #[test]
    fn distinct_indices_give_distinct_uris_within_a_pool() {
        for &kind in ALL.iter().filter(|k| !k.owned()) {
            let n = kind.pool().min(3000);
            let mut seen = std::collections::BTreeSet::new();
            for idx in 0..n {
                let mut uri = String::new();
                kind.write_uri(&mut uri, "acme", idx, "x");
                assert!(seen.insert(uri.clone()), "{kind:?} repeats {uri}");
            }
        }
    }

    #[test]
    fn sensitive_index_is_sensitive() {
        for &kind in ALL {
            if let Some(i) = kind.sensitive_index(12345) {
                assert!(kind.sensitive(i), "{kind:?}");
                assert!(i < kind.pool(), "{kind:?}");
            }
        }
    }

    #[test]
    fn last_segment_is_the_id() {
        assert_eq!(last_segment("zendesk://acme/tickets/10042"), "10042");
    }
}
