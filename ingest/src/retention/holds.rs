//! Legal holds: what they cover, and the store of holds set through the
//! admin API, `<lake>/_tooltrail/legal_holds.json`.
//!
//! Holds come from two places, merged: `[[retention.legal_holds]]` in the
//! configuration (removable only by editing it) and the store, which any
//! process working on the lake reads, so `tooltrail retention apply` in
//! another process honours a hold set through `up`'s API. The store is
//! rewritten whole (temp file, fsync, rename, fsync of the directory) under
//! an exclusive `flock` of `legal_holds.lock`; retention holds the same lock
//! shared while it re-checks and commits each deletion, so once setting a
//! hold has returned, no deletion of what it covers can commit.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lake::log::{sync_dir, write_synced};
use crate::retention::config::{LegalHoldConfig, RetentionConfig};

/// Version of the store's format; fields are only added.
pub const HOLDS_FORMAT_VERSION: u32 = 1;

/// Characters a hold id may use.
pub const ID_CHARS: &str = "letters, digits, `.`, `_` and `-`";

/// Where a hold was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldSource {
    /// `[[retention.legal_holds]]`.
    Config,
    /// The admin API (`POST /v1/legal-holds`), kept in the store.
    Api,
}

/// A legal hold: the tenant's rows in partitions overlapping `[from, to)`
/// are kept, whatever their retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    pub id: String,
    pub tenant: String,
    /// Inclusive start; `None`: from the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end; `None`: no end.
    pub to: Option<DateTime<Utc>>,
    pub reason: String,
    #[serde(default = "api")]
    pub source: HoldSource,
    /// Who set it (the token's name), for holds set through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

fn api() -> HoldSource {
    HoldSource::Api
}

/// A hold to set: what the admin API receives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    pub tenant: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    pub reason: String,
}

impl LegalHold {
    /// Parses a configured hold; on failure, the field and the problem.
    pub fn from_config(c: &LegalHoldConfig) -> Result<LegalHold, (&'static str, String)> {
        check_id(&c.id).map_err(|p| ("id", p))?;
        let (from, to) = parse_range(&c.tenant, c.from.as_deref(), c.to.as_deref(), &c.reason)?;
        Ok(LegalHold {
            id: c.id.clone(),
            tenant: c.tenant.clone(),
            from,
            to,
            reason: c.reason.clone(),
            source: HoldSource::Config,
            created_by: None,
            created_at: None,
        })
    }

    /// Whether the hold keeps rows of `tenant` in a partition spanning
    /// `[start, end)`. Rows whose tenant is unknown (`None`) are kept by any
    /// hold whose range overlaps: they may be the held tenant's.
    pub fn covers(&self, tenant: Option<&str>, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let tenant_matches = tenant.is_none_or(|t| t == self.tenant);
        let overlaps =
            self.from.is_none_or(|from| from < end) && self.to.is_none_or(|to| start < to);
        tenant_matches && overlaps
    }

    /// `(2026-01-01T00:00:00Z..2026-07-01T00:00:00Z)`, `(2026-01-01T00:00:00Z..)`, `(all time)`.
    pub fn range(&self) -> String {
        let show = |t: Option<DateTime<Utc>>| t.map(|t| crate::retention::format_time(&t));
        match (show(self.from), show(self.to)) {
            (None, None) => "(all time)".into(),
            (from, to) => format!("({}..{})", from.unwrap_or_default(), to.unwrap_or_default()),
        }
    }

    /// `legal hold <id> on tenant <t> (<from>..<to>): <reason>`.
    pub fn describe(&self) -> String {
        format!(
            "legal hold {} on tenant {} {}: {}",
            self.id,
            self.tenant,
            self.range(),
            self.reason
        )
    }
}

pub(crate) fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("must be 1 to 64 of {ID_CHARS}, got `{id}`"))
    }
}

type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

pub(crate) fn parse_range(
    tenant: &str,
    from: Option<&str>,
    to: Option<&str>,
    reason: &str,
) -> Result<Range, (&'static str, String)> {
    if tenant.trim().is_empty() {
        return Err(("tenant", "must name a tenant".into()));
    }
    if reason.trim().is_empty() {
        return Err(("reason", "must say why the data is held".into()));
    }
    let from = from
        .map(|s| parse_bound(s, false))
        .transpose()
        .map_err(|p| ("from", p))?;
    let to = to
        .map(|s| parse_bound(s, true))
        .transpose()
        .map_err(|p| ("to", p))?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(("to", "must be after `from`".into()));
    }
    Ok((from, to))
}

/// RFC 3339, or a date `YYYY-MM-DD`: its start, or for an end, the start of
/// the next day (so that `to = "2026-03-31"` includes March 31).
pub fn parse_bound(text: &str, end: bool) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let date = if end {
            date.succ_opt().unwrap_or(date)
        } else {
            date
        };
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "expected RFC 3339 (2026-01-31T00:00:00Z) or a date (2026-01-31), got `{text}`"
    ))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    holds: Vec<LegalHold>,
}

/// The holds of a lake: configured ones and the store.
#[derive(Debug, Clone)]
pub struct HoldStore {
    file: PathBuf,
    lock: PathBuf,
    config: Vec<LegalHold>,
}

/// Holds `legal_holds.lock`; released when dropped.
pub struct HoldsLock(fs::File);

impl Drop for HoldsLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl HoldStore {
    /// The store of the lake at `lake_root`, with the holds `config` sets.
    pub fn open(lake_root: &Path, config: &RetentionConfig) -> HoldStore {
        let dir = lake_root.join("_tooltrail");
        HoldStore {
            file: dir.join("legal_holds.json"),
            lock: dir.join("legal_holds.lock"),
            config: config.holds(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Every hold: configured ones first, then stored ones.
    pub fn all(&self) -> Result<Vec<LegalHold>> {
        let mut all = self.config.clone();
        all.extend(self.stored()?);
        Ok(all)
    }

    /// Every hold, read under the shared lock, which the caller keeps while
    /// it deletes: no hold can be set until it is dropped.
    pub fn read_locked(&self) -> Result<(HoldsLock, Vec<LegalHold>)> {
        let guard = self.locked(false)?;
        Ok((guard, self.all()?))
    }

    /// The holds set through the API.
    pub fn stored(&self) -> Result<Vec<LegalHold>> {
        let bytes = match fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.file, e)),
        };
        let store: StoreFile = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptHolds {
            path: self.file.clone(),
            message: e.to_string(),
        })?;
        Ok(store.holds)
    }

    /// Sets a hold; returns it with its new id. Blocks while a retention
    /// run is committing a deletion.
    pub fn add(&self, new: NewHold, by: &str, now: DateTime<Utc>) -> Result<LegalHold> {
        let (from, to) = parse_range(
            &new.tenant,
            new.from.as_deref(),
            new.to.as_deref(),
            &new.reason,
        )
        .map_err(|(field, problem)| Error::InvalidHold {
            field: field.to_owned(),
            problem,
        })?;
        let hold = LegalHold {
            id: format!("hold-{}", uuid::Uuid::now_v7().simple()),
            tenant: new.tenant.trim().to_owned(),
            from,
            to,
            reason: new.reason.trim().to_owned(),
            source: HoldSource::Api,
            created_by: Some(by.to_owned()),
            created_at: Some(now),
        };
        let _guard = self.locked(true)?;
        let mut holds = self.stored()?;
        holds.push(hold.clone());
        self.write(holds)?;
        Ok(hold)
    }

    /// Removes a hold set through the API; returns it. A configured hold
    /// is refused ([`Error::HoldInConfig`]).
    pub fn remove(&self, id: &str) -> Result<LegalHold> {
        if self.config.iter().any(|h| h.id == id) {
            return Err(Error::HoldInConfig { id: id.to_owned() });
        }
        let _guard = self.locked(true)?;
        let mut holds = self.stored()?;
        let Some(at) = holds.iter().position(|h| h.id == id) else {
            return Err(Error::HoldNotFound { id: id.to_owned() });
        };
        let removed = holds.remove(at);
        self.write(holds)?;
        Ok(removed)
    }

    fn write(&self, holds: Vec<LegalHold>) -> Result<()> {
        let body = StoreFile {
            version: HOLDS_FORMAT_VERSION,
            holds,
        };
        let bytes = serde_json::to_vec_pretty(&body).expect("holds serialize");
        let dir = self.file.parent().expect("the store is in _tooltrail");
        let tmp = dir.join(format!(".legal_holds.json.{}.tmp", std::process::id()));
        write_synced(&tmp, &bytes)?;
        fs::rename(&tmp, &self.file).map_err(|e| Error::io(&self.file, e))?;
        sync_dir(dir)
    }

    fn locked(&self, exclusive: bool) -> Result<HoldsLock> {
        if let Some(dir) = self.lock.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = crate::lake::open_lock_file(&self.lock)?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| Error::io(&self.lock, e))?;
        Ok(HoldsLock(file))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn config_hold(from: Option<&str>, to: Option<&str>) -> LegalHoldConfig {
        LegalHoldConfig {
            id: "case-1".into(),
            tenant: "acme".into(),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            reason: "litigation".into(),
        }
    }

    #[test]
    fn a_date_as_the_end_includes_that_whole_day() {
        let hold =
            LegalHold::from_config(&config_hold(Some("2026-03-01"), Some("2026-03-31"))).unwrap();
        assert_eq!(hold.from, Some(at(2026, 3, 1)));
        assert_eq!(hold.to, Some(at(2026, 4, 1)));
        assert!(hold.covers(Some("acme"), at(2026, 3, 31), at(2026, 4, 1)));
        assert!(!hold.covers(Some("acme"), at(2026, 4, 1), at(2026, 4, 2)));
        assert!(!hold.covers(Some("acme"), at(2026, 2, 28), at(2026, 3, 1)));
        assert!(!hold.covers(Some("globex"), at(2026, 3, 5), at(2026, 3, 6)));
        assert!(
            hold.covers(None, at(2026, 3, 5), at(2026, 3, 6)),
            "unknown tenants may be acme"
        );
        assert_eq!(
            hold.describe(),
            "legal hold case-1 on tenant acme (2026-03-01T00:00:00Z..2026-04-01T00:00:00Z): litigation"
        );
    }

    #[test]
    fn bad_holds_name_the_field() {
        let bad = config_hold(Some("last tuesday"), None);
        assert_eq!(LegalHold::from_config(&bad).unwrap_err().0, "from");
        let backwards = config_hold(Some("2026-03-02"), Some("2026-03-01"));
        assert_eq!(LegalHold::from_config(&backwards).unwrap_err().0, "to");
        let id = LegalHoldConfig {
            id: "no spaces".into(),
            ..config_hold(None, None)
        };
        assert_eq!(LegalHold::from_config(&id).unwrap_err().0, "id");
    }

    #[test]
    fn stored_holds_survive_reopening_and_configured_ones_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let config = RetentionConfig {
            legal_holds: vec![config_hold(None, None)],
            ..RetentionConfig::default()
        };
        let store = HoldStore::open(dir.path(), &config);
        let new = NewHold {
            tenant: "globex".into(),
            from: Some("2026-01-01".into()),
            to: None,
            reason: "regulator request".into(),
        };
        let hold = store.add(new, "root", at(2026, 5, 1)).unwrap();
        let again = HoldStore::open(dir.path(), &config);
        let all = again.all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].source, HoldSource::Config);
        assert_eq!(all[1], hold);
        assert!(matches!(
            again.remove("case-1"),
            Err(Error::HoldInConfig { .. })
        ));
        assert!(matches!(
            again.remove("nope"),
            Err(Error::HoldNotFound { .. })
        ));
        assert_eq!(again.remove(&hold.id).unwrap().id, hold.id);
        assert_eq!(store.all().unwrap().len(), 1);
    }
}
