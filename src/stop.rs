//! Waiting that a stop request cuts short, and the one doubling backoff every retry loop uses
//! (waiting for Kafka, restarting a failed connector).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Sleeps for `d`, waking early if `stop` is set.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let deadline = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// A delay that doubles at each wait, up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, next: first, max }
    }

    /// How long the next wait is (for the message that announces it).
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Waits the next delay (less if `stop` is set), then doubles it.
    pub fn wait(&mut self, stop: &AtomicBool) {
        sleep_unless(stop, self.next);
        self.next = (self.next * 2).min(self.max);
    }

    /// Back to the first delay (after a long enough success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_bound_and_resets() {
        let stop = AtomicBool::new(true); // (no real sleeping)
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(2));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(b.next());
            b.wait(&stop);
        }
        assert_eq!(seen, [500, 1000, 2000, 2000].map(Duration::from_millis));
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(500));
    }
}
