//! The store contract, one suite for every [`Store`] implementation.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use the_eye::domain::{Reason, Timestamp, ValidEvent};
use the_eye::store::{ErrorQuery, EventQuery, NewEvent, NewEventError, Order, SqliteStore, Store, WriteBatch};
use uuid::Uuid;

/// Opens a fresh, migrated store of one backend.
pub trait Harness {
    async fn open(&self) -> Arc<dyn Store>;
}

fn event(session: &str, second: i64) -> NewEvent {
    NewEvent {
        event: ValidEvent {
            event_id: Uuid::now_v7(),
            session_id: session.into(),
            category: "page interaction".into(),
            name: "pageview".into(),
            data: json!({"host": "h", "path": "/", "hostile": "<script>\u{0}</script>"}).as_object().unwrap().clone(),
            timestamp: Timestamp::from_micros(1_600_000_000_000_000 + second * 1_000_000).unwrap(),
        },
        received_at: Utc::now(),
    }
}

fn error() -> NewEventError {
    NewEventError {
        event_id: Uuid::now_v7(),
        raw: "{\"broken\": \u{0}".into(),
        reasons: vec![Reason::new("body", "invalid_json", "x"), Reason::new("name", "required", "y")],
        received_at: Utc::now(),
    }
}

fn query(limit: usize) -> EventQuery {
    EventQuery { limit, ..Default::default() }
}

pub async fn migrating_twice_is_harmless_and_seeds_the_demo_catalog(h: &impl Harness) {
    let store = h.open().await;
    store.migrate().await.unwrap();
    let (categories, types) = store.catalog().await.unwrap();
    let mut names: Vec<_> = categories.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["form interaction", "page interaction"]);
    let mut declared: Vec<_> = types.iter().map(|t| format!("{}/{}", t.category, t.name)).collect();
    declared.sort();
    assert_eq!(
        declared,
        ["form interaction/submit", "page interaction/banner image click", "page interaction/pageview"]
    );
    let submit = types.iter().find(|t| t.name == "submit").unwrap();
    assert_eq!(submit.schema.as_ref().unwrap()["required"], json!(["host", "path", "form"]));
}

pub async fn writes_are_idempotent_on_event_id(h: &impl Harness) {
    let store = h.open().await;
    let batch = WriteBatch { events: vec![event("a", 1), event("a", 2)], errors: vec![error()] };
    store.write(&batch).await.unwrap();
    store.write(&batch).await.unwrap();
    let mut overlapping = batch.clone();
    overlapping.events.push(event("a", 3));
    store.write(&overlapping).await.unwrap();
    assert_eq!(store.events(&query(100)).await.unwrap().items.len(), 3);
    assert_eq!(store.errors(&ErrorQuery { limit: 100, ..Default::default() }).await.unwrap().items.len(), 1);
}

pub async fn what_is_written_reads_back_unchanged(h: &impl Harness) {
    let store = h.open().await;
    let e = event("round-trip", 5);
    let err = error();
    store.write(&WriteBatch { events: vec![e.clone()], errors: vec![err.clone()] }).await.unwrap();
    let got = store.event(e.event.event_id).await.unwrap().expect("stored");
    assert_eq!(got.session_id, "round-trip");
    assert_eq!(got.timestamp, e.event.timestamp);
    let data: serde_json::Value = serde_json::from_str(got.data.get()).unwrap();
    assert_eq!(data, serde_json::Value::Object(e.event.data.clone()));
    assert!(store.event(Uuid::now_v7()).await.unwrap().is_none());
    let errors = store.errors(&ErrorQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(errors.items[0].raw, err.raw);
    assert_eq!(errors.items[0].reasons, err.reasons);
}

pub async fn keyset_pages_follow_the_order(h: &impl Harness) {
    let store = h.open().await;
    store.write(&WriteBatch { events: (0..7).map(|i| event("k", i)).collect(), errors: vec![] }).await.unwrap();
    for order in [Order::Desc, Order::Asc] {
        let mut seen = Vec::new();
        let mut q = EventQuery { limit: 3, order, ..Default::default() };
        loop {
            let page = store.events(&q).await.unwrap();
            seen.extend(page.items.iter().map(|e| e.timestamp.micros()));
            match page.next {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        if order == Order::Desc {
            sorted.reverse();
        }
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 7);
    }
}

pub async fn tokens_are_found_by_hash_only(h: &impl Harness) {
    let store = h.open().await;
    store.create_token("ci", &[7u8; 32]).await.unwrap();
    assert!(store.token_exists(&[7u8; 32]).await.unwrap());
    assert!(!store.token_exists(&[8u8; 32]).await.unwrap());
    store.ping().await.unwrap();
}

macro_rules! store_contract {
    ($name:ident, $harness:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn migrating_twice_is_harmless_and_seeds_the_demo_catalog() {
                super::migrating_twice_is_harmless_and_seeds_the_demo_catalog(&$harness).await;
            }
            #[tokio::test]
            async fn writes_are_idempotent_on_event_id() {
                super::writes_are_idempotent_on_event_id(&$harness).await;
            }
            #[tokio::test]
            async fn what_is_written_reads_back_unchanged() {
                super::what_is_written_reads_back_unchanged(&$harness).await;
            }
            #[tokio::test]
            async fn keyset_pages_follow_the_order() {
                super::keyset_pages_follow_the_order(&$harness).await;
            }
            #[tokio::test]
            async fn tokens_are_found_by_hash_only() {
                super::tokens_are_found_by_hash_only(&$harness).await;
            }
        }
    };
}

/// SQLite in a temp dir; the dir lives as long as the harness.
pub struct SqliteHarness(tempfile::TempDir);

impl SqliteHarness {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Harness for SqliteHarness {
    async fn open(&self) -> Arc<dyn Store> {
        let url = format!("sqlite://{}", self.0.path().join("the-eye.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }
}

store_contract!(sqlite, SqliteHarness::new());
