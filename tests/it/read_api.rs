//! The read API: filters, keyset pagination, order, auth and bad parameters.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{pageview, TestApp};

/// Two sessions, two categories, timestamps one second apart.
async fn seeded() -> TestApp {
    let app = TestApp::spawn().await;
    let mut batch: Vec<Value> = (0..10).map(|i| pageview(if i % 2 == 0 { "even" } else { "odd" }, i)).collect();
    batch.push(json!({
        "session_id": "even", "category": "form interaction", "name": "submit",
        "data": {"host": "h", "path": "/form", "form": {"name": "Ada"}}, "timestamp": "2021-01-01 09:00:30"
    }));
    app.accept(&Value::Array(batch)).await;
    app.process().await;
    app
}

fn sessions(events: &Value) -> Vec<String> {
    events["events"].as_array().unwrap().iter().map(|e| e["session_id"].as_str().unwrap().to_string()).collect()
}

fn times(events: &Value) -> Vec<String> {
    events["events"].as_array().unwrap().iter().map(|e| e["timestamp"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn filters_select_what_they_name() {
    let app = seeded().await;
    let even = app.get("/api/events?session_id=even").await;
    assert_eq!(sessions(&even), vec!["even"; 6]);
    let forms = app.get("/api/events?category=form%20interaction").await;
    assert_eq!(forms["events"].as_array().unwrap().len(), 1);
    assert_eq!(forms["events"][0]["data"]["form"]["name"], "Ada");
    let views = app.get("/api/events?category=page%20interaction&name=pageview&session_id=odd").await;
    assert_eq!(views["events"].as_array().unwrap().len(), 5);
    // from is inclusive, to exclusive.
    let window = app.get("/api/events?from=2021-01-01T09:00:02.243860Z&to=2021-01-01%2009:00:05.243860").await;
    assert_eq!(
        times(&window),
        ["2021-01-01T09:00:04.243860Z", "2021-01-01T09:00:03.243860Z", "2021-01-01T09:00:02.243860Z"]
    );
    assert!(app.get("/api/events?session_id=nobody").await["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn newest_first_by_default_and_asc_in_order_of_occurrence() {
    let app = seeded().await;
    let desc = times(&app.get("/api/events?session_id=even").await);
    let mut sorted = desc.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(desc, sorted);
    let asc = times(&app.get("/api/events?session_id=even&order=asc").await);
    sorted.reverse();
    assert_eq!(asc, sorted);
}

#[tokio::test]
async fn pages_cover_everything_once_in_both_orders() {
    let app = seeded().await;
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut url = format!("/api/events?limit=3&order={order}");
        loop {
            let page = app.get(&url).await;
            let items = page["events"].as_array().unwrap();
            assert!(items.len() <= 3);
            seen.extend(items.iter().map(|e| e["event_id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => url = format!("/api/events?limit=3&order={order}&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 11);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 11);
    }
}

#[tokio::test]
async fn events_with_equal_timestamps_are_not_skipped_between_pages() {
    let app = TestApp::spawn().await;
    let same: Vec<Value> = (0..5)
        .map(|i| {
            let mut e = pageview(&format!("tie-{i}"), 1);
            e["data"]["n"] = json!(i);
            e
        })
        .collect();
    app.accept(&Value::Array(same)).await;
    app.process().await;
    let mut seen = HashSet::new();
    let mut url = "/api/events?limit=2".to_string();
    loop {
        let page = app.get(&url).await;
        for e in page["events"].as_array().unwrap() {
            assert!(seen.insert(e["event_id"].as_str().unwrap().to_string()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/events?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
}

#[tokio::test]
async fn errors_are_paginated_newest_first() {
    let app = TestApp::spawn().await;
    let bad: Vec<Value> = (0..5).map(|i| json!({"session_id": format!("b{i}")})).collect();
    app.accept(&Value::Array(bad)).await;
    app.process().await;
    let first = app.get("/api/errors?limit=2").await;
    assert_eq!(first["errors"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app.get(&format!("/api/errors?limit=2&cursor={cursor}")).await;
    assert!(first["errors"][1]["id"].as_i64() > second["errors"][0]["id"].as_i64());
    assert_eq!(app.errors().await.len(), 5);
}

#[tokio::test]
async fn one_event_by_id_and_a_404_for_unknown_ids() {
    let app = seeded().await;
    let any = app.get("/api/events?limit=1").await;
    let id = any["events"][0]["event_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/events/{id}")).await["event_id"], id);
    let missing = app.get_response("/api/events/0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get_response("/api/events/not-a-uuid").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_parameters_are_400s_that_say_what_is_wrong() {
    let app = seeded().await;
    for (query, words) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("from=yesterday", "from"),
        ("order=sideways", "order"),
        ("cursor=%%%", "cursor"),
        ("sesion_id=typo", "sesion_id"),
    ] {
        let response = app.get_response(&format!("/api/events?{query}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains(words), "{query}: {body}");
    }
    // A cursor made for one order is refused for the other.
    let page = app.get("/api/events?limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let response = app.get_response(&format!("/api/events?order=asc&cursor={cursor}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_read_api_needs_a_valid_bearer_token() {
    let app = seeded().await;
    for path in ["/api/events", "/api/errors", "/api/events/0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11"] {
        let none = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"the-eye\"");
        let wrong = app.client.get(app.url(path)).bearer_auth("eye_rt_wrong").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.accept(&pageview("r", 1)).await;
    let ready: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["queue_depth"], 1);
    app.process().await;
    let ready: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["queue_depth"], 0);
    let unknown = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
