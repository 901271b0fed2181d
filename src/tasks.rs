//! Background tasks with a shutdown deadline, the one way `serve` and
//! `the-eye worker` run their workers and the store's upkeep.
//!
//! In `serve` on the embedded backends (SQLite and the spool) they run on
//! a runtime of their own, [`Background`], not on the one that serves HTTP:
//! one thread, and the blocking threads its tasks start (the spool's
//! claims), all at the lower CPU priority of [`crate::priority`]. A
//! worker's own work between the queue and the store (taking a batch,
//! handing it to validation, building the store's statements, releasing the
//! entries) then never delays a request's thread, as the validation and the
//! store's writer already did not: end to end, one event a request, it
//! stored more a second in 13 of 16 pairs in turns (median +10 %;
//! docs/benchmarks.md, twenty-sixth session). With
//! PostgreSQL or Redis they stay on the one runtime: a connection is then a
//! socket driven by the runtime that opened it, and one a worker opened
//! would wake every request that later used it through the niced thread
//! (`Store::runtime_io`, `Queue::runtime_io`). `the-eye worker` serves no
//! requests, so its workers stay on its one runtime at the default
//! priority (there a lower one cost the batched rate).
//!
//! A worker is essential: if one dies of a panic (a bug in a backend, say;
//! panics while validating an entry are already caught per entry), it is
//! logged and started again after a pause, so processing never silently
//! stops while HTTP goes on accepting. Its claimed entries come back through
//! the queue's claim timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Retention;
use crate::store::Store;
use crate::worker::Worker;

/// Pause before a task that panicked is started again: long enough that a
/// task panicking at once cannot spin, short enough to go unnoticed.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The runtime the workers and the upkeep run on (see the module's notes).
/// Dropping it abandons what still runs on it, as the end of the process
/// would: call it after [`join_within`].
#[derive(Debug)]
pub struct Background {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Background {
    /// Starts its thread, named `eye-work`, as its blocking threads are.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eye-work")
            .on_thread_start(crate::priority::lower_this_thread)
            .enable_all()
            .build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Where to spawn: [`spawn_workers`] and [`spawn_upkeep`] take it.
    pub fn handle(&self) -> &Handle {
        self.runtime.as_ref().expect("the runtime lives until dropped").handle()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Not a plain drop, which blocks and may not be called from async code.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Starts `count` copies of `worker` on `runtime`, each restarted if it
/// panics, until `stop`.
pub fn spawn_workers(runtime: &Handle, worker: &Worker, count: usize, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    (0..count)
        .map(|n| {
            let (worker, stop) = (worker.clone(), stop.clone());
            let metrics = worker.metrics().clone();
            let on_panic = move || metrics.panicked("worker");
            runtime.spawn(supervise(format!("worker {n}"), stop.clone(), on_panic, move || {
                worker.clone().run(stop.clone())
            }))
        })
        .collect()
}

/// Starts the upkeep of the store beside the workers, on `runtime`: at once, then every
/// `every` (`upkeep_interval_secs`), [`crate::lifecycle::upkeep`] (partitions,
/// merging rollup deltas, retention), restarted if it panics, until `stop`
/// (which abandons a step in hand: its transaction rolls back).
pub fn spawn_upkeep(
    runtime: &Handle,
    store: Arc<dyn Store>,
    retention: Retention,
    every: Duration,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let stop = stop.clone();
    runtime.spawn(supervise(
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice and name of the thread this runs on.
    fn this_thread() -> (i32, String) {
        let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("this thread's nice");
        (nice, std::thread::current().name().unwrap_or_default().to_string())
    }

    #[tokio::test]
    async fn background_tasks_and_their_blocking_calls_run_apart_at_a_lower_priority() {
        let (mine, _) = this_thread();
        let background = Background::start().unwrap();
        let (task, blocking) = background
            .handle()
            .spawn(async { (this_thread(), tokio::task::spawn_blocking(this_thread).await.unwrap()) })
            .await
            .unwrap();
        for (nice, name) in [task, blocking] {
            assert_eq!(name, "eye-work");
            assert!(nice > mine || nice == 19, "a background thread at nice {nice}, the caller at {mine}");
        }
        // Dropped inside async code: it must not block or panic.
        drop(background);
    }
}
