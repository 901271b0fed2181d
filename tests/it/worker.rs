//! The worker's failure handling, against the real SQLite store with faults
//! injected in front of it: an outage never becomes an event error, and a row
//! the store refuses stops blocking the queue after `max_attempts`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use the_eye::config::Settings;
use the_eye::domain::{CategoryDef, EventTypeDef};
use the_eye::queue::{Body, Envelope, Queue, Spool};
use the_eye::store::{EventQuery, EventReader, EventSink, SqliteStore, Store, StoreError, WriteBatch};
use the_eye::worker::{CatalogCache, Worker};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{pageview, reason_codes, test_settings, TestApp};
use crate::procs::eventually;

/// The real store, with injected write failures.
#[derive(Debug)]
struct Faulty {
    inner: SqliteStore,
    /// The next this many writes fail as an outage.
    outages: AtomicUsize,
    /// Writes containing one of these event ids are refused.
    poison: Mutex<HashSet<Uuid>>,
    /// The next this many writes of a single row fail as an outage: the store
    /// goes down while the worker isolates a refused row.
    single_row_outages: AtomicUsize,
    /// The next this many writes panic: a bug in a backend.
    panics: AtomicUsize,
}

/// The worker sees only the `EventSink` role, so that is all the fake implements.
#[async_trait]
impl EventSink for Faulty {
    async fn catalog(&self) -> Result<(Vec<CategoryDef>, Vec<EventTypeDef>), StoreError> {
        self.inner.catalog().await
    }
    async fn write(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let take = |n: &AtomicUsize| n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if take(&self.panics) {
            panic!("injected panic in the store");
        }
        if take(&self.outages) {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        if batch.events.len() + batch.errors.len() == 1 && take(&self.single_row_outages) {
            return Err(StoreError::Unavailable("injected outage while isolating".into()));
        }
        let poison = self.poison.lock().unwrap().clone();
        if batch.events.iter().any(|e| poison.contains(&e.event.event_id)) {
            return Err(StoreError::Rejected("injected refusal".into()));
        }
        self.inner.write(batch).await
    }
}

/// A worker over the app's queue and a faulty view of its store.
async fn faulty_worker(app: &TestApp) -> (Worker, Arc<Faulty>) {
    faulty_worker_on(app.state.queue.clone(), &app.state.settings).await
}

/// A worker over `queue` and a faulty view of the settings' store.
async fn faulty_worker_on(queue: Arc<dyn Queue>, settings: &Settings) -> (Worker, Arc<Faulty>) {
    let inner = SqliteStore::connect(settings.store.database.as_str()).await.unwrap();
    inner.migrate().await.unwrap();
    let faulty = Arc::new(Faulty {
        inner,
        outages: AtomicUsize::new(0),
        poison: Mutex::new(HashSet::new()),
        single_row_outages: AtomicUsize::new(0),
        panics: AtomicUsize::new(0),
    });
    let store: Arc<dyn EventSink> = faulty.clone();
    let catalog = Arc::new(CatalogCache::new(store.clone(), Duration::from_secs(60)));
    let worker = Worker::new(queue, store, catalog, &settings.worker, settings.rules.clone());
    (worker, faulty)
}

#[tokio::test]
async fn a_store_outage_is_retried_and_never_becomes_an_event_error() {
    let app = TestApp::spawn().await;
    let (worker, faulty) = faulty_worker(&app).await;
    app.accept(&serde_json::json!([pageview("outage", 1), pageview("outage", 2)])).await;
    faulty.outages.store(3, Ordering::SeqCst);

    let claimed = worker.step(Duration::ZERO, &CancellationToken::new()).await.unwrap();
    assert_eq!(claimed, 2);
    assert_eq!(faulty.outages.load(Ordering::SeqCst), 0, "the worker retried through the outage");
    assert_eq!(app.events().await.len(), 2);
    assert!(app.errors().await.is_empty());
    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn shutdown_during_an_outage_leaves_the_batch_in_the_queue() {
    let app = TestApp::spawn().await;
    let (worker, faulty) = faulty_worker(&app).await;
    app.accept(&pageview("stuck", 1)).await;
    faulty.outages.store(usize::MAX, Ordering::SeqCst);
    let shutdown = CancellationToken::new();
    let step = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { worker.step(Duration::ZERO, &shutdown).await }
    });
    shutdown.cancel();
    assert!(step.await.unwrap().is_err());
    assert_eq!(app.state.queue.depth().await.unwrap(), 1, "not acknowledged");
    assert!(app.errors().await.is_empty());
}

#[tokio::test]
async fn a_row_the_store_refuses_becomes_an_event_error_after_max_attempts() {
    let app = TestApp::spawn_with(|s| s.max_attempts = 3).await;
    let (worker, faulty) = faulty_worker(&app).await;
    let ids = app.accept(&serde_json::json!([pageview("p", 1), pageview("p", 2), pageview("p", 3)])).await;
    let poisoned = Uuid::parse_str(&ids[1]).unwrap();
    faulty.poison.lock().unwrap().insert(poisoned);

    let never = CancellationToken::new();
    worker.step(Duration::ZERO, &never).await.unwrap();
    // The two good events are in; the refused one waits for another attempt.
    assert_eq!(app.events().await.len(), 2);
    assert_eq!(app.state.queue.depth().await.unwrap(), 1);
    worker.step(Duration::ZERO, &never).await.unwrap();
    assert!(app.errors().await.is_empty(), "not yet: attempt 2 of 3");
    worker.step(Duration::ZERO, &never).await.unwrap();

    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
    let errors = app.errors().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["event_id"], ids[1].as_str());
    assert_eq!(reason_codes(&errors[0]), ["body:store_rejected"]);
    assert!(errors[0]["reasons"][0]["message"].as_str().unwrap().contains("3 times"));
    assert_eq!(app.events().await.len(), 2);
}

#[tokio::test]
async fn an_outage_while_isolating_a_refused_row_is_retried_not_stranded() {
    let app = TestApp::spawn().await;
    let (worker, faulty) = faulty_worker(&app).await;
    let ids = app.accept(&serde_json::json!([pageview("iso", 1), pageview("iso", 2), pageview("iso", 3)])).await;
    faulty.poison.lock().unwrap().insert(Uuid::parse_str(&ids[0]).unwrap());
    // The batch is refused; while the worker writes it row by row, the store goes down.
    faulty.single_row_outages.store(3, Ordering::SeqCst);

    let claimed = worker.step(Duration::ZERO, &CancellationToken::new()).await.unwrap();
    assert_eq!(claimed, 3);
    assert_eq!(faulty.single_row_outages.load(Ordering::SeqCst), 0, "retried through the outage");
    assert_eq!(app.events().await.len(), 2);
    // The refused row waits for its next attempt, claimable again; nothing is held.
    assert_eq!(app.state.queue.depth().await.unwrap(), 1);
    assert_eq!(app.state.queue.in_flight().await.unwrap(), 0);
    // Its remaining attempts run out and it becomes an event error, as always.
    worker.run_until_empty().await.unwrap();
    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
    let errors = app.errors().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["event_id"], ids[0].as_str());
}

/// A spool and a store of their own, so the test can lock the spool's file
/// from outside; and a lock on it, taken the way another writer would.
async fn spool_and_worker(dir: &tempfile::TempDir) -> (Arc<Spool>, Worker, Arc<Faulty>, Settings) {
    let settings = test_settings(dir).parse().unwrap();
    let spool = Arc::new(Spool::open(&settings.store.spool_path(), 1000, Duration::from_secs(600)).await.unwrap());
    let (worker, faulty) = faulty_worker_on(spool.clone(), &settings).await;
    (spool, worker, faulty, settings)
}

fn envelope(session: &str, n: u32) -> Envelope {
    Envelope {
        event_id: Uuid::now_v7(),
        received_at: chrono::Utc::now(),
        application: None,
        body: Body::Event(pageview(session, n).to_string()),
    }
}

async fn lock(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn an_ack_the_locked_spool_refuses_is_retried_until_it_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, worker, faulty, settings) = spool_and_worker(&dir).await;
    spool.enqueue((0..3).map(|n| envelope("ack", n)).collect()).await.unwrap();
    let mut locker = lock(&settings.store.spool_path()).await;

    let step = tokio::spawn({
        let worker = worker.clone();
        async move { worker.step(Duration::ZERO, &CancellationToken::new()).await }
    });
    eventually(30, "the spool refused the ack", || async { spool.failed_commits() >= 1 }).await;
    let stored = faulty.inner.events(&EventQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(stored.items.len(), 3, "the store has them; only the ack is missing");
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();

    assert_eq!(step.await.unwrap().unwrap(), 3, "the step finished once the spool took the ack");
    assert_eq!(spool.depth().await.unwrap(), 0);
    assert_eq!(spool.in_flight().await.unwrap(), 0);
}

#[tokio::test]
async fn a_release_the_locked_spool_refuses_still_hands_the_entry_back() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, worker, faulty, settings) = spool_and_worker(&dir).await;
    let poisoned = envelope("release", 1);
    faulty.poison.lock().unwrap().insert(poisoned.event_id);
    spool.enqueue(vec![poisoned.clone()]).await.unwrap();
    let mut locker = lock(&settings.store.spool_path()).await;

    let step = tokio::spawn({
        let worker = worker.clone();
        async move { worker.step(Duration::ZERO, &CancellationToken::new()).await }
    });
    eventually(30, "the spool refused the release", || async { spool.failed_commits() >= 1 }).await;
    // Its attempt could not be counted, but the entry is claimable again now.
    let again = spool.claim(10, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].envelope.event_id, poisoned.event_id);
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    assert_eq!(step.await.unwrap().unwrap(), 1, "the step counted the attempt once the spool could");
    spool.release(&[again[0].tag]).await.unwrap();
    assert_eq!(spool.depth().await.unwrap(), 1);
    let next = spool.claim(10, Duration::ZERO).await.unwrap();
    assert!(next[0].attempts >= 1, "the failed attempt was counted");
}

#[tokio::test]
async fn a_worker_that_panics_is_started_again_and_its_batch_is_not_lost() {
    let app = TestApp::spawn_with(|s| s.spool_claim_idle_secs = 1).await;
    let (worker, faulty) = faulty_worker(&app).await;
    faulty.panics.store(1, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let background = the_eye::tasks::Background::start().unwrap();
    let workers = the_eye::tasks::spawn_workers(background.handle(), &worker, 1, &stop);
    let ids = app.accept(&serde_json::json!([pageview("panic", 1), pageview("panic", 2)])).await;

    // The first write panics and takes the worker task with it; the
    // supervisor starts a new one, which gets the batch once its claim lapses.
    eventually(30, "both events are stored", || async { app.events().await.len() == 2 }).await;
    assert_eq!(faulty.panics.load(Ordering::SeqCst), 0, "the panic happened");
    let stored: Vec<String> = app.events().await.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    for id in &ids {
        assert!(stored.contains(id));
    }
    eventually(30, "the queue is empty", || async { app.state.queue.depth().await.unwrap() == 0 }).await;
    stop.cancel();
    assert!(the_eye::tasks::join_within(workers, Duration::from_secs(10)).await);
}
