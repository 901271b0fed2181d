//! The queue contract, one suite for every [`Queue`] implementation.
//!
//! A harness opens handles on one underlying queue; opening again after
//! dropping the last handle is how a suite checks durability.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use the_eye::domain::Reason;
use the_eye::queue::{Body, Envelope, Queue, QueueError, RedisQueue, Spool};
use uuid::Uuid;

/// Opens a queue of one backend; every `open` on a harness reaches the same data.
pub trait Harness {
    async fn open(&self, max_depth: u64) -> Arc<dyn Queue>;
    /// Removes what the test created.
    async fn cleanup(self)
    where
        Self: Sized,
    {
    }
}

/// How long a claim lasts in these tests, on both backends.
const CLAIM_IDLE: Duration = Duration::from_secs(2);

fn envelope(n: u32) -> Envelope {
    Envelope {
        event_id: Uuid::now_v7(),
        received_at: Utc::now(),
        application: Some(format!("app-{}", n % 2)),
        body: Body::Event(format!("{{\"n\":{n}}}")),
    }
}

fn rejected() -> Envelope {
    Envelope {
        event_id: Uuid::now_v7(),
        received_at: Utc::now(),
        application: None,
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
        tokio::spawn(async move { q.claim(10, Duration::from_secs(10)).await })
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
    // A shared queue hands the dead consumer's entry over only after it has been
    // idle long enough, so keep claiming until all three came back. (Meanwhile it
    // may hand out again what this consumer holds unacknowledged for as long:
    // at-least-once, which the store's idempotent insert absorbs.)
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 3 && tokio::time::Instant::now() < deadline {
        got.extend(q.claim(10, Duration::from_millis(500)).await.unwrap().into_iter().map(|d| d.envelope.event_id));
    }
    assert_eq!(got.len(), 3);
    assert!(!got.contains(&first_ids), "the acknowledged entry never comes back");
}

/// A claim that is never acknowledged or released (its worker lost it) is
/// handed out again once it has been idle for the claim time: nothing a
/// worker does can strand an entry until a restart.
pub async fn a_claim_never_settled_is_handed_out_again(h: &impl Harness) {
    let q = h.open(100).await;
    q.enqueue(vec![envelope(1)]).await.unwrap();
    let first = q.claim(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(q.in_flight().await.unwrap(), 1);
    assert_eq!(q.depth().await.unwrap(), 1);
    assert!(q.claim(10, Duration::ZERO).await.unwrap().is_empty(), "still claimed");
    // The worker holding it vanishes; another claim gets it once it expired.
    let deadline = tokio::time::Instant::now() + CLAIM_IDLE * 10;
    let again = loop {
        let got = q.claim(10, Duration::from_millis(200)).await.unwrap();
        if !got.is_empty() {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "the lost claim never came back");
    };
    assert_eq!(again[0].envelope, first[0].envelope);
    q.ack(&[again[0].tag]).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
    assert_eq!(q.in_flight().await.unwrap(), 0);
}

/// The oldest entry not yet acknowledged is reported (for the backlog-age metric).
pub async fn the_oldest_waiting_entry_is_known(h: &impl Harness) {
    let q = h.open(100).await;
    assert_eq!(q.oldest().await.unwrap(), None);
    let first = envelope(1);
    q.enqueue(vec![first.clone(), envelope(2)]).await.unwrap();
    let oldest = q.oldest().await.unwrap().expect("an oldest entry");
    assert_eq!(oldest.timestamp_micros(), first.received_at.timestamp_micros());
    let all = q.claim(10, Duration::ZERO).await.unwrap();
    q.ack(&all.iter().map(|d| d.tag).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.oldest().await.unwrap(), None);
}

/// Appends and claims interleaved, with a backlog far larger than any one
/// claim (the spool keeps only its most recent appends in memory): every
/// entry comes out once, in the order it went in.
pub async fn a_long_backlog_comes_out_whole_once_and_in_order(h: &impl Harness) {
    let q = h.open(20_000).await;
    let mut sent = Vec::new();
    let mut got = Vec::new();
    for round in 0..120u32 {
        let batch: Vec<Envelope> = (0..100).map(|i| envelope(round * 100 + i)).collect();
        sent.extend(batch.iter().map(|e| e.event_id));
        q.enqueue(batch).await.unwrap();
        if round % 10 == 0 {
            got.extend(q.claim(250, Duration::ZERO).await.unwrap());
        }
    }
    loop {
        let batch = q.claim(1000, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    let ids: Vec<_> = got.iter().map(|d| d.envelope.event_id).collect();
    assert_eq!(ids, sent);
    q.ack(&got.iter().map(|d| d.tag).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
}

/// Once every entry is acknowledged the queue is empty, and what comes next
/// must still be handed out (a reused position would fall behind the cursor).
pub async fn an_entry_appended_after_all_were_acknowledged_is_claimed(h: &impl Harness) {
    let q = h.open(100).await;
    for n in 0..3 {
        let sent = envelope(n);
        q.enqueue(vec![sent.clone()]).await.unwrap();
        let got = q.claim(10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].envelope.event_id, sent.event_id);
        q.ack(&[got[0].tag]).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 0);
    }
}

macro_rules! queue_contract {
    ($name:ident, $harness:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn entries_come_back_in_order_and_unchanged() {
                let Some(h) = $harness.await else { return };
                super::entries_come_back_in_order_and_unchanged(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn a_claimed_entry_is_not_handed_out_twice() {
                let Some(h) = $harness.await else { return };
                super::a_claimed_entry_is_not_handed_out_twice(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn ack_removes_and_release_redelivers_with_an_attempt_counted() {
                let Some(h) = $harness.await else { return };
                super::ack_removes_and_release_redelivers_with_an_attempt_counted(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn a_full_queue_refuses_and_accepts_again_after_acks() {
                let Some(h) = $harness.await else { return };
                super::a_full_queue_refuses_and_accepts_again_after_acks(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn a_waiting_claim_wakes_on_enqueue() {
                let Some(h) = $harness.await else { return };
                super::a_waiting_claim_wakes_on_enqueue(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn the_oldest_waiting_entry_is_known() {
                let Some(h) = $harness.await else { return };
                super::the_oldest_waiting_entry_is_known(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn a_claim_never_settled_is_handed_out_again() {
                let Some(h) = $harness.await else { return };
                super::a_claim_never_settled_is_handed_out_again(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn a_long_backlog_comes_out_whole_once_and_in_order() {
                let Some(h) = $harness.await else { return };
                super::a_long_backlog_comes_out_whole_once_and_in_order(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn an_entry_appended_after_all_were_acknowledged_is_claimed() {
                let Some(h) = $harness.await else { return };
                super::an_entry_appended_after_all_were_acknowledged_is_claimed(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn unacknowledged_entries_survive_a_reopen() {
                let Some(h) = $harness.await else { return };
                super::unacknowledged_entries_survive_a_reopen(&h).await;
                h.cleanup().await;
            }
        }
    };
}

/// The embedded spool, in a temp dir.
pub struct SpoolHarness(tempfile::TempDir);

impl SpoolHarness {
    async fn new() -> Option<Self> {
        Some(Self(tempfile::tempdir().unwrap()))
    }
}

impl Harness for SpoolHarness {
    async fn open(&self, max_depth: u64) -> Arc<dyn Queue> {
        Arc::new(Spool::open(&self.0.path().join("spool.db"), max_depth, CLAIM_IDLE).await.unwrap())
    }
}

queue_contract!(spool, SpoolHarness::new());

/// A spool dropped (a clean stop) leaves every entry in its own file and an
/// empty WAL, so a copy of `spool.db` alone misses nothing.
#[tokio::test]
async fn a_dropped_spool_folds_its_wal_back_into_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let spool = Spool::open(&path, 100, CLAIM_IDLE).await.unwrap();
    spool.enqueue((0..5).map(envelope).collect()).await.unwrap();
    let wal = dir.path().join("spool.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the appends went to the WAL first");
    // A claim opens a reader, which outlives the writer's connection.
    assert_eq!(spool.claim(1, Duration::ZERO).await.unwrap().len(), 1);
    drop(spool);
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "the WAL was folded back");

    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(&path, copy.path().join("spool.db")).unwrap();
    let again = Spool::open(&copy.path().join("spool.db"), 100, CLAIM_IDLE).await.unwrap();
    assert_eq!(again.depth().await.unwrap(), 5, "the file alone holds every entry");
}

/// The Redis queue under a key prefix of its own. The test server keeps
/// nothing on disk, so the durability check is waived here and tested on its own.
pub struct RedisHarness {
    url: String,
    prefix: String,
}

impl RedisHarness {
    async fn new() -> Option<Self> {
        let url = crate::helpers::service_url("THE_EYE_TEST_REDIS_URL", "Redis queue contract")?;
        Some(Self { url, prefix: format!("the-eye-test-{}", Uuid::new_v4().simple()) })
    }
}

impl Harness for RedisHarness {
    async fn open(&self, max_depth: u64) -> Arc<dyn Queue> {
        Arc::new(RedisQueue::connect(&self.url, &self.prefix, max_depth, CLAIM_IDLE, true).await.unwrap())
    }

    async fn cleanup(self) {
        let client = ::redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> =
            ["events", "events:count", "events:settled"].iter().map(|k| format!("{}:{k}", self.prefix)).collect();
        let _: () = ::redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
}

queue_contract!(redis, RedisHarness::new());

/// Entries this version did not write: one from before a request's events
/// were packed into one entry is read as it was, and one nobody can read
/// becomes an event error instead of stopping the workers.
#[tokio::test]
async fn redis_reads_entries_from_before_packing_and_turns_unreadable_ones_into_errors() {
    let Some(h) = RedisHarness::new().await else { return };
    let stream = format!("{}:events", h.prefix);
    let client = ::redis::Client::open(h.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let old_id = Uuid::new_v4();
    let _: String = ::redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(&["i", &old_id.simple().to_string(), "t", "1700000000000001", "b", "{\"x\":1}", "p", "shop"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = ::redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(&["n", "1", "e", "[[broken"])
        .query_async(&mut conn)
        .await
        .unwrap();

    // Opened after those were written, as an upgraded node is: it counts them.
    let q = h.open(100).await;
    assert_eq!(q.depth().await.unwrap(), 2);
    let got = q.claim(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].envelope,
        Envelope {
            event_id: old_id,
            received_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            application: Some("shop".into()),
            body: Body::Event("{\"x\":1}".into()),
        }
    );
    let Body::Rejected { raw, reason } = &got[1].envelope.body else { panic!("an unreadable entry read as an event") };
    assert_eq!(reason.code, "unreadable_entry");
    assert!(raw.contains("[[broken"), "{raw}");
    q.ack(&[got[0].tag, got[1].tag]).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
    assert_eq!(q.in_flight().await.unwrap(), 0);
    h.cleanup().await;
}

/// Events of one request share an entry, yet each is settled on its own:
/// half acknowledged and half released leaves exactly the released half,
/// each counted once, for the next claim.
#[tokio::test]
async fn redis_settles_the_events_of_one_entry_one_by_one() {
    let Some(h) = RedisHarness::new().await else { return };
    let q = h.open(1000).await;
    q.enqueue((0..100).map(envelope).collect()).await.unwrap();
    let first = q.claim(30, Duration::ZERO).await.unwrap();
    let rest = q.claim(1000, Duration::ZERO).await.unwrap();
    assert_eq!((first.len(), rest.len()), (30, 70));
    assert_eq!(q.in_flight().await.unwrap(), 100);
    let (even, odd): (Vec<_>, Vec<_>) = first.iter().chain(&rest).enumerate().partition(|(i, _)| i % 2 == 0);
    let (even, odd): (Vec<_>, Vec<_>) =
        (even.into_iter().map(|(_, d)| d).collect(), odd.into_iter().map(|(_, d)| d).collect());
    q.ack(&even.iter().map(|d| d.tag).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 50);
    assert_eq!(q.in_flight().await.unwrap(), 50);
    q.release(&odd.iter().map(|d| d.tag).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 50);
    let again = q.claim(1000, Duration::ZERO).await.unwrap();
    let mut want: Vec<Uuid> = odd.iter().map(|d| d.envelope.event_id).collect();
    let mut got: Vec<Uuid> = again.iter().map(|d| d.envelope.event_id).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(again.iter().all(|d| d.attempts == 1));
    q.ack(&again.iter().map(|d| d.tag).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), 0);
    h.cleanup().await;
}

/// Only the spool's connections are threads of its own; Redis's are
/// sockets the runtime that opened them drives (see the store's twin of
/// this test, `only_sqlite_keeps_its_connections_off_the_runtime`).
#[tokio::test]
async fn only_the_spool_keeps_its_connections_off_the_runtime() {
    let spool = SpoolHarness::new().await.unwrap();
    assert!(!spool.open(10).await.runtime_io());
    let Some(redis) = RedisHarness::new().await else { return };
    assert!(redis.open(10).await.runtime_io());
    redis.cleanup().await;
}
