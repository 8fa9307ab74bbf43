//! `cargo xtask gitops-check`: validates the `gitops/` tree the way Argo CD will read it, so a
//! broken manifest fails CI instead of a cluster's sync.
//!
//! It owns the tree's rules (documented in `docs/gitops.md`):
//!
//! * every `*.yaml`/`*.yml` parses (multi-document YAML);
//! * each directory `gitops/apps/<profile>` is a profile: what the root Application
//!   `cto-platform` syncs for `--profile <profile>`; `minimal`, `standard` and `full` exist. From
//!   each profile the Applications it reaches are followed (an Application whose source is a
//!   directory of this repository pulls in that directory's manifests);
//! * every Application has `metadata.namespace: argocd`, a project defined in its profile, a
//!   source with a repository and a pinned `targetRevision` (charts: an exact version, never
//!   `HEAD`, `latest`, `*` or a range, and explicit `helm.valuesObject`/`values`; other Git
//!   repositories: a tag or commit, never a branch), and a destination namespace that is created
//!   (`CreateNamespace=true`, a `Namespace` manifest in the tree, or one the installer creates);
//! * no two objects of one kind share a name within a profile;
//! * waves: the `storage` category syncs strictly before every other category, and every
//!   dependency named in `cto.dev/depends-on` exists in the profile and syncs in an earlier wave
//!   than its dependent (compared where their app-of-apps ancestry diverges);
//! * each AppProject allows exactly the repositories, destination namespaces and cluster-scoped
//!   kinds its Applications use (an Application from outside this repository declares its
//!   cluster-scoped kinds in `cto.dev/cluster-kinds`, as `Kind.group`), with Argo CD v3.2's
//!   rules: `CreateNamespace=true` needs `Namespace` in `clusterResourceWhitelist` (Argo CD
//!   checks the namespace it creates like any resource: "resource :Namespace is not permitted
//!   in project …", `controller/sync.go`), a plain manifest's kind must pass
//!   `IsGroupKindPermitted` and its namespace the project's destinations;
//! * one repository setting: no file names the tree's own repository (the root Application
//!   gives it; a profile directory is a Kustomize directory whose replacements carry it into
//!   the category Applications, which name the installer's project `cto`);
//! * no component conflicts with Cilium as the CNI with kube-proxy replacement on Talos (see
//!   [`cni_conflict`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Namespaces the installer creates before Argo CD syncs anything (steps 10–16).
pub const INSTALLER_NAMESPACES: [&str; 4] =
    ["kube-system", "argocd", "openebs", "local-path-storage"];
/// The profiles `cto install --profile` accepts.
pub const PROFILES: [&str; 3] = ["minimal", "standard", "full"];
/// The AppProject the installer creates for the root Application (and the category
/// Applications of the tree): Applications and AppProjects in `argocd`, from the tree's
/// repository.
pub const BOOTSTRAP_PROJECT: &str = "cto";
/// The kinds the bootstrap project lets its Applications create.
const BOOTSTRAP_KINDS: [&str; 2] = ["Application", "AppProject"];
/// The category that must sync first.
const STORAGE_CATEGORY: &str = "storage";
/// Kinds that are cluster-scoped when they appear as plain manifests.
const CLUSTER_SCOPED: [(&str, &str); 12] = [
    ("Namespace", ""),
    ("CustomResourceDefinition", "apiextensions.k8s.io"),
    ("ClusterRole", "rbac.authorization.k8s.io"),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io"),
    ("StorageClass", "storage.k8s.io"),
    ("CSIDriver", "storage.k8s.io"),
    ("PriorityClass", "scheduling.k8s.io"),
    ("IngressClass", "networking.k8s.io"),
    (
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io",
    ),
    (
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io",
    ),
    ("APIService", "apiregistration.k8s.io"),
    ("ClusterIssuer", "cert-manager.io"),
];

/// One parsed YAML document.
#[derive(Debug, Clone)]
struct Doc {
    /// Path relative to the repository root.
    file: String,
    value: Value,
}

/// `(wave, name)` of each Application on the way from the root Application to one.
type Lineage = Vec<(i64, String)>;

/// An Application reached from a profile.
#[derive(Debug, Clone)]
struct App {
    name: String,
    file: String,
    value: Value,
    /// `(wave, name)` of every ancestor below the root, then of itself.
    lineage: Lineage,
    /// Its source is a directory of this tree (a category Application).
    tree: bool,
}

/// What a successful check saw.
#[derive(Debug, Default)]
pub struct Summary {
    /// YAML files parsed.
    pub files: usize,
    /// Applications per profile.
    pub apps: BTreeMap<String, usize>,
}

/// True for a repository URL that means this repository.
pub fn is_this_repo(url: &str) -> bool {
    let u = url.trim_end_matches('/');
    u.ends_with("/cto") || u.ends_with("/cto.git") || u.ends_with(":5dlabs/cto.git")
}

/// Checks the tree `<repo_root>/gitops`. Returns what it saw, or every problem found.
pub fn check(repo_root: &Path) -> Result<Summary, Vec<String>> {
    let mut problems = Vec::new();
    let gitops = repo_root.join("gitops");
    let mut files = Vec::new();
    collect_yaml(&gitops, &mut files);
    files.sort();
    if files.is_empty() {
        return Err(vec![format!("{}: no YAML files", gitops.display())]);
    }
    let mut docs: Vec<Doc> = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(repo_root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/");
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{rel}: unreadable: {e}"));
                continue;
            }
        };
        match serde_saphyr::from_multiple::<Value>(&text) {
            Ok(values) => {
                for value in values.into_iter().filter(|v| !v.is_null()) {
                    if !value.is_object() || value["kind"].as_str().is_none() {
                        problems.push(format!("{rel}: a document without a kind"));
                        continue;
                    }
                    docs.push(Doc {
                        file: rel.clone(),
                        value,
                    });
                }
            }
            Err(e) => problems.push(format!("{rel}: does not parse: {e}")),
        }
    }

    for doc in &docs {
        let mut urls = Vec::new();
        strings_in(&doc.value, &mut urls);
        for url in urls
            .into_iter()
            .filter(|u| is_repo_url(u) && is_this_repo(u))
        {
            problems.push(format!(
                "{}: {} {}: hard-codes the tree's own repository {url}; the root Application gives it once (--gitops-repo), see docs/gitops.md",
                doc.file,
                doc.value["kind"].as_str().unwrap_or_default(),
                doc.value["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
        if let Some(conflict) = cni_conflict(&doc.value) {
            problems.push(format!(
                "{}: {} {}: {conflict}",
                doc.file,
                doc.value["kind"].as_str().unwrap_or_default(),
                doc.value["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }

    let mut summary = Summary {
        files: files.len(),
        ..Default::default()
    };
    for profile in PROFILES {
        let dir = format!("gitops/apps/{profile}");
        if !repo_root.join(&dir).is_dir() {
            problems.push(format!("{dir}: missing (profile {profile})"));
            continue;
        }
        let apps = check_profile(profile, &dir, &docs, &mut problems);
        summary.apps.insert(profile.to_owned(), apps);
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

/// Every string in a document.
fn strings_in<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings_in(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings_in(x, out)),
        _ => {}
    }
}

/// A string that is a repository URL (`https://`, `http://`, `ssh://`, `git@host:`).
fn is_repo_url(s: &str) -> bool {
    let s = s.trim();
    ["https://", "http://", "ssh://", "git://", "git@"]
        .iter()
        .any(|p| s.starts_with(p))
        && !s.contains(char::is_whitespace)
}

/// The conflict class "replaces or breaks the cluster's CNI": the cluster runs Cilium as its
/// CNI with kube-proxy replacement (no kube-proxy, no `kube-proxy` ConfigMap), on Talos. A
/// component conflicts when it is
///
/// * Kilo in a CNI mode: every manifest of `squat/kilo` except the Cilium variants
///   (`kilo-*-cilium*.yaml`, which run Kilo as an add-on mesh). The CNI-mode manifests' init
///   container deletes `/etc/cni/net.d/*` (Cilium's configuration) and the kubeadm ones mount
///   the `kube-proxy` ConfigMap (squat/kilo `manifests/kilo-kubeadm.yaml`);
/// * the chart of another CNI (flannel, Calico's tigera-operator, Canal, Weave, Antrea,
///   kube-router);
/// * a DaemonSet in the tree that mounts the node's `/etc/cni/net.d` or the `kube-proxy`
///   ConfigMap.
pub fn cni_conflict(v: &Value) -> Option<String> {
    const CNI_CHARTS: [&str; 6] = [
        "flannel",
        "tigera-operator",
        "canal",
        "weave-net",
        "antrea",
        "kube-router",
    ];
    let kind = v["kind"].as_str().unwrap_or_default();
    if kind == "Application" {
        let source = &v["spec"]["source"];
        let repo = source["repoURL"].as_str().unwrap_or_default();
        if repo
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .ends_with("squat/kilo")
        {
            let include = source["directory"]["include"].as_str().unwrap_or("*");
            let names: Vec<&str> = include
                .trim_matches(|c| c == '{' || c == '}')
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.starts_with("crds"))
                .collect();
            let cni_mode: Vec<&&str> = names
                .iter()
                .filter(|n| !(n.starts_with("kilo-") && n.contains("-cilium")))
                .collect();
            if !cni_mode.is_empty() {
                return Some(format!(
                    "Kilo manifest(s) {} run Kilo as the CNI: their init container deletes /etc/cni/net.d/* (Cilium's configuration) and the kubeadm ones mount the kube-proxy ConfigMap, which does not exist with Cilium's kube-proxy replacement; use a Cilium variant (kilo-*-cilium.yaml) with a kubeconfig that works on Talos, or leave Kilo out",
                    cni_mode
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if let Some(chart) = source["chart"].as_str()
            && CNI_CHARTS.contains(&chart)
        {
            return Some(format!(
                "chart {chart} installs another CNI; the cluster's CNI is Cilium (installed by cto in step 13)"
            ));
        }
    }
    if kind == "DaemonSet" {
        let volumes = v["spec"]["template"]["spec"]["volumes"].as_array();
        for vol in volumes.into_iter().flatten() {
            let host = vol["hostPath"]["path"].as_str().unwrap_or_default();
            if host.trim_end_matches('/') == "/etc/cni/net.d" {
                return Some(
                    "mounts the node's /etc/cni/net.d: it would rewrite Cilium's CNI configuration"
                        .into(),
                );
            }
            if vol["configMap"]["name"] == "kube-proxy" {
                return Some("mounts the kube-proxy ConfigMap, which does not exist with Cilium's kube-proxy replacement".into());
            }
        }
    }
    None
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_yaml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Documents in directory `dir` (relative to the repository root), recursively or not.
fn docs_in<'a>(docs: &'a [Doc], dir: &str, recurse: bool) -> Vec<&'a Doc> {
    let dir = dir.trim_end_matches('/');
    docs.iter()
        .filter(
            |d| match d.file.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
                Some(rest) => recurse || !rest.contains('/'),
                None => false,
            },
        )
        .collect()
}

fn wave(v: &Value) -> Result<i64, String> {
    match &v["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] {
        Value::Null => Ok(0),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("sync-wave {s:?} is not an integer")),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("sync-wave {n} is not an integer")),
        other => Err(format!("sync-wave {other} is not an integer")),
    }
}

fn annotation_list(v: &Value, key: &str) -> Option<Vec<String>> {
    v["metadata"]["annotations"][key].as_str().map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// `IsGroupKindPermitted` of Argo CD v3.2 for a cluster-scoped kind: a non-empty
/// `clusterResourceWhitelist` that lists it (`*` matches anything) and no blacklist entry.
fn cluster_kind_permitted(spec: &Value, group: &str, kind: &str) -> bool {
    let listed = |list: &Value| {
        list.as_array().into_iter().flatten().any(|i| {
            let k = i["kind"].as_str().unwrap_or_default();
            let g = i["group"].as_str().unwrap_or_default();
            (k == "*" || k == kind) && (g == "*" || g == group)
        })
    };
    listed(&spec["clusterResourceWhitelist"]) && !listed(&spec["clusterResourceBlacklist"])
}

/// An exact chart version: digits and dots (an optional `v` first), an optional pre-release or
/// build suffix; never a range or wildcard.
fn is_exact_version(rev: &str) -> bool {
    let core = rev.strip_prefix('v').unwrap_or(rev);
    let (numbers, _suffix) = match core.find(['-', '+']) {
        Some(i) => core.split_at(i),
        None => (core, ""),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    !rev.is_empty()
        && (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !rev.contains(['*', '^', '~', '>', '<', '=', ' ', '|'])
}

fn is_floating_git_ref(rev: &str) -> bool {
    let r = rev.trim();
    r.is_empty()
        || ["head", "latest", "main", "master", "*"].contains(&r.to_ascii_lowercase().as_str())
}

fn check_profile(profile: &str, dir: &str, docs: &[Doc], problems: &mut Vec<String>) -> usize {
    let p = |m: String| format!("profile {profile}: {m}");
    // Follow the app-of-apps from the profile directory.
    let mut apps: Vec<App> = Vec::new();
    let mut objects: Vec<&Doc> = Vec::new();
    let mut queue: Vec<(String, bool, Lineage)> = vec![(dir.to_owned(), false, vec![])];
    let mut visited = BTreeSet::new();
    while let Some((path, recurse, lineage)) = queue.pop() {
        if !visited.insert(path.clone()) {
            problems.push(p(format!("{path} is synced by more than one Application")));
            continue;
        }
        let mut found = docs_in(docs, &path, recurse);
        // A Kustomize directory: its `resources` are what Argo CD renders.
        let kustomized = found.iter().any(|d| d.value["kind"] == "Kustomization");
        if kustomized {
            let listed: BTreeSet<String> = found
                .iter()
                .filter(|d| d.value["kind"] == "Kustomization")
                .flat_map(|d| d.value["resources"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| {
                    r.as_str()
                        .map(|r| format!("{path}/{}", r.trim_start_matches("./")))
                })
                .collect();
            for d in &found {
                if d.value["kind"] != "Kustomization" && !listed.contains(&d.file) {
                    problems.push(p(format!(
                        "{}: not listed in {path}/kustomization.yaml (Argo CD would not sync it)",
                        d.file
                    )));
                }
            }
            for r in &listed {
                if !found.iter().any(|d| &d.file == r) {
                    problems.push(p(format!(
                        "{path}/kustomization.yaml: resource {r} does not exist"
                    )));
                }
            }
            found.retain(|d| {
                listed.contains(&d.file)
                    && d.value["metadata"]["annotations"]["config.kubernetes.io/local-config"]
                        != "true"
            });
        }
        if found.is_empty() {
            problems.push(p(format!(
                "{path}: no manifests (an Application points at it)"
            )));
        }
        for doc in found {
            objects.push(doc);
            if doc.value["kind"] != "Application" {
                continue;
            }
            let name = doc.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let w = match wave(&doc.value) {
                Ok(w) => w,
                Err(e) => {
                    problems.push(p(format!("{}: {name}: {e}", doc.file)));
                    0
                }
            };
            let mut mine = lineage.clone();
            mine.push((w, name.clone()));
            let source = &doc.value["spec"]["source"];
            // In a Kustomize profile directory, an Application without a repoURL gets the
            // tree's repository from the root Application (kustomization.yaml replacements).
            let tree = match source["repoURL"].as_str() {
                Some(repo) => is_this_repo(repo),
                None => kustomized,
            };
            if let Some(child) = source["path"].as_str()
                && tree
            {
                let child = child.trim_matches('/').to_owned();
                if !child.starts_with("gitops/") && child != "gitops" {
                    problems.push(p(format!(
                        "{}: {name}: path {child} is outside gitops/",
                        doc.file
                    )));
                } else {
                    let recurse = source["directory"]["recurse"].as_bool().unwrap_or(false);
                    queue.push((child, recurse, mine.clone()));
                }
            }
            apps.push(App {
                name,
                file: doc.file.clone(),
                value: doc.value.clone(),
                lineage: mine,
                tree,
            });
        }
    }

    // Duplicates.
    let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for doc in &objects {
        let key = (
            doc.value["kind"].as_str().unwrap_or_default().to_owned(),
            doc.value["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            doc.value["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        if key.2.is_empty() {
            problems.push(p(format!("{}: a {} without a name", doc.file, key.0)));
            continue;
        }
        if let Some(first) = seen.insert(key.clone(), doc.file.clone()) {
            problems.push(p(format!(
                "duplicate {} {}: {first} and {}",
                key.0, key.2, doc.file
            )));
        }
    }

    let projects: BTreeMap<String, &Doc> = objects
        .iter()
        .filter(|d| d.value["kind"] == "AppProject")
        .map(|d| {
            (
                d.value["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                *d,
            )
        })
        .collect();
    let namespace_manifests: BTreeSet<&str> = objects
        .iter()
        .filter(|d| d.value["kind"] == "Namespace")
        .filter_map(|d| d.value["metadata"]["name"].as_str())
        .collect();

    // Per Application.
    #[derive(Default)]
    struct Uses {
        repos: BTreeSet<String>,
        namespaces: BTreeSet<String>,
        kinds: BTreeSet<String>,
    }
    let mut uses: BTreeMap<String, Uses> = BTreeMap::new();
    for app in &apps {
        let v = &app.value;
        let at = |m: &str| p(format!("{}: Application {}: {m}", app.file, app.name));
        if v["metadata"]["namespace"] != "argocd" {
            problems.push(at("metadata.namespace must be argocd"));
        }
        let project = v["spec"]["project"].as_str().unwrap_or_default();
        if project.is_empty() {
            problems.push(at("no spec.project"));
        } else if project == BOOTSTRAP_PROJECT {
            if !app.tree {
                problems.push(at(&format!(
                    "project {BOOTSTRAP_PROJECT} (the installer's) only syncs directories of this tree"
                )));
            }
            if v["spec"]["destination"]["namespace"] != "argocd" {
                problems.push(at(&format!(
                    "project {BOOTSTRAP_PROJECT} only allows the destination namespace argocd"
                )));
            }
        } else if !projects.contains_key(project) {
            problems.push(at(&format!(
                "project {project} is not defined in the profile"
            )));
        }
        let source = &v["spec"]["source"];
        if !source.is_object() {
            problems.push(at(
                "no spec.source (multi-source Applications are not used here)",
            ));
            continue;
        }
        let repo = source["repoURL"].as_str().unwrap_or_default();
        let rev = source["targetRevision"].as_str().unwrap_or_default();
        if repo.is_empty() && !app.tree {
            problems.push(at("no source.repoURL"));
        }
        let entry = uses.entry(project.to_owned()).or_default();
        entry.repos.insert(repo.to_owned());
        if source["chart"].is_string() {
            if !is_exact_version(rev) {
                problems.push(at(&format!(
                    "chart {} targetRevision {rev:?} is not an exact version",
                    source["chart"].as_str().unwrap_or_default()
                )));
            }
            let helm = &source["helm"];
            if !(helm["valuesObject"].is_object() || helm["values"].is_string()) {
                problems.push(at("chart values are not explicit (helm.valuesObject)"));
            }
        } else if source["path"].is_string() {
            if !app.tree && is_floating_git_ref(rev) {
                problems.push(at(&format!(
                    "targetRevision {rev:?} of {repo} is not pinned (use a tag or commit)"
                )));
            }
        } else {
            problems.push(at("source has neither chart nor path"));
        }
        let dest = &v["spec"]["destination"];
        if dest["server"].as_str().is_none() && dest["name"].as_str().is_none() {
            problems.push(at("destination has no server or name"));
        }
        let ns = dest["namespace"].as_str().unwrap_or_default();
        if ns.is_empty() {
            problems.push(at("destination has no namespace"));
        } else {
            entry.namespaces.insert(ns.to_owned());
            let creates = v["spec"]["syncPolicy"]["syncOptions"]
                .as_array()
                .is_some_and(|o| o.iter().any(|s| s == "CreateNamespace=true"));
            if creates && !namespace_manifests.contains(ns) {
                // gitops-engine adds a Namespace task that Argo CD checks against the project.
                entry.kinds.insert("Namespace".to_owned());
                if let Some(doc) = projects.get(project)
                    && !cluster_kind_permitted(&doc.value["spec"], "", "Namespace")
                {
                    problems.push(at(&format!(
                        "CreateNamespace=true, but AppProject {project} does not permit Namespace: Argo CD fails the sync with \"resource :Namespace is not permitted in project {project}\" (add {{group: '', kind: Namespace}} to its clusterResourceWhitelist)"
                    )));
                }
            }
            if !creates && !namespace_manifests.contains(ns) && !INSTALLER_NAMESPACES.contains(&ns)
            {
                problems.push(at(&format!(
                    "namespace {ns} is never created (CreateNamespace=true, a Namespace manifest, or one of {})",
                    INSTALLER_NAMESPACES.join(", ")
                )));
            }
        }
        match annotation_list(v, "cto.dev/cluster-kinds") {
            Some(kinds) => entry.kinds.extend(kinds),
            None if !app.tree => problems.push(at(
                "no cto.dev/cluster-kinds annotation (the cluster-scoped kinds it creates, Kind.group; empty if none)",
            )),
            None => {}
        }
    }
    // Plain manifests synced by Applications of this repository count for their project.
    for app in apps.iter().filter(|a| a.tree) {
        let Some(path) = app.value["spec"]["source"]["path"].as_str() else {
            continue;
        };
        let project = app.value["spec"]["project"].as_str().unwrap_or_default();
        for doc in docs_in(docs, path.trim_matches('/'), false) {
            let kind = doc.value["kind"].as_str().unwrap_or_default();
            if project == BOOTSTRAP_PROJECT {
                if !BOOTSTRAP_KINDS.contains(&kind) {
                    problems.push(p(format!(
                        "{}: {kind} {}: project {BOOTSTRAP_PROJECT} (of {}) only permits Applications and AppProjects",
                        doc.file,
                        doc.value["metadata"]["name"].as_str().unwrap_or_default(),
                        app.name
                    )));
                }
                continue;
            }
            if let Some((_, group)) = CLUSTER_SCOPED.iter().find(|(k, _)| *k == kind) {
                let full = if group.is_empty() {
                    kind.to_owned()
                } else {
                    format!("{kind}.{group}")
                };
                uses.entry(project.to_owned())
                    .or_default()
                    .kinds
                    .insert(full);
            }
        }
    }

    // Projects allow exactly what is used.
    for (name, doc) in &projects {
        let Some(used) = uses.get(name.as_str()) else {
            continue;
        };
        let spec = &doc.value["spec"];
        let set = |v: &Value, f: &dyn Fn(&Value) -> Option<String>| -> BTreeSet<String> {
            v.as_array().into_iter().flatten().filter_map(f).collect()
        };
        let repos = set(&spec["sourceRepos"], &|r| r.as_str().map(str::to_owned));
        let nss = set(&spec["destinations"], &|d| {
            d["namespace"].as_str().map(str::to_owned)
        });
        let kinds = set(&spec["clusterResourceWhitelist"], &|k| {
            let kind = k["kind"].as_str()?;
            let group = k["group"].as_str().unwrap_or_default();
            Some(if group.is_empty() {
                kind.to_owned()
            } else {
                format!("{kind}.{group}")
            })
        });
        let mut compare = |what: &str, allowed: &BTreeSet<String>, used: &BTreeSet<String>| {
            let missing: Vec<_> = used.difference(allowed).cloned().collect();
            let unused: Vec<_> = allowed.difference(used).cloned().collect();
            if allowed.contains("*") {
                problems.push(p(format!(
                    "{}: AppProject {name} allows every {what} ('*')",
                    doc.file
                )));
            }
            if !missing.is_empty() {
                problems.push(p(format!(
                    "{}: AppProject {name} does not allow the {what} {} its Applications use",
                    doc.file,
                    missing.join(", ")
                )));
            }
            if !unused.is_empty() && !allowed.contains("*") {
                problems.push(p(format!(
                    "{}: AppProject {name} allows the {what} {} that no Application uses",
                    doc.file,
                    unused.join(", ")
                )));
            }
        };
        compare("repositories", &repos, &used.repos);
        compare("destination namespaces", &nss, &used.namespaces);
        compare("cluster-scoped kinds", &kinds, &used.kinds);
    }

    // Waves.
    let by_name: BTreeMap<&str, &App> = apps.iter().map(|a| (a.name.as_str(), a)).collect();
    let roots: Vec<&App> = apps.iter().filter(|a| a.lineage.len() == 1).collect();
    if let Some(storage) = roots
        .iter()
        .find(|a| a.value["metadata"]["labels"]["cto.dev/category"] == STORAGE_CATEGORY)
    {
        let w = storage.lineage[0].0;
        for other in roots.iter().filter(|a| a.name != storage.name) {
            if other.lineage[0].0 <= w {
                problems.push(p(format!(
                    "{}: {} (wave {}) must sync after the storage category {} (wave {w})",
                    other.file, other.name, other.lineage[0].0, storage.name
                )));
            }
        }
    }
    for app in &apps {
        for dep in annotation_list(&app.value, "cto.dev/depends-on").unwrap_or_default() {
            let Some(d) = by_name.get(dep.as_str()) else {
                problems.push(p(format!(
                    "{}: {} depends on {dep}, which the profile does not include",
                    app.file, app.name
                )));
                continue;
            };
            let i = app
                .lineage
                .iter()
                .zip(&d.lineage)
                .position(|(a, b)| a.1 != b.1);
            let ok = match i {
                Some(i) => d.lineage[i].0 < app.lineage[i].0,
                None => false,
            };
            if !ok {
                let (aw, dw) = i.map_or((0, 0), |i| (app.lineage[i].0, d.lineage[i].0));
                problems.push(p(format!(
                    "{}: {} (wave {aw}) depends on {dep} (wave {dw}): the dependency must sync in an earlier wave",
                    app.file, app.name
                )));
            }
        }
    }
    apps.len()
}

/// Runs the check on this repository and prints the outcome.
pub fn run() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    match check(&root) {
        Ok(summary) => {
            let apps: Vec<String> = summary
                .apps
                .iter()
                .map(|(p, n)| format!("{p}: {n} Applications"))
                .collect();
            eprintln!(
                "xtask: gitops-check: {} files ok ({})",
                summary.files,
                apps.join(", ")
            );
            true
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("xtask: gitops-check: {problem}");
            }
            eprintln!("xtask: gitops-check: {} problem(s)", problems.len());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of this repository's `gitops/` in a temporary repository root.
    fn copy_tree() -> tempfile::TempDir {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gitops");
        let dst = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        collect_yaml(&src, &mut files);
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let to = dst.path().join("gitops").join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&f, &to).unwrap();
        }
        dst
    }

    fn edit(root: &Path, file: &str, from: &str, to: &str) {
        let path = root.join("gitops").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} lacks {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    fn problems(root: &Path) -> String {
        check(root).expect_err("the check must fail").join("\n")
    }

    #[test]
    fn this_repositorys_tree_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let summary = check(&root).unwrap_or_else(|p| panic!("{}", p.join("\n")));
        assert!(summary.apps["minimal"] < summary.apps["standard"]);
        assert!(summary.apps["standard"] < summary.apps["full"]);
    }

    #[test]
    fn a_file_that_does_not_parse_fails() {
        let t = copy_tree();
        std::fs::write(t.path().join("gitops/platform/core/broken.yaml"), "a: [b\n").unwrap();
        assert!(problems(t.path()).contains("broken.yaml: does not parse"));
    }

    #[test]
    fn an_unpinned_chart_fails() {
        let t = copy_tree();
        edit(
            t.path(),
            "platform/core/cert-manager.yaml",
            "targetRevision: v1.19.1",
            "targetRevision: '*'",
        );
        assert!(
            problems(t.path()).contains("cert-manager: chart cert-manager targetRevision \"*\"")
        );
        let t = copy_tree();
        edit(
            t.path(),
            "platform/core/vault.yaml",
            "targetRevision: 0.31.0",
            "targetRevision: ^0.31",
        );
        assert!(problems(t.path()).contains("not an exact version"));
    }

    #[test]
    fn a_floating_git_ref_fails() {
        let t = copy_tree();
        edit(
            t.path(),
            "platform/networking-extras/gateway-api-crds.yaml",
            "targetRevision: v1.4.0",
            "targetRevision: HEAD",
        );
        assert!(problems(t.path()).contains("is not pinned"));
    }

    #[test]
    fn a_missing_destination_or_project_fails() {
        let t = copy_tree();
        edit(
            t.path(),
            "platform/core/vault.yaml",
            "project: platform",
            "project: other",
        );
        assert!(problems(t.path()).contains("project other is not defined"));
        let t = copy_tree();
        edit(
            t.path(),
            "platform/core/vault.yaml",
            "    namespace: vault\n",
            "",
        );
        assert!(problems(t.path()).contains("destination has no namespace"));
    }

    #[test]
    fn duplicate_names_fail() {
        let t = copy_tree();
        let text =
            std::fs::read_to_string(t.path().join("gitops/platform/core/vault.yaml")).unwrap();
        std::fs::write(t.path().join("gitops/platform/core/vault-copy.yaml"), text).unwrap();
        assert!(problems(t.path()).contains("duplicate Application vault"));
    }

    #[test]
    fn a_dependency_in_a_later_wave_fails() {
        let t = copy_tree();
        edit(
            t.path(),
            "platform/core/vault-secrets-operator.yaml",
            "sync-wave: '-3'",
            "sync-wave: '-9'",
        );
        assert!(problems(t.path()).contains("depends on vault"));
        let t = copy_tree();
        edit(
            t.path(),
            "apps/minimal/core.yaml",
            "sync-wave: '-5'",
            "sync-wave: '-20'",
        );
        assert!(problems(t.path()).contains("must sync after the storage category"));
    }

    #[test]
    fn a_namespace_nobody_creates_fails() {
        let t = copy_tree();
        edit(
            t.path(),
            "platform/core/vault.yaml",
            "    - CreateNamespace=true\n",
            "",
        );
        assert!(problems(t.path()).contains("namespace vault is never created"));
    }

    #[test]
    fn the_project_must_allow_exactly_what_is_used() {
        let t = copy_tree();
        edit(
            t.path(),
            "apps/minimal/project.yaml",
            "  - https://charts.jetstack.io\n",
            "",
        );
        let p = problems(t.path());
        assert!(
            p.contains("does not allow the repositories https://charts.jetstack.io"),
            "{p}"
        );
        let t = copy_tree();
        edit(
            t.path(),
            "platform/storage/openebs.yaml",
            "cto.dev/cluster-kinds: ",
            "cto.dev/cluster-kinds: APIService.apiregistration.k8s.io,",
        );
        assert!(problems(t.path()).contains("does not allow the cluster-scoped kinds APIService"));
    }

    #[test]
    fn create_namespace_needs_namespace_in_the_project() {
        let t = copy_tree();
        edit(
            t.path(),
            "apps/standard/project.yaml",
            "  - group: ''\n    kind: Namespace\n",
            "",
        );
        let p = problems(t.path());
        assert!(
            p.contains("profile standard: gitops/platform/core/cert-manager.yaml: Application cert-manager: CreateNamespace=true, but AppProject platform does not permit Namespace: Argo CD fails the sync with \"resource :Namespace is not permitted in project platform\""),
            "{p}"
        );
        assert!(!p.contains("profile minimal"), "{p}");
    }

    #[test]
    fn a_hard_coded_repository_url_fails() {
        let t = copy_tree();
        edit(
            t.path(),
            "apps/full/core.yaml",
            "    path: gitops/platform/core\n",
            "    repoURL: https://github.com/5dlabs/cto\n    targetRevision: main\n    path: gitops/platform/core\n",
        );
        let p = problems(t.path());
        assert!(
            p.contains("gitops/apps/full/core.yaml: Application platform-core: hard-codes the tree's own repository https://github.com/5dlabs/cto"),
            "{p}"
        );
        // A file Kustomize does not list is not synced: flagged too.
        let t = copy_tree();
        edit(
            t.path(),
            "apps/full/kustomization.yaml",
            "- misc.yaml\n",
            "",
        );
        assert!(problems(t.path()).contains("apps/full/misc.yaml: not listed in"));
    }

    #[test]
    fn kilo_in_cni_mode_and_other_cnis_fail() {
        let t = copy_tree();
        std::fs::write(
            t.path().join("gitops/platform/networking-extras/kilo.yaml"),
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: kilo\n  namespace: argocd\n  annotations:\n    cto.dev/cluster-kinds: ''\nspec:\n  project: platform\n  source:\n    repoURL: https://github.com/squat/kilo\n    targetRevision: 0.6.0\n    path: manifests\n    directory:\n      include: '{crds.yaml,kilo-kubeadm.yaml}'\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: kube-system\n",
        )
        .unwrap();
        let p = problems(t.path());
        assert!(
            p.contains("kilo.yaml: Application kilo: Kilo manifest(s) kilo-kubeadm.yaml run Kilo as the CNI"),
            "{p}"
        );
        let cilium = serde_json::json!({"kind": "Application", "spec": {"source": {
            "repoURL": "https://github.com/squat/kilo", "path": "manifests",
            "directory": {"include": "{crds.yaml,kilo-kubeadm-cilium.yaml}"}}}});
        assert_eq!(cni_conflict(&cilium), None);
        let flannel = serde_json::json!({"kind": "Application", "spec": {"source": {
            "repoURL": "https://flannel-io.github.io/flannel/", "chart": "flannel"}}});
        assert!(cni_conflict(&flannel).unwrap().contains("another CNI"));
        let ds = serde_json::json!({"kind": "DaemonSet", "spec": {"template": {"spec": {
            "volumes": [{"name": "cni", "hostPath": {"path": "/etc/cni/net.d"}}]}}}});
        assert!(cni_conflict(&ds).unwrap().contains("/etc/cni/net.d"));
    }

    #[test]
    fn versions_and_refs() {
        for ok in ["1.2.3", "v1.19.1", "0.0.32", "1.2.3-rc.1", "2.4"] {
            assert!(is_exact_version(ok), "{ok}");
        }
        for bad in [
            "", "*", "latest", "HEAD", "^1.2.3", "~1.2", ">=1.0.0", "1.x", "1.2.*", "1",
        ] {
            assert!(!is_exact_version(bad), "{bad}");
        }
        assert!(is_floating_git_ref("main") && is_floating_git_ref("HEAD"));
        assert!(!is_floating_git_ref("v1.4.0"));
        assert!(is_this_repo("https://github.com/5dlabs/cto"));
        assert!(is_this_repo("https://example.com/me/cto.git"));
        assert!(!is_this_repo("https://github.com/squat/kilo"));
    }
}
