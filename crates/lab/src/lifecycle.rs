//! The provisioning clock. A server's status is never stored: it is derived from the wall clock,
//! the persisted start of its current lifecycle (create or reinstall) and the configured
//! timeline, so a restarted lab reports exactly what the old one would have.
//!
//! * create: `starting_deploy` → `deploying` → `on`
//! * reinstall: `disk_erasing` → `deploying` → `on`
//!
//! iPXE servers additionally come up as Talos nodes `timeline.talos_boot` after deploying ends.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::LabConfig;

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
    fn first_phase_ms(&self, config: &LabConfig) -> i64 {
        match self.kind {
            LifecycleKind::Deploy => config.scaled_ms(config.timeline.starting_deploy),
            LifecycleKind::Reinstall => config.scaled_ms(config.timeline.disk_erasing),
        }
    }

    /// When the status turns `on`.
    pub fn deployed_at_ms(&self, config: &LabConfig) -> i64 {
        self.started_at_ms
            + self.first_phase_ms(config)
            + config.scaled_ms(config.timeline.deploying)
    }

    /// When an iPXE-booted Talos answers on port 50000.
    pub fn talos_up_at_ms(&self, config: &LabConfig) -> i64 {
        self.deployed_at_ms(config) + config.scaled_ms(config.timeline.talos_boot)
    }

    /// The Latitude status at `now_ms`.
    pub fn status(&self, now_ms: i64, config: &LabConfig) -> &'static str {
        let elapsed = now_ms - self.started_at_ms;
        if elapsed < self.first_phase_ms(config) {
            match self.kind {
                LifecycleKind::Deploy => "starting_deploy",
                LifecycleKind::Reinstall => "disk_erasing",
            }
        } else if now_ms < self.deployed_at_ms(config) {
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

    fn config() -> LabConfig {
        // 1 modelled second = 1 real millisecond.
        LabConfig {
            time_scale: 0.001,
            ..LabConfig::default()
        }
    }

    #[test]
    fn deploy_phases() {
        let c = config();
        let l = Lifecycle {
            kind: LifecycleKind::Deploy,
            started_at_ms: 1_000,
        };
        assert_eq!(l.status(1_000, &c), "starting_deploy");
        assert_eq!(l.status(1_019, &c), "starting_deploy");
        assert_eq!(l.status(1_020, &c), "deploying");
        assert_eq!(l.status(1_299, &c), "deploying");
        assert_eq!(l.status(1_300, &c), "on");
        assert_eq!(l.talos_up_at_ms(&c), 1_390);
    }

    #[test]
    fn reinstall_phases() {
        let c = config();
        let l = Lifecycle {
            kind: LifecycleKind::Reinstall,
            started_at_ms: 0,
        };
        assert_eq!(l.status(0, &c), "disk_erasing");
        assert_eq!(l.status(119, &c), "disk_erasing");
        assert_eq!(l.status(120, &c), "deploying");
        assert_eq!(l.status(400, &c), "on");
        assert_eq!(l.talos_up_at_ms(&c), 490);
    }
}
