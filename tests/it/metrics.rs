//! `GET /metrics`: behind a read token unless `metrics_public`, and sending
//! events moves the counters by exactly what was sent.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{pageview, TestApp};

/// The value of the sample `name` (with its labels, as printed), or 0.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn scrape(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).bearer_auth(&app.token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().contains("openmetrics-text"));
    r.text().await.unwrap()
}

#[tokio::test]
async fn sending_events_moves_the_counters_by_exactly_that_many() {
    let app = TestApp::spawn_with(|s| s.rate_limit_ip = "1000/min".into()).await;
    let before = scrape(&app).await;

    let mut invalid = pageview("metrics", 9);
    invalid["category"] = json!("no such category");
    let batch: Vec<_> = (0..6).map(|i| pageview("metrics", i)).chain([invalid]).collect();
    app.accept(&json!(batch)).await;
    let refused = app.post_raw("nope", &[("content-type", "text/html")]).await;
    assert_eq!(refused.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let waiting = scrape(&app).await;
    assert_eq!(sample(&waiting, "the_eye_queue_depth"), 7.0);
    assert!(sample(&waiting, "the_eye_queue_oldest_age_seconds") >= 0.0);
    app.process().await;
    let after = scrape(&app).await;

    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved("the_eye_events_accepted_total"), 7.0);
    assert_eq!(moved("the_eye_events_stored_total"), 6.0);
    assert_eq!(moved(r#"the_eye_event_errors_total{code="unknown_category"}"#), 1.0);
    assert_eq!(moved(r#"the_eye_requests_refused_total{code="unsupported_media_type"}"#), 1.0);
    assert_eq!(moved(r#"the_eye_http_requests_total{method="POST",route="/collector",status="202"}"#), 1.0);
    assert_eq!(sample(&after, "the_eye_queue_depth"), 0.0);
    assert_eq!(sample(&after, "the_eye_queue_oldest_age_seconds"), 0.0);
    assert_eq!(moved("the_eye_worker_batch_size_count"), 1.0);
    assert_eq!(moved("the_eye_worker_batch_size_sum"), 7.0);
    assert!(moved("the_eye_spool_commit_seconds_count") >= 1.0);
    assert!(moved("the_eye_store_write_seconds_count") >= 1.0);
    assert!(after.contains("the_eye_build_info{version="));
}

#[tokio::test]
async fn made_up_methods_do_not_make_new_series() {
    let app = TestApp::spawn().await;
    for method in ["FROB", "XYZZY", "GETX"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.client.request(method, app.url("/nowhere")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let text = scrape(&app).await;
    assert_eq!(sample(&text, r#"the_eye_http_requests_total{method="other",route="(no route)",status="404"}"#), 3.0);
    for made_up in ["FROB", "XYZZY", "GETX"] {
        assert!(!text.contains(made_up), "{made_up} is a label: {text}");
    }
}

#[tokio::test]
async fn metrics_need_a_token_unless_public() {
    let app = TestApp::spawn().await;
    assert_eq!(app.client.get(app.url("/metrics")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let public = TestApp::spawn_with(|s| s.metrics_public = true).await;
    assert_eq!(public.client.get(public.url("/metrics")).send().await.unwrap().status(), StatusCode::OK);
}

/// The alert rules and the Grafana dashboard in docs/ops name only metrics
/// The Eye exports, so neither can drift from the code unnoticed.
#[tokio::test]
async fn the_shipped_alerts_and_dashboard_use_real_metrics() {
    let app = TestApp::spawn().await;
    let mut invalid = pageview("ops", 2);
    invalid["name"] = json!("undeclared");
    app.accept(&json!([pageview("ops", 1), invalid])).await;
    let _ = app.post_raw("x", &[("content-type", "text/html")]).await;
    app.process().await;
    let exported = scrape(&app).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ops");
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut names: Vec<String> = Vec::new();
        for (i, _) in text.match_indices("the_eye_") {
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            names.push(name);
        }
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            // A family with no sample yet still has its `# TYPE base kind` line.
            let base = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            let declared = exported.lines().any(|l| l.starts_with(&format!("# TYPE {base} ")));
            assert!(declared, "{file} uses {name}, which /metrics does not export");
        }
    }
}
