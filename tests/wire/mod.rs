//! Bytes on the wire for tests that write exact packets, shared by the helper modules of the
//! test crates (`support`, `common`).

/// A packet from its first byte and body, with a minimal remaining length.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}
