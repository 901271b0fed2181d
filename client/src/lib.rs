//! A client for The Eye (a self-hosted collector of user-behaviour events),
//! for servers that send events.
//!
//! - [`Event`] builds one event and gives it an `event_id` (a UUIDv7, so ids
//!   sort by time) and a timestamp when it is made: a retried event keeps its
//!   id, and The Eye stores it once.
//! - [`Client::send`] posts a batch as one request, retrying network errors,
//!   `429` and `5xx` with exponential backoff, and waiting at least as long as
//!   `Retry-After` says. Other answers (`400`, `401`, `403`, `413`, …) are
//!   final and come back as [`Error::Refused`].
//! - [`Batcher`] collects events from many tasks and sends them in batches,
//!   when a batch is full or has waited `linger`.
//!
//! ```no_run
//! use the_eye_client::{Client, Event};
//!
//! # async fn demo() -> Result<(), the_eye_client::Error> {
//! let client = Client::new("http://127.0.0.1:8000", "eye_wk_server_key")?;
//! let signup = Event::new("session-42", "form interaction", "submit")
//!     .with("host", "shop.example")
//!     .with("path", "/signup/")
//!     .with("form", serde_json::json!({"plan": "pro"}));
//! let accepted = client.send(&[signup]).await?;
//! assert_eq!(accepted.accepted, 1);
//!
//! // Or let a batcher group events from anywhere in the program:
//! let batcher = client.batcher(100, std::time::Duration::from_millis(500));
//! batcher.push(Event::new("session-42", "page interaction", "pageview").with("host", "shop.example").with("path", "/")).await?;
//! let stats = batcher.close().await?; // sends what is left
//! println!("{} events in {} requests", stats.events, stats.requests);
//! # Ok(()) }
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// One event, as The Eye's collector takes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Unique id; kept across retries so the event is stored once.
    pub event_id: Uuid,
    /// The visitor's (or job's) session.
    pub session_id: String,
    /// Category, e.g. `page interaction`.
    pub category: String,
    /// Event name within the category, e.g. `pageview`.
    pub name: String,
    /// Free-form data.
    pub data: Map<String, Value>,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
}

impl Event {
    /// A new event happening now, with a fresh time-ordered id and empty data.
    pub fn new(session_id: impl Into<String>, category: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            session_id: session_id.into(),
            category: category.into(),
            name: name.into(),
            data: Map::new(),
            timestamp: Utc::now(),
        }
    }

    /// Sets one field of `data`. A value that cannot be JSON becomes `null`.
    pub fn with(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.data.insert(key.into(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    /// Sets when the event happened.
    pub fn at(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// What the collector said to a batch it took.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    /// How many events it accepted.
    pub accepted: usize,
    /// Their ids, in the order sent.
    pub ids: Vec<String>,
}

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint URL is not usable.
    #[error("bad endpoint URL: {0}")]
    Url(String),
    /// The collector refused the batch for good; sending it again would not help.
    #[error("The Eye refused the batch ({status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error body, e.g. `{"error": {"code": "unauthorized", ...}}`.
        body: String,
    },
    /// Still failing after every attempt: network errors, 429 or 5xx.
    #[error("The Eye did not take the batch after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The batcher has stopped.
    #[error("the batcher has stopped")]
    Closed,
}

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first wait; each next one doubles.
    pub initial: Duration,
    /// The longest wait (a longer `Retry-After` is still honoured).
    pub max: Duration,
}

impl Default for Retry {
    /// Six attempts over about half a minute: 0.5 s, 1 s, 2 s, 4 s, 8 s between them.
    fn default() -> Self {
        Self { attempts: 6, initial: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl Retry {
    /// The wait before attempt `n + 1` (after `n` failures), at least `retry_after`.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.initial.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1))).min(self.max);
        retry_after.map_or(backoff, |r| r.max(backoff))
    }
}

/// Sends events to one collector with one write key.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    url: reqwest::Url,
    key: String,
    retry: Retry,
}

impl Client {
    /// A client for the server at `base` (e.g. `https://eye.example.com`), sending with `key`.
    pub fn new(base: &str, key: &str) -> Result<Self, Error> {
        let base = reqwest::Url::parse(base).map_err(|e| Error::Url(e.to_string()))?;
        let url = base.join("/collector").map_err(|e| Error::Url(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("the-eye-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Url(e.to_string()))?;
        Ok(Self { http, url, key: key.to_string(), retry: Retry::default() })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Sends a batch as one request; retries what is worth retrying.
    pub async fn send(&self, events: &[Event]) -> Result<Accepted, Error> {
        let body = serde_json::to_vec(events).map_err(|e| Error::Refused { status: 0, body: e.to_string() })?;
        let mut failures = 0;
        loop {
            let (last, retry_after) = match self.attempt(&body).await {
                Ok(accepted) => return Ok(accepted),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Again { reason, retry_after }) => (reason, retry_after),
            };
            failures += 1;
            if failures >= self.retry.attempts {
                return Err(Error::Unavailable { attempts: failures, last });
            }
            tokio::time::sleep(self.retry.delay(failures, retry_after)).await;
        }
    }

    async fn attempt(&self, body: &[u8]) -> Result<Accepted, Attempt> {
        let response = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-eye-key", &self.key)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Attempt::Again { reason: e.to_string(), retry_after: None })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                Attempt::Final(Error::Refused { status: status.as_u16(), body: format!("unexpected answer: {e}") })
            });
        }
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            return Err(Attempt::Again { reason: format!("{status}: {text}"), retry_after });
        }
        Err(Attempt::Final(Error::Refused { status: status.as_u16(), body: text }))
    }

    /// A batcher that sends up to `max_batch` events a request, after at most `linger`.
    pub fn batcher(&self, max_batch: usize, linger: Duration) -> Batcher {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        let task = tokio::spawn(run_batcher(self.clone(), rx, max_batch.max(1), linger));
        Batcher { tx, task }
    }
}

enum Attempt {
    Final(Error),
    Again { reason: String, retry_after: Option<Duration> },
}

/// What a batcher sent before it closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events delivered.
    pub events: usize,
    /// Requests that delivered them.
    pub requests: usize,
    /// Events given up on (refused, or still unavailable after every retry).
    pub failed: usize,
}

enum Command {
    Event(Event),
    Flush(oneshot::Sender<Result<(), Error>>),
}

/// Collects events and sends them in batches from a task of its own.
#[derive(Debug)]
pub struct Batcher {
    tx: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<Stats>,
}

impl Batcher {
    /// Adds an event; waits only when the batcher is far behind.
    pub async fn push(&self, event: Event) -> Result<(), Error> {
        self.tx.send(Command::Event(event)).await.map_err(|_| Error::Closed)
    }

    /// Sends what is waiting now; returns the outcome of that send.
    pub async fn flush(&self) -> Result<(), Error> {
        let (done, result) = oneshot::channel();
        self.tx.send(Command::Flush(done)).await.map_err(|_| Error::Closed)?;
        result.await.map_err(|_| Error::Closed)?
    }

    /// Sends what is left and stops.
    pub async fn close(self) -> Result<Stats, Error> {
        drop(self.tx);
        self.task.await.map_err(|_| Error::Closed)
    }
}

async fn run_batcher(client: Client, mut rx: mpsc::Receiver<Command>, max_batch: usize, linger: Duration) -> Stats {
    let mut stats = Stats::default();
    let mut batch: Vec<Event> = Vec::with_capacity(max_batch);
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let command = match deadline {
            Some(at) => tokio::select! {
                c = rx.recv() => c,
                _ = tokio::time::sleep_until(at) => {
                    deliver(&client, &mut batch, &mut stats).await.ok();
                    deadline = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        match command {
            Some(Command::Event(event)) => {
                batch.push(event);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + linger);
                if batch.len() >= max_batch {
                    deliver(&client, &mut batch, &mut stats).await.ok();
                    deadline = None;
                }
            }
            Some(Command::Flush(done)) => {
                let _ = done.send(deliver(&client, &mut batch, &mut stats).await);
                deadline = None;
            }
            None => {
                deliver(&client, &mut batch, &mut stats).await.ok();
                return stats;
            }
        }
    }
}

async fn deliver(client: &Client, batch: &mut Vec<Event>, stats: &mut Stats) -> Result<(), Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let events = std::mem::take(batch);
    match client.send(&events).await {
        Ok(_) => {
            stats.events += events.len();
            stats.requests += 1;
            Ok(())
        }
        Err(e) => {
            stats.failed += events.len();
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_time_ordered_ids_and_data() {
        let a = Event::new("s", "page interaction", "pageview").with("path", "/").with("n", 3);
        let b = Event::new("s", "page interaction", "pageview");
        assert_eq!(a.event_id.get_version_num(), 7);
        assert!(a.event_id < b.event_id, "later events sort later");
        assert_eq!(a.data["path"], "/");
        assert_eq!(a.data["n"], 3);
        let json = serde_json::to_value(&a).unwrap();
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'), "RFC 3339 in UTC");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let r = Retry { attempts: 10, initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        let waits: Vec<u128> = (1..=6).map(|n| r.delay(n, None).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.delay(1, Some(Duration::from_secs(7))), Duration::from_secs(7), "the server asked for longer");
        assert_eq!(r.delay(4, Some(Duration::ZERO)), Duration::from_millis(800));
    }

    #[test]
    fn the_endpoint_is_the_servers_collector() {
        let c = Client::new("https://eye.example.com/some/path", "k").unwrap();
        assert_eq!(c.url.as_str(), "https://eye.example.com/collector");
        assert!(matches!(Client::new("not a url", "k"), Err(Error::Url(_))));
    }
}
