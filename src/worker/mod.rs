//! Workers: claim a batch from the queue, validate it, write events and event
//! errors in one transaction, then acknowledge the batch.
//!
//! [`Worker::step`] is one such round and is what tests call;
//! [`Worker::run`] only adds waiting, backoff and shutdown around it.
//!
//! Failures are sorted by whose fault they are:
//! - the store is unavailable: retry the same batch with backoff, for as long as
//!   it takes; the queue holds the backlog and nothing becomes an event error;
//! - the store refuses particular rows: write the batch row by row to find them,
//!   count an attempt against each, and after `max_attempts` record it as an
//!   event error so it stops blocking the queue;
//! - processing an entry panics: the same attempt counting, and the other
//!   entries of the batch are not affected.

mod catalog_cache;
mod validation;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use catalog_cache::CatalogCache;

use crate::config::WorkerSettings;
use crate::domain::{self, Catalog, Reason, Rules};
use crate::metrics::{CodeLabels, Metrics};
use crate::queue::{Body, Delivery, DeliveryTag, Envelope, Queue, QueueError};
use crate::store::{EventSink, NewEvent, NewEventError, StoreError, WriteBatch};
use validation::Validators;

/// How long an idle worker waits on the queue before looking at shutdown again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// One consumer of the queue.
#[derive(Debug, Clone)]
pub struct Worker {
    queue: Arc<dyn Queue>,
    store: Arc<dyn EventSink>,
    catalog: Arc<CatalogCache>,
    rules: Rules,
    batch_size: usize,
    /// How long a worker waits for a partial batch to fill (see [`Worker::step`]).
    linger: Duration,
    max_attempts: u32,
    metrics: Arc<Metrics>,
    /// Where batches are validated (see [`validation`]).
    validators: Arc<Validators>,
}

/// Why a step did not complete; the entries it held stay in the queue.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The store failed in a way a retry may fix.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shutdown began while the store was being retried.
    #[error("shutting down")]
    ShuttingDown,
}

/// What an event error is built from: id, raw payload, time received, application.
type EntryRef<'a> = (uuid::Uuid, &'a str, chrono::DateTime<chrono::Utc>, &'a Option<String>);

/// What became of one delivery.
enum Outcome {
    Event(NewEvent),
    Error(NewEventError),
    /// Processing failed; try again later.
    Retry,
    /// Moved into the batch being written (see [`lend`]): an event or not.
    Lent {
        event: bool,
    },
}

struct Item {
    tag: DeliveryTag,
    attempts: u32,
    raw: String,
    outcome: Outcome,
}

impl Worker {
    /// A worker over these backends with the settings' limits.
    pub fn new(
        queue: Arc<dyn Queue>,
        store: Arc<dyn EventSink>,
        catalog: Arc<CatalogCache>,
        settings: &WorkerSettings,
        rules: Rules,
    ) -> Self {
        Self {
            queue,
            store,
            catalog,
            rules,
            batch_size: settings.batch_size,
            linger: settings.linger,
            max_attempts: settings.max_attempts,
            metrics: Arc::new(Metrics::new()),
            // More validation threads than cores would only take turns.
            validators: Arc::new(Validators::start(
                settings.workers.min(std::thread::available_parallelism().map_or(1, |n| n.get())),
            )),
        }
    }

    /// Records batch sizes, store latency, retries and outcomes in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where this worker records what it does.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs until `shutdown`; finishes the batch in hand first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            match self.step(IDLE_WAIT, &shutdown).await {
                Ok(_) => backoff.reset(),
                Err(StepError::ShuttingDown) => break,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "worker step failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        tracing::debug!("worker stopped");
    }

    /// Processes batches until the queue has nothing claimable; returns how many entries it handled.
    pub async fn run_until_empty(&self) -> Result<usize, StepError> {
        let never = CancellationToken::new();
        let mut total = 0;
        loop {
            match self.step(Duration::ZERO, &never).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// One round: claim (waiting up to `wait`), validate, write, acknowledge.
    /// Returns the number of entries claimed.
    ///
    /// When waiting is allowed and the batch is not full, the worker lingers a
    /// moment for more entries: the events are already durable, and one
    /// transaction of a thousand rows costs the store far less than ten of a
    /// hundred (each commit rewrites the index pages it touched).
    pub async fn step(&self, wait: Duration, shutdown: &CancellationToken) -> Result<usize, StepError> {
        let catalog = self.catalog.get().await?;
        let mut deliveries = tokio::select! {
            _ = shutdown.cancelled() => return Err(StepError::ShuttingDown),
            d = self.queue.claim(self.batch_size, wait) => d?,
        };
        if !wait.is_zero() && !self.linger.is_zero() && !deliveries.is_empty() && deliveries.len() < self.batch_size {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(self.linger) => {}
            }
            // The first claim is in hand: a failure here must not drop it.
            match self.queue.claim(self.batch_size - deliveries.len(), Duration::ZERO).await {
                Ok(more) => deliveries.extend(more),
                Err(e) => tracing::warn!(error = %e, "cannot top up a partial batch; processing what was claimed"),
            }
        }
        let claimed = deliveries.len();
        if claimed == 0 {
            return Ok(0);
        }
        self.metrics.worker_batch_size.observe(claimed as f64);
        let worker = self.clone();
        let mut items: Vec<Item> =
            self.validators.run(move || deliveries.into_iter().map(|d| worker.process(d, &catalog)).collect()).await;

        // From here on the entries are this worker's to settle: every failure
        // below is retried with backoff until it succeeds or shutdown begins.
        // Giving up early would leave them claimed and unacknowledged (the
        // queue's claim timeout is only the backstop for a worker that dies).
        let mut backoff = Backoff::default();
        loop {
            let started = std::time::Instant::now();
            let batch = lend(&mut items);
            let result = self.store.write(&batch).await;
            give_back(&mut items, batch);
            let written = match result {
                Err(StoreError::Rejected(e)) => {
                    tracing::warn!(error = %e, "store refused a batch; writing it row by row");
                    self.isolate(&mut items).await
                }
                other => other,
            };
            self.metrics.store_write_seconds.observe(started.elapsed().as_secs_f64());
            match written {
                Ok(()) => break,
                Err(e) => self.back_off(&mut backoff, &e, "store unavailable; will retry the batch", shutdown).await?,
            }
        }

        let (retry, done): (Vec<_>, Vec<_>) = items.iter().partition(|i| matches!(i.outcome, Outcome::Retry));
        let done: Vec<DeliveryTag> = done.iter().map(|i| i.tag).collect();
        let retry: Vec<DeliveryTag> = retry.iter().map(|i| i.tag).collect();
        let mut backoff = Backoff::default();
        while let Err(e) = self.queue.ack(&done).await {
            self.back_off(&mut backoff, &e, "cannot acknowledge a stored batch; will retry", shutdown).await?;
        }
        let mut backoff = Backoff::default();
        while let Err(e) = self.queue.release(&retry).await {
            self.back_off(&mut backoff, &e, "cannot release entries for another attempt; will retry", shutdown).await?;
        }
        for item in &items {
            match &item.outcome {
                Outcome::Event(_) => {
                    self.metrics.events_stored.inc();
                }
                Outcome::Error(e) => {
                    for reason in &e.reasons {
                        self.metrics.event_errors.get_or_create(&CodeLabels { code: reason.code.clone() }).inc();
                    }
                }
                Outcome::Retry | Outcome::Lent { .. } => {}
            }
        }
        tracing::debug!(claimed, retried = retry.len(), "batch done");
        Ok(claimed)
    }

    /// One failed try at settling a batch: counts the retry, says why, and
    /// waits the next backoff delay, or gives up if shutdown begins meanwhile.
    async fn back_off(
        &self,
        backoff: &mut Backoff,
        error: &(dyn std::fmt::Display + Sync),
        message: &'static str,
        shutdown: &CancellationToken,
    ) -> Result<(), StepError> {
        self.metrics.store_retries.inc();
        let delay = backoff.next_delay();
        tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "{message}");
        pause(delay, shutdown).await
    }

    fn process(&self, d: Delivery, catalog: &Catalog) -> Item {
        let Envelope { event_id, received_at, application, body } = d.envelope;
        // The payload's text moves into the item (it is kept for the rare
        // event the store refuses); only event errors copy it.
        let (raw, rejected) = match body {
            Body::Event(json) => (json, None),
            Body::Rejected { raw, reason } => (raw, Some(reason)),
        };
        let error = |reasons: Vec<Reason>| {
            Outcome::Error(NewEventError {
                event_id,
                raw: raw.clone(),
                reasons,
                received_at,
                application: application.clone(),
            })
        };
        // A panic in validation (a bug, or a pathological input) must cost this entry
        // an attempt, not the whole batch or the worker.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match rejected {
            Some(reason) => error(vec![reason]),
            None => match domain::validate_json(&raw, event_id, received_at, catalog, &self.rules) {
                Ok(event) => Outcome::Event(NewEvent { event, received_at, application: application.clone() }),
                Err(reasons) => error(reasons),
            },
        }));
        let outcome = outcome.unwrap_or_else(|_| {
            self.metrics.panicked("validation");
            tracing::error!(%event_id, attempt = d.attempts + 1, "processing an entry panicked");
            self.last_chance(
                d.attempts,
                (event_id, &raw, received_at, &application),
                "processing_failed",
                "processing this event failed",
            )
        });
        Item { tag: d.tag, attempts: d.attempts, raw, outcome }
    }

    /// After its last allowed attempt an entry becomes an event error; before that, a retry.
    fn last_chance(&self, attempts: u32, entry: EntryRef<'_>, code: &str, message: &str) -> Outcome {
        let (event_id, raw, received_at, application) = entry;
        if attempts + 1 >= self.max_attempts {
            Outcome::Error(NewEventError {
                event_id,
                raw: raw.to_string(),
                reasons: vec![Reason::new("body", code, format!("{message} {} times", attempts + 1))],
                received_at,
                application: application.clone(),
            })
        } else {
            Outcome::Retry
        }
    }

    /// Writes items one by one to find the ones the store refuses.
    async fn isolate(&self, items: &mut [Item]) -> Result<(), StoreError> {
        for item in items.iter_mut() {
            let single = batch_of(std::slice::from_ref(item));
            if single.is_empty() {
                continue;
            }
            match self.store.write(&single).await {
                Ok(()) => {}
                Err(StoreError::Rejected(e)) => {
                    let (event_id, received_at, application) = match &item.outcome {
                        Outcome::Event(ev) => (ev.event.event_id, ev.received_at, ev.application.clone()),
                        Outcome::Error(err) => (err.event_id, err.received_at, err.application.clone()),
                        Outcome::Retry | Outcome::Lent { .. } => continue,
                    };
                    tracing::warn!(%event_id, error = %e, "store refused an entry");
                    item.outcome = self.last_chance(
                        item.attempts,
                        (event_id, &item.raw, received_at, &application),
                        "store_rejected",
                        "the store refused this event",
                    );
                    if let Outcome::Error(err) = &item.outcome {
                        let fallback = WriteBatch { events: vec![], errors: vec![err.clone()] };
                        if let Err(e) = self.store.write(&fallback).await {
                            tracing::error!(%event_id, error = %e, "store refused the event error too; will retry");
                            item.outcome = Outcome::Retry;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Waits `delay`, or returns `ShuttingDown` as soon as shutdown begins.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> Result<(), StepError> {
    tokio::select! {
        _ = shutdown.cancelled() => Err(StepError::ShuttingDown),
        _ = tokio::time::sleep(delay) => Ok(()),
    }
}

/// Moves the items' events and errors into one batch, without copying them;
/// [`give_back`] returns them once the write is done, however it went.
fn lend(items: &mut [Item]) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for item in items.iter_mut() {
        match std::mem::replace(&mut item.outcome, Outcome::Lent { event: true }) {
            Outcome::Event(e) => batch.events.push(e),
            Outcome::Error(e) => {
                batch.errors.push(e);
                item.outcome = Outcome::Lent { event: false };
            }
            other => item.outcome = other,
        }
    }
    batch
}

/// Puts what [`lend`] took back into the items it came from, in order.
fn give_back(items: &mut [Item], batch: WriteBatch) {
    let (mut events, mut errors) = (batch.events.into_iter(), batch.errors.into_iter());
    for item in items.iter_mut() {
        let back = match item.outcome {
            Outcome::Lent { event: true } => events.next().map(Outcome::Event),
            Outcome::Lent { event: false } => errors.next().map(Outcome::Error),
            _ => continue,
        };
        // Every lent item has its entry in the batch; were one missing, the
        // entry would be retried rather than settled.
        item.outcome = back.unwrap_or(Outcome::Retry);
    }
}

/// A copy of the items' events and errors as one batch (writing them one by one).
fn batch_of(items: &[Item]) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for item in items {
        match &item.outcome {
            Outcome::Event(e) => batch.events.push(e.clone()),
            Outcome::Error(e) => batch.errors.push(e.clone()),
            Outcome::Retry | Outcome::Lent { .. } => {}
        }
    }
    batch
}

/// Exponential backoff from 100 ms, doubling up to 5 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = Duration::from_millis(100u64 << self.failures.min(6)).min(Duration::from_secs(5));
        self.failures += 1;
        delay
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(tag: u128, outcome: Outcome) -> Item {
        Item { tag: DeliveryTag(tag), attempts: 0, raw: String::new(), outcome }
    }

    fn event(session: &str) -> Outcome {
        let event = domain::ValidEvent {
            event_id: uuid::Uuid::new_v4(),
            session_id: session.into(),
            category: "c".into(),
            name: "n".into(),
            data: Default::default(),
            timestamp: domain::Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
        };
        Outcome::Event(NewEvent { event, received_at: chrono::Utc::now(), application: None })
    }

    fn error(raw: &str) -> Outcome {
        Outcome::Error(NewEventError {
            event_id: uuid::Uuid::new_v4(),
            raw: raw.into(),
            reasons: vec![],
            received_at: chrono::Utc::now(),
            application: None,
        })
    }

    /// What each item holds, to compare before and after.
    fn shape(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match &i.outcome {
                Outcome::Event(e) => format!("{} event {}", i.tag.0, e.event.session_id),
                Outcome::Error(e) => format!("{} error {}", i.tag.0, e.raw),
                Outcome::Retry => format!("{} retry", i.tag.0),
                Outcome::Lent { .. } => format!("{} lent", i.tag.0),
            })
            .collect()
    }

    #[test]
    fn a_lent_batch_comes_back_to_the_items_it_came_from() {
        let mut items = vec![
            item(1, event("a")),
            item(2, error("x")),
            item(3, Outcome::Retry),
            item(4, event("b")),
            item(5, error("y")),
        ];
        let before = shape(&items);
        let batch = lend(&mut items);
        assert_eq!(batch.events.iter().map(|e| e.event.session_id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(batch.errors.iter().map(|e| e.raw.as_str()).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(shape(&items), ["1 lent", "2 lent", "3 retry", "4 lent", "5 lent"]);
        give_back(&mut items, batch);
        assert_eq!(shape(&items), before);
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[7], Duration::from_secs(5));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
