//! Read tokens, users and applications managed from the command line and the
//! admin panel: listed without secrets, revoked at once, recorded in the
//! audit log. The CLI is the real binary, on the data dir the app serves.

use reqwest::StatusCode;
use serde_json::Value;

use crate::admin::http::{app_with_user_and, cookie_value, hidden, login_page, signed_in, PASSWORD};
use crate::helpers::{pageview, TestApp};

/// Runs `the-eye --data-dir DIR ARGS…` with `stdin`; returns (success, stdout, stderr).
fn cli(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String, String) {
    let dir = app.dir.path().to_str().unwrap();
    let all: Vec<&str> = ["--data-dir", dir].into_iter().chain(args.iter().copied()).collect();
    let out = crate::procs::run_with_stdin(&all, &[("USER", "operator")], stdin);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

async fn api_status(app: &TestApp, token: &str) -> StatusCode {
    app.client.get(app.url("/api/events")).bearer_auth(token).send().await.unwrap().status()
}

#[tokio::test]
async fn tokens_are_listed_without_secrets_and_refused_at_once_when_revoked() {
    let (app, _) = app_with_user_and(|_| {}).await;
    let (ok, token, _) = cli(&app, &["tokens", "create", "--name", "grafana"], "");
    assert!(ok);
    let token = token.trim().to_string();
    let (ok, _, err) = cli(&app, &["tokens", "create", "--name", "grafana"], "");
    assert!(!ok && err.contains("already exists"), "a name is one token: {err}");

    let (_, listed, _) = cli(&app, &["tokens", "list"], "");
    let list: Value = serde_json::from_str(&listed).unwrap();
    let grafana = list.as_array().unwrap().iter().find(|t| t["name"] == "grafana").expect("listed");
    assert!(grafana["last_used_at"].is_null(), "never used yet");
    assert!(!listed.contains(&token), "the list never shows a secret");

    assert_eq!(api_status(&app, &token).await, StatusCode::OK);
    let (_, listed, _) = cli(&app, &["tokens", "list"], "");
    let list: Value = serde_json::from_str(&listed).unwrap();
    let grafana = list.as_array().unwrap().iter().find(|t| t["name"] == "grafana").unwrap();
    assert!(grafana["last_used_at"].is_string(), "its use was recorded: {grafana}");

    let (ok, _, _) = cli(&app, &["tokens", "revoke", "grafana"], "");
    assert!(ok);
    assert_eq!(api_status(&app, &token).await, StatusCode::UNAUTHORIZED, "refused at once");
    let (ok, _, err) = cli(&app, &["tokens", "revoke", "grafana"], "");
    assert!(!ok && err.contains("no token named"), "{err}");

    let log = app.state.store.actions(None, 50).await.unwrap();
    for action in ["create token", "revoke token"] {
        let entry = log.iter().find(|a| a.action == action).unwrap_or_else(|| panic!("{action} is in the audit log"));
        assert_eq!(entry.username, "cli:operator");
        assert_eq!(entry.object, "grafana");
    }
}

#[tokio::test]
async fn the_admin_panel_lists_and_revokes_tokens() {
    let (app, client) = app_with_user_and(|_| {}).await;
    let (_, token, _) = cli(&app, &["tokens", "create", "--name", "nightly-report"], "");
    let token = token.trim().to_string();
    let cookie = signed_in(&app, &client).await;
    let page = client.get(app.url("/admin/tokens/")).header("cookie", &cookie).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("nightly-report") && !html.contains(&token));
    let csrf = hidden(&html, "csrf_token");
    let r = client
        .post(app.url("/admin/tokens/nightly-report/revoke/"))
        .header("cookie", &cookie)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(api_status(&app, &token).await, StatusCode::UNAUTHORIZED);
    let log = app.state.store.actions(Some("nightly-report"), 5).await.unwrap();
    assert_eq!(log[0].action, "revoke token");
    assert_eq!(log[0].username, "ada");
}

async fn try_login(app: &TestApp, client: &reqwest::Client, password: &str) -> StatusCode {
    let (csrf_cookie, csrf) = login_page(app, client).await;
    let r = client
        .post(app.url("/admin/login/"))
        .header("cookie", format!("eye_login_csrf={csrf_cookie}"))
        .form(&[("username", "ada"), ("password", password), ("csrf_token", &csrf), ("next", "/admin/")])
        .send()
        .await
        .unwrap();
    if cookie_value(r.headers(), "eye_session").is_some() {
        StatusCode::SEE_OTHER
    } else {
        r.status()
    }
}

#[tokio::test]
async fn users_are_managed_from_the_cli_and_their_sessions_end() {
    let (app, client) = app_with_user_and(|_| {}).await;
    let (_, listed, _) = cli(&app, &["users", "list"], "");
    let users: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(users[0]["username"], "ada");
    assert!(!listed.contains("argon2"), "no hash in the list");

    let session = signed_in(&app, &client).await;
    let (ok, _, _) = cli(&app, &["users", "deactivate", "ada"], "");
    assert!(ok);
    let r = client.get(app.url("/admin/")).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the open session ended");
    assert_ne!(try_login(&app, &client, PASSWORD).await, StatusCode::SEE_OTHER, "cannot sign in");

    assert!(cli(&app, &["users", "activate", "ada"], "").0);
    assert_eq!(try_login(&app, &client, PASSWORD).await, StatusCode::SEE_OTHER);

    let new = "a different long passphrase";
    let (ok, _, err) = cli(&app, &["users", "set-password", "ada", "--password-stdin"], &format!("{new}\n"));
    assert!(ok, "{err}");
    assert_ne!(try_login(&app, &client, PASSWORD).await, StatusCode::SEE_OTHER, "the old password is gone");
    assert_eq!(try_login(&app, &client, new).await, StatusCode::SEE_OTHER);
    let (ok, _, err) = cli(&app, &["users", "set-password", "ada", "--password-stdin"], "short\n");
    assert!(!ok && err.contains("too weak"), "{err}");

    let actions: Vec<String> =
        app.state.store.actions(Some("ada"), 20).await.unwrap().into_iter().map(|a| a.action).collect();
    for action in ["deactivate user", "activate user", "set password"] {
        assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn a_revoked_application_is_activated_again_from_the_cli() {
    let (app, _) = app_with_user_and(|s| s.catalog_refresh_secs = 0).await;
    let (_, created, _) = cli(&app, &["apps", "create", "--name", "kiosk"], "");
    let key = serde_json::from_str::<Value>(&created).unwrap()["key"].as_str().unwrap().to_string();
    let headers = [("x-eye-key", key.as_str()), ("content-type", "application/json")];
    let body = pageview("kiosk", 1).to_string();
    assert_eq!(app.post_raw(body.clone(), &headers).await.status(), StatusCode::ACCEPTED);
    assert!(cli(&app, &["apps", "revoke", "kiosk"], "").0);
    assert_eq!(app.post_raw(body.clone(), &headers).await.status(), StatusCode::UNAUTHORIZED);
    assert!(cli(&app, &["apps", "activate", "kiosk"], "").0);
    assert_eq!(app.post_raw(body, &headers).await.status(), StatusCode::ACCEPTED);
    let actions: Vec<String> =
        app.state.store.actions(Some("kiosk"), 10).await.unwrap().into_iter().map(|a| a.action).collect();
    assert!(actions.contains(&"reactivate application".to_string()), "{actions:?}");
    assert!(actions.contains(&"create application".to_string()), "{actions:?}");
}
