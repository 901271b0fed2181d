//! The demo website and the tracker in headless Chromium: a visit through
//! home, banner, form and back, read back from the read API; a collector that
//! answers 503 once; a page left right after a click.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fantoccini::Locator;
use serde_json::Value;

use crate::browser::Browser;
use crate::helpers::TestApp;

/// The test server with a `demo` application allowed from `origins`.
async fn site(extra_origins: &[String]) -> TestApp {
    let app = TestApp::spawn().await;
    let mut origins = vec![app.url("").trim_end_matches('/').to_string()];
    origins.extend(extra_origins.iter().cloned());
    let demo = the_eye::domain::Application {
        name: the_eye::website::DEMO_APP.into(),
        key: the_eye::domain::application::new_key(),
        origins,
        active: true,
    };
    app.state.store.create_application(&demo).await.unwrap();
    app.state.apps.refresh().await.unwrap();
    app
}

/// Processes the queue until the store holds `n` events; returns them oldest first.
async fn events(app: &TestApp, n: usize) -> Vec<Value> {
    crate::procs::eventually(30, &format!("{n} events arrived"), || async {
        app.process().await;
        app.events().await.len() >= n
    })
    .await;
    let mut found = app.events().await;
    found.sort_by(|a, b| a["timestamp"].as_str().cmp(&b["timestamp"].as_str()));
    found
}

fn summary(e: &Value) -> String {
    format!("{} {}", e["name"].as_str().unwrap(), e["data"]["path"].as_str().unwrap())
}

#[tokio::test]
async fn a_visit_is_tracked_page_by_page_with_one_session_and_no_password() {
    let Some(b) = Browser::start("browser: demo website visit").await else { return };
    let app = site(&[]).await;
    b.open(&app.url("/website/")).await;
    b.screenshot("website").await;
    // The banner links to the form: the page leaves right after the click,
    // so the click can only arrive by beacon (or the retry of the next page).
    b.client.find(Locator::Id("banner")).await.unwrap().click().await.unwrap();
    b.wait_at("/website/form/").await;
    // A password field and an ignored field, which the tracker must never send.
    b.client
        .execute(
            "const f = document.getElementById('newsletter');
             f.insertAdjacentHTML('beforeend', '<input type=password name=secret value=hunter2>' +
                 '<input name=card value=4111 data-eye-ignore>');",
            vec![],
        )
        .await
        .unwrap();
    b.submit("#newsletter", &[("name", "Ada Lovelace"), ("email", "ada@example.com")], "button[type=submit]").await;
    b.wait_for("#thanks").await;
    b.client.find(Locator::LinkText("Back to the shop")).await.unwrap().click().await.unwrap();
    b.wait_at("/website/").await;

    let events = events(&app, 6).await;
    let mut seen: Vec<String> = events.iter().map(summary).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "banner image click /website/",
            "pageview /website/",
            "pageview /website/",
            "pageview /website/form/",
            "pageview /website/form/",
            "submit /website/form/",
        ],
        "exactly these, none twice"
    );
    let host = app.url("").trim_start_matches("http://").trim_end_matches('/').to_string();
    let session = events[0]["session_id"].as_str().unwrap();
    for e in &events {
        assert_eq!(e["session_id"], session, "one session across the pages");
        assert_eq!(e["data"]["host"], host.as_str());
        let category = if e["name"] == "submit" { "form interaction" } else { "page interaction" };
        assert_eq!(e["category"], category);
    }
    let submit = events.iter().find(|e| e["name"] == "submit").unwrap();
    assert_eq!(submit["data"]["form"], serde_json::json!({"name": "Ada Lovelace", "email": "ada@example.com"}));
    assert!(!submit.to_string().contains("hunter2") && !submit.to_string().contains("4111"));
    assert!(app.errors().await.is_empty(), "the demo catalog accepts every event the site sends");
    b.close().await;
}

/// A reverse proxy in front of the app that answers the first collector POST with 503.
struct Flaky {
    upstream: String,
    client: reqwest::Client,
    failed_once: AtomicBool,
    collector_posts: AtomicUsize,
}

async fn forward(State(p): State<Arc<Flaky>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    if parts.uri.path() == "/collector" && parts.method == axum::http::Method::POST {
        p.collector_posts.fetch_add(1, Ordering::SeqCst);
        if !p.failed_once.swap(true, Ordering::SeqCst) {
            return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "busy, try again").into_response();
        }
    }
    let url = format!("{}{}", p.upstream, parts.uri.path_and_query().map(|x| x.as_str()).unwrap_or("/"));
    let mut upstream = p.client.request(parts.method, url).body(bytes);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "accept-encoding" | "connection") {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "content-encoding" | "connection") {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(answer.bytes().await.unwrap())).unwrap()
}

#[tokio::test]
async fn a_collector_that_answers_503_once_gets_the_events_again_and_stores_them_once() {
    let Some(b) = Browser::start("browser: tracker retry").await else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_origin = format!("http://{}", listener.local_addr().unwrap());
    let app = site(std::slice::from_ref(&proxy_origin)).await;
    let flaky = Arc::new(Flaky {
        upstream: app.url("").trim_end_matches('/').to_string(),
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        failed_once: AtomicBool::new(false),
        collector_posts: AtomicUsize::new(0),
    });
    let router = axum::Router::new().fallback(forward).with_state(flaky.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    b.open(&format!("{proxy_origin}/website/")).await;
    let events = events(&app, 1).await;
    assert!(flaky.collector_posts.load(Ordering::SeqCst) >= 2, "refused once, then sent again");
    // Nothing else on the page sends: a second copy would have arrived with the first.
    b.client.goto(&format!("{proxy_origin}/website/form/")).await.unwrap();
    let after = self::events(&app, 2).await;
    let pageviews: Vec<String> = after.iter().map(summary).collect();
    assert_eq!(pageviews, ["pageview /website/", "pageview /website/form/"], "each once");
    assert_eq!(events[0]["event_id"], after[0]["event_id"]);
    b.close().await;
}

#[tokio::test]
async fn the_demo_website_works_on_a_fresh_install_with_no_set_up() {
    let Some(b) = Browser::start("browser: fresh install").await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let port = crate::procs::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let _eye = crate::procs::Eye::start(&["--data-dir", data, "serve", "--listen", &listen], &[]).await;
    // The server's own origins, as a visitor would type them.
    for host in ["127.0.0.1", "localhost"] {
        b.open(&format!("http://{host}:{port}/website/")).await;
    }
    let token = crate::procs::create_token(&["--data-dir", data]);
    let client = reqwest::Client::new();
    let base = format!("http://{listen}");
    crate::procs::eventually(30, "both pageviews are stored", || async {
        crate::procs::count_events(&client, &base, &token).await == Some(2)
    })
    .await;
    let page: Value = client
        .get(format!("{base}/api/events?order=asc"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hosts: Vec<&str> =
        page["events"].as_array().unwrap().iter().map(|e| e["data"]["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, [format!("127.0.0.1:{port}"), format!("localhost:{port}")]);
    b.close().await;
}

/// `demo = false`: no demo application, no `/website/`, and `/` leads to the
/// admin panel; the tracker itself is still served for real websites.
#[tokio::test]
async fn the_demo_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let eye = crate::procs::Eye::start(
        &["--data-dir", &data, "serve", "--listen", "127.0.0.1:0"],
        &[("THE_EYE_DEMO", "false")],
    )
    .await;
    let base = eye.base.clone().unwrap();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    assert_eq!(client.get(format!("{base}/website/")).send().await.unwrap().status(), reqwest::StatusCode::NOT_FOUND);
    let root = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(root.headers()["location"], "/admin/");
    assert_eq!(client.get(format!("{base}/static/eye.js")).send().await.unwrap().status(), reqwest::StatusCode::OK);
    let out =
        std::process::Command::new(crate::procs::BIN).args(["--data-dir", &data, "apps", "list"]).output().unwrap();
    let apps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(apps.as_array().unwrap().iter().all(|a| a["name"] != "demo"), "no demo application: {apps}");
    eye.kill().await;

    // With the demo on (the default), `/` leads to it.
    let on = crate::procs::Eye::start(&["--data-dir", &data, "serve", "--listen", "127.0.0.1:0"], &[]).await;
    let root = client.get(format!("{}/", on.base.clone().unwrap())).send().await.unwrap();
    assert_eq!(root.headers()["location"], "/website/");
}
