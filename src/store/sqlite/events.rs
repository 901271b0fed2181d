//! Events and event errors: the workers' writes and the read side.

use super::*;
use crate::store::{timestamp_of, EventReader, EventSink, NewEventError};

impl_admin_reads!(SqliteStore, db: sqlx::Sqlite, read: reader);

/// The UTC hour an event happened in, as both indexes on client values key
/// it first: the unique `events_hour_event_id` (migration 0014) and
/// `events_hour_session` (0013). A query uses them only when it writes the
/// same expression.
macro_rules! hour {
    () => {
        "occurred_at / 3600000000"
    };
}

/// [`hour!`] in Rust: both truncate toward zero.
fn hour_of(micros: i64) -> i64 {
    micros / 3_600_000_000
}

/// The rows with one value of `$column` (the parameter bound after it) in
/// whichever hour they happened, as a filter after a `WHERE`. Both columns
/// that take random client values have an index keyed by the hour first
/// (`event_id`: migration 0014; `session_id`: 0013), so this seeks once an
/// hour stored instead of scanning the table: the hours themselves come from
/// a skip scan of such an index, one seek an hour.
macro_rules! on_any_hour {
    ($column:literal) => {
        concat!(
            hour!(),
            " IN (WITH RECURSIVE hours(h) AS (SELECT (SELECT ",
            hour!(),
            " FROM events ORDER BY 1 LIMIT 1) UNION ALL SELECT (SELECT ",
            hour!(),
            " FROM events WHERE ",
            hour!(),
            " > h ORDER BY 1 LIMIT 1) FROM hours WHERE h IS NOT NULL) SELECT h FROM hours) AND ",
            $column,
            " = "
        )
    };
}

/// The rows with one `event_id`, in whichever hour: see [`on_any_hour!`]
/// and [`SESSION_ON_ANY_HOUR`].
pub(super) const ID_ON_ANY_HOUR: &str = on_any_hour!("event_id");

/// The rows of one session, in whichever hour: see [`on_any_hour!`]. A listing
/// ordered by [`hour!`] before `occurred_at` reads them from the index in
/// order, with no sort. Keyed by the hour, not the day, the part of the index
/// live traffic writes stays small enough for the writer's page cache
/// (migration 0013); a look-up pays for it with a seek an hour stored, 720
/// for 30 days (docs/benchmarks.md, twenty-third session).
pub(super) const SESSION_ON_ANY_HOUR: &str = on_any_hour!("session_id");

/// A column of `events` that takes random client values, for deleting its
/// rows by value: [`BY_EVENT_ID`] or [`BY_SESSION`].
pub(super) struct Keyed {
    column: &'static str,
    on_any_hour: &'static str,
}

impl Keyed {
    /// Deletes the rows of a value (bound second) in the hours of a JSON
    /// array (bound first): one seek an hour.
    pub(super) fn delete_in_hours(&self) -> String {
        format!("DELETE FROM events WHERE {} IN (SELECT value FROM json_each(?)) AND {} = ?", hour!(), self.column)
    }

    /// Deletes the rows of a value (bound second) above a rowid (bound first).
    pub(super) fn delete_since(&self) -> String {
        format!("DELETE FROM events WHERE id > ? AND {} = ?", self.column)
    }
}

/// Rows of one `event_id` (an admin's delete).
pub(super) const BY_EVENT_ID: Keyed = Keyed { column: "event_id", on_any_hour: ID_ON_ANY_HOUR };

/// Rows of one session (an erasure).
pub(super) const BY_SESSION: Keyed = Keyed { column: "session_id", on_any_hour: SESSION_ON_ANY_HOUR };

/// Where a reader saw the rows of one value: the hours holding them, as a
/// JSON array, and the largest rowid then. See [`SqliteStore::find_rows`].
pub(super) struct Found {
    pub(super) hours: String,
    last_id: i64,
}

impl SqliteStore {
    /// Finds, on a reader, where the rows with `value` in `key`'s column are.
    ///
    /// Finding them is the skip scan of [`on_any_hour!`], a seek for each
    /// hour stored: 3,600 at 150 days. Run on the writer, it held every
    /// worker's next batch 0.28 s, and 0.6–0.8 s with the pages cold
    /// (`bench/src/bin/deletebench.rs`, 10M events over 150 days); here it
    /// holds nothing. The writer then deletes with [`delete_found`], one seek
    /// for each hour found.
    pub(super) async fn find_rows<T>(&self, key: &Keyed, value: &T) -> Result<Found, StoreError>
    where
        T: for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + Clone + Send + Sync + 'static,
    {
        // One transaction: both answers from the same snapshot.
        let mut tx = self.reader.begin().await.map_err(classify)?;
        let hours: String = sqlx::query_scalar(&format!(
            "SELECT json_group_array(h) FROM (SELECT DISTINCT {} AS h FROM events WHERE {}?)",
            hour!(),
            key.on_any_hour
        ))
        .bind(value.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        let last_id = last_rowid(&mut tx, "events").await?;
        tx.commit().await.map_err(classify)?;
        Ok(Found { hours, last_id })
    }
}

/// Deletes, in a transaction of the writer's, the rows with `value` in
/// `key`'s column that [`SqliteStore::find_rows`] saw, and any stored since:
/// a new row's rowid is one above the largest, so those are a short range
/// of rowids. (The one row this misses: one stored in that instant, in an
/// hour the reader saw none of, reusing the rowid of a row deleted in the
/// same instant.)
pub(super) async fn delete_found<T>(
    tx: &mut sqlx::SqliteConnection,
    key: &Keyed,
    found: &Found,
    value: &T,
) -> Result<u64, StoreError>
where
    T: for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite> + Clone + Send + Sync + 'static,
{
    let mut deleted = sqlx::query(&key.delete_in_hours())
        .bind(found.hours.as_str())
        .bind(value.clone())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
    deleted += sqlx::query(&key.delete_since())
        .bind(found.last_id)
        .bind(value.clone())
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected();
    Ok(deleted)
}

/// Inserts a batch inside a transaction of the caller's.
///
/// An event is a duplicate of a stored one with its id in the same UTC hour
/// (the unique index of migration 0014; the day from 0011 to 0013): a retry
/// or a redelivery carries the same timestamp. One `event_id` ends as
/// exactly one event or one event error, never both (see [`crate::store::WriteBatch`]): a valid payload
/// replaces an error with its id, and an invalid payload whose id is already
/// an event in its payload's hour is a duplicate. SQLite has one writer, so
/// checking inside the transaction is exact.
pub(super) async fn write_in(tx: &mut sqlx::SqliteConnection, batch: &WriteBatch) -> Result<(), StoreError> {
    let created_at = now_micros();
    // Rows this transaction adds get rowids above today's largest, so the
    // rollups count exactly what was inserted (duplicates were skipped), in
    // one statement per table (each asked only when it gets rows).
    let last_event = if batch.events.is_empty() { 0 } else { last_rowid(tx, "events").await? };
    // Multi-row VALUES in chunks of a fixed size: full chunks share one SQL
    // text, so that statement is prepared once. Measured against one
    // json_each statement per batch, this inserts about a quarter faster
    // (bench/src/bin/insertbench.rs).
    //
    // `OR IGNORE`, not `ON CONFLICT DO NOTHING`: a statement that may stop
    // half-way (a NOT NULL or UNIQUE violation aborts by default) keeps a
    // statement journal, a copy of every page it changes, so that it alone
    // can be undone; with random ids that is about a 4 KiB copy an event.
    // Ignoring every violation means no row can abort the statement, so
    // SQLite keeps none: about a fifth less of the writer's CPU an event
    // (bench/src/bin/storebench.rs). The only violation a valid event can
    // meet is the dedupe index's (the NOT NULL columns are bound from
    // values that are never null), and an error in the middle (a full
    // disk) still rolls the whole transaction back.
    for chunk in batch.events.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO events (event_id, session_id, category, name, data, occurred_at, received_at, created_at, application) ",
        );
        qb.push_values(chunk, |mut row, e| {
            let ev = &e.event;
            row.push_bind(ev.event_id.as_bytes().to_vec())
                .push_bind(ev.session_id.as_str())
                .push_bind(ev.category.as_str())
                .push_bind(ev.name.as_str())
                .push_bind(serde_json::to_string(&ev.data).unwrap_or_else(|_| "{}".into()))
                .push_bind(ev.timestamp.micros())
                .push_bind(e.received_at.timestamp_micros())
                .push_bind(created_at)
                .push_bind(e.application.as_deref());
        });
        qb.build().execute(&mut *tx).await.map_err(classify)?;
    }
    if !batch.events.is_empty() {
        sqlx::query(concat!(
            "INSERT INTO event_rollups (bucket, application, category, name, n) SELECT ",
            bucket!("occurred_at"),
            ", coalesce(application, ''), category, name, COUNT(*)
             FROM events WHERE id > $1 GROUP BY 1, 2, 3, 4
             ON CONFLICT DO UPDATE SET n = n + excluded.n"
        ))
        .bind(last_event)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        // One statement for the whole batch (the ids as one JSON array): a
        // statement per chunk cost the batched write rate about a tenth.
        let ids: Vec<String> = batch.events.iter().map(|e| e.event.event_id.simple().to_string()).collect();
        sqlx::query("DELETE FROM event_errors WHERE event_id IN (SELECT unhex(value) FROM json_each(?))")
            .bind(serde_json::to_string(&ids).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    if batch.errors.is_empty() {
        return Ok(());
    }
    // In one batch the event wins, whatever the error's payload says of its
    // time (below, only a stored event in the payload's own hour counts).
    let in_batch: std::collections::HashSet<Uuid> = batch.events.iter().map(|e| e.event.event_id).collect();
    let errors: Vec<&NewEventError> = batch.errors.iter().filter(|e| !in_batch.contains(&e.event_id)).collect();
    if errors.is_empty() {
        return Ok(());
    }
    let last_error = last_rowid(tx, "event_errors").await?;
    // `OR IGNORE` for the reason above: an id already among the errors is
    // a duplicate, and no statement journal is kept.
    for chunk in errors.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO event_errors (event_id, raw, reasons, received_at, created_at, application, category, \
             session_id) SELECT column1, column2, column3, column4, column5, column6, column7, column8 FROM (",
        );
        qb.push_values(chunk, |mut row, e| {
            row.push_bind(e.event_id.as_bytes().to_vec())
                .push_bind(e.raw.as_str())
                .push_bind(serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into()))
                .push_bind(e.received_at.timestamp_micros())
                .push_bind(created_at)
                .push_bind(e.application.as_deref())
                .push_bind(e.category())
                .push_bind(e.session_id())
                // A payload without a readable timestamp has no hour, so no
                // stored event is the same as it (a retry of a stored event
                // would carry that event's timestamp).
                .push_bind(timestamp_of(&e.raw).map(|t| hour_of(t.micros())));
        });
        qb.push(concat!(
            ") WHERE NOT EXISTS (SELECT 1 FROM events WHERE ",
            hour!(),
            " = column9 AND events.event_id = column1)"
        ));
        qb.build().execute(&mut *tx).await.map_err(classify)?;
    }
    sqlx::query(concat!(
        "INSERT INTO error_rollups (bucket, application, category, reason, n) SELECT ",
        bucket!("received_at"),
        ", coalesce(application, ''), coalesce(category, ''), coalesce(json_extract(reasons, '$[0].code'), ''),
           COUNT(*) FROM event_errors WHERE id > $1 GROUP BY 1, 2, 3, 4
         ON CONFLICT DO UPDATE SET n = n + excluded.n"
    ))
    .bind(last_error)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// The largest rowid of `table`, 0 when empty.
async fn last_rowid(tx: &mut sqlx::SqliteConnection, table: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(&format!("SELECT coalesce(max(id), 0) FROM {table}")).fetch_one(&mut *tx).await.map_err(classify)
}

const EVENT_COLUMNS: &str = "id, event_id, session_id, category, name, data, occurred_at, received_at, application";

#[async_trait]
impl EventSink for SqliteStore {
    async fn catalog(&self) -> Result<(Vec<CategoryDef>, Vec<EventTypeDef>), StoreError> {
        let categories = sqlx::query("SELECT name, active, strict FROM categories")
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?
            .iter()
            .map(|r| CategoryDef { name: r.get("name"), active: r.get("active"), strict: r.get("strict") })
            .collect();
        let types = sqlx::query(
            "SELECT c.name AS category, t.name, t.schema FROM event_types t JOIN categories c ON c.id = t.category_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(classify)?
        .iter()
        .map(|r| {
            let schema: Option<String> = r.get("schema");
            let schema = schema
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| StoreError::Setup(format!("stored schema is not JSON: {e}")))?;
            Ok(EventTypeDef { category: r.get("category"), name: r.get("name"), schema })
        })
        .collect::<Result<_, StoreError>>()?;
        Ok((categories, types))
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(wal) = &self.wal {
            return super::wal::write(&self.writer, wal, batch).await;
        }
        let mut tx = self.writer.begin().await.map_err(classify)?;
        write_in(&mut tx, batch).await?;
        tx.commit().await.map_err(classify)
    }
}

#[async_trait]
impl EventReader for SqliteStore {
    async fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent, EventCursor>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
        push_event_filters(&mut qb, q);
        let (cmp, dir) = match q.order {
            Order::Desc => ("<", "DESC"),
            Order::Asc => (">", "ASC"),
        };
        if let Some(c) = q.after {
            qb.push(format!(" AND (occurred_at, id) {cmp} ("))
                .push_bind(c.timestamp_micros)
                .push(", ")
                .push_bind(c.row_id)
                .push(")");
        }
        // One session's rows come from the index keyed by the hour first:
        // ordered by the hour as well (the same order, as the hour never falls
        // while the time rises), they need no sort.
        let hour_first = if q.session_id.is_some() { format!("{} {dir}, ", hour!()) } else { String::new() };
        qb.push(format!(" ORDER BY {hour_first}occurred_at {dir}, id {dir} LIMIT ")).push_bind(q.limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.reader).await.map_err(classify)?;
        let items = rows.iter().map(Self::event_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, q.limit, |e| EventCursor {
            timestamp_micros: e.timestamp.micros(),
            row_id: e.row_id,
        }))
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        // An id a client reused in other hours is several events: the newest answers.
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {ID_ON_ANY_HOUR}? ORDER BY occurred_at DESC, id DESC LIMIT 1"
        ))
        .bind(event_id.as_bytes().to_vec())
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?;
        row.as_ref().map(Self::event_from_row).transpose()
    }

    async fn errors(&self, q: &ErrorQuery) -> Result<Page<StoredError, i64>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, event_id, raw, reasons, received_at, application, category, original_raw, edited_by
             FROM event_errors WHERE 1 = 1",
        );
        push_error_filters(&mut qb, q);
        let (cmp, dir) = match q.order {
            Order::Desc => ("<", "DESC"),
            Order::Asc => (">", "ASC"),
        };
        if let Some(after) = q.after {
            qb.push(format!(" AND id {cmp} ")).push_bind(after);
        }
        qb.push(format!(" ORDER BY id {dir} LIMIT ")).push_bind(q.limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.reader).await.map_err(classify)?;
        let items = rows.iter().map(Self::error_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, q.limit, |e| e.id))
    }

    async fn count_events(&self, q: &EventQuery, cap: u64) -> Result<u64, StoreError> {
        self.count_events_in(q, cap).await
    }

    async fn count_errors(&self, q: &ErrorQuery, cap: u64) -> Result<u64, StoreError> {
        self.count_errors_in(q, cap).await
    }

    async fn events_stored_after(&self, after_row: i64, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        self.events_stored_after_in(after_row, q).await
    }

    async fn newest_rows(&self) -> Result<(i64, i64), StoreError> {
        sqlx::query_as(
            "SELECT (SELECT coalesce(max(id), 0) FROM events), (SELECT coalesce(max(id), 0) FROM event_errors)",
        )
        .fetch_one(&self.reader)
        .await
        .map_err(classify)
    }

    async fn sessions(&self, q: &EventQuery) -> Result<Vec<SessionSummary>, StoreError> {
        self.sessions_in(q).await
    }

    async fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, StoreError> {
        let (table, columns) = q.plan()?;
        let (from, width) = (q.from.timestamp_micros(), q.bucket_secs * 1_000_000);
        let keys: String = columns.iter().map(|c| format!(", {c}")).collect();
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT ");
        qb.push_bind(from)
            .push(" + ((bucket - ")
            .push_bind(from)
            .push(") / ")
            .push_bind(width)
            .push(") * ")
            .push_bind(width)
            .push(format!(" AS b{keys}, SUM(n) AS count FROM {table} WHERE bucket >= "))
            .push_bind(from)
            .push(" AND bucket < ")
            .push_bind(q.to.timestamp_micros());
        for (column, value) in [("category", &q.category), ("name", &q.name), ("application", &q.application)] {
            if let Some(v) = value {
                qb.push(format!(" AND {column} = ")).push_bind(v.clone());
            }
        }
        qb.push(format!(" GROUP BY b{keys} HAVING SUM(n) <> 0 ORDER BY b{keys}"));
        let rows = qb.build().fetch_all(&self.reader).await.map_err(classify)?;
        rows.iter()
            .map(|r| {
                Ok(StatsRow {
                    bucket: time(r.get("b"))?,
                    key: columns.iter().map(|c| r.get::<String, _>(*c)).collect(),
                    count: r.get("count"),
                })
            })
            .collect()
    }
}

/// The filters of an event listing, appended to a query whose `WHERE` is open.
fn push_event_filters(qb: &mut QueryBuilder<'_, Sqlite>, q: &EventQuery) {
    if let Some(v) = &q.session_id {
        qb.push(" AND ").push(SESSION_ON_ANY_HOUR).push_bind(v.clone());
    }
    if let Some(v) = &q.category {
        qb.push(" AND category = ").push_bind(v.clone());
    }
    if let Some(v) = &q.name {
        qb.push(" AND name = ").push_bind(v.clone());
    }
    if let Some(v) = &q.application {
        qb.push(" AND application = ").push_bind(v.clone());
    }
    if let Some(v) = q.from {
        qb.push(" AND occurred_at >= ").push_bind(v.micros());
    }
    if let Some(v) = q.to {
        qb.push(" AND occurred_at < ").push_bind(v.micros());
    }
    if let Some(v) = &q.search {
        qb.push(" AND (session_id = ")
            .push_bind(v.clone())
            .push(" OR instr(data, ")
            .push_bind(v.clone())
            .push(") > 0)");
    }
}

/// The filters of an event-error listing, appended to a query whose `WHERE` is open.
fn push_error_filters(qb: &mut QueryBuilder<'_, Sqlite>, q: &ErrorQuery) {
    if !q.ids.is_empty() {
        qb.push(" AND id IN (");
        let mut ids = qb.separated(", ");
        for id in &q.ids {
            ids.push_bind(*id);
        }
        qb.push(")");
    }
    if let Some(v) = &q.reason {
        qb.push(" AND EXISTS (SELECT 1 FROM json_each(reasons) WHERE json_extract(value, '$.code') = ")
            .push_bind(v.clone())
            .push(")");
    }
    if let Some(v) = &q.category {
        qb.push(" AND category = ").push_bind(v.clone());
    }
    if let Some(v) = &q.session_id {
        qb.push(" AND session_id = ").push_bind(v.clone());
    }
    if let Some(v) = q.from {
        qb.push(" AND received_at >= ").push_bind(v.micros());
    }
    if let Some(v) = q.to {
        qb.push(" AND received_at < ").push_bind(v.micros());
    }
}
