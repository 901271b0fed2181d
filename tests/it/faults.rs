//! The fault suite: each fault caused through real parts (a real process, real
//! sockets, a real full disk, a frozen Redis, PostgreSQL connections killed
//! mid-commit), and each test asserts that every acknowledged event ends up
//! stored exactly once and that the service recovers without a restart.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{pageview, service_url, test_settings, TestApp};
use crate::procs::{create_app_key, create_token, eventually, free_port, postgres_database, signal, Eye, RedisServer};

/// Ids of the events an app has stored; panics if one is stored twice.
async fn stored_once(app: &TestApp) -> HashSet<String> {
    let events = app.events().await;
    let ids: HashSet<String> = events.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), events.len(), "an event is stored twice");
    ids
}

/// True once the server has closed `stream` (a read returns end of file or a reset).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response (a 503, say); look again
            Err(_) => return false,
        }
    }
}

// --- the process and its logs -------------------------------------------------

/// With stderr unwritable (`/dev/full`, or a log pipe whose reader is gone) the
/// service logs nothing but keeps working: the first log line used to panic
/// the task that wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_stderr_does_not_stop_the_pipeline() {
    for how in ["dev-full", "closed-pipe"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        let args = ["--data-dir", data.as_str()];
        let key = create_app_key(&args, "stderr");
        let token = create_token(&args);
        let port = free_port();
        let stderr = match how {
            "dev-full" => Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()),
            _ => Stdio::piped(),
        };
        let mut child = tokio::process::Command::new(crate::procs::BIN)
            .args(["--data-dir", &data, "serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("THE_EYE_LOG", "debug")
            .env("THE_EYE_RATE_LIMIT_IP", "off")
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // The reader of the log pipe goes away at once.
        drop(child.stderr.take());
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually(30, "the server answers", || async {
            client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;

        let mut ids = Vec::new();
        for i in 0..20 {
            let mut bad = pageview("stderr", i);
            if i % 5 == 0 {
                bad["category"] = json!("no such category"); // logged by nobody, stored as an error
            }
            let response = client
                .post(format!("{base}/collector"))
                .header("x-eye-key", &key)
                .header("content-type", "application/json")
                .body(bad.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED, "{how}");
            let body: Value = response.json().await.unwrap();
            ids.push(body["ids"][0].as_str().unwrap().to_string());
        }
        // Requests that log warnings and errors on the way.
        let refused = client
            .post(format!("{base}/collector"))
            .header("x-eye-key", "nope")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        assert_eq!(refused.unwrap().status(), StatusCode::UNAUTHORIZED);
        eventually(30, "every event is processed", || async {
            let events = crate::procs::count_events(&client, &base, &token).await.unwrap_or(0);
            let errors: Value = match client.get(format!("{base}/api/errors")).bearer_auth(&token).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => Value::Null,
            };
            events + errors["errors"].as_array().map_or(0, Vec::len) == 20
        })
        .await;
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "{how}");
        assert!(child.try_wait().unwrap().is_none(), "{how}: the server is still running");
        signal(child.id().unwrap(), "TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{how}: clean exit, got {status}");
    }
}

/// SIGTERM with idle keep-alive connections and half-sent request heads open:
/// the server closes them and exits at once, rather than waiting for its
/// (here five-minute) timeouts to close them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_on_idle_or_half_sent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let slow = [
        ("THE_EYE_HEADER_READ_TIMEOUT_SECS", "300"),
        ("THE_EYE_IDLE_TIMEOUT_SECS", "300"),
        ("THE_EYE_SHUTDOWN_TIMEOUT_SECS", "300"),
    ];
    let eye = Eye::start(&["--data-dir", &data, "serve", "--listen", "127.0.0.1:0"], &slow).await;
    let base = eye.base.clone().unwrap();
    let addr = base.trim_start_matches("http://").to_string();
    let mut open = Vec::new();
    for _ in 0..10 {
        // Idle after one complete request on a kept-alive connection.
        let mut idle = TcpStream::connect(&addr).await.unwrap();
        idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
        let mut buf = [0u8; 512];
        assert!(idle.read(&mut buf).await.unwrap() > 0);
        open.push(idle);
        // Half a request head.
        let mut half = TcpStream::connect(&addr).await.unwrap();
        half.write_all(format!("POST /collector HTTP/1.1\r\nHost: {addr}\r\nContent-").as_bytes()).await.unwrap();
        open.push(half);
    }
    let status = eye.terminate(60).await.expect("the server exited without waiting on its idle connections");
    assert!(status.success(), "clean exit, got {status}");
    for stream in &mut open {
        assert!(closed_by_server(stream).await, "every connection was closed");
    }
}

// --- connections -------------------------------------------------------------

/// A flood of connections that never finish their request head, far past the
/// cap: a normal client is still served, the flood's connections are closed
/// (the longest-waiting first), and the server never holds more than the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_partial_heads_past_the_cap_does_not_keep_a_normal_client_out() {
    let app = TestApp::spawn_with(|s| {
        s.max_connections = 20;
        s.header_read_timeout_secs = 300;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let _ = s.write_all(b"POST /collector HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await;
        flood.push(s);
    }
    // A normal client, on fresh connections, is answered.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let healthz = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let posted = client
        .post(app.url("/collector"))
        .header("x-eye-key", &app.key)
        .header("content-type", "application/json")
        .body(pageview("flooded", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    // At most the cap is open: the rest of the flood has been closed.
    let mut closed = 0;
    for s in &mut flood {
        if closed_by_server(s).await {
            closed += 1;
        }
    }
    assert!(closed >= 200 - 20, "only {closed} of 200 slow connections were closed");
    app.process().await;
    assert_eq!(app.events().await.len(), 1);
}

/// When every connection has a request in progress, a new one is told 503
/// with `Retry-After` instead of waiting in the dark.
#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_newcomer_gets_503() {
    let app = TestApp::spawn_with(|s| {
        s.max_connections = 3;
        s.request_timeout_secs = 300;
    })
    .await;
    let head = format!(
        "POST /collector HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Eye-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[",
        app.key
    );
    let open_busy = || async {
        // A complete head and part of a body: a request in progress.
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s
    };
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(open_busy().await);
    }
    // A newcomer may arrive before the server has read the three heads, and
    // then replaces one of them as merely idle; reopen those and ask again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        assert!(tokio::time::Instant::now() < deadline, "a newcomer was never refused with 503");
        for s in &mut busy {
            if closed_by_server(s).await {
                *s = open_busy().await;
            }
        }
        let mut probe = TcpStream::connect(app.addr).await.unwrap();
        let _ = probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), probe.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).to_string();
        if text.starts_with("HTTP/1.1 503") {
            break text;
        }
    };
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"too_many_connections\""), "{answer}");
    drop(busy);
    // Once they are gone, new clients are served again.
    eventually(30, "the server serves again", || async {
        reqwest::get(app.url("/healthz")).await.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

/// The head timeout closes a connection that trickles its head a byte at a
/// time (each byte does not restart it); the idle timeout closes a kept-alive
/// connection that sends nothing more.
#[tokio::test]
async fn trickled_heads_and_idle_keep_alive_connections_are_closed() {
    let app = TestApp::spawn_with(|s| {
        s.header_read_timeout_secs = 1;
        s.idle_timeout_secs = 2;
    })
    .await;
    let mut trickle = TcpStream::connect(app.addr).await.unwrap();
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut trickled_to_the_end = true;
    for byte in head.iter() {
        if trickle.write_all(&[*byte]).await.is_err() {
            trickled_to_the_end = false;
            break;
        }
        // The fault itself: a client that sends one byte every 200 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if closed_by_server(&mut trickle).await {
            trickled_to_the_end = false;
            break;
        }
    }
    assert!(!trickled_to_the_end, "a head trickled over many seconds was read to the end");

    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    assert!(idle.read(&mut buf).await.unwrap() > 0, "the first request is answered");
    let waited = tokio::time::Instant::now();
    eventually(30, "the idle connection is closed", || async {
        let mut probe = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_millis(100), idle.peek(&mut probe)).await, Ok(Ok(0)) | Ok(Err(_)))
    })
    .await;
    assert!(waited.elapsed() >= Duration::from_secs(1), "not closed before its idle time");
}

/// Error answers from the HTTP layer itself keep the `{"error": …}` shape.
#[tokio::test]
async fn protocol_errors_have_the_error_shape() {
    let app = TestApp::spawn().await;
    let wrong_method = app.client.put(app.url("/collector")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");

    let long = app.client.get(app.url(&format!("/api/events?session_id={}", "x".repeat(9000)))).send().await.unwrap();
    assert_eq!(long.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(long.json::<Value>().await.unwrap()["error"]["code"], "uri_too_long");

    let mut big = app.client.get(app.url("/healthz"));
    for i in 0..40 {
        big = big.header(format!("x-filler-{i}"), "y".repeat(1000));
    }
    let big = big.send().await.unwrap();
    assert_eq!(big.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(big.json::<Value>().await.unwrap()["error"]["code"], "headers_too_large");
}

/// A client that sends its whole request and then shuts its side of the
/// connection (as some beacon senders and `nc -N` do) still gets its answer,
/// and the event is stored: the server does not read the end of the client's
/// stream as a request abandoned halfway.
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_its_202() {
    let app = TestApp::spawn().await;
    let body = pageview("half-close", 7).to_string();
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /collector HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Eye-Key: {}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        app.key,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "answered: {answer:?}");
    let id = serde_json::from_str::<Value>(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap()["ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.process().await, 1);
    assert!(stored_once(&app).await.contains(&id), "the event {id} is stored");
}

// --- overload and a full disk ------------------------------------------------

/// Clients sending far faster than the workers can store, against a small
/// queue and a rate limit: they get 503 and 429 with `Retry-After`, the queue
/// never holds more than its cap, and once the burst is over every
/// acknowledged event is stored exactly once and new events are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_retry_after_and_recovers() {
    let app = Arc::new(
        TestApp::spawn_with(|s| {
            s.workers = 1;
            s.queue_max_depth = 100;
            s.rate_limit_ip = "400/s".into();
        })
        .await,
    );
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let deepest = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = tokio::spawn({
        let (app, deepest) = (app.clone(), deepest.clone());
        async move {
            loop {
                let depth = app.state.queue.depth().await.unwrap();
                deepest.fetch_max(depth, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let senders: Vec<_> = (0..16)
        .map(|t| {
            let (app, accepted, refusals) = (app.clone(), accepted.clone(), refusals.clone());
            tokio::spawn(async move {
                for i in 0..150u32 {
                    let batch = json!([pageview(&format!("burst-{t}"), i), pageview(&format!("burst-{t}"), i + 1000)]);
                    let response = app.post(&batch).await;
                    match response.status() {
                        StatusCode::ACCEPTED => {
                            let body: Value = response.json().await.unwrap();
                            let ids = body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string());
                            accepted.lock().unwrap().extend(ids);
                        }
                        status => {
                            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                            refusals.lock().unwrap().push((status, retry));
                        }
                    }
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    watcher.abort();
    let refusals = refusals.lock().unwrap().clone();
    assert!(!refusals.is_empty(), "the burst was never refused: no overload happened");
    for (status, retry) in &refusals {
        assert!([StatusCode::SERVICE_UNAVAILABLE, StatusCode::TOO_MANY_REQUESTS].contains(status), "{status}");
        assert!(retry.is_some(), "{status} without Retry-After");
    }
    assert!(deepest.load(std::sync::atomic::Ordering::SeqCst) <= 100, "the queue went past its cap");

    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    eventually(120, "the backlog drained", || async { app.state.queue.depth().await.unwrap() == 0 }).await;
    let stored = stored_once(&app).await;
    assert_eq!(stored, accepted, "every acknowledged event is stored, and nothing else");
    // Recovered: a new event goes straight in.
    app.accept(&pageview("after-burst", 1)).await;
}

/// A small tmpfs mounted over the data dir (as root; skipped otherwise).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = writeln!(std::io::stderr(), "SKIPPED full-disk test: cannot mount a tmpfs (needs root)");
            return None;
        }
        Some(Self { path, _dir: dir })
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The spool's disk fills up: the collector answers 503 (never a 202 it
/// could not keep), and once space is made, it accepts again and every
/// acknowledged event is stored exactly once — with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_answers_503_and_heals_when_space_returns() {
    let Some(disk) = SmallDisk::mount("1m") else { return };
    let store_dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&store_dir);
    settings.data_dir = disk.path.clone();
    settings.database_url = Some(format!("sqlite://{}", store_dir.path().join("the-eye.db").display()));
    let app = TestApp::spawn_in(store_dir.clone(), settings).await;

    let mut accepted = HashSet::new();
    let mut full = 0;
    let filler = "x".repeat(4000);
    for i in 0..2000u32 {
        let mut event = pageview("full-disk", i);
        event["data"]["filler"] = json!(filler);
        let response = app.post(&event).await;
        match response.status() {
            StatusCode::ACCEPTED => {
                let body: Value = response.json().await.unwrap();
                accepted.insert(body["ids"][0].as_str().unwrap().to_string());
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(response.headers().contains_key("retry-after"));
                full += 1;
                if full >= 5 {
                    break;
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(full >= 5, "the disk never filled");
    assert!(!accepted.is_empty());

    disk.resize("64m");
    // Heals by itself: the next events are accepted and everything drains.
    let after = app.accept(&pageview("after-full", 1)).await;
    accepted.extend(after);
    app.process().await;
    assert_eq!(stored_once(&app).await, accepted);
    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

// --- the scaled deployment ---------------------------------------------------

/// Redis frozen (SIGSTOP): the collector answers 503 within its enqueue
/// timeout and `/readyz` answers 503 within about a second; thawed, the
/// service takes events again and stores every acknowledged one exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_gives_quick_503s_and_recovers_when_thawed() {
    let Some(pg) = service_url("THE_EYE_TEST_POSTGRES_URL", "frozen Redis") else { return };
    let redis = RedisServer::start(true).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.database_url = Some(postgres_database(&pg).await);
    settings.redis_url = Some(redis.url.clone());
    let app = TestApp::spawn_in(dir, settings).await;
    let mut accepted: HashSet<String> = app.accept(&pageview("before-freeze", 1)).await.into_iter().collect();

    signal(redis.pid(), "STOP");
    // Answered 503, but the command may already sit in Redis's socket and be
    // carried out after the thaw: not promised, not forbidden. A client's
    // retry carries the same id and is deduplicated.
    let mut maybe = HashSet::new();
    for i in 0..3 {
        let event = pageview("frozen", i);
        maybe.insert(the_eye::domain::event_id::derive(&event).to_string());
        let response = app.post(&event).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
    }
    // Bounded at about a second per check; the old 5 s response timeout fails this.
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(4)).build().unwrap();
    let ready = probe.get(app.url("/readyz")).send().await.expect("/readyz answered while Redis is frozen");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    signal(redis.pid(), "CONT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.post(&pageview("thawed", 1)).await;
        if response.status() == StatusCode::ACCEPTED {
            let body: Value = response.json().await.unwrap();
            accepted.insert(body["ids"][0].as_str().unwrap().to_string());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Redis never took events again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.process().await;
    let stored = stored_once(&app).await;
    assert!(accepted.is_subset(&stored), "an acknowledged event is missing");
    let unexpected: Vec<_> = stored.difference(&accepted).filter(|id| !maybe.contains(*id)).collect();
    assert!(unexpected.is_empty(), "stored but never sent: {unexpected:?}");
    redis.stop().await;
}

/// PostgreSQL connections killed again and again while workers commit
/// batches: every acknowledged event is stored exactly once, none becomes an
/// event error, and the workers go on by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_terminated_during_commits_lose_nothing() {
    let Some(pg) = service_url("THE_EYE_TEST_POSTGRES_URL", "PostgreSQL connections terminated") else { return };
    let database = postgres_database(&pg).await;
    let name = database.rsplit('/').next().unwrap().to_string();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.database_url = Some(database);
    settings.workers = 2;
    settings.worker_linger_ms = 0;
    let app = TestApp::spawn_in(dir, settings).await;
    // Warm the key cache while the store answers, as a running node would have.
    let mut accepted: HashSet<String> = app.accept(&pageview("warm", 0)).await.into_iter().collect();

    let killer = tokio::spawn({
        let (pg, name) = (pg.clone(), name.clone());
        async move {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&pg).await.unwrap();
            let mut killed = 0u64;
            for _ in 0..40 {
                let n: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(&name)
                .fetch_all(&mut admin)
                .await
                .unwrap();
                killed += n.len() as u64;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            killed
        }
    });
    for i in 0..40u32 {
        let batch = Value::Array((0..25).map(|j| pageview(&format!("kill-{i}"), j)).collect());
        accepted.extend(app.accept(&batch).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let killed = killer.await.unwrap();
    assert!(killed > 0, "no connection was terminated");
    eventually(120, "the backlog drained", || async { app.state.queue.depth().await.unwrap() == 0 }).await;
    eventually(60, "the read API answers again", || async {
        app.get_response("/api/events?limit=1").await.status() == StatusCode::OK
    })
    .await;
    assert_eq!(stored_once(&app).await, accepted);
    assert!(app.errors().await.is_empty(), "a lost connection is not an event error");
}

/// One access-log line per request, with the route template, status, latency
/// and size, and none of the address, the key, the token or the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_line_per_request_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let token = create_token(&["--data-dir", &data]);
    let mut eye = Eye::start(&["--data-dir", &data, "serve", "--listen", "127.0.0.1:0"], &[]).await;
    let base = eye.base.clone().unwrap();
    let event = uuid::Uuid::now_v7();
    let r = reqwest::Client::new()
        .get(format!("{base}/api/events/{event}?key=sekrit-query"))
        .bearer_auth(&token)
        .header("x-request-id", "access-log-test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let line = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), eye.logs.recv()).await.unwrap().unwrap();
        if line.contains("access-log-test") {
            break line;
        }
    };
    let log: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["target"], "the_eye::access", "{line}");
    assert_eq!(log["level"], "INFO");
    let fields = &log["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/api/events/{event_id}", "{line}");
    assert_eq!(fields["status"], 404);
    assert!(fields["latency_ms"].as_f64().is_some() && fields["bytes"].as_u64().is_some(), "{line}");
    for secret in [token.as_str(), "sekrit-query", "127.0.0.1", &event.to_string()] {
        assert!(!line.contains(secret), "the log line holds {secret:?}: {line}");
    }
}
