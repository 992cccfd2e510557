//! One connection's MQTT state machine, sans-IO (the quinn-proto pattern): the CONNECT handshake
//! and its enhanced-authentication exchange, then the established connection's topic aliases
//! both ways, will, inbound runs, keep alive and outbound packets. It never touches a socket or
//! reads a clock: the shell (`connection/mod.rs`) hands it bytes and the time, and writes what
//! it puts in the out buffer. It reaches the broker only through its [`Link`].
//!
//! The surface:
//! - [`Engine::receive`] / [`Engine::handle`]: bytes (or one decoded packet) from the client;
//! - [`Engine::poll_transmit`]: what the session has for the client, into the out buffer;
//! - [`Engine::poll_timeout`] / [`Engine::handle_timeout`]: the connect and keep-alive
//!   deadlines;
//! - [`Engine::close`]: the end, for any [`Close`] reason.
//!
//! Every call that may answer takes `out`, the buffer the shell writes to the socket.

mod alias;
mod auth;
mod backpressure;
mod durable;
mod handshake;
mod inbound;
mod outbound;
pub(crate) mod policy;
mod rate;

pub(crate) use backpressure::Reading;
pub(crate) use outbound::WRITE_HIGH_WATER;

#[cfg(test)]
mod tests;

use super::Close;
use crate::auth::Realm;
use crate::broker::{Broker, Link, Metrics, keep_alive};
use crate::clock;
use crate::protocol::{Packet, PacketTypes, ProtocolVersion, Will};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

impl Engine {
    /// The broker, in any state but `Closed`.
    fn broker(&self) -> Option<&Broker> {
        match &self.state {
            State::Connecting { broker, .. } => Some(broker),
            State::Open(open) => Some(open.link.broker()),
            State::Closed => None,
        }
    }
}

/// One connection's MQTT state.
pub(crate) struct Engine {
    peer: SocketAddr,
    state: State,
}

enum State {
    /// Waiting for CONNECT, or in its enhanced-authentication exchange, until `deadline`.
    Connecting {
        broker: Broker,
        deadline: Instant,
        exchange: Option<Box<auth::Pending>>,
        /// What the listener knows of the client and its rules, boxed: only the handshake
        /// needs them, and the engine's size is every connection's.
        door: Box<Door>,
    },
    Open(Open),
    /// Ended: nothing more is read or sent.
    Closed,
}

/// What the handshake needs from the listener a client came through.
/// The connection arrives with it (`connection::serve`), and the engine keeps the same box for
/// the handshake: one allocation for both.
pub(crate) struct Door {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    pub(crate) broker: Broker,
    /// Who the client's TLS certificate says it is, where the listener takes the user name
    /// from it.
    pub(crate) certified: Certified,
    /// The listener's authentication and authorization rules.
    pub(crate) realm: Arc<Realm>,
    /// A CONNECT waiting for a costly password check (see [`Engine::take_verification`]).
    verifying: Option<Verifying>,
}

impl Door {
    /// A client from `peer` to `broker`, through a listener with these rules.
    pub(crate) fn new(
        peer: SocketAddr,
        broker: Broker,
        certified: Certified,
        realm: Arc<Realm>,
    ) -> Self {
        Self {
            peer,
            broker,
            certified,
            realm,
            verifying: None,
        }
    }
}

/// A CONNECT and the password check it waits for (taken by the shell while it runs).
struct Verifying {
    connect: Box<crate::protocol::Connect>,
    job: Option<crate::auth::VerifyJob>,
}

/// What a listener with `use_identity_as_username` learnt from the client's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Certified {
    /// The listener does not take user names from certificates.
    #[default]
    NotAsked,
    /// The verified certificate names this user.
    User(Box<str>),
    /// The client presented no certificate, or one that names no one.
    Missing,
}

/// An established connection.
struct Open {
    link: Link,
    version: ProtocolVersion,
    /// The packet types the codec accepts from this client (with the configured maximum
    /// packet size, its `DecodeLimits`).
    accepts: PacketTypes,
    /// When the client last sent anything, on [`clock::ms`]'s clock.
    last_heard_ms: u64,
    /// 1.5 times the keep alive granted [MQTT-3.1.2-24 of 3.1.1], in milliseconds; 0 when the
    /// client turned keep alive off. (Not a struct of its own beside `last_heard_ms`: its
    /// padding would cost every connection 8 bytes.)
    grace_ms: u32,
    /// The will to publish if the connection ends other than by a normal DISCONNECT.
    will: Option<Box<Will>>,
    /// The largest packet the client accepts (v5 Maximum Packet Size).
    client_max_packet: u32,
    /// Whether the client wants Reason Strings (v5 Request Problem Information, 1 unless 0).
    problem_info: bool,
    /// The ACL, enhanced authentication and topic aliases, allocated once a client has one.
    extras: Option<Box<Extras>>,
}

/// What only some connections use, boxed together: most use none of it, and one pointer costs
/// every connection 24 bytes less than four.
#[derive(Default)]
struct Extras {
    /// What the ACL file allows this client; `None` without an ACL file.
    acl: Option<crate::auth::SharedAcl>,
    /// Its publish rate limits, if any are set.
    rate: Option<rate::PublishRate>,
    /// The method and user of a client that used enhanced authentication, for
    /// re-authentication.
    auth: Option<auth::Reauth>,
    /// The client's topic aliases.
    aliases_in: alias::Inbound,
    /// Ours toward the client, if it accepts any.
    aliases_out: Option<alias::Outbound>,
    /// Answers in the out buffer waiting for the disk (see `durable.rs`).
    hold: Option<durable::Hold>,
    /// Full subscribers this client's messages pressed, waited for before reading on (see
    /// `backpressure.rs`).
    pressure: Option<Box<crate::broker::Pressure>>,
}

impl Engine {
    /// A connection from `peer` that has sent nothing yet: it has the connect timeout from
    /// `now` to complete its handshake.
    #[cfg(test)]
    pub(crate) fn new(broker: Broker, peer: SocketAddr, now: Instant) -> Self {
        let realm = broker.realm().clone();
        Self::arriving(
            Box::new(Door::new(peer, broker, Certified::NotAsked, realm)),
            now,
        )
    }

    /// As [`Engine::new`], for a client that came through `door`: its listener's rules, and
    /// perhaps a TLS certificate that decides its user name.
    pub(crate) fn arriving(door: Box<Door>, now: Instant) -> Self {
        let broker = door.broker.clone();
        let timeout = Duration::from_secs(broker.config().limits.connect_timeout_secs);
        Self {
            peer: door.peer,
            state: State::Connecting {
                broker,
                deadline: now + timeout,
                exchange: None,
                door,
            },
        }
    }

    /// Whether the handshake is done and the connection not yet closed.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Decodes and handles every whole packet in `inbuf`, bytes the client sent up to `now`,
    /// leaving a partial packet for later. Messages read together are routed in runs, every run
    /// before this returns, also when a bad packet ends the connection.
    pub(crate) fn receive(
        &mut self,
        inbuf: &mut BytesMut,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        loop {
            match &mut self.state {
                State::Closed => return Ok(()),
                // Nothing more is read while a password is being checked.
                State::Connecting { door, .. } if door.verifying.is_some() => return Ok(()),
                State::Connecting { .. } => {
                    let Some(packet) = self.decode_handshake(inbuf, out)? else {
                        return Ok(());
                    };
                    self.handle(packet, now, out)?;
                }
                State::Open(open) => return open.receive(inbuf, now, out),
            }
        }
    }

    /// Handles one packet the client sent (decoded by the caller).
    pub(crate) fn handle(
        &mut self,
        packet: Packet,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        match &mut self.state {
            State::Closed => Ok(()),
            State::Connecting { .. } => self.handle_handshake(packet, now, out),
            State::Open(open) => open.handle(packet, now, out),
        }
    }

    /// Moves what the session has for the client into `out` (up to a high-water mark, and the
    /// in-flight window), and registers `waker` to be woken when it has more. `Ok(true)` when
    /// the broker asks the connection to park if it is idle (see `connection/park.rs`). An
    /// error ends the connection: taken over, keep alive lapsed, or the server shutting down.
    pub(crate) fn poll_transmit(
        &mut self,
        out: &mut BytesMut,
        now: Instant,
        waker: &Waker,
    ) -> Result<bool, Close> {
        let State::Open(open) = &mut self.state else {
            return Ok(false);
        };
        if open.link.broker().is_shutting_down() {
            return Err(Close::ServerShutdown);
        }
        open.release_hold(waker);
        open.fill_outbound(out, now, waker)
    }

    /// The broker's counters, until the connection has closed.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.broker().map(Broker::metrics)
    }

    /// Whether the configuration parks idle connections (`limits.idle_park_secs` above 0).
    pub(crate) fn parks_when_idle(&self) -> bool {
        self.broker()
            .is_some_and(|b| b.config().limits.idle_park_secs > 0)
    }

    /// Notes that the connection parked (see `connection/park.rs`); false if it no longer has
    /// its session (it then goes on, and finds out).
    pub(crate) fn mark_parked(&self) -> bool {
        match &self.state {
            State::Open(open) => open.link.mark_parked(),
            State::Connecting { .. } | State::Closed => false,
        }
    }

    /// When [`Engine::handle_timeout`] has something to do: the connect deadline during the
    /// handshake, the keep-alive deadline after.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Open(open) if open.grace_ms > 0 => {
                Some(clock::at(open.last_heard_ms + u64::from(open.grace_ms)))
            }
            State::Open(_) | State::Closed => None,
        }
    }

    /// Ends the connection if a deadline has passed by `now`: no CONNECT (or no end to its
    /// authentication) within the connect timeout, or nothing from the client for 1.5 times its
    /// keep alive [MQTT-3.1.2-24 of 3.1.1, MQTT-3.1.2-22 of 5.0].
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), Close> {
        match &self.state {
            State::Connecting { deadline, .. } if now >= *deadline => Err(Close::ConnectTimeout),
            State::Open(open) if open.keep_alive_lapsed(now) => Err(Close::KeepAliveTimeout),
            _ => Ok(()),
        }
    }

    /// Ends the connection for `close`: a v5 client the server closes is told why (DISCONNECT
    /// into `out`), the will is published if due, the session is let go and one line is
    /// logged. Returns whether the shell should linger before closing the socket (see
    /// [`super::close::linger`]). Idempotent.
    pub(crate) fn close(&mut self, close: &Close, now: Instant, out: &mut BytesMut) -> bool {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => false,
            State::Connecting { broker, .. } => {
                Metrics::inc(&broker.metrics().connections_refused);
                close.log_refusal(self.peer);
                true
            }
            State::Open(mut open) => {
                Metrics::dec(&open.link.broker().metrics().connections_current);
                if let Some(reason) = close.disconnect_reason()
                    && open.version.is_v5()
                {
                    open.send_disconnect(out, reason, close.reason_string());
                }
                if close.publishes_will() {
                    open.publish_will(now);
                }
                open.link.detach();
                close.log(open.link.client_id(), self.peer);
                close.by_server()
            }
        }
    }
}

impl Open {
    /// Whether the client has been silent for too long by `now` (the sweeper's rule).
    fn keep_alive_lapsed(&self, now: Instant) -> bool {
        self.grace_ms > 0 && keep_alive::lapsed(self.last_heard_ms, self.grace_ms, clock::ms(now))
    }
}
