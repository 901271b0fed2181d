//! The HTTP server: connections, their timeouts and their cap, and a shutdown
//! that does not wait on clients that send nothing.
//!
//! `axum::serve` has no header-read or idle timeout and no connection cap, so
//! one client holding thousands of half-sent requests open exhausted the file
//! limit and took `/healthz` down with it. This module accepts connections
//! itself and serves each with hyper, watching three things per connection:
//!
//! - **Head timeout** (`header_read_timeout_secs`): a new connection, and a
//!   kept-alive one that has begun a request, must complete the request's head
//!   within it. Trickling a byte every few seconds does not reset it.
//! - **Idle timeout** (`idle_timeout_secs`): a kept-alive connection with no
//!   request under way is closed after it.
//! - **Cap** (`max_connections`): at the cap, a new connection replaces the one
//!   that has been idle (or sending its head) the longest; if every connection
//!   has a request in progress, the newcomer gets a 503 with `Retry-After` and
//!   is closed. So a flood of slow clients cannot keep a normal one out.
//!
//! A connection is *busy* from the moment its request's head is read until
//! its response body has been sent; the request timeout covers that part.
//! On shutdown the listener closes, connections that are not busy are closed
//! at once, and busy ones finish their request (hyper's graceful shutdown).

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What the server allows a connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to send a request's head.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may sit idle.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// hyper's read buffer: past it a head is refused by hyper itself (a bare
    /// 431); the app's own, smaller limits answer with a JSON body first.
    pub max_buf_size: usize,
}

/// Rejections of connections when every slot was busy, written at most this
/// many at a time; past it a connection is just closed.
const MAX_PENDING_REJECTIONS: usize = 256;

/// One connection's state, shared by its watchdog, its I/O and its requests.
#[derive(Debug)]
struct Conn {
    /// Requests read and not yet fully answered.
    busy: AtomicU32,
    /// Requests answered on this connection.
    served: AtomicU64,
    /// When the connection last became idle (ms since the server's epoch).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived, plus one; 0 for none yet.
    head_started: AtomicU64,
    /// Cancelled to drop the connection now (evicted, or the deadline passed).
    close: CancellationToken,
}

/// The open connections.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let conn = Arc::new(Conn {
            busy: AtomicU32::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            head_started: AtomicU64::new(0),
            close: CancellationToken::new(),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(id, conn.clone());
        }
        (id, conn)
    }

    fn remove(&self, id: u64) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.remove(&id);
        }
    }

    /// Closes the connection that has waited longest without a request in
    /// progress; false when every connection is busy.
    fn evict_one(&self) -> bool {
        let Ok(mut conns) = self.conns.lock() else { return false };
        let victim = conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
            .min_by_key(|(_, c)| match c.head_started.load(Ordering::SeqCst) {
                0 => c.idle_since.load(Ordering::SeqCst),
                started => started - 1,
            })
            .map(|(id, _)| *id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(conn) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes every connection that is not busy (shutdown).
    fn close_idle(&self) {
        if let Ok(conns) = self.conns.lock() {
            for conn in conns.values().filter(|c| c.busy.load(Ordering::SeqCst) == 0) {
                conn.close.cancel();
            }
        }
    }

    /// Closes every connection (the shutdown deadline passed).
    fn close_all(&self) {
        if let Ok(conns) = self.conns.lock() {
            for conn in conns.values() {
                conn.close.cancel();
            }
        }
    }
}

impl Conn {
    /// When this connection must have made progress by, if it is not busy;
    /// `None` while a request is in progress (the request timeout rules then).
    fn deadline(&self, limits: &ConnectionLimits) -> Option<u64> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let head = limits.header_read_timeout.as_millis() as u64;
        Some(match self.head_started.load(Ordering::SeqCst) {
            0 if self.served.load(Ordering::SeqCst) == 0 => self.idle_since.load(Ordering::SeqCst) + head,
            0 => self.idle_since.load(Ordering::SeqCst) + limits.idle_timeout.as_millis() as u64,
            started => started - 1 + head,
        })
    }
}

/// Marks its connection busy for as long as it lives: from the request's head
/// until the response body is dropped, which hyper does once it is sent.
#[derive(Debug)]
struct Busy {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Busy {
    fn begin(conn: &Arc<Conn>, registry: &Arc<Registry>) -> Self {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        conn.head_started.store(0, Ordering::SeqCst);
        Self { conn: conn.clone(), registry: registry.clone() }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.served.fetch_add(1, Ordering::SeqCst);
        self.conn.idle_since.store(self.registry.now_ms(), Ordering::SeqCst);
        self.conn.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection busy until it is dropped.
struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when the first byte of a new request's head arrives.
struct TrackedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let conn = &self.conn;
            if conn.busy.load(Ordering::SeqCst) == 0 {
                let now = self.registry.now_ms() + 1;
                let _ = conn.head_started.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops
/// accepting, closes idle connections, lets busy ones finish their request,
/// and returns when all are closed or `drain` has passed (closing the rest).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let registry = Arc::new(Registry { epoch: Instant::now(), conns: Mutex::default(), next_id: AtomicU64::new(0) });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The head timeout is ours (hyper's would also cut idle keep-alive at the same value).
    // Half-close: while a request is being answered, hyper would otherwise read
    // the socket once more to notice a client that hung up, which costs every
    // request a `recvfrom` and a fresh read buffer (the last one still holds
    // the body). Such a request now runs to its end, bounded by the request
    // timeout, and its answer goes nowhere; a collector request is acted on
    // (queued) either way, and a streamed export stops at its first failed write.
    builder.http1().header_read_timeout(None).max_buf_size(limits.max_buf_size).half_close(true);
    let builder = Arc::new(builder);
    let rejections = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_REJECTIONS));
    let tracker = tokio_util::task::TaskTracker::new();

    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        if registry.len() >= limits.max_connections && !registry.evict_one() {
            reject(stream, &rejections);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, conn) = registry.add();
        tracker.spawn(serve_connection(
            stream,
            remote,
            (id, conn),
            registry.clone(),
            router.clone(),
            builder.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    registry.close_idle();
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(deadline = ?drain, "requests still in flight at the deadline; closing them");
        registry.close_all();
        tracker.wait().await;
    }
}

/// An accept error: the per-connection ones are the client's business; running
/// out of file descriptors is logged and waited out, not spun on.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in a moment");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Every connection is busy: say so with a 503 and close, without waiting on the client.
fn reject(mut stream: TcpStream, pending: &Arc<tokio::sync::Semaphore>) {
    let Ok(permit) = pending.clone().try_acquire_owned() else { return };
    tokio::spawn(async move {
        let body = r#"{"error":{"code":"too_many_connections","message":"the server is at its connection limit; try again shortly"}}"#;
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
        drop(permit);
    });
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    (id, conn): (u64, Arc<Conn>),
    registry: Arc<Registry>,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(TrackedIo { inner: stream, conn: conn.clone(), registry: registry.clone() });
    let service = hyper::service::service_fn({
        let (conn, registry) = (conn.clone(), registry.clone());
        move |request: hyper::Request<Incoming>| {
            let busy = Busy::begin(&conn, &registry);
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            let router = router.clone();
            async move {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|inner| TrackedBody { inner, _busy: busy }))
            }
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = conn.deadline(&limits);
        let wake = match deadline {
            Some(ms) => registry.epoch + Duration::from_millis(ms),
            // Busy: look again later; the request timeout bounds the request itself.
            None => Instant::now() + limits.header_read_timeout,
        };
        tokio::select! {
            _ = connection.as_mut() => break,
            _ = conn.close.cancelled() => break,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                if conn.busy.load(Ordering::SeqCst) == 0 {
                    break;
                }
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(wake) => {
                if conn.deadline(&limits).is_some_and(|ms| registry.now_ms() >= ms) {
                    tracing::debug!("closing a connection that sent no complete request in time");
                    break;
                }
            }
        }
    }
    registry.remove(id);
}

/// The open-file limit, raised to its hard ceiling, and the connection cap it
/// leaves room for: `wanted`, or less with a warning when the limit is low
/// (a few hundred descriptors stay for databases, the spool and logs).
pub fn fit_connection_cap(wanted: usize) -> usize {
    const RESERVED: u64 = 256;
    let limit = raise_file_limit();
    match limit {
        Some(limit) if (wanted as u64) + RESERVED > limit => {
            let cap = limit.saturating_sub(RESERVED).max(16) as usize;
            tracing::warn!(
                wanted,
                cap,
                file_limit = limit,
                "max_connections does not fit the open-file limit; using a lower cap (raise `ulimit -n` for more)"
            );
            cap
        }
        _ => wanted,
    }
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
fn raise_file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if setrlimit(Resource::Nofile, limit).is_err() {
            return getrlimit(Resource::Nofile).current;
        }
    }
    limit.current
}
