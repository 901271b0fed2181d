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
//! - [`view`]: what the lists share: the period (presets and a date-time
//!   picker in the reader's zone), filter choices counted from the rollups,
//!   "N match" counts that stop at a cap, pages both ways, 30-day volumes.
//! - `dashboard`: charts by category (server-side SVG with a y-axis and a
//!   tooltip per bar), totals, error rate, queue depth, newest events.
//! - `live`: new events and event errors as they are stored, streamed as
//!   server-sent events from a poll of the store (so any process's writes).
//! - `events`: list with filters and search, detail, delete.
//! - `sessions`: the sessions list, and a session's story (summary, path,
//!   steps with the time between them, its errors in place) and erasure.
//! - `errors`: list with filters, detail with one-click catalog fixes,
//!   delete, and replay (in bulk after a confirmation that says how many).
//! - `catalog`: categories and event types with JSON Schemas, with a preview
//!   and their volumes.
//! - `applications`: who may send: keys, origins, revocation, volumes.
//! - `tokens`: read-API tokens: when each was last used, and revocation.
//!
//! Pages work without script; `static/admin.js` (the only script, allowed
//! by the CSP as `'self'`) shows times in the reader's zone, tells the
//! server the zone of the date-time pickers, folds filters on a phone and
//! runs the live view.

mod applications;
mod catalog;
mod dashboard;
mod errors;
mod events;
pub mod kit;
mod live;
mod sessions;
pub mod throttle;
mod tokens;
pub mod users;
pub mod view;
pub mod web;
