//! Runs the steps in order, persisting the checkpoint around each one.
//!
//! The orchestrator owns the loop and nothing else: which step comes next (the first one not
//! completed), marking it current, running it, recording success or failure, honouring
//! `--stop-after`. What a step does lives in [`crate::steps`]. Because every step records its
//! progress in the checkpoint as it goes, a run may be cut off at any `await` (Ctrl-C drops the
//! future; SIGKILL drops everything) and the next run continues from the checkpoint on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metal::provider::Provider;

use crate::checkpoint::{CheckpointStore, FailureRecord, Interruption, now_rfc3339};
use crate::error::InstallError;
use crate::events::{Approver, Event, Reporter, TOTAL_STEPS};
use crate::step::Step;
use crate::steps::{self, StepContext};

/// How long to wait and how often to look. Defaults suit real hardware; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timings {
    /// First poll interval of a provider wait; it grows towards `poll_max`.
    pub poll_min: Duration,
    /// Longest poll interval of a provider wait.
    pub poll_max: Duration,
    /// How long servers may take to deploy.
    pub servers_ready_timeout: Duration,
    /// How long nodes may take to reach Talos maintenance mode.
    pub maintenance_timeout: Duration,
    /// Timeout of one maintenance probe (connect + TLS + one RPC).
    pub probe_timeout: Duration,
    /// How long a node may take to install Talos and reboot into its config.
    pub install_timeout: Duration,
    /// How long etcd, the Kubernetes API and node registration may take.
    pub kubernetes_timeout: Duration,
    /// Most provider writes in flight at once.
    pub max_parallel_orders: usize,
    /// How long one Helm install Job may take to complete.
    pub helm_timeout: Duration,
    /// How long a workload (DaemonSet, Deployment, StatefulSet) may take to roll out, and the
    /// nodes to turn Ready once the CNI runs.
    pub rollout_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(15),
            servers_ready_timeout: Duration::from_secs(45 * 60),
            maintenance_timeout: Duration::from_secs(45 * 60),
            probe_timeout: Duration::from_secs(5),
            install_timeout: Duration::from_secs(30 * 60),
            kubernetes_timeout: Duration::from_secs(20 * 60),
            max_parallel_orders: 4,
            helm_timeout: Duration::from_secs(15 * 60),
            rollout_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this step (`--stop-after`).
    pub stop_after: Option<Step>,
    /// Waits and intervals.
    pub timings: Timings,
    /// The GitOps repository token (`--gitops-token` / `CTO_GITOPS_TOKEN`), read anew on every
    /// run and never persisted.
    pub gitops_token: Option<crate::spec::GitopsToken>,
    /// `$HOME` of the user running the install, read by the CLI when the run starts:
    /// `~/.kube/config` and `~/.talos/config` live under it. `None` skips the merges (with a
    /// warning) unless `kubeconfig_out` is given.
    pub home: Option<std::path::PathBuf>,
    /// `$KUBECONFIG` as the CLI found it; its first path is merged into instead of
    /// `~/.kube/config`.
    pub kubeconfig_env: Option<String>,
    /// `--kubeconfig-out`: write a standalone kubeconfig there instead of merging.
    pub kubeconfig_out: Option<std::path::PathBuf>,
    /// `--install-lens`: install OpenLens with the platform's package manager (best effort).
    pub install_lens: bool,
}

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// All 22 steps are done.
    Completed,
    /// `--stop-after` reached.
    StoppedAfter(Step),
}

/// One install run over an open checkpoint.
pub struct Orchestrator<P: Provider> {
    provider: Arc<P>,
    store: CheckpointStore,
    reporter: Arc<dyn Reporter>,
    approver: Arc<dyn Approver>,
    options: RunOptions,
}

impl<P: Provider> Orchestrator<P> {
    /// Prepares a run. Nothing happens until [`Orchestrator::run`].
    pub fn new(
        provider: Arc<P>,
        store: CheckpointStore,
        reporter: Arc<dyn Reporter>,
        approver: Arc<dyn Approver>,
        options: RunOptions,
    ) -> Self {
        Orchestrator {
            provider,
            store,
            reporter,
            approver,
            options,
        }
    }

    /// The checkpoint store (read-only view).
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// Runs steps until done, `--stop-after`, or an error. Cancel-safe: dropping the future at
    /// any point leaves a checkpoint from which `--resume` converges.
    pub async fn run(&mut self, resumed: bool) -> Result<RunOutcome, InstallError> {
        let cp = self.store.checkpoint();
        self.reporter.report(Event::RunStarted {
            cluster: cp.spec.cluster_name.clone(),
            state_dir: self.store.dir().display().to_string(),
            resumed,
            next_step: cp.next_step(),
        });
        if cp.interrupted.is_some() {
            self.store.update(|cp| cp.interrupted = None)?;
        }

        loop {
            let Some(step) = self.store.checkpoint().next_step() else {
                return Ok(RunOutcome::Completed);
            };
            if let Some(stop) = self.options.stop_after
                && step > stop
            {
                self.reporter.report(Event::StoppedAfter { step: stop });
                return Ok(RunOutcome::StoppedAfter(stop));
            }
            if !steps::is_implemented(step) {
                return Err(InstallError::NotImplemented {
                    step,
                    number: step.number(),
                    version: env!("CARGO_PKG_VERSION"),
                });
            }

            self.store.update(|cp| cp.current = Some(step))?;
            self.reporter.report(Event::StepStarted {
                step,
                number: step.number(),
                total: TOTAL_STEPS,
            });
            let started = Instant::now();
            let result = {
                let mut ctx = StepContext {
                    step,
                    provider: &self.provider,
                    store: &mut self.store,
                    reporter: self.reporter.as_ref(),
                    approver: self.approver.as_ref(),
                    timings: &self.options.timings,
                    gitops_token: self.options.gitops_token.as_ref(),
                    options: &self.options,
                };
                steps::run(step, &mut ctx).await
            };
            match result {
                Ok(()) => {
                    self.store.update(|cp| {
                        if !cp.completed.contains(&step) {
                            cp.completed.push(step);
                        }
                        cp.current = None;
                        if cp.last_error.as_ref().is_some_and(|e| e.step == step) {
                            cp.last_error = None;
                        }
                    })?;
                    self.reporter.report(Event::StepFinished {
                        step,
                        number: step.number(),
                        elapsed_s: started.elapsed().as_secs_f64(),
                    });
                }
                Err(err) => {
                    let err = err.into_install_error(step);
                    let message = err.to_string();
                    self.store.update(|cp| {
                        cp.last_error = Some(FailureRecord {
                            step,
                            message,
                            at: now_rfc3339(),
                        })
                    })?;
                    return Err(err);
                }
            }
        }
    }

    /// Records that the run was interrupted (Ctrl-C) in the step that was running. Called after
    /// the [`Orchestrator::run`] future was dropped.
    pub fn record_interruption(&mut self) -> Result<Option<Step>, InstallError> {
        let step = self.store.checkpoint().current;
        self.store.update(|cp| {
            cp.interrupted = Some(Interruption {
                step,
                at: now_rfc3339(),
            })
        })?;
        Ok(step)
    }

    /// Gives the store back (releasing the lock when dropped).
    pub fn into_store(self) -> CheckpointStore {
        self.store
    }
}
