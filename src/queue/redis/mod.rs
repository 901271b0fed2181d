//! The scaled-out queue: a Redis stream read by a consumer group.
//!
//! - `enqueue` is one `XADD` per call: the request's events packed into one
//!   entry (see [`entry`]), and an `INCRBY` of the events counter
//!   `<prefix>:events:count`, in one script. The 202 waits for Redis's
//!   reply, which with `appendfsync always` comes after the entry is on disk
//!   ([`check_durability`] refuses weaker settings unless told otherwise).
//! - `claim` hands out records of entries this consumer holds (see [`held`]);
//!   when it has none waiting, it reads whole entries with `XREADGROUP … >`.
//!   Every `claim_idle`/2 it first runs `XAUTOCLAIM`, which takes over
//!   entries a dead consumer left pending longer than `claim_idle`.
//! - `ack` settles records. Once every record of an entry is settled, one
//!   script runs `XACK`, `XDEL` and takes the entry's records off the counter
//!   (only if `XDEL` removed it, so an entry settled by two consumers counts
//!   once): the stream only ever loses entries that were settled. A record
//!   settled in an entry that is not yet is noted in the sorted set
//!   `<prefix>:events:settled` (`id:index`), so that a consumer taking the
//!   entry over from a dead one does not hand it out again.
//! - `release` adds the released records again as a new entry with one more
//!   attempt, then settles them; the delivery count of an entry taken over
//!   from a dead consumer counts as attempts too. So an entry that keeps
//!   killing workers ends as event errors like any other poison entry.
//! - `depth` is the counter less the notes. Both are reset whenever the
//!   stream is empty, so a count thrown off (by a node of an older version
//!   during an upgrade) heals when the backlog drains. `in_flight` counts the
//!   records of pending entries, less the notes.

pub mod entry;
mod held;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use self::entry::Entry;
use super::{Delivery, DeliveryTag, Envelope, Queue, QueueError};

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
    /// The number of events in the stream's entries.
    count_key: String,
    /// Notes of settled records in entries not yet removed (a sorted set).
    notes_key: String,
    consumer: String,
    max_depth: u64,
    claim_idle: Duration,
    /// Backlog as of the last reply that told it.
    depth: Arc<AtomicU64>,
    /// Notes as of the last reply that told them.
    noted: AtomicU64,
    last_autoclaim: Mutex<Instant>,
    /// Records per entry in the last read, to size the next one.
    per_entry: AtomicUsize,
    held: std::sync::Mutex<held::Held>,
    append: redis::Script,
    settle: redis::Script,
    pending_records: redis::Script,
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

/// Tells the stream what was settled: `KEYS` stream, counter, notes; `ARGV`
/// group, the number of wholly settled entries, that many pairs of stream id
/// and record count, then the notes (`id:index`) of records settled in
/// entries that are not. Returns the counter and the number of notes.
const SETTLE: &str = r"
local whole = tonumber(ARGV[2])
local removed = 0
for i = 3, 2 + 2 * whole, 2 do
  local id = ARGV[i]
  redis.call('XACK', KEYS[1], ARGV[1], id)
  if redis.call('XDEL', KEYS[1], id) == 1 then removed = removed + tonumber(ARGV[i + 1]) end
  redis.call('ZREMRANGEBYLEX', KEYS[3], '[' .. id .. ':', '(' .. id .. ';')
end
local exists = {}
for i = 3 + 2 * whole, #ARGV do
  local id = string.match(ARGV[i], '^(.*):')
  if exists[id] == nil then exists[id] = #redis.call('XRANGE', KEYS[1], id, id) > 0 end
  -- A note for an entry gone already (another consumer took it over and
  -- settled it) would only make the depth look smaller.
  if exists[id] then redis.call('ZADD', KEYS[3], 0, ARGV[i]) end
end
local left = redis.call('DECRBY', KEYS[2], removed)
if left < 0 or redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
  return {0, 0}
end
return {left, redis.call('ZCARD', KEYS[3])}
";

/// Adds one entry and counts its records: `KEYS` stream, counter; `ARGV`
/// records, attempts, the packed records. Returns the counter.
const APPEND: &str = r"
if ARGV[2] == '0' then
  redis.call('XADD', KEYS[1], '*', 'n', ARGV[1], 'e', ARGV[3])
else
  redis.call('XADD', KEYS[1], '*', 'n', ARGV[1], 'a', ARGV[2], 'e', ARGV[3])
end
return redis.call('INCRBY', KEYS[2], ARGV[1])
";

/// Creates the counter for a stream that has none (one from before packing,
/// whose entries hold one event each): `KEYS` stream, counter.
const INIT_COUNT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], redis.call('XLEN', KEYS[1]))
end
return redis.call('GET', KEYS[2])
";

/// Records in entries pending in the group (claimed, not wholly settled),
/// less those noted as settled: `KEYS` stream, notes; `ARGV` group, most
/// entries to look at.
const PENDING_RECORDS: &str = r"
local n = 0
for _, row in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[2]))) do
  local e = redis.call('XRANGE', KEYS[1], row[1], row[1])[1]
  if e then
    local count = 1
    if e[2][1] == 'n' then count = tonumber(e[2][2]) or 1 end
    n = n + count
  end
end
return math.max(0, n - redis.call('ZCARD', KEYS[2]))
";

/// Most pending entries `in_flight` looks at.
const PENDING_SCAN: usize = 10_000;

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
        let count_key = format!("{stream}:count");
        let notes_key = format!("{stream}:settled");
        redis::Script::new(INIT_COUNT)
            .key(&stream)
            .key(&count_key)
            .invoke_async::<u64>(&mut conn)
            .await
            .map_err(unavailable)?;
        let queue = Self {
            conn,
            reader: Mutex::new(reader),
            stream,
            count_key,
            notes_key,
            consumer,
            max_depth,
            claim_idle,
            depth: Arc::new(AtomicU64::new(0)),
            noted: AtomicU64::new(0),
            last_autoclaim: Mutex::new(Instant::now() - claim_idle),
            per_entry: AtomicUsize::new(1),
            held: std::sync::Mutex::new(held::Held::default()),
            append: redis::Script::new(APPEND),
            settle: redis::Script::new(SETTLE),
            pending_records: redis::Script::new(PENDING_RECORDS),
        };
        queue.depth().await?;
        Ok(queue)
    }

    /// Takes over entries that other consumers left pending longer than `claim_idle`.
    async fn autoclaim(&self, conn: &mut ConnectionManager, max: usize) -> Result<Vec<Entry>, QueueError> {
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
        if let Value::Array(rows) = &counts {
            for row in rows {
                if let Value::Array(f) = row {
                    if let (Some(id), Some(Value::Int(n))) = (f.first().and_then(entry::text), f.get(3)) {
                        delivered.insert(id, *n as u32);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for e in entries {
            // Entries deleted meanwhile come back as nil; they were settled.
            let Value::Array(parts) = e else { continue };
            let Some(id) = parts.first().and_then(entry::text) else { continue };
            let before = delivered.get(id).copied().unwrap_or(1).saturating_sub(1);
            let mut taken = entry::decode(e)?;
            taken.attempts += before;
            out.push(taken);
        }
        if out.is_empty() {
            return Ok(out);
        }
        // What the consumers that held them before settled of them.
        let mut pipe = redis::pipe();
        for taken in &out {
            let id = entry::id_of(taken.base);
            pipe.cmd("ZRANGEBYLEX").arg(&self.notes_key).arg(format!("[{id}:")).arg(format!("({id};"));
        }
        let notes: Vec<Vec<String>> = pipe.query_async(conn).await.map_err(unavailable)?;
        for (taken, notes) in out.iter_mut().zip(notes) {
            taken.settled = notes.iter().filter_map(|n| n.rsplit_once(':')?.1.parse().ok()).collect();
        }
        tracing::warn!(entries = out.len(), "took over entries left pending by another consumer");
        Ok(out)
    }

    /// Reads new entries: about enough to hand out `max` records.
    async fn read(&self, conn: &mut ConnectionManager, max: usize, wait: Duration) -> Result<Vec<Entry>, QueueError> {
        let count = max.div_ceil(self.per_entry.load(Ordering::Relaxed).max(1)).max(1);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(GROUP).arg(&self.consumer).arg("COUNT").arg(count);
        if !wait.is_zero() {
            cmd.arg("BLOCK").arg(wait.min(MAX_BLOCK).as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(">");
        let reply: Value = cmd.query_async(conn).await.map_err(unavailable)?;
        // [[stream, [entry, …]]] or nil when nothing arrived.
        let Value::Array(streams) = reply else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for s in streams {
            let Value::Array(parts) = s else { continue };
            let Some(Value::Array(entries)) = parts.get(1) else { continue };
            for e in entries {
                out.push(entry::decode(e)?);
            }
        }
        if !out.is_empty() {
            let records: usize = out.iter().map(|e| e.records.len()).sum();
            self.per_entry.store(records / out.len(), Ordering::Relaxed);
        }
        Ok(out)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, held::Held> {
        // The bookkeeping stays consistent even if a holder panicked: every
        // change to it is complete before anything that could panic.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds records as new entries; returns the counter.
    async fn append(&self, records: &[&Envelope], attempts: u32) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let mut count = 0;
        for chunk in records.chunks(entry::MAX_RECORDS) {
            count = self
                .append
                .key(&self.stream)
                .key(&self.count_key)
                .arg(chunk.len())
                .arg(attempts)
                .arg(entry::pack(chunk))
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(count)
    }

    /// Notes the backlog from the counter and the number of notes.
    fn counted(&self, count: u64, noted: u64) -> u64 {
        self.noted.store(noted, Ordering::Relaxed);
        let depth = count.saturating_sub(noted);
        self.depth.store(depth, Ordering::Relaxed);
        depth
    }

    /// Tells the stream what was settled; keeps it to tell again if that fails.
    async fn tell(&self, settled: held::Settlement) -> Result<(), QueueError> {
        if settled.is_empty() {
            return Ok(());
        }
        let mut call = self.settle.key(&self.stream);
        call.key(&self.count_key).key(&self.notes_key).arg(GROUP).arg(settled.done.len());
        for d in &settled.done {
            call.arg(entry::id_of(d.base)).arg(d.records);
        }
        for &t in &settled.partial {
            call.arg(entry::note_of(t));
        }
        let mut conn = self.conn.clone();
        match call.invoke_async::<(u64, u64)>(&mut conn).await {
            Ok((count, noted)) => {
                self.counted(count, noted);
                Ok(())
            }
            Err(e) => {
                self.held().unflushed(settled);
                Err(unavailable(e))
            }
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, entries: Vec<Envelope>) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let n = entries.len() as u64;
        let depth = self.depth.load(Ordering::Relaxed);
        if depth + n > self.max_depth {
            // The cached depth may be stale; ask before refusing.
            let depth = self.depth().await?;
            if depth + n > self.max_depth {
                return Err(QueueError::Full { depth });
            }
        }
        let records: Vec<&Envelope> = entries.iter().collect();
        let count = tokio::time::timeout(ENQUEUE_TIMEOUT, self.append(&records, 0))
            .await
            .map_err(|_| unavailable(format!("Redis did not answer within {ENQUEUE_TIMEOUT:?}")))??;
        self.counted(count, self.noted.load(Ordering::Relaxed));
        Ok(())
    }

    async fn claim(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut reader = self.reader.lock().await;
        {
            let mut last = self.last_autoclaim.lock().await;
            if last.elapsed() >= self.claim_idle / 2 {
                *last = Instant::now();
                let taken = self.autoclaim(&mut reader, max).await?;
                self.held().take_in(taken);
            }
        }
        if !self.held().has_ready() {
            let read = self.read(&mut reader, max, wait).await?;
            self.held().take_in(read);
        }
        Ok(self.held().hand_out(max))
    }

    async fn ack(&self, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        let settled = self.held().settle(tags);
        self.tell(settled).await
    }

    async fn release(&self, tags: &[DeliveryTag]) -> Result<(), QueueError> {
        if tags.is_empty() {
            return Ok(());
        }
        // Read the entries back, add the released records again with one more
        // attempt, then settle them. A crash in between leaves a duplicate,
        // which the store's idempotent insert absorbs.
        let mut by_entry: std::collections::BTreeMap<u128, Vec<usize>> = std::collections::BTreeMap::new();
        for &tag in tags {
            let (base, index) = entry::split(tag);
            by_entry.entry(base).or_default().push(index);
        }
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for base in by_entry.keys() {
            let id = entry::id_of(*base);
            pipe.cmd("XRANGE").arg(&self.stream).arg(&id).arg(&id);
        }
        let ranges: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        for (range, (base, indexes)) in ranges.iter().zip(&by_entry) {
            // An entry no longer in the stream was settled by another consumer.
            let Value::Array(found) = range else { continue };
            let Some(e) = found.first() else { continue };
            let e = entry::decode(e)?;
            let attempts = self.held().attempts(*base).unwrap_or(e.attempts);
            let records: Vec<&Envelope> = indexes.iter().filter_map(|&i| e.records.get(i)).collect();
            if !records.is_empty() {
                self.append(&records, attempts + 1).await?;
            }
        }
        self.ack(tags).await
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let (count, noted): (Option<u64>, u64) = redis::pipe()
            .cmd("GET")
            .arg(&self.count_key)
            .cmd("ZCARD")
            .arg(&self.notes_key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(self.counted(count.unwrap_or(0), noted))
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
            Some(e) => Ok(entry::decode(e)?.records.iter().map(|r| r.received_at).min()),
            None => Ok(None),
        }
    }

    async fn in_flight(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        self.pending_records
            .key(&self.stream)
            .key(&self.notes_key)
            .arg(GROUP)
            .arg(PENDING_SCAN)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }
}
