//! The two MQTT 5.0 oracles of `codec_differential_v5.rs`, `rumqttc::v5::mqttbytes::v5` and
//! `mqttbytes::v5`: each converts a Roost packet into the oracle's equivalent, writes an oracle
//! packet and reads one, reporting a refusal as the oracle's error by name.
//!
//! Most property structs and reason-code enums have the same names in both crates, so one macro
//! writes their conversions for both; the packets they model differently are written per crate.

use bytes::BytesMut;
use roost::protocol::*;
use rumqttc::v5::mqttbytes as rq5;

/// Maps a generated reason code onto an oracle's enum, variant by variant.
macro_rules! codes {
    ($c:expr, $($e:ident)::+ { $($n:literal => $v:ident),* $(,)? }) => {{
        use $($e)::+ as E;
        match $c.0 {
            $($n => E::$v,)*
            other => unreachable!("{other:#04x} is not generated"),
        }
    }};
}

/// What the two v5 oracles share: the property structs and the reason code enums have the same
/// names and fields in both. `$base` holds `QoS` and `v5`; `$will` names the will properties.
macro_rules! common_v5 {
    ($base:ident, $will:ident) => {
        use $base::v5 as o;

        fn qos(q: QoS) -> $base::QoS {
            match q {
                QoS::AtMostOnce => $base::QoS::AtMostOnce,
                QoS::AtLeastOnce => $base::QoS::AtLeastOnce,
                QoS::ExactlyOnce => $base::QoS::ExactlyOnce,
            }
        }

        fn st(v: &Option<ByteStr>) -> Option<String> {
            v.as_ref().map(|s| s.to_string())
        }

        fn up(p: &Properties) -> Vec<(String, String)> {
            let pairs = p.user_properties.iter();
            pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect()
        }

        /// The oracles hold an empty property section as `None`.
        fn some<T>(p: &Properties, f: impl FnOnce() -> T) -> Option<T> {
            (!p.is_empty()).then(f)
        }

        /// Reason String and User Property, the fields of every ack's property struct.
        fn rs(p: &Properties) -> Option<(Option<String>, Vec<(String, String)>)> {
            some(p, || (st(&p.reason_string), up(p)))
        }

        fn login(c: &Connect) -> Option<o::Login> {
            let password = c.password.as_ref().map(|p| String::from_utf8(p.to_vec()).unwrap());
            (c.username.is_some() || password.is_some()).then(|| o::Login {
                username: st(&c.username).unwrap_or_default(),
                password: password.unwrap_or_default(),
            })
        }

        fn connect_props(p: &Properties) -> Option<o::ConnectProperties> {
            some(p, || o::ConnectProperties {
                session_expiry_interval: p.session_expiry_interval,
                receive_maximum: p.receive_maximum,
                max_packet_size: p.maximum_packet_size,
                topic_alias_max: p.topic_alias_maximum,
                request_response_info: p.request_response_information,
                request_problem_info: p.request_problem_information,
                user_properties: up(p),
                authentication_method: st(&p.authentication_method),
                authentication_data: p.authentication_data.clone(),
            })
        }

        fn will_props(p: &Properties) -> Option<o::$will> {
            some(p, || o::$will {
                delay_interval: p.will_delay_interval,
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                content_type: st(&p.content_type),
                response_topic: st(&p.response_topic),
                correlation_data: p.correlation_data.clone(),
                user_properties: up(p),
            })
        }

        fn connack(c: &ConnAck) -> o::ConnAck {
            let p = &c.properties;
            o::ConnAck {
                session_present: c.session_present,
                code: codes!(c.reason, o::ConnectReturnCode {
                    0x00 => Success, 0x80 => UnspecifiedError, 0x84 => UnsupportedProtocolVersion,
                    0x85 => ClientIdentifierNotValid, 0x86 => BadUserNamePassword, 0x8A => Banned,
                    0x9C => UseAnotherServer, 0x9F => ConnectionRateExceeded,
                }),
                properties: some(p, || o::ConnAckProperties {
                    session_expiry_interval: p.session_expiry_interval,
                    receive_max: p.receive_maximum,
                    max_qos: p.maximum_qos,
                    retain_available: p.retain_available,
                    max_packet_size: p.maximum_packet_size,
                    assigned_client_identifier: st(&p.assigned_client_identifier),
                    topic_alias_max: p.topic_alias_maximum,
                    reason_string: st(&p.reason_string),
                    user_properties: up(p),
                    wildcard_subscription_available: p.wildcard_subscription_available,
                    subscription_identifiers_available: p.subscription_identifier_available,
                    shared_subscription_available: p.shared_subscription_available,
                    server_keep_alive: p.server_keep_alive,
                    response_information: st(&p.response_information),
                    server_reference: st(&p.server_reference),
                    authentication_method: st(&p.authentication_method),
                    authentication_data: p.authentication_data.clone(),
                }),
            }
        }

        fn publish_props(p: &Properties) -> Option<o::PublishProperties> {
            some(p, || o::PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                topic_alias: p.topic_alias,
                response_topic: st(&p.response_topic),
                correlation_data: p.correlation_data.clone(),
                user_properties: up(p),
                subscription_identifiers: (p.subscription_identifiers.iter())
                    .map(|&i| i as usize)
                    .collect(),
                content_type: st(&p.content_type),
            })
        }

        /// The packets both oracles model alike; `None` for the ones they differ on.
        fn common_packet(p: &Packet) -> Option<o::Packet> {
            let id = |a: &PubResp| a.packet_id;
            Some(match p {
                Packet::ConnAck(c) => o::Packet::ConnAck(connack(c)),
                Packet::PubAck(a) => o::Packet::PubAck(o::PubAck {
                    pkid: id(a),
                    reason: codes!(a.reason, o::PubAckReason {
                        0x00 => Success, 0x10 => NoMatchingSubscribers, 0x80 => UnspecifiedError,
                        0x83 => ImplementationSpecificError, 0x87 => NotAuthorized,
                        0x90 => TopicNameInvalid, 0x91 => PacketIdentifierInUse,
                        0x97 => QuotaExceeded, 0x99 => PayloadFormatInvalid,
                    }),
                    properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                        o::PubAckProperties { reason_string, user_properties }
                    }),
                }),
                Packet::PubRec(a) => o::Packet::PubRec(o::PubRec {
                    pkid: id(a),
                    reason: codes!(a.reason, o::PubRecReason {
                        0x00 => Success, 0x10 => NoMatchingSubscribers, 0x80 => UnspecifiedError,
                        0x83 => ImplementationSpecificError, 0x87 => NotAuthorized,
                        0x90 => TopicNameInvalid, 0x91 => PacketIdentifierInUse,
                        0x97 => QuotaExceeded, 0x99 => PayloadFormatInvalid,
                    }),
                    properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                        o::PubRecProperties { reason_string, user_properties }
                    }),
                }),
                Packet::PubRel(a) => o::Packet::PubRel(o::PubRel {
                    pkid: id(a),
                    reason: codes!(a.reason, o::PubRelReason {
                        0x00 => Success, 0x92 => PacketIdentifierNotFound,
                    }),
                    properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                        o::PubRelProperties { reason_string, user_properties }
                    }),
                }),
                Packet::PubComp(a) => o::Packet::PubComp(o::PubComp {
                    pkid: id(a),
                    reason: codes!(a.reason, o::PubCompReason {
                        0x00 => Success, 0x92 => PacketIdentifierNotFound,
                    }),
                    properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                        o::PubCompProperties { reason_string, user_properties }
                    }),
                }),
                Packet::Unsubscribe(u) => o::Packet::Unsubscribe(o::Unsubscribe {
                    pkid: u.packet_id,
                    filters: u.filters.iter().map(|f| f.to_string()).collect(),
                    properties: some(&u.properties, || o::UnsubscribeProperties {
                        user_properties: up(&u.properties),
                    }),
                }),
                Packet::UnsubAck(a) => o::Packet::UnsubAck(o::UnsubAck {
                    pkid: a.packet_id,
                    reasons: (a.reason_codes.iter())
                        .map(|&c| codes!(c, o::UnsubAckReason {
                            0x00 => Success, 0x11 => NoSubscriptionExisted, 0x80 => UnspecifiedError,
                            0x83 => ImplementationSpecificError, 0x87 => NotAuthorized,
                            0x8F => TopicFilterInvalid, 0x91 => PacketIdentifierInUse,
                        }))
                        .collect(),
                    properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                        o::UnsubAckProperties { reason_string, user_properties }
                    }),
                }),
                Packet::Disconnect(d) => o::Packet::Disconnect(o::Disconnect {
                    reason_code: codes!(d.reason, o::DisconnectReasonCode {
                        0x00 => NormalDisconnection, 0x04 => DisconnectWithWillMessage,
                        0x81 => MalformedPacket, 0x8E => SessionTakenOver,
                        0x98 => AdministrativeAction, 0xA2 => WildcardSubscriptionsNotSupported,
                    }),
                    properties: some(&d.properties, || o::DisconnectProperties {
                        session_expiry_interval: d.properties.session_expiry_interval,
                        reason_string: st(&d.properties.reason_string),
                        user_properties: up(&d.properties),
                        server_reference: st(&d.properties.server_reference),
                    }),
                }),
                _ => return None,
            })
        }

        fn sub_props(p: &Properties) -> Option<o::SubscribeProperties> {
            some(p, || o::SubscribeProperties {
                id: p.subscription_identifiers.first().map(|&i| i as usize),
                user_properties: up(p),
            })
        }

        fn retain_rule(rh: RetainHandling) -> o::RetainForwardRule {
            match rh {
                RetainHandling::SendAtSubscribe => o::RetainForwardRule::OnEverySubscribe,
                RetainHandling::SendIfNew => o::RetainForwardRule::OnNewSubscribe,
                RetainHandling::DoNotSend => o::RetainForwardRule::Never,
            }
        }
    };
}

pub mod rumqttc5 {
    use super::*;
    common_v5!(rq5, LastWillProperties);

    pub fn to_oracle(p: &Packet) -> o::Packet {
        if let Some(common) = common_packet(p) {
            return common;
        }
        match p {
            Packet::Connect(c) => o::Packet::Connect(
                o::Connect {
                    keep_alive: c.keep_alive,
                    client_id: c.client_id.to_string(),
                    clean_start: c.clean_start,
                    properties: connect_props(&c.properties),
                },
                c.will.as_ref().map(|w| o::LastWill {
                    topic: w.topic.as_bytes().clone(),
                    message: w.payload.clone(),
                    qos: qos(w.qos),
                    retain: w.retain,
                    properties: will_props(&w.properties),
                }),
                login(c),
            ),
            Packet::Publish(p) => o::Packet::Publish(o::Publish {
                dup: p.dup,
                qos: qos(p.qos),
                retain: p.retain,
                topic: p.topic.as_bytes().clone(),
                pkid: p.packet_id,
                payload: p.payload.clone(),
                properties: publish_props(&p.properties),
            }),
            Packet::Subscribe(s) => o::Packet::Subscribe(o::Subscribe {
                pkid: s.packet_id,
                filters: (s.subscriptions.iter())
                    .map(|s| o::Filter {
                        path: s.filter.to_string(),
                        qos: qos(s.options.qos),
                        nolocal: s.options.no_local,
                        preserve_retain: s.options.retain_as_published,
                        retain_forward_rule: retain_rule(s.options.retain_handling),
                    })
                    .collect(),
                properties: sub_props(&s.properties),
            }),
            Packet::SubAck(a) => o::Packet::SubAck(o::SubAck {
                pkid: a.packet_id,
                return_codes: (a.reason_codes.iter())
                    .map(|&c| match QoS::from_bits(c.0) {
                        Some(q) => o::SubscribeReasonCode::Success(qos(q)),
                        None => codes!(c, o::SubscribeReasonCode {
                            0x80 => Unspecified, 0x8F => TopicFilterInvalid,
                            0x9E => SharedSubscriptionsNotSupported,
                            0xA2 => WildcardSubscriptionsNotSupported,
                        }),
                    })
                    .collect(),
                properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                    o::SubAckProperties {
                        reason_string,
                        user_properties,
                    }
                }),
            }),
            Packet::PingReq => o::Packet::PingReq(o::PingReq),
            Packet::PingResp => o::Packet::PingResp(o::PingResp),
            _ => unreachable!("converted by common_packet; AUTH types are private in rumqttc"),
        }
    }

    pub fn write(p: &o::Packet) -> Vec<u8> {
        let mut b = BytesMut::new();
        p.write(&mut b, None)
            .unwrap_or_else(|e| panic!("{p:?}: {e:?}"));
        b.to_vec()
    }

    /// `Packet::read`, except for AUTH, which it does not dispatch: that goes to `Auth::read`.
    pub fn read(bytes: &[u8]) -> Result<o::Packet, String> {
        let mut b = BytesMut::from(bytes);
        let p = if bytes[0] >> 4 == 15 {
            let header = o::check(b.iter(), None).map_err(|e| format!("{e:?}"))?;
            let frame = b.split_to(header.frame_length()).freeze();
            o::Auth::read(header, frame).map(o::Packet::Auth)
        } else {
            o::Packet::read(&mut b, None)
        };
        let p = p.map_err(|e| format!("{e:?}"))?;
        assert!(b.is_empty(), "{} bytes left after {p:?}", b.len());
        Ok(p)
    }
}

pub mod mqttbytes5 {
    use super::*;
    common_v5!(mqttbytes, WillProperties);

    pub fn to_oracle(p: &Packet) -> o::Packet {
        if let Some(common) = common_packet(p) {
            return common;
        }
        match p {
            Packet::Connect(c) => o::Packet::Connect(o::Connect {
                protocol: mqttbytes::Protocol::V5,
                keep_alive: c.keep_alive,
                client_id: c.client_id.to_string(),
                clean_session: c.clean_start,
                last_will: c.will.as_ref().map(|w| o::LastWill {
                    topic: w.topic.to_string(),
                    message: w.payload.clone(),
                    qos: qos(w.qos),
                    retain: w.retain,
                    properties: will_props(&w.properties),
                }),
                login: login(c),
                properties: connect_props(&c.properties),
            }),
            Packet::Publish(p) => o::Packet::Publish(o::Publish {
                dup: p.dup,
                qos: qos(p.qos),
                retain: p.retain,
                topic: p.topic.to_string(),
                pkid: p.packet_id,
                properties: publish_props(&p.properties),
                payload: p.payload.clone(),
            }),
            Packet::Subscribe(s) => o::Packet::Subscribe(o::Subscribe {
                pkid: s.packet_id,
                filters: (s.subscriptions.iter())
                    .map(|s| o::SubscribeFilter {
                        path: s.filter.to_string(),
                        qos: qos(s.options.qos),
                        nolocal: s.options.no_local,
                        preserve_retain: s.options.retain_as_published,
                        retain_forward_rule: retain_rule(s.options.retain_handling),
                    })
                    .collect(),
                properties: sub_props(&s.properties),
            }),
            Packet::SubAck(a) => o::Packet::SubAck(o::SubAck {
                pkid: a.packet_id,
                return_codes: (a.reason_codes.iter())
                    .map(|&c| {
                        codes!(c, o::SubscribeReasonCode {
                            0x00 => QoS0, 0x01 => QoS1, 0x02 => QoS2, 0x80 => Unspecified,
                            0x8F => TopicFilterInvalid, 0x9E => SharedSubscriptionsNotSupported,
                            0xA2 => WildcardSubscriptionsNotSupported,
                        })
                    })
                    .collect(),
                properties: rs(&a.properties).map(|(reason_string, user_properties)| {
                    o::SubAckProperties {
                        reason_string,
                        user_properties,
                    }
                }),
            }),
            Packet::PingReq => o::Packet::PingReq,
            Packet::PingResp => o::Packet::PingResp,
            _ => unreachable!("converted by common_packet; no AUTH in mqttbytes"),
        }
    }

    /// mqttbytes has no `Packet::write`: each packet writes itself.
    pub fn write(p: &o::Packet) -> Vec<u8> {
        let mut b = BytesMut::new();
        let written = match p {
            o::Packet::Connect(c) => c.write(&mut b),
            o::Packet::ConnAck(c) => c.write(&mut b),
            o::Packet::Publish(c) => c.write(&mut b),
            o::Packet::PubAck(c) => c.write(&mut b),
            o::Packet::PubRec(c) => c.write(&mut b),
            o::Packet::PubRel(c) => c.write(&mut b),
            o::Packet::PubComp(c) => c.write(&mut b),
            o::Packet::Subscribe(c) => c.write(&mut b),
            o::Packet::SubAck(c) => c.write(&mut b),
            o::Packet::Unsubscribe(c) => c.write(&mut b),
            o::Packet::UnsubAck(c) => c.write(&mut b),
            o::Packet::PingReq => o::PingReq.write(&mut b),
            o::Packet::PingResp => o::PingResp.write(&mut b),
            o::Packet::Disconnect(c) => c.write(&mut b),
        };
        written.unwrap_or_else(|e| panic!("{p:?}: {e:?}"));
        b.to_vec()
    }

    pub fn read(bytes: &[u8]) -> Result<o::Packet, String> {
        let mut b = BytesMut::from(bytes);
        let p = o::read(&mut b, usize::MAX).map_err(|e| format!("{e:?}"))?;
        assert!(b.is_empty(), "{} bytes left after {p:?}", b.len());
        Ok(p)
    }
}
