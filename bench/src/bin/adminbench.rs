//! How long the admin panel's heaviest reads take on a big store: the
//! dashboard's charts from the rollups (hour, day, week), a month of
//! `/api/stats`, the newest events, a search, and error filters; then the
//! data's upkeep: erasing a session, rebuilding the rollups, and retention
//! deleting every event. Fills a fresh store with `EVENTS`
//! events (default 1,000,000) spread over the last seven days in five
//! categories, and `EVENTS / 100` errors, through `Store::write`.
//!
//! `cargo run --release -p the-eye-bench --bin adminbench`
//! `KEEP_DB=/tmp/eye.db …` keeps a copy of the filled SQLite store (for `bench/lifecycle.sh`).
//! `EVENTS=1000000 PG_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p the-eye-bench --bin adminbench`

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use the_eye::domain::{Reason, Timestamp, ValidEvent};
use the_eye::store::{
    self, ErrorQuery, EventQuery, NewEvent, NewEventError, StatsGroup, StatsKind, StatsQuery, Store, WriteBatch,
};

const CATEGORIES: [&str; 5] = ["page interaction", "form interaction", "checkout", "search", "video"];

async fn fill(store: &dyn Store, events: usize) -> anyhow::Result<()> {
    let now = Utc::now();
    let week_ms = 7 * 24 * 3600 * 1000;
    let start = Instant::now();
    for chunk in 0..events.div_ceil(1000) {
        let mut batch = WriteBatch::default();
        for i in 0..1000.min(events - chunk * 1000) {
            let n = chunk * 1000 + i;
            let at = now - Duration::milliseconds((n as i64 * 7919) % week_ms);
            let category = CATEGORIES[n % CATEGORIES.len()];
            let data = serde_json::json!({"host": "bench.example", "path": format!("/p/{}", n % 10_000)});
            batch.events.push(NewEvent {
                event: ValidEvent {
                    event_id: uuid::Uuid::now_v7(),
                    session_id: format!("session-{}", n % 50_000),
                    category: category.into(),
                    name: "pageview".into(),
                    data: data.as_object().cloned().unwrap_or_default(),
                    timestamp: Timestamp::from(at),
                },
                received_at: at,
                application: Some("bench".into()),
            });
            if n % 100 == 0 {
                batch.errors.push(NewEventError {
                    event_id: uuid::Uuid::now_v7(),
                    raw: format!(r#"{{"category": "{category}x", "name": "pageview"}}"#),
                    reasons: vec![Reason::new("category", "unknown_category", "no such category")],
                    received_at: at,
                    application: Some("bench".into()),
                });
            }
        }
        store.write(&batch).await?;
    }
    println!("filled {events} events in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

async fn time<T>(what: &str, f: impl std::future::Future<Output = Result<T, store::StoreError>>) -> anyhow::Result<T> {
    let start = Instant::now();
    let out = f.await?;
    println!("{what:<40} {:>9.1} ms", start.elapsed().as_secs_f64() * 1000.0);
    Ok(out)
}

async fn measure(store: Arc<dyn Store>, keep: Option<String>) -> anyhow::Result<()> {
    // What the workers' upkeep does within a minute: on PostgreSQL, merge the
    // rollups' delta rows (a batch of events spread over the week leaves one
    // per bucket it touched).
    time("upkeep (merge rollup deltas)", store.maintain()).await?;
    let now = Utc::now();
    for (name, secs, buckets) in [("hour", 300, 12), ("day", 3600, 24), ("week", 6 * 3600, 28)] {
        let end = now.timestamp() - now.timestamp().rem_euclid(secs) + secs;
        let from = chrono::DateTime::from_timestamp(end - secs * buckets, 0).unwrap_or(now);
        for (kind, label) in [(StatsKind::Events, "events"), (StatsKind::Errors, "errors")] {
            let q = StatsQuery {
                kind,
                from,
                to: from + Duration::seconds(secs * buckets),
                bucket_secs: secs,
                group: StatsGroup::Category,
                category: None,
                name: None,
                application: None,
            };
            time(&format!("dashboard chart, {label}, last {name}"), store.stats(&q)).await?;
        }
    }
    let month = StatsQuery {
        kind: StatsKind::Events,
        from: now - Duration::days(30),
        to: now,
        bucket_secs: 300,
        group: StatsGroup::Name,
        category: None,
        name: None,
        application: None,
    };
    time("/api/stats 30 days, 5m buckets, by name", store.stats(&month)).await?;
    let newest = EventQuery { limit: 50, ..Default::default() };
    time("events page (newest 50)", store.events(&newest)).await?;
    let session = EventQuery { session_id: Some("session-123".into()), limit: 50, ..Default::default() };
    time("a session's events", store.events(&session)).await?;
    let search = EventQuery { search: Some("/p/9999\"".into()), limit: 50, ..Default::default() };
    time("search in data, 50 hits", store.events(&search)).await?;
    let rare = EventQuery { search: Some("no such text".into()), limit: 50, ..Default::default() };
    time("search in data, no hit (full scan)", store.events(&rare)).await?;
    let day = EventQuery {
        search: Some("no such text".into()),
        from: Some(Timestamp::from(now - Duration::days(1))),
        limit: 50,
        ..Default::default()
    };
    time("search, no hit, last day only", store.events(&day)).await?;
    let by_category = ErrorQuery { category: Some("checkoutx".into()), limit: 50, ..Default::default() };
    time("errors by category (newest 50)", store.errors(&by_category)).await?;
    let by_reason = ErrorQuery { reason: Some("unknown_category".into()), limit: 50, ..Default::default() };
    time("errors by reason (newest 50)", store.errors(&by_reason)).await?;
    let none = ErrorQuery { reason: Some("schema".into()), limit: 50, ..Default::default() };
    time("errors by a reason none has (full scan)", store.errors(&none)).await?;
    time("erase one session (20 events)", store.erase_session("session-124")).await?;
    let counted = time("stats rebuild (every row)", store.rebuild_rollups(&|_, _| {})).await?;
    println!("{:<40} {counted:>9} rows", "  recounted");
    if let Some(path) = keep {
        time("backup (VACUUM INTO)", store.backup(std::path::Path::new(&path))).await?;
        println!("{:<40} {path}", "  kept a copy of the store in");
    }
    let start = Instant::now();
    let removed = the_eye::lifecycle::expire(
        store.as_ref(),
        &the_eye::config::Retention { events: Some(Duration::seconds(1)), ..Default::default() },
        now + Duration::days(1),
        std::time::Duration::ZERO,
    )
    .await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<40} {:>9.1} ms ({} events, {:.0} events/s)",
        "retention: delete every event",
        secs * 1000.0,
        removed.events,
        removed.events as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("the-eye-adminbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = store::open(&format!("sqlite://{}", dir.join("eye.db").display())).await?;
    sqlite.migrate().await?;
    println!("== SQLite");
    fill(sqlite.as_ref(), events).await?;
    measure(sqlite, std::env::var("KEEP_DB").ok()).await?;
    if let Ok(url) = std::env::var("PG_URL") {
        let pg = store::open(&url).await?;
        pg.migrate().await?;
        println!("== PostgreSQL ({url}; the events table must be empty for fair numbers)");
        fill(pg.as_ref(), events).await?;
        measure(pg, None).await?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
