//! The data representations of section 1.5 (MQTT 5.0) / 1.5 (3.1.1): integers, variable byte
//! integers, UTF-8 strings and binary data, read from a frozen frame without copying and written
//! into a `BytesMut`.

use super::ByteStr;
use super::error::{self as rule, DecodeError, EncodeError};
use bytes::{BufMut, Bytes, BytesMut};

/// The largest value a variable byte integer can hold (4 bytes).
pub const VARINT_MAX: u32 = 268_435_455;

/// A cursor over one packet's frame. Every slice it hands out shares the frame's memory.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte of the frame was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(rule::TRAILING_BYTES)
        }
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(rule::TRUNCATED)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A variable byte integer (section 1.5.5), minimal encoding required.
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf[self.pos..])? {
            Some((value, used)) => {
                self.pos += used;
                Ok(value)
            }
            None => Err(rule::TRUNCATED),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(rule::TRUNCATED);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// `n` bytes as a slice of the frame.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(rule::TRUNCATED);
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// Everything left in the frame (a PUBLISH payload).
    pub fn rest(&mut self) -> Bytes {
        let b = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        b
    }

    /// Binary data: a two-byte length then that many bytes.
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    /// A UTF-8 encoded string, checked as section 1.5.4 requires.
    pub fn string(&mut self) -> Result<ByteStr, DecodeError> {
        let b = self.binary()?;
        validate_utf8(&b)?;
        Ok(ByteStr::from_validated(b))
    }
}

/// Parses a variable byte integer at the start of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise the value and the number of bytes it used.
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of 0 after the first means a shorter encoding existed.
            if i > 0 && byte == 0 {
                return Err(rule::NON_MINIMAL_VARIABLE_INTEGER);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(rule::REMAINING_LENGTH_TOO_LONG)
}

/// Checks an MQTT UTF-8 string: well-formed (no surrogates, no overlongs), no U+0000, and, as
/// Mosquitto does, no control characters (U+0001..U+001F, U+007F..U+009F) or non-characters,
/// which sections 1.5.3/1.5.4 let a receiver refuse.
pub fn validate_utf8(b: &[u8]) -> Result<(), DecodeError> {
    // Fast path: printable ASCII, the shape of nearly every topic and client id. A fold (not
    // `all`, which stops early) lets the compiler vectorise the scan.
    let outside = b
        .iter()
        .fold(0u8, |acc, &c| acc | u8::from(c.wrapping_sub(0x20) >= 0x5F));
    if outside == 0 {
        return Ok(());
    }
    let s = std::str::from_utf8(b).map_err(|_| rule::INVALID_UTF8)?;
    for c in s.chars() {
        let cp = c as u32;
        if cp == 0 {
            return Err(rule::UTF8_NULL);
        }
        let control = cp <= 0x1F || (0x7F..=0x9F).contains(&cp);
        let non_character = (0xFDD0..=0xFDEF).contains(&cp) || (cp & 0xFFFE) == 0xFFFE;
        if control || non_character {
            return Err(rule::UTF8_DISALLOWED_CODE_POINT);
        }
    }
    Ok(())
}

/// A topic name must not be empty or contain `+`/`#` (section 4.7).
pub fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(rule::EMPTY_TOPIC);
    }
    // A fold rather than `any` so the scan vectorises (topics are short; no early exit needed).
    let wildcard = topic
        .bytes()
        .fold(false, |acc, b| acc | (b == b'+') | (b == b'#'));
    if wildcard {
        return Err(rule::WILDCARD_IN_TOPIC_NAME);
    }
    Ok(())
}

/// Bytes a variable byte integer takes.
pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut value: u32) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Writes binary data or a string with its two-byte length.
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) -> Result<(), EncodeError> {
    let n = u16::try_from(b.len()).map_err(|_| EncodeError::FieldTooLong)?;
    out.put_u16(n);
    out.put_slice(b);
    Ok(())
}

/// Writes the fixed header: first byte then remaining length.
pub(crate) fn put_header(
    out: &mut BytesMut,
    first: u8,
    remaining: usize,
) -> Result<(), EncodeError> {
    let remaining = u32::try_from(remaining)
        .ok()
        .filter(|&n| n <= VARINT_MAX)
        .ok_or(EncodeError::PacketTooLarge)?;
    out.reserve(1 + varint_len(remaining) + remaining as usize);
    out.put_u8(first);
    put_varint(out, remaining);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries_round_trip() {
        for v in [
            0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "length of {v}");
            assert_eq!(parse_varint(&out).unwrap(), Some((v, out.len())));
        }
    }

    #[test]
    fn varint_spec_examples() {
        // Section 1.5.5 table: 0x7F, 0xFF 0x7F, 0xFF 0xFF 0x7F, 0xFF 0xFF 0xFF 0x7F.
        assert_eq!(parse_varint(&[0x7F]).unwrap(), Some((127, 1)));
        assert_eq!(parse_varint(&[0x80, 0x01]).unwrap(), Some((128, 2)));
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0x7F]).unwrap(),
            Some((VARINT_MAX, 4))
        );
        assert_eq!(parse_varint(&[0x80, 0x80]).unwrap(), None);
    }

    #[test]
    fn varint_rejects_five_bytes_and_non_minimal() {
        assert_eq!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(rule::REMAINING_LENGTH_TOO_LONG)
        );
        assert_eq!(
            parse_varint(&[0x80, 0x00]),
            Err(rule::NON_MINIMAL_VARIABLE_INTEGER)
        );
        assert_eq!(
            parse_varint(&[0xFF, 0x80, 0x00]),
            Err(rule::NON_MINIMAL_VARIABLE_INTEGER)
        );
    }

    #[test]
    fn utf8_rules() {
        assert!(validate_utf8(b"sensors/room-1/temp").is_ok());
        assert!(validate_utf8("caf\u{e9}/\u{1F600}".as_bytes()).is_ok());
        assert_eq!(validate_utf8(b"a\0b"), Err(rule::UTF8_NULL));
        // U+D800 encoded as if it were a scalar value (CESU style): ill-formed UTF-8.
        assert_eq!(validate_utf8(&[0xED, 0xA0, 0x80]), Err(rule::INVALID_UTF8));
        // Overlong encoding of '/'.
        assert_eq!(validate_utf8(&[0xC0, 0xAF]), Err(rule::INVALID_UTF8));
        assert_eq!(
            validate_utf8(b"tab\there"),
            Err(rule::UTF8_DISALLOWED_CODE_POINT)
        );
        assert_eq!(
            validate_utf8("\u{85}".as_bytes()),
            Err(rule::UTF8_DISALLOWED_CODE_POINT)
        );
        assert_eq!(
            validate_utf8("\u{FFFF}".as_bytes()),
            Err(rule::UTF8_DISALLOWED_CODE_POINT)
        );
        assert_eq!(
            validate_utf8("\u{FDD0}".as_bytes()),
            Err(rule::UTF8_DISALLOWED_CODE_POINT)
        );
    }
}
