//! The Rust client crate (`the-eye-client`) against the real collector, and
//! against stand-in collectors that fail on purpose.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use the_eye_client::{Client, Error, Event, Retry};

use crate::helpers::TestApp;

fn pageview(i: usize) -> Event {
    Event::new("client-session", "page interaction", "pageview")
        .with("host", "backend.example")
        .with("path", format!("/p/{i}"))
}

#[tokio::test]
async fn events_sent_by_the_client_are_stored_with_their_ids() {
    let app = TestApp::spawn().await;
    let client = Client::new(&app.url("/"), &app.key).unwrap();
    let events: Vec<Event> = (0..3).map(pageview).collect();
    let accepted = client.send(&events).await.unwrap();
    assert_eq!(accepted.accepted, 3);
    let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(accepted.ids, ids, "the collector keeps the client's ids");
    // Sending the same events again (a retry after a lost answer) stores nothing new.
    client.send(&events).await.unwrap();
    app.process().await;
    let stored = app.events().await;
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|e| ids.contains(&e["event_id"].as_str().unwrap().to_string())));
}

#[tokio::test]
async fn the_batcher_sends_full_batches_and_the_rest_on_close() {
    let app = TestApp::spawn().await;
    let batcher = Client::new(&app.url("/"), &app.key).unwrap().batcher(100, Duration::from_secs(3600));
    for i in 0..250 {
        batcher.push(pageview(i)).await.unwrap();
    }
    batcher.flush().await.unwrap();
    let stats = batcher.close().await.unwrap();
    assert_eq!((stats.events, stats.requests, stats.failed), (250, 3, 0));
    app.process().await;
    assert_eq!(app.events().await.len(), 250);
}

#[tokio::test]
async fn a_refusal_is_final_and_explained() {
    let app = TestApp::spawn().await;
    let client = Client::new(&app.url("/"), "eye_wk_not_a_key").unwrap();
    match client.send(&[pageview(0)]).await {
        Err(Error::Refused { status: 401, body }) => assert!(body.contains("unauthorized"), "{body}"),
        other => panic!("{other:?}"),
    }
}

/// A stand-in collector: answers each request with the next of `answers`
/// (then 202), and keeps the bodies it got.
async fn stand_in(answers: Vec<(StatusCode, Option<&'static str>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = bodies.clone();
    let router = axum::Router::new().route(
        "/collector",
        axum::routing::post(move |body: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(body.clone());
            let answer = answers.get(n).copied();
            async move {
                match answer {
                    Some((status, retry_after)) => {
                        let mut r = (status, "{\"error\": {\"code\": \"busy\"}}").into_response();
                        if let Some(s) = retry_after {
                            r.headers_mut().insert("retry-after", s.parse().unwrap());
                        }
                        r
                    }
                    None => {
                        let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
                        let ids: Vec<_> = events.iter().map(|e| e["event_id"].clone()).collect();
                        (StatusCode::ACCEPTED, axum::Json(serde_json::json!({"accepted": ids.len(), "ids": ids})))
                            .into_response()
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, bodies)
}

fn quick() -> Retry {
    Retry { attempts: 4, initial: Duration::from_millis(10), max: Duration::from_millis(50) }
}

#[tokio::test]
async fn busy_answers_are_retried_with_the_same_event_ids() {
    let (url, bodies) = stand_in(vec![
        (StatusCode::SERVICE_UNAVAILABLE, Some("0")),
        (StatusCode::TOO_MANY_REQUESTS, None),
        (StatusCode::BAD_GATEWAY, None),
    ])
    .await;
    let client = Client::new(&url, "k").unwrap().with_retry(quick());
    let accepted = client.send(&[pageview(1), pageview(2)]).await.unwrap();
    assert_eq!(accepted.accepted, 2);
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 4, "three refusals, then delivered");
    assert!(bodies.iter().all(|b| b == &bodies[0]), "every attempt sends the same events, ids included");
}

#[tokio::test]
async fn it_gives_up_after_the_last_attempt_and_says_why() {
    let busy = (StatusCode::SERVICE_UNAVAILABLE, None);
    let (url, bodies) = stand_in(vec![busy; 10]).await;
    let client = Client::new(&url, "k").unwrap().with_retry(quick());
    match client.send(&[pageview(1)]).await {
        Err(Error::Unavailable { attempts: 4, last }) => assert!(last.contains("503"), "{last}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(bodies.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let (url, bodies) = stand_in(vec![(StatusCode::PAYLOAD_TOO_LARGE, None)]).await;
    let client = Client::new(&url, "k").unwrap().with_retry(quick());
    assert!(matches!(client.send(&[pageview(1)]).await, Err(Error::Refused { status: 413, .. })));
    assert_eq!(bodies.lock().unwrap().len(), 1);
}
