//! A client's publish rate (`limits.max_publish_rate`, `max_publish_bytes_rate`): token buckets
//! holding one second's worth, refilled continuously. A client over either is told so and
//! disconnected (v5 DISCONNECT 0x96 Message rate too high; 3.1.1 closed), rather than slowed:
//! a device that floods usually has a bug, and its DISCONNECT says why in its own log.

use std::time::Instant;

/// One bucket: up to `per_sec` tokens, refilled at `per_sec` a second.
#[derive(Debug)]
struct Bucket {
    per_sec: u64,
    /// Tokens, in thousandths (refilled per millisecond without rounding away).
    milli_tokens: u64,
}

impl Bucket {
    fn new(per_sec: u64) -> Self {
        Self {
            per_sec,
            milli_tokens: per_sec.saturating_mul(1000),
        }
    }

    fn refill(&mut self, elapsed_ms: u64) {
        let cap = self.per_sec.saturating_mul(1000);
        let add = self.per_sec.saturating_mul(elapsed_ms);
        self.milli_tokens = self.milli_tokens.saturating_add(add).min(cap);
    }

    /// Takes `n` tokens if there are that many.
    fn take(&mut self, n: u64) -> bool {
        let need = n.saturating_mul(1000);
        if self.milli_tokens >= need {
            self.milli_tokens -= need;
            true
        } else {
            false
        }
    }
}

/// A connection's publish rate limits (0 = that one is off).
#[derive(Debug)]
pub(crate) struct PublishRate {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    last: Instant,
}

impl PublishRate {
    /// Limits of `messages` PUBLISHes and `bytes` payload bytes a second; `None` if both are 0.
    pub(crate) fn new(messages: u64, bytes: u64, now: Instant) -> Option<Self> {
        (messages > 0 || bytes > 0).then(|| Self {
            messages: (messages > 0).then(|| Bucket::new(messages)),
            bytes: (bytes > 0).then(|| Bucket::new(bytes)),
            last: now,
        })
    }

    /// Counts a PUBLISH of `payload` bytes at `now`; false when it goes over a limit.
    pub(crate) fn allow(&mut self, payload: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_millis() as u64;
        if elapsed > 0 {
            // Whole milliseconds only: the fraction stays for the next refill.
            self.last += std::time::Duration::from_millis(elapsed);
            for b in [&mut self.messages, &mut self.bytes].into_iter().flatten() {
                b.refill(elapsed);
            }
        }
        let messages = self.messages.as_mut().is_none_or(|b| b.take(1));
        let bytes = self.bytes.as_mut().is_none_or(|b| b.take(payload as u64));
        messages && bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_seconds_worth_may_come_at_once_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(10, 0, t0).unwrap();
        assert!(
            (0..10).all(|_| r.allow(1, t0)),
            "a burst of one second's worth"
        );
        assert!(!r.allow(1, t0), "the eleventh at once is over");
        assert!(
            r.allow(1, t0 + Duration::from_millis(100)),
            "one more per 100 ms"
        );
        assert!(!r.allow(1, t0 + Duration::from_millis(100)));
        assert!(PublishRate::new(0, 0, t0).is_none());
    }

    #[test]
    fn bytes_are_counted_apart() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(0, 1000, t0).unwrap();
        assert!(r.allow(600, t0));
        assert!(!r.allow(600, t0));
        assert!(r.allow(600, t0 + Duration::from_millis(300)));
    }

    #[test]
    fn fractions_of_a_millisecond_are_not_lost() {
        // 600 a second against a limit of 800, one every 1,666 µs: never over.
        let t0 = Instant::now();
        let mut r = PublishRate::new(800, 0, t0).unwrap();
        for i in 1..=6_000u64 {
            let at = t0 + Duration::from_micros(i * 1_666);
            assert!(r.allow(1, at), "refused the {i}th");
        }
    }
}
