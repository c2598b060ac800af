//! The latency histogram the connectors fill and `/metrics` renders (here, not in `metrics`,
//! so that the counters do not depend on the code that renders them).

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Latency in seconds, buckets from 1 ms doubling to ~33 s.
#[derive(Debug)]
pub struct LatencyHistogram(Histogram);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(Histogram::new(exponential_buckets(0.001, 2.0, 16)))
    }
}

impl LatencyHistogram {
    pub fn observe(&self, d: std::time::Duration) {
        self.0.observe(d.as_secs_f64());
    }

    /// The histogram itself, for rendering.
    pub fn histogram(&self) -> &Histogram {
        &self.0
    }
}
