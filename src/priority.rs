//! Background threads yield the CPU to the requests' threads.
//!
//! A request waits for the spool's commit and nothing else; the workers'
//! validation, the store's writer (a batch's inserts, its B-tree and WAL
//! work) and its checkpointer only have to keep up on average. On two cores
//! they contend, and a request whose HTTP thread waits behind a batch is the
//! slow tail of the acknowledgements. So those threads run at a nice of
//! [`NICE`]: the scheduler still gives them every cycle nobody else
//! wants, and the spool and the HTTP threads come first. Measured in
//! docs/benchmarks.md, in turns: for the store's threads ("Fourth session")
//! the ack p99 at half the single-event rate fell from 5.0 to 4.4 ms on the
//! medians and the full single-event rate rose (24,300 to 26,200 events/s);
//! for validation ("Fifth session") the full rate rose another 6 %.
//!
//! Linux keeps a nice value per thread; sqlx starts one thread for each
//! SQLite connection and names it, so the store's threads are found by name
//! in `/proc/self/task`; the workers' validation threads lower their own
//! (see `worker::validation`), and so do the threads of the runtime the
//! workers run on (`tasks::Background`; twenty-sixth session). Elsewhere
//! this does nothing.

/// The nice value of background threads (0 is the default, 19 the lowest).
const NICE: i32 = 10;

/// Lowers the CPU priority of this process's threads whose name starts with
/// `prefix` to [`NICE`]. Failing to is not an error: everything works the
/// same, only with the default priority.
pub fn lower_threads_named(prefix: &str) {
    #[cfg(target_os = "linux")]
    for tid in threads_named(prefix) {
        lower(tid);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = prefix;
}

/// Lowers the calling thread's CPU priority to [`NICE`], as above.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    lower(rustix::thread::gettid());
}

#[cfg(target_os = "linux")]
fn lower(tid: rustix::process::Pid) {
    let current = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if current < NICE {
        if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
            tracing::debug!(error = %e, "cannot lower the priority of a background thread");
        }
    }
}

/// The ids of this process's threads whose name starts with `prefix`.
#[cfg(target_os = "linux")]
pub(crate) fn threads_named(prefix: &str) -> Vec<rustix::process::Pid> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let tid: i32 = task.file_name().to_str()?.parse().ok()?;
            name.starts_with(prefix).then_some(rustix::process::Pid::from_raw(tid)?)
        })
        .collect()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_threads_are_lowered() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let named = std::thread::Builder::new()
            .name("eye-test-lower".into())
            .spawn(move || {
                tx.send(rustix::thread::gettid()).unwrap();
                done_rx.recv().unwrap();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let me = rustix::thread::gettid();
        let before = rustix::process::getpriority_process(Some(me)).unwrap();
        lower_threads_named("eye-test-lower");
        assert_eq!(rustix::process::getpriority_process(Some(tid)).unwrap(), NICE.max(before));
        assert_eq!(rustix::process::getpriority_process(Some(me)).unwrap(), before, "other threads keep theirs");
        done_tx.send(()).unwrap();
        named.join().unwrap();
    }
}
