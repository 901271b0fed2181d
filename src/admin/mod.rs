//! The admin panel, so far: its users (`the-eye createsuperuser`, argon2id);
//! login, logout, sessions, CSRF and security headers; the dashboard; events
//! with filters, an event's detail and a session's timeline. Pages for event
//! errors with replay, categories and applications come next.

pub mod users;
pub mod web;
