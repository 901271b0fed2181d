//! Real processes for the tests that need them: `the-eye` itself, a
//! `redis-server` with a configuration of the test's own, and a TCP proxy that
//! can cut a backend off.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_the-eye");

/// A running `the-eye` process.
pub struct Eye {
    child: Child,
    /// `http://host:port` it printed, for `serve`.
    pub base: Option<String>,
    /// Its log lines (JSON) after start-up.
    pub logs: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Eye {
    /// Starts `the-eye ARGS…` with JSON logs and waits until it is ready:
    /// for `serve`, until it printed its address; for `worker`, until it said so.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("THE_EYE_LOG_FORMAT", "json")
            .env("THE_EYE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn the-eye");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next_line().await.unwrap().unwrap_or_else(|| panic!("the-eye {args:?} exited early"));
            let log: Value = serde_json::from_str(&line).unwrap_or_default();
            let message = log["fields"]["message"].as_str().unwrap_or_default();
            if let Some(url) = log["fields"]["url"].as_str().filter(|_| message == "The Eye is listening") {
                break Some(url.to_string());
            }
            if message == "The Eye worker is running" {
                break None;
            }
            assert_ne!(log["level"], "ERROR", "the-eye {args:?} failed: {line}");
        };
        // Keep reading so the process never blocks on a full pipe.
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        Self { child, base, logs }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, as a service manager stops it; returns how it exited, or
    /// `None` if it was still running after `secs`.
    pub async fn terminate(mut self, secs: u64) -> Option<std::process::ExitStatus> {
        signal(self.pid(), "TERM");
        tokio::time::timeout(Duration::from_secs(secs), self.child.wait()).await.ok().map(Result::unwrap)
    }
}

/// Sends SIGNAL (like `TERM`, `STOP`, `CONT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Runs `the-eye ARGS…` to completion with `stdin` as its input and `env` set.
pub fn run_with_stdin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut command = std::process::Command::new(BIN);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The write key of a new server-side application, made by `the-eye apps create`.
pub fn create_app_key(args: &[&str], name: &str) -> String {
    let out = std::process::Command::new(BIN).args(args).args(["apps", "create", "--name", name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app: Value = serde_json::from_slice(&out.stdout).unwrap();
    app["key"].as_str().unwrap().to_string()
}

/// Prints a token made by `the-eye tokens create` against these settings.
pub fn create_token(args: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(args)
        .args(["tokens", "create", "--name", "test"])
        .env("THE_EYE_ALLOW_UNSAFE_REDIS", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` of the test's own, configured as The Eye's docs say
/// (append-only file, fsync on every write, no eviction) unless `durable` is false.
pub struct RedisServer {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub async fn start(durable: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (aof, fsync) = if durable { ("yes", "always") } else { ("no", "everysec") };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", aof, "--appendfsync", fsync, "--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed for this test");
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING").query_async::<String>(&mut c).await.is_ok() {
                    return Self { child, url, _dir: dir };
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {port} did not answer");
    }

    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }

    /// The server's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }
}

/// A TCP proxy in front of a backend. `cut()` drops every connection and
/// refuses new ones until `restore()`: an outage as the application sees it.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicUsize::new(0));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, refused, conns) = (up.clone(), refused.clone(), conns.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let handle = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    conns.lock().unwrap().push(handle);
                }
            }
        });
        Self { port, up, refused, conns, _accept: accept }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Connections refused while cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Polls `check` until it is true, failing after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes a unique PostgreSQL database; returns its URL.
pub async fn postgres_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("the_eye_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url);
    format!("{base}/{name}")
}

/// Reads a `the-eye` data dir's events count through the API.
pub async fn count_events(client: &reqwest::Client, base: &str, token: &str) -> Option<usize> {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/events?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let response = client.get(url).bearer_auth(token).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let page: Value = response.json().await.ok()?;
        n += page["events"].as_array()?.len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return Some(n),
        }
    }
}
