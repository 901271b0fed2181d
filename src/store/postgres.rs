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
    AdminSession, ErrorQuery, EventCursor, EventQuery, Order, Page, Store, StoreError, StoredError, StoredEvent,
    WriteBatch,
};
use crate::admin::users::NewUser;
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
        })
    }
}

const EVENT_COLUMNS: &str =
    "id, event_id, session_id, category, name, data::text AS data, occurred_at, received_at, application";

fn micros_to_time(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Unavailable(format!("bad time {micros}")))
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
            sqlx::query(
                "INSERT INTO event_errors (event_id, raw, reasons, received_at, application)
                 SELECT u.event_id, u.raw, u.reasons::jsonb, u.received_at, u.app
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
                     AS u (event_id, raw, reasons, received_at, app)
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(ids)
            .bind(raws)
            .bind(reasons)
            .bind(received)
            .bind(apps)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
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
            "SELECT id, event_id, raw, reasons::text AS reasons, received_at, application FROM event_errors WHERE TRUE",
        );
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
}
