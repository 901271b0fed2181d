//! Events and the rules they must satisfy. Pure code: no I/O, no clock of its own.
//!
//! The collector only checks that a body is JSON within the limits; everything
//! about an event's *content* is decided here, in the worker, so that one invalid
//! event never holds up the request it came in.

pub mod application;
pub mod catalog;
pub mod clock;
pub mod event;
pub mod event_id;
pub mod hosts;
pub mod reason;
pub mod timestamp;
pub mod user;

pub use application::Application;
pub use catalog::{Catalog, CategoryDef, EventTypeDef};
pub use clock::{Clock, SystemClock};
pub use event::{validate, validate_json, Rules, ValidEvent};
pub use reason::Reason;
pub use timestamp::Timestamp;
