//! The command line, as clap sees it. Raw values only: every check beyond "is this a number"
//! happens once, in `installer::spec`, so that a bad flag gets the same message everywhere.
//!
//! Flags of `install` that have defaults are `Option`s here on purpose: `--resume` must tell a
//! flag the user typed (and which must agree with the checkpoint) from one they left out.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turns rented bare metal into a production Kubernetes platform.
#[derive(Debug, Parser)]
#[command(name = "cto", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Order servers, boot Talos and build the cluster (resumable with --resume).
    Install(Box<InstallArgs>),
    /// Show where an install stands, from its checkpoint.
    Status(StatusArgs),
    /// Delete every server of a cluster, found by checkpoint and by hostname.
    Destroy(DestroyArgs),
    /// Check a cluster: Talos services, etcd, nodes, Cilium, Argo CD, storage, Vault.
    Health(HealthArgs),
    /// Rank the sites that can host a cluster, by stock and price.
    Regions(RegionsArgs),
    /// Run the built-in lab: a local Latitude-compatible API with Talos nodes.
    Lab {
        /// What the lab should do.
        #[command(subcommand)]
        command: LabCommand,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Human-readable progress.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How to reach the provider.
#[derive(Debug, Clone, Args)]
pub struct ProviderArgs {
    /// Latitude project id (proj_...) or slug.
    #[arg(long, env = "LATITUDE_PROJECT_ID")]
    pub project: Option<String>,
    /// Latitude API base URL.
    #[arg(long, env = "LATITUDE_API_URL")]
    pub api_url: Option<String>,
    /// Use the built-in lab instead of Latitude (nothing is billed). The lab's world lives under
    /// the state directory.
    #[arg(long)]
    pub lab: bool,
}

/// `cto install`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Cluster name: prefix of every hostname (`<name>-cp-1`, `<name>-worker-1`).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Pin the site (e.g. MIA2). Conflicts with --auto-region.
    #[arg(long)]
    pub region: Option<String>,
    /// Pick the best in-stock site (the default when --region is absent).
    #[arg(long)]
    pub auto_region: bool,
    /// Preferred sites for --auto-region, best first [default: MIA2,DAL,ASH,LAX].
    #[arg(long)]
    pub fallback_regions: Option<String>,
    /// Total nodes: control planes plus workers (--nodes 2 is one control plane, one worker)
    /// [default: 3].
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Control-plane nodes, 1 or 3 [default: 1].
    #[arg(long)]
    pub control_planes: Option<u32>,
    /// Control-plane plan [default: c2-small-x86].
    #[arg(long)]
    pub cp_plan: Option<String>,
    /// Worker plan [default: the control-plane plan].
    #[arg(long)]
    pub worker_plan: Option<String>,
    /// Disk for Mayastor pools (e.g. /dev/nvme1n1) [default: discovered per node].
    #[arg(long)]
    pub storage_disk: Option<String>,
    /// Mayastor replicas per volume, 1-3 [default: 2, or fewer when fewer nodes carry storage].
    #[arg(long)]
    pub storage_replicas: Option<u32>,
    /// Storage: auto (Mayastor when the storage nodes' plans have a data disk, else local-path),
    /// mayastor (stop at step 1 when the plans cannot carry it) or local-path [default: auto].
    #[arg(long, value_name = "auto|mayastor|local-path")]
    pub storage: Option<String>,
    /// Disk Talos installs to on every node, checked against the disks each node reports
    /// [default: chosen per node: the smallest suitable SSD, else NVMe].
    #[arg(long, value_name = "PATH")]
    pub install_disk: Option<String>,
    /// Talos version [default: a current v1.11 release].
    #[arg(long)]
    pub talos_version: Option<String>,
    /// Minutes to wait for GitOps sync [default: 30].
    #[arg(long)]
    pub sync_timeout: Option<u32>,
    /// Platform profile: minimal, standard or full [default: standard].
    #[arg(long)]
    pub profile: Option<String>,
    /// Talos machine-config patch for every node: `@file.yaml` or inline YAML (repeatable).
    #[arg(long, value_name = "@FILE")]
    pub config_patch: Vec<String>,
    /// Talos machine-config patch for control planes only (repeatable).
    #[arg(long, value_name = "@FILE")]
    pub config_patch_control_plane: Vec<String>,
    /// Talos machine-config patch for workers only (repeatable).
    #[arg(long, value_name = "@FILE")]
    pub config_patch_worker: Vec<String>,
    /// Image Factory base URL [default: https://factory.talos.dev].
    #[arg(long)]
    pub image_factory_url: Option<String>,
    /// GitOps repository the root Argo CD Application syncs (https:// or ssh://; plain http://
    /// only to a loopback address), holding this release's gitops/ tree; checked in step 1
    /// before anything is ordered. Required, except against a lab (which serves the tree).
    #[arg(long)]
    pub gitops_repo: Option<String>,
    /// Branch, tag or commit of the GitOps repository [default: main].
    #[arg(long)]
    pub gitops_revision: Option<String>,
    /// Directory of the GitOps tree in the repository; the root Application syncs
    /// `<path>/apps/<profile>` [default: gitops].
    #[arg(long)]
    pub gitops_path: Option<String>,
    /// Token for a private GitOps repository (Argo CD's repository credential). Never stored:
    /// give it again on --resume.
    #[arg(long, env = "CTO_GITOPS_TOKEN", hide_env_values = true)]
    pub gitops_token: Option<String>,
    /// Enable Cilium's Gateway API support (the CRDs come from the GitOps tree).
    #[arg(long)]
    pub gateway_api: bool,
    /// Initialise and unseal Vault when the platform is up; the unseal keys and root token go
    /// to <state-dir>/vault-init.json (0600) — back that file up.
    #[arg(long)]
    pub init_vault: bool,
    /// Write the cluster's kubeconfig to this file instead of merging it into $KUBECONFIG or
    /// ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Install OpenLens with the platform's package manager (brew, winget, flatpak) after the
    /// cluster is up; a failure there never fails the install.
    #[arg(long)]
    pub install_lens: bool,
    /// State directory [default: $XDG_STATE_HOME/cto/<cluster-name>].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Continue the install recorded in the state directory.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: trust a node's new Talos maintenance-mode key (HOSTNAME=SPKI, the SPKI
    /// SHA-256 the error printed) after comparing it with the node's console. Repeatable.
    #[arg(long, value_name = "HOSTNAME=SPKI", requires = "resume")]
    pub trust_maintenance_key: Vec<String>,
    /// Stop after this step (kebab-case such as waiting-talos-maintenance, or the step name).
    #[arg(long, value_name = "STEP")]
    pub stop_after: Option<String>,
    /// Print the plan (site and why, servers, cost) and order nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Approve ordering servers without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Provider connection.
    #[command(flatten)]
    pub provider: ProviderArgs,
}

/// `cto status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Cluster name (locates the default state directory).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// State directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// `cto health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Cluster name (locates the default state directory).
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// State directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Seconds each check may take.
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// `cto destroy`.
#[derive(Debug, Clone, Args)]
pub struct DestroyArgs {
    /// Cluster name: without a checkpoint, the servers carrying the cluster's tag
    /// (`cto-cluster-<name>`) are found.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// Without a checkpoint, also offer servers that merely have the cluster's hostnames
    /// (`<name>-cp-N`, `<name>-worker-N`) but not its tag. Each is listed and must be confirmed
    /// (`--yes` without a terminal).
    #[arg(long)]
    pub match_hostname: bool,
    /// State directory.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Delete without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Provider connection.
    #[command(flatten)]
    pub provider: ProviderArgs,
}

/// `cto regions`.
#[derive(Debug, Clone, Args)]
pub struct RegionsArgs {
    /// Plan to place.
    #[arg(long)]
    pub plan: String,
    /// How many servers of it.
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// Preferred sites, best first.
    #[arg(long, default_value = "MIA2,DAL,ASH,LAX")]
    pub fallback_regions: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Provider connection.
    #[command(flatten)]
    pub provider: ProviderArgs,
}

/// `cto lab ...`.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Serve the lab until interrupted; prints LATITUDE_API_URL=... when ready.
    Serve {
        /// Address for the Latitude-compatible API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory holding the lab's world (created if missing).
        #[arg(long)]
        state: PathBuf,
        /// Lab configuration (JSON; see docs/lab.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Faults to inject: comma-separated key=value entries such as
        /// `latitude.5xx=0.1,talos.5xx=0.1,server.fail=a-worker-1` (see docs/lab.md). Added to
        /// the config file's `faults`.
        #[arg(long, value_name = "SPEC")]
        faults: Option<String>,
        /// Real seconds per modelled second, a positive number (overrides the config file's
        /// `time_scale`; `0.01` turns a 5-minute deploy into 3 s).
        #[arg(long, value_name = "F", value_parser = parse_time_scale, allow_hyphen_values = true)]
        time_scale: Option<f64>,
        /// Seed of the world's per-node and per-object jitter (overrides the config file's
        /// `seed`): the same seed gives the same world.
        #[arg(long, value_name = "S", allow_hyphen_values = true)]
        seed: Option<u64>,
    },
}

/// `--time-scale`: a finite number greater than zero.
fn parse_time_scale(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 => Ok(f),
        _ => Err(format!("expected a positive number, got {value:?}")),
    }
}
