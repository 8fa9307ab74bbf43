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
//!
//! Everything a caller needs is re-exported here.

pub mod image_factory;
pub mod maintenance;

pub use image_factory::{
    DEFAULT_FACTORY_URL, DEFAULT_PXE_URL, DEFAULT_TALOS_VERSION, ImageFactory, Schematic,
    TalosVersion, parse_talos_version,
};
pub use maintenance::{ProbeOutcome, probe, spki_fingerprint};

/// Errors of the Talos helpers: invalid input, never I/O (the probe reports its findings as a
/// [`ProbeOutcome`] instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TalosError {
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
}
