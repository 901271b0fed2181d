//! Load generator for The Eye: keeps N HTTP/1.1 connections busy posting events,
//! records acknowledgement latency, then (optionally) waits until the queue is
//! empty so the rate it prints is events accepted *and stored* per second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
struct Args {
    /// host:port of the server.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events per request (1 sends a bare object, more send an array).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Requests per second in total; 0 means as fast as the server answers.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// After sending, poll /readyz until queue_depth is 0 and report the end-to-end rate.
    #[arg(long)]
    drain: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Write key of a server-side application (`the-eye apps create --name bench`).
    #[arg(long, default_value = "")]
    key: String,
    /// Random (UUIDv4) event ids, as clients that make their own send, instead
    /// of the tracker's time-ordered ones: the store's unique index is then
    /// written all over rather than at its end.
    #[arg(long)]
    random_ids: bool,
    /// Visitors' sessions live at once, in all: each event goes to one of
    /// them at random, and a session is replaced by a new one (a new random
    /// id, as the tracker makes) after about 10 events. 0 keeps one fixed
    /// session a connection, `bench-N`, whose rows stay together in the
    /// store's session index (the benchmarks before the twenty-first session).
    #[arg(long, default_value_t = 100_000)]
    sessions: u64,
}

/// Whether event ids are random (`--random-ids`), set once at start.
static RANDOM_IDS: AtomicBool = AtomicBool::new(false);
/// Sessions live at once on each connection (`--sessions` shared out), 0 for one fixed session.
static SESSIONS_A_CONNECTION: AtomicU64 = AtomicU64::new(0);

struct Totals {
    accepted_events: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// The session of the `k`th event sent on connection `conn`.
fn session(conn: usize, k: u64) -> String {
    let pool = SESSIONS_A_CONNECTION.load(Ordering::Relaxed);
    if pool == 0 {
        return format!("bench-{conn}");
    }
    the_eye_bench::visitor_session(conn as u64, k, pool)
}

/// The `i`th event of the `seq`th request sent on connection `conn`.
fn event(conn: usize, seq: u64, i: usize, batch: usize) -> String {
    // Unique content per event so no two are deduplicated; a time-ordered client id
    // like the tracker's. Stamped now, as live traffic is: the store keys its
    // dedupe by the event's day, and a prefilled store's days end today.
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    format!(
        concat!(
            r#"{{"event_id":"{}","session_id":"{}","category":"page interaction","name":"pageview","#,
            r#""data":{{"host":"bench.example","path":"/p/{}/{}"}},"timestamp":"{}"}}"#
        ),
        if RANDOM_IDS.load(Ordering::Relaxed) { uuid::Uuid::new_v4() } else { uuid::Uuid::now_v7() },
        session(conn, seq * batch as u64 + i as u64),
        seq * 1000 + conn as u64,
        i,
        chrono_like(micros)
    )
}

/// RFC 3339 from microseconds, without pulling in a date crate.
fn chrono_like(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", rem / 3600, rem / 60 % 60, rem % 60, micros % 1_000_000)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn body(conn: usize, seq: u64, batch: usize) -> String {
    if batch == 1 {
        return event(conn, seq, 0, 1);
    }
    let items: Vec<String> = (0..batch).map(|i| event(conn, seq, i, batch)).collect();
    format!("[{}]", items.join(","))
}

async fn connection(
    conn: usize,
    args: Arc<Args>,
    stop: Arc<AtomicBool>,
    totals: Arc<Totals>,
) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let stream = TcpStream::connect(&args.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(driver);
    let per_conn_rate = if args.rate > 0 { args.rate as f64 / args.connections as f64 } else { 0.0 };
    let mut ticker = (per_conn_rate > 0.0).then(|| {
        // Each connection's ticks are offset by its share of the period, so
        // the requests arrive evenly spread, not all connections at once.
        let period = Duration::from_secs_f64(1.0 / per_conn_rate);
        let offset = period.mul_f64(conn as f64 / args.connections as f64);
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        seq += 1;
        let req = Request::post("/collector")
            .header("host", &args.addr)
            .header("content-type", "application/json")
            .header("x-eye-key", &args.key)
            .body(Full::new(Bytes::from(body(conn, seq, args.batch))))?;
        let start = Instant::now();
        let response = sender.send_request(req).await?;
        let status = response.status();
        response.into_body().collect().await?;
        hist.record(start.elapsed().as_micros().max(1) as u64)?;
        totals.requests.fetch_add(1, Ordering::Relaxed);
        if status == 202 {
            totals.accepted_events.fetch_add(args.batch as u64, Ordering::Relaxed);
        } else if status == 503 || status == 429 {
            totals.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            totals.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(hist)
}

async fn queue_depth(addr: &str) -> anyhow::Result<u64> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(driver);
    let req = Request::get("/readyz").header("host", addr).body(Full::new(Bytes::new()))?;
    let body = sender.send_request(req).await?.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v["queue_depth"].as_u64().ok_or_else(|| anyhow::anyhow!("no queue_depth in {v}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    RANDOM_IDS.store(args.random_ids, Ordering::Relaxed);
    if args.sessions > 0 {
        SESSIONS_A_CONNECTION.store(args.sessions.div_ceil(args.connections as u64), Ordering::Relaxed);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new(Totals {
        accepted_events: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|c| tokio::spawn(connection(c, args.clone(), stop.clone(), totals.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let mut drained_secs = None;
    if args.drain {
        while queue_depth(&args.addr).await? > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drained_secs = Some(start.elapsed().as_secs_f64());
    }
    let requests = totals.requests.load(Ordering::Relaxed);
    let events = totals.accepted_events.load(Ordering::Relaxed);
    let accept_rate = events as f64 / send_secs;
    let stored_rate = drained_secs.map(|s| events as f64 / s);
    let (p50, p99, p999) = (hist.value_at_quantile(0.5), hist.value_at_quantile(0.99), hist.value_at_quantile(0.999));
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "requests": requests, "requests_per_s": requests as f64 / send_secs,
                "events_accepted": events, "accepted_events_per_s": accept_rate,
                "stored_events_per_s": stored_rate, "drained_after_s": drained_secs,
                "refused_503_429": totals.refused.load(Ordering::Relaxed),
                "other_failures": totals.failed.load(Ordering::Relaxed),
                "latency_us": {"p50": p50, "p99": p99, "p999": p999, "max": hist.max()},
            })
        );
    } else {
        println!("requests       {requests} in {send_secs:.1}s ({:.0}/s)", requests as f64 / send_secs);
        println!("events         {events} accepted ({accept_rate:.0}/s)");
        if let (Some(rate), Some(secs)) = (stored_rate, drained_secs) {
            println!("end to end     {rate:.0} events/s stored (queue empty after {secs:.1}s)");
        }
        println!(
            "refused        {} (503/429), {} other",
            totals.refused.load(Ordering::Relaxed),
            totals.failed.load(Ordering::Relaxed)
        );
        println!("ack latency    p50 {p50}µs  p99 {p99}µs  p99.9 {p999}µs  max {}µs", hist.max());
    }
    Ok(())
}
