//! Deployments, StatefulSets, DaemonSets and Jobs (kube-controller-manager, the scheduler and
//! the kubelets, collapsed), the CNI turning Nodes Ready, and namespace termination.

use serde_json::{Value, json};

use super::{
    State, builtin, condition, condition_true, event, helm, list, list_where, name_of,
    namespace_of, str_at,
};
use crate::durations::Phase;
use crate::kube::objects;
use crate::kube::server::Shared;

/// The DaemonSet whose readiness means the CNI runs.
const CNI_NAMESPACE: &str = "kube-system";
const CNI_DAEMONSET: &str = "cilium";

impl Shared {
    /// Whether the CNI runs: the `kube-system/cilium` DaemonSet has ready pods.
    pub(crate) fn cni_ready(&self) -> bool {
        let ds = builtin(self, "apps", "daemonsets");
        self.store
            .get(&ds.gvr(), CNI_NAMESPACE, CNI_DAEMONSET)
            .and_then(|d| d.pointer("/status/numberReady").and_then(Value::as_i64))
            .is_some_and(|n| n > 0)
    }
}

pub(super) fn reconcile(shared: &Shared, state: &mut State) {
    let nodes_rt = builtin(shared, "", "nodes");
    let (node_count, ready_count) = shared.store.scan(&nodes_rt.gvr(), None, |nodes| {
        nodes.fold((0i64, 0i64), |(all, ready), n| {
            (all + 1, ready + i64::from(node_ready(n)))
        })
    });
    let any_ready = ready_count > 0;
    let schedulable = |template_spec: &Value| {
        node_count > 0 && (any_ready || template_spec["hostNetwork"] == true)
    };
    for (resource, kind) in [
        ("deployments", Kind::Deployment),
        ("statefulsets", Kind::StatefulSet),
        ("daemonsets", Kind::DaemonSet),
    ] {
        let rt = builtin(shared, "apps", resource);
        for object in list(shared, rt, None) {
            let generation = object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let desired = match kind {
                // One pod per node its nodeSelector matches (`pods`).
                Kind::DaemonSet => match object
                    .pointer("/spec/template/spec/nodeSelector")
                    .and_then(Value::as_object)
                    .filter(|s| !s.is_empty())
                {
                    Some(selector) => shared.store.scan(&nodes_rt.gvr(), None, |nodes| {
                        nodes
                            .filter(|n| {
                                selector.iter().all(|(k, v)| {
                                    n.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v)
                                })
                            })
                            .count() as i64
                    }),
                    None => node_count,
                },
                _ => object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
            };
            let key = format!(
                "{resource}/{}/{}/{}/{generation}/{desired}",
                namespace_of(&object),
                name_of(&object),
                str_at(&object, "/metadata/uid")
            );
            let already = rolled_out(&object, kind, generation, desired);
            let can_schedule = schedulable(&object["spec"]["template"]["spec"]);
            let subject = format!("{}/{}", namespace_of(&object), name_of(&object));
            let rolled = desired == 0
                || already
                || (can_schedule
                    && state.elapsed(
                        key.clone(),
                        shared.durations.real(Phase::WorkloadRollout, &subject),
                    ));
            if !can_schedule {
                state.forget(&key);
            }
            if rolled && !already {
                shared
                    .observer
                    .condition(format!("rollout/{}/{subject}", kind.name()));
            }
            shared.write_status(rt, namespace_of(&object), name_of(&object), |o| {
                let status = workload_status(o, kind, generation, desired, rolled);
                o["status"] = status;
            });
        }
    }
    jobs(shared, state, &schedulable);
    if ready_count < node_count && shared.cni_ready() {
        for node in list_where(shared, nodes_rt, None, |n| !node_ready(n)) {
            make_ready(shared, &node);
        }
    }
    namespaces(shared);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    /// The kind in `rollout/<kind>/<ns>/<name>` conditions.
    fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
        }
    }
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether the stored status already says this generation is rolled out to `desired`.
fn rolled_out(object: &Value, kind: Kind, generation: i64, desired: i64) -> bool {
    if int(object, "/status/observedGeneration") != generation {
        return false;
    }
    match kind {
        Kind::DaemonSet => {
            int(object, "/status/desiredNumberScheduled") == desired
                && int(object, "/status/numberReady") == desired
        }
        _ => {
            int(object, "/status/readyReplicas") == desired
                && int(object, "/status/replicas") == desired
        }
    }
}

/// A short stable hash of a pod template (`pod-template-hash`, controller revisions).
pub(super) fn template_hash(object: &Value) -> String {
    let text = object["spec"]["template"].to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| alphabet[((h >> (i * 6)) % alphabet.len() as u64) as usize] as char)
        .collect()
}

/// What kube-controller-manager writes into a workload's status.
fn workload_status(
    object: &Value,
    kind: Kind,
    generation: i64,
    desired: i64,
    rolled: bool,
) -> Value {
    let ready = if rolled { desired } else { 0 };
    let hash = template_hash(object);
    let name = name_of(object);
    match kind {
        Kind::Deployment => {
            let rs = format!("{name}-{hash}");
            let available = if rolled {
                condition(
                    object,
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    true,
                )
            } else {
                condition(
                    object,
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    true,
                )
            };
            let progressing = if rolled {
                condition(
                    object,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                    true,
                )
            } else {
                condition(
                    object,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs}\" is progressing."),
                    true,
                )
            };
            let mut status = json!({
                "observedGeneration": generation,
                "replicas": desired,
                "updatedReplicas": desired,
                "conditions": [available, progressing],
            });
            if rolled {
                status["readyReplicas"] = json!(ready);
                status["availableReplicas"] = json!(ready);
            } else if desired > 0 {
                status["unavailableReplicas"] = json!(desired);
            }
            status
        }
        Kind::StatefulSet => {
            let revision = format!("{name}-{hash}");
            let mut status = json!({
                "observedGeneration": generation,
                "replicas": desired,
                "currentReplicas": desired,
                "updatedReplicas": desired,
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
                "availableReplicas": ready,
            });
            if rolled {
                status["readyReplicas"] = json!(ready);
            }
            status
        }
        Kind::DaemonSet => {
            let mut status = json!({
                "observedGeneration": generation,
                "currentNumberScheduled": desired,
                "desiredNumberScheduled": desired,
                "numberMisscheduled": 0,
                "numberReady": ready,
                "updatedNumberScheduled": desired,
            });
            if ready > 0 {
                status["numberAvailable"] = json!(ready);
            }
            if desired - ready > 0 {
                status["numberUnavailable"] = json!(desired - ready);
            }
            status
        }
    }
}

fn jobs(shared: &Shared, state: &mut State, schedulable: &dyn Fn(&Value) -> bool) {
    let rt = builtin(shared, "batch", "jobs");
    let pending = |job: &Value| {
        !(condition_true(job, "Complete")
            || condition_true(job, "Failed")
            || job["spec"]["suspend"] == true)
    };
    for job in list_where(shared, rt, None, pending) {
        let (ns, name) = (namespace_of(&job).to_string(), name_of(&job).to_string());
        let key = format!("job/{}", str_at(&job, "/metadata/uid"));
        let can_schedule = schedulable(&job["spec"]["template"]["spec"]);
        let done = can_schedule
            && state.elapsed(
                key.clone(),
                shared
                    .durations
                    .real(Phase::JobRun, &format!("{ns}/{name}")),
            );
        if !can_schedule {
            state.forget(&key);
        }
        if !done {
            shared.write_status(rt, &ns, &name, |o| {
                if o.pointer("/status/startTime").is_none() {
                    o["status"] = json!({
                        "startTime": objects::now_rfc3339(),
                        "active": 1,
                        "ready": 0,
                        "terminating": 0,
                        "uncountedTerminatedPods": {},
                    });
                }
            });
            continue;
        }
        let outcome = if helm::is_helm_job(&job) {
            helm::install(shared, &job)
        } else {
            Ok(())
        };
        state.forget(&key);
        let now = objects::now_rfc3339();
        let stored = shared.write_status(rt, &ns, &name, |o| {
            let start = o.pointer("/status/startTime").cloned().unwrap_or_else(|| json!(now));
            o["status"] = match &outcome {
                Ok(()) => json!({
                    "startTime": start,
                    "completionTime": now,
                    "succeeded": 1,
                    "ready": 0,
                    "terminating": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                    ],
                }),
                Err(why) => {
                    let message = format!("Job has reached the specified backoff limit: {why}");
                    json!({
                        "startTime": start,
                        "failed": 1,
                        "ready": 0,
                        "terminating": 0,
                        "uncountedTerminatedPods": {},
                        "conditions": [
                            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                        ],
                    })
                }
            };
        });
        let outcome_name = if outcome.is_ok() {
            "complete"
        } else {
            "failed"
        };
        shared
            .observer
            .condition(format!("job/{ns}/{name}/{outcome_name}"));
        if let (Some(job), Err(why)) = (stored, &outcome) {
            tracing::info!(namespace = %ns, job = %name, error = %why, "lab Job failed");
            event(
                shared,
                &job,
                "Warning",
                "BackoffLimitExceeded",
                &format!("Job has reached the specified backoff limit: {why}"),
                "job-controller",
            );
        } else {
            tracing::info!(namespace = %ns, job = %name, "lab Job completed");
        }
    }
}

/// Whether a Node's condition `Ready` is `True`.
fn node_ready(node: &Value) -> bool {
    condition_true(node, "Ready")
}

/// The CNI runs: the node's network is ready.
fn make_ready(shared: &Shared, node: &Value) {
    if node_ready(node) {
        return;
    }
    let rt = builtin(shared, "", "nodes");
    let stored = shared.write_status(rt, "", name_of(node), |n| {
        let now = objects::now_rfc3339();
        if let Some(conditions) = n
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            for c in conditions.iter_mut().filter(|c| c["type"] == "Ready") {
                *c = json!({
                    "type": "Ready",
                    "status": "True",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                });
            }
        }
        if let Some(spec) = n.get_mut("spec").and_then(Value::as_object_mut) {
            if let Some(taints) = spec.get_mut("taints").and_then(Value::as_array_mut) {
                taints.retain(|t| t["key"] != "node.kubernetes.io/not-ready");
            }
            if spec
                .get("taints")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                spec.remove("taints");
            }
        }
    });
    if let Some(node) = stored {
        shared
            .observer
            .condition(format!("node/{}/ready", name_of(&node)));
        tracing::info!(node = %name_of(&node), "lab Node is Ready (the CNI runs)");
        event(
            shared,
            &node,
            "Normal",
            "NodeReady",
            &format!("Node {} status is now: NodeReady", name_of(&node)),
            "kubelet",
        );
    }
}

/// Namespaces being deleted: their objects are deleted, then the namespace goes.
fn namespaces(shared: &Shared) {
    let rt = builtin(shared, "", "namespaces");
    let terminating = |ns: &Value| ns.pointer("/metadata/deletionTimestamp").is_some();
    for ns in list_where(shared, rt, None, terminating) {
        let name = name_of(&ns).to_string();
        let mut remaining = 0;
        for resource in shared.registry.all().into_iter().filter(|r| r.namespaced) {
            for object in list(shared, resource, Some(&name)) {
                remaining += 1;
                if object.pointer("/metadata/deletionTimestamp").is_none() {
                    let _ = shared.delete(resource, &name, name_of(&object), &Value::Null, false);
                }
            }
        }
        if remaining == 0 {
            let stored = shared.write_status(rt, "", &name, |n| {
                n["spec"]["finalizers"] = json!([]);
            });
            if stored.is_some() {
                let _ = shared.store.delete(&rt.gvr(), "", &name);
                tracing::info!(namespace = %name, "lab namespace deleted");
            }
        }
    }
}
