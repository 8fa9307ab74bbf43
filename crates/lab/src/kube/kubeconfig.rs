//! The admin kubeconfig, as Talos' `Kubeconfig` RPC returns it (`pkg/kubeconfig/generate.go`):
//! cluster `<cluster>`, user and context `admin@<cluster>` with namespace `default`, the
//! Kubernetes CA as `certificate-authority-data`, and a client certificate issued from that CA
//! (`CN=admin`, `O=system:masters`, client auth, valid one year) with its
//! ECDSA P-256 key as `EC PRIVATE KEY`, all base64 in the `*-data` fields.

use std::time::Duration;

use base64::Engine;
use metal::talos::secrets::CertAndKey;

use super::certs::{ClusterCa, Leaf};
use crate::LabError;

/// How long the admin certificate is valid (Talos' `adminKubeconfig.certLifetime` default).
const ADMIN_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A YAML scalar: plain when it is safely plain, JSON-quoted (which YAML reads) otherwise.
fn scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '/' | ':'))
        && !value.starts_with(['-', ':', '@'])
        && !value.ends_with(':')
        && !value.contains(": ")
        && !matches!(
            value,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        && value.parse::<f64>().is_err();
    if plain {
        value.to_string()
    } else {
        serde_json::Value::String(value.to_string()).to_string()
    }
}

/// Builds the admin kubeconfig for `cluster_name` at `server_url` (e.g. `https://127.0.5.1:6443`).
pub fn admin_kubeconfig(
    cluster_name: &str,
    server_url: &str,
    ca: &CertAndKey,
) -> Result<String, LabError> {
    let pki = |reason: String| LabError::KubePki { reason };
    let cluster_ca = ClusterCa::load(ca).map_err(pki)?;
    let client = cluster_ca
        .issue(&Leaf {
            common_name: "admin",
            organizations: &["system:masters"],
            dns_names: Vec::new(),
            ips: Vec::new(),
            server_auth: false,
            client_auth: true,
            validity: ADMIN_CERT_LIFETIME,
        })
        .map_err(pki)?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let cluster = scalar(cluster_name);
    let user = scalar(&format!("admin@{cluster_name}"));
    Ok(format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster}\n\
         \x20 cluster:\n\
         \x20   server: {server}\n\
         \x20   certificate-authority-data: {ca_data}\n\
         users:\n\
         - name: {user}\n\
         \x20 user:\n\
         \x20   client-certificate-data: {cert_data}\n\
         \x20   client-key-data: {key_data}\n\
         contexts:\n\
         - context:\n\
         \x20   cluster: {cluster}\n\
         \x20   namespace: default\n\
         \x20   user: {user}\n\
         \x20 name: {user}\n\
         current-context: {user}\n",
        server = scalar(server_url),
        ca_data = b64(&ca.crt),
        cert_data = b64(&client.pem.crt),
        key_data = b64(&client.pem.key),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(scalar("admin@lab"), "admin@lab");
        assert_eq!(scalar("https://127.0.0.1:6443"), "https://127.0.0.1:6443");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("123"), "\"123\"");
    }
}
