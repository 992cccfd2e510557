//! Failed logins, slowed per source address: each failed password (or enhanced authentication)
//! from an address makes its next refusal wait longer, so guessing costs time; a success, or a
//! quiet spell, forgets the address. IPv6 addresses count per /64, the block one host usually
//! has, so that rotating through it does not reset the count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The longest wait, in first waits: five doublings.
const MAX_DOUBLINGS: u32 = 5;
/// An address quiet this long starts again from nothing.
const FORGET_AFTER_MS: u64 = 10 * 60 * 1000;
/// Most addresses remembered: beyond it, the oldest are forgotten first (an attacker with more
/// addresses than this gets less slowing, never more memory).
pub(super) const MAX_ADDRESSES: usize = 65_536;

/// Failures per address.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    by_address: HashMap<IpAddr, Failures>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: u64,
}

/// Keeps a table by address under `MAX_ADDRESSES` entries: when it is full, the entries `keep`
/// says no longer matter go, then, if none did, the one least recently seen (`last_ms`). An
/// attacker with more addresses than this gets less counting, never more memory.
pub(super) fn make_room<V>(
    table: &mut HashMap<IpAddr, V>,
    keep: impl Fn(&V) -> bool,
    last_ms: impl Fn(&V) -> u64,
) {
    if table.len() < MAX_ADDRESSES {
        return;
    }
    table.retain(|_, v| keep(v));
    if table.len() >= MAX_ADDRESSES
        && let Some(oldest) = table
            .iter()
            .min_by_key(|(_, v)| last_ms(v))
            .map(|(ip, _)| *ip)
    {
        table.remove(&oldest);
    }
}

/// The key an address counts under.
pub(super) fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl Logins {
    /// Notes a failed login from `ip` at `now_ms`; returns how long its refusal should wait:
    /// `base_ms` for the first, doubling with each further one, 32 times `base_ms` at most.
    pub(crate) fn failed(&mut self, ip: IpAddr, now_ms: u64, base_ms: u64) -> Duration {
        make_room(
            &mut self.by_address,
            |f| now_ms.saturating_sub(f.last_ms) < FORGET_AFTER_MS,
            |f| f.last_ms,
        );
        let f = self.by_address.entry(key(ip)).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
        });
        if now_ms.saturating_sub(f.last_ms) >= FORGET_AFTER_MS {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last_ms = now_ms;
        let doublings = (f.count - 1).min(MAX_DOUBLINGS);
        Duration::from_millis(base_ms.saturating_mul(1 << doublings))
    }

    /// Failed logins counted for `ip` (and its /64).
    pub(crate) fn failures(&self, ip: IpAddr) -> u32 {
        self.by_address.get(&key(ip)).map_or(0, |f| f.count)
    }

    /// Notes a successful login from `ip`: its failures are forgotten.
    pub(crate) fn succeeded(&mut self, ip: IpAddr) {
        if !self.by_address.is_empty() {
            self.by_address.remove(&key(ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_doubles_the_wait_up_to_a_cap_and_success_or_time_forgets() {
        let mut l = Logins::default();
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let waits: Vec<u64> = (0..8)
            .map(|i| l.failed(a, 1000 + i, 250).as_millis() as u64)
            .collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // Another address is not slowed by a's failures.
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(l.failed(b, 2000, 250).as_millis(), 250);
        l.succeeded(a);
        assert_eq!(l.failed(a, 3000, 250).as_millis(), 250, "a success forgets");
        assert_eq!(l.failed(a, 4000, 250).as_millis(), 500);
        let later = 4000 + FORGET_AFTER_MS;
        assert_eq!(
            l.failed(a, later, 250).as_millis(),
            250,
            "a quiet spell forgets"
        );
    }

    #[test]
    fn ipv6_counts_per_64_block_and_mapped_v4_as_v4() {
        let mut l = Logins::default();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(l.failed(one, 0, 250).as_millis(), 250);
        assert_eq!(l.failed(same_block, 1, 250).as_millis(), 500);
        assert_eq!(l.failed(other_block, 2, 250).as_millis(), 250);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(l.failed(v4, 3, 250).as_millis(), 250);
        assert_eq!(l.failed(mapped, 4, 250).as_millis(), 500);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = Logins::default();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            l.failed(IpAddr::V4(i.into()), u64::from(i), 250);
        }
        assert!(l.by_address.len() <= MAX_ADDRESSES);
    }
}
