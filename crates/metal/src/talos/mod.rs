//! The Talos side of a machine, before it has a configuration.
//!
//! * [`image_factory`] — Image Factory schematics and the URLs a server boots from: the schematic
//!   ID is computed offline exactly as the factory computes it (`sha256` of the schematic as Go's
//!   `yaml.v3` marshals it), and the iPXE, kernel, initramfs and installer-image references are
//!   built from it. Talos versions are validated here (v1.10.x and v1.11.x are supported).
//! * [`maintenance`] — the probe that tells whether a node's Talos API on port 50000 is in
//!   maintenance mode (TLS with an ephemeral certificate, no client certificate, ALPN `h2`, and
//!   `MachineService/Version` answering gRPC `Unimplemented`), already installed (mutual TLS), not
//!   listening yet, or something else.
//! * [`proto`] — the Talos gRPC API subset (generated prost messages, tonic clients and server
//!   traits for `machine`, `cluster`, `common`).
//! * [`client`] — [`client::TalosClient`], the gRPC client of one node's API: maintenance mode
//!   (TLS without verification, SPKI fingerprint logged) and normal mode (mutual TLS with a
//!   talosconfig); `ApplyConfiguration`, `Version`, `ServiceList`, `EtcdMemberList`, `Bootstrap`
//!   (retried, idempotent) and `Kubeconfig`.
//!
//! * [`config`] — the machine configurations (`v1alpha1`, control plane and worker) rendered from
//!   the secrets bundle as `talosctl gen config` writes them, and `--config-patch` patches.
//! * [`secrets`] — the cluster's secrets bundle ([`SecretsBundle`]): generated as
//!   `talosctl gen secrets` does, written and read as `secrets.yaml` byte for byte.
//! * [`pki`] — certificates and keys in Talos' formats and PEM labels: CAs, leaves signed by them
//!   ([`pki::issue`]), conversion to rustls types, SPKI fingerprints.
//! * [`talosconfig`] — the admin talosconfig ([`admin_talosconfig`]), its YAML, and merging it
//!   into an existing `~/.talos/config`.
//!
//! Everything a caller needs is re-exported here.

pub mod client;
pub mod config;
mod goyaml;
pub mod image_factory;
pub mod maintenance;
pub mod pki;
pub mod proto;
pub mod secrets;
pub mod talosconfig;

pub use client::DiskInfo;
pub use client::{
    ApplyMode, ApplyReport, BootstrapOutcome, BootstrapRetry, TalosClient, TalosClientError,
};
pub use config::{
    BootstrapConfig, ConfigPatch, DEFAULT_KUBERNETES_VERSION, MachineType, PatchTarget,
    default_kubernetes_version,
};
pub use image_factory::{
    DEFAULT_FACTORY_URL, DEFAULT_PXE_URL, DEFAULT_TALOS_VERSION, ImageFactory, Schematic,
    TalosVersion, parse_talos_version,
};
pub use maintenance::{ProbeOutcome, probe, spki_fingerprint};
pub use pki::{KeyKind, LeafRequest};
pub use secrets::{CertAndKey, SecretsBundle};
pub use talosconfig::{Talosconfig, admin_talosconfig};

/// Errors of the Talos helpers: invalid input, never I/O (the probe reports its findings as a
/// [`ProbeOutcome`] instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TalosError {
    /// A part of this module that is still being written.
    #[error("{0} is not implemented yet")]
    Unimplemented(&'static str),
    /// The Talos version string is not of the form `vMAJOR.MINOR.PATCH[-PRERELEASE]`.
    #[error(
        "invalid Talos version {value:?}: {reason}; expected vMAJOR.MINOR.PATCH such as {example}",
        example = DEFAULT_TALOS_VERSION
    )]
    InvalidTalosVersion {
        /// The rejected input.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Talos version is well formed but outside the supported range.
    #[error(
        "Talos version {value} is not supported: supported versions are v1.10.x and v1.11.x \
         (default {default})",
        default = DEFAULT_TALOS_VERSION
    )]
    UnsupportedTalosVersion {
        /// The rejected version.
        value: String,
    },
    /// A schematic value that this encoder cannot reproduce byte for byte as Go's `yaml.v3`
    /// would, so the schematic ID computed offline could differ from the factory's.
    #[error("schematic {field} entry {value:?} is not supported: {reason}")]
    UnsupportedSchematicValue {
        /// The schematic field (`extraKernelArgs` or `officialExtensions`).
        field: &'static str,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A certificate that could not be parsed as X.509 DER.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// The parser's complaint.
        reason: String,
    },
    /// A private key that could not be parsed (unknown PEM label, bad DER, unsupported algorithm,
    /// or a key that does not match its certificate).
    #[error("invalid private key: {reason}")]
    InvalidPrivateKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A key or certificate could not be generated or signed.
    #[error("could not generate a certificate or key: {reason}")]
    CertificateGeneration {
        /// What failed.
        reason: String,
    },
    /// A `secrets.yaml` that is not valid YAML, or fails Talos' own validation.
    #[error("invalid secrets bundle: {reason}")]
    InvalidSecretsBundle {
        /// Every problem found, separated by `; `.
        reason: String,
    },
    /// A talosconfig file that cannot be read or produced.
    #[error("invalid talosconfig: {reason}")]
    InvalidTalosconfig {
        /// What is wrong with it.
        reason: String,
    },
    /// A config patch (`--config-patch`) that cannot be used: not valid YAML, not a single
    /// mapping, an unknown or forbidden key, a change of `machine.type`, or a value whose shape
    /// conflicts with the configuration. `origin` names the patch (the field cannot be called
    /// `source`: thiserror reserves that name for the error's cause).
    #[error("config patch {origin}, line {line}, column {column}: {reason}")]
    InvalidConfigPatch {
        /// The patch's name, usually its file path.
        origin: String,
        /// The 1-based line in the patch.
        line: u64,
        /// The 1-based column in the patch.
        column: u64,
        /// What is wrong.
        reason: String,
    },
    /// A machine-configuration setting, or a configuration after patches, that Talos would
    /// refuse.
    #[error("invalid machine configuration: {field}: {reason}")]
    InvalidMachineConfig {
        /// The setting (`install disk`, `pod CIDR`, …) or `configuration`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Kubernetes version the chosen Talos version does not support.
    #[error("Kubernetes {kubernetes} is not supported by Talos {talos}: use {supported}")]
    UnsupportedKubernetesVersion {
        /// The requested Kubernetes version.
        kubernetes: String,
        /// The Talos version.
        talos: String,
        /// The supported range, such as `1.29.x to 1.34.x`.
        supported: String,
    },
}
