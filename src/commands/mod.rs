//! What each subcommand does, so that `main` only parses arguments; the
//! commands about the data's life (export, upkeep, erasure, backup, import,
//! rollup rebuilds) are in `data`.

mod data;

pub use data::{backup, erase, export, import_django, rebuild_stats, upkeep};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::auth;
use crate::app::App;
use crate::config::Settings;
use crate::domain::application::{check_app_name, new_key, parse_origins};
use crate::domain::Application;
use crate::store;

/// `the-eye serve`: HTTP and (unless `workers = 0`) the embedded workers, until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
    let app = App::build(settings.clone()).await?;
    // A failure from here on closes the store before the error is reported,
    // as a normal stop does.
    let ready = async {
        if settings.demo {
            ensure_demo_application(&settings, app.state().store.as_ref()).await?;
        }
        app.state().apps.refresh().await?;
        anyhow::Ok(listener.local_addr()?)
    };
    let addr = match ready.await {
        Ok(addr) => addr,
        Err(e) => {
            app.state().store.close().await;
            return Err(e);
        }
    };
    if settings.worker.workers == 0 && settings.queue.redis_url.is_none() {
        tracing::warn!("no workers and no Redis: events are accepted into the spool but nothing processes them");
    }
    tracing::info!(
        url = %format!("http://{addr}"),
        data_dir = %settings.store.data_dir.display(),
        workers = settings.worker.workers,
        "The Eye is listening"
    );
    app.serve(listener, shutdown_signal()).await
}

/// Creates the `demo` application on first start, for the demo website and the
/// README's example, with the server's own origins; logs its key.
async fn ensure_demo_application(settings: &Settings, store: &dyn store::Store) -> anyhow::Result<()> {
    let port = settings.http.listen.port();
    let mut origins = vec![format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}")];
    if !settings.http.listen.ip().is_loopback() && !settings.http.listen.ip().is_unspecified() {
        origins.push(format!("http://{}", settings.http.listen));
    }
    let name = crate::website::DEMO_APP;
    if let Some(demo) = store.applications().await?.into_iter().find(|a| a.name == name) {
        // Served on another port since: the demo website must keep working there.
        let missing: Vec<String> = origins.into_iter().filter(|o| !demo.origins.contains(o)).collect();
        if !missing.is_empty() && !demo.origins.is_empty() {
            let all: Vec<String> = demo.origins.iter().cloned().chain(missing).collect();
            store.set_application_origins(name, &all).await?;
            tracing::info!(origins = %all.join(" "), "the demo application may now send from this server's origins too");
        }
        return Ok(());
    }
    let app = Application { name: name.into(), key: new_key(), origins, active: true };
    store.create_application(&app).await?;
    tracing::info!(
        key = %app.key,
        origins = %app.origins.join(" "),
        "created the demo application; pages on these origins may send events (see `the-eye apps list`)"
    );
    Ok(())
}

/// `the-eye apps create --name N [--origin URL…]`: prints the new application as JSON.
pub async fn create_app(settings: Settings, name: &str, origins: &[String]) -> anyhow::Result<()> {
    check_app_name(name).map_err(anyhow::Error::msg)?;
    let origins = parse_origins(origins.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
    let store = open_store(&settings).await?;
    if store.applications().await?.iter().any(|a| a.name == name) {
        anyhow::bail!("an application named {name:?} already exists");
    }
    let app = Application { name: name.to_string(), key: new_key(), origins, active: true };
    store.create_application(&app).await?;
    audit(store.as_ref(), "create application", name, format!("origins {:?}", app.origins)).await;
    println!("{}", serde_json::json!({"name": app.name, "key": app.key, "origins": app.origins}));
    if app.is_server() {
        eprintln!("no --origin: this is a server key; keep it secret and send it only from servers");
    }
    Ok(())
}

/// `the-eye apps list`: every application as a JSON array.
pub async fn list_apps(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    println!("{}", serde_json::to_string_pretty(&store.applications().await?)?);
    Ok(())
}

/// `the-eye apps revoke NAME`: the application's key stops working.
pub async fn revoke_app(settings: Settings, name: &str) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    anyhow::ensure!(store.set_application_active(name, false).await?, "no application named {name:?}");
    audit(store.as_ref(), "revoke application", name, String::new()).await;
    eprintln!("application {name:?} revoked; its requests are refused from now on (within catalog_refresh_secs on running servers)");
    Ok(())
}

/// `the-eye apps activate NAME`: a revoked application may send again.
pub async fn activate_app(settings: Settings, name: &str) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    anyhow::ensure!(store.set_application_active(name, true).await?, "no application named {name:?}");
    audit(store.as_ref(), "reactivate application", name, String::new()).await;
    eprintln!("application {name:?} may send again (within catalog_refresh_secs on running servers)");
    Ok(())
}

/// `the-eye apps rotate NAME`: a new key replaces the old one, which stops working.
pub async fn rotate_app(settings: Settings, name: &str) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let key = new_key();
    anyhow::ensure!(store.set_application_key(name, &key).await?, "no application named {name:?}");
    audit(store.as_ref(), "rotate key", name, String::new()).await;
    let app = store.applications().await?.into_iter().find(|a| a.name == name);
    let origins = app.map(|a| a.origins).unwrap_or_default();
    println!("{}", serde_json::json!({"name": name, "key": key, "origins": origins}));
    Ok(())
}

/// Writes a command-line change to the audit log, as the admin panel does for
/// its own: the user is `cli` (with the operating-system user when known).
/// Who runs the command, as the audit log names them: `cli:$USER`.
fn cli_actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_string(),
    }
}

async fn audit(store: &dyn store::Store, action: &str, object: &str, detail: String) {
    let who = cli_actor();
    let entry = store::AdminAction {
        at: chrono::Utc::now(),
        username: who,
        action: action.into(),
        object: object.into(),
        detail,
    };
    if let Err(e) = store.log_action(&entry).await {
        tracing::warn!(error = %e, "cannot write the audit log");
    }
}

/// The stores the command opened, for [`close_stores`].
static OPENED: std::sync::Mutex<Vec<std::sync::Arc<dyn store::Store>>> = std::sync::Mutex::new(Vec::new());

/// Opens the store for a command; [`close_stores`] closes it when the command is done.
async fn open_store(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn store::Store>> {
    let store = open_unmigrated(settings).await?;
    store.migrate().await?;
    Ok(store)
}

async fn open_unmigrated(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn store::Store>> {
    crate::app::prepare_data_dir(&settings.store.data_dir)?;
    let store = store::open(settings.store.database.as_str()).await?;
    OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(store.clone());
    Ok(store)
}

/// Closes the stores a command opened, whether it succeeded or not, as
/// `serve` closes its own on a clean stop: with SQLite, what the command
/// wrote (an erasure, say) is then in `the-eye.db` itself, not left in its WAL.
pub async fn close_stores() {
    let opened = std::mem::take(&mut *OPENED.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    for store in opened {
        store.close().await;
    }
}

/// `the-eye createsuperuser`: like Django's. Prompts for what the flags do not
/// give; `--password-stdin` reads the password from the first line of stdin.
pub async fn create_superuser(
    settings: Settings,
    username: Option<String>,
    email: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    use crate::admin::users::{self, NewUser};
    use std::io::IsTerminal;
    anyhow::ensure!(
        password_stdin || std::io::stdin().is_terminal(),
        "createsuperuser asks for the password on a terminal, and there is none here (a script or a container?): \
         give --username and pipe the password in with --password-stdin, like \
         `echo \"$PASSWORD\" | the-eye createsuperuser --username admin --password-stdin`"
    );
    let (username, email, password) = if password_stdin {
        let username = username.ok_or_else(|| anyhow::anyhow!("--password-stdin needs --username"))?;
        users::check_username(&username).map_err(anyhow::Error::msg)?;
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        let email = email.unwrap_or_default();
        let problems = users::password_problems(&username, &email, &password);
        anyhow::ensure!(problems.is_empty(), "this password is too weak: {}", problems.join("; "));
        (username, email, password)
    } else {
        if let Some(u) = &username {
            users::check_username(u).map_err(anyhow::Error::msg)?;
        }
        users::ask(&mut users::Terminal, username, email)?
    };
    let store = open_store(&settings).await?;
    let user = NewUser {
        password_hash: users::hash_password(&password).map_err(anyhow::Error::msg)?,
        username,
        email,
        is_superuser: true,
    };
    match store.create_user(&user).await {
        Ok(()) => {
            audit(store.as_ref(), "create superuser", &user.username, String::new()).await;
            eprintln!("Superuser {:?} created.", user.username);
            Ok(())
        }
        Err(crate::store::StoreError::Rejected(_)) => anyhow::bail!("a user named {:?} already exists", user.username),
        Err(e) => Err(e.into()),
    }
}

/// `the-eye worker`: queue consumers only, for the scaled-out deployment.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.queue.redis_url.is_some(),
        "`the-eye worker` needs a shared queue: set THE_EYE_REDIS_URL. With the embedded spool, \
         `the-eye serve` runs the workers itself"
    );
    let app = App::build(settings.clone()).await?;
    app.run_workers(shutdown_signal()).await
}

/// `the-eye migrate`: brings the store's schema up to date.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let store = open_unmigrated(&settings).await?;
    let applied = store.migrate().await?;
    if applied.is_empty() {
        eprintln!("the database was already up to date");
    } else {
        eprintln!("applied {} migration(s):", applied.len());
        for m in &applied {
            eprintln!("  {m}");
        }
        eprintln!("the database is up to date");
    }
    Ok(())
}

/// `the-eye tokens create --name N [--erase]`: prints a new read-API token (only its hash is kept).
pub async fn create_token(settings: Settings, name: &str, can_erase: bool) -> anyhow::Result<()> {
    anyhow::ensure!(!name.trim().is_empty(), "--name must not be blank");
    let store = open_store(&settings).await?;
    anyhow::ensure!(
        !store.tokens().await?.iter().any(|t| t.name == name),
        "a token named {name:?} already exists: revoke it first (`the-eye tokens revoke {name:?}`) or pick another name"
    );
    let token = auth::new_token();
    store.create_token(name, &auth::hash_token(&token), can_erase).await?;
    let detail = if can_erase { "may erase sessions" } else { "read only" };
    audit(store.as_ref(), "create token", name, detail.to_string()).await;
    println!("{token}");
    eprintln!("token {name:?} created; it is shown only once. Use it as: Authorization: Bearer <token>");
    Ok(())
}

/// `the-eye tokens list`: every read token as JSON (name, created, last used; never the secret).
pub async fn list_tokens(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let tokens: Vec<_> = store
        .tokens()
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name, "created_at": t.created_at, "last_used_at": t.last_used_at, "can_erase": t.can_erase,
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&tokens)?);
    Ok(())
}

/// `the-eye tokens revoke NAME`: the token stops working at once.
pub async fn revoke_token(settings: Settings, name: &str) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let revoked = store.revoke_tokens(name).await?;
    anyhow::ensure!(revoked > 0, "no token named {name:?} (see `the-eye tokens list`)");
    audit(store.as_ref(), "revoke token", name, format!("{revoked} revoked")).await;
    eprintln!("token {name:?} revoked; requests with it get 401 from now on");
    Ok(())
}

/// `the-eye users list`: every admin user as JSON (never the password hash).
pub async fn list_users(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let users: Vec<_> = store
        .users()
        .await?
        .into_iter()
        .map(|u| {
            serde_json::json!({"username": u.username, "email": u.email, "superuser": u.is_superuser,
                               "active": u.active, "created_at": u.created_at})
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&users)?);
    Ok(())
}

/// `the-eye users set-password USER`: a new password (asked twice, or the first
/// line of stdin with `--password-stdin`); the user's sessions end.
pub async fn set_user_password(settings: Settings, username: &str, password_stdin: bool) -> anyhow::Result<()> {
    use crate::admin::users;
    let store = open_store(&settings).await?;
    let user = store.users().await?.into_iter().find(|u| u.username == username);
    let user = user.ok_or_else(|| anyhow::anyhow!("no user named {username:?} (see `the-eye users list`)"))?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        users::ask_password(&mut users::Terminal, &user.username, &user.email)?
    };
    let problems = users::password_problems(&user.username, &user.email, &password);
    anyhow::ensure!(problems.is_empty(), "this password is too weak: {}", problems.join("; "));
    let hash = users::hash_password(&password).map_err(anyhow::Error::msg)?;
    // No session is kept: every one of theirs ends.
    store.set_password(&user.username, &hash, "").await?;
    audit(store.as_ref(), "set password", &user.username, "all sessions ended".into()).await;
    eprintln!("password of {username:?} changed; their sessions were signed out");
    Ok(())
}

/// `the-eye users activate|deactivate USER`: may sign in, or not (sessions end at once).
pub async fn set_user_active(settings: Settings, username: &str, active: bool) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    anyhow::ensure!(
        store.set_user_active(username, active).await?,
        "no user named {username:?} (see `the-eye users list`)"
    );
    let action = if active { "activate user" } else { "deactivate user" };
    audit(store.as_ref(), action, username, String::new()).await;
    let what = if active { "may sign in again" } else { "can no longer sign in; their sessions ended" };
    eprintln!("user {username:?} {what}");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
