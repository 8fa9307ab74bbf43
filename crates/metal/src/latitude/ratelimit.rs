//! The client-side rate limiter: Latitude allows about 60 reads and 20 writes per minute per API
//! key, so every request waits here for a slot first.
//!
//! Each class (reads = GET/HEAD, writes = everything else) keeps a log of when its recent
//! requests were sent and admits a new one only while fewer than the budget were sent in the
//! last window (a sliding window). Any interval of the window's length therefore holds at most
//! the budget, however the server aligns its own minute. After a 429 the class is paused for
//! the `retry_after` the server asked for. One limiter is shared by every clone of a client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The window Latitude counts over.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestClass {
    /// GET and HEAD.
    Read,
    /// POST, PUT, PATCH, DELETE.
    Write,
}

impl RequestClass {
    /// The class of an HTTP method.
    pub fn of(method: &Method) -> Self {
        if *method == Method::GET || *method == Method::HEAD {
            RequestClass::Read
        } else {
            RequestClass::Write
        }
    }
}

/// Counters since the limiter was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateStats {
    /// Read requests sent (retries included).
    pub reads: u64,
    /// Write requests sent (retries included).
    pub writes: u64,
    /// 429 answers received.
    pub http_429: u64,
}

/// A shared sliding-window limiter for reads and writes. Cloning shares the budget.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    window: Duration,
    lanes: Mutex<[Lane; 2]>,
    reads: AtomicU64,
    writes: AtomicU64,
    http_429: AtomicU64,
}

#[derive(Debug)]
struct Lane {
    limit: usize,
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Lane {
    fn new(limit: u32) -> Self {
        let limit = limit.max(1) as usize;
        Self {
            limit,
            sent: VecDeque::with_capacity(limit),
            paused_until: None,
        }
    }

    /// Takes a slot now, or says until when to wait.
    fn try_take(&mut self, now: Instant, window: Duration) -> Result<(), Instant> {
        while self.sent.front().is_some_and(|&t| t + window <= now) {
            self.sent.pop_front();
        }
        if let Some(until) = self.paused_until {
            if until > now {
                return Err(until);
            }
            self.paused_until = None;
        }
        if self.sent.len() < self.limit {
            self.sent.push_back(now);
            Ok(())
        } else {
            // The oldest entry leaves the window at `front + window`.
            Err(self.sent.front().map_or(now, |&t| t + window))
        }
    }
}

impl RateLimiter {
    /// A limiter with Latitude's 60-second window.
    pub fn new(reads_per_window: u32, writes_per_window: u32) -> Self {
        Self::with_window(reads_per_window, writes_per_window, DEFAULT_WINDOW)
    }

    /// A limiter with another window length (tests, the lab). A budget of 0 counts as 1.
    pub fn with_window(reads_per_window: u32, writes_per_window: u32, window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                window,
                lanes: Mutex::new([Lane::new(reads_per_window), Lane::new(writes_per_window)]),
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                http_429: AtomicU64::new(0),
            }),
        }
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.inner.window
    }

    fn lanes(&self) -> MutexGuard<'_, [Lane; 2]> {
        // A panic while holding this lock cannot leave the lanes inconsistent; keep going.
        self.inner
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a request of this class may be sent, and counts it. Cancel-safe: a cancelled
    /// wait takes no slot.
    pub async fn acquire(&self, class: RequestClass) {
        loop {
            let outcome = {
                let mut lanes = self.lanes();
                lanes[class as usize].try_take(Instant::now(), self.inner.window)
            };
            match outcome {
                Ok(()) => {
                    let counter = match class {
                        RequestClass::Read => &self.inner.reads,
                        RequestClass::Write => &self.inner.writes,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(until) => {
                    tracing::trace!(?class, wait = ?until.saturating_duration_since(Instant::now()), "waiting for a Latitude rate-limit slot");
                    tokio::time::sleep_until(until).await;
                }
            }
        }
    }

    /// Records a 429 and pauses the class for `retry_after` (never shortening a longer pause).
    pub fn rate_limited(&self, class: RequestClass, retry_after: Duration) {
        self.inner.http_429.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + retry_after;
        let mut lanes = self.lanes();
        let lane = &mut lanes[class as usize];
        lane.paused_until = Some(lane.paused_until.map_or(until, |p| p.max(until)));
    }

    /// The counters.
    pub fn stats(&self) -> RateStats {
        RateStats {
            reads: self.inner.reads.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
            http_429: self.inner.http_429.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elapsed_ms(start: Instant) -> u128 {
        start.elapsed().as_millis()
    }

    #[tokio::test(start_paused = true)]
    async fn budget_is_admitted_at_once_then_waits_for_the_window() {
        let limiter = RateLimiter::with_window(3, 1, Duration::from_secs(10));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire(RequestClass::Read).await;
        }
        assert_eq!(elapsed_ms(start), 0);
        limiter.acquire(RequestClass::Read).await;
        assert_eq!(
            elapsed_ms(start),
            10_000,
            "the 4th read waits a full window"
        );
        assert_eq!(limiter.stats().reads, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let limiter = RateLimiter::with_window(2, 1, Duration::from_secs(10));
        let start = Instant::now();
        limiter.acquire(RequestClass::Read).await; // t=0
        tokio::time::sleep(Duration::from_secs(4)).await;
        limiter.acquire(RequestClass::Read).await; // t=4
        limiter.acquire(RequestClass::Read).await; // waits until t=10 (first leaves)
        assert_eq!(elapsed_ms(start), 10_000);
        limiter.acquire(RequestClass::Read).await; // waits until t=14 (second leaves)
        assert_eq!(elapsed_ms(start), 14_000);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_have_separate_budgets() {
        let limiter = RateLimiter::with_window(1, 1, Duration::from_secs(10));
        let start = Instant::now();
        limiter.acquire(RequestClass::Write).await;
        limiter.acquire(RequestClass::Read).await;
        assert_eq!(elapsed_ms(start), 0);
        limiter.acquire(RequestClass::Write).await;
        assert_eq!(elapsed_ms(start), 10_000);
        assert_eq!(
            limiter.stats(),
            RateStats {
                reads: 1,
                writes: 2,
                http_429: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_budget_and_no_window_sees_a_burst() {
        let limiter = RateLimiter::with_window(5, 5, Duration::from_secs(1));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire(RequestClass::Read).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        // Any 1-second interval holds at most 5 of them.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|&&u| u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 5, "burst of {in_window} at {:?}", *t - start);
        }
        assert_eq!(
            times.last().unwrap().duration_since(start),
            Duration::from_secs(3)
        );
        assert_eq!(limiter.stats().reads, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_only_its_class() {
        let limiter = RateLimiter::with_window(10, 10, Duration::from_secs(60));
        let start = Instant::now();
        limiter.rate_limited(RequestClass::Read, Duration::from_secs(5));
        limiter.acquire(RequestClass::Write).await;
        assert_eq!(elapsed_ms(start), 0);
        limiter.acquire(RequestClass::Read).await;
        assert_eq!(elapsed_ms(start), 5_000);
        // A shorter pause never shortens a longer one.
        limiter.rate_limited(RequestClass::Write, Duration::from_secs(8));
        limiter.rate_limited(RequestClass::Write, Duration::from_secs(1));
        limiter.acquire(RequestClass::Write).await;
        assert_eq!(elapsed_ms(start), 13_000);
        assert_eq!(limiter.stats().http_429, 3);
    }

    #[test]
    fn classes() {
        assert_eq!(RequestClass::of(&Method::GET), RequestClass::Read);
        assert_eq!(RequestClass::of(&Method::POST), RequestClass::Write);
        assert_eq!(RequestClass::of(&Method::DELETE), RequestClass::Write);
        assert_eq!(RequestClass::of(&Method::PATCH), RequestClass::Write);
    }
}
