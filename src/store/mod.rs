//! Where events, event errors and their catalog live. SQL lives only below here.
//!
//! The store is cut by who calls it: [`EventSink`] (workers), [`EventReader`]
//! (read API, admin lists), [`Access`] (trust, tokens, admin users and
//! sessions) and [`Curation`] (what the admin panel edits); [`Store`] is all
//! four plus schema and health. Each backend implements every role, in one
//! file per role (`sqlite/`, `postgres/`); queries whose text is the same in
//! both dialects are written once, in `shared`. One contract test suite per
//! role runs against each backend.
//! Writes are idempotent on `event_id`, which is what turns the queue's
//! at-least-once delivery into exactly-once rows. SQLite scopes that to the
//! UTC hour of the event's timestamp (a redelivery or a retry is the same
//! payload, so the same hour): the part of its unique index live traffic
//! writes then stays as large as one hour's events rather than the table
//! (`sqlite::events`).

#[macro_use]
mod shared;
pub mod postgres;
mod rebuild;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::user::NewUser;
use crate::domain::{Application, CategoryDef, EventTypeDef, Reason, Timestamp, ValidEvent};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A valid event with the time ingest received it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The validated event.
    pub event: ValidEvent,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// The application that sent it.
    pub application: Option<String>,
}

/// An accepted item that failed validation (or ingest), with every reason.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEventError {
    /// The id the item got at ingest; unique among errors.
    pub event_id: Uuid,
    /// The payload as received (JSON text, or a capped non-JSON body).
    pub raw: String,
    /// Every failed rule.
    pub reasons: Vec<Reason>,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// The application that sent it.
    pub application: Option<String>,
}

/// What a worker writes in one transaction.
///
/// Every `event_id` ends as exactly one event *or* one event error. A second
/// payload with a stored id is a duplicate and is skipped (on SQLite, a
/// stored id in the same UTC hour of the payload's timestamp), with one exception:
/// a valid payload replaces an event error with its id (a client that fixed
/// its payload and resent it with the same id, or a replay), as an admin's
/// replay does. So an error never stands beside an event with its id.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// Valid events; duplicates of stored events are skipped, errors with their ids removed.
    pub events: Vec<NewEvent>,
    /// Event errors; skipped when their `event_id` is already an event or an error.
    pub errors: Vec<NewEventError>,
}

impl WriteBatch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.errors.is_empty()
    }
}

/// A stored event.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Internal row id, the tie-breaker of keyset pagination.
    pub row_id: i64,
    /// The event's id.
    pub event_id: Uuid,
    /// The visitor's session.
    pub session_id: String,
    /// Category name.
    pub category: String,
    /// Event name.
    pub name: String,
    /// The event's data, JSON text as stored.
    pub data: Box<RawValue>,
    /// When it happened (client's clock).
    pub timestamp: Timestamp,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// The application that sent it.
    pub application: Option<String>,
}

/// A stored event error.
#[derive(Clone, Debug)]
pub struct StoredError {
    /// Row id, also the pagination key.
    pub id: i64,
    /// The id the item got at ingest.
    pub event_id: Uuid,
    /// The payload as received.
    pub raw: String,
    /// Every failed rule.
    pub reasons: Vec<Reason>,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// The application that sent it.
    pub application: Option<String>,
    /// The `category` string of the payload, when it has one.
    pub category: Option<String>,
    /// The payload as first received, when someone has edited it since.
    pub original_raw: Option<String>,
    /// Who last edited the payload.
    pub edited_by: Option<String>,
}

impl NewEventError {
    /// The `category` string of the payload, if it is a JSON object that has one:
    /// kept in its own column so that errors can be listed by category.
    pub fn category(&self) -> Option<String> {
        category_of(&self.raw)
    }

    /// The `session_id` string of the payload, if any: kept in its own column
    /// so that a session's errors can be shown, and erased, with its events.
    pub fn session_id(&self) -> Option<String> {
        session_of(&self.raw)
    }
}

#[derive(serde::Deserialize)]
struct Probe {
    category: Option<serde_json::Value>,
    session_id: Option<serde_json::Value>,
    name: Option<serde_json::Value>,
    timestamp: Option<serde_json::Value>,
}

fn probe(raw: &str) -> Option<Probe> {
    serde_json::from_str(raw).ok()
}

/// The `category` string of a raw payload, if any.
pub fn category_of(raw: &str) -> Option<String> {
    probe(raw)?.category?.as_str().map(str::to_string)
}

/// The `session_id` string of a raw payload, if any.
pub fn session_of(raw: &str) -> Option<String> {
    probe(raw)?.session_id?.as_str().map(str::to_string)
}

/// The `name` string of a raw payload, if any.
pub fn name_of(raw: &str) -> Option<String> {
    probe(raw)?.name?.as_str().map(str::to_string)
}

/// The `timestamp` of a raw payload, if it has one that reads as a time.
pub fn timestamp_of(raw: &str) -> Option<Timestamp> {
    Timestamp::parse(probe(raw)?.timestamp?.as_str()?).ok()
}

/// Sort direction of a listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest first.
    #[default]
    Desc,
    /// Oldest first: a session's events in the order they occurred.
    Asc,
}

/// Position after which the next page of events starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCursor {
    /// Event time of the last event seen, µs.
    pub timestamp_micros: i64,
    /// Row id of the last event seen.
    pub row_id: i64,
}

/// Filters and page of an event listing.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only this session.
    pub session_id: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this event name.
    pub name: Option<String>,
    /// Only events sent with this application's key.
    pub application: Option<String>,
    /// Events at or after this time.
    pub from: Option<Timestamp>,
    /// Events before this time.
    pub to: Option<Timestamp>,
    /// Only events whose session id equals this or whose `data` contains it as text.
    pub search: Option<String>,
    /// Sort direction.
    pub order: Order,
    /// Page size.
    pub limit: usize,
    /// Continue after this position.
    pub after: Option<EventCursor>,
}

/// Filters and page of an event-error listing (newest first).
#[derive(Clone, Debug, Default)]
pub struct ErrorQuery {
    /// Only these errors (by row id); empty means no such filter.
    pub ids: Vec<i64>,
    /// Only errors with a reason of this code, e.g. `unknown_category`.
    pub reason: Option<String>,
    /// Only errors whose payload names this category.
    pub category: Option<String>,
    /// Only errors whose payload names this session.
    pub session_id: Option<String>,
    /// Errors received at or after this time.
    pub from: Option<Timestamp>,
    /// Errors received before this time.
    pub to: Option<Timestamp>,
    /// `Desc`: newest first (by id); `Asc`: oldest first, as an export reads them.
    pub order: Order,
    /// Page size.
    pub limit: usize,
    /// Continue after this error id.
    pub after: Option<i64>,
}

/// Filters and page of the audit log.
#[derive(Clone, Debug, Default)]
pub struct ActionQuery {
    /// Only entries by this user.
    pub username: Option<String>,
    /// Only entries of this action, e.g. `replay`.
    pub action: Option<String>,
    /// Only entries about this object.
    pub object: Option<String>,
    /// `Desc`: newest first (by id); `Asc`: oldest first.
    pub order: Order,
    /// Page size.
    pub limit: usize,
    /// Continue after this entry id.
    pub after: Option<i64>,
}

/// An audit-log entry as stored, with its row id (the log's cursor).
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedAction {
    /// Row id.
    pub id: i64,
    /// The entry.
    pub entry: AdminAction,
}

/// A session as the admin's sessions list shows it: its matching events
/// counted, and when the first and last of them occurred.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session id.
    pub session_id: String,
    /// How many of its events match the filters.
    pub events: i64,
    /// When the first of them occurred.
    pub first: Timestamp,
    /// When the last of them occurred.
    pub last: Timestamp,
}

/// One page of a listing, and whether there is more.
#[derive(Clone, Debug)]
pub struct Page<T, C> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// A page from a query that fetched up to `limit + 1` rows: the extra row,
    /// if any, only says that there is more, and the cursor points after the last row kept.
    pub fn from_rows(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> C) -> Self {
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor)
        } else {
            None
        };
        Self { items, next }
    }
}

/// A category with its event types, as the admin panel edits them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Category {
    /// Row id; `None` for one not saved yet.
    pub id: Option<i64>,
    /// Unique name events refer to. It cannot change once saved: stored
    /// events refer to categories by name.
    pub name: String,
    /// What the category is for.
    pub description: String,
    /// Inactive categories refuse new events.
    pub active: bool,
    /// Strict categories accept only declared event types.
    pub strict: bool,
    /// Declared event types (empty when saving).
    pub types: Vec<EventType>,
}

/// An event type as the admin panel edits it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventType {
    /// Row id; `None` for one not saved yet.
    pub id: Option<i64>,
    /// The category it belongs to.
    pub category_id: i64,
    /// The event name, unique within its category; cannot change once saved.
    pub name: String,
    /// What the event means.
    pub description: String,
    /// JSON Schema that `data` must satisfy, if any.
    pub schema: Option<serde_json::Value>,
}

/// The outcome of replaying one event error.
#[derive(Clone, Debug)]
pub struct Replay {
    /// The error's row id.
    pub error_id: i64,
    /// The payload replayed, when it was edited; recorded on the error if it still fails.
    pub edited_raw: Option<String>,
    /// The valid event, or every reason it still fails.
    pub outcome: Result<NewEvent, Vec<Reason>>,
}

/// One entry of the admin panel's audit log.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminAction {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub username: String,
    /// What, e.g. `replay`, `delete event`, `rotate key`.
    pub action: String,
    /// On what: an event id, an error's event id, a category, an application.
    pub object: String,
    /// Details, e.g. the payload before and after an edit.
    pub detail: String,
}

/// What a statistics query counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsKind {
    /// Events, by their own time.
    #[default]
    Events,
    /// Event errors, by the time they were received.
    Errors,
}

/// What the counts of a statistics query are split by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsGroup {
    /// One series.
    #[default]
    None,
    /// By category (`""` for errors without one).
    Category,
    /// By category and event name (events only).
    Name,
    /// By application (`""` when none).
    Application,
    /// By the code of the first reason (errors only).
    Reason,
}

/// A question for the rollups: counts from `from` to `to` in buckets of
/// `bucket_secs` (a multiple of 300), split by `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsQuery {
    /// Events or errors.
    pub kind: StatsKind,
    /// Start, on a bucket boundary (UTC).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Bucket width in seconds: a multiple of the rollups' 300.
    pub bucket_secs: i64,
    /// How to split the counts.
    pub group: StatsGroup,
    /// Only this category.
    pub category: Option<String>,
    /// Only this event name (events only).
    pub name: Option<String>,
    /// Only this application.
    pub application: Option<String>,
}

/// One count of a statistics answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsRow {
    /// The bucket's start.
    pub bucket: DateTime<Utc>,
    /// The group's key: empty for `StatsGroup::None`, the category and the
    /// name for `Name`, one value otherwise.
    pub key: Vec<String>,
    /// How many.
    pub count: i64,
}

/// The width of the rollups' buckets, in seconds.
pub const ROLLUP_SECS: i64 = 300;

/// The start of the `secs`-wide bucket (counted from the epoch, UTC) that `t` falls in.
pub fn floor_to(t: DateTime<Utc>, secs: i64) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(secs), 0).unwrap_or(t)
}

/// A time from microseconds since the epoch, as SQLite keeps times and
/// cursors and rebuilds carry them.
pub(crate) fn time_from_micros(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Unavailable(format!("bad time {micros}")))
}

impl StatsQuery {
    /// The rollup table this query reads and the columns of its group key;
    /// `Rejected` for a grouping the kind has not (events have no reason,
    /// errors no name) or a bucket that is not a multiple of the rollups'.
    pub(crate) fn plan(&self) -> Result<(&'static str, &'static [&'static str]), StoreError> {
        if self.bucket_secs <= 0 || self.bucket_secs % ROLLUP_SECS != 0 {
            return Err(StoreError::Rejected(format!("a bucket must be a multiple of {ROLLUP_SECS} s")));
        }
        let table = match self.kind {
            StatsKind::Events => "event_rollups",
            StatsKind::Errors => "error_rollups",
        };
        let columns: &'static [&'static str] = match (self.kind, self.group) {
            (_, StatsGroup::None) => &[],
            (_, StatsGroup::Category) => &["category"],
            (_, StatsGroup::Application) => &["application"],
            (StatsKind::Events, StatsGroup::Name) => &["category", "name"],
            (StatsKind::Errors, StatsGroup::Reason) => &["reason"],
            (StatsKind::Events, StatsGroup::Reason) => {
                return Err(StoreError::Rejected("events have no reason to group by".into()))
            }
            (StatsKind::Errors, StatsGroup::Name) => {
                return Err(StoreError::Rejected("event errors have no name to group by".into()))
            }
        };
        if self.name.is_some() && self.kind == StatsKind::Errors {
            return Err(StoreError::Rejected("event errors have no name to filter by".into()));
        }
        Ok((table, columns))
    }
}

/// Which rows a retention step removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Events whose own time is before the cutoff.
    Events,
    /// Event errors received before the cutoff.
    Errors,
    /// Rollup counts (of both) for buckets before the cutoff.
    Rollups,
}

/// What erasing a session removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Events removed.
    pub events: u64,
    /// Event errors removed.
    pub errors: u64,
}

/// How far a rollup rebuild has come: rows recounted of about how many.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Transient: connection lost, database locked or down. Retry later; never an event error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the data itself; retrying the same rows will fail again.
    #[error("store rejected the data: {0}")]
    Rejected(String),
    /// Setup problem: bad URL, failed migration, broken stored schema.
    #[error("{0}")]
    Setup(String),
}

/// What the workers need: the catalog to validate against, one transactional
/// write per batch, and periodic upkeep. A fake for a worker test implements
/// these three methods and nothing else.
#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug + 'static {
    /// Every category and event type.
    async fn catalog(&self) -> Result<(Vec<CategoryDef>, Vec<EventTypeDef>), StoreError>;
    /// Writes events and errors in one transaction, skipping `event_id`s already
    /// stored (see [`WriteBatch`] for the one-outcome rule).
    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// Periodic upkeep, such as making the coming months' partitions and
    /// merging rollup deltas. Safe to run from every process at once.
    async fn maintain(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// What the read API and the admin panel's lists and dashboard read.
#[async_trait]
pub trait EventReader: Send + Sync + std::fmt::Debug + 'static {
    /// A page of events.
    async fn events(&self, query: &EventQuery) -> Result<Page<StoredEvent, EventCursor>, StoreError>;
    /// One event by id.
    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;
    /// A page of event errors.
    async fn errors(&self, query: &ErrorQuery) -> Result<Page<StoredError, i64>, StoreError>;
    /// Counts from the rollups (see [`StatsQuery`]), sorted by bucket then
    /// key; buckets with nothing to count are left out.
    async fn stats(&self, query: &StatsQuery) -> Result<Vec<StatsRow>, StoreError>;
    /// How many events match the query's filters (its order, page and
    /// cursor aside), counting no further than `cap + 1`: that means "more
    /// than `cap`", so a count never costs more than reading `cap` rows.
    async fn count_events(&self, query: &EventQuery, cap: u64) -> Result<u64, StoreError>;
    /// The same for event errors.
    async fn count_errors(&self, query: &ErrorQuery, cap: u64) -> Result<u64, StoreError>;
    /// Up to `query.limit` events matching the query's filters that were
    /// stored after row `after_row`, in the order they were stored: what a
    /// live view shows next, whichever process stored them.
    async fn events_stored_after(&self, after_row: i64, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// The newest event row and event-error row (0 when there is none): where a live view starts.
    async fn newest_rows(&self) -> Result<(i64, i64), StoreError>;
    /// Up to `query.limit` sessions with events matching the query's filters,
    /// the most recently active first, each with its matching events counted.
    async fn sessions(&self, query: &EventQuery) -> Result<Vec<SessionSummary>, StoreError>;
}

/// Who may do what: applications (for ingest's trust checks), read-API
/// tokens, admin users and their sessions.
#[async_trait]
pub trait Access: Send + Sync + std::fmt::Debug + 'static {
    /// Every application, revoked ones included.
    async fn applications(&self) -> Result<Vec<Application>, StoreError>;
    /// Adds an application; a name or key already taken is `Rejected`.
    async fn create_application(&self, app: &Application) -> Result<(), StoreError>;
    /// Sets whether an application may send; false when there is no such application.
    async fn set_application_active(&self, name: &str, active: bool) -> Result<bool, StoreError>;
    /// Replaces an application's key; false when there is no such application.
    async fn set_application_key(&self, name: &str, key: &str) -> Result<bool, StoreError>;
    /// Replaces an application's allowed origins; false when there is no such application.
    async fn set_application_origins(&self, name: &str, origins: &[String]) -> Result<bool, StoreError>;
    /// Saves a read-API token by the SHA-256 of its secret; `can_erase` lets
    /// it erase sessions too.
    async fn create_token(&self, name: &str, hash: &[u8], can_erase: bool) -> Result<(), StoreError>;
    /// What the token with this hash may do; `None` when there is no such token.
    async fn token_grant(&self, hash: &[u8]) -> Result<Option<TokenGrant>, StoreError>;
    /// Every read token (never its secret), by name.
    async fn tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;
    /// Records that the token with this hash was used at `at`.
    async fn touch_token(&self, hash: &[u8], at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Deletes every token named `name`; how many went.
    async fn revoke_tokens(&self, name: &str) -> Result<u64, StoreError>;
    /// Every admin user, by username.
    async fn users(&self) -> Result<Vec<UserInfo>, StoreError>;
    /// Lets a user sign in or not; deactivating ends their sessions. False when there is no such user.
    async fn set_user_active(&self, username: &str, active: bool) -> Result<bool, StoreError>;
    /// Adds an admin user; a username already taken is `Rejected`.
    async fn create_user(&self, user: &NewUser) -> Result<(), StoreError>;
    /// The password hash of an active user, for logging in.
    async fn user_password_hash(&self, username: &str) -> Result<Option<String>, StoreError>;
    /// Sets a user's password hash and ends every other session of theirs; false when there is no such user.
    async fn set_password(&self, username: &str, hash: &str, keep_session: &str) -> Result<bool, StoreError>;
    /// Saves an admin session under the SHA-256 of its token.
    async fn create_session(&self, session: &AdminSession) -> Result<(), StoreError>;
    /// The unexpired session with this token hash.
    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<AdminSession>, StoreError>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
}

/// What people change through the admin panel: the catalog, events and
/// errors (deletion, replay), and the audit log of it all.
#[async_trait]
pub trait Curation: Send + Sync + std::fmt::Debug + 'static {
    /// Every category with its event types, by name.
    async fn categories(&self) -> Result<Vec<Category>, StoreError>;
    /// Adds (no id) or updates a category (not its name); a name taken is `Rejected`. Returns its id.
    async fn save_category(&self, category: &Category) -> Result<i64, StoreError>;
    /// Adds (no id) or updates an event type (not its name); a name taken is `Rejected`. Returns its id.
    async fn save_event_type(&self, event_type: &EventType) -> Result<i64, StoreError>;
    /// Deletes an event type; false when there was none.
    async fn delete_event_type(&self, id: i64) -> Result<bool, StoreError>;
    /// Deletes one event; false when there was none.
    async fn delete_event(&self, event_id: Uuid) -> Result<bool, StoreError>;
    /// Deletes event errors by row id; how many went.
    async fn delete_errors(&self, ids: &[i64]) -> Result<u64, StoreError>;
    /// In one transaction: stores each replayed valid event (skipping an `event_id`
    /// already stored) and deletes its error; records new reasons (and an edited
    /// payload) on the errors that still fail. Returns how many errors became
    /// events: an error replayed twice at once is counted, and stored, once.
    async fn resolve_errors(&self, replays: &[Replay], username: &str) -> Result<u64, StoreError>;
    /// Appends to the audit log.
    async fn log_action(&self, action: &AdminAction) -> Result<(), StoreError>;
    /// A page of the audit log.
    async fn action_log(&self, query: &ActionQuery) -> Result<Page<LoggedAction, i64>, StoreError>;
    /// The newest audit-log entries, all or about one object.
    async fn actions(&self, object: Option<&str>, limit: usize) -> Result<Vec<AdminAction>, StoreError> {
        let query = ActionQuery { object: object.map(str::to_string), limit, ..Default::default() };
        Ok(self.action_log(&query).await?.items.into_iter().map(|a| a.entry).collect())
    }
}

/// The life of the data after it is written: retention, erasure, rollup
/// repair and backup.
#[async_trait]
pub trait Lifecycle: Send + Sync + std::fmt::Debug + 'static {
    /// Removes up to `limit` rows of `what` from before `cutoff`, in one short
    /// transaction, keeping the rollups' counts; how many went (fewer than
    /// `limit`: nothing older is left). PostgreSQL first drops whole monthly
    /// partitions of events that lie before the cutoff.
    async fn expire(&self, what: Expired, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
    /// Deletes every event and event error of one session in one transaction,
    /// taking their counts out of the rollups.
    async fn erase_session(&self, session_id: &str) -> Result<Erased, StoreError>;
    /// Recounts the rollups from the stored events and errors, one day at a
    /// time, from the oldest stored row on (older buckets, whose rows
    /// retention removed, keep their counts); returns the rows recounted.
    async fn rebuild_rollups(&self, progress: Progress<'_>) -> Result<u64, StoreError>;
    /// Writes a consistent copy of the whole store to `path`, which must not
    /// exist, while writes go on. Only the embedded store can: PostgreSQL has `pg_dump`.
    async fn backup(&self, path: &std::path::Path) -> Result<(), StoreError>;
}

/// A whole backend: every role, plus its schema and its health. Code that
/// needs one role takes that trait (`Arc<dyn EventSink>`, say); an
/// `Arc<dyn Store>` coerces to any of them.
#[async_trait]
pub trait Store: EventSink + EventReader + Access + Curation + Lifecycle {
    /// Brings the schema up to date and seeds a fresh database; returns the
    /// migrations it applied now (`"8 token lifecycle"`), none when up to date.
    async fn migrate(&self) -> Result<Vec<String>, StoreError>;
    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes every connection, waiting for each, once nothing will use the
    /// store again (a clean stop, after the workers have finished). SQLite
    /// then folds its WAL back into the database file, so that the file alone
    /// holds every stored event; PostgreSQL ends its backends cleanly.
    async fn close(&self);
    /// Whether its connections are sockets driven by the tokio runtime
    /// that opened them (so a connection a worker opened on the workers'
    /// runtime would wake every later user through that runtime's niced
    /// thread), rather than threads of their own. `serve` runs its workers
    /// on a runtime of their own (`tasks::Background`) only when neither
    /// backend's is: SQLite and the spool.
    fn runtime_io(&self) -> bool {
        true
    }
}

/// An application from its stored columns; `origins` is the JSON array as text.
pub(crate) fn application(name: String, key: String, origins: &str, active: bool) -> Result<Application, StoreError> {
    let origins = serde_json::from_str(origins).map_err(|e| StoreError::Unavailable(format!("bad origins: {e}")))?;
    Ok(Application { name, key, origins, active })
}

/// Puts an event type under its category (rows come sorted by name).
pub(crate) fn attach_type(categories: &mut [Category], t: EventType) {
    if let Some(c) = categories.iter_mut().find(|c| c.id == Some(t.category_id)) {
        c.types.push(t);
    }
}

/// A read token as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Who or what it is for.
    pub name: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was last used, to the minute.
    pub last_used_at: Option<DateTime<Utc>>,
    /// May erase sessions, not only read.
    pub can_erase: bool,
}

/// What a valid read token may do beyond reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenGrant {
    /// The token's name, for the audit log.
    pub name: String,
    /// May erase a session's events and errors (`DELETE /api/sessions/{id}`).
    pub can_erase: bool,
}

/// An admin user as listed: never the password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Login name.
    pub username: String,
    /// Contact address, maybe empty.
    pub email: String,
    /// May do everything.
    pub is_superuser: bool,
    /// May sign in.
    pub active: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A signed-in admin session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSession {
    /// SHA-256 (hex) of the cookie's token.
    pub token_hash: String,
    /// Who is signed in.
    pub username: String,
    /// The synchronizer token every form of this session must carry.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

/// The migrations of `migrator` that were not among `done` before it ran.
pub(crate) fn applied_now(migrator: &sqlx::migrate::Migrator, done: &[i64]) -> Vec<String> {
    migrator.iter().filter(|m| !done.contains(&m.version)).map(|m| format!("{} {}", m.version, m.description)).collect()
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://…` (`postgresql://…`).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    match url.split(':').next().unwrap_or_default() {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PostgresStore::connect(url).await?)),
        other => Err(StoreError::Setup(format!(
            "unsupported database URL scheme {other:?}: use sqlite://PATH or postgres://USER@HOST/DB"
        ))),
    }
}
