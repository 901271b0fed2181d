//! Who may send: write keys, origins and CORS.
//!
//! The rules, in order:
//! - A request names its application by key: `X-Eye-Key`, or `?key=` for
//!   `navigator.sendBeacon`, which cannot set headers. Unknown or revoked key: 401.
//! - A *browser* request (it has `Origin`, or only `Referer`) must come from one
//!   of that application's origins: 403 otherwise.
//! - An application with origins has a *browser* key, public by nature: a
//!   request with it and without any origin is refused (403), or anyone could
//!   replay the key from a script.
//! - An application without origins has a *server* key: it may send without an
//!   origin, but never from a browser (403), which would expose it.
//! - A request without a key is accepted only when its origin belongs to
//!   exactly one active application.
//! - CORS answers name only allowed origins.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::IngestError;
use crate::app::AppState;
use crate::domain::application::normalize_origin;
use crate::domain::Application;
use crate::http_error::error_response;
use crate::store::{Access, StoreError};

/// The active applications, indexed for the two look-ups a request needs.
#[derive(Debug, Default)]
pub struct AppIndex {
    by_key: HashMap<String, Application>,
    /// Active applications by each of their origins.
    by_origin: HashMap<String, Vec<Application>>,
}

impl AppIndex {
    fn new(apps: Vec<Application>) -> Self {
        let mut index = Self::default();
        for app in apps {
            if app.active {
                for origin in &app.origins {
                    index.by_origin.entry(origin.clone()).or_default().push(app.clone());
                }
            }
            index.by_key.insert(app.key.clone(), app);
        }
        index
    }

    /// True when some active application accepts this origin.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.by_origin.contains_key(origin)
    }
}

/// The applications, reloaded from the store when older than `max_age`, and
/// when a request names a key or origin the copy does not know: such a request
/// waits for a reload that *began after it arrived* before it is refused, so
/// a new application can send right after `the-eye apps create` (its first
/// requests used to get 401 for up to two seconds, and clients drop events
/// on a 401). Concurrent misses share one reload, and reloads for misses start
/// at most every 100 ms, so a stream of made-up keys costs the
/// store ten small queries a second at most.
#[derive(Debug)]
pub struct AppCache {
    store: Arc<dyn Access>,
    max_age: Duration,
    /// The index and when the load that made it began.
    current: Mutex<Option<(Instant, Arc<AppIndex>)>>,
}

/// Least time between two reloads caused by unknown keys or origins.
const MISS_RELOAD_GAP: Duration = Duration::from_millis(100);

impl AppCache {
    /// A cache over `store` that reloads after `max_age`.
    pub fn new(store: Arc<dyn Access>, max_age: Duration) -> Self {
        Self { store, max_age, current: Mutex::new(None) }
    }

    /// The index, reloaded unless the one in hand was loaded (began loading)
    /// at or after `fresh_since`, or is younger than `max_age` when that is `None`.
    async fn load(&self, fresh_since: Option<Instant>) -> Result<Arc<AppIndex>, StoreError> {
        // Holding the lock across the query is what coalesces: a request that
        // waited here finds the index a concurrent reload just made.
        let mut current = self.current.lock().await;
        if let Some((loaded, index)) = current.as_ref() {
            let fresh = match fresh_since {
                Some(since) => *loaded >= since,
                None => loaded.elapsed() < self.max_age,
            };
            if fresh {
                return Ok(index.clone());
            }
            if fresh_since.is_some() {
                // A reload for a miss: not sooner than the gap after the last one.
                tokio::time::sleep_until(*loaded + MISS_RELOAD_GAP).await;
            }
        }
        let started = Instant::now();
        match self.store.applications().await {
            Ok(apps) => {
                let index = Arc::new(AppIndex::new(apps));
                *current = Some((started, index.clone()));
                Ok(index)
            }
            // A store outage must not stop ingest: keep deciding with the last
            // known applications (revocations wait for the store to return).
            Err(e) => match current.as_mut() {
                Some((loaded, index)) => {
                    tracing::warn!(error = %e, "cannot reload applications; using the last known ones");
                    *loaded = Instant::now();
                    Ok(index.clone())
                }
                None => Err(e),
            },
        }
    }

    /// The current index.
    pub async fn index(&self) -> Result<Arc<AppIndex>, StoreError> {
        self.load(None).await
    }

    /// Reloads now (after `the-eye apps create` in the same process, say).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        self.load(Some(Instant::now())).await.map(|_| ())
    }

    /// The index, reloaded first if it does not know what the request names
    /// (`known` is false): by a reload that began after the request arrived.
    async fn index_knowing(&self, known: impl Fn(&AppIndex) -> bool) -> Result<Arc<AppIndex>, StoreError> {
        let arrived = Instant::now();
        let index = self.load(None).await?;
        if known(&index) {
            return Ok(index);
        }
        self.load(Some(arrived)).await
    }
}

/// The request's origin: `Origin`, or else the origin of `Referer`.
/// `Some(None)` for a browser request from an origin that is not http(s)
/// (`Origin: null` from a sandbox or a file): such a request is never allowed.
pub fn request_origin(headers: &HeaderMap) -> Option<Option<String>> {
    let value = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER))?;
    Some(value.to_str().ok().and_then(normalize_origin))
}

/// The write key: `X-Eye-Key`, or the `key` query parameter.
fn request_key(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers.get("x-eye-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    uri.query()?.split('&').find_map(|pair| pair.strip_prefix("key=")).map(str::to_string)
}

/// Decides which application a request comes from, or why it may not send.
pub async fn authorize(cache: &AppCache, headers: &HeaderMap, uri: &Uri) -> Result<Application, IngestError> {
    let origin = request_origin(headers);
    let unavailable = |e: StoreError| {
        tracing::error!(error = %e, "cannot load applications");
        IngestError::StoreUnavailable
    };
    let Some(key) = request_key(headers, uri) else {
        let wanted = origin.clone().flatten();
        let index =
            cache.index_knowing(|i| wanted.as_ref().is_none_or(|o| i.origin_allowed(o))).await.map_err(unavailable)?;
        return match origin {
            None => Err(IngestError::Unauthorized(
                "no write key: send X-Eye-Key (or ?key=) with your application's key".into(),
            )),
            Some(None) => Err(IngestError::Forbidden("this origin may not send events".into())),
            Some(Some(o)) => match index.by_origin.get(&o).map(Vec::as_slice) {
                Some([app]) => Ok(app.clone()),
                Some([_, _, ..]) => Err(IngestError::Unauthorized(
                    "several applications use this origin: send X-Eye-Key to say which".into(),
                )),
                _ => Err(IngestError::Forbidden(format!("origin {o} may not send events"))),
            },
        };
    };
    let index = cache.index_knowing(|i| i.by_key.contains_key(&key)).await.map_err(unavailable)?;
    let app = match index.by_key.get(&key) {
        None => return Err(IngestError::Unauthorized("unknown write key".into())),
        Some(app) if !app.active => {
            return Err(IngestError::Unauthorized(format!("application {:?} has been revoked", app.name)))
        }
        Some(app) => app,
    };
    match (origin, app.is_server()) {
        (None, true) => Ok(app.clone()),
        (None, false) => Err(IngestError::Forbidden(
            "this is a browser key: requests must come from one of the application's origins".into(),
        )),
        (Some(_), true) => Err(IngestError::Forbidden(
            "this is a server key: it must not be used from a browser, where anyone could read it".into(),
        )),
        (Some(Some(o)), false) if app.origins.contains(&o) => Ok(app.clone()),
        (Some(Some(o)), false) => {
            Err(IngestError::Forbidden(format!("origin {o} is not one of application {:?}'s origins", app.name)))
        }
        (Some(None), false) => Err(IngestError::Forbidden("this origin may not send events".into())),
    }
}

/// Adds `Access-Control-Allow-Origin` for an allowed origin, and `Vary: Origin` always.
pub fn add_cors(response: &mut Response, origin: Option<&str>, index: Option<&AppIndex>) {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let (Some(origin), Some(index)) = (origin, index) {
        if index.origin_allowed(origin) {
            if let Ok(v) = HeaderValue::from_str(origin) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
        }
    }
}

/// `OPTIONS /collector`: the CORS preflight, answered only for allowed origins.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let origin = request_origin(&headers).flatten();
    let index = match state.apps.index().await {
        Ok(index) => index,
        Err(e) => {
            tracing::error!(error = %e, "cannot load applications");
            return IngestError::StoreUnavailable.into_response();
        }
    };
    match origin.filter(|o| index.origin_allowed(o)) {
        Some(origin) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            add_cors(&mut response, Some(&origin), Some(&index));
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type, Content-Encoding, X-Eye-Key"),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
            response
        }
        None => {
            let mut response =
                error_response(StatusCode::FORBIDDEN, "forbidden_origin", "this origin may not send events");
            add_cors(&mut response, None, None);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_comes_from_origin_or_else_referer() {
        let mut h = HeaderMap::new();
        assert_eq!(request_origin(&h), None);
        h.insert(header::REFERER, HeaderValue::from_static("https://shop.example.com/cart?x=1"));
        assert_eq!(request_origin(&h), Some(Some("https://shop.example.com".into())));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert_eq!(request_origin(&h), Some(None));
    }

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let mut h = HeaderMap::new();
        let uri: Uri = "/collector?a=1&key=eye_wk_abc".parse().unwrap();
        assert_eq!(request_key(&h, &uri), Some("eye_wk_abc".into()));
        h.insert("x-eye-key", HeaderValue::from_static("eye_wk_header"));
        assert_eq!(request_key(&h, &uri), Some("eye_wk_header".into()));
        assert_eq!(request_key(&HeaderMap::new(), &"/collector".parse().unwrap()), None);
    }
}
