//! Integration tests: one binary, the app on port 0 with a temp data dir each.

// Test code: an unwrap that fails is a test that fails, with its location.
#![allow(clippy::unwrap_used)]

mod helpers;
mod lifecycle;
mod login_throttle;
mod metrics;
mod openapi;

mod admin;
mod admin_browser;
mod admin_pages;
mod admin_ux;
mod architecture;
mod browser;
mod cli;
mod client;
mod collector;
mod container;
mod crash;
mod data;
mod faults;
mod procs;
mod queue_contract;
mod read_api;
mod reliability;
mod restart;
mod scale;
mod store_contract;
mod template_tour;
mod tracker;
mod trust;
mod website;
mod worker;
