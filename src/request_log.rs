//! The access log and request ids.
//!
//! Every request gets an id: the client's `X-Request-Id` when it is sane (1 to
//! 64 characters of letters, digits, `-`, `_`, `.`), else a new one. It is
//! sent back in `X-Request-Id`, written in every `{"error": …}` body (see
//! [`current`]) and in the request's log line, so a user's report of an error
//! finds its line.
//!
//! One line per request at `info`, target `the_eye::access`: method, route
//! template (`/api/events/{id}`, never the path itself), status, latency and
//! response bytes. Never the client's address, a key, a token, a query string
//! or a payload. `THE_EYE_LOG=info,the_eye::access=off` turns it off.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use http_body::Body as _;

use crate::metrics::Metrics;

/// The header that carries the id both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    // Held as the header it is sent back in: cloning one shares its bytes.
    static REQUEST_ID: HeaderValue;
}

/// The id of the request being handled, if called while handling one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| String::from_utf8_lossy(id.as_bytes()).into_owned()).ok()
}

/// The client's id when it is one we can log and echo safely.
fn sane(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let ok = (1..=64).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| value.clone())
}

/// A new id: a UUIDv7 in 32 hex digits, so ids sort by time.
fn new_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    let hex = uuid::Uuid::now_v7().simple().encode_lower(&mut buf);
    HeaderValue::from_str(hex).unwrap_or(HeaderValue::from_static("-"))
}

/// Gives the request its id, lets `handle` answer it with that id in scope
/// (see [`current`]), then answers with the id, logs the request and counts it.
pub async fn logged<F, Fut>(metrics: &Metrics, request: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let id = request.headers().get(&HEADER).and_then(sane).unwrap_or_else(new_id);
    let method = request.method().clone();
    // Known only once routed; the middleware is a route layer, so it is here.
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let mut response = REQUEST_ID.scope(id.clone(), handle(request)).await;
    let bytes = response.body().size_hint().exact();
    let route = route.as_deref().unwrap_or("(no route)");
    metrics.http(&method, route, response.status().as_u16(), started.elapsed());
    tracing::info!(
        target: "the_eye::access",
        method = %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        bytes,
        request_id = id.to_str().unwrap_or_default(),
        "request"
    );
    response.headers_mut().insert(HEADER, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        for ok in ["abc", "0190a1b2-c3d4", "trace_1.2"] {
            assert_eq!(sane(&HeaderValue::from_static(ok)), Some(HeaderValue::from_static(ok)));
        }
        for bad in ["", "a b", "x;y", "<script>"] {
            assert_eq!(sane(&HeaderValue::from_str(bad).unwrap()), None, "{bad:?}");
        }
        assert_eq!(sane(&HeaderValue::from_str(&"x".repeat(65)).unwrap()), None);
    }

    #[test]
    fn new_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit), "{a:?}");
        assert_ne!(a, b);
    }
}
