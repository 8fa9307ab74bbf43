//! What the user asked for, validated once.
//!
//! The CLI turns its flags into an [`InstallRequest`] (raw values, as typed) and calls
//! [`InstallRequest::validate`], which either returns a [`ClusterSpec`] — the checked, normalised
//! plan that is stored in the checkpoint and compared on `--resume` — or a [`SpecError`] naming
//! the offending flag and value. Nothing after this point re-checks flags.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest hostname Latitude accepts.
pub const MAX_HOSTNAME_LEN: usize = 32;
/// The default `--fallback-regions` order.
pub const DEFAULT_FALLBACK_REGIONS: [&str; 4] = ["MIA2", "DAL", "ASH", "LAX"];
/// The default control-plane plan.
pub const DEFAULT_CP_PLAN: &str = "c2-small-x86";
/// Most nodes one install may order.
pub const MAX_NODES: u32 = 500;

/// The GitOps repository the root Application syncs by default.
pub const DEFAULT_GITOPS_REPO: &str = "https://github.com/5dlabs/cto";
/// The default `--gitops-revision`.
pub const DEFAULT_GITOPS_REVISION: &str = "main";
/// The default `--gitops-path`: the `gitops/` tree of the repository.
pub const DEFAULT_GITOPS_PATH: &str = "gitops";

/// The platform profile that selects which GitOps applications are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Storage, core and networking only.
    Minimal,
    /// The default set.
    Standard,
    /// Everything in `gitops/`.
    Full,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "minimal" => Ok(Profile::Minimal),
            "standard" => Ok(Profile::Standard),
            "full" => Ok(Profile::Full),
            _ => Err(format!(
                "unknown profile '{s}': expected minimal, standard or full"
            )),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Minimal => "minimal",
            Profile::Standard => "standard",
            Profile::Full => "full",
        })
    }
}

/// How the site is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum RegionChoice {
    /// `--auto-region`: the best in-stock site, preferring this order.
    Auto {
        /// `--fallback-regions`, uppercase.
        fallback_order: Vec<String>,
    },
    /// `--region SITE`.
    Fixed {
        /// The site, uppercase.
        site: String,
    },
}

/// The role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs etcd and the Kubernetes control plane.
    ControlPlane,
    /// Runs workloads.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        })
    }
}

/// Which machines a config patch applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatchScope {
    /// `--config-patch`: every machine.
    All,
    /// `--config-patch-control-plane`.
    ControlPlane,
    /// `--config-patch-worker`.
    Worker,
}

impl PatchScope {
    /// The flag that carries patches of this scope.
    pub fn flag(self) -> &'static str {
        match self {
            PatchScope::All => "--config-patch",
            PatchScope::ControlPlane => "--config-patch-control-plane",
            PatchScope::Worker => "--config-patch-worker",
        }
    }
}

/// A Talos machine-config patch as given on the command line. Its text is kept in the
/// checkpoint, so a resumed install applies exactly what the first run validated even if the
/// file changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSource {
    /// Which machines it applies to.
    pub scope: PatchScope,
    /// Where it came from (`@patch.yaml` → the path; inline YAML → `inline`).
    pub source: String,
    /// The YAML text.
    pub content: String,
}

/// The raw install flags, as the user typed them. Options are flags that were not given.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// `--cluster-name`.
    pub cluster_name: String,
    /// `--region`.
    pub region: Option<String>,
    /// `--auto-region`.
    pub auto_region: bool,
    /// `--fallback-regions`, comma-separated.
    pub fallback_regions: Option<String>,
    /// `--nodes` (the total).
    pub nodes: u32,
    /// `--control-planes` (1 or 3).
    pub control_planes: u32,
    /// `--cp-plan`.
    pub cp_plan: Option<String>,
    /// `--worker-plan`.
    pub worker_plan: Option<String>,
    /// `--storage-disk`.
    pub storage_disk: Option<String>,
    /// `--storage-replicas`.
    pub storage_replicas: Option<u32>,
    /// `--talos-version`.
    pub talos_version: Option<String>,
    /// `--sync-timeout` in minutes.
    pub sync_timeout_minutes: u32,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--project` / `LATITUDE_PROJECT_ID`.
    pub project: Option<String>,
    /// `--api-url` / `LATITUDE_API_URL`.
    pub api_url: String,
    /// `--image-factory-url`.
    pub image_factory_url: Option<String>,
    /// `--lab`: the provider is the built-in lab, started by `cto` itself.
    pub lab: bool,
    /// `--config-patch*`, in the order given.
    pub config_patches: Vec<PatchSource>,
    /// `--gitops-repo`.
    pub gitops_repo: Option<String>,
    /// `--gitops-revision`.
    pub gitops_revision: Option<String>,
    /// `--gitops-path`.
    pub gitops_path: Option<String>,
    /// `--gateway-api`: Cilium's Gateway API support.
    pub gateway_api: bool,
    /// `--init-vault`: initialise and unseal Vault once the platform is up.
    pub init_vault: bool,
    /// A GitOps token was given (`--gitops-token` / `CTO_GITOPS_TOKEN`). Only the fact is kept;
    /// the token itself never enters the request, the spec or the checkpoint.
    pub gitops_credentials: bool,
}

/// The validated install plan. Stored in the checkpoint; `--resume` compares against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Cluster name; prefix of every hostname.
    pub cluster_name: String,
    /// Total nodes.
    pub nodes: u32,
    /// Control-plane nodes (1 or 3).
    pub control_planes: u32,
    /// Control-plane plan slug.
    pub cp_plan: String,
    /// Worker plan slug.
    pub worker_plan: String,
    /// How the site is chosen.
    pub region: RegionChoice,
    /// The disk for Mayastor pools; discovered when absent.
    pub storage_disk: Option<String>,
    /// Mayastor replica count.
    pub storage_replicas: u32,
    /// Talos version (`v1.11.5`).
    pub talos_version: String,
    /// How long to wait for GitOps sync, in minutes.
    pub sync_timeout_minutes: u32,
    /// Platform profile.
    pub profile: Profile,
    /// Provider project (id or slug).
    pub project: String,
    /// Provider API base URL.
    pub api_url: String,
    /// Image Factory base URL; `None` for the official factory.
    pub image_factory_url: Option<String>,
    /// True when the install runs against the built-in lab (`--lab`), whose URL changes from
    /// run to run; `api_url` then records the first run's address only.
    #[serde(default)]
    pub lab: bool,
    /// Talos config patches, validated, in the order they apply.
    #[serde(default)]
    pub config_patches: Vec<PatchSource>,
    /// Where the platform's Argo CD Applications live (the app-of-apps source).
    #[serde(default)]
    pub gitops: GitopsSource,
    /// Cilium's Gateway API support (`--gateway-api`).
    #[serde(default)]
    pub gateway_api: bool,
    /// Initialise and unseal Vault after the platform is up (`--init-vault`).
    #[serde(default)]
    pub init_vault: bool,
}

/// The repository, revision and path the root Application syncs. The root Application's
/// source path is `<path>/apps/<profile>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitopsSource {
    /// Repository URL (`https://…` or `ssh://…` / `git@host:owner/repo`).
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// The GitOps tree's directory inside the repository, without slashes at either end.
    pub path: String,
    /// The install was started with a token for this repository; a run that must create the
    /// repository credential needs it again (it is never stored).
    #[serde(default)]
    pub credentials: bool,
}

impl Default for GitopsSource {
    fn default() -> Self {
        GitopsSource {
            repo: DEFAULT_GITOPS_REPO.to_owned(),
            revision: DEFAULT_GITOPS_REVISION.to_owned(),
            path: DEFAULT_GITOPS_PATH.to_owned(),
            credentials: false,
        }
    }
}

impl GitopsSource {
    /// The directory the root Application syncs for `profile`.
    pub fn profile_path(&self, profile: Profile) -> String {
        if self.path.is_empty() || self.path == "." {
            format!("apps/{profile}")
        } else {
            format!("{}/apps/{profile}", self.path)
        }
    }
}

/// A token for the GitOps repository. `Debug` and `Display` print `[redacted]`; it is read from
/// `--gitops-token` / `CTO_GITOPS_TOKEN` on every run and never written anywhere but the
/// cluster's Argo CD repository Secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitopsToken(String);

impl GitopsToken {
    /// Wraps a token; surrounding whitespace is removed.
    pub fn new(token: impl Into<String>) -> Self {
        GitopsToken(token.into().trim().to_owned())
    }

    /// The token itself. Only for building the repository Secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GitopsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitopsToken([redacted])")
    }
}

impl fmt::Display for GitopsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Checks a GitOps repository URL: `https://host/…`, `ssh://…` or scp-like `git@host:path`.
/// A token or password inside the URL is refused (it would be stored in the checkpoint and the
/// root Application, and logged): `https://` URLs carry no userinfo at all, `ssh://` URLs at
/// most a user name (`ssh://git@host/…`). The token goes in `--gitops-token` /
/// `CTO_GITOPS_TOKEN`.
fn validate_repo_url(value: &str) -> Result<String, SpecError> {
    let v = value.trim();
    if let Some(rest) = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .or_else(|| v.strip_prefix("ssh://"))
    {
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && (userinfo.contains(':') || !v.starts_with("ssh://"))
        {
            return Err(refuse(
                "--gitops-repo",
                metal::urls::redact_userinfo(v),
                "a repository URL must not carry a token or password (user:token@host): give \
                 the URL without it and the token in CTO_GITOPS_TOKEN (or --gitops-token)",
            ));
        }
    }
    let ok = if let Some(rest) = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("ssh://"))
    {
        rest.split('/').next().is_some_and(|h| !h.is_empty()) && rest.contains('/')
    } else if let Some(rest) = v.strip_prefix("http://") {
        // Plain HTTP only to a literal loopback address: a repository served on this machine
        // (the lab's, or `git http-backend` in tests), never one reached over a network.
        metal::latitude::client::is_loopback_url(v) && rest.contains('/')
    } else if let Some((user_host, path)) = v.split_once(':') {
        user_host.contains('@') && !user_host.contains('/') && !path.is_empty()
    } else {
        false
    };
    if ok && !v.contains(char::is_whitespace) {
        Ok(v.to_owned())
    } else {
        Err(refuse(
            "--gitops-repo",
            value,
            "expected an https:// or ssh:// repository URL (or git@host:owner/repo)",
        ))
    }
}

/// A node the spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlot {
    /// `<cluster>-cp-<n>` or `<cluster>-worker-<n>`.
    pub hostname: String,
    /// Its role.
    pub role: Role,
    /// 1-based index within the role.
    pub index: u32,
    /// Plan slug.
    pub plan: String,
}

/// A flag with an unacceptable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} '{value}': {reason}")]
pub struct SpecError {
    /// The flag (`--nodes`).
    pub flag: &'static str,
    /// The value as given.
    pub value: String,
    /// Why it is refused and what is accepted.
    pub reason: String,
}

fn refuse(flag: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> SpecError {
    SpecError {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// True for a valid Latitude hostname: at most 32 characters of letters, digits, `.` and `-`,
/// starting and ending with a letter or digit.
pub fn is_valid_hostname(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_HOSTNAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
}

/// The hostname of the `index`th node of `role` in `cluster`.
pub fn hostname(cluster: &str, role: Role, index: u32) -> String {
    match role {
        Role::ControlPlane => format!("{cluster}-cp-{index}"),
        Role::Worker => format!("{cluster}-worker-{index}"),
    }
}

/// If `hostname` is one of `cluster`'s node hostnames, its role and index.
pub fn parse_hostname(cluster: &str, hostname: &str) -> Option<(Role, u32)> {
    let rest = hostname.strip_prefix(cluster)?.strip_prefix('-')?;
    let (role, index) = if let Some(i) = rest.strip_prefix("cp-") {
        (Role::ControlPlane, i)
    } else if let Some(i) = rest.strip_prefix("worker-") {
        (Role::Worker, i)
    } else {
        return None;
    };
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) || index.starts_with('0') {
        return None;
    }
    Some((role, index.parse().ok()?))
}

/// Checks a cluster name: a DNS label of lowercase letters, digits and `-`.
pub fn validate_cluster_name(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(refuse(
            "--cluster-name",
            name,
            "use lowercase letters, digits and '-', starting and ending with a letter or digit",
        ))
    }
}

fn validate_slug(flag: &'static str, value: &str) -> Result<String, SpecError> {
    let v = value.trim();
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(v.to_owned())
    } else {
        Err(refuse(
            flag,
            value,
            "a plan slug is lowercase letters, digits and '-' (e.g. c2-small-x86)",
        ))
    }
}

fn validate_site(flag: &'static str, value: &str) -> Result<String, SpecError> {
    let v = value.trim().to_ascii_uppercase();
    if !v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(v)
    } else {
        Err(refuse(
            flag,
            value,
            "a site is a short code of letters and digits (e.g. MIA2, DAL)",
        ))
    }
}

/// Checks the URL of a service cto talks to (`--api-url`, `--image-factory-url`) with
/// [`metal::urls::check_service_url`]: no userinfo, `https://` or plain `http://` to a literal
/// loopback address only. The value in the message has any userinfo replaced by `***`.
fn validate_url(flag: &'static str, value: &str) -> Result<String, SpecError> {
    let v = value.trim().trim_end_matches('/');
    match metal::urls::check_service_url(v) {
        Ok(_) => Ok(v.to_owned()),
        Err(reason) => Err(refuse(flag, metal::urls::redact_userinfo(value), reason)),
    }
}

/// Renders the control-plane and the worker configuration with the user's patches, as step 6
/// (GeneratingConfigs) will, but with placeholder secrets and addresses, so that a patch that
/// breaks either configuration (a `cluster.ca` override that hands workers the Kubernetes CA
/// key, an etcd section for every machine, `persist: false`, …) is a usage error before
/// anything is ordered rather than a failure at step 6 on billed servers. Both roles are
/// rendered whatever the node count, like step 6. Addresses come from TEST-NET-1 (RFC 5737).
fn check_rendering(
    cluster_name: &str,
    talos_version: &str,
    schedulable: bool,
    patches: &[PatchSource],
) -> Result<(), SpecError> {
    use metal::talos::config::{BootstrapConfig, ConfigPatch, MachineType, PatchTarget};
    let placeholder_ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    let version = metal::talos::parse_talos_version(talos_version)
        .map_err(|e| refuse("--talos-version", talos_version, e.to_string()))?;
    let mut builder = BootstrapConfig::new(cluster_name, placeholder_ip)
        .with_talos_version(&version)
        .with_mayastor_ready()
        .with_cert_sans(vec![placeholder_ip.to_string()])
        .with_allow_scheduling_on_control_planes(schedulable);
    for scope in [
        PatchScope::All,
        PatchScope::ControlPlane,
        PatchScope::Worker,
    ] {
        let parsed = patches
            .iter()
            .filter(|p| p.scope == scope)
            .map(|p| {
                ConfigPatch::parse(&p.source, &p.content)
                    .map_err(|e| refuse(p.scope.flag(), &p.source, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let target = match scope {
            PatchScope::All => PatchTarget::All,
            PatchScope::ControlPlane => PatchTarget::ControlPlane,
            PatchScope::Worker => PatchTarget::Worker,
        };
        builder = builder.with_patches(target, parsed);
    }
    let secrets = metal::talos::secrets::SecretsBundle::placeholder();
    for role in [MachineType::ControlPlane, MachineType::Worker] {
        builder.render(&secrets, role).map_err(|e| {
            // Name the flag of the patch the error is about, when it names one.
            let patch = match &e {
                metal::talos::TalosError::InvalidConfigPatch { origin, .. } => {
                    patches.iter().find(|p| p.source == *origin)
                }
                _ => None,
            };
            match patch {
                Some(p) => refuse(p.scope.flag(), &p.source, e.to_string()),
                None => refuse(
                    "--config-patch",
                    "(all patches)",
                    format!("the {role} configuration with these patches is invalid: {e}"),
                ),
            }
        })?;
    }
    Ok(())
}

impl InstallRequest {
    /// The request that reproduces `spec` exactly. `--resume` starts from this and overlays
    /// only the flags the user actually typed, so that omitted flags never count as changes.
    pub fn from_spec(spec: &ClusterSpec) -> Self {
        let (region, auto_region, fallback_regions) = match &spec.region {
            RegionChoice::Auto { fallback_order } => (None, true, Some(fallback_order.join(","))),
            RegionChoice::Fixed { site } => (Some(site.clone()), false, None),
        };
        InstallRequest {
            cluster_name: spec.cluster_name.clone(),
            region,
            auto_region,
            fallback_regions,
            nodes: spec.nodes,
            control_planes: spec.control_planes,
            cp_plan: Some(spec.cp_plan.clone()),
            worker_plan: Some(spec.worker_plan.clone()),
            storage_disk: spec.storage_disk.clone(),
            storage_replicas: Some(spec.storage_replicas),
            talos_version: Some(spec.talos_version.clone()),
            sync_timeout_minutes: spec.sync_timeout_minutes,
            profile: Some(spec.profile.to_string()),
            project: Some(spec.project.clone()),
            api_url: spec.api_url.clone(),
            image_factory_url: spec.image_factory_url.clone(),
            lab: spec.lab,
            config_patches: spec.config_patches.clone(),
            gitops_repo: Some(spec.gitops.repo.clone()),
            gitops_revision: Some(spec.gitops.revision.clone()),
            gitops_path: Some(spec.gitops.path.clone()),
            gateway_api: spec.gateway_api,
            init_vault: spec.init_vault,
            gitops_credentials: spec.gitops.credentials,
        }
    }

    /// Resolves defaults and checks every value. The first problem found is returned.
    pub fn validate(&self) -> Result<ClusterSpec, SpecError> {
        validate_cluster_name(&self.cluster_name)?;
        if self.nodes == 0 || self.nodes > MAX_NODES {
            return Err(refuse(
                "--nodes",
                self.nodes,
                format!("the total number of nodes must be between 1 and {MAX_NODES}"),
            ));
        }
        if self.control_planes != 1 && self.control_planes != 3 {
            return Err(refuse(
                "--control-planes",
                self.control_planes,
                "etcd needs an odd quorum: use 1 or 3",
            ));
        }
        if self.nodes < self.control_planes {
            return Err(refuse(
                "--nodes",
                self.nodes,
                format!(
                    "--control-planes {} needs at least {} nodes",
                    self.control_planes, self.control_planes
                ),
            ));
        }
        let workers = self.nodes - self.control_planes;
        let longest = if workers > 0 {
            hostname(&self.cluster_name, Role::Worker, workers)
        } else {
            hostname(&self.cluster_name, Role::ControlPlane, self.control_planes)
        };
        if !is_valid_hostname(&longest) {
            return Err(refuse(
                "--cluster-name",
                &self.cluster_name,
                format!(
                    "hostnames such as '{longest}' would exceed {MAX_HOSTNAME_LEN} characters; choose a shorter name"
                ),
            ));
        }

        let cp_plan = validate_slug(
            "--cp-plan",
            self.cp_plan.as_deref().unwrap_or(DEFAULT_CP_PLAN),
        )?;
        let worker_plan = match &self.worker_plan {
            Some(p) => validate_slug("--worker-plan", p)?,
            None => cp_plan.clone(),
        };

        let region = match (&self.region, self.auto_region) {
            (Some(site), true) => {
                return Err(refuse(
                    "--region",
                    site,
                    "give either --region or --auto-region, not both",
                ));
            }
            (Some(site), false) => {
                if self.fallback_regions.is_some() {
                    return Err(refuse(
                        "--fallback-regions",
                        self.fallback_regions.as_deref().unwrap_or_default(),
                        "only applies with --auto-region; --region pins one site",
                    ));
                }
                RegionChoice::Fixed {
                    site: validate_site("--region", site)?,
                }
            }
            (None, _) => {
                let fallback_order = match &self.fallback_regions {
                    Some(list) => {
                        let sites = list
                            .split(',')
                            .map(|s| validate_site("--fallback-regions", s))
                            .collect::<Result<Vec<_>, _>>()?;
                        if sites.is_empty() {
                            return Err(refuse(
                                "--fallback-regions",
                                list,
                                "list at least one site",
                            ));
                        }
                        sites
                    }
                    None => DEFAULT_FALLBACK_REGIONS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                };
                RegionChoice::Auto { fallback_order }
            }
        };

        let storage_nodes = if workers > 0 {
            workers
        } else {
            self.control_planes
        };
        let storage_replicas = match self.storage_replicas {
            Some(r) if !(1..=3).contains(&r) => {
                return Err(refuse(
                    "--storage-replicas",
                    r,
                    "Mayastor keeps 1 to 3 replicas of each volume",
                ));
            }
            Some(r) if r > storage_nodes => {
                return Err(refuse(
                    "--storage-replicas",
                    r,
                    format!(
                        "only {storage_nodes} node(s) carry storage ({}); use at most {storage_nodes} or add nodes",
                        if workers > 0 {
                            "the workers"
                        } else {
                            "the control planes, since there are no workers"
                        }
                    ),
                ));
            }
            Some(r) => r,
            None => 2.min(storage_nodes),
        };
        if let Some(disk) = &self.storage_disk
            && !disk.starts_with("/dev/")
        {
            return Err(refuse(
                "--storage-disk",
                disk,
                "give a device path such as /dev/nvme1n1",
            ));
        }

        let talos_version = self
            .talos_version
            .clone()
            .unwrap_or_else(|| metal::talos::DEFAULT_TALOS_VERSION.to_owned());
        metal::talos::parse_talos_version(&talos_version)
            .map_err(|e| refuse("--talos-version", &talos_version, e.to_string()))?;

        if !(1..=1440).contains(&self.sync_timeout_minutes) {
            return Err(refuse(
                "--sync-timeout",
                self.sync_timeout_minutes,
                "minutes, between 1 and 1440",
            ));
        }
        let profile = match &self.profile {
            Some(p) => p
                .parse::<Profile>()
                .map_err(|reason| refuse("--profile", p, reason))?,
            None => Profile::Standard,
        };
        let project = match self.project.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => p.to_owned(),
            _ => {
                return Err(refuse(
                    "--project",
                    "",
                    "set --project or LATITUDE_PROJECT_ID to the project id (proj_...) or slug",
                ));
            }
        };
        let api_url = validate_url("--api-url", &self.api_url)?;
        let image_factory_url = self
            .image_factory_url
            .as_deref()
            .map(|u| validate_url("--image-factory-url", u))
            .transpose()?;

        for patch in &self.config_patches {
            let parsed = metal::talos::config::ConfigPatch::parse(&patch.source, &patch.content)
                .map_err(|e| refuse(patch.scope.flag(), &patch.source, e.to_string()))?;
            // A patch must not change the role of a machine it applies to: caught here, before
            // anything is ordered, rather than when the configs are rendered.
            use metal::talos::config::MachineType;
            let roles: &[MachineType] = match patch.scope {
                PatchScope::ControlPlane => &[MachineType::ControlPlane],
                PatchScope::Worker => &[MachineType::Worker],
                PatchScope::All if self.nodes > self.control_planes => {
                    &[MachineType::ControlPlane, MachineType::Worker]
                }
                PatchScope::All => &[MachineType::ControlPlane],
            };
            for role in roles {
                parsed
                    .check_role(*role)
                    .map_err(|e| refuse(patch.scope.flag(), &patch.source, e.to_string()))?;
            }
        }

        if !self.config_patches.is_empty() {
            check_rendering(
                &self.cluster_name,
                &talos_version,
                workers == 0,
                &self.config_patches,
            )?;
        }

        let gitops_repo =
            validate_repo_url(self.gitops_repo.as_deref().unwrap_or(DEFAULT_GITOPS_REPO))?;
        let revision = self
            .gitops_revision
            .as_deref()
            .unwrap_or(DEFAULT_GITOPS_REVISION);
        if revision.trim().is_empty() || revision.contains(char::is_whitespace) {
            return Err(refuse(
                "--gitops-revision",
                revision,
                "a branch, tag or commit, without spaces",
            ));
        }
        let raw_path = self.gitops_path.as_deref().unwrap_or(DEFAULT_GITOPS_PATH);
        let path = raw_path.trim().trim_matches('/');
        if path.is_empty()
            || path.contains(char::is_whitespace)
            || path.split('/').any(|c| c == "..")
        {
            return Err(refuse(
                "--gitops-path",
                raw_path,
                "a directory inside the repository (e.g. gitops), without '..'",
            ));
        }

        Ok(ClusterSpec {
            cluster_name: self.cluster_name.clone(),
            nodes: self.nodes,
            control_planes: self.control_planes,
            cp_plan,
            worker_plan,
            region,
            storage_disk: self.storage_disk.clone(),
            storage_replicas,
            talos_version,
            sync_timeout_minutes: self.sync_timeout_minutes,
            profile,
            project,
            api_url,
            image_factory_url,
            lab: self.lab,
            config_patches: self.config_patches.clone(),
            gitops: GitopsSource {
                repo: gitops_repo,
                revision: revision.trim().to_owned(),
                path: path.to_owned(),
                credentials: self.gitops_credentials,
            },
            gateway_api: self.gateway_api,
            init_vault: self.init_vault,
        })
    }
}

/// One field that differs between the checkpoint and the flags of a `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecDifference {
    /// The field (`nodes`).
    pub field: &'static str,
    /// The value in the checkpoint.
    pub checkpoint: String,
    /// The value the flags ask for.
    pub requested: String,
}

impl fmt::Display for SpecDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: checkpoint has {}, flags ask for {}",
            self.field, self.checkpoint, self.requested
        )
    }
}

/// One line per patch set: flag, source, and a fingerprint of the content, so a changed file
/// shows up as a difference.
fn describe_patches(patches: &[PatchSource]) -> String {
    if patches.is_empty() {
        return "none".to_owned();
    }
    patches
        .iter()
        .map(|p| {
            // FNV-1a: a stable fingerprint, not a security measure.
            let hash = p.content.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("{} {} (content {hash:016x})", p.scope.flag(), p.source)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClusterSpec {
    /// Workers = nodes − control planes.
    pub fn workers(&self) -> u32 {
        self.nodes - self.control_planes
    }

    /// True when there are no workers, so the control planes accept workloads.
    pub fn control_planes_schedulable(&self) -> bool {
        self.workers() == 0
    }

    /// Every node the spec asks for, control planes first.
    pub fn node_slots(&self) -> Vec<NodeSlot> {
        let cps = (1..=self.control_planes).map(|i| NodeSlot {
            hostname: hostname(&self.cluster_name, Role::ControlPlane, i),
            role: Role::ControlPlane,
            index: i,
            plan: self.cp_plan.clone(),
        });
        let workers = (1..=self.workers()).map(|i| NodeSlot {
            hostname: hostname(&self.cluster_name, Role::Worker, i),
            role: Role::Worker,
            index: i,
            plan: self.worker_plan.clone(),
        });
        cps.chain(workers).collect()
    }

    /// The fields where `requested` differs from `self`. Used to refuse a `--resume` whose
    /// flags contradict the checkpoint.
    pub fn diff(&self, requested: &ClusterSpec) -> Vec<SpecDifference> {
        let mut out = Vec::new();
        let mut cmp = |field: &'static str, a: String, b: String| {
            if a != b {
                out.push(SpecDifference {
                    field,
                    checkpoint: a,
                    requested: b,
                });
            }
        };
        let region = |r: &RegionChoice| match r {
            RegionChoice::Auto { fallback_order } => {
                format!("--auto-region (fallback {})", fallback_order.join(","))
            }
            RegionChoice::Fixed { site } => format!("--region {site}"),
        };
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "(default)".into());
        cmp(
            "cluster_name",
            self.cluster_name.clone(),
            requested.cluster_name.clone(),
        );
        cmp("nodes", self.nodes.to_string(), requested.nodes.to_string());
        cmp(
            "control_planes",
            self.control_planes.to_string(),
            requested.control_planes.to_string(),
        );
        cmp("cp_plan", self.cp_plan.clone(), requested.cp_plan.clone());
        cmp(
            "worker_plan",
            self.worker_plan.clone(),
            requested.worker_plan.clone(),
        );
        cmp("region", region(&self.region), region(&requested.region));
        cmp(
            "storage_disk",
            opt(&self.storage_disk),
            opt(&requested.storage_disk),
        );
        cmp(
            "storage_replicas",
            self.storage_replicas.to_string(),
            requested.storage_replicas.to_string(),
        );
        cmp(
            "talos_version",
            self.talos_version.clone(),
            requested.talos_version.clone(),
        );
        cmp(
            "sync_timeout_minutes",
            self.sync_timeout_minutes.to_string(),
            requested.sync_timeout_minutes.to_string(),
        );
        cmp(
            "profile",
            self.profile.to_string(),
            requested.profile.to_string(),
        );
        cmp("project", self.project.clone(), requested.project.clone());
        if !(self.lab && requested.lab) {
            cmp("api_url", self.api_url.clone(), requested.api_url.clone());
        }
        cmp("lab", self.lab.to_string(), requested.lab.to_string());
        cmp(
            "config_patches",
            describe_patches(&self.config_patches),
            describe_patches(&requested.config_patches),
        );
        cmp(
            "image_factory_url",
            opt(&self.image_factory_url),
            opt(&requested.image_factory_url),
        );
        cmp(
            "gitops_repo",
            self.gitops.repo.clone(),
            requested.gitops.repo.clone(),
        );
        cmp(
            "gitops_revision",
            self.gitops.revision.clone(),
            requested.gitops.revision.clone(),
        );
        cmp(
            "gitops_path",
            self.gitops.path.clone(),
            requested.gitops.path.clone(),
        );
        cmp(
            "gitops_credentials",
            self.gitops.credentials.to_string(),
            requested.gitops.credentials.to_string(),
        );
        cmp(
            "gateway_api",
            self.gateway_api.to_string(),
            requested.gateway_api.to_string(),
        );
        cmp(
            "init_vault",
            self.init_vault.to_string(),
            requested.init_vault.to_string(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> InstallRequest {
        InstallRequest {
            cluster_name: "prod".into(),
            nodes: 3,
            control_planes: 1,
            sync_timeout_minutes: 30,
            project: Some("proj_lab".into()),
            api_url: "https://api.latitude.sh".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_resolve_to_the_documented_values() {
        let spec = request().validate().unwrap();
        assert_eq!(spec.cp_plan, "c2-small-x86");
        assert_eq!(spec.worker_plan, "c2-small-x86");
        assert_eq!(
            spec.region,
            RegionChoice::Auto {
                fallback_order: vec!["MIA2".into(), "DAL".into(), "ASH".into(), "LAX".into()]
            }
        );
        assert_eq!(spec.storage_replicas, 2);
        assert_eq!(spec.profile, Profile::Standard);
        assert_eq!(spec.workers(), 2);
        let hosts: Vec<_> = spec.node_slots().into_iter().map(|s| s.hostname).collect();
        assert_eq!(hosts, ["prod-cp-1", "prod-worker-1", "prod-worker-2"]);
    }

    #[test]
    fn two_nodes_are_one_control_plane_and_one_worker_with_one_replica_by_default() {
        let spec = InstallRequest {
            nodes: 2,
            ..request()
        }
        .validate()
        .unwrap();
        assert_eq!(spec.workers(), 1);
        assert_eq!(spec.storage_replicas, 1);
        assert!(!spec.control_planes_schedulable());
    }

    #[test]
    fn refusals_name_the_flag_and_value() {
        let cases: Vec<(InstallRequest, &str, &str)> = vec![
            (
                InstallRequest {
                    nodes: 0,
                    ..request()
                },
                "--nodes",
                "0",
            ),
            (
                InstallRequest {
                    control_planes: 2,
                    ..request()
                },
                "--control-planes",
                "2",
            ),
            (
                InstallRequest {
                    nodes: 2,
                    control_planes: 3,
                    ..request()
                },
                "--nodes",
                "2",
            ),
            (
                InstallRequest {
                    storage_replicas: Some(5),
                    ..request()
                },
                "--storage-replicas",
                "5",
            ),
            (
                InstallRequest {
                    nodes: 2,
                    storage_replicas: Some(2),
                    ..request()
                },
                "--storage-replicas",
                "2",
            ),
            (
                InstallRequest {
                    cluster_name: "Prod_1".into(),
                    ..request()
                },
                "--cluster-name",
                "Prod_1",
            ),
            (
                InstallRequest {
                    cluster_name: "a-very-long-cluster-name-x".into(),
                    ..request()
                },
                "--cluster-name",
                "a-very-long-cluster-name-x",
            ),
            (
                InstallRequest {
                    region: Some("MIA2".into()),
                    auto_region: true,
                    ..request()
                },
                "--region",
                "MIA2",
            ),
            (
                InstallRequest {
                    region: Some("mia 2".into()),
                    ..request()
                },
                "--region",
                "mia 2",
            ),
            (
                InstallRequest {
                    cp_plan: Some("C2 small".into()),
                    ..request()
                },
                "--cp-plan",
                "C2 small",
            ),
            (
                InstallRequest {
                    talos_version: Some("1.11".into()),
                    ..request()
                },
                "--talos-version",
                "1.11",
            ),
            (
                InstallRequest {
                    sync_timeout_minutes: 0,
                    ..request()
                },
                "--sync-timeout",
                "0",
            ),
            (
                InstallRequest {
                    profile: Some("huge".into()),
                    ..request()
                },
                "--profile",
                "huge",
            ),
            (
                InstallRequest {
                    project: None,
                    ..request()
                },
                "--project",
                "",
            ),
            (
                InstallRequest {
                    api_url: "ftp://x".into(),
                    ..request()
                },
                "--api-url",
                "ftp://x",
            ),
            (
                InstallRequest {
                    storage_disk: Some("nvme1n1".into()),
                    ..request()
                },
                "--storage-disk",
                "nvme1n1",
            ),
            (
                InstallRequest {
                    gitops_repo: Some("ftp://example.com/x".into()),
                    ..request()
                },
                "--gitops-repo",
                "ftp://example.com/x",
            ),
            (
                InstallRequest {
                    gitops_revision: Some(" ".into()),
                    ..request()
                },
                "--gitops-revision",
                " ",
            ),
            (
                InstallRequest {
                    gitops_path: Some("/".into()),
                    ..request()
                },
                "--gitops-path",
                "/",
            ),
            (
                InstallRequest {
                    gitops_path: Some("../x".into()),
                    ..request()
                },
                "--gitops-path",
                "../x",
            ),
        ];
        for (req, flag, value) in cases {
            let err = req.validate().expect_err(flag);
            assert_eq!(err.flag, flag, "{err}");
            assert_eq!(err.value, value, "{err}");
            assert!(err.to_string().contains(flag));
        }
    }

    #[test]
    fn patches_that_break_a_rendered_configuration_are_refused_in_validation() {
        let patch = |scope, content: &str| PatchSource {
            scope,
            source: "inline".into(),
            content: content.into(),
        };
        // A cluster.ca override for every machine hands workers the Kubernetes CA key.
        let ca = "cluster:\n  ca:\n    crt: Y3J0\n    key: a2V5\n";
        let err = InstallRequest {
            config_patches: vec![patch(PatchScope::All, ca)],
            ..request()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.flag, "--config-patch", "{err}");
        assert!(err.to_string().contains("cluster.ca"), "{err}");
        // Even a single-node install renders both roles, as step 6 does.
        let err = InstallRequest {
            nodes: 1,
            config_patches: vec![patch(PatchScope::All, "cluster:\n  etcd:\n    image: x\n")],
            ..request()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("etcd"), "{err}");
        // The same override for control planes only is theirs to make.
        InstallRequest {
            config_patches: vec![patch(PatchScope::ControlPlane, ca)],
            ..request()
        }
        .validate()
        .unwrap();
        let err = InstallRequest {
            config_patches: vec![patch(PatchScope::Worker, "persist: false\n")],
            ..request()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.flag, "--config-patch-worker", "{err}");
    }

    #[test]
    fn single_control_plane_without_workers_is_schedulable() {
        let spec = InstallRequest {
            nodes: 1,
            ..request()
        }
        .validate()
        .unwrap();
        assert!(spec.control_planes_schedulable());
        assert_eq!(spec.storage_replicas, 1);
    }

    #[test]
    fn hostnames_round_trip_and_do_not_match_other_clusters() {
        assert_eq!(parse_hostname("a", "a-cp-1"), Some((Role::ControlPlane, 1)));
        assert_eq!(parse_hostname("a", "a-worker-12"), Some((Role::Worker, 12)));
        assert_eq!(parse_hostname("a", "a-cp-cp-1"), None);
        assert_eq!(parse_hostname("a", "ab-cp-1"), None);
        assert_eq!(parse_hostname("a", "a-cp-01"), None);
        assert_eq!(
            parse_hostname("a-cp", "a-cp-cp-1"),
            Some((Role::ControlPlane, 1))
        );
    }

    #[test]
    fn a_spec_reproduces_itself_through_a_request() {
        for req in [
            request(),
            InstallRequest {
                region: Some("dal".into()),
                nodes: 1,
                ..request()
            },
            InstallRequest {
                fallback_regions: Some("LAX,NYC".into()),
                storage_disk: Some("/dev/nvme1n1".into()),
                ..request()
            },
        ] {
            let spec = req.validate().unwrap();
            assert_eq!(InstallRequest::from_spec(&spec).validate().unwrap(), spec);
        }
    }

    #[test]
    fn diff_lists_every_contradiction() {
        let a = request().validate().unwrap();
        let b = InstallRequest {
            nodes: 5,
            region: Some("DAL".into()),
            ..request()
        }
        .validate()
        .unwrap();
        let fields: Vec<_> = a.diff(&b).into_iter().map(|d| d.field).collect();
        assert_eq!(fields, ["nodes", "region"]);
        assert!(a.diff(&a).is_empty());
    }
}

#[cfg(test)]
mod gitops_tests {
    use super::*;

    fn request() -> InstallRequest {
        InstallRequest {
            cluster_name: "prod".into(),
            nodes: 3,
            control_planes: 1,
            sync_timeout_minutes: 30,
            project: Some("proj_lab".into()),
            api_url: "https://api.latitude.sh".into(),
            ..Default::default()
        }
    }

    #[test]
    fn gitops_defaults_and_profile_path() {
        let spec = request().validate().unwrap();
        assert_eq!(spec.gitops, GitopsSource::default());
        assert_eq!(spec.gitops.repo, "https://github.com/5dlabs/cto");
        assert_eq!(
            spec.gitops.profile_path(Profile::Standard),
            "gitops/apps/standard"
        );
        assert!(!spec.gateway_api);
    }

    #[test]
    fn repo_urls_accept_https_ssh_and_scp_forms() {
        for ok in [
            "https://github.com/me/platform",
            "ssh://git@github.com/me/platform.git",
            "git@github.com:me/platform.git",
            // A repository served on this machine.
            "http://127.0.0.1:8418/platform.git",
        ] {
            let spec = InstallRequest {
                gitops_repo: Some(ok.into()),
                gitops_path: Some("/deploy/gitops/".into()),
                ..request()
            }
            .validate()
            .unwrap();
            assert_eq!(spec.gitops.repo, ok);
            assert_eq!(spec.gitops.path, "deploy/gitops");
        }
        for bad in [
            "http://github.com/x/y",
            "http://localhost:8418/x.git",
            "github.com/x/y",
            "https://",
            "",
        ] {
            let err = InstallRequest {
                gitops_repo: Some(bad.into()),
                ..request()
            }
            .validate()
            .unwrap_err();
            assert_eq!(err.flag, "--gitops-repo");
        }
    }

    #[test]
    fn credentials_inside_urls_are_refused_without_being_repeated() {
        for (req, flag) in [
            (
                InstallRequest {
                    gitops_repo: Some("https://me:ghp_tok3n@github.com/me/platform".into()),
                    ..request()
                },
                "--gitops-repo",
            ),
            (
                InstallRequest {
                    gitops_repo: Some("https://ghp_tok3n@github.com/me/platform".into()),
                    ..request()
                },
                "--gitops-repo",
            ),
            (
                InstallRequest {
                    gitops_repo: Some("ssh://git:ghp_tok3n@github.com/me/platform".into()),
                    ..request()
                },
                "--gitops-repo",
            ),
            (
                InstallRequest {
                    api_url: "https://user:ghp_tok3n@api.latitude.sh".into(),
                    ..request()
                },
                "--api-url",
            ),
            (
                InstallRequest {
                    image_factory_url: Some("https://ghp_tok3n@factory.example.net".into()),
                    ..request()
                },
                "--image-factory-url",
            ),
        ] {
            let err = req.validate().expect_err(flag);
            assert_eq!(err.flag, flag, "{err}");
            assert!(!err.to_string().contains("ghp_tok3n"), "{err}");
            assert!(err.to_string().contains("***@"), "{err}");
        }
    }

    #[test]
    fn plain_http_only_to_literal_loopback_addresses() {
        for (flag, url) in [
            ("--api-url", "http://evil.localhost:8080"),
            ("--api-url", "http://localhost:8080"),
            ("--api-url", "http://api.example.com"),
            ("--image-factory-url", "http://example.com"),
            ("--image-factory-url", "http://10.0.0.5"),
        ] {
            let mut req = request();
            if flag == "--api-url" {
                req.api_url = url.into();
            } else {
                req.image_factory_url = Some(url.into());
            }
            let err = req.validate().expect_err(url);
            assert_eq!(err.flag, flag, "{err}");
        }
        let spec = InstallRequest {
            api_url: "http://127.0.0.1:8080".into(),
            image_factory_url: Some("http://[::1]:9000/".into()),
            ..request()
        }
        .validate()
        .unwrap();
        assert_eq!(spec.image_factory_url.as_deref(), Some("http://[::1]:9000"));
    }

    #[test]
    fn gitops_fields_round_trip_and_diff() {
        let a = InstallRequest {
            gitops_revision: Some("v1.2.3".into()),
            gateway_api: true,
            gitops_credentials: true,
            ..request()
        }
        .validate()
        .unwrap();
        assert_eq!(InstallRequest::from_spec(&a).validate().unwrap(), a);
        let b = request().validate().unwrap();
        let fields: Vec<_> = a.diff(&b).into_iter().map(|d| d.field).collect();
        assert_eq!(
            fields,
            ["gitops_revision", "gitops_credentials", "gateway_api"]
        );
    }

    #[test]
    fn the_token_never_prints() {
        let t = GitopsToken::new(" ghp_secret\n");
        assert_eq!(t.expose(), "ghp_secret");
        assert!(!format!("{t:?} {t}").contains("ghp_secret"));
    }

    #[test]
    fn an_older_spec_without_gitops_fields_still_loads() {
        let spec = request().validate().unwrap();
        let mut value = serde_json::to_value(&spec).unwrap();
        let obj = value.as_object_mut().unwrap();
        obj.remove("gitops");
        obj.remove("gateway_api");
        let back: ClusterSpec = serde_json::from_value(value).unwrap();
        assert_eq!(back, spec);
    }
}
