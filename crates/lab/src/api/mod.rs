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
mod tags;

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
use crate::observe::Kind;
use crate::ratelimit::Budget;
use crate::state::Lab;
use errors::ApiError;

/// The response media type of the real API.
pub(crate) const JSONAPI_CONTENT_TYPE: &str = "application/vnd.api+json; charset=utf-8";

/// The routes of the lab API, wrapped in the gate and the request-ID layer.
pub(crate) fn router(lab: Arc<Lab>) -> Router {
    Router::new()
        .route("/_lab/stats", get(stats))
        .route("/_lab/critical-path", get(crate::critical_path::handler))
        .route("/_lab/conditions", get(conditions))
        .route("/_lab/console/{hostname}", get(console))
        .route("/factory/versions", get(factory_versions))
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
        .route(
            "/servers/{id}",
            get(servers::get)
                .delete(servers::delete)
                .patch(servers::update),
        )
        .route("/tags", get(tags::list).post(tags::create))
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
    if request.uri().path().starts_with("/_lab/") || request.uri().path().starts_with("/factory/") {
        return next.run(request).await;
    }
    let arrived_ms = crate::lifecycle::now_ms();
    let write = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let observe = |authenticated: bool| {
        lab.observer.request_at(
            if write {
                Kind::LatitudeWrite { authenticated }
            } else {
                Kind::LatitudeRead { authenticated }
            },
            arrived_ms,
        );
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        observe(false);
        return ApiError::unauthorized("Missing API key: send Authorization: Bearer <API key>")
            .into_response();
    };
    if let Some(keys) = &lab.config.api_keys
        && !keys.contains(&token)
    {
        observe(false);
        return ApiError::unauthorized("Invalid API key").into_response();
    }
    observe(true);
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
        lab.observer.request(Kind::Http429);
        tracing::debug!(method = %request.method(), uri = %request.uri(), retry_after, "rate limited");
        return ApiError::rate_limited(retry_after).into_response();
    }
    match lab.faults.strike(Api::Latitude).await {
        Strike::None => next.run(request).await,
        Strike::ServerError => ApiError::unavailable().into_response(),
        Strike::RateLimited => {
            lab.world().counters.http_429 += 1;
            lab.observer.request(Kind::Http429);
            ApiError::rate_limited(lab.faults.spec.latitude_retry_after).into_response()
        }
        Strike::Reset => {
            // The request takes effect; its answer is lost with the connection.
            let _ = next.run(request).await;
            crate::faults::broken_response()
        }
    }
}

/// `GET /_lab/stats[?since_ms=<unix ms>]` (no authentication): request counters and live
/// servers. Without `since_ms`, `reads`, `writes` and `http_429` are the persisted totals of
/// the world and the other counts cover this lab process; with it, every count covers only
/// requests that arrived at or after `since_ms`.
async fn stats(State(lab): State<Arc<Lab>>, query: RawQuery) -> Result<Response, ApiError> {
    let since_ms = match params(query)?.get("since_ms") {
        None => None,
        Some(v) => Some(v.trim().parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "since_ms must be an integer number of Unix milliseconds, got {v:?}"
            ))
        })?),
    };
    let observed = lab.observer.stats(since_ms);
    let world = lab.world();
    let (reads, writes, http_429) = match since_ms {
        None => (
            world.counters.reads,
            world.counters.writes,
            world.counters.http_429,
        ),
        Some(_) => (observed.reads, observed.writes, observed.http_429),
    };
    Ok(axum::Json(json!({
        "reads": reads,
        "writes": writes,
        "http_429": http_429,
        "servers": world.servers.len(),
        "latitude_reads": observed.latitude_reads,
        "latitude_writes": observed.latitude_writes,
        "talos_calls": observed.talos_calls,
        "kube_requests": observed.kube_requests,
        "since_ms": since_ms,
        "first_request_ms": observed.first_request_ms,
        "last_request_ms": observed.last_request_ms,
    }))
    .into_response())
}

/// `GET /_lab/conditions` (no authentication): when each condition of the world became true,
/// sorted by time (see docs/lab.md, "Observing a run").
/// `GET /_lab/console/{hostname}`: what the server's console shows of its Talos install (where a
/// real Talos prints why an install failed), one line per entry; 404 for an unknown hostname.
async fn console(
    State(lab): State<Arc<Lab>>,
    axum::extract::Path(hostname): axum::extract::Path<String>,
) -> Response {
    match crate::talos::console(&lab, &hostname) {
        Some(lines) => axum::Json(json!({"hostname": hostname, "lines": lines})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The Talos releases the lab's Image Factory (`<lab URL>/factory`) builds: `GET /versions`
/// answers a JSON array of tags (siderolabs/image-factory README, "HTTP Frontend API"). The
/// list is the siderolabs/talos release tags v1.9.0–v1.11.6.
const FACTORY_VERSIONS: &[&str] = &[
    "v1.9.0", "v1.9.1", "v1.9.2", "v1.9.3", "v1.9.4", "v1.9.5", "v1.9.6", "v1.10.0", "v1.10.1",
    "v1.10.2", "v1.10.3", "v1.10.4", "v1.10.5", "v1.10.6", "v1.10.7", "v1.10.8", "v1.10.9",
    "v1.11.0", "v1.11.1", "v1.11.2", "v1.11.3", "v1.11.4", "v1.11.5", "v1.11.6",
];

/// `GET /factory/versions`.
async fn factory_versions() -> Response {
    axum::Json(FACTORY_VERSIONS).into_response()
}

async fn conditions(State(lab): State<Arc<Lab>>) -> Response {
    let now = crate::lifecycle::now_ms();
    let mut earliest: HashMap<String, i64> = HashMap::new();
    for (name, at_ms) in crate::talos::world_conditions(&lab, now)
        .into_iter()
        .chain(lab.observer.conditions())
    {
        earliest
            .entry(name)
            .and_modify(|t| *t = (*t).min(at_ms))
            .or_insert(at_ms);
    }
    let mut all: Vec<(String, i64)> = earliest.into_iter().collect();
    all.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let conditions: Vec<Value> = all
        .into_iter()
        .map(|(name, at_ms)| json!({"name": name, "at_ms": at_ms}))
        .collect();
    axum::Json(json!({
        "time_scale": lab.durations.time_scale(),
        "seed": lab.durations.seed(),
        "conditions": conditions,
    }))
    .into_response()
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}
