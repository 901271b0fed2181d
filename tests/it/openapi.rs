//! `GET /api/openapi.json`: a valid OpenAPI 3.1 document (checked against
//! the OpenAPI Initiative's schema for 3.1) that describes every JSON endpoint.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{fixture, TestApp};

#[tokio::test]
async fn the_description_is_valid_openapi_3_1_and_covers_every_json_endpoint() {
    let app = TestApp::spawn().await;
    assert_eq!(app.client.get(app.url("/api/openapi.json")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let doc = app.get("/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);

    // The official schema of OpenAPI 3.1 documents (vendored from PyPI's
    // openapi-spec-validator, tests/fixtures/openapi-3.1-schema.json).
    let schema = fixture("openapi-3.1-schema.json");
    let validator = jsonschema::validator_for(&schema).expect("the OpenAPI schema compiles");
    let problems: Vec<String> =
        validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(problems.is_empty(), "not valid OpenAPI 3.1:\n{}", problems.join("\n"));

    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/collector", "post"),
        ("/api/events", "get"),
        ("/api/events/{event_id}", "get"),
        ("/api/errors", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is described");
    }
    // The answers that are described are the answers that come back.
    let collector = &paths["/collector"]["post"]["responses"];
    for status in ["202", "400", "401", "413", "415", "429", "503"] {
        assert!(collector.get(status).is_some(), "/collector documents {status}");
    }
    // Links lead from the answers that carry event ids to the event itself,
    // by an operationId that exists and a parameter it takes.
    let get_event = &paths["/api/events/{event_id}"]["get"];
    assert_eq!(get_event["operationId"], "get_event");
    assert_eq!(get_event["parameters"][0]["name"], "event_id");
    for (path, method, status, link, expression) in [
        ("/api/events", "get", "200", "GetFirstEvent", "$response.body#/events/0/event_id"),
        ("/collector", "post", "202", "GetFirstAcceptedEvent", "$response.body#/ids/0"),
    ] {
        let link = &paths[path][method]["responses"][status]["links"][link];
        assert_eq!(link["operationId"], "get_event", "{method} {path} links to the event: {link}");
        assert_eq!(link["parameters"]["event_id"], expression, "{method} {path}");
    }
    // Examples, for readers and for schemathesis's examples phase: a body
    // the collector takes, and a value for every filter of the listings, the
    // statistics and the export, but a cursor (the server's own token), an
    // application (each install names its own) and the export's `reason`
    // (errors only, where the example exports events).
    let example = &paths["/collector"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_eq!(example["name"], "pageview", "the collector's body has an example: {example}");
    for path in ["/api/events", "/api/errors", "/api/stats", "/api/export"] {
        for parameter in paths[path]["get"]["parameters"].as_array().unwrap() {
            let name = parameter["name"].as_str().unwrap();
            let exempt = ["cursor", "application"].contains(&name) || (path == "/api/export" && name == "reason");
            if !exempt {
                assert!(!parameter["example"].is_null(), "{path}'s {name} has an example");
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    let event: Value = schemas["EventOut"]["properties"].clone();
    for field in ["event_id", "session_id", "category", "name", "data", "timestamp", "received_at"] {
        assert!(event.get(field).is_some(), "EventOut has {field}");
    }
}
