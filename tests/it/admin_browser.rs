//! The admin panel in headless Chromium: logging in and out, a wrong password,
//! filtering events by session, creating a category and an event type with a
//! schema, replaying an error after fixing its schema, and an XSS corpus shown
//! on every page as text with no script run. Takes the erased session's
//! screenshot; `admin_ux` takes every page's.

use fantoccini::Locator;
use serde_json::json;

use crate::admin::http::{app_with_user, PASSWORD};
use crate::browser::Browser;
use crate::helpers::{pageview, TestApp};

async fn log_in(b: &Browser, app: &TestApp, password: &str) {
    b.open(&app.url("/admin/login/")).await;
    b.submit("main form", &[("username", "ada"), ("password", password)], "button[type=submit]").await;
}

#[tokio::test]
async fn login_wrong_password_and_logout() {
    let Some(b) = Browser::start("browser: login and logout").await else { return };
    let (app, _) = app_with_user().await;
    b.open(&app.url("/admin/events/")).await;
    assert!(b.wait_path("/admin/login/").await.contains("next=/admin/events/"), "sent to log in first");

    log_in(&b, &app, "not the password").await;
    b.wait_for(".error").await;
    assert!(b.text(".error").await.contains("Please enter a correct username and password"));

    log_in(&b, &app, PASSWORD).await;
    b.wait_at("/admin/").await;
    assert!(b.text("header").await.contains("Signed in as ada"));

    // Something that is not there: a page inside the frame, navigation included.
    b.open(&app.url("/admin/events/not-an-event/")).await;
    b.wait_for("nav.main").await;
    assert!(b.text("main").await.contains("There is no such event"));

    b.client.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
    b.wait_path("/admin/login/").await;
    b.open(&app.url("/admin/")).await;
    b.wait_path("/admin/login/").await;
    b.close().await;
}

#[tokio::test]
async fn events_are_filtered_by_session_and_a_session_read_as_a_timeline() {
    let Some(b) = Browser::start("browser: filter by session").await else { return };
    let (app, _) = app_with_user().await;
    let batch: Vec<_> = (0..9).map(|i| pageview(["alpha", "beta", "gamma"][i % 3], i as u32)).collect();
    app.accept(&json!(batch)).await;
    app.accept(&json!({"session_id": "alpha", "category": "unknown", "name": "x", "data": {}, "timestamp": "2021-01-01T09:00:00Z"})).await;
    // Something for the dashboard's charts: the last hour, two categories, a few errors.
    let now = chrono::Utc::now();
    let recent: Vec<_> = (0..60)
        .map(|i: i64| {
            let (category, name, data) = match i % 4 {
                0 => (
                    "form interaction",
                    "submit",
                    json!({"host": "shop.example", "path": "/form/", "form": {"name": "Ada"}}),
                ),
                1 if i % 3 == 0 => ("checkout", "pay", json!({"host": "shop.example", "path": "/pay/"})),
                _ => ("page interaction", "pageview", json!({"host": "shop.example", "path": format!("/p/{i}")})),
            };
            let at = now - chrono::Duration::seconds(i * i + 20);
            json!({"session_id": format!("visitor-{}", i % 7), "category": category, "name": name, "data": data,
                   "timestamp": at.to_rfc3339()})
        })
        .collect();
    app.accept(&json!(recent)).await;
    app.process().await;
    log_in(&b, &app, PASSWORD).await;
    b.wait_at("/admin/").await;

    b.open(&app.url("/admin/events/")).await;
    b.submit("form.filters", &[("session_id", "alpha")], "button[type=submit]").await;
    b.wait_until("the filtered list", |p| p.contains("session_id=alpha")).await;
    let rows = b.client.find_all(Locator::Css("tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 3, "alpha's three pageviews, not the others");
    for row in &rows {
        assert!(row.text().await.unwrap().contains("alpha"));
    }
    b.client.find(Locator::LinkText("alpha")).await.unwrap().click().await.unwrap();
    b.wait_path("/admin/sessions/alpha/").await;
    let items = b.client.find_all(Locator::Css(".timeline li")).await.unwrap();
    let mut paths = Vec::new();
    for item in &items {
        paths.push(item.text().await.unwrap());
    }
    // The three page views in order, and the session's error in its place:
    // its payload says it happened first.
    assert_eq!(paths.len(), 4, "{paths:?}");
    assert!(paths[0].contains("unknown_category"), "{paths:?}");
    assert!(paths[1].contains("/page/0") && paths[2].contains("/page/3") && paths[3].contains("/page/6"), "{paths:?}");

    // Erasing the session: a confirmation first, then the timeline says what went.
    b.client.find(Locator::LinkText("Erase this session…")).await.unwrap().click().await.unwrap();
    b.wait_path("/admin/sessions/alpha/erase/").await;
    b.client.set_window_size(1400, 900).await.unwrap();
    b.client.find(Locator::Css("button.danger")).await.unwrap().click().await.unwrap();
    let page = b.wait_until("the erased session", |p| p.contains("erased=3,1")).await;
    assert!(page.contains("erased=3,1"), "{page}");
    let notice = b.text(".notice").await;
    assert_eq!(notice, "Erased 3 events and 1 event errors of this session.");
    assert_eq!(b.text(".timeline li").await, "No events in this session.");
    b.screenshot("session-erased").await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.screenshot("session-erased-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    b.close().await;
}

#[tokio::test]
async fn a_category_and_an_event_type_with_a_schema_then_an_error_replayed_after_the_fix() {
    let Some(b) = Browser::start("browser: categories and replay").await else { return };
    let (app, _) = app_with_user().await;
    log_in(&b, &app, PASSWORD).await;
    b.wait_at("/admin/").await;

    b.open(&app.url("/admin/categories/")).await;
    b.submit(
        "form[action='/admin/categories/']",
        &[("name", "shop"), ("description", "Purchases")],
        "button[type=submit]",
    )
    .await;
    let category = b
        .wait_until("the new category's page", |p| p.starts_with("/admin/categories/") && p != "/admin/categories/")
        .await;
    let strict = r#"{"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}}"#;
    b.submit("form[action$='/types/']", &[("name", "buy"), ("schema", strict)], "button[value=save]").await;
    let type_page = b.wait_path(&format!("{category}types/")).await;
    let type_page = type_page.split('?').next().unwrap().to_string();
    assert!(b.client.source().await.unwrap().contains("sku"));

    // An event without a sku fails the schema (once the workers see the new type).
    let buy = json!({"session_id": "s", "category": "shop", "name": "buy", "data": {"qty": 1}, "timestamp": "2021-01-01T09:00:00Z"});
    crate::procs::eventually(30, "the schema is in force", || async {
        app.accept(&buy).await;
        app.process().await;
        app.errors().await.iter().any(|e| e["reasons"].to_string().contains("sku"))
    })
    .await;
    let failing = app.errors().await.into_iter().find(|e| e["reasons"].to_string().contains("sku")).unwrap();
    let event_id = failing["event_id"].as_str().unwrap().to_string();

    b.open(&app.url("/admin/errors/?reason=schema")).await;
    b.client.find(Locator::Css("tbody tr a")).await.unwrap().click().await.unwrap();
    let error_page = b
        .wait_until("an error's page", |p| {
            p.strip_prefix("/admin/errors/").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .await;
    assert!(b.text("table").await.contains("sku"), "the reason names the missing field");

    // Fix the schema, with a look at the preview first, then replay.
    b.open(&app.url(&type_page)).await;
    let loose = r#"{"type": "object", "properties": {"sku": {"type": "string"}}}"#;
    b.submit("main form", &[("schema", loose)], "button[value=preview]").await;
    b.wait_for("#preview").await;
    assert!(b.text("#preview").await.contains("would be accepted"));
    b.submit("main form", &[("schema", loose)], "button[value=save]").await;
    b.wait_path(&format!("{type_page}?saved=1")).await;

    b.open(&app.url(&error_page)).await;
    b.client.find(Locator::Css("#replay")).await.unwrap().click().await.unwrap();
    b.wait_path(&format!("/admin/events/{event_id}/")).await;
    assert!(b.text("h1").await.contains("shop / buy"));
    assert!(app.events().await.iter().any(|e| e["event_id"] == event_id.as_str()), "the error became its event");

    // The test app made a read token named "tests", used by the checks above.
    b.open(&app.url("/admin/tokens/")).await;
    assert!(b.text("table").await.contains("tests"));
    b.close().await;
}

/// Markup that runs a script if a page ever renders it as HTML.
const XSS: &[&str] = &[
    "<script>alert('pwned')</script>",
    "<img src=x onerror=\"document.title='pwned'\">",
    "<img src=x onerror=alert('pwned')>",
    "javascript:alert('pwned')",
    "</script><script>document.title='pwned'</script>",
    "{\"a\": \"</script><script>alert('pwned')</script>\"}",
    "<svg onload=\"document.title='pwned'\"><circle r=\"9\"/></svg>",
    "\"><script>alert('pwned')</script>",
    "'><img src=x onerror=alert('pwned')>",
];

#[tokio::test]
async fn an_xss_corpus_is_shown_as_text_on_every_page_and_no_script_runs() {
    let Some(b) = Browser::start("browser: XSS corpus").await else { return };
    let (app, _) = app_with_user().await;
    let mut event_ids = Vec::new();
    for (i, s) in XSS.iter().enumerate() {
        let mut event = pageview(s, i as u32);
        event["data"]["path"] = json!(s);
        event["data"]["note"] = json!(s);
        event_ids.extend(app.accept(&event).await);
        let mut bad = pageview(s, i as u32);
        bad["category"] = json!(s);
        app.accept(&bad).await;
    }
    app.process().await;
    let category = the_eye::store::Category {
        name: XSS[0].into(),
        description: XSS[1].into(),
        active: true,
        ..Default::default()
    };
    let category_id = app.state.store.save_category(&category).await.unwrap();
    let errors =
        app.state.store.errors(&the_eye::store::ErrorQuery { limit: 100, ..Default::default() }).await.unwrap().items;
    assert_eq!(errors.len(), XSS.len());

    log_in(&b, &app, PASSWORD).await;
    b.wait_at("/admin/").await;
    let mut pages: Vec<String> = [
        "/admin/",
        "/admin/?range=week",
        "/admin/events/",
        "/admin/errors/",
        "/admin/categories/",
        "/admin/log/",
        "/admin/applications/",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    pages.push(format!("/admin/categories/{category_id}/"));
    pages.extend(event_ids.iter().map(|id| format!("/admin/events/{id}/")));
    pages.extend(errors.iter().map(|e| format!("/admin/errors/{}/", e.id)));
    for s in XSS {
        let encoded: String = s.bytes().map(|c| format!("%{c:02X}")).collect();
        pages.push(format!("/admin/sessions/{encoded}/"));
        pages.push(format!("/admin/events/?q={encoded}"));
    }
    for path in &pages {
        b.open(&app.url(path)).await;
        let scripts =
            b.client.execute("return [...document.scripts].map((s) => s.getAttribute('src'))", vec![]).await.unwrap();
        assert_eq!(scripts, json!(["/admin/static/admin.js"]), "{path}: a script element was created");
        let links: i64 = b
            .client
            .execute("return document.querySelectorAll('a[href^=\"javascript:\"], [onerror], [onload]').length", vec![])
            .await
            .unwrap()
            .as_i64()
            .unwrap();
        assert_eq!(links, 0, "{path}: a javascript: link or event handler attribute");
    }
    // And the payloads are there, as text.
    b.open(&app.url(&format!("/admin/events/{}/", event_ids[0]))).await;
    assert!(b.text("pre.data").await.contains(XSS[0]));
    b.open(&app.url(&format!("/admin/errors/{}/", errors[0].id))).await;
    let payload =
        b.client.find(Locator::Css("textarea")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert!(payload.contains(errors[0].category.as_deref().unwrap()), "{payload}");
    b.open(&app.url("/admin/categories/")).await;
    assert!(b.text("table").await.contains(XSS[0]));
    b.close().await;
}
