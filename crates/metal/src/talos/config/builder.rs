//! [`BootstrapConfig`]: what the installer knows about the cluster, turned into the machine
//! configuration of each role.

use std::net::IpAddr;

use super::patch::ConfigPatch;
use super::{
    CONTROL_PLANE_PORT, DEFAULT_HUGEPAGES, DEFAULT_INSTALL_DISK, DEFAULT_POD_CIDR,
    DEFAULT_SERVICE_CIDR, MachineType, PatchTarget, default_kubernetes_version, render,
};
use crate::talos::secrets::SecretsBundle;
use crate::talos::{TalosError, TalosVersion};

/// The settings of a cluster's machine configurations; [`render`](Self::render) produces the
/// `v1alpha1` document of either role, as `talosctl gen config` would with the same options.
///
/// Setters take and return `self`; none of them fails. Inputs are checked when rendering, where
/// a bad one is a [`TalosError::InvalidMachineConfig`] (or
/// [`TalosError::UnsupportedKubernetesVersion`], or [`TalosError::InvalidConfigPatch`] for a
/// patch that does not apply).
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    pub(super) cluster_name: String,
    pub(super) endpoint_ip: IpAddr,
    pub(super) talos_version: TalosVersion,
    pub(super) kubernetes_version: Option<String>,
    pub(super) install_disk: String,
    pub(super) installer_image: Option<String>,
    pub(super) pod_cidr: String,
    pub(super) service_cidr: String,
    pub(super) cert_sans: Vec<String>,
    pub(super) hugepages: Option<u32>,
    pub(super) mayastor: bool,
    pub(super) allow_scheduling_on_control_planes: bool,
    pub(super) patches: Vec<(PatchTarget, ConfigPatch)>,
}

impl BootstrapConfig {
    /// The configuration of cluster `cluster_name` whose Kubernetes API is reached at
    /// `https://<endpoint_ip>:6443` (IPv6 in brackets), with talosctl's defaults: the default
    /// Talos version ([`TalosVersion::default`]) and the Kubernetes version it ships with,
    /// install disk [`DEFAULT_INSTALL_DISK`], the stock installer image of that Talos version,
    /// pod and service subnets [`DEFAULT_POD_CIDR`] and [`DEFAULT_SERVICE_CIDR`], no extra
    /// certificate SANs, no hugepages, flannel and kube-proxy, and control planes that do not run
    /// workloads.
    pub fn new(cluster_name: &str, endpoint_ip: IpAddr) -> Self {
        Self {
            cluster_name: cluster_name.to_owned(),
            endpoint_ip,
            talos_version: TalosVersion::default(),
            kubernetes_version: None,
            install_disk: DEFAULT_INSTALL_DISK.to_owned(),
            installer_image: None,
            pod_cidr: DEFAULT_POD_CIDR.to_owned(),
            service_cidr: DEFAULT_SERVICE_CIDR.to_owned(),
            cert_sans: Vec::new(),
            hugepages: None,
            mayastor: false,
            allow_scheduling_on_control_planes: false,
            patches: Vec::new(),
        }
    }

    /// Reserves [`DEFAULT_HUGEPAGES`] (1024) 2 MiB hugepages on every machine
    /// (`machine.sysctls."vm.nr_hugepages": "1024"`), what Mayastor's io-engine needs.
    pub fn with_hugepages(self) -> Self {
        self.with_hugepages_count(DEFAULT_HUGEPAGES)
    }

    /// Reserves `n` 2 MiB hugepages on every machine; 0 reserves none (no sysctl is written).
    pub fn with_hugepages_count(mut self, n: u32) -> Self {
        self.hugepages = Some(n);
        self
    }

    /// Prepares the cluster for Cilium as kube-proxy replacement and for OpenEBS Mayastor:
    ///
    /// * `cluster.network.cni.name: none` (every machine) and `cluster.proxy.disabled: true`
    ///   (control planes; workers have no `proxy` section): Cilium is installed after bootstrap
    ///   and replaces kube-proxy, reaching the API through KubePrism (`localhost:7445`);
    /// * hugepages, [`DEFAULT_HUGEPAGES`] unless a count was already set
    ///   ([`with_hugepages_count`](Self::with_hugepages_count) wins whichever comes first);
    /// * the node label `openebs.io/engine: mayastor` (the io-engine DaemonSet's selector) and
    ///   the kubelet bind mount of `/var/local` (`bind`, `rshared`, `rw`), on every machine;
    /// * on control planes, [`MAYASTOR_NAMESPACE`](super::MAYASTOR_NAMESPACE) added to the
    ///   PodSecurity admission exemptions (beside `kube-system`; the `baseline` defaults stay).
    ///
    /// `nvme_tcp` is built into the Talos kernel, so no kernel module is configured.
    pub fn with_mayastor_ready(mut self) -> Self {
        self.mayastor = true;
        self.hugepages.get_or_insert(DEFAULT_HUGEPAGES);
        self
    }

    /// The pod subnet (`cluster.network.podSubnets`), such as `10.244.0.0/16`.
    pub fn with_pod_cidr(mut self, cidr: &str) -> Self {
        cidr.clone_into(&mut self.pod_cidr);
        self
    }

    /// The service subnet (`cluster.network.serviceSubnets`), such as `10.96.0.0/12`.
    pub fn with_service_cidr(mut self, cidr: &str) -> Self {
        cidr.clone_into(&mut self.service_cidr);
        self
    }

    /// The disk Talos installs to (`machine.install.disk`), such as `/dev/nvme0n1`.
    pub fn with_install_disk(mut self, disk: &str) -> Self {
        disk.clone_into(&mut self.install_disk);
        self
    }

    /// The installer image (`machine.install.image`), normally the Image Factory's
    /// `factory.talos.dev/metal-installer/<schematic>:<version>`
    /// ([`ImageFactory::installer_image`](crate::talos::ImageFactory::installer_image)).
    pub fn with_installer_image(mut self, image: &str) -> Self {
        self.installer_image = Some(image.to_owned());
        self
    }

    /// Extra subject alternative names, normally every node's public IP: written to
    /// `machine.certSANs` (the Talos API certificate) and, after the endpoint's address, to
    /// `cluster.apiServer.certSANs` (the Kubernetes API certificate). Replaces earlier ones.
    pub fn with_cert_sans(mut self, sans: Vec<String>) -> Self {
        self.cert_sans = sans;
        self
    }

    /// The Talos version the machines run. `talosctl gen config` of v1.10 and v1.11 generates the
    /// same document; the version chooses the default Kubernetes version
    /// ([`default_kubernetes_version`]), the supported Kubernetes range (1.28–1.33 for v1.10,
    /// 1.29–1.34 for v1.11) and the default installer image tag.
    pub fn with_talos_version(mut self, v: &TalosVersion) -> Self {
        self.talos_version = v.clone();
        self
    }

    /// The Kubernetes version, `1.34.1` or `v1.34.1`; by default the one the Talos version's
    /// talosctl defaults to ([`default_kubernetes_version`]).
    pub fn with_kubernetes_version(mut self, v: &str) -> Self {
        self.kubernetes_version = Some(v.to_owned());
        self
    }

    /// Whether control planes run workloads (`cluster.allowSchedulingOnControlPlanes: true` in
    /// control-plane configurations; talosctl writes nothing when it is false).
    pub fn with_allow_scheduling_on_control_planes(mut self, yes: bool) -> Self {
        self.allow_scheduling_on_control_planes = yes;
        self
    }

    /// Adds strategic-merge patches for the machines of `target`. When rendering, the
    /// [`PatchTarget::All`] patches are applied first, then those of the machine's role, each
    /// group in the order the patches were added.
    pub fn with_patches(mut self, target: PatchTarget, patches: Vec<ConfigPatch>) -> Self {
        self.patches
            .extend(patches.into_iter().map(|patch| (target, patch)));
        self
    }

    /// The `v1alpha1` machine configuration of a machine of type `machine_type`, as YAML text:
    /// the generated document, then the patches, with keys in Talos' order. The result passes the
    /// checks Talos makes when a configuration is applied (role-specific CA keys, CNI, install
    /// disk, `persist`).
    pub fn render(
        &self,
        secrets: &SecretsBundle,
        machine_type: MachineType,
    ) -> Result<String, TalosError> {
        render::render(self, secrets, machine_type)
    }

    /// The cluster name.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// The control-plane endpoint, `https://<ip>:6443` (`https://[<ipv6>]:6443`).
    pub fn endpoint(&self) -> String {
        match self.endpoint_ip {
            IpAddr::V4(ip) => format!("https://{ip}:{CONTROL_PLANE_PORT}"),
            IpAddr::V6(ip) => format!("https://[{ip}]:{CONTROL_PLANE_PORT}"),
        }
    }

    /// The Talos version.
    pub fn talos_version(&self) -> &TalosVersion {
        &self.talos_version
    }

    /// The Kubernetes version as given, or the Talos version's default (without a leading `v`).
    pub fn kubernetes_version(&self) -> String {
        self.kubernetes_version
            .clone()
            .unwrap_or_else(|| default_kubernetes_version(&self.talos_version).to_owned())
    }

    /// The installer image as given, or talosctl's default
    /// `ghcr.io/siderolabs/installer:<talos version>`.
    pub fn installer_image(&self) -> String {
        self.installer_image
            .clone()
            .unwrap_or_else(|| format!("ghcr.io/siderolabs/installer:{}", self.talos_version))
    }
}
