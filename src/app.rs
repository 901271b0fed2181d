//! Wiring: the shared state, the router, and `serve` with its two-phase shutdown.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::admin::web::LoginThrottle;
use crate::config::Settings;
use crate::domain::{Clock, SystemClock};
use crate::hosts;
use crate::ingest::trust::{self, AppCache};
use crate::ingest::{self, Limits};
use crate::metrics::Metrics;
use crate::queue::{Queue, RedisQueue, Spool};
use crate::rate;
use crate::store::{self, Store};
use crate::tasks::{self, Background};
use crate::worker::{CatalogCache, Worker};
use crate::{admin, api, http_error, request_log, server};

/// What every handler shares, behind one `Arc`: axum clones the state for
/// every middleware and extractor of every request, and one reference count
/// costs less than one per field (a profile of the single-event path found
/// 5 % of the server's time in cloning and dropping the field-by-field
/// version). Its fields are read through `Deref`: `state.store`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`]. Backends and the clock are traits so tests can inject them.
#[derive(Debug)]
pub struct Shared {
    /// Settings in force.
    pub settings: Arc<Settings>,
    /// Request limits, derived once from the settings.
    pub limits: Arc<Limits>,
    /// Where events and errors live.
    pub store: Arc<dyn Store>,
    /// Where accepted events wait for the workers.
    pub queue: Arc<dyn Queue>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Cancelled when shutdown begins; `/readyz` then answers 503.
    pub draining: CancellationToken,
    /// The applications that may send.
    pub apps: Arc<AppCache>,
    /// Requests per client address.
    pub ip_limits: Arc<rate::Limits<IpAddr>>,
    /// Requests per application.
    pub app_limits: Arc<rate::Limits<String>>,
    /// Admin login attempts per username and per address.
    pub login_throttle: Arc<LoginThrottle>,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// When each read token's last use was recorded.
    pub token_uses: Arc<api::auth::TokenUses>,
}

/// The assembled service: state plus the worker template.
#[derive(Debug)]
pub struct App {
    state: AppState,
    worker: Worker,
}

impl App {
    /// Opens the store (migrating it) and the queue the settings name.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// As [`App::build`], with an injected clock.
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        prepare_data_dir(&settings.store.data_dir)?;
        let store = store::open(settings.store.database.as_str()).await?;
        store.migrate().await?;
        let metrics = Arc::new(Metrics::new());
        let queue = open_queue(&settings, metrics.clone()).await?;
        let catalog = Arc::new(CatalogCache::new(store.clone(), settings.worker.catalog_refresh));
        let worker = Worker::new(queue.clone(), store.clone(), catalog, &settings.worker, settings.rules.clone())
            .with_metrics(metrics.clone());
        let apps = Arc::new(AppCache::new(store.clone(), settings.worker.catalog_refresh));
        // Loaded now, while the store is known to answer, so that ingest can go on
        // deciding who may send through a later store outage.
        apps.index().await?;
        let state = AppState(Arc::new(Shared {
            apps,
            ip_limits: Arc::new(rate::Limits::new(settings.ingest.rate_limit_ip, clock.clone())),
            app_limits: Arc::new(rate::Limits::new(settings.ingest.rate_limit_app, clock.clone())),
            login_throttle: Arc::new(LoginThrottle::new(clock.clone())),
            limits: Arc::new(Limits::from(&settings.ingest)),
            settings: Arc::new(settings),
            store,
            queue,
            clock,
            draining: CancellationToken::new(),
            metrics,
            token_uses: Arc::default(),
        }));
        Ok(Self { state, worker })
    }

    /// The shared state (tests reach the backends through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A worker over this app's queue and store (tests drive it step by step).
    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    /// Serves HTTP on `listener` and runs `settings.workers` workers until `shutdown`
    /// completes. Then: stop accepting and finish in-flight requests; then stop the
    /// workers after their current batch. Each phase has `shutdown_timeout_secs`.
    /// Last the store's connections close ([`crate::store::Store::close`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        let deadline = settings.http.shutdown_timeout;
        let stop_workers = CancellationToken::new();
        // The workers' own runtime only where nothing they open is tied to
        // it: a PostgreSQL or Redis connection a worker opened there would
        // be driven by its one niced thread for every request that used it.
        let background = if self.state.store.runtime_io() || self.state.queue.runtime_io() {
            None
        } else {
            Some(Background::start().context("cannot start the workers' runtime")?)
        };
        let runtime = background.as_ref().map_or_else(tokio::runtime::Handle::current, |b| b.handle().clone());
        let mut workers = tasks::spawn_workers(&runtime, &self.worker, settings.worker.workers, &stop_workers);
        if settings.worker.workers > 0 {
            let store = self.state.store.clone();
            let (retention, every) = (settings.store.retention, settings.store.upkeep_interval);
            workers.push(tasks::spawn_upkeep(&runtime, store, retention, every, &stop_workers));
        }

        let draining = self.state.draining.clone();
        tokio::spawn({
            let draining = draining.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections; finishing requests in flight");
                draining.cancel();
            }
        });
        server::serve(listener, router(self.state.clone()), connection_limits(&settings), draining, deadline).await;

        stop_workers.cancel();
        if !tasks::join_within(workers, deadline).await {
            tracing::warn!(?deadline, "workers still busy at the deadline; their batches will be redelivered");
        }
        self.state.store.close().await;
        // Last: nothing runs on it any more.
        drop(background);
        tracing::info!("stopped");
        Ok(())
    }
}

impl App {
    /// `the-eye worker`: only the workers (and, if configured, `/healthz` and
    /// `/readyz` on `worker_health_listen`) until `shutdown`; then the workers
    /// finish their batch, within `shutdown_timeout_secs`, and the store closes.
    pub async fn run_workers(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        // Bound before a worker starts: a taken address stops the process
        // before it has claimed anything, with the address in the error.
        let listener = match settings.worker.health_listen {
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(listener) => Some(listener),
                Err(e) => {
                    self.state.store.close().await;
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot listen on {addr} for the worker's health endpoints")));
                }
            },
            None => None,
        };
        let stop = CancellationToken::new();
        // On this runtime, not on a `Background` of their own as in `serve`:
        // this process serves no requests for them to make way for, and
        // here, beside PostgreSQL and Redis, the lower priority cost the
        // batched rate (median 2 %, up to 14 %; docs/benchmarks.md, twenty-sixth session).
        let here = tokio::runtime::Handle::current();
        let mut workers = tasks::spawn_workers(&here, &self.worker, settings.worker.workers.max(1), &stop);
        let (retention, every) = (settings.store.retention, settings.store.upkeep_interval);
        workers.push(tasks::spawn_upkeep(&here, self.state.store.clone(), retention, every, &stop));
        let health = match listener {
            Some(listener) => {
                tracing::info!(url = %format!("http://{}", listener.local_addr()?), "worker health endpoints");
                let routes = Router::new()
                    .route("/healthz", get(api::health::healthz))
                    .route("/readyz", get(api::health::readyz))
                    .merge(api::metrics::routes(self.state.clone()))
                    .with_state(self.state.clone());
                let (stopped, limits) = (stop.clone(), connection_limits(&settings));
                let deadline = settings.http.shutdown_timeout;
                Some(tokio::spawn(server::serve(listener, routes, limits, stopped, deadline)))
            }
            None => None,
        };
        tracing::info!(workers = settings.worker.workers.max(1), "The Eye worker is running");
        shutdown.await;
        tracing::info!("shutting down: workers finish their current batch");
        self.state.draining.cancel();
        stop.cancel();
        let deadline = settings.http.shutdown_timeout;
        if !tasks::join_within(workers, deadline).await {
            tracing::warn!(?deadline, "workers still busy at the deadline; their batches will be redelivered");
        }
        if let Some(h) = health {
            let _ = h.await;
        }
        self.state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Makes the data dir if needed and checks that it can be written, so that a
/// read-only one is reported as such rather than as a database error later.
pub fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let shown = dir.display();
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow::anyhow!("cannot create the data dir {shown}: {e}; give a writable --data-dir (THE_EYE_DATA_DIR)")
    })?;
    let probe = dir.join(".the-eye-write-check");
    std::fs::write(&probe, b"").map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::ReadOnlyFilesystem {
            "it is on a read-only file system"
        } else {
            "it cannot be written"
        };
        anyhow::anyhow!(
            "the data dir {shown} is not usable: {why} ({e}); give a writable --data-dir (THE_EYE_DATA_DIR)"
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// What the settings allow each client connection.
fn connection_limits(settings: &Settings) -> server::ConnectionLimits {
    server::ConnectionLimits {
        header_read_timeout: settings.http.header_read_timeout,
        idle_timeout: settings.http.idle_timeout,
        max_connections: server::fit_connection_cap(settings.http.max_connections),
        // Room for the largest head the app accepts, so that the app (not
        // hyper, with a bare status) answers one that is too large.
        max_buf_size: (2 * (settings.http.max_uri_bytes + settings.http.max_header_bytes)).max(64 * 1024),
    }
}

/// The queue the settings name: Redis when `redis_url` is set, else the spool.
async fn open_queue(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Arc<dyn Queue>> {
    let q = &settings.queue;
    Ok(match &q.redis_url {
        Some(url) => Arc::new(
            RedisQueue::connect(url, &q.redis_prefix, q.max_depth, q.redis_claim_idle, q.allow_unsafe_redis).await?,
        ),
        None => Arc::new(
            Spool::open_with_metrics(&settings.store.spool_path(), q.max_depth, q.spool_claim_idle, metrics).await?,
        ),
    })
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let timeout = state.settings.http.request_timeout;
    Router::new()
        .route("/collector", post(ingest::collect).options(trust::preflight))
        .route("/collector/", post(ingest::collect).options(trust::preflight))
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz))
        .merge(api::routes(state.clone()))
        .merge(api::metrics::routes(state.clone()))
        .merge(crate::openapi::routes(state.clone()))
        .merge(admin::web::routes(state.clone()))
        .merge(crate::website::routes(state.settings.demo))
        .fallback(http_error::not_found)
        .method_not_allowed_fallback(http_error::method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// What every request goes through before its route, in one middleware: its
/// id, log line and count (`request_log`), then the head's limits
/// (`http_error`) and the allowed hosts (`hosts`). One layer, not three:
/// each `from_fn` layer boxes the inner service and its future on every
/// request: as three layers they cost ingest 12 % more server CPU an event
/// (docs/benchmarks.md, "Sixth session").
async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let http = &state.settings.http;
    request_log::logged(&state.metrics, request, |request| async move {
        match http_error::head_refusal(http, &request).or_else(|| hosts::refusal(http, &request)) {
            Some(refused) => refused,
            None => next.run(request).await,
        }
    })
    .await
}
