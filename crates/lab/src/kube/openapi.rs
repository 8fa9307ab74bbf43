//! OpenAPI documents: v3 (`/openapi/v3` and `/openapi/v3/<api|apis/group>/<version>`) and v2
//! (`/openapi/v2`, JSON only). One path per served resource with its operations, their
//! `x-kubernetes-group-version-kind` and query parameters (kubectl reads `fieldValidation` to
//! learn that the server validates fields itself), and the schemas of the built-in kinds with
//! everything they reference, from the same k8s-openapi schemas that check served objects
//! (`schema`): `kubectl explain` finds a kind by the `x-kubernetes-group-version-kind` of its
//! schema, and client-side `kubectl apply` takes the strategic-merge keys from them.
//! References are written the way the upstream documents write them: `allOf: [{$ref}]` beside
//! a description in v3, a bare `$ref` in v2.
//!
//! Not served: v2 as protobuf (client-go asks `/openapi/v2` for
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` only, so Go clients that still
//! use v2 do not get it), and schemas of custom resources (CRDs' `openAPIV3Schema`).

use serde_json::{Map, Value, json};

use super::discovery::ResourceType;
use super::schema;

/// Rewrites the definitions' references to `prefix` (`#/components/schemas/` or
/// `#/definitions/`); in v3, a reference with siblings becomes `allOf: [{$ref}]`.
fn rewrite_refs(value: &mut Value, prefix: &str, v3: bool) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                if let Some(name) = target.strip_prefix("#/definitions/") {
                    *target = format!("{prefix}{name}");
                }
                if v3 && map.len() > 1 {
                    let reference = map.remove("$ref").unwrap_or_default();
                    map.insert("allOf".into(), json!([{"$ref": reference}]));
                }
            }
            for v in map.values_mut() {
                rewrite_refs(v, prefix, v3);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix, v3)),
        _ => {}
    }
}

/// The schemas of the built-in kinds among `resources`, with everything they reference, the
/// kinds marked with their group/version/kind.
fn schemas_for(resources: &[&&'static ResourceType], prefix: &str, v3: bool) -> Map<String, Value> {
    let all = schema::schemas();
    let mut kinds: Vec<&schema::Kind> = Vec::new();
    for r in resources {
        if r.custom {
            continue;
        }
        if let Some(kind) = all.kind(&r.api_version(), r.kind) {
            kinds.push(kind);
        }
    }
    let mut out = Map::new();
    for (name, mut definition) in schema::reachable(&kinds) {
        rewrite_refs(&mut definition, prefix, v3);
        let gvks: Vec<Value> = kinds
            .iter()
            .filter(|k| k.schema == name)
            .map(|k| json!({"group": k.group, "version": k.version, "kind": k.kind}))
            .collect();
        if !gvks.is_empty() {
            definition["x-kubernetes-group-version-kind"] = Value::Array(gvks);
        }
        out.insert(name, definition);
    }
    out
}

/// The schema reference of a resource's kind, for its responses, if it is a built-in one.
fn kind_ref(r: &ResourceType, prefix: &str) -> Option<Value> {
    if r.custom {
        return None;
    }
    let kind = schema::schemas().kind(&r.api_version(), r.kind)?;
    Some(json!({"$ref": format!("{prefix}{}", kind.schema)}))
}

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
    for r in &resources {
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
        let ok = match kind_ref(r, "#/components/schemas/") {
            Some(schema) => {
                json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
            }
            None => json!({"description": "OK"}),
        };
        let op = |action: &str, params: &Vec<Value>| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "parameters": params,
                "responses": {"200": ok},
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
    let schemas = schemas_for(&resources, "#/components/schemas/", true);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `GET /openapi/v2`: one Swagger 2.0 document for every served resource, with the
/// definitions of the built-in kinds.
pub(crate) fn v2(all: &[&'static ResourceType]) -> Value {
    let resources: Vec<&&'static ResourceType> = all.iter().collect();
    let mut paths = Map::new();
    for r in &resources {
        let gv = gv_path(r.group, r.version);
        let base = if r.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", r.resource)
        } else {
            format!("/{gv}/{}", r.resource)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let mut ok = json!({"description": "OK"});
        if let Some(schema) = kind_ref(r, "#/definitions/") {
            ok["schema"] = schema;
        }
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "consumes": ["*/*"],
                "produces": ["application/json"],
                "schemes": ["https"],
                "responses": {"200": ok, "401": {"description": "Unauthorized"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let mut item = json!({"get": op("get")});
        if r.supports("update") {
            item["put"] = op("put");
        }
        if r.supports("patch") {
            item["patch"] = op("patch");
        }
        if r.supports("delete") {
            item["delete"] = op("delete");
        }
        let mut collection = json!({"get": op("list")});
        if r.supports("create") {
            collection["post"] = op("post");
        }
        paths.insert(base.clone(), collection);
        paths.insert(format!("{base}/{{name}}"), item);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "definitions": schemas_for(&resources, "#/definitions/", false),
    })
}
