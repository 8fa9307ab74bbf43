//! The write verbs, as the API server's generic registry does them: create, update (with
//! optimistic concurrency), patch (JSON merge, strategic merge, JSON patch and server-side
//! apply with field ownership and conflicts), delete (finalizers, namespaces that terminate),
//! and the `/status` subresource. Shared by the HTTP handlers and the simulated controllers,
//! so that controllers obey the same rules as clients.
//!
//! Validation is what the real server does for every object: `kind`/`apiVersion` matching the
//! URL, name required and well-formed (DNS-1123 subdomain, label or path segment, per type),
//! namespaces that must exist and must not be terminating, immutable Job templates, resource
//! versions that must match. Object schemas are not validated (custom resources are stored as
//! sent, like a CRD with `x-kubernetes-preserve-unknown-fields`).

use base64::Engine;
use serde_json::{Map, Value, json};

use super::discovery::ResourceType;
use super::fields::{self, FieldPath, FieldSet, Part};
use super::objects;
use super::server::Shared;
use super::status::ApiError;
use super::store::{Gvr, StoreError};

/// How many times a write retries when the object changed between its read and its write
/// (writes without a client-given resource version).
const CAS_RETRIES: usize = 16;

/// Namespaces that cannot be deleted.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The kind of a PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchKind {
    /// The patch type of a `Content-Type`.
    pub fn from_content_type(content_type: &str) -> Option<PatchKind> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Who writes and how.
#[derive(Debug, Clone)]
pub(crate) struct WriteOptions {
    /// The field manager (`fieldManager`, else the client's User-Agent before the `/`).
    pub manager: String,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// `force=true` (server-side apply only): take over conflicting fields.
    pub force: bool,
    /// `status` for the `/status` subresource.
    pub subresource: Option<String>,
}

impl WriteOptions {
    /// A write by `manager` on the main resource.
    pub fn by(manager: &str) -> WriteOptions {
        WriteOptions {
            manager: manager.to_string(),
            dry_run: false,
            force: false,
            subresource: None,
        }
    }

    fn status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }

    fn part(&self, resource: &ResourceType) -> Part {
        if self.status() {
            Part::Status
        } else if resource.status_subresource {
            Part::Main
        } else {
            Part::All
        }
    }
}

/// What a delete did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// The object is being deleted (finalizers, or a terminating namespace).
    Pending(Value),
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn name_of(object: &Value) -> &str {
    str_at(object, "/metadata/name")
}

// --- Validation ---

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Names of RBAC objects only need to be valid path segments.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('%')
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// `<Kind> "<name>" is invalid: <field>: <detail>` (422 Invalid).
pub(crate) fn invalid(resource: &ResourceType, name: &str, field: &str, detail: &str) -> ApiError {
    let mut error = ApiError::invalid(format!(
        "{} \"{name}\" is invalid: {field}: {detail}",
        resource.qualified_kind()
    ));
    let reason = if detail.starts_with("Required value") {
        "FieldValueRequired"
    } else if detail.starts_with("Forbidden") {
        "FieldValueForbidden"
    } else {
        "FieldValueInvalid"
    };
    let mut details = json!({
        "name": name,
        "kind": resource.kind,
        "causes": [{"reason": reason, "message": detail, "field": field}],
    });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    error.details = details;
    error
}

fn validate_name(resource: &ResourceType, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(invalid(
            resource,
            name,
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    let (ok, message) = match resource.resource {
        "namespaces" | "services" => (is_dns_label(name), LABEL_MSG),
        "clusterroles" | "clusterrolebindings" | "roles" | "rolebindings" => (
            is_path_segment(name),
            "may not contain '/' or '%', and may not be '.' or '..'",
        ),
        _ => (is_dns_subdomain(name), SUBDOMAIN_MSG),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            resource,
            name,
            "metadata.name",
            &format!("Invalid value: \"{name}\": {message}"),
        ))
    }
}

/// Checks `kind`/`apiVersion`, the namespace and the name of a request body, and fills in
/// what the server fills in (the URL's namespace, a generated name).
fn check_body(
    resource: &ResourceType,
    namespace: &str,
    url_name: Option<&str>,
    body: &mut Value,
) -> Result<(), ApiError> {
    let Some(map) = body.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{body}'"
        )));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            Value::Object(map.clone())
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in '{}'",
            Value::Object(map.clone())
        )));
    }
    if api_version != resource.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            resource.api_version()
        )));
    }
    if kind != resource.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            resource.kind
        )));
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return Err(ApiError::bad_request("metadata must be an object"));
    };
    if resource.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(namespace));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match url_name {
        Some(url_name) if !name.is_empty() && name != url_name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({url_name})"
            )));
        }
        Some(url_name) => {
            meta.insert("name".into(), json!(url_name));
        }
        None if name.is_empty() => {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                let suffix: String = (0..5)
                    .map(|_| {
                        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
                        alphabet[rand::random_range(0..alphabet.len())] as char
                    })
                    .collect();
                let generated = format!("{prefix}{suffix}");
                meta.insert("name".into(), json!(generated));
            }
        }
        None => {}
    }
    let name = name_of(body).to_string();
    validate_name(resource, &name)
}

/// The namespace of a namespaced write must exist and not be terminating.
fn check_namespace(
    shared: &Shared,
    resource: &ResourceType,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    if !resource.namespaced {
        return Ok(());
    }
    let namespaces = Gvr::new("", "v1", "namespaces");
    match shared.store.get(&namespaces, "", namespace) {
        None => Err(ApiError::namespace_not_found(namespace)),
        Some(ns) if ns.pointer("/metadata/deletionTimestamp").is_some() => {
            Err(ApiError::namespace_terminating(resource, name, namespace))
        }
        Some(_) => Ok(()),
    }
}

// --- What the server sets ---

/// Type-specific defaults and server-owned fields, on create (`old` is `None`) and update.
fn prepare(
    resource: &ResourceType,
    old: Option<&Value>,
    object: &mut Value,
) -> Result<(), ApiError> {
    let name = name_of(object).to_string();
    match (resource.group, resource.resource) {
        ("", "secrets") => {
            if let Some(string_data) = object
                .as_object_mut()
                .and_then(|m| m.remove("stringData"))
                .and_then(|v| v.as_object().cloned())
            {
                let data = object["data"].as_object().cloned().unwrap_or_default();
                let mut data = data;
                for (k, v) in string_data {
                    let text = v.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
                object["data"] = Value::Object(data);
            }
            if object.get("type").is_none_or(Value::is_null) {
                object["type"] = json!("Opaque");
            }
            if let Some(old) = old
                && old["type"] != object["type"]
            {
                return Err(invalid(
                    resource,
                    &name,
                    "type",
                    "Invalid value: field is immutable",
                ));
            }
        }
        ("", "namespaces") => {
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            if object.pointer("/spec/finalizers").is_none() {
                object["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if object.pointer("/status/phase").is_none() {
                object["status"]["phase"] = json!("Active");
            }
        }
        ("apps", "deployments" | "statefulsets") if object.pointer("/spec/replicas").is_none() => {
            object["spec"]["replicas"] = json!(1);
        }
        ("batch", "jobs") => {
            for (field, default) in [("completions", 1), ("parallelism", 1), ("backoffLimit", 6)] {
                if object.pointer(&format!("/spec/{field}")).is_none() {
                    object["spec"][field] = json!(default);
                }
            }
            if let Some(old) = old
                && old.pointer("/spec/template") != object.pointer("/spec/template")
            {
                return Err(invalid(
                    resource,
                    &name,
                    "spec.template",
                    "Invalid value: field is immutable",
                ));
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let group = str_at(object, "/spec/group");
            let plural = str_at(object, "/spec/names/plural");
            if group.is_empty() {
                return Err(invalid(resource, &name, "spec.group", "Required value"));
            }
            if plural.is_empty() || str_at(object, "/spec/names/kind").is_empty() {
                return Err(invalid(resource, &name, "spec.names", "Required value"));
            }
            if name != format!("{plural}.{group}") {
                return Err(invalid(
                    resource,
                    &name,
                    "metadata.name",
                    &format!(
                        "Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
                    ),
                ));
            }
            if object["spec"]["versions"]
                .as_array()
                .is_none_or(|v| v.is_empty())
            {
                return Err(invalid(
                    resource,
                    &name,
                    "spec.versions",
                    "Invalid value: must have exactly one version marked as storage version",
                ));
            }
            let now = objects::now_rfc3339();
            let stored: Vec<Value> = object["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect();
            let kept_time = |kind: &str| {
                old.and_then(|o| o.pointer("/status/conditions"))
                    .and_then(Value::as_array)
                    .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
                    .map(|c| c["lastTransitionTime"].clone())
                    .unwrap_or_else(|| json!(now))
            };
            object["status"] = json!({
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": kept_time("NamesAccepted")},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": kept_time("Established")},
                ],
                "acceptedNames": object["spec"]["names"].clone(),
                "storedVersions": stored,
            });
        }
        _ => {}
    }
    if resource.generation {
        let generation = match old {
            None => 1,
            Some(old) => {
                let before = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if without_meta_and_status(old) != without_meta_and_status(object) {
                    before + 1
                } else {
                    before
                }
            }
        };
        object["metadata"]["generation"] = json!(generation);
    }
    Ok(())
}

fn without_meta_and_status(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

// --- Managed fields ---

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Value,
    subresource: Option<String>,
    fields: FieldSet,
}

fn read_entries(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].clone(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: fields::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields::to_fields_v1(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// A manager as SSA conflict messages name it: `"cto"`, or `"kubectl-edit" using v1 at
/// 2025-01-02T03:04:05Z` for an `Update`.
fn describe_manager(entry: &Entry) -> String {
    let mut text = format!("{:?}", entry.manager);
    if let Some(sub) = &entry.subresource {
        text.push_str(&format!(" with subresource {sub:?}"));
    }
    if entry.operation == "Update" {
        text.push_str(&format!(" using {}", entry.api_version));
        if let Some(time) = entry.time.as_str() {
            text.push_str(&format!(" at {time}"));
        }
    }
    text
}

/// Whether two paths overlap (one is a prefix of the other).
fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Records an `Update` by `options.manager` that turned `old` into `new`: the changed fields
/// become the manager's and no one else's.
fn record_update(
    resource: &ResourceType,
    old: Option<&Value>,
    new: &mut Value,
    options: &WriteOptions,
) {
    let part = options.part(resource);
    let mut entries = old.map(read_entries).unwrap_or_default();
    let after = fields::leaf_paths(new, part);
    let before = old.map(|o| fields::leaf_paths(o, part)).unwrap_or_default();
    let changed: FieldSet = after
        .iter()
        .filter(|p| old.and_then(|o| fields::get_path(o, p)) != fields::get_path(new, p))
        .cloned()
        .collect();
    let removed: Vec<&FieldPath> = before.iter().filter(|p| !after.contains(*p)).collect();
    if changed.is_empty() && removed.is_empty() {
        write_entries(new, &entries);
        return;
    }
    for entry in &mut entries {
        entry
            .fields
            .retain(|f| !changed.iter().any(|c| overlaps(c, f)) && !removed.contains(&f));
    }
    let api_version = resource.api_version();
    let subresource = options.subresource.clone();
    match entries.iter_mut().find(|e| {
        e.manager == options.manager && e.operation == "Update" && e.subresource == subresource
    }) {
        Some(entry) => {
            entry.fields.extend(changed);
            entry.time = json!(objects::now_rfc3339());
        }
        None => entries.push(Entry {
            manager: options.manager.clone(),
            operation: "Update".into(),
            api_version,
            time: json!(objects::now_rfc3339()),
            subresource,
            fields: changed,
        }),
    }
    write_entries(new, &entries);
}

/// The part of an applied configuration a write takes: no identity, and `status` only for
/// `/status` (and types without a status subresource).
fn restrict(config: &Value, part: Part) -> Value {
    let mut out = Map::new();
    for (k, v) in config.as_object().into_iter().flatten() {
        match (k.as_str(), part) {
            ("apiVersion" | "kind", _) => {}
            ("status", Part::Main) => {}
            ("status", _) => {
                out.insert(k.clone(), v.clone());
            }
            ("metadata", Part::Status) => {}
            ("metadata", _) => {
                let mut meta = Map::new();
                for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(x) = v.get(field) {
                        meta.insert(field.into(), x.clone());
                    }
                }
                out.insert(k.clone(), Value::Object(meta));
            }
            (_, Part::Status) => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Server-side apply of `config` onto `old`: the new object, or a 409 listing the conflicts.
fn apply_onto(
    resource: &ResourceType,
    old: &Value,
    config: &Value,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    let part = options.part(resource);
    let applied = fields::leaf_paths(config, part);
    let mut entries = read_entries(old);
    let mine = |e: &Entry| {
        e.manager == options.manager
            && e.operation == "Apply"
            && e.subresource == options.subresource
    };
    // Conflicts: fields another manager owns, set to a different value.
    // (index of the owning entry, the owned path)
    let mut conflicts: Vec<(usize, FieldPath)> = Vec::new();
    for (index, entry) in entries.iter().enumerate().filter(|(_, e)| !mine(e)) {
        for owned in &entry.fields {
            for path in applied.iter().filter(|p| overlaps(p, owned)) {
                let conflicting = if path.len() == owned.len() {
                    fields::get_path(config, path) != fields::get_path(old, path)
                } else if path.len() < owned.len() {
                    // An ancestor of the owned field: only replacing the map conflicts (an
                    // empty map merges).
                    !fields::get_path(config, path).is_some_and(Value::is_object)
                } else {
                    // Below a field someone else owns as a whole.
                    !fields::get_path(old, owned).is_some_and(Value::is_object)
                        && fields::get_path(config, path) != fields::get_path(old, path)
                };
                if conflicting {
                    conflicts.push((index, owned.clone()));
                    break;
                }
            }
        }
    }
    if !conflicts.is_empty() && !options.force {
        let described: Vec<(String, String)> = conflicts
            .iter()
            .map(|(index, path)| {
                (
                    describe_manager(&entries[*index]),
                    fields::display_path(path),
                )
            })
            .collect();
        return Err(ApiError::apply_conflict(&described));
    }
    for (index, path) in &conflicts {
        entries[*index].fields.remove(path);
    }
    // Fields this manager applied before and no longer does, and no one else owns, go away.
    let previously: FieldSet = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut new = old.clone();
    for path in previously.iter().filter(|p| !applied.contains(*p)) {
        let shared = entries
            .iter()
            .filter(|e| !mine(e))
            .any(|e| e.fields.iter().any(|f| overlaps(f, path)));
        if !shared {
            fields::remove_path(&mut new, path);
        }
    }
    fields::merge_apply(&mut new, &restrict(config, part));
    let now = json!(objects::now_rfc3339());
    match entries.iter_mut().find(|e| mine(e)) {
        Some(entry) => {
            if entry.fields != applied {
                entry.fields = applied;
                entry.time = now;
            }
        }
        None => entries.push(Entry {
            manager: options.manager.clone(),
            operation: "Apply".into(),
            api_version: resource.api_version(),
            time: now,
            subresource: options.subresource.clone(),
            fields: applied,
        }),
    }
    write_entries(&mut new, &entries);
    Ok(new)
}

// --- The verbs ---

impl Shared {
    /// `POST`: creates `body` in `namespace`.
    pub(crate) fn create(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        mut body: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_body(resource, namespace, None, &mut body)?;
        self.create_checked(resource, namespace, body, options, "Update")
    }

    fn create_checked(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        mut body: Value,
        options: &WriteOptions,
        operation: &str,
    ) -> Result<Value, ApiError> {
        let name = name_of(&body).to_string();
        check_namespace(self, resource, namespace, &name)?;
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
                "managedFields",
            ] {
                meta.remove(field);
            }
        }
        if resource.status_subresource
            && resource.resource != "namespaces"
            && let Some(map) = body.as_object_mut()
        {
            map.remove("status");
        }
        // The manager owns what it sent, not what the server defaults (a namespace's
        // `kubernetes.io/metadata.name` label, a Job's `backoffLimit`, ...): recording the
        // defaults would make the next identical apply rewrite managedFields.
        let part = options.part(resource);
        let sent = fields::leaf_paths(&body, part);
        prepare(resource, None, &mut body)?;
        let entry = Entry {
            manager: options.manager.clone(),
            operation: operation.into(),
            api_version: resource.api_version(),
            time: json!(objects::now_rfc3339()),
            subresource: None,
            fields: sent,
        };
        write_entries(&mut body, &[entry]);
        if options.dry_run {
            body["metadata"]["creationTimestamp"] = json!(objects::now_rfc3339());
            body["metadata"]["uid"] = json!(super::store::new_uid());
            return Ok(body);
        }
        let created = self
            .store
            .create(
                &resource.gvr(),
                if resource.namespaced { namespace } else { "" },
                body,
            )
            .map_err(|e| match e {
                StoreError::AlreadyExists => ApiError::already_exists(resource, &name),
                other => ApiError::internal(format!("{other:?}")),
            })?;
        self.after_write(resource, &created);
        Ok(created)
    }

    /// `PUT`: replaces the object (or, with `options.subresource = status`, its status).
    pub(crate) fn update(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        mut body: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        check_body(resource, namespace, Some(name), &mut body)?;
        let gvr = resource.gvr();
        let ns = if resource.namespaced { namespace } else { "" };
        let old = self
            .store
            .get(&gvr, ns, name)
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let expected = str_at(&body, "/metadata/resourceVersion").to_string();
        if expected.is_empty() && resource.custom {
            return Err(invalid(
                resource,
                name,
                "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update",
            ));
        }
        if !expected.is_empty() && expected != str_at(&old, "/metadata/resourceVersion") {
            return Err(ApiError::conflict(resource, name));
        }
        let new = if options.status() {
            let mut new = old.clone();
            new["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            if new["status"].is_null() {
                new.as_object_mut().map(|m| m.remove("status"));
            }
            new
        } else {
            let mut new = body;
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                match old.pointer(&format!("/metadata/{field}")) {
                    Some(v) => new["metadata"][field] = v.clone(),
                    None => {
                        new["metadata"].as_object_mut().map(|m| m.remove(field));
                    }
                }
            }
            if new.pointer("/metadata/managedFields").is_none()
                && let Some(mf) = old.pointer("/metadata/managedFields")
            {
                new["metadata"]["managedFields"] = mf.clone();
            }
            if resource.status_subresource {
                match old.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        new.as_object_mut().map(|m| m.remove("status"));
                    }
                }
            }
            new
        };
        self.commit_update(resource, ns, &old, new, options, true)
    }

    /// Validates, records managed fields and stores `new` in place of `old` (which must still
    /// be the stored version, else 409). A write that changes nothing is a no-op.
    fn commit_update(
        &self,
        resource: &'static ResourceType,
        ns: &str,
        old: &Value,
        mut new: Value,
        options: &WriteOptions,
        record: bool,
    ) -> Result<Value, ApiError> {
        let name = name_of(old).to_string();
        prepare(resource, Some(old), &mut new)?;
        if record {
            record_update(resource, Some(old), &mut new, options);
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == *old || options.dry_run {
            return Ok(if options.dry_run { new } else { old.clone() });
        }
        // The last finalizer of an object being deleted is gone: delete it.
        if new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            let stored = self
                .store
                .update(&resource.gvr(), ns, new)
                .map_err(|e| self.store_write_error(e, resource, &name))?;
            let gone = self
                .store
                .delete(&resource.gvr(), ns, &name)
                .map_err(|e| self.store_write_error(e, resource, &name))?;
            self.after_delete(resource, &gone);
            return Ok(stored);
        }
        let stored = self
            .store
            .update(&resource.gvr(), ns, new)
            .map_err(|e| self.store_write_error(e, resource, &name))?;
        self.after_write(resource, &stored);
        Ok(stored)
    }

    fn store_write_error(
        &self,
        error: StoreError,
        resource: &ResourceType,
        name: &str,
    ) -> ApiError {
        match error {
            StoreError::NotFound => ApiError::not_found(resource, name),
            StoreError::Conflict => ApiError::conflict(resource, name),
            StoreError::AlreadyExists => ApiError::already_exists(resource, name),
            other => ApiError::internal(format!("{other:?}")),
        }
    }

    /// `PATCH`. Returns the object and whether it was created (server-side apply of a new
    /// object).
    pub(crate) fn patch(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        options: &WriteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let gvr = resource.gvr();
        let ns = if resource.namespaced { namespace } else { "" };
        let mut config = patch.clone();
        if kind == PatchKind::Apply {
            if options.manager.is_empty() {
                return Err(ApiError::bad_request(
                    "PATCH, fieldManager: Required value: is required for apply patch",
                ));
            }
            check_body(resource, namespace, Some(name), &mut config)?;
        } else if options.force {
            return Err(ApiError::bad_request(
                "force: Forbidden: may not be specified for non-apply patch",
            ));
        }
        for _ in 0..CAS_RETRIES {
            let Some(old) = self.store.get(&gvr, ns, name) else {
                if kind != PatchKind::Apply {
                    return Err(ApiError::not_found(resource, name));
                }
                if options.status() {
                    return Err(ApiError::not_found(resource, name));
                }
                let mut body = config.clone();
                if resource.status_subresource {
                    body.as_object_mut().map(|m| m.remove("status"));
                }
                match self.create_checked(resource, namespace, body, options, "Apply") {
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    other => return other.map(|o| (o, true)),
                }
            };
            let expected = str_at(&config, "/metadata/resourceVersion");
            if !expected.is_empty() && expected != str_at(&old, "/metadata/resourceVersion") {
                return Err(ApiError::conflict(resource, name));
            }
            let (new, record) = match kind {
                PatchKind::Apply => (apply_onto(resource, &old, &config, options)?, false),
                _ => {
                    let mut patched = old.clone();
                    let result = match kind {
                        PatchKind::Merge => {
                            fields::merge_patch(&mut patched, patch);
                            Ok(())
                        }
                        PatchKind::Strategic => fields::strategic_merge_patch(&mut patched, patch),
                        _ => fields::json_patch(&mut patched, patch),
                    };
                    result.map_err(ApiError::unprocessable_patch)?;
                    if name_of(&patched) != name {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            name_of(&patched)
                        )));
                    }
                    for field in [
                        "uid",
                        "creationTimestamp",
                        "deletionTimestamp",
                        "generation",
                        "namespace",
                    ] {
                        match old.pointer(&format!("/metadata/{field}")) {
                            Some(v) => patched["metadata"][field] = v.clone(),
                            None => {
                                patched["metadata"].as_object_mut().map(|m| m.remove(field));
                            }
                        }
                    }
                    let new = if options.status() {
                        let mut new = old.clone();
                        match patched.get("status") {
                            Some(s) => new["status"] = s.clone(),
                            None => {
                                new.as_object_mut().map(|m| m.remove("status"));
                            }
                        }
                        new
                    } else if resource.status_subresource {
                        let mut new = patched;
                        match old.get("status") {
                            Some(s) => new["status"] = s.clone(),
                            None => {
                                new.as_object_mut().map(|m| m.remove("status"));
                            }
                        }
                        new
                    } else {
                        patched
                    };
                    (new, true)
                }
            };
            match self.commit_update(resource, ns, &old, new, options, record) {
                // Someone wrote in between: read again and redo the patch.
                Err(e)
                    if e.code == 409
                        && e.reason == "Conflict"
                        && !e.message.starts_with("Apply failed") =>
                {
                    continue;
                }
                other => return other.map(|o| (o, false)),
            }
        }
        Err(ApiError::conflict(resource, name))
    }

    /// `DELETE`.
    pub(crate) fn delete(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        preconditions: &Value,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        let gvr = resource.gvr();
        let ns = if resource.namespaced { namespace } else { "" };
        if resource.resource == "namespaces"
            && resource.group.is_empty()
            && PROTECTED_NAMESPACES.contains(&name)
        {
            return Err(ApiError::forbidden(
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
                json!({"name": name, "kind": "namespaces"}),
            ));
        }
        for _ in 0..CAS_RETRIES {
            let old = self
                .store
                .get(&gvr, ns, name)
                .ok_or_else(|| ApiError::not_found(resource, name))?;
            if let Some(uid) = preconditions.get("uid").and_then(Value::as_str)
                && uid != str_at(&old, "/metadata/uid")
            {
                return Err(ApiError::conflict_message(
                    resource,
                    name,
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        str_at(&old, "/metadata/uid")
                    ),
                ));
            }
            if let Some(rv) = preconditions.get("resourceVersion").and_then(Value::as_str)
                && rv != str_at(&old, "/metadata/resourceVersion")
            {
                return Err(ApiError::conflict_message(
                    resource,
                    name,
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        str_at(&old, "/metadata/resourceVersion")
                    ),
                ));
            }
            let finalizers = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let namespace = resource.resource == "namespaces" && resource.group.is_empty();
            if finalizers || namespace {
                if old.pointer("/metadata/deletionTimestamp").is_some() || dry_run {
                    return Ok(Deleted::Pending(old));
                }
                let mut new = old.clone();
                new["metadata"]["deletionTimestamp"] = json!(objects::now_rfc3339());
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if namespace {
                    new["status"]["phase"] = json!("Terminating");
                }
                match self.store.update(&gvr, ns, new) {
                    Ok(stored) => return Ok(Deleted::Pending(stored)),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(self.store_write_error(e, resource, name)),
                }
            }
            if dry_run {
                return Ok(Deleted::Gone(old));
            }
            let gone = self
                .store
                .delete(&gvr, ns, name)
                .map_err(|e| self.store_write_error(e, resource, name))?;
            self.after_delete(resource, &gone);
            return Ok(Deleted::Gone(gone));
        }
        Err(ApiError::conflict(resource, name))
    }

    /// Server-side apply by a lab component (Helm, Argo CD): forced, so the component owns
    /// what it applies.
    pub(crate) fn apply_as(&self, manager: &str, object: &Value) -> Result<Value, ApiError> {
        let api_version = str_at(object, "/apiVersion");
        let kind = str_at(object, "/kind");
        let resource = self.registry.find_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no matches for kind \"{kind}\" in version \"{api_version}\""
            ))
        })?;
        let namespace = str_at(object, "/metadata/namespace").to_string();
        let name = name_of(object).to_string();
        let options = WriteOptions {
            force: true,
            ..WriteOptions::by(manager)
        };
        self.patch(
            resource,
            &namespace,
            &name,
            PatchKind::Apply,
            object,
            &options,
        )
        .map(|(o, _)| o)
    }

    /// A controller's write of an object's status (no managed-fields bookkeeping), retried
    /// against concurrent writes. `change` gets the current object and edits its status;
    /// returns the stored object, or `None` when the object is gone.
    pub(crate) fn write_status(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        change: impl Fn(&mut Value),
    ) -> Option<Value> {
        let gvr = resource.gvr();
        for _ in 0..CAS_RETRIES {
            let old = self.store.get(&gvr, namespace, name)?;
            let mut new = old.clone();
            change(&mut new);
            if new == old {
                return Some(old);
            }
            match self.store.update(&gvr, namespace, new) {
                Ok(stored) => {
                    self.after_write(resource, &stored);
                    return Some(stored);
                }
                Err(StoreError::Conflict) => continue,
                Err(_) => return None,
            }
        }
        None
    }

    /// Side effects of a stored write: a CustomResourceDefinition (re)registers its types.
    fn after_write(&self, resource: &ResourceType, object: &Value) {
        if resource.group == "apiextensions.k8s.io"
            && resource.resource == "customresourcedefinitions"
        {
            self.registry.register_crd(object);
        }
    }

    /// Side effects of a delete: a CustomResourceDefinition takes its objects with it.
    fn after_delete(&self, resource: &ResourceType, object: &Value) {
        if resource.group == "apiextensions.k8s.io"
            && resource.resource == "customresourcedefinitions"
        {
            let group = str_at(object, "/spec/group");
            let plural = str_at(object, "/spec/names/plural");
            for gvr in self.store.resources() {
                if gvr.group == group && gvr.resource == plural {
                    for item in self.store.list(&gvr, None).0 {
                        let _ = self.store.delete(
                            &gvr,
                            str_at(&item, "/metadata/namespace"),
                            name_of(&item),
                        );
                    }
                }
            }
            self.registry.unregister_crd(group, plural);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_per_type() {
        assert!(is_dns_subdomain("argocd-server.v1"));
        assert!(!is_dns_subdomain("Bad_Name"));
        assert!(is_dns_label("kube-system"));
        assert!(!is_dns_label("a.b"));
        assert!(is_path_segment("system:controller:x"));
        let cm = super::super::discovery::RESOURCES
            .iter()
            .find(|r| r.resource == "configmaps")
            .unwrap();
        let error = validate_name(cm, "Bad_Name").unwrap_err();
        assert_eq!(error.code, 422);
        assert!(
            error
                .message
                .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value")
        );
    }
}
