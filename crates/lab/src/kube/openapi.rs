//! Minimal OpenAPI v3 documents (`/openapi/v3` and `/openapi/v3/<api|apis/group>/<version>`):
//! one path per served resource with its write operations, their
//! `x-kubernetes-group-version-kind` and their query parameters, and no schemas. It is what
//! kubectl reads to learn that the server validates fields itself (`fieldValidation`), so that
//! `kubectl apply --server-side` and `kubectl create` work without client-side schemas.
//! `kubectl explain` and client-side `kubectl apply` need the schemas and do not work.

use serde_json::{Map, Value, json};

use super::discovery::ResourceType;

/// The path of a group/version in the OpenAPI index: `api/v1` or `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(value: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.to_string().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`: the index of group/version documents.
pub(crate) fn index(all: &[&'static ResourceType]) -> Value {
    let mut paths = Map::new();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in all {
        if seen.contains(&(r.group, r.version)) {
            continue;
        }
        seen.push((r.group, r.version));
        let path = gv_path(r.group, r.version);
        let doc = document(all, r.group, r.version).unwrap_or_default();
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash(&doc))}),
        );
    }
    json!({"paths": paths})
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

/// `GET /openapi/v3/<gv path>`, if served.
pub(crate) fn document(all: &[&'static ResourceType], group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&&'static ResourceType> = all
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let write_params = vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.",
        ),
    ];
    let mut patch_params = write_params.clone();
    patch_params.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    let mut paths = Map::new();
    for r in resources {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = if r.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                r.resource
            )
        } else {
            format!("/{}/{}", gv_path(group, version), r.resource)
        };
        let op = |action: &str, params: &Vec<Value>| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let mut collection = json!({"get": op("list", &vec![])});
        let mut item = json!({"get": op("get", &vec![])});
        if r.supports("create") {
            collection["post"] = op("post", &write_params);
        }
        if r.supports("update") {
            item["put"] = op("put", &write_params);
        }
        if r.supports("patch") {
            item["patch"] = op("patch", &patch_params);
        }
        if r.supports("delete") {
            item["delete"] = op("delete", &vec![query("dryRun", "")]);
        }
        paths.insert(base.clone(), collection);
        paths.insert(format!("{base}/{{name}}"), item);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
