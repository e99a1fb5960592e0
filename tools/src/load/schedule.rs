//! The open-loop send schedule and the coordinated-omission latency accounting, as pure functions.

use std::time::{Duration, Instant};

/// The fixed schedule of an open-loop run: request `i` is due at `start + i / rate`.
///
/// Invariant: `rate` is finite and positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    total: u64,
}

impl Schedule {
    /// The schedule for `rate` requests per second over `duration`: every `i` with `i / rate < duration`.
    ///
    /// # Panics
    /// If `rate` is not finite and positive (a `Rate` from parsing always is).
    pub fn new(rate: f64, duration: Duration) -> Self {
        assert!(
            rate.is_finite() && rate > 0.0,
            "rate must be finite and positive"
        );
        // Count of integers in [0, rate * duration).
        let total = (rate * duration.as_secs_f64()).ceil() as u64;
        Self { rate, total }
    }

    /// How many requests the run is due to send.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When request `i` is due, as an offset from the start of the run.
    pub fn offset(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The requests connection `k` of `connections` sends: every `i` with `i % connections == k`.
    pub fn for_connection(&self, k: usize, connections: usize) -> impl Iterator<Item = u64> {
        (k as u64..self.total).step_by(connections.max(1))
    }
}

/// The latency charged to one response.
///
/// Open loop charges from the *intended* send time, so a request that waited behind a
/// stalled one is charged its wait (the coordinated-omission correction); closed loop
/// has no schedule and charges from the actual send.
pub fn charged_latency(intended: Option<Instant>, sent: Instant, done: Instant) -> Duration {
    done.saturating_duration_since(intended.map_or(sent, |i| i.min(sent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_requests_evenly_over_the_duration() {
        let s = Schedule::new(200.0, Duration::from_secs(1));
        assert_eq!(s.total(), 200);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(5));
        assert_eq!(s.offset(199), Duration::from_millis(995));
        assert_eq!(Schedule::new(3.0, Duration::from_millis(500)).total(), 2);
        assert_eq!(Schedule::new(0.5, Duration::from_millis(100)).total(), 1);
    }

    #[test]
    fn deals_requests_round_robin_to_connections() {
        let s = Schedule::new(10.0, Duration::from_secs(1));
        assert_eq!(s.for_connection(0, 3).collect::<Vec<_>>(), [0, 3, 6, 9]);
        assert_eq!(s.for_connection(2, 3).collect::<Vec<_>>(), [2, 5, 8]);
        let mut all: Vec<u64> = (0..3).flat_map(|k| s.for_connection(k, 3)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn charges_queued_requests_for_a_stall() {
        // One connection at 100 req/s; the server stalls 100 ms on request 0.
        let start = Instant::now();
        let s = Schedule::new(100.0, Duration::from_secs(1));
        let ms = Duration::from_millis;
        let done0 = start + ms(100);
        assert_eq!(
            charged_latency(Some(start + s.offset(0)), start, done0),
            ms(100)
        );
        // Request 1 was due at 10 ms but could only be sent at 100 ms; it finishes at 101 ms.
        let intended1 = start + s.offset(1);
        assert_eq!(
            charged_latency(Some(intended1), done0, done0 + ms(1)),
            ms(91)
        );
        // Closed loop would have hidden the stall from it.
        assert_eq!(charged_latency(None, done0, done0 + ms(1)), ms(1));
    }

    #[test]
    fn never_charges_less_than_the_actual_round_trip() {
        // Sent early (cannot happen with the sleep, but the accounting must not go negative).
        let t = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(charged_latency(Some(t + ms(5)), t, t + ms(2)), ms(2));
    }
}
