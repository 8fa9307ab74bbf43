//! What the persisted world says about every Talos node and cluster at a given instant: each
//! iPXE server's phase (booting, maintenance, installing, normal), its parsed machine
//! configuration, and which clusters (grouped by `cluster.id`) have been bootstrapped. Nothing
//! here is stored: it is all derived from `world.json`'s [`TalosState`]s and the clock, so a
//! restarted lab derives exactly the same picture.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::catalogue::IPXE_OS;
use crate::config::LabConfig;
use crate::durations::{Durations, Phase as DPhase};
use crate::ipxe::{self, BootImage};
use crate::state::Lab;
use crate::world::{Server, TalosState, World};

use super::machine_config::{self, MachineConfig};

/// Where a server's Talos is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not an iPXE Talos server, or not booted yet.
    Down,
    /// Booted without a configuration: maintenance mode on :50000.
    Maintenance,
    /// Installing to disk and rebooting after `ApplyConfiguration`: nothing listens.
    Installing,
    /// Booted from disk into its configuration: mutual TLS on :50000, since `since_ms`.
    Normal { since_ms: i64 },
}

/// The Talos state of `server` for its current lifecycle (a state from before a reinstall does
/// not count).
pub(crate) fn current_state(server: &Server) -> Option<&TalosState> {
    server
        .talos
        .as_ref()
        .filter(|t| t.generation == server.lifecycle.started_at_ms && t.install_error.is_none())
}

/// The configuration of `server`'s current lifecycle whose install failed (see
/// [`TalosState::install_error`]).
pub(crate) fn failed_install(server: &Server) -> Option<&TalosState> {
    server
        .talos
        .as_ref()
        .filter(|t| t.generation == server.lifecycle.started_at_ms && t.install_error.is_some())
}

/// The phase of `server` at `now_ms`. The boot image is not checked here (see [`boot_image`]).
pub(crate) fn phase(server: &Server, config: &LabConfig, d: &Durations, now_ms: i64) -> Phase {
    if server.operating_system != IPXE_OS
        || server.failed
        || config.faults.node_noboot.contains(&server.hostname)
        || now_ms < server.talos_up_at_ms(d)
    {
        return Phase::Down;
    }
    match current_state(server) {
        // A failed install reboots (Talos `internal/app/machined/main.go` `handle`: "rebooting
        // in 10 seconds") and iPXE loads Talos again: maintenance mode, nothing persisted.
        None => match failed_install(server) {
            Some(state) if now_ms < installed_at_ms(server, state, d) => Phase::Installing,
            _ => Phase::Maintenance,
        },
        Some(state) => {
            let since_ms = installed_at_ms(server, state, d);
            if now_ms < since_ms {
                Phase::Installing
            } else {
                Phase::Normal { since_ms }
            }
        }
    }
}

/// When the configuration `state` applied to `server` is installed and the node answers in
/// normal mode.
pub(crate) fn installed_at_ms(server: &Server, state: &TalosState, d: &Durations) -> i64 {
    state.applied_at_ms + d.real_ms(DPhase::TalosInstall, &server.hostname)
}

/// The Talos image an iPXE server boots, or why it boots nothing.
pub(crate) fn boot_image(server: &Server) -> Result<BootImage, String> {
    ipxe::parse(server.ipxe.as_deref().unwrap_or_default())
}

/// Parsed machine configurations, keyed by server and the time they were applied, so that the
/// reconciler and the RPC handlers do not parse the same YAML over and over.
#[derive(Default)]
pub(crate) struct ConfigCache {
    parsed: Mutex<HashMap<(String, i64), Arc<MachineConfig>>>,
}

impl ConfigCache {
    /// The parsed configuration of `state` (applied to `server_id`). `None` if the stored YAML
    /// does not parse any more (a hand-edited world file).
    pub fn get(&self, server_id: &str, state: &TalosState) -> Option<Arc<MachineConfig>> {
        let key = (server_id.to_owned(), state.applied_at_ms);
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = parsed.get(&key) {
            return Some(config.clone());
        }
        match machine_config::parse(state.config.as_bytes()) {
            Ok((config, _)) => {
                let config = Arc::new(config);
                parsed.insert(key, config.clone());
                Some(config)
            }
            Err(reason) => {
                tracing::warn!(server = %server_id, reason = %reason.0, "stored machine configuration does not parse; ignoring it");
                None
            }
        }
    }

    /// Forgets configurations of servers that are gone or were reconfigured.
    pub fn retain(&self, world: &World) {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        parsed.retain(|(id, applied_at), _| {
            world
                .server(id)
                .and_then(current_state)
                .is_some_and(|s| s.applied_at_ms == *applied_at)
        });
    }
}

/// One configured Talos node (a configuration was applied in its current lifecycle).
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub server_id: String,
    /// The server's lifecycle generation.
    pub generation: i64,
    /// The Latitude hostname.
    pub server_hostname: String,
    pub ip: Ipv4Addr,
    pub phase: Phase,
    pub config: Arc<MachineConfig>,
    pub applied_at_ms: i64,
    pub bootstrapped_at_ms: Option<i64>,
    /// The Talos version the server booted (from its iPXE URL), empty if unknown.
    pub boot_version: String,
}

impl Member {
    /// The node's name: `machine.network.hostname`, else the server's hostname.
    pub fn node_name(&self) -> &str {
        self.config
            .hostname
            .as_deref()
            .unwrap_or(&self.server_hostname)
    }

    pub fn is_normal(&self) -> bool {
        matches!(self.phase, Phase::Normal { .. })
    }

    /// The Talos version the node runs (see [`talos_tag`]).
    pub fn talos_tag(&self) -> String {
        talos_tag(&self.config, &self.boot_version)
    }
}

/// The Talos version that `Version` reports: the tag of `machine.install.image` when it is a
/// version, else the version the server booted, else v1.11.5.
pub(crate) fn talos_tag(config: &MachineConfig, boot_version: &str) -> String {
    config
        .install_image
        .as_deref()
        .and_then(image_tag)
        .or_else(|| version_like(boot_version))
        .unwrap_or_else(|| DEFAULT_TALOS_TAG.to_owned())
}

/// The Talos version reported when neither the installer image nor the boot image tells.
const DEFAULT_TALOS_TAG: &str = "v1.11.5";

/// The tag of an image reference if it looks like a version (`…/installer:v1.11.5` → `v1.11.5`).
pub(crate) fn image_tag(image: &str) -> Option<String> {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split('@').next().unwrap_or(name);
    let (_, tag) = name.rsplit_once(':')?;
    version_like(tag)
}

fn version_like(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix('v')?;
    rest.chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit())
        .then(|| tag.to_owned())
}

/// Every configured Talos node of `world` at `now_ms`.
pub(crate) fn members(
    world: &World,
    config: &LabConfig,
    d: &Durations,
    cache: &ConfigCache,
    now_ms: i64,
) -> Vec<Member> {
    world
        .servers
        .iter()
        .filter_map(|server| {
            let state = current_state(server)?;
            let parsed = cache.get(&server.id, state)?;
            Some(Member {
                server_id: server.id.clone(),
                generation: server.lifecycle.started_at_ms,
                server_hostname: server.hostname.clone(),
                ip: server.ip,
                phase: phase(server, config, d, now_ms),
                config: parsed,
                applied_at_ms: state.applied_at_ms,
                bootstrapped_at_ms: state.bootstrapped_at_ms,
                boot_version: boot_image(server).map(|i| i.version).unwrap_or_default(),
            })
        })
        .collect()
}

/// A snapshot of all configured nodes, with cluster-level questions answered on it.
pub(crate) struct Snapshot {
    pub now_ms: i64,
    pub members: Vec<Member>,
}

impl Snapshot {
    /// Takes a snapshot of `lab`'s world (parsing outside the hot path thanks to `cache`).
    pub fn take(lab: &Lab, cache: &ConfigCache, now_ms: i64) -> Snapshot {
        let world = lab.world();
        Snapshot {
            now_ms,
            members: members(&world, &lab.config, &lab.durations, cache, now_ms),
        }
    }

    /// The node of `server_id`.
    pub fn member(&self, server_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.server_id == server_id)
    }

    /// The nodes of the cluster `cluster_key`.
    pub fn cluster<'a>(&'a self, cluster_key: &'a str) -> impl Iterator<Item = &'a Member> + 'a {
        self.members
            .iter()
            .filter(move |m| m.config.cluster_key() == cluster_key)
    }

    /// When the cluster was bootstrapped (by any of its nodes), if it was.
    pub fn bootstrapped_at(&self, cluster_key: &str) -> Option<i64> {
        self.cluster(cluster_key)
            .filter_map(|m| m.bootstrapped_at_ms)
            .min()
    }

    /// The control planes of the cluster that are etcd members: all in normal mode, once the
    /// cluster is bootstrapped. Sorted by node name.
    pub fn etcd_members(&self, cluster_key: &str) -> Vec<&Member> {
        if self.bootstrapped_at(cluster_key).is_none() {
            return Vec::new();
        }
        let mut members: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| {
                m.config.cluster_key() == cluster_key
                    && m.config.is_control_plane()
                    && m.is_normal()
            })
            .collect();
        members.sort_by(|a, b| a.node_name().cmp(b.node_name()));
        members
    }

    /// The OS CA key a worker's apid certificate is signed with: the one in the configuration of
    /// a control plane sharing the worker's OS CA certificate (real workers get their certificate
    /// from trustd on a control plane).
    pub fn os_ca_key_for(&self, os_ca_crt: &str) -> Option<String> {
        self.members
            .iter()
            .filter(|m| m.config.is_control_plane() && m.config.os_ca.crt == os_ca_crt)
            .find_map(|m| m.config.os_ca.key.clone())
    }
}

/// A stable etcd member ID for a node: FNV-1a of its server ID and generation.
pub(crate) fn member_id(server_id: &str, generation: i64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in server_id
        .as_bytes()
        .iter()
        .chain(generation.to_le_bytes().iter())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Lifecycle, LifecycleKind};

    fn server(talos: Option<TalosState>) -> Server {
        Server {
            id: "sv_1".into(),
            hostname: "cp-1".into(),
            label: "L".into(),
            project_id: "proj_lab".into(),
            plan: "c2-small-x86".into(),
            site: "CHI".into(),
            operating_system: IPXE_OS.into(),
            ipxe: None,
            billing: "hourly".into(),
            ip: Ipv4Addr::new(127, 0, 214, 1),
            created_at_ms: 0,
            lifecycle: Lifecycle {
                kind: LifecycleKind::Deploy,
                started_at_ms: 0,
            },
            ssh_keys: vec![],
            tags: vec![],
            talos,
            maintenance_rekeyed: None,
            failed: false,
        }
    }

    #[test]
    fn phases_follow_the_clock() {
        // 1 modelled second = 1 ms: up at 20 + 280 + 90 = 390.
        let config = LabConfig {
            time_scale: 0.001,
            jitter: 0.0,
            ..LabConfig::default()
        };
        let d = Durations::new(&config);
        let s = server(None);
        assert_eq!(phase(&s, &config, &d, 389), Phase::Down);
        assert_eq!(phase(&s, &config, &d, 390), Phase::Maintenance);
        // Latitude still says `deploying` then.
        assert_eq!(s.status(390, &d), "deploying");
        let state = TalosState {
            generation: 0,
            config: String::new(),
            applied_at_ms: 1000,
            bootstrapped_at_ms: None,
            install_error: None,
        };
        let s = server(Some(state.clone()));
        assert_eq!(phase(&s, &config, &d, 1119), Phase::Installing);
        assert_eq!(
            phase(&s, &config, &d, 1120),
            Phase::Normal { since_ms: 1120 }
        );
        // A state from an earlier lifecycle is ignored.
        let stale = server(Some(TalosState {
            generation: -1,
            ..state.clone()
        }));
        assert_eq!(phase(&stale, &config, &d, 2000), Phase::Maintenance);
        // An install that fails reboots into maintenance mode once the install time is over.
        let failed = server(Some(TalosState {
            install_error: Some("lstat /dev/sdz: no such file or directory".into()),
            ..state
        }));
        assert_eq!(phase(&failed, &config, &d, 1119), Phase::Installing);
        assert_eq!(phase(&failed, &config, &d, 1120), Phase::Maintenance);
        assert!(current_state(&failed).is_none());
    }

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("ghcr.io/siderolabs/installer:v1.11.5").as_deref(),
            Some("v1.11.5")
        );
        assert_eq!(
            image_tag("factory.talos.dev/metal-installer/abc:v1.10.7").as_deref(),
            Some("v1.10.7")
        );
        assert_eq!(image_tag("registry:5000/installer"), None);
        assert_eq!(image_tag("installer:latest"), None);
    }

    #[test]
    fn member_ids_are_stable_and_distinct() {
        assert_eq!(member_id("sv_a", 1), member_id("sv_a", 1));
        assert_ne!(member_id("sv_a", 1), member_id("sv_a", 2));
        assert_ne!(member_id("sv_a", 1), member_id("sv_b", 1));
    }
}
