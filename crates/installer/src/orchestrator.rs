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
use tokio::task::JoinSet;

use crate::checkpoint::{CheckpointStore, FailureRecord, Interruption, now_rfc3339};
use crate::error::InstallError;
use crate::events::{Approver, Event, Reporter, TOTAL_STEPS};
use crate::step::Step;
use crate::steps::{self, StepContext};

/// How long to wait and how often to look. Defaults suit real hardware; tests shorten them, and
/// [`Timings::scaled`] moves all of them into a lab's scaled time.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Shortest poll interval of a wait: a provider listing when a status change is due (see
    /// `poll`), a Talos probe of a node whose provider status may lag.
    pub poll_min: Duration,
    /// Longest poll interval of a provider wait (when nothing can change yet).
    pub poll_max: Duration,
    /// How long servers may take to deploy.
    pub servers_ready_timeout: Duration,
    /// How long nodes may take to reach Talos maintenance mode.
    pub maintenance_timeout: Duration,
    /// Timeout of one maintenance probe (connect + TLS + one RPC). Scaled with a real floor
    /// ([`MIN_PROBE_TIMEOUT`]): loopback latency does not shrink with modelled time.
    pub probe_timeout: Duration,
    /// How long a node may take to install Talos and reboot into its config.
    pub install_timeout: Duration,
    /// How long etcd, the Kubernetes API and node registration may take.
    pub kubernetes_timeout: Duration,
    /// Most provider writes in flight at once. Orders are paced by the client's write limiter
    /// (20 a minute): 4 in flight already carry far more than 20 a minute at any plausible
    /// request latency, so the limiter, not this bound, decides the pace.
    pub max_parallel_orders: usize,
    /// Most per-node operations (probes, Talos calls) in flight at once.
    pub max_parallel_nodes: usize,
    /// Sequential-baseline mode: when `Some(d)`, every provider and Talos wait polls at exactly
    /// `d`, without adaptation or read-budget floor. [`Timings::scaled`] scales it like the
    /// other clocks.
    pub fixed_poll: Option<Duration>,
    /// Sequential-baseline mode (benchmark only, `CTO_BASELINE=sequential`): one node at a
    /// time, each action followed by its wait, and no early worker configs. See
    /// docs/state-machine.md, "Sequential baseline".
    pub sequential: bool,
    /// Real seconds per modelled second that these timings were scaled by (1 for the real
    /// world). Waits use it to scale the provider's typical durations (see `poll`).
    pub time_scale: f64,
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
            max_parallel_nodes: 64,
            fixed_poll: None,
            sequential: false,
            time_scale: 1.0,
            helm_timeout: Duration::from_secs(15 * 60),
            rollout_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// The shortest [`Timings::probe_timeout`] that scaling leaves (real time).
pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest time limit of a wait that scaling leaves (real time). A scaled world makes
/// the modelled machines fast, not the installer's and the lab's own CPU work (TLS handshakes,
/// fsyncs, a loaded CI machine): a wait never gives up sooner than this.
pub const MIN_SCALED_TIME_LIMIT: Duration = Duration::from_secs(120);

impl Timings {
    /// The same timings in a world running `time_scale` real seconds per modelled second (a lab
    /// with that `time_scale`): poll intervals and `fixed_poll` are multiplied by it; every
    /// time limit too, but never below [`MIN_SCALED_TIME_LIMIT`], and `probe_timeout` never
    /// below [`MIN_PROBE_TIMEOUT`] (neither above its unscaled value). Scaling twice
    /// multiplies. A factor that is not a positive finite number is ignored.
    #[must_use]
    pub fn scaled(mut self, time_scale: f64) -> Self {
        if !(time_scale.is_finite() && time_scale > 0.0) || time_scale == 1.0 {
            return self;
        }
        for d in [&mut self.poll_min, &mut self.poll_max] {
            *d = d.mul_f64(time_scale);
        }
        for d in [
            &mut self.servers_ready_timeout,
            &mut self.maintenance_timeout,
            &mut self.install_timeout,
            &mut self.kubernetes_timeout,
            &mut self.helm_timeout,
            &mut self.rollout_timeout,
        ] {
            *d = d.mul_f64(time_scale).max(MIN_SCALED_TIME_LIMIT).min(*d);
        }
        if let Some(d) = &mut self.fixed_poll {
            *d = d.mul_f64(time_scale);
        }
        self.probe_timeout = self
            .probe_timeout
            .mul_f64(time_scale)
            .max(MIN_PROBE_TIMEOUT)
            .min(self.probe_timeout);
        self.time_scale *= time_scale;
        self
    }

    /// A modelled duration (a provider's typical deploy time, a fixed limit) in real time.
    pub fn scale(&self, modelled: Duration) -> Duration {
        if self.time_scale == 1.0 {
            modelled
        } else {
            modelled.mul_f64(self.time_scale)
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
    /// The Image Factory step 1 asks for its Talos versions (`<lab URL>/factory` with `--lab`);
    /// `None`: the spec's `--image-factory-url`, else the official factory.
    pub factory_url: Option<String>,
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
        if self.store.checkpoint().ownership.install_id.is_none() {
            // A checkpoint of an earlier release: give the install its id now.
            let id = crate::ownership::new_install_id();
            self.store
                .update(|cp| cp.ownership.install_id = Some(id.clone()))?;
            self.reporter.report(Event::Warning {
                message: format!(
                    "this checkpoint was written by an earlier cto without an install id; the install now has id {id}, and its servers are tagged {} from here on (servers it already ordered are known by the ids in the checkpoint)",
                    crate::ownership::install_tag_name(&id)
                ),
            });
        }

        // The early worker configs (see `start_worker_prefetch`). A JoinSet aborts its tasks
        // when dropped, so dropping this future (Ctrl-C) or returning stops the task too.
        let mut early_task: JoinSet<Vec<String>> = JoinSet::new();
        let mut early_started = false;
        let mut early_applied: Vec<String> = Vec::new();
        // The cluster's secrets cost about a second of CPU (an RSA-4096 key): they are
        // generated on a blocking thread while the servers deploy, handed to GeneratingConfigs,
        // and written to disk only there. Dropped unused if the run stops or fails before.
        let mut secrets_task = self
            .secrets_wanted()
            .then(|| tokio::task::spawn_blocking(metal::talos::secrets::SecretsBundle::generate));

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
            if !early_started && self.prefetch_workers_before(step) {
                early_started = true;
                self.start_worker_prefetch(step, &mut early_task);
            }
            if step == Step::ApplyingWorkerConfig
                && let Some(joined) = early_task.join_next().await
            {
                // Its errors were logged and reported; step 11 finds out for itself.
                early_applied = joined.unwrap_or_default();
            }
            let mut pregenerated_secrets = None;
            if step == Step::GeneratingConfigs
                && let Some(task) = secrets_task.take()
            {
                // A failure here is left to the step, which generates the bundle itself.
                pregenerated_secrets = task.await.ok().and_then(Result::ok);
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
                let mut ctx = self.context(step, &early_applied, pregenerated_secrets);
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

    /// True when the early worker configs should start before `step` (the next step to run):
    /// ApplyingCPConfig is done (the secrets and configs exist since GeneratingConfigs),
    /// ApplyingWorkerConfig is still ahead, and this run will get to it (`--stop-after` does
    /// not stop it earlier). Never in the sequential baseline. On `--resume` this holds at the
    /// start of a run that continues between steps 8 and 10.
    /// Whether this run will reach GeneratingConfigs without a secrets bundle: none recorded,
    /// none on disk, and no `--stop-after` before it.
    fn secrets_wanted(&self) -> bool {
        let cp = self.store.checkpoint();
        !cp.completed.contains(&Step::GeneratingConfigs)
            && cp.resolved.secrets_sha256.is_none()
            && self
                .options
                .stop_after
                .is_none_or(|stop| stop >= Step::GeneratingConfigs)
            && !self
                .store
                .dir()
                .join(crate::steps::talos_bootstrap::SECRETS_FILE)
                .exists()
    }

    /// What `step` may use: this run's provider, store, reporter and options, and what earlier
    /// work in the run prepared for it.
    fn context<'a>(
        &'a mut self,
        step: Step,
        early_applied: &'a [String],
        pregenerated_secrets: Option<metal::talos::secrets::SecretsBundle>,
    ) -> StepContext<'a, P> {
        StepContext {
            step,
            provider: &self.provider,
            store: &mut self.store,
            reporter: self.reporter.as_ref(),
            approver: self.approver.as_ref(),
            timings: &self.options.timings,
            gitops_token: self.options.gitops_token.as_ref(),
            options: &self.options,
            early_applied,
            pregenerated_secrets,
        }
    }

    fn prefetch_workers_before(&self, step: Step) -> bool {
        !self.options.timings.sequential
            && step > Step::ApplyingCPConfig
            && step < Step::ApplyingWorkerConfig
            && self
                .options
                .stop_after
                .is_none_or(|stop| stop >= Step::ApplyingWorkerConfig)
    }

    /// Starts applying the workers' configs in the background (owned by `tasks`), so that they
    /// install Talos while the control plane installs and bootstraps. Writes nothing to the
    /// checkpoint; a problem is logged and left to ApplyingWorkerConfig.
    fn start_worker_prefetch(&mut self, step: Step, tasks: &mut JoinSet<Vec<String>>) {
        let plan = {
            let mut ctx = self.context(Step::ApplyingWorkerConfig, &[], None);
            steps::WorkerPrefetch::plan(&mut ctx)
        };
        match plan {
            Ok(Some(prefetch)) => {
                self.reporter.report(Event::Progress {
                    step,
                    message: format!(
                        "applying the workers' configs early, in the background: {}",
                        prefetch.hostnames().join(", ")
                    ),
                });
                tasks.spawn(prefetch.run(Arc::clone(&self.reporter)));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "not applying worker configs early; ApplyingWorkerConfig will");
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
