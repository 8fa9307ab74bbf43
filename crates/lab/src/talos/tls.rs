//! The TLS identities of a Talos node, both with ALPN `h2` only and the ring provider.
//!
//! * Maintenance mode ([`server_config`]): a self-signed Ed25519 CA and an Ed25519 leaf for the
//!   node (SAN = its IP and hostname, CN = hostname, valid 24 hours), served without asking for
//!   a client certificate. Real Talos makes both at boot and keeps them in memory
//!   (`internal/app/maintenance/provider.go`), so the key changes only when the node reboots;
//!   the lab derives them from a 32-byte seed (the world's secret, the server and its lifecycle)
//!   so that a restarted lab serves the same key, as a node that did not reboot would.
//! * Normal mode ([`normal_server_config`]): a leaf issued by the cluster's OS CA (the key type
//!   follows the CA's; CN = node name; SANs = node IP, node name and `machine.certSANs`; server
//!   auth; 24 hours), and client certificates required and verified against the OS CA and
//!   `machine.acceptedCAs`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use metal::talos::pki::{self, KeyKind, LeafRequest};
use metal::talos::secrets::CertAndKey;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use time::{Duration, OffsetDateTime};

/// A rustls server configuration for one maintenance-mode node.
pub(crate) fn server_config(
    ip: Ipv4Addr,
    hostname: &str,
    seed: [u8; 32],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let now = OffsetDateTime::now_utc();
    let ca_key = ed25519_from_seed(&seed, b"ca").map_err(|e| format!("CA key: {e}"))?;
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| format!("CA params: {e}"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "talos");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::minutes(1);
    ca_params.not_after = now + Duration::hours(24);
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| format!("CA certificate: {e}"))?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf_key = ed25519_from_seed(&seed, b"leaf").map_err(|e| format!("node key: {e}"))?;
    let mut leaf_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| format!("node params: {e}"))?;
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(ip)));
    if let Ok(name) = hostname.try_into() {
        leaf_params.subject_alt_names.push(SanType::DnsName(name));
    }
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, hostname);
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.not_before = now - Duration::minutes(1);
    leaf_params.not_after = now + Duration::hours(24);
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| format!("node certificate: {e}"))?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// An Ed25519 key pair whose private key is `sha256(seed || label)`, through its PKCS#8 v1
/// encoding (RFC 8410: the fixed 16-byte prefix, then the 32-byte private key).
fn ed25519_from_seed(seed: &[u8; 32], label: &[u8]) -> Result<KeyPair, rcgen::Error> {
    use sha2::{Digest, Sha256};
    const PKCS8_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let private = Sha256::new()
        .chain_update(seed)
        .chain_update(label)
        .finalize();
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&private);
    KeyPair::try_from(der.as_slice())
}

/// A rustls server configuration for a node in normal mode: apid's certificate signed by
/// `os_ca` (which must hold the key), and client certificates required, verified against
/// `os_ca.crt` and `accepted_cas` (PEM).
pub(crate) fn normal_server_config(
    ip: Ipv4Addr,
    node_name: &str,
    cert_sans: &[String],
    os_ca: &CertAndKey,
    accepted_cas: &[String],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut dns_names = Vec::new();
    let mut ip_addresses = vec![IpAddr::V4(ip)];
    for san in std::iter::once(node_name).chain(cert_sans.iter().map(String::as_str)) {
        match san.parse::<IpAddr>() {
            Ok(addr) if !ip_addresses.contains(&addr) => ip_addresses.push(addr),
            Ok(_) => {}
            Err(_) if !san.is_empty() && san.is_ascii() && !dns_names.iter().any(|d| d == san) => {
                dns_names.push(san.to_owned())
            }
            Err(_) => {}
        }
    }
    let key_kind = if os_ca.key.contains("BEGIN EC PRIVATE KEY") {
        KeyKind::EcdsaP256
    } else {
        KeyKind::Ed25519
    };
    let request = LeafRequest {
        common_name: Some(node_name.to_owned()),
        organizations: Vec::new(),
        dns_names,
        ip_addresses,
        server_auth: true,
        client_auth: false,
        validity: std::time::Duration::from_secs(24 * 3600),
    };
    let leaf =
        pki::issue(os_ca, &request, key_kind).map_err(|e| format!("apid certificate: {e}"))?;
    let chain =
        pki::parse_certificates_pem(&leaf.crt).map_err(|e| format!("apid certificate: {e}"))?;
    let key = pki::parse_private_key_pem(&leaf.key).map_err(|e| format!("apid key: {e}"))?;
    let mut roots = RootCertStore::empty();
    for pem in std::iter::once(&os_ca.crt).chain(accepted_cas) {
        for cert in pki::parse_certificates_pem(pem).map_err(|e| format!("OS CA: {e}"))? {
            roots.add(cert).map_err(|e| format!("OS CA: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_h2_only_config() {
        let config = server_config(Ipv4Addr::new(127, 0, 9, 1), "talos-cp-1", [7; 32]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }

    #[test]
    fn maintenance_keys_follow_the_seed() {
        let public = |seed: [u8; 32]| ed25519_from_seed(&seed, b"leaf").unwrap().public_key_pem();
        assert_eq!(public([1; 32]), public([1; 32]));
        assert_ne!(public([1; 32]), public([2; 32]));
        assert_ne!(
            ed25519_from_seed(&[1; 32], b"ca").unwrap().public_key_pem(),
            public([1; 32])
        );
    }

    #[test]
    fn normal_mode_needs_the_os_ca_key() {
        let os_ca = pki::new_ca(
            Some("talos"),
            KeyKind::Ed25519,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let sans = vec!["cp.example.com".to_owned(), "10.0.0.1".to_owned()];
        let config =
            normal_server_config(Ipv4Addr::new(127, 0, 9, 1), "cp-1", &sans, &os_ca, &[]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let without_key = CertAndKey {
            crt: os_ca.crt.clone(),
            key: String::new(),
        };
        assert!(
            normal_server_config(Ipv4Addr::new(127, 0, 9, 1), "cp-1", &[], &without_key, &[])
                .is_err()
        );
    }
}
