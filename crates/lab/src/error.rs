//! The errors the lab reports to whoever starts it: bad configuration, an unreadable or corrupt
//! world file, a port that cannot be bound. Every message names the file or address involved.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the lab could not start, load, or save its world.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The configuration file could not be read.
    #[error("cannot read lab config {}: {source}", path.display())]
    ReadConfig {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration file is not valid JSON for [`crate::LabConfig`].
    #[error("cannot parse lab config {}: {source}", path.display())]
    ParseConfig {
        /// The configuration file.
        path: PathBuf,
        /// The JSON error (it names the line, column and offending key).
        source: serde_json::Error,
    },
    /// The configuration parsed but a value is out of range.
    #[error("invalid lab config{}: {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    InvalidConfig {
        /// The configuration file, when the configuration came from one.
        path: Option<PathBuf>,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The state directory could not be created or used.
    #[error("cannot use lab state directory {}: {source}", path.display())]
    StateDir {
        /// The state directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `world.json` exists but could not be read.
    #[error("cannot read lab world {}: {source}", path.display())]
    ReadWorld {
        /// The world file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `world.json` is corrupt or was written by an incompatible lab.
    #[error("lab world {} is corrupt or from another version ({reason}); move it away to start a fresh world", path.display())]
    CorruptWorld {
        /// The world file.
        path: PathBuf,
        /// What could not be understood.
        reason: String,
    },
    /// `world.json` could not be written.
    #[error("cannot write lab world {}: {source}", path.display())]
    WriteWorld {
        /// The world file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP API could not listen on the requested address.
    #[error("cannot listen on {addr} for the lab API: {source}")]
    Bind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The lab's Kubernetes API server could not listen on its address.
    #[error("cannot listen on {addr} for the lab's Kubernetes API: {source}")]
    KubeBind {
        /// The requested address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key of the lab's Kubernetes API could not be loaded or issued (the
    /// cluster CA is not a usable PEM certificate and key, a SAN is not a valid name, ...).
    #[error("lab Kubernetes API certificates: {reason}")]
    KubePki {
        /// What went wrong.
        reason: String,
    },
    /// The socket that claims an address block could not be bound for a reason other than
    /// another lab holding it (see the `blocks` module).
    #[error("cannot claim lab address block with a socket on {addr}: {source}")]
    ClaimBlock {
        /// The claim address, `127.0.<block>.0:50000`.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Every address block `127.0.1.0/24..=127.0.255.0/24` is held by another running lab.
    #[error(
        "every lab address block (127.0.1.0/24 to 127.0.255.0/24) is held by another running lab; stop one"
    )]
    NoFreeBlock,
    /// The world's servers live in a block another running lab holds.
    #[error("the servers of lab world {} live in 127.0.{block}.0/24, which another running lab holds (its claim socket {}:{} is bound); stop that lab, or start this one with another state directory", path.display(), std::net::Ipv4Addr::new(127, 0, *block, 0), crate::talos::TALOS_API_PORT)]
    BlockTaken {
        /// The world file.
        path: PathBuf,
        /// The block.
        block: u8,
    },
}
