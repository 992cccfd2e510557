//! A log-linear latency histogram: 128 buckets per power of two (under 0.8 % error), fixed
//! size, recording in a few instructions and never allocating after creation.

/// Bits of precision below the leading bit.
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
/// Values below this are their own bucket.
const LINEAR: u64 = 2 << SUB_BITS;
/// Enough buckets for any u64.
const BUCKETS: usize = (64 - SUB_BITS as usize) * SUB + SUB;

/// Counts of values (nanoseconds here) by bucket, plus exact count, sum, min and max.
#[derive(Clone)]
pub struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    shift as usize * SUB + (v >> shift) as usize
}

/// The middle of a bucket's range.
fn value(index: usize) -> u64 {
    if (index as u64) < LINEAR {
        return index as u64;
    }
    let shift = (index / SUB - 1) as u32;
    let low = ((index - shift as usize * SUB) as u64) << shift;
    low + (1u64 << shift) / 2
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.buckets[bucket(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.count == 0 { 0 } else { self.min }
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.5 = median), clamped to the exact min and max; the last
    /// rank is the exact max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return value(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_precise() {
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            511,
            512,
            1_000_000,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let i = bucket(v);
            assert!(i < BUCKETS, "{v}");
            let mid = value(i) as f64;
            assert!(
                (mid - v as f64).abs() <= v as f64 / 128.0 + 1.0,
                "{v} -> {mid}"
            );
        }
        assert_eq!(bucket(255) + 1, bucket(256));
        assert_eq!(bucket(511) + 1, bucket(512));
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 / 50_000_000.0 - 1.0).abs() < 0.01, "{p50}");
        assert_eq!(h.quantile(1.0), 100_000_000);
        assert_eq!(h.min(), 1000);
        let mut other = Histogram::default();
        other.record(7);
        h.merge(&other);
        assert_eq!((h.count(), h.min()), (100_001, 7));
    }
}
