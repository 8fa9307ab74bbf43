//! Vault initialisation and unsealing (`--init-vault`), entirely through the Kubernetes API:
//! `sys/init` through the service proxy of the `vault` Service, `sys/unseal` and
//! `sys/seal-status` through the proxy of each Vault server pod, both over `https:` to Vault's
//! TLS listener (see [`crate::vault_tls`]). No port-forward, no local `vault` CLI.
//!
//! The unseal keys and the root token are written to `<state-dir>/vault-init.json` (0600,
//! atomically) *before* anything uses them; they are never printed or logged. A Vault that is
//! already initialised is only unsealed, with the keys from that file.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::checkpoint::store::write_atomic;
use crate::cluster_api::{ClusterApi, describe_kube_error};

/// The namespace of the Vault Application (gitops/platform/core/vault.yaml).
pub const VAULT_NAMESPACE: &str = "vault";
/// The Vault Service (the Helm release name) and its port.
pub const VAULT_SERVICE: &str = "vault:8200";
/// The Argo CD Application that installs Vault.
pub const VAULT_APPLICATION: &str = "vault";
/// The file in the state directory holding the unseal keys and the root token.
pub const VAULT_INIT_FILE: &str = "vault-init.json";
/// Key shares `sys/init` creates.
pub const SECRET_SHARES: u64 = 5;
/// Key shares needed to unseal.
pub const SECRET_THRESHOLD: u64 = 3;

/// A Vault API error, as one line. Never contains a key or a token.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VaultError(pub String);

// Vault serves TLS (`crate::vault_tls`): the `https:` scheme makes the API server speak TLS to
// the pod, so the keys and the token are encrypted on the hop across the node network (the API
// server's proxy does not verify the pod's certificate: it dials pod IPs, which no certificate
// names). From the caller to the API server it is the kubeconfig's TLS, as for any call.
fn service_path(api: &str) -> String {
    format!("/api/v1/namespaces/{VAULT_NAMESPACE}/services/https:{VAULT_SERVICE}/proxy/v1/{api}")
}

fn pod_path(pod: &str, api: &str) -> String {
    format!("/api/v1/namespaces/{VAULT_NAMESPACE}/pods/https:{pod}:8200/proxy/v1/{api}")
}

async fn call(
    cluster: &ClusterApi,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, VaultError> {
    let bytes = match body {
        Some(b) => serde_json::to_vec(b).map_err(|e| VaultError(e.to_string()))?,
        None => Vec::new(),
    };
    let request = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header("Content-Type", "application/json")
        .body(bytes)
        .map_err(|e| VaultError(e.to_string()))?;
    // The path names the Vault API called; the body (which may hold a key) is never reported.
    let what = path.rsplit("/proxy/").next().unwrap_or(path).to_owned();
    let text = cluster
        .client()
        .request_text(request)
        .await
        .map_err(|e| VaultError(format!("{method} {what}: {}", describe_kube_error(&e))))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| VaultError(format!("{method} {what}: not JSON ({e})")))
}

/// The Vault server pods (`vault-0`, …), by name.
pub async fn server_pods(cluster: &ClusterApi) -> Result<Vec<String>, VaultError> {
    let pods: kube::Api<Pod> = cluster.namespaced(VAULT_NAMESPACE);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| VaultError(format!("listing Vault pods: {}", describe_kube_error(&e))))?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            let name = p.metadata.name.as_deref().unwrap_or_default();
            let statefulset_pod = name
                .strip_prefix("vault-")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            labels.get("component").map(String::as_str) == Some("server") || statefulset_pod
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// `sys/seal-status` of one pod: `(initialized, sealed)`.
pub async fn seal_status(cluster: &ClusterApi, pod: &str) -> Result<(bool, bool), VaultError> {
    let status = call(
        cluster,
        http::Method::GET,
        &pod_path(pod, "sys/seal-status"),
        None,
    )
    .await?;
    Ok((
        status["initialized"].as_bool().unwrap_or(false),
        status["sealed"].as_bool().unwrap_or(true),
    ))
}

/// What [`initialise_and_unseal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultOutcome {
    /// True when this run initialised Vault (false: it already was).
    pub initialised_now: bool,
    /// The pods now unsealed.
    pub unsealed: Vec<String>,
}

/// Initialises Vault if it is not (saving the keys to `<state_dir>/vault-init.json` first),
/// then unseals every server pod with the stored keys.
pub async fn initialise_and_unseal(
    cluster: &ClusterApi,
    state_dir: &Path,
) -> Result<VaultOutcome, VaultError> {
    let file = state_dir.join(VAULT_INIT_FILE);
    let status = call(cluster, http::Method::GET, &service_path("sys/init"), None).await?;
    let initialised = status["initialized"].as_bool().unwrap_or(false);
    let mut initialised_now = false;
    let stored: Value = if initialised {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            VaultError(format!(
                "Vault is already initialised but its keys are not in {} ({e}); unseal it with the keys you hold (vault operator unseal), or restore that file from your backup",
                file.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| VaultError(format!("{} is not valid JSON: {e}", file.display())))?
    } else {
        let answer = call(
            cluster,
            http::Method::PUT,
            &service_path("sys/init"),
            Some(&json!({"secret_shares": SECRET_SHARES, "secret_threshold": SECRET_THRESHOLD})),
        )
        .await?;
        if !answer["keys_base64"].is_array() && !answer["keys"].is_array()
            || !answer["root_token"].is_string()
        {
            return Err(VaultError(
                "sys/init answered without keys or root token".into(),
            ));
        }
        let stored = json!({
            "keys": answer["keys"],
            "keys_base64": answer["keys_base64"],
            "root_token": answer["root_token"],
            "secret_shares": SECRET_SHARES,
            "secret_threshold": SECRET_THRESHOLD,
        });
        let text = serde_json::to_vec_pretty(&stored).map_err(|e| VaultError(e.to_string()))?;
        write_atomic(&file, &text).map_err(|e| {
            VaultError(format!(
                "Vault was initialised but its keys could not be saved to {}: {e}",
                file.display()
            ))
        })?;
        initialised_now = true;
        stored
    };
    let keys: Vec<String> = stored["keys_base64"]
        .as_array()
        .or_else(|| stored["keys"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    if keys.is_empty() {
        return Err(VaultError(format!(
            "{} holds no unseal keys",
            file.display()
        )));
    }
    let pods = server_pods(cluster).await?;
    if pods.is_empty() {
        return Err(VaultError(format!(
            "no Vault server pod in namespace {VAULT_NAMESPACE}"
        )));
    }
    for pod in &pods {
        let (_, mut sealed) = seal_status(cluster, pod).await?;
        for key in &keys {
            if !sealed {
                break;
            }
            let answer = call(
                cluster,
                http::Method::PUT,
                &pod_path(pod, "sys/unseal"),
                Some(&json!({"key": key})),
            )
            .await?;
            sealed = answer["sealed"].as_bool().unwrap_or(true);
        }
        if sealed {
            return Err(VaultError(format!(
                "{pod} is still sealed after every stored key was given"
            )));
        }
    }
    Ok(VaultOutcome {
        initialised_now,
        unsealed: pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_through_the_api_server_proxies_over_tls() {
        assert_eq!(
            service_path("sys/init"),
            "/api/v1/namespaces/vault/services/https:vault:8200/proxy/v1/sys/init"
        );
        assert_eq!(
            pod_path("vault-0", "sys/unseal"),
            "/api/v1/namespaces/vault/pods/https:vault-0:8200/proxy/v1/sys/unseal"
        );
    }
}
