//! How long an admin's delete of one event and an erasure of one session
//! keep the store's writer from the workers, on a big store. A "worker" task
//! writes one-event batches through `Store::write` back to back, as the
//! workers do, and the program records the longest of those writes while a
//! delete or an erasure runs, next to how long the delete itself took. The
//! events and sessions are drawn at random from the store.
//!
//! It deletes from the store it is given: point it at a copy or a bench
//! folder (`bench/.prefill-N-DAYS`, made by `prefill --days DAYS`).
//! `--cold` empties the kernel's page cache before each delete (needs root),
//! the case of an event nobody has looked at lately.
//!
//! `cargo run --release -p the-eye-bench --bin deletebench -- --data-dir bench/.prefill-10000000-150 --cold`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use the_eye::store::{self, Store, WriteBatch};
use tokio::sync::Notify;

#[derive(Debug, Parser)]
struct Args {
    /// The data dir whose `the-eye.db` is deleted from.
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// Events deleted, and as many sessions erased.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Empty the page cache before each delete (root only).
    #[arg(long)]
    cold: bool,
}

fn drop_caches() -> anyhow::Result<()> {
    std::process::Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3")
        .map_err(|e| anyhow::anyhow!("--cold needs root to empty the page cache: {e}"))
}

/// Writes one-event batches until `stop`, returning the longest write;
/// `going` is told when the first write is done.
async fn worker(store: Arc<dyn Store>, stop: Arc<AtomicBool>, going: Arc<Notify>) -> anyhow::Result<Duration> {
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let event = the_eye_bench::pageview(
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4().to_string(),
            "/deletebench".into(),
            Utc::now(),
        );
        let started = Instant::now();
        store.write(&WriteBatch { events: vec![event], errors: vec![] }).await?;
        longest = longest.max(started.elapsed());
        going.notify_one();
    }
    Ok(longest)
}

/// Runs `op` while a worker writes; returns (op's time, the longest write then).
async fn beside_a_worker<F>(store: &Arc<dyn Store>, op: F) -> anyhow::Result<(Duration, Duration)>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let going = Arc::new(Notify::new());
    let writing = tokio::spawn(worker(store.clone(), stop.clone(), going.clone()));
    going.notified().await;
    let started = Instant::now();
    op.await?;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    Ok((took, writing.await??))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = format!("sqlite://{}", args.data_dir.join("the-eye.db").display());
    let store = store::open(&url).await?;
    store.migrate().await?;
    let mut picker = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
    let (last,): (i64,) = sqlx::query_as("SELECT max(id) FROM events").fetch_one(&mut picker).await?;
    let mut picks = Vec::new();
    while picks.len() < args.rounds {
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT event_id, session_id FROM events WHERE id >= 1 + abs(random()) % ? LIMIT 1")
                .bind(last)
                .fetch_optional(&mut picker)
                .await?;
        if let Some((id, session)) = row {
            picks.push((uuid::Uuid::from_slice(&id)?, session));
        }
    }
    drop(picker);

    // Each round: the worker alone for a while (what a write costs anyway,
    // cold or not), then beside a delete, then beside an erasure.
    let mut rows = [(Vec::new(), Vec::new()), (Vec::new(), Vec::new()), (Vec::new(), Vec::new())];
    for (id, session) in &picks {
        for (i, row) in rows.iter_mut().enumerate() {
            if args.cold {
                drop_caches()?;
            }
            let (took, longest) = match i {
                0 => {
                    beside_a_worker(&store, async {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Ok(())
                    })
                    .await?
                }
                1 => {
                    beside_a_worker(&store, async {
                        anyhow::ensure!(store.delete_event(*id).await?, "event {id} was not found");
                        Ok(())
                    })
                    .await?
                }
                _ => {
                    beside_a_worker(&store, async {
                        store.erase_session(session).await?;
                        Ok(())
                    })
                    .await?
                }
            };
            row.0.push(ms(took));
            row.1.push(ms(longest));
        }
    }
    let what = ["nothing else, 500 ms", "delete one event", "erase one session"];
    for ((took, longest), what) in rows.into_iter().zip(what) {
        let max = longest.iter().copied().fold(0.0, f64::max);
        println!(
            "{what}{}: took {:.1} ms (median of {}); longest write beside it {:.1} ms median, {:.1} ms max",
            if args.cold { " (cold)" } else { "" },
            median(took),
            args.rounds,
            median(longest),
            max
        );
    }
    store.close().await;
    Ok(())
}
