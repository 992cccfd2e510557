//! The CONNECT handshake's decisions, as pure functions of the decoded CONNECT, the
//! configuration and who authentication says the client is: whether the client may connect,
//! with what keep alive, session and client id, and the CONNACK that tells it so. No I/O, no
//! clock, no broker state: the engine runs authentication between [`screen`] and [`accept`],
//! attaches the session and sends what they return.

use crate::config::Config;
use crate::protocol::{ByteStr, ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use bytes::Bytes;
use std::sync::Arc;

/// A refused CONNECT: the CONNACK to answer with, and why, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) connack: ConnAck,
    pub(crate) why: &'static str,
}

impl Refused {
    /// A refusal with `reason`. A v5 client that did not turn problem information off also gets
    /// `why` as the Reason String (dropped again if the CONNACK would not fit its Maximum Packet
    /// Size [MQTT-3.2.2-19]).
    pub(crate) fn new(connect: &Connect, reason: ReasonCode, why: &'static str) -> Self {
        let mut connack = ConnAck {
            session_present: false,
            reason,
            properties: Default::default(),
        };
        if connect.protocol.is_v5() && connect.properties.request_problem_information != Some(0) {
            connack.properties.make_mut().reason_string = ByteStr::try_from(why).ok();
        }
        Self { connack, why }
    }

    /// The reason code the client is refused with.
    pub(crate) fn reason(&self) -> ReasonCode {
        self.connack.reason
    }
}

/// Who authentication says the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The user; `None` for an anonymous client.
    pub(crate) user: Option<String>,
    /// Whether something checked `user` (a password, a method). An unchecked user name is
    /// let in only where anonymous clients are.
    pub(crate) checked: bool,
    /// The v5 Authentication Method it used, if any: CONNACK names it [MQTT-4.12.0-5].
    pub(crate) method: Option<ByteStr>,
    /// The method's last data, for the CONNACK (SCRAM's server-final-message).
    pub(crate) data: Option<Bytes>,
}

/// An accepted CONNECT: what the connection and its session are to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) client_id: Arc<str>,
    /// The keep alive granted, in seconds; 0 = none.
    pub(crate) keep_alive: u16,
    /// The outbound in-flight window: the client's Receive Maximum within the server's limit.
    pub(crate) window: u16,
    /// Session Expiry Interval: 0 ends the session with the connection, `u32::MAX` never.
    pub(crate) expiry: u32,
    /// The CONNACK; its Session Present flag is set once the session is attached.
    pub(crate) connack: ConnAck,
}

/// What is decided before authentication runs: a redirected server, a 3.1.1 keep alive above the
/// limit and v5 Authentication Data without a method are refused whoever the client is.
///
/// `connected` is how many clients are connected now: at `limits.max_connections` a new one is
/// refused (0x97 Quota exceeded; 3.1.1: 0x03 Server unavailable) before any authentication work.
pub(crate) fn screen(connect: &Connect, config: &Config, connected: u64) -> Result<(), Refused> {
    let v5 = connect.protocol.is_v5();
    let max = config.limits.max_connections;
    if max > 0 && connected >= max {
        let reason = if v5 {
            ReasonCode::QUOTA_EXCEEDED
        } else {
            ReasonCode::SERVER_UNAVAILABLE
        };
        let why = "limits.max_connections clients are connected";
        return Err(Refused::new(connect, reason, why));
    }
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
        let connack = ConnAck {
            session_present: false,
            reason,
            properties: properties.into(),
        };
        return Err(Refused { connack, why });
    }
    keep_alive(connect, config)?;
    let props = &connect.properties;
    if props.authentication_method.is_none() && props.authentication_data.is_some() {
        // 5.0 section 3.1.2.11.10: data without a method is a Protocol Error.
        let why = "Authentication Data without an Authentication Method";
        return Err(Refused::new(connect, ReasonCode::PROTOCOL_ERROR, why));
    }
    Ok(())
}

/// The keep alive granted and the v5 Server Keep Alive that says so, as Mosquitto's
/// max_keepalive: a v5 client asking for more than the limit, or for none, is told the limit
/// [MQTT-3.2.2-21]; a 3.1.1 client asking for more is refused.
fn keep_alive(connect: &Connect, config: &Config) -> Result<(u16, Option<u16>), Refused> {
    let max = config.limits.max_keepalive;
    let asked = connect.keep_alive;
    let v5 = connect.protocol.is_v5();
    if max == u16::MAX || (asked <= max && !(v5 && asked == 0)) {
        return Ok((asked, None));
    }
    if !v5 {
        let why = "keep alive above limits.max_keepalive";
        return Err(Refused::new(
            connect,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            why,
        ));
    }
    Ok((max, Some(max)))
}

/// Decides a CONNECT that passed [`screen`], for a client authenticated as `identity` on a
/// listener that lets anonymous clients in or not (`allow_anonymous`, from its realm).
/// `assign_id` makes a client id for a client that sent none [MQTT-3.1.3-6].
pub(crate) fn accept(
    connect: &Connect,
    config: &Config,
    allow_anonymous: bool,
    identity: &Identity,
    assign_id: impl FnOnce() -> String,
) -> Result<Accepted, Refused> {
    let version = connect.protocol;
    let v5 = version.is_v5();
    let refuse = |reason, why| Err(Refused::new(connect, reason, why));
    let (keep_alive, server_keep_alive) = keep_alive(connect, config)?;
    let mut assigned = None;
    let client_id: Arc<str> = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            // [MQTT-3.1.3-8] of 3.1.1: an empty id needs a clean session.
            let why = "empty client id without clean session";
            return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why);
        }
        if version == ProtocolVersion::V3_1 {
            let why = "MQTT 3.1 requires a client id";
            return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why);
        }
        let id = assign_id();
        assigned = Some(id.clone());
        id.into()
    } else {
        connect.client_id.as_str().into()
    };
    if !identity.checked && !allow_anonymous {
        let why = if identity.user.is_some() {
            "a user name with no password file to check it, and anonymous clients are not allowed"
        } else {
            "anonymous clients are not allowed"
        };
        return refuse(ReasonCode::NOT_AUTHORIZED, why);
    }
    if let Some(will) = &connect.will {
        let limits = &config.limits;
        // 3.1.1 has no code for these; such a client gets "not authorized".
        let v5_or = |code| if v5 { code } else { ReasonCode::NOT_AUTHORIZED };
        if will.qos as u8 > limits.max_qos {
            // 5.0 [MQTT-3.2.2-12].
            let why = "will QoS above the server's maximum QoS";
            return refuse(v5_or(ReasonCode::QOS_NOT_SUPPORTED), why);
        }
        if will.retain && !limits.retain_available {
            let why = "retained will while retain is unavailable";
            return refuse(v5_or(ReasonCode::RETAIN_NOT_SUPPORTED), why);
        }
        if crate::topic::too_big(&will.topic, limits) {
            let why = "will topic longer than limits.max_topic_length or deeper than \
                       max_topic_levels";
            return refuse(v5_or(ReasonCode::TOPIC_NAME_INVALID), why);
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
        let limits = &config.limits;
        properties.receive_maximum = Some(limits.receive_maximum);
        properties.maximum_packet_size = Some(limits.max_packet_size);
        properties.assigned_client_identifier = assigned.and_then(|a| a.try_into().ok());
        if limits.max_qos < 2 {
            properties.maximum_qos = Some(limits.max_qos);
        }
        let off = |available: bool| (!available).then_some(0);
        properties.retain_available = off(limits.retain_available);
        properties.shared_subscription_available = off(config.shared_subscriptions.available);
        properties.wildcard_subscription_available = off(limits.wildcard_subscription_available);
        properties.subscription_identifier_available =
            off(limits.subscription_identifier_available);
        properties.server_keep_alive = server_keep_alive;
        if let Some(method) = &identity.method {
            // [MQTT-4.12.0-5] a successful CONNACK names the method.
            properties.authentication_method = Some(method.clone());
            properties.authentication_data = identity.data.clone();
        }
        if limits.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
        }
        let prefix = &config.mqtt5.response_information_prefix;
        if p.request_response_information == Some(1) && !prefix.is_empty() {
            // 5.0 section 4.10: the basis of response topics; one per client.
            properties.response_information =
                ByteStr::try_from(format!("{prefix}{client_id}/")).ok();
        }
    }
    let connack = ConnAck {
        session_present: false,
        reason: ReasonCode::SUCCESS,
        properties: properties.into(),
    };
    if let Some(limit) = p.maximum_packet_size
        && Packet::ConnAck(connack.clone())
            .within(version, limit)
            .is_none()
    {
        // [MQTT-3.1.2-24] This client cannot be told what it needs to know to go on (its
        // assigned id, our limits): refused, before anything of a session is touched.
        let why = "the CONNACK would exceed the client's Maximum Packet Size";
        return refuse(ReasonCode::PACKET_TOO_LARGE, why);
    }
    Ok(Accepted {
        client_id,
        keep_alive,
        window,
        expiry,
        connack,
    })
}
