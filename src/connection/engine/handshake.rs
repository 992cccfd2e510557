//! The engine's handshake phase: the CONNECT read and screened, the client authenticated
//! (through an AUTH exchange if it named a method), the policy's decision applied, and the
//! session attached with CONNACK and what it had in flight.

use super::auth::{Pending, auth_packet};
use super::policy::{self, Identity, Refused};
use super::{Certified, Engine, Extras, Open, State, alias};
use crate::auth::{Begin, Credentials, Step};
use crate::broker::Metrics;
use crate::connection::Close;
use crate::protocol::{
    ConnAck, Connect, DecodeLimits, Packet, PacketTypes, ProtocolVersion, ReasonCode, decode, error,
};
use bytes::BytesMut;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

impl Engine {
    /// The next whole packet of a client still in its handshake, if it has come. What the codec
    /// refuses ends the handshake, answered as the specification allows.
    pub(super) fn decode_handshake(
        &mut self,
        inbuf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<Option<Packet>, Close> {
        let State::Connecting {
            broker, exchange, ..
        } = &self.state
        else {
            return Ok(None);
        };
        let max_packet_size = broker.config().limits.max_packet_size;
        if let Some(pending) = exchange {
            let limits = DecodeLimits {
                max_packet_size,
                accepts: PacketTypes::AUTH_EXCHANGE,
            };
            return match decode(inbuf, ProtocolVersion::V5, &limits) {
                Ok(packet) => Ok(packet),
                // A bad packet in the exchange: CONNACK says why, as for a bad CONNECT property
                // [MQTT-3.1.2-30 for a packet other than AUTH].
                Err(e) => {
                    let refused = Refused::new(&pending.connect, e.reason, e.message);
                    Err(refuse(&pending.connect, refused, out))
                }
            };
        }
        // The first packet may be anything: what is not a CONNECT is named in the log line.
        let limits = DecodeLimits {
            max_packet_size,
            accepts: PacketTypes::ALL,
        };
        let is_connect = inbuf.first().is_some_and(|b| b >> 4 == 1);
        // Read before decoding, which consumes the frame even when it refuses it.
        let level = connect_level(inbuf);
        // The version is unknown until CONNECT is read; CONNECT decodes in its own version.
        match decode(inbuf, ProtocolVersion::V5, &limits) {
            Ok(packet) => Ok(packet),
            Err(_) if !is_connect => Err(Close::NotConnect("an invalid packet")),
            Err(e) if e == error::UNSUPPORTED_PROTOCOL_VERSION => {
                // [MQTT-3.1.2-2] CONNACK 0x01 (3.1.1 form: the client's version is unknown).
                out.extend_from_slice(&[0x20, 0x02, 0x00, 0x01]);
                Err(Close::Decode(e))
            }
            Err(e) => {
                if level == Some(5) {
                    // 5.0 section 4.13.1: the server MAY answer a bad CONNECT with a CONNACK
                    // that says why. Its properties did not parse, so neither did the client's
                    // Maximum Packet Size: the CONNACK goes bare, 5 bytes, and the log line
                    // has the rest. (3.1.1 closes without a CONNACK [MQTT-3.2.2-6 of 3.1.1
                    // leaves no code for it].)
                    out.extend_from_slice(&[0x20, 0x03, 0x00, e.reason.0, 0x00]);
                }
                Err(Close::Decode(e))
            }
        }
    }

    /// One packet of a client in its handshake: its CONNECT, or its next AUTH.
    pub(super) fn handle_handshake(
        &mut self,
        packet: Packet,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        let State::Connecting { exchange, .. } = &mut self.state else {
            return Ok(());
        };
        let Some(pending) = exchange.take() else {
            return match packet {
                Packet::Connect(connect) => self.on_connect(connect, now, out),
                other => Err(Close::NotConnect(other.name())),
            };
        };
        match packet {
            Packet::Auth(a)
                if a.reason == ReasonCode::CONTINUE_AUTHENTICATION
                    && a.properties.authentication_method.as_ref() == Some(&pending.method) =>
            {
                let data = a.properties.authentication_data.clone().unwrap_or_default();
                self.step(pending, &data, now, out)
            }
            Packet::Disconnect(_) => Err(Close::SocketClosed),
            _ => {
                // [MQTT-3.1.2-30, MQTT-4.12.0-3, -5] only AUTH 0x18 with the same method.
                let why = "expected AUTH 0x18 with the same method during authentication";
                let refused = Refused::new(&pending.connect, ReasonCode::PROTOCOL_ERROR, why);
                Err(refuse(&pending.connect, refused, out))
            }
        }
    }

    fn on_connect(
        &mut self,
        connect: Box<Connect>,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        let Some(broker) = self.broker().cloned() else {
            return Ok(());
        };
        let connected = Metrics::get(&broker.metrics().connections_current);
        if let Err(refused) = policy::screen(&connect, broker.config(), connected) {
            return Err(refuse(&connect, refused, out));
        }
        if !broker.connect_allowed(self.peer.ip(), crate::clock::ms(now)) {
            Metrics::inc(&broker.metrics().refused_connect_rate);
            let why = "CONNECTs from this address faster than limits.max_connect_rate_per_address";
            let reason = if connect.protocol.is_v5() {
                ReasonCode::CONNECTION_RATE_EXCEEDED
            } else {
                ReasonCode::SERVER_UNAVAILABLE
            };
            return Err(refuse(&connect, Refused::new(&connect, reason, why), out));
        }
        if let State::Connecting { door, .. } = &self.state {
            match door.certified.clone() {
                Certified::NotAsked => {}
                // As Mosquitto's use_identity_as_username: the certificate is the credential,
                // and the CONNECT's user name and password are not looked at.
                Certified::User(user) => {
                    let identity = Identity {
                        checked: true,
                        user: Some(user.into()),
                        ..Identity::default()
                    };
                    return self.establish(connect, identity, now, out);
                }
                Certified::Missing => {
                    let why = "the listener takes the user name from a client certificate, and \
                               this client presented none that names one";
                    let refused = Refused::new(&connect, ReasonCode::NOT_AUTHORIZED, why);
                    return Err(refuse(&connect, refused, out));
                }
            }
        }
        let props = &connect.properties;
        let credentials = Credentials {
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
            method: props.authentication_method.as_deref(),
        };
        let State::Connecting { door, .. } = &self.state else {
            return Ok(());
        };
        let begun = crate::auth::Authenticate::begin(&*door.realm, &credentials);
        let checked = matches!(begun, Begin::User(_));
        let (reason, why) = match begun {
            Begin::Anonymous => return self.establish(connect, Identity::default(), now, out),
            Begin::User(user) | Begin::Unchecked(user) => {
                let identity = Identity {
                    checked,
                    user: Some(user),
                    ..Identity::default()
                };
                return self.establish(connect, identity, now, out);
            }
            Begin::Exchange(exchange) => match props.authentication_method.clone() {
                Some(method) => {
                    let data = props.authentication_data.clone().unwrap_or_default();
                    let pending = Box::new(Pending {
                        connect,
                        method,
                        exchange,
                    });
                    return self.step(pending, &data, now, out);
                }
                // Only a method starts an exchange: one started without is not to be trusted.
                None => (
                    ReasonCode::BAD_AUTHENTICATION_METHOD,
                    "an authentication exchange without an Authentication Method",
                ),
            },
            Begin::Verify(job) => {
                if let State::Connecting { door, .. } = &mut self.state {
                    door.verifying = Some(super::Verifying {
                        connect,
                        job: Some(job),
                    });
                }
                return Ok(());
            }
            Begin::UnknownMethod => (
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "unknown Authentication Method",
            ),
            Begin::Refused(why) => {
                let refused = Refused::new(&connect, ReasonCode::BAD_USER_NAME_OR_PASSWORD, why);
                return Err(self.failed_login(refuse(&connect, refused, out), now));
            }
        };
        let refused = Refused::new(&connect, reason, why);
        Err(refuse(&connect, refused, out))
    }

    /// Feeds the client's Authentication Data to the exchange and answers: AUTH 0x18 with the
    /// next challenge, or the handshake's end.
    fn step(
        &mut self,
        mut pending: Box<Pending>,
        data: &[u8],
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        match pending.exchange.step(data) {
            Step::Continue(challenge) => {
                let auth = auth_packet(
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    &pending.method,
                    challenge,
                );
                let limit = pending.connect.properties.maximum_packet_size;
                let Some(auth) = auth.within(ProtocolVersion::V5, limit.unwrap_or(u32::MAX)) else {
                    // [MQTT-3.1.2-24] The exchange cannot go on within the client's limit.
                    let why = "the AUTH challenge would exceed the client's Maximum Packet Size";
                    let refused = Refused::new(&pending.connect, ReasonCode::PACKET_TOO_LARGE, why);
                    return Err(refuse(&pending.connect, refused, out));
                };
                // An AUTH built from a valid method name always encodes.
                let _ = auth.encode(ProtocolVersion::V5, out);
                if let State::Connecting { exchange, .. } = &mut self.state {
                    *exchange = Some(pending);
                }
                Ok(())
            }
            Step::Success { data, user } => {
                let Pending {
                    connect, method, ..
                } = *pending;
                let identity = Identity {
                    user: Some(user),
                    checked: true,
                    method: Some(method),
                    data: data.map(Into::into),
                };
                self.establish(connect, identity, now, out)
            }
            Step::Failure(why) => {
                // The client learns only that it failed: which check failed would help an
                // attacker guess.
                tracing::info!(client_id = %pending.connect.client_id, "enhanced authentication failed: {why}");
                let refused = Refused::new(
                    &pending.connect,
                    ReasonCode::NOT_AUTHORIZED,
                    "authentication failed",
                );
                Err(self.failed_login(refuse(&pending.connect, refused, out), now))
            }
        }
    }

    /// The costly password check a CONNECT waits for, if one does: the shell runs it off the
    /// runtime's threads and hands the answer to [`Engine::verified`].
    pub(crate) fn take_verification(&mut self) -> Option<crate::auth::VerifyJob> {
        match &mut self.state {
            State::Connecting { door, .. } => door.verifying.as_mut()?.job.take(),
            _ => None,
        }
    }

    /// Carries on with the CONNECT that waited for a password check: accepted as the user, or
    /// refused with 0x86 (3.1.1: 0x04) and slowed as any failed login.
    pub(crate) fn verified(
        &mut self,
        result: Result<String, &'static str>,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        let State::Connecting { door, .. } = &mut self.state else {
            return Ok(());
        };
        let Some(super::Verifying { connect, .. }) = door.verifying.take() else {
            return Ok(());
        };
        match result {
            Ok(user) => {
                let identity = Identity {
                    checked: true,
                    user: Some(user),
                    ..Identity::default()
                };
                self.establish(connect, identity, now, out)
            }
            Err(why) => {
                let refused = Refused::new(&connect, ReasonCode::BAD_USER_NAME_OR_PASSWORD, why);
                Err(self.failed_login(refuse(&connect, refused, out), now))
            }
        }
    }

    /// Notes a failed login from this connection's address, and has its refusal wait as long as
    /// the address's failures say (see `broker/logins.rs`).
    fn failed_login(&self, mut close: Close, now: Instant) -> Close {
        if let (Some(broker), Close::Refused { slow_down, .. }) = (self.broker(), &mut close) {
            *slow_down = broker.login_failed(self.peer.ip(), crate::clock::ms(now));
        }
        close
    }

    /// Applies the policy's decision for an authenticated client: attaches its session, answers
    /// CONNACK and resends what the session had in flight.
    fn establish(
        &mut self,
        connect: Box<Connect>,
        identity: Identity,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<(), Close> {
        let (Some(broker), State::Connecting { door, .. }) = (self.broker().cloned(), &self.state)
        else {
            return Ok(());
        };
        let realm = door.realm.clone();
        let accepted = match policy::accept(
            &connect,
            broker.config(),
            realm.allow_anonymous,
            &identity,
            assign_client_id,
        ) {
            Ok(accepted) => accepted,
            Err(refused) => return Err(refuse(&connect, refused, out)),
        };
        let Connect {
            protocol: version,
            clean_start,
            properties: p,
            will,
            ..
        } = *connect;
        if identity.checked {
            broker.login_succeeded(self.peer.ip());
        }
        let owner = crate::broker::Owner {
            user: identity.user.as_deref().map(std::sync::Arc::from),
            realm: realm.id,
        };
        let attached = broker.attach(
            accepted.client_id,
            clean_start,
            accepted.window,
            accepted.expiry,
            owner,
        );
        Metrics::inc(&broker.metrics().connections_accepted);
        Metrics::inc(&broker.metrics().connections_current);
        let v5 = version.is_v5();
        // No more of our aliases than we accept from clients: the table is scanned when full,
        // and a client may announce 65,535 [issue 14, section 0].
        let aliases_out = p
            .topic_alias_maximum
            .map(|m| m.min(broker.config().limits.topic_alias_maximum))
            .filter(|&m| v5 && m > 0)
            .map(alias::Outbound::new);
        let identity_user = identity.user;
        let reauth = identity.method.map(|method| super::auth::Reauth {
            method,
            user: identity_user.clone().unwrap_or_default(),
            exchange: None,
        });
        let enhanced = reauth.is_some();
        let acl = realm.acl_for(identity_user.as_deref(), attached.link.client_id());
        let will = match will {
            Some(w) if acl.as_ref().is_some_and(|acl| !acl.may_write(&w.topic)) => {
                // As Mosquitto: the client is let in, without the will it may not publish.
                tracing::info!(
                    client_id = %attached.link.client_id(),
                    topic = %w.topic,
                    "will dropped: the ACL does not allow this client to publish to its topic"
                );
                None
            }
            will => will,
        };
        let limits = &broker.config().limits;
        let rate = super::rate::PublishRate::new(
            limits.max_publish_rate,
            limits.max_publish_bytes_rate,
            now,
        );
        let wanted = reauth.is_some() || aliases_out.is_some() || acl.is_some() || rate.is_some();
        let extras = wanted.then(|| {
            Box::new(Extras {
                acl,
                rate,
                auth: reauth,
                aliases_in: Default::default(),
                aliases_out,
                hold: None,
                pressure: None,
            })
        });
        let mut open = Open {
            link: attached.link,
            version,
            accepts: if enhanced {
                PacketTypes::FROM_CLIENT
            } else {
                PacketTypes::FROM_CLIENT.without_auth()
            },
            last_heard_ms: crate::clock::ms(now),
            grace_ms: u32::from(accepted.keep_alive) * 1500,
            will: will.map(Box::new),
            client_max_packet: p.maximum_packet_size.unwrap_or(u32::MAX),
            problem_info: p.request_problem_information != Some(0),
            extras,
        };
        let connack = ConnAck {
            session_present: attached.session_present,
            ..accepted.connack
        };
        open.write_packet(out, Packet::ConnAck(connack));
        open.resend_inflight(out, now);
        if open.grace_ms > 0 {
            open.link
                .watch_keep_alive(open.grace_ms, open.last_heard_ms);
        }
        tracing::info!(
            client_id = %open.link.client_id(),
            peer = %self.peer,
            user = identity_user.as_deref().unwrap_or(""),
            version = ?version,
            session_present = attached.session_present,
            "client connected"
        );
        self.state = State::Open(open);
        Ok(())
    }
}

/// Answers a refused CONNECT: its CONNACK into `out` within the client's Maximum Packet Size
/// (without the Reason String if it does not fit with it, without any property if it still
/// does not, and not at all if even that does not fit [MQTT-3.1.2-24, MQTT-3.2.2-19]; a
/// 3.1.1 CONNACK has no code for some v5 refusals, and such a client is only closed). Returns
/// the [`Close`] that ends the connection.
fn refuse(connect: &Connect, refused: Refused, out: &mut BytesMut) -> Close {
    let version = connect.protocol;
    let limit = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
    let (reason, why) = (refused.reason(), refused.why);
    let ack = refused.connack;
    let bare = (!ack.properties.is_empty()).then(|| ConnAck {
        properties: Default::default(),
        ..ack.clone()
    });
    let packet = Packet::ConnAck(ack)
        .within(version, limit)
        .or_else(|| Packet::ConnAck(bare?).within(version, limit));
    if let Some(packet) = packet {
        // A CONNACK whose code has no 3.1.1 form does not encode: nothing is sent.
        let _ = packet.encode(version, out);
    }
    let user = connect.username.as_deref().map(Box::from);
    Close::Refused {
        reason,
        why,
        user,
        slow_down: std::time::Duration::ZERO,
    }
}

/// The protocol level of the CONNECT at the front of `buf`, if that much of it has arrived:
/// the byte after the fixed header and the protocol name.
fn connect_level(buf: &[u8]) -> Option<u8> {
    let header = 1 + buf.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    let name = usize::from(u16::from_be_bytes([
        *buf.get(header)?,
        *buf.get(header + 1)?,
    ]));
    buf.get(header + 2 + name).copied()
}

static ASSIGNED: AtomicU64 = AtomicU64::new(1);

/// A client id for a client that sent none (v5 Assigned Client Identifier, or 3.1.1 with a
/// clean session) [MQTT-3.1.3-6].
fn assign_client_id() -> String {
    let n = ASSIGNED.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("roost-{nanos:08x}{n:x}")
}
