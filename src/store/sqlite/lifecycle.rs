//! Retention, erasure, rollup rebuilds and online backup.

use std::path::Path;

use super::events::{delete_found, BY_SESSION};
use super::*;
use crate::store::rebuild::{self, Recount};
use crate::store::{Erased, Expired, Lifecycle, Progress, StatsKind};

#[async_trait]
impl Lifecycle for SqliteStore {
    async fn expire(&self, what: Expired, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let statements: &[&str] = match what {
            Expired::Events => &["DELETE FROM events WHERE id IN
                 (SELECT id FROM events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)"],
            Expired::Errors => &["DELETE FROM event_errors WHERE id IN
                 (SELECT id FROM event_errors WHERE received_at < $1 ORDER BY received_at LIMIT $2)"],
            // Small tables: one statement each, whatever the limit.
            Expired::Rollups => &[
                "DELETE FROM event_rollups WHERE bucket < $1 AND $2 > 0",
                "DELETE FROM error_rollups WHERE bucket < $1 AND $2 > 0",
            ],
        };
        let mut tx = self.writer.begin().await.map_err(classify)?;
        // Age is not erasure: the counts stay (see migration 0009).
        sqlx::query("UPDATE rollup_hold SET held = 1").execute(&mut *tx).await.map_err(classify)?;
        let mut removed = 0;
        for sql in statements {
            removed += sqlx::query(sql)
                .bind(cutoff.timestamp_micros())
                .bind(limit as i64)
                .execute(&mut *tx)
                .await
                .map_err(classify)?
                .rows_affected();
        }
        sqlx::query("UPDATE rollup_hold SET held = 0").execute(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(removed)
    }

    async fn erase_session(&self, session_id: &str) -> Result<Erased, StoreError> {
        // The session's hours are found on a reader (see `find_rows`), so the
        // writer holds its lock only for the deletes.
        let session_id = session_id.to_owned();
        let found = self.find_rows(&BY_SESSION, &session_id).await?;
        let mut tx = self.writer.begin().await.map_err(classify)?;
        let events = delete_found(&mut tx, &BY_SESSION, &found, &session_id).await?;
        let errors = sqlx::query(crate::store::shared::DELETE_SESSION_ERRORS)
            .bind(&session_id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?
            .rows_affected();
        tx.commit().await.map_err(classify)?;
        Ok(Erased { events, errors })
    }

    async fn rebuild_rollups(&self, progress: Progress<'_>) -> Result<u64, StoreError> {
        rebuild::rebuild(self, progress).await
    }

    async fn backup(&self, path: &Path) -> Result<(), StoreError> {
        let io = |what: &str, e: std::io::Error| StoreError::Setup(format!("{what} {}: {e}", path.display()));
        if path.exists() {
            return Err(StoreError::Setup(format!("{} exists already; give a new file name", path.display())));
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name =
            path.file_name().ok_or_else(|| StoreError::Setup(format!("{} is not a file name", path.display())))?;
        // Written beside the target and renamed into place: a failed backup
        // leaves nothing under the final name.
        let partial = dir.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
        let _ = std::fs::remove_file(&partial);
        let copied = sqlx::query("VACUUM INTO $1")
            .bind(partial.to_string_lossy().into_owned())
            .execute(&self.reader)
            .await
            .map_err(|e| StoreError::Setup(format!("copying the store to {}: {e}", partial.display())));
        let finished = copied.and_then(|_| {
            std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(|e| io("syncing", e))?;
            std::fs::rename(&partial, path).map_err(|e| io("renaming the copy to", e))?;
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("syncing the directory of", e))
        });
        if finished.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        finished
    }
}

#[async_trait]
impl Recount for SqliteStore {
    async fn count(&self, kind: StatsKind) -> Result<u64, StoreError> {
        let sql = match kind {
            StatsKind::Events => "SELECT COUNT(*) FROM events",
            StatsKind::Errors => "SELECT COUNT(*) FROM event_errors",
        };
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&self.reader).await.map_err(classify)?;
        Ok(n as u64)
    }

    async fn first_at_or_after(&self, kind: StatsKind, from: Option<i64>) -> Result<Option<i64>, StoreError> {
        // Separate statements, so that each is one step down the time index.
        let sql = match kind {
            StatsKind::Events => "SELECT min(occurred_at) FROM events WHERE occurred_at >= $1",
            StatsKind::Errors => "SELECT min(received_at) FROM event_errors WHERE received_at >= $1",
        };
        let from = from.unwrap_or(i64::MIN);
        sqlx::query_scalar(sql).bind(from).fetch_one(&self.reader).await.map_err(classify)
    }

    async fn recount(&self, kind: StatsKind, from: i64, to: i64) -> Result<u64, StoreError> {
        let (clear, fill, sum) = match kind {
            StatsKind::Events => (
                "DELETE FROM event_rollups WHERE bucket >= $1 AND bucket < $2",
                concat!(
                    "INSERT INTO event_rollups (bucket, application, category, name, n) SELECT ",
                    bucket!("occurred_at"),
                    ", coalesce(application, ''), category, name, COUNT(*) FROM events
                     WHERE occurred_at >= $1 AND occurred_at < $2 GROUP BY 1, 2, 3, 4"
                ),
                "SELECT coalesce(SUM(n), 0) FROM event_rollups WHERE bucket >= $1 AND bucket < $2",
            ),
            StatsKind::Errors => (
                "DELETE FROM error_rollups WHERE bucket >= $1 AND bucket < $2",
                concat!(
                    "INSERT INTO error_rollups (bucket, application, category, reason, n) SELECT ",
                    bucket!("received_at"),
                    ", coalesce(application, ''), coalesce(category, ''),
                       coalesce(json_extract(reasons, '$[0].code'), ''), COUNT(*) FROM event_errors
                     WHERE received_at >= $1 AND received_at < $2 GROUP BY 1, 2, 3, 4"
                ),
                "SELECT coalesce(SUM(n), 0) FROM error_rollups WHERE bucket >= $1 AND bucket < $2",
            ),
        };
        let mut tx = self.writer.begin().await.map_err(classify)?;
        for sql in [clear, fill] {
            sqlx::query(sql).bind(from).bind(to).execute(&mut *tx).await.map_err(classify)?;
        }
        let counted: i64 = sqlx::query_scalar(sum).bind(from).bind(to).fetch_one(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(counted as u64)
    }
}
