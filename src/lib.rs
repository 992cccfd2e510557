//! Roost, an MQTT 3.1 / 3.1.1 / 5.0 broker.
//!
//! Layout (see `docs/architecture.md`):
//! - [`protocol`]: the strict, zero-copy codec for every packet of every version. Pure: no I/O.

pub mod auth;
pub mod broker;
pub mod clock;
pub mod config;
pub mod connection;
pub mod fd_table;
pub mod protocol;
pub mod runtime;
pub mod server;
pub mod session;
pub mod topic;
