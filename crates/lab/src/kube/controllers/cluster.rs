//! Cluster-scoped objects the installed platform implies:
//!
//! * **APIServices** (`apiregistration.k8s.io/v1`): kube-apiserver registers a local
//!   APIService for every group/version it serves, built-in or from a CRD (`v1.`, `v1.apps`,
//!   `v1alpha1.argoproj.io`, …; `Available` with reason `Local`). Once the metrics-server
//!   Application is Healthy, its `v1beta1.metrics.k8s.io`, pointing at the chart's Service
//!   (`metrics-server` in the Application's namespace, port 443): the lab serves no metrics API
//!   behind it, so it reports `Available=False` (`FailedDiscoveryCheck`), as a real cluster does
//!   when the aggregated server does not answer.
//! * **CSIDriver** `io.openebs.csi-mayastor`, once the openebs Application is Healthy (the
//!   Mayastor chart's `CSIDriver` with the API server's defaults).
//!
//! Incremental: only when the served group/versions or those Applications' health change.

use serde_json::json;

use super::storage::{MAYASTOR_PROVISIONER, healthy_app};
use super::str_at;
use crate::kube::server::Shared;
use crate::kube::write::WriteOptions;

#[derive(Default)]
pub(super) struct State {
    last: String,
}

fn find(
    shared: &Shared,
    group: &str,
    resource: &str,
) -> &'static crate::kube::discovery::ResourceType {
    match shared.registry.find(group, "v1", resource) {
        Some(r) => r,
        None => unreachable!("{resource}.{group} is registered"),
    }
}

pub(super) fn reconcile(shared: &Shared, state: &mut State) {
    let mut group_versions: Vec<(&'static str, &'static str)> = shared
        .registry
        .all()
        .iter()
        .map(|r| (r.group, r.version))
        .collect();
    group_versions.sort();
    group_versions.dedup();
    let metrics = healthy_app(shared, "metrics-server");
    let openebs = healthy_app(shared, "openebs").is_some();
    let sig = format!("{group_versions:?}/{}/{openebs}", metrics.is_some());
    if sig == state.last {
        return;
    }
    state.last = sig;
    let apiservices = find(shared, "apiregistration.k8s.io", "apiservices");
    let by = WriteOptions::by("kube-apiserver");
    let now = crate::kube::objects::now_rfc3339();
    for (group, version) in group_versions {
        let name = format!("{version}.{group}");
        if shared.store.get(&apiservices.gvr(), "", &name).is_some() {
            continue;
        }
        let custom = shared
            .registry
            .all()
            .iter()
            .any(|r| r.group == group && r.version == version && r.custom);
        let mut labels = json!({"kube-aggregator.kubernetes.io/automanaged": "onstart"});
        if custom {
            labels["kube-aggregator.kubernetes.io/automanaged"] = json!("true");
        }
        // Stored as the API server stores its own: the core group's name, `v1.`, is one no
        // client could create.
        let object = json!({
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name, "labels": labels},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": if custom { 1000 } else { 18000 }, "versionPriority": 15},
            "status": {"conditions": [{"type": "Available", "status": "True",
                "reason": "Local", "message": "Local APIServices are always available",
                "lastTransitionTime": now}]},
        });
        shared.store.upsert(&apiservices.gvr(), "", object);
    }
    if let Some(app) = metrics {
        let name = "v1beta1.metrics.k8s.io";
        let namespace = match str_at(&app, "/spec/destination/namespace") {
            "" => "kube-system",
            ns => ns,
        };
        if shared.store.get(&apiservices.gvr(), "", name).is_none() {
            // The chart's apiservice.yaml (kubernetes-sigs/metrics-server charts/metrics-server).
            let object = json!({
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "metrics-server",
                    "app.kubernetes.io/instance": "metrics-server"}},
                "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                    "service": {"name": "metrics-server", "namespace": namespace, "port": 443},
                    "groupPriorityMinimum": 100, "versionPriority": 100,
                    "insecureSkipTLSVerify": true},
            });
            if shared.create(apiservices, "", object, &by).is_ok() {
                shared.write_status(apiservices, "", name, |o| {
                    o["status"] = json!({"conditions": [{"type": "Available", "status": "False",
                        "reason": "FailedDiscoveryCheck",
                        "message": "failing or missing response from the metrics API: the cto lab simulates no metrics-server",
                        "lastTransitionTime": now}]});
                });
            }
        }
    }
    if openebs {
        let drivers = find(shared, "storage.k8s.io", "csidrivers");
        if shared
            .store
            .get(&drivers.gvr(), "", MAYASTOR_PROVISIONER)
            .is_none()
        {
            // The chart's CSIDriver, with what the API server defaults
            // (pkg/apis/storage/v1/defaults.go).
            let object = json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSIDriver",
                "metadata": {"name": MAYASTOR_PROVISIONER},
                "spec": {
                    "attachRequired": true,
                    "podInfoOnMount": false,
                    "volumeLifecycleModes": ["Persistent"],
                    "fsGroupPolicy": "ReadWriteOnceWithFSType",
                    "requiresRepublish": false,
                    "storageCapacity": false,
                    "seLinuxMount": false,
                },
            });
            let _ = shared.create(drivers, "", object, &WriteOptions::by("helm"));
        }
    }
}
