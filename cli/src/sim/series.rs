//! The run over time, in bounded memory: per-bucket counts of readings
//! published, acknowledged and received, connects, devices connected,
//! errors by kind, and latency percentiles, for the HTML report
//! (`super::html`). The JSON report carries them too, so that
//! `sim merge` can chart a sharded run.
//!
//! At most [`BUCKETS`] buckets, one second wide to begin with; when a run
//! outlasts them, neighbouring buckets are combined and the width doubles
//! (2 s, 4 s, ...), so memory stays fixed however long the run. A bucket's
//! latency figures come from the readings first seen in it: p50 and max
//! exactly; where buckets or shards are combined, p50 is the count-weighted
//! mean of the parts' and p99 and max the parts' highest (an upper bound).
//!
//! Not here: drawing (`super::html`), the totals of the run
//! (`super::report`).

use alloc::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The most buckets a series keeps.
pub(crate) const BUCKETS: usize = 240;

/// One bucket's latency, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BucketLatency {
    /// Readings first seen in the bucket.
    pub(crate) count: u64,
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
}

impl BucketLatency {
    /// The figures of `a` and `b` together (see the module doc).
    fn combine(a: Self, b: Self) -> Self {
        let count = a.count + b.count;
        let p50 = if count == 0 {
            0
        } else {
            ((u128::from(a.p50) * u128::from(a.count) + u128::from(b.p50) * u128::from(b.count))
                / u128::from(count)) as u64
        };
        Self {
            count,
            p50,
            p99: a.p99.max(b.p99),
            max: a.max.max(b.max),
        }
    }
}

/// The series of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Series {
    /// Seconds per bucket.
    pub(crate) bucket_secs: u32,
    /// Telemetry queued by the devices (all QoS), per bucket.
    pub(crate) published: Vec<u64>,
    /// Telemetry completed (QoS 0 sent, QoS 1/2 acknowledged), per bucket.
    pub(crate) acknowledged: Vec<u64>,
    /// Telemetry the checker received (copies included), per bucket.
    pub(crate) received: Vec<u64>,
    /// Accepted links, per bucket.
    pub(crate) connects: Vec<u64>,
    /// Devices connected at the bucket's last sample.
    pub(crate) connected: Vec<u64>,
    /// End-to-end latency of the readings first seen in the bucket.
    pub(crate) latency: Vec<BucketLatency>,
    /// Errors per bucket, by kind.
    pub(crate) errors: BTreeMap<String, Vec<u64>>,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            bucket_secs: 1,
            published: Vec::new(),
            acknowledged: Vec::new(),
            received: Vec::new(),
            connects: Vec::new(),
            connected: Vec::new(),
            latency: Vec::new(),
            errors: BTreeMap::new(),
        }
    }
}

/// The run's cumulative counters at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) published: u64,
    pub(crate) acknowledged: u64,
    pub(crate) received: u64,
    pub(crate) connects: u64,
    pub(crate) connected: u64,
    pub(crate) errors: BTreeMap<&'static str, u64>,
}

/// Adds `b` into `a` element by element, `a` growing as needed.
fn add_into(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Sums neighbouring pairs.
fn halve_sum(v: &[u64]) -> Vec<u64> {
    v.chunks(2).map(|c| c.iter().sum()).collect()
}

impl Series {
    /// Buckets in use.
    pub(crate) fn len(&self) -> usize {
        self.published.len()
    }

    /// Combines neighbouring buckets: twice the width, half the count.
    fn coarsen(&mut self) {
        self.bucket_secs = self.bucket_secs.saturating_mul(2);
        self.published = halve_sum(&self.published);
        self.acknowledged = halve_sum(&self.acknowledged);
        self.received = halve_sum(&self.received);
        self.connects = halve_sum(&self.connects);
        self.connected = self
            .connected
            .chunks(2)
            .map(|c| c.last().copied().unwrap_or(0))
            .collect();
        self.latency = self
            .latency
            .chunks(2)
            .map(|c| {
                c.iter()
                    .copied()
                    .fold(BucketLatency::default(), BucketLatency::combine)
            })
            .collect();
        for v in self.errors.values_mut() {
            *v = halve_sum(v);
        }
    }

    /// The bucket of second `at`, coarsening and growing as needed.
    fn bucket(&mut self, at_secs: f64) -> usize {
        let at = at_secs.max(0.0);
        while (at / f64::from(self.bucket_secs)) as usize >= BUCKETS {
            self.coarsen();
        }
        let i = (at / f64::from(self.bucket_secs)) as usize;
        if i >= self.len() {
            let last_connected = self.connected.last().copied().unwrap_or(0);
            let n = i + 1;
            self.published.resize(n, 0);
            self.acknowledged.resize(n, 0);
            self.received.resize(n, 0);
            self.connects.resize(n, 0);
            self.connected.resize(n, last_connected);
            self.latency.resize(n, BucketLatency::default());
            for v in self.errors.values_mut() {
                v.resize(n, 0);
            }
        }
        i
    }

    /// Records what happened between `before` (taken `from_secs` into the
    /// run) and `now` (`at_secs`), and the latency `window` (emptied).
    /// Counts are spread over the buckets the interval covers in
    /// proportion to time (a late sample does not leave an empty bucket
    /// before a doubled one); the totals stay exact.
    pub(crate) fn record(
        &mut self,
        from_secs: f64,
        at_secs: f64,
        before: &Snapshot,
        now: &Snapshot,
        window: &mut Histogram<u64>,
    ) {
        let last = self.bucket(at_secs);
        let first = self.bucket(from_secs.min(at_secs)).min(last);
        let width = f64::from(self.bucket_secs);
        let span = (at_secs - from_secs).max(0.0);
        // The share of the interval in each bucket first..=last.
        let shares: Vec<f64> = (first..=last)
            .map(|i| {
                if span <= 0.0 {
                    return if i == last { 1.0 } else { 0.0 };
                }
                let lo = (i as f64 * width).max(from_secs);
                let hi = ((i + 1) as f64 * width).min(at_secs);
                (hi - lo).max(0.0) / span
            })
            .collect();
        let spread = |v: &mut Vec<u64>, delta: u64| {
            let mut left = delta;
            for (k, share) in shares.iter().enumerate() {
                let i = first + k;
                let part = if i == last {
                    left
                } else {
                    ((delta as f64 * share) as u64).min(left)
                };
                v[i] += part;
                left -= part;
            }
        };
        spread(
            &mut self.published,
            now.published.saturating_sub(before.published),
        );
        spread(
            &mut self.acknowledged,
            now.acknowledged.saturating_sub(before.acknowledged),
        );
        spread(
            &mut self.received,
            now.received.saturating_sub(before.received),
        );
        spread(
            &mut self.connects,
            now.connects.saturating_sub(before.connects),
        );
        self.connected[last] = now.connected;
        let len = self.len();
        for (kind, count) in &now.errors {
            let delta = count.saturating_sub(before.errors.get(kind).copied().unwrap_or(0));
            if delta > 0 {
                let v = self
                    .errors
                    .entry((*kind).to_owned())
                    .or_insert_with(|| vec![0; len]);
                spread(v, delta);
            }
        }
        if !window.is_empty() {
            let l = BucketLatency {
                count: window.len(),
                p50: window.value_at_quantile(0.5),
                p99: window.value_at_quantile(0.99),
                max: window.max(),
            };
            self.latency[last] = BucketLatency::combine(self.latency[last], l);
            window.reset();
        }
    }

    /// Adds the series of another shard (aligned on seconds into its run).
    pub(crate) fn merge(&mut self, other: &Series) {
        let mut other = other.clone();
        while self.bucket_secs < other.bucket_secs {
            self.coarsen();
        }
        while other.bucket_secs < self.bucket_secs {
            other.coarsen();
        }
        let n = self.len().max(other.len());
        // Pad both so that `connected` carries its last value.
        if n > 0 {
            let last = (n - 1) as f64 * f64::from(self.bucket_secs);
            self.bucket(last);
            other.bucket(last);
        }
        add_into(&mut self.published, &other.published);
        add_into(&mut self.acknowledged, &other.acknowledged);
        add_into(&mut self.received, &other.received);
        add_into(&mut self.connects, &other.connects);
        add_into(&mut self.connected, &other.connected);
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a = BucketLatency::combine(*a, *b);
        }
        for (kind, v) in &other.errors {
            let mine = self
                .errors
                .entry(kind.clone())
                .or_insert_with(|| vec![0; n]);
            add_into(mine, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(published: u64) -> Snapshot {
        Snapshot {
            published,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_long_run_stays_within_the_bucket_count_and_keeps_its_totals() {
        let mut s = Series::default();
        let mut w = super::super::checker::new_histogram();
        let mut before = snap(0);
        for t in 0..10_000u64 {
            let now = snap(before.published + 3);
            w.record(1000 + t).unwrap();
            s.record(t as f64 - 0.5, t as f64 + 0.5, &before, &now, &mut w);
            before = now;
        }
        assert!(s.len() <= BUCKETS, "{}", s.len());
        assert_eq!(s.bucket_secs, 64);
        assert_eq!(s.published.iter().sum::<u64>(), 30_000);
        assert_eq!(s.latency.iter().map(|l| l.count).sum::<u64>(), 10_000);
        // The histogram keeps 2 significant digits.
        let max = s.latency.last().unwrap().max;
        assert!((10_999..=11_110).contains(&max), "{max}");
    }

    #[test]
    fn merged_shards_add_up_bucket_by_bucket() {
        let mut w = super::super::checker::new_histogram();
        let mut a = Series::default();
        a.record(0.0, 0.5, &snap(0), &snap(5), &mut w);
        let mut b = Series::default();
        b.record(0.0, 0.5, &snap(0), &snap(1), &mut w);
        b.record(3.0, 3.5, &snap(1), &snap(4), &mut w);
        a.merge(&b);
        assert_eq!(a.published, vec![6, 0, 0, 3]);
    }

    #[test]
    fn a_late_sample_spreads_its_counts_over_the_seconds_it_covers() {
        let mut w = super::super::checker::new_histogram();
        let mut s = Series::default();
        s.record(0.0, 1.0, &snap(0), &snap(100), &mut w);
        // Two and a half seconds late: 250 readings over 1.0 .. 3.5 s.
        s.record(1.0, 3.5, &snap(100), &snap(350), &mut w);
        assert_eq!(s.published, vec![100, 100, 100, 50]);
    }
}
