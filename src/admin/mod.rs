//! The admin panel. So far: its users (`the-eye createsuperuser`, argon2id)
//! and the signed-in frame of the panel: login, logout, sessions, CSRF,
//! security headers and an empty dashboard. The pages for events, errors,
//! categories and applications come next.

pub mod users;
pub mod web;
