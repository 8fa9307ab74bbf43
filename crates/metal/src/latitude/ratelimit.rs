//! The client-side rate limiter: Latitude allows about 60 reads and 20 writes per minute per API
//! key, so every request waits here for a slot first.
//!
//! Each class (reads = GET/HEAD, writes = everything else) keeps a log of its recent requests
//! and admits a new one only while fewer than the budget are in the last window (a sliding
//! window). A request occupies its slot from the moment it is sent until its answer arrived
//! ([`Slot`]), and the window is counted from that answer: the server saw the request somewhere
//! in between, so however requests are delayed on the way (a loaded machine, a slow network),
//! any interval of the window's length *as the server sees it* holds at most the budget. After
//! a 429 the class is paused for the `retry_after` the server asked for. One limiter is shared
//! by every clone of a client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
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
    /// Woken when a request's answer arrived (its slot starts to age).
    answered: Notify,
    reads: AtomicU64,
    writes: AtomicU64,
    http_429: AtomicU64,
}

#[derive(Debug)]
struct Lane {
    limit: usize,
    /// The requests in the window: `(slot id, when its answer arrived)`; `None` while in flight.
    sent: VecDeque<(u64, Option<Instant>)>,
    next_id: u64,
    paused_until: Option<Instant>,
}

impl Lane {
    fn new(limit: u32) -> Self {
        let limit = limit.max(1) as usize;
        Self {
            limit,
            sent: VecDeque::with_capacity(limit),
            next_id: 0,
            paused_until: None,
        }
    }

    /// Takes a slot now (its id), or says until when to wait: an instant, or `None` when every
    /// slot is held by a request still in flight (wait for an answer).
    fn try_take(&mut self, now: Instant, window: Duration) -> Result<u64, Option<Instant>> {
        self.sent
            .retain(|(_, answered)| answered.is_none_or(|t| t + window > now));
        if let Some(until) = self.paused_until {
            if until > now {
                return Err(Some(until));
            }
            self.paused_until = None;
        }
        if self.sent.len() < self.limit {
            let id = self.next_id;
            self.next_id += 1;
            self.sent.push_back((id, None));
            Ok(id)
        } else {
            // The earliest answered entry leaves the window first.
            Err(self
                .sent
                .iter()
                .filter_map(|(_, answered)| answered.map(|t| t + window))
                .min())
        }
    }

    /// The answer to slot `id` arrived at `now`: from here it ages out of the window.
    fn answered(&mut self, id: u64, now: Instant) {
        if let Some(entry) = self.sent.iter_mut().find(|(slot, _)| *slot == id) {
            entry.1 = Some(now);
        }
    }
}

/// A request's place in its class's window, held from sending until its answer arrived (or
/// the request was abandoned): dropping it starts the slot's time in the window.
#[derive(Debug)]
#[must_use = "the slot counts from when it is dropped: hold it until the answer arrived"]
pub struct Slot {
    limiter: RateLimiter,
    class: RequestClass,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.lanes()[self.class as usize].answered(self.id, Instant::now());
        self.limiter.inner.answered.notify_waiters();
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
                answered: Notify::new(),
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

    /// Waits until a request of this class may be sent, counts it, and returns its [`Slot`]:
    /// hold it until the answer arrived. Cancel-safe: a cancelled wait takes no slot.
    pub async fn acquire(&self, class: RequestClass) -> Slot {
        loop {
            // Registered before looking, so an answer arriving in between is not missed.
            let answered = self.inner.answered.notified();
            let outcome = {
                let mut lanes = self.lanes();
                lanes[class as usize].try_take(Instant::now(), self.inner.window)
            };
            match outcome {
                Ok(id) => {
                    let counter = match class {
                        RequestClass::Read => &self.inner.reads,
                        RequestClass::Write => &self.inner.writes,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Slot {
                        limiter: self.clone(),
                        class,
                        id,
                    };
                }
                Err(Some(until)) => {
                    tracing::trace!(?class, wait = ?until.saturating_duration_since(Instant::now()), "waiting for a Latitude rate-limit slot");
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = answered => {}
                    }
                }
                Err(None) => {
                    tracing::trace!(?class, "every Latitude rate-limit slot is in flight");
                    answered.await;
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
            drop(limiter.acquire(RequestClass::Read).await);
        }
        assert_eq!(elapsed_ms(start), 0);
        drop(limiter.acquire(RequestClass::Read).await);
        assert_eq!(
            elapsed_ms(start),
            10_000,
            "the 4th read waits a full window"
        );
        assert_eq!(limiter.stats().reads, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_ages_from_its_answer_so_a_slow_request_cannot_crowd_the_servers_window() {
        let limiter = RateLimiter::with_window(2, 1, Duration::from_secs(10));
        let start = Instant::now();
        // The first request takes 4 s to be answered (the server saw it somewhere in those 4 s).
        let slow = limiter.acquire(RequestClass::Write).await;
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                drop(limiter.acquire(RequestClass::Write).await);
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!waiter.is_finished(), "a slot in flight holds the window");
        drop(slow);
        // Counted from the answer: the next write goes out a full window after it, never
        // earlier, whatever the delay on the way in was.
        let admitted = waiter.await.unwrap();
        assert_eq!(admitted.duration_since(start).as_millis(), 14_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let limiter = RateLimiter::with_window(2, 1, Duration::from_secs(10));
        let start = Instant::now();
        drop(limiter.acquire(RequestClass::Read).await); // t=0
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(limiter.acquire(RequestClass::Read).await); // t=4
        drop(limiter.acquire(RequestClass::Read).await); // waits until t=10 (first leaves)
        assert_eq!(elapsed_ms(start), 10_000);
        drop(limiter.acquire(RequestClass::Read).await); // waits until t=14 (second leaves)
        assert_eq!(elapsed_ms(start), 14_000);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_have_separate_budgets() {
        let limiter = RateLimiter::with_window(1, 1, Duration::from_secs(10));
        let start = Instant::now();
        drop(limiter.acquire(RequestClass::Write).await);
        drop(limiter.acquire(RequestClass::Read).await);
        assert_eq!(elapsed_ms(start), 0);
        drop(limiter.acquire(RequestClass::Write).await);
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
                drop(l.acquire(RequestClass::Read).await);
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
        drop(limiter.acquire(RequestClass::Write).await);
        assert_eq!(elapsed_ms(start), 0);
        drop(limiter.acquire(RequestClass::Read).await);
        assert_eq!(elapsed_ms(start), 5_000);
        // A shorter pause never shortens a longer one.
        limiter.rate_limited(RequestClass::Write, Duration::from_secs(8));
        limiter.rate_limited(RequestClass::Write, Duration::from_secs(1));
        drop(limiter.acquire(RequestClass::Write).await);
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
