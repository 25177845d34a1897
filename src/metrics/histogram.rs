//! A histogram of fixed buckets kept in atomics, so observing from the advert
//! path takes no lock (prometheus-client's own histogram takes a lock per
//! observation). A scrape reads it with [`AtomicHistogram::read`]; counts read
//! while an observation is in flight may be off by that one observation, which
//! Prometheus tolerates.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds or any unit) and a count per bucket, plus +Inf.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [f64],
    /// One per bound, then +Inf; not cumulative.
    counts: Vec<AtomicU64>,
    /// The sum of observations in nanounits, so it adds without a CAS loop.
    sum_nanos: AtomicU64,
}

/// What a scrape reads: the sum, the count and per-bucket (non-cumulative)
/// counts with their upper bounds (the last is `f64::MAX`, meaning +Inf).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramReading {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl AtomicHistogram {
    /// `bounds` must be ascending.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        // Negative or NaN values count as 0 in the sum; u64 nanos last 584 years.
        let nanos = (value.max(0.0) * 1e9) as u64;
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn read(&self) -> HistogramReading {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        HistogramReading {
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: buckets.iter().map(|(_, n)| n).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        static BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];
        let h = AtomicHistogram::new(&BOUNDS);
        for v in [0.005, 0.01, 0.05, 0.5, 7.0] {
            h.observe(v);
        }
        let r = h.read();
        assert_eq!(r.count, 5);
        assert!((r.sum - 7.565).abs() < 1e-6, "{}", r.sum);
        let counts: Vec<u64> = r.buckets.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, [2, 1, 1, 1]);
        assert_eq!(r.buckets[3].0, f64::MAX);
    }
}
