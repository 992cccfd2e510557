//! CONNECTs per source address (`limits.max_connect_rate_per_address`): a token bucket per
//! address (IPv6 per /64, as the failed-login table counts), a second's worth at once. Bounded
//! like that table: quiet addresses are forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;

#[cfg(test)]
use super::logins::MAX_ADDRESSES;

/// Buckets by address.
#[derive(Debug, Default)]
pub(crate) struct ConnectRates {
    by_address: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in thousandths.
    milli_tokens: u64,
    last_ms: u64,
}

impl ConnectRates {
    /// Whether a CONNECT from `ip` at `now_ms` is within `per_sec` a second; counts it if so.
    pub(crate) fn allow(&mut self, ip: IpAddr, now_ms: u64, per_sec: u64) -> bool {
        let full = per_sec.saturating_mul(1000);
        // A bucket that has refilled says nothing: those go first.
        super::logins::make_room(
            &mut self.by_address,
            |b| {
                let refill = per_sec.saturating_mul(now_ms.saturating_sub(b.last_ms));
                b.milli_tokens.saturating_add(refill) < full
            },
            |b| b.last_ms,
        );
        let b = self
            .by_address
            .entry(super::logins::key(ip))
            .or_insert(Bucket {
                milli_tokens: full,
                last_ms: now_ms,
            });
        let refill = per_sec.saturating_mul(now_ms.saturating_sub(b.last_ms));
        b.milli_tokens = b.milli_tokens.saturating_add(refill).min(full);
        b.last_ms = now_ms;
        if b.milli_tokens >= 1000 {
            b.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seconds_worth_then_one_per_interval_per_address() {
        let mut r = ConnectRates::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..5).all(|_| r.allow(a, 0, 5)));
        assert!(!r.allow(a, 0, 5), "the sixth in the same instant");
        assert!(r.allow(b, 0, 5), "another address has its own");
        assert!(r.allow(a, 200, 5), "one more after a fifth of a second");
        assert!(!r.allow(a, 200, 5));
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        assert!(r.allow(v6a, 0, 1));
        assert!(!r.allow(v6b, 0, 1), "one /64");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = ConnectRates::default();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            r.allow(IpAddr::V4(i.into()), u64::from(i), 1);
        }
        assert!(r.by_address.len() <= MAX_ADDRESSES);
    }
}
