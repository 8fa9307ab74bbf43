//! The resource registry and the discovery documents built from it: `/api` (`APIVersions`),
//! `/api/v1` and `/apis/<group>/<version>` (`APIResourceList`), `/apis` (`APIGroupList`,
//! `APIGroup`), and aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`,
//! served on `/api` and `/apis` when the client's `Accept` asks for it).
//!
//! A resource is served if and only if it is in [`RESOURCES`], and discovery advertises the
//! verbs that the lab really implements for it, so that what clients discover is what works.

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
    /// Name and Created At, the default for resources without printer columns (and, for now,
    /// for the resources the lab serves empty: pods, events).
    Default,
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

/// Every resource the lab serves.
pub(crate) static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        list_kind: "NamespaceList",
        namespaced: false,
        verbs: READ,
        short_names: &["ns"],
        categories: &[],
        field_labels: &["status.phase"],
        printer: Printer::Namespaces,
        list_items_typed: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        resource: "nodes",
        singular: "node",
        kind: "Node",
        list_kind: "NodeList",
        namespaced: false,
        verbs: READ,
        short_names: &["no"],
        categories: &[],
        field_labels: &["spec.unschedulable"],
        printer: Printer::Nodes,
        list_items_typed: false,
    },
    // Empty for now (`kubectl describe node` lists a node's pods and events).
    ResourceType {
        group: "",
        version: "v1",
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        list_kind: "PodList",
        namespaced: true,
        verbs: READ,
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
        printer: Printer::Default,
        list_items_typed: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        resource: "events",
        singular: "event",
        kind: "Event",
        list_kind: "EventList",
        namespaced: true,
        verbs: READ,
        short_names: &["ev"],
        categories: &[],
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
        printer: Printer::Default,
        list_items_typed: false,
    },
    // The kubelets' heartbeat leases in `kube-node-lease`.
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        singular: "lease",
        kind: "Lease",
        list_kind: "LeaseList",
        namespaced: true,
        verbs: READ,
        short_names: &[],
        categories: &[],
        field_labels: &[],
        printer: Printer::Leases,
        list_items_typed: false,
    },
];

/// The resource at `group`/`version`/`resource`.
pub(crate) fn find(group: &str, version: &str, resource: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// Whether `group`/`version` is served at all.
pub(crate) fn has_group_version(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version)
}

/// The named groups (not core) and their versions, in registry order.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
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
pub(crate) fn api_group_list(server_address: &str) -> Value {
    let groups: Vec<Value> = groups()
        .iter()
        .map(|(g, vs)| group_document(g, vs, server_address))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`, if served.
pub(crate) fn api_group(group: &str, server_address: &str) -> Option<Value> {
    groups()
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
pub(crate) fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    if !has_group_version(group, version) {
        return None;
    }
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
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
        })
        .collect();
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

fn discovery_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = RESOURCES
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
pub(crate) fn aggregated_core() -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [discovery_group("", &["v1"])],
    })
}

/// Aggregated discovery of the named groups (`GET /apis`).
pub(crate) fn aggregated_groups() -> Value {
    let items: Vec<Value> = groups()
        .iter()
        .map(|(g, vs)| discovery_group(g, vs))
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
        let list = api_resource_list("", "v1").unwrap();
        let nodes = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "nodes")
            .unwrap();
        assert_eq!(nodes["namespaced"], false);
        assert_eq!(nodes["kind"], "Node");
        assert_eq!(nodes["shortNames"], json!(["no"]));
        assert!(api_resource_list("apps", "v1").is_none());
        assert!(api_resource_list("coordination.k8s.io", "v1").is_some());
        let aggregated = aggregated_core();
        assert_eq!(aggregated["items"][0]["versions"][0]["version"], "v1");
    }

    #[test]
    fn registry_is_consistent() {
        for r in RESOURCES {
            assert!(r.supports("get") && r.supports("list"), "{}", r.resource);
            assert_eq!(find(r.group, r.version, r.resource).unwrap().kind, r.kind);
            assert!(r.list_kind.ends_with("List"));
        }
    }
}
