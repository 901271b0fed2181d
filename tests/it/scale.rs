//! The scaled-out deployment: PostgreSQL store, Redis queue, several processes,
//! and what happens when a backend goes away.

use std::collections::HashMap;

use chrono::Datelike;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use the_eye::queue::{QueueError, RedisQueue};
use the_eye::store::{EventReader, EventSink};
use tokio::sync::watch;

use crate::helpers::{pageview, reason_codes, service_url, test_settings, TestApp};
use crate::procs::{count_events, create_token, eventually, postgres_database, Eye, Proxy, RedisServer};

fn both(test: &str) -> Option<(String, String)> {
    let pg = service_url("THE_EYE_TEST_POSTGRES_URL", test);
    let redis = service_url("THE_EYE_TEST_REDIS_URL", test);
    Some((pg?, redis?))
}

fn prefix() -> String {
    format!("the-eye-test-{}", uuid::Uuid::new_v4().simple())
}

/// The app on PostgreSQL and Redis, with `workers` background workers.
async fn scaled_app(database_url: String, redis_url: String, workers: usize) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.database_url = Some(database_url);
    settings.redis_url = Some(redis_url);
    settings.redis_prefix = prefix();
    settings.allow_unsafe_redis = true; // the shared test Redis keeps nothing on disk
    settings.workers = workers;
    TestApp::spawn_in(dir, settings).await
}

#[tokio::test]
async fn redis_that_can_lose_events_is_refused_unless_allowed() {
    if service_url("THE_EYE_TEST_REDIS_URL", "Redis durability check").is_none() {
        return;
    }
    let volatile = RedisServer::start(false).await;
    let refused = RedisQueue::connect(&volatile.url, &prefix(), 10, Duration::from_secs(30), false).await;
    let Err(QueueError::Unavailable(message)) = refused else { panic!("volatile Redis accepted") };
    assert!(message.contains("appendonly is not yes"), "{message}");
    assert!(message.contains("appendfsync is not always"), "{message}");
    assert!(message.contains("--allow-unsafe-redis"), "{message}");
    assert!(RedisQueue::connect(&volatile.url, &prefix(), 10, Duration::from_secs(30), true).await.is_ok());
    volatile.stop().await;

    let durable = RedisServer::start(true).await;
    assert!(RedisQueue::connect(&durable.url, &prefix(), 10, Duration::from_secs(30), false).await.is_ok());
    durable.stop().await;
}

#[tokio::test]
async fn the_pipeline_works_on_postgres_and_redis() {
    let Some((pg, redis)) = both("pipeline on PostgreSQL and Redis") else { return };
    let app = scaled_app(postgres_database(&pg).await, redis, 0).await;
    let valid = pageview("scaled", 1);
    let mut invalid = pageview("scaled", 2);
    invalid["name"] = "dance".into();
    app.accept(&serde_json::json!([valid, invalid, valid])).await;
    assert_eq!(app.post_raw("not json", &[("content-type", "application/json")]).await.status(), 400);
    app.process().await;
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["path"], "/page/1");
    let errors = app.errors().await;
    let mut codes: Vec<String> = errors.iter().flat_map(reason_codes).collect();
    codes.sort();
    assert_eq!(codes, ["body:invalid_json", "name:undeclared_name"]);
    assert_eq!(app.state.queue.depth().await.unwrap(), 0, "acknowledged entries are deleted from the stream");
}

#[tokio::test]
async fn a_postgres_outage_holds_the_backlog_and_makes_no_event_errors() {
    let Some((pg, redis)) = both("PostgreSQL outage") else { return };
    let database = postgres_database(&pg).await;
    let host_port = database.split('@').nth(1).and_then(|r| r.split('/').next()).unwrap().to_string();
    let proxy = Proxy::start(host_port.clone()).await;
    let via_proxy = database.replace(&host_port, &format!("127.0.0.1:{}", proxy.port));
    let app = scaled_app(via_proxy, redis, 2).await;

    // One event before the outage: the collector learns the application's key
    // while the store answers, as a running node would have.
    app.accept(&pageview("before-outage", 0)).await;
    proxy.cut();
    let batch = Value::Array((1..201).map(|i| pageview("outage", i)).collect());
    let ids = app.accept(&batch).await;
    assert_eq!(ids.len(), 200, "ingest keeps accepting while the store is down");
    // The workers have tried and failed at least twice; nothing was acknowledged.
    eventually(30, "workers retried against the dead store", || async { proxy.refused() >= 2 }).await;
    assert!(app.state.queue.depth().await.unwrap() >= 200, "nothing acknowledged while the store is down");
    assert_eq!(app.get_response("/api/events").await.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.restore();
    eventually(60, "the backlog drained", || async { app.state.queue.depth().await.unwrap() == 0 }).await;
    assert_eq!(app.events().await.len(), 201);
    assert!(app.errors().await.is_empty(), "an outage is not an event error");
    app.shutdown().await;
}

#[tokio::test]
async fn with_redis_down_the_collector_answers_503_and_never_202() {
    if service_url("THE_EYE_TEST_POSTGRES_URL", "Redis outage").is_none() {
        return;
    }
    let server = RedisServer::start(true).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.redis_url = Some(server.url.clone());
    settings.retry_after_secs = 3;
    let app = TestApp::spawn_in(dir, settings).await;
    app.accept(&pageview("before", 1)).await;

    server.stop().await;
    for i in 0..5 {
        let response = app.post(&pageview("during", i)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "3");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "queue_unavailable");
    }
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// XINFO CONSUMERS as name → pending count.
async fn pending_by_consumer(url: &str, stream: &str) -> HashMap<String, i64> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let rows: Vec<HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("CONSUMERS").arg(stream).arg("workers").query_async(&mut conn).await.unwrap();
    rows.into_iter()
        .filter_map(|row| {
            let name = match row.get("name")? {
                redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                _ => return None,
            };
            let pending = match row.get("pending")? {
                redis::Value::Int(n) => *n,
                _ => return None,
            };
            Some((name, pending))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_nodes_and_two_workers_lose_nothing_when_a_worker_is_killed() {
    let Some(pg) = service_url("THE_EYE_TEST_POSTGRES_URL", "multi-process") else { return };
    if service_url("THE_EYE_TEST_REDIS_URL", "multi-process").is_none() {
        return;
    }
    let redis = RedisServer::start(true).await; // durable, as in production: no --allow-unsafe-redis
    let database = postgres_database(&pg).await;
    let prefix = prefix();
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, &str)> = vec![
        ("THE_EYE_DATABASE_URL", &database),
        ("THE_EYE_REDIS_URL", &redis.url),
        ("THE_EYE_REDIS_PREFIX", &prefix),
        ("THE_EYE_REDIS_CLAIM_IDLE_SECS", "2"),
        ("THE_EYE_DATA_DIR", dir.path().to_str().unwrap()),
        ("THE_EYE_RATE_LIMIT_IP", "off"),
        ("THE_EYE_RATE_LIMIT_APP", "off"),
    ];
    let token = create_token(&["--database-url", &database]);
    let key = crate::procs::create_app_key(&["--database-url", &database], "multi");
    let ingest = [
        Eye::start(&["serve", "--listen", "127.0.0.1:0", "--no-worker"], &env).await,
        Eye::start(&["serve", "--listen", "127.0.0.1:0", "--no-worker"], &env).await,
    ];
    let bases: Vec<String> = ingest.iter().map(|e| e.base.clone().unwrap()).collect();
    // The victim holds each batch for a while, so it dies with entries pending.
    // Its batches of 7 split the 5-event entries of the batched senders, so it
    // also dies holding entries it has settled only in part.
    let mut slow = env.clone();
    slow.push(("THE_EYE_WORKER_LINGER_MS", "500"));
    slow.push(("THE_EYE_WORKER_BATCH_SIZE", "7"));
    let victim = Eye::start(&["worker"], &slow).await;
    let survivor = Eye::start(&["worker"], &env).await;
    let victim_tag = format!("-{}-", victim.pid());

    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let senders: Vec<_> = (0..4)
        .map(|c| {
            let (client, acked, stop, count_tx, key) =
                (client.clone(), acked.clone(), stop.clone(), count_tx.clone(), key.clone());
            let base = bases[c % 2].clone();
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    // Two senders send one event a request, two send five
                    // (one Redis entry each).
                    let body = if c < 2 {
                        pageview(&format!("multi-{c}"), i).to_string()
                    } else {
                        Value::Array((0..5).map(|k| pageview(&format!("multi-{c}-{k}"), i)).collect()).to_string()
                    };
                    let Ok(r) = client
                        .post(format!("{base}/collector"))
                        .header("content-type", "application/json")
                        .header("x-eye-key", &key)
                        .body(body)
                        .send()
                        .await
                    else {
                        continue;
                    };
                    if r.status() == 202 {
                        let body: Value = r.json().await.unwrap();
                        let mut acked = acked.lock().unwrap();
                        acked.extend(body["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_string()));
                        count_tx.send_replace(acked.len());
                    }
                }
            })
        })
        .collect();

    count_rx.wait_for(|n| *n >= 500).await.unwrap();
    let stream = format!("{prefix}:events");
    // Kill the victim while it holds entries it has not acknowledged, and
    // while some entry is settled only in part.
    let victim_holds = || async {
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let noted: u64 = redis::cmd("ZCARD").arg(format!("{stream}:settled")).query_async(&mut conn).await.unwrap();
        noted > 0
            && pending_by_consumer(&redis.url, &stream)
                .await
                .iter()
                .any(|(name, n)| name.contains(&victim_tag) && *n > 0)
    };
    eventually(30, "the victim holds entries, and an entry is settled in part", victim_holds).await;
    victim.kill().await;
    count_rx.wait_for(|n| *n >= 1500).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    eventually(60, "the survivor took over and drained everything", || async {
        let pending = pending_by_consumer(&redis.url, &stream).await;
        let depth: Value = client.get(format!("{}/readyz", bases[0])).send().await.unwrap().json().await.unwrap();
        depth["queue_depth"] == 0 && pending.values().all(|n| *n == 0)
    })
    .await;

    let stored = count_events(&client, &bases[1], &token).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for id in &acked {
        let r = client.get(format!("{}/api/events/{id}", bases[0])).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged event {id} was lost");
        seen.insert(id.clone());
    }
    assert_eq!(stored, seen.len(), "every acknowledged event exactly once, nothing else");
    survivor.kill().await;
    for e in ingest {
        e.kill().await;
    }
    redis.stop().await;
}

#[tokio::test]
async fn postgres_events_are_partitioned_by_month_and_pruned_whole() {
    use sqlx::Connection;
    use the_eye::domain::{Timestamp, ValidEvent};
    use the_eye::store::{NewEvent, PostgresStore, Store, WriteBatch};

    let Some(pg) = service_url("THE_EYE_TEST_POSTGRES_URL", "PostgreSQL partitions") else { return };
    let url = postgres_database(&pg).await;
    let store = PostgresStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let event = |id: uuid::Uuid, ts: &str| NewEvent {
        event: ValidEvent {
            event_id: id,
            session_id: "p".into(),
            category: "page interaction".into(),
            name: "pageview".into(),
            data: serde_json::Map::new(),
            timestamp: Timestamp::parse(ts).unwrap(),
        },
        received_at: chrono::Utc::now(),
        application: None,
    };
    let now = uuid::Uuid::now_v7();
    let legacy = the_eye::domain::event_id::derive(&pageview("old", 1)); // 2021: no partition made
    let random = uuid::Uuid::new_v4();
    let batch = WriteBatch {
        events: vec![
            event(now, &chrono::Utc::now().to_rfc3339()),
            event(legacy, "2021-01-01T09:00:01Z"),
            event(random, "2021-01-01T09:00:02Z"),
        ],
        errors: vec![],
    };
    store.write(&batch).await.unwrap();

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let this_month = chrono::Utc::now().format("events_%Y_%m").to_string();
    let part = |id: uuid::Uuid| format!("SELECT tableoid::regclass::text FROM events WHERE event_id = '{id}'");
    let home: String = sqlx::query_scalar(&part(now)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(home, this_month);
    let home: String = sqlx::query_scalar(&part(legacy)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(home, "events_default");
    let ahead: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname ~ '^events_[0-9]{4}_[0-9]{2}$'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(ahead, 5, "last month, this month and three ahead");

    // Pruning drops whole months: this month's event goes, the others stay.
    let next_month = (chrono::Utc::now().date_naive().with_day(1).unwrap() + chrono::Months::new(1)).to_string();
    let dropped: Vec<String> = sqlx::query_scalar(&format!("SELECT the_eye_drop_partitions_before('{next_month}')"))
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(dropped.contains(&this_month), "{dropped:?}");
    assert!(store.event(now).await.unwrap().is_none());
    assert!(store.event(legacy).await.unwrap().is_some());
    assert!(store.event(random).await.unwrap().is_some());
    // Upkeep puts back what is still ahead and leaves the rest.
    store.maintain().await.unwrap();
}

#[tokio::test]
async fn deliveries_to_a_dead_consumer_count_as_attempts() {
    let Some(url) = service_url("THE_EYE_TEST_REDIS_URL", "Redis delivery count") else { return };
    let prefix = prefix();
    let idle = Duration::from_millis(200);
    let envelope = the_eye::queue::Envelope {
        event_id: uuid::Uuid::now_v7(),
        received_at: chrono::Utc::now(),
        application: Some("shop".into()),
        body: the_eye::queue::Body::Event("{}".into()),
    };
    let first = RedisQueue::connect(&url, &prefix, 100, idle, true).await.unwrap();
    use the_eye::queue::Queue;
    first.enqueue(vec![envelope.clone()]).await.unwrap();
    // Three consumers take it in turn and die with it (never ack or release).
    let mut seen_attempts = Vec::new();
    for _ in 0..3 {
        let consumer = RedisQueue::connect(&url, &prefix, 100, idle, true).await.unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the entry was not handed over");
            got = consumer.claim(10, Duration::from_millis(100)).await.unwrap();
        }
        assert_eq!(got[0].envelope, envelope_at_micros(&envelope));
        seen_attempts.push(got[0].attempts);
    }
    assert_eq!(seen_attempts, [0, 1, 2], "each earlier delivery is a failed attempt");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{prefix}:events")).query_async(&mut conn).await.unwrap();
}

fn envelope_at_micros(e: &the_eye::queue::Envelope) -> the_eye::queue::Envelope {
    let mut e = e.clone();
    e.received_at = chrono::DateTime::from_timestamp_micros(e.received_at.timestamp_micros()).unwrap();
    e
}

/// The environment of a `the-eye worker` on the test services, with a queue
/// of its own.
fn worker_env<'a>(
    database: &'a str,
    redis: &'a str,
    prefix: &'a str,
    dir: &'a std::path::Path,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("THE_EYE_DATABASE_URL", database),
        ("THE_EYE_REDIS_URL", redis),
        ("THE_EYE_REDIS_PREFIX", prefix),
        ("THE_EYE_ALLOW_UNSAFE_REDIS", "true"),
        ("THE_EYE_DATA_DIR", dir.to_str().unwrap()),
    ]
}

#[tokio::test]
async fn a_worker_serves_its_health_readiness_and_metrics_on_its_own_address() {
    let Some((pg, redis)) = both("worker health endpoints") else { return };
    let database = postgres_database(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let port = crate::procs::free_port();
    let prefix = prefix();
    let mut env = worker_env(&database, &redis, &prefix, dir.path());
    env.push(("THE_EYE_METRICS_PUBLIC", "true"));
    let addr = format!("127.0.0.1:{port}");
    let worker = Eye::start(&["worker", "--health-listen", &addr], &env).await;

    let healthz = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let readyz = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);
    let ready: Value = readyz.json().await.unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["store"].as_str(), ready["queue"].as_str()),
        (Some("ready"), Some("ok"), Some("ok"))
    );
    let metrics = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("the_eye_events_stored_total"));
    // Only the health routes: the worker serves no collector.
    let collector = reqwest::Client::new().post(format!("http://{addr}/collector")).body("{}").send().await.unwrap();
    assert_eq!(collector.status(), StatusCode::NOT_FOUND);
    assert_eq!(worker.terminate(30).await.map(|s| s.success()), Some(true));
}

#[tokio::test]
async fn a_worker_whose_health_address_is_taken_stops_before_it_starts_naming_the_address() {
    let Some((pg, redis)) = both("worker health address taken") else { return };
    let database = postgres_database(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let prefix = prefix();
    let out = tokio::process::Command::new(crate::procs::BIN)
        .args(["worker", "--health-listen", &addr])
        .envs(worker_env(&database, &redis, &prefix, dir.path()))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} for the worker's health endpoints")),
        "the error names the address: {stderr}"
    );
    assert!(!stderr.contains("The Eye worker is running"), "it stopped before its workers started: {stderr}");
}
