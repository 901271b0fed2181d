//! Wiring: the shared state, the router, and `serve` with its two-phase shutdown.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{middleware, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admin::web::LoginThrottle;
use crate::config::Settings;
use crate::domain::{Clock, SystemClock};
use crate::hosts::{self, AllowedHosts};
use crate::ingest::trust::{self, AppCache};
use crate::ingest::{self, Limits};
use crate::queue::{Queue, RedisQueue, Spool};
use crate::rate;
use crate::store::{self, Store};
use crate::worker::{CatalogCache, Worker};
use crate::{admin, api, http_error, server, tasks};

/// What every handler shares. Backends and the clock are traits so tests can inject them.
#[derive(Clone, Debug)]
pub struct AppState {
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
    /// Hosts this server answers to.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// The applications that may send.
    pub apps: Arc<AppCache>,
    /// Requests per client address.
    pub ip_limits: Arc<rate::Limits<IpAddr>>,
    /// Requests per application.
    pub app_limits: Arc<rate::Limits<String>>,
    /// Admin login attempts per username and per address.
    pub login_throttle: Arc<LoginThrottle>,
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
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", settings.data_dir.display()))?;
        let store = store::open(&settings.database_url()).await?;
        store.migrate().await?;
        let queue = open_queue(&settings).await?;
        let catalog = Arc::new(CatalogCache::new(store.clone(), Duration::from_secs(settings.catalog_refresh_secs)));
        let worker = Worker::new(queue.clone(), store.clone(), catalog, &settings);
        // Both were checked when the settings were loaded; Settings built in code get the same check here.
        let allowed_hosts = AllowedHosts::parse(&settings.allowed_hosts).map_err(anyhow::Error::msg)?;
        let app_rate = rate::Rate::parse(&settings.rate_limit_app).map_err(anyhow::Error::msg)?;
        let ip_rate = rate::Rate::parse(&settings.rate_limit_ip).map_err(anyhow::Error::msg)?;
        let apps = Arc::new(AppCache::new(store.clone(), Duration::from_secs(settings.catalog_refresh_secs)));
        // Loaded now, while the store is known to answer, so that ingest can go on
        // deciding who may send through a later store outage.
        apps.index().await?;
        let state = AppState {
            allowed_hosts: Arc::new(allowed_hosts),
            apps,
            ip_limits: Arc::new(rate::Limits::new(ip_rate, clock.clone())),
            app_limits: Arc::new(rate::Limits::new(app_rate, clock.clone())),
            login_throttle: Arc::new(LoginThrottle::new(clock.clone())),
            limits: Arc::new(Limits::from(&settings)),
            settings: Arc::new(settings),
            store,
            queue,
            clock,
            draining: CancellationToken::new(),
        };
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
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        let deadline = Duration::from_secs(settings.shutdown_timeout_secs);
        let stop_workers = CancellationToken::new();
        let workers = tasks::spawn_workers(&self.worker, settings.workers, &stop_workers);

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
        tracing::info!("stopped");
        Ok(())
    }
}

impl App {
    /// `the-eye worker`: only the workers (and, if configured, `/healthz` and
    /// `/readyz` on `worker_health_listen`) until `shutdown`; then the workers
    /// finish their batch, within `shutdown_timeout_secs`.
    pub async fn run_workers(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        let stop = CancellationToken::new();
        let workers = tasks::spawn_workers(&self.worker, settings.workers.max(1), &stop);
        let health = match settings.worker_health_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await?;
                tracing::info!(url = %format!("http://{}", listener.local_addr()?), "worker health endpoints");
                let routes = Router::new()
                    .route("/healthz", get(api::health::healthz))
                    .route("/readyz", get(api::health::readyz))
                    .with_state(self.state.clone());
                let (stopped, limits) = (stop.clone(), connection_limits(&settings));
                let deadline = Duration::from_secs(settings.shutdown_timeout_secs);
                Some(tokio::spawn(server::serve(listener, routes, limits, stopped, deadline)))
            }
            None => None,
        };
        shutdown.await;
        tracing::info!("shutting down: workers finish their current batch");
        self.state.draining.cancel();
        stop.cancel();
        let deadline = Duration::from_secs(settings.shutdown_timeout_secs);
        if !tasks::join_within(workers, deadline).await {
            tracing::warn!(?deadline, "workers still busy at the deadline; their batches will be redelivered");
        }
        if let Some(h) = health {
            let _ = h.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// What the settings allow each client connection.
fn connection_limits(settings: &Settings) -> server::ConnectionLimits {
    server::ConnectionLimits {
        header_read_timeout: Duration::from_secs(settings.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(settings.idle_timeout_secs),
        max_connections: server::fit_connection_cap(settings.max_connections),
        // Room for the largest head the app accepts, so that the app (not
        // hyper, with a bare status) answers one that is too large.
        max_buf_size: (2 * (settings.max_uri_bytes + settings.max_header_bytes)).max(64 * 1024),
    }
}

/// The queue the settings name: Redis when `redis_url` is set, else the spool.
async fn open_queue(settings: &Settings) -> anyhow::Result<Arc<dyn Queue>> {
    Ok(match &settings.redis_url {
        Some(url) => Arc::new(
            RedisQueue::connect(
                url,
                &settings.redis_prefix,
                settings.queue_max_depth,
                Duration::from_secs(settings.redis_claim_idle_secs),
                settings.allow_unsafe_redis,
            )
            .await?,
        ),
        None => Arc::new(
            Spool::open(
                &settings.spool_path(),
                settings.queue_max_depth,
                Duration::from_secs(settings.spool_claim_idle_secs),
            )
            .await?,
        ),
    })
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    Router::new()
        .route("/collector", post(ingest::collect).options(trust::preflight))
        .route("/collector/", post(ingest::collect).options(trust::preflight))
        .route("/healthz", get(api::health::healthz))
        .route("/readyz", get(api::health::readyz))
        .merge(api::routes(state.clone()))
        .merge(admin::web::routes(state.clone()))
        .merge(crate::website::routes())
        .fallback(http_error::not_found)
        .method_not_allowed_fallback(http_error::method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        .layer(middleware::from_fn_with_state(state.clone(), hosts::check))
        .layer(middleware::from_fn_with_state(state.clone(), http_error::head_limits))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
