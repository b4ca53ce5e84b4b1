//! Percentiles of one run's samples and medians across runs.

/// p50, p99 and max of one run's latency samples, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub samples: usize,
}

impl Latency {
    pub fn of(samples_ns: &[u64]) -> Latency {
        let mut sorted: Vec<u64> = samples_ns.to_vec();
        sorted.sort_unstable();
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50_us: us(nearest_rank(&sorted, 50.0)),
            p99_us: us(nearest_rank(&sorted, 99.0)),
            max_us: us(sorted.last().copied().unwrap_or(0)),
            samples: sorted.len(),
        }
    }
}

/// The nearest-rank percentile: an observed value, never an interpolation between two.
fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of values from repeated runs (the lower middle one for an even count, so that
/// it is always a figure some run produced).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_observed_values() {
        let samples: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let l = Latency::of(&samples);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.max_us, 1000.0);
        assert_eq!(Latency::of(&[7000]).p99_us, 7.0);
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.0);
        assert!(median([]).is_nan());
    }
}
