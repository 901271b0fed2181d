//! Fills a data dir's store with `--events` events before a benchmark, so
//! that the end-to-end rate can be measured on a big store, not an empty one.
//! Events carry random (UUIDv4) ids, as the load generator's `--random-ids`
//! do, and times spread over the last `--days` days (30 unless told); they go
//! in through `Store::write` in batches of 5,000, as the workers write. The
//! store's duplicate check is unique within a UTC day, so what a big store
//! costs the writer follows its events *a day*: `--days` sets that. Sessions
//! have random ids, as the tracker's, and 10 events each.
//!
//! The window ends now, so today's part of the day-keyed indexes (the part
//! the writer inserts into) holds only the hours since midnight, UTC: a store
//! measured early in the day, or filled on an earlier day, has a small
//! "today" and flatters the writer. `--fill-today N` then adds events stamped
//! today until today holds N, as a store taking N a day does at the end of
//! its day, the writer's worst hour (`FILL_TODAY` in the bench scripts).
//!
//! `cargo run --release -p the-eye-bench --bin prefill -- --data-dir DIR --events 10000000`
//! `cargo run --release -p the-eye-bench --bin prefill -- --data-dir DIR --events 50000000 --days 150`
//! `cargo run --release -p the-eye-bench --bin prefill -- --data-dir DIR --fill-today 333333`

use std::time::Instant;

use chrono::{Duration, Utc};
use clap::Parser;
use the_eye::store::{self, WriteBatch};

#[derive(Debug, Parser)]
struct Args {
    /// The data dir whose `the-eye.db` is filled (created and migrated if new).
    #[arg(long)]
    data_dir: std::path::PathBuf,
    /// How many events to add.
    #[arg(long, default_value_t = 10_000_000)]
    events: usize,
    /// Over how many days (up to now) the events' times are spread.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=36_500))]
    days: i64,
    /// Instead: add events stamped today (UTC, over all its 24 hours) until
    /// today holds this many.
    #[arg(long, conflicts_with_all = ["events", "days"])]
    fill_today: Option<u64>,
}

const BATCH: usize = 5000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.data_dir)?;
    let url = format!("sqlite://{}", args.data_dir.join("the-eye.db").display());
    let store = store::open(&url).await?;
    store.migrate().await?;
    let (end, span_ms, events) = match args.fill_today {
        None => (Utc::now(), args.days * 24 * 3600 * 1000, args.events),
        Some(want) => {
            let midnight = Utc::now().date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
            let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
            let (today,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE occurred_at >= ?")
                .bind(midnight.timestamp_micros())
                .fetch_one(&mut conn)
                .await?;
            let adding = want.saturating_sub(today as u64);
            eprintln!("today holds {today} events; adding {adding}");
            (midnight + Duration::days(1) - Duration::milliseconds(1), 24 * 3600 * 1000, adding as usize)
        }
    };
    // A run's own sessions, so that a second run into the same store does
    // not add events to the first run's sessions.
    let salt = uuid::Uuid::new_v4().as_u64_pair().0;
    let start = Instant::now();
    for chunk in 0..events.div_ceil(BATCH) {
        let mut batch = WriteBatch::default();
        for i in 0..BATCH.min(events - chunk * BATCH) {
            let n = chunk * BATCH + i;
            let at = end - Duration::milliseconds((n as i64 * 7919) % span_ms);
            let path = format!("/p/{}", n % 10_000);
            batch.events.push(the_eye_bench::pageview(
                uuid::Uuid::new_v4(),
                the_eye_bench::session_id(salt ^ (n as u64 / 10)),
                path,
                at,
            ));
        }
        store.write(&batch).await?;
        if chunk % 200 == 199 {
            let done = (chunk + 1) * BATCH;
            eprintln!("{done} events, {:.0}/s", done as f64 / start.elapsed().as_secs_f64());
        }
    }
    drop(store);
    // Leave one file, not a file and a WAL of hundreds of MB that the first
    // run on a copy would have to checkpoint while it is being measured.
    // The store's connections close in the background after the drop, and a
    // TRUNCATE checkpoint does nothing (busy) while one still reads: retry.
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
    for _ in 0..100 {
        let (busy, _, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut conn).await?;
        if busy == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    println!("prefilled {events} events in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
