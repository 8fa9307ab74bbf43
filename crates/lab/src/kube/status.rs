//! API errors as the real API server writes them: a `v1` `Status` object with `status:
//! Failure`, a machine-readable `reason`, the HTTP `code` and, where the server gives them,
//! `details` (name, group, kind, causes, retryAfterSeconds).

use serde_json::{Value, json};

use super::discovery::ResourceType;

/// An error response.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: json!({}),
        }
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.details.as_object().is_some_and(|d| !d.is_empty()) {
            status["details"] = self.details.clone();
        }
        status
    }

    fn with_resource(mut self, resource: &ResourceType, name: Option<&str>) -> ApiError {
        let mut details = json!({"kind": resource.resource});
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        if let Some(name) = name {
            details["name"] = json!(name);
        }
        self.details = details;
        self
    }

    /// `nodes "x" not found`.
    pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .with_resource(resource, Some(name))
    }

    /// An unknown resource or path under `/api` or `/apis`.
    pub fn no_such_resource() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// A verb the resource does not support (here).
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// A malformed request (bad selector, bad parameter).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// Parameters that fail validation.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }

    /// No valid credentials.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// Authenticated (or anonymous) but not allowed.
    pub fn forbidden(message: String, details: Value) -> ApiError {
        ApiError::new(403, "Forbidden", message).with_details(details)
    }

    /// The client accepts none of the media types the lab can write.
    pub fn not_acceptable() -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            // The real server also writes YAML and protobuf; the lab only JSON.
            "only the following media types are accepted: application/json",
        )
    }

    /// A resource version from before the history window (`410 Gone`).
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// A resource version the store has not reached.
    pub fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
        ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }))
    }

    /// `configmaps "x" already exists`.
    pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .with_resource(resource, Some(name))
    }

    /// A write based on a stale resource version.
    pub fn conflict(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::conflict_message(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again".into(),
        )
    }

    /// `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict_message(resource: &ResourceType, name: &str, why: String) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .with_resource(resource, Some(name))
    }

    /// Server-side apply conflicts: `(manager as printed, field path)` pairs, in the real
    /// message shape (`Apply failed with 1 conflict: conflict with "m": .data.a`).
    pub fn apply_conflict(conflicts: &[(String, String)]) -> ApiError {
        let message = if let [(manager, path)] = conflicts {
            format!("Apply failed with 1 conflict: conflict with {manager}: {path}")
        } else {
            let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for manager in managers {
                lines.push(format!("conflicts with {manager}:"));
                for (_, path) in conflicts.iter().filter(|(m, _)| m == manager) {
                    lines.push(format!("- {path}"));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, path)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager}"), "field": path})
            })
            .collect();
        ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }

    /// `namespaces "x" not found` (a namespaced write into a missing namespace).
    pub fn namespace_not_found(namespace: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// A create in a namespace that is being deleted.
    pub fn namespace_terminating(resource: &ResourceType, name: &str, namespace: &str) -> ApiError {
        let mut error = ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                resource.qualified()
            ),
        )
        .with_resource(resource, Some(name));
        error.details["causes"] = json!([{
            "reason": "NamespaceTerminating",
            "message": format!("namespace {namespace} is being terminated"),
            "field": "metadata.namespace",
        }]);
        error
    }

    /// A patch that cannot be applied.
    pub fn unprocessable_patch(why: String) -> ApiError {
        ApiError::new(422, "Invalid", why)
    }

    /// A body in a format the lab does not read.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml{}",
                if content_type.contains("patch") {
                    ", application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                } else {
                    ""
                }
            ),
        )
    }

    /// A body over the 3 MiB the real server accepts.
    pub fn request_too_large() -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// Something the lab cannot do.
    pub fn internal(message: String) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }
}
