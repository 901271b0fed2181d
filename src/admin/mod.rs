//! The admin panel: server-rendered pages for the people who look after the
//! events.
//!
//! - [`kit`]: what every signed-in handler is written with: the `Admin`
//!   extractor (state and user together) and `AdminError`, whose pages are
//!   rendered inside the admin frame.
//! - [`throttle`]: login throttling that cannot be used to lock an owner out.
//! - [`users`]: admin users (`the-eye createsuperuser`, argon2id, password rules).
//! - [`web`]: the frame — login, logout, sessions, the one CSRF check every
//!   POST goes through, security headers, templates, change of password and
//!   the audit log.
//! - `dashboard`: charts by category (server-side SVG), totals, error rate,
//!   queue depth, newest events.
//! - `events`: list with filters and search, detail, delete, session timelines.
//! - `errors`: list with filters, detail, delete and replay.
//! - `catalog`: categories and event types with JSON Schemas, with a preview.
//! - `applications`: who may send: keys, origins, revocation.
//! - `tokens`: read-API tokens: when each was last used, and revocation.

mod applications;
mod catalog;
mod dashboard;
mod errors;
mod events;
pub mod kit;
pub mod throttle;
mod tokens;
pub mod users;
pub mod web;
