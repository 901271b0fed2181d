//! The collector end to end: what each request gets, and what ends up stored.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{fixture, pageview, reason_codes, TestApp};

/// After a bad request, a good one still goes through and is stored.
async fn still_works(app: &TestApp, session: &str) {
    let ids = app.accept(&pageview(session, 1)).await;
    app.process().await;
    let stored = app.get(&format!("/api/events?session_id={session}")).await;
    assert_eq!(stored["events"][0]["event_id"], ids[0].as_str());
}

#[tokio::test]
async fn a_valid_event_is_stored_and_read_back() {
    let app = TestApp::spawn().await;
    let mut event = pageview("s1", 7);
    event["data"]["element"] = json!("cta");
    let ids = app.accept(&event).await;
    assert_eq!(app.process().await, 1);

    let got = app.get(&format!("/api/events/{}", ids[0])).await;
    assert_eq!(got["session_id"], "s1");
    assert_eq!(got["category"], "page interaction");
    assert_eq!(got["name"], "pageview");
    assert_eq!(got["data"], event["data"]);
    assert_eq!(got["timestamp"], "2021-01-01T09:00:07.243860Z");
    assert!(app.errors().await.is_empty());
}

#[tokio::test]
async fn text_plain_and_the_trailing_slash_path_are_accepted() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/collector/"))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("x-eye-key", &app.key)
        .body(pageview("beacon", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 1);
    app.process().await;
    assert_eq!(app.events().await.len(), 1);
}

#[tokio::test]
async fn the_three_example_events_of_the_original_are_valid() {
    let app = TestApp::spawn().await;
    let events = json!([
        {"session_id": "e2085be5-9137-4e4e-80b5-f1ffddc25423", "category": "page interaction", "name": "pageview",
         "data": {"host": "www.consumeraffairs.com", "path": "/"}, "timestamp": "2021-01-01 09:15:27.243860"},
        {"session_id": "e2085be5-9137-4e4e-80b5-f1ffddc25423", "category": "page interaction", "name": "banner image click",
         "data": {"host": "www.consumeraffairs.com", "path": "/", "element": "chat bubble"}, "timestamp": "2021-01-01 09:15:27.243860"},
        {"session_id": "e2085be5-9137-4e4e-80b5-f1ffddc25423", "category": "form interaction", "name": "submit",
         "data": {"host": "www.consumeraffairs.com", "path": "/", "form": {"first_name": "John", "last_name": "Doe"}},
         "timestamp": "2021-01-01 09:15:27.243860"}
    ]);
    app.accept(&events).await;
    app.process().await;
    assert_eq!(app.events().await.len(), 3, "errors: {:?}", app.errors().await);
}

#[tokio::test]
async fn each_invalid_case_lands_in_errors_with_its_reason() {
    let app = TestApp::spawn().await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"category": "page interaction", "name": "pageview", "data": {"host": "h", "path": "/"}, "timestamp": "2021-01-01 09:00:00"}),
            "session_id:required",
        ),
        (
            json!({"session_id": "s", "category": "no such", "name": "pageview", "data": {}, "timestamp": "2021-01-01 09:00:00"}),
            "category:unknown_category",
        ),
        (
            json!({"session_id": "s", "category": "page interaction", "name": "dance", "data": {}, "timestamp": "2021-01-01 09:00:00"}),
            "name:undeclared_name",
        ),
        (
            json!({"session_id": "s", "category": "page interaction", "name": "pageview", "data": {"host": "h"}, "timestamp": "2021-01-01 09:00:00"}),
            "data:schema",
        ),
        (
            json!({"session_id": "s", "category": "page interaction", "name": "pageview", "data": [1], "timestamp": "2021-01-01 09:00:00"}),
            "data:wrong_type",
        ),
        (
            json!({"session_id": "s", "category": "page interaction", "name": "pageview", "data": {"host": "h", "path": "/"}, "timestamp": "01/01/2021"}),
            "timestamp:invalid_format",
        ),
        (
            json!({"session_id": "s", "category": "page interaction", "name": "pageview", "data": {"host": "h", "path": "/"}, "timestamp": future}),
            "timestamp:in_future",
        ),
        (
            json!({"session_id": "x".repeat(256), "category": "page interaction", "name": "pageview", "data": {"host": "h", "path": "/"}, "timestamp": "2021-01-01 09:00:00"}),
            "session_id:too_long",
        ),
        (
            json!({"session_id": "s", "event_id": "123", "category": "page interaction", "name": "pageview", "data": {"host": "h", "path": "/"}, "timestamp": "2021-01-01 09:00:00"}),
            "event_id:invalid_uuid",
        ),
        (json!("just a string in an array"), "body:not_an_object"),
    ];
    let batch: Vec<Value> = cases.iter().map(|(e, _)| e.clone()).collect();
    let ids = app.accept(&Value::Array(batch)).await;
    app.process().await;

    assert!(app.events().await.is_empty());
    let errors = app.errors().await;
    assert_eq!(errors.len(), cases.len());
    for ((payload, expected), id) in cases.iter().zip(&ids) {
        let error = errors.iter().find(|e| e["event_id"] == id.as_str()).expect("error for each case");
        assert!(reason_codes(error).contains(&expected.to_string()), "{expected}: {error}");
        let raw: Value = serde_json::from_str(error["raw"].as_str().unwrap()).unwrap();
        assert_eq!(&raw, payload, "raw payload is kept as received");
    }
}

#[tokio::test]
async fn one_invalid_event_collects_every_reason() {
    let app = TestApp::spawn().await;
    let malformed = fixture("malformed-bodies.json");
    let wrong_types: Value = serde_json::from_str(malformed[6].as_str().unwrap()).unwrap();
    app.accept(&wrong_types).await;
    app.process().await;
    let errors = app.errors().await;
    let mut codes = reason_codes(&errors[0]);
    codes.sort();
    assert_eq!(
        codes,
        ["category:wrong_type", "data:wrong_type", "name:required", "session_id:wrong_type", "timestamp:wrong_type"]
    );
}

#[tokio::test]
async fn the_same_event_posted_twice_is_stored_once() {
    let app = TestApp::spawn().await;
    // Without event_id: the derived id is the same for the same content.
    let legacy = pageview("legacy", 3);
    let first = app.accept(&legacy).await;
    let again = app.accept(&legacy).await;
    assert_eq!(first, again);
    // With event_id, even if the client's clock moved between retries.
    let mut with_id = pageview("modern", 4);
    with_id["event_id"] = json!("0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11");
    app.accept(&with_id).await;
    with_id["timestamp"] = json!("2021-01-01 09:00:05");
    app.accept(&with_id).await;
    // The same duplicate inside one batch, too.
    app.accept(&json!([pageview("batch", 5), pageview("batch", 5)])).await;
    app.process().await;

    let events = app.events().await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().any(|e| e["event_id"] == "0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11"));
}

#[tokio::test]
async fn a_thousand_event_array_is_stored_whole() {
    let app = TestApp::spawn().await;
    let batch: Vec<Value> = (0..1000).map(|i| pageview(&format!("bulk-{}", i % 7), i)).collect();
    let ids = app.accept(&Value::Array(batch)).await;
    assert_eq!(ids.len(), 1000);
    app.process().await;
    let mut stored: Vec<String> =
        app.events().await.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect();
    let mut expected = ids.clone();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_and_an_event_error() {
    let app = TestApp::spawn().await;
    let response = app.post_raw("not json at all", &[("content-type", "application/json")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let recorded = body["error"]["recorded_as"].as_str().expect("recorded").to_string();
    app.process().await;
    let errors = app.errors().await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["event_id"], recorded.as_str());
    assert_eq!(errors[0]["raw"], "not json at all");
    assert_eq!(reason_codes(&errors[0]), ["body:invalid_json"]);
    still_works(&app, "after-not-json").await;
}

#[tokio::test]
async fn every_malformed_fixture_gets_a_clear_answer_and_disturbs_nothing() {
    let app = TestApp::spawn().await;
    let bodies = fixture("malformed-bodies.json");
    let mut refused = 0;
    for body in bodies.as_array().unwrap() {
        let response = app.post_raw(body.as_str().unwrap().to_string(), &[("content-type", "application/json")]).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        match status {
            StatusCode::BAD_REQUEST => {
                refused += 1;
                assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");
            }
            StatusCode::ACCEPTED => assert_eq!(answer["accepted"], 1),
            other => panic!("unexpected {other} for {body}"),
        }
    }
    // Truncated, lone surrogate, 200 arrays, 129 objects, plain text, empty: refused.
    // Wrong field types: valid JSON, accepted, then an event error.
    assert_eq!(refused, 6);
    app.process().await;
    assert_eq!(app.errors().await.len(), 7, "every body is kept as an event error");
    still_works(&app, "after-malformed").await;
}

#[tokio::test]
async fn a_deeply_nested_body_is_refused() {
    let app = TestApp::spawn().await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let response = app.post_raw(deep, &[("content-type", "application/json")]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_deep");
    still_works(&app, "after-deep").await;
}

#[tokio::test]
async fn an_oversized_body_is_a_413_and_nothing_is_queued() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 10_000).await;
    let big = json!([pageview("big", 1), {"padding": "x".repeat(20_000)}]);
    let response = app.post(&big).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
    still_works(&app, "after-big").await;
    assert_eq!(app.events().await.len(), 1, "nothing of the oversized request was kept");
}

#[tokio::test]
async fn count_and_per_event_limits_are_413s() {
    let app = TestApp::spawn_with(|s| {
        s.max_events_per_request = 5;
        s.max_event_bytes = 1000;
    })
    .await;
    let six: Vec<Value> = (0..6).map(|i| pageview("many", i)).collect();
    assert_eq!(app.post(&Value::Array(six)).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let mut fat = pageview("fat", 1);
    fat["data"]["blob"] = json!("y".repeat(2000));
    let response = app.post(&json!([pageview("thin", 1), fat])).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("event 1"), "{body}");
    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn gzip_bodies_are_accepted_and_a_gzip_bomb_is_a_413() {
    let app = TestApp::spawn().await;
    let batch = Value::Array((0..50).map(|i| pageview("gz", i)).collect());
    let headers = [("content-type", "application/json"), ("content-encoding", "gzip")];
    let response = app.post_raw(gzip(batch.to_string().as_bytes()), &headers).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // 100 MB of spaces compresses to about 100 KB: under the wire limit, far over the decoded one.
    let bomb = gzip(&vec![b' '; 100 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let response = app.post_raw(bomb, &headers).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("decoded body exceeds"));

    let response = app.post_raw("not gzip", &headers).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    app.process().await;
    assert_eq!(app.events().await.len(), 50);
}

#[tokio::test]
async fn unsupported_media_types_are_415s() {
    let app = TestApp::spawn().await;
    let body = pageview("m", 1).to_string();
    for headers in [
        vec![],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![("content-type", "application/json"), ("content-encoding", "br")],
    ] {
        let response = app.post_raw(body.clone(), &headers).await;
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "unsupported_media_type");
    }
    assert_eq!(app.state.queue.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_and_recovers() {
    let app = TestApp::spawn_with(|s| {
        s.queue_max_depth = 3;
        s.retry_after_secs = 7;
    })
    .await;
    app.accept(&json!([pageview("q", 1), pageview("q", 2), pageview("q", 3)])).await;
    let response = app.post(&pageview("q", 4)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    app.process().await;
    app.accept(&pageview("q", 4)).await;
    app.process().await;
    assert_eq!(app.events().await.len(), 4);
}

#[tokio::test]
async fn hostile_strings_are_stored_verbatim_or_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let strings = fixture("hostile-strings.json");
    let mut in_data = Vec::new();
    let mut as_session = Vec::new();
    for (i, s) in strings.as_array().unwrap().iter().enumerate() {
        let mut event = pageview("hostile", i as u32);
        event["data"]["value"] = s.clone();
        let response = app.post(&event).await;
        match response.status() {
            StatusCode::ACCEPTED => {
                in_data.push((s.clone(), response.json::<Value>().await.unwrap()["ids"][0].clone()))
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                assert!(s.as_str().unwrap().len() > 60_000, "only the huge string is too large")
            }
            other => panic!("{other} for {s}"),
        }
        let mut event = pageview("unused", i as u32);
        event["session_id"] = s.clone();
        let response = app.post(&event).await;
        if response.status() == StatusCode::ACCEPTED {
            as_session.push((s.clone(), response.json::<Value>().await.unwrap()["ids"][0].clone()));
        }
    }
    app.process().await;
    let events = app.events().await;
    let errors = app.errors().await;
    for (s, id) in &in_data {
        match events.iter().find(|e| &e["event_id"] == id) {
            Some(stored) => assert_eq!(&stored["data"]["value"], s, "stored verbatim"),
            None => {
                // Only NUL is refused in data (no backend can store it the same way).
                let error = errors.iter().find(|e| &e["event_id"] == id).expect("either stored or an error");
                assert_eq!(reason_codes(error), ["data/value:nul_character"]);
                assert!(s.as_str().unwrap().contains('\0'), "{s} refused");
            }
        }
    }
    for (s, id) in &as_session {
        match events.iter().find(|e| &e["event_id"] == id) {
            Some(stored) => assert_eq!(&stored["session_id"], s),
            None => {
                let error = errors.iter().find(|e| &e["event_id"] == id).expect("either stored or an error");
                assert!(reason_codes(error).iter().any(|c| c.starts_with("session_id:")), "{error}");
            }
        }
    }
    assert!(in_data.len() >= strings.as_array().unwrap().len() - 1);
}
