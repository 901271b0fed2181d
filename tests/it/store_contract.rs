//! The store contract, one suite per role (`EventSink`, `EventReader`,
//! `Access`, `Curation`), run against every backend.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use sqlx::Connection;
use the_eye::domain::{Reason, Timestamp, ValidEvent};
use the_eye::store::{
    AdminAction, AdminSession, Category, ErrorQuery, EventQuery, EventType, NewEvent, NewEventError, Order,
    PostgresStore, Replay, SqliteStore, Store, StoreError, WriteBatch,
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

pub async fn replay_turns_an_error_into_exactly_one_event(h: &impl Harness) {
    let store = h.open().await;
    let mut bad = error();
    bad.raw = r#"{"category": "shop", "name": "buy", "session_id": "s", "timestamp": 1600000000, "data": {}}"#.into();
    bad.reasons = vec![Reason::new("category", "unknown_category", "no category named \"shop\"")];
    let other = error();
    store.write(&WriteBatch { events: vec![], errors: vec![bad.clone(), other.clone()] }).await.unwrap();

    let by = |reason: Option<&str>, category: Option<&str>| ErrorQuery {
        reason: reason.map(str::to_string),
        category: category.map(str::to_string),
        limit: 10,
        ..Default::default()
    };
    let shop = store.errors(&by(None, Some("shop"))).await.unwrap().items;
    assert_eq!(shop.len(), 1);
    assert_eq!(shop[0].category.as_deref(), Some("shop"));
    assert_eq!(store.errors(&by(Some("unknown_category"), None)).await.unwrap().items.len(), 1);
    assert_eq!(store.errors(&by(Some("invalid_json"), None)).await.unwrap().items.len(), 1);
    assert_eq!(store.errors(&by(Some("unknown"), None)).await.unwrap().items.len(), 0, "codes match whole");
    let id = shop[0].id;

    let mut fixed = event("s", 0);
    fixed.event.event_id = bad.event_id;
    let replay = vec![Replay { error_id: id, edited_raw: None, outcome: Ok(fixed) }];
    // Two admins press replay at once: one wins, the event is stored once.
    let (a, b) = tokio::join!(store.resolve_errors(&replay, "ada"), store.resolve_errors(&replay, "bob"));
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        // SQLite may refuse the loser outright (busy); that is a failed replay, not a double.
        (Ok(a), Err(StoreError::Unavailable(_))) => (a, 0),
        (Err(StoreError::Unavailable(_)), Ok(b)) => (0, b),
        other => panic!("{other:?}"),
    };
    assert_eq!(a + b, 1, "counted once");
    assert!(store.event(bad.event_id).await.unwrap().is_some(), "kept its event_id");
    assert_eq!(store.events(&query(10)).await.unwrap().items.len(), 1, "stored once");
    assert_eq!(store.errors(&by(None, None)).await.unwrap().items.len(), 1, "the error is gone");

    // A replay with an edited payload that still fails records the edit.
    let left = store.errors(&by(None, None)).await.unwrap().items.remove(0);
    let edited = r#"{"category": "cart", "broken": true}"#.to_string();
    let still = vec![Replay {
        error_id: left.id,
        edited_raw: Some(edited.clone()),
        outcome: Err(vec![Reason::new("name", "required", "name is required")]),
    }];
    assert_eq!(store.resolve_errors(&still, "ada").await.unwrap(), 0);
    let after = store.errors(&by(None, None)).await.unwrap().items.remove(0);
    assert_eq!(after.raw, edited);
    assert_eq!(after.original_raw.as_deref(), Some(other.raw.as_str()));
    assert_eq!(after.edited_by.as_deref(), Some("ada"));
    assert_eq!(after.category.as_deref(), Some("cart"));
    assert_eq!(after.reasons[0].code, "required");
    assert_eq!(store.delete_errors(&[after.id]).await.unwrap(), 1);
    assert_eq!(store.delete_errors(&[after.id]).await.unwrap(), 0);
}

pub async fn events_are_searched_and_deleted(h: &impl Harness) {
    let store = h.open().await;
    let mut special = event("needle-session", 1);
    special.event.data.insert("note".into(), json!("a haystack with a needle in it"));
    let plain = event("other", 2);
    store.write(&WriteBatch { events: vec![special.clone(), plain.clone()], errors: vec![] }).await.unwrap();
    let search = |text: &str| EventQuery { search: Some(text.into()), limit: 10, ..Default::default() };
    let found = store.events(&search("needle in")).await.unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event_id, special.event.event_id);
    assert_eq!(store.events(&search("needle-session")).await.unwrap().items.len(), 1, "by session id");
    assert_eq!(store.events(&search("not there")).await.unwrap().items.len(), 0);
    assert!(store.delete_event(special.event.event_id).await.unwrap());
    assert!(!store.delete_event(special.event.event_id).await.unwrap());
    assert!(store.event(special.event.event_id).await.unwrap().is_none());
    assert!(store.event(plain.event.event_id).await.unwrap().is_some());
}

pub async fn categories_and_event_types_are_edited(h: &impl Harness) {
    let store = h.open().await;
    let mut shop =
        Category { name: "shop".into(), description: "purchases".into(), active: true, ..Default::default() };
    let id = store.save_category(&shop).await.unwrap();
    assert!(matches!(store.save_category(&shop).await, Err(StoreError::Rejected(_))), "names are unique");
    shop.id = Some(id);
    shop.active = false;
    shop.strict = true;
    shop.name = "renamed".into();
    assert_eq!(store.save_category(&shop).await.unwrap(), id);
    let schema = json!({"type": "object", "required": ["sku"]});
    let buy = EventType { category_id: id, name: "buy".into(), schema: Some(schema.clone()), ..Default::default() };
    let type_id = store.save_event_type(&buy).await.unwrap();
    assert!(matches!(store.save_event_type(&buy).await, Err(StoreError::Rejected(_))));
    let saved = store.categories().await.unwrap().into_iter().find(|c| c.id == Some(id)).unwrap();
    assert_eq!(saved.name, "shop", "a category keeps its name");
    assert!(!saved.active && saved.strict);
    assert_eq!(saved.types.len(), 1);
    assert_eq!(saved.types[0].schema, Some(schema));
    let (categories, types) = store.catalog().await.unwrap();
    assert!(categories.iter().any(|c| c.name == "shop" && !c.active));
    assert!(types.iter().any(|t| t.category == "shop" && t.name == "buy"));
    assert!(store.delete_event_type(type_id).await.unwrap());
    assert!(!store.delete_event_type(type_id).await.unwrap());
}

pub async fn activity_is_counted_by_bucket_and_category(h: &impl Harness) {
    let store = h.open().await;
    let events: Vec<NewEvent> = [0, 30, 61, 125].iter().map(|s| event("s", *s)).collect();
    store.write(&WriteBatch { events, errors: vec![error()] }).await.unwrap();
    let since = chrono::DateTime::from_timestamp(1_600_000_000, 0).unwrap();
    let activity = store.activity(since, 60, 3).await.unwrap();
    let mut counts = activity.events.clone();
    counts.sort();
    let page = |b: i64, n: i64| (b, "page interaction".to_string(), n);
    assert_eq!(counts, [page(0, 2), page(1, 1), page(2, 1)]);
    assert!(activity.errors.is_empty(), "the error was received now, outside the range");
    let now = Utc::now() - chrono::Duration::seconds(30);
    let recent = store.activity(now, 60, 1).await.unwrap();
    assert_eq!(recent.errors, [(0, String::new(), 1)], "an error without a category");
    assert_eq!(store.totals(since).await.unwrap(), (4, 1));
}

pub async fn the_audit_log_and_password_changes_are_kept(h: &impl Harness) {
    let store = h.open().await;
    let user = the_eye::admin::users::NewUser {
        username: "ada".into(),
        email: String::new(),
        password_hash: "old".into(),
        is_superuser: true,
    };
    store.create_user(&user).await.unwrap();
    let now = Utc::now();
    for token in ["mine", "other"] {
        let session = AdminSession {
            token_hash: token.into(),
            username: "ada".into(),
            csrf_token: "c".into(),
            expires_at: now + chrono::Duration::hours(1),
        };
        store.create_session(&session).await.unwrap();
    }
    assert!(store.set_password("ada", "new", "mine").await.unwrap());
    assert!(!store.set_password("nobody", "new", "mine").await.unwrap());
    assert_eq!(store.user_password_hash("ada").await.unwrap().as_deref(), Some("new"));
    assert!(store.session("mine", now).await.unwrap().is_some(), "this session stays");
    assert!(store.session("other", now).await.unwrap().is_none(), "other sessions end");

    let entry = |object: &str| AdminAction {
        at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        username: "ada".into(),
        action: "replay".into(),
        object: object.into(),
        detail: "<b>detail</b>".into(),
    };
    store.log_action(&entry("a")).await.unwrap();
    store.log_action(&entry("b")).await.unwrap();
    assert_eq!(store.actions(Some("a"), 10).await.unwrap(), [entry("a")]);
    assert_eq!(store.actions(None, 10).await.unwrap(), [entry("b"), entry("a")], "newest first");
}

/// Every event id ends as one event or one error, never both: in one batch,
/// in two batches either way round, and when the write is repeated.
pub async fn an_event_id_is_an_event_or_an_error_never_both(h: &impl Harness) {
    let store = h.open().await;
    let errors = |store: Arc<dyn Store>| async move {
        store.errors(&ErrorQuery { limit: 100, ..Default::default() }).await.unwrap().items
    };
    // One batch holding both: the event wins.
    let both = event("same-batch", 1);
    let mut err = error();
    err.event_id = both.event.event_id;
    store.write(&WriteBatch { events: vec![both.clone()], errors: vec![err.clone()] }).await.unwrap();
    store.write(&WriteBatch { events: vec![both.clone()], errors: vec![err.clone()] }).await.unwrap();
    assert!(store.event(both.event.event_id).await.unwrap().is_some());
    assert!(errors(store.clone()).await.is_empty());

    // An event first: a later invalid payload with its id is a duplicate.
    let first = event("event-first", 2);
    store.write(&WriteBatch { events: vec![first.clone()], errors: vec![] }).await.unwrap();
    let mut late = error();
    late.event_id = first.event.event_id;
    store.write(&WriteBatch { events: vec![], errors: vec![late] }).await.unwrap();
    assert!(errors(store.clone()).await.is_empty());

    // An error first: the corrected payload resent with its id replaces it.
    let fixed = event("error-first", 3);
    let mut bad = error();
    bad.event_id = fixed.event.event_id;
    store.write(&WriteBatch { events: vec![], errors: vec![bad] }).await.unwrap();
    assert_eq!(errors(store.clone()).await.len(), 1);
    store.write(&WriteBatch { events: vec![fixed.clone()], errors: vec![] }).await.unwrap();
    assert!(errors(store.clone()).await.is_empty());
    assert_eq!(store.events(&query(100)).await.unwrap().items.len(), 3);
}

/// The same rule when an event and an error with one id are written at the
/// same moment by two writers (two workers of the scaled deployment).
pub async fn concurrent_writers_leave_one_outcome_per_event_id(h: &impl Harness) {
    let store = h.open().await;
    let pairs: Vec<(NewEvent, NewEventError)> = (0..200)
        .map(|i| {
            let e = event("race", i);
            let mut err = error();
            err.event_id = e.event.event_id;
            (e, err)
        })
        .collect();
    let events = WriteBatch { events: pairs.iter().map(|p| p.0.clone()).collect(), errors: vec![] };
    let errors = WriteBatch { events: vec![], errors: pairs.iter().map(|p| p.1.clone()).collect() };
    for round in 0..5 {
        // Small batches interleave the two writers' transactions.
        let (a, b) = (store.clone(), store.clone());
        let (ev, er) = (events.clone(), errors.clone());
        let one = tokio::spawn(async move {
            for chunk in ev.events.chunks(10) {
                a.write(&WriteBatch { events: chunk.to_vec(), errors: vec![] }).await.unwrap();
            }
        });
        let two = tokio::spawn(async move {
            for chunk in er.errors.chunks(10) {
                b.write(&WriteBatch { events: vec![], errors: chunk.to_vec() }).await.unwrap();
            }
        });
        one.await.unwrap();
        two.await.unwrap();
        let stored = store.errors(&ErrorQuery { limit: 1000, ..Default::default() }).await.unwrap().items;
        assert!(stored.is_empty(), "round {round}: {} errors stand beside their events", stored.len());
    }
    assert_eq!(store.events(&query(1000)).await.unwrap().items.len(), 200);
}

/// One module per backend, and in it one per store role, each running that
/// role's contract against the backend.
macro_rules! store_contract {
    ($name:ident, $harness:expr) => {
        mod $name {
            mod event_sink {
                use super::super::*;

                #[tokio::test]
                async fn migrating_twice_is_harmless_and_seeds_the_demo_catalog() {
                    let Some(h) = $harness.await else { return };
                    super::super::migrating_twice_is_harmless_and_seeds_the_demo_catalog(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn writes_are_idempotent_on_event_id() {
                    let Some(h) = $harness.await else { return };
                    super::super::writes_are_idempotent_on_event_id(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn an_error_whose_raw_payload_has_nul_is_still_stored() {
                    let Some(h) = $harness.await else { return };
                    super::super::an_error_whose_raw_payload_has_nul_is_still_stored(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn an_event_id_is_an_event_or_an_error_never_both() {
                    let Some(h) = $harness.await else { return };
                    super::super::an_event_id_is_an_event_or_an_error_never_both(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn concurrent_writers_leave_one_outcome_per_event_id() {
                    let Some(h) = $harness.await else { return };
                    super::super::concurrent_writers_leave_one_outcome_per_event_id(&h).await;
                    h.cleanup().await;
                }
            }
            mod event_reader {
                use super::super::*;

                #[tokio::test]
                async fn what_is_written_reads_back_unchanged() {
                    let Some(h) = $harness.await else { return };
                    super::super::what_is_written_reads_back_unchanged(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn keyset_pages_follow_the_order() {
                    let Some(h) = $harness.await else { return };
                    super::super::keyset_pages_follow_the_order(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn activity_is_counted_by_bucket_and_category() {
                    let Some(h) = $harness.await else { return };
                    super::super::activity_is_counted_by_bucket_and_category(&h).await;
                    h.cleanup().await;
                }
            }
            mod access {
                use super::super::*;

                #[tokio::test]
                async fn applications_are_created_revoked_and_rotated() {
                    let Some(h) = $harness.await else { return };
                    super::super::applications_are_created_revoked_and_rotated(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn users_are_created_once_and_found_by_name() {
                    let Some(h) = $harness.await else { return };
                    super::super::users_are_created_once_and_found_by_name(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn tokens_are_found_by_hash_only() {
                    let Some(h) = $harness.await else { return };
                    super::super::tokens_are_found_by_hash_only(&h).await;
                    h.cleanup().await;
                }
            }
            mod curation {
                use super::super::*;

                #[tokio::test]
                async fn replay_turns_an_error_into_exactly_one_event() {
                    let Some(h) = $harness.await else { return };
                    super::super::replay_turns_an_error_into_exactly_one_event(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn events_are_searched_and_deleted() {
                    let Some(h) = $harness.await else { return };
                    super::super::events_are_searched_and_deleted(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn categories_and_event_types_are_edited() {
                    let Some(h) = $harness.await else { return };
                    super::super::categories_and_event_types_are_edited(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn the_audit_log_and_password_changes_are_kept() {
                    let Some(h) = $harness.await else { return };
                    super::super::the_audit_log_and_password_changes_are_kept(&h).await;
                    h.cleanup().await;
                }
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
