//! Legal holds: what they cover, and the store of holds set through the
//! admin API.
//!
//! Holds come from two places, merged: `[[retention.legal_holds]]` in the
//! configuration (removable only by editing it) and the store, which any
//! process working on the lake reads, so `tooltrail retention apply` in
//! another process honours a hold set through `up`'s API.
//!
//! The store is one object per hold, `<lake>/_tooltrail/legal_holds/<id>.json`,
//! through the lake's object store (a local directory or S3 alike), with no
//! lock: setting a hold creates its object if absent (`PutMode::Create`,
//! which the local store and S3 both do atomically), releasing one deletes
//! it, and listing reads them all. Two processes setting holds at once
//! therefore lose neither, which a single file rewritten whole could only
//! promise with a conditional update that the local store does not have.
//! The store of the old lake, one `legal_holds.json`, is moved over (each
//! hold created if absent, then the file deleted) the first time the store
//! is read; a hold released while another process is moving it may come
//! back, which errs on the side of keeping data.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::location::Location;
use crate::retention::config::{LegalHoldConfig, RetentionConfig};
use crate::retention::error::Error;

type Result<T, E = Error> = std::result::Result<T, E>;

/// Version of a stored hold's format; fields are only added.
pub const HOLDS_FORMAT_VERSION: u32 = 1;

/// Characters a hold id may use.
pub const ID_CHARS: &str = "letters, digits, `.`, `_` and `-`";

/// Where the lake keeps what is not a table.
const PREFIX: &str = "_tooltrail";
/// The directory of the holds, under [`PREFIX`].
const HOLDS_DIR: &str = "legal_holds";
/// The old lake's store, under [`PREFIX`].
const LEGACY_FILE: &str = "legal_holds.json";

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

/// One stored hold.
#[derive(Debug, Serialize, Deserialize)]
struct HoldFile {
    version: u32,
    hold: LegalHold,
}

/// The old lake's `legal_holds.json`.
#[derive(Debug, Deserialize)]
struct LegacyFile {
    holds: Vec<LegalHold>,
}

/// The holds of a lake: configured ones and the store.
#[derive(Debug, Clone)]
pub struct HoldStore {
    /// Rooted at `<lake>/_tooltrail/`.
    store: Arc<dyn ObjectStore>,
    /// `<lake>/_tooltrail/legal_holds/`, for messages.
    location: String,
    config: Vec<LegalHold>,
}

impl HoldStore {
    /// The store of the lake at `lake`, with the holds `config` sets.
    pub fn open(lake: &Location, config: &RetentionConfig) -> Result<HoldStore> {
        Ok(HoldStore {
            store: lake.store(PREFIX)?,
            location: format!(
                "{}/{PREFIX}/{HOLDS_DIR}/",
                lake.to_string().trim_end_matches('/')
            ),
            config: config.holds(),
        })
    }

    /// Where the stored holds are, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Every hold: configured ones first, then stored ones (by id).
    pub async fn all(&self) -> Result<Vec<LegalHold>> {
        let mut all = self.config.clone();
        all.extend(self.stored().await?);
        Ok(all)
    }

    /// The holds set through the API, by id. A hold that does not parse is
    /// an error: retention must not run as if it were absent.
    pub async fn stored(&self) -> Result<Vec<LegalHold>> {
        self.move_legacy().await?;
        let prefix = StorePath::from(HOLDS_DIR);
        let listed: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.store_error("listing", e))?;
        let mut holds = Vec::with_capacity(listed.len());
        for meta in listed {
            if meta.location.extension() != Some("json") {
                continue;
            }
            match self.read(&meta.location).await? {
                Some(hold) => holds.push(hold),
                // Released between the listing and the read.
                None => continue,
            }
        }
        holds.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(holds)
    }

    /// Sets a hold; returns it with its new id.
    pub async fn add(&self, new: NewHold, by: &str, now: DateTime<Utc>) -> Result<LegalHold> {
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
        self.create(&hold).await?;
        Ok(hold)
    }

    /// Removes a hold set through the API; returns it. A configured hold
    /// is refused ([`Error::HoldInConfig`]).
    pub async fn remove(&self, id: &str) -> Result<LegalHold> {
        if self.config.iter().any(|h| h.id == id) {
            return Err(Error::HoldInConfig { id: id.to_owned() });
        }
        let not_found = || Error::HoldNotFound { id: id.to_owned() };
        // Anything else could name an object outside the holds.
        check_id(id).map_err(|_| not_found())?;
        self.move_legacy().await?;
        let path = hold_path(id);
        let hold = self.read(&path).await?.ok_or_else(not_found)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(hold),
            Err(e) => Err(self.store_error(&format!("removing {id}"), e)),
        }
    }

    /// Creates the object of `hold`; one that exists already is left as it is.
    async fn create(&self, hold: &LegalHold) -> Result<()> {
        let body = HoldFile {
            version: HOLDS_FORMAT_VERSION,
            hold: hold.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&body).expect("a hold serializes");
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let put = self
            .store
            .put_opts(&hold_path(&hold.id), PutPayload::from(bytes), options)
            .await;
        match put {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.store_error(&format!("setting {}", hold.id), e)),
        }
    }

    /// The hold stored at `path`; `None` if there is none.
    async fn read(&self, path: &StorePath) -> Result<Option<LegalHold>> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_error(&format!("reading {path}"), e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.store_error(&format!("reading {path}"), e))?;
        let file: HoldFile = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptHold {
            path: format!("{}{}", self.location, path.filename().unwrap_or_default()),
            message: e.to_string(),
        })?;
        Ok(Some(file.hold))
    }

    /// Moves the holds of the old lake's `legal_holds.json` to their own objects.
    async fn move_legacy(&self) -> Result<()> {
        let path = StorePath::from(LEGACY_FILE);
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.store_error("reading legal_holds.json", e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.store_error("reading legal_holds.json", e))?;
        let legacy: LegacyFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::CorruptHold {
                path: self.legacy_location(),
                message: e.to_string(),
            })?;
        for hold in &legacy.holds {
            if check_id(&hold.id).is_err() {
                return Err(Error::CorruptHold {
                    path: self.legacy_location(),
                    message: format!("hold id `{}` is not a valid id", hold.id),
                });
            }
            self.create(hold).await?;
        }
        tracing::info!(
            holds = legacy.holds.len(),
            "moved the legal holds of legal_holds.json to one object each"
        );
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error("removing legal_holds.json", e)),
        }
    }

    fn legacy_location(&self) -> String {
        self.location.replace(&format!("{HOLDS_DIR}/"), LEGACY_FILE)
    }

    fn store_error(&self, what: &str, source: object_store::Error) -> Error {
        Error::Lake(crate::Error::Store {
            context: format!("legal holds at {}: {what}", self.location),
            source,
        })
    }
}

fn hold_path(id: &str) -> StorePath {
    StorePath::from(format!("{HOLDS_DIR}/{id}.json"))
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

    #[tokio::test]
    async fn stored_holds_survive_reopening_and_configured_ones_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Location::local(dir.path()).unwrap();
        let config = RetentionConfig {
            legal_holds: vec![config_hold(None, None)],
            ..RetentionConfig::default()
        };
        let store = HoldStore::open(&lake, &config).unwrap();
        let new = NewHold {
            tenant: "globex".into(),
            from: Some("2026-01-01".into()),
            to: None,
            reason: "regulator request".into(),
        };
        let hold = store.add(new, "root", at(2026, 5, 1)).await.unwrap();
        assert!(
            dir.path()
                .join(format!("_tooltrail/legal_holds/{}.json", hold.id))
                .is_file()
        );
        let again = HoldStore::open(&lake, &config).unwrap();
        let all = again.all().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].source, HoldSource::Config);
        assert_eq!(all[1], hold);
        assert!(matches!(
            again.remove("case-1").await,
            Err(Error::HoldInConfig { .. })
        ));
        assert!(matches!(
            again.remove("nope").await,
            Err(Error::HoldNotFound { .. })
        ));
        assert!(matches!(
            again.remove("../../events").await,
            Err(Error::HoldNotFound { .. })
        ));
        assert_eq!(again.remove(&hold.id).await.unwrap().id, hold.id);
        assert_eq!(store.all().await.unwrap().len(), 1);
        let invalid = NewHold {
            tenant: " ".into(),
            reason: "r".into(),
            ..NewHold::default()
        };
        assert!(matches!(
            store.add(invalid, "root", at(2026, 5, 1)).await,
            Err(Error::InvalidHold { field, .. }) if field == "tenant"
        ));
    }

    #[tokio::test]
    async fn the_old_lakes_holds_file_is_moved_to_one_object_per_hold() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Location::local(dir.path()).unwrap();
        let old = serde_json::json!({
            "version": 1,
            "holds": [{
                "id": "hold-0193", "tenant": "acme", "from": null, "to": null,
                "reason": "case", "source": "api", "created_by": "root",
            }],
        });
        let file = dir.path().join("_tooltrail/legal_holds.json");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, old.to_string()).unwrap();
        let store = HoldStore::open(&lake, &RetentionConfig::default()).unwrap();
        let all = store.all().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].id.as_str(), all[0].tenant.as_str()),
            ("hold-0193", "acme")
        );
        assert!(!file.exists(), "moved");
        assert_eq!(store.all().await.unwrap(), all);
        store.remove("hold-0193").await.unwrap();
        assert!(store.all().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stored_hold_that_does_not_parse_is_an_error_not_an_absent_hold() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Location::local(dir.path()).unwrap();
        let path = dir.path().join("_tooltrail/legal_holds/hold-x.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "{").unwrap();
        let store = HoldStore::open(&lake, &RetentionConfig::default()).unwrap();
        let err = store.all().await.unwrap_err();
        assert!(matches!(err, Error::CorruptHold { .. }), "{err}");
        assert!(err.to_string().contains("hold-x.json"), "{err}");
    }
}
