//! The PostgreSQL store, for the scaled-out deployment: many ingest nodes and
//! workers share one database.
//!
//! A batch is one transaction of one `INSERT … SELECT FROM UNNEST(arrays…)` per
//! table: a fixed statement whatever the batch size, with every row sent as a
//! column array. `ON CONFLICT (event_id) DO NOTHING` makes a retried batch
//! harmless; that is also what makes a connection lost during COMMIT safe: the
//! worker cannot know whether the commit happened, retries, and the retry
//! inserts exactly what is missing.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::{
    Activity, AdminAction, AdminSession, Category, ErrorQuery, EventCursor, EventQuery, EventType, Order, Page, Replay,
    Store, StoreError, StoredError, StoredEvent, WriteBatch,
};
use crate::domain::user::NewUser;
use crate::domain::{Application, CategoryDef, EventTypeDef, Reason, Timestamp};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// PostgreSQL implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Sorts errors by SQLSTATE class: data exceptions (22), integrity (23) and
/// program limits (54) are the data's fault; everything else (connection 08,
/// resources 53, shutdown 57, conflicts 40, …) is worth retrying.
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref().and_then(|c| c.get(..2)) {
            Some("22" | "23" | "54") => StoreError::Rejected(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        },
        sqlx::Error::Encode(_) => StoreError::Rejected(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// PostgreSQL refuses U+0000 in text and jsonb. Valid events cannot contain it
/// (the domain refuses it); raw payloads and reasons of errors are shown to
/// people, so there it becomes U+FFFD rather than blocking the row.
fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

impl PostgresStore {
    /// Connects to the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Setup(format!("bad PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Setup(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(Self { pool })
    }

    fn event_from_row(row: &PgRow) -> Result<StoredEvent, StoreError> {
        let data: String = row.get("data");
        let occurred: DateTime<Utc> = row.get("occurred_at");
        Ok(StoredEvent {
            row_id: row.get("id"),
            event_id: row.get("event_id"),
            session_id: row.get("session_id"),
            category: row.get("category"),
            name: row.get("name"),
            data: RawValue::from_string(data).map_err(|e| StoreError::Unavailable(e.to_string()))?,
            timestamp: Timestamp::from(occurred),
            received_at: row.get("received_at"),
            application: row.get("application"),
        })
    }

    fn error_from_row(row: &PgRow) -> Result<StoredError, StoreError> {
        let reasons: String = row.get("reasons");
        Ok(StoredError {
            id: row.get("id"),
            event_id: row.get("event_id"),
            raw: row.get("raw"),
            reasons: serde_json::from_str(&reasons).map_err(|e| StoreError::Unavailable(e.to_string()))?,
            received_at: row.get("received_at"),
            application: row.get("application"),
            category: row.get("category"),
            original_raw: row.get("original_raw"),
            edited_by: row.get("edited_by"),
        })
    }
}

const EVENT_COLUMNS: &str =
    "id, event_id, session_id, category, name, data::text AS data, occurred_at, received_at, application";

fn micros_to_time(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Unavailable(format!("bad time {micros}")))
}

/// Inserts a batch inside a transaction of the caller's.
async fn write_in(tx: &mut sqlx::PgConnection, batch: &WriteBatch) -> Result<(), StoreError> {
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
        sqlx::query(
            "INSERT INTO event_errors (event_id, raw, reasons, received_at, application, category)
                 SELECT u.event_id, u.raw, u.reasons::jsonb, u.received_at, u.app, u.category
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[])
                     AS u (event_id, raw, reasons, received_at, app, category)
                 WHERE NOT EXISTS (SELECT 1 FROM events v WHERE v.event_id = u.event_id)
                 ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(ids)
        .bind(raws)
        .bind(reasons)
        .bind(received)
        .bind(apps)
        .bind(categories)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Setup(format!("migrating: {e}")))?;
        self.maintain().await
    }

    async fn maintain(&self) -> Result<(), StoreError> {
        // Last month to three months ahead: a worker that runs at least once a
        // quarter keeps every current event out of the default partition. Two
        // processes creating the same partition at once: one gets a duplicate
        // error, and the next run finds the partition there.
        sqlx::query("SELECT the_eye_ensure_partitions(1, 3)").execute(&self.pool).await.map_err(classify)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(classify)?;
        Ok(())
    }

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

    async fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent, EventCursor>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE TRUE"));
        if let Some(v) = &q.session_id {
            qb.push(" AND session_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.category {
            qb.push(" AND category = ").push_bind(v.clone());
        }
        if let Some(v) = &q.name {
            qb.push(" AND name = ").push_bind(v.clone());
        }
        if let Some(v) = q.from {
            qb.push(" AND occurred_at >= ").push_bind(v.as_datetime());
        }
        if let Some(v) = q.to {
            qb.push(" AND occurred_at < ").push_bind(v.as_datetime());
        }
        if let Some(v) = &q.search {
            let v = without_nul(v);
            qb.push(" AND (session_id = ")
                .push_bind(v.clone())
                .push(" OR strpos(data::text, ")
                .push_bind(v)
                .push(") > 0)");
        }
        let (cmp, dir) = match q.order {
            Order::Desc => ("<", "DESC"),
            Order::Asc => (">", "ASC"),
        };
        if let Some(c) = q.after {
            qb.push(format!(" AND (occurred_at, id) {cmp} ("))
                .push_bind(micros_to_time(c.timestamp_micros)?)
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
        if !q.ids.is_empty() {
            qb.push(" AND id = ANY(").push_bind(q.ids.clone()).push(")");
        }
        if let Some(v) = &q.reason {
            qb.push(" AND reasons @> ").push_bind(serde_json::json!([{ "code": without_nul(v) }])).push("::jsonb");
        }
        if let Some(v) = &q.category {
            qb.push(" AND category = ").push_bind(without_nul(v));
        }
        if let Some(v) = q.from {
            qb.push(" AND received_at >= ").push_bind(v.as_datetime());
        }
        if let Some(v) = q.to {
            qb.push(" AND received_at < ").push_bind(v.as_datetime());
        }
        if let Some(after) = q.after {
            qb.push(" AND id < ").push_bind(after);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(classify)?;
        let items = rows.iter().map(Self::error_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, q.limit, |e| e.id))
    }

    async fn create_token(&self, name: &str, hash: &[u8]) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (name, token_hash) VALUES ($1, $2)")
            .bind(name)
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn token_exists(&self, hash: &[u8]) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(found.is_some())
    }

    async fn applications(&self) -> Result<Vec<Application>, StoreError> {
        sqlx::query("SELECT name, key, origins::text AS origins, active FROM applications ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(|r| super::application(r.get("name"), r.get("key"), r.get("origins"), r.get("active")))
            .collect()
    }

    async fn create_application(&self, app: &Application) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO applications (name, key, origins, active) VALUES ($1, $2, $3::jsonb, $4)")
            .bind(&app.name)
            .bind(&app.key)
            .bind(serde_json::to_string(&app.origins).map_err(|e| StoreError::Rejected(e.to_string()))?)
            .bind(app.active)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_application_active(&self, name: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE applications SET active = $1 WHERE name = $2")
            .bind(active)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_application_key(&self, name: &str, key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE applications SET key = $1 WHERE name = $2")
            .bind(key)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO users (username, email, password_hash, is_superuser) VALUES ($1, $2, $3, $4)")
            .bind(&user.username)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.is_superuser)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn user_password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = $1 AND active")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)
    }

    async fn create_session(&self, session: &AdminSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, username, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&session.token_hash)
        .bind(&session.username)
        .bind(&session.csrf_token)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<AdminSession>, StoreError> {
        let row = sqlx::query(
            "SELECT s.token_hash, s.username, s.csrf_token, s.expires_at FROM admin_sessions s
             JOIN users u ON u.username = s.username AND u.active
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.map(|r| AdminSession {
            token_hash: r.get("token_hash"),
            username: r.get("username"),
            csrf_token: r.get("csrf_token"),
            expires_at: r.get("expires_at"),
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_password(&self, username: &str, hash: &str, keep_session: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(hash)
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query("DELETE FROM admin_sessions WHERE username = $1 AND token_hash <> $2")
            .bind(username)
            .bind(keep_session)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_event(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE event_id = $1")
            .bind(event_id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_errors(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM event_errors WHERE id = ANY($1)")
            .bind(ids.to_vec())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }

    async fn resolve_errors(&self, replays: &[Replay], username: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut resolved = 0;
        for r in replays {
            match &r.outcome {
                Ok(event) => {
                    // Only the transaction that deletes the error stores its event.
                    let gone = sqlx::query("DELETE FROM event_errors WHERE id = $1")
                        .bind(r.error_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?
                        .rows_affected();
                    if gone > 0 {
                        let batch = WriteBatch { events: vec![event.clone()], errors: vec![] };
                        write_in(&mut tx, &batch).await?;
                        resolved += gone;
                    }
                }
                Err(reasons) => {
                    let reasons = serde_json::to_string(reasons).map_err(|e| StoreError::Rejected(e.to_string()))?;
                    let reasons = without_nul(&reasons);
                    let query = match &r.edited_raw {
                        None => sqlx::query("UPDATE event_errors SET reasons = $1::jsonb WHERE id = $2")
                            .bind(reasons)
                            .bind(r.error_id),
                        Some(raw) => sqlx::query(
                            "UPDATE event_errors SET reasons = $1::jsonb, original_raw = coalesce(original_raw, raw),
                                 raw = $3, category = $4, edited_by = $5, edited_at = now() WHERE id = $2",
                        )
                        .bind(reasons)
                        .bind(r.error_id)
                        .bind(without_nul(raw))
                        .bind(super::category_of(raw).map(|c| without_nul(&c)))
                        .bind(username.to_string()),
                    };
                    query.execute(&mut *tx).await.map_err(classify)?;
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(resolved)
    }

    async fn categories(&self) -> Result<Vec<Category>, StoreError> {
        let mut categories: Vec<Category> =
            sqlx::query("SELECT id, name, description, active, strict FROM categories ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?
                .iter()
                .map(|r| Category {
                    id: Some(r.get("id")),
                    name: r.get("name"),
                    description: r.get("description"),
                    active: r.get("active"),
                    strict: r.get("strict"),
                    types: Vec::new(),
                })
                .collect();
        let rows = sqlx::query(
            "SELECT id, category_id, name, description, schema::text AS schema FROM event_types ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        for r in rows {
            let schema: Option<String> = r.get("schema");
            super::attach_type(
                &mut categories,
                EventType {
                    id: Some(r.get("id")),
                    category_id: r.get("category_id"),
                    name: r.get("name"),
                    description: r.get("description"),
                    schema: schema.and_then(|s| serde_json::from_str(&s).ok()),
                },
            );
        }
        Ok(categories)
    }

    async fn save_category(&self, c: &Category) -> Result<i64, StoreError> {
        let query = match c.id {
            None => sqlx::query_scalar(
                "INSERT INTO categories (description, active, strict, name) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(without_nul(&c.description))
            .bind(c.active)
            .bind(c.strict)
            .bind(without_nul(&c.name)),
            Some(id) => sqlx::query_scalar(
                "UPDATE categories SET description = $1, active = $2, strict = $3 WHERE id = $4 RETURNING id",
            )
            .bind(without_nul(&c.description))
            .bind(c.active)
            .bind(c.strict)
            .bind(id),
        };
        query
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .ok_or_else(|| StoreError::Rejected("no such category".into()))
    }

    async fn save_event_type(&self, t: &EventType) -> Result<i64, StoreError> {
        let schema = t.schema.as_ref().map(|s| without_nul(&s.to_string()));
        let query = match t.id {
            None => sqlx::query_scalar(
                "INSERT INTO event_types (description, schema, category_id, name) VALUES ($1, $2::jsonb, $3, $4)
                 RETURNING id",
            )
            .bind(without_nul(&t.description))
            .bind(schema)
            .bind(t.category_id)
            .bind(without_nul(&t.name)),
            Some(id) => sqlx::query_scalar(
                "UPDATE event_types SET description = $1, schema = $2::jsonb WHERE id = $3 RETURNING id",
            )
            .bind(without_nul(&t.description))
            .bind(schema)
            .bind(id),
        };
        query
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .ok_or_else(|| StoreError::Rejected("no such event type".into()))
    }

    async fn delete_event_type(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM event_types WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_application_origins(&self, name: &str, origins: &[String]) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE applications SET origins = $1::jsonb WHERE name = $2")
            .bind(serde_json::to_string(origins).map_err(|e| StoreError::Rejected(e.to_string()))?)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn log_action(&self, a: &AdminAction) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO admin_log (at, username, action, object, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(a.at)
            .bind(without_nul(&a.username))
            .bind(without_nul(&a.action))
            .bind(without_nul(&a.object))
            .bind(without_nul(&a.detail))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn actions(&self, object: Option<&str>, limit: usize) -> Result<Vec<AdminAction>, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new("SELECT at, username, action, object, detail FROM admin_log");
        if let Some(o) = object {
            qb.push(" WHERE object = ").push_bind(without_nul(o));
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
        Ok(qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?
            .iter()
            .map(|r| AdminAction {
                at: r.get("at"),
                username: r.get("username"),
                action: r.get("action"),
                object: r.get("object"),
                detail: r.get("detail"),
            })
            .collect())
    }

    async fn activity(&self, since: DateTime<Utc>, bucket_secs: i64, buckets: i64) -> Result<Activity, StoreError> {
        let end = since + chrono::Duration::seconds(bucket_secs * buckets);
        let mut activity = Activity::default();
        for (sql, out) in [
            (
                "SELECT floor(extract(epoch FROM occurred_at - $1) / $2)::bigint AS b, category, COUNT(*)
                 FROM events WHERE occurred_at >= $1 AND occurred_at < $3 GROUP BY b, category",
                &mut activity.events,
            ),
            (
                "SELECT floor(extract(epoch FROM received_at - $1) / $2)::bigint AS b, coalesce(category, '') AS c,
                        COUNT(*)
                 FROM event_errors WHERE received_at >= $1 AND received_at < $3 GROUP BY b, c",
                &mut activity.errors,
            ),
        ] {
            *out = sqlx::query_as(sql)
                .bind(since)
                .bind(bucket_secs as f64)
                .bind(end)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        }
        Ok(activity)
    }

    async fn totals(&self, since: DateTime<Utc>) -> Result<(i64, i64), StoreError> {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE occurred_at >= $1),
                    (SELECT COUNT(*) FROM event_errors WHERE received_at >= $1)",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }
}
