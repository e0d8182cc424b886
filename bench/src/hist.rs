//! A compact log-linear latency histogram (HDR-like) over integer values (microseconds).
//!
//! Values below `2 * SUB` are counted exactly; above that, each power-of-two range is split
//! into `SUB` equal buckets, so a bucket is at most `1 / SUB` (0.8 %) of its values wide and
//! its midpoint is within 0.4 % of every value in it. The whole `u64` range fits in 7424
//! counters (58 KiB), whatever the number of samples.

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    // Shift so that `value >> shift` lies in [SUB, 2 * SUB).
    let shift = 63 - value.leading_zeros() - SUB_BITS;
    ((u64::from(shift) + 1) * SUB + ((value >> shift) - SUB)) as usize
}

/// The lowest value of bucket `idx` and the bucket's width.
fn bucket(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < 2 * SUB {
        return (idx, 1);
    }
    let shift = idx / SUB - 1;
    ((idx % SUB + SUB) << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// Exact largest recorded value (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Exact smallest recorded value (0 when empty).
    pub fn min(&self) -> u64 {
        if self.total == 0 { 0 } else { self.min }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` in [0, 1]: the midpoint of the bucket holding the sample of
    /// rank `ceil(q * count)`, kept within the recorded min and max. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (idx, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket(idx);
                return (low + width / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..256 {
            h.record(v);
        }
        assert_eq!(h.count(), 256);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 255);
        assert_eq!(h.quantile(0.5), 127);
        assert_eq!(h.quantile(1.0), 255);
        assert_eq!(h.quantile(0.0), 0);
    }

    #[test]
    fn every_bucket_midpoint_is_within_half_a_percent() {
        let mut v = 1u64;
        while v < u64::MAX / 2 {
            for candidate in [v, v + v / 3, v + v / 2, 2 * v - 1] {
                let (low, width) = bucket(index(candidate));
                assert!(
                    low <= candidate && candidate - low < width,
                    "{candidate} not in its bucket"
                );
                let mid = (low + width / 2) as f64;
                let err = (mid - candidate as f64).abs() / candidate as f64;
                assert!(err <= 0.005, "{candidate}: midpoint {mid}, error {err}");
            }
            v *= 2;
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_of_a_uniform_distribution_are_within_one_percent() {
        let mut h = Histogram::new();
        for v in 1..=1_000_000u64 {
            h.record(v);
        }
        for (q, expected) in [
            (0.5, 500_000.0),
            (0.9, 900_000.0),
            (0.99, 990_000.0),
            (0.999, 999_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - expected).abs() / expected < 0.01,
                "q={q}: {got} vs {expected}"
            );
        }
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert!((h.mean() - 500_000.5).abs() < 1e-6);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution_are_within_one_percent() {
        // 99 % fast (around 200 us), 1 % slow (50 ms): p99 must land in the fast group,
        // p99.5 in the slow one.
        let mut h = Histogram::new();
        for i in 0..9_900u64 {
            h.record(150 + i % 100);
        }
        for i in 0..100u64 {
            h.record(50_000 + i);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 199.0).abs() <= 2.0, "p50 {p50}");
        assert!(h.quantile(0.99) < 300);
        let p995 = h.quantile(0.995) as f64;
        assert!((p995 - 50_050.0).abs() / 50_050.0 < 0.01, "p99.5 {p995}");
        assert_eq!(h.max(), 50_099);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in (0..50_000u64).map(|i| i * 37 % 90_001) {
            if v % 2 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!((a.min(), a.max()), (all.min(), all.max()));
        for q in [0.1, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
    }

    #[test]
    fn empty_histogram_reports_zeroes() {
        let h = Histogram::new();
        assert_eq!(
            (h.count(), h.min(), h.max(), h.quantile(0.99)),
            (0, 0, 0, 0)
        );
        assert_eq!(h.mean(), 0.0);
    }
}
