//! The SQLite store: the embedded default, one file in the data dir.
//!
//! One write connection (SQLite has one writer anyway; a pool of writers would
//! only contend for the lock) and a small pool of readers, all in WAL mode so
//! reads never wait for the worker's writes.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::{
    Activity, AdminAction, AdminSession, Category, ErrorQuery, EventCursor, EventQuery, EventType, Order, Page, Replay,
    Store, StoreError, StoredError, StoredEvent, WriteBatch,
};
use crate::domain::user::NewUser;
use crate::domain::{Application, CategoryDef, EventTypeDef, Timestamp};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row INSERT: 8 parameters each, far below SQLite's limit.
const INSERT_CHUNK: usize = 100;

/// SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

/// Sorts sqlx errors into "try again later" and "this data will never go in".
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            // SQLITE_BUSY, LOCKED, IOERR, FULL, CANTOPEN and their extended codes.
            let primary = db.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            match primary {
                Some(5 | 6 | 10 | 13 | 14) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Rejected(e.to_string()),
            }
        }
        sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. } => StoreError::Rejected(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn time(micros: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Unavailable(format!("bad time {micros}")))
}

fn uuid(bytes: &[u8]) -> Result<Uuid, StoreError> {
    Uuid::from_slice(bytes).map_err(|e| StoreError::Unavailable(format!("bad uuid in store: {e}")))
}

impl SqliteStore {
    /// Connects to (creating if needed) the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The spool entry is deleted once this commit returns, so the commit must
            // survive power loss too, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Setup(format!("creating {}: {e}", dir.display())))?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        Ok(Self { writer, reader })
    }

    fn event_from_row(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
        let data: String = row.get("data");
        Ok(StoredEvent {
            row_id: row.get("id"),
            event_id: uuid(row.get::<&[u8], _>("event_id"))?,
            session_id: row.get("session_id"),
            category: row.get("category"),
            name: row.get("name"),
            data: RawValue::from_string(data).map_err(|e| StoreError::Unavailable(e.to_string()))?,
            timestamp: Timestamp::from_micros(row.get("occurred_at"))
                .ok_or_else(|| StoreError::Unavailable("bad occurred_at".into()))?,
            received_at: time(row.get("received_at"))?,
            application: row.get("application"),
        })
    }

    fn error_from_row(row: &SqliteRow) -> Result<StoredError, StoreError> {
        let reasons: String = row.get("reasons");
        Ok(StoredError {
            id: row.get("id"),
            event_id: uuid(row.get::<&[u8], _>("event_id"))?,
            raw: row.get("raw"),
            reasons: serde_json::from_str(&reasons).map_err(|e| StoreError::Unavailable(e.to_string()))?,
            received_at: time(row.get("received_at"))?,
            application: row.get("application"),
            category: row.get("category"),
            original_raw: row.get("original_raw"),
            edited_by: row.get("edited_by"),
        })
    }
}

/// Inserts a batch inside a transaction of the caller's.
///
/// One `event_id` ends as exactly one event or one event error, never both
/// (see [`super::WriteBatch`]): a valid payload replaces an error with its id,
/// and an invalid payload whose id is already an event is a duplicate. SQLite
/// has one writer, so checking inside the transaction is exact.
async fn write_in(tx: &mut sqlx::SqliteConnection, batch: &WriteBatch) -> Result<(), StoreError> {
    let created_at = now_micros();
    // Multi-row VALUES in chunks of a fixed size: full chunks share one SQL
    // text, so that statement is prepared once. Measured against one
    // json_each statement per batch, this inserts about a quarter faster
    // (bench/src/bin/insertbench.rs).
    for chunk in batch.events.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at, created_at, application) ",
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
        qb.push(" ON CONFLICT (event_id) DO NOTHING");
        qb.build().execute(&mut *tx).await.map_err(classify)?;

        let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM event_errors WHERE event_id IN (");
        let mut ids = qb.separated(", ");
        for e in chunk {
            ids.push_bind(e.event.event_id.as_bytes().to_vec());
        }
        qb.push(")");
        qb.build().execute(&mut *tx).await.map_err(classify)?;
    }
    for chunk in batch.errors.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "INSERT INTO event_errors (event_id, raw, reasons, received_at, created_at, application, category) \
             SELECT column1, column2, column3, column4, column5, column6, column7 FROM (",
        );
        qb.push_values(chunk, |mut row, e| {
            row.push_bind(e.event_id.as_bytes().to_vec())
                .push_bind(e.raw.as_str())
                .push_bind(serde_json::to_string(&e.reasons).unwrap_or_else(|_| "[]".into()))
                .push_bind(e.received_at.timestamp_micros())
                .push_bind(created_at)
                .push_bind(e.application.as_deref())
                .push_bind(e.category());
        });
        qb.push(") WHERE NOT EXISTS (SELECT 1 FROM events WHERE events.event_id = column1)");
        qb.push(" ON CONFLICT (event_id) DO NOTHING");
        qb.build().execute(&mut *tx).await.map_err(classify)?;
    }
    Ok(())
}

const EVENT_COLUMNS: &str = "id, event_id, session_id, category, name, data, occurred_at, received_at, application";

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await.map_err(|e| StoreError::Setup(format!("migrating: {e}")))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(classify)?;
        Ok(())
    }

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
        let mut tx = self.writer.begin().await.map_err(classify)?;
        write_in(&mut tx, batch).await?;
        tx.commit().await.map_err(classify)
    }

    async fn events(&self, q: &EventQuery) -> Result<Page<StoredEvent, EventCursor>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
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
        qb.push(format!(" ORDER BY occurred_at {dir}, id {dir} LIMIT ")).push_bind(q.limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.reader).await.map_err(classify)?;
        let items = rows.iter().map(Self::event_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, q.limit, |e| EventCursor {
            timestamp_micros: e.timestamp.micros(),
            row_id: e.row_id,
        }))
    }

    async fn event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?"))
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
        if let Some(v) = q.from {
            qb.push(" AND received_at >= ").push_bind(v.micros());
        }
        if let Some(v) = q.to {
            qb.push(" AND received_at < ").push_bind(v.micros());
        }
        if let Some(after) = q.after {
            qb.push(" AND id < ").push_bind(after);
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.reader).await.map_err(classify)?;
        let items = rows.iter().map(Self::error_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(items, q.limit, |e| e.id))
    }

    async fn create_token(&self, name: &str, hash: &[u8]) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(hash)
            .bind(now_micros())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn token_exists(&self, hash: &[u8]) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM api_tokens WHERE token_hash = ?")
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)?;
        Ok(found.is_some())
    }

    async fn applications(&self) -> Result<Vec<Application>, StoreError> {
        sqlx::query("SELECT name, key, origins, active FROM applications ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?
            .iter()
            .map(|r| super::application(r.get("name"), r.get("key"), r.get("origins"), r.get("active")))
            .collect()
    }

    async fn create_application(&self, app: &Application) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO applications (name, key, origins, active, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&app.name)
            .bind(&app.key)
            .bind(serde_json::to_string(&app.origins).map_err(|e| StoreError::Rejected(e.to_string()))?)
            .bind(app.active)
            .bind(now_micros())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_application_active(&self, name: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE applications SET active = ? WHERE name = ?")
            .bind(active)
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_application_key(&self, name: &str, key: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE applications SET key = ? WHERE name = ?")
            .bind(key)
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_user(&self, user: &NewUser) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (username, email, password_hash, is_superuser, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.username)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(user.is_superuser)
        .bind(now_micros())
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn user_password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = ? AND active")
            .bind(username)
            .fetch_optional(&self.reader)
            .await
            .map_err(classify)
    }

    async fn create_session(&self, session: &AdminSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, username, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&session.token_hash)
        .bind(&session.username)
        .bind(&session.csrf_token)
        .bind(now_micros())
        .bind(session.expires_at.timestamp_micros())
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<AdminSession>, StoreError> {
        let row = sqlx::query(
            "SELECT s.token_hash, s.username, s.csrf_token, s.expires_at FROM admin_sessions s
             JOIN users u ON u.username = s.username AND u.active
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now.timestamp_micros())
        .fetch_optional(&self.reader)
        .await
        .map_err(classify)?;
        row.map(|r| {
            Ok(AdminSession {
                token_hash: r.get("token_hash"),
                username: r.get("username"),
                csrf_token: r.get("csrf_token"),
                expires_at: time(r.get("expires_at"))?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn set_password(&self, username: &str, hash: &str, keep_session: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE username = ?")
            .bind(hash)
            .bind(username)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query("DELETE FROM admin_sessions WHERE username = ? AND token_hash <> ?")
            .bind(username)
            .bind(keep_session)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_event(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM events WHERE event_id = ?")
            .bind(event_id.as_bytes().to_vec())
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_errors(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new("DELETE FROM event_errors WHERE id IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            deleted += qb.build().execute(&self.writer).await.map_err(classify)?.rows_affected();
        }
        Ok(deleted)
    }

    async fn resolve_errors(&self, replays: &[Replay], username: &str) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let mut resolved = 0;
        for r in replays {
            match &r.outcome {
                Ok(event) => {
                    // Only the transaction that deletes the error stores its event.
                    let gone = sqlx::query("DELETE FROM event_errors WHERE id = ?")
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
                    let query = match &r.edited_raw {
                        None => sqlx::query("UPDATE event_errors SET reasons = ? WHERE id = ?").bind(reasons),
                        Some(raw) => sqlx::query(
                            "UPDATE event_errors SET reasons = ?, original_raw = coalesce(original_raw, raw), raw = ?,
                                 category = ?, edited_by = ?, edited_at = ? WHERE id = ?",
                        )
                        .bind(reasons)
                        .bind(raw.clone())
                        .bind(super::category_of(raw))
                        .bind(username.to_string())
                        .bind(now_micros()),
                    };
                    query.bind(r.error_id).execute(&mut *tx).await.map_err(classify)?;
                }
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(resolved)
    }

    async fn categories(&self) -> Result<Vec<Category>, StoreError> {
        let mut categories: Vec<Category> =
            sqlx::query("SELECT id, name, description, active, strict FROM categories ORDER BY name")
                .fetch_all(&self.reader)
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
        let rows = sqlx::query("SELECT id, category_id, name, description, schema FROM event_types ORDER BY name")
            .fetch_all(&self.reader)
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
                "INSERT INTO categories (description, active, strict, name, created_at) VALUES (?, ?, ?, ?, ?)
                 RETURNING id",
            )
            .bind(&c.description)
            .bind(c.active)
            .bind(c.strict)
            .bind(&c.name)
            .bind(now_micros()),
            Some(id) => sqlx::query_scalar(
                "UPDATE categories SET description = ?, active = ?, strict = ? WHERE id = ? RETURNING id",
            )
            .bind(&c.description)
            .bind(c.active)
            .bind(c.strict)
            .bind(id),
        };
        query
            .fetch_optional(&self.writer)
            .await
            .map_err(classify)?
            .ok_or_else(|| StoreError::Rejected("no such category".into()))
    }

    async fn save_event_type(&self, t: &EventType) -> Result<i64, StoreError> {
        let schema = t.schema.as_ref().map(|s| s.to_string());
        let query = match t.id {
            None => sqlx::query_scalar(
                "INSERT INTO event_types (description, schema, category_id, name, created_at) VALUES (?, ?, ?, ?, ?)
                 RETURNING id",
            )
            .bind(&t.description)
            .bind(schema)
            .bind(t.category_id)
            .bind(&t.name)
            .bind(now_micros()),
            Some(id) => {
                sqlx::query_scalar("UPDATE event_types SET description = ?, schema = ? WHERE id = ? RETURNING id")
                    .bind(&t.description)
                    .bind(schema)
                    .bind(id)
            }
        };
        query
            .fetch_optional(&self.writer)
            .await
            .map_err(classify)?
            .ok_or_else(|| StoreError::Rejected("no such event type".into()))
    }

    async fn delete_event_type(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM event_types WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_application_origins(&self, name: &str, origins: &[String]) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE applications SET origins = ? WHERE name = ?")
            .bind(serde_json::to_string(origins).map_err(|e| StoreError::Rejected(e.to_string()))?)
            .bind(name)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    async fn log_action(&self, a: &AdminAction) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO admin_log (at, username, action, object, detail) VALUES (?, ?, ?, ?, ?)")
            .bind(a.at.timestamp_micros())
            .bind(&a.username)
            .bind(&a.action)
            .bind(&a.object)
            .bind(&a.detail)
            .execute(&self.writer)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn actions(&self, object: Option<&str>, limit: usize) -> Result<Vec<AdminAction>, StoreError> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT at, username, action, object, detail FROM admin_log");
        if let Some(o) = object {
            qb.push(" WHERE object = ").push_bind(o.to_string());
        }
        qb.push(" ORDER BY id DESC LIMIT ").push_bind(limit as i64);
        qb.build()
            .fetch_all(&self.reader)
            .await
            .map_err(classify)?
            .iter()
            .map(|r| {
                Ok(AdminAction {
                    at: time(r.get("at"))?,
                    username: r.get("username"),
                    action: r.get("action"),
                    object: r.get("object"),
                    detail: r.get("detail"),
                })
            })
            .collect()
    }

    async fn activity(&self, since: DateTime<Utc>, bucket_secs: i64, buckets: i64) -> Result<Activity, StoreError> {
        let (start, width) = (since.timestamp_micros(), bucket_secs * 1_000_000);
        let end = start + width * buckets;
        let mut activity = Activity::default();
        for (sql, out) in [
            (
                "SELECT (occurred_at - ?1) / ?2 AS b, category, COUNT(*) FROM events
                 WHERE occurred_at >= ?1 AND occurred_at < ?3 GROUP BY b, category",
                &mut activity.events,
            ),
            (
                "SELECT (received_at - ?1) / ?2 AS b, coalesce(category, '') AS c, COUNT(*) FROM event_errors
                 WHERE received_at >= ?1 AND received_at < ?3 GROUP BY b, c",
                &mut activity.errors,
            ),
        ] {
            *out = sqlx::query_as(sql)
                .bind(start)
                .bind(width)
                .bind(end)
                .fetch_all(&self.reader)
                .await
                .map_err(classify)?;
        }
        Ok(activity)
    }

    async fn totals(&self, since: DateTime<Utc>) -> Result<(i64, i64), StoreError> {
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM events WHERE occurred_at >= ?1),
                    (SELECT COUNT(*) FROM event_errors WHERE received_at >= ?1)",
        )
        .bind(since.timestamp_micros())
        .fetch_one(&self.reader)
        .await
        .map_err(classify)
    }
}
