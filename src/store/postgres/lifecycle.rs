//! Retention (whole partitions first), erasure, rollup rebuilds and merging.

use std::path::Path;

use super::*;
use crate::store::rebuild::{self, Recount};
use crate::store::time_from_micros as at;
use crate::store::{Erased, Expired, Lifecycle, Progress, StatsKind};

/// The advisory lock that lets one process at a time merge or rebuild rollups.
const ROLLUP_LOCK: i64 = 0x7468_655f_6579_6501;

/// How long dropping a partition may wait for its lock before retention tries
/// again at the next upkeep: the wait would hold up every write behind it.
const DROP_LOCK_TIMEOUT: &str = "2s";

impl PostgresStore {
    /// Merges the rollups' delta rows, key by key, into one row each. Runs in
    /// the workers' upkeep; one process at a time, the others skip.
    pub(super) async fn merge_rollups(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ROLLUP_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if !locked {
            return Ok(());
        }
        for (table, key) in [("event_rollups", "category, name"), ("error_rollups", "category, reason")] {
            sqlx::query(&format!(
                "WITH keys AS (SELECT DISTINCT bucket, application, {key} FROM {table} WHERE NOT merged),
                 gone AS (DELETE FROM {table} r USING keys k
                          WHERE (r.bucket, r.application, r.{k1}, r.{k2}) = (k.bucket, k.application, k.{k1}, k.{k2})
                          RETURNING r.*)
                 INSERT INTO {table} (bucket, application, {key}, n, merged)
                 SELECT bucket, application, {key}, SUM(n), TRUE FROM gone
                 GROUP BY bucket, application, {key} HAVING SUM(n) <> 0",
                k1 = key.split(", ").next().unwrap_or_default(),
                k2 = key.split(", ").nth(1).unwrap_or_default(),
            ))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    /// Drops the monthly partitions of events that end by `cutoff` and hold
    /// nothing from after it; returns the rows they held.
    async fn drop_expired_partitions(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
               AND (to_date(substr(c.relname, 8), 'YYYY_MM') + INTERVAL '1 month') <= $1
             ORDER BY c.relname",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut removed = 0;
        for part in parts {
            // The partition is by id, whose time is the event's for derived and
            // tracker ids; a client's own id may say otherwise, so look.
            let (rows, newest): (i64, Option<DateTime<Utc>>) =
                sqlx::query_as(&format!("SELECT COUNT(*), max(occurred_at) FROM \"{part}\""))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(classify)?;
            if newest.is_some_and(|n| n >= cutoff) {
                continue;
            }
            let mut tx = self.pool.begin().await.map_err(classify)?;
            sqlx::query(&format!("SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'"))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query(&format!("DROP TABLE \"{part}\"")).execute(&mut *tx).await.map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            tracing::info!(partition = %part, rows, "retention dropped a month of events");
            removed += rows as u64;
        }
        Ok(removed)
    }
}

#[async_trait]
impl Lifecycle for PostgresStore {
    async fn expire(&self, what: Expired, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let mut removed = 0;
        let statements: &[&str] = match what {
            Expired::Events => {
                removed += self.drop_expired_partitions(cutoff).await?;
                &["DELETE FROM events WHERE event_id = ANY(ARRAY(
                     SELECT event_id FROM events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2))"]
            }
            Expired::Errors => &["DELETE FROM event_errors WHERE id = ANY(ARRAY(
                 SELECT id FROM event_errors WHERE received_at < $1 ORDER BY received_at LIMIT $2))"],
            Expired::Rollups => &[
                "DELETE FROM event_rollups WHERE bucket < $1 AND $2 > 0",
                "DELETE FROM error_rollups WHERE bucket < $1 AND $2 > 0",
            ],
        };
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // Age is not erasure: the counts stay (see migration 0009).
        sqlx::query("SET LOCAL the_eye.keep_rollups = 'on'").execute(&mut *tx).await.map_err(classify)?;
        for sql in statements {
            removed += sqlx::query(sql)
                .bind(cutoff)
                .bind(limit as i64)
                .execute(&mut *tx)
                .await
                .map_err(classify)?
                .rows_affected();
        }
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn erase_session(&self, session_id: &str) -> Result<Erased, StoreError> {
        let session_id = text(session_id);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let mut erased = Erased::default();
        for (sql, out) in [
            ("DELETE FROM events WHERE session_id = $1", &mut erased.events),
            (crate::store::shared::DELETE_SESSION_ERRORS, &mut erased.errors),
        ] {
            *out = sqlx::query(sql).bind(&session_id).execute(&mut *tx).await.map_err(classify)?.rows_affected();
        }
        tx.commit().await.map_err(classify)?;
        Ok(erased)
    }

    async fn rebuild_rollups(&self, progress: Progress<'_>) -> Result<u64, StoreError> {
        rebuild::rebuild(self, progress).await
    }

    async fn backup(&self, _path: &Path) -> Result<(), StoreError> {
        Err(StoreError::Setup(
            "a PostgreSQL store is backed up with pg_dump or continuous archiving (see \"Your data\" in the README)"
                .into(),
        ))
    }
}

#[async_trait]
impl Recount for PostgresStore {
    async fn count(&self, kind: StatsKind) -> Result<u64, StoreError> {
        let sql = match kind {
            StatsKind::Events => "SELECT COUNT(*) FROM events",
            StatsKind::Errors => "SELECT COUNT(*) FROM event_errors",
        };
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&self.pool).await.map_err(classify)?;
        Ok(n as u64)
    }

    async fn first_at_or_after(&self, kind: StatsKind, from: Option<i64>) -> Result<Option<i64>, StoreError> {
        // Separate statements, so that each is one step down the time index.
        let sql = match (kind, from.is_some()) {
            (StatsKind::Events, true) => "SELECT min(occurred_at) FROM events WHERE occurred_at >= $1",
            (StatsKind::Events, false) => "SELECT min(occurred_at) FROM events WHERE $1::timestamptz IS NULL",
            (StatsKind::Errors, true) => "SELECT min(received_at) FROM event_errors WHERE received_at >= $1",
            (StatsKind::Errors, false) => "SELECT min(received_at) FROM event_errors WHERE $1::timestamptz IS NULL",
        };
        let from = from.map(at).transpose()?;
        let first: Option<DateTime<Utc>> =
            sqlx::query_scalar(sql).bind(from).fetch_one(&self.pool).await.map_err(classify)?;
        Ok(first.map(|t| t.timestamp_micros()))
    }

    async fn recount(&self, kind: StatsKind, from: i64, to: i64) -> Result<u64, StoreError> {
        let (clear, fill, sum) = match kind {
            StatsKind::Events => (
                "DELETE FROM event_rollups WHERE bucket >= $1 AND bucket < $2",
                "INSERT INTO event_rollups (bucket, application, category, name, n, merged)
                 SELECT the_eye_bucket(occurred_at), coalesce(application, ''), category, name, COUNT(*), TRUE
                 FROM events WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1, 2, 3, 4",
                "SELECT coalesce(SUM(n), 0)::bigint FROM event_rollups WHERE bucket >= $1 AND bucket < $2",
            ),
            StatsKind::Errors => (
                "DELETE FROM error_rollups WHERE bucket >= $1 AND bucket < $2",
                "INSERT INTO error_rollups (bucket, application, category, reason, n, merged)
                 SELECT the_eye_bucket(received_at), coalesce(application, ''), coalesce(category, ''),
                        coalesce(reasons -> 0 ->> 'code', ''), COUNT(*), TRUE
                 FROM event_errors WHERE received_at >= $1 AND received_at < $2 GROUP BY 1, 2, 3, 4",
                "SELECT coalesce(SUM(n), 0)::bigint FROM error_rollups WHERE bucket >= $1 AND bucket < $2",
            ),
        };
        let (from, to) = (at(from)?, at(to)?);
        // One snapshot for the clearing and the recount: a write committed
        // after it keeps its own delta row and is not in the recount, so it
        // counts once. A merge running at the same moment is waited for.
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ROLLUP_LOCK).execute(&mut *tx).await.map_err(classify)?;
        for sql in [clear, fill] {
            sqlx::query(sql).bind(from).bind(to).execute(&mut *tx).await.map_err(classify)?;
        }
        let counted: i64 = sqlx::query_scalar(sum).bind(from).bind(to).fetch_one(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(counted as u64)
    }
}
