//! Pods behind every workload (the ReplicaSet, DaemonSet, StatefulSet and Job controllers, the
//! scheduler and the kubelets, collapsed): a Deployment's current ReplicaSet
//! (`<name>-<pod-template-hash>`) and its pods (`<replicaset>-<5 chars>`), a DaemonSet's pod on
//! every node its `nodeSelector` matches, a StatefulSet's ordinal pods (`<name>-<n>`), a Job's
//! pod. Each pod has its owner reference (`controller: true`), a node, a phase, conditions and
//! container statuses that follow the workload's rollout (`workloads`): `Pending`
//! (`ContainerCreating`) until it is rolled out, then `Running` and Ready; a Job's pod ends
//! `Succeeded` or `Failed` with its Job.
//!
//! Upstream (kubernetes/kubernetes v1.34): the ReplicaSet name `<deployment>-<pod-template-hash>`
//! (`pkg/controller/deployment/sync.go`, `getNewReplicaSet`), pods by `GenerateName`
//! `<owner>-` plus 5 random characters (`pkg/controller/controller_utils.go`,
//! `staging/src/k8s.io/apiserver/pkg/storage/names/generate.go`), StatefulSet pods
//! `<name>-<ordinal>` (`pkg/controller/statefulset/stateful_set_utils.go`, `getPodName`), and the
//! owner reference with `controller: true` (`metav1.NewControllerRef`).
//!
//! Incremental: a workload is looked at again only when what its pods depend on changed (its
//! generation, desired count, rollout, or the Nodes), remembered in memory by uid; a restarted
//! lab reconciles each workload once against the pods it finds.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{builtin, condition_true, list, name_of, namespace_of, str_at};
use crate::kube::objects;
use crate::kube::server::Shared;
use crate::kube::write::WriteOptions;

/// The field manager of the pods' and ReplicaSets' writes.
const MANAGER: &str = "kube-controller-manager";

/// What the controller remembers: per workload uid, what its pods were last made from.
#[derive(Default)]
pub(super) struct State {
    done: HashMap<String, String>,
    /// Counts the workloads whose pods were reconciled (the endpoints controller's cue).
    pub epoch: u64,
}

/// A node a pod can run on.
struct NodeRef {
    name: String,
    ip: String,
    labels: Value,
    taints: Vec<Value>,
    ready: bool,
}

/// What the pods of one owner should be.
struct Want<'a> {
    /// The owner the pods' reference names (a ReplicaSet, DaemonSet, StatefulSet or Job).
    owner: &'a Value,
    namespace: &'a str,
    template: &'a Value,
    /// Per pod: a fixed name (StatefulSets, DaemonSets by node) or `None` (generated), and a
    /// fixed node (DaemonSets) or `None` (spread over the schedulable nodes).
    pods: Vec<(Option<String>, Option<String>)>,
    extra_labels: Value,
    /// `Running` (ready), `Pending`, `Succeeded` or `Failed`.
    phase: &'static str,
}

pub(super) fn reconcile(shared: &Shared, state: &mut State) {
    let nodes_rt = builtin(shared, "", "nodes");
    // What the pods depend on in the Nodes, without cloning them (this runs every tick).
    let nodes_sig = shared.store.scan(&nodes_rt.gvr(), None, |nodes| {
        // Names, readiness, labels and taints: what scheduling reads.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |text: &str| {
            for b in text.bytes().chain([0]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for n in nodes {
            feed(name_of(n));
            feed(if condition_true(n, "Ready") { "r" } else { "n" });
            if let Some(labels) = n.pointer("/metadata/labels").and_then(Value::as_object) {
                for (k, v) in labels {
                    feed(k);
                    feed(v.as_str().unwrap_or_default());
                }
            }
            for taint in n
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                feed(taint["key"].as_str().unwrap_or_default());
                feed(taint["effect"].as_str().unwrap_or_default());
            }
        }
        h
    });
    let mut nodes: Option<Vec<NodeRef>> = None;
    let mut seen = Vec::new();
    for (group, resource) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
    ] {
        let rt = builtin(shared, group, resource);
        for object in list(shared, rt, None) {
            let uid = str_at(&object, "/metadata/uid").to_string();
            let sig = format!(
                "{}/{}/{}/{nodes_sig:x}",
                object
                    .pointer("/metadata/generation")
                    .unwrap_or(&Value::Null),
                object["spec"].to_string().len(),
                object["status"],
            );
            seen.push(uid.clone());
            if state.done.get(&uid) == Some(&sig) {
                continue;
            }
            let nodes = nodes.get_or_insert_with(|| node_refs(shared));
            match resource {
                "deployments" => deployment(shared, &object, nodes),
                "statefulsets" => statefulset(shared, &object, nodes),
                "daemonsets" => daemonset(shared, &object, nodes),
                _ => job(shared, &object, nodes),
            }
            state.done.insert(uid, sig);
            state.epoch += 1;
        }
    }
    state.done.retain(|uid, _| seen.contains(uid));
}

fn node_refs(shared: &Shared) -> Vec<NodeRef> {
    let nodes_rt = builtin(shared, "", "nodes");
    shared.store.scan(&nodes_rt.gvr(), None, |nodes| {
        nodes
            .map(|n| NodeRef {
                name: name_of(n).to_string(),
                ip: n
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                labels: n.pointer("/metadata/labels").cloned().unwrap_or_default(),
                taints: n
                    .pointer("/spec/taints")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                ready: condition_true(n, "Ready"),
            })
            .collect()
    })
}

/// A well-mixed hash of `text` (FNV-1a, then splitmix64's finaliser, so that names differing
/// in their last character differ everywhere).
fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Five characters from the API server's `generateName` alphabet, derived from `seed`.
fn suffix(seed: &str) -> String {
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv(seed);
    (0..5)
        .map(|_| {
            let c = alphabet[(h % alphabet.len() as u64) as usize] as char;
            h /= alphabet.len() as u64;
            c
        })
        .collect()
}

/// Whether a pod template tolerates a node's `NoSchedule`/`NoExecute` taints.
fn tolerates(template: &Value, node: &NodeRef) -> bool {
    let tolerations = template
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    node.taints
        .iter()
        .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
        .all(|taint| {
            tolerations.iter().any(|t| {
                let key_ok = match t["key"].as_str() {
                    None | Some("") => t["operator"] == "Exists",
                    Some(key) => taint["key"] == key,
                };
                let value_ok = t["operator"] == "Exists" || t["value"] == taint["value"];
                let effect_ok = match t["effect"].as_str() {
                    None | Some("") => true,
                    Some(effect) => taint["effect"] == effect,
                };
                key_ok && value_ok && effect_ok
            })
        })
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": str_at(owner, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn owned_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// Whether a node's labels satisfy a pod template's `nodeSelector`.
fn selects(template: &Value, node: &NodeRef) -> bool {
    match template
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
    {
        Some(selector) => selector.iter().all(|(k, v)| node.labels.get(k) == Some(v)),
        None => true,
    }
}

fn deployment(shared: &Shared, object: &Value, nodes: &[NodeRef]) {
    let rs_rt = builtin(shared, "apps", "replicasets");
    let ns = namespace_of(object);
    let uid = str_at(object, "/metadata/uid");
    let hash = super::workloads::template_hash(object);
    let rs_name = format!("{}-{hash}", name_of(object));
    let desired = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = int(object, "/status/readyReplicas") >= desired && desired > 0;
    // Older ReplicaSets of this Deployment go, with their pods.
    for old in shared.store.list_where(&rs_rt.gvr(), Some(ns), |rs| {
        owned_by(rs, uid) && name_of(rs) != rs_name
    }) {
        delete_pods_of(shared, &old);
        let _ = shared.store.delete(&rs_rt.gvr(), ns, name_of(&old));
    }
    let mut template = object["spec"]["template"].clone();
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = object["spec"]["selector"].clone();
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    if shared.store.get(&rs_rt.gvr(), ns, &rs_name).is_none() {
        let mut annotations = json!({"deployment.kubernetes.io/desired-replicas": desired.to_string(),
            "deployment.kubernetes.io/max-replicas": (desired + (desired + 3) / 4).to_string(),
            "deployment.kubernetes.io/revision": "1"});
        if let Some(a) = object.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        {
            annotations["deployment.kubernetes.io/revision"] = a.clone();
        }
        let rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": ns,
                "labels": template["metadata"]["labels"],
                "annotations": annotations,
                "ownerReferences": [owner_ref(object)],
            },
            "spec": {"replicas": desired, "selector": selector, "template": template},
        });
        if let Err(error) = shared.create(rs_rt, ns, rs, &WriteOptions::by(MANAGER)) {
            tracing::debug!(message = %error.message, "could not create a ReplicaSet");
            return;
        }
    }
    let Some(rs) = shared.write_status(rs_rt, ns, &rs_name, |rs| {
        rs["spec"]["replicas"] = json!(desired);
        let generation = rs
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        let n = if ready { desired } else { 0 };
        rs["status"] = json!({
            "replicas": desired,
            "fullyLabeledReplicas": desired,
            "readyReplicas": n,
            "availableReplicas": n,
            "observedGeneration": generation,
        });
    }) else {
        return;
    };
    sync(
        shared,
        nodes,
        Want {
            owner: &rs,
            namespace: ns,
            template: &rs["spec"]["template"],
            pods: (0..desired).map(|_| (None, None)).collect(),
            extra_labels: json!({}),
            phase: if ready { "Running" } else { "Pending" },
        },
    );
}

fn statefulset(shared: &Shared, object: &Value, nodes: &[NodeRef]) {
    let desired = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = int(object, "/status/readyReplicas") >= desired && desired > 0;
    let revision = str_at(object, "/status/updateRevision").to_string();
    let name = name_of(object);
    sync(
        shared,
        nodes,
        Want {
            owner: object,
            namespace: namespace_of(object),
            template: &object["spec"]["template"],
            pods: (0..desired)
                .map(|i| (Some(format!("{name}-{i}")), None))
                .collect(),
            extra_labels: json!({"controller-revision-hash": revision,
                "apps.kubernetes.io/pod-index": "0"}),
            phase: if ready { "Running" } else { "Pending" },
        },
    );
}

fn daemonset(shared: &Shared, object: &Value, nodes: &[NodeRef]) {
    let template = &object["spec"]["template"];
    let ready = int(object, "/status/numberReady") > 0;
    let name = name_of(object);
    let hash = super::workloads::template_hash(object);
    let pods = nodes
        .iter()
        .filter(|n| selects(template, n) && tolerates(template, n))
        .map(|n| {
            (
                Some(format!("{name}-{}", suffix(&format!("{name}/{}", n.name)))),
                Some(n.name.clone()),
            )
        })
        .collect();
    sync(
        shared,
        nodes,
        Want {
            owner: object,
            namespace: namespace_of(object),
            template,
            pods,
            extra_labels: json!({"controller-revision-hash": hash, "pod-template-generation": "1"}),
            phase: if ready { "Running" } else { "Pending" },
        },
    );
}

fn job(shared: &Shared, object: &Value, nodes: &[NodeRef]) {
    let phase = if condition_true(object, "Complete") {
        "Succeeded"
    } else if condition_true(object, "Failed") {
        "Failed"
    } else if object.pointer("/status/startTime").is_some() {
        "Running"
    } else {
        "Pending"
    };
    let uid = str_at(object, "/metadata/uid");
    let name = name_of(object);
    sync(
        shared,
        nodes,
        Want {
            owner: object,
            namespace: namespace_of(object),
            template: &object["spec"]["template"],
            pods: vec![(Some(format!("{name}-{}", suffix(uid))), None)],
            extra_labels: json!({"batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name, "controller-uid": uid, "job-name": name}),
            phase,
        },
    );
}

fn delete_pods_of(shared: &Shared, owner: &Value) {
    let pods_rt = builtin(shared, "", "pods");
    let uid = str_at(owner, "/metadata/uid");
    for pod in shared
        .store
        .list_where(&pods_rt.gvr(), Some(namespace_of(owner)), |p| {
            owned_by(p, uid)
        })
    {
        let _ = shared
            .store
            .delete(&pods_rt.gvr(), namespace_of(owner), name_of(&pod));
    }
}

/// Makes the pods of `want.owner` what `want` says: creates the missing, deletes the extra,
/// moves the phase of the rest.
fn sync(shared: &Shared, nodes: &[NodeRef], want: Want<'_>) {
    let pods_rt = builtin(shared, "", "pods");
    let uid = str_at(want.owner, "/metadata/uid").to_string();
    let existing = shared
        .store
        .list_where(&pods_rt.gvr(), Some(want.namespace), |p| owned_by(p, &uid));
    let host_network = want.template.pointer("/spec/hostNetwork") == Some(&json!(true));
    let mut candidates: Vec<&NodeRef> = nodes
        .iter()
        .filter(|n| {
            (n.ready || host_network) && selects(want.template, n) && tolerates(want.template, n)
        })
        .collect();
    // The rollout model (`workloads`) decides whether a workload runs; when it says so but no
    // node passes the taints (a one-node cluster whose control plane allows workloads, which
    // the lab's Node does not show), the pods still go somewhere rather than contradict it.
    if candidates.is_empty() && want.phase != "Pending" {
        candidates = nodes.iter().filter(|n| selects(want.template, n)).collect();
    }
    // Spread over the candidates, starting at a place of the owner's own.
    let start = fnv(&uid) as usize;
    let mut kept: Vec<String> = Vec::new();
    let mut unnamed = existing
        .iter()
        .filter(|p| {
            !want
                .pods
                .iter()
                .any(|(name, _)| name.as_deref() == Some(name_of(p)))
        })
        .map(|p| name_of(p).to_string())
        .collect::<Vec<_>>()
        .into_iter();
    for (i, (name, node)) in want.pods.iter().enumerate() {
        let pod_name = match name {
            Some(name) => name.clone(),
            // Generated names: reuse an existing pod that has none of the fixed names.
            None => match unnamed.next() {
                Some(existing) => existing,
                None => format!("{}-{}", name_of(want.owner), &objects::random_suffix()),
            },
        };
        kept.push(pod_name.clone());
        let node = node
            .as_deref()
            .and_then(|n| nodes.iter().find(|x| x.name == n))
            .or_else(|| {
                candidates
                    .get((start.wrapping_add(i)) % candidates.len().max(1))
                    .copied()
            });
        if shared
            .store
            .get(&pods_rt.gvr(), want.namespace, &pod_name)
            .is_none()
        {
            let pod = new_pod(&want, &pod_name, node, host_network);
            if let Err(error) =
                shared.create(pods_rt, want.namespace, pod, &WriteOptions::by(MANAGER))
            {
                tracing::debug!(message = %error.message, "could not create a pod");
            }
        } else {
            shared.write_status(pods_rt, want.namespace, &pod_name, |p| {
                let node_name = str_at(p, "/spec/nodeName").to_string();
                let node = nodes.iter().find(|n| n.name == node_name).or(node);
                // A pending pod is bound once a node can take it.
                if node_name.is_empty()
                    && let Some(node) = node
                {
                    p["spec"]["nodeName"] = json!(node.name);
                }
                p["status"] = pod_status(&want, p, node, host_network);
            });
        }
    }
    for pod in existing
        .iter()
        .filter(|p| !kept.iter().any(|k| k == name_of(p)))
    {
        let _ = shared
            .store
            .delete(&pods_rt.gvr(), want.namespace, name_of(pod));
    }
}

fn new_pod(want: &Want<'_>, name: &str, node: Option<&NodeRef>, host_network: bool) -> Value {
    let mut labels = want.template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    if let (Some(l), Some(extra)) = (labels.as_object_mut(), want.extra_labels.as_object()) {
        for (k, v) in extra {
            l.insert(k.clone(), v.clone());
        }
    }
    if want.owner["kind"] == "StatefulSet" {
        labels["statefulset.kubernetes.io/pod-name"] = json!(name);
        if let Some(ordinal) = name.rsplit('-').next() {
            labels["apps.kubernetes.io/pod-index"] = json!(ordinal);
        }
    }
    let mut spec = want.template["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    // What the API server defaults in a pod (pkg/apis/core/v1/defaults.go).
    for (field, default) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("serviceAccountName", json!("default")),
        ("securityContext", json!({})),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
    ] {
        if spec.get(field).is_none() {
            spec[field] = default;
        }
    }
    if let Some(node) = node {
        spec["nodeName"] = json!(node.name);
    }
    if let Some(containers) = spec.get_mut("containers").and_then(Value::as_array_mut) {
        for c in containers {
            for (field, default) in [
                ("terminationMessagePath", json!("/dev/termination-log")),
                ("terminationMessagePolicy", json!("File")),
                ("imagePullPolicy", json!("IfNotPresent")),
                ("resources", json!({})),
            ] {
                if c.get(field).is_none() {
                    c[field] = default;
                }
            }
        }
    }
    let mut annotations = want.template["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": want.namespace,
            "labels": labels,
            "ownerReferences": [owner_ref(want.owner)],
        },
        "spec": spec,
    });
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        pod["metadata"]["annotations"] = annotations;
    }
    pod["status"] = pod_status(want, &pod, node, host_network);
    pod
}

/// The status a kubelet reports for a pod of `want` on `node`.
fn pod_status(want: &Want<'_>, pod: &Value, node: Option<&NodeRef>, host_network: bool) -> Value {
    let now = objects::now_rfc3339();
    let old = &pod["status"];
    let since = |kind: &str| -> Value {
        old.pointer("/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now))
    };
    let Some(node) = node else {
        return json!({
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/0 nodes are available: no node is ready and schedulable.",
                "lastProbeTime": null, "lastTransitionTime": since("PodScheduled"),
            }],
        });
    };
    let phase = want.phase;
    let running = phase == "Running";
    let started = old.get("startTime").cloned().unwrap_or_else(|| json!(now));
    let pod_ip = if host_network {
        node.ip.clone()
    } else {
        let h = fnv(name_of(pod));
        format!("10.244.{}.{}", (h >> 8) % 250 + 1, h % 250 + 2)
    };
    let truth = |b: bool| if b { "True" } else { "False" };
    let ready = running;
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let container = c["name"].as_str().unwrap_or_default();
                    let image = c["image"].as_str().unwrap_or_default();
                    let id = format!(
                        "containerd://{:016x}{:016x}",
                        fnv(name_of(pod)),
                        fnv(container)
                    );
                    let state = match phase {
                        "Running" => json!({"running": {"startedAt": started}}),
                        "Succeeded" | "Failed" => json!({"terminated": {
                            "exitCode": if phase == "Succeeded" { 0 } else { 1 },
                            "reason": if phase == "Succeeded" { "Completed" } else { "Error" },
                            "startedAt": started, "finishedAt": now, "containerID": id}}),
                        _ => json!({"waiting": {"reason": "ContainerCreating"}}),
                    };
                    let mut status = json!({
                        "name": container,
                        "image": image,
                        "imageID": "",
                        "ready": ready,
                        "started": running,
                        "restartCount": 0,
                        "state": state,
                    });
                    if phase != "Pending" {
                        status["containerID"] = json!(id);
                        status["imageID"] =
                            json!(format!("{image}@sha256:{:064x}", u128::from(fnv(image))));
                    }
                    status
                })
                .collect()
        })
        .unwrap_or_default();
    let done = matches!(phase, "Succeeded" | "Failed");
    let condition = |kind: &str, status: bool, reason: Option<&str>| {
        let mut c = json!({"type": kind, "status": truth(status), "lastProbeTime": null,
            "lastTransitionTime": since(kind)});
        if let Some(reason) = reason {
            c["reason"] = json!(reason);
        }
        c
    };
    json!({
        "phase": phase,
        "qosClass": "BestEffort",
        "hostIP": node.ip,
        "hostIPs": [{"ip": node.ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started,
        "conditions": [
            condition("PodReadyToStartContainers", phase != "Pending" && !done, None),
            condition("Initialized", true, None),
            condition("Ready", ready, if ready { None } else if done { Some("PodCompleted") } else { Some("ContainersNotReady") }),
            condition("ContainersReady", ready, if ready { None } else if done { Some("PodCompleted") } else { Some("ContainersNotReady") }),
            condition("PodScheduled", true, None),
        ],
        "containerStatuses": containers,
    })
}

/// `GET …/pods/<name>/log`: what a simulated container would print.
pub(crate) fn log(pod: &Value, container: &str) -> String {
    let image = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c["image"].as_str())
        .unwrap_or_default();
    let owner = pod
        .pointer("/metadata/ownerReferences/0")
        .map(|o| format!("{} {}", str_at(o, "/kind"), str_at(o, "/name")))
        .unwrap_or_else(|| "no controller".to_string());
    let node = str_at(pod, "/spec/nodeName");
    let started = str_at(pod, "/status/startTime");
    format!(
        "{started} lab: container {container} of pod {}/{} (image {image}, {owner}) on node {node} is simulated by the cto lab: no process runs, so there is nothing else to log.\n",
        namespace_of(pod),
        name_of(pod)
    )
}
