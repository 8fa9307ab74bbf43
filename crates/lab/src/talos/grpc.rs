//! What a lab Talos node answers over gRPC: the `machine.MachineService` server traits generated
//! in `metal::talos::proto` (real gRPC framing by tonic), behind a small HTTP/2 dispatch that
//! answers the methods a node does not serve the way Talos does.
//!
//! * Maintenance mode: only `ApplyConfiguration` (modes `REBOOT`, `AUTO`, `TRY`; `NO_REBOOT` and
//!   `STAGED` → `Unimplemented` with Talos' message). The configuration is parsed and validated
//!   ([`super::machine_config`]; refusals are `InvalidArgument`), then stored in the world: the
//!   reconciler takes the maintenance listener down for `timeline.talos_install` (install and
//!   reboot) and brings the node back in normal mode. Every other call → `Unimplemented` "API is
//!   not implemented in maintenance mode".
//! * Normal mode (mutual TLS; roles from the client certificate's organizations, enforced when
//!   `machine.features.rbac` is on): `Version`, `ServiceList`, `EtcdMemberList` (control planes;
//!   members = the cluster's control planes in normal mode once it is bootstrapped), `Bootstrap`
//!   (control planes; `FailedPrecondition` until `timeline.bootstrap_ready` after boot,
//!   `AlreadyExists` once the cluster is bootstrapped), `Kubeconfig` (control planes; a gzip'd tar
//!   holding `kubeconfig`, as Talos streams it), and `ApplyConfiguration` of the configuration
//!   the node already runs (a no-op). Everything else → `Unimplemented`.
//! * Both modes: `storage.StorageService/Disks` (the machine's disks, [`super::disks`];
//!   `system_disk` only once installed).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use metal::talos::proto::common;
use metal::talos::proto::machine::apply_configuration_request::Mode as ApplyMode;
use metal::talos::proto::machine::machine_service_server::{MachineService, MachineServiceServer};
use metal::talos::proto::machine::{self as pb};
use metal::talos::proto::storage::storage_service_server::{StorageService, StorageServiceServer};
use metal::talos::proto::storage::{self as spb};
use metal::talos::secrets::CertAndKey;
use tonic::Status;
use tower::Service as _;

use crate::LabError;
use crate::durations::Phase as DPhase;
use crate::faults::{self, Strike};
use crate::ipxe::BootImage;
use crate::lifecycle::now_ms;
use crate::observe::Kind;

use super::Shared;
use super::cluster::{self, Snapshot};
use super::machine_config::{self, MachineConfig};
use crate::world::TalosState;

/// Full method path of `MachineService.ApplyConfiguration`.
pub(crate) const APPLY_CONFIGURATION: &str = "/machine.MachineService/ApplyConfiguration";

/// Full method path of `StorageService.Disks` (served in maintenance and normal mode).
pub(crate) const DISKS: &str = "/storage.StorageService/Disks";

/// Full method path of `MachineService.Version` (what cto's maintenance probe calls).
const VERSION: &str = "/machine.MachineService/Version";

/// The methods a node in normal mode serves.
const NORMAL_METHODS: [&str; 6] = [
    APPLY_CONFIGURATION,
    "/machine.MachineService/Bootstrap",
    "/machine.MachineService/EtcdMemberList",
    "/machine.MachineService/Kubeconfig",
    "/machine.MachineService/ServiceList",
    "/machine.MachineService/Version",
];

/// The message of real Talos for RPCs it does not serve in maintenance mode.
pub(crate) const NOT_IN_MAINTENANCE: &str = "API is not implemented in maintenance mode";

/// gRPC status codes used here.
pub(crate) mod code {
    /// `UNIMPLEMENTED`.
    pub const UNIMPLEMENTED: u32 = 12;
    /// `RESOURCE_EXHAUSTED`.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// `UNAVAILABLE`.
    pub const UNAVAILABLE: u32 = 14;
}

/// Roles from the client certificate's organizations (`os:admin`, `os:reader`…).
const ADMIN: &[&str] = &["os:admin"];
const READER: &[&str] = &["os:admin", "os:operator", "os:reader"];
const ETCD_READER: &[&str] = &["os:admin", "os:operator", "os:reader", "os:etcd:backup"];

/// The node a request reached.
#[derive(Debug, Clone)]
pub(crate) struct NodeIdent {
    pub server_id: String,
    pub hostname: String,
    pub ip: Ipv4Addr,
    pub image: BootImage,
    /// The server's lifecycle generation (`lifecycle.started_at_ms`).
    pub generation: i64,
}

/// How the node is running.
#[derive(Debug, Clone)]
pub(crate) enum NodeMode {
    Maintenance,
    Normal {
        config: Arc<MachineConfig>,
        /// When the configuration was applied (identifies it).
        applied_at_ms: i64,
        /// When the node came up in normal mode.
        since_ms: i64,
    },
}

/// One running node: who it is, how it runs, and the lab around it.
pub(crate) struct Node {
    pub ident: NodeIdent,
    pub mode: NodeMode,
    pub shared: Arc<Shared>,
}

/// The client's roles, taken from its certificate during the TLS handshake and handed to the
/// handlers as a request extension.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerRoles(pub Vec<String>);

/// Answers one HTTP/2 request on a node's port 50000.
pub(crate) async fn handle(
    node: Arc<Node>,
    roles: PeerRoles,
    mut request: Request<Incoming>,
) -> Response<Body> {
    node.shared.lab.observer.request(Kind::Talos);
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED);
    }
    let is_grpc = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let path = request.uri().path().to_owned();
    tracing::debug!(node = %node.ident.ip, %path, "talos RPC");
    match node.shared.lab.faults.strike(faults::Api::Talos).await {
        Strike::None => {}
        Strike::ServerError | Strike::Reset => {
            return status(code::UNAVAILABLE, "the lab injected a fault (talos.5xx)");
        }
        Strike::RateLimited => {
            return status(
                code::RESOURCE_EXHAUSTED,
                "the lab injected a fault (talos.429)",
            );
        }
    }
    if matches!(node.mode, NodeMode::Maintenance)
        && path == VERSION
        && (node.shared.lab.config.faults.talos_rekey).contains(&node.ident.hostname)
    {
        rekey(&node);
    }
    let served = match node.mode {
        NodeMode::Maintenance => path == APPLY_CONFIGURATION || path == DISKS,
        NodeMode::Normal { .. } => NORMAL_METHODS.contains(&path.as_str()) || path == DISKS,
    };
    if !served {
        return match node.mode {
            NodeMode::Maintenance => status(code::UNIMPLEMENTED, NOT_IN_MAINTENANCE),
            NodeMode::Normal { .. } => status(
                code::UNIMPLEMENTED,
                &format!("{path} is not implemented by the lab's Talos emulation"),
            ),
        };
    }
    request.extensions_mut().insert(roles);
    if path == DISKS {
        let mut service = StorageServiceServer::new(Api(node));
        return match service.call(request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
    }
    let mut service = MachineServiceServer::new(Api(node));
    match service.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

/// The `talos.rekey` fault: the first `Version` call a node in maintenance mode answers (cto's
/// step-5 probe, which records the key) marks its key as replaced for this lifecycle; the
/// reconciler then restarts its listener with a new key, as after a reboot in maintenance mode.
fn rekey(node: &Node) {
    let ident = &node.ident;
    let changed = node.shared.lab.mutate(|world| {
        let Some(server) = world
            .server_mut(&ident.server_id)
            .filter(|s| s.lifecycle.started_at_ms == ident.generation)
        else {
            return Ok::<_, LabError>(false);
        };
        let first = server.maintenance_rekeyed != Some(ident.generation);
        server.maintenance_rekeyed = Some(ident.generation);
        Ok(first)
    });
    match changed {
        Ok(true) => {
            tracing::info!(server = %ident.server_id, hostname = %ident.hostname, "talos.rekey: the node presents a new maintenance-mode key from now on");
        }
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "talos.rekey: cannot save the world"),
    }
}

/// The `MachineService` implementation of one node.
struct Api(Arc<Node>);

/// Why a world change was refused.
enum Refusal {
    Status(Status),
    Lab(LabError),
}

impl From<LabError> for Refusal {
    fn from(error: LabError) -> Self {
        Refusal::Lab(error)
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        match refusal {
            Refusal::Status(status) => status,
            Refusal::Lab(error) => {
                Status::internal(format!("the lab cannot save its world: {error}"))
            }
        }
    }
}

impl Api {
    fn authorize<T>(&self, request: &tonic::Request<T>, allowed: &[&str]) -> Result<(), Status> {
        let NodeMode::Normal { config, .. } = &self.0.mode else {
            return Ok(());
        };
        if !config.rbac {
            return Ok(());
        }
        let roles = request.extensions().get::<PeerRoles>();
        if roles.is_some_and(|r| r.0.iter().any(|role| allowed.contains(&role.as_str()))) {
            Ok(())
        } else {
            Err(Status::permission_denied("not authorized"))
        }
    }

    /// The configuration and boot time of a node in normal mode.
    fn normal(&self) -> Result<(&Arc<MachineConfig>, i64, i64), Status> {
        match &self.0.mode {
            NodeMode::Normal {
                config,
                applied_at_ms,
                since_ms,
            } => Ok((config, *applied_at_ms, *since_ms)),
            NodeMode::Maintenance => Err(Status::unimplemented(NOT_IN_MAINTENANCE)),
        }
    }

    fn control_plane(&self, api_name: &str) -> Result<&Arc<MachineConfig>, Status> {
        let (config, _, _) = self.normal()?;
        if config.is_control_plane() {
            Ok(config)
        } else {
            Err(Status::unimplemented(format!(
                "{api_name} is only available on control plane nodes"
            )))
        }
    }

    fn snapshot(&self) -> Snapshot {
        let shared = &self.0.shared;
        Snapshot::take(&shared.lab, &shared.configs, now_ms())
    }

    async fn apply_in_maintenance(
        &self,
        request: pb::ApplyConfigurationRequest,
    ) -> Result<pb::ApplyConfigurationResponse, Status> {
        match ApplyMode::try_from(request.mode) {
            Ok(ApplyMode::Reboot | ApplyMode::Auto | ApplyMode::Try) => {}
            other => {
                let name = other
                    .map(|m| m.as_str_name().to_lowercase().replace('_', "-"))
                    .unwrap_or_else(|_| request.mode.to_string());
                return Err(Status::unimplemented(format!(
                    "apply configuration --mode='{name}' is not supported in maintenance mode"
                )));
            }
        }
        let (config, warnings) = machine_config::parse(&request.data)
            .map_err(|rejected| Status::invalid_argument(rejected.0))?;
        let mut reply = pb::ApplyConfiguration {
            metadata: None,
            warnings,
            mode: ApplyMode::Reboot.into(),
            mode_details: String::new(),
        };
        if request.dry_run {
            reply.mode_details =
                "Dry run summary:\nNode is running in maintenance mode and does not have a config yet."
                    .into();
            return Ok(pb::ApplyConfigurationResponse {
                messages: vec![reply],
            });
        }
        let ident = &self.0.ident;
        let text = String::from_utf8_lossy(&request.data).into_owned();
        let now = now_ms();
        let lab_config = self.0.shared.lab.config.clone();
        let catalogue = self.0.shared.lab.world().catalogue.clone();
        self.0
            .shared
            .lab
            .mutate(|world| {
                let server = world
                    .server_mut(&ident.server_id)
                    .filter(|s| s.lifecycle.started_at_ms == ident.generation)
                    .ok_or_else(|| {
                        Refusal::Status(Status::unavailable("the node is shutting down"))
                    })?;
                if cluster::current_state(server).is_none() {
                    // The install that follows resolves the install disk against the machine's
                    // real disks; a disk it does not have fails it (see `disks`).
                    let machine = super::machine_disks(&catalogue, server, &lab_config);
                    let install_error =
                        super::disks::resolve_install_disk(&machine, &config.install_target)
                            .err();
                    if let Some(reason) = &install_error {
                        tracing::warn!(server = %server.id, hostname = %server.hostname, %reason, "Talos install will fail: task install failed; rebooting into maintenance mode");
                    }
                    server.talos = Some(TalosState {
                        generation: ident.generation,
                        config: text,
                        applied_at_ms: now,
                        bootstrapped_at_ms: None,
                        install_error,
                    });
                }
                Ok::<_, Refusal>(())
            })
            .map_err(Status::from)?;
        tracing::info!(
            server = %ident.server_id,
            ip = %ident.ip,
            machine_type = ?config.machine_type,
            cluster = %config.cluster_name,
            "machine configuration applied; installing and rebooting"
        );
        Ok(pb::ApplyConfigurationResponse {
            messages: vec![reply],
        })
    }
}

#[tonic::async_trait]
impl StorageService for Api {
    async fn disks(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<spb::DisksResponse>, Status> {
        self.authorize(&request, READER)?;
        let disks = {
            let world = self.0.shared.lab.world();
            match world.server(&self.0.ident.server_id) {
                Some(server) => {
                    let mut disks =
                        super::machine_disks(&world.catalogue, server, &self.0.shared.lab.config);
                    // `system_disk` once Talos runs from the disk it installed to.
                    if let NodeMode::Normal { config, .. } = &self.0.mode
                        && let Ok(i) =
                            super::disks::resolve_install_disk(&disks, &config.install_target)
                    {
                        disks[i].system = true;
                    }
                    disks
                }
                None => Vec::new(),
            }
        };
        let disks = disks
            .into_iter()
            .map(|d| {
                let nvme = d.kind == super::disks::DiskKind::Nvme;
                let index = d.device_name.bytes().last().unwrap_or(b'0') % 8;
                spb::Disk {
                    size: d.size,
                    model: d.model,
                    device_name: d.device_name.clone(),
                    name: String::new(),
                    serial: d.serial,
                    modalias: if nvme {
                        "nvme:v144DdA80Asd144Ds0000".into()
                    } else {
                        "scsi:t-0x00".into()
                    },
                    uuid: String::new(),
                    wwid: d.wwid,
                    r#type: match d.kind {
                        super::disks::DiskKind::Nvme => spb::disk::DiskType::Nvme,
                        super::disks::DiskKind::Ssd => spb::disk::DiskType::Ssd,
                        super::disks::DiskKind::Hdd => spb::disk::DiskType::Hdd,
                    }
                    .into(),
                    bus_path: if nvme {
                        format!("/pci0000:00/0000:00:01.{index}/0000:0{index}:00.0/nvme")
                    } else {
                        format!("/pci0000:00/0000:00:17.0/ata{}/host{index}/target{index}:0:0/{index}:0:0:0", index + 1)
                    },
                    system_disk: d.system,
                    subsystem: "/sys/class/block".into(),
                    readonly: false,
                }
            })
            .collect();
        Ok(tonic::Response::new(spb::DisksResponse {
            messages: vec![spb::Disks {
                metadata: None,
                disks,
            }],
        }))
    }
}

#[tonic::async_trait]
impl MachineService for Api {
    async fn apply_configuration(
        &self,
        request: tonic::Request<pb::ApplyConfigurationRequest>,
    ) -> Result<tonic::Response<pb::ApplyConfigurationResponse>, Status> {
        if matches!(self.0.mode, NodeMode::Maintenance) {
            return self
                .apply_in_maintenance(request.into_inner())
                .await
                .map(tonic::Response::new);
        }
        self.authorize(&request, ADMIN)?;
        let (_, applied_at_ms, _) = self.normal()?;
        let request = request.into_inner();
        let (_, warnings) = machine_config::parse(&request.data)
            .map_err(|rejected| Status::invalid_argument(rejected.0))?;
        let running = {
            let world = self.0.shared.lab.world();
            world
                .server(&self.0.ident.server_id)
                .and_then(cluster::current_state)
                .filter(|s| s.applied_at_ms == applied_at_ms)
                .map(|s| s.config.clone())
        };
        if running.as_deref().map(str::as_bytes) != Some(request.data.as_slice()) {
            return Err(Status::unimplemented(
                "the lab's Talos emulation only re-applies the configuration a node already runs",
            ));
        }
        Ok(tonic::Response::new(pb::ApplyConfigurationResponse {
            messages: vec![pb::ApplyConfiguration {
                metadata: None,
                warnings,
                mode: ApplyMode::NoReboot.into(),
                mode_details: "Applied configuration without a reboot".into(),
            }],
        }))
    }

    async fn bootstrap(
        &self,
        request: tonic::Request<pb::BootstrapRequest>,
    ) -> Result<tonic::Response<pb::BootstrapResponse>, Status> {
        self.authorize(&request, ADMIN)?;
        let (config, applied_at_ms, since_ms) = self.normal()?;
        let shared = &self.0.shared;
        let now = now_ms();
        if now
            < since_ms
                + shared
                    .lab
                    .durations
                    .real_ms(DPhase::BootstrapReady, &self.0.ident.hostname)
        {
            return Err(Status::failed_precondition(
                "bootstrap is not available yet",
            ));
        }
        if !config.is_control_plane() {
            return Err(Status::failed_precondition(
                "bootstrap can only be performed on a control plane node",
            ));
        }
        let ident = &self.0.ident;
        let cluster_key = config.cluster_key().to_owned();
        shared
            .lab
            .mutate(|world| {
                let members = cluster::members(
                    world,
                    &shared.lab.config,
                    &shared.lab.durations,
                    &shared.configs,
                    now,
                );
                let bootstrapped = members.iter().any(|m| {
                    m.config.cluster_key() == cluster_key && m.bootstrapped_at_ms.is_some()
                });
                if bootstrapped {
                    return Err(Refusal::Status(Status::already_exists(
                        "etcd data directory is not empty",
                    )));
                }
                let state = world
                    .server_mut(&ident.server_id)
                    .filter(|s| s.lifecycle.started_at_ms == ident.generation)
                    .and_then(|s| s.talos.as_mut())
                    .filter(|t| t.applied_at_ms == applied_at_ms)
                    .ok_or_else(|| {
                        Refusal::Status(Status::unavailable("the node is shutting down"))
                    })?;
                state.bootstrapped_at_ms = Some(now);
                Ok(())
            })
            .map_err(Status::from)?;
        tracing::info!(server = %ident.server_id, ip = %ident.ip, cluster = %config.cluster_name, "etcd bootstrapped");
        Ok(tonic::Response::new(pb::BootstrapResponse {
            messages: vec![pb::Bootstrap { metadata: None }],
        }))
    }

    async fn etcd_member_list(
        &self,
        request: tonic::Request<pb::EtcdMemberListRequest>,
    ) -> Result<tonic::Response<pb::EtcdMemberListResponse>, Status> {
        self.authorize(&request, ETCD_READER)?;
        let config = self.control_plane("member list")?;
        let snapshot = self.snapshot();
        let members = snapshot.etcd_members(config.cluster_key());
        if members.is_empty() {
            return Err(Status::unavailable(
                "etcd is not running on this node: the cluster has not been bootstrapped yet",
            ));
        }
        let members = members
            .into_iter()
            .map(|m| pb::EtcdMember {
                id: cluster::member_id(&m.server_id, m.generation),
                hostname: m.node_name().to_owned(),
                peer_urls: vec![format!("https://{}:2380", m.ip)],
                client_urls: vec![format!("https://{}:2379", m.ip)],
                is_learner: false,
            })
            .collect::<Vec<_>>();
        Ok(tonic::Response::new(pb::EtcdMemberListResponse {
            messages: vec![pb::EtcdMembers {
                metadata: None,
                legacy_members: members.iter().map(|m| m.hostname.clone()).collect(),
                members,
            }],
        }))
    }

    type KubeconfigStream = tokio_stream::Once<Result<common::Data, Status>>;

    async fn kubeconfig(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<Self::KubeconfigStream>, Status> {
        self.authorize(&request, ADMIN)?;
        let config = self.control_plane("kubeconfig")?;
        let ca = CertAndKey {
            crt: config.cluster_ca.crt.clone(),
            key: config.cluster_ca.key.clone().unwrap_or_default(),
        };
        let kubeconfig = crate::kube::admin_kubeconfig(
            &config.cluster_name,
            config.endpoint.trim_end_matches('/'),
            &ca,
        )
        .map_err(|e| Status::internal(format!("cannot generate the admin kubeconfig: {e}")))?;
        let archive = tar_gz("kubeconfig", kubeconfig.as_bytes())
            .map_err(|e| Status::internal(format!("cannot pack the kubeconfig: {e}")))?;
        Ok(tonic::Response::new(tokio_stream::once(Ok(common::Data {
            metadata: None,
            bytes: archive,
        }))))
    }

    async fn service_list(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::ServiceListResponse>, Status> {
        self.authorize(&request, READER)?;
        let (config, _, since_ms) = self.normal()?;
        let snapshot = self.snapshot();
        let kubelet_start = self
            .0
            .shared
            .lab
            .durations
            .real_ms(DPhase::KubeletStart, &self.0.ident.hostname);
        let bootstrapped = snapshot.bootstrapped_at(config.cluster_key()).is_some();
        let kubelet_up = snapshot.now_ms >= since_ms + kubelet_start;
        let mut services: BTreeSet<(&str, bool)> = [
            ("apid", true),
            ("containerd", true),
            ("cri", true),
            ("dashboard", true),
            ("kubelet", kubelet_up),
            ("machined", true),
            ("syslogd", true),
            ("udevd", true),
        ]
        .into_iter()
        .collect();
        if config.is_control_plane() {
            services.insert(("etcd", bootstrapped));
            services.insert(("trustd", true));
        }
        let since = timestamp(since_ms);
        let services = services
            .into_iter()
            .map(|(id, running)| {
                let (state, msg) = if running {
                    ("Running", "Health check successful")
                } else if id == "etcd" {
                    ("Preparing", "Waiting for bootstrap")
                } else {
                    ("Preparing", "Running pre state")
                };
                pb::ServiceInfo {
                    id: id.to_owned(),
                    state: state.to_owned(),
                    events: Some(pb::ServiceEvents {
                        events: vec![pb::ServiceEvent {
                            msg: msg.to_owned(),
                            state: state.to_owned(),
                            ts: Some(since),
                        }],
                    }),
                    health: Some(pb::ServiceHealth {
                        unknown: !running,
                        healthy: running,
                        last_message: String::new(),
                        last_change: Some(since),
                    }),
                }
            })
            .collect();
        Ok(tonic::Response::new(pb::ServiceListResponse {
            messages: vec![pb::ServiceList {
                metadata: None,
                services,
            }],
        }))
    }

    async fn version(
        &self,
        request: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::VersionResponse>, Status> {
        self.authorize(&request, READER)?;
        let (config, _, _) = self.normal()?;
        let tag = cluster::talos_tag(config, &self.0.ident.image.version);
        Ok(tonic::Response::new(pb::VersionResponse {
            messages: vec![pb::Version {
                metadata: None,
                version: Some(pb::VersionInfo {
                    tag,
                    sha: "lab".into(),
                    built: String::new(),
                    go_version: "go1.24.11".into(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                }),
                platform: Some(pb::PlatformInfo {
                    name: "metal".into(),
                    mode: "metal".into(),
                }),
                features: Some(pb::FeaturesInfo { rbac: config.rbac }),
            }],
        }))
    }
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A gzip'd tar holding one regular file, as Talos' `Kubeconfig` sends it.
fn tar_gz(name: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(body.len() as u64);
    header.set_mode(0o600);
    header.set_mtime((now_ms() / 1000).max(0) as u64);
    tar.append_data(&mut header, name, body)?;
    tar.into_inner()?.finish()
}

/// A trailers-only gRPC response: HTTP 200, `content-type: application/grpc`, `grpc-status` and
/// `grpc-message` in the (only) header block, no body.
pub(crate) fn status(code: u32, message: &str) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header("grpc-status", code.to_string());
    if !message.is_empty() {
        builder = builder.header("grpc-message", percent_encode(message));
    }
    builder
        .body(Body::empty())
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII except `%` passes through.
fn percent_encode(message: &str) -> String {
    message
        .bytes()
        .map(|b| {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_only_unimplemented() {
        let r = status(code::UNIMPLEMENTED, NOT_IN_MAINTENANCE);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["grpc-message"], NOT_IN_MAINTENANCE);
        assert_eq!(percent_encode("50% ü"), "50%25 %C3%BC");
    }

    use crate::config::LabConfig;
    use crate::state::Lab;
    use crate::world::World;

    fn api(dir: &std::path::Path, mode: NodeMode) -> Api {
        let lab = Arc::new(Lab::new(
            LabConfig::default(),
            dir.to_owned(),
            World::new(214, 0),
            Default::default(),
        ));
        Api(Arc::new(Node {
            ident: NodeIdent {
                server_id: "sv_test".into(),
                hostname: "cp-1".into(),
                ip: Ipv4Addr::new(127, 0, 214, 1),
                image: BootImage {
                    schematic: "0".repeat(64),
                    version: "v1.11.5".into(),
                },
                generation: 0,
            },
            mode,
            shared: Arc::new(Shared {
                lab,
                configs: Default::default(),
            }),
        }))
    }

    fn apply_request(
        mode: ApplyMode,
        data: &str,
        dry_run: bool,
    ) -> tonic::Request<pb::ApplyConfigurationRequest> {
        tonic::Request::new(pb::ApplyConfigurationRequest {
            data: data.as_bytes().to_vec(),
            mode: mode.into(),
            dry_run,
            try_mode_timeout: None,
        })
    }

    #[tokio::test]
    async fn maintenance_mode_refuses_no_reboot_and_staged() {
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path(), NodeMode::Maintenance);
        let config = machine_config::tests::yaml("controlplane", true);
        for (mode, name) in [
            (ApplyMode::NoReboot, "no-reboot"),
            (ApplyMode::Staged, "staged"),
        ] {
            let status = api
                .apply_configuration(apply_request(mode, &config, false))
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unimplemented);
            assert_eq!(
                status.message(),
                format!("apply configuration --mode='{name}' is not supported in maintenance mode")
            );
        }
        // A dry run validates and stores nothing.
        let reply = api
            .apply_configuration(apply_request(ApplyMode::Try, &config, true))
            .await
            .unwrap()
            .into_inner();
        assert!(
            reply.messages[0]
                .mode_details
                .starts_with("Dry run summary:")
        );
        let status = api
            .apply_configuration(apply_request(ApplyMode::Auto, "version: v1alpha1\n", false))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("configuration validation failed: "),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn rbac_reserves_admin_calls_for_os_admin() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = machine_config::tests::yaml("controlplane", true).replace(
            "  nodeLabels:\n",
            "  features:\n    rbac: true\n  nodeLabels:\n",
        );
        let (config, _) = machine_config::parse(yaml.as_bytes()).unwrap();
        assert!(config.rbac);
        let api = api(
            dir.path(),
            NodeMode::Normal {
                config: Arc::new(config),
                applied_at_ms: 0,
                since_ms: 0,
            },
        );
        let as_role = |role: &str| {
            let mut request = tonic::Request::new(pb::BootstrapRequest::default());
            request
                .extensions_mut()
                .insert(PeerRoles(vec![role.to_owned()]));
            request
        };
        let status = api.bootstrap(as_role("os:reader")).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "not authorized");
        let mut version = tonic::Request::new(());
        version
            .extensions_mut()
            .insert(PeerRoles(vec!["os:reader".into()]));
        let reply = api.version(version).await.unwrap().into_inner();
        let info = reply.messages[0].version.clone().unwrap();
        assert_eq!(info.tag, "v1.11.3", "the installer image's tag");
    }

    #[test]
    fn kubeconfig_archive_round_trips() {
        use std::io::Read;
        let archive = tar_gz("kubeconfig", b"apiVersion: v1\n").unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
        let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("kubeconfig"));
        assert_eq!(entry.header().mode().unwrap(), 0o600);
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        assert_eq!(text, "apiVersion: v1\n");
    }
}
