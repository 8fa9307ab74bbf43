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

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }
}
