//! Small statistics helpers shared by the benchmarks.

use std::{fmt, time::Duration};

use serde::Serialize;

/// Percentiles and mean of one run's latency samples, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median latency (ns).
    pub p50_ns: f64,
    /// 99th-percentile latency (ns).
    pub p99_ns: f64,
    /// Mean latency (ns).
    pub mean_ns: f64,
    /// Number of samples.
    pub samples: usize,
}

impl LatencySummary {
    /// Summarise latency samples (sorts them in place). Returns `None` when there are none.
    pub fn from_samples(samples: &mut [Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let total: f64 = samples.iter().map(|d| d.as_nanos() as f64).sum();
        Some(LatencySummary {
            p50_ns: percentile(samples, 0.50).as_nanos() as f64,
            p99_ns: percentile(samples, 0.99).as_nanos() as f64,
            mean_ns: total / samples.len() as f64,
            samples: samples.len(),
        })
    }
}

/// Nearest-rank percentile `p` (0..=1) of already sorted, non-empty `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// One metric measured over several rounds: its per-round values and their median and range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rounds {
    /// Median over the rounds (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest per-round value.
    pub min: f64,
    /// Largest per-round value.
    pub max: f64,
    /// The per-round values, in run order.
    pub values: Vec<f64>,
}

impl Rounds {
    /// Summarise per-round values. Returns `None` when there are none.
    pub fn new(values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Rounds {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            values,
        })
    }
}

/// A bound a metric must meet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Limit {
    /// At least this.
    AtLeast(f64),
    /// At most this.
    AtMost(f64),
    /// Strictly below this.
    Below(f64),
}

impl Limit {
    /// Whether `value` meets the bound.
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Limit::AtLeast(t) => value >= t,
            Limit::AtMost(t) => value <= t,
            Limit::Below(t) => value < t,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::AtLeast(t) => write!(f, ">= {t:.2}"),
            Limit::AtMost(t) => write!(f, "<= {t:.2}"),
            Limit::Below(t) => write!(f, "< {t:.2}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_nanos).collect();
        let s = LatencySummary::from_samples(&mut samples).unwrap();
        assert_eq!(s.p50_ns, 50.0);
        assert_eq!(s.p99_ns, 99.0);
        assert_eq!(s.mean_ns, 50.5);
        assert_eq!(s.samples, 100);
        assert!(LatencySummary::from_samples(&mut []).is_none());
    }

    #[test]
    fn rounds_median_and_range() {
        let r = Rounds::new(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 3.0));
        assert_eq!(r.values, vec![3.0, 1.0, 2.0]);
        assert_eq!(Rounds::new(vec![4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Rounds::new(vec![]).is_none());
    }
}
