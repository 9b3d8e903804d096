//! The detectors themselves: what one event or one closed window means for
//! one user. Formulas and defaults are documented in ARCHITECTURE.md
//! ("Detection model"); each function here says what it cannot see.

use chrono::{DateTime, Utc};
use serde_json::json;
use tooltrail_schemas::ToolCallEvent;

mod corroborate;
mod off_hours;

use super::user::{BLOCK_MINUTES, Block, Finding, LONG_WINDOWS, Minute, UserState, flag};
use super::{
    Stats, TenantState, established, is_denied, is_malformed, is_refused_access, kind, note_peer,
    prior,
};
use crate::alert::{ALERT_VERSION, Alert, DetectorKind, Evidence, Severity, alert_id};
use crate::baseline::{HourProfile, Predictive};
use crate::config::Settings;
use crate::seen::{Sighting, value_hash};

/// Default priors when a tenant has no history either (per active minute).
const DEFAULT_DENIED_RATE: f64 = 0.02;
const DEFAULT_MALFORMED_RATE: f64 = 0.02;
const DEFAULT_NEW_RESOURCE_RATE: f64 = 0.3;
/// ... and calls per active window.
const DEFAULT_WINDOW_VOLUME: f64 = 5.0;
/// Weight with which a call in off hours enters the hour profile.
const OFF_HOURS_LEARNING: f64 = 0.1;
/// Profile mass (decayed events) before off-hours trusts it. Low, because a
/// light user's profile is untrusted and learns a night run at full weight:
/// at 200, a user with a dozen calls a day (about 150 of mass) was never
/// judged, and their first stolen night taught the profile it was normal.
/// Hours with a single call in the profile are already above `max_share`.
const MIN_PROFILE_EVENTS: f64 = 100.0;

pub(super) struct Context<'a> {
    pub settings: &'a Settings,
    pub tenant: &'a mut TenantState,
    pub user: &'a mut UserState,
    pub stats: &'a mut Stats,
    pub out: &'a mut Vec<Alert>,
    /// While a long window that reaches back into a stretch that alerted
    /// is judged: `Some(fired)`. Such a window only says whether the rise
    /// goes on (the stretch then extends); it never pages, or the hour
    /// would page the old stretch's tail again once its suppression ends.
    pub tail: Option<bool>,
}

impl Context<'_> {
    fn who(&self) -> String {
        format!("{}@{}", self.user.user_id, self.user.tenant_id)
    }

    /// Immediate detectors; returns the event's flags for window counts and
    /// the hash of its tool (or method). `resource` is the event's resource
    /// with its hash (the caller has hashed it for the prefetch).
    ///
    /// Until the tenant itself has `min_history`, first-seen and
    /// sensitive-tool judgments are held back: everything is new on the day
    /// tooltrail is switched on (use `--warm-from-lake` to start with history).
    pub fn immediate(
        &mut self,
        e: &ToolCallEvent,
        resource: Option<(&str, u64)>,
        secs: i64,
        day: u32,
        tenant_settled: bool,
    ) -> (u8, u64) {
        let s = self.settings;
        let mut flags = 0;
        let denied = is_denied(e);
        if denied {
            flags |= flag::DENIED;
        }
        let refused = is_refused_access(e);
        if refused {
            flags |= flag::REFUSED;
        }
        if is_malformed(e) {
            flags |= flag::MALFORMED;
        }
        let settled = established(self.user, day, s.min_history_days);
        // Values are recorded either way; judged only once the tenant has history.
        let judge = tenant_settled;

        if let Some((resource, h)) = resource {
            flags |= flag::RESOURCE;
            if s.enabled(DetectorKind::CrossTenant) {
                self.cross_tenant(e, resource, secs);
            }
            if self.user.resources.touch(h, day, s.resource_window_days) {
                flags |= flag::NEW_RESOURCE;
            }
        }

        let mut tool_new = false;
        let tool_hash = value_hash(kind::TOOL, e.tool.as_deref().unwrap_or(&e.method));
        if let Some(tool) = &e.tool {
            let h = tool_hash;
            let window = s.value_window_days;
            let sighting = self.user.tools.touch(h, day, window, window);
            tool_new = sighting != Sighting::Known;
            // Peers are counted from the first day, judged once the tenant settles.
            let peers = if tool_new {
                note_peer(self.tenant, h, sighting)
            } else {
                0
            };
            if tool_new && tenant_settled {
                let news = settled || peers < s.peer_users;
                if news && self.is_sensitive(tool, e.required_scope.as_deref()) {
                    self.sensitive(e, tool, peers, secs);
                } else if news {
                    self.first_seen(DetectorKind::FirstSeenTool, "tool", tool, peers, e, secs);
                }
            }
        }
        let server_hash = value_hash(kind::SERVER, &e.server);
        self.first_seen_value(
            DetectorKind::FirstSeenServer,
            "server",
            &e.server,
            server_hash,
            (judge, settled),
            true,
            e,
            secs,
            day,
        );
        if let Some(client) = &e.client_id {
            let h = value_hash(kind::CLIENT, client);
            self.first_seen_value(
                DetectorKind::FirstSeenClient,
                "client",
                client,
                h,
                (judge, settled),
                false,
                e,
                secs,
                day,
            );
        }
        if let Some(ip) = e.source_ip {
            let h = match ip {
                std::net::IpAddr::V4(v4) => {
                    xxhash_rust::xxh3::xxh3_64_with_seed(&v4.octets(), u64::from(kind::IP))
                }
                std::net::IpAddr::V6(v6) => {
                    xxhash_rust::xxh3::xxh3_64_with_seed(&v6.octets(), u64::from(kind::IP))
                }
            };
            self.first_seen_value(
                DetectorKind::FirstSeenIp,
                "address",
                &ip,
                h,
                (judge, settled),
                false,
                e,
                secs,
                day,
            );
        }

        if refused && s.enabled(DetectorKind::Enumeration) {
            self.denied_spread(e, tool_new, secs);
        }
        if refused && s.enabled(DetectorKind::DenialSpike) && self.user.history_days(day) <= 1 {
            self.new_identity_burst(e, secs, day);
        }

        let hour = HourProfile::hour_of_week(secs);
        if self.user.history_days(day) >= s.off_hours_history_days
            && self.user.hours.total() >= MIN_PROFILE_EVENTS
        {
            // The profile learns off-hours calls slowly, but it does learn
            // them: within a run a light user's night would turn ordinary
            // after a few minutes. A run in progress is judged against the
            // profile without what the run itself taught it.
            let share = if self.in_off_hours_run(secs) {
                let mass = f64::from(self.user.off_hours_run_mass);
                self.user.hours.share_without(hour, mass)
            } else {
                self.user.hours.share(hour)
            };
            if share < s.off_hours_share {
                flags |= flag::OFF_HOURS;
                self.off_hours_event(e, share, secs);
            }
        }
        (flags, tool_hash)
    }

    fn is_sensitive(&self, tool: &str, required_scope: Option<&str>) -> bool {
        self.settings.sensitive_tools.is_match(tool)
            || required_scope.is_some_and(|scope| {
                self.settings
                    .sensitive_scopes
                    .iter()
                    .any(|k| scope.contains(k.as_str()))
            })
    }

    /// `cross_tenant`: the resource names another tenant. Sees only resources
    /// whose URI matches the configured pattern.
    fn cross_tenant(&mut self, e: &ToolCallEvent, resource: &str, secs: i64) {
        let other = if self.settings.default_tenant_pattern {
            match uri_tenant(resource) {
                Some(t) => t,
                None => return,
            }
        } else {
            match self.settings.tenant_pattern.captures(resource) {
                Some(caps) => caps.name("tenant").map_or("", |m| m.as_str()),
                None => return,
            }
        };
        if other.is_empty() || other == e.tenant_id {
            return;
        }
        let who = self.who();
        let what = e.tool.as_deref().unwrap_or(&e.method);
        let mut evidence = self.single_evidence(e);
        evidence.new_values = vec![other.to_string()];
        evidence.details.insert("resource".into(), json!(resource));
        evidence
            .details
            .insert("decision".into(), json!(e.decision.as_str()));
        self.raise(Finding {
            detector: DetectorKind::CrossTenant,
            value: other.to_string(),
            severity: Severity::Critical,
            score: 95,
            title: format!("{who}: access to tenant `{other}`'s resources"),
            explanation: format!(
                "{who} called `{what}` on {resource}, which belongs to tenant `{other}` (decision: {})",
                e.decision.as_str()
            ),
            evidence,
            window: (secs, secs),
            time: secs,
        });
    }

    /// `sensitive_tool`: first use by this user of a tool on the sensitive
    /// list. Cannot tell a legitimate first export from a malicious one.
    fn sensitive(&mut self, e: &ToolCallEvent, tool: &str, peers: u32, secs: i64) {
        if !self.settings.enabled(DetectorKind::SensitiveTool) {
            return;
        }
        let who = self.who();
        let mut evidence = self.single_evidence(e);
        evidence.new_values = vec![tool.to_string()];
        evidence.details.insert("server".into(), json!(e.server));
        evidence.details.insert("peer_users".into(), json!(peers));
        evidence
            .details
            .insert("decision".into(), json!(e.decision.as_str()));
        let finding = Finding {
            detector: DetectorKind::SensitiveTool,
            value: tool.to_string(),
            severity: Severity::High,
            score: 80,
            title: format!("{who}: first use of sensitive tool `{tool}`"),
            explanation: format!(
                "{who} called `{tool}` on {} for the first time (decision: {}, status {}); {peers} other users in the tenant have used it",
                e.server,
                e.decision.as_str(),
                e.status
            ),
            evidence,
            window: (secs, secs),
            time: secs,
        };
        // A sensitive tool that many colleagues use routinely is part of the
        // job: it still counts, but only with corroboration.
        if peers >= self.settings.sensitive_max_peers {
            self.signal(finding, corroborate::SENSITIVE_COMMON);
        } else {
            self.raise(finding);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn first_seen_value(
        &mut self,
        detector: DetectorKind,
        noun: &str,
        value: &dyn std::fmt::Display,
        hash: u64,
        (judge, settled): (bool, bool),
        peers_vouch_for_new_users: bool,
        e: &ToolCallEvent,
        secs: i64,
        day: u32,
    ) {
        let window = match detector {
            DetectorKind::FirstSeenIp => self.settings.ip_window_days,
            _ => self.settings.value_window_days,
        };
        let set = match detector {
            DetectorKind::FirstSeenServer => &mut self.user.servers,
            DetectorKind::FirstSeenClient => &mut self.user.clients,
            _ => &mut self.user.ips,
        };
        let sighting = set.touch(
            hash,
            day,
            window,
            window.max(self.settings.value_window_days),
        );
        if sighting == Sighting::Known {
            return;
        }
        let peers = note_peer(self.tenant, hash, sighting);
        if !judge {
            return;
        }
        // A newcomer's own address and client are new by nature; their
        // servers are news only if the tenant's other users don't use them.
        let news = if settled {
            true
        } else {
            peers_vouch_for_new_users && peers < self.settings.peer_users
        };
        if news {
            self.first_seen(detector, noun, &value.to_string(), peers, e, secs);
        }
    }

    /// `first_seen_*`: a value new to the user within its history window.
    fn first_seen(
        &mut self,
        detector: DetectorKind,
        noun: &str,
        value: &str,
        peers: u32,
        e: &ToolCallEvent,
        secs: i64,
    ) {
        if !self.settings.enabled(detector) {
            return;
        }
        let weight = corroborate::first_seen_weight(detector, peers);
        let who = self.who();
        let mut evidence = self.single_evidence(e);
        evidence.new_values = vec![value.to_string()];
        evidence.details.insert("peer_users".into(), json!(peers));
        if let Some(ip) = e.source_ip {
            evidence
                .details
                .insert("source_ip".into(), json!(ip.to_string()));
        }
        if let Some(client) = &e.client_id {
            evidence.details.insert("client_id".into(), json!(client));
        }
        self.signal(
            Finding {
                detector,
                value: value.to_string(),
                severity: Severity::Medium,
                score: if peers == 0 { 60 } else { 45 },
                title: format!("{who}: first use of {noun} `{value}`"),
                explanation: format!(
                    "{who} used {noun} `{value}` for the first time in its history window; {peers} other users in the tenant use it"
                ),
                evidence,
                window: (secs, secs),
                time: secs,
            },
            weight,
        );
    }

    /// `enumeration` (denied spread): refusals of access on many distinct
    /// tools or resources the user never used, within `denied_window`. Slow
    /// probing from a stolen token looks like this; a misconfigured agent
    /// hitting the same wall does not, nor does an agent being rate-limited
    /// (429) or a client with an expired token (401) as it goes about new
    /// work.
    fn denied_spread(&mut self, e: &ToolCallEvent, tool_new: bool, secs: i64) {
        // A tool new to the user counts as itself; a call on a tool they
        // know counts by its resource (one API, many targets: the cloud way).
        let target = match (&e.tool, &e.resource) {
            (Some(tool), _) if tool_new => value_hash(kind::TOOL, tool),
            (_, Some(resource)) => value_hash(kind::RESOURCE, resource),
            _ => return,
        };
        let horizon = secs - self.settings.denied_window_secs;
        let list = &mut self.user.denied_new;
        list.retain(|(_, t)| *t > horizon);
        if !list.iter().any(|(h, _)| *h == target) {
            list.push((target, secs));
        }
        let distinct = list.len() as u32;
        if distinct < self.settings.enumeration.min_denied_distinct {
            return;
        }
        let first = list.iter().map(|(_, t)| *t).min().unwrap_or(secs);
        let who = self.who();
        let mut evidence = Evidence {
            observed: Some(f64::from(distinct)),
            event_ids: with_trigger(self.user.samples(first, secs + 1, flag::REFUSED), e),
            ..Evidence::default()
        };
        evidence
            .details
            .insert("kind".into(), json!("denied_spread"));
        if let Some(ip) = e.source_ip {
            evidence
                .details
                .insert("source_ip".into(), json!(ip.to_string()));
        }
        let hours = (secs - first) as f64 / 3600.0;
        self.raise(Finding {
            detector: DetectorKind::Enumeration,
            value: "denied_spread".into(),
            severity: Severity::High,
            score: 75,
            title: format!("{who}: denied on {distinct} tools or resources never used before"),
            explanation: format!(
                "{who} was denied on {distinct} distinct tools or resources they had never used, within {hours:.1} h: someone is trying what this identity can reach"
            ),
            evidence,
            window: (first, secs),
            time: secs,
        });
    }

    /// A burst of refusals from an identity too new for a baseline: at least
    /// `new_identity_refusals` within `new_identity_window` pages as a
    /// `denial_spike` at once, without waiting for the window's test (whose
    /// newcomer prior is lenient). It shares the window alert's suppression,
    /// so the burst pages once.
    fn new_identity_burst(&mut self, e: &ToolCallEvent, secs: i64, day: u32) {
        let from = secs - self.settings.new_identity_window_secs;
        let earlier: Vec<i64> = self
            .user
            .recent
            .iter()
            .filter(|r| r.secs > from && r.secs <= secs && r.flags & flag::REFUSED != 0)
            .map(|r| r.secs)
            .collect();
        let refusals = earlier.len() + 1;
        if refusals < self.settings.new_identity_refusals as usize {
            return;
        }
        let first = earlier.iter().copied().min().unwrap_or(secs);
        let who = self.who();
        let age = match self.user.history_days(day) {
            0 => "first seen today",
            _ => "first seen yesterday",
        };
        let span = secs - first;
        self.raise(Finding {
            detector: DetectorKind::DenialSpike,
            value: String::new(),
            severity: Severity::High,
            score: 80,
            title: format!("{who}: {refusals} refused calls in {span} s from a new identity"),
            explanation: format!(
                "{who} ({age}, no baseline yet) was refused access {refusals} times within {span} s: a new or stolen identity trying what it can reach"
            ),
            evidence: Evidence {
                observed: Some(refusals as f64),
                event_ids: with_trigger(self.user.samples(first, secs + 1, flag::REFUSED), e),
                ..Evidence::default()
            },
            window: (first, secs),
            time: secs,
        });
    }

    /// Judges the windows ending at minute `end`, folds the minute that
    /// leaves the `window` into the baselines, and says when to judge next
    /// (if the user is still active).
    ///
    /// Counts are judged at several time scales: the last minute (a burst),
    /// the configured `window`, and at block boundaries the
    /// [`LONG_WINDOWS`] (a sustained rise). Each detector's p-value
    /// threshold is divided by the number of scales it is judged at, so
    /// that looking more often does not page more often.
    pub fn window(&mut self, end: i64) -> Option<i64> {
        let s = self.settings;
        let w = s.window_minutes;
        let (sum, active) = self.user.window(end, w);
        let (before, suppressed_before) = (self.out.len(), self.stats.suppressed);
        let boundary = end % BLOCK_MINUTES == 0;
        if boundary {
            let block = self
                .user
                .close_block(end, (w == BLOCK_MINUTES).then_some((sum, active)));
            self.learn_hour(block);
        }
        // Scales: the minute (rates only), the window, the long windows.
        let long = LONG_WINDOWS.iter().filter(|&&len| len > w).count() as f64;
        let rate_alpha = s.p_value / (long + 1.0 + f64::from(w > 1));
        let count_alpha = s.p_value / (long + 1.0);
        let volume_alpha = s.p_value / (1.0 + f64::from(SUSTAINED_MINUTES > w));
        if w > 1 {
            let (last, active) = self.user.window(end, 1);
            self.rates(last, active, 1, end, rate_alpha);
        }
        self.rates(sum, active, w, end, rate_alpha);
        self.counts(sum, active, w, end, (count_alpha, volume_alpha), false);
        let mut goes_on = false;
        if boundary {
            let learn_from = self.user.learn_from;
            for len in LONG_WINDOWS.into_iter().filter(|&l| l > w) {
                self.tail = (end - len < learn_from).then_some(false);
                let (sum, active) = self.user.long_window(end, len);
                self.rates(sum, active, len, end, rate_alpha);
                self.counts(sum, active, len, end, (count_alpha, volume_alpha), true);
                goes_on |= self.tail.take() == Some(true);
            }
        }

        // A window whose finding was a repeat of an open alert, or whose
        // hour shows the alerted rise going on, is as much part of the
        // attack as the one that paged.
        if self.out.len() > before || self.stats.suppressed > suppressed_before || goes_on {
            self.user.learn_from = end;
            // A day with an alert teaches no peak: the windows before it
            // were the attack ramping up, those after it may be its tail.
            self.user.volume_day_peak = ALERTED_DAY;
        } else if end - w >= self.user.learn_from && self.user.volume_day_peak != ALERTED_DAY {
            let total = f32::from(sum.total);
            self.user.volume_day_peak = self.user.volume_day_peak.max(total);
        }
        self.fold(end - w);
        if end % w == 0 && end - w >= self.user.learn_from && sum.total > 0 {
            self.user.volume.add(f64::from(sum.total));
            self.tenant.volume.add(f64::from(sum.total));
        }
        let still_active = ((end - w + 1)..=end).any(|m| self.user.minute(m).total > 0);
        still_active.then_some(end + 1)
    }

    /// Adds a closed block to the clock hour in progress; an hour that
    /// ended before it, with calls and no alert since it began, is learned
    /// as the user's (and tenant's) usual calls per active hour. Blocks
    /// close in time order, so an hour is complete once a later hour's
    /// block arrives, however long after.
    fn learn_hour(&mut self, block: Block) {
        let start = block.sum.minute;
        let hour = start - start.rem_euclid(SUSTAINED_MINUTES);
        let (began, calls) = self.user.hour_stretch;
        if began != hour {
            if calls > 0 && began >= self.user.learn_from {
                self.user.volume_hour.add(f64::from(calls));
                self.tenant.volume_hour.add(f64::from(calls));
            }
            self.user.hour_stretch = (hour, 0);
        }
        self.user.hour_stretch.1 += u32::from(block.sum.total);
    }

    /// The user's new resources expected over `active` minutes.
    fn new_resource_pred(&self, active: f64) -> Predictive {
        self.user.new_resources.predict(
            prior(
                &self.tenant.new_resources,
                DEFAULT_NEW_RESOURCE_RATE,
                self.settings.prior_weight,
            ),
            active,
            1.0,
        )
    }

    /// Denial and malformed-call spikes over the `len` minutes to `end`,
    /// against the user's rate per active minute.
    fn rates(&mut self, sum: Minute, active: u32, len: i64, end: i64, alpha: f64) {
        let s = self.settings;
        let (from, to) = ((end - len) * 60, end * 60);
        let active = f64::from(active);
        if s.enabled(DetectorKind::DenialSpike) && u32::from(sum.denied) >= s.denial_min {
            // A new identity is judged against what the tenant's new
            // identities do (onboarding scripts probing their grants are
            // not the tenant's veterans), once there is enough of that.
            let newcomer = self.user.history_days((from / crate::baseline::DAY) as u32) <= 1;
            let pooled = if newcomer && self.tenant.newcomer_denied.n > 100.0 {
                &self.tenant.newcomer_denied
            } else {
                &self.tenant.denied
            };
            let pred = self.user.denied.predict(
                prior(pooled, DEFAULT_DENIED_RATE, s.prior_weight),
                active,
                1.0,
            );
            // Counted on the recent events kept: none may be left from a long
            // window, and then the title says nothing of tools.
            let across = match self.user.distinct_tools(from, to, flag::DENIED) {
                0 => String::new(),
                1 => " on 1 tool".to_owned(),
                n => format!(" across {n} tools"),
            };
            let x = u64::from(sum.denied);
            let test = Test::new(
                DetectorKind::DenialSpike,
                x,
                pred,
                (from, to),
                len,
                alpha,
                flag::DENIED,
            );
            self.spike(test, |who, x, w, exp| {
                (
                    format!("{who}: {x} denied calls in {w}{across}"),
                    format!(
                        "{who}: {x} denied calls in {w}{across}; the usual is {exp:.2} per {w}"
                    ),
                )
            });
        }
        if s.enabled(DetectorKind::MalformedSpike) && u32::from(sum.malformed) >= s.malformed_min {
            let pred = self.user.malformed.predict(
                prior(
                    &self.tenant.malformed,
                    DEFAULT_MALFORMED_RATE,
                    s.prior_weight,
                ),
                active,
                1.0,
            );
            let x = u64::from(sum.malformed);
            let test = Test::new(
                DetectorKind::MalformedSpike,
                x,
                pred,
                (from, to),
                len,
                alpha,
                flag::MALFORMED,
            );
            self.spike(test, |who, x, w, exp| {
                (
                    format!("{who}: {x} malformed or failing calls in {w}"),
                    format!("{who}: {x} calls rejected as malformed (400) or failing as tool errors in {w}; the usual is {exp:.2} per {w}. An agent following injected instructions often looks like this"),
                )
            });
        }
    }

    /// Sweeps of new resources and volume spikes over the `len` minutes to
    /// `end`: the configured window, whose volume is also held against the
    /// user's busiest window lately, or one of the [`LONG_WINDOWS`] (`long`),
    /// where the hour's volume is judged against the user's calls per active
    /// hour at this hour of the week: a rise of
    /// `volume_spike.sustained_ratio` is enough when improbable.
    fn counts(
        &mut self,
        sum: Minute,
        active: u32,
        len: i64,
        end: i64,
        (alpha, volume_alpha): (f64, f64),
        long: bool,
    ) {
        let s = self.settings;
        let (from, to) = ((end - len) * 60, end * 60);
        // Everything is new to a newcomer: sweeps are judged once the user
        // has history.
        let settled = established(
            self.user,
            (from / crate::baseline::DAY) as u32,
            s.min_history_days,
        );
        if settled {
            self.sweep(
                sum.new_resources,
                sum.resources,
                f64::from(active),
                (from, to),
                len,
                alpha,
            );
        }
        if !s.enabled(DetectorKind::VolumeSpike) || u32::from(sum.total) < s.volume.min_count {
            return;
        }
        // A sustained rise is judged over the hour, and only against a
        // user's own history: a quarter of an hour is a session's length,
        // and a newcomer's first busy hour is no rise.
        if long && (len != SUSTAINED_MINUTES || !settled) {
            return;
        }
        let hour = HourProfile::hour_of_week(from);
        let factor = (self.user.hours.share(hour) * 168.0).sqrt().clamp(0.5, 2.0);
        let (user, tenant, ratio) = if long {
            (
                &self.user.volume_hour,
                &self.tenant.volume_hour,
                s.volume.sustained_ratio,
            )
        } else {
            (&self.user.volume, &self.tenant.volume, s.volume.min_ratio)
        };
        let default = DEFAULT_WINDOW_VOLUME * len as f64 / 5.0;
        let pred = user.predict(prior(tenant, default, s.prior_weight / 5.0), 1.0, factor);
        let x = f64::from(sum.total);
        if x < ratio * pred.expected {
            return;
        }
        let mut test = Test::new(
            DetectorKind::VolumeSpike,
            u64::from(sum.total),
            pred,
            (from, to),
            len,
            volume_alpha,
            0,
        );
        let new = sum.new_resources;
        if long {
            // A bulk read rises in calls and in resources new to the user
            // together: the two tails combine (Fisher's method), so that
            // neither must be extreme alone.
            let p_new = if new == 0 {
                1.0
            } else {
                self.new_resource_pred(f64::from(active))
                    .tail(u64::from(new))
            };
            test.p = test.p.min(fisher(test.p, p_new));
            self.spike(test, |who, x, w, exp| {
                (
                    format!("{who}: {x} calls in {w}"),
                    format!("{who} made {x} calls in {w}, {new} of them on resources new to them; at this hour of the week the usual for an active {w} is {exp:.1}: a sustained rise, as a bulk read or export looks"),
                )
            });
            return;
        }
        // Traffic made of sessions is burstier than any count model's
        // tail: a volume the user has reached lately is not a spike.
        let peak = f64::from(self.user.volume_peak);
        if x >= s.volume.min_peak_ratio * peak {
            self.spike(test, |who, x, w, exp| {
                (
                    format!("{who}: {x} calls in {w}"),
                    format!("{who} made {x} calls in {w}; at this hour of the week the usual for an active window is {exp:.1}, and their busiest {w} lately held {peak:.0}"),
                )
            });
        }
    }

    /// New resources in the window, judged once: improbable under the
    /// user's own rate of new resources (Gamma-Poisson tail), then reported
    /// as `enumeration` when they are many and most of the window's resource
    /// calls (a sweep), else as `first_seen_resource`. One burst pages once,
    /// and a user whose work is touching new resources all day (a support
    /// desk, a reviewer) has the baseline to match and does not page.
    fn sweep(
        &mut self,
        new: u16,
        all: u16,
        active: f64,
        (from, to): (i64, i64),
        len: i64,
        alpha: f64,
    ) {
        let s = self.settings;
        let (new, all) = (u32::from(new), u32::from(all));
        let sweep = s.enabled(DetectorKind::Enumeration)
            && new >= s.enumeration.min_distinct
            && f64::from(new) >= s.enumeration.min_new_share * f64::from(all);
        let single = s.enabled(DetectorKind::FirstSeenResource) && new >= s.min_new_resources;
        if !sweep && !single {
            return;
        }
        let pred = self.new_resource_pred(active);
        let w = minutes(len);
        let p = pred.tail(u64::from(new));
        if p >= alpha {
            return;
        }
        if let Some(fired) = &mut self.tail {
            *fired = true;
            return;
        }
        let who = self.who();
        let evidence = Evidence {
            observed: Some(f64::from(new)),
            expected: Some(round3(pred.expected)),
            p_value: Some(p),
            event_ids: self.user.samples(from, to, flag::NEW_RESOURCE),
            ..Evidence::default()
        };
        let finding = |detector, severity, score, title, explanation| Finding {
            detector,
            value: String::new(),
            severity,
            score,
            title,
            explanation,
            evidence,
            window: (from, to),
            time: to,
        };
        if sweep {
            let mut f = finding(
                DetectorKind::Enumeration,
                Severity::High,
                80,
                format!("{who}: {new} distinct new resources in {w}"),
                format!(
                    "{who} touched {new} distinct resources they had never used, out of {all} resource calls in {w}: a sweep, not ordinary work; the usual is {:.2} new resources per {w} (p = {p:.1e})",
                    pred.expected
                ),
            );
            f.evidence
                .details
                .insert("resource_calls".into(), json!(all));
            self.raise(f);
        } else {
            // Fewer, or mixed with known ones: a busy day as often as not.
            // Like the other first-seen values, it pages when corroborated.
            let f = finding(
                DetectorKind::FirstSeenResource,
                Severity::Medium,
                55,
                format!("{who}: {new} resources never used before in {w}"),
                format!(
                    "{who} touched {new} resources new to them in {w}; the usual is {:.2} new resources per {w} (p = {p:.1e})",
                    pred.expected
                ),
            );
            self.signal(f, corroborate::NEW_RESOURCES);
        }
    }

    /// Folds `minute` into the baselines of the user and their tenant.
    fn fold(&mut self, minute: i64) {
        let c = self.user.minute(minute);
        if c.total == 0 {
            return;
        }
        // New identities: in their first two days, and first seen once the
        // tenant had history (on the day tooltrail is switched on, everyone
        // is new). Their minutes teach what new identities in the tenant do
        // even when they alerted: a tenant whose new bots all probe their
        // grants would otherwise page on each and never learn it.
        let newcomer =
            self.user
                .history_days((minute * 60 / crate::baseline::DAY) as u32)
                <= 1
                && self.tenant.first_day.is_some_and(|first| {
                    self.user.first_day >= first + self.settings.min_history_days
                });
        if newcomer {
            self.tenant.newcomer_denied.add(f64::from(c.denied));
        }
        if minute < self.user.learn_from {
            return;
        }
        // Off-hours calls are learned slowly, so that an attack at night
        // does not make the night normal within minutes, while a new
        // habit (a night shift) is learned within days.
        let ordinary = f64::from(c.total - c.off_hours);
        let learned = OFF_HOURS_LEARNING * f64::from(c.off_hours);
        self.user
            .hours
            .add(HourProfile::hour_of_week(minute * 60), ordinary + learned);
        // Calls of the run in progress: remembered, so that the run is
        // judged without them.
        if learned > 0.0
            && (self.user.off_hours_calls.iter().min())
                .is_some_and(|start| minute >= start.div_euclid(60))
        {
            self.user.off_hours_run_mass += learned as f32;
        }
        for (user, tenant, count) in [
            (&mut self.user.denied, &mut self.tenant.denied, c.denied),
            (
                &mut self.user.malformed,
                &mut self.tenant.malformed,
                c.malformed,
            ),
            (
                &mut self.user.new_resources,
                &mut self.tenant.new_resources,
                c.new_resources,
            ),
        ] {
            user.add(f64::from(count));
            tenant.add(f64::from(count));
        }
    }

    /// A rate detector's alert, if the count is improbable enough.
    fn spike(&mut self, t: Test, text: impl FnOnce(&str, u64, &str, f64) -> (String, String)) {
        let p = t.p;
        if p >= t.alpha {
            return;
        }
        if let Some(fired) = &mut self.tail {
            *fired = true;
            return;
        }
        let who = self.who();
        let (title, explanation) = text(&who, t.x, &minutes(t.len), t.pred.expected);
        let surprise = -p.max(1e-300).log10();
        let (from, to) = t.window;
        let evidence = Evidence {
            observed: Some(t.x as f64),
            expected: Some(round3(t.pred.expected)),
            p_value: Some(p),
            event_ids: self.user.samples(from, to, t.flags),
            ..Evidence::default()
        };
        self.raise(Finding {
            detector: t.detector,
            value: String::new(),
            severity: if p < 1e-12 {
                Severity::High
            } else {
                Severity::Medium
            },
            score: (30.0 + 5.0 * surprise).clamp(0.0, 99.0) as u8,
            title,
            explanation: format!("{explanation} (p = {p:.1e})"),
            evidence,
            window: (from, to),
            time: to,
        });
    }

    fn single_evidence(&self, e: &ToolCallEvent) -> Evidence {
        Evidence {
            event_ids: vec![e.event_id.clone()],
            ..Evidence::default()
        }
    }

    /// Emits a finding as an alert unless an alert on the same (detector,
    /// value) is open, or, for a paging finding, the user has a page open
    /// within the correlation window; then it counts as a repeat of that.
    fn raise(&mut self, f: Finding) {
        let (detector, time) = (f.detector, f.time);
        let weak = f
            .evidence
            .details
            .contains_key(corroborate::CORROBORATED_BY);
        if self.emit(f) && !weak {
            self.strong_signal(detector, time);
        }
    }

    /// Emits the alert; false if it was suppressed as a repeat or joined the
    /// user's open page.
    fn emit(&mut self, f: Finding) -> bool {
        let value_key = value_hash(0, &f.value);
        let user = &mut *self.user;
        // Close expired suppressions, publishing their repeat counts.
        let mut i = 0;
        while i < user.suppressions.len() {
            if user.suppressions[i].until <= f.time {
                let closed = user.suppressions.swap_remove(i);
                if closed.alert.repeats > 0 {
                    self.out.push(*closed.alert);
                }
            } else {
                i += 1;
            }
        }
        if let Some(open) = user
            .suppressions
            .iter_mut()
            .find(|s| s.detector == f.detector && s.value == value_key)
        {
            open.alert.repeats += 1;
            self.stats.suppressed += 1;
            return false;
        }
        // One incident, one page: a paging finding within the correlation
        // window of a page the user already has joins it, naming itself
        // there. A more severe one raises the page's severity, and the
        // update goes out at once.
        if f.severity >= Severity::Medium {
            let since = f.time - self.settings.corroboration_secs;
            if let Some(open) = user
                .suppressions
                .iter_mut()
                .filter(|s| {
                    s.alert.severity >= Severity::Medium && s.alert.time.timestamp() > since
                })
                .min_by_key(|s| s.alert.time)
            {
                let raised = f.severity > open.alert.severity;
                if raised {
                    open.alert.severity = f.severity;
                    open.alert.score = open.alert.score.max(f.score);
                }
                corroborate::absorb(&mut open.alert, f);
                self.stats.suppressed += 1;
                if raised {
                    self.out.push((*open.alert).clone());
                }
                return false;
            }
        }
        let at = |secs: i64| DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
        let alert = Alert {
            alert_version: ALERT_VERSION,
            // Window detectors key on their window; single-event ones on the
            // suppression period they fall in, so that events reordered
            // within the lateness give the same id.
            alert_id: alert_id(
                f.detector,
                &user.tenant_id,
                &user.user_id,
                &f.value,
                at(if f.window.0 == f.window.1 {
                    f.window.0 - f.window.0.rem_euclid(self.settings.suppression_secs)
                } else {
                    f.window.0
                }),
            ),
            time: at(f.time),
            tenant_id: user.tenant_id.to_string(),
            user_id: user.user_id.to_string(),
            detector: f.detector.into(),
            severity: f.severity,
            score: f.score,
            title: f.title,
            explanation: f.explanation,
            evidence: f.evidence,
            window_start: at(f.window.0),
            window_end: at(f.window.1),
            repeats: 0,
        };
        user.suppressions.push(super::user::Suppression {
            detector: f.detector,
            value: value_key,
            until: f.time + self.settings.suppression_secs,
            alert: Box::new(alert.clone()),
        });
        self.stats.alerts += 1;
        self.out.push(alert);
        true
    }
}

/// The long window over which a sustained rise in volume is judged.
const SUSTAINED_MINUTES: i64 = 60;

/// One count to judge: `x` events of `detector` over `len` minutes.
struct Test {
    detector: DetectorKind,
    x: u64,
    pred: Predictive,
    /// P-value of the count (`pred.tail(x)`, or a combined test's).
    p: f64,
    window: (i64, i64),
    len: i64,
    alpha: f64,
    /// Flags of the events to give as evidence (0: any).
    flags: u8,
}

/// Fisher's combination of two independent p-values: the chance of both
/// being this small together (chi-square with 4 degrees of freedom).
fn fisher(p1: f64, p2: f64) -> f64 {
    let x = -2.0 * (p1.max(1e-300).ln() + p2.max(1e-300).ln());
    ((-x / 2.0).exp() * (1.0 + x / 2.0)).min(1.0)
}

impl Test {
    /// The test of count `x` under `pred`.
    fn new(
        detector: DetectorKind,
        x: u64,
        pred: Predictive,
        window: (i64, i64),
        len: i64,
        alpha: f64,
        flags: u8,
    ) -> Self {
        Test {
            detector,
            x,
            p: pred.tail(x),
            pred,
            window,
            len,
            alpha,
            flags,
        }
    }
}

/// "1 min", "15 min", "1 h".
fn minutes(len: i64) -> String {
    if len % 60 == 0 {
        format!("{} h", len / 60)
    } else {
        format!("{len} min")
    }
}

/// The tenant of a `scheme://tenant/...` URI, exactly as the default
/// pattern `^[A-Za-z][A-Za-z0-9+.-]*://(?P<tenant>[^/]+)/` captures it.
fn uri_tenant(uri: &str) -> Option<&str> {
    let colon = uri.find(':')?;
    let (scheme, rest) = (&uri[..colon], uri[colon + 1..].strip_prefix("//")?);
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')) {
        return None;
    }
    let (tenant, _) = rest.split_once('/')?;
    (!tenant.is_empty()).then_some(tenant)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `UserState::volume_day_peak` of a day that raised an alert.
pub(super) const ALERTED_DAY: f32 = -1.0;

/// Sample event ids ending with the event that completed the evidence (not
/// among the user's recent calls yet), within the alert's cap.
pub(super) fn with_trigger(mut ids: Vec<String>, e: &ToolCallEvent) -> Vec<String> {
    if !ids.contains(&e.event_id) {
        ids.truncate(crate::alert::MAX_SAMPLE_EVENTS - 1);
        ids.push(e.event_id.clone());
    }
    ids
}

#[cfg(test)]
mod tests {
    use crate::config::DetectConfig;

    #[test]
    fn the_fast_uri_parser_agrees_with_the_default_pattern() {
        let re = DetectConfig::default()
            .validate()
            .expect("defaults")
            .tenant_pattern;
        for uri in [
            "gdrive://acme/docs/x",
            "k8s://acme/clusters/a",
            "s3+v2://globex/",
            "gdrive://acme",
            "://acme/x",
            "1http://acme/x",
            "http:/acme/x",
            "gdrive:///x",
            "a.b-c://t/x/y",
            "x y://t/z",
            "mailto:alice@acme",
        ] {
            let expected = re.captures(uri).map(|c| c["tenant"].to_string());
            assert_eq!(
                super::uri_tenant(uri).map(str::to_string),
                expected,
                "{uri}"
            );
        }
    }
}
