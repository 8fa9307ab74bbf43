//! The lab's Kubernetes after a complete `cto install --lab`, read as a user and a client
//! would: every object of every built-in kind it serves obeys the real schema of Kubernetes
//! 1.34 (`lab::kube::schema`), and kubectl finds what the installed platform implies.

use std::path::Path;

use serde_json::Value;

use crate::harness::{LabProcess, User, describe, run};
use crate::kubectl::{kubectl, wait_for_kube_api};

/// API groups of built-in kinds: a kind served in one of them must have a schema the check
/// knows (custom resources are checked by nothing here).
const BUILT_IN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "coordination.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "discovery.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
];

fn raw(kubeconfig: &Path, path: &str) -> Value {
    let out = kubectl(kubeconfig, &["get", "--raw", path]);
    assert!(out.status.success(), "GET {path}: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every listable resource the server advertises: (group, version, resource, kind).
fn served(kubeconfig: &Path) -> Vec<(String, String, String, String)> {
    let mut group_versions = vec![(String::new(), "v1".to_string(), "/api/v1".to_string())];
    for group in raw(kubeconfig, "/apis")["groups"].as_array().unwrap() {
        let name = group["name"].as_str().unwrap();
        for version in group["versions"].as_array().unwrap() {
            let version = version["version"].as_str().unwrap();
            group_versions.push((
                name.to_string(),
                version.to_string(),
                format!("/apis/{name}/{version}"),
            ));
        }
    }
    let mut out = Vec::new();
    for (group, version, path) in group_versions {
        for resource in raw(kubeconfig, &path)["resources"].as_array().unwrap() {
            let name = resource["name"].as_str().unwrap();
            let listable = resource["verbs"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v == "list"));
            if name.contains('/') || !listable {
                continue;
            }
            out.push((
                group.clone(),
                version.clone(),
                name.to_string(),
                resource["kind"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// Lists every served resource and checks each object; returns how many objects of how many
/// built-in kinds were checked, or the first violation.
fn check_everything(kubeconfig: &Path) -> Result<(usize, usize), String> {
    let mut objects = 0;
    let mut kinds = 0;
    for (group, version, resource, kind) in served(kubeconfig) {
        let api_version = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let path = if group.is_empty() {
            format!("/api/{version}/{resource}")
        } else {
            format!("/apis/{group}/{version}/{resource}")
        };
        let built_in = BUILT_IN_GROUPS.contains(&group.as_str());
        let list = raw(kubeconfig, &path);
        let mut checked_kind = false;
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            // Built-in lists leave kind and apiVersion out of their items.
            item["apiVersion"] = Value::from(api_version.clone());
            item["kind"] = Value::from(kind.clone());
            match lab::kube::schema::check(&item) {
                Ok(true) => {
                    objects += 1;
                    checked_kind = true;
                }
                Ok(false) if built_in => {
                    return Err(format!(
                        "no schema for the built-in kind {api_version} {kind}"
                    ));
                }
                Ok(false) => {}
                Err(violation) => return Err(violation.to_string()),
            }
        }
        kinds += usize::from(checked_kind);
    }
    Ok((objects, kinds))
}

#[test]
fn after_a_lab_install_every_served_object_obeys_the_real_schema() {
    let user = User::new();
    let state = user.state_dir("k");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "k",
            "--nodes",
            "3",
            "--state-dir",
            s,
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let _lab = LabProcess::reopen(&state.join("lab"));
    let kubeconfig = state.join("kubeconfig");
    wait_for_kube_api(&kubeconfig);

    let (objects, kinds) = check_everything(&kubeconfig).unwrap_or_else(|v| panic!("{v}"));
    eprintln!("{objects} objects of {kinds} built-in kinds obey the schema");
    assert!(kinds >= 15, "only {kinds} built-in kinds had objects");

    // The check can fail: a served Node without a required field is named, with the field.
    let mut node = raw(&kubeconfig, "/api/v1/nodes/k-cp-1");
    node["status"]["nodeInfo"]
        .as_object_mut()
        .unwrap()
        .remove("kubeProxyVersion");
    let violation = lab::kube::schema::check(&node).unwrap_err();
    assert_eq!(
        violation.to_string(),
        "Node k-cp-1: status.nodeInfo.kubeProxyVersion: required field is missing"
    );

    // Pods behind every workload: a Running pod for every replica of every Deployment (through
    // its ReplicaSet) and of every DaemonSet, each with a log.
    let pods = raw(&kubeconfig, "/api/v1/pods")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let running_owned_by = |uid: &str| -> Vec<&Value> {
        pods.iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid)
            .collect()
    };
    let replicasets = raw(&kubeconfig, "/apis/apps/v1/replicasets")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut checked_pods = Vec::new();
    let deployments = raw(&kubeconfig, "/apis/apps/v1/deployments")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!deployments.is_empty());
    for deployment in &deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let rs: Vec<&Value> = replicasets
            .iter()
            .filter(|rs| {
                rs["metadata"]["ownerReferences"][0]["uid"] == deployment["metadata"]["uid"]
            })
            .collect();
        assert_eq!(rs.len(), 1, "one ReplicaSet for Deployment {name}");
        let running = running_owned_by(rs[0]["metadata"]["uid"].as_str().unwrap());
        assert_eq!(running.len(), replicas, "Running pods of Deployment {name}");
        checked_pods.extend(running);
    }
    let daemonsets = raw(&kubeconfig, "/apis/apps/v1/daemonsets")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!daemonsets.is_empty());
    for daemonset in &daemonsets {
        let name = daemonset["metadata"]["name"].as_str().unwrap();
        let desired = daemonset["status"]["desiredNumberScheduled"]
            .as_u64()
            .unwrap() as usize;
        let running = running_owned_by(daemonset["metadata"]["uid"].as_str().unwrap());
        assert_eq!(running.len(), desired, "Running pods of DaemonSet {name}");
        let mut nodes: Vec<&str> = running
            .iter()
            .map(|p| p["spec"]["nodeName"].as_str().unwrap())
            .collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(
            nodes.len(),
            desired,
            "one pod per node for DaemonSet {name}"
        );
        checked_pods.extend(running);
    }
    let out = kubectl(&kubeconfig, &["get", "pods", "-A"]);
    let table = String::from_utf8_lossy(&out.stdout);
    for pod in &checked_pods {
        let (ns, name) = (
            pod["metadata"]["namespace"].as_str().unwrap(),
            pod["metadata"]["name"].as_str().unwrap(),
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(ns) && l.contains(name) && l.contains("Running")),
            "{ns}/{name} in {table}"
        );
        let out = kubectl(&kubeconfig, &["logs", "-n", ns, name]);
        assert!(
            out.status.success(),
            "kubectl logs {ns}/{name}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("simulated"),
            "{}",
            describe(&out)
        );
    }
    let out = kubectl(
        &kubeconfig,
        &[
            "describe",
            "pod",
            "-n",
            "kube-system",
            "-l",
            "app.kubernetes.io/name=cilium",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Controlled By:  DaemonSet/cilium"),
        "{}",
        describe(&out)
    );

    // What the installed platform implies, as kubectl lists it.
    let names = |args: &[&str]| -> String {
        let out = kubectl(&kubeconfig, args);
        assert!(out.status.success(), "kubectl {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let slices = names(&["get", "endpointslices", "-A", "-o", "wide"]);
    assert!(
        slices
            .lines()
            .any(|l| l.starts_with("argocd") && l.contains("argocd-server-")),
        "{slices}"
    );
    let slice = raw(
        &kubeconfig,
        "/apis/discovery.k8s.io/v1/namespaces/argocd/endpointslices",
    )["items"][0]
        .clone();
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"], "argocd-server",
        "{slice}"
    );
    assert_eq!(
        slice["endpoints"][0]["conditions"]["ready"], true,
        "{slice}"
    );
    let endpoints = names(&[
        "get",
        "endpoints",
        "-n",
        "argocd",
        "argocd-server",
        "-o",
        "json",
    ]);
    assert!(endpoints.contains("\"addresses\""), "{endpoints}");
    assert!(names(&["get", "csidrivers"]).contains("io.openebs.csi-mayastor"));
    let apiservices = names(&["get", "apiservices"]);
    for want in [
        "v1.",
        "v1.apps",
        "v1alpha1.argoproj.io",
        "v1beta1.metrics.k8s.io",
    ] {
        assert!(
            apiservices
                .lines()
                .any(|l| l.starts_with(&format!("{want} "))),
            "{want} in {apiservices}"
        );
    }
    let clusterroles = names(&["get", "clusterroles"]);
    for want in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert!(
            clusterroles
                .lines()
                .any(|l| l.starts_with(&format!("{want} "))),
            "{want} in {clusterroles}"
        );
    }
    // kubectl wait and --watch.
    let out = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            "app.kubernetes.io/name=cilium",
            "-n",
            "kube-system",
            "--timeout=20s",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "pods", "-n", "kube-system", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = watch.kill();
    let watched = watch.wait_with_output().unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched
            .lines()
            .any(|l| l.starts_with("cilium-") && l.contains("Running")),
        "{watched}"
    );

    // kubectl explain reads the served OpenAPI v3 schemas.
    let out = kubectl(&kubeconfig, &["explain", "node.status.nodeInfo"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kubeProxyVersion\t<string> -required-"),
        "{text}"
    );
    let out = kubectl(
        &kubeconfig,
        &["explain", "deployment.spec.template.spec.containers"],
    );
    assert!(out.status.success(), "{}", describe(&out));

    // Client-side apply: create, then a three-way patch of a changed manifest.
    let manifest = state.join("web.yaml");
    let deployment = |replicas: u32| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: default}}\n\
             spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n\
             \x20   metadata: {{labels: {{app: web}}}}\n\
             \x20   spec: {{containers: [{{name: web, image: nginx:1.27}}]}}\n"
        )
    };
    std::fs::write(&manifest, deployment(1)).unwrap();
    let m = manifest.to_str().unwrap();
    let out = kubectl(&kubeconfig, &["apply", "-f", m]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web created"));
    std::fs::write(&manifest, deployment(2)).unwrap();
    let out = kubectl(&kubeconfig, &["apply", "-f", m]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web configured"),
        "{}",
        describe(&out)
    );
    let web = raw(
        &kubeconfig,
        "/apis/apps/v1/namespaces/default/deployments/web",
    );
    assert_eq!(web["spec"]["replicas"], 2);
    assert!(
        web["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
}
