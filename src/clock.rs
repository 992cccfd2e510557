//! The process's millisecond clock, shared by message expiry (`session::Deadline`) and keep
//! alive (`broker/keep_alive.rs`): a `u64` of milliseconds is half the size of an
//! `Option<Instant>` and compares as a plain integer.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The clock's zero: a day before its first use, where the clock allows, so that an `Instant`
/// taken a little before the first use (a test's start, say) is not clamped to it.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

/// Milliseconds from the clock's zero to `at`: 0 for anything before it, at most
/// `u64::MAX - 1` (so that one more still fits).
pub(crate) fn ms(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX - 1)
}

/// The instant `ms` milliseconds after the clock's zero (the inverse of [`ms`], to the
/// millisecond); far in the future if that does not fit an `Instant`.
pub(crate) fn at(ms: u64) -> Instant {
    let zero = epoch();
    zero.checked_add(Duration::from_millis(ms))
        .unwrap_or(zero + Duration::from_secs(86_400 * 365 * 30))
}

/// Milliseconds now, on [`ms`]'s clock.
pub(crate) fn now_ms() -> u64 {
    ms(Instant::now())
}
