//! The real schemas of the built-in kinds the lab serves, and the check that a served object
//! obeys them.
//!
//! The schemas are k8s-openapi's (`schemars` feature), for the Kubernetes version the lab
//! claims (1.34, `.cargo/config.toml`). k8s-openapi generates its types and these schemas from
//! the upstream OpenAPI documents (kubernetes/kubernetes `api/openapi-spec/v3/*.json`, e.g.
//! `api__v1_openapi.json` `components.schemas["io.k8s.api.core.v1.NodeSystemInfo"].required`
//! lists `kubeProxyVersion` among its ten required fields), so the `required` lists, types and
//! descriptions are upstream's. They are needed beyond the Rust types: k8s-openapi's
//! deserializers fill a missing required string with `""` instead of failing, so a typed parse
//! alone never notices a missing required field.
//!
//! [`check`] walks an object against its kind's schema: every required field present and not
//! null, every value of the declared type (`x-kubernetes-int-or-string` takes either), no field
//! the schema does not declare; then the object must also deserialize into k8s-openapi's type.
//! The first violation is reported with kind, name and the field's path. The same schemas make
//! the lab's `/openapi/v2` and `/openapi/v3` documents (`openapi`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// A built-in kind: group, version, kind, the name of its schema, and the typed parse.
pub(crate) struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// `io.k8s.api.core.v1.Node`.
    pub schema: String,
    parse: fn(&Value) -> Result<(), String>,
}

/// Every schema by name, and the built-in kinds.
pub(crate) struct Schemas {
    pub definitions: Map<String, Value>,
    pub kinds: Vec<Kind>,
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> Result<(), String> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    match T::deserialize(deserializer) {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("{}: {error}", track.path())),
    }
}

macro_rules! kinds {
    ($generator:ident, $kinds:ident; $($group:literal $version:literal $kind:literal => $ty:ty),* $(,)?) => {
        $(
            let reference = $generator.subschema_for::<$ty>();
            let schema = reference
                .as_value()
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/definitions/"))
                .expect("k8s-openapi kinds are referenced schemas")
                .to_string();
            $kinds.push(Kind {
                group: $group,
                version: $version,
                kind: $kind,
                schema,
                parse: parse::<$ty>,
            });
        )*
    };
}

/// The schemas, built once.
pub(crate) fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator = SchemaSettings::draft07()
            .with(|s| {
                s.meta_schema = None;
                s.transforms = Vec::new();
            })
            .into_generator();
        let mut kinds = Vec::new();
        kinds!(generator, kinds;
            "" "v1" "Namespace" => api::core::v1::Namespace,
            "" "v1" "Node" => api::core::v1::Node,
            "" "v1" "Pod" => api::core::v1::Pod,
            "" "v1" "Event" => api::core::v1::Event,
            "" "v1" "ConfigMap" => api::core::v1::ConfigMap,
            "" "v1" "Secret" => api::core::v1::Secret,
            "" "v1" "ServiceAccount" => api::core::v1::ServiceAccount,
            "" "v1" "Service" => api::core::v1::Service,
            "" "v1" "Endpoints" => api::core::v1::Endpoints,
            "" "v1" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim,
            "" "v1" "PersistentVolume" => api::core::v1::PersistentVolume,
            "coordination.k8s.io" "v1" "Lease" => api::coordination::v1::Lease,
            "apps" "v1" "Deployment" => api::apps::v1::Deployment,
            "apps" "v1" "ReplicaSet" => api::apps::v1::ReplicaSet,
            "apps" "v1" "DaemonSet" => api::apps::v1::DaemonSet,
            "apps" "v1" "StatefulSet" => api::apps::v1::StatefulSet,
            "batch" "v1" "Job" => api::batch::v1::Job,
            "rbac.authorization.k8s.io" "v1" "ClusterRole" => api::rbac::v1::ClusterRole,
            "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding,
            "rbac.authorization.k8s.io" "v1" "Role" => api::rbac::v1::Role,
            "rbac.authorization.k8s.io" "v1" "RoleBinding" => api::rbac::v1::RoleBinding,
            "storage.k8s.io" "v1" "StorageClass" => api::storage::v1::StorageClass,
            "storage.k8s.io" "v1" "CSIDriver" => api::storage::v1::CSIDriver,
            "discovery.k8s.io" "v1" "EndpointSlice" => api::discovery::v1::EndpointSlice,
            "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => apiextensions::CustomResourceDefinition,
            "apiregistration.k8s.io" "v1" "APIService" => apiregistration::APIService,
        );
        Schemas {
            definitions: generator.take_definitions(false),
            kinds,
        }
    })
}

impl Schemas {
    /// The built-in kind `apiVersion`/`kind` names, if the lab knows its schema.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&Kind> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.kind == kind)
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        // A bounded number of hops: the schemas never chain references this deep.
        for _ in 0..8 {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/definitions/"))
                .and_then(|name| self.definitions.get(name))
            {
                Some(next) => schema = next,
                None => break,
            }
        }
        schema
    }
}

/// Why a served object is not what a real API server would serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `Node`.
    pub kind: String,
    /// `namespace/name` or `name`.
    pub name: String,
    /// The field's path: `status.nodeInfo.kubeProxyVersion`, `spec.ports[0].port`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}: {}",
            self.kind, self.name, self.field, self.problem
        )
    }
}

/// Checks one object of a built-in kind (it must carry `apiVersion` and `kind`) against the
/// schema of its kind. `Ok(false)`: not a built-in kind the lab knows the schema of (custom
/// resources), nothing checked.
pub fn check(object: &Value) -> Result<bool, Violation> {
    let kind_name = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let schemas = schemas();
    let Some(kind) = schemas.kind(api_version, kind_name) else {
        return Ok(false);
    };
    let metadata = object.get("metadata");
    let name = |field: &str| {
        metadata
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let full_name = match name("namespace") {
        ns if ns.is_empty() => name("name"),
        ns => format!("{ns}/{}", name("name")),
    };
    let violation = |field: String, problem: String| Violation {
        kind: kind.kind.to_string(),
        name: full_name.clone(),
        field,
        problem,
    };
    let root = schemas
        .definitions
        .get(&kind.schema)
        .expect("every kind's schema is defined");
    walk(schemas, root, object, &mut String::new()).map_err(|(f, p)| violation(f, p))?;
    (kind.parse)(object).map_err(|error| {
        let (field, problem) = error.split_once(": ").unwrap_or(("", &error));
        violation(field.to_string(), problem.to_string())
    })?;
    Ok(true)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(
    schemas: &Schemas,
    schema: &Value,
    value: &Value,
    path: &mut String,
) -> Result<(), (String, String)> {
    // A real API server always writes a quantity as a string, in canonical form.
    let is_quantity = schema
        .get("$ref")
        .and_then(Value::as_str)
        .is_some_and(|r| r.ends_with(".api.resource.Quantity"));
    if is_quantity && !value.is_string() {
        return Err((
            path.clone(),
            format!("{} where a quantity string is expected", type_name(value)),
        ));
    }
    let schema = schemas.resolve(schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            walk(schemas, part, value, path)?;
        }
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return match value {
            Value::String(_) => Ok(()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            other => Err((
                path.clone(),
                format!(
                    "{} where an integer or a string is expected",
                    type_name(other)
                ),
            )),
        };
    }
    let Some(expected) = schema.get("type").and_then(Value::as_str) else {
        // No type: any JSON (`JSON`, `RawExtension`, `x-kubernetes-preserve-unknown-fields`).
        return Ok(());
    };
    let actual = type_name(value);
    let fits = actual == expected || (expected == "number" && actual == "integer");
    if !fits {
        return Err((
            path.clone(),
            format!("{actual} where {expected} is expected"),
        ));
    }
    match value {
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let mut item_path = format!("{path}[{i}]");
                    walk(schemas, item_schema, item, &mut item_path)?;
                }
            }
        }
        Value::Object(fields) => {
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for field in required.iter().filter_map(Value::as_str) {
                    match fields.get(field) {
                        None => {
                            return Err((
                                child(path, field),
                                "required field is missing".to_string(),
                            ));
                        }
                        Some(Value::Null) => {
                            return Err((child(path, field), "required field is null".to_string()));
                        }
                        Some(_) => {}
                    }
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, field_value) in fields {
                let mut field_path = child(path, key);
                match properties.and_then(|p| p.get(key)) {
                    // An optional field may be null (a real server sends `creationTimestamp:
                    // null` in templates); k8s-openapi reads it as absent.
                    Some(_) if field_value.is_null() => {}
                    Some(field_schema) => {
                        walk(schemas, field_schema, field_value, &mut field_path)?
                    }
                    None => match additional {
                        Some(Value::Bool(false)) | None if properties.is_some() => {
                            return Err((field_path, "field is not in the schema".to_string()));
                        }
                        Some(extra @ Value::Object(_)) => {
                            walk(schemas, extra, field_value, &mut field_path)?
                        }
                        _ => {}
                    },
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every definition reachable from `kinds`, for the OpenAPI documents.
pub(crate) fn reachable(kinds: &[&Kind]) -> BTreeMap<String, Value> {
    let schemas = schemas();
    let mut out = BTreeMap::new();
    let mut pending: Vec<String> = kinds.iter().map(|k| k.schema.clone()).collect();
    while let Some(name) = pending.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(schema) = schemas.definitions.get(&name) else {
            continue;
        };
        collect_refs(schema, &mut pending);
        out.insert(name, schema.clone());
    }
    out
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/definitions/"))
            {
                into.push(name.to_string());
            }
            for v in map.values() {
                collect_refs(v, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "cp-1", "labels": {"a": "b"}},
            "spec": {},
            "status": {
                "capacity": {"cpu": "8"},
                "addresses": [{"type": "InternalIP", "address": "127.0.9.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "k",
                    "osImage": "o", "containerRuntimeVersion": "c", "kubeletVersion": "v1.34.1",
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"
                }
            }
        })
    }

    #[test]
    fn a_complete_node_passes_and_each_required_field_is_named_when_missing() {
        assert_eq!(check(&node()), Ok(true));
        let mut missing = node();
        missing["status"]["nodeInfo"]
            .as_object_mut()
            .unwrap()
            .remove("kubeProxyVersion");
        let violation = check(&missing).unwrap_err();
        assert_eq!(violation.kind, "Node");
        assert_eq!(violation.name, "cp-1");
        assert_eq!(violation.field, "status.nodeInfo.kubeProxyVersion");
        assert!(violation.problem.contains("missing"), "{violation}");
    }

    #[test]
    fn wrong_types_unknown_fields_and_bad_quantities_are_violations() {
        let mut wrong = node();
        wrong["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = json!("10250");
        assert_eq!(
            check(&wrong).unwrap_err().field,
            "status.daemonEndpoints.kubeletEndpoint.Port"
        );
        let mut unknown = node();
        unknown["status"]["nodeInfo"]["kubeProxy"] = json!("");
        assert_eq!(
            check(&unknown).unwrap_err().field,
            "status.nodeInfo.kubeProxy"
        );
        let mut quantity = node();
        quantity["status"]["capacity"]["cpu"] = json!(8);
        let violation = check(&quantity).unwrap_err();
        assert!(
            violation.field.starts_with("status.capacity"),
            "{violation}"
        );
        // Labels are a map of strings.
        let mut labels = node();
        labels["metadata"]["labels"]["n"] = json!(1);
        assert_eq!(check(&labels).unwrap_err().field, "metadata.labels.n");
    }

    #[test]
    fn custom_resources_are_not_checked() {
        assert_eq!(
            check(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"})),
            Ok(false)
        );
    }
}
