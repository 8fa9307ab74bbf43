//! Vault's traffic encrypted in transit (issue 13): Vault serves TLS with a certificate cto
//! makes for it, so the root token and the unseal keys that `--init-vault` sends through the
//! Kubernetes API server's proxy (API server → Vault pod, across the node network), and every
//! secret Vault hands out, never cross the network in clear. See docs/decisions.md ("Vault
//! traffic in transit") for why Vault TLS and not Cilium's WireGuard encryption alone.
//!
//! Step 14 (DeployingBootstrapResources) creates, before Argo CD syncs Vault:
//!
//! * Namespace `vault` and Secret `vault/vault-tls` (`kubernetes.io/tls`: `tls.crt`, `tls.key`,
//!   `ca.crt`): a dedicated ECDSA P-256 CA (`O=vault`) and a server certificate for the names the
//!   vault chart gives its Service and pods (`vault`, `vault.vault.svc…`, `*.vault-internal…`)
//!   and `127.0.0.1` (the chart's `VAULT_ADDR` inside the pod). The Vault Application
//!   (`gitops/platform/core/vault.yaml`) mounts it and sets `global.tlsDisable: false`.
//! * Namespace `vault-secrets-operator-system` and Secret `vault-ca` there (`ca.crt` only), the
//!   `caCertSecret` of the operator's default VaultConnection
//!   (`gitops/platform/core/vault-secrets-operator.yaml`), which talks `https://` to Vault.
//!
//! The Secret is created once: a resumed step finds it and keeps it (a new certificate would
//! only force a Vault restart). The CA key is not kept anywhere else.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use metal::talos::pki::{self, KeyKind, LeafRequest};
use metal::talos::secrets::CertAndKey;
use serde_json::{Value, json};

use crate::cluster_api::ClusterApi;
use crate::vault::VAULT_NAMESPACE;

/// The Secret holding Vault's serving certificate, key and CA (`vault` namespace).
pub const VAULT_TLS_SECRET: &str = "vault-tls";
/// The namespace of the Vault Secrets Operator Application.
pub const VSO_NAMESPACE: &str = "vault-secrets-operator-system";
/// The Secret holding Vault's CA for the operator's VaultConnection.
pub const VSO_CA_SECRET: &str = "vault-ca";
/// Validity of Vault's CA and certificate: 10 years, like the cluster's CAs.
pub const VAULT_TLS_VALIDITY: Duration = metal::talos::secrets::CA_VALIDITY;

/// The DNS names of Vault's certificate: the chart's Service `vault` and headless Service
/// `vault-internal` (pods `vault-N.vault-internal`), in every form a client may use.
pub fn vault_dns_names() -> Vec<String> {
    let ns = VAULT_NAMESPACE;
    let mut names = Vec::new();
    for service in ["vault", "vault-active", "vault-standby", "vault-internal"] {
        names.push(service.to_owned());
        for suffix in ["", ".svc", ".svc.cluster.local"] {
            names.push(format!("{service}.{ns}{suffix}"));
        }
    }
    for suffix in [
        "",
        &format!(".{ns}"),
        &format!(".{ns}.svc"),
        &format!(".{ns}.svc.cluster.local"),
    ] {
        names.push(format!("*.vault-internal{suffix}"));
    }
    names
}

/// A new CA and a Vault server certificate issued by it.
pub fn generate() -> Result<(CertAndKey, CertAndKey), String> {
    let ca = pki::new_ca(Some("vault"), KeyKind::EcdsaP256, VAULT_TLS_VALIDITY)
        .map_err(|e| format!("Vault's CA: {e}"))?;
    let request = LeafRequest {
        common_name: Some(format!("vault.{VAULT_NAMESPACE}.svc")),
        organizations: vec![],
        dns_names: vault_dns_names(),
        ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        server_auth: true,
        client_auth: false,
        validity: VAULT_TLS_VALIDITY,
    };
    let leaf = pki::issue(&ca, &request, KeyKind::EcdsaP256)
        .map_err(|e| format!("Vault's certificate: {e}"))?;
    Ok((ca, leaf))
}

fn b64(text: &str) -> String {
    STANDARD.encode(text.as_bytes())
}

/// Secret `vault/vault-tls` (type `kubernetes.io/tls`).
pub fn vault_tls_secret(ca: &CertAndKey, leaf: &CertAndKey) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": VAULT_TLS_SECRET,
            "namespace": VAULT_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "cto"},
        },
        "data": {
            "tls.crt": b64(&leaf.crt),
            "tls.key": b64(&leaf.key),
            "ca.crt": b64(&ca.crt),
        },
    })
}

/// Secret `vault-secrets-operator-system/vault-ca`: only the CA certificate.
pub fn vso_ca_secret(ca_crt_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": VSO_CA_SECRET,
            "namespace": VSO_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "cto"},
        },
        "data": {"ca.crt": b64(ca_crt_pem)},
    })
}

/// Creates Vault's TLS Secret unless it exists, and (always) the operator's CA Secret from it.
/// Returns true when a new certificate was made. The namespaces must exist.
pub async fn ensure(api: &ClusterApi) -> Result<bool, String> {
    let secrets: kube::Api<Secret> = api.namespaced(VAULT_NAMESPACE);
    let existing = api
        .get_opt(&secrets, VAULT_TLS_SECRET)
        .await
        .map_err(|e| e.to_string())?;
    let (created, ca_crt) = match existing
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("ca.crt"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
    {
        Some(ca_crt) => (false, ca_crt),
        None => {
            let (ca, leaf) = generate()?;
            // The error of a failed apply never contains the object (the key stays out).
            api.apply(&vault_tls_secret(&ca, &leaf))
                .await
                .map_err(|e| e.to_string())?;
            (true, ca.crt.clone())
        }
    };
    api.apply(&vso_ca_secret(&ca_crt))
        .await
        .map_err(|e| e.to_string())?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn application(text: &str) -> Value {
        serde_saphyr::from_str(text).unwrap()
    }

    /// The Vault and Vault Secrets Operator Applications cto syncs speak TLS with the Secrets
    /// this module makes: values as written in gitops/ (issue 13).
    #[test]
    fn the_gitops_values_put_vault_on_tls_with_these_secrets() {
        let vault = application(include_str!("../../../gitops/platform/core/vault.yaml"));
        let values = &vault["spec"]["source"]["helm"]["valuesObject"];
        assert_eq!(values["global"]["tlsDisable"], false, "{values}");
        let volume = &values["server"]["volumes"][0];
        assert_eq!(volume["secret"]["secretName"], VAULT_TLS_SECRET);
        let mount = values["server"]["volumeMounts"][0]["mountPath"]
            .as_str()
            .unwrap();
        assert_eq!(values["server"]["volumeMounts"][0]["name"], volume["name"]);
        let config = values["server"]["standalone"]["config"].as_str().unwrap();
        assert!(
            config.contains(&format!("tls_cert_file = \"{mount}/tls.crt\"")),
            "{config}"
        );
        assert!(
            config.contains(&format!("tls_key_file = \"{mount}/tls.key\"")),
            "{config}"
        );
        assert!(!config.contains("tls_disable"), "{config}");
        assert_eq!(
            values["server"]["extraEnvironmentVars"]["VAULT_CACERT"],
            format!("{mount}/ca.crt")
        );
        assert_eq!(vault["spec"]["destination"]["namespace"], VAULT_NAMESPACE);

        let vso = application(include_str!(
            "../../../gitops/platform/core/vault-secrets-operator.yaml"
        ));
        let connection = &vso["spec"]["source"]["helm"]["valuesObject"]["defaultVaultConnection"];
        assert_eq!(
            connection["address"],
            format!("https://vault.{VAULT_NAMESPACE}.svc.cluster.local:8200")
        );
        assert!(vault_dns_names().contains(&format!("vault.{VAULT_NAMESPACE}.svc.cluster.local")));
        assert_eq!(connection["caCertSecret"], VSO_CA_SECRET);
        assert_ne!(connection["skipTLSVerify"], true);
        assert_eq!(vso["spec"]["destination"]["namespace"], VSO_NAMESPACE);
    }

    #[test]
    fn the_certificate_names_vault_as_its_clients_reach_it() {
        let (ca, leaf) = generate().unwrap();
        let der = pki::parse_certificate_pem(&leaf.crt).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap().value;
        let text = format!("{sans:?}");
        for name in [
            "vault.vault.svc",
            "vault.vault.svc.cluster.local",
            "*.vault-internal",
            "127.0.0.1",
        ] {
            let shown = if name == "127.0.0.1" {
                "127, 0, 0, 1"
            } else {
                name
            };
            assert!(text.contains(shown), "{name} in {text}");
        }
        let secret = vault_tls_secret(&ca, &leaf);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let decode = |k: &str| {
            String::from_utf8(
                STANDARD
                    .decode(secret["data"][k].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(decode("tls.crt"), leaf.crt);
        assert_eq!(decode("tls.key"), leaf.key);
        assert_eq!(decode("ca.crt"), ca.crt);
        let vso = vso_ca_secret(&ca.crt);
        assert_eq!(vso["metadata"]["namespace"], VSO_NAMESPACE);
        assert!(
            vso["data"].get("tls.key").is_none(),
            "the key stays in Vault's namespace"
        );
    }
}
