//! Admin login throttling (reliability issue, defect 4): only failures count,
//! each client address behind a trusted proxy has its own budget, and an
//! attacker cannot keep a known user out of a browser that signed in before.

use reqwest::StatusCode;

use crate::admin::http::{app_with_user_and, cookie_value, login_page, PASSWORD};
use crate::helpers::TestApp;

async fn app(trust_proxy: bool) -> (TestApp, reqwest::Client) {
    app_with_user_and(|s| s.trust_proxy = trust_proxy).await
}

/// One login attempt, from `address` (as a trusted proxy reports it) and with
/// the `eye_device` cookie of `device`, if given.
async fn attempt(
    app: &TestApp,
    client: &reqwest::Client,
    username: &str,
    password: &str,
    address: Option<&str>,
    device: Option<&str>,
) -> reqwest::Response {
    let (csrf_cookie, csrf) = login_page(app, client).await;
    let mut cookies = format!("eye_login_csrf={csrf_cookie}");
    if let Some(d) = device {
        cookies.push_str(&format!("; eye_device={d}"));
    }
    let mut request = client.post(app.url("/admin/login/")).header("cookie", cookies);
    if let Some(a) = address {
        request = request.header("x-forwarded-for", format!("203.0.113.250, {a}"));
    }
    request
        .form(&[("username", username), ("password", password), ("csrf_token", &csrf), ("next", "/admin/")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn successful_logins_spend_no_budget() {
    let (app, client) = app(false).await;
    for i in 0..10 {
        let r = attempt(&app, &client, "ada", PASSWORD, None, None).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login {i} succeeds");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_has_its_own_budget() {
    let (app, client) = app(true).await;
    // Forty strangers fail, each from an address of its own: no one else notices.
    for i in 0..40 {
        let r = attempt(&app, &client, &format!("guess{i}"), "wrong", Some(&format!("198.51.100.{i}")), None).await;
        assert_eq!(r.status(), StatusCode::OK, "attempt {i} is judged, not throttled");
    }
    // One address guessing the owner's password is slowed down…
    for _ in 0..5 {
        let r = attempt(&app, &client, "ada", "wrong", Some("192.0.2.7"), None).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let slowed = attempt(&app, &client, "ada", PASSWORD, Some("192.0.2.7"), None).await;
    assert_eq!(slowed.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = slowed.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&wait), "a short wait, not a lock-out: {wait}s");
    // …while the owner, elsewhere, signs in.
    let owner = attempt(&app, &client, "ada", PASSWORD, Some("192.0.2.99"), None).await;
    assert_eq!(owner.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_attacker_cannot_lock_a_known_user_out_of_a_trusted_device() {
    let (app, client) = app(true).await;
    let first = attempt(&app, &client, "ada", PASSWORD, Some("192.0.2.1"), None).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let device = cookie_value(first.headers(), "eye_device").expect("a device cookie");

    // A distributed attack on the known username, past its hourly ceiling.
    for i in 0..110u32 {
        let address = format!("198.51.{}.{}", 100 + i / 200, i % 200);
        let r = attempt(&app, &client, "ada", "wrong", Some(&address), None).await;
        assert!([StatusCode::OK, StatusCode::TOO_MANY_REQUESTS].contains(&r.status()));
    }
    // The ceiling holds for browsers the owner never used…
    let stranger = attempt(&app, &client, "ada", PASSWORD, Some("192.0.2.50"), None).await;
    assert_eq!(stranger.status(), StatusCode::TOO_MANY_REQUESTS, "the per-user ceiling");
    // …but not for the owner's own, wherever it is now.
    let owner = attempt(&app, &client, "ada", PASSWORD, Some("192.0.2.60"), Some(&device)).await;
    assert_eq!(owner.status(), StatusCode::SEE_OTHER, "the owner is not locked out");
    // A forged device cookie buys nothing.
    let forged = attempt(&app, &client, "ada", PASSWORD, Some("192.0.2.61"), Some("made-up")).await;
    assert_eq!(forged.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_next_with_control_characters_is_ignored_not_an_error() {
    let (app, client) = app(false).await;
    let (csrf_cookie, csrf) = login_page(&app, &client).await;
    let r = client
        .post(app.url("/admin/login/"))
        .header("cookie", format!("eye_login_csrf={csrf_cookie}"))
        .form(&[("username", "ada"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/admin/\r\nX-Evil: 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/");
    assert!(r.headers().get("x-evil").is_none());
    let page = client.get(app.url("/admin/login/?next=%2Fadmin%2F%0D%0AX-Evil:%201")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

/// Over HTTPS (as a trusted proxy reports it) the login form's cookie is a
/// `__Host-` cookie, bound to this host; the login works with it.
#[tokio::test]
async fn over_https_the_login_cookie_is_bound_to_the_host() {
    let (app, client) = app(true).await;
    let page = client.get(app.url("/admin/login/")).header("x-forwarded-proto", "https").send().await.unwrap();
    let line = crate::admin::http::set_cookie_line(page.headers(), "__Host-eye_login_csrf");
    assert!(line.contains("Secure") && line.contains("Path=/;") && !line.contains("Domain"), "{line}");
    let value = cookie_value(page.headers(), "__Host-eye_login_csrf").unwrap();
    let csrf = crate::admin::http::hidden(&page.text().await.unwrap(), "csrf_token");
    let r = client
        .post(app.url("/admin/login/"))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("__Host-eye_login_csrf={value}"))
        .form(&[("username", "ada"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/admin/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The plain name is not accepted over HTTPS.
    let (plain, csrf) = login_page(&app, &client).await;
    let r = client
        .post(app.url("/admin/login/"))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("eye_login_csrf={plain}"))
        .form(&[("username", "ada"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/admin/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
