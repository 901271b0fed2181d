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
//! checkpoint stays as a backstop at [`WRITER_BACKSTOP_PAGES`], for a
//! checkpointer that falls behind. A checkpoint keeps `synchronous=FULL`'s
//! fsyncs, so durability is unchanged. Measured in docs/benchmarks.md.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the checkpointer runs.
const EVERY: Duration = Duration::from_millis(250);

/// WAL pages (4 KiB each) at which the writer checkpoints by itself.
pub(super) const WRITER_BACKSTOP_PAGES: u32 = 20_000;

/// Once a checkpoint has emptied the WAL, its file is cut back to this size.
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

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
pub(super) async fn spawn(options: SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
    let conn = options.pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string()).connect().await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(conn, stop.clone()));
    Ok(Checkpointer { stop, task: std::sync::Mutex::new(Some(task)) })
}

async fn run(mut conn: SqliteConnection, stop: CancellationToken) {
    let mut failing = false;
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
            }
            // A full disk, say: the WAL keeps every commit meanwhile, and the
            // next round tries again. Said once, not every quarter second.
            Err(e) if !failing => {
                tracing::warn!(error = %e, "store checkpoint failed; the WAL grows until one succeeds");
                failing = true;
            }
            Err(_) => {}
        }
    }
    let _ = conn.close().await;
}
