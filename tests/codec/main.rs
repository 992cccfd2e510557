//! Byte-literal tests of the codec: every packet type in every version, valid and invalid,
//! plus framing (incremental decode, limits, zero copy) and property tests.

mod framing;
mod helpers;
mod props_v5;
mod roundtrip;
mod v3;
mod v5;
