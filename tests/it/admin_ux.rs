//! The admin panel as people use it every day, in headless Chromium at
//! 1400 px and at 390 px: every page is laid out so that no header wraps, no
//! word is broken and no column is narrower than a short word, the page
//! never scrolls sideways as a whole, and axe-core finds no WCAG 2 A/AA
//! violation; filters with counted choices, a count of what matches and pages
//! both ways; the live view (new rows, pause, clear); a session's story; the
//! one-click fix of an unknown category; bulk replay's confirmation; the audit
//! log's filters. Takes the screenshots in `docs/screenshots/`.
//!
//! axe-core is read from `THE_EYE_TEST_AXE` (the path of `axe.min.js`;
//! `.ci/run` installs it from npm); without it the accessibility check says
//! SKIPPED and the rest runs.

use chrono::{Duration, Utc};
use fantoccini::Locator;
use serde_json::{json, Value};
use the_eye::domain::Timestamp;
use the_eye::store::{Category, EventType, NewEvent, WriteBatch};

use crate::admin::http::{app_with_user, PASSWORD};
use crate::browser::Browser;
use crate::helpers::{service_url, TestApp};

const WIDE: (u32, u32) = (1400, 900);
const PHONE: (u32, u32) = (390, 844);

/// Runs a browser test at both widths, as two tests: `NAME::wide` and `NAME::phone`.
macro_rules! at_both_widths {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn wide() {
                    if let Some(b) = super::browser_at(stringify!($name), super::WIDE).await {
                        super::$name(b).await;
                    }
                }
                #[tokio::test]
                async fn phone() {
                    if let Some(b) = super::browser_at(stringify!($name), super::PHONE).await {
                        super::$name(b).await;
                    }
                }
            }
        )*
    };
}

at_both_widths!(
    the_frame_highlights_the_section_and_takes_a_keyboard,
    filters_offer_counted_choices_say_how_many_match_and_page_both_ways,
    the_live_view_shows_what_another_writer_stores_and_pauses_and_clears,
    a_session_tells_its_story_with_its_errors_in_place,
    an_unknown_category_is_created_from_its_error_in_one_click_then_replayed,
    volumes_and_charts_say_their_numbers,
);

/// A browser whose window is `width` × `height`, or `None` (SKIPPED).
async fn browser_at(test: &str, (width, height): (u32, u32)) -> Option<Browser> {
    let b = Browser::start(&format!("browser: {test} at {width} px")).await?;
    b.client.set_window_size(width, height).await.unwrap();
    Some(b)
}

/// Unfolds a list's filters if they are folded (as on a phone), as a person would.
async fn show_filters(b: &Browser) {
    let open = b.client.execute("return document.querySelector('details.filterbox').open", vec![]).await.unwrap();
    if open == json!(false) {
        b.client.find(Locator::Css("details.filterbox > summary")).await.unwrap().click().await.unwrap();
    }
}

async fn log_in(b: &Browser, app: &TestApp) {
    b.open(&app.url("/admin/login/")).await;
    b.submit("main form", &[("username", "ada"), ("password", PASSWORD)], "button[type=submit]").await;
    b.wait_at("/admin/").await;
}

/// An event of `session` at `at`.
fn event(session: &str, category: &str, name: &str, path: &str, at: chrono::DateTime<Utc>) -> Value {
    json!({"session_id": session, "category": category, "name": name,
           "data": {"host": "shop.example.com", "path": path, "title": "The shop"},
           "timestamp": at.to_rfc3339()})
}

const PATHS: [&str; 5] =
    ["/", "/pricing", "/docs/getting-started", "/blog/2026/11/why-we-built-an-event-collector-of-our-own", "/checkout"];

/// A week of a small shop's traffic: sessions of a few steps each, a strict
/// `checkout` category with one declared type, and errors of three kinds.
async fn seed(app: &TestApp) {
    let checkout = Category { name: "checkout".into(), active: true, strict: true, ..Default::default() };
    let id = app.state.store.save_category(&checkout).await.unwrap();
    let pay =
        EventType { id: None, category_id: id, name: "pay".into(), description: "A payment".into(), schema: None };
    app.state.store.save_event_type(&pay).await.unwrap();
    let now = Utc::now();
    let mut batch = Vec::new();
    for s in 0..36i64 {
        let session = format!("visitor-{s:02}-{}", "9f2c41d7-0b3e-4f5a-8c6d");
        let mut at = now - Duration::minutes((s * 271) % (6 * 24 * 60)) - Duration::minutes(5);
        for step in 0..(2 + s % 5) {
            at += Duration::seconds(7 + (s * 13 + step * 29) % 200);
            let path = PATHS[((s + step) % 5) as usize];
            batch.push(match (s + step) % 6 {
                0 => {
                    let mut submit = event(&session, "form interaction", "submit", path, at);
                    submit["data"]["form"] = json!({"plan": "team", "seats": "5"});
                    submit
                }
                1 => event(&session, "page interaction", "banner image click", path, at),
                5 if s % 5 == 0 => event(&session, "form interaction", "submit", path, at),
                2 if s % 4 == 0 => event(&session, "checkout", "pay", "/checkout", at),
                3 if s % 9 == 0 => event(&session, "checkout", "refund", "/checkout", at),
                4 if s % 7 == 0 => event(&session, "newsletter", "signup", path, at),
                _ => event(&session, "page interaction", "pageview", path, at),
            });
        }
    }
    // The errors of one session, interleaved with its events.
    let busy = "visitor-04-9f2c41d7-0b3e-4f5a-8c6d";
    // Its first step came 1,084 + 5 minutes ago, and a few minutes later the error.
    let seen = now - Duration::minutes(4 * 271 + 5) + Duration::seconds(200);
    batch.push(event(busy, "newsletter", "signup", "/", seen));
    app.accept(&json!(batch)).await;
    app.process().await;
    // What admins did, for the audit log.
    let entries = [
        ("ada", "create category", "checkout", String::new()),
        ("ada", "add event type", "checkout/pay", "from event error 12".to_string()),
        (
            "ada",
            "replay edited payload",
            "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b",
            json!({"result": "now an event", "before": {"category": "page interactoin"}, "after": {"category": "page interaction"}})
                .to_string(),
        ),
        ("cli:root", "erase session", "session sha256:4be0643f1d98573b", "3 events and 1 event errors erased".into()),
        ("token:nightly-report", "export", "events", "ndjson, 1,204 rows".into()),
    ];
    for (username, action, object, detail) in entries {
        let entry = the_eye::store::AdminAction {
            at: Utc::now(),
            username: username.into(),
            action: action.into(),
            object: object.into(),
            detail,
        };
        app.state.store.log_action(&entry).await.unwrap();
    }
}

/// What is wrong with the page's layout, in words: headers that wrap, words
/// broken across lines, columns narrower than the word "event", a page wider
/// than the window.
const LAYOUT: &str = r#"
const problems = [];
const lines = (node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  return new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top))).size;
};
const wordWidth = (cell) => {
  const probe = document.createElement("span");
  probe.textContent = "event";
  probe.style.cssText = "position:absolute;visibility:hidden;white-space:nowrap";
  cell.appendChild(probe);
  const w = probe.getBoundingClientRect().width;
  probe.remove();
  return w;
};
for (const table of document.querySelectorAll("main table")) {
  if (!table.getClientRects().length) continue;
  for (const th of table.querySelectorAll("th")) {
    const label = th.textContent.trim();
    if (!label || th.querySelector(".sr, .visually-hidden")) continue;
    if (lines(th) > 1) problems.push(`header "${label}" wraps`);
    if (th.getBoundingClientRect().width + 0.5 < wordWidth(th)) problems.push(`column "${label}" is narrower than a word`);
  }
  for (const cell of table.querySelectorAll("td")) {
    for (const node of cell.querySelectorAll("*")) {
      const text = node.childNodes.length === 1 && node.firstChild.nodeType === 3 ? node.textContent.trim() : "";
      if (text && !/\s/.test(text) && lines(node) > 1) problems.push(`"${text}" is broken across lines`);
    }
  }
}
if (document.documentElement.scrollWidth > window.innerWidth + 1) {
  problems.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${window.innerWidth} px window`);
}
return problems;
"#;

/// Checks the page's layout and accessibility and takes its screenshot, at
/// both widths; `name` is the screenshot's, `axe` axe-core's source if given.
async fn look_at(b: &Browser, name: &str, axe: Option<&str>) {
    for (width, height) in [WIDE, PHONE] {
        b.client.set_window_size(width, height).await.unwrap();
        let file = if width == PHONE.0 { format!("{name}-phone") } else { name.to_string() };
        b.screenshot(&file).await;
        let problems = b.client.execute(LAYOUT, vec![]).await.unwrap();
        assert_eq!(problems, json!([]), "{name} at {width} px");
        if let Some(axe) = axe {
            let violations = axe_violations(b, axe).await;
            assert!(violations.is_empty(), "{name} at {width} px, axe-core: {violations:#?}");
        }
    }
}

/// axe-core's WCAG 2 A and AA violations on the page, one line each.
async fn axe_violations(b: &Browser, axe: &str) -> Vec<String> {
    // WebDriver runs this outside the page's CSP, as an extension would.
    let loaded = b.client.execute("return typeof axe", vec![]).await.unwrap();
    if loaded != json!("object") {
        b.client.execute(&format!("{axe}\nreturn true;"), vec![]).await.unwrap();
    }
    let run = r#"
        const done = arguments[arguments.length - 1];
        axe.run(document, { runOnly: ["wcag2a", "wcag2aa"] }).then(
          (r) => done(r.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")})`)),
          (e) => done([`axe failed: ${e}`]));
    "#;
    let found = b.client.execute_async(run, vec![]).await.unwrap();
    serde_json::from_value(found).unwrap()
}

fn axe_source() -> Option<String> {
    let path = service_url("THE_EYE_TEST_AXE", "accessibility checks (axe-core)")?;
    Some(std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("THE_EYE_TEST_AXE={path}: {e}")))
}

#[tokio::test]
async fn every_page_reads_at_both_widths_and_passes_axe() {
    let Some(b) = Browser::start("browser: every admin page at both widths").await else { return };
    let axe = axe_source();
    let (app, _) = app_with_user().await;
    seed(&app).await;
    let error = app.errors().await.into_iter().next().expect("an error");
    let error_id =
        app.state.store.errors(&the_eye::store::ErrorQuery { limit: 1, ..Default::default() }).await.unwrap().items[0]
            .id;
    let event = app.events().await.into_iter().next().expect("an event");
    let checkout = app.state.store.categories().await.unwrap().into_iter().find(|c| c.name == "checkout").unwrap();
    let checkout_id = checkout.id.unwrap();
    let type_id = checkout.types[0].id.unwrap();
    let application = app.state.store.applications().await.unwrap()[0].name.clone();
    log_in(&b, &app).await;
    let pages = [
        ("dashboard", "/admin/".to_string()),
        ("live", "/admin/live/".to_string()),
        ("events", "/admin/events/".to_string()),
        ("events-filtered", "/admin/events/?category=page+interaction&range=7d".to_string()),
        ("event", format!("/admin/events/{}/", event["event_id"].as_str().unwrap())),
        ("sessions", "/admin/sessions/".to_string()),
        ("session", "/admin/sessions/visitor-04-9f2c41d7-0b3e-4f5a-8c6d/".to_string()),
        ("errors", "/admin/errors/".to_string()),
        ("error", format!("/admin/errors/{error_id}/")),
        ("categories", "/admin/categories/".to_string()),
        ("category", format!("/admin/categories/{checkout_id}/")),
        ("event-type", format!("/admin/categories/{checkout_id}/types/{type_id}/")),
        ("applications", "/admin/applications/".to_string()),
        ("application", format!("/admin/applications/{application}/")),
        ("tokens", "/admin/tokens/".to_string()),
        ("log", "/admin/log/".to_string()),
        ("password", "/admin/password/".to_string()),
        ("not-found", "/admin/no-such-page/".to_string()),
        ("session-erase", "/admin/sessions/visitor-01-9f2c41d7-0b3e-4f5a-8c6d/erase/".to_string()),
    ];
    for (name, path) in &pages {
        b.client.set_window_size(WIDE.0, WIDE.1).await.unwrap();
        b.open(&app.url(path)).await;
        b.wait_for("main").await;
        look_at(&b, name, axe.as_deref()).await;
    }
    assert!(error["event_id"].is_string());
    // The login page, signed out.
    b.client.set_window_size(WIDE.0, WIDE.1).await.unwrap();
    b.client.find(Locator::Css("form.logout button")).await.unwrap().click().await.unwrap();
    b.wait_path("/admin/login/").await;
    look_at(&b, "login", axe.as_deref()).await;
    b.close().await;
}

async fn the_frame_highlights_the_section_and_takes_a_keyboard(b: Browser) {
    let (app, _) = app_with_user().await;
    log_in(&b, &app).await;
    for (path, section) in [
        ("/admin/events/", "Events"),
        ("/admin/errors/", "Errors"),
        ("/admin/sessions/x/", "Sessions"),
        ("/admin/log/", "Audit log"),
    ] {
        b.open(&app.url(path)).await;
        assert_eq!(b.text("nav.main a[aria-current=page]").await, section, "{path}");
    }
    // Unknown addresses get the not-found page inside the frame, with the navigation.
    b.open(&app.url("/admin/nothing/here/")).await;
    assert!(b.text("main h1").await.contains("Not found"));
    assert!(b.client.find(Locator::Css("nav.main")).await.is_ok());
    // The first Tab reaches the skip link, which moves focus to the content.
    b.client.find(Locator::Css("body")).await.unwrap().send_keys("\u{e004}").await.unwrap();
    let focused = b.client.execute("return document.activeElement.textContent", vec![]).await.unwrap();
    assert_eq!(focused, json!("Skip to content"));
    b.client.find(Locator::Css("a.skip")).await.unwrap().send_keys("\u{e007}").await.unwrap();
    crate::procs::eventually(10, "focus on the content", || async {
        b.client.execute("return document.activeElement.id", vec![]).await.unwrap() == json!("content")
    })
    .await;
    b.close().await;
}

/// The text of every row's cell `n` (1-based) of the table in `main`.
async fn column(b: &Browser, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for cell in b.client.find_all(Locator::Css(&format!("main tbody tr td:nth-child({n})"))).await.unwrap() {
        out.push(cell.text().await.unwrap());
    }
    out
}

async fn filters_offer_counted_choices_say_how_many_match_and_page_both_ways(b: Browser) {
    let (app, _) = app_with_user().await;
    let checkout = Category { name: "checkout".into(), active: true, ..Default::default() };
    app.state.store.save_category(&checkout).await.unwrap();
    let now = Utc::now();
    let mut batch: Vec<Value> = (0..120)
        .map(|i| event(&format!("s{}", i % 4), "page interaction", "pageview", "/", now - Duration::minutes(i)))
        .collect();
    batch.extend((0..7).map(|i| event("buyer", "checkout", "pay", "/checkout", now - Duration::hours(30 + i))));
    app.accept(&json!(batch)).await;
    app.process().await;
    log_in(&b, &app).await;

    b.open(&app.url("/admin/events/")).await;
    assert_eq!(b.text(".count").await.split(" match").next().unwrap(), "127 events");
    show_filters(&b).await;
    let options = b.text("select[name=category]").await;
    assert!(options.contains("page interaction (120)") && options.contains("checkout (7)"), "{options}");
    // Pages: 50 newest, then older, then back.
    assert_eq!(column(&b, 1).await.len(), 50);
    assert!(b.client.find(Locator::Css("a[rel=prev]")).await.is_err(), "no newer page on the first");
    b.client.find(Locator::Css("a[rel=next]")).await.unwrap().click().await.unwrap();
    b.wait_until("the second page", |p| p.contains("cursor=")).await;
    let second = column(&b, 4).await;
    b.client.find(Locator::Css("a[rel=next]")).await.unwrap().click().await.unwrap();
    b.wait_until("the third page", |p| p.contains("cursor=") && !p.contains("before=")).await;
    assert_eq!(column(&b, 1).await.len(), 27);
    b.client.find(Locator::Css("a[rel=prev]")).await.unwrap().click().await.unwrap();
    b.wait_until("back to the second", |p| p.contains("before=")).await;
    assert_eq!(column(&b, 4).await, second, "the newer page is the one we came from");

    // A choice and a preset narrow it; the URL carries both.
    b.open(&app.url("/admin/events/")).await;
    show_filters(&b).await;
    let select = b.client.find(Locator::Css("select[name=category]")).await.unwrap();
    select.select_by_value("checkout").await.unwrap();
    b.client.find(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
    b.wait_until("checkout only", |p| p.contains("category=checkout")).await;
    assert!(b.text(".count").await.starts_with("7 events"));
    b.client.find(Locator::LinkText("Last 24 hours")).await.unwrap().click().await.unwrap();
    let url = b.wait_until("the last day", |p| p.contains("range=24h")).await;
    assert!(url.contains("category=checkout"), "{url}");
    assert!(b.text(".count").await.starts_with("0 events"), "the payments were 30 hours ago");
    // The picker reads the browser's zone (its offset goes along) and shows it back.
    b.open(&app.url("/admin/events/")).await;
    let from = (now - Duration::hours(40)).format("%Y-%m-%dT%H:%M").to_string();
    let tz = b.client.execute("return String(new Date().getTimezoneOffset())", vec![]).await.unwrap();
    show_filters(&b).await;
    b.submit("form.filters", &[("from", &from)], "button[type=submit]").await;
    let url = b.wait_until("from the picker", |p| p.contains("from=")).await;
    assert!(url.contains(&format!("tz={}", tz.as_str().unwrap())), "{url}");
    assert!(b.text(".count").await.starts_with("127 events"));
    // Errors: reason codes from the known list, counted.
    b.open(&app.url("/admin/errors/")).await;
    show_filters(&b).await;
    let reasons = b.text("select[name=reason]").await;
    assert!(reasons.contains("unknown_category (0)") && reasons.contains("schema (0)"), "{reasons}");
    b.close().await;
}

async fn the_live_view_shows_what_another_writer_stores_and_pauses_and_clears(b: Browser) {
    let (app, _) = app_with_user().await;
    log_in(&b, &app).await;
    b.open(&app.url("/admin/live/")).await;
    b.wait_until("the stream", |_| true).await;
    // Another writer: a store opened on the same database, as another process would.
    let url = format!("sqlite://{}", app.dir.path().join("the-eye.db").display());
    let other = the_eye::store::open(&url).await.unwrap();
    let write = |name: &str| {
        let event = the_eye::domain::ValidEvent {
            event_id: uuid::Uuid::new_v4(),
            session_id: "wiring-the-tracker".into(),
            category: "page interaction".into(),
            name: name.into(),
            data: json!({"path": "/hello"}).as_object().cloned().unwrap_or_default(),
            timestamp: Timestamp::from(Utc::now()),
        };
        WriteBatch {
            events: vec![NewEvent { event, received_at: Utc::now(), application: None }],
            ..Default::default()
        }
    };
    wait_for_state(&b, "Live").await;
    other.write(&write("first")).await.unwrap();
    wait_for_rows(&b, 1).await;
    assert!(b.text("#live tbody").await.contains("first"));
    // An error, from the collector and this process's worker.
    app.accept(&json!({"session_id": "wiring-the-tracker", "category": "no such category", "name": "x",
                        "data": {}, "timestamp": Utc::now().to_rfc3339()}))
        .await;
    app.process().await;
    wait_for_rows(&b, 2).await;
    assert!(b.text("#live tbody tr:first-child").await.contains("unknown_category"));
    b.client.set_window_size(WIDE.0, WIDE.1).await.unwrap();
    b.screenshot("live-rows").await;
    b.client.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    b.screenshot("live-rows-phone").await;

    // Paused: nothing new shows; resumed: what came meanwhile does.
    b.client.find(Locator::Css("#live-pause")).await.unwrap().click().await.unwrap();
    wait_for_state(&b, "Paused").await;
    other.write(&write("while paused")).await.unwrap();
    // The stream is closed; give a poll's time and see nothing came.
    let polled = b.client.execute("return new Promise((r) => setTimeout(() => r(true), 1500))", vec![]).await;
    assert!(polled.is_ok());
    assert_eq!(rows(&b).await, 2, "paused");
    b.client.find(Locator::Css("#live-pause")).await.unwrap().click().await.unwrap();
    wait_for_rows(&b, 3).await;
    assert!(b.text("#live tbody tr:first-child").await.contains("while paused"));
    b.client.find(Locator::Css("#live-clear")).await.unwrap().click().await.unwrap();
    assert_eq!(rows(&b).await, 0);

    // Filters apply: a category filter leaves other events out.
    b.open(&app.url("/admin/live/?category=checkout")).await;
    wait_for_state(&b, "Live").await;
    other.write(&write("not checkout")).await.unwrap();
    let mut pay = write("pay");
    pay.events[0].event.category = "checkout".into();
    other.write(&pay).await.unwrap();
    wait_for_rows(&b, 1).await;
    assert!(b.text("#live tbody").await.contains("pay"));
    assert!(!b.text("#live tbody").await.contains("not checkout"));
    b.close().await;
}

async fn rows(b: &Browser) -> usize {
    b.client.find_all(Locator::Css("#live tbody tr")).await.unwrap().len()
}

async fn wait_for_rows(b: &Browser, n: usize) {
    crate::procs::eventually(20, &format!("{n} live rows"), || async { rows(b).await == n }).await;
}

async fn wait_for_state(b: &Browser, state: &str) {
    crate::procs::eventually(20, &format!("the live view says {state}"), || async {
        b.text("#live-state").await == state
    })
    .await;
}

async fn a_session_tells_its_story_with_its_errors_in_place(b: Browser) {
    let (app, _) = app_with_user().await;
    let start = Utc::now() - Duration::minutes(30);
    let steps = [
        event("story", "page interaction", "pageview", "/", start),
        event("story", "page interaction", "pageview", "/pricing", start + Duration::seconds(45)),
        event("story", "page interaction", "pageview", "/pricing", start + Duration::seconds(50)),
        event("story", "page interaction", "banner image click", "/checkout", start + Duration::seconds(230)),
    ];
    app.accept(&json!(steps)).await;
    let mut bad = event("story", "nope", "x", "/checkout", start);
    bad["timestamp"] = json!((start + Duration::seconds(100)).to_rfc3339());
    app.accept(&bad).await;
    app.process().await;
    log_in(&b, &app).await;

    b.open(&app.url("/admin/sessions/")).await;
    assert!(b.text("main tbody").await.contains("story"));
    b.client.find(Locator::Css("main tbody a")).await.unwrap().click().await.unwrap();
    b.wait_path("/admin/sessions/story/").await;
    let stats = b.text(".stats").await;
    assert!(stats.contains("Events\n4") && stats.contains("Event errors\n1"), "{stats}");
    assert!(stats.contains("3 min 50 s"), "duration: {stats}");
    let mut path = Vec::new();
    for step in b.client.find_all(Locator::Css(".path li")).await.unwrap() {
        path.push(step.text().await.unwrap());
    }
    assert_eq!(path, ["/", "/pricing", "/checkout"], "a page repeated in a row is one step of the path");
    let steps = b.client.find_all(Locator::Css(".timeline > li")).await.unwrap();
    let mut texts = Vec::new();
    for s in &steps {
        texts.push(s.text().await.unwrap());
    }
    assert_eq!(texts.len(), 5, "{texts:?}");
    // The error was received after the events were, so it comes last, with
    // the time since the step before it.
    assert!(texts[1].contains("+45 s") && texts[2].contains("+5 s"), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("unknown_category")), "{texts:?}");
    // Data expands in place.
    let details = b.client.find(Locator::Css(".timeline > li details")).await.unwrap();
    assert!(!details.text().await.unwrap().contains("shop.example.com"));
    details.find(Locator::Css("summary")).await.unwrap().click().await.unwrap();
    assert!(details.text().await.unwrap().contains("shop.example.com"));
    b.close().await;
}

async fn an_unknown_category_is_created_from_its_error_in_one_click_then_replayed(b: Browser) {
    let (app, _) = app_with_user().await;
    for i in 0..3 {
        app.accept(&event(&format!("n{i}"), "newsletter", "signup", "/", Utc::now())).await;
    }
    app.process().await;
    let ids: Vec<i64> = app
        .state
        .store
        .errors(&the_eye::store::ErrorQuery { limit: 10, ..Default::default() })
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| e.id)
        .collect();
    log_in(&b, &app).await;
    b.open(&app.url(&format!("/admin/errors/{}/", ids[0]))).await;
    assert_eq!(b.client.find_all(Locator::Css("pre.data")).await.unwrap().len(), 0, "the payload once, in the editor");
    assert!(b.text("textarea").await.contains("newsletter"));
    assert!(b.text("dl.facts").await.contains("n"), "the session is named");
    b.client.find(Locator::Css("#fix-create_category")).await.unwrap().click().await.unwrap();
    b.wait_until("back at the error", |p| p.contains("fixed=")).await;
    assert!(b.text(".notice").await.contains("Category “newsletter” was created."));
    assert!(app.state.store.categories().await.unwrap().iter().any(|c| c.name == "newsletter" && c.active));
    b.client.find(Locator::Css("#replay")).await.unwrap().click().await.unwrap();
    b.wait_path("/admin/events/").await;

    // The other two: bulk replay asks first and says how many.
    b.open(&app.url("/admin/errors/")).await;
    b.client.find(Locator::Css("#replay-all")).await.unwrap().click().await.unwrap();
    b.wait_for("#confirm").await;
    assert_eq!(b.text("main h1").await, "Replay all 2 event errors?");
    b.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    b.wait_until("the result", |p| p.contains("replayed=2")).await;
    assert_eq!(app.events().await.len(), 3);
    // The audit log: filtered by what was done, each entry linking to more of its kind.
    b.open(&app.url("/admin/log/?action=create+category")).await;
    let log = b.text("main tbody").await;
    assert!(log.contains("newsletter") && !log.contains("replay"), "{log}");
    b.client.find(Locator::Css("main tbody a[href*='username=ada']")).await.unwrap().click().await.unwrap();
    b.wait_until("ada's entries", |p| p.contains("username=ada")).await;
    assert!(b.text("main tbody").await.contains("replay all matching"));
    b.close().await;
}

/// Volumes and charts: a bar a day with its count on hover, totals and last
/// seen for categories, event types and applications; the dashboard's charts
/// with a y-axis and a tooltip per bar.
async fn volumes_and_charts_say_their_numbers(b: Browser) {
    let (app, _) = app_with_user().await;
    let now = Utc::now();
    let batch: Vec<Value> = (0..12)
        .map(|i| {
            // Today (a second ago) and yesterday at noon, whatever the time of day.
            let yesterday = the_eye::store::floor_to(now, 86_400) - Duration::hours(12);
            let at = if i % 2 == 0 { now - Duration::seconds(1) } else { yesterday };
            event("v", "page interaction", "pageview", &format!("/p/{i}"), at)
        })
        .collect();
    app.accept(&json!(batch)).await;
    app.process().await;
    assert_eq!(app.events().await.len(), 12);
    log_in(&b, &app).await;

    b.open(&app.url("/admin/categories/")).await;
    let row = b.client.find(Locator::XPath("//main//tr[td/a[text()='page interaction']]")).await.unwrap();
    let cells: Vec<String> = {
        let mut out = Vec::new();
        for cell in row.find_all(Locator::Css("td")).await.unwrap() {
            out.push(cell.text().await.unwrap());
        }
        out
    };
    assert_eq!(cells[2], "12", "the total of 30 days: {cells:?}");
    assert!(cells[3].contains("min ago") || cells[3].contains("just now"), "last seen: {cells:?}");
    let bars = b
        .client
        .execute(
            "return [...document.querySelectorAll('svg.spark')[0].querySelectorAll('rect title')].map((t) => t.textContent)",
            vec![],
        )
        .await
        .unwrap();
    let bars: Vec<String> = serde_json::from_value(bars).unwrap();
    assert_eq!(bars.len(), 30, "a bar a day");
    assert!(bars.last().unwrap().ends_with(": 6") && bars[28].ends_with(": 6"), "today and yesterday: {bars:?}");

    b.open(&app.url("/admin/applications/")).await;
    assert!(b.text("main tbody").await.contains("12"), "the test app's total");

    b.open(&app.url("/admin/?range=day")).await;
    let axis = b.text(".chart .yaxis").await;
    assert_eq!(axis.split_whitespace().collect::<Vec<_>>(), ["6", "3", "0"], "the y-axis: the tallest bar, half, 0");
    let tips = b
        .client
        .execute("return [...document.querySelectorAll('.chart rect title')].map((t) => t.textContent)", vec![])
        .await
        .unwrap();
    let tips: Vec<String> = serde_json::from_value(tips).unwrap();
    assert!(tips.iter().any(|t| t.ends_with("page interaction: 6")), "{tips:?}");
    b.close().await;
}
