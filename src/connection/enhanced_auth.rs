//! Enhanced authentication on the wire (MQTT 5.0 section 4.12): the AUTH exchange that follows a
//! CONNECT carrying an Authentication Method, and re-authentication (AUTH 0x19) during the
//! connection. The method itself is the sans-IO [`crate::auth::Exchange`]; this file maps its
//! steps to AUTH, CONNACK and DISCONNECT.

use super::handshake::{Refusal, refuse};
use super::{Close, Connection};
use crate::auth::{Exchange, Step};
use crate::broker::Broker;
use crate::protocol::{
    Auth, ByteStr, Connect, Limits, Packet, PacketTypes, ProtocolVersion, ReasonCode, decode,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// A client that completed enhanced authentication in its handshake.
#[derive(Debug)]
pub(super) struct Authenticated {
    pub method: ByteStr,
    pub user: String,
    /// The method's last data, for the CONNACK (SCRAM's server-final-message).
    pub data: Option<Bytes>,
}

/// Runs the exchange a CONNECT asks for, if any, before the handshake goes on: `Ok(None)` when
/// the client named no Authentication Method. Refusals have been answered with CONNACK.
pub(super) async fn connect_exchange<S>(
    connect: &Connect,
    io: &mut S,
    inbuf: &mut BytesMut,
    limits: &Limits,
    broker: &Broker,
    deadline: Instant,
) -> Result<Option<Authenticated>, Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let props = &connect.properties;
    let Some(method) = props.authentication_method.clone() else {
        if props.authentication_data.is_some() {
            // 5.0 section 3.1.2.11.10: data without a method is a Protocol Error.
            let why = "Authentication Data without an Authentication Method";
            return Err(refuse(io, connect, ReasonCode::PROTOCOL_ERROR, why).await);
        }
        return Ok(None);
    };
    let Some(mut exchange) = broker.authenticator().start(&method) else {
        let why = "unknown Authentication Method";
        let reason = ReasonCode::BAD_AUTHENTICATION_METHOD;
        return Err(refuse(io, connect, reason, why).await);
    };
    let mut data = props.authentication_data.clone().unwrap_or_default();
    loop {
        match exchange.step(&data) {
            Step::Continue(challenge) => {
                let auth = auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, &method, challenge);
                let limit = props.maximum_packet_size.unwrap_or(u32::MAX);
                let Some(auth) = auth.within(ProtocolVersion::V5, limit) else {
                    // [MQTT-3.1.2-24] The exchange cannot go on within the client's limit.
                    let why = "the AUTH challenge would exceed the client's Maximum Packet Size";
                    return Err(refuse(io, connect, ReasonCode::PACKET_TOO_LARGE, why).await);
                };
                let mut out = BytesMut::new();
                // An AUTH we build from a valid method name always encodes.
                if auth.encode(ProtocolVersion::V5, &mut out).is_ok()
                    && io.write_all(&out).await.is_err()
                {
                    return Err(Refusal::Closed);
                }
                let limits = Limits {
                    accepts: PacketTypes::AUTH_EXCHANGE,
                    ..*limits
                };
                data = match tokio::time::timeout_at(deadline, next(io, inbuf, &limits)).await {
                    Err(_) => return Err(Refusal::Timeout),
                    Ok(Err(Refusal::Decode(e))) => {
                        // A bad packet in the exchange: CONNACK says why, as for a bad CONNECT
                        // property [MQTT-3.1.2-30 for a packet other than AUTH].
                        return Err(refuse(io, connect, e.reason, e.message).await);
                    }
                    Ok(Err(refusal)) => return Err(refusal),
                    Ok(Ok(Packet::Auth(a)))
                        if a.reason == ReasonCode::CONTINUE_AUTHENTICATION
                            && a.properties.authentication_method.as_ref() == Some(&method) =>
                    {
                        a.properties.authentication_data.clone().unwrap_or_default()
                    }
                    Ok(Ok(Packet::Disconnect(_))) => return Err(Refusal::Closed),
                    Ok(Ok(_)) => {
                        // [MQTT-3.1.2-30, MQTT-4.12.0-3, -5] only AUTH 0x18 with the same method.
                        let why = "expected AUTH 0x18 with the same method during authentication";
                        let reason = ReasonCode::PROTOCOL_ERROR;
                        return Err(refuse(io, connect, reason, why).await);
                    }
                };
            }
            Step::Success { data, user } => {
                return Ok(Some(Authenticated {
                    method,
                    user,
                    data: data.map(Bytes::from),
                }));
            }
            Step::Failure(why) => {
                // The client learns only that it failed: which check failed would help an
                // attacker guess.
                tracing::info!(client_id = %connect.client_id, "enhanced authentication failed: {why}");
                let reason = ReasonCode::NOT_AUTHORIZED;
                return Err(refuse(io, connect, reason, "authentication failed").await);
            }
        }
    }
}

/// The next packet of a v5 client still in its handshake.
async fn next<R: AsyncRead + Unpin>(
    io: &mut R,
    inbuf: &mut BytesMut,
    limits: &Limits,
) -> Result<Packet, Refusal> {
    loop {
        match decode(inbuf, ProtocolVersion::V5, limits) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(e) => return Err(Refusal::Decode(e)),
        }
        match io.read_buf(inbuf).await {
            Ok(0) | Err(_) => return Err(Refusal::Closed),
            Ok(_) => {}
        }
    }
}

fn auth_packet(reason: ReasonCode, method: &ByteStr, data: Vec<u8>) -> Packet {
    let mut auth = Auth {
        reason,
        properties: Default::default(),
    };
    auth.properties.authentication_method = Some(method.clone());
    if !data.is_empty() {
        auth.properties.authentication_data = Some(Bytes::from(data));
    }
    Packet::Auth(auth)
}

/// The state of a connection that authenticated with a method: re-authentication uses it.
pub(super) struct Session {
    pub method: ByteStr,
    pub user: String,
    /// A re-authentication in progress.
    pub exchange: Option<Box<dyn Exchange>>,
}

impl Connection {
    /// AUTH from the client after the handshake: starts (0x19) or continues (0x18)
    /// re-authentication [MQTT-4.12.1-1, 5.0 section 4.12.1].
    pub(super) fn on_auth(&mut self, auth: Auth) -> Result<(), Close> {
        let protocol = |what| Close::Protocol {
            reason: ReasonCode::PROTOCOL_ERROR,
            what,
        };
        let Some(session) = self.extras.as_mut().and_then(|e| e.auth.as_mut()) else {
            return Err(protocol("AUTH without enhanced authentication in CONNECT"));
        };
        if auth.properties.authentication_method.as_ref() != Some(&session.method) {
            // [MQTT-4.12.1-1] the same method as in CONNECT.
            return Err(protocol(
                "AUTH with another Authentication Method than CONNECT's",
            ));
        }
        match (auth.reason, session.exchange.is_some()) {
            (ReasonCode::REAUTHENTICATE, false) => {
                let Some(exchange) = self.broker.authenticator().start(&session.method) else {
                    return Err(protocol("Authentication Method no longer enabled"));
                };
                session.exchange = Some(exchange);
            }
            (ReasonCode::CONTINUE_AUTHENTICATION, true) => {}
            _ => return Err(protocol("AUTH out of turn in re-authentication")),
        }
        let data = auth
            .properties
            .authentication_data
            .clone()
            .unwrap_or_default();
        let step = match session.exchange.as_mut() {
            Some(exchange) => exchange.step(&data),
            None => return Err(protocol("AUTH out of turn in re-authentication")),
        };
        let method = session.method.clone();
        let (packet, done) = match step {
            Step::Continue(challenge) => (
                auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, &method, challenge),
                None,
            ),
            Step::Success { data, user } if user == session.user => {
                session.exchange = None;
                let packet = auth_packet(ReasonCode::SUCCESS, &method, data.unwrap_or_default());
                (packet, Some(user))
            }
            Step::Success { .. } | Step::Failure(_) => {
                // [MQTT-4.12.1-2] a failed re-authentication ends the connection.
                return Err(Close::Protocol {
                    reason: ReasonCode::NOT_AUTHORIZED,
                    what: "re-authentication failed",
                });
            }
        };
        if !self.fits(packet.encoded_len(ProtocolVersion::V5)) {
            // [MQTT-3.1.2-24] The exchange cannot go on within the client's limit.
            return Err(Close::Protocol {
                reason: ReasonCode::PACKET_TOO_LARGE,
                what: "the AUTH answer would exceed the client's Maximum Packet Size",
            });
        }
        self.write_packet(packet);
        if let Some(user) = done {
            tracing::info!(client_id = %self.client_id(), %user, "re-authenticated");
        }
        Ok(())
    }
}
