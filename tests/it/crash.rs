//! SIGKILL mid-stream: every event that got a 202 is stored exactly once after a restart.
//!
//! Runs the real `the-eye` binary, because only a real process can be killed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::helpers::pageview;

const BIN: &str = env!("CARGO_BIN_EXE_the-eye");

/// A running `the-eye serve` and the address it printed.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["--data-dir", data_dir.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
            .env("THE_EYE_LOG_FORMAT", "json")
            .env("THE_EYE_LOG", "info")
            .env("THE_EYE_RATE_LIMIT_IP", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the-eye");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next_line().await.unwrap().expect("the-eye exited before listening");
            let log: Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(url) = log["fields"]["url"].as_str() {
                break url.to_string();
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, base }
    }

    async fn kill(mut self) {
        // tokio's kill sends SIGKILL: no shutdown code runs.
        self.child.kill().await.unwrap();
    }
}

fn create_token(data_dir: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(["--data-dir", data_dir.to_str().unwrap(), "tokens", "create", "--name", "crash-test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let token = create_token(dir.path());
    let key = crate::procs::create_app_key(&["--data-dir", dir.path().to_str().unwrap()], "crash-test");
    let server = Server::start(dir.path()).await;
    let client = reqwest::Client::new();

    // Four clients post one event per request and record every 202.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (client, acked, count_tx, key) = (client.clone(), acked.clone(), count_tx.clone(), key.clone());
            let url = format!("{}/collector", server.base);
            tokio::spawn(async move {
                for i in 0u32.. {
                    let event = pageview(&format!("crash-{c}"), i);
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-eye-key", &key)
                        .body(event.to_string())
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 202 {
                        continue;
                    }
                    let Ok(body) = response.json::<Value>().await else { break };
                    let mut acked = acked.lock().unwrap();
                    acked.push(body["ids"][0].as_str().unwrap().to_string());
                    count_tx.send_replace(acked.len());
                }
            })
        })
        .collect();

    count_rx.wait_for(|n| *n >= 400).await.unwrap();
    server.kill().await;
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    let server = Server::start(dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready: Value = client.get(format!("{}/readyz", server.base)).send().await.unwrap().json().await.unwrap();
        if ready["queue_depth"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "queue did not drain: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/api/events?limit=1000", server.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        for e in page["events"].as_array().unwrap() {
            *stored.entry(e["event_id"].as_str().unwrap().to_string()).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} acknowledged events lost, e.g. {:?}", missing.len(), missing.first());
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice");
    assert_eq!(acked.iter().collect::<HashSet<_>>().len(), acked.len());
    server.kill().await;
}
