//! The admin panel's pages over HTTP: CSRF on every POST, login on every page,
//! headers, and each page's work: password, events, errors with replay,
//! categories with schemas, applications, the dashboard.

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::json;

use crate::admin::http::{app_with_user, hidden, log_in, page, signed_in, PASSWORD};
use crate::helpers::{pageview, TestApp};

/// A signed-in client's cookie and CSRF token.
struct Admin {
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl Admin {
    async fn new(app: &TestApp, client: reqwest::Client) -> Self {
        let cookie = signed_in(app, &client).await;
        let (_, html) = page(app, &client, &cookie, "/admin/").await;
        let csrf = hidden(&html, "csrf_token");
        Self { client, cookie, csrf }
    }

    async fn get(&self, app: &TestApp, path: &str) -> (StatusCode, String) {
        page(app, &self.client, &self.cookie, path).await
    }

    async fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        pairs.push(("csrf_token", &self.csrf));
        self.client.post(app.url(path)).header("cookie", &self.cookie).form(&pairs).send().await.unwrap()
    }
}

/// The text of the page's payload textarea, unescaped as a browser would.
fn hidden_textarea(html: &str) -> String {
    let start = html.find("<textarea name=\"payload\"").unwrap();
    let body = &html[start..];
    let text = &body[body.find('>').unwrap() + 1..body.find("</textarea>").unwrap()];
    text.replace("&quot;", "\"")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get(LOCATION).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// An event in a category the catalog does not know (yet).
fn checkout(session: &str) -> serde_json::Value {
    json!({
        "session_id": session, "category": "checkout", "name": "pay",
        "data": {"host": "shop.example", "path": "/pay", "amount": 12},
        "timestamp": "2021-01-01T09:00:00Z"
    })
}

const GET_PAGES: &[&str] = &[
    "/admin/",
    "/admin/?range=day",
    "/admin/?range=week",
    "/admin/events/",
    "/admin/errors/",
    "/admin/categories/",
    "/admin/categories/1/",
    "/admin/categories/1/types/1/",
    "/admin/applications/",
    "/admin/applications/shop/",
    "/admin/applications/shop/rotate/",
    "/admin/applications/shop/revoke/",
    "/admin/password/",
    "/admin/log/",
    "/admin/sessions/s1/",
    "/admin/sessions/s1/erase/",
];

const POST_PATHS: &[&str] = &[
    "/admin/logout/",
    "/admin/password/",
    "/admin/errors/replay/",
    "/admin/errors/delete/",
    "/admin/errors/1/replay/",
    "/admin/errors/1/delete/",
    "/admin/events/00000000-0000-0000-0000-000000000001/delete/",
    "/admin/categories/",
    "/admin/categories/1/",
    "/admin/categories/1/types/",
    "/admin/categories/1/types/1/",
    "/admin/applications/",
    "/admin/applications/shop/origins/",
    "/admin/applications/shop/rotate/",
    "/admin/applications/shop/revoke/",
    "/admin/applications/shop/activate/",
    "/admin/sessions/s1/erase/",
];

async fn with_shop(app: &TestApp) {
    let shop = the_eye::domain::Application {
        name: "shop".into(),
        key: "eye_shop_key".into(),
        origins: vec!["https://shop.example".into()],
        active: true,
    };
    app.state.store.create_application(&shop).await.unwrap();
}

#[tokio::test]
async fn every_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let (app, client) = app_with_user().await;
    with_shop(&app).await;
    let admin = Admin::new(&app, client).await;
    for path in POST_PATHS {
        for token in [None, Some("forged")] {
            let mut form = vec![("name", "x"), ("origins", ""), ("all", "1")];
            form.extend(token.map(|t| ("csrf_token", t)));
            let r = admin.client.post(app.url(path)).header("cookie", &admin.cookie).form(&form).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {path} with token {token:?}");
            assert!(r.text().await.unwrap().contains("CSRF check failed"));
        }
    }
    let apps = app.state.store.applications().await.unwrap();
    assert!(apps.iter().any(|a| a.name == "shop" && a.active && a.key == "eye_shop_key"), "nothing changed");
    assert_eq!(admin.get(&app, "/admin/").await.0, StatusCode::OK, "still signed in");
}

#[tokio::test]
async fn every_admin_page_without_a_session_redirects_to_login_and_carries_the_headers() {
    let (app, client) = app_with_user().await;
    with_shop(&app).await;
    for path in GET_PAGES {
        let r = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&r).starts_with("/admin/login/?next=/admin/"), "{path}: {}", location(&r));
    }
    for path in POST_PATHS {
        let r = client.post(app.url(path)).form(&[("csrf_token", "x")]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "POST {path}");
    }
    let admin = Admin::new(&app, client).await;
    for path in GET_PAGES.iter().chain(&["/admin/login/"]) {
        let r = admin.client.get(app.url(path)).header("cookie", &admin.cookie).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        let html = r.text().await.unwrap();
        // One script, the panel's own file: nothing inline (the CSP would refuse it anyway).
        assert_eq!(html.matches("<script").count(), 1, "{path}");
        assert!(html.contains(r#"<script src="/admin/static/admin.js" defer></script>"#), "{path}");
    }
}

#[tokio::test]
async fn a_user_changes_their_password_and_other_sessions_end() {
    let (app, client) = app_with_user().await;
    let admin = Admin::new(&app, client.clone()).await;
    let elsewhere = signed_in(&app, &client).await;
    let new = "another long passphrase";
    for (form, message) in [
        ([("current", "wrong"), ("new1", new), ("new2", new)], "current password was entered incorrectly"),
        ([("current", PASSWORD), ("new1", new), ("new2", "different")], "do not match"),
        ([("current", PASSWORD), ("new1", "1234567890123"), ("new2", "1234567890123")], "too easy to guess"),
    ] {
        let r = admin.post(&app, "/admin/password/", &form).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains(message), "{message}");
    }
    let r = admin.post(&app, "/admin/password/", &[("current", PASSWORD), ("new1", new), ("new2", new)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Your password has been changed"));
    assert_eq!(admin.get(&app, "/admin/").await.0, StatusCode::OK, "this session stays");
    assert_eq!(page(&app, &client, &elsewhere, "/admin/").await.0, StatusCode::SEE_OTHER, "the other one ended");
    assert_eq!(log_in(&app, &client, PASSWORD).await.status(), StatusCode::OK, "old password: the form again");
    assert_eq!(log_in(&app, &client, new).await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn events_are_searched_and_deleted_after_confirmation() {
    let (app, client) = app_with_user().await;
    let mut special = pageview("s1", 1);
    special["data"]["campaign"] = json!("winter-sale-2021");
    let ids = app.accept(&json!([special, pageview("s2", 2)])).await;
    app.process().await;
    let admin = Admin::new(&app, client).await;
    let (_, html) = admin.get(&app, "/admin/events/?q=winter-sale").await;
    assert!(html.contains(&ids[0]) && !html.contains(&ids[1]), "search finds text in data");

    let (status, confirm) = admin.get(&app, &format!("/admin/events/{}/delete/", ids[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Delete this event?"));
    assert!(app.state.store.event(ids[0].parse().unwrap()).await.unwrap().is_some(), "asking deletes nothing");
    let r = admin.post(&app, &format!("/admin/events/{}/delete/", ids[0]), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(app.state.store.event(ids[0].parse().unwrap()).await.unwrap().is_none());
    assert_eq!(app.events().await.len(), 1);
    let (_, log) = admin.get(&app, "/admin/log/").await;
    assert!(log.contains("delete event") && log.contains(&ids[0]));
}

#[tokio::test]
async fn a_session_is_erased_after_confirmation_and_the_log_keeps_no_id() {
    let (app, client) = app_with_user().await;
    let mut bad = pageview("visitor 7/ä", 3);
    bad["category"] = json!("nope");
    app.accept(&json!([pageview("visitor 7/ä", 1), pageview("visitor 7/ä", 2), bad, pageview("s2", 4)])).await;
    app.process().await;
    let admin = Admin::new(&app, client).await;
    let page = "/admin/sessions/visitor%207%2F%C3%A4/";
    let (_, html) = admin.get(&app, page).await;
    assert!(html.contains("/admin/sessions/visitor%207%2F%C3%A4/erase/"), "the button names the whole id");
    let (status, confirm) = admin.get(&app, &format!("{page}erase/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Erase this session?") && confirm.contains("Backups taken before now"));
    assert_eq!(app.events().await.len(), 3, "asking erases nothing");
    let r = admin.post(&app, &format!("{page}erase/"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, format!("{page}?erased=2,1"));
    let (_, after) = admin.get(&app, &to).await;
    assert!(after.contains("Erased 2 events and 1 event errors of this session."), "{after}");
    assert!(after.contains("No events in this session."));
    assert_eq!(app.events().await.len(), 1);
    assert!(app.errors().await.is_empty());
    let (_, log) = admin.get(&app, "/admin/log/").await;
    assert!(log.contains("erase session") && log.contains("2 events and 1 event errors erased"));
    assert!(!log.contains("visitor 7"), "the log holds a digest, not the id");
}

#[tokio::test]
async fn creating_the_missing_category_and_replaying_turns_errors_into_events_once() {
    let (app, client) = app_with_user().await;
    let ids = app.accept(&json!([checkout("a"), checkout("b"), pageview("c", 3)])).await;
    app.process().await;
    assert_eq!(app.errors().await.len(), 2);
    let admin = Admin::new(&app, client).await;
    let (_, list) = admin.get(&app, "/admin/errors/?reason=unknown_category&category=checkout").await;
    assert_eq!(list.matches("name=\"ids\"").count(), 2);
    let (_, none) = admin.get(&app, "/admin/errors/?category=elsewhere").await;
    assert!(none.contains("No event errors match."));

    // Replaying asks first, saying how many; nothing happens until confirmed.
    let r = admin.post(&app, "/admin/errors/replay/", &[("all", "1"), ("category", "checkout")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let confirm = r.text().await.unwrap();
    assert!(confirm.contains("Replay all 2 event errors?"), "{confirm}");
    assert!(
        confirm.contains(r#"name="confirmed" value="1""#) && confirm.contains(r#"name="category" value="checkout""#)
    );
    assert_eq!(app.errors().await.len(), 2);
    // Replaying before the fix: both still fail, nothing changes.
    let filter = [("all", "1"), ("category", "checkout"), ("confirmed", "1")];
    let r = admin.post(&app, "/admin/errors/replay/", &filter).await;
    assert!(location(&r).contains("replayed=0") && location(&r).contains("failing=2"), "{}", location(&r));

    let r = admin.post(&app, "/admin/categories/", &[("name", "checkout"), ("active", "1")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = admin.post(&app, "/admin/errors/replay/", &filter).await;
    let to = location(&r);
    assert!(to.contains("replayed=2") && to.contains("failing=0"), "{to}");
    let (_, shown) = admin.get(&app, &to).await;
    assert!(shown.contains("<strong>2</strong> replayed into events"));

    let events = app.events().await;
    assert_eq!(events.len(), 3);
    for id in &ids[..2] {
        assert_eq!(events.iter().filter(|e| e["event_id"] == id.as_str()).count(), 1, "kept event_id {id}, once");
    }
    assert!(app.errors().await.is_empty());
    for action in ["/admin/errors/replay/", "/admin/errors/delete/"] {
        let nothing = admin.post(&app, action, &[("category", "checkout")]).await;
        assert!(location(&nothing).contains("none_selected=1"), "no rows ticked: {action} does nothing");
    }
    let again = admin.post(&app, "/admin/errors/replay/", &filter).await;
    assert!(location(&again).contains("replayed=0"), "a second replay finds nothing to do");
    assert_eq!(app.events().await.len(), 3);
}

#[tokio::test]
async fn an_edited_payload_is_replayed_and_recorded() {
    let (app, client) = app_with_user().await;
    let mut typo = pageview("s", 4);
    typo["category"] = json!("page interactoin");
    let id = app.accept(&typo).await.remove(0);
    app.process().await;
    let admin = Admin::new(&app, client).await;
    let error_id =
        app.state.store.errors(&the_eye::store::ErrorQuery { limit: 1, ..Default::default() }).await.unwrap().items[0]
            .id;
    let (_, detail) = admin.get(&app, &format!("/admin/errors/{error_id}/")).await;
    assert!(detail.contains("unknown_category") && detail.contains("page interactoin"));

    // Replayed as shown (the page's pretty-printed payload, CRLF line breaks as a
    // browser sends them): no edit, still failing, and in the audit log.
    let shown = hidden_textarea(&detail).replace('\n', "\r\n");
    let r = admin.post(&app, &format!("/admin/errors/{error_id}/replay/"), &[("payload", &shown)]).await;
    assert_eq!(location(&r), format!("/admin/errors/{error_id}/?failing=1"));
    let (_, log) = admin.get(&app, "/admin/log/").await;
    assert!(log.contains(">replay</a></td>") && log.contains("still failing"), "{log}");
    assert!(!log.contains("replay edited payload"), "an unchanged payload is no edit");

    // Not JSON: explained, nothing replayed.
    let r = admin.post(&app, &format!("/admin/errors/{error_id}/replay/"), &[("payload", "{oops")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("the edited payload is not JSON"));

    let mut fixed = typo.clone();
    fixed["category"] = json!("page interaction");
    let fixed_text = serde_json::to_string_pretty(&fixed).unwrap();
    let r = admin.post(&app, &format!("/admin/errors/{error_id}/replay/"), &[("payload", &fixed_text)]).await;
    assert_eq!(location(&r), format!("/admin/events/{id}/"), "the event keeps its id");
    let events = app.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["category"], "page interaction");
    let (_, event_page) = admin.get(&app, &format!("/admin/events/{id}/")).await;
    assert!(event_page.contains("replay edited payload"), "the edit is in the event's history");
    assert!(event_page.contains("page interactoin"), "with the payload before the edit");
}

#[tokio::test]
async fn event_types_get_checked_schemas_and_a_preview_of_the_errors_they_would_accept() {
    let (app, client) = app_with_user().await;
    let admin = Admin::new(&app, client).await;
    let r = admin.post(&app, "/admin/categories/", &[("name", "shop"), ("active", "1")]).await;
    let category = location(&r);
    assert!(category.starts_with("/admin/categories/"), "{category}");
    let again = admin.post(&app, "/admin/categories/", &[("name", "shop"), ("active", "1")]).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.text().await.unwrap().contains("already exists"));

    let types = format!("{category}types/");
    for (schema, message) in [("{nope", "not JSON"), (r#"{"type": 12}"#, "not a valid JSON Schema")] {
        let r = admin.post(&app, &types, &[("name", "buy"), ("schema", schema), ("action", "save")]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{schema}");
        assert!(r.text().await.unwrap().contains(message), "{message}");
    }
    let strict = r#"{"type": "object", "required": ["sku"]}"#;
    let r = admin.post(&app, &types, &[("name", "buy"), ("schema", strict), ("action", "save")]).await;
    let type_page = location(&r);
    assert!(type_page.contains("/types/"), "{type_page}");
    let type_page = type_page.split('?').next().unwrap().to_string();

    // Wait for the workers' catalog to see the new type, then send one good and one bad event.
    let buy = |data: serde_json::Value| json!({"session_id": "s", "category": "shop", "name": "buy", "data": data, "timestamp": "2021-01-01T09:00:00Z"});
    crate::procs::eventually(30, "the catalog has shop/buy", || async {
        app.accept(&buy(json!({"probe": true}))).await;
        app.process().await;
        app.errors().await.iter().any(|e| e["reasons"].to_string().contains("sku"))
    })
    .await;
    let before = app.errors().await.len();

    let loose = r#"{"type": "object"}"#;
    let r = admin.post(&app, &type_page, &[("schema", loose), ("action", "preview")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains(&format!("<strong>{before}</strong> would be accepted")), "{html}");
    assert!(html.contains("Nothing has been saved"));
    let (_, unchanged) = admin.get(&app, &type_page).await;
    assert!(unchanged.contains("sku"), "the preview saved nothing");

    let r = admin.post(&app, &type_page, &[("schema", loose), ("action", "save")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = admin.post(&app, "/admin/errors/replay/", &[("all", "1"), ("category", "shop"), ("confirmed", "1")]).await;
    assert!(location(&r).contains(&format!("replayed={before}")), "{}", location(&r));
}

#[tokio::test]
async fn applications_are_created_edited_rotated_and_revoked() {
    let (app, client) = app_with_user().await;
    let admin = Admin::new(&app, client).await;
    let bad = admin.post(&app, "/admin/applications/", &[("name", "blog"), ("origins", "not an origin")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("is not an origin"));
    let r = admin.post(&app, "/admin/applications/", &[("name", "blog"), ("origins", "https://Blog.Example/\n")]).await;
    assert_eq!(location(&r), "/admin/applications/blog/");
    let (_, html) = admin.get(&app, "/admin/applications/blog/").await;
    let key = html.split("<code id=\"key\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(html.contains("https:&#x2f;&#x2f;blog.example") && html.contains("browser key"));

    let send = |key: String| {
        let app = &app;
        async move {
            app.post_raw(
                serde_json::to_vec(&pageview("s", 1)).unwrap(),
                &[("content-type", "application/json"), ("origin", "https://blog.example"), ("x-eye-key", &key)],
            )
            .await
            .status()
        }
    };
    assert_eq!(send(key.clone()).await, StatusCode::ACCEPTED);

    let r = admin.post(&app, "/admin/applications/blog/rotate/", &[]).await;
    assert_eq!(location(&r), "/admin/applications/blog/?done=rotated");
    let rotated = app.state.store.applications().await.unwrap().into_iter().find(|a| a.name == "blog").unwrap();
    assert_ne!(rotated.key, key);
    assert_eq!(send(key).await, StatusCode::UNAUTHORIZED, "the old key stops at once");
    assert_eq!(send(rotated.key.clone()).await, StatusCode::ACCEPTED);

    admin.post(&app, "/admin/applications/blog/revoke/", &[]).await;
    assert_eq!(send(rotated.key.clone()).await, StatusCode::UNAUTHORIZED, "revoked");
    admin.post(&app, "/admin/applications/blog/activate/", &[]).await;
    assert_eq!(send(rotated.key.clone()).await, StatusCode::ACCEPTED, "reactivated");

    let r = admin.post(&app, "/admin/applications/blog/origins/", &[("origins", "https://other.example")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(send(rotated.key).await, StatusCode::FORBIDDEN, "blog.example is no longer allowed");
    let (_, log) = admin.get(&app, "/admin/log/").await;
    for action in ["create application", "rotate key", "revoke application", "edit origins"] {
        assert!(log.contains(action), "{action}");
    }
}

#[tokio::test]
async fn the_dashboard_charts_events_and_errors_by_category() {
    let (app, client) = app_with_user().await;
    let now = chrono::Utc::now();
    let recent = |session: &str, category: &str| {
        json!({"session_id": session, "category": category, "name": "pageview",
               "data": {"host": "h", "path": "/"}, "timestamp": now.to_rfc3339()})
    };
    app.accept(&json!([recent("a", "page interaction"), recent("b", "page interaction"), recent("c", "nope")])).await;
    app.process().await;
    let admin = Admin::new(&app, client).await;
    for range in ["hour", "day", "week"] {
        let (status, html) = admin.get(&app, &format!("/admin/?range={range}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(&format!("aria-current=\"page\">Last {range}")), "{range}");
        assert!(html.contains("<strong>2</strong>") && html.contains("<strong>1</strong>"), "totals: {range}");
        assert!(html.contains("33.3 %"), "error rate: {range}");
        assert!(html.contains("page interaction: 2</title>"), "an events bar: {range}");
        assert!(html.contains("nope: 1</title>"), "an errors bar: {range}");
    }
}
