//! The Talos gRPC API as Rust types: prost messages, tonic clients and tonic server traits,
//! generated at build time from the subset in `crates/metal/proto/` (upstream package, service,
//! message names and field numbers of siderolabs/talos v1.11, so the wire format is Talos' own).
//!
//! * [`machine`] — `machine.MachineService`: `ApplyConfiguration`, `Bootstrap`,
//!   `EtcdMemberList`, `Kubeconfig`, `ServiceList`, `Version`.
//! * [`cluster`] — `cluster.ClusterService/HealthCheck`.
//! * [`storage`] — `storage.StorageService/Disks` (the node's block devices).
//! * [`common`] — `common.Metadata` (per-node hostname and error) and `common.Data`.
//! * [`google::rpc`] — `google.rpc.Status`, nested in `common.Metadata`.
//!
//! `talos::client` uses the clients; the lab implements the server traits.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `common`.
pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common.rs"));
}

/// Package `machine`.
pub mod machine {
    include!(concat!(env!("OUT_DIR"), "/machine.rs"));
}

/// Package `cluster`.
pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/cluster.rs"));
}

/// Package `storage`: `storage.StorageService/Disks`.
pub mod storage {
    include!(concat!(env!("OUT_DIR"), "/storage.rs"));
}

/// Vendored Google packages.
pub mod google {
    /// Package `google.rpc`.
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
