//! The workers validate on threads of their own, at a lower CPU priority.
//!
//! Validating a batch of a thousand events takes milliseconds of CPU. On the
//! runtime's threads it would hold one of the threads that answer requests
//! for that long; on two cores the acknowledgements queue behind it. A
//! validation thread runs at the nice of [`crate::priority`], so the
//! scheduler hands the CPU to the HTTP threads and the spool whenever they
//! want it, and the batch gets every cycle left over. A worker hands its
//! batch over once and awaits the result, so the cost is one hand-off a
//! batch, not an event.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Threads (named `eye-validate-N`) that run the workers' validation.
#[derive(Debug)]
pub(super) struct Validators {
    jobs: mpsc::Sender<Job>,
}

impl Validators {
    /// Starts `threads` validation threads (at least one); they end when the
    /// last handle to this is dropped.
    pub(super) fn start(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("eye-validate-{n}")).spawn(move || {
                crate::priority::lower_this_thread();
                loop {
                    // The lock is released before the job runs.
                    let next = match queue.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => return,
                    };
                    // Every handle is gone: nothing more will come.
                    let Ok(job) = next else { return };
                    // The only jobs are `run`'s, which catch their closure's
                    // panic and hand it to the caller, so the thread goes on.
                    job();
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a validation thread; validating on the runtime's threads");
            }
        }
        Self { jobs }
    }

    /// Runs `f` on a validation thread and awaits its result; on the calling
    /// thread if no validation thread is running. A panic in `f` is resumed
    /// in the caller, as if `f` had run there.
    pub(super) async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            job();
        }
        match answer.await {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("a validation thread dropped its job"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_a_validation_thread_and_a_panic_reaches_the_caller() {
        let validators = Validators::start(1);
        let name = validators.run(|| std::thread::current().name().map(str::to_string)).await;
        assert_eq!(name.as_deref(), Some("eye-validate-0"));

        let caught = AssertUnwindSafe(validators.run(|| -> u32 { panic!("boom") }));
        let caught = futures_util::FutureExt::catch_unwind(caught).await;
        assert!(caught.is_err(), "the panic is the caller's");
        assert_eq!(validators.run(|| 41 + 1).await, 42, "the thread survives a panicking job");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn validation_threads_run_at_a_lower_priority() {
        let validators = Validators::start(1);
        let mine = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let theirs =
            validators.run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()).await;
        assert!(theirs > mine || theirs == 19, "validation at nice {theirs}, the caller at {mine}");
    }
}
