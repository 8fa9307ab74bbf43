//! The persisted state of the emulated provider: catalogue, project, servers, SSH keys, request
//! counters and address allocation. It lives in `world.json` in the state directory and is
//! rewritten atomically (temp file, rename) after every mutation, before the mutation is
//! answered, so a restarted lab (even one that was killed) sees the same servers with the same
//! IDs and addresses. It is not fsynced: the lab survives its own death, not the machine's,
//! and an fsync of a world holding hundreds of machine configurations stalled every request
//! waiting on the world's lock.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::catalogue::{self, Catalogue};
use crate::durations::Durations;
use crate::lifecycle::Lifecycle;

/// File name of the world inside the state directory.
pub(crate) const WORLD_FILE: &str = "world.json";
/// Format version of `world.json`.
const WORLD_VERSION: u32 = 1;

/// ID of the one project of the lab.
pub const LAB_PROJECT_ID: &str = "proj_lab";

/// Everything the lab remembers across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct World {
    pub version: u32,
    /// Third octet of the first server address block.
    pub ip_block: u8,
    /// Index of the next server address (0 → `127.0.<ip_block>.1`).
    pub next_host: u32,
    /// Number behind the next server label.
    pub next_label: u64,
    pub counters: Counters,
    pub project: Project,
    pub catalogue: Catalogue,
    /// Live servers in creation order; deleted servers are removed.
    pub servers: Vec<Server>,
    pub ssh_keys: Vec<SshKey>,
    /// The team's tags (`POST /tags`); servers refer to them by id.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Random secret (hex) from which each node's Talos maintenance-mode key is derived, so a
    /// restarted lab brings a node back with the same key, as a real node that did not reboot
    /// keeps its own (cto pins it: issue 13). Empty in worlds saved before it existed: filled
    /// at load.
    #[serde(default)]
    pub key_seed: String,
}

/// A tag of the team (Latitude tags belong to the team, not to a project: `GET /tags` "List all
/// Tags in the team", `latitudesh-go-sdk` `docs/sdks/tags/README.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tag {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub color: String,
}

/// Requests the lab has answered (see `GET /_lab/stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Counters {
    /// Authenticated GET requests, including those refused with 429.
    pub reads: u64,
    /// Authenticated write requests, including those refused with 429.
    pub writes: u64,
    /// Requests refused with 429.
    pub http_429: u64,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Project {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at_ms: i64,
}

/// A rented server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Server {
    pub id: String,
    pub hostname: String,
    pub label: String,
    pub project_id: String,
    /// Plan slug.
    pub plan: String,
    /// Site slug.
    pub site: String,
    /// Operating-system slug.
    pub operating_system: String,
    /// The iPXE URL or base64 script, for `ipxe` servers.
    pub ipxe: Option<String>,
    pub billing: String,
    pub ip: Ipv4Addr,
    pub created_at_ms: i64,
    pub lifecycle: Lifecycle,
    pub ssh_keys: Vec<String>,
    pub tags: Vec<String>,
    /// What happened to the Talos running on an iPXE server since it booted: absent while it
    /// is in maintenance mode (and for every other server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talos: Option<TalosState>,
    /// The lifecycle generation in which this node's maintenance-mode key was replaced by the
    /// `talos.rekey` fault (after its first `Version` call in maintenance mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_rekeyed: Option<i64>,
    /// An injected fault (`server.fail`) doomed this deployment: after `starting_deploy` the
    /// server reports `failed_deployment` and never boots. A reinstall clears it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

impl Server {
    /// The Latitude status at `now_ms`: the lifecycle's, or `failed_deployment` once a doomed
    /// deployment leaves `starting_deploy`.
    pub fn status(&self, now_ms: i64, d: &Durations) -> &'static str {
        match self
            .lifecycle
            .status(now_ms, d, &self.hostname, self.is_ipxe())
        {
            "starting_deploy" => "starting_deploy",
            _ if self.failed => "failed_deployment",
            status => status,
        }
    }

    /// Booted with the `ipxe` operating system (a Talos candidate; the status lags its boot).
    pub fn is_ipxe(&self) -> bool {
        self.operating_system == crate::catalogue::IPXE_OS
    }

    /// When the status turns (or turned) `on`.
    pub fn on_at_ms(&self, d: &Durations) -> i64 {
        self.lifecycle.on_at_ms(d, &self.hostname, self.is_ipxe())
    }

    /// When an iPXE-booted Talos answers (or would answer) in maintenance mode.
    pub fn talos_up_at_ms(&self, d: &Durations) -> i64 {
        self.lifecycle.talos_up_at_ms(d, &self.hostname)
    }
}

/// The persisted Talos state of one server, reset by a reinstall. Everything else (listener
/// mode, etcd members, the Kubernetes API and its Node objects) is derived from it and the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TalosState {
    /// `lifecycle.started_at_ms` when the configuration was applied: a state from an older
    /// lifecycle (before a reinstall) is ignored.
    pub generation: i64,
    /// The machine configuration as applied (YAML).
    pub config: String,
    /// When `ApplyConfiguration` accepted it; the install and reboot start then.
    pub applied_at_ms: i64,
    /// When `Bootstrap` succeeded on this node (control planes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrapped_at_ms: Option<i64>,
    /// Why the install this configuration started fails (its install disk does not resolve,
    /// see `talos::disks::resolve_install_disk`): the node reboots into maintenance mode
    /// instead of coming back configured, and the reason is on its console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_error: Option<String>,
}

/// An SSH key registered with the provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SshKey {
    pub id: String,
    pub name: String,
    pub public_key: String,
    pub fingerprint: String,
    pub project_id: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl World {
    /// A fresh world: the seed catalogue, the lab project, no servers.
    pub fn new(ip_block: u8, now_ms: i64) -> World {
        World {
            version: WORLD_VERSION,
            ip_block,
            next_host: 0,
            next_label: 1,
            counters: Counters::default(),
            project: Project {
                id: LAB_PROJECT_ID.into(),
                slug: "lab".into(),
                name: "Lab".into(),
                created_at_ms: now_ms,
            },
            catalogue: catalogue::seed(),
            servers: Vec::new(),
            ssh_keys: Vec::new(),
            key_seed: new_key_seed(),
            tags: Vec::new(),
        }
    }

    /// Loads `world.json` from `dir`, or creates (and saves) a new world when there is none.
    /// `ip_block` is used only for a new world; `None` picks a random block in `10..=250`. The
    /// lab then claims the block (see `blocks`), moving a world that has no servers yet to a
    /// free block when another lab holds this one.
    pub fn load_or_create(
        dir: &Path,
        ip_block: Option<u8>,
        now_ms: i64,
    ) -> Result<World, LabError> {
        let path = world_path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let world: World =
                    serde_json::from_slice(&bytes).map_err(|e| LabError::CorruptWorld {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if world.version != WORLD_VERSION {
                    return Err(LabError::CorruptWorld {
                        path,
                        reason: format!(
                            "format version {} where {WORLD_VERSION} is expected",
                            world.version
                        ),
                    });
                }
                let mut world = world;
                if world.key_seed.is_empty() {
                    world.key_seed = new_key_seed();
                }
                if let Some(wanted) = ip_block.filter(|b| *b != world.ip_block) {
                    tracing::warn!(
                        persisted = world.ip_block,
                        configured = wanted,
                        "ip_block differs from the persisted world; keeping the persisted one"
                    );
                }
                Ok(world)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let block = ip_block.unwrap_or_else(|| rand::rng().random_range(10..=250));
                let world = World::new(block, now_ms);
                world.save(dir)?;
                Ok(world)
            }
            Err(source) => Err(LabError::ReadWorld { path, source }),
        }
    }

    /// Writes the world atomically to `dir/world.json`, mode 0600 ([`crate::files`]).
    pub fn save(&self, dir: &Path) -> Result<(), LabError> {
        let path = world_path(dir);
        let err = |source| LabError::WriteWorld {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(self).map_err(|e| err(std::io::Error::other(e)))?;
        crate::files::write_private(&path, &bytes).map_err(err)
    }

    /// Resolves a project given by ID or slug.
    pub fn project(&self, id_or_slug: &str) -> Option<&Project> {
        Some(&self.project).filter(|p| p.id == id_or_slug || p.slug == id_or_slug)
    }

    pub fn server(&self, id: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub fn tag(&self, id: &str) -> Option<&Tag> {
        self.tags.iter().find(|t| t.id == id)
    }

    pub fn server_mut(&mut self, id: &str) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.id == id)
    }

    /// Live servers of `plan` at `site`.
    pub fn live_count(&self, plan: &str, site: &str) -> usize {
        self.servers
            .iter()
            .filter(|s| s.plan == plan && s.site == site)
            .count()
    }

    /// The next loopback address: `127.0.<ip_block>.1..=254`, then the following blocks.
    pub fn allocate_ip(&mut self) -> Option<Ipv4Addr> {
        let ip = self.next_ip()?;
        self.next_host += 1;
        Some(ip)
    }

    /// The address [`World::allocate_ip`] hands out next, without handing it out.
    pub fn next_ip(&self) -> Option<Ipv4Addr> {
        let block = u32::from(self.ip_block) + self.next_host / 254;
        let host = self.next_host % 254 + 1;
        let block = u8::try_from(block).ok()?;
        Some(Ipv4Addr::new(127, 0, block, host as u8))
    }

    /// The blocks addresses were handed out from so far (empty for a world without servers
    /// ever).
    pub fn used_blocks(&self) -> Vec<u8> {
        if self.next_host == 0 {
            return Vec::new();
        }
        let last = u32::from(self.ip_block) + (self.next_host - 1) / 254;
        (self.ip_block..=u8::try_from(last).unwrap_or(u8::MAX)).collect()
    }

    /// The next server label, e.g. `LAB0000007`.
    pub fn allocate_label(&mut self) -> String {
        let label = format!("LAB{:07}", self.next_label);
        self.next_label += 1;
        label
    }
}

/// `<dir>/world.json`.
pub(crate) fn world_path(dir: &Path) -> PathBuf {
    dir.join(WORLD_FILE)
}

/// 32 random bytes, hex.
fn new_key_seed() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new resource ID: the prefix and 13 random alphanumerics, like `sv_ZWr75Zbjr5A91`.
pub(crate) fn new_id(prefix: &str) -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(13)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_roll_into_the_next_block() {
        let mut w = World::new(254, 0);
        assert_eq!(w.allocate_ip(), Some(Ipv4Addr::new(127, 0, 254, 1)));
        w.next_host = 253;
        assert_eq!(w.allocate_ip(), Some(Ipv4Addr::new(127, 0, 254, 254)));
        assert_eq!(w.allocate_ip(), Some(Ipv4Addr::new(127, 0, 255, 1)));
        w.next_host = 2 * 254;
        assert_eq!(w.allocate_ip(), None);
    }

    #[test]
    fn ids_look_real() {
        let id = new_id("sv_");
        assert_eq!(id.len(), 16);
        assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(id, new_id("sv_"));
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = World::load_or_create(dir.path(), None, 5).unwrap();
        assert!((10..=250).contains(&w.ip_block));
        w.allocate_ip();
        w.counters.reads = 7;
        w.save(dir.path()).unwrap();
        let again = World::load_or_create(dir.path(), Some(3), 9).unwrap();
        assert_eq!(again.ip_block, w.ip_block);
        assert_eq!(again.next_host, 1);
        assert_eq!(again.counters.reads, 7);
        assert!(!dir.path().join("world.json.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(WORLD_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o7777,
                0o600,
                "the world holds the tokens it was given"
            );
        }
    }

    #[test]
    fn corrupt_world_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(WORLD_FILE), "{not json").unwrap();
        let err = World::load_or_create(dir.path(), None, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("world.json") && err.contains("corrupt"),
            "{err}"
        );
    }
}
