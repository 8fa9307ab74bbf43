//! The TLS identity of a Talos node in maintenance mode: an ephemeral, in-memory, self-signed
//! Ed25519 CA and an Ed25519 leaf for the node (SAN = its IP and hostname, CN = hostname, valid
//! 24 hours), served without asking for a client certificate and with ALPN `h2` only. Built with
//! the ring provider.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A rustls server configuration for one maintenance-mode node.
pub(crate) fn server_config(
    ip: Ipv4Addr,
    hostname: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| format!("CA key: {e}"))?;
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

    let leaf_key =
        KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| format!("node key: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_h2_only_config() {
        let config = server_config(Ipv4Addr::new(127, 0, 9, 1), "talos-cp-1").unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
