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

use crate::domain::{CategoryDef, EventTypeDef, Reason, Timestamp};
use crate::store::{
    ErrorQuery, EventCursor, EventQuery, Order, Page, Replay, SessionSummary, StatsQuery, StatsRow, Store, StoreError,
    StoredError, StoredEvent, WriteBatch,
};

mod curation;
mod events;
mod lifecycle;

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

// The dialect the shared queries (`store::shared`) expand against.

/// A time as this schema keeps it: `timestamptz`.
fn db_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

/// A `timestamptz` column.
fn read_time(row: &PgRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    row.try_get(column).map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// A nullable `timestamptz` column.
fn read_opt_time(row: &PgRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get(column).map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Text as it is bound: without U+0000, which PostgreSQL refuses.
fn text(s: &str) -> String {
    without_nul(s)
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        // Absent before the first migration: nothing applied yet.
        let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await
            .unwrap_or_default();
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Setup(format!("migrating: {e}")))?;
        crate::store::EventSink::maintain(self).await?;
        Ok(crate::store::applied_now(&MIGRATOR, &done))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(classify)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl_access!(PostgresStore, write: pool, read: pool, json_in: "::jsonb", json_out: "::text");
impl_curation!(PostgresStore, write: pool, read: pool, json_in: "::jsonb", json_out: "::text");
