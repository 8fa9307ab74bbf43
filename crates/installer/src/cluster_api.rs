//! The installer's view of the Kubernetes API, through kube-rs: readiness of the API server and
//! which nodes have registered. Built from the kubeconfig Talos hands out; nothing else.
//!
//! It also owns the two primitives the platform steps are built on: server-side apply of JSON
//! objects under the one field manager [`FIELD_MANAGER`] ([`ClusterApi::apply`]), and waits that
//! watch objects until a condition over all of them holds, bounded by a timeout
//! ([`ClusterApi::wait_for`]) — never sleeps.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A Kubernetes API error, as one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClusterApiError(String);

/// A client for one cluster.
#[derive(Clone)]
pub struct ClusterApi {
    client: Client,
    url: String,
}

impl ClusterApi {
    /// Builds a client from kubeconfig text (its current context).
    pub async fn from_kubeconfig(text: &str) -> Result<Self, ClusterApiError> {
        let kubeconfig = Kubeconfig::from_yaml(text)
            .map_err(|e| ClusterApiError(format!("invalid kubeconfig: {e}")))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ClusterApiError(format!("unusable kubeconfig: {e}")))?;
        let url = config.cluster_url.to_string();
        let client = Client::try_from(config)
            .map_err(|e| ClusterApiError(format!("cannot build a client: {e}")))?;
        Ok(ClusterApi { client, url })
    }

    /// The API server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /readyz` answered `ok`.
    pub async fn readyz(&self) -> Result<(), ClusterApiError> {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| ClusterApiError(e.to_string()))?;
        let text = self
            .client
            .request_text(request)
            .await
            .map_err(|e| ClusterApiError(format!("/readyz: {e}")))?;
        if text.trim() == "ok" {
            Ok(())
        } else {
            Err(ClusterApiError(format!("/readyz answered {text:?}")))
        }
    }

    /// Names of every registered Node.
    pub async fn node_names(&self) -> Result<Vec<String>, ClusterApiError> {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterApiError(format!("listing nodes: {e}")))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect())
    }
}

/// A kube-rs error as one line: the API server's message, reason and code when it answered.
pub fn describe_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

/// At most this many watch events already received are applied before a wait's condition is
/// checked again.
const MAX_EVENTS_PER_CHECK: usize = 1024;

/// The field manager of every server-side apply the installer makes.
pub const FIELD_MANAGER: &str = "cto";

/// Why a wait ended without its condition holding.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The timeout passed; `pending` says what was still missing.
    #[error("still pending: {pending}")]
    Timeout {
        /// The last answer of the condition (or the last watch error).
        pending: String,
    },
    /// The condition said the wait can never succeed (a failed Job).
    #[error("{0}")]
    Failed(String),
}

/// What a wait condition answers: done, not yet (with what is pending), or never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The condition holds.
    Done,
    /// Not yet; what is still pending.
    Pending(String),
    /// It cannot hold any more (a failed Job); the message says why.
    Failed(String),
}

/// The resource of `apiVersion`/`kind` and whether it is namespaced: the kinds the installer
/// applies are known; anything else is guessed the way kubectl's RESTMapper would pluralise it
/// (lowercase + `s`), namespaced when the object names a namespace.
pub fn resource_of(object: &Value) -> Result<(ApiResource, bool), ClusterApiError> {
    let api_version = object["apiVersion"]
        .as_str()
        .ok_or_else(|| ClusterApiError("object without apiVersion".into()))?;
    let kind = object["kind"]
        .as_str()
        .ok_or_else(|| ClusterApiError("object without kind".into()))?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let known = [
        ("Namespace", "namespaces", false),
        ("ServiceAccount", "serviceaccounts", true),
        ("ConfigMap", "configmaps", true),
        ("Secret", "secrets", true),
        ("ClusterRoleBinding", "clusterrolebindings", false),
        ("ClusterRole", "clusterroles", false),
        ("Job", "jobs", true),
        ("StorageClass", "storageclasses", false),
        ("Application", "applications", true),
        ("AppProject", "appprojects", true),
    ];
    let (plural, namespaced) = known
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, p, n)| ((*p).to_owned(), *n))
        .unwrap_or_else(|| {
            (
                format!("{}s", kind.to_ascii_lowercase()),
                object["metadata"]["namespace"].is_string(),
            )
        });
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, &plural), namespaced))
}

impl ClusterApi {
    /// The kube-rs client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Server-side applies `object` (JSON with apiVersion, kind, metadata.name and, for
    /// namespaced kinds, metadata.namespace) as [`FIELD_MANAGER`], forcing ownership of the
    /// fields it sets. Applying an identical object again changes nothing in the API server.
    pub async fn apply(&self, object: &Value) -> Result<DynamicObject, ClusterApiError> {
        let (resource, namespaced) = resource_of(object)?;
        let name = object["metadata"]["name"]
            .as_str()
            .ok_or_else(|| ClusterApiError(format!("{} without a name", resource.kind)))?;
        let api: Api<DynamicObject> = if namespaced {
            let ns = object["metadata"]["namespace"].as_str().ok_or_else(|| {
                ClusterApiError(format!("{} {name} without a namespace", resource.kind))
            })?;
            Api::namespaced_with(self.client.clone(), ns, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(|e| {
            ClusterApiError(format!(
                "applying {} {name}: {}",
                resource.kind,
                describe_kube_error(&e)
            ))
        })
    }

    /// A namespaced typed API.
    pub fn namespaced<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// A cluster-wide typed API.
    pub fn all<K>(&self) -> Api<K>
    where
        K: Resource,
        K::DynamicType: Default,
    {
        Api::all(self.client.clone())
    }

    /// Watches the objects of `api` selected by `config` until `check` over all of them (keyed
    /// `namespace/name`) says [`Verdict::Done`], and returns them. The check runs after the
    /// initial list and after every change. Watch errors are retried with kube-rs' backoff and
    /// reported as pending; `timeout` bounds the whole wait.
    pub async fn wait_for<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
        timeout: Duration,
        mut check: impl FnMut(&BTreeMap<String, K>) -> Verdict,
    ) -> Result<BTreeMap<String, K>, WaitError>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stream = Box::pin(watcher(api, config).default_backoff());
        let mut objects: BTreeMap<String, K> = BTreeMap::new();
        let mut buffer: BTreeMap<String, K> = BTreeMap::new();
        let mut listed = false;
        let mut pending = "no answer from the Kubernetes API yet".to_owned();
        let key = |o: &K| {
            format!(
                "{}/{}",
                o.meta().namespace.as_deref().unwrap_or_default(),
                o.meta().name.as_deref().unwrap_or_default()
            )
        };
        // Applies one event; true when it completed a (re-)list.
        let mut apply = |event: watcher::Event<K>, objects: &mut BTreeMap<String, K>| {
            match event {
                watcher::Event::Init => buffer.clear(),
                watcher::Event::InitApply(o) => {
                    buffer.insert(key(&o), o);
                }
                watcher::Event::InitDone => {
                    *objects = std::mem::take(&mut buffer);
                    return true;
                }
                watcher::Event::Apply(o) => {
                    objects.insert(key(&o), o);
                }
                watcher::Event::Delete(o) => {
                    objects.remove(&key(&o));
                }
            }
            false
        };
        loop {
            let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Err(WaitError::Timeout { pending }),
                Ok(None) => {
                    return Err(WaitError::Timeout {
                        pending: format!("{pending} (the watch ended)"),
                    });
                }
                Ok(Some(Err(e))) => {
                    pending = format!("{pending} (watch error: {e})");
                    continue;
                }
                Ok(Some(Ok(event))) => event,
            };
            listed |= apply(event, &mut objects);
            // Take every event that has already arrived before judging: a burst of N changes
            // (N Nodes turning Ready, N pools Online) costs one check, not N checks over N
            // objects. Bounded, so a stream that never pauses is still judged.
            for _ in 0..MAX_EVENTS_PER_CHECK {
                match stream.next().now_or_never() {
                    Some(Some(Ok(event))) => listed |= apply(event, &mut objects),
                    Some(Some(Err(e))) => {
                        pending = format!("{pending} (watch error: {e})");
                        break;
                    }
                    // Nothing more yet (or the stream ended: the next await says so).
                    Some(None) | None => break,
                }
            }
            if listed {
                match check(&objects) {
                    Verdict::Done => return Ok(objects),
                    Verdict::Pending(p) => pending = p,
                    Verdict::Failed(m) => return Err(WaitError::Failed(m)),
                }
            }
        }
    }

    /// Deletes a Job and its pods (background propagation). Not found is success.
    pub async fn delete_job(&self, namespace: &str, name: &str) -> Result<(), ClusterApiError> {
        let api: Api<k8s_openapi::api::batch::v1::Job> = self.namespaced(namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(ClusterApiError(format!(
                "deleting Job {name}: {}",
                describe_kube_error(&e)
            ))),
        }
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt<K>(&self, api: &Api<K>, name: &str) -> Result<Option<K>, ClusterApiError>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        api.get_opt(name)
            .await
            .map_err(|e| ClusterApiError(format!("reading {name}: {}", describe_kube_error(&e))))
    }
}
