//! The embedded queue: a SQLite database in the data dir (WAL, `synchronous=FULL`
//! for appends; acks and releases at `NORMAL`, see [`Writer::commit`]).
//!
//! One writer thread (`eye-spool-writer`) owns the only write connection.
//! Requests hand it their entries and wait; it takes everything that queued up
//! while the previous commit was running, writes it in one transaction and
//! commits once, so concurrent requests share one fsync (group commit). Acks
//! and releases travel the same way, so the spool never sees two writers
//! contend for its lock, but in a commit after the appends that queued with
//! them: no request waits for a delete.
//!
//! The writer talks to SQLite through `rusqlite` on a thread of its own, rows
//! bound one by one to a cached prepared statement: no statement crosses a
//! thread, and no row is encoded as JSON for SQLite to parse again. Against
//! the sqlx writer it replaced (every statement a round trip to sqlx's
//! connection thread, a group's rows as one JSON array for `json_each`),
//! ingest alone accepted 12 % more for 11 % less server CPU an event, and
//! end to end stored 7 % more (medians of runs in turns; docs/benchmarks.md,
//! "Sixth session"). Claims read through a read-only `rusqlite` connection of
//! their own, on tokio's blocking threads, each column copied once into the
//! delivery: against sqlx's readers, 12 % less server CPU an event stored at
//! 100 events a request ("Tenth session").
//!
//! The writer also keeps what it has just committed, in order, for the claims
//! (up to [`FRESH_CAP`] entries): while the workers keep up, a claim takes its
//! entries from there and does not read back what was written a moment ago.
//! Once the workers fall behind by more than that, the writer drops what it
//! kept and the claims read the spool until they have caught up again.
//!
//! Claiming is in memory: a cursor over the ever-increasing `seq` plus a list
//! of released entries to hand out again. The writer numbers the entries
//! itself, counting on from the highest `seq` in the file when it opened, so
//! while the spool is open no number is used twice, even once every entry has
//! been acknowledged and the table is empty. (SQLite's `AUTOINCREMENT` would
//! promise the same, for a write to `sqlite_sequence` with every row; spools
//! made with it are rebuilt without it when opened.) After a restart the cursor starts from zero, so every
//! entry not yet acknowledged is delivered again: at-least-once, and the store's
//! idempotent insert on `event_id` makes that exactly-once in the tables.
//!
//! A claim is a lease, as a Redis pending entry is: an entry claimed more than
//! `claim_idle` ago and neither acknowledged nor released is handed out again.
//! The cursor has moved past it, so without the lease a worker that lost its
//! batch (an ack the spool could not write, a panic, a bug) would strand those
//! entries until the next restart. A release the spool cannot write still
//! hands the entries back at once; only their attempt goes uncounted.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use chrono::DateTime;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use uuid::Uuid;

use super::{Body, Delivery, DeliveryTag, Envelope, Queue, QueueError};
use crate::domain::Reason;
use crate::metrics::Metrics;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY,
    event_id BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    rejected_reason TEXT,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    application TEXT
)";

/// Most commands folded into one group commit.
const MAX_GROUP: usize = 4096;

/// Most entries kept in memory for the claims after their commit.
const FRESH_CAP: usize = 8192;

type Reply = oneshot::Sender<Result<(), String>>;

/// Entries the writer committed and no claim has taken yet, kept so the claims
/// need not read them back. Every entry committed with a `seq` above `after`
/// is in `entries`, in order; the claims read the spool for the rest.
#[derive(Default)]
struct Fresh {
    after: i64,
    entries: VecDeque<Delivery>,
}

impl Fresh {
    /// Keeps the entries of a commit, or, when that would hold more than
    /// [`FRESH_CAP`], drops everything kept and starts again after them.
    fn keep(&mut self, committed: Vec<Delivery>) {
        let Some(last) = committed.last() else { return };
        if self.entries.len() + committed.len() > FRESH_CAP {
            self.entries.clear();
            self.after = last.tag.0 as i64;
        } else {
            self.entries.extend(committed);
        }
    }

    /// Up to `max` entries after `cursor`, or `None` when some of the entries
    /// after it are only in the spool's file.
    fn take(&mut self, cursor: i64, max: usize) -> Option<Vec<Delivery>> {
        if cursor < self.after {
            return None;
        }
        // Read from the file by a claim that ran ahead of the writer's hand-over.
        while self.entries.front().is_some_and(|d| d.tag.0 as i64 <= cursor) {
            self.entries.pop_front();
        }
        let taken: Vec<Delivery> = self.entries.drain(..max.min(self.entries.len())).collect();
        if let Some(last) = taken.last() {
            self.after = last.tag.0 as i64;
        }
        self.after = self.after.max(cursor);
        Some(taken)
    }
}

enum Command {
    Append(Vec<Envelope>, Reply),
    Ack(Vec<i64>, Reply),
    Release(Vec<i64>, Reply),
}

#[derive(Default)]
struct Claims {
    /// Highest `seq` handed out since start.
    cursor: i64,
    /// Released entries, handed out before new ones.
    redeliver: VecDeque<i64>,
    /// Entries handed out and not yet acknowledged or released, with when.
    in_flight: HashMap<i64, tokio::time::Instant>,
}

impl Claims {
    /// Moves claims older than `idle` back to the front of the line.
    fn expire(&mut self, idle: Duration) {
        let now = tokio::time::Instant::now();
        let mut expired: Vec<i64> =
            self.in_flight.iter().filter(|(_, at)| now.duration_since(**at) >= idle).map(|(seq, _)| *seq).collect();
        if expired.is_empty() {
            return;
        }
        expired.sort_unstable();
        tracing::warn!(
            count = expired.len(),
            idle_secs = idle.as_secs(),
            "spool entries claimed but never acknowledged; handing them out again"
        );
        for seq in expired.iter().rev() {
            self.in_flight.remove(seq);
            self.redeliver.push_front(*seq);
        }
    }
}

/// The embedded, durable queue.
pub struct Spool {
    commands: mpsc::Sender<Command>,
    /// The claims' read-only connection. Claims take turns anyway (they hold
    /// `claims`), so one connection is enough.
    reader: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// What the writer just committed, for the claims (see [`Fresh`]).
    fresh: Arc<std::sync::Mutex<Fresh>>,
    claims: Mutex<Claims>,
    /// How long a claim lasts without an ack or a release.
    claim_idle: Duration,
    /// Entries not yet acknowledged, and room reserved for appends under way:
    /// raised by `enqueue` before it writes, lowered by the writer after acks.
    depth: Arc<AtomicU64>,
    max_depth: u64,
    /// Woken after every commit that appended entries.
    appended: Arc<Notify>,
    /// Group commits that failed since start (a locked or full disk, say).
    failed_commits: Arc<AtomicU64>,
    /// The writer thread, joined on drop (see `Drop`).
    writer: Option<std::thread::JoinHandle<()>>,
}

/// The writer commits what it was handed and checkpoints before the spool is
/// gone, so after a clean stop the spool's file holds every entry and its WAL
/// is empty: nothing is left for a copy of the data dir to miss.
impl Drop for Spool {
    fn drop(&mut self) {
        // The writer ends once every sender is gone; this is the only one.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl Spool {
    /// Opens (creating if needed) the spool database at `path`. Claims not
    /// settled within `claim_idle` are handed out again.
    pub async fn open(path: &Path, max_depth: u64, claim_idle: Duration) -> Result<Self, QueueError> {
        Self::open_with_metrics(path, max_depth, claim_idle, Arc::new(Metrics::new())).await
    }

    /// As [`Spool::open`], recording commit latency and group sizes in `metrics`.
    pub async fn open_with_metrics(
        path: &Path,
        max_depth: u64,
        claim_idle: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, QueueError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        // The writer's connection first: it creates the file and the table
        // and sets WAL mode, which the readers then find in place.
        let owned = path.to_owned();
        let (conn, count, last) = tokio::task::spawn_blocking(move || open_writer(&owned))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        let owned = path.to_owned();
        let reader = tokio::task::spawn_blocking(move || open_reader(&owned))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;

        let depth = Arc::new(AtomicU64::new(count));
        let appended = Arc::new(Notify::new());
        let (tx, rx) = mpsc::channel(MAX_GROUP);
        let failed_commits = Arc::new(AtomicU64::new(0));
        // What is in the file now is read from it; what comes next, from memory.
        let fresh = Arc::new(std::sync::Mutex::new(Fresh { after: last, entries: VecDeque::new() }));
        let w = Writer {
            conn,
            last_seq: last,
            durable: true,
            fresh: fresh.clone(),
            depth: depth.clone(),
            appended: appended.clone(),
            failed_commits: failed_commits.clone(),
            metrics,
        };
        let writer = std::thread::Builder::new()
            .name("eye-spool-writer".into())
            .spawn(move || write_loop(w, rx))
            .map_err(|e| unavailable(format!("starting the spool writer: {e}")))?;
        Ok(Self {
            commands: tx,
            reader: Arc::new(std::sync::Mutex::new(reader)),
            fresh,
            claims: Mutex::new(Claims::default()),
            claim_idle,
            depth,
            max_depth,
            appended,
            failed_commits,
            writer: Some(writer),
        })
    }

    /// Group commits that failed since the spool was opened.
    pub fn failed_commits(&self) -> u64 {
        self.failed_commits.load(Ordering::SeqCst)
    }

    async fn send(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).await.map_err(|_| unavailable("spool writer stopped"))?;
        answer.await.map_err(|_| unavailable("spool writer stopped"))?.map_err(unavailable)
    }

    /// Runs `read` on the claims' connection, on one of tokio's blocking threads.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || read(&reader.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .await
            .map_err(unavailable)?
            .map_err(unavailable)
    }

    async fn fetch(&self, claims: &mut Claims, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::new();
        if !claims.redeliver.is_empty() {
            let n = claims.redeliver.len().min(max);
            // Removed from the list only once read, so a cancelled claim loses nothing.
            let seqs: Vec<i64> = claims.redeliver.iter().take(n).copied().collect();
            let seqs = serde_json::to_string(&seqs).map_err(unavailable)?;
            let rows = self
                .read(move |conn| {
                    conn.prepare_cached(CLAIM_AGAIN)?.query_map([seqs], decode)?.collect::<Result<Vec<_>, _>>()
                })
                .await?;
            claims.redeliver.drain(..n);
            out.extend(rows);
        }
        if out.len() < max {
            let mut kept = self.take_fresh(claims, max - out.len());
            if kept.is_none() {
                // Behind what the writer kept: the file first, then, caught
                // up with it, the rest from memory.
                let (cursor, limit) = (claims.cursor, (max - out.len()) as i64);
                let rows = self
                    .read(move |conn| {
                        conn.prepare_cached(CLAIM_NEXT)?
                            .query_map([cursor, limit], decode)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .await?;
                if let Some(last) = rows.last() {
                    claims.cursor = last.tag.0 as i64;
                }
                out.extend(rows);
                kept = self.take_fresh(claims, max - out.len());
            }
            out.extend(kept.unwrap_or_default());
        }
        Ok(out)
    }

    /// Up to `max` entries after the cursor from what the writer kept, moving
    /// the cursor past them; `None` when the next ones must be read from the file.
    fn take_fresh(&self, claims: &mut Claims, max: usize) -> Option<Vec<Delivery>> {
        let taken = self.fresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(claims.cursor, max)?;
        if let Some(last) = taken.last() {
            claims.cursor = last.tag.0 as i64;
        }
        Some(taken)
    }
}

fn seqs(tags: &[DeliveryTag]) -> Vec<i64> {
    tags.iter().map(|t| t.0 as i64).collect()
}

/// What a claim reads of the spool, the columns in the order [`decode`] takes them.
macro_rules! select_entries {
    () => {
        "SELECT seq, event_id, received_at, body, rejected_reason, attempts, application FROM spool"
    };
}

/// The entries after the cursor (`?1`), at most `?2`.
const CLAIM_NEXT: &str = concat!(select_entries!(), " WHERE seq > ?1 ORDER BY seq LIMIT ?2");

/// The released entries whose `seq`s are in the JSON array `?1`.
const CLAIM_AGAIN: &str = concat!(select_entries!(), " WHERE seq IN (SELECT value FROM json_each(?1)) ORDER BY seq");

/// One entry as read by a claim: each column copied once, into the delivery.
fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    use rusqlite::types::Type;
    let bad = |column: usize, kind: Type, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(column, kind, e)
    };
    let seq: i64 = row.get(0)?;
    let event_id = row.get_ref(1)?.as_blob().map(Uuid::from_slice)?.map_err(|e| bad(1, Type::Blob, e.into()))?;
    let received_at = DateTime::from_timestamp_micros(row.get(2)?)
        .ok_or_else(|| bad(2, Type::Integer, "received_at out of range".into()))?;
    let body: String = row.get(3)?;
    let body = match row.get_ref(4)?.as_str_or_null()? {
        None => Body::Event(body),
        Some(reason) => Body::Rejected {
            raw: body,
            reason: serde_json::from_str::<Reason>(reason).map_err(|e| bad(4, Type::Text, e.into()))?,
        },
    };
    Ok(Delivery {
        tag: DeliveryTag(seq as u128),
        attempts: row.get::<_, i64>(5)? as u32,
        envelope: Envelope { event_id, received_at, application: row.get(6)?, body },
    })
}

/// Opens the claims' read-only connection (the writer has made the file).
fn open_reader(path: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// The writer thread's connection and what it shares with the spool.
struct Writer {
    conn: rusqlite::Connection,
    /// The `seq` of the last entry appended.
    last_seq: i64,
    /// Whether the connection is at `synchronous=FULL` (see [`Writer::commit`]).
    durable: bool,
    fresh: Arc<std::sync::Mutex<Fresh>>,
    depth: Arc<AtomicU64>,
    appended: Arc<Notify>,
    failed_commits: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// Opens the writer's connection, creating the spool if needed, and counts
/// the entries waiting in it; also returns the highest `seq` among them.
fn open_writer(path: &Path) -> Result<(rusqlite::Connection, u64, i64), rusqlite::Error> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit fsyncs the WAL. This is what makes a 202 durable.
    // (The writer lowers it to NORMAL for acks and releases only.)
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute(SCHEMA, [])?;
    // Spools written before applications existed lack the column; their entries stay valid.
    let has_app: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('spool') WHERE name = 'application'", [], |row| {
            row.get(0)
        })?;
    if !has_app {
        conn.execute("ALTER TABLE spool ADD COLUMN application TEXT", [])?;
    }
    let autoincrement: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'spool' AND sql LIKE '%AUTOINCREMENT%'",
        [],
        |row| row.get(0),
    )?;
    if autoincrement {
        without_autoincrement(&mut conn)?;
    }
    let (count, last): (u64, i64) =
        conn.query_row("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM spool", [], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok((conn, count, last))
}

/// Rebuilds a spool made with `AUTOINCREMENT` (before the writer numbered the
/// entries itself) without it, keeping every entry and its `seq`, in one transaction.
fn without_autoincrement(conn: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute("ALTER TABLE spool RENAME TO spool_autoincrement", [])?;
    tx.execute(SCHEMA, [])?;
    tx.execute(
        "INSERT INTO spool (seq, event_id, received_at, rejected_reason, body, attempts, application)
         SELECT seq, event_id, received_at, rejected_reason, body, attempts, application FROM spool_autoincrement",
        [],
    )?;
    tx.execute("DROP TABLE spool_autoincrement", [])?;
    tx.commit()?;
    tracing::info!("the spool was rebuilt without AUTOINCREMENT (a one-time upgrade); every entry in it was kept");
    Ok(())
}

/// The writer thread: takes everything that queued up while the last commit
/// ran and commits it as one group. It ends when the spool is dropped.
fn write_loop(mut w: Writer, mut rx: mpsc::Receiver<Command>) {
    let mut group = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        // Everything that queued up while the last commit ran goes into this one.
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(cmd) => group.push(cmd),
                Err(_) => break,
            }
        }
        // Appends first, in a commit of their own: their requests wait for
        // the 202, and need not also wait for the deletes of acknowledged
        // entries, which no client waits for.
        let (appends, settles): (Vec<_>, Vec<_>) = group.drain(..).partition(|cmd| matches!(cmd, Command::Append(..)));
        w.commit(appends, true);
        w.commit(settles, false);
    }
    // The claims' reader may still be open, so closing this connection would
    // not fold the WAL back in: do it here.
    if let Err(e) = w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "could not checkpoint the spool at shutdown; its WAL is replayed at the next start");
    }
}

impl Writer {
    /// Sets the connection to `synchronous=FULL` (`durable`) or `NORMAL` for
    /// the next commit. Only a failed switch to FULL is an error, and it fails
    /// the group: an append never commits without its fsync. A failed switch
    /// to NORMAL leaves the connection at FULL, which errs on the safe side.
    fn set_durable(&mut self, durable: bool) -> Result<(), String> {
        if durable == self.durable {
            return Ok(());
        }
        let level = if durable { "FULL" } else { "NORMAL" };
        match self.conn.pragma_update(None, "synchronous", level) {
            Ok(()) => {
                self.durable = durable;
                Ok(())
            }
            Err(e) if durable => Err(format!("spool: could not set synchronous=FULL for the appends: {e}")),
            Err(e) => {
                tracing::warn!(error = %e, "could not set the spool to synchronous=NORMAL for acks");
                Ok(())
            }
        }
    }

    /// Applies `group` in one commit and answers each command with the outcome.
    ///
    /// `durable`: whether the commit fsyncs the WAL (`synchronous=FULL`)
    /// before it answers. Appends must: their 202 promises the entry survives
    /// a power cut. Acks and releases need not (`NORMAL`, no fsync of their
    /// own): the next append's fsync writes them out with it, since the WAL
    /// is one file written in order, and the worst a power cut can do is
    /// lose the last few; an entry whose ack is lost is delivered again, and
    /// the store's idempotent insert on `event_id` keeps it stored once. A
    /// lost release loses one count of an entry's attempts. A killed process
    /// loses neither: what was written is in the kernel's page cache.
    fn commit(&mut self, group: Vec<Command>, durable: bool) {
        if group.is_empty() {
            return;
        }
        let started = std::time::Instant::now();
        // A panic here (a bug) fails this group's commands, which the requests
        // see as 503 and the workers retry; the writer goes on. Letting it
        // unwind would end the only writer and leave every later POST waiting.
        // The transaction rolls back as it unwinds.
        let last_seq = self.last_seq;
        let result = self.set_durable(durable).and_then(|()| {
            match std::panic::catch_unwind(AssertUnwindSafe(|| apply(&mut self.conn, last_seq, &group))) {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => {
                    self.metrics.panicked("spool_writer");
                    tracing::error!(commands = group.len(), "the spool writer panicked; failing this group");
                    Err("the spool writer failed on this group".to_string())
                }
            }
        });
        tracing::trace!(commands = group.len(), micros = started.elapsed().as_micros() as u64, "spool group commit");
        self.metrics.spool_commit_seconds.observe(started.elapsed().as_secs_f64());
        let (outcome, seqs) = match result {
            Ok((seqs, removed)) => {
                if let Some(last) = seqs.last() {
                    self.last_seq = *last;
                    self.metrics.spool_group_size.observe(seqs.len() as f64);
                }
                // Appends were counted when `enqueue` reserved room for them.
                self.depth.fetch_sub(removed, Ordering::SeqCst);
                (Ok(()), seqs)
            }
            Err(e) => {
                self.failed_commits.fetch_add(1, Ordering::SeqCst);
                tracing::error!(error = %e, commands = group.len(), "spool commit failed");
                (Err(e), Vec::new())
            }
        };
        // `seqs` is empty unless the commit went through: only then are the
        // entries kept for the claims. They are kept before anyone hears of
        // the commit, so a claim made after an append returned finds them.
        let mut replies = Vec::with_capacity(group.len());
        let mut committed = Vec::with_capacity(seqs.len());
        let mut seqs = seqs.into_iter();
        for cmd in group {
            match cmd {
                Command::Append(entries, reply) => {
                    committed
                        .extend(entries.into_iter().zip(seqs.by_ref()).map(|(envelope, seq)| fresh(seq, envelope)));
                    replies.push(reply);
                }
                Command::Ack(_, reply) | Command::Release(_, reply) => replies.push(reply),
            }
        }
        if !committed.is_empty() {
            self.fresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keep(committed);
            self.appended.notify_waiters();
        }
        for reply in replies {
            let _ = reply.send(outcome.clone());
        }
    }
}

/// A committed entry as a claim hands it out, exactly as [`decode`] would read
/// it back: the time kept to the microsecond.
fn fresh(seq: i64, mut envelope: Envelope) -> Delivery {
    if let Some(micros) = DateTime::from_timestamp_micros(envelope.received_at.timestamp_micros()) {
        envelope.received_at = micros;
    }
    Delivery { tag: DeliveryTag(seq as u128), attempts: 0, envelope }
}

/// Applies a group of commands in one transaction, numbering the appended
/// entries on from `last_seq`, and returns their `seq`s, in order, and how
/// many entries it deleted.
fn apply(
    conn: &mut rusqlite::Connection,
    last_seq: i64,
    group: &[Command],
) -> Result<(Vec<i64>, u64), rusqlite::Error> {
    let tx = conn.transaction()?;
    let (mut added, mut deleted) = (Vec::new(), 0);
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO spool (seq, event_id, received_at, rejected_reason, body, application) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM spool WHERE seq BETWEEN ?1 AND ?2")?;
        let mut count = tx.prepare_cached("UPDATE spool SET attempts = attempts + 1 WHERE seq = ?1")?;
        for cmd in group {
            match cmd {
                Command::Append(entries, _) => {
                    for e in entries {
                        let (body, reason) = match &e.body {
                            Body::Event(json) => (json.as_str(), None),
                            Body::Rejected { raw, reason } => (raw.as_str(), serde_json::to_string(reason).ok()),
                        };
                        let seq = last_seq + added.len() as i64 + 1;
                        insert.execute(rusqlite::params![
                            seq,
                            &e.event_id.as_bytes()[..],
                            e.received_at.timestamp_micros(),
                            reason,
                            body,
                            e.application.as_deref()
                        ])?;
                        added.push(seq);
                    }
                }
                Command::Ack(seqs, _) => {
                    for (first, last) in runs(seqs) {
                        deleted += delete.execute([first, last])? as u64;
                    }
                }
                Command::Release(seqs, _) => {
                    for seq in seqs {
                        count.execute([seq])?;
                    }
                }
            }
        }
    }
    tx.commit()?;
    Ok((added, deleted))
}

/// `seqs` as runs of consecutive numbers, `(first, last)` each, in order.
///
/// A worker acknowledges the batch it claimed, and claims hand out the
/// entries in `seq` order, so an ack is mostly one run: one range delete
/// (a walk along the table's rowids) instead of one statement an entry.
fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for seq in sorted {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs
}

#[async_trait]
impl Queue for Spool {
    /// Its writer and readers are threads of its own.
    fn runtime_io(&self) -> bool {
        false
    }

    async fn enqueue(&self, entries: Vec<Envelope>) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        // Room is reserved before the write, so concurrent requests cannot
        // all pass the check and overshoot the cap together.
        let n = entries.len() as u64;
        let max = self.max_depth;
        if let Err(depth) =
            self.depth.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| (d + n <= max).then_some(d + n))
        {
            return Err(QueueError::Full { depth });
        }
        let appended = self.send(|r| Command::Append(entries, r)).await;
        if appended.is_err() {
            self.depth.fetch_sub(n, Ordering::SeqCst);
        }
        appended
    }

    async fn claim(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so an append between the
            // look and the wait is not missed.
            let notified = self.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut claims = self.claims.lock().await;
                claims.expire(self.claim_idle);
                let got = self.fetch(&mut claims, max).await?;
                if !got.is_empty() {
                    let now = tokio::time::Instant::now();
                    claims.in_flight.extend(got.iter().map(|d| (d.tag.0 as i64, now)));
                    return Ok(got);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        let seqs = seqs(tags);
        // A failed ack leaves the claims in flight: the worker tries again, and
        // if it never does the lease runs out and the entries come back.
        self.send(|r| Command::Ack(seqs.clone(), r)).await?;
        let mut claims = self.claims.lock().await;
        for seq in &seqs {
            claims.in_flight.remove(seq);
        }
        Ok(())
    }

    async fn release(&self, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        let seqs = seqs(tags);
        let counted = self.send(|r| Command::Release(seqs.clone(), r)).await;
        // Back in line whether or not the attempt could be counted: a spool
        // that cannot write must not also hold on to the entries.
        let mut claims = self.claims.lock().await;
        for seq in &seqs {
            if claims.in_flight.remove(seq).is_some() {
                claims.redeliver.push_back(*seq);
            }
        }
        drop(claims);
        self.appended.notify_waiters();
        counted
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.depth.load(Ordering::SeqCst))
    }

    async fn in_flight(&self) -> Result<u64, QueueError> {
        Ok(self.claims.lock().await.in_flight.len() as u64)
    }

    async fn oldest(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, QueueError> {
        // The first row by `seq` is the oldest appended: one step down the primary key.
        let micros: Option<i64> = self
            .read(|conn| {
                use rusqlite::OptionalExtension;
                conn.query_row("SELECT received_at FROM spool ORDER BY seq LIMIT 1", [], |row| row.get(0)).optional()
            })
            .await?;
        Ok(micros.and_then(DateTime::from_timestamp_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: i64) -> Delivery {
        fresh(
            seq,
            Envelope {
                event_id: Uuid::now_v7(),
                received_at: chrono::Utc::now(),
                application: None,
                body: Body::Event(format!("{{\"seq\":{seq}}}")),
            },
        )
    }

    fn seqs_of(deliveries: &[Delivery]) -> Vec<i64> {
        deliveries.iter().map(|d| d.tag.0 as i64).collect()
    }

    fn envelopes_of(deliveries: &[Delivery]) -> Vec<Envelope> {
        deliveries.iter().map(|d| d.envelope.clone()).collect()
    }

    #[test]
    fn fresh_entries_are_handed_out_in_order_once_and_only_after_the_cursor() {
        let mut fresh = Fresh { after: 10, entries: VecDeque::new() };
        // Behind what was kept: the file first.
        assert!(fresh.take(9, 5).is_none());
        fresh.keep((11..=14).map(delivery).collect());
        assert!(fresh.take(3, 5).is_none());
        assert_eq!(seqs_of(&fresh.take(10, 3).unwrap()), [11, 12, 13]);
        // A claim that read 14 from the file already is not given it again.
        fresh.keep((15..=16).map(delivery).collect());
        assert_eq!(seqs_of(&fresh.take(14, 10).unwrap()), [15, 16]);
        assert_eq!(fresh.take(16, 10).unwrap().len(), 0);
    }

    #[test]
    fn more_than_fresh_cap_waiting_sends_the_claims_back_to_the_file() {
        let mut fresh = Fresh::default();
        fresh.keep((1..=FRESH_CAP as i64).map(delivery).collect());
        assert_eq!(fresh.take(0, 1).map(|d| seqs_of(&d)), Some(vec![1]));
        // One more than there is room for: everything kept is dropped.
        fresh.keep((FRESH_CAP as i64 + 1..=FRESH_CAP as i64 + 2).map(delivery).collect());
        assert!(fresh.entries.is_empty());
        assert!(fresh.take(1, 10).is_none());
        // Once the claims have read up to there, memory takes over again.
        fresh.keep(vec![delivery(FRESH_CAP as i64 + 3)]);
        assert_eq!(fresh.take(FRESH_CAP as i64 + 2, 10).map(|d| seqs_of(&d)), Some(vec![FRESH_CAP as i64 + 3]));
    }

    /// Claims `max` at a time until a claim comes back empty.
    async fn claim_all(spool: &Spool, max: usize) -> Vec<Delivery> {
        let mut got = Vec::new();
        loop {
            let batch = spool.claim(max, Duration::ZERO).await.unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    }

    fn envelopes(n: usize) -> Vec<Envelope> {
        (0..n).map(|i| delivery(i as i64).envelope).collect()
    }

    /// Points the claims' reader at an empty database, so any claim that
    /// reads the file fails, or back at the spool.
    fn read_from(spool: &Spool, path: Option<&Path>) {
        let conn = match path {
            Some(path) => open_reader(path).unwrap(),
            None => rusqlite::Connection::open_in_memory().unwrap(),
        };
        *spool.reader.lock().unwrap() = conn;
    }

    #[tokio::test]
    async fn claims_take_what_was_just_appended_from_memory_and_a_backlog_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let spool = Spool::open(&path, 100_000, Duration::from_secs(60)).await.unwrap();
        read_from(&spool, None);

        let sent = envelopes(3);
        spool.enqueue(sent.clone()).await.unwrap();
        let got = spool.claim(10, Duration::ZERO).await.unwrap();
        assert_eq!(envelopes_of(&got), sent);

        // A backlog bigger than memory holds is read from the file...
        let backlog = envelopes(FRESH_CAP + 10);
        spool.enqueue(backlog.clone()).await.unwrap();
        assert!(spool.claim(10, Duration::ZERO).await.is_err());
        read_from(&spool, Some(&path));
        assert_eq!(envelopes_of(&claim_all(&spool, 1000).await), backlog);

        // ...and once it is, memory serves again.
        read_from(&spool, None);
        let more = envelopes(2);
        spool.enqueue(more.clone()).await.unwrap();
        let got = spool.claim(10, Duration::ZERO).await.unwrap();
        assert_eq!(envelopes_of(&got), more);
    }

    #[tokio::test]
    async fn a_spool_made_with_autoincrement_is_rebuilt_without_it_and_keeps_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let old = envelopes(3);
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id BLOB NOT NULL, \
                 received_at INTEGER NOT NULL, rejected_reason TEXT, body TEXT NOT NULL, \
                 attempts INTEGER NOT NULL DEFAULT 0, application TEXT)",
            )
            .unwrap();
            for (i, e) in old.iter().enumerate() {
                let Body::Event(body) = &e.body else { unreachable!() };
                conn.execute(
                    "INSERT INTO spool (seq, event_id, received_at, body, attempts) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        10 + i as i64,
                        &e.event_id.as_bytes()[..],
                        e.received_at.timestamp_micros(),
                        body,
                        i as i64
                    ],
                )
                .unwrap();
            }
        }
        let spool = Spool::open(&path, 100, Duration::from_secs(60)).await.unwrap();
        let sql: String = spool
            .read(|conn| conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'spool'", [], |row| row.get(0)))
            .await
            .unwrap();
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
        assert_eq!(spool.depth().await.unwrap(), 3);
        let new = envelopes(1);
        spool.enqueue(new.clone()).await.unwrap();
        let got = spool.claim(10, Duration::ZERO).await.unwrap();
        assert_eq!(seqs_of(&got), [10, 11, 12, 13]);
        assert_eq!(got.iter().map(|d| d.attempts).collect::<Vec<_>>(), [0, 1, 2, 0]);
        let expected: Vec<Envelope> = old.into_iter().chain(new).collect();
        assert_eq!(envelopes_of(&got), expected);
    }

    #[tokio::test]
    async fn after_a_reopen_the_entries_in_the_file_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let waiting = envelopes(4);
        {
            let spool = Spool::open(&path, 100, Duration::from_secs(60)).await.unwrap();
            spool.enqueue(waiting.clone()).await.unwrap();
        }
        let spool = Spool::open(&path, 100, Duration::from_secs(60)).await.unwrap();
        let later = envelopes(2);
        spool.enqueue(later.clone()).await.unwrap();
        let expected: Vec<Envelope> = waiting.into_iter().chain(later).collect();
        assert_eq!(envelopes_of(&claim_all(&spool, 3).await), expected);
    }

    #[test]
    fn acks_become_runs_of_consecutive_seqs() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[7]), vec![(7, 7)]);
        assert_eq!(runs(&[3, 1, 2, 2, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
        // Every seq is in exactly one run, and nothing else is.
        let seqs = [10, 12, 11, 40, 14, 13, 41, 100];
        let covered: Vec<i64> = runs(&seqs).into_iter().flat_map(|(a, b)| a..=b).collect();
        let mut expected = seqs.to_vec();
        expected.sort_unstable();
        assert_eq!(covered, expected);
    }

    /// The writer's `synchronous` level, as SQLite reports it (1 NORMAL, 2 FULL).
    fn synchronous(w: &Writer) -> i64 {
        w.conn.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn appends_commit_at_full_even_right_after_acks_at_normal() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _, last) = open_writer(&dir.path().join("spool.db")).unwrap();
        let mut w = Writer {
            conn,
            last_seq: last,
            durable: true,
            fresh: Arc::new(std::sync::Mutex::new(Fresh { after: last, entries: VecDeque::new() })),
            depth: Arc::new(AtomicU64::new(0)),
            appended: Arc::new(Notify::new()),
            failed_commits: Arc::new(AtomicU64::new(0)),
            metrics: Arc::new(Metrics::new()),
        };
        let append = |n: i64| {
            let (tx, rx) = oneshot::channel();
            (Command::Append(envelopes_of(&[delivery(n)]), tx), rx)
        };
        let (cmd, mut done) = append(1);
        w.commit(vec![cmd], true);
        assert_eq!(done.try_recv().unwrap(), Ok(()));
        assert_eq!(synchronous(&w), 2, "an append commits at FULL");

        let (tx, mut acked) = oneshot::channel();
        w.commit(vec![Command::Ack(vec![1], tx)], false);
        assert_eq!(acked.try_recv().unwrap(), Ok(()));
        assert_eq!(synchronous(&w), 1, "an ack commits at NORMAL");
        let left: i64 = w.conn.query_row("SELECT COUNT(*) FROM spool", [], |row| row.get(0)).unwrap();
        assert_eq!(left, 0, "the ack deleted the entry");

        let (cmd, mut done) = append(2);
        w.commit(vec![cmd], true);
        assert_eq!(done.try_recv().unwrap(), Ok(()));
        assert_eq!(synchronous(&w), 2, "the next append is back at FULL");
        assert_eq!(w.failed_commits.load(Ordering::SeqCst), 0);
    }
}
