//! Integration tests against a real PostgreSQL: every test gets a database of its own and a
//! started Kairos (projectors included), driven through the real router.

mod audit;
mod browser;
mod cli;
mod edge;
mod event_store;
mod helpers;
mod history;
mod http;
mod idempotency;
mod privilege;
mod processes;
mod projectors;
mod quarantine;
mod robustness;
mod upkeep;
mod users;
mod windows;
