//! [`LatitudeClient`]: typed calls to the Latitude.sh REST API. It owns the HTTP client (rustls
//! with ring, platform roots), the headers, paging, the shared rate limiter and the retry policy:
//!
//! * every request first waits for a slot in the [`RateLimiter`];
//! * a 429 pauses its class for `errors[0].meta.retry_after` seconds and is retried, whatever the
//!   method (a 429'd request had no effect);
//! * idempotent requests (GET, DELETE) are retried with exponential backoff and jitter on
//!   500/502/503/504, timeouts and dropped connections;
//! * POSTs (orders, reinstalls) are retried only when the connection failed before anything was
//!   sent. Once the request may have reached Latitude, the error is returned as is and
//!   [`LatitudeError::is_ambiguous`] says so: the caller must look the object up (by hostname)
//!   before ordering again, so nothing is ever billed twice;
//! * against a lab running in scaled time ([`ClientConfig::scaled`]), the rate window, the
//!   backoff delays and every `retry_after` are multiplied by the time scale.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApiError, LatitudeError, is_idempotent, is_transient_status};
use super::model::{
    CreateServer, CreateServerAttributes, CreateSshKeyAttributes, CreateTagAttributes,
    ErrorEnvelope, ItemDocument, ListDocument, OperatingSystem, OperatingSystemAttributes, Plan,
    PlanAttributes, Project, ProjectAttributes, Region, RegionAttributes, Reinstall,
    ReinstallAttributes, RequestBody, Resource, Server, ServerAttributes, ServerFilter, SshKey,
    SshKeyAttributes, Tag, TagAttributes, UpdateServerTagsAttributes, UpdateServerTagsBody,
    UpdateServerTagsData,
};
use super::ratelimit::{DEFAULT_WINDOW, RateLimiter, RateStats, RequestClass};
use crate::provider::Deleted;
use crate::secret::ApiKey;

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api.latitude.sh";
/// The API version sent in `API-Version`.
pub const API_VERSION: &str = "2023-06-01";
/// The JSON:API media type sent in `Accept`.
pub const JSON_API: &str = "application/vnd.api+json";
/// Items per page when listing.
pub const PAGE_SIZE: usize = 100;
/// Wait after a 429 that does not say how long.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest wait honoured after a 429, whatever the server asks for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The shortest timeout of one request, whatever the time scale: loopback latency (and a busy
/// machine) does not shrink with modelled time.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Real time added to a scaled rate-limit window (`time_scale < 1`): the client stamps a request
/// when it takes its slot, the server when it arrives, and at a window of a few hundred
/// milliseconds the jitter between the two would otherwise show up as a 429.
pub const SCALED_WINDOW_SLACK: Duration = Duration::from_millis(10);
/// Guard against a server that ignores `page[number]`.
const MAX_PAGES: u32 = 1_000;
/// The longest body excerpt put in a decode error.
const EXCERPT_CHARS: usize = 200;

/// How to reach Latitude.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API root, without a trailing slash (`https://api.latitude.sh`). Plain `http://` is
    /// accepted only for loopback hosts (the lab), so the key never crosses a network in clear.
    pub base_url: String,
    /// The API key (redacted in `Debug`).
    pub api_key: ApiKey,
    /// Project id (`proj_...`) or slug: the scope of every order and listing.
    pub project: String,
    /// Read budget per window (Latitude: 60 GET per minute).
    pub reads_per_minute: u32,
    /// Write budget per window (Latitude: 20 POST/PUT/PATCH/DELETE per minute).
    pub writes_per_minute: u32,
    /// Retries after the first attempt (transient errors and 429s together).
    pub max_retries: u32,
    /// Timeout of one attempt, from sending to the end of the body.
    pub request_timeout: Duration,
    /// `User-Agent` (`cto/<version>`).
    pub user_agent: String,
    /// First backoff delay for transient errors; doubles up to `retry_max_delay`, plus jitter.
    pub retry_base_delay: Duration,
    /// Longest backoff delay for transient errors.
    pub retry_max_delay: Duration,
    /// Length of the rate-limit window (60 s; shorter in tests).
    pub rate_window: Duration,
    /// Extra trusted root certificates, DER-encoded (a lab CA), on top of the platform's.
    pub extra_root_certs: Vec<Vec<u8>>,
    /// Real seconds per modelled second, in `(0, 1]`; `1` (the default) is the real world. A
    /// lab with `time_scale = f` counts its rate limits over `60·f` real seconds and sends
    /// `retry_after` in modelled seconds, so the client multiplies by `f`: the rate window,
    /// the backoff delays (`retry_base_delay`, `retry_max_delay`) and every `retry_after`
    /// (including [`DEFAULT_RETRY_AFTER`] and the [`MAX_RETRY_AFTER`] cap). The request timeout
    /// is scaled too but never below [`MIN_REQUEST_TIMEOUT`] real seconds. Set it with
    /// [`ClientConfig::scaled`].
    pub time_scale: f64,
}

impl ClientConfig {
    /// Defaults: 60 reads and 20 writes a minute, 5 retries, 30 s per request.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey, project: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            project: project.into(),
            reads_per_minute: 60,
            writes_per_minute: 20,
            max_retries: 5,
            request_timeout: Duration::from_secs(30),
            user_agent: concat!("cto/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(30),
            rate_window: DEFAULT_WINDOW,
            extra_root_certs: Vec::new(),
            time_scale: 1.0,
        }
    }

    /// The same configuration in a world running `time_scale` real seconds per modelled second
    /// (see [`ClientConfig::time_scale`]); only loopback labs run scaled.
    #[must_use]
    pub fn scaled(mut self, time_scale: f64) -> Self {
        self.time_scale = time_scale;
        self
    }

    /// The configured durations, in real time: `(rate window, first backoff delay, longest
    /// backoff delay, request timeout)`.
    fn real_durations(&self) -> (Duration, Duration, Duration, Duration) {
        let f = self.time_scale;
        if f == 1.0 {
            return (
                self.rate_window,
                self.retry_base_delay,
                self.retry_max_delay,
                self.request_timeout,
            );
        }
        (
            self.rate_window.mul_f64(f) + SCALED_WINDOW_SLACK,
            self.retry_base_delay.mul_f64(f),
            self.retry_max_delay.mul_f64(f),
            self.request_timeout
                .mul_f64(f)
                .max(MIN_REQUEST_TIMEOUT)
                .min(self.request_timeout),
        )
    }
}

/// A Latitude.sh API client. Cloning is cheap; clones share the connection pool and the rate
/// limiter.
#[derive(Clone)]
pub struct LatitudeClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    project: String,
    limiter: RateLimiter,
    max_retries: u32,
    retry_base_delay: Duration,
    retry_max_delay: Duration,
    /// Real seconds per modelled second (see [`ClientConfig::time_scale`]).
    time_scale: f64,
}

impl fmt::Debug for LatitudeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatitudeClient")
            .field("base_url", &self.inner.base_url)
            .field("project", &self.inner.project)
            .field("stats", &self.inner.limiter.stats())
            .finish_non_exhaustive()
    }
}

/// One request, kept so it can be sent again.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call {
    fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    fn delete(path: impl Into<String>) -> Self {
        Self {
            method: Method::DELETE,
            ..Self::get(path)
        }
    }

    fn post<B: Serialize>(path: impl Into<String>, body: &B) -> Result<Self, LatitudeError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| LatitudeError::Setup(format!("could not encode a request body: {e}")))?;
        Ok(Self {
            method: Method::POST,
            body: Some(body),
            ..Self::get(path)
        })
    }

    fn patch<B: Serialize>(path: impl Into<String>, body: &B) -> Result<Self, LatitudeError> {
        Ok(Self {
            method: Method::PATCH,
            ..Self::post(path, body)?
        })
    }

    fn query(mut self, key: &str, value: impl Into<String>) -> Self {
        self.query.push((key.to_owned(), value.into()));
        self
    }
}

/// A success answer.
struct Reply {
    status: StatusCode,
    request_id: Option<String>,
    body: Vec<u8>,
}

impl LatitudeClient {
    /// Builds a client. Fails on an empty key or project, a base URL that is not `https://`
    /// (or `http://` on loopback), a time scale outside `(0, 1]` or one other than 1 for a
    /// non-loopback URL, or when no TLS roots can be loaded.
    pub fn new(config: ClientConfig) -> Result<Self, LatitudeError> {
        if config.api_key.is_empty() {
            return Err(LatitudeError::Setup(
                "the Latitude API key is empty: set LATITUDE_API_KEY".into(),
            ));
        }
        if config.project.trim().is_empty() {
            return Err(LatitudeError::Setup(
                "no Latitude project given (id proj_... or slug)".into(),
            ));
        }
        let base_url = check_base_url(&config.base_url)?;
        let f = config.time_scale;
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Err(LatitudeError::Setup(format!(
                "the time scale must be in (0, 1], got {f}"
            )));
        }
        if f != 1.0 && !is_loopback_url(&base_url) {
            return Err(LatitudeError::Setup(format!(
                "a time scale ({f}) is only for a lab on a loopback address, not {base_url}"
            )));
        }
        let (rate_window, retry_base_delay, retry_max_delay, request_timeout) =
            config.real_durations();

        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.api_key.expose()))
            .map_err(|_| {
                LatitudeError::Setup(
                    "the Latitude API key contains characters that cannot be sent in an HTTP header"
                        .into(),
                )
            })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static(JSON_API));
        headers.insert(
            HeaderName::from_static("api-version"),
            HeaderValue::from_static(API_VERSION),
        );

        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&config.extra_root_certs)?)
            .user_agent(config.user_agent.clone())
            .default_headers(headers)
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LatitudeError::Setup(format!("HTTP client: {}", error_chain(&e))))?;

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                project: config.project.trim().to_owned(),
                limiter: RateLimiter::with_window(
                    config.reads_per_minute,
                    config.writes_per_minute,
                    rate_window,
                ),
                max_retries: config.max_retries,
                retry_base_delay,
                retry_max_delay: retry_max_delay.max(retry_base_delay),
                time_scale: f,
            }),
        })
    }

    /// The configured project (id or slug).
    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The API root.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Request counters shared by all clones.
    pub fn stats(&self) -> RateStats {
        self.inner.limiter.stats()
    }

    /// The shared rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// Real seconds per modelled second (1 against the real Latitude).
    pub fn time_scale(&self) -> f64 {
        self.inner.time_scale
    }

    // -----------------------------------------------------------------------------------------
    // Endpoints
    // -----------------------------------------------------------------------------------------

    /// `GET /plans` (not paginated), optionally `filter[slug]`.
    pub async fn list_plans(&self, filter_slug: Option<&str>) -> Result<Vec<Plan>, LatitudeError> {
        let mut call = Call::get("/plans");
        if let Some(slug) = filter_slug {
            call = call.query("filter[slug]", slug);
        }
        let doc: ListDocument<PlanAttributes> = self.fetch(&call).await?;
        Ok(doc.data)
    }

    /// One plan by id (`plan_...`, `GET /plans/{id}`) or slug (`GET /plans?filter[slug]=`).
    /// `None` when there is no such plan.
    pub async fn get_plan(&self, id_or_slug: &str) -> Result<Option<Plan>, LatitudeError> {
        if id_or_slug.starts_with("plan_") {
            let call = Call::get(format!("/plans/{}", segment(id_or_slug)));
            return self
                .fetch_optional::<ItemDocument<PlanAttributes>>(&call)
                .await
                .map(|d| d.map(|d| d.data));
        }
        let plans = self.list_plans(Some(id_or_slug)).await?;
        Ok(plans.into_iter().find(|p| {
            p.attributes
                .slug
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(id_or_slug))
        }))
    }

    /// `GET /plans/operating_systems` (paged).
    pub async fn list_operating_systems(&self) -> Result<Vec<OperatingSystem>, LatitudeError> {
        self.list_paged::<OperatingSystemAttributes>(Call::get("/plans/operating_systems"))
            .await
    }

    /// `GET /regions` (paged): every site.
    pub async fn list_regions(&self) -> Result<Vec<Region>, LatitudeError> {
        self.list_paged::<RegionAttributes>(Call::get("/regions"))
            .await
    }

    /// `GET /projects` (paged): every project the key can see.
    pub async fn list_projects(&self) -> Result<Vec<Project>, LatitudeError> {
        self.list_paged::<ProjectAttributes>(Call::get("/projects"))
            .await
    }

    /// `GET /servers` (paged) in the filter's project (the client's by default).
    pub async fn list_servers(&self, filter: &ServerFilter) -> Result<Vec<Server>, LatitudeError> {
        let project = filter.project.as_deref().unwrap_or(&self.inner.project);
        let mut call = Call::get("/servers").query("filter[project]", project);
        if let Some(hostname) = &filter.hostname {
            call = call.query("filter[hostname]", hostname.as_str());
        }
        if let Some(site) = &filter.site {
            call = call.query("filter[region]", site.to_ascii_uppercase());
        }
        if let Some(status) = &filter.status {
            call = call.query("filter[status]", status.as_str());
        }
        if let Some(plan) = &filter.plan {
            call = call.query("filter[plan]", plan.as_str());
        }
        if !filter.tags.is_empty() {
            call = call.query("filter[tags]", filter.tags.join(","));
        }
        self.list_paged::<ServerAttributes>(call).await
    }

    /// `GET /tags`: every tag of the team (not paginated: the operation takes no parameters in
    /// `latitudesh-go-sdk` `models/operations/gettags.go`, and the recorded answer in
    /// `terraform-provider-latitudesh` `latitudesh/fixtures/TestAccTag_Basic.yaml` is one page).
    pub async fn list_tags(&self) -> Result<Vec<Tag>, LatitudeError> {
        let doc: ListDocument<TagAttributes> = self.fetch(&Call::get("/tags")).await?;
        Ok(doc.data)
    }

    /// `POST /tags` (type `tags`, `models/operations/createtag.go`) → 201 with the tag. A name
    /// in use answers 422 `NAME_ALREADY_TAKEN`, a name whose slug collides 422
    /// `NAME_TOO_SIMILAR` (the spec's examples in `.speakeasy/gen.lock`, `create-tag`).
    pub async fn create_tag(&self, name: &str, description: &str) -> Result<Tag, LatitudeError> {
        let body = RequestBody::new(
            "tags",
            CreateTagAttributes {
                name,
                description,
                color: "#ffffff",
            },
        );
        let call = Call::post("/tags", &body)?;
        let doc: ItemDocument<TagAttributes> = self.fetch(&call).await?;
        Ok(doc.data)
    }

    /// `PATCH /servers/{id}` with `attributes.tags`: sets the server's tags to exactly
    /// `tag_ids` (`models/operations/updateserver.go`; the Terraform provider's
    /// `updateServerTags` in `latitudesh/resource_server.go` attaches tags this way right
    /// after `POST /servers`, since an order cannot carry tags). Setting the same list twice
    /// is harmless, so a lost answer may be retried.
    pub async fn set_server_tags(
        &self,
        id: &str,
        tag_ids: &[String],
    ) -> Result<Server, LatitudeError> {
        let body = UpdateServerTagsBody {
            data: UpdateServerTagsData {
                id,
                kind: "servers",
                attributes: UpdateServerTagsAttributes { tags: tag_ids },
            },
        };
        let call = Call::patch(format!("/servers/{}", segment(id)), &body)?;
        let doc: ItemDocument<ServerAttributes> = self.fetch(&call).await?;
        Ok(doc.data)
    }

    /// `GET /servers/{id}`; `None` on 404 (deleted or never existed).
    pub async fn get_server(&self, id: &str) -> Result<Option<Server>, LatitudeError> {
        let call = Call::get(format!("/servers/{}", segment(id)));
        Ok(self
            .fetch_optional::<ItemDocument<ServerAttributes>>(&call)
            .await?
            .map(|d| d.data))
    }

    /// `POST /servers` in the client's project, always with `billing: "hourly"`. Billable.
    /// Never retried once it may have reached Latitude: on an error with
    /// [`LatitudeError::is_ambiguous`], look the server up by hostname before ordering again.
    pub async fn create_server(&self, order: &CreateServer) -> Result<Server, LatitudeError> {
        let body = RequestBody::new(
            "servers",
            CreateServerAttributes::new(&self.inner.project, order),
        );
        let call = Call::post("/servers", &body)?;
        let doc: ItemDocument<ServerAttributes> = self.fetch(&call).await?;
        Ok(doc.data)
    }

    /// `DELETE /servers/{id}`: 204 → [`Deleted::Deleted`], 404 → [`Deleted::AlreadyGone`].
    pub async fn delete_server(&self, id: &str) -> Result<Deleted, LatitudeError> {
        self.delete(Call::delete(format!("/servers/{}", segment(id))))
            .await
    }

    /// `POST /servers/{id}/reinstall` (body type `reinstalls`; 201 with no body).
    pub async fn reinstall_server(
        &self,
        id: &str,
        reinstall: &Reinstall,
    ) -> Result<(), LatitudeError> {
        let body = RequestBody::new("reinstalls", ReinstallAttributes::from(reinstall));
        let call = Call::post(format!("/servers/{}/reinstall", segment(id)), &body)?;
        self.send(&call).await.map(drop)
    }

    /// `GET /ssh_keys?filter[project]=` (paged): the SSH keys of the client's project.
    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKey>, LatitudeError> {
        let call = Call::get("/ssh_keys").query("filter[project]", self.inner.project.as_str());
        self.list_paged::<SshKeyAttributes>(call).await
    }

    /// `POST /ssh_keys` in the client's project.
    pub async fn create_ssh_key(
        &self,
        name: &str,
        public_key: &str,
    ) -> Result<SshKey, LatitudeError> {
        let body = RequestBody::new(
            "ssh_keys",
            CreateSshKeyAttributes {
                name,
                public_key: public_key.trim(),
                project: &self.inner.project,
            },
        );
        let call = Call::post("/ssh_keys", &body)?;
        let doc: ItemDocument<SshKeyAttributes> = self.fetch(&call).await?;
        Ok(doc.data)
    }

    /// `DELETE /ssh_keys/{id}`; 404 → [`Deleted::AlreadyGone`].
    pub async fn delete_ssh_key(&self, id: &str) -> Result<Deleted, LatitudeError> {
        self.delete(Call::delete(format!("/ssh_keys/{}", segment(id))))
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Plumbing
    // -----------------------------------------------------------------------------------------

    async fn delete(&self, call: Call) -> Result<Deleted, LatitudeError> {
        match self.send(&call).await {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// Every page of a list: `page[size]=100`, `page[number]=1,2,...` until a short page.
    async fn list_paged<A: DeserializeOwned + Default>(
        &self,
        call: Call,
    ) -> Result<Vec<Resource<A>>, LatitudeError> {
        let mut all: Vec<Resource<A>> = Vec::new();
        let mut previous_first: Option<String> = None;
        for number in 1..=MAX_PAGES {
            let page = Call {
                method: call.method.clone(),
                path: call.path.clone(),
                query: call.query.clone(),
                body: None,
            }
            .query("page[size]", PAGE_SIZE.to_string())
            .query("page[number]", number.to_string());
            let doc: ListDocument<A> = self.fetch(&page).await?;
            let count = doc.data.len();
            let first = doc.data.first().map(|r| r.id.clone());
            if number > 1 && first.is_some() && first == previous_first {
                tracing::warn!(path = %call.path, "Latitude ignored page[number]; stopping");
                break;
            }
            previous_first = first;
            all.extend(doc.data);
            if count != PAGE_SIZE {
                // Fewer: the last page. More: the server ignored page[size].
                break;
            }
        }
        Ok(all)
    }

    /// Sends and decodes a success body.
    async fn fetch<T: DeserializeOwned>(&self, call: &Call) -> Result<T, LatitudeError> {
        let reply = self.send(call).await?;
        decode(call, &reply)
    }

    /// Like [`Self::fetch`], with 404 → `None`.
    async fn fetch_optional<T: DeserializeOwned>(
        &self,
        call: &Call,
    ) -> Result<Option<T>, LatitudeError> {
        match self.send(call).await {
            Ok(reply) => decode(call, &reply).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends with rate limiting and retries; `Ok` only for 2xx.
    async fn send(&self, call: &Call) -> Result<Reply, LatitudeError> {
        let idempotent = is_idempotent(&call.method);
        let attempts = AtomicU32::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.inner.retry_base_delay)
            .with_max_delay(self.inner.retry_max_delay)
            .with_max_times(self.inner.max_retries as usize)
            .with_jitter()
            .with_jitter_seed(std::collections::hash_map::RandomState::new().hash_one(0u8));
        let attempt = || {
            let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
            self.attempt(call, n)
        };
        attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| should_retry(e, idempotent))
            // After a 429 the limiter holds the class for retry_after: no extra sleep here.
            .adjust(|e, delay| match e {
                LatitudeError::RateLimited { .. } => delay.map(|_| Duration::ZERO),
                _ => delay,
            })
            .notify(|e, delay| {
                tracing::debug!(
                    method = %call.method,
                    path = %call.path,
                    error = %e,
                    delay_ms = delay.as_millis() as u64,
                    "retrying Latitude request"
                );
            })
            .await
    }

    /// One attempt.
    async fn attempt(&self, call: &Call, attempt: u32) -> Result<Reply, LatitudeError> {
        let class = RequestClass::of(&call.method);
        // Held until this attempt returns: the slot ages from the answer, not the send.
        let _slot = self.inner.limiter.acquire(class).await;

        let url = format!("{}{}", self.inner.base_url, call.path);
        let mut request = self.inner.http.request(call.method.clone(), url);
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }

        let started = std::time::Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = transport_error(call, e, false);
                tracing::debug!(
                    method = %call.method,
                    path = %call.path,
                    attempt,
                    duration_ms = started.elapsed().as_millis() as u64,
                    error = %error,
                    "Latitude API request failed"
                );
                return Err(error);
            }
        };
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match response.bytes().await {
            Ok(body) => body.to_vec(),
            Err(e) => return Err(transport_error(call, e, true)),
        };
        tracing::debug!(
            method = %call.method,
            path = %call.path,
            status = status.as_u16(),
            request_id = request_id.as_deref().unwrap_or("-"),
            attempt,
            duration_ms = started.elapsed().as_millis() as u64,
            "Latitude API request"
        );

        if status.is_success() {
            return Ok(Reply {
                status,
                request_id,
                body,
            });
        }
        let envelope: ErrorEnvelope = serde_json::from_slice(&body).unwrap_or_default();
        if status == StatusCode::TOO_MANY_REQUESTS {
            // `retry_after` is in the server's (modelled) seconds; the pause is real time.
            let asked = retry_after(&envelope);
            let retry_after = scale_duration(asked, self.inner.time_scale);
            self.inner.limiter.rate_limited(class, retry_after);
            tracing::info!(
                method = %call.method,
                path = %call.path,
                retry_after_s = asked.as_secs_f64(),
                pause_ms = retry_after.as_millis() as u64,
                "Latitude rate limit hit (429); pausing"
            );
            return Err(LatitudeError::RateLimited {
                method: call.method.clone(),
                path: call.path.clone(),
                attempts: attempt,
                retry_after,
                request_id,
            });
        }
        let first = envelope.errors.into_iter().next().unwrap_or_default();
        Err(LatitudeError::Api(Box::new(ApiError {
            method: call.method.clone(),
            path: call.path.clone(),
            status,
            code: first.code,
            title: first.title,
            detail: first.detail,
            request_id,
        })))
    }
}

fn should_retry(error: &LatitudeError, idempotent: bool) -> bool {
    match error {
        LatitudeError::RateLimited { .. } => true,
        LatitudeError::Api(e) => idempotent && is_transient_status(e.status),
        LatitudeError::Transport { sent, .. } => idempotent || !sent,
        LatitudeError::Decode { .. } | LatitudeError::Setup(_) => false,
    }
}

/// `errors[0].meta.retry_after`, defaulting to 60 s and capped at [`MAX_RETRY_AFTER`].
fn retry_after(envelope: &ErrorEnvelope) -> Duration {
    match envelope.retry_after_secs() {
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        _ => DEFAULT_RETRY_AFTER,
    }
}

/// A modelled duration in real time.
fn scale_duration(d: Duration, time_scale: f64) -> Duration {
    if time_scale == 1.0 {
        d
    } else {
        d.mul_f64(time_scale)
    }
}

/// True for an `http(s)://` URL whose host is a literal loopback address (`127.0.0.0/8`,
/// `::1`); names, `localhost` included, are not (see [`crate::urls`]).
pub fn is_loopback_url(raw: &str) -> bool {
    crate::urls::is_literal_loopback_url(raw)
}

fn decode<T: DeserializeOwned>(call: &Call, reply: &Reply) -> Result<T, LatitudeError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        let text = String::from_utf8_lossy(&reply.body);
        let mut excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
        if text.chars().count() > EXCERPT_CHARS {
            excerpt.push('…');
        }
        LatitudeError::Decode {
            method: call.method.clone(),
            path: call.path.clone(),
            status: reply.status.as_u16(),
            message: e.to_string(),
            excerpt,
            request_id: reply.request_id.clone(),
        }
    })
}

fn transport_error(call: &Call, error: reqwest::Error, after_headers: bool) -> LatitudeError {
    let error = error.without_url();
    if error.is_builder() {
        return LatitudeError::Setup(format!(
            "could not build {} {}: {}",
            call.method,
            call.path,
            error_chain(&error)
        ));
    }
    LatitudeError::Transport {
        method: call.method.clone(),
        path: call.path.clone(),
        message: error_chain(&error),
        // A connect error means nothing was sent; anything else may have reached the server.
        sent: after_headers || !error.is_connect(),
        timeout: error.is_timeout(),
    }
}

/// An error and its causes on one line, without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// Percent-encodes one path segment (ids are plain, but never trust input in a URL).
fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Validates the base URL ([`crate::urls::check_service_url`]: no userinfo, `https://` or
/// `http://` to a literal loopback address) and strips trailing slashes.
fn check_base_url(raw: &str) -> Result<String, LatitudeError> {
    let trimmed = raw.trim().trim_end_matches('/');
    crate::urls::check_service_url(trimmed).map_err(|reason| {
        LatitudeError::Setup(format!(
            "refusing the Latitude API URL {:?}: {reason}",
            crate::urls::redact_userinfo(trimmed)
        ))
    })?;
    Ok(trimmed.to_owned())
}

/// rustls with ring as the one crypto provider, the platform's roots (falling back to the
/// bundled Mozilla roots when the system has none) plus any extra roots, and ALPN for HTTP/2.
pub(crate) fn tls_config(extra_roots: &[Vec<u8>]) -> Result<rustls::ClientConfig, LatitudeError> {
    use rustls::pki_types::CertificateDer;
    use rustls_platform_verifier::Verifier;

    let setup = |what: &str, e: rustls::Error| LatitudeError::Setup(format!("TLS {what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = extra_roots
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    let verifier = match Verifier::new_with_extra_roots(extra.clone(), provider.clone()) {
        Ok(verifier) => verifier,
        Err(e) => {
            tracing::debug!(error = %e, "no usable system CA roots; using the bundled Mozilla roots");
            let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned();
            Verifier::new_with_extra_roots(extra.into_iter().chain(bundled), provider.clone())
                .map_err(|e| setup("roots", e))?
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup("versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base: &str) -> ClientConfig {
        ClientConfig::new(base, ApiKey::new("sk_test_SECRET"), "proj_1")
    }

    #[test]
    fn defaults() {
        let c = config(DEFAULT_BASE_URL);
        assert_eq!(c.reads_per_minute, 60);
        assert_eq!(c.writes_per_minute, 20);
        assert_eq!(c.max_retries, 5);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert!(c.user_agent.starts_with("cto/"));
        assert!(!format!("{c:?}").contains("SECRET"));
    }

    #[test]
    fn builds_with_ring_and_redacts_the_key() {
        let client = LatitudeClient::new(config("https://api.latitude.sh/")).unwrap();
        assert_eq!(client.base_url(), "https://api.latitude.sh");
        assert_eq!(client.project(), "proj_1");
        assert!(!format!("{client:?}").contains("SECRET"));
    }

    #[test]
    fn base_url_rules() {
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:9").is_ok());
        let e = check_base_url("http://api.latitude.sh").unwrap_err();
        assert!(e.to_string().contains("plain http://"), "{e}");
        // Names are never trusted as loopback, `localhost` included.
        assert!(check_base_url("http://localhost:8080/").is_err());
        assert!(check_base_url("http://evil.localhost:8080/").is_err());
        let e = check_base_url("https://user:s3cr3t@api.latitude.sh").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("not a url").is_err());
        assert!(check_base_url("https://x/?a=b").is_err());
    }

    #[test]
    fn empty_key_and_project_are_refused() {
        let e = LatitudeClient::new(ClientConfig::new(DEFAULT_BASE_URL, ApiKey::new(" \n"), "p"))
            .unwrap_err();
        assert!(e.to_string().contains("LATITUDE_API_KEY"));
        let e = LatitudeClient::new(ClientConfig::new(DEFAULT_BASE_URL, ApiKey::new("k"), " "))
            .unwrap_err();
        assert!(e.to_string().contains("project"));
    }

    #[test]
    fn retry_after_is_defaulted_and_capped() {
        let env = |json: &str| serde_json::from_str::<ErrorEnvelope>(json).unwrap();
        assert_eq!(retry_after(&env(r#"{"errors":[{}]}"#)), DEFAULT_RETRY_AFTER);
        assert_eq!(
            retry_after(&env(r#"{"errors":[{"meta":{"retry_after":7}}]}"#)),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_after(&env(r#"{"errors":[{"meta":{"retry_after":86400}}]}"#)),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            retry_after(&env(r#"{"errors":[{"meta":{"retry_after":-3}}]}"#)),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(retry_after(&ErrorEnvelope::default()), DEFAULT_RETRY_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_scaled_window_admits_the_budget_per_scaled_window_and_no_more() {
        let client = LatitudeClient::new(config("http://127.0.0.1:9").scaled(0.01)).unwrap();
        assert_eq!(client.time_scale(), 0.01);
        let window = Duration::from_millis(600) + SCALED_WINDOW_SLACK;
        assert_eq!(client.limiter().window(), window);
        let start = tokio::time::Instant::now();
        for _ in 0..60 {
            drop(client.limiter().acquire(RequestClass::Read).await);
        }
        for _ in 0..20 {
            drop(client.limiter().acquire(RequestClass::Write).await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the whole budget at once");
        drop(client.limiter().acquire(RequestClass::Read).await);
        assert_eq!(
            start.elapsed(),
            window,
            "the 61st read waits one scaled window"
        );
        drop(client.limiter().acquire(RequestClass::Write).await);
        assert_eq!(start.elapsed(), window, "the 21st write too");
        // Over two scaled windows, exactly twice the budget.
        for _ in 0..59 {
            drop(client.limiter().acquire(RequestClass::Read).await);
        }
        assert_eq!(start.elapsed(), window);
        drop(client.limiter().acquire(RequestClass::Read).await);
        assert_eq!(start.elapsed(), window * 2);
        assert_eq!(client.stats().reads, 121);
    }

    #[test]
    fn scaling_shrinks_backoff_and_retry_after_but_floors_the_request_timeout() {
        let c = config("http://127.0.0.1:1").scaled(0.01);
        let (window, base, max, timeout) = c.real_durations();
        assert_eq!(window, Duration::from_millis(600) + SCALED_WINDOW_SLACK);
        assert_eq!(base, Duration::from_millis(10));
        assert_eq!(max, Duration::from_millis(300));
        assert_eq!(timeout, MIN_REQUEST_TIMEOUT);
        let c = config("http://127.0.0.1:1").scaled(0.5);
        assert_eq!(c.real_durations().3, Duration::from_secs(15));
        // A short configured timeout is never lengthened by the floor.
        let mut c = config("http://127.0.0.1:1").scaled(0.5);
        c.request_timeout = Duration::from_secs(2);
        assert_eq!(c.real_durations().3, Duration::from_secs(2));
        // Unscaled: untouched.
        let c = config(DEFAULT_BASE_URL);
        assert_eq!(
            c.real_durations(),
            (
                DEFAULT_WINDOW,
                Duration::from_secs(1),
                Duration::from_secs(30),
                Duration::from_secs(30)
            )
        );
        assert_eq!(
            scale_duration(Duration::from_secs(7), 0.01),
            Duration::from_millis(70)
        );
        assert_eq!(
            scale_duration(DEFAULT_RETRY_AFTER, 0.01),
            Duration::from_millis(600)
        );
    }

    #[test]
    fn a_time_scale_is_refused_off_loopback_and_out_of_range() {
        let e = LatitudeClient::new(config("https://api.latitude.sh").scaled(0.1)).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
            assert!(LatitudeClient::new(config("http://127.0.0.1:1").scaled(bad)).is_err());
        }
        assert!(LatitudeClient::new(config("https://api.latitude.sh").scaled(1.0)).is_ok());
        assert!(LatitudeClient::new(config("https://127.0.0.1:8443").scaled(0.2)).is_ok());
        assert!(LatitudeClient::new(config("https://localhost:8443").scaled(0.2)).is_err());
    }

    #[test]
    fn loopback_urls() {
        for yes in [
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "https://[::1]/",
            "http://[::1]:9",
        ] {
            assert!(is_loopback_url(yes), "{yes}");
        }
        for no in [
            "https://api.latitude.sh",
            "https://api.example.invalid",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "https://localhost/",
            "http://lab.localhost:1",
            "not a url",
            "ftp://127.0.0.1",
        ] {
            assert!(!is_loopback_url(no), "{no}");
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("sv_ZWr75Zbjr5A91"), "sv_ZWr75Zbjr5A91");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn retry_policy() {
        let api = |method: Method, status: u16| {
            LatitudeError::Api(Box::new(ApiError {
                method,
                path: "/servers".into(),
                status: StatusCode::from_u16(status).unwrap(),
                code: None,
                title: None,
                detail: None,
                request_id: None,
            }))
        };
        assert!(should_retry(&api(Method::GET, 503), true));
        assert!(should_retry(&api(Method::DELETE, 500), true));
        assert!(!should_retry(&api(Method::POST, 502), false));
        assert!(!should_retry(&api(Method::GET, 404), true));
        assert!(!should_retry(&api(Method::GET, 501), true));
        let transport = |sent| LatitudeError::Transport {
            method: Method::POST,
            path: "/servers".into(),
            message: String::new(),
            sent,
            timeout: false,
        };
        assert!(should_retry(&transport(false), false));
        assert!(!should_retry(&transport(true), false));
        assert!(should_retry(&transport(true), true));
    }
}
