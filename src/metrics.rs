//! Prometheus metrics, one registry per app (so tests that run side by side
//! in one process each count their own), rendered at `GET /metrics`.
//!
//! Every stage records into a shared [`Metrics`]; gauges that describe the
//! queue are read from it when scraped. Names start with `the_eye_`;
//! counters end in `_total` and latencies are histograms in seconds.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// An HTTP answer: method, route template, status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST`, … (see [`method_label`]).
    pub method: &'static str,
    /// The route template (`/api/events/{event_id}`), or `(no route)`.
    pub route: String,
    /// The status code.
    pub status: u16,
}

/// A route template.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
}

/// A stable error or reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The code, as in error bodies and event errors.
    pub code: String,
}

/// Where a panic was caught.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PanicLabels {
    /// `validation`, `worker` or `spool_writer`.
    pub task: String,
}

/// The build this process runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// A method as a label: the nine methods of RFC 9110 by name, any other as
/// `other`. A client may send any token as its method; labelled verbatim,
/// each made-up one would start series that live as long as the process.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

fn latency() -> Histogram {
    // 0.1 ms to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn sizes() -> Histogram {
    // 1 to 4096 entries.
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Every metric of the service.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Answers by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Time to answer, by route.
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Events the collector acknowledged (202).
    pub events_accepted: Counter,
    /// Collector requests refused, by error code (`rate_limited`, `queue_full`, …).
    pub requests_refused: Family<CodeLabels, Counter>,
    /// Entries not yet acknowledged; set when scraped.
    pub queue_depth: Gauge,
    /// Entries a worker holds now; set when scraped.
    pub queue_in_flight: Gauge,
    /// Age of the oldest entry not yet acknowledged; set when scraped.
    pub queue_oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Time of one spool group commit (its fsync included).
    pub spool_commit_seconds: Histogram,
    /// Entries appended by one spool group commit.
    pub spool_group_size: Histogram,
    /// Entries a worker took in one batch.
    pub worker_batch_size: Histogram,
    /// Time of one store write of a batch.
    pub store_write_seconds: Histogram,
    /// Store writes, acks and releases a worker had to retry.
    pub store_retries: Counter,
    /// Events written to the store.
    pub events_stored: Counter,
    /// Event errors written, by reason code (an error with two reasons counts under both).
    pub event_errors: Family<CodeLabels, Counter>,
    /// Panics caught, by where.
    pub panics: Family<PanicLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("the_eye");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency),
            events_accepted: Counter::default(),
            requests_refused: Family::default(),
            queue_depth: Gauge::default(),
            queue_in_flight: Gauge::default(),
            queue_oldest_age_seconds: Gauge::default(),
            spool_commit_seconds: latency(),
            spool_group_size: sizes(),
            worker_batch_size: sizes(),
            store_write_seconds: latency(),
            store_retries: Counter::default(),
            events_stored: Counter::default(),
            event_errors: Family::default(),
            panics: Family::default(),
        };
        r.register("http_requests", "HTTP answers by method, route template and status", m.http_requests.clone());
        r.register("http_request_duration_seconds", "Time to answer, by route template", m.http_duration.clone());
        r.register("events_accepted", "Events acknowledged by the collector (202)", m.events_accepted.clone());
        r.register("requests_refused", "Collector requests refused, by error code", m.requests_refused.clone());
        r.register("queue_depth", "Queue entries not yet acknowledged", m.queue_depth.clone());
        r.register("queue_in_flight", "Queue entries held by a worker now", m.queue_in_flight.clone());
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest queue entry not yet acknowledged (0 when empty)",
            m.queue_oldest_age_seconds.clone(),
        );
        r.register("spool_commit_seconds", "Time of one spool group commit", m.spool_commit_seconds.clone());
        r.register("spool_group_size", "Entries appended by one spool group commit", m.spool_group_size.clone());
        r.register("worker_batch_size", "Entries a worker took in one batch", m.worker_batch_size.clone());
        r.register("store_write_seconds", "Time of one store write of a batch", m.store_write_seconds.clone());
        r.register("store_retries", "Store writes, acks and releases retried by workers", m.store_retries.clone());
        r.register("events_stored", "Events written to the store", m.events_stored.clone());
        r.register("event_errors", "Event errors written, by reason code", m.event_errors.clone());
        r.register("panics", "Panics caught, by task", m.panics.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        r.register("build_info", "The running build (always 1)", build);
        if let Ok(mut registry) = m.registry.lock() {
            *registry = r;
        }
        // Known label values start at zero, so `increase()` sees the first one.
        for task in ["validation", "worker", "spool_writer"] {
            m.panics.get_or_create(&PanicLabels { task: task.into() }).inc_by(0);
        }
        m
    }

    /// Counts a panic caught in `task`.
    pub fn panicked(&self, task: &str) {
        self.panics.get_or_create(&PanicLabels { task: task.into() }).inc();
    }

    /// Records one HTTP answer.
    pub fn http(&self, method: &axum::http::Method, route: &str, status: u16, took: Duration) {
        let labels = HttpLabels { method: method_label(method), route: route.into(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&RouteLabels { route: route.into() }).observe(took.as_secs_f64());
    }

    /// The Prometheus text (OpenMetrics) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_with_the_prefix() {
        let m = Metrics::new();
        m.events_accepted.inc_by(3);
        m.http(&axum::http::Method::POST, "/collector", 202, Duration::from_millis(2));
        m.panicked("worker");
        let text = m.render();
        assert!(text.contains("the_eye_events_accepted_total 3"), "{text}");
        assert!(
            text.contains(r#"the_eye_http_requests_total{method="POST",route="/collector",status="202"} 1"#),
            "{text}"
        );
        assert!(text.contains("the_eye_http_request_duration_seconds_bucket"), "{text}");
        assert!(text.contains(r#"the_eye_panics_total{task="worker"} 1"#), "{text}");
        assert!(text.contains(r#"the_eye_build_info{version="#), "{text}");
    }

    #[test]
    fn made_up_methods_share_one_series() {
        let m = Metrics::new();
        for method in ["FOO", "BAR1", "PROPFIND"] {
            m.http(&axum::http::Method::from_bytes(method.as_bytes()).unwrap(), "(no route)", 404, Duration::ZERO);
        }
        let text = m.render();
        assert!(
            text.contains(r#"the_eye_http_requests_total{method="other",route="(no route)",status="404"} 3"#),
            "{text}"
        );
        assert!(!text.contains("FOO") && !text.contains("PROPFIND"), "{text}");
    }
}
