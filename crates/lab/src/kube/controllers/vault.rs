//! HashiCorp Vault, simulated: what the vault chart deploys, and Vault's `sys` API behind the
//! API server's proxy subresources.
//!
//! * Once the Argo CD Application of the `vault` chart is Healthy, its destination namespace
//!   gets Service `vault` (ports `http` 8200, `https-internal` 8201) and Pods `vault-0`…:
//!   `server.ha.replicas` (chart default 3) when `server.ha.enabled`, else one. The pods are
//!   Running and Ready (the chart's readiness probe accepts sealed and uninitialised servers).
//! * `GET|PUT|POST /api/v1/namespaces/<ns>/services/[https:]vault[:8200|:http]/proxy/<path>`
//!   reaches `vault-0`; `…/pods/[https:]vault-N[:8200]/proxy/<path>` reaches that pod. The
//!   scheme must match the listener: with `global.tlsDisable: false` in the values, plain HTTP
//!   gets Go's `400 Client sent an HTTP request to an HTTPS server.`; without, `https:` fails
//!   the API server's TLS handshake (503). Pods whose `server.volumes` Secret is missing never
//!   start (503, no endpoints). Served paths:
//!   `GET /v1/sys/seal-status`, `PUT|POST /v1/sys/init`, `PUT|POST /v1/sys/unseal`,
//!   `GET|HEAD /v1/sys/health` (200 active, 429 standby, 501 not initialised, 503 sealed;
//!   `standbyok`, `activecode`, `standbycode`, `sealedcode`, `uninitcode` honoured). Other
//!   paths → 404 `{"errors":[]}`.
//! * Initialisation is cluster-wide (the pods share storage, as after a Raft join); each pod
//!   is sealed until it gets `threshold` distinct unseal keys. The state lives in ConfigMap
//!   `vault-lab-state` of the namespace (key `state`, JSON), so it persists with the cluster.

use std::cell::RefCell;

use axum::body::Body;
use base64::Engine as _;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::storage::healthy_app;
use super::{State, builtin, name_of, str_at};
use crate::kube::server::Shared;
use crate::kube::write::WriteOptions;

const STATE_CONFIGMAP: &str = "vault-lab-state";
const SERVICE: &str = "vault";
const VERSION: &str = "1.20.4";
const MANAGER: &str = "argocd-controller";

/// Vault's release: namespace and replica count, once its Application is Healthy.
fn release(shared: &Shared) -> Option<(String, usize)> {
    let app = healthy_app(shared, "vault")?;
    let namespace = match str_at(&app, "/spec/destination/namespace") {
        "" => "default".to_string(),
        ns => ns.to_string(),
    };
    let server = app
        .pointer("/spec/source/helm/valuesObject/server")
        .cloned()
        .unwrap_or(Value::Null);
    let replicas = if server.pointer("/ha/enabled") == Some(&json!(true)) {
        server
            .pointer("/ha/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(3)
            .max(1) as usize
    } else {
        1
    };
    Some((namespace, replicas))
}

pub(super) fn reconcile(shared: &Shared, _state: &mut State) {
    let Some((namespace, replicas)) = release(shared) else {
        return;
    };
    let by = WriteOptions::by(MANAGER);
    let namespaces = builtin(shared, "", "namespaces");
    if shared
        .store
        .get(&namespaces.gvr(), "", &namespace)
        .is_none()
    {
        let body =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        if shared.create(namespaces, "", body, &by).is_err() {
            return;
        }
    }
    if str_at(
        &shared
            .store
            .get(&namespaces.gvr(), "", &namespace)
            .unwrap_or_default(),
        "/status/phase",
    ) == "Terminating"
    {
        return;
    }
    let labels = json!({
        "app.kubernetes.io/name": "vault",
        "app.kubernetes.io/instance": "vault",
        "component": "server",
    });
    let services = builtin(shared, "", "services");
    if shared
        .store
        .get(&services.gvr(), &namespace, SERVICE)
        .is_none()
    {
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": namespace, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.200.10",
                "publishNotReadyAddresses": true,
                "ports": [
                    {"name": "http", "port": 8200, "targetPort": 8200, "protocol": "TCP"},
                    {"name": "https-internal", "port": 8201, "targetPort": 8201, "protocol": "TCP"},
                ],
                "selector": {"app.kubernetes.io/name": "vault", "app.kubernetes.io/instance": "vault", "component": "server"},
            },
        });
        let _ = shared.create(services, &namespace, service, &by);
    }
    let pods = builtin(shared, "", "pods");
    let workers: Vec<String> =
        shared
            .store
            .scan(&builtin(shared, "", "nodes").gvr(), None, |nodes| {
                nodes.map(|n| name_of(n).to_string()).collect()
            });
    for ordinal in 0..replicas {
        let name = format!("vault-{ordinal}");
        if shared.store.get(&pods.gvr(), &namespace, &name).is_some() {
            continue;
        }
        let now = crate::kube::objects::now_rfc3339();
        let node = workers
            .get(ordinal % workers.len().max(1))
            .cloned()
            .unwrap_or_default();
        let mut pod_labels = labels.clone();
        pod_labels["statefulset.kubernetes.io/pod-name"] = json!(name);
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
            "spec": {
                "nodeName": node,
                "serviceAccountName": "vault",
                "containers": [{
                    "name": "vault",
                    "image": format!("hashicorp/vault:{VERSION}"),
                    "ports": [
                        {"containerPort": 8200, "name": "http", "protocol": "TCP"},
                        {"containerPort": 8201, "name": "https-internal", "protocol": "TCP"},
                    ],
                }],
            },
            "status": {
                "phase": "Running",
                "podIP": format!("10.244.0.{}", 10 + ordinal),
                "startTime": now,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": [{
                    "name": "vault",
                    "ready": true,
                    "started": true,
                    "restartCount": 0,
                    "image": format!("hashicorp/vault:{VERSION}"),
                    "imageID": "",
                    "state": {"running": {"startedAt": now}},
                }],
            },
        });
        if let Err(error) = shared.create(pods, &namespace, pod, &by) {
            tracing::debug!(message = %error.message, "could not create a Vault pod");
        }
    }
    let configmaps = builtin(shared, "", "configmaps");
    if shared
        .store
        .get(&configmaps.gvr(), &namespace, STATE_CONFIGMAP)
        .is_none()
    {
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": STATE_CONFIGMAP, "namespace": namespace,
                "annotations": {"cto.dev/lab": "the simulated Vault's storage"}},
            "data": {"state": json!({"initialized": false}).to_string()},
        });
        let _ = shared.create(configmaps, &namespace, body, &by);
    }
}

/// One proxied request.
pub(crate) struct ProxyRequest<'a> {
    pub namespace: &'a str,
    /// `services` or `pods`.
    pub kind: &'a str,
    /// `[scheme:]name[:port]`.
    pub target: &'a str,
    pub method: &'a Method,
    /// The path after `/proxy`, starting with `/`.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

fn json_reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str("application/json") {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn k8s_status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    json_reply(
        status,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}),
    )
}

fn errors(status: StatusCode, message: &str) -> Response<Body> {
    let list: Vec<&str> = if message.is_empty() {
        Vec::new()
    } else {
        vec![message]
    };
    json_reply(status, &json!({ "errors": list }))
}

/// Answers a service or pod proxy request (the caller has authorized it).
pub(crate) fn proxy(shared: &Shared, request: &ProxyRequest<'_>) -> Response<Body> {
    let mut parts: Vec<&str> = request.target.split(':').collect();
    if matches!(parts.first(), Some(&("http" | "https"))) && parts.len() > 1 {
        parts.remove(0);
    }
    let name = parts.first().copied().unwrap_or_default();
    let port = parts.get(1).copied().unwrap_or("");
    let resource = builtin(shared, "", request.kind);
    let singular = if request.kind == "pods" {
        "pods"
    } else {
        "services"
    };
    if shared
        .store
        .get(&resource.gvr(), request.namespace, name)
        .is_none()
    {
        return k8s_status(404, "NotFound", &format!("{singular} \"{name}\" not found"));
    }
    let vault = release(shared).filter(|(ns, _)| ns == request.namespace);
    let Some((_, replicas)) = vault else {
        return k8s_status(
            503,
            "ServiceUnavailable",
            &format!("no endpoints available for service \"{name}\""),
        );
    };
    let pod = match request.kind {
        "services" if name == SERVICE => "vault-0".to_string(),
        "pods"
            if name
                .strip_prefix("vault-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n < replicas) =>
        {
            name.to_string()
        }
        _ => {
            return k8s_status(
                503,
                "ServiceUnavailable",
                &format!("no endpoints available for service \"{name}\""),
            );
        }
    };
    if !matches!(port, "" | "8200" | "http") {
        return k8s_status(
            503,
            "ServiceUnavailable",
            &format!(
                "error trying to reach service: dial tcp 10.244.0.10:{port}: connect: connection refused"
            ),
        );
    }
    if let Some(refusal) = transport_refusal(shared, request) {
        return refusal;
    }
    api(shared, request, &pod, replicas)
}

/// Whether Vault serves TLS, and the Secrets its pods mount, from the Application's values:
/// the chart's `global.tlsDisable` (default `true`: plain HTTP) and `server.volumes`.
fn transport(shared: &Shared) -> (bool, Vec<String>) {
    let Some(app) = healthy_app(shared, "vault") else {
        return (false, Vec::new());
    };
    let values = app
        .pointer("/spec/source/helm/valuesObject")
        .cloned()
        .unwrap_or(Value::Null);
    let tls = values.pointer("/global/tlsDisable") == Some(&json!(false));
    let secrets = values
        .pointer("/server/volumes")
        .and_then(Value::as_array)
        .map(|volumes| {
            volumes
                .iter()
                .filter_map(|v| v.pointer("/secret/secretName").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    (tls, secrets)
}

/// What a real cluster answers when the proxied request cannot reach Vault as asked: a pod
/// whose Secret volume does not exist never starts (no endpoints); plain HTTP to Vault's TLS
/// listener gets Go's `400 Client sent an HTTP request to an HTTPS server.`; `https:` to a
/// plain listener fails the API server's TLS handshake (`503`).
fn transport_refusal(shared: &Shared, request: &ProxyRequest<'_>) -> Option<Response<Body>> {
    let (tls, secrets) = transport(shared);
    let secret_api = builtin(shared, "", "secrets");
    if let Some(missing) = secrets.iter().find(|name| {
        shared
            .store
            .get(&secret_api.gvr(), request.namespace, name)
            .is_none()
    }) {
        tracing::debug!(secret = %missing, "Vault's pods wait for a Secret volume");
        return Some(k8s_status(
            503,
            "ServiceUnavailable",
            &format!("no endpoints available for service \"{SERVICE}\""),
        ));
    }
    let https = request.target.starts_with("https:");
    if tls && !https {
        let mut response = Response::new(Body::from(
            "Client sent an HTTP request to an HTTPS server.\n",
        ));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Some(response);
    }
    if !tls && https {
        return Some(k8s_status(
            503,
            "ServiceUnavailable",
            "error trying to reach service: tls: first record does not look like a TLS handshake",
        ));
    }
    None
}

fn load(shared: &Shared, namespace: &str) -> Value {
    let configmaps = builtin(shared, "", "configmaps");
    shared
        .store
        .get(&configmaps.gvr(), namespace, STATE_CONFIGMAP)
        .and_then(|c| {
            c.pointer("/data/state")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str(s).ok())
        })
        .unwrap_or_else(|| json!({"initialized": false}))
}

/// Changes the stored state with `change` (retried on conflicts); returns what `change`
/// returned on the attempt that was stored.
fn update<T>(shared: &Shared, namespace: &str, change: impl Fn(&mut Value) -> T) -> Option<T> {
    let configmaps = builtin(shared, "", "configmaps");
    let out = RefCell::new(None);
    shared.write_status(configmaps, namespace, STATE_CONFIGMAP, |cm| {
        let mut state: Value = cm
            .pointer("/data/state")
            .and_then(Value::as_str)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| json!({"initialized": false}));
        *out.borrow_mut() = Some(change(&mut state));
        cm["data"]["state"] = json!(state.to_string());
    })?;
    out.into_inner()
}

fn sealed(state: &Value, pod: &str) -> bool {
    state
        .pointer(&format!("/pods/{pod}/sealed"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

fn seal_status(state: &Value, pod: &str, ha: bool) -> Value {
    let initialized = state["initialized"] == true;
    let progress = state
        .pointer(&format!("/pods/{pod}/progress"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut status = json!({
        "type": "shamir",
        "initialized": initialized,
        "sealed": sealed(state, pod),
        "t": if initialized { state["threshold"].clone() } else { json!(0) },
        "n": if initialized { state["shares"].clone() } else { json!(0) },
        "progress": progress,
        "nonce": "",
        "version": VERSION,
        "build_date": "2025-09-23T14:21:56Z",
        "migration": false,
        "recovery_seal": false,
        "storage_type": if ha { "raft" } else { "file" },
    });
    if initialized && !sealed(state, pod) {
        status["cluster_name"] = state["cluster_name"].clone();
        status["cluster_id"] = state["cluster_id"].clone();
    }
    status
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex form of an unseal key given in hex or base64.
fn key_hex(key: &str) -> Option<String> {
    let key = key.trim();
    if key.len().is_multiple_of(2) && !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Some(key.to_ascii_lowercase());
    }
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .ok()
        .map(|b| hex(&b))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn api(shared: &Shared, request: &ProxyRequest<'_>, pod: &str, replicas: usize) -> Response<Body> {
    let ns = request.namespace;
    let ha = replicas > 1;
    let body: Value = if request.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(request.body) {
            Ok(v) => v,
            Err(error) => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    &format!("failed to parse JSON input: {error}"),
                );
            }
        }
    };
    let write = matches!(*request.method, Method::PUT | Method::POST);
    let read = matches!(*request.method, Method::GET | Method::HEAD);
    match request.path.trim_end_matches('/') {
        "/v1/sys/seal-status" if read => {
            json_reply(StatusCode::OK, &seal_status(&load(shared, ns), pod, ha))
        }
        "/v1/sys/init" if read => json_reply(
            StatusCode::OK,
            &json!({"initialized": load(shared, ns)["initialized"] == true}),
        ),
        "/v1/sys/init" if write => init(shared, ns, &body, replicas),
        "/v1/sys/unseal" if write => unseal(shared, ns, pod, &body, ha),
        "/v1/sys/health" if read => health(&load(shared, ns), pod, replicas, request.query),
        _ => errors(StatusCode::NOT_FOUND, ""),
    }
}

fn init(shared: &Shared, ns: &str, body: &Value, replicas: usize) -> Response<Body> {
    let shares = body["secret_shares"].as_u64().unwrap_or(0);
    let threshold = body["secret_threshold"].as_u64().unwrap_or(0);
    if shares == 0 || threshold == 0 {
        return errors(
            StatusCode::BAD_REQUEST,
            "invalid seal configuration: secret shares must be at least one",
        );
    }
    if threshold > shares {
        return errors(
            StatusCode::BAD_REQUEST,
            "invalid seal configuration: threshold cannot be larger than shares",
        );
    }
    if shares > 1 && threshold == 1 {
        return errors(
            StatusCode::BAD_REQUEST,
            "invalid seal configuration: threshold must be greater than one for multiple shares",
        );
    }
    if shares > 255 {
        return errors(
            StatusCode::BAD_REQUEST,
            "invalid seal configuration: shares must be less than 256",
        );
    }
    let keys: Vec<Vec<u8>> = (0..shares)
        .map(|_| {
            let mut key = rand::random::<[u8; 32]>().to_vec();
            key.push(rand::random::<u8>());
            key
        })
        .collect();
    let token: String = (0..24)
        .map(|_| {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char
        })
        .collect();
    let root_token = format!("hvs.{token}");
    let hex_keys: Vec<String> = keys.iter().map(|k| hex(k)).collect();
    let b64_keys: Vec<String> = keys
        .iter()
        .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
        .collect();
    let cluster_id = crate::kube::store::new_uid();
    let outcome = update(shared, ns, |state| {
        if state["initialized"] == true {
            return false;
        }
        let pods: serde_json::Map<String, Value> = (0..replicas)
            .map(|i| {
                (
                    format!("vault-{i}"),
                    json!({"sealed": true, "progress": []}),
                )
            })
            .collect();
        *state = json!({
            "initialized": true,
            "shares": shares,
            "threshold": threshold,
            "keys": hex_keys.clone(),
            "root_token": root_token.clone(),
            "cluster_name": format!("vault-cluster-{}", &cluster_id[..8]),
            "cluster_id": cluster_id.clone(),
            "pods": pods,
        });
        true
    });
    match outcome {
        Some(true) => json_reply(
            StatusCode::OK,
            &json!({"keys": hex_keys, "keys_base64": b64_keys, "root_token": root_token}),
        ),
        Some(false) => errors(StatusCode::BAD_REQUEST, "Vault is already initialized"),
        None => errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to initialize barrier: storage unavailable",
        ),
    }
}

fn unseal(shared: &Shared, ns: &str, pod: &str, body: &Value, ha: bool) -> Response<Body> {
    if body["reset"] == true {
        let state = update(shared, ns, |state| {
            if sealed(state, pod) {
                state["pods"][pod]["progress"] = json!([]);
            }
            state.clone()
        });
        return match state {
            Some(state) => json_reply(StatusCode::OK, &seal_status(&state, pod, ha)),
            None => errors(StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable"),
        };
    }
    let Some(key) = body["key"].as_str() else {
        return errors(
            StatusCode::BAD_REQUEST,
            "'key' must be specified in request body as JSON, or 'reset' set to true",
        );
    };
    let Some(key) = key_hex(key) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "'key' must be a valid hex or base64 string",
        );
    };
    let outcome = update(shared, ns, |state| {
        if state["initialized"] != true {
            return Err("Vault is not initialized");
        }
        if !sealed(state, pod) {
            return Ok(state.clone());
        }
        let known = state["keys"]
            .as_array()
            .is_some_and(|ks| ks.iter().any(|k| k == key.as_str()));
        if !state["pods"].is_object() {
            state["pods"] = json!({});
        }
        if !state["pods"][pod].is_object() {
            state["pods"][pod] = json!({"sealed": true, "progress": []});
        }
        if !known {
            state["pods"][pod]["progress"] = json!([]);
            return Err("Error unsealing: cipher: message authentication failed");
        }
        let mut progress: Vec<Value> = state["pods"][pod]["progress"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !progress.iter().any(|k| k == key.as_str()) {
            progress.push(json!(key.as_str()));
        }
        let threshold = state["threshold"].as_u64().unwrap_or(1) as usize;
        if progress.len() >= threshold {
            state["pods"][pod] = json!({"sealed": false, "progress": []});
        } else {
            state["pods"][pod]["progress"] = json!(progress);
        }
        Ok(state.clone())
    });
    match outcome {
        Some(Ok(state)) => json_reply(StatusCode::OK, &seal_status(&state, pod, ha)),
        Some(Err(message)) => errors(StatusCode::BAD_REQUEST, message),
        None => errors(StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable"),
    }
}

fn health(state: &Value, pod: &str, replicas: usize, query: Option<&str>) -> Response<Body> {
    let initialized = state["initialized"] == true;
    let is_sealed = sealed(state, pod);
    // The active node: the first unsealed pod.
    let active = (0..replicas)
        .map(|i| format!("vault-{i}"))
        .find(|p| initialized && !sealed(state, p));
    let standby = initialized && !is_sealed && active.as_deref() != Some(pod);
    let code = |name: &str, default: u16| {
        query_param(query, name)
            .and_then(|v| v.parse::<u16>().ok())
            .unwrap_or(default)
    };
    let status = if !initialized {
        code("uninitcode", 501)
    } else if is_sealed {
        code("sealedcode", 503)
    } else if standby {
        if query_param(query, "standbyok").is_some_and(|v| v.is_empty() || v == "true") {
            code("activecode", 200)
        } else {
            code("standbycode", 429)
        }
    } else {
        code("activecode", 200)
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut body = json!({
        "initialized": initialized,
        "sealed": is_sealed,
        "standby": standby,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now,
        "version": VERSION,
        "enterprise": false,
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
    });
    if initialized && !is_sealed {
        body["cluster_name"] = state["cluster_name"].clone();
        body["cluster_id"] = state["cluster_id"].clone();
    }
    json_reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        &body,
    )
}
