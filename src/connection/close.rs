//! Why a connection ended, and what follows from it: the DISCONNECT a v5 client is sent, whether
//! the will is published, and the one log line.

use crate::protocol::{DecodeError, ReasonCode};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a connection the server ends goes on reading (and discarding) what the client still
/// sends, waiting for it to close first.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// The end of a connection the server closes, once its last packet (a DISCONNECT, a refusing
/// CONNACK) is written and the write side shut down: reads and discards what the client still
/// sends until it closes its side or [`LINGER`] passes. Closing a socket with unread input
/// makes the kernel send a reset, which discards the client's unread input too, so a client
/// still sending when the server ends the connection would never read why [issue 14, section
/// 3]. Bounded: a client that keeps sending cannot hold the task past the deadline.
pub(crate) async fn linger<S: AsyncRead + Unpin>(io: &mut S) {
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut sink = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, io.read(&mut sink)).await {
        if n == 0 {
            return;
        }
    }
}

/// The cause of a connection's end.
#[derive(Debug)]
pub(crate) enum Close {
    /// The client sent DISCONNECT 0x00: no will [MQTT-3.14.4-3].
    Normal,
    /// v5 DISCONNECT with any other code (0x04, or an error the client reports): close
    /// without a DISCONNECT back, but publish the will [MQTT-3.1.2-8].
    NormalWithWill,
    /// The socket closed without DISCONNECT.
    SocketClosed,
    /// A read or write failed.
    Io(ErrorKind),
    /// Nothing received for 1.5 times the keep alive.
    KeepAliveTimeout,
    /// Another connection took the session over.
    TakenOver,
    /// The server is shutting down.
    ServerShutdown,
    /// The client sent something the codec refuses.
    Decode(DecodeError),
    /// The client broke a rule that needs connection state to see.
    Protocol {
        reason: ReasonCode,
        what: &'static str,
    },
    /// The handshake: no CONNECT, or no end to its authentication, within the connect timeout.
    ConnectTimeout,
    /// The handshake: the first packet was this, not CONNECT [MQTT-3.1.0-1].
    NotConnect(&'static str),
    /// The handshake: CONNECT refused with this CONNACK reason code, for this reason.
    Refused {
        reason: ReasonCode,
        why: &'static str,
        /// The user name the CONNECT gave, for the log line.
        user: Option<Box<str>>,
        /// How long to wait before answering: a failed login, slowed per address.
        slow_down: std::time::Duration,
    },
}

impl Close {
    /// The reason code of the DISCONNECT the server sends a v5 client, if it sends one.
    pub(crate) fn disconnect_reason(&self) -> Option<ReasonCode> {
        match self {
            Self::Normal | Self::NormalWithWill | Self::SocketClosed | Self::Io(_) => None,
            Self::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            Self::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER),
            Self::ServerShutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            Self::Decode(e) => Some(e.reason),
            Self::Protocol { reason, .. } => Some(*reason),
            // The handshake answers with CONNACK, never DISCONNECT.
            Self::ConnectTimeout | Self::NotConnect(_) | Self::Refused { .. } => None,
        }
    }

    /// The Reason String of that DISCONNECT: what went wrong, in words.
    pub(crate) fn reason_string(&self) -> Option<String> {
        Some(match self {
            Self::Normal | Self::NormalWithWill | Self::SocketClosed | Self::Io(_) => return None,
            Self::KeepAliveTimeout => "no packet within 1.5 times the keep alive".into(),
            Self::TakenOver => "another connection took the session over".into(),
            Self::ServerShutdown => "the server is shutting down".into(),
            Self::Decode(e) => e.to_string(),
            Self::Protocol { what, .. } => (*what).into(),
            Self::ConnectTimeout | Self::NotConnect(_) | Self::Refused { .. } => return None,
        })
    }

    /// Whether the server ends the connection (rather than the client or the network): the
    /// close then lingers (see [`linger`]).
    pub(crate) fn by_server(&self) -> bool {
        !matches!(
            self,
            Self::Normal | Self::NormalWithWill | Self::SocketClosed | Self::Io(_)
        )
    }

    /// Every end but a normal DISCONNECT publishes the will [MQTT-3.1.2-8].
    pub(crate) fn publishes_will(&self) -> bool {
        !matches!(self, Self::Normal)
    }

    /// One log line for the end of a connection.
    pub(crate) fn log(&self, client_id: &str, peer: SocketAddr) {
        match self {
            Self::Normal | Self::NormalWithWill => {
                tracing::info!(%client_id, %peer, "client disconnected")
            }
            Self::SocketClosed => {
                tracing::info!(%client_id, %peer, "client closed the connection without DISCONNECT")
            }
            Self::Io(kind) => tracing::info!(%client_id, %peer, ?kind, "connection lost"),
            Self::KeepAliveTimeout => {
                tracing::info!(%client_id, %peer, "closed: keep alive timed out")
            }
            Self::TakenOver => {
                tracing::info!(%client_id, %peer, "closed: session taken over by a new connection")
            }
            Self::ServerShutdown => {
                tracing::info!(%client_id, %peer, "closed: server shutting down")
            }
            Self::Decode(e) => tracing::warn!(%client_id, %peer, "closed: {e}"),
            Self::Protocol { reason, what } => {
                tracing::warn!(%client_id, %peer, "closed: {what} ({reason})")
            }
            Self::ConnectTimeout | Self::NotConnect(_) | Self::Refused { .. } => {
                self.log_refusal(peer)
            }
        }
    }

    /// One log line for a connection that ended in its handshake.
    pub(crate) fn log_refusal(&self, peer: SocketAddr) {
        match self {
            Self::ConnectTimeout => {
                tracing::info!(%peer, "closed: no CONNECT within the connect timeout")
            }
            Self::NotConnect(what) => {
                tracing::warn!(%peer, "closed: [MQTT-3.1.0-1] first packet was {what}, not CONNECT")
            }
            Self::Decode(e) => tracing::warn!(%peer, "refused CONNECT: {e}"),
            Self::Refused {
                reason, why, user, ..
            } => match user {
                Some(user) => {
                    tracing::warn!(%peer, %user, "refused CONNECT: {why} ({reason})")
                }
                None => tracing::warn!(%peer, "refused CONNECT: {why} ({reason})"),
            },
            Self::ServerShutdown => {
                tracing::debug!(%peer, "closed in its handshake: server shutting down")
            }
            _ => tracing::debug!(%peer, "closed before CONNECT"),
        }
    }
}
