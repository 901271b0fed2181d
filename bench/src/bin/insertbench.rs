//! The store's insert ceiling: rows per second into the real `events` schema
//! (four indexes, time-ordered ids) with nothing else running, through the
//! statement the store uses (`json_each`) and through multi-row VALUES.
//!
//! With `PG_URL` set, also PostgreSQL (a fresh database with the real, partitioned
//! schema): the store's `INSERT … SELECT FROM UNNEST` against `COPY` into a temp
//! table followed by `INSERT … SELECT … ON CONFLICT DO NOTHING`.
//!
//! `cargo run --release -p the-eye-bench --bin insertbench`
//! `PG_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p the-eye-bench --bin insertbench`

use std::str::FromStr;
use std::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};

const SCHEMA: &str = include_str!("../../../migrations/sqlite/0001_initial.sql");
const BATCHES: usize = 200;
const PER_BATCH: usize = 1000;

type Row = (String, String, String, String, String, i64, i64);

fn rows(batch: usize) -> Vec<Row> {
    (0..PER_BATCH)
        .map(|i| {
            let n = batch * PER_BATCH + i;
            (
                uuid::Uuid::now_v7().simple().to_string(),
                format!("session-{}", n % 5000),
                "page interaction".into(),
                "pageview".into(),
                format!(r#"{{"host":"bench.example","path":"/p/{n}"}}"#),
                1_700_000_000_000_000 + n as i64 * 1000,
                1_700_000_000_000_000,
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("the-eye-insertbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for mode in ["json_each", "values"] {
        let path = dir.join(format!("{mode}.db"));
        let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut conn).await?;
        let start = Instant::now();
        for b in 0..BATCHES {
            let rows = rows(b);
            let mut tx = conn.begin().await?;
            if mode == "json_each" {
                let data: Vec<_> = rows
                    .iter()
                    .map(|r| (&r.0, &r.1, &r.2, &r.3, serde_json::from_str::<serde_json::Value>(&r.4).ok(), r.5, r.6))
                    .collect();
                sqlx::query(
                    "INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at, created_at)
                     SELECT unhex(value ->> 0), value ->> 1, value ->> 2, value ->> 3, json(value -> 4), value ->> 5, value ->> 6, 0
                     FROM json_each(?1) ORDER BY key ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(serde_json::to_string(&data)?)
                .execute(&mut *tx)
                .await?;
            } else {
                for chunk in rows.chunks(100) {
                    let mut qb = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at, created_at) ",
                    );
                    qb.push_values(chunk, |mut b, r| {
                        let id = uuid::Uuid::parse_str(&r.0).map(|u| u.as_bytes().to_vec()).unwrap_or_default();
                        b.push_bind(id)
                            .push_bind(r.1.clone())
                            .push_bind(r.2.clone())
                            .push_bind(r.3.clone())
                            .push_bind(r.4.clone())
                            .push_bind(r.5)
                            .push_bind(r.6)
                            .push_bind(0i64);
                    });
                    qb.push(" ON CONFLICT (event_id) DO NOTHING");
                    qb.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{mode:>9}: {:.0} rows/s ({} rows, 1000 per transaction)",
            (BATCHES * PER_BATCH) as f64 / secs,
            BATCHES * PER_BATCH
        );
    }
    std::fs::remove_dir_all(&dir)?;
    if let Ok(url) = std::env::var("PG_URL") {
        postgres(&url).await?;
    }
    Ok(())
}

fn events(batch: usize) -> Vec<the_eye::store::NewEvent> {
    (0..PER_BATCH)
        .map(|i| {
            let n = batch * PER_BATCH + i;
            let mut data = serde_json::Map::new();
            data.insert("host".into(), "bench.example".into());
            data.insert("path".into(), format!("/p/{n}").into());
            the_eye::store::NewEvent {
                event: the_eye::domain::ValidEvent {
                    event_id: uuid::Uuid::now_v7(),
                    session_id: format!("session-{}", n % 5000),
                    category: "page interaction".into(),
                    name: "pageview".into(),
                    data,
                    timestamp: chrono::Utc::now().into(),
                },
                received_at: chrono::Utc::now(),
                application: Some("bench".into()),
            }
        })
        .collect()
}

async fn postgres(admin_url: &str) -> anyhow::Result<()> {
    use the_eye::store::{EventSink, PostgresStore, Store, WriteBatch};
    for mode in ["unnest", "copy"] {
        let db = format!("the_eye_insertbench_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut admin).await?;
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&mut admin).await?;
        let url = format!("{}/{db}", admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url));
        let store = PostgresStore::connect(&url).await?;
        store.migrate().await?;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let start = Instant::now();
        for b in 0..BATCHES {
            let batch = events(b);
            if mode == "unnest" {
                store.write(&WriteBatch { events: batch, errors: vec![] }).await?;
            } else {
                let mut tx = conn.begin().await?;
                sqlx::query(
                    "CREATE TEMP TABLE IF NOT EXISTS load (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
                )
                .execute(&mut *tx)
                .await?;
                let mut text = String::with_capacity(PER_BATCH * 200);
                for e in &batch {
                    let ev = &e.event;
                    let data = serde_json::to_string(&ev.data)?.replace('\\', "\\\\");
                    text.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                        ev.event_id,
                        ev.session_id,
                        ev.category,
                        ev.name,
                        data,
                        ev.timestamp.as_datetime().to_rfc3339(),
                        e.received_at.to_rfc3339()
                    ));
                }
                let mut copy = tx
                    .copy_in_raw(
                        "COPY load (event_id, session_id, category, name, data, occurred_at, received_at) FROM STDIN",
                    )
                    .await?;
                copy.send(text.into_bytes()).await?;
                copy.finish().await?;
                sqlx::query(
                    "INSERT INTO events (event_id, session_id, category, name, data, occurred_at, received_at)
                     SELECT event_id, session_id, category, name, data, occurred_at, received_at FROM load
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "postgres {mode:>6}: {:.0} rows/s ({} rows, 1000 per transaction)",
            (BATCHES * PER_BATCH) as f64 / secs,
            BATCHES * PER_BATCH
        );
        drop(conn);
        drop(store);
        sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).execute(&mut admin).await?;
    }
    Ok(())
}
