//! Field ownership and patches: the `metadata.managedFields` bookkeeping behind server-side
//! apply, JSON merge patch (RFC 7386), a subset of strategic merge patch and JSON patch
//! (RFC 6902).
//!
//! Field ownership is tracked at the granularity of *leaf paths*: a path through nested maps
//! to a scalar, a list or an empty map. Lists are atomic (owned as a whole). The real
//! structured-merge-diff also tracks list items by merge key; treating lists as atomic only
//! ever reports more conflicts than a real server, never fewer. Ownership is written in the
//! real `FieldsV1` shape (`{"f:spec":{"f:replicas":{}}}`), so clients can read it.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path, e.g. `["spec", "replicas"]`.
pub(crate) type FieldPath = Vec<String>;
/// A set of owned field paths.
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Everything but `status` (the main resource of a type with a status subresource).
    Main,
    /// Everything (a type without a status subresource).
    All,
    /// Only `status` (the `/status` subresource).
    Status,
}

/// The owned leaf paths of `object`: its content without identity (`apiVersion`, `kind`,
/// `metadata` other than labels, annotations, finalizers and owner references).
pub(crate) fn leaf_paths(object: &Value, part: Part) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(map) = object.as_object() else {
        return set;
    };
    for (key, value) in map {
        let take = match key.as_str() {
            "apiVersion" | "kind" => false,
            "status" => part != Part::Main,
            _ => part != Part::Status,
        };
        if !take {
            continue;
        }
        if key == "metadata" {
            if let Some(meta) = value.as_object() {
                for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = meta.get(field) {
                        collect(v, vec!["metadata".into(), field.into()], &mut set);
                    }
                }
            }
            continue;
        }
        collect(value, vec![key.clone()], &mut set);
    }
    set
}

fn collect(value: &Value, path: FieldPath, set: &mut FieldSet) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(k.clone());
                collect(v, p, set);
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

/// The value at `path`.
pub(crate) fn get_path<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, k| v.as_object()?.get(k))
}

/// Removes the value at `path` and then every parent map it leaves empty (but not top-level
/// fields or `metadata`).
pub(crate) fn remove_path(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = &mut *object;
    for k in parents {
        match current.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
    if parents.len() > 1 {
        let is_empty_map = get_path(object, parents)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty);
        if is_empty_map {
            remove_path(object, parents);
        }
    }
}

/// `FieldsV1` of a field set.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut current = &mut root;
        for k in path {
            let entry = current.entry(format!("f:{k}")).or_insert_with(|| json!({}));
            match entry.as_object_mut() {
                Some(next) => current = next,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// The field set of a `FieldsV1` (keys other than `f:<name>` are not produced by the lab and
/// are owned as a whole by their parent).
pub(crate) fn from_fields_v1(fields: &Value) -> FieldSet {
    fn walk(value: &Value, path: FieldPath, set: &mut FieldSet) {
        let children: Vec<(&String, &Value)> = value
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                set.insert(path);
            }
            return;
        }
        for (k, v) in children {
            let mut p = path.clone();
            p.push(k[2..].to_string());
            walk(v, p, set);
        }
    }
    let mut set = FieldSet::new();
    walk(fields, Vec::new(), &mut set);
    set
}

/// A path as SSA conflict messages print it: `.spec.replicas`, `.metadata.labels.app`.
pub(crate) fn display_path(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// Deep-merges `patch` into `target` (server-side apply's merge: maps merge, lists and scalars
/// replace). Nulls in `patch` are skipped.
pub(crate) fn merge_apply(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_apply(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => {
            if !patch.is_null() {
                *target = patch.clone();
            }
        }
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The merge key of a list field in strategic merge patch (the built-in types' `patchMergeKey`
/// for the lists the lab's clients patch).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "conditions" => Some("type"),
        "tolerations" | "finalizers" => None,
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Strategic merge patch, the subset the lab supports: maps merge as in a JSON merge patch;
/// lists with a known merge key (containers, volumes, env by `name`, ports by `containerPort`,
/// conditions by `type`) merge item by item, other lists are replaced; `$patch: replace` and
/// `$patch: delete` on maps and list items.
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            if let Some(m) = replaced.as_object_mut() {
                m.remove("$patch");
            }
            *target = replaced;
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) if other != "merge" => {
            return Err(format!("unknown patch type: {other}"));
        }
        _ => {}
    }
    if !target.is_object() {
        *target = json!({});
    }
    let Some(t) = target.as_object_mut() else {
        return Ok(());
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v.as_array(), t.get_mut(k)) {
            (Some(key), Some(items), Some(Value::Array(existing))) => {
                for item in items {
                    let id = item.get(key);
                    let position =
                        id.and_then(|id| existing.iter().position(|e| e.get(key) == Some(id)));
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (position, delete) {
                        (Some(i), true) => {
                            existing.remove(i);
                        }
                        (None, true) => {}
                        (Some(i), false) => strategic_merge_patch(&mut existing[i], item)?,
                        (None, false) => existing.push(item.clone()),
                    }
                }
            }
            (_, _, Some(existing)) if existing.is_object() && v.is_object() => {
                strategic_merge_patch(existing, v)?;
                if existing.is_null() {
                    t.remove(k);
                }
            }
            _ => {
                let mut value = v.clone();
                if value.is_object() {
                    let mut fresh = json!({});
                    strategic_merge_patch(&mut fresh, &value)?;
                    value = fresh;
                }
                t.insert(k.clone(), value);
            }
        }
    }
    Ok(())
}

fn pointer_parts(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("JSON pointer {pointer:?} does not start with /"));
    };
    Ok(rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, String> {
    let mut current = doc;
    for part in parts {
        current = match current {
            Value::Object(m) => m
                .get_mut(part)
                .ok_or_else(|| format!("doc is missing path: /{}", parts.join("/")))?,
            Value::Array(a) => {
                let i: usize = part.parse().map_err(|_| format!("invalid index {part}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("doc is missing path: /{}", parts.join("/")))?
            }
            _ => return Err(format!("doc is missing path: /{}", parts.join("/"))),
        };
    }
    Ok(current)
}

fn json_patch_add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let parts = pointer_parts(path)?;
    let Some((last, parents)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| format!("invalid index {last}"))?;
                if i > a.len() {
                    return Err(format!(
                        "add operation does not apply: doc is missing path: {path}"
                    ));
                }
                a.insert(i, value);
            }
        }
        _ => {
            return Err(format!(
                "add operation does not apply: doc is missing path: {path}"
            ));
        }
    }
    Ok(())
}

fn json_patch_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let parts = pointer_parts(path)?;
    let Some((last, parents)) = parts.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    let missing = || format!("remove operation does not apply: doc is missing path: \"{path}\"");
    match parent_mut(doc, parents).map_err(|_| missing())? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 JSON patch.
pub(crate) fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or("the JSON patch is not a list of operations")?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        match op["op"].as_str().unwrap_or_default() {
            "add" => json_patch_add(doc, path, op["value"].clone())?,
            "remove" => {
                json_patch_remove(doc, path)?;
            }
            "replace" => {
                json_patch_remove(doc, path).map_err(|_| {
                    format!("replace operation does not apply: doc is missing key: {path}")
                })?;
                json_patch_add(doc, path, op["value"].clone())?;
            }
            "move" => {
                let from = op["from"].as_str().unwrap_or_default();
                let value = json_patch_remove(doc, from)?;
                json_patch_add(doc, path, value)?;
            }
            "copy" => {
                let from = op["from"].as_str().unwrap_or_default();
                let value = doc.pointer(from).cloned().ok_or_else(|| {
                    format!("copy operation does not apply: doc is missing from path: {from}")
                })?;
                json_patch_add(doc, path, value)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(parts: &[&str]) -> FieldPath {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn leaf_paths_skip_identity_and_treat_lists_atomically() {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1"}},
            "data": {"k": "v"},
            "spec": {"list": [1, 2], "empty": {}},
            "status": {"phase": "x"},
        });
        let set = leaf_paths(&object, Part::Main);
        let expected: FieldSet = [
            p(&["metadata", "labels", "a"]),
            p(&["data", "k"]),
            p(&["spec", "list"]),
            p(&["spec", "empty"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(set, expected);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        assert_eq!(
            leaf_paths(&object, Part::Status),
            [p(&["status", "phase"])].into_iter().collect()
        );
    }

    #[test]
    fn removing_a_path_prunes_empty_parents() {
        let mut object = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": {"y": 1}}});
        remove_path(&mut object, &p(&["spec", "x", "y"]));
        remove_path(&mut object, &p(&["metadata", "labels", "a"]));
        assert_eq!(object, json!({"metadata": {}, "spec": {}}));
    }

    #[test]
    fn patches() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [2]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [2]}));

        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic_merge_patch(
            &mut pod,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
        )
        .unwrap();
        assert_eq!(pod["spec"]["containers"][1]["image"], "z");
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 3);

        let mut doc = json!({"a": [1, 2]});
        json_patch(
            &mut doc,
            &json!([{"op": "add", "path": "/a/-", "value": 3}, {"op": "replace", "path": "/a/0", "value": 0}, {"op": "test", "path": "/a/2", "value": 3}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": [0, 2, 3]}));
        assert!(json_patch(&mut doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
