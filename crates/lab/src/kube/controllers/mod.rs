//! The simulated controllers of a lab cluster: what kube-controller-manager, the kubelets, the
//! CNI, Helm and Argo CD would do to the objects clients write, on the lab's scaled clock.
//!
//! * **Workloads** (`workloads`): Deployments, StatefulSets and DaemonSets roll out
//!   `timeline.workload_rollout` after their pods can schedule; Jobs complete (or, for a Helm
//!   Job whose chart cannot be installed, fail) `timeline.job_run` after theirs can. A pod
//!   can schedule once a Node exists and, unless it uses the host network, once a Node is
//!   Ready (before a CNI, real pods stay Pending).
//! * **The CNI**: once the `kube-system/cilium` DaemonSet has ready pods, every Node turns
//!   Ready (condition `Ready=True`, the `node.kubernetes.io/not-ready` taint removed).
//! * **Pods** (`pods`): a Deployment's ReplicaSet and pods, a DaemonSet's pod per matching
//!   node, a StatefulSet's ordinal pods, a Job's pod, following the rollouts above.
//! * **Endpoints** (`endpoints`): Services with a selector get their Endpoints and
//!   EndpointSlice from the pods they select.
//! * **APIServices and CSIDrivers** (`cluster`): a local APIService per served group/version,
//!   metrics-server's once it is installed, Mayastor's CSIDriver once openebs is.
//! * **Namespaces** being deleted lose their content, then disappear.
//! * **Helm** (`helm`): a Job labelled `cto.dev/helm-release` installs its chart when it runs.
//! * **Argo CD** (`argocd`): once the argo-cd chart's workloads are ready, Applications sync.
//! * **Storage** (`storage`): once the openebs Application is Healthy, the DiskPool CRD and
//!   operator (Mayastor); PersistentVolumeClaims of Mayastor and local-path classes are bound.
//! * **Vault** (`vault`): once the vault Application is Healthy, its Service and Pods, and the
//!   Vault API (init, unseal, seal status, health) behind the API server's service and pod
//!   proxy.
//!
//! The controllers run in one task, every [`crate::durations::Durations::tick`] (half a modelled
//! second, within 2–25 ms of real time), and write through the same code paths as
//! clients ([`Shared`]'s write verbs), so they obey the API's rules. Their timers live in
//! memory; what they concluded lives in the objects' status, so a restarted lab picks up where
//! it was (a rolled-out Deployment stays rolled out).

mod appproject;
mod argocd;
mod cluster;
mod endpoints;
mod helm;
pub(super) mod pods;
mod storage;
pub(super) mod vault;
mod workloads;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::discovery::ResourceType;
use super::objects;
use super::server::Shared;
use super::store::Gvr;

/// What the controllers remember between ticks.
#[derive(Default)]
pub(super) struct State {
    /// When something (keyed by what it waits for) started waiting.
    timers: HashMap<String, Instant>,
    argocd: argocd::State,
    pods: pods::State,
    endpoints: endpoints::State,
    cluster: cluster::State,
}

impl State {
    /// Whether `delay` has passed since `key` first asked.
    fn elapsed(&mut self, key: String, delay: Duration) -> bool {
        let since = *self.timers.entry(key).or_insert_with(Instant::now);
        since.elapsed() >= delay
    }

    fn forget(&mut self, key: &str) {
        self.timers.remove(key);
    }
}

/// Runs the controllers until the API server stops.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let mut state = State::default();
    let tick = shared.durations.tick();
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = tokio::time::sleep(tick) => {}
        }
        workloads::reconcile(&shared, &mut state);
        pods::reconcile(&shared, &mut state.pods);
        endpoints::reconcile(&shared, &mut state.endpoints, state.pods.epoch);
        argocd::reconcile(&shared, &mut state);
        storage::reconcile(&shared, &mut state);
        vault::reconcile(&shared, &mut state);
        cluster::reconcile(&shared, &mut state.cluster);
    }
}

/// A built-in resource type (always registered).
fn builtin(shared: &Shared, group: &str, resource: &str) -> &'static ResourceType {
    let version = "v1";
    match shared.registry.find(group, version, resource) {
        Some(r) => r,
        None => unreachable!("built-in resource {group}/{resource} is registered"),
    }
}

fn list(shared: &Shared, resource: &ResourceType, namespace: Option<&str>) -> Vec<Value> {
    shared.store.list(&resource.gvr(), namespace).0
}

/// The objects that `keep` selects: the controllers run every tick over every object, so they
/// clone only those with something left to do.
fn list_where(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    keep: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    shared.store.list_where(&resource.gvr(), namespace, keep)
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    str_at(object, "/metadata/name")
}

fn namespace_of(object: &Value) -> &str {
    str_at(object, "/metadata/namespace")
}

/// A condition, keeping the previous one's timestamps while its status, reason and message
/// stay the same (so that an unchanged status is a no-op write).
fn condition(
    previous: &Value,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    update_time: bool,
) -> Value {
    let now = objects::now_rfc3339();
    let old = previous
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let mut fresh = json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    });
    if update_time {
        fresh["lastUpdateTime"] = json!(now);
    }
    match old {
        Some(old)
            if old["status"] == status && old["reason"] == reason && old["message"] == message =>
        {
            old.clone()
        }
        Some(old) if old["status"] == status => {
            fresh["lastTransitionTime"] = old["lastTransitionTime"].clone();
            fresh
        }
        _ => fresh,
    }
}

/// Whether the condition `kind` of `object` is `True`.
fn condition_true(object: &Value, kind: &str) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

/// Records a `v1` Event about `object` (what `kubectl describe` and `kubectl get events`
/// show).
fn event(
    shared: &Shared,
    object: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let namespace = match namespace_of(object) {
        "" => "default",
        ns => ns,
    };
    let now = objects::now_rfc3339();
    let name = format!("{}.{:016x}", name_of(object), rand::random::<u64>());
    let event = json!({
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "kind": object["kind"],
            "apiVersion": object["apiVersion"],
            "namespace": namespace_of(object),
            "name": name_of(object),
            "uid": object.pointer("/metadata/uid").cloned().unwrap_or_default(),
            "resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or_default(),
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": kind,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    let events = builtin(shared, "", "events");
    if let Err(error) = shared.create(
        events,
        namespace,
        event,
        &super::write::WriteOptions::by(component),
    ) {
        tracing::debug!(message = %error.message, "could not record an event");
    }
}

/// The group/version/resource of an object's kind, if served.
fn resource_of(shared: &Shared, object: &Value) -> Option<&'static ResourceType> {
    shared
        .registry
        .find_kind(str_at(object, "/apiVersion"), str_at(object, "/kind"))
}

/// Every object of every resource whose labels include `key=value`.
fn labelled(shared: &Shared, key: &str, value: &str) -> Vec<(Gvr, Value)> {
    let mut found = Vec::new();
    for gvr in shared.store.resources() {
        for object in shared.store.list(&gvr, None).0 {
            if object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                == Some(value)
            {
                found.push((gvr.clone(), object));
            }
        }
    }
    found
}
