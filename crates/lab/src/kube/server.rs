//! The API server itself: TLS with client-certificate authentication, authorization with the
//! upstream default roles, content negotiation, routing, and the handlers for health, version,
//! discovery, get, list and watch.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use base64::Engine;
use hyper::body::{Frame, Incoming};
use hyper::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::certs::{ClusterCa, Leaf};
use super::discovery::{self, AGGREGATED_V2, Registry, ResourceType};
use super::objects::{self, IncludeObject};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Event, EventType, Gvr, Store, StoreError, Subscription, WatchFrom};
use super::write::{Deleted, PatchKind, WriteOptions};
use super::{ClusterOptions, DEFAULT_KUBERNETES_VERSION, KubeApiConfig, NodeInfo};
use crate::LabError;
use crate::durations::Durations;
use crate::observe::{Kind, Observer};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// The API server's `--min-request-timeout`: watches without `timeoutSeconds` last between
/// one and two of these.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long the serving certificate is valid.
const SERVING_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

const JSON: &str = "application/json";

/// The largest request body the real API server reads (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the server, the simulated controllers and the [`super::KubeApi`] handle share.
pub(crate) struct Shared {
    pub(super) store: Store,
    /// The served resources, built-in and from CustomResourceDefinitions.
    pub(super) registry: Registry,
    /// `<ip>:<port>`, for `serverAddressByClientCIDRs`.
    server_address: String,
    pub(super) stop: watch::Sender<bool>,
    /// Time scale, timeline, git repositories and faults.
    pub(super) options: ClusterOptions,
    /// The durations of `options.lab` (timeline, jitter, seed, time scale).
    pub(super) durations: Durations,
    /// Where requests and controller conditions are recorded.
    pub(super) observer: Arc<Observer>,
    /// The block devices of each Node (by node name), as its Talos machine reports them; a
    /// Node without an entry has the default lab disks (`/dev/nvme0n1`, `/dev/nvme1n1`).
    pub(super) node_disks:
        std::sync::Mutex<std::collections::HashMap<String, Vec<crate::talos::disks::LabDisk>>>,
}

fn nodes_gvr() -> Gvr {
    Gvr::new("", "v1", "nodes")
}

fn leases_gvr() -> Gvr {
    Gvr::new("coordination.k8s.io", "v1", "leases")
}

impl Shared {
    /// Ends every watch; the caller aborts the server task.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The Node, and on first registration its heartbeat Lease in `kube-node-lease` (renewed
    /// by a real kubelet every 10 s; here it keeps its first renew time, so that re-upserting
    /// stays a no-op).
    pub fn upsert_node(&self, info: &NodeInfo) {
        let existing = self.store.get(&nodes_gvr(), "", &info.name);
        // The kubelet reports what it sees; once the CNI runs, its network is ready whatever
        // the caller's view.
        let mut info = info.clone();
        info.ready = info.ready || self.cni_ready();
        let info = &info;
        let node = objects::node(info, existing.as_ref());
        let node = self.store.upsert(&nodes_gvr(), "", node);
        if existing.is_none() {
            self.observer
                .condition(format!("node/{}/registered", info.name));
        }
        let was_ready = existing.as_ref().is_some_and(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        });
        if info.ready && !was_ready {
            self.observer.condition(format!("node/{}/ready", info.name));
        }
        if self
            .store
            .get(&leases_gvr(), objects::NODE_LEASE_NAMESPACE, &info.name)
            .is_none()
        {
            self.store.upsert(
                &leases_gvr(),
                objects::NODE_LEASE_NAMESPACE,
                objects::node_lease(&node),
            );
        }
    }

    pub fn remove_node(&self, name: &str) -> bool {
        let _ = self
            .store
            .delete(&leases_gvr(), objects::NODE_LEASE_NAMESPACE, name);
        self.store.delete(&nodes_gvr(), "", name).is_ok()
    }

    pub fn nodes(&self) -> Vec<Value> {
        self.store.list(&nodes_gvr(), None).0
    }

    /// The control-plane kubelets' version: on Talos, the API server runs the same release.
    fn kubernetes_version(&self) -> String {
        self.nodes()
            .iter()
            .find(|n| {
                n.pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .is_some_and(|l| l.contains_key("node-role.kubernetes.io/control-plane"))
            })
            .and_then(|n| n.pointer("/status/nodeInfo/kubeletVersion"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_KUBERNETES_VERSION)
            .to_string()
    }
}

/// Binds, builds the TLS identity and starts serving. Returns the URL, the shared state and
/// the server task.
pub(crate) async fn start(
    config: KubeApiConfig,
    options: ClusterOptions,
    observer: Arc<Observer>,
) -> Result<(String, Arc<Shared>, JoinHandle<()>), LabError> {
    let pki = |reason: String| LabError::KubePki { reason };
    let ca = ClusterCa::load(&config.ca).map_err(pki)?;

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| LabError::KubeBind {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| LabError::KubeBind {
        addr: config.listen,
        source,
    })?;
    let ip = reachable(local.ip());

    let mut dns_names: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = vec![ip, IpAddr::V4(Ipv4Addr::LOCALHOST)];
    for san in &config.cert_sans {
        match san.parse::<IpAddr>() {
            Ok(addr) => ips.push(addr),
            Err(_) => dns_names.push(san.clone()),
        }
    }
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    ] {
        dns_names.push(name.to_string());
    }
    dns_names.sort();
    dns_names.dedup();
    ips.sort();
    ips.dedup();
    let serving = ca
        .issue(&Leaf {
            common_name: "kube-apiserver",
            organizations: &[],
            dns_names,
            ips,
            server_auth: true,
            client_auth: false,
            validity: SERVING_CERT_LIFETIME,
        })
        .map_err(pki)?;

    let (serving_cert, serving_key) = serving.rustls().map_err(pki)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in &ca.certs {
        roots
            .add(cert.clone())
            .map_err(|e| pki(format!("CA certificate as a trust anchor: {e}")))?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| pki(format!("client certificate verifier: {e}")))?;
    let verifier = Arc::new(RequestClientCert {
        inner: webpki.clone(),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pki(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![serving_cert], serving_key)
        .map_err(|e| pki(format!("TLS configuration: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let (stop, _) = watch::channel(false);
    let store = match &options.state_file {
        Some(path) => Store::persisted_encrypted(
            path,
            &options.incarnation,
            options.encryption_secret.as_deref(),
        ),
        None => Store::new(),
    };
    let shared = Arc::new(Shared {
        store,
        registry: Registry::default(),
        server_address: SocketAddr::new(ip, local.port()).to_string(),
        stop,
        durations: Durations::new(&options.lab),
        observer,
        options,
        node_disks: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    for crd in shared
        .store
        .list(
            &Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
            None,
        )
        .0
    {
        shared.registry.register_crd(&crd);
    }
    for name in objects::SYSTEM_NAMESPACES {
        if shared
            .store
            .get(&Gvr::new("", "v1", "namespaces"), "", name)
            .is_none()
        {
            shared.store.upsert(
                &Gvr::new("", "v1", "namespaces"),
                "",
                objects::namespace(name),
            );
        }
    }
    for (resource, object) in objects::default_rbac() {
        let gvr = Gvr::new("rbac.authorization.k8s.io", "v1", resource);
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if shared.store.get(&gvr, "", name).is_none() {
            shared.store.upsert(&gvr, "", object);
        }
    }
    let url = format!("https://{}", SocketAddr::new(ip, local.port()));
    tracing::info!(cluster = %config.cluster_name, %url, "lab Kubernetes API listening");
    let task = tokio::spawn(serve(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        webpki,
        shared.clone(),
    ));
    Ok((url, shared, task))
}

/// The address clients should use for a listener bound to `ip`.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Asks for a client certificate without insisting, and accepts any at the TLS layer (Go's
/// `tls.RequestClientCert`, which kube-apiserver uses): the x509 authenticator checks the chain
/// afterwards, and a bad certificate is an HTTP 401, not a handshake failure. The handshake
/// signature (proof of the key) is still verified here.
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Who is asking, from the connection's client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// No certificate: `system:anonymous` in `system:unauthenticated`.
    Anonymous,
    /// A certificate chaining to the cluster CA.
    User { name: String, groups: Vec<String> },
    /// A certificate that does not verify (another CA, expired, no client-auth usage).
    Invalid(String),
}

impl Identity {
    fn from_peer(
        chain: Option<&[CertificateDer<'static>]>,
        verifier: &dyn ClientCertVerifier,
    ) -> Identity {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return Identity::Anonymous;
        };
        if let Err(error) = verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            return Identity::Invalid(error.to_string());
        }
        match x509_parser::parse_x509_certificate(leaf) {
            Ok((_, cert)) => {
                let subject = cert.subject();
                let name = subject
                    .iter_common_name()
                    .filter_map(|a| a.as_str().ok())
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let groups = subject
                    .iter_organization()
                    .filter_map(|a| a.as_str().ok())
                    .map(str::to_string)
                    .collect();
                if name.is_empty() {
                    Identity::Invalid("the client certificate has no common name".into())
                } else {
                    Identity::User { name, groups }
                }
            }
            Err(error) => Identity::Invalid(error.to_string()),
        }
    }

    fn user_name(&self) -> &str {
        match self {
            Identity::User { name, .. } => name,
            _ => "system:anonymous",
        }
    }

    fn is_master(&self) -> bool {
        matches!(self, Identity::User { groups, .. } if groups.iter().any(|g| g == "system:masters"))
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    verifier: Arc<dyn ClientCertVerifier>,
    shared: Arc<Shared>,
) {
    // Dropped (and so aborted) together with this task.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "kube API accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let verifier = verifier.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "kube API TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = Arc::new(Identity::from_peer(
                tls.get_ref().1.peer_certificates(),
                verifier.as_ref(),
            ));
            if let Identity::Invalid(reason) = identity.as_ref() {
                tracing::debug!(%peer, %reason, "kube API client certificate rejected");
            }
            let service = service_fn(move |request| {
                let shared = shared.clone();
                let identity = identity.clone();
                async move { Ok::<_, Infallible>(handle(&shared, &identity, request).await) }
            });
            if let Err(error) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, %error, "kube API connection ended with an error");
            }
        });
    }
}

// --- Responses ---

fn respond(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn json_response(
    status: StatusCode,
    content_type: &str,
    value: &Value,
    pretty: bool,
) -> Response<Body> {
    let mut bytes = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    .unwrap_or_default();
    bytes.push(b'\n');
    respond(status, content_type, Body::from(bytes))
}

fn error_response(error: ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, JSON, &error.to_status(), false)
}

fn text_response(status: StatusCode, text: &str) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Body::from(text.to_string()),
    )
}

fn store_error(error: StoreError, resource: &ResourceType, name: &str) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::not_found(resource, name),
        StoreError::Expired { requested, oldest } => {
            ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::TooLarge { requested, current } => {
            ApiError::too_large_resource_version(requested, current)
        }
        StoreError::AlreadyExists => ApiError::already_exists(resource, name),
        StoreError::Conflict => ApiError::conflict(resource, name),
    }
}

// --- Content negotiation ---

/// A representation the client accepts and the lab can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Table,
    PartialMetadata,
    PartialMetadataList,
    AggregatedDiscovery,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Table => "application/json;as=Table;v=v1;g=meta.k8s.io",
            Format::PartialMetadata => {
                "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
            }
            Format::PartialMetadataList => {
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
            }
            Format::AggregatedDiscovery => AGGREGATED_V2,
        }
    }
}

/// The first media range in `accept` (in the client's order) that maps to one of `allowed`;
/// `None` when there is none (406). A missing header means JSON.
fn negotiate(accept: Option<&str>, allowed: &[Format]) -> Option<Format> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return allowed.contains(&Format::Json).then_some(Format::Json);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let params: BTreeMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .filter(|(k, _)| k != "q" && k != "charset")
            .collect();
        let get = |k: &str| params.get(k).map(String::as_str);
        let format = match (get("as"), get("g"), get("v")) {
            (None, None, None) => Some(Format::Json),
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => Some(Format::Table),
            (Some("PartialObjectMetadata"), Some("meta.k8s.io"), Some("v1")) => {
                Some(Format::PartialMetadata)
            }
            (Some("PartialObjectMetadataList"), Some("meta.k8s.io"), Some("v1")) => {
                Some(Format::PartialMetadataList)
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                Some(Format::AggregatedDiscovery)
            }
            _ => None,
        };
        if let Some(format) = format.filter(|f| allowed.contains(f)) {
            return Some(format);
        }
    }
    None
}

// --- Query parameters ---

struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(uri: &hyper::Uri) -> Result<Query, ApiError> {
        let pairs = match uri.query() {
            None => Vec::new(),
            Some(_) => {
                axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
                    .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?
                    .0
            }
        };
        Ok(Query { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// Go's `strconv.ParseBool`, as the API server's parameter decoder uses it.
    fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False" | "") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!(
                "strconv.ParseBool: parsing \"{other}\": invalid syntax"
            ))),
        }
    }

    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing \"{v}\": invalid syntax"))
            }),
        }
    }
}

/// `resourceVersion`: unset, `"0"`, or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Unset,
    Any,
    At(u64),
}

fn parse_version(value: Option<&str>) -> Result<Version, ApiError> {
    match value.unwrap_or_default() {
        "" => Ok(Version::Unset),
        "0" => Ok(Version::Any),
        v => v
            .parse()
            .map(Version::At)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: \"{v}\""))),
    }
}

// --- Routing ---

async fn handle(
    shared: &Shared,
    identity: &Identity,
    request: Request<Incoming>,
) -> Response<Body> {
    shared.observer.request(Kind::Kube);
    // Injected faults (`kube.*` of `--faults`): the one hook of this module.
    if let Some(response) = crate::faults::kube_hook(&shared.server_address).await {
        return response;
    }
    let (parts, body) = request.into_parts();
    let mut response = route(shared, identity, &parts, body).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&super::store::new_uid()) {
        headers.insert("audit-id", value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

async fn route(
    shared: &Shared,
    identity: &Identity,
    request: &hyper::http::request::Parts,
    body: Incoming,
) -> Response<Body> {
    if let Identity::Invalid(_) = identity {
        return error_response(ApiError::unauthorized());
    }
    let path = request.uri.path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let query = match Query::parse(&request.uri) {
        Ok(query) => query,
        Err(error) => return error_response(error),
    };
    let accept = request
        .headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let method = request.method.clone();
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header("content-type");
    let user_agent = header("user-agent");
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(_) => return error_response(ApiError::request_too_large()),
        }
    } else {
        Bytes::new()
    };
    let request_body = RequestBody {
        bytes: body,
        content_type,
        user_agent,
    };

    // A pod's log: what its simulated container is (`controllers::pods::log`).
    if let ["api", "v1", "namespaces", ns, "pods", name, "log"] = segments.as_slice()
        && method == Method::GET
    {
        if let Err(error) =
            authorize_resource(identity, "get", "", "pods/log", Some(ns), Some(name))
        {
            return error_response(error);
        }
        let Some(pods) = shared.registry.find("", "v1", "pods") else {
            return error_response(ApiError::no_such_resource());
        };
        let Some(pod) = shared.store.get(&pods.gvr(), ns, name) else {
            return error_response(ApiError::not_found(pods, name));
        };
        let names: Vec<&str> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        // As the real server answers (pkg/registry/core/pod/strategy.go, LogLocation).
        let container = match query.get("container") {
            Some(c) if names.contains(&c) => c.to_string(),
            Some(c) => {
                return error_response(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            None if names.len() == 1 => names[0].to_string(),
            None => {
                return error_response(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        };
        if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Pending") {
            return error_response(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            )));
        }
        return text_response(
            StatusCode::OK,
            &super::controllers::pods::log(&pod, &container),
        );
    }

    // The proxy subresources of services and pods (the simulated Vault answers behind them).
    if let [
        "api",
        "v1",
        "namespaces",
        ns,
        kind @ ("services" | "pods"),
        target,
        "proxy",
        tail @ ..,
    ] = segments.as_slice()
    {
        let verb = match method {
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "unknown",
        };
        let name = target
            .split(':')
            .find(|p| !matches!(*p, "http" | "https"))
            .unwrap_or_default();
        if let Err(error) = authorize_resource(
            identity,
            verb,
            "",
            &format!("{kind}/proxy"),
            Some(ns),
            Some(name),
        ) {
            return error_response(error);
        }
        let mut proxied = format!("/{}", tail.join("/"));
        if path.ends_with('/') && !proxied.ends_with('/') {
            proxied.push('/');
        }
        return super::controllers::vault::proxy(
            shared,
            &super::controllers::vault::ProxyRequest {
                namespace: ns,
                kind,
                target,
                method: &method,
                path: &proxied,
                query: request.uri.query(),
                body: &request_body.bytes,
            },
        );
    }

    let resource_prefix = match segments.as_slice() {
        ["api", "v1", _, ..] => Some(("", "v1", &segments[2..])),
        ["apis", group, version, _, ..] => Some((*group, *version, &segments[3..])),
        _ => None,
    };
    if let Some((group, version, rest)) = resource_prefix {
        return match resource_request(
            shared,
            identity,
            &method,
            group,
            version,
            rest,
            &query,
            accept.as_deref(),
            &request_body,
        ) {
            Ok(response) => response,
            Err(error) => error_response(error),
        };
    }

    let verb = non_resource_verb(&method);
    if let Err(error) = authorize_path(identity, &path, verb) {
        return error_response(error);
    }
    let pretty = query.flag("pretty").ok().flatten().unwrap_or(false);
    match segments.as_slice() {
        [check @ ("healthz" | "livez" | "readyz"), rest @ ..] if verb == "get" => {
            health(check, rest, query.has("verbose"), query.get("exclude"))
        }
        ["version"] if verb == "get" => version(shared, pretty),
        ["api"] | ["apis"] if verb == "get" => {
            let core = segments[0] == "api";
            match negotiate(
                accept.as_deref(),
                &[Format::Json, Format::AggregatedDiscovery],
            ) {
                Some(Format::AggregatedDiscovery) => {
                    let all = shared.registry.all();
                    let doc = if core {
                        discovery::aggregated_core(&all)
                    } else {
                        discovery::aggregated_groups(&all)
                    };
                    json_response(StatusCode::OK, AGGREGATED_V2, &doc, pretty)
                }
                Some(_) => {
                    let doc = if core {
                        discovery::api_versions(&shared.server_address)
                    } else {
                        discovery::api_group_list(&shared.registry.all(), &shared.server_address)
                    };
                    json_response(StatusCode::OK, JSON, &doc, pretty)
                }
                None => error_response(ApiError::not_acceptable()),
            }
        }
        ["api", version] if verb == "get" => discovery_document(
            discovery::api_resource_list(&shared.registry.all(), "", version),
            accept.as_deref(),
            pretty,
        ),
        ["apis", group] if verb == "get" => discovery_document(
            discovery::api_group(&shared.registry.all(), group, &shared.server_address),
            accept.as_deref(),
            pretty,
        ),
        ["apis", group, version] if verb == "get" => discovery_document(
            discovery::api_resource_list(&shared.registry.all(), group, version),
            accept.as_deref(),
            pretty,
        ),
        ["api", ..] | ["apis", ..] => {
            if verb == "get" {
                error_response(ApiError::no_such_resource())
            } else {
                error_response(ApiError::method_not_allowed())
            }
        }
        ["openapi", "v3"] if verb == "get" => json_response(
            StatusCode::OK,
            JSON,
            &super::openapi::index(&shared.registry.all()),
            pretty,
        ),
        ["openapi", "v3", gv @ ..] if verb == "get" => {
            let (group, version) = match gv {
                ["api", version] => ("", *version),
                ["apis", group, version] => (*group, *version),
                _ => ("-", "-"),
            };
            match super::openapi::document(&shared.registry.all(), group, version) {
                Some(doc) => json_response(StatusCode::OK, JSON, &doc, pretty),
                None => text_response(StatusCode::NOT_FOUND, "404 page not found\n"),
            }
        }
        // Swagger 2.0 as JSON only: a client that accepts nothing but protobuf (client-go)
        // gets 406 (see `openapi`).
        ["openapi", "v2"] if verb == "get" => {
            let json_ok = accept.as_deref().is_none_or(|a| {
                a.split(',').any(|part| {
                    let media = part.split(';').next().unwrap_or("").trim();
                    matches!(media, "application/json" | "application/*" | "*/*" | "")
                })
            });
            if json_ok {
                json_response(
                    StatusCode::OK,
                    JSON,
                    &super::openapi::v2(&shared.registry.all()),
                    pretty,
                )
            } else {
                error_response(ApiError::not_acceptable())
            }
        }
        _ => text_response(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

fn discovery_document(doc: Option<Value>, accept: Option<&str>, pretty: bool) -> Response<Body> {
    match (doc, negotiate(accept, &[Format::Json])) {
        (None, _) => error_response(ApiError::no_such_resource()),
        (Some(_), None) => error_response(ApiError::not_acceptable()),
        (Some(doc), Some(_)) => json_response(StatusCode::OK, JSON, &doc, pretty),
    }
}

fn non_resource_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::OPTIONS => "options",
        _ => "unknown",
    }
}

/// RBAC's `system:public-info-viewer` (everyone) and `system:discovery` (authenticated) for
/// non-resource paths; `system:masters` may do anything.
fn authorize_path(identity: &Identity, path: &str, verb: &str) -> Result<(), ApiError> {
    if identity.is_master() {
        return Ok(());
    }
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let allowed = verb == "get"
        && (public.contains(&path)
            || (matches!(identity, Identity::User { .. })
                && (matches!(path, "/api" | "/apis" | "/openapi")
                    || path.starts_with("/api/")
                    || path.starts_with("/apis/")
                    || path.starts_with("/openapi/"))));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            format!(
                "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
                identity.user_name()
            ),
            json!({}),
        ))
    }
}

/// RBAC for resource requests: only `system:masters` is bound to anything here.
fn authorize_resource(
    identity: &Identity,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), ApiError> {
    if identity.is_master() {
        return Ok(());
    }
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let subject = match name {
        Some(name) => format!("{qualified} \"{name}\""),
        None => qualified,
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let mut details = json!({"kind": resource});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    if let Some(name) = name {
        details["name"] = json!(name);
    }
    Err(ApiError::forbidden(
        format!(
            "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}",
            identity.user_name()
        ),
        details,
    ))
}

// --- Health and version ---

const HEALTH_CHECKS: &[&str] = &[
    "ping",
    "log",
    "etcd",
    "poststarthook/start-apiserver-admission-initializer",
    "poststarthook/generic-apiserver-start-informers",
    "poststarthook/start-kube-apiserver-admission-initializer",
    "poststarthook/bootstrap-controller",
    "poststarthook/rbac/bootstrap-roles",
    "poststarthook/scheduling/bootstrap-system-priority-classes",
];
const READY_ONLY_CHECKS: &[&str] = &["etcd-readiness", "informer-sync", "shutdown"];

fn health(endpoint: &str, rest: &[&str], verbose: bool, exclude: Option<&str>) -> Response<Body> {
    let checks: Vec<&str> = if endpoint == "readyz" {
        HEALTH_CHECKS
            .iter()
            .chain(READY_ONLY_CHECKS)
            .copied()
            .collect()
    } else {
        HEALTH_CHECKS.to_vec()
    };
    if !rest.is_empty() {
        let check = rest.join("/");
        return if checks.contains(&check.as_str()) {
            text_response(StatusCode::OK, "ok")
        } else {
            text_response(StatusCode::NOT_FOUND, "404 page not found\n")
        };
    }
    if !verbose {
        return text_response(StatusCode::OK, "ok");
    }
    let mut text = String::new();
    for check in checks {
        if exclude == Some(check) {
            text.push_str(&format!("[+]{check} excluded: ok\n"));
        } else {
            text.push_str(&format!("[+]{check} ok\n"));
        }
    }
    text.push_str(&format!("{endpoint} check passed\n"));
    text_response(StatusCode::OK, &text)
}

fn version(shared: &Shared, pretty: bool) -> Response<Body> {
    let git_version = shared.kubernetes_version();
    let mut numbers = git_version.trim_start_matches('v').split(['.', '-', '+']);
    let major = numbers.next().unwrap_or("1").to_string();
    let minor = numbers.next().unwrap_or("34").to_string();
    let previous_minor = minor
        .parse::<u32>()
        .map(|m| m.saturating_sub(1).to_string())
        .unwrap_or_default();
    let doc = json!({
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "minCompatibilityMajor": major,
        "minCompatibilityMinor": previous_minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-09-09T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    });
    json_response(StatusCode::OK, JSON, &doc, pretty)
}

// --- Resources ---

/// The body of a write and the headers that say how to read it.
struct RequestBody {
    bytes: Bytes,
    content_type: String,
    user_agent: String,
}

impl RequestBody {
    /// The body as JSON (or YAML, which the real server also reads).
    fn object(&self, patch: bool) -> Result<Value, ApiError> {
        let media = self
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let yaml = match media.as_str() {
            "application/json" | "" if !patch => false,
            "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/json-patch+json"
                if patch =>
            {
                false
            }
            "application/yaml" if !patch => true,
            "application/apply-patch+yaml" if patch => true,
            _ => return Err(ApiError::unsupported_media_type(&media)),
        };
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("the body of the request is empty"));
        }
        let parsed = if yaml {
            serde_saphyr::from_slice::<Value>(&self.bytes).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<Value>(&self.bytes).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| {
            if patch {
                ApiError::bad_request(format!("error decoding patch: {e}"))
            } else {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e}",
                    "object"
                ))
            }
        })
    }

    /// The default field manager: the User-Agent up to its first `/`.
    fn default_manager(&self) -> String {
        self.user_agent
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

fn write_options(
    query: &Query,
    body: &RequestBody,
    subresource: Option<&str>,
    apply: bool,
) -> Result<WriteOptions, ApiError> {
    let dry_run = match query.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    match query.get("fieldValidation") {
        None | Some("" | "Ignore" | "Warn" | "Strict") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Warn\", \"Strict\""
            )));
        }
    }
    let manager = match query.get("fieldManager") {
        Some(m) if !m.is_empty() => {
            if m.len() > 128 {
                return Err(ApiError::invalid(
                    "fieldManager: Too long: must have at most 128 bytes",
                ));
            }
            m.to_string()
        }
        _ if apply => String::new(),
        _ => body.default_manager(),
    };
    Ok(WriteOptions {
        manager,
        dry_run,
        force: query.flag("force")?.unwrap_or(false),
        subresource: subresource.map(str::to_string),
    })
}

/// `v1` `Status` `Success`, as built-in resources answer a delete.
fn delete_success(resource: &ResourceType, object: &Value) -> Value {
    let mut details = json!({
        "name": object.pointer("/metadata/name").cloned().unwrap_or_default(),
        "kind": resource.resource,
        "uid": object.pointer("/metadata/uid").cloned().unwrap_or_default(),
    });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[allow(clippy::too_many_arguments)]
fn resource_request(
    shared: &Shared,
    identity: &Identity,
    method: &Method,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &Query,
    accept: Option<&str>,
    body: &RequestBody,
) -> Result<Response<Body>, ApiError> {
    // The deprecated `/watch/` prefix.
    let (watch_path, rest) = match rest {
        ["watch", tail @ ..] if !tail.is_empty() => (true, tail),
        _ => (false, rest),
    };
    // `/namespaces/<ns>/<resource>...`, unless it is a subresource of the namespace itself.
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, resource, ..] if !matches!(*resource, "status" | "finalize") => {
            (Some(*ns), &rest[2..])
        }
        _ => (None, rest),
    };
    let (resource_name, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_such_resource()),
    };
    let watch = watch_path || query.flag("watch")?.unwrap_or(false);
    let verb = match (method, name.is_some()) {
        (&Method::GET | &Method::HEAD, true) if watch => "watch",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) if watch => "watch",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    };
    authorize_resource(identity, verb, group, resource_name, namespace, name)?;

    let resource = shared
        .registry
        .find(group, version, resource_name)
        .ok_or_else(ApiError::no_such_resource)?;
    // Cluster-scoped resources have no namespaced paths; namespaced objects are only reachable
    // by name inside their namespace.
    let scope_mismatch = if resource.namespaced {
        (namespace.is_none() && name.is_some()) || (namespace.is_none() && verb == "create")
    } else {
        namespace.is_some()
    };
    let status_ok = subresource == Some("status") && resource.status_subresource;
    if scope_mismatch || (subresource.is_some() && !status_ok) {
        return Err(ApiError::no_such_resource());
    }
    if status_ok && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    if !resource.supports(verb) {
        return Err(ApiError::method_not_allowed());
    }
    let pretty = query.flag("pretty")?.unwrap_or(false);
    let ns = namespace.unwrap_or_default();
    let object_response =
        |status: StatusCode, object: &Value| -> Result<Response<Body>, ApiError> {
            negotiate(
                accept,
                &[Format::Json, Format::Table, Format::PartialMetadata],
            )
            .ok_or_else(ApiError::not_acceptable)?;
            Ok(json_response(status, JSON, object, pretty))
        };
    match verb {
        "create" => {
            let options = write_options(query, body, None, false)?;
            let object = shared.create(resource, ns, body.object(false)?, &options)?;
            return object_response(StatusCode::CREATED, &object);
        }
        "update" => {
            let options = write_options(query, body, subresource, false)?;
            let object = shared.update(
                resource,
                ns,
                name.unwrap_or_default(),
                body.object(false)?,
                &options,
            )?;
            return object_response(StatusCode::OK, &object);
        }
        "patch" => {
            let kind = PatchKind::from_content_type(&body.content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&body.content_type))?;
            let options = write_options(query, body, subresource, kind == PatchKind::Apply)?;
            let (object, created) = shared.patch(
                resource,
                ns,
                name.unwrap_or_default(),
                kind,
                &body.object(true)?,
                &options,
            )?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return object_response(status, &object);
        }
        "delete" => {
            let options = if body.bytes.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&body.bytes)
                    .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
            };
            let dry_run = query.get("dryRun") == Some("All")
                || options["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "All"));
            let deleted = shared.delete(
                resource,
                ns,
                name.unwrap_or_default(),
                &options["preconditions"],
                dry_run,
            )?;
            return match deleted {
                Deleted::Pending(object) => object_response(StatusCode::OK, &object),
                Deleted::Gone(object) if resource.custom => {
                    object_response(StatusCode::OK, &object)
                }
                Deleted::Gone(object) => {
                    object_response(StatusCode::OK, &delete_success(resource, &object))
                }
            };
        }
        _ => {}
    }
    match verb {
        "get" => get(
            shared,
            resource,
            namespace.unwrap_or_default(),
            name.unwrap_or_default(),
            query,
            accept,
            pretty,
        ),
        "list" => list(shared, resource, namespace, query, accept, pretty),
        "watch" => {
            // A watch of one object is a watch with `metadata.name=<name>`.
            start_watch(shared, resource, namespace, name, query, accept)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn get(
    shared: &Shared,
    resource: &ResourceType,
    namespace: &str,
    name: &str,
    query: &Query,
    accept: Option<&str>,
    pretty: bool,
) -> Result<Response<Body>, ApiError> {
    let format = negotiate(
        accept,
        &[Format::Json, Format::Table, Format::PartialMetadata],
    )
    .ok_or_else(ApiError::not_acceptable)?;
    if let Version::At(rv) = parse_version(query.get("resourceVersion"))? {
        shared
            .store
            .check_version(rv)
            .map_err(|e| store_error(e, resource, name))?;
    }
    let object = shared
        .store
        .get(&resource.gvr(), namespace, name)
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let body = match format {
        Format::Table => {
            let include =
                IncludeObject::parse(query.get("includeObject")).map_err(ApiError::bad_request)?;
            let mut metadata = Map::new();
            if let Some(rv) = object.pointer("/metadata/resourceVersion") {
                metadata.insert("resourceVersion".into(), rv.clone());
            }
            objects::table(resource, &[object], metadata, include, true)
        }
        Format::PartialMetadata => partial_metadata(&object),
        _ => object,
    };
    Ok(json_response(
        StatusCode::OK,
        format.content_type(),
        &body,
        pretty,
    ))
}

/// A decoded `continue` token: the list's resource version and the last key served.
fn decode_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))?;
    if value["v"] != "meta.k8s.io/v1" {
        return Err(invalid("server does not recognize this encoded version"));
    }
    let rv = value["rv"].as_u64().ok_or_else(|| {
        invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    })?;
    let start = value["start"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('\0');
    let (ns, name) = match start.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), start.to_string()),
    };
    Ok((rv, ns, name))
}

fn encode_continue(rv: u64, namespace: &str, name: &str) -> String {
    let start = if namespace.is_empty() {
        format!("{name}\0")
    } else {
        format!("{namespace}/{name}\0")
    };
    let token = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn object_key(object: &Value) -> (String, String) {
    let get = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (get("/metadata/namespace"), get("/metadata/name"))
}

fn selectors(
    resource: &ResourceType,
    query: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        query.get("fieldSelector").unwrap_or_default(),
        &resource.all_field_labels(),
    )
    .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list(
    shared: &Shared,
    resource: &ResourceType,
    namespace: Option<&str>,
    query: &Query,
    accept: Option<&str>,
    pretty: bool,
) -> Result<Response<Body>, ApiError> {
    let format = negotiate(
        accept,
        &[Format::Json, Format::Table, Format::PartialMetadataList],
    )
    .ok_or_else(ApiError::not_acceptable)?;
    let (labels, fields) = selectors(resource, query)?;
    let version = parse_version(query.get("resourceVersion"))?;
    let matching = query.get("resourceVersionMatch").unwrap_or_default();
    let token = query.get("continue").filter(|t| !t.is_empty());
    match (matching, version) {
        ("", _) => {}
        (_, Version::Unset) => {
            return Err(ApiError::invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        ("Exact", Version::Any) => {
            return Err(ApiError::invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        ("Exact" | "NotOlderThan", _) => {}
        (other, _) => {
            return Err(ApiError::invalid(format!(
                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\", \"\""
            )));
        }
    }
    if token.is_some() && version != Version::Unset {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    if let Version::At(rv) = version {
        let current = shared
            .store
            .check_version(rv)
            .map_err(|e| store_error(e, resource, ""))?;
        // The lab keeps no snapshots: an exact list is only possible at the current version.
        if matching == "Exact" && rv != current {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({current})"
            )));
        }
    }
    let (items, current) = shared.store.list(&resource.gvr(), namespace);
    let mut list_rv = current;
    let mut start_after: Option<(String, String)> = None;
    if let Some(token) = token {
        let (rv, ns, name) = decode_continue(token)?;
        if !shared.store.is_retained(rv) {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter, or use the continue \
                 token in this response to retrieve the remainder of the results. Continuing \
                 with the provided token results in an inconsistent list - objects that were \
                 created, modified, or deleted between the time the first chunk was returned and \
                 now may show up in the list.",
            ));
        }
        // The lab has no snapshots: later pages come from the current state, labelled with the
        // first page's version (a watch from it then replays, never misses, changes).
        list_rv = rv;
        start_after = Some((ns, name));
    }
    let limit = query.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let mut selected: Vec<Value> = items
        .into_iter()
        .filter(|o| {
            start_after
                .as_ref()
                .is_none_or(|after| object_key(o) > *after)
        })
        .filter(|o| labels.matches_object(o) && fields.matches(o))
        .collect();
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(list_rv.to_string()));
    if let Some(limit) = limit
        && selected.len() > limit
    {
        let remaining = selected.len() - limit;
        selected.truncate(limit);
        if let Some(last) = selected.last() {
            let (ns, name) = object_key(last);
            metadata.insert(
                "continue".into(),
                json!(encode_continue(list_rv, &ns, &name)),
            );
        }
        if query.get("labelSelector").unwrap_or_default().is_empty()
            && query.get("fieldSelector").unwrap_or_default().is_empty()
        {
            metadata.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    let body = match format {
        Format::Table => {
            let include =
                IncludeObject::parse(query.get("includeObject")).map_err(ApiError::bad_request)?;
            objects::table(resource, &selected, metadata, include, true)
        }
        Format::PartialMetadataList => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": selected.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        _ => {
            let items: Vec<Value> = if resource.list_items_typed {
                selected
            } else {
                selected.into_iter().map(objects::untyped).collect()
            };
            json!({
                "kind": resource.list_kind,
                "apiVersion": resource.api_version(),
                "metadata": metadata,
                "items": items,
            })
        }
    };
    Ok(json_response(
        StatusCode::OK,
        format.content_type(),
        &body,
        pretty,
    ))
}

// --- Watch ---

/// How one watch filters and renders events.
struct WatchPlan {
    resource: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    format: Format,
    include: IncludeObject,
    bookmarks: bool,
    initial_events_end: bool,
    timeout: Duration,
}

impl WatchPlan {
    fn matches(&self, object: &Value) -> bool {
        let (_, name) = object_key(object);
        self.name.as_ref().is_none_or(|n| *n == name)
            && self.labels.matches_object(object)
            && self.fields.matches(object)
    }

    /// The event as the client sees it, after namespace and selector filtering (an object
    /// that stops matching is `DELETED`, one that starts matching `ADDED`).
    fn render(&self, event: &Event, headers: &mut bool) -> Option<Bytes> {
        if self
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != event.namespace)
        {
            return None;
        }
        let now = self.matches(&event.object);
        let (kind, object) = match event.kind {
            EventType::Added | EventType::Deleted if now => (event.kind, event.object.clone()),
            EventType::Modified => {
                let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => (EventType::Modified, event.object.clone()),
                    (false, true) => (EventType::Added, event.object.clone()),
                    (true, false) => {
                        let mut last = event.previous.clone().unwrap_or_default();
                        last["metadata"]["resourceVersion"] =
                            json!(event.resource_version.to_string());
                        (EventType::Deleted, last)
                    }
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        let object = match self.format {
            Format::Table => {
                let mut metadata = Map::new();
                if let Some(rv) = object.pointer("/metadata/resourceVersion") {
                    metadata.insert("resourceVersion".into(), rv.clone());
                }
                let table =
                    objects::table(self.resource, &[object], metadata, self.include, *headers);
                *headers = false;
                table
            }
            Format::PartialMetadata => partial_metadata(&object),
            _ => object,
        };
        Some(line(&json!({"type": kind.as_str(), "object": object})))
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let (kind, api_version) = match self.format {
            Format::PartialMetadata => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
            _ => (self.resource.kind.to_string(), self.resource.api_version()),
        };
        let mut metadata = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata},
        }))
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A streamed response body fed by a watch task.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn start_watch(
    shared: &Shared,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    name: Option<&str>,
    query: &Query,
    accept: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let format = negotiate(
        accept,
        &[Format::Json, Format::Table, Format::PartialMetadata],
    )
    .ok_or_else(ApiError::not_acceptable)?;
    let (labels, fields) = selectors(resource, query)?;
    let version = parse_version(query.get("resourceVersion"))?;
    let bookmarks = query.flag("allowWatchBookmarks")?.unwrap_or(false);
    let send_initial = query.flag("sendInitialEvents")?;
    let matching = query.get("resourceVersionMatch").unwrap_or_default();
    let from = match send_initial {
        None => {
            if !matching.is_empty() {
                return Err(ApiError::invalid(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            match version {
                Version::Unset | Version::Any => WatchFrom::CurrentState,
                Version::At(rv) => WatchFrom::After(rv),
            }
        }
        Some(send) => {
            if matching != "NotOlderThan" {
                return Err(ApiError::invalid(
                    "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if send && !bookmarks {
                return Err(ApiError::invalid(
                    "allowWatchBookmarks: Required value: sendInitialEvents requires setting allowWatchBookmarks=true",
                ));
            }
            if let Version::At(rv) = version {
                shared
                    .store
                    .check_version(rv)
                    .map_err(|e| store_error(e, resource, ""))?;
            }
            match (send, version) {
                (true, _) => WatchFrom::CurrentState,
                (false, Version::At(rv)) => WatchFrom::After(rv),
                (false, _) => WatchFrom::Now,
            }
        }
    };
    let timeout = match query.int("timeoutSeconds")? {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
        _ => MIN_REQUEST_TIMEOUT + MIN_REQUEST_TIMEOUT.mul_f64(rand::random::<f64>()),
    };
    let plan = WatchPlan {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        labels,
        fields,
        format,
        include: IncludeObject::parse(query.get("includeObject")).map_err(ApiError::bad_request)?,
        bookmarks,
        initial_events_end: send_initial == Some(true),
        timeout,
    };
    let (tx, rx) = mpsc::channel(64);
    let content_type = format.content_type();
    match shared.store.watch(&resource.gvr(), from) {
        Ok(subscription) => {
            let stop = shared.stop.subscribe();
            let start_rv = match from {
                WatchFrom::After(rv) => rv,
                _ => subscription.start_version,
            };
            tokio::spawn(run_watch(plan, subscription, start_rv, tx, stop));
        }
        // As the watch cache does: a 200 whose only event is an ERROR with the 410 Status.
        Err(StoreError::Expired { requested, oldest }) => {
            let status =
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
                    .to_status();
            let _ = tx.try_send(line(&json!({"type": "ERROR", "object": status})));
        }
        Err(error) => return Err(store_error(error, resource, "")),
    }
    Ok(respond(
        StatusCode::OK,
        content_type,
        Body::new(ChannelBody { rx }),
    ))
}

async fn run_watch(
    plan: WatchPlan,
    subscription: Subscription,
    start_rv: u64,
    tx: mpsc::Sender<Bytes>,
    mut stop: watch::Receiver<bool>,
) {
    let Subscription {
        backlog,
        mut live,
        replayed_through,
        ..
    } = subscription;
    let deadline = Instant::now() + plan.timeout;
    let mut headers = true;
    let mut last_rv = start_rv;
    for event in &backlog {
        if let Some(bytes) = plan.render(event, &mut headers)
            && tx.send(bytes).await.is_err()
        {
            return;
        }
    }
    last_rv = last_rv.max(replayed_through);
    if plan.initial_events_end && tx.send(plan.bookmark(last_rv, true)).await.is_err() {
        return;
    }
    let gvr = plan.resource.gvr();
    let mut next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = async { let _ = stop.wait_for(|stopped| *stopped).await; } => return,
            _ = tokio::time::sleep_until(deadline) => {
                if plan.bookmarks {
                    let _ = tx.send(plan.bookmark(last_rv, false)).await;
                }
                return;
            }
            _ = tokio::time::sleep_until(next_bookmark), if plan.bookmarks => {
                next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
                if tx.send(plan.bookmark(last_rv, false)).await.is_err() {
                    return;
                }
            }
            received = live.recv() => match received {
                Ok(event) => {
                    if event.resource_version <= replayed_through {
                        continue;
                    }
                    last_rv = event.resource_version;
                    if event.gvr != gvr {
                        continue;
                    }
                    if let Some(bytes) = plan.render(&event, &mut headers)
                        && tx.send(bytes).await.is_err()
                    {
                        return;
                    }
                }
                // A watcher this far behind is closed; the client re-watches from its last
                // resource version.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let all = [Format::Json, Format::Table];
        assert_eq!(negotiate(Some(kubectl), &all), Some(Format::Table));
        assert_eq!(
            negotiate(Some(kubectl), &[Format::Json]),
            Some(Format::Json)
        );
        let discovery = "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            negotiate(
                Some(discovery),
                &[Format::Json, Format::AggregatedDiscovery]
            ),
            Some(Format::AggregatedDiscovery)
        );
        assert_eq!(negotiate(None, &all), Some(Format::Json));
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), &all),
            None
        );
        assert_eq!(negotiate(Some("*/*"), &all), Some(Format::Json));
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "", "cp-1");
        assert_eq!(
            decode_continue(&token).unwrap(),
            (42, String::new(), "cp-1".to_string())
        );
        assert!(decode_continue("garbage!").is_err());
    }

    #[test]
    fn anonymous_may_only_read_public_info() {
        assert!(authorize_path(&Identity::Anonymous, "/healthz", "get").is_ok());
        assert!(authorize_path(&Identity::Anonymous, "/version", "get").is_ok());
        let denied = authorize_path(&Identity::Anonymous, "/api", "get").unwrap_err();
        assert_eq!(denied.code, 403);
        assert_eq!(
            denied.message,
            "forbidden: User \"system:anonymous\" cannot get path \"/api\""
        );
        let user = Identity::User {
            name: "bob".into(),
            groups: vec![],
        };
        assert!(authorize_path(&user, "/apis/apps/v1", "get").is_ok());
        let denied = authorize_resource(&user, "list", "", "nodes", None, None).unwrap_err();
        assert_eq!(
            denied.message,
            "nodes is forbidden: User \"bob\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
    }
}
