//! The workers' batches: committed without waiting for the disk, made durable
//! after the write connection is free again.
//!
//! With `synchronous=FULL` every commit fsyncs the WAL while it holds the
//! only write connection, so the next batch waits for the previous one's
//! fsync: a batch of random ids dirties about a page an event, and its commit
//! writes megabytes. Here a batch commits with `synchronous=NORMAL` (its
//! frames are written to the WAL, not synced), the connection goes back to
//! the pool (set to `FULL` again), and only then is the WAL fsynced, so the
//! next batch is written while this one's fsync runs. [`EventSink::write`]
//! still returns only once the batch is on disk, and the worker deletes the
//! spool entries only after that: nothing acknowledged depends on an
//! unsynced write.
//!
//! Why this is as durable as `FULL`: a WAL frame reaches the database file
//! only through a checkpoint, and under `NORMAL` a checkpoint fsyncs the WAL
//! before it copies and the database file after. So once the WAL is synced
//! (here, or by a checkpoint) the batch survives power loss; if the power
//! fails before, recovery stops at the last valid frame and the batch is
//! simply not there, and its spool entries are still there to deliver it
//! again. Other writes on the writer's connection (the admin's, the
//! lifecycle's) keep `FULL`.
//!
//! [`EventSink::write`]: crate::store::EventSink::write

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Sqlite, SqlitePool};

use super::{classify, events::write_in};
use crate::store::{StoreError, WriteBatch};

/// The WAL file of a database on disk.
#[derive(Debug)]
pub(super) struct Wal {
    path: PathBuf,
    dir: PathBuf,
    /// Whether the directory holding the WAL was synced (once, for the
    /// file's own entry, as SQLite does when it creates a journal).
    dir_synced: AtomicBool,
}

impl Wal {
    /// The WAL of the database file `db` (as SQLite names it in
    /// `pragma_database_list`); `None` for an in-memory database (no file).
    pub(super) fn of(db: &Path) -> Option<Arc<Self>> {
        if db.as_os_str().is_empty() {
            return None;
        }
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        Some(Arc::new(Self { path: path.into(), dir, dir_synced: AtomicBool::new(false) }))
    }

    /// The WAL file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// fdatasync of the WAL (and, the first time, of its directory), on a
    /// blocking thread. The file is opened anew each time, so the sync
    /// always reaches the file SQLite writes now.
    async fn sync(self: &Arc<Self>) -> std::io::Result<()> {
        let wal = self.clone();
        tokio::task::spawn_blocking(move || {
            OpenOptions::new().write(true).open(&wal.path)?.sync_data()?;
            if !wal.dir_synced.load(Ordering::Acquire) {
                File::open(&wal.dir)?.sync_all()?;
                wal.dir_synced.store(true, Ordering::Release);
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The writer's connection while it commits without syncing: if it is
/// dropped before `FULL` is set again (an error, a cancelled future), it is
/// closed rather than returned to the pool, so no other write ever runs with
/// `NORMAL`.
struct Relaxed {
    conn: PoolConnection<Sqlite>,
    restored: bool,
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if !self.restored {
            self.conn.close_on_drop();
        }
    }
}

/// Writes `batch` in one transaction on `writer`, commits it without an
/// fsync, frees the connection, then syncs `wal`; returns once the batch is
/// on disk.
pub(super) async fn write(writer: &SqlitePool, wal: &Arc<Wal>, batch: &WriteBatch) -> Result<(), StoreError> {
    let conn = writer.acquire().await.map_err(classify)?;
    let mut relaxed = Relaxed { conn, restored: false };
    sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *relaxed.conn).await.map_err(classify)?;
    let written = async {
        let mut tx = relaxed.conn.begin().await.map_err(classify)?;
        write_in(&mut tx, batch).await?;
        tx.commit().await.map_err(classify)
    }
    .await;
    // Also after a failed batch (rolled back), so that the connection stays.
    let restored = sqlx::query("PRAGMA synchronous = FULL").execute(&mut *relaxed.conn).await;
    relaxed.restored = restored.is_ok();
    drop(relaxed);
    written?;
    restored.map_err(classify)?;
    wal.sync().await.map_err(|e| StoreError::Unavailable(format!("syncing the store's WAL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::event_at_micros;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{EventSink, Store};

    fn batch(n: usize) -> WriteBatch {
        let events = (0..n).map(|i| event_at_micros(&format!("s{i}"), 1_700_000_000_000_000 + i as i64)).collect();
        WriteBatch { events, errors: vec![] }
    }

    async fn synchronous(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&store.writer).await.unwrap()
    }

    async fn stored(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&store.reader).await.unwrap()
    }

    #[test]
    fn the_wal_is_beside_the_database_and_memory_has_none() {
        let wal = Wal::of(Path::new("/data/the-eye.db")).unwrap();
        assert_eq!(wal.path, Path::new("/data/the-eye.db-wal"));
        assert_eq!(wal.dir, Path::new("/data"));
        assert_eq!(Wal::of(Path::new("the-eye.db")).unwrap().dir, Path::new("."));
        assert!(Wal::of(Path::new("")).is_none());
    }

    /// An in-memory database has no WAL to sync: its batches commit as usual.
    #[tokio::test]
    async fn an_in_memory_store_writes_without_a_wal() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.wal.is_none());
        store.write(&batch(5)).await.unwrap();
        assert_eq!(stored(&store).await, 5);
    }

    /// Other writes on the writer's connection must keep `FULL`: after a
    /// batch, and after a batch the store refused, the connection is back at
    /// `FULL` (2), and a refused batch leaves nothing behind.
    #[tokio::test]
    async fn the_writer_is_back_at_full_after_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("the-eye.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.wal.is_some());
        assert_eq!(synchronous(&store).await, 2);

        store.write(&batch(300)).await.unwrap();
        assert_eq!(stored(&store).await, 300);
        assert_eq!(synchronous(&store).await, 2);

        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&store.writer)
            .await
            .unwrap();
        let refused = store.write(&batch(10)).await;
        assert!(matches!(refused, Err(StoreError::Rejected(_))), "{refused:?}");
        assert_eq!(synchronous(&store).await, 2);
        assert_eq!(stored(&store).await, 300);

        sqlx::query("DROP TRIGGER refuse").execute(&store.writer).await.unwrap();
        store.write(&batch(10)).await.unwrap();
        assert_eq!(stored(&store).await, 310);
        store.close().await;
    }
}
