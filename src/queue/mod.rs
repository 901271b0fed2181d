//! The durable queue between ingest and the workers.
//!
//! [`Queue::enqueue`] returning `Ok` is the moment an event becomes the service's
//! responsibility: the collector answers 202 only after it. Workers
//! [`claim`](Queue::claim) deliveries, then [`ack`](Queue::ack) them once the store
//! has committed, or [`release`](Queue::release) them to be tried again.

pub mod redis;
pub mod spool;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::Reason;

pub use self::redis::RedisQueue;
pub use spool::Spool;

/// One accepted item, as the queue keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The event's id (client's or derived), or a fresh id for a rejected body.
    pub event_id: Uuid,
    /// When ingest received it.
    pub received_at: DateTime<Utc>,
    /// The application that sent it.
    pub application: Option<String>,
    /// What arrived.
    pub body: Body,
}

/// What arrived: an event to validate, or a body that ingest already refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// One event's JSON, compact, to be validated by a worker.
    Event(String),
    /// A body that was not acceptable JSON: kept (capped) so it shows up as an event error.
    Rejected {
        /// The body as received, possibly truncated.
        raw: String,
        /// Why ingest refused it.
        reason: Reason,
    },
}

/// Opaque handle of a claimed entry, given back to `ack` or `release`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryTag(pub u128);

/// A claimed entry.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Handle for `ack`/`release`.
    pub tag: DeliveryTag,
    /// How many earlier attempts at this entry failed.
    pub attempts: u32,
    /// The entry itself.
    pub envelope: Envelope,
}

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Backpressure: too many entries wait for the workers.
    #[error("queue is full ({depth} entries waiting)")]
    Full {
        /// Entries waiting when the append was refused.
        depth: u64,
    },
    /// The backend failed (disk, connection): the entries are not durable.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

/// A durable queue backend. One contract test suite covers every implementation.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug + 'static {
    /// Appends entries durably: when this returns `Ok`, a crash loses none of them.
    async fn enqueue(&self, entries: Vec<Envelope>) -> Result<(), QueueError>;

    /// Whether its connections are sockets driven by the tokio runtime
    /// that opened them, as `Store::runtime_io` asks of the store (which
    /// says why it matters): Redis's are, the spool's threads are not.
    fn runtime_io(&self) -> bool {
        true
    }

    /// Takes up to `max` entries no other consumer holds; waits up to `wait` for one when empty.
    async fn claim(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Removes entries whose outcome the store has committed.
    async fn ack(&self, tags: &[DeliveryTag]) -> Result<(), QueueError>;

    /// Counts a failed attempt and makes the entries claimable again.
    async fn release(&self, tags: &[DeliveryTag]) -> Result<(), QueueError>;

    /// Entries not yet acknowledged (waiting or claimed).
    async fn depth(&self) -> Result<u64, QueueError>;

    /// Entries claimed by a worker and not yet acknowledged or released. A
    /// claim that is never settled is handed out again after a while, so no
    /// failure of a worker can strand an entry.
    async fn in_flight(&self) -> Result<u64, QueueError>;

    /// When the oldest entry not yet acknowledged was received; `None` when empty.
    async fn oldest(&self) -> Result<Option<DateTime<Utc>>, QueueError>;
}
