//! [`LatitudeError`]: everything that can go wrong talking to Latitude.sh, with the context a
//! user needs (method, path, HTTP status, the API's own title/detail, `X-Request-Id`), and its
//! classification into [`ProviderErrorKind`]. No variant ever holds the API key.

use std::fmt;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::provider::{ProviderError, ProviderErrorKind};

/// An answer from the API with a non-success status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP method of the request.
    pub method: Method,
    /// Request path, without the query (`/servers`).
    pub path: String,
    /// HTTP status.
    pub status: StatusCode,
    /// JSON:API `code` of the first error (`VALIDATION_ERROR`).
    pub code: Option<String>,
    /// JSON:API `title` of the first error (`Validation Error`).
    pub title: Option<String>,
    /// JSON:API `detail` of the first error (`must be filled`).
    pub detail: Option<String>,
    /// `X-Request-Id` of the response.
    pub request_id: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Latitude API {} {} answered {}",
            self.method,
            self.path,
            self.status.as_u16()
        )?;
        let title = self
            .title
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| self.status.canonical_reason());
        if let Some(title) = title {
            write!(f, " {title}")?;
        }
        if let Some(detail) = self.detail.as_deref().filter(|d| !d.trim().is_empty()) {
            write!(f, ": {detail}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// An error from [`super::LatitudeClient`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum LatitudeError {
    /// The API answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// No usable answer: connection refused, DNS, TLS, timeout, reset.
    #[error(
        "Latitude API {method} {path} failed: {message}{}",
        if *sent { " (the request may have reached Latitude)" } else { "" }
    )]
    Transport {
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// What happened, with the underlying causes.
        message: String,
        /// False only when the failure happened before the request could be sent (connect
        /// errors), so it certainly had no effect.
        sent: bool,
        /// True when the request timed out.
        timeout: bool,
    },

    /// A success answer whose body could not be decoded.
    #[error(
        "Latitude API {method} {path} answered {status} with a body that could not be decoded: \
         {message}; body starts with {excerpt:?}{}",
        request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default()
    )]
    Decode {
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// HTTP status of the answer.
        status: u16,
        /// The serde error.
        message: String,
        /// The first ~200 characters of the body.
        excerpt: String,
        /// `X-Request-Id` of the response.
        request_id: Option<String>,
    },

    /// Still answered 429 after every retry.
    #[error(
        "Latitude API {method} {path} is rate limited (429) after {attempts} attempt(s); \
         Latitude asked to wait {}s{}",
        retry_after.as_secs(),
        request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default()
    )]
    RateLimited {
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// How many times the request was sent.
        attempts: u32,
        /// The last `retry_after` (capped).
        retry_after: Duration,
        /// `X-Request-Id` of the last 429.
        request_id: Option<String>,
    },

    /// The client could not be set up (empty API key, bad base URL, TLS roots).
    #[error("Latitude client setup failed: {0}")]
    Setup(String),
}

impl LatitudeError {
    /// The JSON:API `code` of the first error (`NAME_ALREADY_TAKEN`), when the API answered
    /// with one.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            LatitudeError::Api(e) => e.code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            LatitudeError::Api(e) => Some(e.status.as_u16()),
            LatitudeError::Decode { status, .. } => Some(*status),
            LatitudeError::RateLimited { .. } => Some(429),
            LatitudeError::Transport { .. } | LatitudeError::Setup(_) => None,
        }
    }

    /// The `X-Request-Id`, when the API answered.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            LatitudeError::Api(e) => e.request_id.as_deref(),
            LatitudeError::Decode { request_id, .. }
            | LatitudeError::RateLimited { request_id, .. } => request_id.as_deref(),
            LatitudeError::Transport { .. } | LatitudeError::Setup(_) => None,
        }
    }

    /// The HTTP method of the failed request.
    pub fn method(&self) -> Option<&Method> {
        match self {
            LatitudeError::Api(e) => Some(&e.method),
            LatitudeError::Transport { method, .. }
            | LatitudeError::Decode { method, .. }
            | LatitudeError::RateLimited { method, .. } => Some(method),
            LatitudeError::Setup(_) => None,
        }
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when trying again later may succeed: 5xx, 429, timeouts, connection failures.
    pub fn is_transient(&self) -> bool {
        match self {
            LatitudeError::Api(e) => is_transient_status(e.status),
            LatitudeError::Transport { .. } | LatitudeError::RateLimited { .. } => true,
            LatitudeError::Decode { .. } | LatitudeError::Setup(_) => false,
        }
    }

    /// True when a non-idempotent write (POST) may have taken effect although no usable answer
    /// came back: a 5xx, a timeout or reset after sending, or a success body that could not be
    /// read. Look the object up before sending it again.
    pub fn is_ambiguous(&self) -> bool {
        let write = self.method().is_some_and(|m| !is_idempotent(m));
        write
            && match self {
                LatitudeError::Api(e) => e.status.is_server_error(),
                LatitudeError::Transport { sent, .. } => *sent,
                LatitudeError::Decode { .. } => true,
                LatitudeError::RateLimited { .. } | LatitudeError::Setup(_) => false,
            }
    }

    /// How a provider-neutral caller should handle it.
    pub fn kind(&self) -> ProviderErrorKind {
        if self.is_ambiguous() {
            return ProviderErrorKind::Ambiguous;
        }
        match self {
            LatitudeError::Api(e) => match e.status.as_u16() {
                401 | 403 => ProviderErrorKind::Unauthorized,
                404 => ProviderErrorKind::NotFound,
                402 => ProviderErrorKind::Billing,
                423 => ProviderErrorKind::Locked,
                429 => ProviderErrorKind::RateLimited,
                500..=599 => ProviderErrorKind::Transient,
                400..=499 => ProviderErrorKind::Rejected,
                _ => ProviderErrorKind::Protocol,
            },
            LatitudeError::Transport { .. } => ProviderErrorKind::Transient,
            LatitudeError::RateLimited { .. } => ProviderErrorKind::RateLimited,
            LatitudeError::Decode { .. } => ProviderErrorKind::Protocol,
            LatitudeError::Setup(_) => ProviderErrorKind::Protocol,
        }
    }
}

impl From<LatitudeError> for ProviderError {
    fn from(e: LatitudeError) -> Self {
        let kind = e.kind();
        let mut message = e.to_string();
        if kind == ProviderErrorKind::Ambiguous && !matches!(e, LatitudeError::Transport { .. }) {
            message.push_str(" (the request may have taken effect: look it up before retrying)");
        }
        if kind == ProviderErrorKind::Unauthorized {
            message.push_str(" — check LATITUDE_API_KEY (read-only keys cannot order servers)");
        }
        ProviderError {
            kind,
            status: e.status(),
            request_id: e.request_id().map(str::to_owned),
            code: match &e {
                LatitudeError::Api(api) => api.code.clone(),
                _ => None,
            },
            message,
        }
    }
}

/// GET, HEAD, PUT, DELETE, OPTIONS: safe to send again.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// 500, 502, 503, 504: worth another try for idempotent requests.
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(method: Method, status: u16) -> LatitudeError {
        LatitudeError::Api(Box::new(ApiError {
            method,
            path: "/servers".into(),
            status: StatusCode::from_u16(status).unwrap(),
            code: Some("VALIDATION_ERROR".into()),
            title: Some("Validation Error".into()),
            detail: Some("must be filled".into()),
            request_id: Some("req_123".into()),
        }))
    }

    #[test]
    fn api_message_is_one_useful_line() {
        let e = api(Method::POST, 422);
        assert_eq!(
            e.to_string(),
            "Latitude API POST /servers answered 422 Validation Error: must be filled (request id req_123)"
        );
        assert_eq!(e.status(), Some(422));
        assert_eq!(e.request_id(), Some("req_123"));
        assert_eq!(e.kind(), ProviderErrorKind::Rejected);
        assert!(!e.is_transient());
    }

    #[test]
    fn out_of_stock_is_recognised_by_its_code_not_its_text() {
        // Latitude's envelope for an order without stock: 422, code SERVERS_OUT_OF_STOCK
        // (latitudesh/terraform-provider-latitudesh, isServersOutOfStockError).
        let stock = LatitudeError::Api(Box::new(ApiError {
            method: Method::POST,
            path: "/servers".into(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: Some("SERVERS_OUT_OF_STOCK".into()),
            title: Some("Unprocessable Entity".into()),
            detail: Some("No stock availability".into()),
            request_id: None,
        }));
        let e = ProviderError::from(stock);
        assert_eq!(e.code.as_deref(), Some("SERVERS_OUT_OF_STOCK"));
        assert!(e.is_out_of_stock());
        // A validation error whose text mentions stock is not.
        let mut text = api(Method::POST, 422);
        if let LatitudeError::Api(a) = &mut text {
            a.detail = Some("no stock of c2-small-x86 in DAL".into());
        }
        assert!(!ProviderError::from(text).is_out_of_stock());
    }

    #[test]
    fn api_message_without_title_uses_the_reason_phrase() {
        let e = LatitudeError::Api(Box::new(ApiError {
            method: Method::GET,
            path: "/plans".into(),
            status: StatusCode::BAD_GATEWAY,
            code: None,
            title: None,
            detail: None,
            request_id: None,
        }));
        assert_eq!(
            e.to_string(),
            "Latitude API GET /plans answered 502 Bad Gateway"
        );
        assert!(e.is_transient());
        assert_eq!(e.kind(), ProviderErrorKind::Transient);
    }

    #[test]
    fn kinds() {
        assert_eq!(
            api(Method::GET, 401).kind(),
            ProviderErrorKind::Unauthorized
        );
        assert_eq!(
            api(Method::POST, 403).kind(),
            ProviderErrorKind::Unauthorized
        );
        assert_eq!(api(Method::GET, 404).kind(), ProviderErrorKind::NotFound);
        assert!(api(Method::GET, 404).is_not_found());
        assert_eq!(api(Method::POST, 400).kind(), ProviderErrorKind::Rejected);
        assert_eq!(api(Method::POST, 402).kind(), ProviderErrorKind::Billing);
        assert_eq!(api(Method::DELETE, 423).kind(), ProviderErrorKind::Locked);
        assert_eq!(api(Method::GET, 503).kind(), ProviderErrorKind::Transient);
        assert_eq!(
            api(Method::DELETE, 500).kind(),
            ProviderErrorKind::Transient
        );
        assert_eq!(api(Method::POST, 502).kind(), ProviderErrorKind::Ambiguous);
        assert_eq!(api(Method::POST, 500).kind(), ProviderErrorKind::Ambiguous);

        let refused = LatitudeError::Transport {
            method: Method::POST,
            path: "/servers".into(),
            message: "connection refused".into(),
            sent: false,
            timeout: false,
        };
        assert_eq!(refused.kind(), ProviderErrorKind::Transient);
        let timed_out = LatitudeError::Transport {
            method: Method::POST,
            path: "/servers".into(),
            message: "operation timed out".into(),
            sent: true,
            timeout: true,
        };
        assert_eq!(timed_out.kind(), ProviderErrorKind::Ambiguous);
        assert!(timed_out.to_string().contains("may have reached Latitude"));

        let decode = |method| LatitudeError::Decode {
            method,
            path: "/plans".into(),
            status: 200,
            message: "expected value".into(),
            excerpt: "<html>".into(),
            request_id: None,
        };
        assert_eq!(decode(Method::GET).kind(), ProviderErrorKind::Protocol);
        assert_eq!(decode(Method::POST).kind(), ProviderErrorKind::Ambiguous);

        let limited = LatitudeError::RateLimited {
            method: Method::POST,
            path: "/servers".into(),
            attempts: 6,
            retry_after: Duration::from_secs(60),
            request_id: Some("req_9".into()),
        };
        assert_eq!(limited.kind(), ProviderErrorKind::RateLimited);
        assert_eq!(limited.status(), Some(429));
        assert!(limited.is_transient());
    }

    #[test]
    fn provider_error_keeps_status_and_request_id() {
        let p = ProviderError::from(api(Method::POST, 502));
        assert_eq!(p.kind, ProviderErrorKind::Ambiguous);
        assert_eq!(p.status, Some(502));
        assert_eq!(p.request_id.as_deref(), Some("req_123"));
        assert!(p.message.contains("502"));
        assert!(p.message.contains("look it up"));

        let p = ProviderError::from(api(Method::GET, 401));
        assert!(p.message.contains("LATITUDE_API_KEY"));
    }
}
