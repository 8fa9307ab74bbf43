//! [`WorldShape`]: what the critical path depends on, and how it is read from a running lab
//! (the world's servers and their applied machine configurations, the cluster's persisted
//! objects, the GitOps tree the simulated Argo CD reads).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::config::LabConfig;
use crate::gitops;
use crate::state::Lab;

/// The Helm releases the installer's steps 13, 15 and 16 install, in that order.
pub(crate) const CILIUM_RELEASE: &str = "cilium";
pub(crate) const LOCAL_PATH_RELEASE: &str = "local-path-provisioner";
pub(crate) const ARGOCD_RELEASE: &str = "argocd";
/// Where the install Jobs run.
const HELM_NAMESPACE: &str = "kube-system";
/// The root Application the installer applies in step 18.
pub(crate) const ROOT_APPLICATION: &str = "cto-platform";
/// Where Argo CD and its Applications live.
const ARGOCD_NAMESPACE: &str = "argocd";
/// The root's source when the cluster has no root Application yet: the installer's defaults
/// (`--gitops-repo`, `--gitops-path`, `--profile standard`).
const DEFAULT_ROOT_PATH: &str = "gitops/apps/standard";
/// The installer's volume test claim (step 20).
pub(crate) const TEST_CLAIM: &str = "default/cto-storage-check";
/// The StorageClass whose `repl` the volume test needs Online pools for.
const MAYASTOR_CLASS: &str = "mayastor-nvme";
/// How deep app-of-apps nesting is followed (a cycle guard).
const MAX_DEPTH: usize = 8;

/// Everything the bounds depend on besides the durations.
#[derive(Debug, Clone)]
pub(crate) struct WorldShape {
    /// The cluster's name (`cluster.clusterName` of the applied configs), if known.
    pub cluster: String,
    /// The servers, in the order the installer orders them (control planes, then workers).
    pub servers: Vec<ServerShape>,
    /// Index into `servers` of the control plane the machine configs name as the endpoint:
    /// the one that must be bootstrapped (the Kubernetes API listens where etcd was
    /// bootstrapped, and the kubeconfig points at the endpoint).
    pub bootstrap: usize,
    /// Writes allowed per API key in any window of `window_s` modelled seconds.
    pub writes_per_window: u32,
    /// The rate-limit window, in modelled seconds.
    pub window_s: f64,
    /// Writes the installer must make to Latitude before its orders (SSH keys…): none today.
    pub writes_before_orders: usize,
    /// The install Jobs, as `<namespace>/<name>` (the subjects of their `JobRun`).
    pub cilium_job: String,
    pub local_path_job: String,
    pub argocd_job: String,
    /// The root Application and everything it brings in, as Argo CD would sync it.
    pub root: AppShape,
    /// The Mayastor DiskPools: (name, node hostname).
    pub pools: Vec<(String, String)>,
    /// Online pools the volume test's claim needs (`parameters.repl` of `mayastor-nvme`).
    pub replicas: usize,
    /// Whether the run initialises and unseals Vault (`--init-vault`).
    pub init_vault: bool,
    /// Applications the lab keeps Degraded (`argocd_degraded`): the bound assumes they are not.
    pub degraded: Vec<String>,
}

/// One server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerShape {
    pub hostname: String,
    pub control_plane: bool,
}

/// An Argo CD Application as the lab's controller syncs it.
#[derive(Debug, Clone)]
pub(crate) struct AppShape {
    pub name: String,
    /// Its `argocd.argoproj.io/sync-wave` among its siblings.
    pub wave: i64,
    /// `spec.source.chart`, if it is a Helm chart (what the storage and Vault simulations key on).
    pub chart: Option<String>,
    pub content: AppContent,
}

/// What syncing an Application involves.
#[derive(Debug, Clone)]
pub(crate) enum AppContent {
    /// A chart or a repository the lab cannot read: one `argocd_sync`.
    Trivial,
    /// Manifests the lab could not load (a missing path, Kustomize): one `argocd_sync`, then a
    /// ComparisonError (health Healthy, sync Unknown).
    Unloadable(String),
    /// A directory of manifests, by sync wave (lowest first).
    Waves(Vec<Wave>),
}

/// One sync wave of a directory Application.
#[derive(Debug, Clone)]
pub(crate) struct Wave {
    pub wave: i64,
    pub objects: Vec<Child>,
}

/// An object a sync wave applies, by how its health comes about.
#[derive(Debug, Clone)]
pub(crate) enum Child {
    /// An Application: Healthy once its own sync is done.
    App(AppShape),
    /// A Deployment or StatefulSet (`<namespace>/<name>`): rolled out `workload_rollout` after
    /// it can schedule.
    Rollout(String),
    /// A DaemonSet (`<namespace>/<name>`): rolled out on every registered Node.
    DaemonSet(String),
    /// A Job (`<namespace>/<name>`): complete `job_run` after it can schedule.
    Job(String),
    /// Anything else: healthy at once.
    Instant,
}

impl AppShape {
    /// Every Application of the tree, this one included.
    pub fn count(&self) -> usize {
        1 + self.children().map(AppShape::count).sum::<usize>()
    }

    /// How many sync waves the lab applies over the whole tree.
    pub fn waves(&self) -> usize {
        let own = match &self.content {
            AppContent::Waves(waves) => waves.len(),
            _ => 0,
        };
        own + self.children().map(AppShape::waves).sum::<usize>()
    }

    /// The child Applications (of every wave).
    pub fn children(&self) -> impl Iterator<Item = &AppShape> {
        let waves: &[Wave] = match &self.content {
            AppContent::Waves(waves) => waves,
            _ => &[],
        };
        waves
            .iter()
            .flat_map(|w| w.objects.iter())
            .filter_map(|c| match c {
                Child::App(app) => Some(app),
                _ => None,
            })
    }

    /// Applications whose manifests the lab cannot load, with why: they end with a
    /// ComparisonError (sync Unknown), so a real install never sees them Synced.
    pub fn unloadable(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let AppContent::Unloadable(why) = &self.content {
            out.push(format!("{}: {why}", self.name));
        }
        for child in self.children() {
            out.extend(child.unloadable());
        }
        out
    }

    /// Whether some Application of the tree has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.name == name || self.children().any(|c| c.contains(name))
    }
}

impl WorldShape {
    pub fn control_planes(&self) -> usize {
        self.servers.iter().filter(|s| s.control_plane).count()
    }

    pub fn workers(&self) -> usize {
        self.servers.len() - self.control_planes()
    }

    /// A JSON summary (the `shape` of `GET /_lab/critical-path`).
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "cluster": self.cluster,
            "control_planes": self.control_planes(),
            "workers": self.workers(),
            "bootstrap_node": self.servers.get(self.bootstrap).map(|s| s.hostname.clone()),
            "orders": self.servers.len(),
            "writes_before_orders": self.writes_before_orders,
            "writes_per_minute": self.writes_per_window,
            "helm_jobs": [self.cilium_job, self.local_path_job, self.argocd_job],
            "root_application": self.root.name,
            "applications": self.root.count(),
            "waves": self.root.waves(),
            "storage_nodes": self.pools.iter().map(|(_, node)| node.clone()).collect::<Vec<_>>(),
            "storage_replicas": self.replicas,
            "init_vault": self.init_vault,
            "degraded_ignored": self.degraded,
            "unloadable_ignored": self.root.unloadable(),
        })
    }
}

/// Reads the shape of `lab`'s world as it is now. `Err` (a message) when there is nothing to
/// compute a bound for.
pub(crate) fn from_lab(lab: &Lab) -> Result<WorldShape, String> {
    let servers: Vec<LiveServer> = {
        let world = lab.world();
        world
            .servers
            .iter()
            .map(|s| LiveServer {
                hostname: s.hostname.clone(),
                ip: s.ip.to_string(),
                config: s
                    .talos
                    .as_ref()
                    .filter(|t| t.generation == s.lifecycle.started_at_ms)
                    .and_then(|t| config_facts(&t.config)),
                bootstrapped: s
                    .talos
                    .as_ref()
                    .is_some_and(|t| t.bootstrapped_at_ms.is_some()),
            })
            .collect()
    };
    if servers.is_empty() {
        return Err(
            "the lab's world has no servers: the critical path is computed for the servers an install ordered; run one first"
                .into(),
        );
    }
    let (cluster, servers) = one_cluster(servers);
    let objects = cluster_objects(&lab.state_dir, &cluster);
    build(&lab.config, cluster, servers, &objects)
}

/// What the critical path needs of one server of the world.
#[derive(Debug, Clone)]
pub(crate) struct LiveServer {
    pub hostname: String,
    pub ip: String,
    pub config: Option<ConfigFacts>,
    pub bootstrapped: bool,
}

/// What the critical path needs of an applied machine configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigFacts {
    pub control_plane: bool,
    pub cluster: String,
    /// The host of `cluster.controlPlane.endpoint`.
    pub endpoint_host: String,
}

fn config_facts(yaml: &str) -> Option<ConfigFacts> {
    let doc: Value = serde_saphyr::from_str(yaml).ok()?;
    let machine_type = doc.pointer("/machine/type").and_then(Value::as_str)?;
    let endpoint = doc
        .pointer("/cluster/controlPlane/endpoint")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let host = endpoint
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string();
    Some(ConfigFacts {
        control_plane: matches!(machine_type, "controlplane" | "init"),
        cluster: doc
            .pointer("/cluster/clusterName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        endpoint_host: host,
    })
}

/// The servers of one cluster: the cluster most configured servers belong to, with the
/// servers not configured yet whose hostname starts with `<cluster>-`. Without any
/// configuration, every server (the cluster's name guessed from the hostnames).
fn one_cluster(servers: Vec<LiveServer>) -> (String, Vec<LiveServer>) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in &servers {
        if let Some(c) = &s.config {
            *counts.entry(c.cluster.clone()).or_default() += 1;
        }
    }
    match counts.into_iter().max_by_key(|(_, n)| *n) {
        Some((cluster, _)) => {
            let prefix = format!("{cluster}-");
            let mine = servers
                .into_iter()
                .filter(|s| match &s.config {
                    Some(c) => c.cluster == cluster,
                    None => s.hostname.starts_with(&prefix),
                })
                .collect();
            (cluster, mine)
        }
        None => {
            let cluster = servers
                .iter()
                .find_map(|s| {
                    s.hostname
                        .split_once("-cp-")
                        .or_else(|| s.hostname.split_once("-worker-"))
                        .map(|(c, _)| c.to_string())
                })
                .unwrap_or_default();
            (cluster, servers)
        }
    }
}

/// The role of a server: its configuration's, else its hostname's (`<cluster>-cp-<n>`).
fn is_control_plane(s: &LiveServer) -> bool {
    match &s.config {
        Some(c) => c.control_plane,
        None => s.hostname.contains("-cp-"),
    }
}

/// The number a hostname ends with (`a-worker-12` → 12), for the installer's order.
fn index_of(hostname: &str) -> u64 {
    let digits: String = hostname
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(u64::MAX)
}

/// The objects persisted for `cluster` (`<state dir>/kube-<cluster>.json`, as the Talos
/// reconciler names it), by resource: (resource, object). Empty before the cluster exists.
fn cluster_objects(state_dir: &Path, cluster: &str) -> Vec<(String, Value)> {
    let file: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let Ok(bytes) = std::fs::read(state_dir.join(format!("kube-{file}.json"))) else {
        return Vec::new();
    };
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    doc["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["resource"].as_str().unwrap_or_default().to_string(),
                e["object"].clone(),
            )
        })
        .collect()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The shape from its parts: the servers of the cluster and its objects (possibly none yet).
pub(crate) fn build(
    config: &LabConfig,
    cluster: String,
    servers: Vec<LiveServer>,
    objects: &[(String, Value)],
) -> Result<WorldShape, String> {
    let mut servers = servers;
    servers.sort_by(|a, b| {
        (!is_control_plane(a), index_of(&a.hostname), &a.hostname).cmp(&(
            !is_control_plane(b),
            index_of(&b.hostname),
            &b.hostname,
        ))
    });
    let endpoint = servers
        .iter()
        .find_map(|s| s.config.as_ref().map(|c| c.endpoint_host.clone()))
        .unwrap_or_default();
    let bootstrap = servers
        .iter()
        .position(|s| is_control_plane(s) && s.ip == endpoint)
        .or_else(|| servers.iter().position(|s| s.bootstrapped))
        .or_else(|| servers.iter().position(is_control_plane))
        .ok_or_else(|| {
            format!(
                "none of the {} server(s) is a control plane (no applied controlplane config, no `-cp-` hostname): there is no cluster to compute a critical path for",
                servers.len()
            )
        })?;
    let shapes: Vec<ServerShape> = servers
        .iter()
        .map(|s| ServerShape {
            hostname: s.hostname.clone(),
            control_plane: is_control_plane(s),
        })
        .collect();

    let of = |resource: &'static str| {
        objects
            .iter()
            .filter(move |(r, _)| r == resource)
            .map(|(_, o)| o)
    };
    let job = |release: &str| {
        let mut jobs: Vec<&Value> = of("jobs")
            .filter(|j| {
                str_at(j, "/metadata/namespace") == HELM_NAMESPACE
                    && str_at(j, "/metadata/labels/cto.dev~1helm-release") == release
            })
            .collect();
        jobs.sort_by_key(|j| str_at(j, "/metadata/creationTimestamp").to_string());
        match jobs.last() {
            Some(j) => format!("{HELM_NAMESPACE}/{}", str_at(j, "/metadata/name")),
            None => format!("{HELM_NAMESPACE}/helm-install-{release}"),
        }
    };

    let root_object = of("applications")
        .find(|a| {
            str_at(a, "/metadata/name") == ROOT_APPLICATION
                && str_at(a, "/metadata/namespace") == ARGOCD_NAMESPACE
        })
        .cloned()
        .unwrap_or_else(|| {
            serde_json::json!({
                "metadata": {"name": ROOT_APPLICATION, "namespace": ARGOCD_NAMESPACE},
                "spec": {"source": {
                    "repoURL": gitops::CTO_REPO_URL,
                    "targetRevision": "main",
                    "path": DEFAULT_ROOT_PATH,
                    // The installer's one repository setting (installer `steps/gitops.rs`
                    // `source_patch`).
                    "kustomize": {"patches": [{
                        "target": {"version": "v1", "kind": "ConfigMap", "name": "cto-gitops-source"},
                        "patch": serde_json::json!([
                            {"op": "replace", "path": "/data/repoURL", "value": gitops::CTO_REPO_URL},
                            {"op": "replace", "path": "/data/targetRevision", "value": "main"},
                            {"op": "replace", "path": "/data/path", "value": "gitops"},
                        ]).to_string(),
                    }]},
                }},
            })
        });
    let mut seen = HashSet::new();
    let root = app_shape(config, &root_object, 0, &mut seen);

    let storage_role = shapes.iter().any(|s| !s.control_plane);
    let mut pools: Vec<(String, String)> = of("diskpools")
        .map(|p| {
            (
                str_at(p, "/metadata/name").to_string(),
                str_at(p, "/spec/node").to_string(),
            )
        })
        .collect();
    if pools.is_empty() {
        pools = shapes
            .iter()
            .filter(|s| s.control_plane != storage_role)
            .map(|s| (format!("pool-{}", s.hostname), s.hostname.clone()))
            .collect();
    }
    let replicas = of("storageclasses")
        .find(|c| str_at(c, "/metadata/name") == MAYASTOR_CLASS)
        .and_then(|c| str_at(c, "/parameters/repl").parse::<usize>().ok())
        .unwrap_or_else(|| 2.min(pools.len()))
        .max(1);
    let init_vault = of("configmaps").any(|c| {
        str_at(c, "/metadata/name") == "vault-lab-state"
            && serde_json::from_str::<Value>(str_at(c, "/data/state"))
                .is_ok_and(|s| s["initialized"] == true)
    });
    let degraded = config
        .argocd_degraded
        .iter()
        .filter(|name| root.contains(name))
        .cloned()
        .collect();

    Ok(WorldShape {
        cluster,
        servers: shapes,
        bootstrap,
        writes_per_window: config.writes_per_minute,
        window_s: crate::ratelimit::WINDOW_MODELLED_S as f64,
        writes_before_orders: 0,
        cilium_job: job(CILIUM_RELEASE),
        local_path_job: job(LOCAL_PATH_RELEASE),
        argocd_job: job(ARGOCD_RELEASE),
        root,
        pools,
        replicas,
        init_vault,
        degraded,
    })
}

/// An Application as the lab's Argo CD loads it (`controllers::argocd::load`): a chart or an
/// unreadable repository is trivial; a readable directory is its manifests by sync wave.
pub(crate) fn app_shape(
    config: &LabConfig,
    app: &Value,
    depth: usize,
    seen: &mut HashSet<String>,
) -> AppShape {
    let name = str_at(app, "/metadata/name").to_string();
    let wave = wave_of(app);
    let source = crate::gitops::application_source(app);
    let chart = source
        .get("chart")
        .and_then(Value::as_str)
        .map(str::to_string);
    let shape = |content| AppShape {
        name: name.clone(),
        wave,
        chart: chart.clone(),
        content,
    };
    if chart.is_some() || depth > MAX_DEPTH || !seen.insert(name.clone()) {
        return shape(AppContent::Trivial);
    }
    let Some(repo) = gitops::resolve(config, str_at(&source, "/repoURL")) else {
        return shape(AppContent::Trivial);
    };
    let loaded = gitops::directory(&repo, &source).map(|(_, objects, _)| objects);
    let objects = match loaded {
        Ok(objects) => objects,
        Err(error) => return shape(AppContent::Unloadable(error)),
    };
    let destination = match str_at(app, "/spec/destination/namespace") {
        "" => "default",
        ns => ns,
    };
    let mut waves: Vec<Wave> = Vec::new();
    for object in objects {
        let w = wave_of(&object);
        let child = child_of(config, &object, destination, depth, seen);
        match waves.iter_mut().find(|x| x.wave == w) {
            Some(x) => x.objects.push(child),
            None => waves.push(Wave {
                wave: w,
                objects: vec![child],
            }),
        }
    }
    waves.sort_by_key(|w| w.wave);
    shape(AppContent::Waves(waves))
}

fn child_of(
    config: &LabConfig,
    object: &Value,
    destination: &str,
    depth: usize,
    seen: &mut HashSet<String>,
) -> Child {
    let group = str_at(object, "/apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let subject = || {
        let ns = match str_at(object, "/metadata/namespace") {
            "" => destination,
            ns => ns,
        };
        format!("{ns}/{}", str_at(object, "/metadata/name"))
    };
    match (group, str_at(object, "/kind")) {
        ("argoproj.io", "Application") => Child::App(app_shape(config, object, depth + 1, seen)),
        ("apps", "Deployment" | "StatefulSet") => Child::Rollout(subject()),
        ("apps", "DaemonSet") => Child::DaemonSet(subject()),
        ("batch", "Job") => Child::Job(subject()),
        _ => Child::Instant,
    }
}

fn wave_of(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("argocd.argoproj.io/sync-wave"))
        .and_then(Value::as_str)
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(0)
}
