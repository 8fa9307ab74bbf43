//! The checkpoint document: everything an install knows, persisted after every change.

use std::net::Ipv4Addr;

use metal::inventory::SiteVerdict;
use serde::{Deserialize, Serialize};

use crate::spec::{ClusterSpec, Role};
use crate::step::Step;

/// The checkpoint format version this build reads and writes. A checkpoint with another version
/// is refused with a clear error, never guessed at.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Current UTC time in RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The persisted state of one install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The `cto` version that last wrote it.
    pub written_by: String,
    /// When the install started.
    pub created_at: String,
    /// When the checkpoint was last written.
    pub updated_at: String,
    /// What the user asked for.
    pub spec: ClusterSpec,
    /// Steps finished, in order.
    pub completed: Vec<Step>,
    /// The step running (or cut off) when the checkpoint was written, if any.
    pub current: Option<Step>,
    /// Facts resolved along the way (site, iPXE URL, cost, approval).
    pub resolved: Resolved,
    /// One record per node the spec asks for.
    pub servers: Vec<ServerRecord>,
    /// The last failure, cleared when its step later succeeds.
    pub last_error: Option<FailureRecord>,
    /// Set when the run was interrupted (Ctrl-C); cleared by the next run.
    pub interrupted: Option<Interruption>,
    /// The install's identity at the provider: its id and tags, and the duplicates found.
    /// Absent in checkpoints of earlier releases (see [`crate::ownership`]).
    #[serde(default)]
    pub ownership: Ownership,
}

/// How an install proves which servers are its own (see [`crate::ownership`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    /// The install's unique id, generated once (`None` only in a checkpoint of an earlier
    /// release, until it is resumed).
    #[serde(default)]
    pub install_id: Option<String>,
    /// The tag `cto-install-<install id>`, once it exists at the provider.
    #[serde(default)]
    pub install_tag: Option<metal::provider::Tag>,
    /// The tag `cto-cluster-<cluster name>`, once it exists at the provider.
    #[serde(default)]
    pub cluster_tag: Option<metal::provider::Tag>,
    /// Servers this install ordered twice for one node (a lost order answer that a lagging
    /// listing hid): found, tagged and reported, and deleted by `cto destroy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<DuplicateServer>,
}

/// A second server this install ordered for one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicateServer {
    /// The node's hostname.
    pub hostname: String,
    /// The duplicate's provider id.
    pub id: String,
    /// When it was found.
    pub found_at: String,
}

/// Facts the steps resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolved {
    /// The provider project id.
    pub project_id: Option<String>,
    /// The chosen site.
    pub site: Option<String>,
    /// Why that site: one line.
    pub site_reason: Option<String>,
    /// Every site considered and its verdict.
    pub site_verdicts: Vec<SiteVerdict>,
    /// The Image Factory schematic id.
    pub schematic_id: Option<String>,
    /// The iPXE URL servers boot.
    pub ipxe_url: Option<String>,
    /// The installer image for the machine configs.
    pub installer_image: Option<String>,
    /// Cost of all servers per hour, USD.
    pub hourly_usd: Option<f64>,
    /// Cost of all servers per month, USD.
    pub monthly_usd: Option<f64>,
    /// The user approved ordering (or `--yes`/`--lab`).
    pub order_approved: bool,
    /// sha256 of `secrets.yaml` when it was generated; a later run refuses a changed file.
    #[serde(default)]
    pub secrets_sha256: Option<String>,
    /// The Kubernetes API endpoint (`https://<first control plane>:6443`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The first control plane accepted `Bootstrap` (or said it already was).
    #[serde(default)]
    pub bootstrapped: bool,
    /// The Helm install Job of each release (`cilium` → `helm-install-cilium-1a2b3c4d5e`), named
    /// after a hash of chart, version and values: the same name means the same install.
    #[serde(default)]
    pub helm_jobs: std::collections::BTreeMap<String, String>,
    /// The root Application (`cto-platform`) was applied.
    #[serde(default)]
    pub app_of_apps_applied: bool,
    /// The Mayastor disk of each storage node (`prod-worker-1` → `/dev/nvme1n1`), from
    /// `--storage-disk` or discovered through the Talos API.
    #[serde(default)]
    pub storage_disks: std::collections::BTreeMap<String, String>,
    /// The DiskPools and the `mayastor-nvme` StorageClass were applied.
    #[serde(default)]
    pub storage_applied: bool,
    /// Every DiskPool reported Online and a test volume bound.
    #[serde(default)]
    pub storage_verified: bool,
    /// Where the kubeconfig was merged (or written, with `--kubeconfig-out`).
    #[serde(default)]
    pub kubeconfig_path: Option<String>,
    /// Where the talosconfig was merged.
    #[serde(default)]
    pub talosconfig_path: Option<String>,
    /// Vault was initialised (its keys are in `vault-init.json`) and every pod unsealed.
    #[serde(default)]
    pub vault_unsealed: bool,
    /// The summary shown by Complete, kept so that `--resume` after Complete shows it again.
    #[serde(default)]
    pub summary: Option<crate::events::Summary>,
    /// Step 1's storage decision (Mayastor or local-path) and why, in one line.
    #[serde(default)]
    pub storage_mode: Option<crate::storage_plan::StorageMode>,
    /// Why that storage mode, for progress, `cto status` and the summary.
    #[serde(default)]
    pub storage_note: Option<String>,
}

/// Where the order of one server stands. The intent is written *before* the billable call, so
/// a run killed between the call and the write finds the server by hostname instead of ordering
/// it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum OrderState {
    /// Not ordered yet.
    NotOrdered,
    /// An order call was (or was about to be) made at `at`; its outcome is not recorded.
    Intended {
        /// When the intent was recorded.
        at: String,
    },
    /// The provider confirmed the server.
    Ordered {
        /// When the id was recorded.
        at: String,
        /// True when an existing server was adopted instead of ordered.
        adopted: bool,
    },
}

/// Whether a server boots Talos over iPXE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BootState {
    /// Not checked yet.
    Unknown,
    /// A reinstall onto the iPXE URL was requested at `at`.
    ReinstallRequested {
        /// When.
        at: String,
    },
    /// The provider reports the iPXE operating system.
    Ipxe,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRecord {
    /// Hostname (`prod-cp-1`).
    pub hostname: String,
    /// Role.
    pub role: Role,
    /// 1-based index within the role.
    pub index: u32,
    /// Plan slug.
    pub plan: String,
    /// Site slug (set when the site is chosen).
    pub site: Option<String>,
    /// Provider id once known.
    pub id: Option<String>,
    /// Order progress.
    pub order: OrderState,
    /// The provider's last reported status.
    pub status: Option<String>,
    /// Primary public IPv4.
    pub primary_ipv4: Option<Ipv4Addr>,
    /// Hourly price as billed, USD.
    pub hourly_usd: Option<f64>,
    /// iPXE boot progress.
    pub boot: BootState,
    /// SPKI fingerprint of the node's maintenance-mode certificate, once seen.
    pub maintenance_spki: Option<String>,
    /// Where applying the machine config stands.
    #[serde(default)]
    pub config: ConfigState,
    /// The node answered over mutual TLS with the cluster's OS CA: Talos is installed.
    #[serde(default)]
    pub installed: bool,
    /// Servers of this node that failed their deployment and were (or are being) replaced,
    /// oldest first. The entry is written before the delete, so a run cut off in between
    /// finishes the replacement instead of ordering a second server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<ReplacedServer>,
    /// The disk Talos installs to (`machine.install.disk`), chosen from the disks the node
    /// reported in maintenance mode (or `--install-disk`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_disk: Option<String>,
    /// When the intent of the current order was last recorded: a server with this hostname
    /// created around then and tagged by no install is the answer to it (see
    /// [`crate::ownership`]).
    #[serde(default)]
    pub intended_at: Option<String>,
    /// The install's tags are attached to the server `id`.
    #[serde(default)]
    pub tagged: bool,
}

/// A server that failed its deployment and is replaced by a new one with the same hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplacedServer {
    /// Its provider id.
    pub id: String,
    /// The status it reported (`failed_deployment`).
    pub status: String,
    /// When the replacement started.
    pub at: String,
    /// The provider confirmed it is gone (only then is the replacement ordered).
    pub gone: bool,
}

/// Where applying a node's machine config stands. Like an order, the intent is written before
/// the call, so a run killed in between knows the node may already be installing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ConfigState {
    /// Not applied.
    #[default]
    NotApplied,
    /// `ApplyConfiguration` was (or was about to be) sent at `at`.
    Intended {
        /// When.
        at: String,
    },
    /// The node accepted the config.
    Applied {
        /// When.
        at: String,
    },
}

/// A failure, kept so `cto status` can say what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRecord {
    /// The step that failed.
    pub step: Step,
    /// The error as shown to the user.
    pub message: String,
    /// When.
    pub at: String,
}

/// A run stopped by the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interruption {
    /// The step that was running.
    pub step: Option<Step>,
    /// When.
    pub at: String,
}

impl Checkpoint {
    /// A fresh checkpoint for `spec`, with one record per node.
    pub fn new(spec: ClusterSpec) -> Self {
        let now = now_rfc3339();
        let servers = spec
            .node_slots()
            .into_iter()
            .map(|slot| ServerRecord {
                hostname: slot.hostname,
                role: slot.role,
                index: slot.index,
                plan: slot.plan,
                site: None,
                id: None,
                order: OrderState::NotOrdered,
                status: None,
                primary_ipv4: None,
                hourly_usd: None,
                boot: BootState::Unknown,
                maintenance_spki: None,
                config: ConfigState::NotApplied,
                installed: false,
                replaced: Vec::new(),
                install_disk: None,
                intended_at: None,
                tagged: false,
            })
            .collect();
        Checkpoint {
            version: CHECKPOINT_VERSION,
            written_by: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: now.clone(),
            updated_at: now,
            spec,
            completed: Vec::new(),
            current: None,
            resolved: Resolved::default(),
            servers,
            last_error: None,
            interrupted: None,
            ownership: Ownership {
                install_id: Some(crate::ownership::new_install_id()),
                ..Ownership::default()
            },
        }
    }

    /// The first step not completed, or `None` when all 22 are.
    pub fn next_step(&self) -> Option<Step> {
        Step::ALL.into_iter().find(|s| !self.completed.contains(s))
    }

    /// True once `step` finished.
    pub fn is_done(&self, step: Step) -> bool {
        self.completed.contains(&step)
    }

    /// The record for `hostname`.
    pub fn server_mut(&mut self, hostname: &str) -> Option<&mut ServerRecord> {
        self.servers.iter_mut().find(|s| s.hostname == hostname)
    }

    /// Ids of every server the install ordered or may have ordered.
    pub fn known_server_ids(&self) -> Vec<String> {
        self.servers.iter().filter_map(|s| s.id.clone()).collect()
    }

    /// Every server id the checkpoint holds as the install's own: current servers, failed
    /// servers being replaced (not yet confirmed gone) and duplicates.
    pub fn owned_server_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.known_server_ids();
        for s in &self.servers {
            ids.extend(s.replaced.iter().filter(|r| !r.gone).map(|r| r.id.clone()));
        }
        ids.extend(self.ownership.duplicates.iter().map(|d| d.id.clone()));
        ids.sort();
        ids.dedup();
        ids
    }
}
