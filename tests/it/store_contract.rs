//! The store contract, one suite for every [`Store`] implementation.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use sqlx::Connection;
use the_eye::domain::{Reason, Timestamp, ValidEvent};
use the_eye::store::{
    ErrorQuery, EventQuery, NewEvent, NewEventError, Order, PostgresStore, SqliteStore, Store, WriteBatch,
};
use uuid::Uuid;

/// Opens a fresh, migrated store of one backend.
pub trait Harness {
    async fn open(&self) -> Arc<dyn Store>;
    /// Removes what the test created.
    async fn cleanup(self)
    where
        Self: Sized,
    {
    }
}

fn event(session: &str, second: i64) -> NewEvent {
    NewEvent {
        event: ValidEvent {
            event_id: Uuid::now_v7(),
            session_id: session.into(),
            category: "page interaction".into(),
            name: "pageview".into(),
            data: json!({"host": "h", "path": "/", "hostile": "<script>alert(1)</script> \u{202e} '; DROP TABLE events; --"}).as_object().unwrap().clone(),
            timestamp: Timestamp::from_micros(1_600_000_000_000_000 + second * 1_000_000).unwrap(),
        },
        received_at: Utc::now(),
        application: Some("shop".into()),
    }
}

fn error() -> NewEventError {
    NewEventError {
        event_id: Uuid::now_v7(),
        raw: "{\"broken\": <script>".into(),
        reasons: vec![Reason::new("body", "invalid_json", "x"), Reason::new("name", "required", "y")],
        received_at: Utc::now(),
        application: None,
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
    assert_eq!(got.application.as_deref(), Some("shop"));
    assert_eq!(got.timestamp, e.event.timestamp);
    let data: serde_json::Value = serde_json::from_str(got.data.get()).unwrap();
    assert_eq!(data, serde_json::Value::Object(e.event.data.clone()));
    assert!(store.event(Uuid::now_v7()).await.unwrap().is_none());
    let errors = store.errors(&ErrorQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(errors.items[0].raw, err.raw);
    assert_eq!(errors.items[0].reasons, err.reasons);
}

pub async fn an_error_whose_raw_payload_has_nul_is_still_stored(h: &impl Harness) {
    let store = h.open().await;
    let mut err = error();
    err.raw = "nul: \u{0} here".into();
    err.reasons[0].message = "bad \u{0}".into();
    store.write(&WriteBatch { events: vec![], errors: vec![err.clone()] }).await.unwrap();
    let stored = store.errors(&ErrorQuery { limit: 10, ..Default::default() }).await.unwrap();
    let raw = &stored.items[0].raw;
    // PostgreSQL cannot store U+0000 in text; it shows as U+FFFD there.
    assert!(raw == &err.raw || raw == &err.raw.replace('\0', "\u{FFFD}"), "{raw:?}");
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

pub async fn applications_are_created_revoked_and_rotated(h: &impl Harness) {
    use the_eye::domain::Application;
    let store = h.open().await;
    let app = Application {
        name: "shop".into(),
        key: "k1".into(),
        origins: vec!["https://shop.example".into()],
        active: true,
    };
    store.create_application(&app).await.unwrap();
    assert!(matches!(store.create_application(&app).await, Err(the_eye::store::StoreError::Rejected(_))));
    assert_eq!(store.applications().await.unwrap(), vec![app.clone()]);
    assert!(store.set_application_active("shop", false).await.unwrap());
    assert!(store.set_application_key("shop", "k2").await.unwrap());
    let got = store.applications().await.unwrap();
    assert_eq!((got[0].active, got[0].key.as_str()), (false, "k2"));
    assert!(!store.set_application_active("nobody", false).await.unwrap());
}

pub async fn users_are_created_once_and_found_by_name(h: &impl Harness) {
    use the_eye::admin::users::NewUser;
    let store = h.open().await;
    let user = NewUser {
        username: "ada".into(),
        email: "ada@example.com".into(),
        password_hash: "$argon2id$x".into(),
        is_superuser: true,
    };
    store.create_user(&user).await.unwrap();
    assert!(matches!(store.create_user(&user).await, Err(the_eye::store::StoreError::Rejected(_))));
    assert_eq!(store.user_password_hash("ada").await.unwrap().as_deref(), Some("$argon2id$x"));
    assert_eq!(store.user_password_hash("nobody").await.unwrap(), None);
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
                let Some(h) = $harness.await else { return };
                super::migrating_twice_is_harmless_and_seeds_the_demo_catalog(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn writes_are_idempotent_on_event_id() {
                let Some(h) = $harness.await else { return };
                super::writes_are_idempotent_on_event_id(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn what_is_written_reads_back_unchanged() {
                let Some(h) = $harness.await else { return };
                super::what_is_written_reads_back_unchanged(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn an_error_whose_raw_payload_has_nul_is_still_stored() {
                let Some(h) = $harness.await else { return };
                super::an_error_whose_raw_payload_has_nul_is_still_stored(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn keyset_pages_follow_the_order() {
                let Some(h) = $harness.await else { return };
                super::keyset_pages_follow_the_order(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn applications_are_created_revoked_and_rotated() {
                let Some(h) = $harness.await else { return };
                super::applications_are_created_revoked_and_rotated(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn users_are_created_once_and_found_by_name() {
                let Some(h) = $harness.await else { return };
                super::users_are_created_once_and_found_by_name(&h).await;
                h.cleanup().await;
            }
            #[tokio::test]
            async fn tokens_are_found_by_hash_only() {
                let Some(h) = $harness.await else { return };
                super::tokens_are_found_by_hash_only(&h).await;
                h.cleanup().await;
            }
        }
    };
}

/// SQLite in a temp dir; the dir lives as long as the harness.
pub struct SqliteHarness(tempfile::TempDir);

impl SqliteHarness {
    async fn new() -> Option<Self> {
        Some(Self(tempfile::tempdir().unwrap()))
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

/// A fresh PostgreSQL database per test, dropped afterwards.
pub struct PostgresHarness {
    admin_url: String,
    name: String,
}

impl PostgresHarness {
    pub async fn new() -> Option<Self> {
        let admin_url = crate::helpers::service_url("THE_EYE_TEST_POSTGRES_URL", "PostgreSQL store contract")?;
        let name = format!("the_eye_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("connect to THE_EYE_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        Some(Self { admin_url, name })
    }

    /// URL of this test's database.
    pub fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&self.admin_url);
        format!("{base}/{}", self.name)
    }
}

impl Harness for PostgresHarness {
    async fn open(&self) -> Arc<dyn Store> {
        let store = PostgresStore::connect(&self.url()).await.unwrap();
        store.migrate().await.unwrap();
        Arc::new(store)
    }

    async fn cleanup(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut admin).await.unwrap();
    }
}

store_contract!(postgres, PostgresHarness::new());
