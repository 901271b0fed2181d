//! Shared test helpers: [`TestApp`] and event builders.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;
use the_eye::api::auth;
use the_eye::app::{App, AppState};
use the_eye::config::RawSettings;
use the_eye::domain::Clock;
use the_eye::worker::Worker;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The app served on 127.0.0.1:0 with its own data dir. It runs no background
/// workers: a test calls [`TestApp::process`] to run the queue dry, so what it
/// asserts never depends on timing.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub token: String,
    /// Key of a server-side application, sent with every post unless a test says otherwise.
    pub key: String,
    pub state: AppState,
    worker: Worker,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: Arc<TempDir>,
}

/// Settings for a test, as a file would spell them: a temp data dir, port 0,
/// no background workers.
pub fn test_settings(dir: &TempDir) -> RawSettings {
    RawSettings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        workers: 0,
        // Tests post far faster than a visitor; the limits have tests of their own.
        rate_limit_app: "off".into(),
        rate_limit_ip: "off".into(),
        ..RawSettings::default()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(change: impl FnOnce(&mut RawSettings)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut settings = test_settings(&dir);
        change(&mut settings);
        Self::spawn_in(dir, settings).await
    }

    /// Serves `settings` (whose data dir lives in `dir`).
    pub async fn spawn_in(dir: Arc<TempDir>, settings: RawSettings) -> Self {
        Self::spawn_with_clock(dir, settings, Arc::new(the_eye::domain::SystemClock)).await
    }

    /// Serves `settings` with `clock` as the app's time.
    pub async fn spawn_with_clock(dir: Arc<TempDir>, settings: RawSettings, clock: Arc<dyn Clock>) -> Self {
        let settings = settings.parse().expect("test settings");
        let listener = tokio::net::TcpListener::bind(settings.http.listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = App::build_with_clock(settings, clock).await.expect("build app");
        let state = app.state().clone();
        let worker = app.worker();
        let token = auth::new_token();
        state.store.create_token("tests", &auth::hash_token(&token), false).await.expect("token");
        let key = the_eye::domain::application::new_key();
        // Unique per spawn: a restart on the same data dir keeps the earlier one.
        let name = format!("tests-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let sender = the_eye::domain::Application { name, key: key.clone(), origins: vec![], active: true };
        state.store.create_application(&sender).await.expect("application");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            token,
            key,
            state,
            worker,
            stop: Some(stop),
            server: Some(server),
            dir,
        }
    }

    /// Graceful shutdown; returns once `serve` has returned.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("serve");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs raw bytes to the collector with the given headers, and the test
    /// application's key unless the headers name a key or an origin.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Response {
        let mut request = self.client.post(self.url("/collector")).body(body);
        let own_trust = headers.iter().any(|(n, _)| {
            n.eq_ignore_ascii_case("x-eye-key") || n.eq_ignore_ascii_case("origin") || n.eq_ignore_ascii_case("referer")
        });
        if !own_trust {
            request = request.header("x-eye-key", &self.key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("post")
    }

    /// POSTs a JSON value to the collector.
    pub async fn post(&self, value: &Value) -> Response {
        self.post_raw(value.to_string(), &[("content-type", "application/json")]).await
    }

    /// POSTs and expects a 202; returns the ids.
    pub async fn accept(&self, value: &Value) -> Vec<String> {
        let response = self.post(value).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.expect("json");
        body["ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_string()).collect()
    }

    /// Runs the worker until the queue is empty.
    pub async fn process(&self) -> usize {
        self.worker.run_until_empty().await.expect("worker")
    }

    /// GET on the read API with the test token; asserts 200 and returns the body.
    pub async fn get(&self, path_and_query: &str) -> Value {
        let response = self.get_response(path_and_query).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path_and_query}");
        response.json().await.expect("json")
    }

    pub async fn get_response(&self, path_and_query: &str) -> Response {
        self.client.get(self.url(path_and_query)).bearer_auth(&self.token).send().await.expect("get")
    }

    /// Every item of a listing (`events` or `errors`), following cursors.
    pub async fn all(&self, path: &str, key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                None => format!("{path}{sep}limit=1000"),
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
            };
            let page = self.get(&url).await;
            out.extend(page[key].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => next = Some(c.to_string()),
                None => return out,
            }
        }
    }

    pub async fn events(&self) -> Vec<Value> {
        self.all("/api/events", "events").await
    }

    pub async fn errors(&self) -> Vec<Value> {
        self.all("/api/errors", "errors").await
    }
}

/// A valid pageview.
pub fn pageview(session: &str, second: u32) -> Value {
    json!({
        "session_id": session,
        "category": "page interaction",
        "name": "pageview",
        "data": {"host": "example.com", "path": format!("/page/{second}")},
        "timestamp": format!("2021-01-01 09:{:02}:{:02}.243860", second / 60 % 60, second % 60)
    })
}

/// The reason codes of an error, as `field:code` strings.
pub fn reason_codes(error: &Value) -> Vec<String> {
    error["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| format!("{}:{}", r["field"].as_str().unwrap_or(""), r["code"].as_str().unwrap_or("")))
        .collect()
}

/// A fixture file from `tests/fixtures`.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture json")
}

/// The value of a test service variable, or `None` after saying loudly that the
/// test is skipped. Written to the stderr handle directly because libtest
/// captures `eprintln!` of passing tests, and a skip must be seen.
pub fn service_url(var: &str, test: &str) -> Option<String> {
    use std::io::Write;
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {var} is not set");
            None
        }
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<chrono::DateTime<chrono::Utc>>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(std::sync::Mutex::new(chrono::Utc::now())))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().unwrap();
        *now += chrono::Duration::from_std(by).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}
