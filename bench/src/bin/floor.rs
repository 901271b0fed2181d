//! The durable floor: the HTTP ceiling's bare axum server, but each request's
//! body is read and kept on disk before the 202, in a group commit: with
//! `--spool PATH` as one entry of The Eye's own spool (its writer thread, its
//! `synchronous=FULL` fsync), with `--log PATH` appended to a plain file and
//! `fdatasync`ed once a group. The 202 carries an answer shaped like the
//! collector's. Nothing else of The Eye runs: no key, no limits, no JSON
//! walk, no middleware, no metrics. What separates it from the ceiling is
//! what durability before the 202 costs on this machine; what separates The
//! Eye's ingest from it is everything else ingest does. It uses jemalloc, as
//! The Eye does, so that the two are compared with the same allocator.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use clap::Parser;
use the_eye::queue::{Body as Entry, Envelope, Queue, Spool};

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: String,
    /// Append each body to a spool at this path before answering.
    #[arg(long, required_unless_present = "log")]
    spool: Option<PathBuf>,
    /// Append each body to a plain file at this path instead, one `fdatasync`
    /// a group (the floor of any fsync-before-202 design here).
    #[arg(long, conflicts_with = "spool")]
    log: Option<PathBuf>,
    /// With `--log`: no writer thread; the request that finds no group being
    /// synced writes and syncs the waiting ones itself (leader and followers).
    /// An experiment (docs/benchmarks.md, sixteenth session): no faster here.
    #[arg(long, requires = "log")]
    leader: bool,
    /// Serve on this many threads, each with a single-threaded runtime and a
    /// listener of its own on the same address (`SO_REUSEPORT`), instead of
    /// one multi-threaded runtime. An experiment (docs/benchmarks.md).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    per_core: Option<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = match (&args.spool, &args.log) {
        (None, None) => anyhow::bail!("--spool PATH or --log PATH"),
        (None, Some(path)) if args.leader => {
            Router::new().route("/collector", post(lead_append)).with_state(Arc::new(Leader {
                file: std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
                state: std::sync::Mutex::new((Vec::new(), false)),
            }))
        }
        (None, Some(path)) => Router::new().route("/collector", post(log_append)).with_state(open_log(path)?),
        (Some(path), _) => {
            // As The Eye's defaults: a million entries, claims idle after 30 s.
            let spool = Spool::open(path, 1_000_000, Duration::from_secs(30)).await?;
            Router::new().route("/collector", post(append)).with_state(Arc::new(spool))
        }
    };
    if let Some(threads) = args.per_core {
        return serve_per_core(&args.listen, app, threads).await;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    eprintln!("floor server on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// `threads` threads, each serving `app` on a single-threaded runtime from a
/// listener of its own on `listen`; the kernel spreads connections among them.
async fn serve_per_core(listen: &str, app: Router, threads: u16) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = listen.parse()?;
    let mut handles = Vec::new();
    for n in 0..threads {
        let app = app.clone();
        handles.push(std::thread::Builder::new().name(format!("floor-{n}")).spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let socket = match addr {
                    std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                socket.set_reuseaddr(true)?;
                socket.set_reuseport(true)?;
                socket.bind(addr)?;
                let listener = socket.listen(1024)?;
                axum::serve(listener, app).await?;
                Ok(())
            })
        })?);
    }
    eprintln!("floor server on {addr}, {threads} single-threaded runtimes");
    tokio::task::spawn_blocking(move || {
        for handle in handles {
            handle.join().map_err(|_| anyhow::anyhow!("a serving thread panicked"))??;
        }
        Ok(())
    })
    .await?
}

/// One body, one entry, fsynced; then 202 `{"accepted":1,"ids":[…]}`.
async fn append(State(spool): State<Arc<Spool>>, request: Request) -> Response {
    let bytes = match read_body(request).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let Ok(json) = String::from_utf8(bytes.to_vec()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let event_id = uuid::Uuid::new_v4();
    let envelope = Envelope {
        event_id,
        received_at: chrono::Utc::now(),
        application: Some("floor".into()),
        body: Entry::Event(json),
    };
    match spool.enqueue(vec![envelope]).await {
        Ok(()) => accepted(event_id),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The request's body, or the 413 that refuses it.
async fn read_body(request: Request) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(request.into_body(), 1 << 20).await.map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())
}

/// Appends a group's bodies (each after its length) to `file`, syncs it, then
/// tells each request; false when the file failed.
fn write_group(file: &mut std::fs::File, group: Vec<Append>) -> bool {
    use std::io::Write;
    let mut buf = Vec::new();
    for (body, _) in &group {
        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
        buf.extend_from_slice(body);
    }
    if file.write_all(&buf).and_then(|()| file.sync_data()).is_err() {
        return false;
    }
    for (_, done) in group {
        let _ = done.send(());
    }
    true
}

/// A body and where to say it is on disk.
type Append = (bytes::Bytes, tokio::sync::oneshot::Sender<()>);

/// A thread that appends what the channel holds to the file and fsyncs once a
/// group: whatever arrived while the last group was being synced.
fn open_log(path: &std::path::Path) -> anyhow::Result<tokio::sync::mpsc::Sender<Append>> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Append>(1024);
    std::thread::spawn(move || {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while let Ok(next) = rx.try_recv() {
                group.push(next);
            }
            if !write_group(&mut file, group) {
                return;
            }
        }
    });
    Ok(tx)
}

/// One body, appended and fsynced; then the same 202 as [`append`].
async fn log_append(State(log): State<tokio::sync::mpsc::Sender<Append>>, request: Request) -> Response {
    let bytes = match read_body(request).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let (done, synced) = tokio::sync::oneshot::channel();
    if log.send((bytes, done)).await.is_err() || synced.await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    accepted(uuid::Uuid::new_v4())
}

/// 202 `{"accepted":1,"ids":[…]}`, shaped like the collector's answer.
fn accepted(event_id: uuid::Uuid) -> Response {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(format!(r#"{{"accepted":1,"ids":["{event_id}"]}}"#)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The leader-and-followers log: what waits, and whether a group is being synced.
#[derive(Debug)]
struct Leader {
    file: std::sync::Mutex<std::fs::File>,
    state: std::sync::Mutex<(Vec<Append>, bool)>,
}

/// One body: the first request to find no sync running syncs every waiting one.
async fn lead_append(State(log): State<Arc<Leader>>, request: Request) -> Response {
    let bytes = match read_body(request).await {
        Ok(bytes) => bytes,
        Err(refused) => return refused,
    };
    let (done, synced) = tokio::sync::oneshot::channel();
    let lead = {
        let Ok(mut state) = log.state.lock() else { return StatusCode::SERVICE_UNAVAILABLE.into_response() };
        state.0.push((bytes, done));
        !std::mem::replace(&mut state.1, true)
    };
    if lead {
        tokio::task::block_in_place(|| loop {
            let group = {
                let Ok(mut state) = log.state.lock() else { return };
                if state.0.is_empty() {
                    state.1 = false;
                    return;
                }
                std::mem::take(&mut state.0)
            };
            let Ok(mut file) = log.file.lock() else { return };
            if !write_group(&mut file, group) {
                return;
            }
        });
    }
    if synced.await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    accepted(uuid::Uuid::new_v4())
}
