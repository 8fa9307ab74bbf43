//! A Kubernetes-compatible API server for the lab: what a Talos control plane serves on
//! `<ip>:6443`, good enough that kube-rs and kubectl work against it unchanged.
//!
//! The principle: *the lab's Kubernetes API must serve kube-rs and kubectl unchanged; if the lab
//! accepts something real systems reject, it is hiding bugs.* So it speaks the real wire
//! protocol and is at least as strict as a real API server:
//!
//! * **TLS** (rustls, ring) with a serving certificate issued from the cluster's Kubernetes CA
//!   (the `cert_sans`, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
//!   `kubernetes.default.svc.cluster.local`, `localhost`, `127.0.0.1` and the listen address),
//!   ALPN `h2` and `http/1.1`.
//! * **Authentication** by client certificate, as the real server does it: the TLS layer asks
//!   for a certificate but does not insist (Go's `RequestClientCert`); a certificate that does
//!   not chain to the cluster CA (checked with rustls' `WebPkiClientVerifier`), is expired, or
//!   lacks client-auth usage makes every request on that connection `401 Unauthorized`. The
//!   user is the certificate's CN, its groups the O values.
//! * **Authorization** with the upstream defaults (anonymous auth on, RBAC's bootstrap roles):
//!   group `system:masters` may do anything; anyone, even anonymous, may `GET` `/healthz`,
//!   `/livez`, `/readyz` and `/version` (`system:public-info-viewer`); authenticated users may
//!   also read discovery (`system:discovery`); everything else is `403 Forbidden` with RBAC's
//!   message. Talos keeps these upstream defaults.
//! * **Discovery**: `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`, and aggregated
//!   discovery (`apidiscovery.k8s.io/v2`) when the `Accept` header asks for it.
//! * **Resources**: core/v1 `nodes`, `namespaces`, `configmaps`, `secrets`,
//!   `serviceaccounts`, `services`, `events`, `pods` (read-only, the simulated controllers'),
//!   `pods/log`; `leases`; apps/v1 `deployments`, `daemonsets`, `statefulsets`, `replicasets`
//!   (read-only); batch/v1 `jobs`; RBAC's four; `storageclasses`;
//!   `customresourcedefinitions` and the custom resources they define. Get, list (label and
//!   field selectors, `limit`/`continue` paging, `resourceVersion` semantics), watch (from a
//!   resource version, synthetic initial events, bookmarks, `sendInitialEvents`,
//!   `timeoutSeconds`), create, update, delete, patch (JSON merge, strategic merge, JSON patch,
//!   server-side apply with managed fields and conflicts) and `/status`, as JSON, as
//!   `meta.k8s.io/v1` `Table` (what `kubectl get` prints) or as `PartialObjectMetadata`; errors
//!   are `v1` `Status` objects with the real reasons and codes. Verbs the lab does not
//!   implement are not advertised and answer `405`.
//! * **Simulated controllers** (`controllers`): workload rollouts, Jobs, Helm Jobs that
//!   install charts, the CNI making Nodes Ready, namespace termination, and Argo CD.
//! * **Persistence**: with [`ClusterOptions::state_file`], every object survives a restart
//!   with its resource version.
//! * **Health and version**: `/healthz`, `/livez`, `/readyz` (with `?verbose` and per-check
//!   paths) and `/version`, whose `gitVersion` is the control-plane kubelets' version.
//!
//! Module map: `server` (TLS, authentication, authorization, routing, handlers, watch streams),
//! `store` (objects and events, generic over group/version/resource, persistence), `discovery`
//! (the resource registry, CRD registration and discovery documents), `write` (the write
//! verbs and validation), `fields` (managed fields and patches), `controllers` (the simulated
//! controllers), `objects` (Node and Namespace objects, tables),
//! `selectors` (label and field selectors), `status` (error `Status` objects), `certs` (issuing
//! from the cluster CA), `kubeconfig` ([`admin_kubeconfig`](crate::kube::admin_kubeconfig)).
//!
//! * **Schemas** (`schema`): served objects of built-in kinds obey k8s-openapi's schemas, which
//!   also make the OpenAPI documents (`openapi`, v3 and v2 as JSON).
//!
//! Not there yet (see `docs/lab.md`): deletecollection, garbage collection by owner
//! references, protobuf and YAML responses, OpenAPI v2 as protobuf, schema validation of custom
//! resources.

mod certs;
mod controllers;
mod discovery;
mod fields;
mod kubeconfig;
mod objects;
mod openapi;
/// The real schemas of the built-in kinds and the check that served objects obey them.
pub mod schema;
mod selectors;
mod server;
mod status;
mod store;
mod write;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use metal::talos::secrets::CertAndKey;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::{LabConfig, LabError};

pub use kubeconfig::admin_kubeconfig;

/// The Kubernetes version the API server reports before any control-plane node registered.
pub const DEFAULT_KUBERNETES_VERSION: &str = "v1.34.1";

/// The port of the Kubernetes API on a Talos control plane.
pub const KUBE_API_PORT: u16 = 6443;

/// How to start an API server.
#[derive(Debug, Clone)]
pub struct KubeApiConfig {
    /// Where to listen: `<control-plane ip>:6443` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The cluster's name (for logs).
    pub cluster_name: String,
    /// The cluster's Kubernetes CA (PEM certificate and key, `EC PRIVATE KEY` as Talos writes
    /// it): it issues the serving certificate and is the only trusted client CA.
    pub ca: CertAndKey,
    /// Extra IP addresses and DNS names for the serving certificate (`cluster.apiServer.certSANs`
    /// plus the endpoint's host).
    pub cert_sans: Vec<String>,
}

/// How the simulated cluster behind an API server behaves.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// The lab's configuration: `time_scale` and `timeline` (controller delays),
    /// `git_repos` (what Argo CD reads), `argocd_degraded` (faults).
    pub lab: LabConfig,
    /// Where the objects are persisted (`<lab state dir>/kube-<cluster>.json`); `None` keeps
    /// them in memory only.
    pub state_file: Option<PathBuf>,
    /// Which incarnation of the cluster the state file belongs to: a file written by another
    /// incarnation (a reinstalled control plane) is ignored.
    pub incarnation: String,
    /// The cluster's `secretboxEncryptionSecret` (32 bytes, standard base64): Secrets are
    /// encrypted with it before they are persisted, as Talos' kube-apiserver encrypts them
    /// before they reach etcd. `None` persists them as they are (Kubernetes'
    /// `identity` provider).
    pub encryption_secret: Option<String>,
}

/// A Node as the kubelet of a Talos machine registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node name (the machine's hostname).
    pub name: String,
    /// The `InternalIP` address.
    pub internal_ip: IpAddr,
    /// A control-plane node: labelled `node-role.kubernetes.io/control-plane` and tainted
    /// `NoSchedule`.
    pub control_plane: bool,
    /// The `Ready` condition: false (with the kubelet's "network plugin not ready" message and
    /// the `node.kubernetes.io/not-ready:NoSchedule` taint) until a CNI runs.
    pub ready: bool,
    /// Extra labels (`machine.nodeLabels`), on top of the kubelet's well-known ones.
    pub labels: BTreeMap<String, String>,
    /// `status.nodeInfo.kubeletVersion`, e.g. `v1.34.1`.
    pub kubelet_version: String,
    /// `status.nodeInfo.osImage`, e.g. `Talos (v1.11.5)`.
    pub os_image: String,
}

/// A running API server. Cheap to clone; the server stops on [`KubeApi::shutdown`] or when
/// the last clone is dropped.
#[derive(Clone)]
pub struct KubeApi {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    shared: Arc<server::Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    controllers: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.stop();
        for task in [&self.task, &self.controllers] {
            if let Some(task) = task.lock().unwrap_or_else(|p| p.into_inner()).take() {
                task.abort();
            }
        }
    }
}

/// Starts an API server on `config.listen`, with the four namespaces every cluster has and
/// the simulated controllers, with the default [`ClusterOptions`] (default timeline, objects
/// in memory only).
pub async fn start(config: KubeApiConfig) -> Result<KubeApi, LabError> {
    start_with(config, ClusterOptions::default()).await
}

/// Starts an API server and its simulated controllers with `options`.
pub async fn start_with(
    config: KubeApiConfig,
    options: ClusterOptions,
) -> Result<KubeApi, LabError> {
    start_observed(config, options, Arc::default()).await
}

/// Starts an API server whose requests and controller conditions are recorded by `observer`
/// (the lab's, so that `/_lab/stats` and `/_lab/conditions` see them).
pub(crate) async fn start_observed(
    config: KubeApiConfig,
    options: ClusterOptions,
    observer: Arc<crate::observe::Observer>,
) -> Result<KubeApi, LabError> {
    let (url, shared, task) = server::start(config, options, observer).await?;
    let controllers = tokio::spawn(controllers::run(shared.clone()));
    Ok(KubeApi {
        inner: Arc::new(Inner {
            url,
            shared,
            task: Mutex::new(Some(task)),
            controllers: Mutex::new(Some(controllers)),
        }),
    })
}

impl KubeApi {
    /// The server's URL, e.g. `https://127.0.5.1:6443` (no trailing slash).
    pub fn url(&self) -> String {
        self.inner.url.clone()
    }

    /// Creates or updates the Node `node.name` (and, when it is new, its heartbeat Lease in
    /// `kube-node-lease`). Upserting unchanged information is a no-op (no new resource
    /// version, no watch event), so it can be called on every reconcile.
    pub fn upsert_node(&self, node: NodeInfo) {
        self.inner.shared.upsert_node(&node);
    }

    /// Records the block devices of the machine behind Node `node` (what the simulated
    /// Mayastor checks DiskPool disks against).
    pub(crate) fn set_node_disks(&self, node: &str, disks: Vec<crate::talos::disks::LabDisk>) {
        self.inner
            .shared
            .node_disks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_owned(), disks);
    }

    /// Deletes the Node `name` and its Lease (a machine that was reset or reinstalled); false
    /// if there was no such Node.
    pub fn remove_node(&self, name: &str) -> bool {
        self.inner.shared.remove_node(name)
    }

    /// The conditions the simulated controllers recorded (name, Unix ms when it first became
    /// true): `node/<name>/registered`, `job/<ns>/<name>/complete`, `rollout/<kind>/<ns>/<name>`…
    /// (docs/lab.md, "Observing a run"). A lab's APIs record into the lab's
    /// `/_lab/conditions` instead.
    pub fn conditions(&self) -> Vec<(String, i64)> {
        self.inner.shared.observer.conditions()
    }

    /// The names of the registered Nodes, sorted.
    pub fn node_names(&self) -> Vec<String> {
        self.inner
            .shared
            .nodes()
            .iter()
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }

    /// Stops serving: closes the listener, every connection and every watch, and waits for the
    /// server task to end.
    pub async fn shutdown(self) {
        self.inner.shared.stop();
        for task in [&self.inner.task, &self.inner.controllers] {
            let task = task.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("url", &self.inner.url)
            .finish()
    }
}
