//! The SQLite store: the embedded default, one file in the data dir.
//!
//! One write connection (SQLite has one writer anyway; a pool of writers would
//! only contend for the lock) and a small pool of readers, all in WAL mode so
//! reads never wait for the worker's writes.
//!
//! A checkpointer of its own ([`checkpoint`]) moves committed pages from the
//! WAL into the database file, so the writer's commits never wait for that;
//! and the workers' batches are fsynced after the write connection is free
//! again ([`wal`]), so the next batch is written during the last one's fsync.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use crate::domain::{CategoryDef, EventTypeDef, Timestamp};
use crate::store::time_from_micros as time;
use crate::store::{
    ErrorQuery, EventCursor, EventQuery, Order, Page, Replay, SessionSummary, StatsQuery, StatsRow, Store, StoreError,
    StoredError, StoredEvent, WriteBatch,
};

/// The rollup bucket (5 minutes) of a µs time column, floored (also before 1970).
macro_rules! bucket {
    ($column:literal) => {
        concat!($column, " - ((", $column, " % 300000000) + 300000000) % 300000000")
    };
}

mod checkpoint;
mod curation;
mod events;
mod lifecycle;
mod wal;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The writer's page cache, in KiB (SQLite's default is 2,000). Random event
/// ids land each insert on a different leaf of the unique index; with 10M
/// events stored, 2 MB no longer holds even the indexes' inner pages, and
/// every insert read several pages back from the OS. 8 MB raised the
/// single-event rate on that store by about 6 % (5 runs in turns, 11.3k to
/// 12.0k events/s on the means) for 8 MB of RSS (docs/benchmarks.md).
const WRITER_CACHE_KIB: u32 = 8192;

/// The name prefix of the threads that write the store (the writer's and
/// the checkpointer's connections), which run at a lower CPU priority.
const WRITER_THREADS: &str = "eye-store-w";

/// Connections that read, each on a thread of its own (see `connect`).
const READERS: u32 = 4;

/// Rows per multi-row INSERT: 8 parameters each, far below SQLite's limit.
const INSERT_CHUNK: usize = 100;

/// SQLite implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Stopped by [`Store::close`], or when the last handle on the store is dropped.
    checkpointer: Arc<checkpoint::Checkpointer>,
    /// Where the workers' batches are synced after their commit ([`wal`]);
    /// `None` for an in-memory database, whose batches commit as usual.
    wal: Option<Arc<wal::Wal>>,
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
            .busy_timeout(Duration::from_secs(5))
            // sqlx runs each connection on a thread of its own: named, a
            // profile (and `top -H`) tells the store's from the spool's.
            .thread_name(|n| format!("eye-store-r{n}"));
        // The file is made if missing, never its directory: a typo in the URL
        // must not quietly start an empty database somewhere new.
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() && !dir.is_dir() {
                return Err(StoreError::Setup(format!(
                    "the directory {} of the SQLite database {url} does not exist: create it, or correct the URL",
                    dir.display()
                )));
            }
        }
        let writer_options = options
            .clone()
            .pragma("wal_autocheckpoint", checkpoint::WRITER_BACKSTOP_PAGES.to_string())
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            // A statement that changes many rows and may abort keeps a
            // statement journal (the pages it changes, to undo it alone); on
            // files that journal spilled into a new /var/tmp/etilqs_* file
            // every few commits. The batches' inserts no longer keep one
            // (`OR IGNORE`, events.rs); retention's deletes and the rollups'
            // upserts still do. In memory it costs a few MB at most, held
            // while the statement runs (docs/benchmarks.md).
            .pragma("temp_store", "memory")
            .thread_name(|n| format!("{WRITER_THREADS}{n}"));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // Also when the pool replaces a connection it lost.
            .after_connect(|_, _| {
                Box::pin(async {
                    crate::priority::lower_threads_named(WRITER_THREADS);
                    Ok(())
                })
            })
            .connect_with(writer_options)
            .await
            .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        // Every reader is opened now and kept: sqlx starts a connection's
        // thread from the thread that opens it, and a thread starts at its
        // creator's nice. Opened later by whichever task first needed it, a
        // reader opened by a worker (at the lower priority of the workers'
        // runtime, `tasks::Background`) would serve the API's and the
        // admin's reads at that priority too, and it cannot be raised again.
        // (A reader lost to an error is opened again by whoever needs it
        // next; a local SQLite file hardly ever loses one.)
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        let opened = futures_util::future::try_join_all((0..READERS).map(|_| reader.acquire()))
            .await
            .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        drop(opened);
        // The file SQLite itself opened (none for an in-memory database),
        // if its journal is a WAL.
        let (mode, file): (String, String) = sqlx::query_as(
            "SELECT (SELECT journal_mode FROM pragma_journal_mode), file FROM pragma_database_list WHERE name = 'main'",
        )
        .fetch_one(&writer)
        .await
        .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        let wal = if mode.eq_ignore_ascii_case("wal") { wal::Wal::of(std::path::Path::new(&file)) } else { None };
        let checkpointer = checkpoint::spawn(options.thread_name(|n| format!("{WRITER_THREADS}{n}")), wal.clone())
            .await
            .map_err(|e| StoreError::Setup(format!("opening {url}: {e}")))?;
        crate::priority::lower_threads_named(WRITER_THREADS);
        Ok(Self { writer, reader, checkpointer: Arc::new(checkpointer), wal })
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

// The dialect the shared queries (`store::shared`) expand against.

/// A time as this schema keeps it: microseconds since the epoch.
fn db_time(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A time column, from microseconds.
fn read_time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    time(row.get(column))
}

/// A nullable time column, from microseconds.
fn read_opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.get::<Option<i64>, _>(column).map(time).transpose()
}

/// Text as it is bound: SQLite takes any string.
fn text(s: &str) -> String {
    s.to_string()
}

#[async_trait]
impl Store for SqliteStore {
    /// Each connection is a thread of sqlx's.
    fn runtime_io(&self) -> bool {
        false
    }

    async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        // Absent before the first migration: nothing applied yet.
        let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.writer)
            .await
            .unwrap_or_default();
        // A migration that builds an index sorts the whole table. With the
        // writer's `temp_store=memory` that sort stayed in memory: 4.7 GB of
        // RSS for 50 million events (docs/benchmarks.md, twenty-fourth
        // session). In files (SQLite's temporary directory, `SQLITE_TMPDIR`)
        // it needs disk the size of the index instead, and the writer's own
        // setting is put back for the writes that follow. A failed migration
        // says so before a failed restore does.
        let mut conn = self.writer.acquire().await.map_err(classify)?;
        let kept: i64 = sqlx::query_scalar("PRAGMA temp_store").fetch_one(&mut *conn).await.map_err(classify)?;
        sqlx::query("PRAGMA temp_store = FILE").execute(&mut *conn).await.map_err(classify)?;
        let ran = MIGRATOR.run_direct(&mut *conn).await;
        let restored = sqlx::query(&format!("PRAGMA temp_store = {kept}")).execute(&mut *conn).await;
        ran.map_err(|e| StoreError::Setup(format!("migrating: {e}")))?;
        restored.map_err(classify)?;
        Ok(crate::store::applied_now(&MIGRATOR, &done))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await.map_err(classify)?;
        Ok(())
    }

    /// The writer's connection closes last: SQLite checkpoints the whole WAL
    /// when the last connection to a database closes, and deletes the file.
    ///
    /// Before that the writer checkpoints everything and empties the WAL
    /// itself. sqlx's `Pool::close` can return while the connection of the
    /// last write is still on its way back into the pool (a task of its
    /// own), and that connection then stays open until the process exits,
    /// so SQLite never folds the WAL back: a command's last write (an
    /// erasure) was left in it about one time in three on a loaded machine.
    /// Checking the connection out waits for it. If another process is
    /// reading the store (an `export`), the checkpoint waits up to the busy
    /// timeout (5 s) and leaves the rest in the WAL, for whichever
    /// connection closes last.
    async fn close(&self) {
        self.checkpointer.stop().await;
        if let Ok(mut conn) = self.writer.acquire().await {
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await {
                tracing::warn!(error = %e, "cannot checkpoint the store while closing it; its WAL keeps the rest");
            }
            let _ = conn.close().await;
        }
        self.reader.close().await;
        self.writer.close().await;
    }
}

impl_access!(SqliteStore, write: writer, read: reader, json_in: "", json_out: "");
impl_curation!(SqliteStore, write: writer, read: reader, json_in: "", json_out: "");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventSink;

    async fn temp_store(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("PRAGMA temp_store").fetch_one(&store.writer).await.unwrap()
    }

    /// Migrations sort in files (`FILE`, 1), not in the memory the writer's
    /// own statements keep their temporary data in (`MEMORY`, 2): the writer
    /// is back at `MEMORY` after migrating, whether there was anything to
    /// apply or not. (How much memory a migration saves is a benchmark:
    /// docs/benchmarks.md, twenty-fourth session.)
    #[tokio::test]
    async fn migrating_leaves_the_writer_keeping_its_temporary_data_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir).await;
        assert_eq!(temp_store(&store).await, 2);
        assert!(!store.migrate().await.unwrap().is_empty());
        assert_eq!(temp_store(&store).await, 2);
        assert!(store.migrate().await.unwrap().is_empty());
        assert_eq!(temp_store(&store).await, 2);
    }

    /// The WAL file does not stay at its largest, and is not cut back under
    /// load: a WAL file that grew past [`checkpoint::WAL_SIZE_LIMIT`] keeps
    /// its size while commits keep coming (cutting it back at every restart
    /// of the WAL cost the drain 15 %), and is emptied once the store is
    /// idle. (SQLite's own `journal_size_limit`, set before on the
    /// checkpointer's connection, which never commits, never cut it back
    /// before the store was closed.)
    #[tokio::test]
    async fn an_oversized_wal_file_is_emptied_once_the_store_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir).await;
        let wal = dir.path().join("the-eye.db-wal");
        let size = || std::fs::metadata(&wal).unwrap().len();
        let limit = checkpoint::WAL_SIZE_LIMIT;
        sqlx::query("CREATE TABLE big (b BLOB)").execute(&store.writer).await.unwrap();
        sqlx::query("CREATE TABLE small (n INTEGER)").execute(&store.writer).await.unwrap();
        sqlx::query("INSERT INTO big VALUES (zeroblob(?))")
            .bind(limit as i64 + 8 * 1024 * 1024)
            .execute(&store.writer)
            .await
            .unwrap();
        let grown = size();
        assert!(grown > limit, "the WAL grew to {grown} bytes");

        // Small commits for longer than three checkpoint rounds: the WAL is
        // copied and starts afresh meanwhile, in a file of the same size.
        let busy_until = std::time::Instant::now() + 3 * checkpoint::EVERY + Duration::from_millis(500);
        while std::time::Instant::now() < busy_until {
            sqlx::query("INSERT INTO small VALUES (1)").execute(&store.writer).await.unwrap();
            assert!(size() >= grown, "the WAL file was cut back under load, to {} bytes", size());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while size() > limit {
            assert!(std::time::Instant::now() < deadline, "the idle store's WAL file still holds {} bytes", size());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM small").fetch_one(&store.reader).await.unwrap();
        assert!(stored > 0);
        store.close().await;
    }

    /// The nice of every thread of this process whose name starts with `prefix`.
    #[cfg(target_os = "linux")]
    fn nice_of_threads_named(prefix: &str) -> Vec<i32> {
        crate::priority::threads_named(prefix)
            .into_iter()
            .filter_map(|tid| rustix::process::getpriority_process(Some(tid)).ok())
            .collect()
    }

    /// Readers wanted all at once by a thread at the background priority
    /// (as the workers' runtime is) start no thread of their own: every
    /// reader was opened with the store, at the nice of the thread that
    /// opened it, so the API's reads never run at the workers' priority.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn readers_keep_the_priority_of_the_thread_that_opened_the_store() {
        let mine = rustix::process::getpriority_process(None).unwrap();
        if mine >= 10 {
            eprintln!("SKIPPED readers' priority: the tests already run at nice {mine}, no lower one to tell apart");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir).await;
        let reader = store.reader.clone();
        let niced = std::thread::spawn(move || {
            crate::priority::lower_this_thread();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let held = futures_util::future::try_join_all((0..READERS).map(|_| reader.acquire())).await.unwrap();
                assert_eq!(held.len(), READERS as usize);
                // While they are held: each is a live thread.
                let theirs = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
                (theirs, nice_of_threads_named("eye-store-r"))
            })
        });
        // Awaited, not joined: a connection handed back goes back into the
        // pool by a task of this test's runtime, which a blocking join would
        // stop (and the thread's acquires would time out).
        let (theirs, readers) = tokio::task::spawn_blocking(move || niced.join().unwrap()).await.unwrap();
        assert!(theirs > mine, "the reading thread was lowered ({theirs} against {mine})");
        assert!(readers.len() >= READERS as usize, "{readers:?}");
        assert!(readers.iter().all(|&nice| nice == mine), "readers' nice values: {readers:?}, the tests' {mine}");
    }

    /// A store in `dir`, not migrated.
    async fn store_in(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::connect(&format!("sqlite://{}", dir.path().join("the-eye.db").display())).await.unwrap()
    }

    async fn migrated_store(dir: &tempfile::TempDir) -> SqliteStore {
        let store = store_in(dir).await;
        store.migrate().await.unwrap();
        store
    }

    /// A valid page view of `session` at `micros` (also the WAL's tests').
    pub(super) fn event_at_micros(session: &str, micros: i64) -> crate::store::NewEvent {
        crate::store::NewEvent {
            event: crate::domain::ValidEvent {
                event_id: Uuid::new_v4(),
                session_id: session.into(),
                category: "page interaction".into(),
                name: "pageview".into(),
                data: serde_json::json!({"host": "h", "path": "/"}).as_object().unwrap().clone(),
                timestamp: Timestamp::from_micros(micros).unwrap(),
            },
            received_at: Utc::now(),
            application: None,
        }
    }

    /// An event of `session` at `hour` hours after a midnight, `second` into it.
    fn event_at(session: &str, hour: i64, second: i64) -> crate::store::NewEvent {
        event_at_micros(session, 1_599_955_200_000_000 + hour * 3_600_000_000 + second * 1_000_000)
    }

    /// An admin's delete and an erasure find their rows on a reader: that
    /// needs nothing of the writer, even while a worker's transaction holds
    /// it. The writer then deletes the rows in the hours found, and any row
    /// of that value stored after the reader looked, in whichever hour.
    #[tokio::test]
    async fn rows_are_found_on_a_reader_and_deleted_on_the_writer_with_any_stored_since() {
        use events::{delete_found, BY_SESSION};
        let dir = tempfile::tempdir().unwrap();
        let store = migrated_store(&dir).await;
        let batch = WriteBatch {
            events: vec![event_at("s", 0, 1), event_at("s", 5, 2), event_at("other", 5, 3)],
            errors: vec![],
        };
        store.write(&batch).await.unwrap();

        // The writer pool's one connection, inside a write transaction.
        let mut busy = store.writer.begin().await.unwrap();
        sqlx::query("UPDATE rollup_hold SET held = held").execute(&mut *busy).await.unwrap();
        // A guard against hanging, not a measure of speed.
        let found = tokio::time::timeout(Duration::from_secs(60), store.find_rows(&BY_SESSION, &"s".to_owned()))
            .await
            .expect("finding rows waits for no writer")
            .unwrap();
        busy.rollback().await.unwrap();
        let first_hour = 1_599_955_200 / 3_600;
        assert_eq!(found.hours, format!("[{},{}]", first_hour, first_hour + 5));

        // Stored after the reader looked, in an hour it saw none of.
        store.write(&WriteBatch { events: vec![event_at("s", 9, 4)], errors: vec![] }).await.unwrap();
        let mut tx = store.writer.begin().await.unwrap();
        assert_eq!(delete_found(&mut tx, &BY_SESSION, &found, &"s".to_owned()).await.unwrap(), 3);
        tx.commit().await.unwrap();
        let left: Vec<String> =
            sqlx::query_scalar("SELECT session_id FROM events").fetch_all(&store.reader).await.unwrap();
        assert_eq!(left, ["other"]);
    }

    /// The writer's deletes seek: one step down the hour-keyed index for each
    /// hour found, and a range of rowids for the rows stored since. Neither
    /// scans the table or skip-scans the hours.
    #[tokio::test]
    async fn the_writer_deletes_by_seeking_not_scanning() {
        use events::{BY_EVENT_ID, BY_SESSION};
        let dir = tempfile::tempdir().unwrap();
        let store = migrated_store(&dir).await;
        for (key, index) in [(&BY_EVENT_ID, "events_hour_event_id"), (&BY_SESSION, "events_hour_session")] {
            let plan = |sql: String| {
                let reader = store.reader.clone();
                async move {
                    sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                        .bind("[1]")
                        .bind("x")
                        .fetch_all(&reader)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.get::<String, _>("detail"))
                        .collect::<Vec<_>>()
                }
            };
            let in_hours = plan(key.delete_in_hours()).await;
            let seek = format!("INDEX {index} (<expr>=? AND ");
            assert!(in_hours.iter().any(|d| d.starts_with("SEARCH events USING") && d.contains(&seek)), "{in_hours:?}");
            let since = plan(key.delete_since()).await;
            assert!(since.iter().any(|d| d.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>?)")), "{since:?}");
            for detail in in_hours.iter().chain(&since) {
                assert!(!detail.starts_with("SCAN events") && !detail.contains("RECURSIVE"), "{detail}");
            }
        }
    }
}
