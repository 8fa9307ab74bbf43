//! The installer's view of the Kubernetes API, through kube-rs: readiness of the API server and
//! which nodes have registered. Built from the kubeconfig Talos hands out; nothing else.

use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

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
