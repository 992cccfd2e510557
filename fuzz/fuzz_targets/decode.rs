//! Fuzzes `roost::protocol::decode` on arbitrary bytes: it must never panic, and every packet it
//! accepts must survive a round trip through the encoder.
//!
//! Input layout: byte 0 configures the run, byte 1 is a parameter, the rest is the stream.
//! - byte 0, bits 0-1: the connection's version (0 = 3.1, 1 = 3.1.1, 2 and 3 = 5.0);
//! - byte 0, bit 2: a small Maximum Packet Size of `2 + byte 1` instead of the protocol's own;
//! - byte 0, bit 3: also feed the stream one byte at a time, and require the same packets and
//!   the same final outcome as decoding it whole (so `Ok(None)` never consumes or loses bytes);
//! - byte 0, bits 4-5: the packet types accepted: every one, what a server accepts from a
//!   connected client (with or without AUTH), or only AUTH and DISCONNECT (an AUTH exchange).
//!   A refused type must be refused as a Protocol Error from its first byte.
//!
//! For each accepted packet (the CONNECT in its own version, the others in the stream's):
//! - `encode` succeeds and writes exactly `encoded_len` bytes;
//! - the encoding is no longer than the frame it came from (the codec's encoding is the
//!   canonical one; a packet the limit admitted must fit the same limit when sent back out);
//! - decoding the encoding gives back an equal packet and consumes it exactly;
//! - encoding that packet again gives the same bytes, and for PUBLISH `Publish::encode` writes
//!   the same bytes as `Packet::encode`.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use roost::protocol::{
    DecodeError, DecodeLimits, Packet, PacketTypes, ProtocolVersion, ReasonCode, decode,
};

fuzz_target!(|data: &[u8]| {
    let [config, param, stream @ ..] = data else {
        return;
    };
    let version = match config & 0x03 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let mut limits = if config & 0x04 != 0 {
        DecodeLimits {
            max_packet_size: 2 + u32::from(*param),
            ..DecodeLimits::default()
        }
    } else {
        DecodeLimits::default()
    };
    limits.accepts = match (config >> 4) & 0x03 {
        0 => PacketTypes::ALL,
        1 => PacketTypes::FROM_CLIENT,
        2 => PacketTypes::FROM_CLIENT.without_auth(),
        _ => PacketTypes::AUTH_EXCHANGE,
    };
    if let Some(&first) = stream.first()
        && !limits.accepts.contains(first >> 4)
    {
        let mut buf = BytesMut::from(&stream[..1]);
        let refused = decode(&mut buf, version, &limits);
        assert!(
            matches!(refused, Err(e) if e.reason == ReasonCode::PROTOCOL_ERROR),
            "type {} not accepted, yet {refused:?} from its first byte",
            first >> 4
        );
    }
    let whole = decode_all(stream, version, &limits);
    if config & 0x08 != 0 {
        assert_eq!(
            decode_byte_by_byte(stream, version, &limits),
            whole,
            "feeding one byte at a time changed the outcome"
        );
    }
});

/// What decoding a stream produced: the packets with their frame lengths, then how it ended
/// (`None`: waiting for more bytes).
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<(Packet, usize)>,
    end: Option<DecodeError>,
}

/// Decodes `stream` in one buffer until it needs more bytes or fails, checking each packet.
fn decode_all(stream: &[u8], version: ProtocolVersion, limits: &DecodeLimits) -> Outcome {
    let mut buf = BytesMut::from(stream);
    let mut packets = Vec::new();
    loop {
        let before = buf.len();
        match decode(&mut buf, version, limits) {
            Ok(Some(packet)) => {
                let frame_len = before - buf.len();
                check_round_trip(&packet, version, frame_len, limits);
                packets.push((packet, frame_len));
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Outcome { packets, end: None };
            }
            Err(e) => {
                return Outcome {
                    packets,
                    end: Some(e),
                };
            }
        }
    }
}

/// The same stream arriving one byte per read.
fn decode_byte_by_byte(stream: &[u8], version: ProtocolVersion, limits: &DecodeLimits) -> Outcome {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for &byte in stream {
        buf.extend_from_slice(&[byte]);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, limits) {
                Ok(Some(packet)) => packets.push((packet, before - buf.len())),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        packets,
                        end: Some(e),
                    };
                }
            }
        }
    }
    Outcome { packets, end: None }
}

fn check_round_trip(
    packet: &Packet,
    stream_version: ProtocolVersion,
    frame_len: usize,
    limits: &DecodeLimits,
) {
    let v = match packet {
        Packet::Connect(c) => c.protocol,
        _ => stream_version,
    };
    let mut out = BytesMut::new();
    if let Err(e) = packet.encode(v, &mut out) {
        panic!("decoded packet does not encode ({e}): {packet:?}");
    }
    assert_eq!(
        out.len(),
        packet.encoded_len(v),
        "encoded_len of {packet:?}"
    );
    assert!(
        out.len() <= frame_len,
        "encoding ({} bytes) is longer than the accepted frame ({frame_len}): {packet:?}",
        out.len()
    );

    let mut again = out.clone();
    let back = match decode(&mut again, v, limits) {
        Ok(Some(back)) => back,
        other => panic!(
            "re-decoding {packet:?} from {:02x?} gave {other:?}",
            &out[..]
        ),
    };
    assert_eq!(&back, packet, "round trip changed the packet");
    assert!(
        again.is_empty(),
        "{} bytes left after re-decoding",
        again.len()
    );

    let mut twice = BytesMut::new();
    back.encode(v, &mut twice)
        .expect("encoding the re-decoded packet");
    assert_eq!(twice, out, "encoding is not deterministic");
    if let Packet::Publish(p) = packet {
        let mut direct = BytesMut::new();
        p.encode(v, &mut direct).expect("Publish::encode");
        assert_eq!(direct, out, "Publish::encode differs from Packet::encode");
    }
}
