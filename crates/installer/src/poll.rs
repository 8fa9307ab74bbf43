//! How often to look: the interval decisions of the provider waits (WaitingServersReady, the
//! wait for a failed server to disappear before its replacement is ordered) and of the per-node
//! Talos waits. Sans-IO: every function takes the facts (statuses, how long each has held, how
//! many servers the listing returned, the time) and returns a duration; the steps do the
//! listing, the probing and the sleeping.
//!
//! The rule for a Latitude wait, which lists every server of the project in one (paged) call:
//!
//! 1. Each pending server has a status and the time it was first observed in it. A status with
//!    a typical duration ([`STARTING_DEPLOY`], [`DEPLOYING`], [`DISK_ERASING`]) has a
//!    transition *due* once [`DUE_FRACTION`] of that duration has passed; a server that is `on`
//!    without an address is due at once; any other status has no known end.
//! 2. The server's interval is `poll_min` when its transition is due or overdue, else the time
//!    left until it is due, clamped to `[poll_min, poll_max]`; `poll_max` when nothing is known.
//! 3. The next listing comes after the shortest of these, but never sooner than the read-budget
//!    floor: one wait uses at most [`WAIT_READ_SHARE`] of Latitude's 60 reads a minute, counted
//!    in pages (a listing of `n` servers costs `n / 100 + 1` reads), i.e. 2 s per page.
//! 4. Every duration is in the installer's time: [`Timings::scale`] scales the typical
//!    durations and the floor, and [`Timings::scaled`] the poll bounds, so a lab run in scaled
//!    time is polled like the real world, only faster.
//! 5. [`Timings::fixed_poll`] (the sequential baseline) overrides all of it: exactly that
//!    interval, no adaptation, no floor (the client's rate limiter still holds the budget).
//!
//! Talos probes cost no Latitude reads: a server that says `deploying` may already run Talos
//! (Latitude's status lags behind the machine), so its port is probed every `poll_min`
//! ([`talos_probe_interval`]), independent of the listing's cadence.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::orchestrator::Timings;

/// Typical time in Latitude's `starting_deploy` (order accepted → `deploying`): about 20 s
/// (Latitude's deploy timeline; the lab's `Timeline::starting_deploy` is 20 s).
pub(crate) const STARTING_DEPLOY: Duration = Duration::from_secs(20);
/// Typical time in `deploying` on real hardware: about 5 minutes (Latitude's documented deploy
/// time for bare metal; the lab's `Timeline::deploying` is 280 s, ±20 % jitter).
pub(crate) const DEPLOYING: Duration = Duration::from_secs(5 * 60);
/// Typical time in `disk_erasing` (the first phase of a reinstall): about 2 minutes (the lab's
/// `Timeline::disk_erasing` is 120 s).
pub(crate) const DISK_ERASING: Duration = Duration::from_secs(2 * 60);
/// The fraction of a status' typical duration after which its end counts as due. Durations vary
/// (the lab draws ±20 %, real hardware more), so the fast cadence starts a quarter early.
pub(crate) const DUE_FRACTION: f64 = 0.75;

/// Latitude's read budget per API key: 60 GET requests…
pub(crate) const READS_PER_WINDOW: u32 = 60;
/// …in any 60-second window.
pub(crate) const READ_WINDOW: Duration = Duration::from_secs(60);
/// The share of the read budget one wait may spend on its listings: half, i.e. at most 30 pages
/// a minute (a 2 s floor per page), leaving the rest to retries and anything else running.
pub(crate) const WAIT_READ_SHARE: f64 = 0.5;
/// Servers per page of a listing (the client asks for `page[size]=100`).
pub(crate) const LIST_PAGE_SIZE: usize = metal::latitude::client::PAGE_SIZE;

/// Longest interval between two Talos probes of one node in a per-node wait (modelled time),
/// further bounded by `poll_max`.
pub(crate) const NODE_PROBE_MAX: Duration = Duration::from_secs(5);

/// Reads one listing of `listed` servers costs: pages are fetched until one is not full, so a
/// listing of 200 servers takes three (100, 100, 0).
pub(crate) fn list_pages(listed: usize) -> u32 {
    u32::try_from(listed / LIST_PAGE_SIZE + 1).unwrap_or(u32::MAX)
}

/// The shortest interval between two listings of `listed` servers that keeps one wait within
/// its share of the read budget, in real time.
pub(crate) fn read_floor(timings: &Timings, listed: usize) -> Duration {
    let per_page = READ_WINDOW.div_f64(f64::from(READS_PER_WINDOW) * WAIT_READ_SHARE);
    timings.scale(per_page * list_pages(listed))
}

/// The typical (modelled) time a server spends in a Latitude status, when known.
pub(crate) fn typical(status: &str) -> Option<Duration> {
    match status {
        "starting_deploy" => Some(STARTING_DEPLOY),
        "deploying" => Some(DEPLOYING),
        "disk_erasing" => Some(DISK_ERASING),
        _ => None,
    }
}

/// What the plan needs to know about one server that is not ready yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingServer<'a> {
    /// The provider's status (`deploying`).
    pub status: &'a str,
    /// How long it has been in that status (since first observed).
    pub in_status: Duration,
    /// True once the provider reports its primary address.
    pub has_ip: bool,
}

/// When a pending server's next change is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Due or overdue.
    Now,
    /// Not before this long.
    In(Duration),
    /// Nothing is known about this status.
    Unknown,
}

/// When `server`'s next change is due, in real time.
pub(crate) fn due(timings: &Timings, server: &PendingServer<'_>) -> Due {
    match typical(server.status) {
        Some(typical) => {
            let due_after = timings.scale(typical).mul_f64(DUE_FRACTION);
            match due_after.checked_sub(server.in_status) {
                Some(left) if !left.is_zero() => Due::In(left),
                _ => Due::Now,
            }
        }
        // Deployed but without an address: the address is due any moment.
        None if server.status == "on" && !server.has_ip => Due::Now,
        None => Due::Unknown,
    }
}

/// The interval before the next listing of a provider wait whose listing returned `listed`
/// servers and in which `pending` are not ready yet (the rule in the module documentation).
pub(crate) fn next_list_interval(
    timings: &Timings,
    pending: &[PendingServer<'_>],
    listed: usize,
) -> Duration {
    if let Some(fixed) = timings.fixed_poll {
        return fixed;
    }
    let (min, max) = bounds(timings);
    let wanted = pending
        .iter()
        .map(|server| match due(timings, server) {
            Due::Now => min,
            Due::In(left) => left.max(min).min(max),
            Due::Unknown => max,
        })
        .min()
        .unwrap_or(max);
    wanted.max(read_floor(timings, listed))
}

/// The interval before the next listing when a change is due now whatever the statuses say (a
/// replacement was just ordered, a deleted server should disappear): `poll_min`, within the
/// read-budget floor.
pub(crate) fn soon(timings: &Timings, listed: usize) -> Duration {
    match timings.fixed_poll {
        Some(fixed) => fixed,
        None => bounds(timings).0.max(read_floor(timings, listed)),
    }
}

/// How often the Talos port of a server whose provider status may lag is probed: `poll_min`
/// (TCP probes cost no provider reads), or `fixed_poll`.
pub(crate) fn talos_probe_interval(timings: &Timings) -> Duration {
    timings.fixed_poll.unwrap_or(timings.poll_min)
}

/// How long until a server that has said `deploying` for `in_status` is probed every
/// [`talos_probe_interval`]: zero once its deployment is due to end (as for the listing), or
/// always with `fixed_poll`. Before that it is probed once per listing only: 200 servers probed
/// every `poll_min` for a whole deployment would be tens of thousands of connections a second
/// in a lab at 1/100 of real time, for nothing.
pub(crate) fn talos_probe_wait(timings: &Timings, in_status: Duration) -> Duration {
    if timings.fixed_poll.is_some() {
        return Duration::ZERO;
    }
    let deploying = PendingServer {
        status: "deploying",
        in_status,
        has_ip: true,
    };
    match due(timings, &deploying) {
        Due::In(left) => left,
        Due::Now | Due::Unknown => Duration::ZERO,
    }
}

/// `(poll_min, poll_max)`, with `poll_max` never below `poll_min`.
fn bounds(timings: &Timings) -> (Duration, Duration) {
    (timings.poll_min, timings.poll_max.max(timings.poll_min))
}

/// The intervals of one node's Talos wait: `poll_min`, growing by half each time up to
/// [`NODE_PROBE_MAX`] (scaled) or `poll_max`, whichever is shorter; exactly `fixed_poll` when
/// set.
#[derive(Debug, Clone)]
pub(crate) struct NodeBackoff {
    next: Duration,
    max: Duration,
    fixed: bool,
}

impl NodeBackoff {
    /// The first interval is `poll_min`.
    pub fn new(timings: &Timings) -> Self {
        match timings.fixed_poll {
            Some(fixed) => Self {
                next: fixed,
                max: fixed,
                fixed: true,
            },
            None => {
                let (min, max) = bounds(timings);
                Self {
                    next: min,
                    max: max.min(timings.scale(NODE_PROBE_MAX)).max(min),
                    fixed: false,
                }
            }
        }
    }

    /// The interval to sleep now.
    pub fn next_interval(&mut self) -> Duration {
        let now = self.next;
        if !self.fixed {
            self.next = self.next.mul_f64(1.5).min(self.max);
        }
        now
    }
}

/// When each server was first observed in its current status.
#[derive(Debug, Default)]
pub(crate) struct StatusClock {
    seen: HashMap<String, (String, Instant)>,
}

impl StatusClock {
    /// Records that server `id` reports `status` at `now`; returns how long it has been in that
    /// status (zero when it just changed or is seen for the first time).
    pub fn observe(&mut self, id: &str, status: &str, now: Instant) -> Duration {
        match self.seen.get_mut(id) {
            Some((seen, since)) if seen == status => now.saturating_duration_since(*since),
            Some(entry) => {
                *entry = (status.to_owned(), now);
                Duration::ZERO
            }
            None => {
                self.seen.insert(id.to_owned(), (status.to_owned(), now));
                Duration::ZERO
            }
        }
    }

    /// Like [`StatusClock::observe`], but a server seen for the first time that was ordered
    /// `ordered_ago` ago (by this install, so the order started its deployment) is credited
    /// with the time it has plausibly spent in its status already: all of it in
    /// `starting_deploy`, all but the typical `starting_deploy` in `deploying`. Without this, a
    /// server ordered minutes before the wait began would look fresh and be polled slowly.
    pub fn observe_ordered(
        &mut self,
        id: &str,
        status: &str,
        now: Instant,
        ordered_ago: Option<Duration>,
        timings: &Timings,
    ) -> Duration {
        if !self.seen.contains_key(id)
            && let Some(age) = ordered_ago
        {
            let credit = match status {
                "starting_deploy" => age,
                "deploying" => age.saturating_sub(timings.scale(STARTING_DEPLOY)),
                _ => Duration::ZERO,
            };
            let since = now.checked_sub(credit).unwrap_or(now);
            self.seen.insert(id.to_owned(), (status.to_owned(), since));
        }
        self.observe(id, status, now)
    }

    /// Forgets a server (deleted, replaced).
    pub fn forget(&mut self, id: &str) {
        self.seen.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn real() -> Timings {
        Timings::default()
    }

    fn pending(status: &str, in_status: Duration) -> PendingServer<'_> {
        PendingServer {
            status,
            in_status,
            has_ip: true,
        }
    }

    /// Drives `n` servers through one `deploying` phase with a fake clock: the list interval at
    /// each moment.
    fn interval_at(timings: &Timings, status: &str, in_status: Duration, n: usize) -> Duration {
        let servers: Vec<PendingServer<'_>> = (0..n).map(|_| pending(status, in_status)).collect();
        next_list_interval(timings, &servers, n)
    }

    #[test]
    fn long_early_in_deploying_short_near_and_after_its_expected_end() {
        let t = real();
        // Early: nothing can change for minutes → poll_max.
        assert_eq!(interval_at(&t, "deploying", S(0), 3), t.poll_max);
        assert_eq!(interval_at(&t, "deploying", S(120), 3), t.poll_max);
        // 10 s before the due point (225 s): sleep just those 10 s.
        assert_eq!(interval_at(&t, "deploying", S(215), 3), S(10));
        // Due (75 % of 5 min) and overdue: as fast as the read floor allows (2 s for one page).
        assert_eq!(interval_at(&t, "deploying", S(225), 3), S(2));
        assert_eq!(interval_at(&t, "deploying", S(400), 3), S(2));
        // With a poll_min above the floor, poll_min.
        let slow = Timings {
            poll_min: S(3),
            ..real()
        };
        assert_eq!(interval_at(&slow, "deploying", S(300), 3), S(3));
    }

    #[test]
    fn each_status_has_its_own_expected_end() {
        let t = real();
        // starting_deploy (~20 s) is due after 15 s.
        assert_eq!(interval_at(&t, "starting_deploy", S(0), 1), S(15));
        assert_eq!(interval_at(&t, "starting_deploy", S(15), 1), S(2));
        // disk_erasing (~2 min) after 90 s.
        assert_eq!(interval_at(&t, "disk_erasing", S(0), 1), t.poll_max);
        assert_eq!(interval_at(&t, "disk_erasing", S(85), 1), S(5));
        assert_eq!(interval_at(&t, "disk_erasing", S(95), 1), S(2));
        // `on` without an address: due now. Unknown statuses: poll_max.
        let on = PendingServer {
            status: "on",
            in_status: S(0),
            has_ip: false,
        };
        assert_eq!(due(&t, &on), Due::Now);
        assert_eq!(due(&t, &pending("rescue_mode", S(9))), Due::Unknown);
        assert_eq!(interval_at(&t, "rescue_mode", S(0), 1), t.poll_max);
    }

    #[test]
    fn the_most_urgent_server_decides() {
        let t = real();
        let servers = [
            pending("deploying", S(10)),
            pending("deploying", S(219)),
            pending("off", S(0)),
        ];
        assert_eq!(next_list_interval(&t, &servers, 3), S(6));
        assert_eq!(next_list_interval(&t, &[], 3), t.poll_max);
    }

    #[test]
    fn the_read_floor_counts_pages_for_200_servers() {
        let t = real();
        assert_eq!(list_pages(0), 1);
        assert_eq!(list_pages(99), 1);
        assert_eq!(list_pages(100), 2);
        assert_eq!(list_pages(200), 3);
        assert_eq!(read_floor(&t, 3), S(2));
        assert_eq!(read_floor(&t, 200), S(6));
        // 200 servers all overdue: poll_min (1 s) would be 180 reads a minute; the floor keeps
        // the wait at 3 pages every 6 s = 30 reads a minute, half of Latitude's 60.
        let interval = interval_at(&t, "deploying", S(600), 200);
        assert_eq!(interval, S(6));
        let reads_per_minute = f64::from(list_pages(200)) * 60.0 / interval.as_secs_f64();
        assert!(reads_per_minute <= 30.0, "{reads_per_minute}");
        // A floor above poll_max wins over it too: 1 000 servers are 11 pages, 22 s.
        assert_eq!(interval_at(&t, "deploying", S(0), 1_000), S(22));
        // The same in a lab at 1/100 of real time.
        let lab = real().scaled(0.01);
        assert_eq!(
            interval_at(&lab, "deploying", S(600), 200),
            Duration::from_millis(60)
        );
    }

    #[test]
    fn a_simulated_deploy_with_a_fake_clock_stays_within_the_budget() {
        // 200 servers ordered at once, polled until 6 minutes in: count listings per minute.
        let t = real();
        let t0 = Instant::now();
        let mut clock = StatusClock::default();
        let mut now = t0;
        let mut listings: Vec<Duration> = Vec::new();
        while now - t0 < S(360) {
            let elapsed = now - t0;
            let status = if elapsed < S(20) {
                "starting_deploy"
            } else {
                "deploying"
            };
            let in_status: Vec<Duration> = (0..200)
                .map(|i| clock.observe(&format!("sv_{i}"), status, now))
                .collect();
            let pending: Vec<PendingServer<'_>> =
                in_status.iter().map(|&d| pending(status, d)).collect();
            listings.push(elapsed);
            now += next_list_interval(&t, &pending, 200);
        }
        for (i, start) in listings.iter().enumerate() {
            let in_minute = listings[i..]
                .iter()
                .filter(|&&u| u < *start + S(60))
                .count();
            assert!(
                in_minute * 3 <= 30,
                "{in_minute} listings in a minute from {start:?}"
            );
        }
        // Few listings while nothing can change, many once the end is due.
        let early = listings
            .iter()
            .filter(|d| **d >= S(40) && **d < S(200))
            .count();
        let late = listings
            .iter()
            .filter(|d| **d >= S(260) && **d < S(360))
            .count();
        assert!(early <= 12, "{early} listings early in deploying");
        assert!(late >= 15, "{late} listings once the end is due");
    }

    #[test]
    fn the_status_clock_measures_from_the_first_observation() {
        let t0 = Instant::now();
        let mut clock = StatusClock::default();
        assert_eq!(clock.observe("a", "starting_deploy", t0), S(0));
        assert_eq!(clock.observe("a", "starting_deploy", t0 + S(7)), S(7));
        assert_eq!(clock.observe("a", "deploying", t0 + S(21)), S(0));
        assert_eq!(clock.observe("a", "deploying", t0 + S(121)), S(100));
        clock.forget("a");
        assert_eq!(clock.observe("a", "deploying", t0 + S(130)), S(0));
    }

    #[test]
    fn a_server_ordered_before_the_wait_is_credited_with_its_age() {
        let t = real();
        let t0 = Instant::now() + S(3_600);
        let mut clock = StatusClock::default();
        // Ordered 4 minutes ago, deploying: about 3 min 40 s in it, so due in 5 s.
        let in_status = clock.observe_ordered("a", "deploying", t0, Some(S(240)), &t);
        assert_eq!(in_status, S(220));
        assert_eq!(interval_at(&t, "deploying", in_status, 1), S(5));
        // Only at first sight: later observations measure from there.
        assert_eq!(
            clock.observe_ordered("a", "deploying", t0 + S(10), Some(S(250)), &t),
            S(230)
        );
        assert_eq!(
            clock.observe_ordered("b", "starting_deploy", t0, Some(S(9)), &t),
            S(9)
        );
        assert_eq!(clock.observe_ordered("c", "on", t0, Some(S(900)), &t), S(0));
        assert_eq!(clock.observe_ordered("d", "deploying", t0, None, &t), S(0));
        // In scaled time the typical starting_deploy is scaled too.
        let lab = real().scaled(0.01);
        assert_eq!(
            clock.observe_ordered("e", "deploying", t0, Some(S(1)), &lab),
            Duration::from_millis(800)
        );
    }

    #[test]
    fn fixed_poll_overrides_everything() {
        let t = Timings {
            fixed_poll: Some(S(5)),
            ..real()
        };
        assert_eq!(interval_at(&t, "deploying", S(0), 3), S(5));
        assert_eq!(interval_at(&t, "deploying", S(900), 200), S(5));
        assert_eq!(soon(&t, 200), S(5));
        assert_eq!(talos_probe_interval(&t), S(5));
        assert_eq!(talos_probe_wait(&t, S(0)), S(0));
        let mut b = NodeBackoff::new(&t);
        assert_eq!(
            [b.next_interval(), b.next_interval(), b.next_interval()],
            [S(5); 3]
        );
    }

    #[test]
    fn soon_and_talos_probes() {
        let t = real();
        assert_eq!(soon(&t, 3), S(2));
        assert_eq!(soon(&t, 250), S(6));
        assert_eq!(talos_probe_interval(&t), S(1));
        assert_eq!(talos_probe_wait(&t, S(0)), S(225));
        assert_eq!(talos_probe_wait(&t, S(224)), S(1));
        assert_eq!(talos_probe_wait(&t, S(225)), S(0));
        assert_eq!(talos_probe_wait(&t, S(900)), S(0));
        assert_eq!(
            talos_probe_wait(&real().scaled(0.01), Duration::from_millis(2_250)),
            S(0)
        );
        let mut b = NodeBackoff::new(&t);
        let steps: Vec<Duration> = (0..6).map(|_| b.next_interval()).collect();
        assert_eq!(steps[0], S(1));
        assert_eq!(steps[1], Duration::from_millis(1500));
        assert_eq!(steps[5], NODE_PROBE_MAX);
    }

    #[test]
    fn scaling_scales_every_clock_but_floors_time_limits_and_the_probe_timeout() {
        let t = real().scaled(0.01);
        assert_eq!(t.time_scale, 0.01);
        assert_eq!(t.poll_min, Duration::from_millis(10));
        assert_eq!(t.poll_max, Duration::from_millis(150));
        // 27 s and 9 s would be the scaled limits: CPU work is not scaled, so 2 minutes.
        assert_eq!(t.servers_ready_timeout, S(120));
        assert_eq!(t.helm_timeout, S(120));
        // A limit shorter than the floor is left as it is.
        let short = Timings {
            helm_timeout: S(30),
            ..real()
        }
        .scaled(0.01);
        assert_eq!(short.helm_timeout, S(30));
        assert_eq!(t.probe_timeout, crate::orchestrator::MIN_PROBE_TIMEOUT);
        assert_eq!(t.scale(DEPLOYING), S(3));
        // The plan in scaled time is the real plan, scaled.
        assert_eq!(
            interval_at(&t, "deploying", Duration::from_millis(2_150), 3),
            Duration::from_millis(100)
        );
        assert_eq!(interval_at(&t, "deploying", S(0), 3), t.poll_max);
        assert_eq!(read_floor(&t, 3), Duration::from_millis(20));
        let fixed = Timings {
            fixed_poll: Some(S(5)),
            ..real()
        }
        .scaled(0.1);
        assert_eq!(fixed.fixed_poll, Some(Duration::from_millis(500)));
        // Scaling twice multiplies; nonsense factors change nothing.
        let twice = real().scaled(0.1).scaled(0.1);
        assert!((twice.time_scale - 0.01).abs() < 1e-12);
        assert_eq!(real().scaled(0.0).poll_min, S(1));
        assert_eq!(real().scaled(f64::NAN).time_scale, 1.0);
    }
}
