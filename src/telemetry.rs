//! Logs: `tracing`, filtered by `THE_EYE_LOG` (or `RUST_LOG`), as text or JSON lines.
//!
//! Logging must never stop the pipeline. Two things could, with the plain
//! stderr writer: a write error (stderr on a full disk, `/dev/full`, a pipe
//! whose reader exited) made tracing-subscriber report it with `eprintln!`,
//! which panics, killing whatever task was logging — the spool writer or a
//! worker; and a log pipe whose reader stalls blocks the writing thread. So
//! lines go through a bounded channel to a thread of their own
//! (tracing-appender's non-blocking writer, lossy): a line that cannot be
//! written, or finds the channel full, is dropped and counted, and internal
//! write errors are not reported through stderr.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines waiting for the log thread before new ones are dropped.
const BUFFERED_LINES: usize = 16_384;

/// Keeps the log thread running; dropping it flushes what is buffered.
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

/// Installs the global subscriber; logs go to stderr so stdout stays for
/// command output. Keep the guard until the process ends.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = std::env::var("THE_EYE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into());
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("the-eye-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_writer(writer);
    // try_init: a second call (tests) keeps the first subscriber.
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    LogGuard(installed.ok().map(|()| guard))
}
