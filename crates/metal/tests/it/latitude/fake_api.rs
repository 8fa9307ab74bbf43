//! A tiny Latitude-shaped HTTP server on 127.0.0.1:0 for one test: every request is recorded and
//! answered by the test's script, which sees the request and how many came before it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use metal::latitude::{ClientConfig, LatitudeClient};
use metal::secret::ApiKey;

/// The key every test client uses; it must never show up in an error.
pub const KEY: &str = "sk_it_DO_NOT_LEAK_4f2a9c";
/// The project every test client uses.
pub const PROJECT: &str = "proj_test";

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// Raw (still percent-encoded) query string.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A decoded query parameter (`page[number]`).
    pub fn param(&self, name: &str) -> Option<String> {
        let encoded = name.replace('[', "%5B").replace(']', "%5D");
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == encoded).then(|| v.to_owned())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub body: String,
    pub request_id: Option<String>,
    pub delay: Option<Duration>,
}

impl Canned {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            request_id: None,
            delay: None,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self::json(status, "")
    }

    pub fn request_id(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_owned());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

type Script = dyn Fn(&Recorded, usize) -> Canned + Send + Sync;

#[derive(Clone)]
struct AppState {
    script: Arc<Script>,
    log: Arc<Mutex<Vec<Recorded>>>,
    count: Arc<AtomicUsize>,
}

/// A running fake API.
pub struct FakeApi {
    pub base_url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeApi {
    /// Starts a server answering with `script(request, index)` (index counts from 0).
    pub async fn start(
        script: impl Fn(&Recorded, usize) -> Canned + Send + Sync + 'static,
    ) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = AppState {
            script: Arc::new(script),
            log: log.clone(),
            count: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{addr}"),
            log,
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// A client for this server with fast retries.
    pub fn client(&self) -> LatitudeClient {
        LatitudeClient::new(self.config()).unwrap()
    }

    /// The config [`Self::client`] uses.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.base_url, ApiKey::new(KEY), PROJECT);
        config.retry_base_delay = Duration::from_millis(10);
        config.retry_max_delay = Duration::from_millis(40);
        config.request_timeout = Duration::from_secs(5);
        config
    }
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap()
        .to_vec();
    let recorded = Recorded {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    let index = state.count.fetch_add(1, Ordering::SeqCst);
    let canned = (state.script)(&recorded, index);
    state.log.lock().unwrap().push(recorded);
    if let Some(delay) = canned.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Body::from(canned.body.clone()));
    *response.status_mut() = StatusCode::from_u16(canned.status).unwrap();
    if !canned.body.is_empty() {
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/vnd.api+json; charset=utf-8"),
        );
    }
    if let Some(id) = &canned.request_id {
        response
            .headers_mut()
            .insert("x-request-id", HeaderValue::from_str(id).unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Real-shaped bodies (from recorded Latitude traffic)
// ---------------------------------------------------------------------------------------------

/// `GET /plans` (May 2025, trimmed).
pub const PLANS: &str = r#"{"data":[{"id":"plan_2X6KG5mA5yPBM","type":"plans","attributes":{
  "slug":"c2-small-x86","name":"c2.small.x86","features":["ssh","user_data"],
  "specs":{"cpu":{"type":"E-2134G","clock":3.5,"cores":4,"count":1},"memory":{"total":32},
           "drives":[{"count":1,"size":"500 GB","type":"SSD"}],"nics":[{"count":1,"type":"1 Gbps"}],"gpu":{}},
  "regions":[
    {"name":"United States","deploys_instantly":["ubuntu_24_04_x64_lts"],
     "locations":{"available":["CHI","ASH","DAL","MIA2","LAX","NYC","MIA"],"in_stock":["CHI","DAL","MIA2","LAX","NYC"]},
     "stock_level":"high",
     "pricing":{"USD":{"hour":0.21,"month":146.0,"year":1288.0},"BRL":{"hour":1.05,"month":728.0,"year":6439.0}}},
    {"name":"Germany","deploys_instantly":[],"locations":{"available":["FRA"],"in_stock":[]},
     "stock_level":"unavailable","pricing":{"USD":{"hour":0.21,"month":146.0,"year":1288.0}}},
    {"name":"Colombia","deploys_instantly":["ubuntu_24_04_x64_lts"],"locations":{"available":["BGT"],"in_stock":["BGT"]},
     "stock_level":"low","pricing":{"USD":{"hour":0.3,"month":208.0,"year":1840.0}}}
  ]}}],"meta":{}}"#;

/// `POST /servers` → 201 (May 2025).
pub const CREATE_201: &str = r#"{"data":{"type":"servers","id":"sv_ZWr75Zbjr5A91","attributes":{"hostname":"test","label":"21BS005889","role":"Bare Metal",
 "status":"starting_deploy","primary_ipv4":"177.54.146.23",
 "specs":{"cpu":"Xeon E-2278G CPU @ 3.40GHz (8 cores)","disk":"2 X 4 TB NVMe","ram":"64 GB","nic":"10 Gbit/s + 1 Gbit/s"},
 "plan":{"id":"plan_2X6KG5mA5yPBM","name":"c2.small.x86","slug":"c2-small-x86","billing":"hourly"}}},"meta":{}}"#;

/// `GET /servers/{id}` → 200 (May 2025, trimmed).
pub const GET_200: &str = r#"{"data":{"id":"sv_ZWr75Zbjr5A91","type":"servers","attributes":{
 "tags":[],"hostname":"test","label":"21BS005889","price":0.18,"role":"Bare Metal",
 "primary_ipv4":"177.54.146.23","status":"on","ipmi_status":"Normal",
 "created_at":"2025-05-05T10:54:34+00:00","scheduled_deletion_at":null,"locked":false,"rescue_allowed":true,
 "region":{"city":"São Paulo","country":"Brazil","site":{"id":"loc_87vRENkgNdPyk","name":"São Paulo","slug":"SAO","facility":"Latitude.sh SP1"}},
 "project":{"id":"proj_gXQvNedwV0zpb","slug":"terraform-test","billing_type":"Normal"},
 "plan":{"id":"plan_2X6KG5mA5yPBM","name":"c2.small.x86","slug":"c2-small-x86","billing":"hourly"},
 "operating_system":{"name":"Ubuntu","slug":"ubuntu_24_04_x64_lts","version":"24.04"},
 "specs":{"cpu":"Xeon E-2278G CPU @ 3.40GHz (8 cores)","disk":"2 X 4 TB NVMe","ram":"64 GB","nic":"10 Gbit/s + 1 Gbit/s","gpu":null}}},"meta":{}}"#;

/// 404 for a missing record.
pub const NOT_FOUND_404: &str = r#"{"errors":[{"code":"not_found","status":"404","title":"Error","detail":"Specified Record Not Found","meta":{}}]}"#;

/// 422 validation error.
pub const VALIDATION_422: &str = r#"{"errors":[{"code":"VALIDATION_ERROR","status":"422","title":"Validation Error","detail":"must be filled","source":{"pointer":"/data/attributes/site"},"meta":{}}]}"#;

/// 429 asking to wait `secs`.
pub fn rate_limited_429(secs: u64) -> String {
    format!(
        r#"{{"errors":[{{"code":"RATE_LIMIT_EXCEEDED","title":"Rate Limit Exceeded","status":"429","detail":"Too many requests. Please slow down and retry.","meta":{{"retry_after":{secs}}}}}]}}"#
    )
}

/// A server list page with `n` servers numbered from `first`.
pub fn server_page(first: usize, n: usize) -> String {
    let data: Vec<serde_json::Value> = (first..first + n)
        .map(|i| {
            serde_json::json!({
                "id": format!("sv_{i:04}"),
                "type": "servers",
                "attributes": {
                    "hostname": format!("node-{i}"),
                    "status": "on",
                    "site": "MIA2",
                    "primary_ipv4": "10.1.2.3",
                    "plan": {"slug": "c2-small-x86", "billing": "hourly"},
                    "price": 0.21
                }
            })
        })
        .collect();
    serde_json::json!({"data": data, "meta": {}}).to_string()
}
