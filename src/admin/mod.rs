//! The admin panel: server-rendered pages for the people who look after the
//! events.
//!
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

/// The row a lookup found; otherwise returns, from the handler, the page that
/// says why not: `$missing` when there is no such row, 503 when the store failed.
macro_rules! found {
    ($lookup:expr, $missing:expr) => {
        match $lookup {
            Ok(Some(found)) => found,
            Ok(None) => return $missing,
            Err(e) => return $crate::admin::web::unavailable(e),
        }
    };
}

mod applications;
mod catalog;
mod dashboard;
mod errors;
mod events;
pub mod throttle;
pub mod users;
pub mod web;
