//! A shared request-rate limiter: requests are spaced at least `60 / requests_per_minute`
//! seconds apart (a token bucket holding one token), so no minute ever sees more than the
//! allowed number of starts. Callers reserve a slot under a lock and sleep outside it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Spaces request starts evenly; share one across threads (`&RateLimiter` is enough).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    /// Earliest start of the next request (`None` until the first one).
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// At most `rpm` request starts per minute (`rpm` must be positive and finite).
    pub fn per_minute(rpm: f64) -> Self {
        let secs = if rpm.is_finite() && rpm > 0.0 {
            60.0 / rpm
        } else {
            0.0
        };
        Self::with_interval(Duration::from_secs_f64(secs))
    }

    /// Starts spaced by `interval`.
    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    /// The spacing between request starts.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reserves the next slot as seen at time `now` and returns how long the caller must
    /// wait before starting its request. Pure in the clock, so tests pass fake instants.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match *next {
            Some(t) if t > now => t,
            _ => now,
        };
        *next = Some(slot + self.interval);
        slot - now
    }

    /// Blocks until this caller may start a request.
    pub fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    #[test]
    fn per_minute_sets_spacing() {
        assert_eq!(RateLimiter::per_minute(120.0).interval(), ms(500));
        assert_eq!(RateLimiter::per_minute(6000.0).interval(), ms(10));
    }

    #[test]
    fn slots_are_spaced_by_the_interval_on_a_fake_clock() {
        let l = RateLimiter::per_minute(120.0);
        let t0 = Instant::now();
        // Three callers at the same instant: 0, 0.5 s, 1.0 s.
        assert_eq!(l.reserve(t0), ms(0));
        assert_eq!(l.reserve(t0), ms(500));
        assert_eq!(l.reserve(t0), ms(1000));
        // A caller at 0.2 s gets the slot at 1.5 s.
        assert_eq!(l.reserve(t0 + ms(200)), ms(1300));
        // After a long pause no wait, and no burst saved up: the next one waits 0.5 s.
        assert_eq!(l.reserve(t0 + ms(10_000)), ms(0));
        assert_eq!(l.reserve(t0 + ms(10_100)), ms(400));
    }

    #[test]
    fn five_requests_at_120_per_minute_span_two_seconds() {
        let l = RateLimiter::per_minute(120.0);
        let t0 = Instant::now();
        let last = (0..5).map(|_| l.reserve(t0)).last().unwrap();
        assert_eq!(last, ms(2000));
    }
}
