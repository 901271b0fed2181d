//! Background tasks with a shutdown deadline, the one way `serve` and
//! `the-eye worker` run their workers and the store's upkeep.
//!
//! A worker is essential: if one dies of a panic (a bug in a backend, say;
//! panics while validating an entry are already caught per entry), it is
//! logged and started again after a pause, so processing never silently
//! stops while HTTP goes on accepting. Its claimed entries come back through
//! the queue's claim timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Retention;
use crate::store::Store;
use crate::worker::Worker;

/// Pause before a task that panicked is started again: long enough that a
/// task panicking at once cannot spin, short enough to go unnoticed.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Starts `count` copies of `worker`, each restarted if it panics, until `stop`.
pub fn spawn_workers(worker: &Worker, count: usize, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|n| {
            let (worker, stop) = (worker.clone(), stop.clone());
            let metrics = worker.metrics().clone();
            let on_panic = move || metrics.panicked("worker");
            tokio::spawn(supervise(format!("worker {n}"), stop.clone(), on_panic, move || {
                worker.clone().run(stop.clone())
            }))
        })
        .collect()
}

/// Starts the upkeep of the store beside the workers: at once, then every
/// `every` (`upkeep_interval_secs`), [`crate::lifecycle::upkeep`] (partitions,
/// merging rollup deltas, retention), restarted if it panics, until `stop`
/// (which abandons a step in hand: its transaction rolls back).
pub fn spawn_upkeep(
    store: Arc<dyn Store>,
    retention: Retention,
    every: Duration,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let stop = stop.clone();
    tokio::spawn(supervise(
        "upkeep".into(),
        stop.clone(),
        || {},
        move || {
            let (store, stop) = (store.clone(), stop.clone());
            async move {
                loop {
                    let run = crate::lifecycle::upkeep(store.as_ref(), &retention, chrono::Utc::now());
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        done = run => if let Err(e) = done {
                            tracing::error!(error = %e, "store upkeep failed; will try again at the next interval");
                        },
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            }
        },
    ))
}

/// Runs the task `make` builds; when it panics, logs it and builds a new one,
/// until `stop` is cancelled or the task returns by itself. `on_panic` counts it.
pub async fn supervise<F, Fut>(name: String, stop: CancellationToken, on_panic: impl Fn(), make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                on_panic();
                tracing::error!(task = %name, "a background task panicked; starting it again");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RESTART_PAUSE) => {}
                }
            }
            Err(_) => return,
        }
    }
}

/// Waits for `handles` up to `deadline`; false when some were still running.
pub async fn join_within(handles: Vec<JoinHandle<()>>, deadline: Duration) -> bool {
    let all = async {
        for handle in handles {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "a background task failed");
            }
        }
    };
    tokio::time::timeout(deadline, all).await.is_ok()
}
