//! `the-eye createsuperuser`, through the real binary.

use the_eye::admin::users::verify_password;
use the_eye::store::{Access, SqliteStore};

fn createsuperuser(dir: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let all: Vec<&str> = ["--data-dir", dir, "createsuperuser"].into_iter().chain(args.iter().copied()).collect();
    crate::procs::run_with_stdin(&all, &[], stdin)
}

#[tokio::test]
async fn createsuperuser_for_scripts_stores_an_argon2id_hash() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = ["--username", "ada", "--email", "ada@example.com", "--password-stdin"];
    let out = createsuperuser(d, &args, "a long passphrase\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Superuser \"ada\" created"));

    let store = SqliteStore::connect(&format!("sqlite://{d}/the-eye.db")).await.unwrap();
    let hash = store.user_password_hash("ada").await.unwrap().expect("stored");
    assert!(hash.starts_with("$argon2id$"));
    assert!(verify_password("a long passphrase", &hash));
    assert!(!hash.contains("a long passphrase"));

    let again = createsuperuser(d, &args, "another long passphrase\n");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn createsuperuser_refuses_weak_passwords_and_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let weak = createsuperuser(d, &["--username", "ada", "--password-stdin"], "12345\n");
    assert!(!weak.status.success());
    let message = String::from_utf8_lossy(&weak.stderr);
    assert!(
        message.contains("too weak") && message.contains("shorter than 10") && message.contains("too easy to guess"),
        "{message}"
    );
    let no_name = createsuperuser(d, &["--password-stdin"], "a long passphrase\n");
    assert!(String::from_utf8_lossy(&no_name.stderr).contains("needs --username"));
    let bad_name = createsuperuser(d, &["--username", "a b", "--password-stdin"], "a long passphrase\n");
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("username is 1 to 150"));
    // Interactive without a terminal and without input: it says so and stores nothing.
    let interactive = createsuperuser(d, &[], "");
    assert!(!interactive.status.success());
}

pub(crate) mod http {
    use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
    use reqwest::{redirect, StatusCode};
    use the_eye::admin::users::{hash_password, NewUser};

    use crate::helpers::TestApp;

    pub(crate) const PASSWORD: &str = "a long passphrase";

    pub(crate) async fn app_with_user() -> (TestApp, reqwest::Client) {
        app_with_user_and(|_| {}).await
    }

    /// An app with settings changed by `change`, the user `ada`, and a client that does not follow redirects.
    pub(crate) async fn app_with_user_and(
        change: impl FnOnce(&mut the_eye::config::RawSettings),
    ) -> (TestApp, reqwest::Client) {
        let app = TestApp::spawn_with(change).await;
        let user = NewUser {
            username: "ada".into(),
            email: String::new(),
            password_hash: hash_password(PASSWORD).unwrap(),
            is_superuser: true,
        };
        app.state.store.create_user(&user).await.unwrap();
        let client = reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap();
        (app, client)
    }

    pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
        headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
            let first = v.split(';').next()?;
            let (k, val) = first.split_once('=')?;
            (k == name && !val.is_empty()).then(|| val.to_string())
        })
    }

    pub(crate) fn set_cookie_line(headers: &HeaderMap, name: &str) -> String {
        headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) fn hidden(html: &str, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).map(|i| i + marker.len()).expect("hidden field");
        html[start..].split('"').next().unwrap().to_string()
    }

    /// GETs the login page; returns (csrf cookie, csrf field).
    pub(crate) async fn login_page(app: &TestApp, client: &reqwest::Client) -> (String, String) {
        let r = client.get(app.url("/admin/login/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = cookie_value(r.headers(), "eye_login_csrf").expect("csrf cookie");
        let html = r.text().await.unwrap();
        (cookie, hidden(&html, "csrf_token"))
    }

    pub(crate) async fn log_in(app: &TestApp, client: &reqwest::Client, password: &str) -> reqwest::Response {
        let (cookie, csrf) = login_page(app, client).await;
        client
            .post(app.url("/admin/login/"))
            .header("cookie", format!("eye_login_csrf={cookie}"))
            .form(&[("username", "ada"), ("password", password), ("csrf_token", &csrf), ("next", "/admin/")])
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn admin_pages_without_a_session_redirect_to_login() {
        let (app, client) = app_with_user().await;
        let r = client.get(app.url("/admin/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], "/admin/login/?next=/admin/");
        let r = client.post(app.url("/admin/logout/")).form(&[("csrf_token", "x")]).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = client.get(app.url("/admin/")).header("cookie", "eye_session=forged").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "an unknown session is no session");
    }

    #[tokio::test]
    async fn admin_responses_carry_the_security_headers() {
        let (app, client) = app_with_user().await;
        for path in ["/admin/login/", "/admin/"] {
            let r = client.get(app.url(path)).send().await.unwrap();
            let h = r.headers();
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{path}: {csp}");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "same-origin");
            assert_eq!(h["x-frame-options"], "DENY");
        }
        let line =
            set_cookie_line(client.get(app.url("/admin/login/")).send().await.unwrap().headers(), "eye_login_csrf");
        assert!(line.contains("HttpOnly") && line.contains("SameSite=Strict"), "{line}");
    }

    #[tokio::test]
    async fn a_login_post_without_its_csrf_token_is_403() {
        let (app, client) = app_with_user().await;
        let (cookie, csrf) = login_page(&app, &client).await;
        let no_token = client
            .post(app.url("/admin/login/"))
            .header("cookie", format!("eye_login_csrf={cookie}"))
            .form(&[("username", "ada"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(no_token.status(), StatusCode::FORBIDDEN);
        let no_cookie = client
            .post(app.url("/admin/login/"))
            .form(&[("username", "ada"), ("password", PASSWORD), ("csrf_token", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(no_cookie.status(), StatusCode::FORBIDDEN, "a forged form from another site has no cookie");
    }

    #[tokio::test]
    async fn wrong_password_shows_an_error_and_no_session() {
        let (app, client) = app_with_user().await;
        let r = log_in(&app, &client, "not the password").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(cookie_value(r.headers(), "eye_session").is_none());
        assert!(r.text().await.unwrap().contains("Please enter a correct username and password"));
    }

    #[tokio::test]
    async fn login_dashboard_and_logout() {
        let (app, client) = app_with_user().await;
        let r = log_in(&app, &client, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[LOCATION], "/admin/");
        let line = set_cookie_line(r.headers(), "eye_session");
        assert!(line.contains("HttpOnly") && line.contains("SameSite=Lax") && line.contains("Path=/admin"), "{line}");
        let session = cookie_value(r.headers(), "eye_session").unwrap();

        let page =
            client.get(app.url("/admin/")).header("cookie", format!("eye_session={session}")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("Signed in as") && html.contains("<strong>ada</strong>"));
        let csrf = hidden(&html, "csrf_token");

        // A second login gets a session of its own.
        let again = cookie_value(log_in(&app, &client, PASSWORD).await.headers(), "eye_session").unwrap();
        assert_ne!(again, session);

        let cookie = format!("eye_session={session}");
        let forged = client
            .post(app.url("/admin/logout/"))
            .header("cookie", &cookie)
            .form(&[("csrf_token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN);
        let out = client
            .post(app.url("/admin/logout/"))
            .header("cookie", &cookie)
            .form(&[("csrf_token", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        let after = client.get(app.url("/admin/")).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(after.status(), StatusCode::SEE_OTHER, "the session ended");
    }

    #[tokio::test]
    async fn repeated_failed_logins_are_slowed_down() {
        let (app, client) = app_with_user().await;
        for _ in 0..5 {
            assert_eq!(log_in(&app, &client, "wrong password").await.status(), StatusCode::OK);
        }
        let r = log_in(&app, &client, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
        let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=12).contains(&wait), "a short wait, not a lock-out: {wait}s");
    }

    pub(crate) async fn signed_in(app: &TestApp, client: &reqwest::Client) -> String {
        let r = log_in(app, client, PASSWORD).await;
        format!("eye_session={}", cookie_value(r.headers(), "eye_session").expect("signed in"))
    }

    pub(crate) async fn page(
        app: &TestApp,
        client: &reqwest::Client,
        cookie: &str,
        path: &str,
    ) -> (StatusCode, String) {
        let r = client.get(app.url(path)).header("cookie", cookie).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    #[tokio::test]
    async fn events_can_be_filtered_by_session_and_a_session_read_in_order() {
        let (app, client) = app_with_user().await;
        let batch: Vec<_> =
            (0..6).map(|i| crate::helpers::pageview(if i % 2 == 0 { "even" } else { "odd" }, i)).collect();
        app.accept(&serde_json::Value::Array(batch)).await;
        app.process().await;
        let cookie = signed_in(&app, &client).await;

        let (status, html) = page(&app, &client, &cookie, "/admin/events/?session_id=even").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(html.matches("/admin/sessions/even/").count(), 3);
        assert!(!html.contains("/admin/sessions/odd/"));

        let (_, timeline) = page(&app, &client, &cookie, "/admin/sessions/even/").await;
        // The template escapes `/` as `&#x2f;`.
        let first = timeline.find("page&#x2f;0").unwrap();
        let second = timeline.find("page&#x2f;2").unwrap();
        let third = timeline.find("page&#x2f;4").unwrap();
        assert!(first < second && second < third, "in the order they occurred");

        let (status, html) = page(&app, &client, &cookie, "/admin/events/?from=yesterday").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("from: not a date and time"), "a bad filter is explained, not a crash");
        let (status, _) = page(&app, &client, &cookie, "/admin/events/0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn hostile_event_data_is_shown_as_text_never_as_markup() {
        let (app, client) = app_with_user().await;
        let strings = crate::helpers::fixture("hostile-strings.json");
        let markup: Vec<&str> =
            strings.as_array().unwrap().iter().filter_map(|s| s.as_str()).filter(|s| s.contains('<')).collect();
        let mut ids = Vec::new();
        for (i, s) in markup.iter().enumerate() {
            let mut event = crate::helpers::pageview(&format!("hostile-{i}"), i as u32);
            event["data"]["value"] = serde_json::json!(s);
            event["data"]["path"] = serde_json::json!(s);
            ids.extend(app.accept(&event).await);
        }
        app.process().await;
        let cookie = signed_in(&app, &client).await;
        let mut pages = vec!["/admin/events/".to_string()];
        pages.extend(ids.iter().map(|id| format!("/admin/events/{id}/")));
        pages.extend((0..markup.len()).map(|i| format!("/admin/sessions/hostile-{i}/")));
        for path in &pages {
            let (status, html) = page(&app, &client, &cookie, path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            for s in &markup {
                assert!(!html.contains(s), "{path} shows {s:?} as markup");
            }
            // No tag opens: `onerror=` may appear, but only inside escaped text.
            assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<svg"), "{path}");
        }
        let (_, detail) = page(&app, &client, &cookie, &format!("/admin/events/{}/", ids[0])).await;
        assert!(detail.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "shown as text");
    }
}
