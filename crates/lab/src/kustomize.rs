//! The part of Kustomize the GitOps tree uses, rendered the way `kustomize build` does for Argo
//! CD's repo server: `resources` (files of the directory), `patches` (JSON 6902 operations or a
//! merge patch, with a `target`; Argo CD appends the Application's
//! `spec.source.kustomize.patches` to them, `util/kustomize/kustomize.go`), then `replacements`
//! (source `kind`/`name`/`fieldPath`; targets `select`/`reject`, `fieldPaths`, options
//! `delimiter`/`index`/`create`), in that order (kustomize
//! `api/internal/target/kusttarget_configplugin.go`: PatchTransformer first,
//! ReplacementTransformer last). Objects annotated `config.kubernetes.io/local-config: "true"`
//! are dropped from the output, as kustomize does.
//!
//! Anything else in a kustomization (remote or directory resources, generators, components,
//! name prefixes, …) is refused with a message, never ignored.

use serde_json::Value;

const LOCAL_CONFIG: &str = "config.kubernetes.io/local-config";

/// Fields of a kustomization this renderer implements.
const KNOWN: [&str; 5] = ["apiVersion", "kind", "resources", "patches", "replacements"];

/// Renders the kustomization `kustomization` of directory `dir`, whose files (path from the
/// repository root, contents) are `files`, with `extra_patches` appended to its `patches`.
pub(crate) fn render(
    dir: &str,
    files: &[(String, String)],
    kustomization: &Value,
    extra_patches: &[Value],
) -> Result<Vec<Value>, String> {
    if let Some(map) = kustomization.as_object() {
        for key in map.keys() {
            if !KNOWN.contains(&key.as_str()) {
                return Err(format!(
                    "{dir}/kustomization.yaml: the lab does not render the Kustomize field {key}"
                ));
            }
        }
    }
    let mut objects = Vec::new();
    for resource in list(kustomization, "resources") {
        let name = resource
            .as_str()
            .ok_or_else(|| format!("{dir}/kustomization.yaml: a resource that is not a string"))?;
        let path = join(dir, name);
        let Some((file, text)) = files.iter().find(|(f, _)| *f == path) else {
            return Err(format!(
                "accumulating resources: accumulation err='accumulating resources from '{name}': '{path}' must be a file in the directory (the lab renders file resources only)'"
            ));
        };
        objects.extend(crate::gitops::parse(file, text)?);
    }
    let mut patches: Vec<Value> = list(kustomization, "patches").cloned().collect();
    patches.extend(extra_patches.iter().cloned());
    for patch in &patches {
        apply_patch(dir, files, &mut objects, patch)?;
    }
    for replacement in list(kustomization, "replacements") {
        replace(&mut objects, replacement)?;
    }
    objects.retain(|o| {
        o.pointer("/metadata/annotations")
            .and_then(|a| a.get(LOCAL_CONFIG))
            .and_then(Value::as_str)
            != Some("true")
    });
    Ok(objects)
}

fn list<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn join(dir: &str, name: &str) -> String {
    let name = name.trim_start_matches("./");
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn group_of(object: &Value) -> &str {
    str_of(object, "apiVersion")
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("")
}

/// Whether `object` matches a Kustomize selector (`group`, `version`, `kind`, `name`,
/// `namespace`; empty fields match anything).
fn selected(object: &Value, selector: &Value) -> bool {
    let meta = &object["metadata"];
    let version = str_of(object, "apiVersion")
        .rsplit('/')
        .next()
        .unwrap_or("");
    [
        ("group", group_of(object)),
        ("version", version),
        ("kind", str_of(object, "kind")),
        ("name", str_of(meta, "name")),
        ("namespace", str_of(meta, "namespace")),
    ]
    .iter()
    .all(
        |(field, actual)| match selector.get(*field).and_then(Value::as_str) {
            None | Some("") => true,
            Some(wanted) => wanted == *actual,
        },
    )
}

fn apply_patch(
    dir: &str,
    files: &[(String, String)],
    objects: &mut [Value],
    patch: &Value,
) -> Result<(), String> {
    let text = match (patch.get("patch"), patch.get("path")) {
        (Some(Value::String(p)), _) => p.clone(),
        (_, Some(Value::String(path))) => {
            let full = join(dir, path);
            files
                .iter()
                .find(|(f, _)| *f == full)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| format!("patch file {full} does not exist"))?
        }
        _ => return Err(format!("a patch without patch or path: {patch}")),
    };
    let body: Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("trouble configuring builtin PatchTransformer: {e}"))?;
    let target = patch.get("target").cloned();
    match body {
        Value::Array(ops) => {
            let Some(target) = target else {
                return Err(
                    "trouble configuring builtin PatchTransformer: must specify a target for JSON patch"
                        .into(),
                );
            };
            let ops: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                .map_err(|e| format!("trouble configuring builtin PatchTransformer: {e}"))?;
            for object in objects.iter_mut().filter(|o| selected(o, &target)) {
                json_patch::patch(object, &ops).map_err(|e| {
                    format!(
                        "unable to apply JSON patch to {}/{}: {e}",
                        str_of(object, "kind"),
                        str_of(&object["metadata"], "name")
                    )
                })?;
            }
        }
        Value::Object(_) => {
            // A strategic-merge patch: the lab merges it as an RFC 7386 merge patch (the same
            // for the maps and scalars the tree patches).
            let target = target.unwrap_or_else(
                || serde_json::json!({"kind": body["kind"], "name": body["metadata"]["name"]}),
            );
            for object in objects.iter_mut().filter(|o| selected(o, &target)) {
                json_patch::merge(object, &body);
            }
        }
        other => return Err(format!("a patch that is neither a list nor a map: {other}")),
    }
    Ok(())
}

/// The path segments of a Kustomize `fieldPath` (`spec.source.repoURL`, `spec.list.0`).
fn segments(field_path: &str) -> Vec<&str> {
    field_path.split('.').filter(|s| !s.is_empty()).collect()
}

fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => v.get(*seg),
    })
}

fn set_path(v: &mut Value, path: &[&str], value: Value, create: bool) -> Result<bool, String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(false);
    };
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return Ok(false),
            },
            Value::Object(m) => {
                if !m.contains_key(*seg) {
                    if !create {
                        return Ok(false);
                    }
                    m.insert((*seg).to_string(), Value::Object(Default::default()));
                }
                m.get_mut(*seg).expect("present")
            }
            _ => return Err(format!("fieldPath segment {seg} is not a map")),
        };
    }
    match cur {
        Value::Object(m) => {
            if !m.contains_key(*last) && !create {
                return Ok(false);
            }
            m.insert((*last).to_string(), value);
            Ok(true)
        }
        Value::Array(a) => match last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(slot) => {
                *slot = value;
                Ok(true)
            }
            None => Ok(false),
        },
        _ => Err(format!("fieldPath segment {last} is not in a map")),
    }
}

fn replace(objects: &mut [Value], replacement: &Value) -> Result<(), String> {
    let source = &replacement["source"];
    let field = match str_of(source, "fieldPath") {
        "" => "metadata.name",
        f => f,
    };
    let matches: Vec<&Value> = objects.iter().filter(|o| selected(o, source)).collect();
    let value = match matches.as_slice() {
        [one] => get_path(one, &segments(field)).cloned().ok_or_else(|| {
            format!("fieldPath `{field}` is missing for replacement source {source}")
        })?,
        [] => return Err(format!("nothing selected by replacement source {source}")),
        _ => {
            return Err(format!(
                "multiple matches for selector {source} in a replacement"
            ));
        }
    };
    for target in list(replacement, "targets") {
        let select = &target["select"];
        let rejects: Vec<&Value> = list(target, "reject").collect();
        let options = &target["options"];
        let create = options.get("create") == Some(&Value::Bool(true));
        let delimiter = str_of(options, "delimiter");
        let index = options.get("index").and_then(Value::as_i64).unwrap_or(0);
        for object in objects
            .iter_mut()
            .filter(|o| selected(o, select) && !rejects.iter().any(|r| selected(o, r)))
        {
            for path in list(target, "fieldPaths").filter_map(Value::as_str) {
                let segs = segments(path);
                let new = if delimiter.is_empty() {
                    value.clone()
                } else {
                    // kustomize splits the target's value by the delimiter and replaces the
                    // part at `index` (before the first or after the last when out of range).
                    let Some(current) = get_path(object, &segs).and_then(Value::as_str) else {
                        continue;
                    };
                    let mut parts: Vec<String> =
                        current.split(delimiter).map(str::to_string).collect();
                    let with = value.as_str().unwrap_or_default().to_string();
                    if index < 0 {
                        parts.insert(0, with);
                    } else if index as usize >= parts.len() {
                        parts.push(with);
                    } else {
                        parts[index as usize] = with;
                    }
                    Value::String(parts.join(delimiter))
                };
                set_path(object, &segs, new, create)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn files() -> Vec<(String, String)> {
        vec![
            (
                "t/apps/source.yaml".into(),
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  annotations:\n    config.kubernetes.io/local-config: 'true'\ndata:\n  repoURL: ''\n  path: gitops\n".into(),
            ),
            (
                "t/apps/a.yaml".into(),
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: a\nspec:\n  source:\n    path: gitops/platform/a\n".into(),
            ),
        ]
    }

    fn kustomization() -> Value {
        json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["source.yaml", "a.yaml"],
            "replacements": [
                {"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.repoURL"},
                 "targets": [{"select": {"kind": "Application"}, "fieldPaths": ["spec.source.repoURL"], "options": {"create": true}}]},
                {"source": {"kind": "ConfigMap", "name": "src", "fieldPath": "data.path"},
                 "targets": [{"select": {"kind": "Application"}, "fieldPaths": ["spec.source.path"], "options": {"delimiter": "/", "index": 0}}]},
            ],
        })
    }

    #[test]
    fn patches_run_before_replacements_and_local_config_is_dropped() {
        let patch = json!({
            "target": {"kind": "ConfigMap", "name": "src"},
            "patch": r#"[{"op":"replace","path":"/data/repoURL","value":"http://127.0.0.1:9/x.git"},{"op":"replace","path":"/data/path","value":"deploy/gitops"}]"#,
        });
        let out = render("t/apps", &files(), &kustomization(), &[patch]).unwrap();
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            out[0]["spec"]["source"]["repoURL"],
            "http://127.0.0.1:9/x.git"
        );
        assert_eq!(out[0]["spec"]["source"]["path"], "deploy/gitops/platform/a");
    }

    #[test]
    fn unknown_fields_missing_files_and_untargeted_json_patches_are_refused() {
        let mut k = kustomization();
        k["namePrefix"] = json!("x-");
        assert!(
            render("t/apps", &files(), &k, &[])
                .unwrap_err()
                .contains("namePrefix")
        );
        let mut k = kustomization();
        k["resources"] = json!(["missing.yaml"]);
        assert!(render("t/apps", &files(), &k, &[]).is_err());
        let bad = json!({"patch": "[{\"op\":\"remove\",\"path\":\"/data\"}]"});
        assert!(render("t/apps", &files(), &kustomization(), &[bad]).is_err());
    }
}
