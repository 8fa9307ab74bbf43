//! Talos machine configurations: the `v1alpha1` document each machine receives through
//! `ApplyConfiguration`, generated natively instead of by `talosctl gen config`.
//!
//! This module owns:
//!
//! * [`BootstrapConfig`] — the cluster's settings (name, endpoint, versions, install disk and
//!   installer image, subnets, certificate SANs, hugepages, Cilium/Mayastor readiness, scheduling
//!   on control planes, patches) and [`BootstrapConfig::render`], which writes the control-plane
//!   or worker document from a [`SecretsBundle`](crate::talos::SecretsBundle) exactly as
//!   `talosctl gen config` lays it out (v1.10 and v1.11 generate the same layout): same keys,
//!   same values, Go struct order, `yaml.v3` scalar styles, 4-space indentation. Workers get the
//!   OS and Kubernetes CA certificates without their keys and none of the control-plane sections
//!   (secretbox secret, aggregator CA, service-account key, API server, controller manager,
//!   scheduler, proxy, etcd).
//! * [`ConfigPatch`] — strategic-merge patches (`cto install --config-patch @file`), parsed with
//!   line and column in every error and merged with talosctl's rules (documented on
//!   [`ConfigPatch`]).
//! * The defaults talosctl uses ([`DEFAULT_KUBERNETES_VERSION`], [`DEFAULT_INSTALL_DISK`], …) and
//!   the Kubernetes version each Talos release defaults to ([`default_kubernetes_version`]).
//!
//! The schema Talos publishes for v1.11 does not list the top-level `persist` key, yet
//! `talosctl gen config` writes `persist: true` and Talos refuses `persist: false`; we write it
//! as talosctl does, and the tests validate against the schema with `persist` added.

mod builder;
mod node;
mod patch;
mod render;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

pub use builder::BootstrapConfig;
pub use patch::{
    ConfigPatch, MAX_EXPANDED_NODES, MAX_EXPANDED_SCALAR_BYTES, MAX_PATCH_BYTES, MAX_PATCH_DEPTH,
    read_patch_file,
};

use crate::talos::TalosVersion;

/// The Kubernetes version `talosctl gen config` v1.11.2 to v1.11.6 defaults to, and so the one
/// [`BootstrapConfig`] uses with the default Talos version (v1.11.5).
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.34.1";

/// talosctl's default install disk.
pub const DEFAULT_INSTALL_DISK: &str = "/dev/sda";

/// talosctl's default pod subnet.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";

/// talosctl's default service subnet.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

/// The number of 2 MiB hugepages [`BootstrapConfig::with_hugepages`] reserves (2 GiB, Mayastor's
/// minimum for its io-engine).
pub const DEFAULT_HUGEPAGES: u32 = 1024;

/// The port of KubePrism, the local load balancer to the Kubernetes API on every machine
/// (`machine.features.kubePrism`); Cilium's `k8sServicePort`.
pub const KUBEPRISM_PORT: u16 = 7445;

/// The port of the Kubernetes API at the control-plane endpoint.
pub const CONTROL_PLANE_PORT: u16 = 6443;

/// The namespace OpenEBS Mayastor is installed into, exempted from the PodSecurity admission
/// by [`BootstrapConfig::with_mayastor_ready`].
pub const MAYASTOR_NAMESPACE: &str = "openebs";

/// The role of a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    /// A control-plane node (`machine.type: controlplane`): etcd, the Kubernetes control plane,
    /// trustd and the Talos API's CA key.
    ControlPlane,
    /// A worker node (`machine.type: worker`).
    Worker,
}

impl MachineType {
    /// The `machine.type` value: `controlplane` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControlPlane => "controlplane",
            Self::Worker => "worker",
        }
    }

    fn patch_target(self) -> PatchTarget {
        match self {
            Self::ControlPlane => PatchTarget::ControlPlane,
            Self::Worker => PatchTarget::Worker,
        }
    }
}

impl fmt::Display for MachineType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which machines a [`ConfigPatch`] is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchTarget {
    /// Every machine (`--config-patch`); applied before the role-specific patches.
    All,
    /// Control planes only (`--config-patch-control-plane`).
    ControlPlane,
    /// Workers only (`--config-patch-worker`).
    Worker,
}

impl PatchTarget {
    /// Whether patches for this target are applied to a machine of type `machine_type`.
    pub fn applies_to(self, machine_type: MachineType) -> bool {
        self == Self::All || self == machine_type.patch_target()
    }
}

/// The Kubernetes version `talosctl gen config` of `talos` defaults to
/// (`constants.DefaultKubernetesVersion` of each release; a patch release newer than we know
/// gets the newest default of its minor version).
pub fn default_kubernetes_version(talos: &TalosVersion) -> &'static str {
    match (talos.minor(), talos.patch()) {
        (10, 0..=2) => "1.33.0",
        (10, 3..=4) => "1.33.1",
        (10, 5) => "1.33.2",
        (10, 6) => "1.33.3",
        (10, 7) => "1.33.4",
        (10, _) => "1.33.6",
        (11, 0..=1) => "1.34.0",
        _ => DEFAULT_KUBERNETES_VERSION,
    }
}

/// The Kubernetes 1.x minor versions a Talos release supports
/// (`pkg/machinery/compatibility`): 28–33 for v1.10, 29–34 for v1.11.
fn supported_kubernetes_minors(talos: &TalosVersion) -> RangeInclusive<u64> {
    match talos.minor() {
        10 => 28..=33,
        _ => 29..=34,
    }
}
