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

/// The RBAC objects every API server creates at start-up (kubernetes/kubernetes
/// `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`, `ClusterRoles` and
/// `ClusterRoleBindings`): the user-facing roles and the bindings that the lab's authorizer
/// enforces (`server::authorize_*`). `admin`, `edit` and `view` are aggregated from the
/// `system:aggregate-to-*` roles, which the lab does not list: their rules stay empty here.
pub(crate) fn default_rbac() -> Vec<(&'static str, Value)> {
    let meta = |name: &str| {
        json!({
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        })
    };
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": meta(name), "rules": rules})
    };
    let aggregated = |name: &str, to: &str| {
        let mut r = role(name, json!([]));
        r["aggregationRule"] = json!({"clusterRoleSelectors": [{"matchLabels": {
            format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]});
        r["metadata"]["labels"][format!(
            "rbac.authorization.k8s.io/aggregate-to-{}",
            match to {
                "view" => "edit",
                "edit" => "admin",
                _ => "none",
            }
        )] = json!("true");
        if to == "admin" {
            r["metadata"]["labels"]
                .as_object_mut()
                .map(|l| l.remove("rbac.authorization.k8s.io/aggregate-to-none"));
        }
        r
    };
    let binding = |name: &str, subjects: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects})
    };
    let group = |name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name});
    vec![
        (
            "clusterroles",
            role(
                "cluster-admin",
                json!([
                    {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]},
                ]),
            ),
        ),
        ("clusterroles", aggregated("admin", "admin")),
        ("clusterroles", aggregated("edit", "edit")),
        ("clusterroles", aggregated("view", "view")),
        (
            "clusterroles",
            role(
                "system:discovery",
                json!([{"nonResourceURLs": [
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
            "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:basic-user",
                json!([
                    {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                    {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                ]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:public-info-viewer",
                json!([{"nonResourceURLs": [
            "/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterrolebindings",
            binding("cluster-admin", json!([group("system:masters")])),
        ),
        (
            "clusterrolebindings",
            binding("system:discovery", json!([group("system:authenticated")])),
        ),
        (
            "clusterrolebindings",
            binding("system:basic-user", json!([group("system:authenticated")])),
        ),
        (
            "clusterrolebindings",
            binding(
                "system:public-info-viewer",
                json!([
                    group("system:authenticated"),
                    group("system:unauthenticated")
                ]),
            ),
        ),
    ]
}

/// Five characters as the API server's `generateName` adds them (`bcdfghjklmnpqrstvwxz2456789`).
pub(crate) fn random_suffix() -> String {
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| alphabet[rand::random::<u32>() as usize % alphabet.len()] as char)
        .collect()
}

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
                // Required by the schema and always sent; empty since kube-proxy stopped
                // reporting it (Talos with Cilium runs none at all).
                "kubeProxyVersion": "",
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
        Printer::Pods => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Ready",
                "string",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            column(
                "Status",
                "string",
                "",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            column(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "IP",
                "string",
                "",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            column(
                "Node",
                "string",
                "",
                "NodeName is a request to schedule this pod onto a specific node.",
                1,
            ),
        ],
        Printer::Deployments => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Ready",
                "string",
                "",
                "Number of the pod with ready state",
                0,
            ),
            column(
                "Up-to-date",
                "string",
                "",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            column(
                "Available",
                "string",
                "",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "Containers",
                "string",
                "",
                "Names of each container in the template.",
                1,
            ),
            column(
                "Images",
                "string",
                "",
                "Images referenced by each container in the template.",
                1,
            ),
            column(
                "Selector",
                "string",
                "",
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
                1,
            ),
        ],
        Printer::DaemonSets => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Desired",
                "integer",
                "",
                "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod).",
                0,
            ),
            column(
                "Current",
                "integer",
                "",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
                0,
            ),
            column(
                "Ready",
                "integer",
                "",
                "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
                0,
            ),
            column(
                "Up-to-date",
                "integer",
                "",
                "The total number of nodes that are running updated daemon pod",
                0,
            ),
            column(
                "Available",
                "integer",
                "",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
                0,
            ),
            column(
                "Node Selector",
                "string",
                "",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "Containers",
                "string",
                "",
                "Names of each container in the template.",
                1,
            ),
            column(
                "Images",
                "string",
                "",
                "Images referenced by each container in the template.",
                1,
            ),
            column(
                "Selector",
                "string",
                "",
                "A label query over pods that are managed by the daemon set.",
                1,
            ),
        ],
        Printer::StatefulSets => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Ready",
                "string",
                "",
                "Number of the pod with ready state",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "Containers",
                "string",
                "",
                "Names of each container in the template.",
                1,
            ),
            column(
                "Images",
                "string",
                "",
                "Images referenced by each container in the template.",
                1,
            ),
        ],
        Printer::Jobs => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column("Status", "string", "", "Status of the job.", 0),
            column(
                "Completions",
                "string",
                "",
                "The completion status of the job.",
                0,
            ),
            column(
                "Duration",
                "string",
                "",
                "Time required to complete the job.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "Containers",
                "string",
                "",
                "Names of each container in the template.",
                1,
            ),
            column(
                "Images",
                "string",
                "",
                "Images referenced by each container in the template.",
                1,
            ),
            column(
                "Selector",
                "string",
                "",
                "A label query over pods that should match the pod count.",
                1,
            ),
        ],
        Printer::StorageClasses => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Provisioner",
                "string",
                "",
                "Indicates the type of the provisioner.",
                0,
            ),
            column(
                "ReclaimPolicy",
                "string",
                "",
                "Dynamically provisioned PersistentVolumes of this storage class are created with this reclaimPolicy. Defaults to Delete.",
                0,
            ),
            column(
                "VolumeBindingMode",
                "string",
                "",
                "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
                0,
            ),
            column(
                "AllowVolumeExpansion",
                "string",
                "",
                "AllowVolumeExpansion shows whether the storage class allow volume expand",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
        ],
        Printer::ConfigMaps => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Data",
                "integer",
                "",
                "Data contains the configuration data.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
        ],
        Printer::Secrets => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Type",
                "string",
                "",
                "Used to facilitate programmatic handling of secret data.",
                0,
            ),
            column("Data", "integer", "", "Data contains the secret data.", 0),
            column("Age", "string", "", CREATED_DOC, 0),
        ],
        Printer::ServiceAccounts => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Secrets",
                "string",
                "",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
        ],
        Printer::Services => vec![
            column("Name", "string", "name", NAME_DOC, 0),
            column(
                "Type",
                "string",
                "",
                "type determines how the Service is exposed.",
                0,
            ),
            column(
                "Cluster-IP",
                "string",
                "",
                "clusterIP is the IP address of the service.",
                0,
            ),
            column(
                "External-IP",
                "string",
                "",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
                0,
            ),
            column(
                "Port(s)",
                "string",
                "",
                "The list of ports that are exposed by this service.",
                0,
            ),
            column("Age", "string", "", CREATED_DOC, 0),
            column(
                "Selector",
                "string",
                "",
                "Route service traffic to pods with label keys and values matching this selector.",
                1,
            ),
        ],
        Printer::Custom(custom) => {
            let mut all = vec![column("Name", "string", "name", NAME_DOC, 0)];
            all.extend(
                custom
                    .iter()
                    .map(|c| column(c.name, c.kind, c.format, c.description, c.priority)),
            );
            all
        }
    }
}

/// A simple JSONPath (`.status.sync.status`, `.spec.items[0].name`) evaluated on `object`.
fn json_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = object;
    for part in path
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('.')
        .split('.')
    {
        if part.is_empty() {
            continue;
        }
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        if let Some(i) = index {
            current = current.get(i)?;
        }
    }
    Some(current)
}

fn containers(object: &Value) -> (String, String) {
    let list = object
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = list.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = list.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return "<none>".into();
    };
    let map = selector.get("matchLabels").unwrap_or(selector);
    let parts: Vec<String> = map
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_string())
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn int_at(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn job_status(job: &Value) -> &'static str {
    let has = |kind: &str| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == kind && c["status"] == "True")
            })
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if job.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has("Suspended") {
        "Suspended"
    } else {
        "Running"
    }
}

fn job_duration(job: &Value) -> String {
    let time = |p: &str| str_at(job, p).and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    match (time("/status/startTime"), time("/status/completionTime")) {
        (Some(start), Some(end)) => human_duration((end - start).whole_seconds()),
        (Some(start), None) => human_duration((OffsetDateTime::now_utc() - start).whole_seconds()),
        _ => String::new(),
    }
}

fn custom_cells(columns: &[super::discovery::CustomColumn], object: &Value) -> Vec<Value> {
    columns
        .iter()
        .map(|c| match json_path(object, c.json_path) {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(t)) if c.kind == "date" => {
                match OffsetDateTime::parse(t, &Rfc3339) {
                    Ok(at) => json!(human_duration(
                        (OffsetDateTime::now_utc() - at).whole_seconds()
                    )),
                    Err(_) => json!(t),
                }
            }
            Some(v @ (Value::Array(_) | Value::Object(_))) => json!(v.to_string()),
            Some(v) => v.clone(),
        })
        .collect()
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
        Printer::Pods => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            // kubectl's printer: a waiting or terminated container's reason, else the phase.
            let phase = str_at(object, "/status/phase").unwrap_or_default();
            let reason = statuses
                .iter()
                .find_map(|c| {
                    c.pointer("/state/waiting/reason")
                        .or_else(|| c.pointer("/state/terminated/reason"))
                        .and_then(Value::as_str)
                })
                .unwrap_or(phase);
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(reason),
                json!(restarts),
                json!(age(object)),
                json!(str_at(object, "/status/podIP").unwrap_or("<none>")),
                json!(str_at(object, "/spec/nodeName").unwrap_or("<none>")),
            ]
        }
        Printer::Deployments => {
            let (names, images) = containers(object);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int_at(object, "/status/readyReplicas"),
                    int_at(object, "/spec/replicas")
                )),
                json!(int_at(object, "/status/updatedReplicas")),
                json!(int_at(object, "/status/availableReplicas")),
                json!(age(object)),
                json!(names),
                json!(images),
                json!(selector_text(object.pointer("/spec/selector"))),
            ]
        }
        Printer::DaemonSets => {
            let (names, images) = containers(object);
            vec![
                name,
                json!(int_at(object, "/status/desiredNumberScheduled")),
                json!(int_at(object, "/status/currentNumberScheduled")),
                json!(int_at(object, "/status/numberReady")),
                json!(int_at(object, "/status/updatedNumberScheduled")),
                json!(int_at(object, "/status/numberAvailable")),
                json!(selector_text(
                    object.pointer("/spec/template/spec/nodeSelector")
                )),
                json!(age(object)),
                json!(names),
                json!(images),
                json!(selector_text(object.pointer("/spec/selector"))),
            ]
        }
        Printer::StatefulSets => {
            let (names, images) = containers(object);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int_at(object, "/status/readyReplicas"),
                    int_at(object, "/spec/replicas")
                )),
                json!(age(object)),
                json!(names),
                json!(images),
            ]
        }
        Printer::Jobs => {
            let (names, images) = containers(object);
            vec![
                name,
                json!(job_status(object)),
                json!(format!(
                    "{}/{}",
                    int_at(object, "/status/succeeded"),
                    object
                        .pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
                json!(job_duration(object)),
                json!(age(object)),
                json!(names),
                json!(images),
                json!(selector_text(object.pointer("/spec/selector"))),
            ]
        }
        Printer::StorageClasses => {
            let default = object
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true");
            let display = format!(
                "{}{}",
                str_at(object, "/metadata/name").unwrap_or_default(),
                if default { " (default)" } else { "" }
            );
            vec![
                json!(display),
                json!(str_at(object, "/provisioner").unwrap_or_default()),
                json!(str_at(object, "/reclaimPolicy").unwrap_or("Delete")),
                json!(str_at(object, "/volumeBindingMode").unwrap_or("Immediate")),
                json!(object.pointer("/allowVolumeExpansion") == Some(&Value::Bool(true))),
                json!(age(object)),
            ]
        }
        Printer::ConfigMaps => {
            let count = |p: &str| {
                object
                    .pointer(p)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            vec![
                name,
                json!(count("/data") + count("/binaryData")),
                json!(age(object)),
            ]
        }
        Printer::Secrets => vec![
            name,
            json!(str_at(object, "/type").unwrap_or("Opaque")),
            json!(
                object
                    .pointer("/data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            ),
            json!(age(object)),
        ],
        Printer::ServiceAccounts => vec![
            name,
            json!(
                object
                    .pointer("/secrets")
                    .and_then(Value::as_array)
                    .map_or(0, |a| a.len())
                    .to_string()
            ),
            json!(age(object)),
        ],
        Printer::Services => {
            let ports: Vec<String> = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            vec![
                name,
                json!(str_at(object, "/spec/type").unwrap_or("ClusterIP")),
                json!(str_at(object, "/spec/clusterIP").unwrap_or("<none>")),
                json!("<none>"),
                json!(if ports.is_empty() {
                    "<none>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(age(object)),
                json!(selector_text(object.pointer("/spec/selector"))),
            ]
        }
        Printer::Custom(columns) => {
            let mut all = vec![name];
            all.extend(custom_cells(columns, object));
            all
        }
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
        let registry = super::super::discovery::Registry::default();
        let resource = registry.find("", "v1", "nodes").unwrap();
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
