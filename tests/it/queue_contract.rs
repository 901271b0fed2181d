//! The queue contract, one suite for every [`Queue`] implementation.
//!
//! A harness opens handles on one underlying queue; opening again after
//! dropping the last handle is how a suite checks durability.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use the_eye::domain::Reason;
use the_eye::queue::{Body, Envelope, Queue, QueueError, Spool};
use uuid::Uuid;

/// Opens a queue of one backend; every `open` on a harness reaches the same data.
pub trait Harness {
    async fn open(&self, max_depth: u64) -> Arc<dyn Queue>;
}

fn envelope(n: u32) -> Envelope {
    Envelope { event_id: Uuid::now_v7(), received_at: Utc::now(), body: Body::Event(format!("{{\"n\":{n}}}")) }
}

fn rejected() -> Envelope {
    Envelope {
        event_id: Uuid::now_v7(),
        received_at: Utc::now(),
        body: Body::Rejected {
            raw: "not json \u{0} \u{202e}".into(),
            reason: Reason::new("body", "invalid_json", "nope"),
        },
    }
}

pub async fn entries_come_back_in_order_and_unchanged(h: &impl Harness) {
    let q = h.open(100).await;
    let sent: Vec<Envelope> = (0..5).map(envelope).chain([rejected()]).collect();
    q.enqueue(sent.clone()).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 6);
    let got = q.claim(10, Duration::ZERO).await.unwrap();
    let envelopes: Vec<Envelope> = got.iter().map(|d| d.envelope.clone()).collect();
    // Times are kept to the microsecond.
    let trimmed: Vec<Envelope> = sent
        .into_iter()
        .map(|mut e| {
            e.received_at = chrono::DateTime::from_timestamp_micros(e.received_at.timestamp_micros()).unwrap();
            e
        })
        .collect();
    assert_eq!(envelopes, trimmed);
    assert!(got.iter().all(|d| d.attempts == 0));
}

pub async fn a_claimed_entry_is_not_handed_out_twice(h: &impl Harness) {
    let q = h.open(100).await;
    q.enqueue((0..4).map(envelope).collect()).await.unwrap();
    let first = q.claim(3, Duration::ZERO).await.unwrap();
    let second = q.claim(3, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 1);
    assert!(q.claim(3, Duration::ZERO).await.unwrap().is_empty());
}

pub async fn ack_removes_and_release_redelivers_with_an_attempt_counted(h: &impl Harness) {
    let q = h.open(100).await;
    q.enqueue((0..3).map(envelope).collect()).await.unwrap();
    let got = q.claim(3, Duration::ZERO).await.unwrap();
    q.ack(&[got[0].tag, got[2].tag]).await.unwrap();
    q.release(&[got[1].tag]).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 1);
    let again = q.claim(3, Duration::ZERO).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].envelope, got[1].envelope);
    assert_eq!(again[0].attempts, 1);
    q.ack(&[again[0].tag]).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
}

pub async fn a_full_queue_refuses_and_accepts_again_after_acks(h: &impl Harness) {
    let q = h.open(3).await;
    q.enqueue((0..3).map(envelope).collect()).await.unwrap();
    assert!(matches!(q.enqueue(vec![envelope(9)]).await, Err(QueueError::Full { .. })));
    let got = q.claim(1, Duration::ZERO).await.unwrap();
    q.ack(&[got[0].tag]).await.unwrap();
    q.enqueue(vec![envelope(9)]).await.unwrap();
}

pub async fn a_waiting_claim_wakes_on_enqueue(h: &impl Harness) {
    let q = h.open(100).await;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.claim(10, Duration::from_secs(30)).await })
    };
    // Give the waiter a chance to start waiting first; either way it must get the entry.
    tokio::task::yield_now().await;
    q.enqueue(vec![envelope(1)]).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
}

pub async fn unacknowledged_entries_survive_a_reopen(h: &impl Harness) {
    let first_ids = {
        let q = h.open(100).await;
        q.enqueue((0..4).map(envelope).collect()).await.unwrap();
        let got = q.claim(2, Duration::ZERO).await.unwrap();
        q.ack(&[got[0].tag]).await.unwrap();
        got[0].envelope.event_id
        // Entry 1 is claimed but never acknowledged: as if the worker died.
    };
    let q = h.open(100).await;
    assert_eq!(q.depth().await.unwrap(), 3);
    let got = q.claim(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|d| d.envelope.event_id != first_ids));
}

macro_rules! queue_contract {
    ($name:ident, $harness:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn entries_come_back_in_order_and_unchanged() {
                super::entries_come_back_in_order_and_unchanged(&$harness).await;
            }
            #[tokio::test]
            async fn a_claimed_entry_is_not_handed_out_twice() {
                super::a_claimed_entry_is_not_handed_out_twice(&$harness).await;
            }
            #[tokio::test]
            async fn ack_removes_and_release_redelivers_with_an_attempt_counted() {
                super::ack_removes_and_release_redelivers_with_an_attempt_counted(&$harness).await;
            }
            #[tokio::test]
            async fn a_full_queue_refuses_and_accepts_again_after_acks() {
                super::a_full_queue_refuses_and_accepts_again_after_acks(&$harness).await;
            }
            #[tokio::test]
            async fn a_waiting_claim_wakes_on_enqueue() {
                super::a_waiting_claim_wakes_on_enqueue(&$harness).await;
            }
            #[tokio::test]
            async fn unacknowledged_entries_survive_a_reopen() {
                super::unacknowledged_entries_survive_a_reopen(&$harness).await;
            }
        }
    };
}

/// The embedded spool, in a temp dir.
pub struct SpoolHarness(tempfile::TempDir);

impl SpoolHarness {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Harness for SpoolHarness {
    async fn open(&self, max_depth: u64) -> Arc<dyn Queue> {
        Arc::new(Spool::open(&self.0.path().join("spool.db"), max_depth).await.unwrap())
    }
}

queue_contract!(spool, SpoolHarness::new());
