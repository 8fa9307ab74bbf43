//! The endpoints and EndpointSlice controllers: every Service with a selector gets an
//! `Endpoints` object of its name and one `discovery.k8s.io/v1` EndpointSlice
//! (`<service>-<5 chars>`, labelled `kubernetes.io/service-name`), listing the pods the selector
//! matches that have an IP: ready ones as ready addresses, the others as not ready (or as ready
//! when the Service publishes not-ready addresses). Ports are the Service's, with the target
//! port resolved against the pods' named container ports.
//!
//! Upstream (kubernetes/kubernetes v1.34): `pkg/controller/endpoint/endpoints_controller.go`
//! (one Endpoints per Service with a selector, not-ready pods under `notReadyAddresses` unless
//! `publishNotReadyAddresses`), `pkg/controller/endpointslice/reconciler.go` and
//! `staging/src/k8s.io/endpointslice/utils.go` (slices named by `GenerateName` `<service>-`,
//! labelled `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`); the 5 random characters are the API server's
//! `staging/src/k8s.io/apiserver/pkg/storage/names/generate.go` (`randomLength = 5`).
//!
//! Incremental: it runs again only when the pods controller changed pods, the number of pods
//! changed, or a Service changed.

use serde_json::{Map, Value, json};

use super::{builtin, list, name_of, namespace_of, str_at};
use crate::kube::server::Shared;
use crate::kube::write::WriteOptions;

const MANAGER: &str = "endpointslice-controller.k8s.io";

#[derive(Default)]
pub(super) struct State {
    last: String,
}

pub(super) fn reconcile(shared: &Shared, state: &mut State, pods_epoch: u64) {
    let services_rt = builtin(shared, "", "services");
    let pods_rt = builtin(shared, "", "pods");
    let services = list(shared, services_rt, None);
    let pod_count = shared.store.scan(&pods_rt.gvr(), None, |pods| pods.count());
    let sig = format!(
        "{pods_epoch}/{pod_count}/{}",
        services
            .iter()
            .map(|s| str_at(s, "/metadata/resourceVersion"))
            .collect::<Vec<_>>()
            .join(",")
    );
    if sig == state.last {
        return;
    }
    state.last = sig;
    for service in &services {
        let Some(selector) = service
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let ns = namespace_of(service);
        let pods = shared.store.list_where(&pods_rt.gvr(), Some(ns), |p| {
            p.pointer("/status/podIP").is_some_and(|ip| ip.is_string())
                && selector
                    .iter()
                    .all(|(k, v)| p.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
        });
        write(shared, service, &pods);
    }
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The target port of a Service port on `pod`: a number, or a named container port.
fn target_port(port: &Value, pod: Option<&Value>) -> Value {
    match &port["targetPort"] {
        Value::Number(n) => json!(n),
        Value::String(name) => pod
            .and_then(|p| p.pointer("/spec/containers"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["ports"].as_array())
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .map(|p| p["containerPort"].clone())
            .unwrap_or_else(|| port["port"].clone()),
        _ => port["port"].clone(),
    }
}

fn write(shared: &Shared, service: &Value, pods: &[Value]) {
    let ns = namespace_of(service);
    let name = name_of(service);
    let publish_not_ready = service.pointer("/spec/publishNotReadyAddresses") == Some(&json!(true));
    let ports: Vec<Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let endpoint_ports = |pod: Option<&Value>| -> Vec<Value> {
        ports
            .iter()
            .map(|p| {
                let mut out = json!({
                    "port": target_port(p, pod),
                    "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP")),
                });
                if let Some(port_name) = p
                    .get("name")
                    .filter(|n| n.as_str().is_some_and(|n| !n.is_empty()))
                {
                    out["name"] = port_name.clone();
                }
                out
            })
            .collect()
    };
    let target = |pod: &Value| {
        json!({"kind": "Pod", "name": name_of(pod), "namespace": ns,
            "uid": str_at(pod, "/metadata/uid")})
    };
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut endpoints = Vec::new();
    for pod in pods {
        let ip = str_at(pod, "/status/podIP");
        let is_ready = pod_ready(pod) || publish_not_ready;
        let mut address = json!({"ip": ip, "targetRef": target(pod)});
        let node = str_at(pod, "/spec/nodeName");
        if !node.is_empty() {
            address["nodeName"] = json!(node);
        }
        if is_ready {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
        let mut endpoint = json!({
            "addresses": [ip],
            "conditions": {"ready": is_ready, "serving": is_ready, "terminating": false},
            "targetRef": target(pod),
        });
        if !node.is_empty() {
            endpoint["nodeName"] = json!(node);
        }
        endpoints.push(endpoint);
    }
    let mut labels = service
        .pointer("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    // Endpoints.
    let mut subset = Map::new();
    if !ready.is_empty() {
        subset.insert("addresses".into(), json!(ready));
    }
    if !not_ready.is_empty() {
        subset.insert("notReadyAddresses".into(), json!(not_ready));
    }
    let subsets = if subset.is_empty() {
        json!([])
    } else {
        subset.insert("ports".into(), json!(endpoint_ports(pods.first())));
        json!([subset])
    };
    let endpoints_rt = builtin(shared, "", "endpoints");
    let by = WriteOptions::by(MANAGER);
    if shared.store.get(&endpoints_rt.gvr(), ns, name).is_none() {
        let mut object = json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
        });
        if !subsets.as_array().is_some_and(Vec::is_empty) {
            object["subsets"] = subsets.clone();
        }
        let _ = shared.create(endpoints_rt, ns, object, &by);
    } else {
        shared.write_status(endpoints_rt, ns, name, |o| {
            if subsets.as_array().is_some_and(Vec::is_empty) {
                if let Some(map) = o.as_object_mut() {
                    map.remove("subsets");
                }
            } else {
                o["subsets"] = subsets.clone();
            }
        });
    }
    // The EndpointSlice.
    labels["kubernetes.io/service-name"] = json!(name);
    labels["endpointslice.kubernetes.io/managed-by"] = json!(MANAGER);
    let slices_rt = builtin_slices(shared);
    let uid = str_at(service, "/metadata/uid");
    let existing = shared.store.list_where(&slices_rt.gvr(), Some(ns), |s| {
        s.pointer("/metadata/labels/kubernetes.io~1service-name") == Some(&json!(name))
    });
    let ports = endpoint_ports(pods.first());
    match existing.first() {
        Some(slice) => {
            shared.write_status(slices_rt, ns, name_of(slice), |s| {
                s["endpoints"] = json!(endpoints);
                s["ports"] = json!(ports);
            });
        }
        None => {
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-{}", crate::kube::objects::random_suffix()),
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                        "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            });
            let _ = shared.create(slices_rt, ns, slice, &by);
        }
    }
}

fn builtin_slices(shared: &Shared) -> &'static crate::kube::discovery::ResourceType {
    match shared
        .registry
        .find("discovery.k8s.io", "v1", "endpointslices")
    {
        Some(r) => r,
        None => unreachable!("endpointslices are registered"),
    }
}
