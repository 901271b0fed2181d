//! Who may send: allowed hosts, write keys, origins, CORS and rate limits.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use the_eye::domain::Application;

use crate::helpers::{pageview, test_settings, ManualClock, TestApp};
use crate::procs::{free_port, Eye, BIN};

const SHOP: &str = "https://shop.example.com";
const BLOG: &str = "https://blog.example.com";

/// The app with a browser application `shop` (origin SHOP), a second browser
/// application `twin` sharing BLOG with `blog`, and the tests' server application.
async fn trusted(change: impl FnOnce(&mut the_eye::config::RawSettings)) -> (TestApp, String) {
    let app = TestApp::spawn_with(|s| {
        s.catalog_refresh_secs = 0; // revocations take effect at once
        change(s);
    })
    .await;
    let shop = Application { name: "shop".into(), key: "eye_wk_shop".into(), origins: vec![SHOP.into()], active: true };
    app.state.store.create_application(&shop).await.unwrap();
    for (name, key) in [("blog", "eye_wk_blog"), ("twin", "eye_wk_twin")] {
        let a = Application { name: name.into(), key: key.into(), origins: vec![BLOG.into()], active: true };
        app.state.store.create_application(&a).await.unwrap();
    }
    (app, shop.key)
}

async fn post(app: &TestApp, headers: &[(&str, &str)]) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    // A new session each time, so no two posts are the same event.
    let response = app.post_raw(pageview(&uuid::Uuid::new_v4().to_string(), 1).to_string(), &all).await;
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap_or_default())
}

async fn queued(app: &TestApp) -> u64 {
    app.state.queue.depth().await.unwrap()
}

#[tokio::test]
async fn a_valid_key_from_an_allowed_origin_is_accepted_and_recorded() {
    let (app, key) = trusted(|_| {}).await;
    let (status, headers, _) = post(&app, &[("x-eye-key", &key), ("origin", SHOP)]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    assert_eq!(headers["vary"], "Origin");
    // sendBeacon: text/plain, key in the URL, the page's origin.
    let response = app
        .client
        .post(app.url(&format!("/collector?key={key}")))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", SHOP)
        .body(pageview("beacon", 2).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Only a Referer (some browsers on same-origin requests): its origin counts.
    let (status, _, _) = post(&app, &[("x-eye-key", &key), ("referer", "https://shop.example.com/cart?id=1")]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.process().await;
    let events = app.events().await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["application"] == "shop"));
    // Privacy: the client's address is not stored anywhere in the event.
    assert!(events.iter().all(|e| !e.to_string().contains("127.0.0.1")));
}

#[tokio::test]
async fn a_disallowed_origin_is_403_and_nothing_is_queued() {
    let (app, key) = trusted(|_| {}).await;
    for content_type in ["application/json", "text/plain"] {
        let response = app
            .client
            .post(app.url("/collector"))
            .header("content-type", content_type)
            .header("x-eye-key", &key)
            .header("origin", "https://evil.example")
            .body(pageview("evil", 1).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{content_type}");
        assert!(response.headers().get("access-control-allow-origin").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden_origin");
    }
    // Another application's origin is not good enough either.
    let (status, _, _) = post(&app, &[("x-eye-key", &key), ("origin", BLOG)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = post(&app, &[("x-eye-key", &key), ("origin", "null")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn missing_unknown_and_revoked_keys_are_401_and_nothing_is_queued() {
    let (app, key) = trusted(|_| {}).await;
    let (status, _, body) = post(&app, &[("x-eye-key", "")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let response = app
        .client
        .post(app.url("/collector"))
        .header("content-type", "application/json")
        .body(pageview("nokey", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "no key and no origin");
    let (status, _, _) = post(&app, &[("x-eye-key", "eye_wk_made_up"), ("origin", SHOP)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(app.state.store.set_application_active("shop", false).await.unwrap());
    let (status, _, body) = post(&app, &[("x-eye-key", &key), ("origin", SHOP)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"));
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn keyless_requests_need_an_origin_of_exactly_one_application() {
    let (app, _) = trusted(|_| {}).await;
    let (status, _, _) = post(&app, &[("origin", SHOP)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "one application has this origin");
    let (status, _, body) = post(&app, &[("origin", BLOG)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "two applications have it: which one?");
    assert!(body["error"]["message"].as_str().unwrap().contains("X-Eye-Key"));
    let (status, _, _) = post(&app, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.process().await;
    assert_eq!(app.events().await[0]["application"], "shop");
}

#[tokio::test]
async fn server_keys_need_no_origin_and_browser_keys_need_one() {
    let (app, shop_key) = trusted(|_| {}).await;
    let server_key = app.key.clone();
    let (status, _, _) = post(&app, &[("x-eye-key", &server_key)]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, body) = post(&app, &[("x-eye-key", &server_key), ("origin", SHOP)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a server key used from a browser");
    assert!(body["error"]["message"].as_str().unwrap().contains("server key"));
    let (status, _, body) = post(&app, &[("x-eye-key", &shop_key)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a browser key without an origin");
    assert!(body["error"]["message"].as_str().unwrap().contains("browser key"));
}

#[tokio::test]
async fn preflights_answer_only_allowed_origins() {
    let (app, _) = trusted(|_| {}).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/collector"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-eye-key")
            .send()
    };
    let ok = preflight(SHOP).await.unwrap();
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert_eq!(ok.headers()["access-control-allow-origin"], SHOP);
    assert_eq!(ok.headers()["access-control-allow-methods"], "POST");
    assert!(ok.headers()["access-control-allow-headers"].to_str().unwrap().contains("X-Eye-Key"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn hosts_that_are_not_allowed_are_400_before_anything_else() {
    let (app, key) = trusted(|_| {}).await;
    for host in ["evil.example", "valid:x@evil", "127.0.0.1.evil.example"] {
        let (status, _, body) = post(&app, &[("host", host), ("x-eye-key", &key), ("origin", SHOP)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host}");
        assert_eq!(body["error"]["code"], "bad_host");
    }
    // X-Forwarded-Host from an untrusted client.
    let (status, _, body) =
        post(&app, &[("x-forwarded-host", "localhost"), ("x-eye-key", &key), ("origin", SHOP)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("trusted proxy"));
    let unknown = app.client.get(app.url("/api/events")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST, "every route, not just the collector");
    let health = app.client.get(app.url("/healthz")).header("host", "10.0.0.7:8000").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "health checks by address still work");
    assert_eq!(queued(&app).await, 0);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_host_is_checked() {
    let (app, key) = trusted(|s| {
        s.trust_proxy = true;
        s.allowed_hosts = ".example.com".into();
    })
    .await;
    let headers = |fwd: &'static str| vec![("host", "10.0.0.7:8000"), ("x-forwarded-host", fwd), ("origin", SHOP)];
    let mut ok = headers("events.example.com");
    ok.push(("x-eye-key", &key));
    assert_eq!(post(&app, &ok).await.0, StatusCode::ACCEPTED);
    let mut bad = headers("evil.example");
    bad.push(("x-eye-key", &key));
    assert_eq!(post(&app, &bad).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_accept_again_later() {
    let clock = ManualClock::new();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = test_settings(&dir);
    settings.rate_limit_ip = "3/s".into();
    settings.rate_limit_app = "2/min".into();
    let app = TestApp::spawn_with_clock(dir, settings, clock.clone()).await;

    // Per application: 2 a minute.
    for _ in 0..2 {
        assert_eq!(post(&app, &[]).await.0, StatusCode::ACCEPTED);
    }
    let (status, headers, body) = post(&app, &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "30");
    assert!(body["error"]["message"].as_str().unwrap().contains("application"));

    // Per address: 3 a second, counted whatever the key.
    let (status, headers, body) = post(&app, &[("x-eye-key", "eye_wk_made_up")]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the fourth request from this address");
    assert_eq!(headers["retry-after"], "1");
    assert!(body["error"]["message"].as_str().unwrap().contains("address"));

    clock.advance(Duration::from_secs(30));
    assert_eq!(post(&app, &[]).await.0, StatusCode::ACCEPTED, "accepted again once the window passed");
    assert_eq!(queued(&app).await, 3, "refused requests queued nothing");
}

fn eye(args: &[&str]) -> Value {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_apps_commands_create_list_rotate_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let created = eye(&[
        "--data-dir",
        d,
        "apps",
        "create",
        "--name",
        "shop",
        "--origin",
        "https://Shop.Example.com/",
        "--origin",
        "http://localhost:3000",
    ]);
    assert_eq!(created["name"], "shop");
    assert_eq!(created["origins"], serde_json::json!(["https://shop.example.com", "http://localhost:3000"]));
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("eye_wk_"));
    let rotated = eye(&["--data-dir", d, "apps", "rotate", "shop"]);
    assert_ne!(rotated["key"], key.as_str());
    let out = std::process::Command::new(BIN).args(["--data-dir", d, "apps", "revoke", "shop"]).output().unwrap();
    assert!(out.status.success());
    let list = eye(&["--data-dir", d, "apps", "list"]);
    assert_eq!(list[0]["active"], false);
    assert_eq!(list[0]["key"], rotated["key"]);
    let dup =
        std::process::Command::new(BIN).args(["--data-dir", d, "apps", "create", "--name", "shop"]).output().unwrap();
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = std::process::Command::new(BIN)
        .args(["--data-dir", d, "apps", "create", "--name", "x", "--origin", "javascript:alert(1)"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[tokio::test]
async fn a_fresh_install_has_a_demo_application_for_its_own_origins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let server = Eye::start(&["--data-dir", d, "serve", "--listen", &listen], &[]).await;
    let list = eye(&["--data-dir", d, "apps", "list"]);
    let demo = list.as_array().unwrap().iter().find(|a| a["name"] == "demo").expect("demo application").clone();
    assert_eq!(
        demo["origins"],
        serde_json::json!([format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}")])
    );
    // The README's curl example: no key, the server's own origin.
    let response = reqwest::Client::new()
        .post(format!("{}/collector", server.base.as_deref().unwrap()))
        .header("content-type", "application/json")
        .header("origin", format!("http://localhost:{port}"))
        .body(pageview("readme", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    server.kill().await;
}
