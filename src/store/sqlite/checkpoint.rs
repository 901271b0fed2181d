//! Checkpoints in the background: committed pages move from the WAL into the
//! database file on a connection of their own, not inside the writer's commits.
//!
//! SQLite's default runs a checkpoint inside the commit that takes the WAL
//! past 1,000 pages. With random event ids a batch of 1,000 events dirties
//! about that many index pages, so nearly every batch paid a checkpoint (a
//! copy of its pages and a second fsync) while holding the only write
//! connection. Here a PASSIVE checkpoint runs every [`EVERY`] beside the
//! writer, which never waits for it; and a page written by several batches
//! between two checkpoints is copied once. The writer's own automatic
//! checkpoint stays as a backstop at [`WRITER_BACKSTOP_PAGES`]. A checkpoint
//! keeps `synchronous=FULL`'s fsyncs, so durability is unchanged. Measured
//! in docs/benchmarks.md.
//!
//! Under steady writes the backstop is what starts the WAL afresh: a
//! passive checkpoint beside a writer that keeps committing seldom copies
//! the very last frame, and only a WAL copied to its end can be reused. So
//! both numbers set how often a page is copied. Every second and at 80,000
//! pages (a WAL file of about 330 MB under sustained load, emptied once the
//! store is idle: [`cut_back`]), a leaf that random ids dirty again and
//! again is copied once where every quarter second and at 20,000 pages it
//! was copied up to four times. That wrote a fifth fewer bytes an event,
//! stored 11–18 % more events a second at 100 a request (single events: 6–16 %
//! in a fast hour, nothing in a slow one), and took about a millisecond off
//! the half-load acknowledgement tail on a Xeon and half of it on an AMD
//! EPYC (the spool's fsyncs share the disk with the checkpoints';
//! twenty-seventh and twenty-eighth sessions).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::wal::Wal;

/// How often the checkpointer runs.
pub(super) const EVERY: Duration = Duration::from_secs(1);

/// WAL pages (4 KiB each) at which the writer checkpoints by itself.
pub(super) const WRITER_BACKSTOP_PAGES: u32 = 80_000;

/// A WAL file larger than this is emptied once the store is idle. (SQLite's
/// `journal_size_limit` would cut it back in the first commit after every
/// restart of the WAL: under load, every second or two, which cost the
/// drain 15 % in the twenty-seventh session.)
pub(super) const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// The running checkpointer: stopped by [`Checkpointer::stop`], or when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Stops it and waits until its connection is closed.
    pub(super) async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Opens the checkpointer's connection and starts it.
/// `wal`: the store's WAL file, `None` in memory (nothing to cut back).
pub(super) async fn spawn(options: SqliteConnectOptions, wal: Option<Arc<Wal>>) -> Result<Checkpointer, sqlx::Error> {
    // Never waits for a lock: a passive checkpoint takes none it would
    // wait for, and the cut-back ([`cut_back`]) rather gives up.
    let conn = options.busy_timeout(Duration::ZERO).connect().await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(conn, wal, stop.clone()));
    Ok(Checkpointer { stop, task: std::sync::Mutex::new(Some(task)) })
}

async fn run(mut conn: SqliteConnection, wal: Option<Arc<Wal>>, stop: CancellationToken) {
    let mut failing = false;
    // The WAL's frames when the last round found every one of them copied.
    let mut all_copied: Option<i64> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
        // (busy, frames in the WAL, frames checkpointed); busy only means a
        // reader still uses older frames, which the next round copies.
        let result: Result<(i64, i64, i64), _> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut conn).await;
        match result {
            Ok((_, frames, done)) => {
                if failing {
                    tracing::info!("store checkpoints work again");
                    failing = false;
                }
                tracing::trace!(frames, done, "store checkpoint");
                let copied = (frames >= 0 && frames == done).then_some(frames);
                // Copied twice with no commit in between: the store is idle.
                if copied.is_some() && copied == all_copied && wal.as_deref().is_some_and(|wal| oversized(wal.path())) {
                    cut_back(&mut conn).await;
                }
                all_copied = copied;
            }
            // A full disk, say: the WAL keeps every commit meanwhile, and the
            // next round tries again. Said once, not every round.
            Err(e) if !failing => {
                tracing::warn!(error = %e, "store checkpoint failed; the WAL grows until one succeeds");
                failing = true;
            }
            Err(_) => {}
        }
    }
    let _ = conn.close().await;
}

/// Whether the WAL file holds more than [`WAL_SIZE_LIMIT`] bytes.
fn oversized(wal: &Path) -> bool {
    std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_SIZE_LIMIT)
}

/// Empties the WAL file of an idle store. `TRUNCATE` takes the write lock
/// and needs every reader off the WAL; with no busy timeout it gives up at
/// once if a writer has just begun or a reader still uses the WAL, rather
/// than hold the write lock while it waits, and a later idle round tries
/// again.
async fn cut_back(conn: &mut SqliteConnection) {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(conn).await {
        Ok((0, _, _)) => tracing::debug!("store WAL file cut back"),
        Ok(_) => tracing::debug!("store WAL file not cut back: a reader still uses it"),
        Err(e) => tracing::debug!(error = %e, "store WAL file not cut back"),
    }
}
