//! Steps 13–16: the platform stack every cluster gets before GitOps takes over — Cilium, the
//! bootstrap namespaces and repository credential, local-path-provisioner, Argo CD.
//!
//! This module owns how a Helm chart is installed without helm on the user's machine: a Job in
//! `kube-system` runs the Helm CLI image ([`HELM_IMAGE`]) with `helm upgrade --install` of a
//! pinned chart version, its values generated here (serde_json → YAML) and mounted from a
//! ConfigMap, under a ServiceAccount bound to `cluster-admin` (the k3s helm-controller pattern).
//! The Job is named after a hash of image, chart, repository, version, namespace and values, so
//! an unchanged release reuses its completed Job and a changed one gets a new Job. Everything
//! else is server-side applied under the field manager `cto`; waits watch objects.
//!
//! The lab's Kubernetes simulation relies on the Job's labels and annotations
//! (`cto.dev/helm-release`, `app.kubernetes.io/managed-by`, `cto.dev/chart`,
//! `cto.dev/chart-repo`, `cto.dev/chart-version`, `cto.dev/values-configmap`,
//! `cto.dev/release-namespace`): keep them stable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::runtime::watcher;
use metal::provider::Provider;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cluster_api::{ClusterApi, Verdict, WaitError};
use crate::error::StepError;
use crate::steps::talos_bootstrap::KUBECONFIG_FILE;
use crate::steps::{StepContext, StepFailure, StepResult};

/// The Helm CLI image the install Jobs run (pinned).
pub(crate) const HELM_IMAGE: &str = "alpine/helm:3.19.0";
/// Where the install Jobs, their ConfigMaps and ServiceAccount live.
pub(crate) const HELM_NAMESPACE: &str = "kube-system";
/// The install Jobs' ServiceAccount (bound to `cluster-admin`).
pub(crate) const HELM_SERVICE_ACCOUNT: &str = "cto-helm";
/// Label naming the release a Job installs.
pub(crate) const RELEASE_LABEL: &str = "cto.dev/helm-release";
/// The namespace of Argo CD.
pub(crate) const ARGOCD_NAMESPACE: &str = "argocd";
/// The namespace of local-path-provisioner.
pub(crate) const LOCAL_PATH_NAMESPACE: &str = "local-path-storage";
/// Where local-path-provisioner keeps volumes on each node: under `/var/local`, the directory
/// every machine config bind-mounts into the kubelet (`bind`, `rshared`, `rw`; Mayastor's
/// requirement too). Talos asks that local-path's directory be such a kubelet mount (Talos
/// v1.9 "Local Storage" guide: `machine.kubelet.extraMounts` of the provisioner's directory;
/// the v1.11 guide uses a dedicated user volume under `/var/mnt/`, which would take a disk the
/// storage plan gives to Mayastor) — a plain `/var/local-path-provisioner` is not mounted for
/// the kubelet.
pub(crate) const LOCAL_PATH_DIR: &str = "/var/local/local-path-provisioner";
/// The bootstrap StorageClass (default until Mayastor's replaces it).
pub(crate) const LOCAL_PATH_STORAGE_CLASS: &str = "local-path";
/// The Argo CD repository credential Secret.
pub(crate) const REPO_SECRET: &str = "cto-gitops-repository";

/// A pinned chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chart {
    /// Helm release name.
    pub release: &'static str,
    /// Chart name in its repository.
    pub chart: &'static str,
    /// Chart repository URL.
    pub repo: &'static str,
    /// Chart version (exact).
    pub version: &'static str,
    /// Namespace the release goes into.
    pub namespace: &'static str,
}

/// Cilium, the CNI with kube-proxy replacement.
pub(crate) const CILIUM: Chart = Chart {
    release: "cilium",
    chart: "cilium",
    repo: "https://helm.cilium.io",
    version: "1.18.4",
    namespace: "kube-system",
};

/// local-path-provisioner, the bootstrap StorageClass.
pub(crate) const LOCAL_PATH: Chart = Chart {
    release: "local-path-provisioner",
    chart: "local-path-provisioner",
    repo: "https://charts.containeroo.ch",
    version: "0.0.32",
    namespace: LOCAL_PATH_NAMESPACE,
};

/// Argo CD.
pub(crate) const ARGOCD: Chart = Chart {
    release: "argocd",
    chart: "argo-cd",
    repo: "https://argoproj.github.io/argo-helm",
    version: "9.1.0",
    namespace: ARGOCD_NAMESPACE,
};

/// One chart install: the chart, its values, and how its Job runs.
#[derive(Debug, Clone)]
pub(crate) struct HelmInstall {
    /// The chart.
    pub chart: Chart,
    /// Values (rendered to `values.yaml`).
    pub values: Value,
    /// Run on the host network, tolerating every taint, reaching the API through KubePrism:
    /// what installing the CNI needs (no pod network exists yet).
    pub bootstrap_cni: bool,
}

impl HelmInstall {
    /// The values as YAML.
    pub fn values_yaml(&self) -> Result<String, StepError> {
        serde_saphyr::to_string(&self.values).map_err(|e| StepError::Kubernetes {
            context: format!("rendering the values of {}", self.chart.release),
            message: e.to_string(),
        })
    }

    /// `helm-install-<release>-<10 hex>`: the hash covers everything that changes what is
    /// installed, so the same name means the same install.
    pub fn job_name(&self, values_yaml: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            HELM_IMAGE,
            self.chart.chart,
            self.chart.repo,
            self.chart.version,
            self.chart.namespace,
            if self.bootstrap_cni { "cni" } else { "pod" },
            values_yaml,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("helm-install-{}-{}", self.chart.release, &hex[..10])
    }

    /// The ConfigMap holding `values.yaml`.
    pub fn configmap(&self, job_name: &str, values_yaml: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": format!("{job_name}-values"),
                "namespace": HELM_NAMESPACE,
                "labels": {
                    RELEASE_LABEL: self.chart.release,
                    "app.kubernetes.io/managed-by": "cto",
                },
            },
            "data": { "values.yaml": values_yaml },
        })
    }

    /// The install Job.
    pub fn job(&self, job_name: &str) -> Value {
        let c = &self.chart;
        let configmap = format!("{job_name}-values");
        let mut env = vec![
            json!({"name": "HOME", "value": "/tmp"}),
            json!({"name": "HELM_CACHE_HOME", "value": "/tmp/.cache/helm"}),
            json!({"name": "HELM_CONFIG_HOME", "value": "/tmp/.config/helm"}),
            json!({"name": "HELM_DATA_HOME", "value": "/tmp/.local/share/helm"}),
        ];
        let mut pod = json!({
            "serviceAccountName": HELM_SERVICE_ACCOUNT,
            "restartPolicy": "OnFailure",
            "containers": [{
                "name": "helm",
                "image": HELM_IMAGE,
                "command": ["helm"],
                "args": [
                    "upgrade", "--install", c.release, c.chart,
                    "--repo", c.repo,
                    "--version", c.version,
                    "--namespace", c.namespace,
                    "--create-namespace",
                    "-f", "/values/values.yaml",
                ],
                "volumeMounts": [{"name": "values", "mountPath": "/values", "readOnly": true}],
            }],
            "volumes": [{"name": "values", "configMap": {"name": configmap}}],
        });
        if self.bootstrap_cni {
            // No pod network and no cluster DNS yet: the host's network and resolver, every
            // taint tolerated (nodes are NotReady), the API through KubePrism on localhost.
            env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": "localhost"}));
            env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": "7445"}));
            pod["hostNetwork"] = json!(true);
            pod["dnsPolicy"] = json!("Default");
            pod["tolerations"] = json!([{"operator": "Exists"}]);
        }
        pod["containers"][0]["env"] = Value::Array(env);
        let labels = json!({
            RELEASE_LABEL: c.release,
            "app.kubernetes.io/managed-by": "cto",
        });
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name,
                "namespace": HELM_NAMESPACE,
                "labels": labels,
                "annotations": {
                    "cto.dev/chart": c.chart,
                    "cto.dev/chart-repo": c.repo,
                    "cto.dev/chart-version": c.version,
                    "cto.dev/values-configmap": configmap,
                    "cto.dev/release-namespace": c.namespace,
                },
            },
            "spec": {
                "backoffLimit": 4,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": pod,
                },
            },
        })
    }
}

/// The ServiceAccount and ClusterRoleBinding the install Jobs run as.
pub(crate) fn helm_rbac() -> [Value; 2] {
    [
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": HELM_SERVICE_ACCOUNT,
                "namespace": HELM_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "cto"},
            },
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": HELM_SERVICE_ACCOUNT,
                "labels": {"app.kubernetes.io/managed-by": "cto"},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{
                "kind": "ServiceAccount",
                "name": HELM_SERVICE_ACCOUNT,
                "namespace": HELM_NAMESPACE,
            }],
        }),
    ]
}

/// Cilium's values for Talos (reference: Talos' Cilium guide), optionally with Gateway API.
pub(crate) fn cilium_values(gateway_api: bool) -> Value {
    let mut v = json!({
        "ipam": {"mode": "kubernetes"},
        "kubeProxyReplacement": true,
        "securityContext": {"capabilities": {
            "ciliumAgent": [
                "CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_ADMIN",
                "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"
            ],
            "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"],
        }},
        "cgroup": {"autoMount": {"enabled": false}, "hostRoot": "/sys/fs/cgroup"},
        "k8sServiceHost": "localhost",
        "k8sServicePort": 7445,
        "operator": {"replicas": 1},
    });
    if gateway_api {
        v["gatewayAPI"] = json!({"enabled": true, "enableAlpn": true, "enableAppProtocol": true});
    }
    v
}

/// local-path-provisioner's values: volumes under `/var` (writable on Talos), the default
/// StorageClass during bootstrap.
pub(crate) fn local_path_values() -> Value {
    json!({
        "storageClass": {
            "create": true,
            "name": LOCAL_PATH_STORAGE_CLASS,
            "defaultClass": true,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        "nodePathMap": [{
            "node": "DEFAULT_PATH_FOR_NON_LISTED_NODES",
            "paths": [LOCAL_PATH_DIR],
        }],
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
    })
}

/// Argo CD's health check for Applications, so that sync waves of an app-of-apps wait for the
/// child Applications to be healthy (Argo CD dropped it from its defaults in 1.8).
const APPLICATION_HEALTH_LUA: &str = r#"hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil then
  if obj.status.health ~= nil then
    hs.status = obj.status.health.status
    if obj.status.health.message ~= nil then
      hs.message = obj.status.health.message
    end
  end
end
return hs
"#;

fn resources(cpu: &str, memory: &str, limit: &str) -> Value {
    json!({"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": limit}})
}

/// Argo CD's values: no Dex, TLS terminated in front of the server, Application health for
/// app-of-apps waves, modest resources.
pub(crate) fn argocd_values() -> Value {
    json!({
        "crds": {"install": true, "keep": true},
        "dex": {"enabled": false},
        "notifications": {"enabled": false},
        "configs": {
            "params": {"server.insecure": true},
            "cm": {
                "resource.customizations.health.argoproj.io_Application": APPLICATION_HEALTH_LUA,
                "timeout.reconciliation": "60s",
            },
        },
        "controller": {"replicas": 1, "resources": resources("250m", "512Mi", "2Gi")},
        "server": {"replicas": 1, "resources": resources("50m", "128Mi", "512Mi")},
        "repoServer": {"replicas": 1, "resources": resources("100m", "256Mi", "1Gi")},
        "applicationSet": {"replicas": 1, "resources": resources("50m", "64Mi", "256Mi")},
        "redis": {"resources": resources("50m", "64Mi", "256Mi")},
    })
}

/// The namespaces created in step 14 and their pod-security level (`enforce`).
pub(crate) fn bootstrap_namespaces() -> Vec<(&'static str, &'static str)> {
    vec![
        (ARGOCD_NAMESPACE, "baseline"),
        // The provisioner's helper pods mount hostPath volumes.
        (LOCAL_PATH_NAMESPACE, "privileged"),
        // Mayastor's io-engine and CSI node plugin need host access and hugepages.
        (metal::talos::config::MAYASTOR_NAMESPACE, "privileged"),
    ]
}

/// The namespaces of Vault and its Secrets Operator, made in step 14 to hold Vault's TLS
/// Secrets; the levels are those of the Applications' `managedNamespaceMetadata`.
pub(crate) fn vault_tls_namespaces() -> Vec<(&'static str, &'static str)> {
    vec![
        (crate::vault::VAULT_NAMESPACE, "baseline"),
        (crate::vault_tls::VSO_NAMESPACE, "baseline"),
    ]
}

/// A Namespace with pod-security labels.
pub(crate) fn namespace(name: &str, enforce: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "cto",
                "pod-security.kubernetes.io/enforce": enforce,
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": enforce,
                "pod-security.kubernetes.io/audit": enforce,
            },
        },
    })
}

/// The Argo CD repository credential for `repo`.
pub(crate) fn repository_secret(repo: &str, token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": REPO_SECRET,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {
                "argocd.argoproj.io/secret-type": "repository",
                "app.kubernetes.io/managed-by": "cto",
            },
        },
        "type": "Opaque",
        "data": {
            "type": encode(b"git"),
            "url": encode(repo.as_bytes()),
            "username": encode(b"git"),
            "password": encode(token.as_bytes()),
        },
    })
}

/// Secret data: base64, as k8s-openapi's `ByteString` serialises it.
fn encode(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap_or(Value::Null)
}

/// The cluster, through the kubeconfig written in step 10, once its API answers `/readyz`.
/// A resumed run (after a laptop slept, or the control plane rebooted) may find the API
/// briefly unreachable; it is retried for up to `kubernetes_timeout` before the step fails,
/// naming the API and the last error.
pub(crate) async fn cluster<P: Provider>(
    ctx: &StepContext<'_, P>,
) -> Result<ClusterApi, StepError> {
    let path = ctx.store.dir().join(KUBECONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| StepError::Inconsistent {
        what: format!("a readable kubeconfig at {} ({e})", path.display()),
    })?;
    let api = ClusterApi::from_kubeconfig(&text)
        .await
        .map_err(|e| StepError::Inconsistent {
            what: format!("a usable kubeconfig in {} ({e})", path.display()),
        })?;
    let started = Instant::now();
    let mut interval = ctx.timings.poll_min;
    loop {
        let error = match api.readyz().await {
            Ok(()) => return Ok(api),
            Err(e) => e,
        };
        if started.elapsed() >= ctx.timings.kubernetes_timeout {
            return Err(StepError::Timeout {
                what: format!("the Kubernetes API at {} to answer", api.url()),
                waited_s: started.elapsed().as_secs(),
                pending: error.to_string(),
            });
        }
        tracing::debug!(url = api.url(), %error, "the Kubernetes API does not answer yet");
        tokio::time::sleep(interval).await;
        interval = interval.mul_f64(1.5).min(ctx.timings.poll_max);
    }
}

pub(crate) fn kube_error(context: impl Into<String>, e: impl std::fmt::Display) -> StepError {
    StepError::Kubernetes {
        context: context.into(),
        message: e.to_string(),
    }
}

/// Turns a failed wait into the step's error.
pub(crate) fn wait_failure(what: &str, started: Instant, e: WaitError) -> StepFailure {
    match e {
        WaitError::Timeout { pending } => StepFailure::Failed(StepError::Timeout {
            what: what.to_owned(),
            waited_s: started.elapsed().as_secs(),
            pending,
        }),
        WaitError::Failed(message) => StepFailure::Failed(StepError::Kubernetes {
            context: what.to_owned(),
            message,
        }),
    }
}

/// Where a Job stands.
pub(crate) fn job_verdict(job: &Job) -> Verdict {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref());
    let has = |t: &str| {
        conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    if has("Failed") {
        let why = conditions
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
            .and_then(|c| c.message.clone().or(c.reason.clone()))
            .unwrap_or_else(|| "failed".into());
        return Verdict::Failed(format!(
            "Job {HELM_NAMESPACE}/{name} failed: {why}. See `kubectl -n {HELM_NAMESPACE} logs job/{name}`; --resume deletes it and tries again"
        ));
    }
    if has("Complete") || status.and_then(|s| s.succeeded).unwrap_or(0) > 0 {
        return Verdict::Done;
    }
    Verdict::Pending(format!(
        "Job {HELM_NAMESPACE}/{name} running (active {}, failed {})",
        status.and_then(|s| s.active).unwrap_or(0),
        status.and_then(|s| s.failed).unwrap_or(0)
    ))
}

/// Installs (or confirms) one chart: RBAC, values ConfigMap, Job, then waits for the Job.
pub(crate) async fn install_chart<P: Provider>(
    ctx: &mut StepContext<'_, P>,
    api: &ClusterApi,
    install: &HelmInstall,
) -> StepResult {
    let release = install.chart.release;
    let values_yaml = install.values_yaml()?;
    let job_name = install.job_name(&values_yaml);
    ctx.update(|cp| {
        cp.resolved
            .helm_jobs
            .insert(release.to_owned(), job_name.clone())
    })?;
    let context = format!(
        "installing chart {} {}",
        install.chart.chart, install.chart.version
    );
    for object in helm_rbac() {
        api.apply(&object)
            .await
            .map_err(|e| kube_error(&context, e))?;
    }
    api.apply(&install.configmap(&job_name, &values_yaml))
        .await
        .map_err(|e| kube_error(&context, e))?;

    let jobs = api.namespaced::<Job>(HELM_NAMESPACE);
    let existing = api
        .get_opt(&jobs, &job_name)
        .await
        .map_err(|e| kube_error(&context, e))?;
    match existing.as_ref().map(job_verdict) {
        Some(Verdict::Done) => {
            ctx.progress(format!(
                "{release}: Job {job_name} already completed for these values"
            ));
        }
        Some(Verdict::Failed(why)) => {
            ctx.warn(format!("{why}; running it again"));
            api.delete_job(HELM_NAMESPACE, &job_name)
                .await
                .map_err(|e| kube_error(&context, e))?;
            wait_gone(api, &job_name, ctx.timings.helm_timeout).await?;
            api.apply(&install.job(&job_name))
                .await
                .map_err(|e| kube_error(&context, e))?;
        }
        Some(Verdict::Pending(_)) => {
            ctx.progress(format!("{release}: Job {job_name} is running"));
        }
        None => {
            ctx.progress(format!(
                "{release}: helm upgrade --install {} {} in Job {job_name}",
                install.chart.chart, install.chart.version
            ));
            api.apply(&install.job(&job_name))
                .await
                .map_err(|e| kube_error(&context, e))?;
        }
    }

    let started = Instant::now();
    let config = watcher::Config::default().fields(&format!("metadata.name={job_name}"));
    api.wait_for(
        jobs.clone(),
        config,
        ctx.timings.helm_timeout,
        |jobs| match jobs.values().next() {
            Some(job) => job_verdict(job),
            None => Verdict::Pending(format!("Job {job_name} not found")),
        },
    )
    .await
    .map_err(|e| wait_failure(&format!("the Helm install Job of {release}"), started, e))?;

    // Jobs of earlier values of this release are history now.
    let stale = jobs
        .list(&ListParams::default().labels(&format!("{RELEASE_LABEL}={release}")))
        .await
        .map_err(|e| kube_error(&context, e))?;
    for job in stale.items {
        if let Some(name) = job.metadata.name
            && name != job_name
        {
            api.delete_job(HELM_NAMESPACE, &name)
                .await
                .map_err(|e| kube_error(&context, e))?;
        }
    }
    ctx.progress(format!("{release}: chart installed"));
    Ok(())
}

async fn wait_gone(
    api: &ClusterApi,
    job_name: &str,
    timeout: std::time::Duration,
) -> Result<(), StepFailure> {
    let started = Instant::now();
    let config = watcher::Config::default().fields(&format!("metadata.name={job_name}"));
    api.wait_for(
        api.namespaced::<Job>(HELM_NAMESPACE),
        config,
        timeout,
        |jobs| {
            if jobs.is_empty() {
                Verdict::Done
            } else {
                Verdict::Pending(format!("Job {job_name} still being deleted"))
            }
        },
    )
    .await
    .map(|_| ())
    .map_err(|e| wait_failure("a failed Job to be deleted", started, e))
}

/// A DaemonSet has every scheduled pod updated and ready.
pub(crate) fn daemonset_verdict(ds: &DaemonSet) -> Verdict {
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let Some(s) = ds.status.as_ref() else {
        return Verdict::Pending(format!("DaemonSet {name} has no status yet"));
    };
    let desired = s.desired_number_scheduled;
    let updated = s.updated_number_scheduled.unwrap_or(desired);
    let observed = match (s.observed_generation, ds.metadata.generation) {
        (Some(o), Some(g)) => o >= g,
        _ => true,
    };
    if desired > 0 && s.number_ready >= desired && updated >= desired && observed {
        Verdict::Done
    } else {
        Verdict::Pending(format!(
            "DaemonSet {name}: {}/{desired} ready, {updated} updated",
            s.number_ready
        ))
    }
}

/// A Deployment has its replicas available.
pub(crate) fn deployment_verdict(d: &Deployment) -> Verdict {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    let available = s.available_replicas.unwrap_or(0);
    let observed = match (s.observed_generation, d.metadata.generation) {
        (Some(o), Some(g)) => o >= g,
        _ => true,
    };
    if available >= want && observed {
        Verdict::Done
    } else {
        Verdict::Pending(format!("Deployment {name}: {available}/{want} available"))
    }
}

/// A Node's Ready condition is True.
pub(crate) fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Every wanted Node exists and is Ready, and so is every other Node: linear in the Nodes.
pub(crate) fn nodes_ready_verdict<'a>(
    wanted: &BTreeSet<String>,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Verdict {
    let mut ready: BTreeSet<&str> = BTreeSet::new();
    let mut not_ready: Vec<String> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if node_ready(node) {
            ready.insert(name);
        } else if !wanted.contains(name) {
            not_ready.push(name.to_owned());
        }
    }
    let mut missing: Vec<String> = wanted
        .iter()
        .filter(|w| !ready.contains(w.as_str()))
        .cloned()
        .collect();
    missing.append(&mut not_ready);
    if missing.is_empty() {
        Verdict::Done
    } else {
        Verdict::Pending(format!("NotReady: {}", missing.join(", ")))
    }
}

/// Combines verdicts: failed if any failed, pending listing every pending one, else done.
pub(crate) fn all_of(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut pending = Vec::new();
    for v in verdicts {
        match v {
            Verdict::Done => {}
            Verdict::Pending(p) => pending.push(p),
            failed @ Verdict::Failed(_) => return failed,
        }
    }
    if pending.is_empty() {
        Verdict::Done
    } else {
        Verdict::Pending(pending.join("; "))
    }
}

/// Waits until every named Deployment of `namespace` is available (or, with `names` empty,
/// every Deployment there, at least one).
pub(crate) async fn wait_deployments(
    api: &ClusterApi,
    namespace: &str,
    names: &[&str],
    timeout: std::time::Duration,
) -> Result<(), StepFailure> {
    let started = Instant::now();
    let what = format!("the Deployments of {namespace} to be available");
    api.wait_for(
        api.namespaced::<Deployment>(namespace),
        watcher::Config::default(),
        timeout,
        |all| {
            let by_name: BTreeMap<&str, &Deployment> = all
                .values()
                .map(|d| (d.metadata.name.as_deref().unwrap_or_default(), d))
                .collect();
            if names.is_empty() {
                if by_name.is_empty() {
                    return Verdict::Pending(format!("no Deployment in {namespace} yet"));
                }
                return all_of(by_name.values().map(|d| deployment_verdict(d)));
            }
            all_of(names.iter().map(|n| match by_name.get(n) {
                Some(d) => deployment_verdict(d),
                None => Verdict::Pending(format!("Deployment {namespace}/{n} not created yet")),
            }))
        },
    )
    .await
    .map(|_| ())
    .map_err(|e| wait_failure(&what, started, e))
}

/// Step 13: Cilium from its chart; done when its agent DaemonSet is ready and every Node is.
pub(crate) async fn deploying_cilium<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let api = cluster(ctx).await?;
    let install = HelmInstall {
        chart: CILIUM,
        values: cilium_values(ctx.checkpoint().spec.gateway_api),
        bootstrap_cni: true,
    };
    install_chart(ctx, &api, &install).await?;

    let timeout = ctx.timings.rollout_timeout;
    let started = Instant::now();
    let wanted: BTreeSet<String> = ctx
        .checkpoint()
        .servers
        .iter()
        .map(|s| s.hostname.clone())
        .collect();
    // The agent DaemonSet and the Nodes are watched at the same time: both must hold, and
    // neither needs the other to be seen first.
    let daemonset = async {
        let config = watcher::Config::default().fields("metadata.name=cilium");
        api.wait_for(
            api.namespaced::<DaemonSet>(CILIUM.namespace),
            config,
            timeout,
            |all| match all.values().next() {
                Some(ds) => daemonset_verdict(ds),
                None => Verdict::Pending("DaemonSet kube-system/cilium not created yet".into()),
            },
        )
        .await
        .map_err(|e| wait_failure("the cilium agent DaemonSet to be ready", started, e))
    };
    let nodes = async {
        api.wait_for(
            api.all::<Node>(),
            watcher::Config::default(),
            timeout,
            |all| nodes_ready_verdict(&wanted, all.values()),
        )
        .await
        .map_err(|e| wait_failure("every Node to be Ready", started, e))
    };
    let (_, nodes) = tokio::try_join!(daemonset, nodes)?;
    ctx.progress("cilium agent ready on every node");
    for node in nodes.values() {
        if let Some(name) = node.metadata.name.as_deref() {
            ctx.node_status(name, "Ready", None);
        }
    }
    Ok(())
}

/// Step 14: namespaces with their pod-security levels and, when a token was given, Argo CD's
/// credential for the GitOps repository.
pub(crate) async fn deploying_bootstrap_resources<P: Provider>(
    ctx: &mut StepContext<'_, P>,
) -> StepResult {
    let api = cluster(ctx).await?;
    let gitops = ctx.checkpoint().spec.gitops.clone();
    let token = ctx.gitops_token.cloned();
    if gitops.credentials && token.is_none() {
        return Err(StepError::MissingInput {
            message: format!(
                "this install was started with a token for {} and it is never stored: set CTO_GITOPS_TOKEN (or pass --gitops-token) and resume",
                gitops.repo
            ),
        }
        .into());
    }
    for (name, level) in bootstrap_namespaces() {
        api.apply(&namespace(name, level))
            .await
            .map_err(|e| kube_error("bootstrap namespaces", e))?;
        ctx.progress(format!("namespace {name} (pod security: {level})"));
    }
    // Vault serves TLS (issue 13): its certificate exists before Argo CD syncs it.
    for (name, level) in vault_tls_namespaces() {
        api.apply(&namespace(name, level))
            .await
            .map_err(|e| kube_error("Vault's namespaces", e))?;
    }
    let created = crate::vault_tls::ensure(&api)
        .await
        .map_err(|message| kube_error("Vault's TLS certificate", message))?;
    ctx.progress(if created {
        "Vault's TLS certificate created (Secret vault/vault-tls)"
    } else {
        "Vault's TLS certificate already there (Secret vault/vault-tls)"
    });
    if let Some(token) = token {
        // The error of a failed apply never contains the object, so the token stays out of
        // messages and logs.
        api.apply(&repository_secret(&gitops.repo, token.expose()))
            .await
            .map_err(|e| kube_error("the Argo CD repository credential", e))?;
        ctx.progress(format!("repository credential for {}", gitops.repo));
    }
    Ok(())
}

/// Step 15: local-path-provisioner, the default StorageClass while bootstrapping. Done when
/// its install Job completed and the StorageClass exists (like step 16, the rollout is waited
/// for later: at the start of step 19).
pub(crate) async fn deploying_local_path_provisioner<P: Provider>(
    ctx: &mut StepContext<'_, P>,
) -> StepResult {
    let api = cluster(ctx).await?;
    let install = HelmInstall {
        chart: LOCAL_PATH,
        values: local_path_values(),
        bootstrap_cni: false,
    };
    install_chart(ctx, &api, &install).await?;
    // The provisioner's Deployment rolls out while Argo CD's chart installs: nothing before the
    // platform's first PersistentVolumeClaims needs it, so its availability is confirmed by
    // WaitingGitOpsSync (issue 7), not here.
    let timeout = ctx.timings.rollout_timeout;
    let started = Instant::now();
    let config =
        watcher::Config::default().fields(&format!("metadata.name={LOCAL_PATH_STORAGE_CLASS}"));
    api.wait_for(api.all::<StorageClass>(), config, timeout, |all| {
        if all.is_empty() {
            Verdict::Pending(format!(
                "StorageClass {LOCAL_PATH_STORAGE_CLASS} not created yet"
            ))
        } else {
            Verdict::Done
        }
    })
    .await
    .map_err(|e| wait_failure("the local-path StorageClass", started, e))?;
    ctx.progress(format!(
        "StorageClass {LOCAL_PATH_STORAGE_CLASS} (default) provisioning under {LOCAL_PATH_DIR}"
    ));
    Ok(())
}

/// Step 16: Argo CD from its chart; done when the install Job completed.
pub(crate) async fn deploying_argocd<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let api = cluster(ctx).await?;
    let install = HelmInstall {
        chart: ARGOCD,
        values: argocd_values(),
        bootstrap_cni: false,
    };
    install_chart(ctx, &api, &install).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cilium() -> HelmInstall {
        HelmInstall {
            chart: CILIUM,
            values: cilium_values(false),
            bootstrap_cni: true,
        }
    }

    #[test]
    fn the_job_name_follows_the_values() {
        let a = cilium();
        let ya = a.values_yaml().unwrap();
        assert_eq!(a.job_name(&ya), cilium().job_name(&ya), "deterministic");
        assert!(a.job_name(&ya).starts_with("helm-install-cilium-"));
        assert!(a.job_name(&ya).len() <= 63);
        let b = HelmInstall {
            values: cilium_values(true),
            ..cilium()
        };
        let yb = b.values_yaml().unwrap();
        assert_ne!(a.job_name(&ya), b.job_name(&yb), "new values, new Job");
    }

    #[test]
    fn the_job_keeps_the_lab_contract() {
        let install = cilium();
        let yaml = install.values_yaml().unwrap();
        let name = install.job_name(&yaml);
        let job = install.job(&name);
        let meta = &job["metadata"];
        assert_eq!(meta["namespace"], HELM_NAMESPACE);
        assert_eq!(meta["labels"]["cto.dev/helm-release"], "cilium");
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "cto");
        assert_eq!(meta["annotations"]["cto.dev/chart"], "cilium");
        assert_eq!(
            meta["annotations"]["cto.dev/chart-repo"],
            "https://helm.cilium.io"
        );
        assert_eq!(meta["annotations"]["cto.dev/chart-version"], CILIUM.version);
        assert_eq!(
            meta["annotations"]["cto.dev/values-configmap"],
            format!("{name}-values")
        );
        assert_eq!(
            meta["annotations"]["cto.dev/release-namespace"],
            "kube-system"
        );
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["tolerations"][0]["operator"], "Exists");
        assert_eq!(pod["serviceAccountName"], HELM_SERVICE_ACCOUNT);
        let env = pod["containers"][0]["env"].as_array().unwrap();
        let get = |k: &str| {
            env.iter()
                .find(|e| e["name"] == k)
                .map(|e| e["value"].clone())
        };
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some(json!("localhost")));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some(json!("7445")));
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            format!(
                "upgrade --install cilium cilium --repo https://helm.cilium.io --version {} --namespace kube-system --create-namespace -f /values/values.yaml",
                CILIUM.version
            )
        );
        let cm = install.configmap(&name, &yaml);
        assert_eq!(cm["metadata"]["name"], format!("{name}-values"));
        assert_eq!(cm["data"]["values.yaml"], yaml.as_str());

        let other = HelmInstall {
            chart: ARGOCD,
            values: argocd_values(),
            bootstrap_cni: false,
        };
        let pod = other.job("x")["spec"]["template"]["spec"].clone();
        assert!(pod.get("hostNetwork").is_none());
        assert!(pod.get("tolerations").is_none());
    }

    #[test]
    fn cilium_values_are_talos_values() {
        let y = serde_saphyr::to_string(&cilium_values(true)).unwrap();
        let v: Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(v["ipam"]["mode"], "kubernetes");
        assert_eq!(v["kubeProxyReplacement"], true);
        assert_eq!(v["k8sServiceHost"], "localhost");
        assert_eq!(v["k8sServicePort"], 7445);
        assert_eq!(v["cgroup"]["autoMount"]["enabled"], false);
        assert_eq!(v["cgroup"]["hostRoot"], "/sys/fs/cgroup");
        assert_eq!(v["gatewayAPI"]["enabled"], true);
        let caps = v["securityContext"]["capabilities"]["ciliumAgent"]
            .as_array()
            .unwrap();
        assert!(!caps.contains(&json!("SYS_MODULE")), "Talos forbids it");
        assert!(cilium_values(false).get("gatewayAPI").is_none());
    }

    #[test]
    fn argocd_values_survive_yaml() {
        let y = serde_saphyr::to_string(&argocd_values()).unwrap();
        let v: Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(v["configs"]["params"]["server.insecure"], true);
        assert_eq!(v["dex"]["enabled"], false);
        assert!(
            v["configs"]["cm"]["resource.customizations.health.argoproj.io_Application"]
                .as_str()
                .unwrap()
                .contains("obj.status.health")
        );
    }

    #[test]
    fn namespaces_carry_pod_security_levels() {
        let levels: BTreeMap<_, _> = bootstrap_namespaces().into_iter().collect();
        assert_eq!(levels["openebs"], "privileged");
        assert_eq!(levels["argocd"], "baseline");
        let ns = namespace("openebs", "privileged");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
    }

    #[test]
    fn the_repository_secret_is_argo_cds_shape() {
        let s = repository_secret("https://github.com/5dlabs/cto", "tok");
        assert_eq!(
            s["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        assert_eq!(s["data"]["username"], "Z2l0");
        assert_eq!(s["data"]["password"], "dG9r");
        assert_eq!(s["data"]["url"], "aHR0cHM6Ly9naXRodWIuY29tLzVkbGFicy9jdG8=");
        assert_eq!(encode(b"ab"), "YWI=");
    }

    #[test]
    fn job_verdicts() {
        let mut job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"active": 1}
        }))
        .unwrap();
        assert!(matches!(job_verdict(&job), Verdict::Pending(_)));
        job.status = serde_json::from_value(json!({
            "conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1
        }))
        .unwrap();
        assert_eq!(job_verdict(&job), Verdict::Done);
        job.status = serde_json::from_value(json!({
            "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]
        }))
        .unwrap();
        match job_verdict(&job) {
            Verdict::Failed(m) => assert!(m.contains("BackoffLimitExceeded"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nodes_are_ready_when_every_wanted_and_every_other_node_is() {
        let node = |name: &str, ready: bool| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}
                ]},
            }))
            .unwrap()
        };
        let wanted: BTreeSet<String> = ["a", "b"].iter().map(|s| (*s).to_owned()).collect();
        let Verdict::Pending(p) = nodes_ready_verdict(&wanted, &[node("a", true)]) else {
            panic!()
        };
        assert_eq!(p, "NotReady: b");
        let nodes = [node("a", true), node("b", true), node("x", false)];
        let Verdict::Pending(p) = nodes_ready_verdict(&wanted, &nodes) else {
            panic!()
        };
        assert_eq!(p, "NotReady: x");
        let nodes = [node("a", true), node("b", true), node("x", true)];
        assert_eq!(nodes_ready_verdict(&wanted, &nodes), Verdict::Done);
    }

    #[test]
    fn rollout_verdicts() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "cilium", "generation": 1},
            "status": {"desiredNumberScheduled": 3, "numberReady": 2, "currentNumberScheduled": 3,
                       "numberMisscheduled": 0, "updatedNumberScheduled": 3, "observedGeneration": 1}
        }))
        .unwrap();
        assert!(matches!(daemonset_verdict(&ds), Verdict::Pending(_)));
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "cilium", "generation": 1},
            "status": {"desiredNumberScheduled": 3, "numberReady": 3, "currentNumberScheduled": 3,
                       "numberMisscheduled": 0, "updatedNumberScheduled": 3, "observedGeneration": 1}
        }))
        .unwrap();
        assert_eq!(daemonset_verdict(&ds), Verdict::Done);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "x"}, "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"availableReplicas": 1}
        }))
        .unwrap();
        assert!(matches!(deployment_verdict(&d), Verdict::Pending(_)));
        assert_eq!(
            all_of([
                Verdict::Done,
                Verdict::Pending("a".into()),
                Verdict::Pending("b".into())
            ]),
            Verdict::Pending("a; b".into())
        );
    }
}
