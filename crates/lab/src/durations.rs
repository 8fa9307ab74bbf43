//! How long each modelled process lasts in this world: the configured [`Timeline`] base value
//! of a [`Phase`], spread by a seeded, deterministic jitter per subject (a hostname, or
//! `<namespace>/<name>` of an object). The same seed and subject always give the same
//! duration, so two labs created with the same seed are the *same world*: the installer and a
//! sequential baseline meet identical machines, and the critical path (see `critical_path`)
//! is computed from exactly the durations the lab applies.
//!
//! Every delay the lab applies goes through [`Durations::modelled_s`] (modelled seconds) or
//! [`Durations::real`] (the same, scaled by `time_scale` into real time).

use std::time::Duration;

use crate::config::{LabConfig, Timeline};

/// A modelled process whose duration the timeline configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    /// `starting_deploy` after `POST /servers`.
    StartingDeploy,
    /// `deploying`, after `starting_deploy` or `disk_erasing`.
    Deploying,
    /// `disk_erasing`, the first phase of a reinstall.
    DiskErasing,
    /// From the end of `deploying` until an iPXE-booted Talos answers in maintenance mode.
    TalosBoot,
    /// How long Latitude keeps reporting `deploying` after Talos is already up.
    StatusLag,
    /// `ApplyConfiguration` in maintenance mode until normal (mTLS) mode.
    TalosInstall,
    /// Normal mode until a control plane accepts `Bootstrap`.
    BootstrapReady,
    /// Node in normal mode and cluster bootstrapped until its kubelet registers the Node.
    KubeletStart,
    /// A workload's pods can schedule until it is rolled out.
    WorkloadRollout,
    /// A Job's pod can schedule until it completes.
    JobRun,
    /// Argo CD syncing one Application (or one wave of an app of apps).
    ArgocdSync,
    /// A DiskPool from creation until `Online`.
    DiskPoolCreate,
    /// A PersistentVolumeClaim from the moment its class can provision until `Bound`.
    PvcBind,
}

impl Phase {
    /// Stable name, used in the jitter hash and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::StartingDeploy => "starting_deploy",
            Phase::Deploying => "deploying",
            Phase::DiskErasing => "disk_erasing",
            Phase::TalosBoot => "talos_boot",
            Phase::StatusLag => "status_lag",
            Phase::TalosInstall => "talos_install",
            Phase::BootstrapReady => "bootstrap_ready",
            Phase::KubeletStart => "kubelet_start",
            Phase::WorkloadRollout => "workload_rollout",
            Phase::JobRun => "job_run",
            Phase::ArgocdSync => "argocd_sync",
            Phase::DiskPoolCreate => "diskpool_create",
            Phase::PvcBind => "pvc_bind",
        }
    }

    /// The configured base duration (modelled seconds).
    pub fn base(self, t: &Timeline) -> f64 {
        match self {
            Phase::StartingDeploy => t.starting_deploy,
            Phase::Deploying => t.deploying,
            Phase::DiskErasing => t.disk_erasing,
            Phase::TalosBoot => t.talos_boot,
            Phase::StatusLag => t.status_lag,
            Phase::TalosInstall => t.talos_install,
            Phase::BootstrapReady => t.bootstrap_ready,
            Phase::KubeletStart => t.kubelet_start,
            Phase::WorkloadRollout => t.workload_rollout,
            Phase::JobRun => t.job_run,
            Phase::ArgocdSync => t.argocd_sync,
            Phase::DiskPoolCreate => t.diskpool_create,
            Phase::PvcBind => t.pvc_bind,
        }
    }
}

/// The durations of one world: timeline, jitter, seed and time scale.
#[derive(Debug, Clone)]
pub(crate) struct Durations {
    timeline: Timeline,
    jitter: f64,
    seed: u64,
    time_scale: f64,
}

impl Durations {
    pub fn new(config: &LabConfig) -> Durations {
        Durations {
            timeline: config.timeline.clone(),
            jitter: config.jitter,
            seed: config.seed,
            time_scale: config.time_scale,
        }
    }

    /// Modelled seconds `phase` lasts for `subject`: base × (1 + jitter × u), u in [-1, 1]
    /// drawn from (seed, phase, subject). Never negative.
    pub fn modelled_s(&self, phase: Phase, subject: &str) -> f64 {
        let base = phase.base(&self.timeline);
        let u = unit(self.seed, phase.name(), subject);
        (base * (1.0 + self.jitter * u)).max(0.0)
    }

    /// The same duration in real time.
    pub fn real(&self, phase: Phase, subject: &str) -> Duration {
        Duration::from_secs_f64(self.modelled_s(phase, subject) * self.time_scale)
    }

    /// The same duration in real milliseconds (for the clock-derived server lifecycle).
    pub fn real_ms(&self, phase: Phase, subject: &str) -> i64 {
        (self.modelled_s(phase, subject) * self.time_scale * 1000.0).round() as i64
    }

    /// Real seconds per modelled second.
    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// The seed of the jitter.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A span of modelled seconds in real time (for the lab's own clocks: the rate-limit
    /// window, tick rates).
    pub fn scaled(&self, modelled_s: f64) -> Duration {
        Duration::from_secs_f64((modelled_s * self.time_scale).max(0.0))
    }

    /// How often the lab's background loops (the Talos reconciler, the Kubernetes controllers)
    /// look at the world: every [`TICK_MODELLED_S`] modelled seconds, but at least every
    /// [`TICK_MAX`] and at most every [`TICK_MIN`] in real time. So an event resolves within
    /// about half a modelled second, or 2 ms at very small time scales.
    pub fn tick(&self) -> Duration {
        self.scaled(TICK_MODELLED_S).clamp(TICK_MIN, TICK_MAX)
    }
}

/// The modelled period of the lab's background loops (see [`Durations::tick`]).
pub(crate) const TICK_MODELLED_S: f64 = 0.5;
/// The shortest real tick.
pub(crate) const TICK_MIN: Duration = Duration::from_millis(2);
/// The longest real tick.
pub(crate) const TICK_MAX: Duration = Duration::from_millis(25);

/// A deterministic number in [-1, 1] from (seed, phase, subject): FNV-1a over the bytes, then
/// a SplitMix64 finaliser. Not `std`'s hasher, whose keys are random per process.
fn unit(seed: u64, phase: &str, subject: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in phase
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(subject.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    // 53 random bits → [0, 1) → [-1, 1).
    let f = (h >> 11) as f64 / (1u64 << 53) as f64;
    f * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn durations(seed: u64, jitter: f64) -> Durations {
        Durations::new(&LabConfig {
            seed,
            jitter,
            ..LabConfig::default()
        })
    }

    #[test]
    fn same_seed_same_world() {
        let a = durations(7, 0.2);
        let b = durations(7, 0.2);
        for host in ["a-cp-1", "a-worker-1", "a-worker-2"] {
            assert_eq!(
                a.modelled_s(Phase::Deploying, host),
                b.modelled_s(Phase::Deploying, host)
            );
        }
    }

    #[test]
    fn jitter_stays_within_its_band_and_varies() {
        let d = durations(1, 0.2);
        let base = Timeline::default().deploying;
        let values: Vec<f64> = (0..200)
            .map(|i| d.modelled_s(Phase::Deploying, &format!("n-{i}")))
            .collect();
        assert!(values.iter().all(|v| *v >= base * 0.8 && *v <= base * 1.2));
        let min = values.iter().cloned().fold(f64::MAX, f64::min);
        let max = values.iter().cloned().fold(f64::MIN, f64::max);
        assert!(max - min > base * 0.3, "spread {min}..{max}");
        // Another seed is another world.
        let other = durations(2, 0.2);
        assert_ne!(
            d.modelled_s(Phase::Deploying, "n-0"),
            other.modelled_s(Phase::Deploying, "n-0")
        );
    }

    #[test]
    fn ticks_follow_the_scale_within_bounds() {
        let at = |time_scale| {
            Durations::new(&LabConfig {
                time_scale,
                ..LabConfig::default()
            })
            .tick()
        };
        assert_eq!(at(0.01), Duration::from_millis(5));
        assert_eq!(at(0.0001), TICK_MIN);
        assert_eq!(at(1.0), TICK_MAX);
    }

    #[test]
    fn every_phase_is_jittered_per_subject() {
        let d = durations(11, 0.2);
        for phase in [
            Phase::StartingDeploy,
            Phase::Deploying,
            Phase::TalosBoot,
            Phase::StatusLag,
            Phase::WorkloadRollout,
            Phase::PvcBind,
        ] {
            assert_ne!(
                d.modelled_s(phase, "a-cp-1"),
                d.modelled_s(phase, "a-worker-1"),
                "{}",
                phase.name()
            );
        }
        assert_eq!(
            d.real_ms(Phase::Deploying, "a-cp-1"),
            (d.modelled_s(Phase::Deploying, "a-cp-1") * 10.0).round() as i64
        );
    }

    #[test]
    fn zero_jitter_is_the_base() {
        let d = durations(3, 0.0);
        assert_eq!(
            d.modelled_s(Phase::TalosInstall, "x"),
            Timeline::default().talos_install
        );
    }
}
