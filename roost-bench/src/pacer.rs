//! Constant-rate pacing: how many messages are due by now at R msg/s, and when the next one
//! is. A publisher that fell behind catches up (a constant-rate schedule, so a broker stall
//! shows up in latency instead of being hidden by waiting for it).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Messages per second; 0 = unthrottled.
    rate: f64,
    start: Instant,
}

impl Pacer {
    pub fn new(rate: f64, start: Instant) -> Self {
        Self { rate, start }
    }

    pub fn unthrottled(&self) -> bool {
        self.rate <= 0.0
    }

    /// Messages due by `now` that are not sent yet (`u64::MAX` when unthrottled).
    pub fn due(&self, sent: u64, now: Instant) -> u64 {
        if self.unthrottled() {
            return u64::MAX;
        }
        let allowed =
            (now.saturating_duration_since(self.start).as_secs_f64() * self.rate) as u64 + 1;
        allowed.saturating_sub(sent)
    }

    /// When message number `sent` (counting from 0) is due.
    pub fn next_at(&self, sent: u64) -> Instant {
        if self.unthrottled() {
            return self.start;
        }
        self.start + Duration::from_secs_f64(sent as f64 / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_period() {
        let t0 = Instant::now();
        let p = Pacer::new(1000.0, t0);
        assert_eq!(p.due(0, t0), 1);
        assert_eq!(p.due(1, t0), 0);
        assert_eq!(p.next_at(1), t0 + Duration::from_millis(1));
        assert_eq!(p.due(1, t0 + Duration::from_micros(10_500)), 10);
        assert_eq!(Pacer::new(0.0, t0).due(123, t0), u64::MAX);
    }
}
