//! The broker's tokio runtime: multi-thread, with workers that spin briefly before they sleep
//! while work is arriving faster than a wake-up costs (docs/decisions.md, "Spin before
//! sleeping").
//!
//! A sleeping worker is woken by an inter-processor interrupt, and in a VM the waking core
//! exits to the hypervisor for it. While 18,000 clients connected, Roost's core slept about
//! once per connection and the wake-ups slowed the connecting side. Erlang's schedulers (so
//! EMQX) and Go's runtime spin before sleeping for the same reason. A broker that is woken
//! rarely (a message a millisecond, or idle) does not spin: a spin would seldom catch the next
//! event and only cost CPU.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a worker spins before it sleeps.
const SPIN: Duration = Duration::from_micros(20);

/// A worker spins only if its last sleep was shorter than this: events are then arriving
/// often enough that a spin has a fair chance of catching the next one.
const SHORT_SLEEP: Duration = Duration::from_micros(100);

/// The multi-thread runtime the broker runs on.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(|| {
            PARKING.with(|p| {
                // Not while the store's writer is awake: see `store::writers_busy`.
                if let Some(until) = p.spin_until(Instant::now())
                    && !crate::store::writers_busy()
                {
                    while Instant::now() < until && !crate::store::writers_busy() {
                        std::hint::spin_loop();
                    }
                }
                p.sleeping_from(Instant::now());
            })
        })
        .on_thread_unpark(|| PARKING.with(|p| p.after_unpark(Instant::now())))
        .build()
}

thread_local! {
    static PARKING: Parking = const { Parking::new() };
}

/// One worker's record of its sleeps.
struct Parking {
    /// When the worker last went to sleep; `None` while it is awake.
    since: Cell<Option<Instant>>,
    /// How long its last sleep lasted.
    last_sleep: Cell<Duration>,
}

impl Parking {
    const fn new() -> Self {
        Self {
            since: Cell::new(None),
            // No spin before the first sleep: nothing is known yet.
            last_sleep: Cell::new(Duration::MAX),
        }
    }

    /// The worker is about to sleep at `now`: until when to spin first, if at all.
    fn spin_until(&self, now: Instant) -> Option<Instant> {
        (self.last_sleep.get() < SHORT_SLEEP).then(|| now + SPIN)
    }

    /// The worker goes to sleep at `now` (after its spin, if any).
    fn sleeping_from(&self, now: Instant) {
        self.since.set(Some(now));
    }

    /// The worker woke at `now`.
    fn after_unpark(&self, now: Instant) {
        if let Some(since) = self.since.take() {
            self.last_sleep.set(now.saturating_duration_since(since));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn the_first_sleep_is_not_preceded_by_a_spin() {
        let p = Parking::new();
        assert_eq!(p.spin_until(Instant::now()), None);
    }

    #[test]
    fn a_short_sleep_makes_the_next_park_spin_and_a_long_one_does_not() {
        let p = Parking::new();
        let t0 = Instant::now();
        p.sleeping_from(t0);
        p.after_unpark(t0 + us(30));
        // Woken 30 µs after going to sleep: work arrives often, so spin before the next sleep.
        let t1 = t0 + us(50);
        assert_eq!(p.spin_until(t1), Some(t1 + SPIN));
        // That spin caught nothing; the sleep after it lasted a millisecond.
        p.sleeping_from(t1 + SPIN);
        p.after_unpark(t1 + SPIN + us(1000));
        let t2 = t1 + us(2000);
        assert_eq!(p.spin_until(t2), None);
    }

    #[test]
    fn a_spin_that_catches_work_keeps_the_worker_spinning() {
        let p = Parking::new();
        let t0 = Instant::now();
        p.sleeping_from(t0);
        p.after_unpark(t0 + us(10));
        let t1 = t0 + us(20);
        let until = p.spin_until(t1).expect("spins after a short sleep");
        // Events arrived during the spin: the sleep that follows ends at once.
        p.sleeping_from(until);
        p.after_unpark(until + us(1));
        assert!(p.spin_until(until + us(30)).is_some());
    }

    #[test]
    fn the_runtime_runs_tasks_and_its_workers_park_and_wake() {
        let rt = build().unwrap();
        // Awaiting a blocking-pool thread leaves the workers nothing to do, so they go
        // through both hooks: they park, and the thread's completion wakes one.
        let sum = rt.block_on(async {
            let mut sum = 0u32;
            for i in 0..5 {
                sum += tokio::task::spawn_blocking(move || i).await.unwrap();
            }
            sum
        });
        assert_eq!(sum, 10);
    }
}
