//! Every template rendered at least once, through the page that uses it.
//!
//! Templates are semi-strict about undefined values, so a variable a handler
//! forgot or mistyped is a 500 here rather than empty text on a page. A
//! template added without a page in this tour fails the test too.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::admin::http::{app_with_user, signed_in};
use crate::helpers::pageview;

#[tokio::test]
async fn every_template_renders_through_its_page() {
    let (app, client) = app_with_user().await;
    let cookie = signed_in(&app, &client).await;

    // Something of everything for the detail pages to show.
    let ids = app.accept(&pageview("tour", 1)).await;
    let mut broken = pageview("tour", 2);
    broken["category"] = json!("no such category");
    app.accept(&broken).await;
    app.process().await;
    let errors = app.errors().await;
    let error_id = errors[0]["id"].as_i64().expect("error id");
    let categories = app.state.store.categories().await.unwrap();
    let category = categories.iter().find(|c| !c.types.is_empty()).expect("a seeded category with types");
    let (category_id, type_id) = (category.id.unwrap(), category.types[0].id.unwrap());
    let application = app.state.store.applications().await.unwrap()[0].name.clone();
    let event = &ids[0];

    let tour: BTreeMap<&str, (String, StatusCode)> = [
        ("admin/base.html", ("/admin/".to_string(), StatusCode::OK)),
        ("admin/login.html", ("/admin/login/".into(), StatusCode::OK)),
        ("admin/dashboard.html", ("/admin/?range=day".into(), StatusCode::OK)),
        ("admin/message.html", (format!("/admin/events/{}/", uuid::Uuid::now_v7()), StatusCode::NOT_FOUND)),
        ("admin/events.html", ("/admin/events/".into(), StatusCode::OK)),
        ("admin/event_filters.html", ("/admin/events/?category=page+interaction".into(), StatusCode::OK)),
        ("admin/period.html", ("/admin/events/?range=7d".into(), StatusCode::OK)),
        ("admin/pages.html", ("/admin/errors/?after=999999".into(), StatusCode::OK)),
        ("admin/macros.html", ("/admin/categories/".into(), StatusCode::OK)),
        ("admin/live.html", ("/admin/live/?category=page+interaction".into(), StatusCode::OK)),
        ("admin/sessions.html", ("/admin/sessions/?range=30d".into(), StatusCode::OK)),
        ("admin/event.html", (format!("/admin/events/{event}/"), StatusCode::OK)),
        ("admin/session.html", ("/admin/sessions/tour/".into(), StatusCode::OK)),
        ("admin/confirm.html", (format!("/admin/events/{event}/delete/"), StatusCode::OK)),
        ("admin/password.html", ("/admin/password/".into(), StatusCode::OK)),
        ("admin/errors.html", ("/admin/errors/".into(), StatusCode::OK)),
        ("admin/error.html", (format!("/admin/errors/{error_id}/"), StatusCode::OK)),
        ("admin/categories.html", ("/admin/categories/".into(), StatusCode::OK)),
        ("admin/category.html", (format!("/admin/categories/{category_id}/"), StatusCode::OK)),
        ("admin/event_type.html", (format!("/admin/categories/{category_id}/types/{type_id}/"), StatusCode::OK)),
        ("admin/applications.html", ("/admin/applications/".into(), StatusCode::OK)),
        ("admin/application.html", (format!("/admin/applications/{application}/"), StatusCode::OK)),
        ("admin/log.html", ("/admin/log/".into(), StatusCode::OK)),
        ("admin/tokens.html", ("/admin/tokens/".into(), StatusCode::OK)),
        ("website/base.html", ("/website/".into(), StatusCode::OK)),
        ("website/home.html", ("/website/".into(), StatusCode::OK)),
        ("website/form.html", ("/website/form/".into(), StatusCode::OK)),
    ]
    .into_iter()
    .collect();

    for (template, (path, status)) in &tour {
        let r = client.get(app.url(path)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(r.status(), *status, "{template} through GET {path}");
        assert!(r.text().await.unwrap().contains("</html>"), "{template}: a whole page");
    }
    // The thank-you page answers the demo form's POST.
    let thanks = client.post(app.url("/website/form/")).form(&[("name", "Ada")]).send().await.unwrap();
    assert_eq!(thanks.status(), StatusCode::OK, "website/thanks.html");

    let mut toured: Vec<&str> = tour.keys().copied().chain(["website/thanks.html"]).collect();
    toured.sort_unstable();
    let mut all: Vec<&str> = the_eye::templates::SOURCES.iter().map(|(name, _)| *name).collect();
    all.sort_unstable();
    assert_eq!(toured, all, "every template has a page in the tour");
}
