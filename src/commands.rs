//! What each subcommand does, so that `main` only parses arguments.

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::auth;
use crate::app::App;
use crate::config::Settings;
use crate::store;

/// `the-eye serve`: HTTP and (unless `workers = 0`) the embedded workers, until SIGINT/SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener =
        TcpListener::bind(settings.listen).await.with_context(|| format!("cannot listen on {}", settings.listen))?;
    let app = App::build(settings.clone()).await?;
    let addr = listener.local_addr()?;
    if settings.workers == 0 && settings.redis_url.is_none() {
        tracing::warn!("no workers and no Redis: events are accepted into the spool but nothing processes them");
    }
    tracing::info!(
        url = %format!("http://{addr}"),
        data_dir = %settings.data_dir.display(),
        workers = settings.workers,
        "The Eye is listening"
    );
    app.serve(listener, shutdown_signal()).await
}

/// `the-eye worker`: queue consumers only, for the scaled-out deployment.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.redis_url.is_some(),
        "`the-eye worker` needs a shared queue: set THE_EYE_REDIS_URL. With the embedded spool, \
         `the-eye serve` runs the workers itself"
    );
    let app = App::build(settings.clone()).await?;
    tracing::info!(workers = settings.workers.max(1), "The Eye worker is running");
    app.run_workers(shutdown_signal()).await
}

/// `the-eye migrate`: brings the store's schema up to date.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let store = store::open(&settings.database_url()).await?;
    store.migrate().await?;
    eprintln!("database is up to date");
    Ok(())
}

/// `the-eye tokens create --name N`: prints a new read-API token (only its hash is kept).
pub async fn create_token(settings: Settings, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!name.trim().is_empty(), "--name must not be blank");
    std::fs::create_dir_all(&settings.data_dir)?;
    let store = store::open(&settings.database_url()).await?;
    store.migrate().await?;
    let token = auth::new_token();
    store.create_token(name, &auth::hash_token(&token)).await?;
    println!("{token}");
    eprintln!("token {name:?} created; it is shown only once. Use it as: Authorization: Bearer <token>");
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
