//! Certificates of the lab's Kubernetes API, issued from the cluster (Kubernetes) CA that the
//! installer generated, with `metal::talos::pki` (so they are laid out as Talos lays them out):
//! the API server's serving certificate and the admin client certificate of the kubeconfig,
//! both ECDSA P-256 with `EC PRIVATE KEY` keys.

use std::net::IpAddr;
use std::time::Duration;

use metal::talos::pki::{self, KeyKind, LeafRequest};
use metal::talos::secrets::CertAndKey;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The cluster CA, ready to sign and to verify.
pub(crate) struct ClusterCa {
    /// Every certificate in the CA's PEM (trust anchors for client certificates).
    pub certs: Vec<CertificateDer<'static>>,
    ca: CertAndKey,
}

/// What a leaf certificate is for.
pub(crate) struct Leaf<'a> {
    pub common_name: &'a str,
    pub organizations: &'a [&'a str],
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub server_auth: bool,
    pub client_auth: bool,
    pub validity: Duration,
}

/// A leaf issued by the CA, as PEM (`CERTIFICATE`, `EC PRIVATE KEY`).
pub(crate) struct Issued {
    pub pem: CertAndKey,
}

impl Issued {
    /// The certificate and key for rustls.
    pub fn rustls(&self) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
        let cert = pki::parse_certificate_pem(&self.pem.crt).map_err(|e| e.to_string())?;
        let key = pki::parse_private_key_pem(&self.pem.key).map_err(|e| e.to_string())?;
        Ok((cert, key))
    }
}

impl ClusterCa {
    /// Loads a CA from PEM text (checking that the key can sign).
    pub fn load(ca: &CertAndKey) -> Result<ClusterCa, String> {
        let certs = pki::parse_certificates_pem(&ca.crt)
            .map_err(|e| format!("cluster CA certificate: {e}"))?;
        if certs.is_empty() {
            return Err("the cluster CA PEM holds no CERTIFICATE block".into());
        }
        pki::parse_private_key_pem(&ca.key).map_err(|e| format!("cluster CA key: {e}"))?;
        Ok(ClusterCa {
            certs,
            ca: ca.clone(),
        })
    }

    /// Issues an ECDSA P-256 leaf.
    pub fn issue(&self, leaf: &Leaf<'_>) -> Result<Issued, String> {
        let request = LeafRequest {
            common_name: Some(leaf.common_name.to_string()),
            organizations: leaf.organizations.iter().map(|o| o.to_string()).collect(),
            dns_names: leaf.dns_names.clone(),
            ip_addresses: leaf.ips.clone(),
            server_auth: leaf.server_auth,
            client_auth: leaf.client_auth,
            validity: leaf.validity,
        };
        let pem = pki::issue(&self.ca, &request, KeyKind::EcdsaP256)
            .map_err(|e| format!("issuing {:?}: {e}", leaf.common_name))?;
        Ok(Issued { pem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_from_a_talos_kubernetes_ca() {
        let ca = pki::new_ca(
            Some("kubernetes"),
            KeyKind::EcdsaP256,
            Duration::from_secs(3600),
        )
        .unwrap();
        assert!(ca.key.contains("EC PRIVATE KEY"));
        let ca = ClusterCa::load(&ca).unwrap();
        let leaf = ca
            .issue(&Leaf {
                common_name: "admin",
                organizations: &["system:masters"],
                dns_names: vec!["localhost".into()],
                ips: vec!["127.0.0.1".parse().unwrap()],
                server_auth: false,
                client_auth: true,
                validity: Duration::from_secs(3600),
            })
            .unwrap();
        assert!(leaf.pem.key.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let (_, key) = leaf.rustls().unwrap();
        assert!(matches!(key, PrivateKeyDer::Sec1(_)));
    }

    #[test]
    fn rejects_garbage() {
        let empty = CertAndKey {
            crt: String::new(),
            key: String::new(),
        };
        assert!(ClusterCa::load(&empty).is_err());
    }
}
