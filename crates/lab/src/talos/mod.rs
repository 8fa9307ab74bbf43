//! Talos nodes on loopback addresses, and the Kubernetes APIs of the clusters they form.
//!
//! A background reconciler (every [`crate::durations::Durations::tick`]) derives from the persisted world and the clock what
//! should be running, and makes it so:
//!
//! * **Nodes** ([`node`], [`grpc`]): an iPXE server whose boot script would load Talos comes up
//!   `timeline.talos_boot` after its deploy in **maintenance mode** on `<primary_ipv4>:50000`
//!   (ephemeral self-signed identity, no client certificate). `ApplyConfiguration` stores the
//!   validated machine configuration ([`machine_config`]) in the world; the port then closes for
//!   `timeline.talos_install` (install and reboot) and the node comes back in **normal mode**:
//!   mutual TLS with a certificate issued from the configuration's OS CA (workers get theirs
//!   from a control plane's key, as from trustd). A reinstall or a delete stops the node; a
//!   reinstall also wipes its Talos state, so it boots into maintenance mode again.
//! * **Clusters** ([`cluster`]): nodes with the same `cluster.id`. Once a control plane accepted
//!   `Bootstrap`, the cluster has etcd (its members: every control plane in normal mode) and a
//!   Kubernetes API ([`crate::kube`]) on `<that control plane's ip>:6443`, with a serving
//!   certificate from the cluster CA. Each node of the cluster in normal mode registers its Node
//!   (NotReady: no CNI yet) `timeline.kubelet_start` after both it and the API are up.
//!
//! Nothing of this is stored except each server's [`crate::world::TalosState`] (the applied
//! configuration, when, and when it bootstrapped etcd), so a restarted lab brings back every
//! listener in the right mode, every cluster's API and its Node objects.

mod cluster;
pub(crate) mod disks;
mod grpc;
mod machine_config;
mod node;
mod tls;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use metal::talos::secrets::CertAndKey;
use tokio::sync::watch;

pub use node::TALOS_API_PORT;

use crate::catalogue::IPXE_OS;
use crate::durations::Phase as DPhase;
use crate::kube::{self, KubeApi, KubeApiConfig};
use crate::lifecycle::now_ms;
use crate::state::Lab;
use cluster::{ConfigCache, Member, Phase, Snapshot};
use grpc::{Node, NodeIdent, NodeMode};
use node::NodeHandle;

/// What every node and the reconciler share: the lab, and the parsed machine configurations.
pub(crate) struct Shared {
    pub lab: Arc<Lab>,
    pub configs: ConfigCache,
}

/// Identifies one incarnation of a node listener: a new lifecycle (reinstall) or a new
/// configuration means a new listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeKey {
    generation: i64,
    applied_at_ms: Option<i64>,
    /// The maintenance-mode key was replaced (`talos.rekey`): a new listener with the new key.
    rekeyed: bool,
}

/// A listener the world says should be running.
struct Wanted {
    key: NodeKey,
    ident: NodeIdent,
    mode: WantedMode,
}

enum WantedMode {
    /// Whatever is running under the same key stays (a worker whose certificate was issued
    /// before its control plane went away keeps serving, as a real one does until it expires).
    Keep,
    /// Maintenance mode with the key derived from this seed.
    Maintenance { seed: [u8; 32] },
    Normal {
        member: Member,
        since_ms: i64,
        /// The OS CA with the key that signs apid's certificate.
        os_ca: CertAndKey,
    },
}

struct Running {
    key: NodeKey,
    handle: NodeHandle,
}

/// A cluster's Kubernetes API, hosted by the control plane that bootstrapped it.
struct RunningApi {
    /// (server id, generation, applied_at) of the host.
    host: (String, i64, i64),
    api: KubeApi,
    /// Nodes registered with this API instance: server id → (generation, applied_at).
    registered: HashMap<String, (i64, i64)>,
}

/// The seed of a node's maintenance-mode key: one per world, server, lifecycle (a reinstall
/// boots with a new key) and `talos.rekey` replacement.
fn maintenance_seed(world_seed: &str, server_id: &str, generation: i64, rekeyed: bool) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(b"talos-maintenance\0")
        .chain_update(world_seed.as_bytes())
        .chain_update(b"\0")
        .chain_update(server_id.as_bytes())
        .chain_update(generation.to_be_bytes())
        .chain_update([u8::from(rekeyed)])
        .finalize()
        .into()
}

/// Runs until `shutdown` turns true or its sender is dropped, then stops every node and API.
pub(crate) async fn run(lab: Arc<Lab>, mut shutdown: watch::Receiver<bool>) {
    let shared = Arc::new(Shared {
        lab,
        configs: ConfigCache::default(),
    });
    let mut reconciler = Reconciler {
        shared,
        running: HashMap::new(),
        apis: HashMap::new(),
        warned: HashSet::new(),
    };
    let mut tick = tokio::time::interval(reconciler.shared.lab.durations.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => reconciler.reconcile().await,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    reconciler.stop_all().await;
}

struct Reconciler {
    shared: Arc<Shared>,
    running: HashMap<String, Running>,
    /// Kubernetes APIs by cluster key.
    apis: HashMap<String, RunningApi>,
    /// (server, generation, topic) triples already warned about, so a warning is logged once.
    warned: HashSet<(String, i64, &'static str)>,
}

impl Reconciler {
    fn warn_once(&mut self, server: &str, generation: i64, topic: &'static str) -> bool {
        self.warned.insert((server.to_owned(), generation, topic))
    }

    /// The listeners the world wants, and the snapshot they were derived from.
    fn wanted(&mut self) -> (HashMap<String, Wanted>, Snapshot) {
        let now = now_ms();
        let lab = self.shared.lab.clone();
        let world = lab.world();
        self.shared.configs.retain(&world);
        self.warned.retain(|(id, generation, _)| {
            world
                .server(id)
                .is_some_and(|s| s.lifecycle.started_at_ms == *generation)
        });
        let snapshot = Snapshot {
            now_ms: now,
            members: cluster::members(
                &world,
                &lab.config,
                &lab.durations,
                &self.shared.configs,
                now,
            ),
        };
        let mut wanted = HashMap::new();
        for server in world
            .servers
            .iter()
            .filter(|s| s.operating_system == IPXE_OS)
        {
            let generation = server.lifecycle.started_at_ms;
            let phase = cluster::phase(server, &lab.config, &lab.durations, now);
            if matches!(phase, Phase::Down | Phase::Installing) {
                continue;
            }
            let image = match cluster::boot_image(server) {
                Ok(image) => image,
                Err(reason) => {
                    if self.warn_once(&server.id, generation, "ipxe") {
                        tracing::warn!(server = %server.id, hostname = %server.hostname, %reason, "iPXE boot would not load Talos; the node never boots");
                    }
                    continue;
                }
            };
            let ident = NodeIdent {
                server_id: server.id.clone(),
                hostname: server.hostname.clone(),
                ip: server.ip,
                image,
                generation,
            };
            let (key, mode) = match phase {
                Phase::Normal { since_ms } => {
                    let Some(member) = snapshot.member(&server.id).cloned() else {
                        // The stored configuration no longer parses (logged by the cache).
                        continue;
                    };
                    let os_ca_key = if member.config.is_control_plane() {
                        member.config.os_ca.key.clone()
                    } else {
                        snapshot.os_ca_key_for(&member.config.os_ca.crt)
                    };
                    let key = NodeKey {
                        generation,
                        applied_at_ms: Some(member.applied_at_ms),
                        rekeyed: false,
                    };
                    let Some(os_ca_key) = os_ca_key else {
                        if self.running.get(&server.id).is_some_and(|r| r.key == key) {
                            wanted.insert(
                                server.id.clone(),
                                Wanted {
                                    key,
                                    ident,
                                    mode: WantedMode::Keep,
                                },
                            );
                        } else if self.warn_once(&server.id, generation, "trustd") {
                            tracing::warn!(server = %server.id, "worker waits for a control plane of its cluster to issue its apid certificate (trustd)");
                        }
                        continue;
                    };
                    let os_ca = CertAndKey {
                        crt: member.config.os_ca.crt.clone(),
                        key: os_ca_key,
                    };
                    (
                        key,
                        WantedMode::Normal {
                            member,
                            since_ms,
                            os_ca,
                        },
                    )
                }
                _ => {
                    let rekeyed = server.maintenance_rekeyed == Some(generation);
                    (
                        NodeKey {
                            generation,
                            applied_at_ms: None,
                            rekeyed,
                        },
                        WantedMode::Maintenance {
                            seed: maintenance_seed(
                                &world.key_seed,
                                &server.id,
                                generation,
                                rekeyed,
                            ),
                        },
                    )
                }
            };
            wanted.insert(server.id.clone(), Wanted { key, ident, mode });
        }
        (wanted, snapshot)
    }

    async fn reconcile(&mut self) {
        let (wanted, snapshot) = self.wanted();
        self.reconcile_nodes(wanted).await;
        self.reconcile_apis(&snapshot).await;
    }

    async fn reconcile_nodes(&mut self, wanted: HashMap<String, Wanted>) {
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(id, node)| wanted.get(*id).is_none_or(|w| w.key != node.key))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(node) = self.running.remove(&id) {
                node.handle.stop().await;
                tracing::info!(server = %id, "Talos node stopped");
            }
        }
        for (id, want) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            let generation = want.key.generation;
            let (mode, tls) = match want.mode {
                WantedMode::Keep => continue,
                WantedMode::Maintenance { seed } => (
                    NodeMode::Maintenance,
                    tls::server_config(want.ident.ip, &want.ident.hostname, seed),
                ),
                WantedMode::Normal {
                    member,
                    since_ms,
                    os_ca,
                } => {
                    let tls = tls::normal_server_config(
                        want.ident.ip,
                        member.node_name(),
                        &member.config.cert_sans,
                        &os_ca,
                        &member.config.accepted_cas,
                    );
                    (
                        NodeMode::Normal {
                            config: member.config.clone(),
                            applied_at_ms: member.applied_at_ms,
                            since_ms,
                        },
                        tls,
                    )
                }
            };
            let started = match tls {
                Ok(tls) => {
                    let node = Node {
                        ident: want.ident,
                        mode,
                        shared: self.shared.clone(),
                    };
                    node::start(node, tls).await
                }
                Err(reason) => Err(node::StartError::Tls(reason)),
            };
            match started {
                Ok(handle) => {
                    self.running.insert(
                        id,
                        Running {
                            key: want.key,
                            handle,
                        },
                    );
                }
                Err(error) => {
                    // Retried on the next tick; warn once per boot.
                    if self.warn_once(&id, generation, "start") {
                        tracing::warn!(server = %id, %error, "Talos node cannot start yet; retrying");
                    } else {
                        tracing::trace!(server = %id, %error, "Talos node still cannot start");
                    }
                }
            }
        }
    }

    /// Starts and stops the clusters' Kubernetes APIs and registers their Nodes.
    async fn reconcile_apis(&mut self, snapshot: &Snapshot) {
        // The host of each bootstrapped cluster: the control plane that bootstrapped it, while
        // it runs in normal mode.
        let mut hosts: HashMap<String, &Member> = HashMap::new();
        for member in &snapshot.members {
            if member.config.is_control_plane()
                && member.is_normal()
                && member.bootstrapped_at_ms.is_some()
            {
                hosts
                    .entry(member.config.cluster_key().to_owned())
                    .and_modify(|h| {
                        if member.bootstrapped_at_ms < h.bootstrapped_at_ms {
                            *h = member;
                        }
                    })
                    .or_insert(member);
            }
        }
        let identity = |m: &Member| (m.server_id.clone(), m.generation, m.applied_at_ms);
        let stale: Vec<String> = self
            .apis
            .iter()
            .filter(|(key, api)| hosts.get(*key).is_none_or(|h| identity(h) != api.host))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(api) = self.apis.remove(&key) {
                tracing::info!(cluster = %key, url = %api.api.url(), "Kubernetes API stopped");
                crate::faults::register_kube(api.api.url().trim_start_matches("https://"), None);
                api.api.shutdown().await;
            }
        }
        for (key, host) in &hosts {
            if self.apis.contains_key(key) {
                continue;
            }
            let config = &host.config;
            let mut cert_sans = vec![host.ip.to_string()];
            for san in std::iter::once(config.endpoint_host().to_owned())
                .chain(config.api_server_cert_sans.iter().cloned())
            {
                if !san.is_empty() && !cert_sans.contains(&san) {
                    cert_sans.push(san);
                }
            }
            let api_config = KubeApiConfig {
                listen: SocketAddr::from((host.ip, kube::KUBE_API_PORT)),
                cluster_name: config.cluster_name.clone(),
                ca: CertAndKey {
                    crt: config.cluster_ca.crt.clone(),
                    key: config.cluster_ca.key.clone().unwrap_or_default(),
                },
                cert_sans,
            };
            // The cluster's objects persist next to the world, for this incarnation of its
            // bootstrapping control plane.
            let cluster_options = kube::ClusterOptions {
                lab: self.shared.lab.config.clone(),
                state_file: Some(self.shared.lab.state_dir.join(format!(
                    "kube-{}.json",
                    config
                        .cluster_name
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                        .collect::<String>()
                ))),
                incarnation: format!(
                    "{}/{}/{}",
                    host.server_id, host.generation, host.applied_at_ms
                ),
                encryption_secret: config.secretbox_encryption_secret.clone(),
            };
            match kube::start_observed(
                api_config,
                cluster_options,
                self.shared.lab.observer.clone(),
            )
            .await
            {
                Ok(api) => {
                    tracing::info!(cluster = %config.cluster_name, url = %api.url(), "Kubernetes API up");
                    crate::faults::register_kube(
                        api.url().trim_start_matches("https://"),
                        Some(self.shared.lab.faults.clone()),
                    );
                    self.apis.insert(
                        key.clone(),
                        RunningApi {
                            host: identity(host),
                            api,
                            registered: HashMap::new(),
                        },
                    );
                }
                Err(error) => {
                    if self.warn_once(&host.server_id, host.generation, "kube-api") {
                        tracing::warn!(cluster = %config.cluster_name, %error, "Kubernetes API cannot start yet; retrying");
                    }
                }
            }
        }
        let durations = &self.shared.lab.durations;
        for (key, api) in &mut self.apis {
            let Some(bootstrapped_at) = snapshot.bootstrapped_at(key) else {
                continue;
            };
            for member in snapshot.cluster(key) {
                let Phase::Normal { since_ms } = member.phase else {
                    continue;
                };
                let incarnation = (member.generation, member.applied_at_ms);
                let kubelet_start =
                    durations.real_ms(DPhase::KubeletStart, &member.server_hostname);
                if snapshot.now_ms < since_ms.max(bootstrapped_at) + kubelet_start
                    || api.registered.get(&member.server_id) == Some(&incarnation)
                {
                    continue;
                }
                api.api.upsert_node(node_info(member));
                let disks = {
                    let world = self.shared.lab.world();
                    world
                        .server(&member.server_id)
                        .map(|server| {
                            let mut disks =
                                machine_disks(&world.catalogue, server, &self.shared.lab.config);
                            if let Ok(i) =
                                disks::resolve_install_disk(&disks, &member.config.install_target)
                            {
                                disks[i].system = true;
                            }
                            disks
                        })
                        .unwrap_or_default()
                };
                api.api.set_node_disks(member.node_name(), disks);
                tracing::info!(cluster = %member.config.cluster_name, node = %member.node_name(), "kubelet registered its Node");
                api.registered.insert(member.server_id.clone(), incarnation);
            }
        }
    }

    async fn stop_all(&mut self) {
        for (_, node) in self.running.drain() {
            node.handle.stop().await;
        }
        for (_, api) in self.apis.drain() {
            crate::faults::register_kube(api.api.url().trim_start_matches("https://"), None);
            api.api.shutdown().await;
        }
    }
}

/// The disks of `server`: its plan's drives, or the `node.drives` fault's (a server that
/// differs from its plan, as Latitude's do), plus the lab's `extra_disks`. None is marked as
/// the system disk.
pub(crate) fn machine_disks(
    catalogue: &crate::catalogue::Catalogue,
    server: &crate::world::Server,
    config: &crate::config::LabConfig,
) -> Vec<disks::LabDisk> {
    if let Some(drives) = config
        .faults
        .node_drives
        .iter()
        .find(|(host, _)| *host == server.hostname)
        .and_then(|(_, spec)| disks::parse_drives(spec).ok())
    {
        return disks::from_drives(&drives, &server.id, config.extra_disks);
    }
    disks::for_plan(catalogue.plan(&server.plan), &server.id, config.extra_disks)
}

/// What a server's console shows of its Talos install: for an install that failed, the error of
/// Talos' install task and the reboot that follows (`internal/app/machined/main.go` `handle`).
/// Empty for every other server. (`GET /_lab/console/{hostname}`.)
pub(crate) fn console(lab: &Lab, hostname: &str) -> Option<Vec<String>> {
    let world = lab.world();
    let server = world.servers.iter().find(|s| s.hostname == hostname)?;
    let mut lines = Vec::new();
    if let Some(state) = cluster::failed_install(server) {
        let error = state.install_error.as_deref().unwrap_or_default();
        lines.push("[talos] task install (1/1): starting".to_owned());
        lines.push(format!("[talos] task install (1/1): failed: {error}"));
        lines.push(format!("[talos] phase install (8/13): failed: {error}"));
        lines.push("[talos] rebooting in 10 seconds".to_owned());
    }
    Some(lines)
}

/// The conditions that the persisted world and the clock say became true by `now_ms`, with
/// when (see `/_lab/conditions`): for every server `server/<host>/ordered`,
/// `server/<host>/reinstalled` (a reinstall's start), `server/<host>/talos_maintenance` (an
/// iPXE server whose Talos boots), `server/<host>/status_on`, `server/<host>/config_applied`,
/// `server/<host>/installed` (normal mode), and `cluster/<name>/bootstrapped`.
pub(crate) fn world_conditions(lab: &Lab, now_ms: i64) -> Vec<(String, i64)> {
    let servers = lab.world().servers.clone();
    let d = &lab.durations;
    let configs = ConfigCache::default();
    let mut out = Vec::new();
    let mut push = |name: String, at_ms: i64| {
        if at_ms <= now_ms {
            out.push((name, at_ms));
        }
    };
    for server in &servers {
        let host = &server.hostname;
        push(format!("server/{host}/ordered"), server.created_at_ms);
        if server.lifecycle.kind == crate::lifecycle::LifecycleKind::Reinstall {
            push(
                format!("server/{host}/reinstalled"),
                server.lifecycle.started_at_ms,
            );
        }
        if server.failed {
            continue;
        }
        push(format!("server/{host}/status_on"), server.on_at_ms(d));
        let boots = server.is_ipxe()
            && !lab.config.faults.node_noboot.contains(host)
            && cluster::boot_image(server).is_ok();
        if !boots {
            continue;
        }
        push(
            format!("server/{host}/talos_maintenance"),
            server.talos_up_at_ms(d),
        );
        if let Some(state) = cluster::failed_install(server) {
            push(
                format!("server/{host}/install_failed"),
                cluster::installed_at_ms(server, state, d),
            );
        }
        let Some(state) = cluster::current_state(server) else {
            continue;
        };
        push(format!("server/{host}/config_applied"), state.applied_at_ms);
        push(
            format!("server/{host}/installed"),
            cluster::installed_at_ms(server, state, d),
        );
        if let Some(at_ms) = state.bootstrapped_at_ms
            && let Some(config) = configs.get(&server.id, state)
        {
            push(
                format!("cluster/{}/bootstrapped", config.cluster_name),
                at_ms,
            );
        }
    }
    out
}

/// The Node a member's kubelet registers.
fn node_info(member: &Member) -> kube::NodeInfo {
    let kubelet_version = member
        .config
        .kubelet_image
        .as_deref()
        .and_then(cluster::image_tag)
        .unwrap_or_else(|| kube::DEFAULT_KUBERNETES_VERSION.to_owned());
    kube::NodeInfo {
        name: member.node_name().to_owned(),
        internal_ip: IpAddr::V4(member.ip),
        control_plane: member.config.is_control_plane(),
        ready: false,
        labels: member.config.node_labels.clone(),
        kubelet_version,
        os_image: format!("Talos ({})", member.talos_tag()),
    }
}
