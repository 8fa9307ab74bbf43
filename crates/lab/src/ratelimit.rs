//! Latitude's per-key rate limits: a sliding 60-second window, reads (GET) and writes
//! (POST/PUT/PATCH/DELETE) counted separately. Requests refused with 429 do not use a slot.
//! Kept in memory only; a restarted lab starts with empty windows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window the limits apply to.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Budget {
    Read,
    Write,
}

/// Sliding-window counters per API key and budget.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    windows: HashMap<(String, Budget), VecDeque<Instant>>,
}

impl RateLimiter {
    /// Takes a slot for `key` in `budget` if fewer than `limit` requests were accepted in the
    /// last minute; otherwise returns the whole seconds (at least 1) until a slot frees.
    pub fn acquire(
        &mut self,
        key: &str,
        budget: Budget,
        limit: u32,
        now: Instant,
    ) -> Result<(), u64> {
        let window = self.windows.entry((key.to_owned(), budget)).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            window.pop_front();
        }
        if (window.len() as u64) < u64::from(limit) {
            window.push_back(now);
            return Ok(());
        }
        let wait = match window.front() {
            Some(oldest) => WINDOW.saturating_sub(now.duration_since(*oldest)),
            None => WINDOW,
        };
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let mut rl = RateLimiter::default();
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
        let mut rl = RateLimiter::default();
        assert_eq!(rl.acquire("k", Budget::Read, 0, Instant::now()), Err(60));
    }
}
