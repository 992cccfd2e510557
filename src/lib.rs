//! Roost, an MQTT 3.1 / 3.1.1 / 5.0 broker.
//!
//! The public surface is what running, embedding and testing the broker needs: [`Server`] and
//! its [`Config`], the [`protocol`] codec and the [`topic`] rules, and a [`Broker`] handle for
//! its figures ([`Metrics`]) and for publishing [`Message`]s directly. Everything else is
//! internal (see `docs/architecture.md`):
//! - `connection`: the sans-IO engine (one connection's MQTT state) and the tokio shell that
//!   serves it over any byte stream;
//! - `broker`: sessions, the subscription trie, retained messages, wills, keep alive; a
//!   connection reaches it only through its `Link`;
//! - `session`: one session's queue and in-flight window, sans-IO;
//! - `auth`: authentication (password files, SCRAM-SHA-256) and ACL files;
//! - `tls`: TLS listeners (rustls), reloaded when their files change; `certs`: development
//!   certificates.

mod auth;
#[doc(hidden)]
pub mod bench_support;
mod broker;
pub mod certs;
mod clock;
pub mod config;
mod connection;
pub mod fd_table;
pub mod protocol;
mod proxy;
pub mod runtime;
mod server;
mod session;
pub mod store;
mod tls;
pub mod topic;
mod ws;

pub use auth::{ScramCredentials, ScramError};

/// Mosquitto-format password files, for `roost passwd`.
pub mod passwords {
    pub use crate::auth::{delete_user, set_password};
}
pub use broker::{Broker, Metrics};
pub use config::Config;
pub use server::Server;
pub use session::{Deadline, Message};
