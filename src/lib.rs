//! # The Eye
//!
//! A self-hosted collector of user-behaviour events. Websites post events; The Eye
//! acknowledges each one only once it is durable, validates it in the background,
//! and stores it as an **event** or, with every reason, as an **event error**.
//!
//! # Layout
//!
//! The modules follow the path of an event:
//!
//! ```text
//! HTTP ──► ingest ──► queue ──► worker ──► store ◄── api
//! ```
//!
//! Bottom up (a module imports only from lower rows; see
//! `docs/architecture.md` for the picture, checked by a test):
//!
//! - [`domain`]: events, timestamps, ids, the validation rules
//!   ([`domain::validate_json`]), the catalog, applications, allowed hosts,
//!   users and password rules; pure code with no I/O.
//! - [`store`]: the store's roles ([`store::EventSink`] for workers,
//!   [`store::EventReader`], [`store::Access`], [`store::Curation`];
//!   [`store::Store`] is all four), [`store::SqliteStore`] and
//!   [`store::PostgresStore`]; the only place with SQL. Inserts are idempotent
//!   on `event_id`, and an id is an event or an error, never both.
//! - [`queue`]: the [`queue::Queue`] trait, the embedded [`queue::Spool`]
//!   (SQLite, WAL, fsync'd group commit) and [`queue::RedisQueue`] (Redis
//!   Streams). `Ok` from `enqueue` means durable; claims are leases.
//! - [`metrics`]: Prometheus metrics, one registry per app.
//! - [`rate`]: rate limits (GCRA) keyed by address or application.
//! - [`config`]: [`config::RawSettings`] (the public names), layered defaults <
//!   file < env < flags, parsed once into typed sections ([`config::Settings`]).
//! - [`paging`]: `limit`, time bounds and keyset cursors, for the API and the admin.
//! - [`request_log`]: the access log (one line per request) and request ids.
//! - [`peer`]: the client's address, directly or through a trusted proxy.
//! - [`server`]: accepting connections: head and idle timeouts, the cap.
//! - [`templates`]: every HTML template, in one semi-strict environment.
//! - [`worker`]: claim a batch, validate, write events and errors in one
//!   transaction, acknowledge; retries, poison entries, shutdown.
//! - [`telemetry`]: logs that can never stop the pipeline.
//! - [`http_error`]: the `{"error": …}` shape; 404, 405, 414, 431.
//! - [`hosts`]: every request's `Host` must be an allowed host (400 otherwise).
//! - [`ingest`]: `POST /collector`. Media type, rate limits, write key and origin
//!   (`ingest::trust`, with CORS), size limits, gzip, nesting depth, JSON; one id
//!   per event (the client's, or derived from content); enqueue; 202.
//! - [`api`]: the read API (`/api/events`, `/api/errors`), bearer tokens,
//!   `/healthz`, `/readyz`.
//! - [`admin`]: the admin panel: the handler kit (an `Admin` extractor and
//!   `AdminError`), login, sessions, CSRF, throttling, security headers;
//!   dashboard, events, sessions, errors with replay, categories and schemas,
//!   applications, audit log.
//! - [`website`]: the browser tracker `/static/eye.js` and the demo website.
//! - [`tasks`]: workers under a supervisor, joined with a deadline.
//! - [`openapi`]: the OpenAPI 3.1 document of every JSON endpoint (utoipa).
//! - [`app`]: shared state, the router, and `serve` with two-phase shutdown.
//! - [`commands`]: what each subcommand of the `the-eye` binary does.

pub mod admin;
pub mod api;
pub mod app;
pub mod commands;
pub mod config;
pub mod domain;
pub mod hosts;
pub mod http_error;
pub mod ingest;
pub mod lifecycle;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod peer;
pub mod priority;
pub mod queue;
pub mod rate;
pub mod request_log;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod templates;
pub mod website;
pub mod worker;
