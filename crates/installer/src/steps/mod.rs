//! What each step does. One module per group of steps; each step is an `async fn` over a
//! [`StepContext`] that records its progress in the checkpoint as it goes, so that running it
//! again — after success, after an error, or after the process was killed inside it — converges
//! instead of repeating billable work.

pub(crate) mod disks;
mod gitops;
mod infrastructure;
mod maintenance;
mod platform;
pub(crate) mod post_install;
mod prerequisites;
pub(crate) mod talos_bootstrap;

pub(crate) use gitops::application_problem;
pub(crate) use platform::{daemonset_verdict, node_ready};
pub(crate) use post_install::pools_verdict;
pub use post_install::{STORAGE_CLASS, summary_of};
pub(crate) use talos_bootstrap::WorkerPrefetch;
pub use talos_bootstrap::{
    CONTROLPLANE_FILE, KUBECONFIG_FILE, SECRETS_FILE, TALOSCONFIG_FILE, WORKER_FILE,
};

use std::sync::Arc;

use metal::provider::Provider;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore};
use crate::error::{InstallError, StepError};
use crate::events::{Approver, Event, Reporter};
use crate::orchestrator::Timings;
use crate::spec::Role;
use crate::step::Step;

/// Everything a step may use.
pub(crate) struct StepContext<'a, P: Provider> {
    pub step: Step,
    pub provider: &'a Arc<P>,
    pub store: &'a mut CheckpointStore,
    pub reporter: &'a dyn Reporter,
    pub approver: &'a dyn Approver,
    pub timings: &'a Timings,
    pub gitops_token: Option<&'a crate::spec::GitopsToken>,
    pub options: &'a crate::orchestrator::RunOptions,
    /// Workers whose config this run's early task (started after ApplyingCPConfig) applied;
    /// ApplyingWorkerConfig records them without another call. Empty otherwise.
    pub early_applied: &'a [String],
    /// A secrets bundle generated in the background since the run started (GeneratingConfigs
    /// only, and only when none existed); the step persists it as if it had generated it.
    pub pregenerated_secrets: Option<metal::talos::secrets::SecretsBundle>,
}

impl<P: Provider> StepContext<'_, P> {
    pub fn checkpoint(&self) -> &Checkpoint {
        self.store.checkpoint()
    }

    pub fn update<R>(
        &mut self,
        change: impl FnOnce(&mut Checkpoint) -> R,
    ) -> Result<R, CheckpointError> {
        self.store.update(change)
    }

    pub fn progress(&self, message: impl Into<String>) {
        self.reporter.report(Event::Progress {
            step: self.step,
            message: message.into(),
        });
    }

    pub fn node_status(&self, hostname: &str, status: impl Into<String>, detail: Option<String>) {
        self.reporter.report(Event::NodeStatus {
            step: self.step,
            hostname: hostname.to_owned(),
            status: status.into(),
            detail,
        });
    }

    pub fn warn(&self, message: impl Into<String>) {
        self.reporter.report(Event::Warning {
            message: message.into(),
        });
    }
}

/// How a step can fail.
#[derive(Debug)]
pub(crate) enum StepFailure {
    /// A prerequisite is unmet; nothing was ordered.
    Prerequisite(String),
    /// Ordering needs a confirmation nobody can give.
    NeedsConfirmation { servers: usize, hourly: f64 },
    /// The user declined.
    Declined,
    /// Anything else.
    Failed(StepError),
}

impl From<StepError> for StepFailure {
    fn from(e: StepError) -> Self {
        StepFailure::Failed(e)
    }
}

impl From<CheckpointError> for StepFailure {
    fn from(e: CheckpointError) -> Self {
        StepFailure::Failed(StepError::Checkpoint(e))
    }
}

impl StepFailure {
    pub fn into_install_error(self, step: Step) -> InstallError {
        match self {
            StepFailure::Prerequisite(message) => InstallError::Prerequisite { message },
            StepFailure::NeedsConfirmation { servers, hourly } => {
                InstallError::NeedsConfirmation { servers, hourly }
            }
            StepFailure::Declined => InstallError::Declined,
            StepFailure::Failed(StepError::Checkpoint(e)) => InstallError::Checkpoint(e),
            StepFailure::Failed(source) => InstallError::Step {
                step,
                number: step.number(),
                source,
            },
        }
    }
}

pub(crate) type StepResult = Result<(), StepFailure>;

/// True for the steps this build implements.
pub(crate) fn is_implemented(step: Step) -> bool {
    step <= Step::Complete
}

/// Runs one step.
pub(crate) async fn run<P: Provider>(step: Step, ctx: &mut StepContext<'_, P>) -> StepResult {
    match step {
        Step::ValidatingPrerequisites => prerequisites::validating_prerequisites(ctx).await,
        Step::CreatingServers => infrastructure::creating_servers(ctx).await,
        Step::WaitingServersReady => infrastructure::waiting_servers_ready(ctx).await,
        Step::BootingTalos => infrastructure::booting_talos(ctx).await,
        Step::WaitingTalosMaintenance => maintenance::waiting_talos_maintenance(ctx).await,
        Step::GeneratingConfigs => talos_bootstrap::generating_configs(ctx).await,
        Step::ApplyingCPConfig => talos_bootstrap::applying_configs(ctx, Role::ControlPlane).await,
        Step::WaitingCPInstall => talos_bootstrap::waiting_installed(ctx, Role::ControlPlane).await,
        Step::Bootstrapping => talos_bootstrap::bootstrapping(ctx).await,
        Step::WaitingKubernetes => talos_bootstrap::waiting_kubernetes(ctx).await,
        Step::ApplyingWorkerConfig => talos_bootstrap::applying_configs(ctx, Role::Worker).await,
        Step::WaitingWorkerJoin => talos_bootstrap::waiting_worker_join(ctx).await,
        Step::DeployingCilium => platform::deploying_cilium(ctx).await,
        Step::DeployingBootstrapResources => platform::deploying_bootstrap_resources(ctx).await,
        Step::DeployingLocalPathProvisioner => {
            platform::deploying_local_path_provisioner(ctx).await
        }
        Step::DeployingArgoCD => platform::deploying_argocd(ctx).await,
        Step::WaitingArgoCDReady => gitops::waiting_argocd_ready(ctx).await,
        Step::ApplyingAppOfApps => gitops::applying_app_of_apps(ctx).await,
        Step::WaitingGitOpsSync => gitops::waiting_gitops_sync(ctx).await,
        Step::ConfiguringStorage => post_install::configuring_storage(ctx).await,
        Step::ConfiguringKubeconfig => post_install::configuring_kubeconfig(ctx).await,
        Step::Complete => post_install::complete(ctx).await,
    }
}
