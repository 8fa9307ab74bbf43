//! `installer` owns the install: the 22 [`step::Step`]s, the persisted
//! [`checkpoint::Checkpoint`] and its [`checkpoint::CheckpointStore`], the validated
//! [`spec::ClusterSpec`], and the [`orchestrator::Orchestrator`] that runs the steps.
//!
//! It talks to machines only through [`metal::provider::Provider`] and to people only through
//! [`events::Reporter`] and [`events::Approver`]: it never speaks HTTP to a provider itself and
//! never prints.

pub mod checkpoint;
pub mod cluster_api;
pub mod error;
pub mod events;
pub mod gitops_source;
pub mod health;
pub mod kubeconfig_merge;
pub mod orchestrator;
pub mod ownership;
mod poll;
pub mod spec;
pub mod step;
mod steps;
pub mod storage_plan;
pub mod vault;
pub mod vault_tls;

pub use error::{ErrorClass, InstallError, StepError};
pub use orchestrator::{Orchestrator, RunOptions, RunOutcome, Timings};
pub use spec::{ClusterSpec, InstallRequest};
pub use step::Step;
pub use steps::{CONTROLPLANE_FILE, KUBECONFIG_FILE, SECRETS_FILE, TALOSCONFIG_FILE, WORKER_FILE};
pub use steps::{STORAGE_CLASS, summary_of};
