//! The Kairos domain: aggregates, commands, events, errors and the pure slot rule.
//!
//! Nothing here does I/O or knows of HTTP or SQL; time comes in as a value. Read in this order:
//!
//! - [`input`]: raw command input (`Raw<T>`) and the field errors parsing it yields;
//! - [`values`]: domain values that cannot be invalid (`Email`, `PersonName`, `Slug`, …);
//! - [`schedule`]: the weekly schedule of an availability;
//! - [`slug`]: deriving slugs from names;
//! - [`availability`], [`meeting_type`]: the parts of a user that slots are made of;
//! - [`slots`]: the slot rule, the one function that decides which start times are offered;
//! - [`effects`]: what events ask of the store (uniqueness claims, personal fields, erasure);
//! - [`withheld`]: payload fields (secrets' verifiers) that readers of the log are never shown;
//! - [`company`], [`user`]: the aggregates, each with its commands, events, errors and
//!   given-when-then tests.

pub mod availability;
pub mod company;
pub mod effects;
pub mod input;
pub mod meeting_type;
pub mod schedule;
pub mod slots;
pub mod slug;
pub mod user;
pub mod values;
pub mod withheld;
