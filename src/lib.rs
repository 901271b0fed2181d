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
//! - [`hosts`]: every request's `Host` must be an allowed host (400 otherwise).
//! - [`ingest`]: `POST /collector`. Media type, rate limits, write key and origin
//!   (`ingest::trust`, with CORS), size limits, gzip, nesting depth, JSON; one id
//!   per event (the client's, or derived from content); enqueue; 202.
//! - [`queue`]: the [`queue::Queue`] trait, the embedded [`queue::Spool`]
//!   (SQLite, WAL, fsync'd group commit) and [`queue::RedisQueue`] (Redis
//!   Streams). `Ok` from `enqueue` means durable; claims are leases.
//! - [`worker`]: claim a batch, validate with [`domain`], write events and errors
//!   in one transaction, acknowledge; retries, poison entries, shutdown.
//! - [`store`]: the [`store::Store`] trait, [`store::SqliteStore`] and
//!   [`store::PostgresStore`]; the only place with SQL. Inserts are idempotent
//!   on `event_id`, and an id is an event or an error, never both.
//! - [`api`]: the read API (`/api/events`, `/api/errors`), bearer tokens,
//!   `/healthz`, `/readyz`.
//! - [`domain`]: events, timestamps, ids, categories and the validation rules;
//!   pure code with no I/O.
//! - [`config`]: one typed [`config::Settings`], layered defaults < file < env < flags.
//! - [`app`]: shared state, the router, and `serve` with two-phase shutdown.
//! - [`server`]: accepting connections: head and idle timeouts, the cap.
//! - [`tasks`]: workers under a supervisor, joined with a deadline.
//! - [`paging`]: `limit`, time bounds and keyset cursors, for the API and the admin.
//! - [`rate`]: rate limits (GCRA) keyed by address or application, on the app's clock.
//! - [`peer`]: the client's address, directly or through a trusted proxy.
//! - [`templates`]: every HTML template, in one strict environment.
//! - [`telemetry`]: logs that can never stop the pipeline.
//! - [`admin`]: the admin panel: users (`createsuperuser`, argon2id), login,
//!   sessions, CSRF, security headers; dashboard, events, sessions, errors with
//!   replay, categories and schemas, applications, audit log.
//! - [`website`]: the browser tracker `/static/eye.js` and the demo website
//!   `/website/` that uses it.
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
pub mod paging;
pub mod peer;
pub mod queue;
pub mod rate;
pub mod server;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod templates;
pub mod website;
pub mod worker;
