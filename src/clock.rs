//! The process's millisecond clock, shared by message expiry (`session::Deadline`) and keep
//! alive (`broker/keep_alive.rs`): a `u64` of milliseconds is half the size of an
//! `Option<Instant>` and compares as a plain integer.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds from a fixed point in the process's life to `at`: 0 for anything before it,
/// at most `u64::MAX - 1` (so that one more still fits).
pub fn ms(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // A day before the first use, where the clock allows: an `Instant` taken a little before
    // the first use (a test's start, say) must not be clamped to it.
    let epoch = *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    });
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1)
}

/// Milliseconds now, on [`ms`]'s clock.
pub fn now_ms() -> u64 {
    ms(Instant::now())
}
