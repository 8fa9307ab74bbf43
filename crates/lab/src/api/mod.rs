//! The Latitude-compatible REST API: routing, the gate every request passes (request ID, bearer
//! authentication, per-key rate limits, counters), and JSON:API response helpers. Handlers live
//! in the submodules, one per resource family.

mod body;
mod catalogue;
pub(crate) mod errors;
mod pagination;
mod resources;
mod servers;
mod ssh_keys;

pub(crate) use servers::check_hostname;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::faults::{Api, Strike};
use crate::ratelimit::Budget;
use crate::state::Lab;
use errors::ApiError;

/// The response media type of the real API.
pub(crate) const JSONAPI_CONTENT_TYPE: &str = "application/vnd.api+json; charset=utf-8";

/// The routes of the lab API, wrapped in the gate and the request-ID layer.
pub(crate) fn router(lab: Arc<Lab>) -> Router {
    Router::new()
        .route("/_lab/stats", get(stats))
        .route("/plans", get(catalogue::list_plans))
        .route(
            "/plans/operating_systems",
            get(catalogue::list_operating_systems),
        )
        .route("/plans/{id}", get(catalogue::get_plan))
        .route("/regions", get(catalogue::list_regions))
        .route("/regions/{id}", get(catalogue::get_region))
        .route("/projects", get(catalogue::list_projects))
        .route("/projects/{id}", get(catalogue::get_project))
        .route("/servers", get(servers::list).post(servers::create))
        .route("/servers/{id}", get(servers::get).delete(servers::delete))
        .route("/servers/{id}/reinstall", post(servers::reinstall))
        .route("/ssh_keys", get(ssh_keys::list).post(ssh_keys::create))
        .route(
            "/ssh_keys/{id}",
            get(ssh_keys::get).delete(ssh_keys::delete),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(lab.clone(), gate))
        .layer(middleware::from_fn_with_state(lab.clone(), request_id))
        .with_state(lab)
}

/// A JSON:API document with the real media type.
pub(crate) fn document(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSONAPI_CONTENT_TYPE),
    );
    response
}

/// `{"data": data, "meta": meta}`.
pub(crate) fn data(status: StatusCode, data: Value, meta: Value) -> Response {
    document(status, json!({"data": data, "meta": meta}))
}

/// What handlers take as query: the decoded parameters, or why they could not be decoded.
pub(crate) type RawQuery = Result<Query<HashMap<String, String>>, QueryRejection>;

/// The decoded query parameters (`filter%5Bslug%5D` arrives as `filter[slug]`).
pub(crate) fn params(query: RawQuery) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request(format!("cannot decode the query string: {e}")))
}

/// Adds `X-Request-Id: req_<n>` to every response.
async fn request_id(State(lab): State<Arc<Lab>>, request: Request, next: Next) -> Response {
    let n = lab.request_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&format!("req_{n}")) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Authentication, rate limiting and counting, in that order. `/_lab/*` is exempt.
async fn gate(State(lab): State<Arc<Lab>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_lab/") {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return ApiError::unauthorized("Missing API key: send Authorization: Bearer <API key>")
            .into_response();
    };
    if let Some(keys) = &lab.config.api_keys
        && !keys.contains(&token)
    {
        return ApiError::unauthorized("Invalid API key").into_response();
    }
    let (budget, limit) = match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => (Budget::Read, lab.config.reads_per_minute),
        _ => (Budget::Write, lab.config.writes_per_minute),
    };
    {
        let mut world = lab.world();
        match budget {
            Budget::Read => world.counters.reads += 1,
            Budget::Write => world.counters.writes += 1,
        }
    }
    let admitted = lab
        .limiter
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .acquire(&token, budget, limit, Instant::now());
    if let Err(retry_after) = admitted {
        lab.world().counters.http_429 += 1;
        tracing::debug!(method = %request.method(), uri = %request.uri(), retry_after, "rate limited");
        return ApiError::rate_limited(retry_after).into_response();
    }
    match lab.faults.strike(Api::Latitude).await {
        Strike::None => next.run(request).await,
        Strike::ServerError => ApiError::unavailable().into_response(),
        Strike::RateLimited => {
            lab.world().counters.http_429 += 1;
            ApiError::rate_limited(lab.faults.spec.latitude_retry_after).into_response()
        }
        Strike::Reset => {
            // The request takes effect; its answer is lost with the connection.
            let _ = next.run(request).await;
            crate::faults::broken_response()
        }
    }
}

/// `GET /_lab/stats`: request counters and live servers (no authentication).
async fn stats(State(lab): State<Arc<Lab>>) -> Response {
    let world = lab.world();
    axum::Json(json!({
        "reads": world.counters.reads,
        "writes": world.counters.writes,
        "http_429": world.counters.http_429,
        "servers": world.servers.len(),
    }))
    .into_response()
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}
