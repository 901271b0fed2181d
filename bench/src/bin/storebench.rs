//! The store's writer alone: batches of 1,000 events, shaped like the load
//! generator's, written through `Store::write` as a worker writes them, with
//! nothing else running. Prints events a second, the process's CPU time an
//! event and the bytes it wrote to disk an event (WAL and checkpoints).
//!
//! Knobs, for experiments on the schema and its settings:
//! - `--from DIR` copies a prefilled data dir's store first (`bench/.prefill-N`);
//! - `--page-size N` creates a new store with that page size;
//! - `--ids v7` sends time-ordered ids instead of random (UUIDv4) ones;
//! - `--drop INDEX` drops an index after migrating, to see what it costs;
//! - `--exec SQL` runs a statement after that (a candidate index, say);
//! - `--sessions N` spreads the events over N visitors' sessions live at once
//!   (random UUIDv4 ids, about 10 events each, as `loadgen --sessions`)
//!   instead of 64 fixed ones (`bench-N`).
//!
//! `cargo run --release -p the-eye-bench --bin storebench -- --batches 300`

use std::str::FromStr;
use std::time::Instant;

use chrono::Utc;
use clap::Parser;
use sqlx::ConnectOptions;
use the_eye::store::{self, WriteBatch};

#[derive(Debug, Parser)]
struct Args {
    /// Batches of `--batch` events to write.
    #[arg(long, default_value_t = 300)]
    batches: usize,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// A data dir whose store is copied and written to (else a new store).
    #[arg(long)]
    from: Option<std::path::PathBuf>,
    /// The page size of a new store.
    #[arg(long)]
    page_size: Option<u32>,
    /// `random` (UUIDv4, as `loadgen --random-ids`) or `v7`.
    #[arg(long, default_value = "random")]
    ids: String,
    /// Indexes to drop after migrating (experiments only).
    #[arg(long)]
    drop: Vec<String>,
    /// Statements to run after migrating and dropping (experiments only).
    #[arg(long)]
    exec: Vec<String>,
    /// Visitors' sessions live at once (0: 64 fixed ones, `bench-N`).
    #[arg(long, default_value_t = 0)]
    sessions: u64,
    /// Sorts each batch by event id before writing it (experiment).
    #[arg(long)]
    sorted: bool,
}

/// User and system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line, in 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes this process has caused to be written to storage so far.
fn written_bytes() -> f64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("the-eye-storebench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("the-eye.db");
    if let Some(from) = &args.from {
        for entry in std::fs::read_dir(from)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with("the-eye.db") {
                std::fs::copy(&path, dir.join(name))?;
            }
        }
    }
    let url = format!("sqlite://{}", db.display());
    if let Some(size) = args.page_size {
        let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .page_size(size)
            .connect()
            .await?;
        sqlx::query("VACUUM").execute(&mut conn).await?;
    }
    let store = store::open(&url).await?;
    store.migrate().await?;
    if !args.drop.is_empty() || !args.exec.is_empty() {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await?;
        for index in &args.drop {
            sqlx::query(&format!("DROP INDEX {index}")).execute(&mut conn).await?;
        }
        for sql in &args.exec {
            let started = Instant::now();
            sqlx::query(sql).execute(&mut conn).await?;
            eprintln!("{sql}: {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    let salt = uuid::Uuid::new_v4().as_u64_pair().0;
    let session = |n: u64| {
        if args.sessions == 0 {
            return format!("bench-{}", n % 64);
        }
        the_eye_bench::visitor_session(salt, n, args.sessions)
    };
    // Let the copy settle on disk, so that its write-back is not measured.
    std::process::Command::new("sync").status()?;
    let (cpu0, bytes0, start) = (cpu_seconds(), written_bytes(), Instant::now());
    for b in 0..args.batches {
        let now = Utc::now();
        let mut batch = WriteBatch::default();
        for i in 0..args.batch {
            let n = b * args.batch + i;
            let id = if args.ids == "v7" { uuid::Uuid::now_v7() } else { uuid::Uuid::new_v4() };
            let path = format!("/p/{}/{}", n % 64, n / 64);
            batch.events.push(the_eye_bench::pageview(id, session(n as u64), path, now));
        }
        if args.sorted {
            batch.events.sort_by_key(|e| e.event.event_id);
        }
        store.write(&batch).await?;
    }
    let took = start.elapsed().as_secs_f64();
    let events = (args.batches * args.batch) as f64;
    let (cpu, bytes) = (cpu_seconds() - cpu0, written_bytes() - bytes0);
    store.close().await;
    println!(
        "{events} events in {took:.1} s: {:.0} events/s, {:.1} µs CPU an event, {:.0} bytes written an event",
        events / took,
        cpu / events * 1e6,
        bytes / events
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
