//! The store contract, one suite per role (`EventSink`, `EventReader`,
//! `Access`, `Curation`), run against every backend.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use sqlx::{Connection, Row};
use the_eye::domain::{Reason, Timestamp, ValidEvent};
use the_eye::store::EventReader;
use the_eye::store::{
    AdminAction, AdminSession, Category, Erased, ErrorQuery, EventQuery, EventType, Expired, NewEvent, NewEventError,
    Order, PostgresStore, Replay, SqliteStore, StatsGroup, StatsKind, StatsQuery, Store, StoreError, TokenGrant,
    WriteBatch,
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
            timestamp: Timestamp::from_micros(1_599_955_200_000_000 + second * 1_000_000).unwrap(),
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

/// The payload of `e` as it might come back invalid (a retry after its
/// category was switched off, say): its id and timestamp, so the same event.
fn error_for(e: &NewEvent) -> NewEventError {
    let mut err = error();
    err.event_id = e.event.event_id;
    err.raw = json!({"event_id": e.event.event_id, "timestamp": e.event.timestamp.to_string(), "category": "off"})
        .to_string();
    err
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
    store.create_token("ci", &[7u8; 32], false).await.unwrap();
    store.create_token("dpo", &[9u8; 32], true).await.unwrap();
    assert_eq!(store.token_grant(&[7u8; 32]).await.unwrap(), Some(TokenGrant { name: "ci".into(), can_erase: false }));
    assert_eq!(store.token_grant(&[9u8; 32]).await.unwrap(), Some(TokenGrant { name: "dpo".into(), can_erase: true }));
    assert_eq!(store.token_grant(&[8u8; 32]).await.unwrap(), None);
    let listed: Vec<(String, bool)> =
        store.tokens().await.unwrap().into_iter().map(|t| (t.name, t.can_erase)).collect();
    assert_eq!(listed, [("ci".to_string(), false), ("dpo".to_string(), true)]);
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

/// The start of the contract's event times (see `event`): 2020-09-13 00:00 UTC, a day boundary.
fn epoch() -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(1_599_955_200, 0).unwrap()
}

/// Counts of `kind` from `from` for a day, in buckets of `bucket_secs`, as
/// (seconds from `from`, key joined by "/", count).
async fn counts(
    store: &Arc<dyn Store>,
    kind: StatsKind,
    group: StatsGroup,
    from: chrono::DateTime<Utc>,
    bucket_secs: i64,
) -> Vec<(i64, String, i64)> {
    let q = StatsQuery {
        kind,
        from,
        to: from + chrono::Duration::days(1),
        bucket_secs,
        group,
        category: None,
        name: None,
        application: None,
    };
    let rows = store.stats(&q).await.unwrap();
    rows.into_iter().map(|r| ((r.bucket - from).num_seconds(), r.key.join("/"), r.count)).collect()
}

fn error_in(session: &str, code: &str, received_at: chrono::DateTime<Utc>) -> NewEventError {
    NewEventError {
        event_id: Uuid::now_v7(),
        raw: json!({"session_id": session, "category": "shop"}).to_string(),
        reasons: vec![Reason::new("category", code, "x"), Reason::new("name", "required", "y")],
        received_at,
        application: Some("shop".into()),
    }
}

pub async fn rollups_count_every_write_once(h: &impl Harness) {
    let store = h.open().await;
    // 0 s, 30 s and 299 s share the first 5-minute bucket; 301 s and 3601 s do not.
    let mut events: Vec<NewEvent> = [0, 30, 299, 301, 3601].iter().map(|s| event("s", *s)).collect();
    events[4].event.name = "banner image click".into();
    events[4].application = None;
    let received = epoch() + chrono::Duration::seconds(10);
    let batch = WriteBatch { events, errors: vec![error_in("s", "unknown_category", received), error()] };
    store.write(&batch).await.unwrap();
    store.write(&batch).await.unwrap(); // a retry: nothing new, nothing counted twice
    let page = "page interaction".to_string();
    let by_category = counts(&store, StatsKind::Events, StatsGroup::Category, epoch(), 300).await;
    assert_eq!(by_category, [(0, page.clone(), 3), (300, page.clone(), 1), (3600, page.clone(), 1)]);
    let hourly = counts(&store, StatsKind::Events, StatsGroup::Name, epoch(), 3600).await;
    assert_eq!(
        hourly,
        [(0, format!("{page}/pageview"), 4), (3600, format!("{page}/banner image click"), 1)],
        "hours add up the 5-minute buckets"
    );
    let apps = counts(&store, StatsKind::Events, StatsGroup::Application, epoch(), 86_400).await;
    assert_eq!(apps, [(0, String::new(), 1), (0, "shop".to_string(), 4)], "no application counts as \"\"");
    let reasons = counts(&store, StatsKind::Errors, StatsGroup::Reason, epoch(), 300).await;
    assert_eq!(reasons, [(0, "unknown_category".to_string(), 1)], "an error counts once, by its first reason");

    // A valid payload with the error's id replaces it: the error count goes, the event count comes.
    let mut fixed = event("s", 10);
    fixed.event.event_id = batch.errors[0].event_id;
    store.write(&WriteBatch { events: vec![fixed], errors: vec![] }).await.unwrap();
    assert!(counts(&store, StatsKind::Errors, StatsGroup::None, epoch(), 300).await.is_empty());
    assert_eq!(counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 300).await[0], (0, String::new(), 4));

    // Deleting by hand takes the count back; merging deltas (PostgreSQL's upkeep) changes nothing.
    assert!(store.delete_event(batch.events[4].event.event_id).await.unwrap());
    store.maintain().await.unwrap();
    let total = counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 86_400).await;
    assert_eq!(total, [(0, String::new(), 5)]);
    let filtered = StatsQuery {
        kind: StatsKind::Events,
        from: epoch(),
        to: epoch() + chrono::Duration::days(1),
        bucket_secs: 86_400,
        group: StatsGroup::None,
        category: Some(page),
        name: Some("pageview".into()),
        application: Some("shop".into()),
    };
    assert_eq!(store.stats(&filtered).await.unwrap()[0].count, 5);
    let bad = StatsQuery { bucket_secs: 60, ..filtered.clone() };
    assert!(matches!(store.stats(&bad).await, Err(StoreError::Rejected(_))), "buckets are whole rollup buckets");
    let bad = StatsQuery { kind: StatsKind::Errors, group: StatsGroup::Name, ..filtered };
    assert!(matches!(store.stats(&bad).await, Err(StoreError::Rejected(_))), "errors have no name");
}

pub async fn a_replay_that_still_fails_moves_its_count(h: &impl Harness) {
    let store = h.open().await;
    let received = epoch();
    let err = error_in("s", "unknown_category", received);
    store.write(&WriteBatch { events: vec![], errors: vec![err.clone()] }).await.unwrap();
    let id = store.errors(&ErrorQuery { limit: 1, ..Default::default() }).await.unwrap().items[0].id;
    let replay = Replay {
        error_id: id,
        edited_raw: Some(json!({"session_id": "s", "category": "other"}).to_string()),
        outcome: Err(vec![Reason::new("name", "unknown_event_type", "z")]),
    };
    store.resolve_errors(&[replay], "ada").await.unwrap();
    store.maintain().await.unwrap();
    let reasons = counts(&store, StatsKind::Errors, StatsGroup::Reason, received, 300).await;
    assert_eq!(reasons, [(0, "unknown_event_type".to_string(), 1)]);
    let categories = counts(&store, StatsKind::Errors, StatsGroup::Category, received, 300).await;
    assert_eq!(categories, [(0, "other".to_string(), 1)]);
}

pub async fn expiry_goes_in_bounded_steps_and_keeps_the_counts(h: &impl Harness) {
    let store = h.open().await;
    let old: Vec<NewEvent> = (0..250).map(|i| event("old", i)).collect();
    let mut new = event("new", 0);
    new.event.timestamp = Timestamp::from(Utc::now());
    let old_error = error_in("old", "schema", epoch());
    let new_error = error_in("new", "schema", Utc::now());
    let batch = WriteBatch { events: [old, vec![new]].concat(), errors: vec![old_error, new_error] };
    store.write(&batch).await.unwrap();
    let cutoff = epoch() + chrono::Duration::days(30);
    let mut steps = Vec::new();
    loop {
        let n = store.expire(Expired::Events, cutoff, 100).await.unwrap();
        steps.push(n);
        if n < 100 {
            break;
        }
    }
    assert_eq!(steps, [100, 100, 50]);
    assert_eq!(store.expire(Expired::Errors, cutoff, 100).await.unwrap(), 1);
    let left = store.events(&query(1000)).await.unwrap().items;
    assert_eq!(left.iter().map(|e| e.session_id.as_str()).collect::<Vec<_>>(), ["new"]);
    assert_eq!(store.errors(&ErrorQuery { limit: 10, ..Default::default() }).await.unwrap().items.len(), 1);
    assert_eq!(
        counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 86_400).await,
        [(0, String::new(), 250)],
        "age is not erasure: the counts stay"
    );
    assert_eq!(counts(&store, StatsKind::Errors, StatsGroup::None, epoch(), 86_400).await.len(), 1);
    // A rebuild recounts from the oldest stored row on, so the old counts survive it too.
    store.rebuild_rollups(&|_, _| {}).await.unwrap();
    assert_eq!(counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 86_400).await, [(0, String::new(), 250)]);
    assert!(store.expire(Expired::Rollups, cutoff, 100).await.unwrap() >= 2);
    assert!(counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 86_400).await.is_empty());
    assert!(counts(&store, StatsKind::Errors, StatsGroup::None, epoch(), 86_400).await.is_empty());
}

pub async fn erasing_a_session_removes_its_rows_and_counts(h: &impl Harness) {
    let store = h.open().await;
    let events: Vec<NewEvent> = (0..3).map(|i| event("gone", i)).chain([event("kept", 5)]).collect();
    let errors = vec![error_in("gone", "schema", epoch()), error_in("kept", "schema", epoch()), error()];
    store.write(&WriteBatch { events, errors }).await.unwrap();
    assert_eq!(store.erase_session("gone").await.unwrap(), Erased { events: 3, errors: 1 });
    assert_eq!(store.erase_session("gone").await.unwrap(), Erased::default(), "twice is harmless");
    let left = store.events(&query(100)).await.unwrap().items;
    assert_eq!(left.iter().map(|e| e.session_id.as_str()).collect::<Vec<_>>(), ["kept"]);
    let errors = store.errors(&ErrorQuery { limit: 10, ..Default::default() }).await.unwrap().items;
    assert_eq!(errors.len(), 2);
    let of_session =
        store.errors(&ErrorQuery { session_id: Some("kept".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(of_session.items.len(), 1);
    store.maintain().await.unwrap();
    assert_eq!(counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 86_400).await, [(0, String::new(), 1)]);
    assert_eq!(counts(&store, StatsKind::Errors, StatsGroup::None, epoch(), 86_400).await, [(0, String::new(), 1)]);
}

/// A session whose events fall on several days (a visit over midnight, a tab
/// kept open): read in order both ways page by page, counted, summarised and
/// erased whole. SQLite finds a session through an index keyed by the hour
/// first (migration 0013), so this is where an hour could go missing.
pub async fn a_session_over_several_days_is_read_counted_and_erased_whole(h: &impl Harness) {
    let store = h.open().await;
    let seconds = [10, 20, 3_599, 3_600, 86_399, 86_400, 2 * 86_400 + 5];
    let mut events: Vec<NewEvent> = seconds.iter().map(|s| event("night", *s)).collect();
    events.extend([event("other", 15), event("other", 86_401)]);
    store.write(&WriteBatch { events, errors: vec![error_in("night", "schema", epoch())] }).await.unwrap();
    let night = || EventQuery { session_id: Some("night".into()), limit: 2, ..Default::default() };
    for order in [Order::Desc, Order::Asc] {
        let mut q = EventQuery { order, ..night() };
        let mut seen = Vec::new();
        loop {
            let page = store.events(&q).await.unwrap();
            seen.extend(page.items.iter().map(|e| (e.timestamp.micros() - epoch().timestamp_micros()) / 1_000_000));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        let mut expected = seconds.to_vec();
        if order == Order::Desc {
            expected.reverse();
        }
        assert_eq!(seen, expected, "{order:?}");
    }
    assert_eq!(store.count_events(&night(), 100).await.unwrap(), 7);
    let summary = store.sessions(&EventQuery { limit: 10, ..night() }).await.unwrap();
    assert_eq!(summary.iter().map(|s| (s.session_id.as_str(), s.events)).collect::<Vec<_>>(), [("night", 7)]);
    assert_eq!(store.erase_session("night").await.unwrap(), Erased { events: 7, errors: 1 });
    let left = store.events(&query(10)).await.unwrap().items;
    assert_eq!(left.iter().map(|e| e.session_id.as_str()).collect::<Vec<_>>(), ["other", "other"]);
}

pub async fn a_rebuild_recounts_what_is_stored(h: &impl Harness) {
    let store = h.open().await;
    // Two days apart: two of the rebuild's one-day steps.
    let events: Vec<NewEvent> = [0, 1, 2, 86_400 * 2].iter().map(|s| event("r", *s)).collect();
    store.write(&WriteBatch { events, errors: vec![error_in("r", "schema", epoch())] }).await.unwrap();
    let before = counts(&store, StatsKind::Events, StatsGroup::Name, epoch(), 300).await;
    let far = Utc::now() + chrono::Duration::days(365);
    store.expire(Expired::Rollups, far, 1000).await.unwrap();
    assert!(counts(&store, StatsKind::Events, StatsGroup::None, epoch(), 300).await.is_empty());
    let seen = std::sync::Mutex::new(Vec::new());
    let recounted = store.rebuild_rollups(&|done, total| seen.lock().unwrap().push((done, total))).await.unwrap();
    assert_eq!(recounted, 5);
    assert_eq!(seen.lock().unwrap().last(), Some(&(5, 5)), "the progress ends at the total");
    assert_eq!(counts(&store, StatsKind::Events, StatsGroup::Name, epoch(), 300).await, before);
    let later = epoch() + chrono::Duration::days(2);
    assert_eq!(counts(&store, StatsKind::Events, StatsGroup::None, later, 300).await, [(0, String::new(), 1)]);
    assert_eq!(counts(&store, StatsKind::Errors, StatsGroup::None, epoch(), 300).await, [(0, String::new(), 1)]);
    // Twice gives the same.
    store.rebuild_rollups(&|_, _| {}).await.unwrap();
    assert_eq!(counts(&store, StatsKind::Events, StatsGroup::Name, epoch(), 300).await, before);
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

    // An event first: a later invalid payload of it (its id, its time) is a duplicate.
    let first = event("event-first", 2);
    store.write(&WriteBatch { events: vec![first.clone()], errors: vec![] }).await.unwrap();
    store.write(&WriteBatch { events: vec![], errors: vec![error_for(&first)] }).await.unwrap();
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
            let err = error_for(&e);
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

/// What the admin's lists ask of a reader beyond pages: counts that stop at
/// a cap, the rows stored after a point (the live view), where that point is
/// now, and sessions summed up.
pub async fn counts_tails_and_sessions_answer_the_admin(h: &impl Harness) {
    let store = h.open().await;
    assert_eq!(store.newest_rows().await.unwrap(), (0, 0), "an empty store");
    let mut first = WriteBatch::default();
    for i in 0..5 {
        first.events.push(event("alpha", i));
    }
    first.events.push(event("beta", 100));
    first.errors.push(error());
    store.write(&first).await.unwrap();
    let (events_at, errors_at) = store.newest_rows().await.unwrap();
    assert!(events_at > 0 && errors_at > 0);

    let all = EventQuery { limit: 10, ..Default::default() };
    assert_eq!(store.count_events(&all, 100).await.unwrap(), 6);
    assert_eq!(store.count_events(&all, 3).await.unwrap(), 4, "more than the cap counts as cap + 1");
    let alpha = EventQuery { session_id: Some("alpha".into()), ..all.clone() };
    assert_eq!(store.count_events(&alpha, 100).await.unwrap(), 5);
    let shop = EventQuery { application: Some("shop".into()), ..all.clone() };
    assert_eq!(store.count_events(&shop, 100).await.unwrap(), 6);
    let elsewhere = EventQuery { application: Some("elsewhere".into()), ..all.clone() };
    assert_eq!(store.count_events(&elsewhere, 100).await.unwrap(), 0);
    let invalid = ErrorQuery { reason: Some("invalid_json".into()), ..Default::default() };
    assert_eq!(store.count_errors(&invalid, 100).await.unwrap(), 1);
    let missing = ErrorQuery { reason: Some("schema".into()), ..Default::default() };
    assert_eq!(store.count_errors(&missing, 100).await.unwrap(), 0);

    // Nothing after the newest row; then what a later write stored, in order, filtered.
    assert!(store.events_stored_after(events_at, &all).await.unwrap().is_empty());
    let later = WriteBatch { events: vec![event("gamma", 1), event("alpha", 50)], ..Default::default() };
    store.write(&later).await.unwrap();
    let tail = store.events_stored_after(events_at, &all).await.unwrap();
    let sessions: Vec<&str> = tail.iter().map(|e| e.session_id.as_str()).collect();
    assert_eq!(sessions, ["gamma", "alpha"], "in the order stored, whatever their event times");
    let tail = store.events_stored_after(events_at, &alpha).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert!(store.newest_rows().await.unwrap().0 >= tail[0].row_id);

    // Sessions: the most recently active first, their matching events counted.
    let found = store.sessions(&all).await.unwrap();
    let summary: Vec<(&str, i64)> = found.iter().map(|s| (s.session_id.as_str(), s.events)).collect();
    assert_eq!(summary, [("beta", 1), ("alpha", 6), ("gamma", 1)]);
    let alpha_summary = &found[1];
    assert_eq!(alpha_summary.first, Timestamp::from_micros(1_599_955_200_000_000).unwrap());
    assert_eq!(alpha_summary.last, Timestamp::from_micros(1_599_955_200_000_000 + 50_000_000).unwrap());
    assert_eq!(store.sessions(&EventQuery { limit: 1, ..all }).await.unwrap().len(), 1);
}

/// The audit log pages both ways and filters by who, what and on what.
pub async fn the_audit_log_is_filtered_and_paged(h: &impl Harness) {
    use the_eye::store::ActionQuery;
    let store = h.open().await;
    for i in 0..7 {
        let action = AdminAction {
            at: Utc::now(),
            username: if i % 2 == 0 { "ada".into() } else { "cli:root".into() },
            action: if i < 5 { "replay".into() } else { "delete event".into() },
            object: format!("object-{i}"),
            detail: String::new(),
        };
        store.log_action(&action).await.unwrap();
    }
    let page = |q: ActionQuery| {
        let store = store.clone();
        async move { store.action_log(&q).await.unwrap() }
    };
    let objects = |p: &the_eye::store::Page<the_eye::store::LoggedAction, i64>| -> Vec<String> {
        p.items.iter().map(|a| a.entry.object.clone()).collect()
    };
    let first = page(ActionQuery { limit: 3, ..Default::default() }).await;
    assert_eq!(objects(&first), ["object-6", "object-5", "object-4"], "newest first");
    let second = page(ActionQuery { limit: 3, after: first.next, ..Default::default() }).await;
    assert_eq!(objects(&second), ["object-3", "object-2", "object-1"]);
    let back = page(ActionQuery {
        limit: 3,
        after: second.items.first().map(|a| a.id),
        order: Order::Asc,
        ..Default::default()
    })
    .await;
    assert_eq!(objects(&back), ["object-4", "object-5", "object-6"], "the newer ones, oldest first");
    let ada = page(ActionQuery {
        limit: 10,
        username: Some("ada".into()),
        action: Some("replay".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(objects(&ada), ["object-4", "object-2", "object-0"]);
    assert!(ada.next.is_none());
    let one = page(ActionQuery { limit: 10, object: Some("object-5".into()), ..Default::default() }).await;
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].entry.action, "delete event");
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
                async fn rollups_count_every_write_once() {
                    let Some(h) = $harness.await else { return };
                    super::super::rollups_count_every_write_once(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn counts_tails_and_sessions_answer_the_admin() {
                    let Some(h) = $harness.await else { return };
                    super::super::counts_tails_and_sessions_answer_the_admin(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn the_audit_log_is_filtered_and_paged() {
                    let Some(h) = $harness.await else { return };
                    super::super::the_audit_log_is_filtered_and_paged(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn a_replay_that_still_fails_moves_its_count() {
                    let Some(h) = $harness.await else { return };
                    super::super::a_replay_that_still_fails_moves_its_count(&h).await;
                    h.cleanup().await;
                }
            }
            mod lifecycle {
                use super::super::*;

                #[tokio::test]
                async fn expiry_goes_in_bounded_steps_and_keeps_the_counts() {
                    let Some(h) = $harness.await else { return };
                    super::super::expiry_goes_in_bounded_steps_and_keeps_the_counts(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn erasing_a_session_removes_its_rows_and_counts() {
                    let Some(h) = $harness.await else { return };
                    super::super::erasing_a_session_removes_its_rows_and_counts(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn a_session_over_several_days_is_read_counted_and_erased_whole() {
                    let Some(h) = $harness.await else { return };
                    super::super::a_session_over_several_days_is_read_counted_and_erased_whole(&h).await;
                    h.cleanup().await;
                }
                #[tokio::test]
                async fn a_rebuild_recounts_what_is_stored() {
                    let Some(h) = $harness.await else { return };
                    super::super::a_rebuild_recounts_what_is_stored(&h).await;
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

/// SQLite deduplicates within the UTC hour an event happened in (migration
/// 0014, so that the part of its unique index live traffic writes stays
/// small): a retry is the same event, and an id a client reuses in another
/// hour is another event. Looking up, erasing one by id, and the one-outcome
/// rule still find it in whichever hour it lies.
#[tokio::test]
async fn sqlite_dedupes_an_event_id_within_its_hour() {
    let h = SqliteHarness::new().await.unwrap();
    let store = h.open().await;
    // `epoch()` is a midnight, so seconds 10 and 3,599 are one hour.
    let first = event("hour", 10);
    let mut next_hour = first.clone();
    next_hour.event.timestamp = Timestamp::from_micros(first.event.timestamp.micros() + 3_600_000_000).unwrap();
    let mut same_hour = first.clone();
    same_hour.event.session_id = "a retry that changed".into();
    same_hour.event.timestamp = Timestamp::from_micros(first.event.timestamp.micros() + 3_589_000_000).unwrap();
    let batch = WriteBatch { events: vec![first.clone(), same_hour, next_hour.clone()], errors: vec![] };
    store.write(&batch).await.unwrap();
    store.write(&batch).await.unwrap();
    let stored = store.events(&query(10)).await.unwrap().items;
    assert_eq!(stored.len(), 2, "one an hour");
    assert_eq!(stored.iter().filter(|e| e.session_id == "hour").count(), 2, "the first write of each hour stands");
    let found = store.event(first.event.event_id).await.unwrap().expect("found in any hour");
    assert_eq!(found.timestamp, next_hour.event.timestamp, "the newest answers");

    // An invalid payload of either hour's event is a duplicate; one without a
    // readable time is no retry of a stored event, so it is an error.
    let mut undated = error();
    undated.event_id = first.event.event_id;
    let errors = vec![error_for(&first), error_for(&next_hour), undated.clone()];
    store.write(&WriteBatch { events: vec![], errors }).await.unwrap();
    let kept = store.errors(&ErrorQuery { limit: 10, ..Default::default() }).await.unwrap().items;
    assert_eq!(kept.iter().map(|e| e.raw.as_str()).collect::<Vec<_>>(), [undated.raw.as_str()]);

    assert!(store.delete_event(first.event.event_id).await.unwrap());
    assert!(store.event(first.event.event_id).await.unwrap().is_none(), "every hour's row is gone");
    assert!(!store.delete_event(first.event.event_id).await.unwrap());
}

/// A migrated SQLite store taken back to the schema before migration
/// `version` by `undo`, with a connection of its own to inspect it.
async fn sqlite_before(version: i64, undo: &[&str]) -> (SqliteHarness, Arc<dyn Store>, sqlx::SqliteConnection) {
    let h = SqliteHarness::new().await.unwrap();
    let url = format!("sqlite://{}", h.0.path().join("the-eye.db").display());
    let store = h.open().await;
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in undo {
        sqlx::query(sql).execute(&mut db).await.unwrap();
    }
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ?").bind(version).execute(&mut db).await.unwrap();
    (h, store, db)
}

/// The names of the events table's indexes whose names end in `suffix`.
async fn sqlite_indexes(db: &mut sqlx::SqliteConnection, suffix: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND name LIKE ?")
        .bind(format!("%{suffix}"))
        .fetch_all(db)
        .await
        .unwrap()
}

/// The lines of SQLite's query plan for `query` (an `EXPLAIN QUERY PLAN`).
async fn sqlite_plan<'q>(
    db: &mut sqlx::SqliteConnection,
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
) -> Vec<String> {
    query.fetch_all(db).await.unwrap().iter().map(|r| r.get::<String, _>("detail")).collect()
}

/// A store made before the hour-keyed dedupe: migrating swaps the index,
/// keeps every row, and the look-up by id then uses the new index.
#[tokio::test]
async fn sqlite_migrates_a_store_to_the_hour_keyed_dedupe() {
    let (_h, store, mut db) = sqlite_before(
        14,
        &[
            "DROP INDEX events_hour_event_id",
            "CREATE UNIQUE INDEX events_day_event_id ON events (occurred_at / 86400000000, event_id)",
        ],
    )
    .await;
    let e = event("old", 1);
    store.write(&WriteBatch { events: vec![e.clone()], errors: vec![] }).await.unwrap();

    assert_eq!(store.migrate().await.unwrap(), ["14 hourly dedupe"]);
    assert_eq!(sqlite_indexes(&mut db, "event_id").await, ["events_hour_event_id"]);
    let sql = format!(
        "EXPLAIN QUERY PLAN SELECT id FROM events WHERE occurred_at / 3600000000 = {} AND event_id = ?",
        e.event.timestamp.micros() / 3_600_000_000
    );
    let plan = sqlite_plan(&mut db, sqlx::query(&sql).bind(e.event.event_id.as_bytes().to_vec())).await;
    assert!(plan.iter().any(|d| d.contains("events_hour_event_id")), "{plan:?}");
    assert_eq!(store.event(e.event.event_id).await.unwrap().map(|s| s.session_id), Some("old".into()));
    store.write(&WriteBatch { events: vec![e.clone()], errors: vec![] }).await.unwrap();
    assert_eq!(store.events(&query(10)).await.unwrap().items.len(), 1, "still deduplicated");
}

/// A store made before the hour-keyed session index: migrating swaps the
/// index and keeps every row, and a session's page is then read from the new
/// index in order, one seek an hour, with no sort (the query's shape as
/// `SESSION_ON_ANY_HOUR` in src/store/sqlite/events.rs writes it).
#[tokio::test]
async fn sqlite_migrates_to_the_hour_keyed_session_index_and_reads_a_session_without_a_sort() {
    let (_h, store, mut db) = sqlite_before(
        13,
        &[
            "DROP INDEX events_hour_session",
            "CREATE INDEX events_day_session ON events (occurred_at / 86400000000, session_id, occurred_at)",
        ],
    )
    .await;
    let events: Vec<NewEvent> = [5, 3_600 * 5 + 1, 86_400 * 3].iter().map(|s| event("old", *s)).collect();
    store.write(&WriteBatch { events, errors: vec![] }).await.unwrap();

    assert_eq!(store.migrate().await.unwrap(), ["13 hourly session index"]);
    assert_eq!(sqlite_indexes(&mut db, "session").await, ["events_hour_session"]);
    let page = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT id FROM events WHERE 1 = 1 AND occurred_at / 3600000000 IN \
         (WITH RECURSIVE hours(h) AS (SELECT (SELECT occurred_at / 3600000000 FROM events \
         ORDER BY 1 LIMIT 1) UNION ALL SELECT (SELECT occurred_at / 3600000000 FROM events \
         WHERE occurred_at / 3600000000 > h ORDER BY 1 LIMIT 1) FROM hours WHERE h IS NOT NULL) \
         SELECT h FROM hours) AND session_id = ? AND (occurred_at, id) < (?, ?) \
         ORDER BY occurred_at / 3600000000 DESC, occurred_at DESC, id DESC LIMIT 51",
    )
    .bind("old")
    .bind(i64::MAX)
    .bind(i64::MAX);
    let plan = sqlite_plan(&mut db, page).await;
    assert!(
        plan.iter().any(|d| d.contains("USING COVERING INDEX events_hour_session (<expr>=? AND session_id=?")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
    let q = EventQuery { session_id: Some("old".into()), limit: 10, ..Default::default() };
    assert_eq!(store.events(&q).await.unwrap().items.len(), 3, "every hour's rows");
}

#[tokio::test]
async fn sqlite_backs_up_a_consistent_copy_that_opens_as_a_store() {
    let h = SqliteHarness::new().await.unwrap();
    let store = h.open().await;
    store.write(&WriteBatch { events: (0..5).map(|i| event("b", i)).collect(), errors: vec![] }).await.unwrap();
    let target = h.0.path().join("backup.db");
    store.backup(&target).await.unwrap();
    let again = store.backup(&target).await;
    assert!(matches!(again, Err(StoreError::Setup(m)) if m.contains("exists")), "never overwrites");
    let copy = SqliteStore::connect(&format!("sqlite://{}", target.display())).await.unwrap();
    assert!(copy.migrate().await.unwrap().is_empty(), "the copy is up to date");
    assert_eq!(copy.events(&query(10)).await.unwrap().items.len(), 5);
    let leftovers: Vec<_> = std::fs::read_dir(h.0.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn postgres_retention_drops_whole_months_and_keeps_their_counts() {
    let Some(h) = PostgresHarness::new().await else { return };
    let store = h.open().await;
    let mut db = sqlx::PgConnection::connect(&h.url()).await.unwrap();
    sqlx::query("SELECT the_eye_ensure_partitions(14, 0)").execute(&mut db).await.unwrap();
    // Thirteen months ago, with tracker-style ids of that time.
    let then = Utc::now() - chrono::Duration::days(396);
    let events: Vec<NewEvent> = (0..20)
        .map(|i| {
            let mut e = event("old", 0);
            let at = then + chrono::Duration::seconds(i);
            e.event.timestamp = Timestamp::from(at);
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, at.timestamp() as u64, 0);
            e.event.event_id = Uuid::new_v7(ts);
            e
        })
        .collect();
    store.write(&WriteBatch { events, errors: vec![] }).await.unwrap();
    let month = format!("events_{}", then.format("%Y_%m"));
    let held: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{month}\"")).fetch_one(&mut db).await.unwrap();
    assert_eq!(held, 20, "the rows are in their month's partition");
    let cutoff = Utc::now() - chrono::Duration::days(365);
    assert_eq!(store.expire(Expired::Events, cutoff, 5).await.unwrap(), 20, "one partition, whatever the limit");
    let gone: Option<String> =
        sqlx::query_scalar("SELECT to_regclass($1)::text").bind(&month).fetch_one(&mut db).await.unwrap();
    assert_eq!(gone, None, "the partition was dropped");
    let from = then - chrono::Duration::hours(1);
    let day = counts(&store, StatsKind::Events, StatsGroup::None, from, 86_400).await;
    assert_eq!(day.iter().map(|r| r.2).sum::<i64>(), 20, "and its counts were kept");
    drop(db);
    h.cleanup().await;
}

/// The store's checkpointer moves committed pages into the database file by
/// itself: a small write (far below the writer's own checkpoint threshold)
/// reaches the main file with no further writes. The file is read with
/// `immutable=1`, which ignores the WAL, so the rows counted there are the
/// checkpointed ones.
#[tokio::test]
async fn sqlite_checkpoints_in_the_background() {
    let h = SqliteHarness::new().await.unwrap();
    let store = h.open().await;
    store.write(&WriteBatch { events: (0..7).map(|i| event("c", i)).collect(), errors: vec![] }).await.unwrap();
    let path = h.0.path().join("the-eye.db");
    let in_main_file = || async {
        let url = format!("sqlite://{}?immutable=1", path.display());
        let Ok(mut file) = sqlx::SqliteConnection::connect(&url).await else { return 0 };
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&mut file).await.unwrap_or(0);
        let _ = file.close().await;
        n
    };
    crate::procs::eventually(30, "the 7 events are checkpointed into the database file", || async {
        in_main_file().await == 7
    })
    .await;
    assert_eq!(store.events(&query(10)).await.unwrap().items.len(), 7, "and the store still reads them");
}

/// Only SQLite's connections are threads of their own; PostgreSQL's are
/// sockets the runtime that opened them drives. `serve` gives its workers a
/// runtime of their own (`tasks::Background`) only when neither backend's
/// connections are tied to one.
#[tokio::test]
async fn only_sqlite_keeps_its_connections_off_the_runtime() {
    let sqlite = SqliteHarness::new().await.unwrap();
    assert!(!sqlite.open().await.runtime_io());
    let Some(postgres) = PostgresHarness::new().await else { return };
    assert!(postgres.open().await.runtime_io());
    postgres.cleanup().await;
}
