//! Helm Jobs: the installer runs `helm upgrade --install` inside a Job (k3s helm-controller
//! style). The lab recognises such a Job by its label `cto.dev/helm-release` (the release
//! name) and its annotations `cto.dev/chart`, `cto.dev/chart-repo`, `cto.dev/chart-version`,
//! `cto.dev/values-configmap` (a ConfigMap in the Job's namespace with key `values.yaml`) and,
//! optionally, `cto.dev/release-namespace` (default: the Job's namespace). When the Job runs,
//! the lab reads the values and installs what the chart would: the workloads, the objects
//! clients look for (StorageClass, CRDs, the Argo CD admin secret), labelled as Helm labels
//! them. Installing is idempotent (server-side apply by manager `helm`).
//!
//! Known charts: `cilium` (values checked against what Talos requires), `local-path-provisioner`
//! and `argo-cd`. Anything else fails like `helm` does for a chart missing from its repository.

use base64::Engine;
use serde_json::{Value, json};

use super::{builtin, namespace_of};
use crate::kube::server::Shared;
use crate::kube::write::WriteOptions;

/// The label that makes a Job a Helm Job (its value is the release name).
pub(crate) const RELEASE_LABEL: &str = "cto.dev/helm-release";
const CHART: &str = "cto.dev/chart";
const CHART_REPO: &str = "cto.dev/chart-repo";
const CHART_VERSION: &str = "cto.dev/chart-version";
const VALUES_CONFIGMAP: &str = "cto.dev/values-configmap";
const RELEASE_NAMESPACE: &str = "cto.dev/release-namespace";

/// The field manager of what Helm installs.
const MANAGER: &str = "helm";

pub(super) fn is_helm_job(job: &Value) -> bool {
    job.pointer("/metadata/labels")
        .and_then(|l| l.get(RELEASE_LABEL))
        .and_then(Value::as_str)
        .is_some_and(|r| !r.is_empty())
}

fn annotation<'a>(job: &'a Value, key: &str) -> &'a str {
    job.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A value at a dotted path of the chart values.
fn value<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(values, |v, k| v.get(k))
}

fn truthy(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Runs the Helm Job `job`: reads its values and installs its chart. The error is what the
/// Job's pod would log.
pub(super) fn install(shared: &Shared, job: &Value) -> Result<(), String> {
    let release = job
        .pointer("/metadata/labels")
        .and_then(|l| l.get(RELEASE_LABEL))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let chart = annotation(job, CHART);
    let repo = annotation(job, CHART_REPO);
    let version = annotation(job, CHART_VERSION);
    let job_namespace = namespace_of(job);
    let namespace = match annotation(job, RELEASE_NAMESPACE) {
        "" => job_namespace.to_string(),
        ns => ns.to_string(),
    };
    if chart.is_empty() {
        return Err(format!(
            "Error: the Job has no {CHART} annotation: which chart to install is unknown"
        ));
    }
    let values = read_values(shared, job_namespace, annotation(job, VALUES_CONFIGMAP))?;
    let version = match (chart, version) {
        (_, v) if !v.is_empty() => v.trim_start_matches('v').to_string(),
        ("cilium", _) => "1.18.2".into(),
        ("local-path-provisioner", _) => "0.0.32".into(),
        ("argo-cd", _) => "8.5.8".into(),
        _ => String::new(),
    };
    let release = Release {
        name: release,
        namespace,
        chart: chart.to_string(),
        version,
    };
    let objects = match chart {
        "cilium" => {
            check_cilium(&values)?;
            cilium(&release, &values)
        }
        "local-path-provisioner" => local_path(&release, &values),
        "argo-cd" => argo_cd(&release, &values),
        other => {
            let repo = if repo.is_empty() {
                "the configured"
            } else {
                repo
            };
            return Err(format!(
                "Error: chart \"{other}\" not found in {repo} repository"
            ));
        }
    };
    // `helm upgrade --install --create-namespace`.
    let namespaces = builtin(shared, "", "namespaces");
    if shared
        .store
        .get(&namespaces.gvr(), "", &release.namespace)
        .is_none()
    {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": release.namespace}});
        shared
            .create(namespaces, "", ns, &WriteOptions::by(MANAGER))
            .map_err(|e| format!("Error: create: failed to create: {}", e.message))?;
    }
    for object in objects {
        shared.apply_as(MANAGER, &object).map_err(|e| {
            format!(
                "Error: UPGRADE FAILED: failed to create resource: {}",
                e.message
            )
        })?;
    }
    if chart == "argo-cd" {
        initial_admin_secret(shared, &release)?;
    }
    tracing::info!(release = %release.name, chart = %release.chart, namespace = %release.namespace, "lab Helm release installed");
    Ok(())
}

fn read_values(shared: &Shared, namespace: &str, configmap: &str) -> Result<Value, String> {
    if configmap.is_empty() {
        return Ok(json!({}));
    }
    let cms = builtin(shared, "", "configmaps");
    let cm = shared
        .store
        .get(&cms.gvr(), namespace, configmap)
        .ok_or_else(|| format!("Error: open /config/values.yaml: configmap \"{configmap}\" not found in namespace \"{namespace}\""))?;
    let text = cm
        .pointer("/data/values.yaml")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!("Error: open /config/values.yaml: configmap \"{configmap}\" has no key \"values.yaml\"")
        })?;
    let values: Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("Error: failed to parse /config/values.yaml: {e}"))?;
    match values {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(values),
        _ => Err("Error: failed to parse /config/values.yaml: the values are not a map".into()),
    }
}

/// What Talos requires of Cilium's values (Talos' "Deploying Cilium CNI" guide).
fn check_cilium(values: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut expect = |path: &str, want: &str, got: Option<String>| {
        if got.as_deref() != Some(want) {
            problems.push(format!(
                "{path} must be {want} (got {})",
                got.unwrap_or_else(|| "nothing".into())
            ));
        }
    };
    expect("ipam.mode", "kubernetes", text(value(values, "ipam.mode")));
    expect(
        "kubeProxyReplacement",
        "true",
        truthy(value(values, "kubeProxyReplacement")).map(|b| b.to_string()),
    );
    expect(
        "k8sServiceHost",
        "localhost",
        text(value(values, "k8sServiceHost")),
    );
    expect(
        "k8sServicePort",
        "7445",
        text(value(values, "k8sServicePort")),
    );
    expect(
        "cgroup.autoMount.enabled",
        "false",
        truthy(value(values, "cgroup.autoMount.enabled")).map(|b| b.to_string()),
    );
    expect(
        "cgroup.hostRoot",
        "/sys/fs/cgroup",
        text(value(values, "cgroup.hostRoot")),
    );
    for (path, required) in [
        (
            "securityContext.capabilities.ciliumAgent",
            &["NET_ADMIN", "SYS_ADMIN"][..],
        ),
        (
            "securityContext.capabilities.cleanCiliumState",
            &["NET_ADMIN", "SYS_ADMIN"][..],
        ),
    ] {
        let caps: Vec<String> = value(values, path)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if caps.is_empty() {
            problems.push(format!(
                "{path} must list the capabilities (Talos has no SYS_MODULE)"
            ));
        } else if caps.iter().any(|c| c == "SYS_MODULE") {
            problems.push(format!("{path} must not include SYS_MODULE (Talos does not let workloads load kernel modules)"));
        } else if let Some(missing) = required.iter().find(|r| !caps.iter().any(|c| c == *r)) {
            problems.push(format!("{path} must include {missing}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cilium values do not fit Talos: {}",
            problems.join("; ")
        ))
    }
}

struct Release {
    name: String,
    namespace: String,
    chart: String,
    version: String,
}

impl Release {
    /// `metadata` of an object of this release.
    fn meta(&self, name: &str, component: &str, namespaced: bool) -> Value {
        let mut meta = json!({
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/instance": self.name,
                "app.kubernetes.io/name": component,
                "app.kubernetes.io/part-of": self.chart,
                "helm.sh/chart": format!("{}-{}", self.chart, self.version),
            },
            "annotations": {
                "meta.helm.sh/release-name": self.name,
                "meta.helm.sh/release-namespace": self.namespace,
            },
        });
        if namespaced {
            meta["namespace"] = json!(self.namespace);
        }
        meta
    }

    fn service_account(&self, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": self.meta(name, name, true)})
    }

    fn pod_template(
        &self,
        component: &str,
        image: &str,
        host_network: bool,
        service_account: &str,
    ) -> Value {
        let mut spec = json!({
            "serviceAccountName": service_account,
            "containers": [{"name": component, "image": image, "imagePullPolicy": "IfNotPresent"}],
        });
        if host_network {
            spec["hostNetwork"] = json!(true);
            spec["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        }
        json!({
            "metadata": {"labels": {
                "app.kubernetes.io/name": component,
                "app.kubernetes.io/instance": self.name,
            }},
            "spec": spec,
        })
    }

    fn workload(
        &self,
        kind: &str,
        name: &str,
        image: &str,
        host_network: bool,
        replicas: Option<i64>,
        service_account: &str,
    ) -> Value {
        let mut spec = json!({
            "selector": {"matchLabels": {
                "app.kubernetes.io/name": name,
                "app.kubernetes.io/instance": self.name,
            }},
            "template": self.pod_template(name, image, host_network, service_account),
        });
        if let Some(replicas) = replicas {
            spec["replicas"] = json!(replicas);
        }
        if kind == "StatefulSet" {
            spec["serviceName"] = json!(name);
        }
        json!({"apiVersion": "apps/v1", "kind": kind, "metadata": self.meta(name, name, true), "spec": spec})
    }
}

fn cilium(release: &Release, values: &Value) -> Vec<Value> {
    let version = &release.version;
    let operator_replicas = value(values, "operator.replicas")
        .and_then(Value::as_i64)
        .unwrap_or(2);
    let mut config = json!({
        "ipam": text(value(values, "ipam.mode")).unwrap_or_default(),
        "kube-proxy-replacement": "true",
        "k8s-service-host": text(value(values, "k8sServiceHost")).unwrap_or_default(),
        "k8s-service-port": text(value(values, "k8sServicePort")).unwrap_or_default(),
        "cgroup-root": text(value(values, "cgroup.hostRoot")).unwrap_or_default(),
    });
    if truthy(value(values, "gatewayAPI.enabled")) == Some(true) {
        config["enable-gateway-api"] = json!("true");
    }
    // The chart's agent and operator both tolerate every taint (values.yaml `tolerations:
    // [{operator: Exists}]` and `operator.tolerations`): the CNI runs on control planes and
    // on nodes that are not Ready yet.
    let tolerate_all = |mut workload: Value| {
        workload["spec"]["template"]["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        workload
    };
    vec![
        release.service_account("cilium"),
        release.service_account("cilium-operator"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": release.meta("cilium-config", "cilium", true), "data": config}),
        tolerate_all(release.workload(
            "DaemonSet",
            "cilium",
            &format!("quay.io/cilium/cilium:v{version}"),
            true,
            None,
            "cilium",
        )),
        tolerate_all(release.workload(
            "Deployment",
            "cilium-operator",
            &format!("quay.io/cilium/operator-generic:v{version}"),
            true,
            Some(operator_replicas),
            "cilium-operator",
        )),
    ]
}

fn local_path(release: &Release, values: &Value) -> Vec<Value> {
    let class = text(value(values, "storageClass.name")).unwrap_or_else(|| "local-path".into());
    let provisioner = text(value(values, "storageClass.provisionerName"))
        .unwrap_or_else(|| "cluster.local/local-path-provisioner".into());
    let mut class_meta = release.meta(&class, "local-path-provisioner", false);
    if truthy(value(values, "storageClass.defaultClass")) == Some(true) {
        class_meta["annotations"]["storageclass.kubernetes.io/is-default-class"] = json!("true");
    }
    let path = value(values, "nodePathMap")
        .and_then(Value::as_array)
        .and_then(|m| m.first())
        .and_then(|m| m["paths"].get(0))
        .and_then(Value::as_str)
        .unwrap_or("/opt/local-path-provisioner")
        .to_string();
    let config =
        json!({"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [path]}]});
    vec![
        release.service_account("local-path-provisioner"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": release.meta("local-path-config", "local-path-provisioner", true), "data": {"config.json": config.to_string()}}),
        release.workload(
            "Deployment",
            "local-path-provisioner",
            &format!("rancher/local-path-provisioner:v{}", release.version),
            false,
            Some(1),
            "local-path-provisioner",
        ),
        json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": class_meta,
            "provisioner": provisioner,
            "reclaimPolicy": text(value(values, "storageClass.reclaimPolicy")).unwrap_or_else(|| "Delete".into()),
            "volumeBindingMode": text(value(values, "storageClass.volumeBindingMode")).unwrap_or_else(|| "WaitForFirstConsumer".into()),
            "allowVolumeExpansion": true,
        }),
    ]
}

/// Argo CD's CRDs as the chart ships them (schemas left out: the lab does not validate custom
/// resources).
fn argo_crds(release: &Release) -> Vec<Value> {
    let crd = |plural: &str, singular: &str, kind: &str, short: &[&str], columns: Value| {
        let mut meta = release.meta(&format!("{plural}.argoproj.io"), "argocd", false);
        meta["annotations"]["helm.sh/resource-policy"] = json!("keep");
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": meta,
            "spec": {
                "group": "argoproj.io",
                "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": singular, "shortNames": short},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1alpha1",
                    "served": true,
                    "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                    "additionalPrinterColumns": columns,
                }],
            },
        })
    };
    let mut appset = crd(
        "applicationsets",
        "applicationset",
        "ApplicationSet",
        &["appset", "appsets"],
        json!([]),
    );
    appset["spec"]["versions"][0]["subresources"] = json!({"status": {}});
    appset["spec"]["versions"][0]
        .as_object_mut()
        .map(|v| v.remove("additionalPrinterColumns"));
    let mut project = crd(
        "appprojects",
        "appproject",
        "AppProject",
        &["appproj", "appprojs"],
        json!([]),
    );
    project["spec"]["versions"][0]
        .as_object_mut()
        .map(|v| v.remove("additionalPrinterColumns"));
    vec![
        crd(
            "applications",
            "application",
            "Application",
            &["app", "apps"],
            json!([
                {"jsonPath": ".status.sync.status", "name": "Sync Status", "type": "string"},
                {"jsonPath": ".status.health.status", "name": "Health Status", "type": "string"},
                {"jsonPath": ".status.sync.revision", "name": "Revision", "priority": 10, "type": "string"},
                {"jsonPath": ".spec.project", "name": "Project", "priority": 10, "type": "string"},
            ]),
        ),
        project,
        appset,
    ]
}

fn argo_cd(release: &Release, values: &Value) -> Vec<Value> {
    let image = |component: &str| match component {
        "argocd-redis" => "ecr-public.aws.com/docker/library/redis:7.2.8-alpine".to_string(),
        _ => "quay.io/argoproj/argocd:v3.1.8".to_string(),
    };
    let mut objects = Vec::new();
    if truthy(value(values, "crds.install")) != Some(false) {
        objects.extend(argo_crds(release));
    }
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": release.meta("argocd-cm", "argocd-cm", true), "data": {}});
    if let Some(map) = value(values, "configs.cm").and_then(Value::as_object) {
        for (k, v) in map {
            cm["data"][k] = json!(text(Some(v)).unwrap_or_else(|| v.to_string()));
        }
    }
    objects.push(cm);
    for name in [
        "argocd-server",
        "argocd-repo-server",
        "argocd-applicationset-controller",
        "argocd-redis",
    ] {
        objects.push(release.service_account(name));
        objects.push(release.workload("Deployment", name, &image(name), false, Some(1), name));
    }
    objects.push(release.service_account("argocd-application-controller"));
    objects.push(release.workload(
        "StatefulSet",
        "argocd-application-controller",
        &image("argocd-application-controller"),
        false,
        Some(1),
        "argocd-application-controller",
    ));
    objects.push(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": release.meta("argocd-server", "argocd-server", true),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "argocd-server", "app.kubernetes.io/instance": release.name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}, {"name": "https", "port": 443, "targetPort": 8080, "protocol": "TCP"}],
        },
    }));
    objects
}

/// `argocd-initial-admin-secret`, which argocd-server creates once with a random password.
fn initial_admin_secret(shared: &Shared, release: &Release) -> Result<(), String> {
    let secrets = builtin(shared, "", "secrets");
    if shared
        .store
        .get(
            &secrets.gvr(),
            &release.namespace,
            "argocd-initial-admin-secret",
        )
        .is_some()
    {
        return Ok(());
    }
    let password: String = {
        use rand::Rng;
        rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(16)
            .map(char::from)
            .collect()
    };
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "argocd-initial-admin-secret", "namespace": release.namespace},
        "type": "Opaque",
        "data": {"password": base64::engine::general_purpose::STANDARD.encode(password)},
    });
    match shared.create(
        secrets,
        &release.namespace,
        secret,
        &WriteOptions::by("argocd-server"),
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(format!("Error: {}", e.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Value {
        serde_saphyr::from_str(
            "ipam: {mode: kubernetes}\nkubeProxyReplacement: true\nk8sServiceHost: localhost\nk8sServicePort: 7445\ncgroup:\n  autoMount: {enabled: false}\n  hostRoot: /sys/fs/cgroup\nsecurityContext:\n  capabilities:\n    ciliumAgent: [CHOWN, KILL, NET_ADMIN, NET_RAW, IPC_LOCK, SYS_ADMIN, SYS_RESOURCE, DAC_OVERRIDE, FOWNER, SETGID, SETUID]\n    cleanCiliumState: [NET_ADMIN, SYS_ADMIN, SYS_RESOURCE]\n",
        )
        .unwrap()
    }

    #[test]
    fn cilium_values_are_checked_against_talos() {
        assert_eq!(check_cilium(&good()), Ok(()));
        let mut bad = good();
        bad["k8sServicePort"] = json!(6443);
        bad["kubeProxyReplacement"] = json!(false);
        let error = check_cilium(&bad).unwrap_err();
        assert!(
            error.contains("k8sServicePort must be 7445 (got 6443)"),
            "{error}"
        );
        assert!(
            error.contains("kubeProxyReplacement must be true"),
            "{error}"
        );
    }
}
