//! What an install tells the person (or program) running it. The installer emits [`Event`]s to
//! a [`Reporter`]; the CLI renders them as progress lines or as one JSON object per line.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use metal::inventory::SiteVerdict;
use serde::{Deserialize, Serialize};

use crate::step::Step;

/// Total number of steps, for `[n/22]`.
pub const TOTAL_STEPS: usize = 22;

/// One thing that happened. Serialised with an `event` tag (`{"event":"step_started",...}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run began.
    RunStarted {
        /// Cluster name.
        cluster: String,
        /// State directory.
        state_dir: String,
        /// True for `--resume`.
        resumed: bool,
        /// The first step this run will execute, if any remain.
        next_step: Option<Step>,
    },
    /// A step began.
    StepStarted {
        /// The step.
        step: Step,
        /// Its position (1–22).
        number: usize,
        /// 22.
        total: usize,
    },
    /// A step finished.
    StepFinished {
        /// The step.
        step: Step,
        /// Its position.
        number: usize,
        /// Seconds it took in this run.
        elapsed_s: f64,
    },
    /// A line of progress inside a step.
    Progress {
        /// The step.
        step: Step,
        /// What happened.
        message: String,
    },
    /// A node's status changed.
    NodeStatus {
        /// The step.
        step: Step,
        /// Hostname.
        hostname: String,
        /// Short status (`deploying`, `maintenance`, …).
        status: String,
        /// More detail, if any.
        detail: Option<String>,
    },
    /// The site was chosen.
    RegionSelected {
        /// The site.
        site: String,
        /// Why, in one line.
        reason: String,
        /// Every site considered.
        verdicts: Vec<SiteVerdict>,
    },
    /// What the servers will cost.
    Cost {
        /// Number of servers.
        servers: usize,
        /// USD per hour for all of them (`None` when the provider publishes no price).
        hourly_usd: Option<f64>,
        /// USD per month for all of them.
        monthly_usd: Option<f64>,
    },
    /// A server was ordered.
    ServerOrdered {
        /// Hostname.
        hostname: String,
        /// Provider id.
        id: String,
        /// Site.
        site: String,
        /// Plan.
        plan: String,
    },
    /// An existing server was adopted instead of ordered again.
    ServerAdopted {
        /// Hostname.
        hostname: String,
        /// Provider id.
        id: String,
        /// Its status.
        status: String,
    },
    /// Something the user should know but that does not stop the install.
    Warning {
        /// The warning.
        message: String,
    },
    /// The run stopped as `--stop-after` asked.
    StoppedAfter {
        /// The last step run.
        step: Step,
    },
    /// The install is complete: what was built and what to do next.
    Complete(Box<Summary>),
}

/// One node in the [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryNode {
    /// Hostname.
    pub hostname: String,
    /// `control-plane` or `worker`.
    pub role: String,
    /// Primary public IPv4.
    pub ipv4: Option<String>,
}

/// What Complete reports: the cluster as built, where its credentials are, and what it costs.
/// Never holds a secret, only where secrets are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Cluster name.
    pub cluster: String,
    /// The Kubernetes API endpoint.
    pub endpoint: Option<String>,
    /// Every node.
    pub nodes: Vec<SummaryNode>,
    /// The Mayastor DiskPools (`pool-<hostname>` on `<disk>`).
    pub storage_pools: Vec<String>,
    /// The default StorageClass.
    pub storage_class: String,
    /// The storage decision of step 1 and why (Mayastor or local-path).
    #[serde(default)]
    pub storage: Option<String>,
    /// The kubeconfig the user should use.
    pub kubeconfig: Option<String>,
    /// The talosconfig the user should use.
    pub talosconfig: Option<String>,
    /// How to read the Argo CD admin password (the command, never the password).
    pub argocd_password: String,
    /// Where Vault's unseal keys and root token are, when `--init-vault` initialised it.
    pub vault_init: Option<String>,
    /// Cost of all servers per hour, USD.
    pub hourly_usd: Option<f64>,
    /// Cost of all servers per month, USD.
    pub monthly_usd: Option<f64>,
    /// Commands to run next.
    pub next: Vec<String>,
}

/// Receives events. Implementations must be cheap and must not block for long.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn report(&self, event: Event);
}

/// A reporter that keeps every event in memory (for tests and summaries).
#[derive(Debug, Default)]
pub struct RecordingReporter {
    events: Mutex<Vec<Event>>,
}

impl RecordingReporter {
    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Reporter for RecordingReporter {
    fn report(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}

/// What the user is asked to approve before anything billable happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderSummary {
    /// Provider name.
    pub provider: String,
    /// Site.
    pub site: String,
    /// `(hostname, plan)` for each server to order.
    pub servers: Vec<(String, String)>,
    /// USD per hour for those servers.
    pub hourly_usd: f64,
    /// USD per month for those servers.
    pub monthly_usd: f64,
}

/// The answer to an [`OrderSummary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Go ahead.
    Approved,
    /// The user said no.
    Declined,
    /// Nobody can be asked (no terminal) and `--yes` was not given.
    Unattended,
}

/// The future an [`Approver`] returns.
pub type ApprovalFuture = Pin<Box<dyn Future<Output = Approval> + Send>>;

/// Decides whether servers may be ordered. Asynchronous, so that a person taking their time at
/// a prompt does not keep Ctrl-C from being handled.
pub trait Approver: Send + Sync {
    /// Asks about `order`.
    fn approve(&self, order: &OrderSummary) -> ApprovalFuture;
}

/// Approves everything (`--yes`, `--lab`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysApprove;

impl Approver for AlwaysApprove {
    fn approve(&self, _order: &OrderSummary) -> ApprovalFuture {
        Box::pin(std::future::ready(Approval::Approved))
    }
}
