//! The lab's knobs: how fast modelled time runs, which loopback block servers live in, the rate
//! limits and API keys, stock, and the provisioning timeline. Loaded from a JSON file by the
//! `cto lab` command or built in code by tests.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::faults::FaultSpec;

/// Configuration of one lab. Every field has a default, so `{}` is a valid file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabConfig {
    /// Real seconds per modelled second. `0.01` turns a 5-minute deploy into 3 seconds.
    pub time_scale: f64,
    /// Third octet of server addresses `127.0.<ip_block>.<n>`. `None` picks a random block in
    /// `10..=100` when the world is created (101..=255 are left to test suites); the choice is persisted in the world.
    pub ip_block: Option<u8>,
    /// GET requests allowed per API key in any 60-second window.
    pub reads_per_minute: u32,
    /// POST/PUT/PATCH/DELETE requests allowed per API key in any 60-second window.
    pub writes_per_minute: u32,
    /// Accepted API keys. `None` accepts any non-empty bearer token.
    pub api_keys: Option<Vec<String>>,
    /// How many live servers of each in-stock plan each in-stock site can host.
    pub capacity_per_site: u32,
    /// Sites removed from every plan's `in_stock` list (site slugs, case-insensitive).
    pub out_of_stock_sites: Vec<String>,
    /// How long each provisioning phase lasts, in modelled seconds.
    pub timeline: Timeline,
    /// Faults to inject, in the `--faults` grammar (`"latitude.5xx=0.1,server.fail=a-cp-1"`;
    /// see [`FaultSpec`] and docs/lab.md). Empty: none.
    pub faults: FaultSpec,
    /// Argo CD Applications (by name) that the lab keeps `Degraded` instead of letting them
    /// become Healthy. `argocd.degraded=APP` in [`LabConfig::faults`] adds to it.
    #[serde(default)]
    pub argocd_degraded: Vec<String>,
    /// Git repositories the simulated Argo CD reads, by URL: `{"https://git.example/x.git":
    /// "/path/to/checkout"}` (the directory is the repository root; an Application's
    /// `spec.source.path` is resolved against it). Without an entry, every URL ending in `/cto`
    /// or `/cto.git` (and `https://github.com/5dlabs/cto`) maps to this repository's `gitops/`
    /// tree as compiled into the lab; other repositories are not read (their Applications
    /// just become Synced and Healthy).
    #[serde(default)]
    pub git_repos: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// NVMe data disks every lab machine has on top of its plan's (`/dev/nvme1n1`… — see
    /// docs/lab.md, "Disks"). Default 0.
    #[serde(default)]
    pub extra_disks: u32,
    /// Seed of the per-node and per-object jitter (see `durations`): two labs with the same
    /// seed and timeline are the same world.
    #[serde(default)]
    pub seed: u64,
    /// How far each duration may stray from its timeline value, as a fraction (`0.2`: ±20 %).
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_jitter() -> f64 {
    0.2
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            time_scale: 0.01,
            ip_block: None,
            reads_per_minute: 60,
            writes_per_minute: 20,
            api_keys: None,
            capacity_per_site: 250,
            out_of_stock_sites: Vec::new(),
            timeline: Timeline::default(),
            faults: FaultSpec::default(),
            argocd_degraded: Vec::new(),
            git_repos: std::collections::BTreeMap::new(),
            extra_disks: 0,
            seed: 0,
            jitter: default_jitter(),
        }
    }
}

/// Durations of the provisioning phases, in modelled seconds (multiplied by
/// [`LabConfig::time_scale`] to get real seconds).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeline {
    /// `starting_deploy` after `POST /servers`.
    pub starting_deploy: f64,
    /// `deploying`, after `starting_deploy` (create) or `disk_erasing` (reinstall).
    pub deploying: f64,
    /// `disk_erasing`, the first phase of a reinstall.
    pub disk_erasing: f64,
    /// From the end of `deploying` until an iPXE-booted Talos answers on port 50000.
    pub talos_boot: f64,
    /// From `ApplyConfiguration` in maintenance mode until the node answers again in normal
    /// (mutual TLS) mode: the install to disk and the reboot, during which port 50000 is closed.
    pub talos_install: f64,
    /// From normal mode until a control plane accepts `Bootstrap` (before that it answers
    /// `FailedPrecondition` "bootstrap is not available yet", as the etcd service is not yet
    /// waiting for it).
    pub bootstrap_ready: f64,
    /// From the moment both the node is in normal mode and its cluster is bootstrapped until
    /// its kubelet registers the Node object.
    pub kubelet_start: f64,
    /// From the moment a Deployment, StatefulSet or DaemonSet generation can schedule its pods
    /// until it is rolled out (all replicas ready and available).
    #[serde(default = "default_workload_rollout")]
    pub workload_rollout: f64,
    /// From the moment a Job's pod can schedule until it completes (or fails); a Helm Job
    /// installs its chart then.
    #[serde(default = "default_job_run")]
    pub job_run: f64,
    /// How long the simulated Argo CD takes to sync one Application (or one sync wave of an
    /// app of apps).
    #[serde(default = "default_argocd_sync")]
    pub argocd_sync: f64,
    /// How long Latitude keeps reporting `deploying` after the iPXE-booted Talos already
    /// answers (seen in a third-party run: `5dlabs/cto`
    /// `docs/bare-metal/talos-ipxe-validation-results.md`, December 2025).
    #[serde(default = "default_status_lag")]
    pub status_lag: f64,
    /// A Mayastor DiskPool from creation until `Online`.
    #[serde(default = "default_diskpool_create")]
    pub diskpool_create: f64,
    /// A PersistentVolumeClaim from the moment its class can provision it until `Bound` (the
    /// CSI `CreateVolume` and the binding).
    #[serde(default = "default_pvc_bind")]
    pub pvc_bind: f64,
}

fn default_pvc_bind() -> f64 {
    3.0
}

fn default_status_lag() -> f64 {
    30.0
}

fn default_diskpool_create() -> f64 {
    5.0
}

fn default_workload_rollout() -> f64 {
    20.0
}

fn default_job_run() -> f64 {
    30.0
}

fn default_argocd_sync() -> f64 {
    10.0
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            starting_deploy: 20.0,
            deploying: 280.0,
            // A real reinstall spent about 10 minutes erasing (`5dlabs/cto`
            // `docs/bare-metal/talos-ipxe-validation-results.md`, December 2025).
            disk_erasing: 600.0,
            talos_boot: 90.0,
            talos_install: 120.0,
            bootstrap_ready: 10.0,
            kubelet_start: 30.0,
            workload_rollout: default_workload_rollout(),
            job_run: default_job_run(),
            argocd_sync: default_argocd_sync(),
            status_lag: default_status_lag(),
            diskpool_create: default_diskpool_create(),
            pvc_bind: default_pvc_bind(),
        }
    }
}

impl LabConfig {
    /// Reads a configuration from a JSON file. Unknown keys are rejected so that typos show up.
    pub fn load(path: &Path) -> Result<Self, LabError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let config: LabConfig =
            serde_json::from_str(&text).map_err(|source| LabError::ParseConfig {
                path: path.to_owned(),
                source,
            })?;
        config
            .validate()
            .map_err(|reason| LabError::InvalidConfig {
                path: Some(path.to_owned()),
                reason,
            })?;
        Ok(config)
    }

    /// Checks the values that serde cannot: positive finite durations, a usable address block.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return Err(format!(
                "time_scale must be a positive number, got {}",
                self.time_scale
            ));
        }
        if self.ip_block == Some(0) {
            return Err("ip_block must be in 1..=255 (127.0.0.x is left to the host)".into());
        }
        let t = &self.timeline;
        for (name, value) in [
            ("timeline.starting_deploy", t.starting_deploy),
            ("timeline.deploying", t.deploying),
            ("timeline.disk_erasing", t.disk_erasing),
            ("timeline.talos_boot", t.talos_boot),
            ("timeline.talos_install", t.talos_install),
            ("timeline.bootstrap_ready", t.bootstrap_ready),
            ("timeline.kubelet_start", t.kubelet_start),
            ("timeline.workload_rollout", t.workload_rollout),
            ("timeline.job_run", t.job_run),
            ("timeline.argocd_sync", t.argocd_sync),
            ("timeline.status_lag", t.status_lag),
            ("timeline.diskpool_create", t.diskpool_create),
            ("timeline.pvc_bind", t.pvc_bind),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{name} must be a non-negative number of seconds, got {value}"
                ));
            }
        }
        if !(self.jitter.is_finite() && (0.0..1.0).contains(&self.jitter)) {
            return Err(format!(
                "jitter must be a fraction in [0, 1), got {}",
                self.jitter
            ));
        }
        if matches!(&self.api_keys, Some(keys) if keys.iter().any(|k| k.is_empty())) {
            return Err("api_keys must not contain an empty key".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_gives_defaults() {
        let c: LabConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.time_scale, 0.01);
        assert_eq!(c.reads_per_minute, 60);
        assert_eq!(c.writes_per_minute, 20);
        assert_eq!(c.capacity_per_site, 250);
        assert_eq!(c.timeline.deploying, 280.0);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(serde_json::from_str::<LabConfig>(r#"{"time_scael":1}"#).is_err());
        assert!(serde_json::from_str::<LabConfig>(r#"{"timeline":{"boot":1}}"#).is_err());
    }

    #[test]
    fn load_reports_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.json");
        let err = LabConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("lab.json"), "{err}");
        std::fs::write(&path, r#"{"time_scale": -1}"#).unwrap();
        let err = LabConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("time_scale") && err.contains("lab.json"),
            "{err}"
        );
        std::fs::write(&path, r#"{"ip_block": 42, "timeline": {"deploying": 5}}"#).unwrap();
        let c = LabConfig::load(&path).unwrap();
        assert_eq!(c.ip_block, Some(42));
        assert_eq!(c.timeline.deploying, 5.0);
        assert_eq!(c.timeline.talos_boot, 90.0);
    }
}
