//! The CONNECT handshake: read CONNECT within the connect timeout, check it, attach the session
//! (taking it over if need be), answer CONNACK and resend what the session had in flight.

use super::{Connection, enhanced_auth};
use crate::broker::{Broker, Metrics};
use crate::protocol::{
    ByteStr, ConnAck, Connect, DecodeError, Limits, Packet, PacketTypes, Properties,
    ProtocolVersion, ReasonCode, decode, error,
};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Answers CONNECT with a refusal. A v5 client that did not turn problem information off
/// also gets `why` as the Reason String, if the CONNACK still fits its Maximum Packet Size
/// [MQTT-3.2.2-19]. `why` goes to the log line either way.
pub(super) async fn refuse<S: AsyncWrite + Unpin>(
    io: &mut S,
    connect: &Connect,
    reason: ReasonCode,
    why: &'static str,
) -> Refusal {
    let version = connect.protocol;
    let mut ack = ConnAck {
        session_present: false,
        reason,
        properties: Default::default(),
    };
    if version.is_v5() && connect.properties.request_problem_information != Some(0) {
        ack.properties.reason_string = ByteStr::try_from(why).ok();
    }
    // A 3.1.1 CONNACK has no code for some v5 refusals; such a client is only closed.
    send_connack(io, connect, ack).await;
    Refusal::Refused(reason, why)
}

/// Writes a CONNACK within the client's Maximum Packet Size: without its Reason String if it
/// does not fit with it, without any property if it is a refusal that still does not fit, and
/// not at all if even that does not fit [MQTT-3.1.2-24, MQTT-3.2.2-19]. Returns whether it was
/// written.
async fn send_connack<S: AsyncWrite + Unpin>(io: &mut S, connect: &Connect, ack: ConnAck) -> bool {
    let version = connect.protocol;
    let limit = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
    let bare = (ack.reason.is_error() && !ack.properties.is_empty()).then(|| ConnAck {
        properties: Default::default(),
        ..ack.clone()
    });
    let packet = Packet::ConnAck(ack)
        .within(version, limit)
        .or_else(|| Packet::ConnAck(bare?).within(version, limit));
    let mut out = BytesMut::new();
    match packet {
        Some(p) if p.encode(version, &mut out).is_ok() => io.write_all(&out).await.is_ok(),
        _ => false,
    }
}

/// Why a connection attempt failed, for the one log line.
pub(super) enum Refusal {
    Timeout,
    Closed,
    NotConnect(&'static str),
    Decode(DecodeError),
    /// A CONNECT the codec refused; `v5` if its protocol level said 5.
    BadConnect {
        error: DecodeError,
        v5: bool,
    },
    Refused(ReasonCode, &'static str),
}

/// Runs the handshake; `None` when the connection was refused or lost (already logged).
pub(super) async fn accept<S>(
    io: &mut S,
    inbuf: &mut BytesMut,
    peer: SocketAddr,
    broker: &Broker,
) -> Option<Box<Connection>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = broker.config().clone();
    // The first packet may be anything: what is not a CONNECT is named in the log line.
    let limits = Limits {
        max_packet_size: config.limits.max_packet_size,
        accepts: PacketTypes::ALL,
    };
    let timeout = Duration::from_secs(config.limits.connect_timeout_secs);
    // The whole handshake, enhanced authentication included, has the connect timeout.
    let deadline = tokio::time::Instant::now() + timeout;
    let first = tokio::time::timeout(timeout, read_connect(io, inbuf, &limits)).await;
    let connect = match first {
        Err(_) => Err(Refusal::Timeout),
        Ok(Err(refusal)) => Err(refusal),
        Ok(Ok(connect)) => Ok(connect),
    };
    let result = match connect {
        Ok(connect) => {
            let io = Io {
                io,
                inbuf,
                deadline,
            };
            establish(*connect, peer, broker, io, limits).await
        }
        Err(Refusal::Decode(e)) if e == error::UNSUPPORTED_PROTOCOL_VERSION => {
            // [MQTT-3.1.2-2] CONNACK 0x01 (3.1.1 form: the client's version is unknown).
            let _ = io.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            Err(Refusal::Decode(e))
        }
        Err(Refusal::BadConnect { error, v5 }) => {
            if v5 {
                // 5.0 section 4.13.1: the server MAY answer a bad CONNECT with a CONNACK that
                // says why. Its properties did not parse, so neither did the client's Maximum
                // Packet Size: the CONNACK goes bare, 5 bytes, and the log line has the rest.
                // (3.1.1 closes without a CONNACK [MQTT-3.2.2-6 of 3.1.1 leaves no code for it].)
                let _ = io
                    .write_all(&[0x20, 0x03, 0x00, error.reason.0, 0x00])
                    .await;
            }
            Err(Refusal::Decode(error))
        }
        Err(refusal) => Err(refusal),
    };
    match result {
        Ok(conn) => Some(conn),
        Err(refusal) => {
            Metrics::inc(&broker.metrics().connections_refused);
            let _ = tokio::time::timeout(super::close::LINGER, io.shutdown()).await;
            match refusal {
                Refusal::Timeout => {
                    tracing::info!(%peer, "closed: no CONNECT within the connect timeout")
                }
                Refusal::Closed => tracing::debug!(%peer, "closed before CONNECT"),
                Refusal::NotConnect(what) => {
                    tracing::warn!(%peer, "closed: [MQTT-3.1.0-1] first packet was {what}, not CONNECT")
                }
                Refusal::Decode(e) | Refusal::BadConnect { error: e, .. } => {
                    tracing::warn!(%peer, "refused CONNECT: {e}")
                }
                Refusal::Refused(reason, why) => {
                    tracing::warn!(%peer, "refused CONNECT: {why} ({reason})")
                }
            }
            // A client that sent more behind its CONNECT still reads the CONNACK.
            super::close::linger(io).await;
            None
        }
    }
}

async fn read_connect<R: AsyncRead + Unpin>(
    io: &mut R,
    inbuf: &mut BytesMut,
    limits: &Limits,
) -> Result<Box<Connect>, Refusal> {
    loop {
        let is_connect = inbuf.first().is_some_and(|b| b >> 4 == 1);
        // Read before decoding, which consumes the frame even when it refuses it.
        let level = connect_level(inbuf);
        // The version is unknown until CONNECT is read; CONNECT decodes in its own version.
        match decode(inbuf, ProtocolVersion::V5, limits) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(other)) => return Err(Refusal::NotConnect(other.name())),
            Ok(None) => {}
            Err(_) if !is_connect => return Err(Refusal::NotConnect("an invalid packet")),
            Err(e) if e == error::UNSUPPORTED_PROTOCOL_VERSION => return Err(Refusal::Decode(e)),
            Err(error) => {
                let v5 = level == Some(5);
                return Err(Refusal::BadConnect { error, v5 });
            }
        }
        match io.read_buf(inbuf).await {
            Ok(0) | Err(_) => return Err(Refusal::Closed),
            Ok(_) => {}
        }
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

/// The connection's socket and read buffer while the handshake runs.
struct Io<'a, S> {
    io: &'a mut S,
    inbuf: &'a mut BytesMut,
    deadline: tokio::time::Instant,
}

async fn establish<S: AsyncRead + AsyncWrite + Unpin>(
    connect: Connect,
    peer: SocketAddr,
    broker: &Broker,
    io: Io<'_, S>,
    limits: Limits,
) -> Result<Box<Connection>, Refusal> {
    let Io {
        io,
        inbuf,
        deadline,
    } = io;
    let config = broker.config().clone();
    let version = connect.protocol;
    let v5 = version.is_v5();
    let refuse = async |io: &mut S, reason: ReasonCode, why: &'static str| {
        refuse(io, &connect, reason, why).await
    };

    let reference = &config.mqtt5.server_reference;
    if !reference.is_empty() {
        // The operator sends clients elsewhere (5.0 section 4.11); 3.1.1 has only "server
        // unavailable" for it.
        let (reason, why) = match (v5, config.mqtt5.server_moved) {
            (false, _) => (
                ReasonCode::SERVER_UNAVAILABLE,
                "redirected (server_reference)",
            ),
            (true, false) => (ReasonCode::USE_ANOTHER_SERVER, "sent to another server"),
            (true, true) => (ReasonCode::SERVER_MOVED, "sent to the server it moved to"),
        };
        let mut properties = Properties::default();
        if v5 {
            properties.server_reference = ByteStr::try_from(reference.as_str()).ok();
        }
        let ack = ConnAck {
            session_present: false,
            reason,
            properties: properties.into(),
        };
        send_connack(io, &connect, ack).await;
        return Err(Refusal::Refused(reason, why));
    }
    // Server Keep Alive, as Mosquitto's max_keepalive: a v5 client asking for more than the
    // limit, or for none, is told the limit; a 3.1.1 client asking for more is refused.
    let max_keepalive = config.limits.max_keepalive;
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    if max_keepalive < u16::MAX && (keep_alive > max_keepalive || (v5 && keep_alive == 0)) {
        if !v5 {
            return Err(refuse(
                io,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "keep alive above limits.max_keepalive",
            )
            .await);
        }
        keep_alive = max_keepalive;
        server_keep_alive = Some(max_keepalive); // [MQTT-3.2.2-21]
    }

    let authenticated =
        enhanced_auth::connect_exchange(&connect, io, inbuf, &limits, broker, deadline).await?;

    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            // [MQTT-3.1.3-8] of 3.1.1: an empty id needs a clean session.
            return Err(refuse(
                io,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id without clean session",
            )
            .await);
        }
        if version == ProtocolVersion::V3_1 {
            return Err(refuse(
                io,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "MQTT 3.1 requires a client id",
            )
            .await);
        }
        let id = assign_client_id();
        assigned = Some(id.clone());
        id.into()
    } else {
        connect.client_id.as_str().into()
    };
    if connect.username.is_none() && authenticated.is_none() && !config.auth.allow_anonymous {
        return Err(refuse(
            io,
            ReasonCode::NOT_AUTHORIZED,
            "anonymous clients are not allowed",
        )
        .await);
    }
    if let Some(will) = &connect.will {
        if will.qos as u8 > config.limits.max_qos {
            // 5.0 [MQTT-3.2.2-12]; 3.1.1 has no code for it, so it gets "not authorized".
            let reason = if v5 {
                ReasonCode::QOS_NOT_SUPPORTED
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            return Err(refuse(io, reason, "will QoS above the server's maximum QoS").await);
        }
        if will.retain && !config.limits.retain_available {
            let reason = if v5 {
                ReasonCode::RETAIN_NOT_SUPPORTED
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            return Err(refuse(io, reason, "retained will while retain is unavailable").await);
        }
        if crate::topic::too_deep(&will.topic, config.limits.max_topic_levels) {
            let reason = if v5 {
                ReasonCode::TOPIC_NAME_INVALID
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            let why = "will topic has more levels than limits.max_topic_levels";
            return Err(refuse(io, reason, why).await);
        }
    }
    let p = &connect.properties;
    let window = p
        .receive_maximum
        .unwrap_or(u16::MAX)
        .min(config.limits.max_inflight);
    // 3.1.1: a persistent session never expires (as in Mosquitto's default); v5: as asked.
    let expiry = match (v5, connect.clean_start) {
        (true, _) => p.session_expiry_interval.unwrap_or(0),
        (false, true) => 0,
        (false, false) => u32::MAX,
    };
    let mut properties = Properties::default();
    if v5 {
        properties.receive_maximum = Some(config.limits.receive_maximum);
        properties.maximum_packet_size = Some(config.limits.max_packet_size);
        properties.assigned_client_identifier =
            assigned.map(|a| a.try_into()).transpose().ok().flatten();
        if config.limits.max_qos < 2 {
            properties.maximum_qos = Some(config.limits.max_qos);
        }
        if !config.limits.retain_available {
            properties.retain_available = Some(0);
        }
        if !config.shared_subscriptions.available {
            properties.shared_subscription_available = Some(0);
        }
        if !config.limits.wildcard_subscription_available {
            properties.wildcard_subscription_available = Some(0);
        }
        if !config.limits.subscription_identifier_available {
            properties.subscription_identifier_available = Some(0);
        }
        properties.server_keep_alive = server_keep_alive;
        if let Some(a) = &authenticated {
            // [MQTT-4.12.0-5] a successful CONNACK names the method.
            properties.authentication_method = Some(a.method.clone());
            properties.authentication_data = a.data.clone();
        }
        if config.limits.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(config.limits.topic_alias_maximum);
        }
        let prefix = &config.mqtt5.response_information_prefix;
        if p.request_response_information == Some(1) && !prefix.is_empty() {
            // 5.0 section 4.10: the basis of response topics; one per client.
            properties.response_information =
                ByteStr::try_from(format!("{prefix}{client_id}/")).ok();
        }
    }
    let mut ack = ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties: properties.into(),
    };
    if let Some(limit) = p.maximum_packet_size
        && Packet::ConnAck(ack.clone())
            .within(version, limit)
            .is_none()
    {
        // [MQTT-3.1.2-24] This client cannot be told what it needs to know to go on (its
        // assigned id, our limits): refused, before anything of a session is touched.
        let why = "the CONNACK would exceed the client's Maximum Packet Size";
        return Err(refuse(io, ReasonCode::PACKET_TOO_LARGE, why).await);
    }
    let attached = broker.attach(client_id.clone(), connect.clean_start, window, expiry);
    Metrics::inc(&broker.metrics().connections_accepted);
    ack.session_present = attached.session_present;
    let auth_method = authenticated.is_some();
    let auth = authenticated.map(|a| enhanced_auth::Session {
        method: a.method,
        user: a.user,
        exchange: None,
    });
    let aliases_out = p
        .topic_alias_maximum
        .filter(|&m| v5 && m > 0)
        .map(super::alias::Outbound::new);
    let extras = (auth.is_some() || aliases_out.is_some()).then(|| {
        Box::new(super::Extras {
            auth,
            aliases_in: Default::default(),
            aliases_out,
        })
    });
    // Boxed: the connection task's future then holds a pointer, not the struct (an async fn
    // keeps a copy of each by-value argument beside the moved value).
    let mut conn = Box::new(Connection {
        broker: broker.clone(),
        peer,
        version,
        slot: attached.slot,
        link: attached.link,
        limits: Limits {
            accepts: if auth_method {
                PacketTypes::FROM_CLIENT
            } else {
                PacketTypes::FROM_CLIENT.without_auth()
            },
            ..limits
        },
        keep_alive,
        will: connect.will.map(Box::new),
        client_max_packet: p.maximum_packet_size.unwrap_or(u32::MAX),
        problem_info: p.request_problem_information != Some(0),
        extras,
        inbuf: BytesMut::new(),
        out: BytesMut::new(),
    });
    conn.write_packet(Packet::ConnAck(ack));
    conn.resend_inflight();
    tracing::info!(
        client_id = %conn.client_id(),
        %peer,
        version = ?version,
        session_present = attached.session_present,
        "client connected"
    );
    Ok(conn)
}
