//! The objects the lab's API server holds and how it presents them: `Node`s as a Talos kubelet
//! registers them, the namespaces every cluster starts with, and the server-side `Table`s that
//! `kubectl get` prints (the columns of the real API server's printers).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::NodeInfo;
use super::discovery::{Printer, ResourceType};

/// The container runtime a Talos v1.11 node reports.
pub(crate) const CONTAINER_RUNTIME: &str = "containerd://2.1.5";
/// The kernel a Talos v1.11 node reports.
pub(crate) const KERNEL_VERSION: &str = "6.12.57-talos";
/// The kubelet's message while no CNI is installed (containerd 2, Kubernetes 1.34).
pub(crate) const NETWORK_NOT_READY: &str = "container runtime network not ready: \
    NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni \
    plugin not initialized";

/// Namespaces the API server creates at start-up.
pub(crate) const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-node-lease", "kube-public", "kube-system"];

/// Now, as Kubernetes writes timestamps (`2025-01-02T03:04:05Z`).
pub(crate) fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// A `Namespace` in phase `Active`.
pub(crate) fn namespace(name: &str) -> Value {
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// The `Node` a kubelet on a Talos machine registers and keeps updating. `existing` is the
/// stored node, whose identity (machine ID, boot ID) and condition timestamps are kept while
/// nothing changes, so that upserting the same [`NodeInfo`] twice is a no-op.
pub(crate) fn node(info: &NodeInfo, existing: Option<&Value>) -> Value {
    let now = now_rfc3339();
    let mut labels = BTreeMap::from([
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("kubernetes.io/hostname".to_string(), info.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
    ]);
    if info.control_plane {
        labels.insert(
            "node-role.kubernetes.io/control-plane".to_string(),
            String::new(),
        );
    }
    labels.extend(info.labels.clone());

    let mut taints = Vec::new();
    if info.control_plane {
        taints
            .push(json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}));
    }
    if !info.ready {
        taints.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
    }
    let mut spec = json!({});
    if !taints.is_empty() {
        spec["taints"] = Value::Array(taints);
    }

    let old_condition = |kind: &str| -> Option<Value> {
        existing?
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| -> Value {
        let fresh = json!({
            "type": kind,
            "status": status,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        });
        match old_condition(kind) {
            Some(old)
                if old["status"] == status
                    && old["reason"] == reason
                    && old["message"] == message =>
            {
                old
            }
            Some(old) if old["status"] == status => {
                let mut kept = fresh;
                kept["lastTransitionTime"] = old["lastTransitionTime"].clone();
                kept
            }
            _ => fresh,
        }
    };
    let ready = if info.ready {
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        )
    } else {
        condition("Ready", "False", "KubeletNotReady", NETWORK_NOT_READY)
    };
    let conditions = vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        ready,
    ];

    let kept_id = |field: &str| -> String {
        existing
            .and_then(|n| n.pointer(&format!("/status/nodeInfo/{field}")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| super::store::new_uid().replace('-', ""))
    };
    let machine_id = kept_id("machineID");
    let system_uuid = existing
        .and_then(|n| n.pointer("/status/nodeInfo/systemUUID"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(super::store::new_uid);
    let boot_id = existing
        .and_then(|n| n.pointer("/status/nodeInfo/bootID"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(super::store::new_uid);

    // A modest bare-metal machine; the lab does not model hardware yet.
    let capacity = json!({
        "cpu": "8",
        "ephemeral-storage": "229585328Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "32734008Ki",
        "pods": "110",
    });
    let allocatable = json!({
        "cpu": "7950m",
        "ephemeral-storage": "211316001203",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": "32337720Ki",
        "pods": "110",
    });

    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": info.name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": info.internal_ip.to_string()},
                {"type": "Hostname", "address": info.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": system_uuid,
                "bootID": boot_id,
                "kernelVersion": KERNEL_VERSION,
                "osImage": info.os_image,
                "containerRuntimeVersion": CONTAINER_RUNTIME,
                "kubeletVersion": info.kubelet_version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    })
}

/// Where kubelets keep their heartbeat leases.
pub(crate) const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The heartbeat `Lease` of a registered `node` (owned by it, as the kubelet creates it).
pub(crate) fn node_lease(node: &Value) -> Value {
    let name = node.pointer("/metadata/name").cloned().unwrap_or_default();
    let renew = OffsetDateTime::now_utc()
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap_or_default();
    json!({
        "kind": "Lease",
        "apiVersion": "coordination.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Node",
                "name": name,
                "uid": node.pointer("/metadata/uid").cloned().unwrap_or_default(),
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": 40,
            "renewTime": renew,
        },
    })
}

/// Removes `kind`/`apiVersion` (built-in typed lists carry none on their items).
pub(crate) fn untyped(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("kind");
        map.remove("apiVersion");
    }
    object
}

/// What a `Table` row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Result<IncludeObject, String> {
        match value {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            )),
        }
    }
}

fn column(name: &str, kind: &str, format: &str, description: &str, priority: u32) -> Value {
    json!({
        "name": name,
        "type": kind,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating \
    resources, although some resources may allow a client to request the generation of an \
    appropriate name automatically. Name is primarily intended for creation idempotence and \
    configuration definition. Cannot be updated. More info: \
    https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when \
    this object was created. It is not guaranteed to be set in happens-before order across \
    separate operations. Clients may not set this value. It is represented in RFC3339 form and \
    is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns(printer: Printer) -> Vec<Value> {
    match printer {
        Printer::Nodes => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column("Status", "string", "", "The status of the node", 0),
            column("Roles", "string", "", "The roles of the node", 0),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "Version",
                "string",
                "",
                "Kubelet Version reported by the node.",
                0,
            ),
            column(
                "Internal-IP",
                "string",
                "",
                "List of addresses reachable to the node.",
                1,
            ),
            column(
                "External-IP",
                "string",
                "",
                "List of addresses reachable to the node.",
                1,
            ),
            column(
                "OS-Image",
                "string",
                "",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            column(
                "Kernel-Version",
                "string",
                "",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            column(
                "Container-Runtime",
                "string",
                "",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        Printer::Namespaces => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column("Status", "string", "", "The status of the namespace", 0),
            column("Age", "string", "", CREATED_DOC, 0),
        ],
        Printer::Leases => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Holder",
                "string",
                "",
                "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
        ],
        Printer::Default => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column("Created At", "date", "", CREATED_DOC, 0),
        ],
    }
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn age(object: &Value) -> String {
    match str_at(object, "/metadata/creationTimestamp")
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    {
        Some(created) => human_duration((OffsetDateTime::now_utc() - created).whole_seconds()),
        None => "<unknown>".into(),
    }
}

fn node_cells(node: &Value) -> Vec<Value> {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str());
    let mut status = match ready {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_string())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| -> String {
        node.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|x| x["type"] == kind))
            .and_then(|x| x["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |field: &str| -> String {
        str_at(node, &format!("/status/nodeInfo/{field}"))
            .filter(|s| !s.is_empty())
            .unwrap_or("<unknown>")
            .to_string()
    };
    vec![
        json!(str_at(node, "/metadata/name").unwrap_or_default()),
        json!(status),
        json!(roles),
        json!(age(node)),
        json!(info("kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn cells(printer: Printer, object: &Value) -> Vec<Value> {
    let name = json!(str_at(object, "/metadata/name").unwrap_or_default());
    match printer {
        Printer::Nodes => node_cells(object),
        Printer::Namespaces => vec![
            name,
            json!(str_at(object, "/status/phase").unwrap_or_default()),
            json!(age(object)),
        ],
        Printer::Leases => vec![
            name,
            json!(str_at(object, "/spec/holderIdentity").unwrap_or_default()),
            json!(age(object)),
        ],
        Printer::Default => vec![
            name,
            json!(str_at(object, "/metadata/creationTimestamp").unwrap_or_default()),
        ],
    }
}

/// One table row.
fn row(resource: &ResourceType, object: &Value, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(resource.printer, object)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        IncludeObject::Object => {
            let mut full = object.clone();
            full["kind"] = json!(resource.kind);
            full["apiVersion"] = json!(resource.api_version());
            row["object"] = full;
        }
    }
    row
}

/// A `meta.k8s.io/v1` `Table` of `objects`. `list_metadata` is the list's metadata
/// (resourceVersion, continue); `headers` false leaves out the column definitions (later events
/// of a watch).
pub(crate) fn table(
    resource: &ResourceType,
    objects: &[Value],
    list_metadata: Map<String, Value>,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(resource, o, include)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": if headers { Value::Array(columns(resource.printer)) } else { Value::Null },
        "rows": rows,
    })
}

/// Go's `duration.HumanDuration`, as `kubectl get` shows ages.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ready: bool) -> NodeInfo {
        NodeInfo {
            name: "cp-1".into(),
            internal_ip: "127.0.240.1".parse().unwrap(),
            control_plane: true,
            ready,
            labels: BTreeMap::new(),
            kubelet_version: "v1.34.1".into(),
            os_image: "Talos (v1.11.5)".into(),
        }
    }

    #[test]
    fn a_node_looks_like_a_talos_kubelet_registered_it() {
        let n = node(&info(false), None);
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "cp-1");
        assert_eq!(
            n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
            ""
        );
        let ready = &n["status"]["conditions"][3];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "KubeletNotReady");
        assert_eq!(n["spec"]["taints"].as_array().unwrap().len(), 2);
        // Upserting the same information again changes nothing.
        assert_eq!(node(&info(false), Some(&n)), n);
        let flipped = node(&info(true), Some(&n));
        assert_eq!(flipped["status"]["conditions"][3]["status"], "True");
        assert_eq!(flipped["spec"]["taints"].as_array().unwrap().len(), 1);
        assert_eq!(
            flipped["status"]["nodeInfo"]["machineID"],
            n["status"]["nodeInfo"]["machineID"]
        );
    }

    #[test]
    fn node_table_has_the_real_columns() {
        let mut n = node(&info(true), None);
        n["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        let resource = super::super::discovery::find("", "v1", "nodes").unwrap();
        let t = table(resource, &[n], Map::new(), IncludeObject::Metadata, true);
        let names: Vec<_> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "Internal-IP",
                "External-IP",
                "OS-Image",
                "Kernel-Version",
                "Container-Runtime"
            ]
        );
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "Ready");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[6], "<none>");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(30 * 86400), "30d");
    }
}
