//! The resource registry and the discovery documents built from it: `/api` (`APIVersions`),
//! `/api/v1` and `/apis/<group>/<version>` (`APIResourceList`), `/apis` (`APIGroupList`,
//! `APIGroup`), and aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`,
//! served on `/api` and `/apis` when the client's `Accept` asks for it).
//!
//! A resource is served if and only if it is in [`RESOURCES`], and discovery advertises the
//! verbs that the lab really implements for it, so that what clients discover is what works.

use std::sync::{Mutex, OnceLock, RwLock};

use serde_json::{Value, json};

use super::store::Gvr;

/// The media type of aggregated discovery (v2), which the response's `Content-Type` repeats
/// so that clients know they got the aggregated form.
pub(crate) const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// How `kubectl get` shows a resource (the API server's table convertor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Printer {
    Nodes,
    Namespaces,
    Leases,
    Deployments,
    DaemonSets,
    StatefulSets,
    Jobs,
    StorageClasses,
    ConfigMaps,
    Secrets,
    ServiceAccounts,
    Services,
    Pods,
    /// A custom resource: Name, then the CRD's `additionalPrinterColumns` (or Age when it
    /// declares none).
    Custom(&'static [CustomColumn]),
    /// Name and Created At, the default for resources without printer columns (and, for now,
    /// for the resources the lab serves empty: pods, events).
    Default,
}

/// One of a CRD's `additionalPrinterColumns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CustomColumn {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: u32,
    /// A simple JSONPath: `.status.sync.status`, `.spec.items[0].name`.
    pub json_path: &'static str,
}

/// A resource type the lab serves.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: the URL segment.
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub namespaced: bool,
    /// The verbs implemented (and advertised).
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Field labels accepted by `fieldSelector` (beyond `metadata.name`/`metadata.namespace`).
    pub field_labels: &'static [&'static str],
    pub printer: Printer,
    /// Whether list items carry `kind`/`apiVersion` (true for custom resources only: built-in
    /// typed lists omit them).
    pub list_items_typed: bool,
    /// Whether `status` is a subresource (`/status`): writes to the main resource keep the
    /// stored status, writes to `/status` change only the status.
    pub status_subresource: bool,
    /// Whether `metadata.generation` is kept (set to 1 on create, incremented when anything
    /// but metadata and status changes).
    pub generation: bool,
    /// A custom resource (defined by a CustomResourceDefinition): updates need a
    /// resourceVersion, deletes return the object.
    pub custom: bool,
}

impl ResourceType {
    pub fn gvr(&self) -> Gvr {
        Gvr::new(self.group, self.version, self.resource)
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `nodes` or `deployments.apps`, as error messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Deployment.apps` or `ConfigMap`, as validation errors name kinds.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Every field label `fieldSelector` accepts.
    pub fn all_field_labels(&self) -> Vec<&'static str> {
        let mut labels = vec!["metadata.name"];
        if self.namespaced {
            labels.push("metadata.namespace");
        }
        labels.extend_from_slice(self.field_labels);
        labels
    }
}

const READ: &[&str] = &["get", "list", "watch"];
/// The verbs of a writable resource.
pub(crate) const WRITE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The defaults every entry of [`RESOURCES`] starts from.
const BASE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    resource: "",
    singular: "",
    kind: "",
    list_kind: "",
    namespaced: true,
    verbs: WRITE,
    short_names: &[],
    categories: &[],
    field_labels: &[],
    printer: Printer::Default,
    list_items_typed: false,
    status_subresource: false,
    generation: false,
    custom: false,
};

/// Every built-in resource the lab serves.
pub(crate) static RESOURCES: &[ResourceType] = &[
    ResourceType {
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        list_kind: "NamespaceList",
        namespaced: false,
        short_names: &["ns"],
        field_labels: &["status.phase"],
        printer: Printer::Namespaces,
        status_subresource: true,
        ..BASE
    },
    ResourceType {
        resource: "nodes",
        singular: "node",
        kind: "Node",
        list_kind: "NodeList",
        namespaced: false,
        short_names: &["no"],
        field_labels: &["spec.unschedulable"],
        printer: Printer::Nodes,
        status_subresource: true,
        ..BASE
    },
    // Written by the simulated controllers only (`controllers::pods`): the pods of workloads.
    ResourceType {
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        list_kind: "PodList",
        verbs: READ,
        printer: Printer::Pods,
        short_names: &["po"],
        categories: &["all"],
        field_labels: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ..BASE
    },
    // Written by the simulated endpoints controller only (`controllers::endpoints`).
    ResourceType {
        resource: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        list_kind: "EndpointsList",
        verbs: READ,
        short_names: &["ep"],
        ..BASE
    },
    ResourceType {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        verbs: READ,
        ..BASE
    },
    ResourceType {
        resource: "events",
        singular: "event",
        kind: "Event",
        list_kind: "EventList",
        short_names: &["ev"],
        field_labels: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ..BASE
    },
    ResourceType {
        resource: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        short_names: &["cm"],
        printer: Printer::ConfigMaps,
        ..BASE
    },
    ResourceType {
        resource: "secrets",
        singular: "secret",
        kind: "Secret",
        list_kind: "SecretList",
        field_labels: &["type"],
        printer: Printer::Secrets,
        ..BASE
    },
    ResourceType {
        resource: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        short_names: &["sa"],
        printer: Printer::ServiceAccounts,
        ..BASE
    },
    ResourceType {
        resource: "services",
        singular: "service",
        kind: "Service",
        list_kind: "ServiceList",
        short_names: &["svc"],
        categories: &["all"],
        printer: Printer::Services,
        status_subresource: true,
        ..BASE
    },
    // The kubelets' heartbeat leases in `kube-node-lease`.
    ResourceType {
        group: "coordination.k8s.io",
        resource: "leases",
        singular: "lease",
        kind: "Lease",
        list_kind: "LeaseList",
        printer: Printer::Leases,
        ..BASE
    },
    ResourceType {
        group: "apps",
        resource: "deployments",
        singular: "deployment",
        kind: "Deployment",
        list_kind: "DeploymentList",
        short_names: &["deploy"],
        categories: &["all"],
        printer: Printer::Deployments,
        status_subresource: true,
        generation: true,
        ..BASE
    },
    // Written by the simulated Deployment controller only (`controllers::pods`).
    ResourceType {
        group: "apps",
        resource: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        verbs: READ,
        short_names: &["rs"],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        ..BASE
    },
    ResourceType {
        group: "apps",
        resource: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        short_names: &["ds"],
        categories: &["all"],
        printer: Printer::DaemonSets,
        status_subresource: true,
        generation: true,
        ..BASE
    },
    ResourceType {
        group: "apps",
        resource: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        list_kind: "StatefulSetList",
        short_names: &["sts"],
        categories: &["all"],
        printer: Printer::StatefulSets,
        status_subresource: true,
        generation: true,
        ..BASE
    },
    ResourceType {
        group: "batch",
        resource: "jobs",
        singular: "job",
        kind: "Job",
        list_kind: "JobList",
        categories: &["all"],
        field_labels: &["status.successful"],
        printer: Printer::Jobs,
        status_subresource: true,
        generation: true,
        ..BASE
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        resource: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        list_kind: "ClusterRoleList",
        namespaced: false,
        ..BASE
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        resource: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        list_kind: "ClusterRoleBindingList",
        namespaced: false,
        ..BASE
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        resource: "roles",
        singular: "role",
        kind: "Role",
        list_kind: "RoleList",
        ..BASE
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        resource: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        list_kind: "RoleBindingList",
        ..BASE
    },
    ResourceType {
        resource: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        list_kind: "PersistentVolumeClaimList",
        short_names: &["pvc"],
        status_subresource: true,
        ..BASE
    },
    ResourceType {
        resource: "persistentvolumes",
        singular: "persistentvolume",
        kind: "PersistentVolume",
        list_kind: "PersistentVolumeList",
        namespaced: false,
        short_names: &["pv"],
        status_subresource: true,
        ..BASE
    },
    ResourceType {
        group: "storage.k8s.io",
        resource: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        list_kind: "StorageClassList",
        namespaced: false,
        short_names: &["sc"],
        printer: Printer::StorageClasses,
        ..BASE
    },
    ResourceType {
        group: "storage.k8s.io",
        resource: "csidrivers",
        singular: "csidriver",
        kind: "CSIDriver",
        list_kind: "CSIDriverList",
        namespaced: false,
        ..BASE
    },
    ResourceType {
        group: "apiregistration.k8s.io",
        resource: "apiservices",
        singular: "apiservice",
        kind: "APIService",
        list_kind: "APIServiceList",
        namespaced: false,
        categories: &["api-extensions"],
        status_subresource: true,
        ..BASE
    },
    ResourceType {
        group: "apiextensions.k8s.io",
        resource: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        list_kind: "CustomResourceDefinitionList",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status_subresource: true,
        generation: true,
        ..BASE
    },
];

/// The resources one API server serves: the built-in [`RESOURCES`] and those its
/// CustomResourceDefinitions added.
#[derive(Default)]
pub(crate) struct Registry {
    custom: RwLock<Vec<&'static ResourceType>>,
}

/// Custom resource types are leaked once per distinct definition (and shared by every API
/// server of the process), so that they can be `'static` like the built-in ones.
fn intern(resource: ResourceType) -> &'static ResourceType {
    static INTERNED: OnceLock<Mutex<Vec<&'static ResourceType>>> = OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = format!("{resource:?}");
    if let Some(found) = interned.iter().find(|r| format!("{r:?}") == key) {
        return found;
    }
    let leaked: &'static ResourceType = Box::leak(Box::new(resource));
    interned.push(leaked);
    leaked
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_strs(values: Option<&Value>) -> &'static [&'static str] {
    let list: Vec<&'static str> = values
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(leak_str).collect())
        .unwrap_or_default();
    Box::leak(list.into_boxed_slice())
}

impl Registry {
    /// Every served resource: built-in first, then custom in registration order.
    pub fn all(&self) -> Vec<&'static ResourceType> {
        let custom = self.custom.read().unwrap_or_else(|p| p.into_inner());
        RESOURCES.iter().chain(custom.iter().copied()).collect()
    }

    /// The resource at `group`/`version`/`resource`.
    pub fn find(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<&'static ResourceType> {
        self.all()
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.resource == resource)
    }

    /// The resource of objects with this `apiVersion` and `kind`.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&'static ResourceType> {
        self.all()
            .into_iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    /// Registers (or re-registers, after a change) the served versions of a
    /// CustomResourceDefinition.
    pub fn register_crd(&self, crd: &Value) {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let names = &spec["names"];
        let plural = names["plural"].as_str().unwrap_or_default();
        let mut added = Vec::new();
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == Value::Bool(false) {
                continue;
            }
            let columns: Vec<CustomColumn> = version["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| CustomColumn {
                            name: leak_str(c["name"].as_str().unwrap_or_default()),
                            kind: leak_str(c["type"].as_str().unwrap_or("string")),
                            format: leak_str(c["format"].as_str().unwrap_or_default()),
                            description: leak_str(c["description"].as_str().unwrap_or_default()),
                            priority: c["priority"].as_u64().unwrap_or(0) as u32,
                            json_path: leak_str(c["jsonPath"].as_str().unwrap_or_default()),
                        })
                        .collect()
                })
                .unwrap_or_else(|| {
                    vec![CustomColumn {
                        name: "Age",
                        kind: "date",
                        format: "",
                        description: "",
                        priority: 0,
                        json_path: ".metadata.creationTimestamp",
                    }]
                });
            let kind = names["kind"].as_str().unwrap_or_default();
            added.push(intern(ResourceType {
                group: leak_str(group),
                version: leak_str(version["name"].as_str().unwrap_or_default()),
                resource: leak_str(plural),
                singular: leak_str(
                    names["singular"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| kind.to_lowercase())
                        .as_str(),
                ),
                kind: leak_str(kind),
                list_kind: leak_str(
                    names["listKind"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("{kind}List"))
                        .as_str(),
                ),
                namespaced: spec["scope"] != "Cluster",
                verbs: WRITE,
                short_names: leak_strs(names.get("shortNames")),
                categories: leak_strs(names.get("categories")),
                field_labels: &[],
                printer: Printer::Custom(Box::leak(columns.into_boxed_slice())),
                list_items_typed: true,
                status_subresource: version.pointer("/subresources/status").is_some(),
                generation: true,
                custom: true,
            }));
        }
        let mut custom = self.custom.write().unwrap_or_else(|p| p.into_inner());
        custom.retain(|r| !(r.group == group && r.resource == plural));
        custom.extend(added);
    }

    /// Removes the resources of a deleted CustomResourceDefinition.
    pub fn unregister_crd(&self, group: &str, plural: &str) {
        self.custom
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| !(r.group == group && r.resource == plural));
    }
}

/// Whether `group`/`version` is served at all.
fn has_group_version(all: &[&'static ResourceType], group: &str, version: &str) -> bool {
    all.iter().any(|r| r.group == group && r.version == version)
}

/// The named groups (not core) and their versions, in registry order.
fn groups(all: &[&'static ResourceType]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in all.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

fn server_addresses(server_address: &str) -> Value {
    json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}])
}

/// `GET /api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": server_addresses(server_address),
    })
}

fn group_document(group: &str, versions: &[&str], server_address: &str) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        "serverAddressByClientCIDRs": server_addresses(server_address),
    })
}

/// `GET /apis`.
pub(crate) fn api_group_list(all: &[&'static ResourceType], server_address: &str) -> Value {
    let groups: Vec<Value> = groups(all)
        .iter()
        .map(|(g, vs)| group_document(g, vs, server_address))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`, if served.
pub(crate) fn api_group(
    all: &[&'static ResourceType],
    group: &str,
    server_address: &str,
) -> Option<Value> {
    groups(all)
        .into_iter()
        .find(|(g, _)| *g == group)
        .map(|(g, vs)| {
            let mut doc = group_document(g, &vs, server_address);
            doc["kind"] = json!("APIGroup");
            doc["apiVersion"] = json!("v1");
            doc
        })
}

/// `GET /api/v1` or `/apis/<group>/<version>`, if served.
pub(crate) fn api_resource_list(
    all: &[&'static ResourceType],
    group: &str,
    version: &str,
) -> Option<Value> {
    if !has_group_version(all, group, version) {
        return None;
    }
    let mut resources: Vec<Value> = Vec::new();
    for r in all
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(resource_entry(r));
        if r.status_subresource {
            let verbs: &[&str] = if r.supports("update") {
                &["get", "patch", "update"]
            } else {
                &["get"]
            };
            resources.push(json!({
                "name": format!("{}/status", r.resource),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": verbs,
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn resource_entry(r: &ResourceType) -> Value {
    let mut doc = json!({
        "name": r.resource,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        doc["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        doc["categories"] = json!(r.categories);
    }
    doc
}

fn discovery_group(all: &[&'static ResourceType], group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = all
                .iter()
                .filter(|r| r.group == group && r.version == *version)
                .map(|r| {
                    let mut doc = json!({
                        "resource": r.resource,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        doc["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        doc["categories"] = json!(r.categories);
                    }
                    if r.status_subresource {
                        doc["subresources"] = json!([{
                            "subresource": "status",
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "verbs": ["get", "patch", "update"],
                        }]);
                    }
                    doc
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery of the core group (`GET /api`).
pub(crate) fn aggregated_core(all: &[&'static ResourceType]) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [discovery_group(all, "", &["v1"])],
    })
}

/// Aggregated discovery of the named groups (`GET /apis`).
pub(crate) fn aggregated_groups(all: &[&'static ResourceType]) -> Value {
    let items: Vec<Value> = groups(all)
        .iter()
        .map(|(g, vs)| discovery_group(all, g, vs))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resources_are_discoverable() {
        let registry = Registry::default();
        let all = registry.all();
        let list = api_resource_list(&all, "", "v1").unwrap();
        let nodes = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "nodes")
            .unwrap();
        assert_eq!(nodes["namespaced"], false);
        assert_eq!(nodes["kind"], "Node");
        assert_eq!(nodes["shortNames"], json!(["no"]));
        assert!(api_resource_list(&all, "apps", "v2").is_none());
        assert!(api_resource_list(&all, "coordination.k8s.io", "v1").is_some());
        let aggregated = aggregated_core(&all);
        assert_eq!(aggregated["items"][0]["versions"][0]["version"], "v1");
    }

    #[test]
    fn registry_is_consistent() {
        let registry = Registry::default();
        for r in RESOURCES {
            assert!(r.supports("get") && r.supports("list"), "{}", r.resource);
            assert_eq!(
                registry.find(r.group, r.version, r.resource).unwrap().kind,
                r.kind
            );
            assert!(r.list_kind.ends_with("List"));
        }
    }
}
