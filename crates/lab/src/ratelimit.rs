//! Latitude's per-key rate limits: a sliding window of 60 *modelled* seconds (60 × `time_scale`
//! real seconds), reads (GET) and writes (POST/PUT/PATCH/DELETE) counted separately. Requests
//! refused with 429 do not use a slot; the `retry_after` of a refusal is in whole modelled
//! seconds (at least 1), as an installer running at the same time scale expects. Kept in memory
//! only; a restarted lab starts with empty windows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window the limits apply to, in modelled seconds.
pub(crate) const WINDOW_MODELLED_S: u64 = 60;

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    Read,
    Write,
}

/// Sliding-window counters per API key and budget.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    windows: HashMap<(String, Budget), VecDeque<Instant>>,
    /// Real seconds per modelled second.
    time_scale: f64,
    /// The window in real time.
    window: Duration,
}

impl RateLimiter {
    /// A limiter for a world running `time_scale` real seconds per modelled second.
    pub fn new(time_scale: f64) -> RateLimiter {
        RateLimiter {
            windows: HashMap::new(),
            time_scale,
            window: Duration::from_secs_f64(WINDOW_MODELLED_S as f64 * time_scale),
        }
    }

    /// Takes a slot for `key` in `budget` if fewer than `limit` requests were accepted in the
    /// last (modelled) minute; otherwise returns the whole modelled seconds (1 to 60) until a
    /// slot frees.
    pub fn acquire(
        &mut self,
        key: &str,
        budget: Budget,
        limit: u32,
        now: Instant,
    ) -> Result<(), u64> {
        let window_len = self.window;
        let window = self.windows.entry((key.to_owned(), budget)).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window_len)
        {
            window.pop_front();
        }
        if (window.len() as u64) < u64::from(limit) {
            window.push_back(now);
            return Ok(());
        }
        let wait = match window.front() {
            Some(oldest) => window_len.saturating_sub(now.duration_since(*oldest)),
            None => window_len,
        };
        // Float noise must not turn an exact 60 into 61.
        let modelled = wait.as_secs_f64() / self.time_scale - 1e-6;
        let secs = modelled.ceil().clamp(1.0, WINDOW_MODELLED_S as f64);
        Err(secs as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(WINDOW_MODELLED_S);

    #[test]
    fn window_slides() {
        let mut rl = RateLimiter::new(1.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.acquire("k", Budget::Write, 3, t0).is_ok());
        }
        assert_eq!(rl.acquire("k", Budget::Write, 3, t0), Err(60));
        // Reads and other keys have their own budgets.
        assert!(rl.acquire("k", Budget::Read, 3, t0).is_ok());
        assert!(rl.acquire("other", Budget::Write, 3, t0).is_ok());
        let later = t0 + Duration::from_millis(59_500);
        assert_eq!(rl.acquire("k", Budget::Write, 3, later), Err(1));
        assert!(rl.acquire("k", Budget::Write, 3, t0 + WINDOW).is_ok());
    }

    #[test]
    fn zero_limit_always_refuses() {
        let mut rl = RateLimiter::new(1.0);
        assert_eq!(rl.acquire("k", Budget::Read, 0, Instant::now()), Err(60));
    }

    #[test]
    fn scaled_window_and_modelled_retry_after() {
        // 1 modelled second = 10 real milliseconds: the window is 600 ms.
        let mut rl = RateLimiter::new(0.01);
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(rl.acquire("k", Budget::Write, 2, t0).is_ok());
        }
        // The whole modelled minute to wait, not 1 real second.
        assert_eq!(rl.acquire("k", Budget::Write, 2, t0), Err(60));
        // 450 real ms later: 15 modelled seconds left.
        let later = t0 + Duration::from_millis(450);
        assert_eq!(rl.acquire("k", Budget::Write, 2, later), Err(15));
        // 595 ms: half a modelled second left, rounded up to 1.
        let almost = t0 + Duration::from_millis(595);
        assert_eq!(rl.acquire("k", Budget::Write, 2, almost), Err(1));
        // The window is 600 real ms, not 60 s.
        assert!(
            rl.acquire("k", Budget::Write, 2, t0 + Duration::from_millis(600))
                .is_ok()
        );
    }
}
