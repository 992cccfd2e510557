//! Enhanced authentication on the wire (MQTT 5.0 section 4.12): the state of an AUTH exchange
//! during the handshake (driven by `handshake.rs`) and re-authentication (AUTH 0x19) on an open
//! connection. The method itself is a sans-IO [`crate::auth::Exchange`]; this file maps its
//! steps to AUTH and DISCONNECT.

use super::Open;
use crate::auth::{Begin, Credentials, Exchange, Step};
use crate::connection::Close;
use crate::protocol::{Auth, ByteStr, Connect, Packet, ProtocolVersion, ReasonCode};
use bytes::{Bytes, BytesMut};

/// A CONNECT waiting for its authentication exchange to finish.
pub(super) struct Pending {
    pub(crate) connect: Box<Connect>,
    pub(crate) method: ByteStr,
    pub(crate) exchange: Box<dyn Exchange>,
}

/// What an open connection that authenticated with a method keeps for re-authentication.
pub(super) struct Reauth {
    pub(crate) method: ByteStr,
    pub(crate) user: String,
    /// A re-authentication in progress.
    pub(crate) exchange: Option<Box<dyn Exchange>>,
}

/// An AUTH packet with `reason`, `method` and, unless empty, `data`.
pub(super) fn auth_packet(reason: ReasonCode, method: &ByteStr, data: Vec<u8>) -> Packet {
    let mut auth = Auth {
        reason,
        properties: Default::default(),
    };
    auth.properties.make_mut().authentication_method = Some(method.clone());
    if !data.is_empty() {
        auth.properties.make_mut().authentication_data = Some(Bytes::from(data));
    }
    Packet::Auth(auth)
}

impl Open {
    /// AUTH from the client after the handshake: starts (0x19) or continues (0x18)
    /// re-authentication [MQTT-4.12.1-1, 5.0 section 4.12.1].
    pub(super) fn on_auth(&mut self, auth: Auth, out: &mut BytesMut) -> Result<(), Close> {
        let protocol = |what| Close::Protocol {
            reason: ReasonCode::PROTOCOL_ERROR,
            what,
        };
        let broker = self.link.broker().clone();
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
                let credentials = Credentials {
                    method: Some(&session.method),
                    ..Credentials::default()
                };
                let Begin::Exchange(exchange) =
                    crate::auth::Authenticate::begin(&**broker.methods(), &credentials)
                else {
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
        self.write_packet(out, packet);
        if let Some(user) = done {
            tracing::info!(client_id = %self.link.client_id(), %user, "re-authenticated");
        }
        Ok(())
    }
}
