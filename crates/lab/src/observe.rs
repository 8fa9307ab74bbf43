//! What the lab saw and when, for `GET /_lab/stats` and `GET /_lab/conditions` (and so for
//! `cargo xtask bench`): the arrival time of every request to any of its three APIs (Latitude,
//! the Talos nodes, the Kubernetes APIs), and when each controller-made condition first became
//! true. Kept in memory only (a restarted lab starts empty; the persisted request counters of
//! `world.json` are separate): one small record per request, a few tens of thousands in a
//! benchmark run.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::lifecycle::now_ms;

/// What arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A Latitude GET (HEAD, OPTIONS), whether refused or not; `authenticated` once its key
    /// was accepted.
    LatitudeRead { authenticated: bool },
    /// A Latitude POST/PUT/PATCH/DELETE, whether refused or not.
    LatitudeWrite { authenticated: bool },
    /// A 429 sent by the Latitude API (over budget or injected). Not a request of its own.
    Http429,
    /// A gRPC call to a Talos node (maintenance or normal mode).
    Talos,
    /// An HTTP request to a Kubernetes API (watches included).
    Kube,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at_ms: i64,
    kind: Kind,
}

/// Request counts over a range of arrival times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RequestStats {
    /// Authenticated Latitude reads and writes (what `world.json`'s counters count).
    pub reads: u64,
    pub writes: u64,
    pub http_429: u64,
    pub latitude_reads: u64,
    pub latitude_writes: u64,
    pub talos_calls: u64,
    pub kube_requests: u64,
    /// Arrival of the first and last request to any of the three APIs.
    pub first_request_ms: Option<i64>,
    pub last_request_ms: Option<i64>,
}

/// The lab's observations. Shared by the Latitude API, every Talos node and every Kubernetes
/// API the lab starts.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    events: Mutex<Vec<Event>>,
    /// Condition name → when it first became true (Unix ms).
    conditions: Mutex<HashMap<String, i64>>,
}

impl Observer {
    /// Records a request (or a 429) that arrived now.
    pub fn request(&self, kind: Kind) {
        self.request_at(kind, now_ms());
    }

    /// Records a request (or a 429) that arrived at `at_ms`.
    pub fn request_at(&self, kind: Kind, at_ms: i64) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Event { at_ms, kind });
    }

    /// Counts what arrived at or after `since_ms` (everything without it).
    pub fn stats(&self, since_ms: Option<i64>) -> RequestStats {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let mut stats = RequestStats::default();
        for event in events
            .iter()
            .filter(|e| since_ms.is_none_or(|since| e.at_ms >= since))
        {
            match event.kind {
                Kind::LatitudeRead { authenticated } => {
                    stats.latitude_reads += 1;
                    stats.reads += u64::from(authenticated);
                }
                Kind::LatitudeWrite { authenticated } => {
                    stats.latitude_writes += 1;
                    stats.writes += u64::from(authenticated);
                }
                Kind::Http429 => {
                    stats.http_429 += 1;
                    continue;
                }
                Kind::Talos => stats.talos_calls += 1,
                Kind::Kube => stats.kube_requests += 1,
            }
            stats.first_request_ms = Some(
                stats
                    .first_request_ms
                    .map_or(event.at_ms, |t| t.min(event.at_ms)),
            );
            stats.last_request_ms = Some(
                stats
                    .last_request_ms
                    .map_or(event.at_ms, |t| t.max(event.at_ms)),
            );
        }
        stats
    }

    /// Records that the condition `name` is true now, unless it already was.
    pub fn condition(&self, name: impl Into<String>) {
        self.condition_at(name, now_ms());
    }

    /// Records that the condition `name` became true at `at_ms`, keeping the earliest time.
    pub fn condition_at(&self, name: impl Into<String>, at_ms: i64) {
        self.conditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.into())
            .and_modify(|t| *t = (*t).min(at_ms))
            .or_insert(at_ms);
    }

    /// Every recorded condition, unsorted.
    pub fn conditions(&self) -> Vec<(String, i64)> {
        self.conditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, at)| (name.clone(), *at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_a_range() {
        let o = Observer::default();
        o.request_at(
            Kind::LatitudeRead {
                authenticated: true,
            },
            100,
        );
        o.request_at(
            Kind::LatitudeRead {
                authenticated: false,
            },
            150,
        );
        o.request_at(
            Kind::LatitudeWrite {
                authenticated: true,
            },
            200,
        );
        o.request_at(Kind::Http429, 200);
        o.request_at(Kind::Talos, 300);
        o.request_at(Kind::Kube, 400);
        o.request_at(Kind::Kube, 500);
        let all = o.stats(None);
        assert_eq!(
            all,
            RequestStats {
                reads: 1,
                writes: 1,
                http_429: 1,
                latitude_reads: 2,
                latitude_writes: 1,
                talos_calls: 1,
                kube_requests: 2,
                first_request_ms: Some(100),
                last_request_ms: Some(500),
            }
        );
        let later = o.stats(Some(200));
        assert_eq!(later.latitude_reads, 0);
        assert_eq!(later.latitude_writes, 1);
        assert_eq!(later.http_429, 1);
        assert_eq!(later.first_request_ms, Some(200));
        assert_eq!(later.kube_requests, 2);
        let none = o.stats(Some(501));
        assert_eq!(none, RequestStats::default());
    }

    #[test]
    fn conditions_keep_the_first_time() {
        let o = Observer::default();
        o.condition_at("job/a/b/complete", 20);
        o.condition_at("job/a/b/complete", 30);
        o.condition_at("job/a/b/complete", 10);
        assert_eq!(o.conditions(), vec![("job/a/b/complete".to_string(), 10)]);
    }
}
