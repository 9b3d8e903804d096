//! Accumulating records into the next lake commit: valid events by hour
//! partition, rejects into the quarantine, and the source positions covered
//! (per application id: a Kafka partition's `<group>/<topic>/<partition>`, an
//! imported file's `file:b3:<hash>`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use tooltrail_schemas::lake::{BuilderSizes, EventBatchBuilder, QuarantineBatchBuilder, Source};
use tooltrail_schemas::{DecodeError, EventView, Problem, ToolCallEvent, decode, decode_view};

use tooltrail_lake::{Batch, Outcome, Partition, Position, Writer};

use crate::error::Result;

/// How far an event's time may lie from when it was received.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    /// `Duration::MAX`: any age (a history import's `--any-age`).
    pub max_age: Duration,
    pub max_future: Duration,
}

impl TimeWindow {
    /// Checks an event's time against the window around its receipt.
    pub fn check(
        &self,
        time: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> Result<(), DecodeError> {
        let age = received_at.signed_duration_since(time);
        let too_old = age.to_std().is_ok_and(|a| a > self.max_age);
        let too_new = (-age).to_std().is_ok_and(|a| a > self.max_future);
        if too_old || too_new {
            let problem = Problem::OutsideWindow {
                message: format!(
                    "{} is outside the accepted window ({} before to {} after receipt at {})",
                    tooltrail_schemas::format_time(&time),
                    match self.max_age {
                        Duration::MAX => "any time".to_owned(),
                        age => humantime_serde::re::humantime::format_duration(age).to_string(),
                    },
                    humantime_serde::re::humantime::format_duration(self.max_future),
                    tooltrail_schemas::format_time(&received_at),
                ),
                too_old,
            };
            return Err(DecodeError::Field {
                field: "time".into(),
                problem,
            });
        }
        Ok(())
    }
}

/// The hour partition an event falls in, ordered by time.
type HourKey = (NaiveDate, u32);

fn hour_of(time: DateTime<Utc>) -> HourKey {
    (time.date_naive(), chrono::Timelike::hour(&time))
}

/// The next commit, being filled.
pub struct Pending {
    window: TimeWindow,
    hours: BTreeMap<HourKey, EventBatchBuilder>,
    quarantine: BTreeMap<NaiveDate, QuarantineBatchBuilder>,
    /// Positions covered, `first..=last`, per application id.
    positions: BTreeMap<String, (i64, i64)>,
    keys: Vec<String>,
    /// Whether rejects go to the quarantine: not while a source re-reads
    /// input whose rejects the quarantine already holds (see
    /// [`tooltrail_lake::Resume`]).
    filing_rejects: bool,
    stats: PendingStats,
    started: Option<Instant>,
    /// How big the newest hour of the last transaction grew.
    last_hour: Option<BuilderSizes>,
}

/// Counts for metrics and replies.
#[derive(Debug, Clone, Default)]
pub struct PendingStats {
    pub events: u64,
    pub bytes: u64,
    pub quarantined: BTreeMap<&'static str, u64>,
    /// Data files the commit writes, by table.
    pub files: BTreeMap<&'static str, u64>,
    /// Optional fields set aside as invalid in events kept, by field.
    pub invalid_fields: BTreeMap<&'static str, u64>,
}

impl PendingStats {
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

impl Pending {
    pub fn new(window: TimeWindow) -> Self {
        Pending {
            window,
            hours: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            positions: BTreeMap::new(),
            keys: Vec::new(),
            filing_rejects: true,
            stats: PendingStats::default(),
            started: None,
            last_hour: None,
        }
    }

    /// Whether the next records' rejects are filed in the quarantine (the
    /// default) or left out because the quarantine holds them already. The
    /// caller still gets each rejection back.
    pub fn file_rejects(&mut self, file: bool) {
        self.filing_rejects = file;
    }

    /// Records held, valid and quarantined.
    pub fn len(&self) -> u64 {
        self.stats.events + self.stats.quarantined_total()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.positions.is_empty() && self.keys.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.stats.bytes
    }

    /// How long the oldest record has waited.
    pub fn age(&self) -> Duration {
        self.started.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// Decodes one record and files it: a valid event under its hour, anything
    /// else in the quarantine with its reason. Returns the rejection, if any.
    pub fn push(
        &mut self,
        raw: &[u8],
        received_at: DateTime<Utc>,
        source: Source<'_>,
    ) -> Result<(), DecodeError> {
        self.push_checked(raw, received_at, source, |_| Ok(()))
    }

    /// [`Pending::push`], with `check` run on each decoded event first: a
    /// record it refuses goes to the quarantine with the refusal as reason
    /// (e.g. a tenant its source may not write).
    pub fn push_checked(
        &mut self,
        raw: &[u8],
        received_at: DateTime<Utc>,
        source: Source<'_>,
        check: impl FnOnce(&EventView<'_>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        // The view borrows from `raw`: nothing is copied until the builder.
        let decoded = decode_view(raw)
            .and_then(|e| check(&e).map(|()| e))
            .and_then(|e| self.window.check(e.time, received_at).map(|()| e));
        self.file(raw, decoded, received_at, source)
    }

    /// [`Pending::push_checked`] for a consumer that keeps the event too
    /// (the detector): the record is decoded once, into an owned event,
    /// which is returned when it is accepted.
    pub fn push_owned_checked(
        &mut self,
        raw: &[u8],
        received_at: DateTime<Utc>,
        source: Source<'_>,
        check: impl FnOnce(&ToolCallEvent) -> Result<(), DecodeError>,
    ) -> Result<ToolCallEvent, DecodeError> {
        let decoded = decode(raw)
            .and_then(|e| check(&e).map(|()| e))
            .and_then(|e| self.window.check(e.time, received_at).map(|()| e));
        match decoded {
            Ok(event) => {
                self.file(raw, Ok(event.view()), received_at, source)?;
                Ok(event)
            }
            Err(error) => {
                self.file(raw, Err(error.clone()), received_at, source)?;
                Err(error)
            }
        }
    }

    /// Files a record already decoded (by the HTTP handler, off this thread).
    pub fn push_decoded(
        &mut self,
        raw: &[u8],
        decoded: Result<&ToolCallEvent, DecodeError>,
        received_at: DateTime<Utc>,
        source: Source<'_>,
    ) -> Result<(), DecodeError> {
        self.file(raw, decoded.map(ToolCallEvent::view), received_at, source)
    }

    fn file(
        &mut self,
        raw: &[u8],
        decoded: Result<EventView<'_>, DecodeError>,
        received_at: DateTime<Utc>,
        source: Source<'_>,
    ) -> Result<(), DecodeError> {
        self.started.get_or_insert_with(Instant::now);
        self.stats.bytes += raw.len() as u64;
        match decoded {
            Ok(event) => {
                let hour = hour_of(event.time);
                let builder = match self.hours.get_mut(&hour) {
                    Some(builder) => builder,
                    None => {
                        let builder = self.new_hour(hour);
                        self.hours.entry(hour).or_insert(builder)
                    }
                };
                builder.append_view(&event, received_at, source);
                self.stats.events += 1;
                for field in event.attributes.iter().flat_map(|a| a.invalid_fields()) {
                    *self.stats.invalid_fields.entry(field).or_default() += 1;
                }
                Ok(())
            }
            Err(error) if !self.filing_rejects => Err(error),
            Err(error) => {
                self.quarantine
                    .entry(received_at.date_naive())
                    .or_default()
                    .append(raw, &error, received_at, source);
                *self.stats.quarantined.entry(error.reason()).or_default() += 1;
                Err(error)
            }
        }
    }

    /// A builder for an hour not seen yet. Traffic changes little from one
    /// hour to the next, so an hour after the newest is sized like it (which
    /// spares growing its buffers row by row); a late hour starts small.
    fn new_hour(&self, hour: HourKey) -> EventBatchBuilder {
        let newest = match self.hours.last_key_value() {
            Some((newest, builder)) if *newest < hour => Some(builder.sizes()),
            Some(_) => None,
            None => self.last_hour.clone(),
        };
        match newest {
            Some(sizes) => EventBatchBuilder::with_sizes(&sizes.with_headroom()),
            None => EventBatchBuilder::new(),
        }
    }

    /// Notes that position `at` of `app_id` (a Kafka offset, a file's line)
    /// is covered by this commit.
    pub fn cover(&mut self, app_id: &str, at: i64) {
        self.started.get_or_insert_with(Instant::now);
        // Look the id up by reference: no allocation per record.
        match self.positions.get_mut(app_id) {
            Some((_, last)) => *last = (*last).max(at),
            None => {
                self.positions.insert(app_id.to_owned(), (at, at));
            }
        }
    }

    /// Adds an idempotency key the commit consumes.
    pub fn add_key(&mut self, key: String) {
        self.keys.push(key);
    }

    /// The positions covered so far.
    pub fn positions(&self) -> Vec<Position> {
        self.positions
            .iter()
            .map(|(app_id, (first, last))| Position {
                app_id: app_id.clone(),
                first: *first,
                last: *last,
            })
            .collect()
    }

    /// Turns what was gathered into the lake's batch, leaving this empty.
    pub fn take(&mut self) -> Result<(Batch, PendingStats)> {
        if let Some((_, newest)) = self.hours.last_key_value() {
            self.last_hour = Some(newest.sizes());
        }
        let mut batch = Batch {
            positions: self.positions(),
            keys: std::mem::take(&mut self.keys),
            ..Batch::default()
        };
        for ((date, hour), mut builder) in std::mem::take(&mut self.hours) {
            let start = date
                .and_hms_opt(hour, 0, 0)
                .expect("an hour of the day is a valid time")
                .and_utc();
            batch
                .events
                .push((Partition::hour(start), builder.finish()?));
        }
        for (date, mut builder) in std::mem::take(&mut self.quarantine) {
            batch
                .quarantine
                .push((Partition::day(date), builder.finish()?));
        }
        self.positions.clear();
        self.started = None;
        let mut stats = std::mem::take(&mut self.stats);
        for (table, files) in [("events", &batch.events), ("quarantine", &batch.quarantine)] {
            if !files.is_empty() {
                stats.files.insert(table, files.len() as u64);
            }
        }
        Ok((batch, stats))
    }
}

impl Pending {
    /// Commits what was gathered and counts it. Returns what the commit did
    /// and the counts, or `None` when there was nothing to do.
    pub async fn commit_to(
        &mut self,
        writer: &mut Writer,
        metrics: &crate::metrics::Metrics,
        source: &str,
    ) -> Result<Option<(Outcome, PendingStats)>> {
        if self.is_empty() {
            return Ok(None);
        }
        let (batch, stats) = self.take()?;
        let outcome = commit(writer, batch, &stats, metrics, source).await?;
        Ok(Some((outcome, stats)))
    }
}

/// Commits a batch [`Pending::take`] made, and counts it.
pub async fn commit(
    writer: &mut Writer,
    batch: Batch,
    stats: &PendingStats,
    metrics: &crate::metrics::Metrics,
    source: &str,
) -> Result<Outcome> {
    let started = Instant::now();
    let outcome = writer.commit(batch).await.inspect_err(|e| {
        if matches!(
            e,
            tooltrail_lake::Error::Fenced { .. } | tooltrail_lake::Error::KeyConflict { .. }
        ) {
            metrics.conflicts.inc();
        }
    })?;
    metrics.committed(source, stats, started.elapsed().as_secs_f64());
    Ok(outcome)
}
