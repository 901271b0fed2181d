//! The fault suite, in-process part: each defect of the reliability issue
//! reproduced by causing its fault through real parts, and the recovery
//! asserted without a restart. Faults that need a real process (unwritable
//! stderr, SIGTERM, floods of connections, a full disk) are in `faults.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{pageview, reason_codes, test_settings, ManualClock, TestApp};

/// The clock-skew rule is judged against the time the event was received,
/// not the time a worker got to it: a backlog must not turn a refusal into an
/// acceptance.
#[tokio::test]
async fn clock_skew_is_judged_as_of_receipt_not_processing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let clock = ManualClock::new();
    let app = TestApp::spawn_with_clock(dir.clone(), test_settings(&dir), clock.clone()).await;
    let now = chrono::Utc::now();
    let mut ahead = pageview("skew", 1);
    // Ten minutes ahead: beyond the default five minutes of skew when received.
    ahead["timestamp"] = json!((now + chrono::Duration::minutes(10)).to_rfc3339());
    let mut fine = pageview("skew", 2);
    fine["timestamp"] = json!((now + chrono::Duration::minutes(1)).to_rfc3339());
    app.accept(&json!([ahead, fine])).await;

    // The backlog drains an hour later, when the first timestamp lies in the past.
    clock.advance(Duration::from_secs(3600));
    app.process().await;

    let errors = app.errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(reason_codes(&errors[0]), ["timestamp:in_future"]);
    assert_eq!(app.events().await.len(), 1);
}

/// A new application's first requests are accepted at once, even right after
/// another unknown key made the collector reload (the reload used to be held
/// back for a second, and its first requests got 401, which clients drop).
#[tokio::test]
async fn a_new_application_is_accepted_at_once_even_after_a_miss() {
    let app = TestApp::spawn().await;
    let stranger = app
        .post_raw(
            pageview("x", 1).to_string(),
            &[("x-eye-key", "eye_wk_unknown"), ("content-type", "application/json")],
        )
        .await;
    assert_eq!(stranger.status(), reqwest::StatusCode::UNAUTHORIZED);
    for n in 0..3 {
        // Created by another process, as `the-eye apps create` does.
        let key = the_eye::domain::application::new_key();
        let new = the_eye::domain::Application {
            name: format!("fresh-{n}"),
            key: key.clone(),
            origins: vec![],
            active: true,
        };
        app.state.store.create_application(&new).await.unwrap();
        let first = app
            .post_raw(pageview("fresh", n).to_string(), &[("x-eye-key", &key), ("content-type", "application/json")])
            .await;
        assert_eq!(first.status(), reqwest::StatusCode::ACCEPTED, "application {n}'s first request");
    }
}

/// Many requests with unknown keys at once share reloads instead of each
/// querying the store, and are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unknown_keys_are_refused_with_401() {
    let app = Arc::new(TestApp::spawn().await);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let key = format!("eye_wk_made_up_{i}");
                app.post_raw(pageview("x", 1).to_string(), &[("x-eye-key", &key), ("content-type", "application/json")])
                    .await
                    .status()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), reqwest::StatusCode::UNAUTHORIZED);
    }
}

/// Sends a raw HTTP/1.1 request and returns the status line and the body.
async fn raw(app: &TestApp, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// Two `Host` headers, or an absolute-form target naming a host that is not
/// allowed, are refused like any other bad host.
#[tokio::test]
async fn ambiguous_or_absolute_form_hosts_are_checked() {
    let app = TestApp::spawn().await;
    let close = "Connection: close\r\n\r\n";
    let (status, body) =
        raw(&app, &format!("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n{close}")).await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("bad_host"), "{body}");
    let (status, body) =
        raw(&app, &format!("GET http://evil.example/api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}")).await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("bad_host"), "{body}");
    // An absolute-form target for an allowed host is fine.
    let (status, _) = raw(&app, &format!("GET http://127.0.0.1/website/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}")).await;
    assert!(!status.contains(" 400 "), "{status}");
}

/// A session id with `/` (or `?`, `#`) in it links to its own timeline.
#[tokio::test]
async fn session_links_encode_the_whole_id() {
    let (app, client) = crate::admin::http::app_with_user().await;
    let cookie = crate::admin::http::signed_in(&app, &client).await;
    let id = "a/b?c#d e";
    app.accept(&pageview(id, 1)).await;
    app.process().await;
    let html =
        client.get(app.url("/admin/events/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let href = "/admin/sessions/a%2Fb%3Fc%23d%20e/";
    assert!(html.contains(href), "{html}");
    let timeline = client.get(app.url(href)).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(timeline.status(), reqwest::StatusCode::OK);
    let page = timeline.text().await.unwrap();
    assert!(page.contains("page interaction / pageview"), "{page}");
    assert!(!page.contains("No events in this session"), "{page}");
}

/// `/readyz` tells entries waiting for a worker from entries a worker holds.
#[tokio::test]
async fn readyz_tells_waiting_from_in_flight() {
    let app = TestApp::spawn().await;
    app.accept(&json!([pageview("ready", 1), pageview("ready", 2), pageview("ready", 3)])).await;
    let held = app.state.queue.claim(1, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 1);
    let body: serde_json::Value = reqwest::get(app.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["queue_depth"], 3);
    assert_eq!(body["queue_in_flight"], 1);
    assert_eq!(body["queue_waiting"], 2);
}

/// Something that is not there is a 404 page inside the admin frame, with
/// its navigation, not a bare message.
#[tokio::test]
async fn admin_not_found_pages_are_inside_the_frame() {
    let (app, client) = crate::admin::http::app_with_user().await;
    let cookie = crate::admin::http::signed_in(&app, &client).await;
    for path in [
        format!("/admin/events/{}/", uuid::Uuid::now_v7()),
        "/admin/events/not-a-uuid/".to_string(),
        "/admin/errors/999999/".to_string(),
        "/admin/categories/999999/".to_string(),
        "/admin/applications/nobody/".to_string(),
    ] {
        let r = client.get(app.url(&path)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains("There is no such"), "{path}: {html}");
        assert!(html.contains("<nav class=\"main\""), "{path}: not inside the frame");
    }
}

/// Every answer carries a request id (the client's if it is sane), and every
/// error body names it, so a report of an error finds its log line.
#[tokio::test]
async fn request_ids_are_kept_echoed_and_in_error_bodies() {
    let app = TestApp::spawn().await;
    let mine = app.client.get(app.url("/healthz")).header("x-request-id", "trace-42.a_b").send().await.unwrap();
    assert_eq!(mine.headers()["x-request-id"], "trace-42.a_b");
    let insane = app.client.get(app.url("/healthz")).header("x-request-id", "no spaces; please").send().await.unwrap();
    let given = insane.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(given, "no spaces; please");
    assert!(!given.is_empty());

    for (request, code) in [
        (app.client.get(app.url("/nowhere")), "not_found"),
        (app.client.get(app.url("/api/events")), "unauthorized"),
        (app.client.put(app.url("/collector")), "method_not_allowed"),
        (
            app.client.post(app.url("/collector")).header("content-type", "application/json").body("{not json"),
            "invalid_json",
        ),
    ] {
        let r = request.header("x-eye-key", &app.key).send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    }
}
