//! Events and event errors: the workers' writes and the read side.

use super::*;
use crate::store::{EventReader, EventSink};

impl_admin_reads!(PostgresStore, db: sqlx::Postgres, read: pool);

const EVENT_COLUMNS: &str =
    "id, event_id, session_id, category, name, data::text AS data, occurred_at, received_at, application";

/// Inserts a batch inside a transaction of the caller's.
pub(super) async fn write_in(tx: &mut sqlx::PgConnection, batch: &WriteBatch) -> Result<(), StoreError> {
    if !batch.events.is_empty() {
        let n = batch.events.len();
        let mut apps: Vec<Option<String>> = Vec::with_capacity(n);
        let (mut ids, mut sessions, mut categories, mut names, mut data, mut occurred, mut received) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in &batch.events {
            let ev = &e.event;
            ids.push(ev.event_id);
            sessions.push(ev.session_id.clone());
            categories.push(ev.category.clone());
            names.push(ev.name.clone());
            data.push(serde_json::to_string(&ev.data).map_err(|e| StoreError::Rejected(e.to_string()))?);
            occurred.push(ev.timestamp.as_datetime());
            received.push(e.received_at);
            apps.push(e.application.clone());
        }
        sqlx::query(
            "INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at, application)
                 SELECT u.event_id, u.session_id, u.category, u.name, u.data::jsonb, u.occurred_at, u.received_at, u.app
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                             $7::timestamptz[], $8::text[])
                     AS u (event_id, session_id, category, name, data, occurred_at, received_at, app)
                 ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(ids)
        .bind(sessions)
        .bind(categories)
        .bind(names)
        .bind(data)
        .bind(occurred)
        .bind(received)
        .bind(apps)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    let event_ids: Vec<Uuid> = batch.events.iter().map(|e| e.event.event_id).collect();
    if !event_ids.is_empty() {
        sqlx::query("DELETE FROM event_errors WHERE event_id = ANY($1)")
            .bind(&event_ids)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    if !batch.errors.is_empty() {
        let ids: Vec<Uuid> = batch.errors.iter().map(|e| e.event_id).collect();
        let raws: Vec<String> = batch.errors.iter().map(|e| without_nul(&e.raw)).collect();
        let reasons = batch
            .errors
            .iter()
            .map(|e| {
                let clean: Vec<Reason> = e
                    .reasons
                    .iter()
                    .map(|r| Reason::new(without_nul(&r.field), without_nul(&r.code), without_nul(&r.message)))
                    .collect();
                serde_json::to_string(&clean).map_err(|e| StoreError::Rejected(e.to_string()))
            })
            .collect::<Result<Vec<String>, _>>()?;
        let received: Vec<DateTime<Utc>> = batch.errors.iter().map(|e| e.received_at).collect();
        let apps: Vec<Option<String>> = batch.errors.iter().map(|e| e.application.clone()).collect();
        let categories: Vec<Option<String>> =
            batch.errors.iter().map(|e| e.category().map(|c| without_nul(&c))).collect();
        let sessions: Vec<Option<String>> =
            batch.errors.iter().map(|e| e.session_id().map(|c| without_nul(&c))).collect();
        sqlx::query(
            "INSERT INTO event_errors (event_id, raw, reasons, received_at, application, category, session_id)
                 SELECT u.event_id, u.raw, u.reasons::jsonb, u.received_at, u.app, u.category, u.session_id
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                             $7::text[])
                     AS u (event_id, raw, reasons, received_at, app, category, session_id)
                 WHERE NOT EXISTS (SELECT 1 FROM events v WHERE v.event_id = u.event_id)
                 ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(ids)
        .bind(raws)
        .bind(reasons)
        .bind(received)
        .bind(apps)
        .bind(categories)
        .bind(sessions)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

#[async_trait]
impl EventSink for PostgresStore {
    async fn catalog(&self) -> Result<(Vec<CategoryDef>, Vec<EventTypeDef>), StoreError> {
        let categories = sqlx::query("SELECT name, active, strict FROM categories")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(|r| CategoryDef { name: r.get("name"), active: r.get("active"), strict: r.get("strict") })
            .collect();
        let types = sqlx::query(
            "SELECT c.name AS category, t.name, t.schema FROM event_types t JOIN categories c ON c.id = t.category_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?
        .iter()
        .map(|r| EventTypeDef { category: r.get("category"), name: r.get("name"), schema: r.get("schema") })
        .collect();
        Ok((categories, types))
    }

    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(classify)?;
        write_in(&mut tx, batch).await?;
        tx.commit().await.map_err(classify)?;
        // Two workers may commit an event and an error with one id at the same
        // moment, each unable to see the other's uncommitted row. Whichever
        // commits second sees the first here, so running this after every
        // commit leaves the event alone, as the rule says. A crash before it
        // runs leaves the batch unacknowledged: the redelivered write removes
        // the error inside its own transaction.
        let ids: Vec<Uuid> =
            batch.events.iter().map(|e| e.event.event_id).chain(batch.errors.iter().map(|e| e.event_id)).collect();
        sqlx::query(
            "DELETE FROM event_errors e WHERE e.event_id = ANY($1)
                 AND EXISTS (SELECT 1 FROM events v WHERE v.event_id = e.event_id)",
        )
        .bind(&ids)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn maintain(&self) -> Result<(), StoreError> {
        // Last month to three months ahead: a worker that runs at least once a
        // quarter keeps every current event out of the default partition. Two
        // processes creating the same partition at once: one gets a duplicate
        // error, and the next run finds the partition there.
        sqlx::query("SELECT the_eye_ensure_partitions(1, 3)").execute(&self.pool).await.map_err(classify)?;
        self.merge_rollups().await
    }
}

#[async_trait]
impl EventReader for PostgresStore {
    async fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent, EventCursor>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE TRUE"));
        push_event_filters(&mut qb, q);
        let (cmp, dir) = match q.order {
            Order::Desc => ("<", "DESC"),
            Order::Asc => (">", "ASC"),
        };
        if let Some(c) = q.after {
            qb.push(format!(" AND (occurred_at, id) {cmp} ("))
                .push_bind(crate::store::time_from_micros(c.timestamp_micros)?)
                .push(", ")
                .push_bind(c.row_id)
                .push(")");
        }
        qb.push(format!(" ORDER BY occurred_at {dir}, id {dir} LIMIT ")).push_bind(q.limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(classify)?;
        let items = rows.iter().map(Self::event_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, q.limit, |e| EventCursor {
            timestamp_micros: e.timestamp.micros(),
            row_id: e.row_id,
        }))
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"))
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(Self::event_from_row).transpose()
    }

    async fn errors(&self, q: &ErrorQuery) -> Result<Page<StoredError, i64>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(
            "SELECT id, event_id, raw, reasons::text AS reasons, received_at, application, category, original_raw,
                    edited_by
             FROM event_errors WHERE TRUE",
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
        let rows = qb.build().fetch_all(&self.pool).await.map_err(classify)?;
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
            "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq),
                    (SELECT coalesce(max(id), 0) FROM event_errors)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    async fn sessions(&self, q: &EventQuery) -> Result<Vec<SessionSummary>, StoreError> {
        self.sessions_in(q).await
    }

    async fn stats(&self, q: &StatsQuery) -> Result<Vec<StatsRow>, StoreError> {
        let (table, columns) = q.plan()?;
        let keys: String = columns.iter().map(|c| format!(", {c}")).collect();
        let mut qb = QueryBuilder::<Postgres>::new("SELECT date_bin(make_interval(secs => ");
        qb.push_bind(q.bucket_secs as f64)
            .push("), bucket, ")
            .push_bind(q.from)
            .push(format!(") AS b{keys}, SUM(n)::bigint AS count FROM {table} WHERE bucket >= "))
            .push_bind(q.from)
            .push(" AND bucket < ")
            .push_bind(q.to);
        for (column, value) in [("category", &q.category), ("name", &q.name), ("application", &q.application)] {
            if let Some(v) = value {
                qb.push(format!(" AND {column} = ")).push_bind(without_nul(v));
            }
        }
        qb.push(format!(" GROUP BY b{keys} HAVING SUM(n) <> 0 ORDER BY b{keys}"));
        let rows = qb.build().fetch_all(&self.pool).await.map_err(classify)?;
        Ok(rows
            .iter()
            .map(|r| StatsRow {
                bucket: r.get("b"),
                key: columns.iter().map(|c| r.get::<String, _>(*c)).collect(),
                count: r.get("count"),
            })
            .collect())
    }
}

/// The filters of an event listing, appended to a query whose `WHERE` is open.
fn push_event_filters(qb: &mut QueryBuilder<'_, Postgres>, q: &EventQuery) {
    if let Some(v) = &q.session_id {
        qb.push(" AND session_id = ").push_bind(v.clone());
    }
    if let Some(v) = &q.category {
        qb.push(" AND category = ").push_bind(v.clone());
    }
    if let Some(v) = &q.name {
        qb.push(" AND name = ").push_bind(v.clone());
    }
    if let Some(v) = &q.application {
        qb.push(" AND application = ").push_bind(without_nul(v));
    }
    if let Some(v) = q.from {
        qb.push(" AND occurred_at >= ").push_bind(v.as_datetime());
    }
    if let Some(v) = q.to {
        qb.push(" AND occurred_at < ").push_bind(v.as_datetime());
    }
    if let Some(v) = &q.search {
        let v = without_nul(v);
        qb.push(" AND (session_id = ").push_bind(v.clone()).push(" OR strpos(data::text, ").push_bind(v).push(") > 0)");
    }
}

/// The filters of an event-error listing, appended to a query whose `WHERE` is open.
fn push_error_filters(qb: &mut QueryBuilder<'_, Postgres>, q: &ErrorQuery) {
    if !q.ids.is_empty() {
        qb.push(" AND id = ANY(").push_bind(q.ids.clone()).push(")");
    }
    if let Some(v) = &q.reason {
        qb.push(" AND reasons @> ").push_bind(serde_json::json!([{ "code": without_nul(v) }])).push("::jsonb");
    }
    if let Some(v) = &q.category {
        qb.push(" AND category = ").push_bind(without_nul(v));
    }
    if let Some(v) = &q.session_id {
        qb.push(" AND session_id = ").push_bind(without_nul(v));
    }
    if let Some(v) = q.from {
        qb.push(" AND received_at >= ").push_bind(v.as_datetime());
    }
    if let Some(v) = q.to {
        qb.push(" AND received_at < ").push_bind(v.as_datetime());
    }
}
