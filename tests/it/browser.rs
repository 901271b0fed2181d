//! Tests in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) with fantoccini. `THE_EYE_TEST_CHROMIUM` names the Chromium
//! binary; `THE_EYE_TEST_CHROMEDRIVER` the driver (default: `chromedriver` on
//! the PATH). Without the first, each test says SKIPPED and passes.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use crate::helpers::service_url;

/// A headless Chromium session with its own chromedriver.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or `None` (SKIPPED) without one.
    pub async fn start(test: &str) -> Option<Self> {
        let chromium = service_url("THE_EYE_TEST_CHROMIUM", test)?;
        // Two rustls crypto providers are linked into the tests (fantoccini's
        // and reqwest's); name one, or rustls refuses to choose.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver_bin = std::env::var("THE_EYE_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e}"));
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display())],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls().unwrap().capabilities(caps.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "chromedriver did not start: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Some(Self { client, _driver: driver, _profile: profile })
    }

    /// Opens a URL and checks that no script of the page opened a dialog.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        self.assert_no_script_ran(url).await;
    }

    /// The XSS corpus opens `alert` dialogs and rewrites the title when a
    /// script runs; neither may have happened.
    pub async fn assert_no_script_ran(&self, context: &str) {
        if let Ok(text) = self.client.get_alert_text().await {
            panic!("{context}: a script ran and opened a dialog: {text:?}");
        }
        let title = self.client.title().await.unwrap();
        assert_ne!(title, "pwned", "{context}: a script changed the title");
    }

    /// Waits until the browser is at a URL whose path starts with `prefix`.
    pub async fn wait_path(&self, prefix: &str) -> String {
        self.wait_until(prefix, |path| path.starts_with(prefix)).await
    }

    /// Waits until the browser is at exactly this path (query aside).
    pub async fn wait_at(&self, exact: &str) -> String {
        self.wait_until(exact, |path| path.split('?').next() == Some(exact)).await
    }

    /// Waits until the page is loaded at a path (with its query) that `ok` accepts.
    pub async fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.client.current_url().await.unwrap();
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            if ok(&path) && self.ready().await {
                return path;
            }
            assert!(tokio::time::Instant::now() < deadline, "still at {path}, waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an element to appear (a page reloaded at the same URL).
    pub async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
    }

    async fn ready(&self) -> bool {
        self.client.execute("return document.readyState", vec![]).await.ok().and_then(|v| v.as_str().map(String::from))
            == Some("complete".into())
    }

    /// The text of the first element matching a CSS selector.
    pub async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    /// Fills the named fields of the form matching `form_css`, then presses `button_css`.
    pub async fn submit(&self, form_css: &str, fields: &[(&str, &str)], button_css: &str) {
        let form = self.client.form(Locator::Css(form_css)).await.unwrap_or_else(|e| panic!("{form_css}: {e}"));
        for (name, value) in fields {
            form.set_by_name(name, value).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        form.submit_with(Locator::Css(button_css)).await.unwrap_or_else(|e| panic!("{button_css}: {e}"));
    }

    /// Saves a screenshot as `docs/screenshots/NAME.png` for the README.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
