//! Latitude's error envelope, `{"errors":[{"code","status","title","detail","source","meta"}]}`,
//! and the handful of errors the emulated API answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::LabError;

/// One entry of `errors`.
#[derive(Debug, Clone)]
pub(crate) struct ErrorObject {
    pub code: Option<String>,
    pub title: String,
    pub detail: String,
    /// JSON pointer into the request body (`/data/attributes/hostname`).
    pub pointer: Option<String>,
    /// Query parameter at fault (`page[size]`).
    pub parameter: Option<String>,
    pub meta: Value,
}

/// An error response: the HTTP status and one or more error objects.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<ErrorObject>,
}

impl ErrorObject {
    fn new(code: Option<&str>, title: &str, detail: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code: code.map(str::to_owned),
            title: title.into(),
            detail: detail.into(),
            pointer: None,
            parameter: None,
            meta: json!({}),
        }
    }

    /// A `VALIDATION_ERROR` about the body attribute `attribute`.
    pub fn invalid_attribute(attribute: &str, detail: impl Into<String>) -> ErrorObject {
        let mut e = ErrorObject::new(Some("VALIDATION_ERROR"), "Validation Error", detail);
        e.pointer = Some(format!("/data/attributes/{attribute}"));
        e
    }

    /// A `VALIDATION_ERROR` about a body member outside `attributes` (`/data/type`).
    pub fn invalid_member(pointer: &str, detail: impl Into<String>) -> ErrorObject {
        let mut e = ErrorObject::new(Some("VALIDATION_ERROR"), "Validation Error", detail);
        e.pointer = Some(pointer.into());
        e
    }
}

impl ApiError {
    fn one(status: StatusCode, error: ErrorObject) -> ApiError {
        ApiError {
            status,
            errors: vec![error],
        }
    }

    /// 422 `SERVERS_OUT_OF_STOCK`: the plan cannot be deployed at the site now (the code
    /// `latitudesh/terraform-provider-latitudesh`'s acceptance tests recognise,
    /// `isServersOutOfStockError`).
    pub fn out_of_stock(detail: impl Into<String>) -> ApiError {
        let mut e = ErrorObject::new(Some("SERVERS_OUT_OF_STOCK"), "Unprocessable Entity", detail);
        e.pointer = Some("/data/attributes/site".into());
        ApiError::one(StatusCode::UNPROCESSABLE_ENTITY, e)
    }

    /// 404 for a record that does not exist (the exact body of the real API).
    pub fn not_found() -> ApiError {
        ApiError::one(
            StatusCode::NOT_FOUND,
            ErrorObject::new(Some("not_found"), "Error", "Specified Record Not Found"),
        )
    }

    /// 404 for a path that matches no route.
    pub fn no_route(method: &str, path: &str) -> ApiError {
        ApiError::one(
            StatusCode::NOT_FOUND,
            ErrorObject::new(
                Some("not_found"),
                "Error",
                format!("No route matches {method} {path}"),
            ),
        )
    }

    /// 405 for a known path with an unsupported method.
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::one(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorObject::new(
                Some("METHOD_NOT_ALLOWED"),
                "Method Not Allowed",
                format!("{method} is not supported on {path}"),
            ),
        )
    }

    /// 404 answered by `POST /servers/{id}/reinstall` for an unknown server.
    pub fn reinstall_not_found() -> ApiError {
        ApiError::one(
            StatusCode::NOT_FOUND,
            ErrorObject::new(
                Some("REINSTALL_SERVER_NOT_FOUND"),
                "Reinstall Server Not Found",
                "Sorry, we're unable to reinstall",
            ),
        )
    }

    /// 401 for a missing or unknown API key.
    pub fn unauthorized(detail: &str) -> ApiError {
        ApiError::one(
            StatusCode::UNAUTHORIZED,
            ErrorObject::new(Some("UNAUTHORIZED"), "Unauthorized", detail),
        )
    }

    /// 429, exactly as Latitude sends it.
    pub fn rate_limited(retry_after: u64) -> ApiError {
        let mut e = ErrorObject::new(
            Some("RATE_LIMIT_EXCEEDED"),
            "Rate Limit Exceeded",
            "Too many requests. Please slow down and retry.",
        );
        e.meta = json!({ "retry_after": retry_after });
        ApiError::one(StatusCode::TOO_MANY_REQUESTS, e)
    }

    /// 503, as a load balancer in front of the API answers when it is overloaded (an injected
    /// `latitude.5xx` fault).
    pub fn unavailable() -> ApiError {
        ApiError::one(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorObject::new(
                Some("SERVICE_UNAVAILABLE"),
                "Service Unavailable",
                "The service is temporarily unavailable. Please try again later.",
            ),
        )
    }

    /// 400 for a body that is not JSON.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::one(
            StatusCode::BAD_REQUEST,
            ErrorObject::new(Some("BAD_REQUEST"), "Bad Request", detail),
        )
    }

    /// 422 with one or more validation errors.
    pub fn validation(errors: Vec<ErrorObject>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        }
    }

    /// 422 about a query parameter.
    pub fn invalid_parameter(parameter: &str, detail: impl Into<String>) -> ApiError {
        let mut e = ErrorObject::new(Some("VALIDATION_ERROR"), "Validation Error", detail);
        e.parameter = Some(parameter.into());
        ApiError::validation(vec![e])
    }

    /// 500 when the lab itself failed (e.g. it could not save the world).
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::one(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorObject::new(
                Some("INTERNAL_SERVER_ERROR"),
                "Internal Server Error",
                detail,
            ),
        )
    }

    /// The response body.
    pub fn body(&self) -> Value {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|e| {
                let mut object = json!({
                    "code": e.code,
                    "status": self.status.as_str(),
                    "title": e.title,
                    "detail": e.detail,
                    "meta": e.meta,
                });
                let mut source = serde_json::Map::new();
                if let Some(pointer) = &e.pointer {
                    source.insert("pointer".into(), pointer.clone().into());
                }
                if let Some(parameter) = &e.parameter {
                    source.insert("parameter".into(), parameter.clone().into());
                }
                if !source.is_empty() {
                    object["source"] = Value::Object(source);
                }
                object
            })
            .collect();
        json!({ "errors": errors })
    }
}

impl From<LabError> for ApiError {
    fn from(error: LabError) -> ApiError {
        tracing::error!(%error, "lab failure while answering a request");
        ApiError::internal(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::document(self.status, self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_body_is_exact() {
        assert_eq!(
            ApiError::rate_limited(7).body(),
            json!({"errors":[{"code":"RATE_LIMIT_EXCEEDED","title":"Rate Limit Exceeded","status":"429",
                "detail":"Too many requests. Please slow down and retry.","meta":{"retry_after":7}}]})
        );
    }

    #[test]
    fn not_found_body_is_exact() {
        assert_eq!(
            ApiError::not_found().body(),
            json!({"errors":[{"code":"not_found","status":"404","title":"Error","detail":"Specified Record Not Found","meta":{}}]})
        );
    }

    #[test]
    fn validation_has_a_pointer() {
        let body = ApiError::validation(vec![ErrorObject::invalid_attribute(
            "ipxe",
            "ipxe must be informed",
        )])
        .body();
        assert_eq!(
            body["errors"][0]["source"]["pointer"],
            "/data/attributes/ipxe"
        );
        assert_eq!(body["errors"][0]["status"], "422");
    }
}
