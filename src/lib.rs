//! Kairos: an event-sourced scheduling service speaking the meetergo Platform API v4.
//!
//! The flow: HTTP request → typed command → aggregate decides (crate `aggregates`) → events
//! appended with their claims, idempotency key and hash in one transaction
//! ([`event_store`]) → projectors follow the log and update read tables (crate
//! `projections`) → HTTP queries read only read tables ([`http`]).
//!
//! Modules, in reading order:
//!
//! - [`config`], [`telemetry`], [`db`]: environment, logging, connections and migrations;
//! - [`event_store`]: the append (claims, idempotency, sealing, hash chain) and loading;
//! - [`commands`]: load → decide → append → retry, and read-your-writes waits;
//! - [`api_keys`], [`provisioning`]: key tokens, company bootstrap;
//! - [`audit`]: verifying the hash chains;
//! - [`http`]: the router, middleware, extractors, errors and endpoints;
//! - [`server`]: assembling pools, projectors and HTTP state;
//! - [`cli`]: the `kairos` command line.

pub mod api_keys;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod event_store;
pub mod http;
pub mod provisioning;
pub mod server;
pub mod telemetry;
