//! The admin panel. So far: its users (`the-eye createsuperuser`), with
//! passwords hashed by argon2id. Login, sessions and pages come next.

pub mod users;
