//! The provisioning clock. A server's status is never stored: it is derived from the wall clock,
//! the persisted start of its current lifecycle (create or reinstall) and the world's
//! [`Durations`] for its hostname (timeline, seeded jitter, time scale), so a restarted lab with
//! the same configuration reports exactly what the old one would have.
//!
//! * create: `starting_deploy` → `deploying` → `on`
//! * reinstall: `disk_erasing` → `deploying` → `on`
//!
//! An iPXE server boots Talos `talos_boot` after its `deploying` phase ends, and Latitude keeps
//! reporting `deploying` for `status_lag` more (the quirk of the real API: its status does not
//! track an iPXE boot), so Talos answers in maintenance mode *before* the status turns `on`.
//! Other servers turn `on` when `deploying` ends.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::durations::{Durations, Phase};

/// Which flow a server is going through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LifecycleKind {
    /// Ordered with `POST /servers`.
    Deploy,
    /// Restarted with `POST /servers/{id}/reinstall`.
    Reinstall,
}

/// The current lifecycle of a server: what started and when (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lifecycle {
    pub kind: LifecycleKind,
    pub started_at_ms: i64,
}

impl Lifecycle {
    /// Real milliseconds of the phase before `deploying`.
    fn first_phase_ms(&self, d: &Durations, hostname: &str) -> i64 {
        match self.kind {
            LifecycleKind::Deploy => d.real_ms(Phase::StartingDeploy, hostname),
            LifecycleKind::Reinstall => d.real_ms(Phase::DiskErasing, hostname),
        }
    }

    /// When the `deploying` phase starts.
    pub fn deploying_at_ms(&self, d: &Durations, hostname: &str) -> i64 {
        self.started_at_ms + self.first_phase_ms(d, hostname)
    }

    /// When Latitude's own deployment ends (the OS is written, or the iPXE boot begins).
    pub fn deployed_at_ms(&self, d: &Durations, hostname: &str) -> i64 {
        self.deploying_at_ms(d, hostname) + d.real_ms(Phase::Deploying, hostname)
    }

    /// When an iPXE-booted Talos answers on port 50000 (in maintenance mode).
    pub fn talos_up_at_ms(&self, d: &Durations, hostname: &str) -> i64 {
        self.deployed_at_ms(d, hostname) + d.real_ms(Phase::TalosBoot, hostname)
    }

    /// When the status turns `on`: `status_lag` after Talos came up for an iPXE server, at the
    /// end of `deploying` for any other.
    pub fn on_at_ms(&self, d: &Durations, hostname: &str, ipxe: bool) -> i64 {
        if ipxe {
            self.talos_up_at_ms(d, hostname) + d.real_ms(Phase::StatusLag, hostname)
        } else {
            self.deployed_at_ms(d, hostname)
        }
    }

    /// The Latitude status at `now_ms` of the server `hostname` (`ipxe`: booted with the
    /// `ipxe` operating system).
    pub fn status(&self, now_ms: i64, d: &Durations, hostname: &str, ipxe: bool) -> &'static str {
        if now_ms < self.deploying_at_ms(d, hostname) {
            match self.kind {
                LifecycleKind::Deploy => "starting_deploy",
                LifecycleKind::Reinstall => "disk_erasing",
            }
        } else if now_ms < self.on_at_ms(d, hostname, ipxe) {
            "deploying"
        } else {
            "on"
        }
    }
}

/// The wall clock in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LabConfig;

    /// 1 modelled second = 1 real millisecond, no jitter.
    fn durations() -> Durations {
        Durations::new(&LabConfig {
            time_scale: 0.001,
            jitter: 0.0,
            ..LabConfig::default()
        })
    }

    #[test]
    fn deploy_phases_of_an_ipxe_server() {
        let d = durations();
        let l = Lifecycle {
            kind: LifecycleKind::Deploy,
            started_at_ms: 1_000,
        };
        let status = |now| l.status(now, &d, "h", true);
        assert_eq!(status(1_000), "starting_deploy");
        assert_eq!(status(1_019), "starting_deploy");
        assert_eq!(status(1_020), "deploying");
        // Talos answers at 20 + 280 + 90 = 390 while the status still says `deploying`…
        assert_eq!(l.talos_up_at_ms(&d, "h"), 1_390);
        assert_eq!(status(1_390), "deploying");
        // … for status_lag (30) more.
        assert_eq!(status(1_419), "deploying");
        assert_eq!(status(1_420), "on");
        assert_eq!(l.on_at_ms(&d, "h", true), 1_420);
    }

    #[test]
    fn other_servers_turn_on_when_deploying_ends() {
        let d = durations();
        let l = Lifecycle {
            kind: LifecycleKind::Deploy,
            started_at_ms: 1_000,
        };
        assert_eq!(l.status(1_299, &d, "h", false), "deploying");
        assert_eq!(l.status(1_300, &d, "h", false), "on");
    }

    #[test]
    fn reinstall_phases() {
        let d = durations();
        let l = Lifecycle {
            kind: LifecycleKind::Reinstall,
            started_at_ms: 0,
        };
        // 600 of disk_erasing, then 280 of deploying, then Talos 90 later, `on` 30 after.
        assert_eq!(l.status(0, &d, "h", true), "disk_erasing");
        assert_eq!(l.status(599, &d, "h", true), "disk_erasing");
        assert_eq!(l.status(600, &d, "h", true), "deploying");
        assert_eq!(l.talos_up_at_ms(&d, "h"), 970);
        assert_eq!(l.status(999, &d, "h", true), "deploying");
        assert_eq!(l.status(1_000, &d, "h", true), "on");
        assert_eq!(l.status(880, &d, "h", false), "on");
    }

    #[test]
    fn each_hostname_has_its_own_jittered_timeline() {
        let d = Durations::new(&LabConfig {
            time_scale: 0.001,
            seed: 42,
            ..LabConfig::default()
        });
        let l = Lifecycle {
            kind: LifecycleKind::Deploy,
            started_at_ms: 0,
        };
        let (a, b) = (
            l.talos_up_at_ms(&d, "a-cp-1"),
            l.talos_up_at_ms(&d, "a-worker-1"),
        );
        assert_ne!(a, b);
        // Within ±20 % of 390.
        for t in [a, b] {
            assert!((312..=468).contains(&t), "{t}");
        }
        // Maintenance mode always comes before `on`, whatever the jitter.
        for host in ["a-cp-1", "a-worker-1", "a-worker-2"] {
            let up = l.talos_up_at_ms(&d, host);
            assert_eq!(l.status(up, &d, host, true), "deploying");
            assert!(l.on_at_ms(&d, host, true) > up);
        }
        // The same seed is the same world.
        let again = Durations::new(&LabConfig {
            time_scale: 0.001,
            seed: 42,
            ..LabConfig::default()
        });
        assert_eq!(l.talos_up_at_ms(&again, "a-cp-1"), a);
    }
}
