//! The scaled-out queue: a Redis stream read by a consumer group.
//!
//! - `enqueue` is `XADD` per entry, pipelined; the 202 waits for Redis's reply,
//!   which with `appendfsync always` comes after the entry is on disk
//!   ([`check_durability`] refuses weaker settings unless told otherwise).
//! - `claim` is `XREADGROUP … >` for new entries. Every `claim_idle`/2 it first
//!   runs `XAUTOCLAIM`, which takes over entries a dead consumer left pending
//!   longer than `claim_idle`.
//! - `ack` is `XACK` then `XDEL`: the stream only ever loses entries that were
//!   acknowledged, and its length is the backlog.
//! - Attempts: a released entry is added again with its attempt count in the
//!   `a` field (then acknowledged and deleted), and the delivery count of an
//!   entry taken over from a dead consumer counts too. So an entry that keeps
//!   killing workers ends as an event error like any other poison entry.
//! - Fields of an entry: `i` event id, `t` received (µs), `b` body, `r` reason
//!   of a refused body, `a` attempts, `p` the sending application.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Body, Delivery, DeliveryTag, Envelope, Queue, QueueError};
use crate::domain::Reason;

const GROUP: &str = "workers";
/// Longest a claim blocks in one `XREADGROUP`; longer waits are cut to this.
const MAX_BLOCK: Duration = Duration::from_secs(10);
/// Longest a command may wait for Redis's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an append may take in all, reconnecting included: past it the
/// collector answers 503 rather than hold the client.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis Streams queue.
pub struct RedisQueue {
    /// For appends and acks (multiplexed: many requests share it).
    conn: ConnectionManager,
    /// For blocking reads, which would stall a shared connection.
    reader: Mutex<ConnectionManager>,
    stream: String,
    consumer: String,
    max_depth: u64,
    claim_idle: Duration,
    /// Backlog as of the last reply that told it.
    depth: Arc<AtomicU64>,
    last_autoclaim: Mutex<Instant>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue").field("stream", &self.stream).field("consumer", &self.consumer).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

/// What the durability check found wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnsafeRedis(pub String);

/// Refuses Redis settings under which an acknowledged event can be lost:
/// no append-only file, an fsync less often than every write, or an eviction
/// policy that may delete the stream under memory pressure.
pub async fn check_durability(conn: &mut ConnectionManager) -> Result<(), UnsafeRedis> {
    let get = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let reply: Vec<String> =
                redis::cmd("CONFIG").arg("GET").arg(name).query_async(&mut conn).await.map_err(|e| {
                    UnsafeRedis(format!(
                        "cannot read Redis setting {name} ({e}); cannot tell whether acknowledged events are safe"
                    ))
                })?;
            Ok::<_, UnsafeRedis>(reply.get(1).cloned().unwrap_or_default())
        }
    };
    let mut problems = Vec::new();
    if get("appendonly").await? != "yes" {
        problems.push("appendonly is not yes: a Redis restart loses every queued event");
    }
    if get("appendfsync").await? != "always" {
        problems.push("appendfsync is not always: a crash loses up to the last second of acknowledged events");
    }
    if get("maxmemory-policy").await? != "noeviction" {
        problems.push("maxmemory-policy is not noeviction: under memory pressure Redis may delete the queue");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(UnsafeRedis(format!(
            "refusing to use Redis as the queue: {}. Configure Redis with `appendonly yes`, `appendfsync always` and \
             `maxmemory-policy noeviction` (see README, Running at scale), or start with \
             --allow-unsafe-redis to accept losing acknowledged events",
            problems.join("; ")
        )))
    }
}

fn tag_of(id: &str) -> Result<DeliveryTag, QueueError> {
    let (ms, seq) = id.split_once('-').ok_or_else(|| unavailable(format!("bad stream id {id}")))?;
    let ms: u64 = ms.parse().map_err(unavailable)?;
    let seq: u64 = seq.parse().map_err(unavailable)?;
    Ok(DeliveryTag((u128::from(ms) << 64) | u128::from(seq)))
}

fn id_of(tag: DeliveryTag) -> String {
    format!("{}-{}", (tag.0 >> 64) as u64, tag.0 as u64)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Decodes one stream entry `[id, [field, value, …]]`.
fn decode(entry: &Value, extra_attempts: u32) -> Result<Delivery, QueueError> {
    let bad = || unavailable("unexpected stream entry shape");
    let Value::Array(parts) = entry else { return Err(bad()) };
    let id = parts.first().and_then(text).ok_or_else(bad)?;
    let Some(Value::Array(fields)) = parts.get(1) else { return Err(bad()) };
    let (mut event_id, mut received, mut reason, mut body, mut attempts, mut application) =
        (None, None, None, None, 0u32, None);
    for pair in fields.chunks(2) {
        let (Some(k), Some(v)) = (pair.first().and_then(text), pair.get(1).and_then(text)) else { continue };
        match k.as_str() {
            "i" => event_id = Uuid::parse_str(&v).ok(),
            "t" => received = v.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros),
            "r" => reason = Some(serde_json::from_str::<Reason>(&v).map_err(unavailable)?),
            "b" => body = Some(v),
            "a" => attempts = v.parse().unwrap_or(0),
            "p" => application = Some(v),
            _ => {}
        }
    }
    let (Some(event_id), Some(received_at), Some(body)) = (event_id, received, body) else { return Err(bad()) };
    let body = match reason {
        None => Body::Event(body),
        Some(reason) => Body::Rejected { raw: body, reason },
    };
    Ok(Delivery {
        tag: tag_of(&id)?,
        attempts: attempts + extra_attempts,
        envelope: Envelope { event_id, received_at, application, body },
    })
}

fn xadd(pipe: &mut redis::Pipeline, stream: &str, e: &Envelope, attempts: u32) {
    let cmd = pipe.cmd("XADD").arg(stream).arg("*");
    cmd.arg("i").arg(e.event_id.simple().to_string()).arg("t").arg(e.received_at.timestamp_micros());
    match &e.body {
        Body::Event(json) => {
            cmd.arg("b").arg(json.as_str());
        }
        Body::Rejected { raw, reason } => {
            cmd.arg("b").arg(raw.as_str()).arg("r").arg(serde_json::to_string(reason).unwrap_or_default());
        }
    }
    if attempts > 0 {
        cmd.arg("a").arg(attempts);
    }
    if let Some(app) = &e.application {
        cmd.arg("p").arg(app.as_str());
    }
}

impl RedisQueue {
    /// Connects, creates the consumer group if needed, and (unless `allow_unsafe`)
    /// checks that the server keeps what it acknowledges.
    pub async fn connect(
        url: &str,
        prefix: &str,
        max_depth: u64,
        claim_idle: Duration,
        allow_unsafe: bool,
    ) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(|e| unavailable(format!("bad Redis URL: {e}")))?;
        // Reconnect quickly and give up soon: while Redis is away, requests must
        // get their 503 at once, not queue up behind reconnection attempts.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|e| unavailable(format!("cannot connect to Redis: {e}")))?;
        if let Err(e) = check_durability(&mut conn).await {
            if !allow_unsafe {
                return Err(QueueError::Unavailable(e.0));
            }
            tracing::warn!(problem = %e, "Redis may lose acknowledged events; continuing because --allow-unsafe-redis");
        }
        // The reader's replies may wait for a whole blocking read.
        let reader =
            ConnectionManager::new_with_config(client, config.set_response_timeout(Some(MAX_BLOCK + RESPONSE_TIMEOUT)))
                .await
                .map_err(unavailable)?;
        let stream = format!("{prefix}:events");
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(unavailable(e));
            }
        }
        let consumer = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        let queue = Self {
            conn,
            reader: Mutex::new(reader),
            stream,
            consumer,
            max_depth,
            claim_idle,
            depth: Arc::new(AtomicU64::new(0)),
            last_autoclaim: Mutex::new(Instant::now() - claim_idle),
        };
        queue.depth().await?;
        Ok(queue)
    }

    /// Takes over entries that other consumers left pending longer than `claim_idle`.
    async fn autoclaim(&self, conn: &mut ConnectionManager, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.claim_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        let Value::Array(parts) = reply else { return Ok(Vec::new()) };
        let Some(Value::Array(entries)) = parts.get(1) else { return Ok(Vec::new()) };
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // How often each was delivered before: every earlier delivery is a failed attempt.
        let counts: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(entries.len().max(1) * 4)
            .arg(&self.consumer)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        let mut delivered = std::collections::HashMap::new();
        if let Value::Array(rows) = counts {
            for row in rows {
                if let Value::Array(f) = row {
                    if let (Some(id), Some(Value::Int(n))) = (f.first().and_then(text), f.get(3)) {
                        delivered.insert(id, *n as u32);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for entry in entries {
            // Entries deleted meanwhile come back as nil; they were acknowledged.
            let Value::Array(parts) = entry else { continue };
            let Some(id) = parts.first().and_then(text) else { continue };
            let before = delivered.get(&id).copied().unwrap_or(1).saturating_sub(1);
            out.push(decode(entry, before)?);
        }
        if !out.is_empty() {
            tracing::warn!(count = out.len(), "took over entries left pending by another consumer");
        }
        Ok(out)
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, entries: Vec<Envelope>) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let depth = self.depth.load(Ordering::Relaxed);
        if depth + entries.len() as u64 > self.max_depth {
            // The cached depth may be stale; ask before refusing.
            let depth = self.depth().await?;
            if depth + entries.len() as u64 > self.max_depth {
                return Err(QueueError::Full { depth });
            }
        }
        let mut pipe = redis::pipe();
        for e in &entries {
            xadd(&mut pipe, &self.stream, e, 0);
        }
        pipe.cmd("XLEN").arg(&self.stream);
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = tokio::time::timeout(ENQUEUE_TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| unavailable(format!("Redis did not answer within {ENQUEUE_TIMEOUT:?}")))?
            .map_err(unavailable)?;
        if let Some(Value::Int(len)) = replies.last() {
            self.depth.store(*len as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn claim(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        let mut reader = self.reader.lock().await;
        {
            let mut last = self.last_autoclaim.lock().await;
            if last.elapsed() >= self.claim_idle / 2 {
                *last = Instant::now();
                let taken = self.autoclaim(&mut reader, max).await?;
                if !taken.is_empty() {
                    return Ok(taken);
                }
            }
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(GROUP).arg(&self.consumer).arg("COUNT").arg(max);
        if !wait.is_zero() {
            cmd.arg("BLOCK").arg(wait.min(MAX_BLOCK).as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let reply: Value = cmd.query_async(&mut *reader).await.map_err(unavailable)?;
        // [[stream, [entry, …]]] or nil when nothing arrived.
        let Value::Array(streams) = reply else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for s in streams {
            let Value::Array(parts) = s else { continue };
            let Some(Value::Array(entries)) = parts.get(1) else { continue };
            for entry in entries {
                out.push(decode(entry, 0)?);
            }
        }
        Ok(out)
    }

    async fn ack(&self, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = tags.iter().map(|t| id_of(*t)).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.stream).arg(GROUP).arg(&ids).ignore();
        pipe.cmd("XDEL").arg(&self.stream).arg(&ids).ignore();
        pipe.cmd("XLEN").arg(&self.stream);
        let mut conn = self.conn.clone();
        let (len,): (u64,) = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        self.depth.store(len, Ordering::Relaxed);
        Ok(())
    }

    async fn release(&self, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        // Read the entries back, add them again with one more attempt, then
        // acknowledge the old ones. A crash in between leaves a duplicate,
        // which the store's idempotent insert absorbs.
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for t in tags {
            let id = id_of(*t);
            pipe.cmd("XRANGE").arg(&self.stream).arg(&id).arg(&id);
        }
        let ranges: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut again = redis::pipe();
        for range in &ranges {
            let Value::Array(entries) = range else { continue };
            for entry in entries {
                let d = decode(entry, 0)?;
                xadd(&mut again, &self.stream, &d.envelope, d.attempts + 1);
            }
        }
        let ids: Vec<String> = tags.iter().map(|t| id_of(*t)).collect();
        again.cmd("XACK").arg(&self.stream).arg(GROUP).arg(&ids).ignore();
        again.cmd("XDEL").arg(&self.stream).arg(&ids).ignore();
        again.query_async::<Value>(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let len: u64 = redis::cmd("XLEN").arg(&self.stream).query_async(&mut conn).await.map_err(unavailable)?;
        self.depth.store(len, Ordering::Relaxed);
        Ok(len)
    }

    async fn oldest(&self) -> Result<Option<DateTime<chrono::Utc>>, QueueError> {
        let mut conn = self.conn.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(&self.stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Value::Array(entries) = reply else { return Ok(None) };
        match entries.first() {
            Some(entry) => Ok(Some(decode(entry, 0)?.envelope.received_at)),
            None => Ok(None),
        }
    }

    async fn in_flight(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        // The summary form: [count, smallest id, greatest id, per consumer].
        let summary: Value =
            redis::cmd("XPENDING").arg(&self.stream).arg(GROUP).query_async(&mut conn).await.map_err(unavailable)?;
        match summary {
            Value::Array(parts) => match parts.first() {
                Some(Value::Int(n)) => Ok(*n as u64),
                _ => Ok(0),
            },
            _ => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_through_tags() {
        for id in ["0-0", "1700000000000-0", "1700000000000-42", "18446744073709551615-18446744073709551615"] {
            assert_eq!(id_of(tag_of(id).unwrap()), id);
        }
        // Tags order like stream ids.
        assert!(tag_of("1700000000000-1").unwrap() < tag_of("1700000000001-0").unwrap());
        assert!(tag_of("nope").is_err());
    }
}
