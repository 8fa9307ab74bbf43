//! Certificates and keys the way Talos makes them, shared by the secrets bundle, the
//! talosconfig, the gRPC client and the lab (Talos node server certificates, Kubernetes API
//! certificates, kubeconfig client certificates).
//!
//! This module owns:
//! * PEM in all of Talos' labels (`CERTIFICATE`, `EC PRIVATE KEY` = SEC1, `ED25519 PRIVATE KEY` =
//!   PKCS#8, `RSA PRIVATE KEY` = PKCS#1, generic `PRIVATE KEY` = PKCS#8), and the conversion to
//!   rustls' [`CertificateDer`] / [`PrivateKeyDer`] (`rustls-pemfile` does not know the
//!   `ED25519 PRIVATE KEY` label);
//! * key generation with the byte layout of Go's `crypto/x509` (`MarshalECPrivateKey` with the
//!   curve parameters, `MarshalPKCS8PrivateKey` v1 for Ed25519);
//! * self-signed CAs as `siderolabs/crypto` `NewSelfSignedCertificateAuthority` makes them
//!   ([`new_ca`]) and leaf certificates signed by such a CA ([`issue`]), laid out as Go's
//!   `x509.CreateCertificate` lays them out (issuer copied byte for byte from the CA's subject,
//!   all organizations in one RDN, PrintableString where Go uses it, AKI = the CA's SKI).
//!
//! Signing and key generation use rcgen with ring. CAs are built with rcgen's
//! `CertificateParams`; leaves are encoded here, because rcgen cannot put several organizations
//! in a subject (Kubernetes groups) and re-encodes the issuer name instead of copying it.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber, SigningKey,
};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::talos::TalosError;
use crate::talos::secrets::CertAndKey;

/// PEM label of certificates.
pub const PEM_CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of ECDSA keys (SEC1 DER), as Talos writes them.
pub const PEM_EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
/// PEM label of Ed25519 keys (PKCS#8 DER), Talos' own non-standard label.
pub const PEM_ED25519_PRIVATE_KEY: &str = "ED25519 PRIVATE KEY";
/// PEM label of RSA keys (PKCS#1 DER), as Talos writes them.
pub const PEM_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
/// PEM label of generic PKCS#8 keys, accepted on input.
pub const PEM_PRIVATE_KEY: &str = "PRIVATE KEY";

/// The algorithm of a newly generated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Ed25519; PEM `ED25519 PRIVATE KEY` (PKCS#8). Talos' OS CA and Talos API certificates.
    Ed25519,
    /// ECDSA on P-256 with SHA-256; PEM `EC PRIVATE KEY` (SEC1). etcd and Kubernetes.
    EcdsaP256,
}

/// What a leaf certificate says about its subject. See [`issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafRequest {
    /// Subject common name (`CN`), if any. Talos client certificates have none.
    pub common_name: Option<String>,
    /// Subject organizations (`O`), all in one RDN as Go writes them: Talos roles
    /// (`os:admin`) or Kubernetes groups (`system:masters`).
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Add ExtKeyUsage `serverAuth`.
    pub server_auth: bool,
    /// Add ExtKeyUsage `clientAuth`.
    pub client_auth: bool,
    /// `NotAfter - NotBefore`; `NotBefore` is now.
    pub validity: Duration,
}

/// Generates a self-signed CA exactly as `siderolabs/crypto`'s
/// `NewSelfSignedCertificateAuthority` does: X.509 v3, random 128-bit serial, subject holding
/// only `O=<organization>` (empty without one), SubjectKeyId = 20 random bytes, no AKI,
/// `NotBefore` = now, `NotAfter` = now + `validity`, BasicConstraints critical `CA:TRUE` (no
/// path length), KeyUsage critical `DigitalSignature | CertSign`, ExtKeyUsage `serverAuth,
/// clientAuth`.
pub fn new_ca(
    organization: Option<&str>,
    key: KeyKind,
    validity: Duration,
) -> Result<CertAndKey, TalosError> {
    let generated = generate_key(key)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, dn_value(organization));
    }
    params.distinguished_name = name;
    params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
    params.key_identifier_method = KeyIdMethod::PreSpecified(random_bytes::<20>()?.to_vec());
    let (not_before, not_after) = validity_window(validity)?;
    params.not_before = not_before;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .self_signed(&generated.pair)
        .map_err(|e| generation_error(format!("self-signing the CA: {e}")))?;
    Ok(CertAndKey {
        crt: pem_encode(PEM_CERTIFICATE, cert.der()),
        key: generated.pem,
    })
}

/// Issues a leaf certificate signed by `ca` (whose key may be Ed25519, ECDSA P-256/P-384 or RSA)
/// for a new key of kind `key`, laid out as Go's `x509.CreateCertificate` would for Talos'
/// `NewKeyPair`: random 128-bit serial, issuer = the CA's subject (copied byte for byte),
/// subject `O=…` (one RDN) then `CN=…`, `NotBefore` = now, `NotAfter` = now + validity,
/// KeyUsage critical `DigitalSignature` (plus `KeyEncipherment` for ECDSA keys), ExtKeyUsage
/// per the request's flags (none when neither is set), AuthorityKeyId = the CA's SubjectKeyId,
/// SANs (DNS names, then IPs; critical when the subject is empty), no BasicConstraints.
///
/// The key is returned with Talos' PEM labels (`ED25519 PRIVATE KEY` PKCS#8, `EC PRIVATE KEY`
/// SEC1).
pub fn issue(
    ca: &CertAndKey,
    request: &LeafRequest,
    key: KeyKind,
) -> Result<CertAndKey, TalosError> {
    let ca_der = parse_certificate_pem(&ca.crt)?;
    let (_, ca_cert) =
        X509Certificate::from_der(&ca_der).map_err(|e| TalosError::InvalidCertificate {
            reason: format!("CA certificate: {e}"),
        })?;
    let ca_key = signing_key(&ca.key)?;
    check_key_matches(&ca_key, &ca_cert, "the CA")?;
    let ca_ski = ca_cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        });

    for dns in &request.dns_names {
        if dns.is_empty() || !dns.is_ascii() {
            return Err(generation_error(format!(
                "DNS name {dns:?} must be non-empty ASCII"
            )));
        }
    }

    let generated = generate_key(key)?;
    let subject = encode_subject(request.common_name.as_deref(), &request.organizations);
    let (not_before, not_after) = validity_window(request.validity)?;

    let mut extensions = Vec::new();
    let mut usage = KU_DIGITAL_SIGNATURE;
    if key == KeyKind::EcdsaP256 {
        usage |= KU_KEY_ENCIPHERMENT;
    }
    extensions.push(extension(OID_KEY_USAGE, true, &key_usage_bits(usage)));
    let mut ekus = Vec::new();
    if request.server_auth {
        ekus.push(der(TAG_OID, OID_EKU_SERVER_AUTH));
    }
    if request.client_auth {
        ekus.push(der(TAG_OID, OID_EKU_CLIENT_AUTH));
    }
    if !ekus.is_empty() {
        extensions.push(extension(OID_EXT_KEY_USAGE, false, &seq(&ekus)));
    }
    if let Some(ski) = ca_ski {
        extensions.push(extension(
            OID_AUTHORITY_KEY_ID,
            false,
            &seq(&[der(0x80, &ski)]),
        ));
    }
    if !request.dns_names.is_empty() || !request.ip_addresses.is_empty() {
        let mut names = Vec::new();
        for dns in &request.dns_names {
            names.push(der(0x82, dns.as_bytes()));
        }
        for ip in &request.ip_addresses {
            match ip {
                IpAddr::V4(v4) => names.push(der(0x87, &v4.octets())),
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => names.push(der(0x87, &v4.octets())),
                    None => names.push(der(0x87, &v6.octets())),
                },
            }
        }
        let subject_is_empty = request.common_name.is_none() && request.organizations.is_empty();
        extensions.push(extension(
            OID_SUBJECT_ALT_NAME,
            subject_is_empty,
            &seq(&names),
        ));
    }

    let cert = sign_certificate(
        &ca_key,
        ca_cert.tbs_certificate.subject.as_raw(),
        &subject,
        &generated.pair.subject_public_key_info(),
        not_before,
        not_after,
        &extensions,
    )?;
    Ok(CertAndKey {
        crt: pem_encode(PEM_CERTIFICATE, &cert),
        key: generated.pem,
    })
}

/// The first `CERTIFICATE` block of `pem` as DER.
pub fn parse_certificate_pem(pem: &str) -> Result<CertificateDer<'static>, TalosError> {
    parse_certificates_pem(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| TalosError::InvalidCertificate {
            reason: "no CERTIFICATE PEM block found".to_owned(),
        })
}

/// Every `CERTIFICATE` block of `pem` (a chain or a CA bundle) as DER, in order; other blocks
/// are skipped. Each one must parse as X.509.
pub fn parse_certificates_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TalosError> {
    let blocks = pem_blocks(pem).map_err(|reason| TalosError::InvalidCertificate { reason })?;
    let mut certs = Vec::new();
    for block in blocks {
        if block.label != PEM_CERTIFICATE {
            continue;
        }
        let (rest, _) =
            X509Certificate::from_der(&block.der).map_err(|e| TalosError::InvalidCertificate {
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(TalosError::InvalidCertificate {
                reason: format!(
                    "{} bytes of trailing data after the certificate",
                    rest.len()
                ),
            });
        }
        certs.push(CertificateDer::from(block.der));
    }
    Ok(certs)
}

/// The first private key block of `pem` in any of Talos' labels, for rustls:
/// `ED25519 PRIVATE KEY` and `PRIVATE KEY` → PKCS#8, `EC PRIVATE KEY` → SEC1,
/// `RSA PRIVATE KEY` → PKCS#1. Blocks whose label does not end in `PRIVATE KEY` (such as
/// `EC PARAMETERS`) are skipped. Only the structure is checked here; use it with rustls (or
/// [`issue`]) to find out whether the key itself is usable.
pub fn parse_private_key_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TalosError> {
    let blocks = pem_blocks(pem).map_err(|reason| TalosError::InvalidPrivateKey { reason })?;
    let block = blocks
        .into_iter()
        .find(|b| b.label.ends_with("PRIVATE KEY"))
        .ok_or_else(|| TalosError::InvalidPrivateKey {
            reason: "no PRIVATE KEY PEM block found".to_owned(),
        })?;
    let mut reader = DerReader::new(&block.der);
    reader
        .expect(TAG_SEQUENCE)
        .map_err(|e| TalosError::InvalidPrivateKey {
            reason: format!("{} block: {e}", block.label),
        })?;
    match block.label.as_str() {
        PEM_ED25519_PRIVATE_KEY | PEM_PRIVATE_KEY => {
            Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.der)))
        }
        PEM_EC_PRIVATE_KEY => Ok(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(block.der))),
        PEM_RSA_PRIVATE_KEY => Ok(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(block.der))),
        other => Err(TalosError::InvalidPrivateKey {
            reason: format!(
                "unsupported PEM label {other:?}; expected one of {PEM_ED25519_PRIVATE_KEY:?}, \
                 {PEM_EC_PRIVATE_KEY:?}, {PEM_RSA_PRIVATE_KEY:?} or {PEM_PRIVATE_KEY:?}"
            ),
        }),
    }
}

/// The SPKI fingerprint of the first certificate in `cert_pem`: standard base64 of the SHA-256
/// of its `SubjectPublicKeyInfo`, as talosctl prints and pins it (see
/// [`spki_fingerprint`](crate::talos::spki_fingerprint) for DER input).
pub fn spki_sha256_b64(cert_pem: &str) -> Result<String, TalosError> {
    let der = parse_certificate_pem(cert_pem)?;
    crate::talos::spki_fingerprint(&der)
}

/// Loads `key_pem` (any of Talos' labels) as a key that can sign, checking that ring accepts it.
pub(crate) fn signing_key(key_pem: &str) -> Result<KeyPair, TalosError> {
    let key = parse_private_key_pem(key_pem)?;
    let pkcs8 = match &key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => sec1_to_pkcs8(k.secret_sec1_der())
            .map_err(|reason| TalosError::InvalidPrivateKey { reason })?,
        PrivateKeyDer::Pkcs1(k) => {
            let algorithm = seq(&[der(TAG_OID, OID_RSA_ENCRYPTION), der(TAG_NULL, &[])]);
            seq(&[
                der(TAG_INTEGER, &[0]),
                algorithm,
                der(TAG_OCTET_STRING, k.secret_pkcs1_der()),
            ])
        }
        _ => {
            return Err(TalosError::InvalidPrivateKey {
                reason: "unsupported private key encoding".to_owned(),
            });
        }
    };
    KeyPair::try_from(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8))).map_err(|e| {
        TalosError::InvalidPrivateKey {
            reason: format!(
                "the key is not an Ed25519, ECDSA P-256/P-384 or RSA (2048-8192 bits) key that \
                 ring accepts: {e}"
            ),
        }
    })
}

/// Checks that `cert_pem` and `key_pem` parse and belong together (the key's public half is the
/// certificate's). Returns the certificate DER.
pub(crate) fn check_pair(cert_pem: &str, key_pem: &str) -> Result<Vec<u8>, TalosError> {
    let der = parse_certificate_pem(cert_pem)?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| TalosError::InvalidCertificate {
            reason: e.to_string(),
        })?;
    let key = signing_key(key_pem)?;
    check_key_matches(&key, &cert, "the certificate")?;
    Ok(der.to_vec())
}

fn check_key_matches(
    key: &KeyPair,
    cert: &X509Certificate<'_>,
    what: &str,
) -> Result<(), TalosError> {
    if key.subject_public_key_info() != cert.tbs_certificate.subject_pki.raw {
        return Err(TalosError::InvalidPrivateKey {
            reason: format!("the private key does not match the public key of {what}"),
        });
    }
    Ok(())
}

/// A freshly generated key: the signer and its PEM in Talos' format.
pub(crate) struct GeneratedKey {
    /// The key, ready to sign.
    pub(crate) pair: KeyPair,
    /// The PEM text (`ED25519 PRIVATE KEY` PKCS#8 v1, or `EC PRIVATE KEY` SEC1 with the curve).
    pub(crate) pem: String,
}

/// Generates a key of `kind` and encodes it as Go's `crypto/x509` does.
pub(crate) fn generate_key(kind: KeyKind) -> Result<GeneratedKey, TalosError> {
    let alg = match kind {
        KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let pair = KeyPair::generate_for(alg)
        .map_err(|e| generation_error(format!("generating a {kind:?} key: {e}")))?;
    let pkcs8 = pair.serialize_der();
    let pem = match kind {
        KeyKind::Ed25519 => {
            let seed = ed25519_seed_from_pkcs8(&pkcs8).map_err(generation_error)?;
            pem_encode(PEM_ED25519_PRIVATE_KEY, &ed25519_pkcs8_v1(&seed))
        }
        KeyKind::EcdsaP256 => {
            let sec1 = pkcs8_to_go_sec1(&pkcs8, OID_PRIME256V1).map_err(generation_error)?;
            pem_encode(PEM_EC_PRIVATE_KEY, &sec1)
        }
    };
    Ok(GeneratedKey { pair, pem })
}

/// `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], TalosError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| generation_error(format!("reading the system random generator: {e}")))?;
    Ok(buf)
}

fn generation_error(reason: impl Into<String>) -> TalosError {
    TalosError::CertificateGeneration {
        reason: reason.into(),
    }
}

fn validity_window(validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime), TalosError> {
    if validity.is_zero() {
        return Err(generation_error("the validity must be longer than zero"));
    }
    let now = OffsetDateTime::now_utc();
    let span = time::Duration::try_from(validity)
        .map_err(|_| generation_error(format!("validity {validity:?} is too long")))?;
    let not_after = now
        .checked_add(span)
        .filter(|t| t.year() <= 9999)
        .ok_or_else(|| generation_error(format!("validity {validity:?} is too long")))?;
    Ok((now, not_after))
}

/// A subject name as Go's `pkix.Name.ToRDNSequence` encodes `{Organization, CommonName}`.
fn encode_subject(common_name: Option<&str>, organizations: &[String]) -> Vec<u8> {
    let mut rdns = Vec::new();
    if !organizations.is_empty() {
        let mut values: Vec<Vec<u8>> = organizations
            .iter()
            .map(|o| seq(&[der(TAG_OID, OID_ORGANIZATION), go_string(o)]))
            .collect();
        // DER: the elements of a SET OF are sorted by their encodings.
        values.sort();
        rdns.push(der(TAG_SET, &values.concat()));
    }
    if let Some(cn) = common_name {
        rdns.push(der(
            TAG_SET,
            &seq(&[der(TAG_OID, OID_COMMON_NAME), go_string(cn)]),
        ));
    }
    seq(&rdns)
}

/// A string as Go's `encoding/asn1` marshals it: PrintableString when every byte is in its
/// alphabet, UTF8String otherwise.
fn go_string(value: &str) -> Vec<u8> {
    if value.bytes().all(is_printable_string_byte) {
        der(0x13, value.as_bytes())
    } else {
        der(0x0c, value.as_bytes())
    }
}

fn is_printable_string_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b' ' | b'\'' | b'(' | b')' | b'+' | b',' | b'-' | b'.' | b'/' | b':' | b'=' | b'?'
        )
}

/// The rcgen DN value Go would choose for `value`.
fn dn_value(value: &str) -> DnValue {
    if value.bytes().all(is_printable_string_byte)
        && let Ok(printable) = value.try_into()
    {
        return DnValue::PrintableString(printable);
    }
    DnValue::Utf8String(value.to_owned())
}

fn sign_certificate(
    issuer_key: &KeyPair,
    issuer_name: &[u8],
    subject: &[u8],
    spki: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    extensions: &[Vec<u8>],
) -> Result<Vec<u8>, TalosError> {
    let algorithm = signature_algorithm(issuer_key)?;
    let serial = random_bytes::<16>()?;
    let tbs = seq(&[
        der(0xa0, &der(TAG_INTEGER, &[2])),
        positive_integer(&serial),
        algorithm.to_vec(),
        issuer_name.to_vec(),
        seq(&[asn1_time(not_before), asn1_time(not_after)]),
        subject.to_vec(),
        spki.to_vec(),
        der(0xa3, &seq(extensions)),
    ]);
    let signature = issuer_key
        .sign(&tbs)
        .map_err(|e| generation_error(format!("signing the certificate: {e}")))?;
    let mut bits = vec![0u8];
    bits.extend_from_slice(&signature);
    Ok(seq(&[tbs, algorithm.to_vec(), der(TAG_BIT_STRING, &bits)]))
}

fn signature_algorithm(key: &KeyPair) -> Result<&'static [u8], TalosError> {
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_ED25519 {
        Ok(&[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70])
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(&[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ])
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(&[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
        ])
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        Ok(&[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ])
    } else {
        Err(generation_error(format!(
            "the CA key's algorithm {alg:?} cannot sign certificates here"
        )))
    }
}

/// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5), whole seconds.
fn asn1_time(t: OffsetDateTime) -> Vec<u8> {
    let tail = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&t.year()) {
        der(0x17, format!("{:02}{tail}", t.year() % 100).as_bytes())
    } else {
        der(0x18, format!("{:04}{tail}", t.year()).as_bytes())
    }
}

const KU_DIGITAL_SIGNATURE: u16 = 1 << 15;
const KU_KEY_ENCIPHERMENT: u16 = 1 << 13;

/// A KeyUsage BIT STRING with the minimal number of bits, as Go encodes it.
fn key_usage_bits(usage: u16) -> Vec<u8> {
    let bits = 16 - usage.trailing_zeros() as usize;
    let bytes = usage.to_be_bytes();
    let len = bits.div_ceil(8);
    let mut content = vec![(len * 8 - bits) as u8];
    content.extend_from_slice(&bytes[..len]);
    der(TAG_BIT_STRING, &content)
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![der(TAG_OID, oid)];
    if critical {
        parts.push(der(TAG_BOOLEAN, &[0xff]));
    }
    parts.push(der(TAG_OCTET_STRING, value));
    seq(&parts)
}

// --- PEM ---------------------------------------------------------------------------------------

/// One PEM block.
pub(crate) struct PemBlock {
    /// The label between `BEGIN ` and the dashes.
    pub(crate) label: String,
    /// The decoded body.
    pub(crate) der: Vec<u8>,
}

/// Every PEM block in `text`; text outside blocks is ignored. Blocks with headers (encrypted
/// keys) are refused.
pub(crate) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let mut body = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if let Some(end) = line
                .strip_prefix("-----END ")
                .and_then(|l| l.strip_suffix("-----"))
            {
                if end != label {
                    return Err(format!("PEM block BEGIN {label} is closed by END {end}"));
                }
                ended = true;
                break;
            }
            if line.contains(':') {
                return Err(format!(
                    "PEM block {label} has headers (encrypted keys are not supported)"
                ));
            }
            body.push_str(line);
        }
        if !ended {
            return Err(format!("PEM block {label} has no END line"));
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block {label}: invalid base64: {e}"))?;
        blocks.push(PemBlock {
            label: label.to_owned(),
            der,
        });
    }
    Ok(blocks)
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64-character lines, `\n` endings.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

// --- DER -------------------------------------------------------------------------------------

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;

const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const OID_EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// One DER TLV.
pub(crate) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(TAG_SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from big-endian bytes, minimally encoded.
fn positive_integer(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let bytes = &bytes[skip..];
    let mut content = Vec::with_capacity(bytes.len() + 1);
    if bytes.first().is_none_or(|b| *b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(bytes);
    der(TAG_INTEGER, &content)
}

/// A minimal DER reader: single-byte tags, definite lengths.
pub(crate) struct DerReader<'a> {
    input: &'a [u8],
}

impl<'a> DerReader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.input.first().copied()
    }

    /// The next element's tag and content.
    pub(crate) fn read(&mut self) -> Result<(u8, &'a [u8]), String> {
        let truncated = || "truncated DER".to_owned();
        let (&tag, rest) = self.input.split_first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not supported".to_owned());
        }
        let (&first, mut rest) = rest.split_first().ok_or_else(truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err("invalid DER length".to_owned());
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(truncated());
        }
        let (content, rest) = rest.split_at(len);
        self.input = rest;
        Ok((tag, content))
    }

    /// The next element's content, which must have tag `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let (actual, content) = self.read()?;
        if actual != tag {
            return Err(format!(
                "expected DER tag 0x{tag:02x}, found 0x{actual:02x}"
            ));
        }
        Ok(content)
    }
}

/// The 32-byte seed of an Ed25519 PKCS#8 (v1 or v2) document.
fn ed25519_seed_from_pkcs8(pkcs8: &[u8]) -> Result<[u8; 32], String> {
    let mut outer = DerReader::new(pkcs8);
    let mut info = DerReader::new(outer.expect(TAG_SEQUENCE)?);
    info.expect(TAG_INTEGER)?;
    let mut alg = DerReader::new(info.expect(TAG_SEQUENCE)?);
    if alg.expect(TAG_OID)? != OID_ED25519 {
        return Err("not an Ed25519 PKCS#8 key".to_owned());
    }
    let mut private = DerReader::new(info.expect(TAG_OCTET_STRING)?);
    let seed = private.expect(TAG_OCTET_STRING)?;
    seed.try_into()
        .map_err(|_| format!("Ed25519 seed of {} bytes", seed.len()))
}

/// The PKCS#8 v1 document Go's `MarshalPKCS8PrivateKey` writes for an Ed25519 seed.
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    seq(&[
        der(TAG_INTEGER, &[0]),
        seq(&[der(TAG_OID, OID_ED25519)]),
        der(TAG_OCTET_STRING, &der(TAG_OCTET_STRING, seed)),
    ])
}

/// The SEC1 `ECPrivateKey` Go's `MarshalECPrivateKey` writes (version 1, private scalar, the
/// named-curve parameters, the public key) from a PKCS#8 EC key on `curve_oid`.
fn pkcs8_to_go_sec1(pkcs8: &[u8], curve_oid: &[u8]) -> Result<Vec<u8>, String> {
    let mut outer = DerReader::new(pkcs8);
    let mut info = DerReader::new(outer.expect(TAG_SEQUENCE)?);
    info.expect(TAG_INTEGER)?;
    let mut alg = DerReader::new(info.expect(TAG_SEQUENCE)?);
    if alg.expect(TAG_OID)? != OID_EC_PUBLIC_KEY || alg.expect(TAG_OID)? != curve_oid {
        return Err("not a PKCS#8 EC key on the expected curve".to_owned());
    }
    let mut ec = DerReader::new(info.expect(TAG_OCTET_STRING)?);
    let mut fields = DerReader::new(ec.expect(TAG_SEQUENCE)?);
    fields.expect(TAG_INTEGER)?;
    let private = fields.expect(TAG_OCTET_STRING)?;
    let mut public = None;
    while !fields.is_empty() {
        let (tag, content) = fields.read()?;
        if tag == 0xa1 {
            public = Some(content.to_vec());
        }
    }
    let public = public.ok_or("the EC key has no public key")?;
    Ok(seq(&[
        der(TAG_INTEGER, &[1]),
        der(TAG_OCTET_STRING, private),
        der(0xa0, &der(TAG_OID, curve_oid)),
        der(0xa1, &public),
    ]))
}

/// Wraps a SEC1 `ECPrivateKey` in PKCS#8 for ring, on the curve its parameters name (P-256 when
/// it names none).
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, String> {
    let mut outer = DerReader::new(sec1);
    let mut fields = DerReader::new(outer.expect(TAG_SEQUENCE)?);
    fields.expect(TAG_INTEGER)?;
    fields.expect(TAG_OCTET_STRING)?;
    let mut curve = OID_PRIME256V1.to_vec();
    if fields.peek_tag() == Some(0xa0) {
        let mut params = DerReader::new(fields.expect(0xa0)?);
        curve = params.expect(TAG_OID)?.to_vec();
    }
    Ok(seq(&[
        der(TAG_INTEGER, &[0]),
        seq(&[der(TAG_OID, OID_EC_PUBLIC_KEY), der(TAG_OID, &curve)]),
        der(TAG_OCTET_STRING, sec1),
    ]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::RootCertStore;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::server::WebPkiClientVerifier;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::public_key::PublicKey;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn roots(ca: &CertAndKey) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(parse_certificate_pem(&ca.crt).unwrap()).unwrap();
        Arc::new(roots)
    }

    fn server_request() -> LeafRequest {
        LeafRequest {
            common_name: None,
            organizations: vec![],
            dns_names: vec!["node-1".into(), "localhost".into()],
            ip_addresses: vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()],
            server_auth: true,
            client_auth: false,
            validity: DAY,
        }
    }

    #[test]
    fn ca_is_talos_shaped() {
        let ca = new_ca(Some("talos"), KeyKind::Ed25519, 3650 * DAY).unwrap();
        assert!(
            ca.key
                .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI")
        );
        let der = parse_certificate_pem(&ca.crt).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "O=talos");
        assert_eq!(cert.issuer().to_string(), "O=talos");
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.len()),
                _ => None,
            });
        assert_eq!(ski, Some(20));
        assert!(cert.extensions().iter().all(|e| !matches!(
            e.parsed_extension(),
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
        check_pair(&ca.crt, &ca.key).unwrap();
    }

    #[test]
    fn ec_keys_are_go_sec1() {
        let key = generate_key(KeyKind::EcdsaP256).unwrap();
        // Go's MarshalECPrivateKey for P-256 starts "MHcCAQEEI" (SEQUENCE of 0x77 bytes).
        assert!(
            key.pem
                .starts_with("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI")
        );
        let PrivateKeyDer::Sec1(sec1) = parse_private_key_pem(&key.pem).unwrap() else {
            panic!("not SEC1")
        };
        let sec1 = sec1.secret_sec1_der();
        let mut outer = DerReader::new(sec1);
        let mut fields = DerReader::new(outer.expect(TAG_SEQUENCE).unwrap());
        assert_eq!(fields.expect(TAG_INTEGER).unwrap(), &[1]);
        assert_eq!(fields.expect(TAG_OCTET_STRING).unwrap().len(), 32);
        let mut params = DerReader::new(fields.expect(0xa0).unwrap());
        assert_eq!(params.expect(TAG_OID).unwrap(), OID_PRIME256V1);
        assert_eq!(fields.expect(0xa1).unwrap().len(), 68);
        // It loads back and is the same key.
        let reloaded = signing_key(&key.pem).unwrap();
        assert_eq!(
            reloaded.subject_public_key_info(),
            key.pair.subject_public_key_info()
        );
    }

    #[test]
    fn generic_private_key_label_is_accepted() {
        let key = generate_key(KeyKind::Ed25519).unwrap();
        let relabelled = key.pem.replace("ED25519 PRIVATE KEY", "PRIVATE KEY");
        let reloaded = signing_key(&relabelled).unwrap();
        assert_eq!(
            reloaded.subject_public_key_info(),
            key.pair.subject_public_key_info()
        );
        assert!(matches!(
            parse_private_key_pem(
                "-----BEGIN DSA PRIVATE KEY-----\nMAA=\n-----END DSA PRIVATE KEY-----\n"
            ),
            Err(TalosError::InvalidPrivateKey { .. })
        ));
        assert!(matches!(
            parse_private_key_pem("nothing here"),
            Err(TalosError::InvalidPrivateKey { .. })
        ));
    }

    #[test]
    fn leaf_from_ed25519_ca_passes_rustls_server_and_client_verification() {
        let ca = new_ca(Some("talos"), KeyKind::Ed25519, 3650 * DAY).unwrap();

        let server = issue(&ca, &server_request(), KeyKind::Ed25519).unwrap();
        let server_der = parse_certificate_pem(&server.crt).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(&ca), provider())
                .build()
                .unwrap();
        for name in ["node-1", "127.0.0.2", "::1"] {
            verifier
                .verify_server_cert(
                    &server_der,
                    &[],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(
            verifier
                .verify_server_cert(
                    &server_der,
                    &[],
                    &ServerName::try_from("other").unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .is_err()
        );

        let client_request = LeafRequest {
            common_name: None,
            organizations: vec!["os:admin".into()],
            dns_names: vec![],
            ip_addresses: vec![],
            server_auth: false,
            client_auth: true,
            validity: 365 * DAY,
        };
        let client = issue(&ca, &client_request, KeyKind::Ed25519).unwrap();
        let client_der = parse_certificate_pem(&client.crt).unwrap();
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots(&ca), provider())
            .build()
            .unwrap();
        client_verifier
            .verify_client_cert(&client_der, &[], UnixTime::now())
            .unwrap();
        // A server-only certificate is refused as a client certificate, and vice versa.
        assert!(
            client_verifier
                .verify_client_cert(&server_der, &[], UnixTime::now())
                .is_err()
        );

        // The keys load into rustls with Talos' labels.
        for pair in [&server, &client] {
            let key = parse_private_key_pem(&pair.key).unwrap();
            provider().key_provider.load_private_key(key).unwrap();
        }

        // A CA from elsewhere does not vouch for them.
        let other = new_ca(Some("talos"), KeyKind::Ed25519, DAY).unwrap();
        let other_verifier = WebPkiClientVerifier::builder_with_provider(roots(&other), provider())
            .build()
            .unwrap();
        assert!(
            other_verifier
                .verify_client_cert(&client_der, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn leaf_from_ecdsa_ca_has_go_layout() {
        let ca = new_ca(Some("kubernetes"), KeyKind::EcdsaP256, 3650 * DAY).unwrap();
        let request = LeafRequest {
            common_name: Some("admin".into()),
            organizations: vec!["system:masters".into(), "extra group*".into()],
            dns_names: vec![],
            ip_addresses: vec![],
            server_auth: false,
            client_auth: true,
            validity: 365 * DAY,
        };
        let leaf = issue(&ca, &request, KeyKind::EcdsaP256).unwrap();
        assert!(leaf.key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let der = parse_certificate_pem(&leaf.crt).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
        let orgs: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(orgs.len(), 2);
        assert!(orgs.contains(&"system:masters".to_owned()));
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "admin"
        );
        // Both organizations sit in one RDN, as Go writes them.
        assert_eq!(cert.subject().iter().count(), 2);
        assert_eq!(cert.issuer().as_raw(), {
            let ca_der = parse_certificate_pem(&ca.crt).unwrap();
            let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
            ca_cert.subject().as_raw().to_vec()
        });
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && ku.value.key_encipherment());
        assert!(!ku.value.key_cert_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth && !eku.value.server_auth);
        assert!(cert.basic_constraints().unwrap().is_none());
        assert!(matches!(
            cert.public_key().parsed().unwrap(),
            PublicKey::EC(_)
        ));
        let validity =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(validity, 365 * 24 * 3600);
        // The AKI is the CA's SKI.
        let aki = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        let ca_der = parse_certificate_pem(&ca.crt).unwrap();
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        let ski = ca_cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .unwrap();
        assert_eq!(aki, ski);
        // The signature verifies against the CA.
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();

        let verifier = WebPkiClientVerifier::builder_with_provider(roots(&ca), provider())
            .build()
            .unwrap();
        verifier
            .verify_client_cert(&der, &[], UnixTime::now())
            .unwrap();
    }

    #[test]
    fn san_is_critical_when_the_subject_is_empty() {
        let ca = new_ca(None, KeyKind::EcdsaP256, DAY).unwrap();
        let leaf = issue(&ca, &server_request(), KeyKind::Ed25519).unwrap();
        let der = parse_certificate_pem(&leaf.crt).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san.critical);
        assert_eq!(san.value.general_names.len(), 4);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.value.digital_signature() && !ku.value.key_encipherment());
    }

    #[test]
    fn bad_requests_are_refused() {
        let ca = new_ca(Some("talos"), KeyKind::Ed25519, DAY).unwrap();
        let mut request = server_request();
        request.validity = Duration::ZERO;
        assert!(matches!(
            issue(&ca, &request, KeyKind::Ed25519),
            Err(TalosError::CertificateGeneration { .. })
        ));
        let other = new_ca(Some("talos"), KeyKind::Ed25519, DAY).unwrap();
        let mismatched = CertAndKey {
            crt: ca.crt.clone(),
            key: other.key.clone(),
        };
        assert!(matches!(
            issue(&mismatched, &server_request(), KeyKind::Ed25519),
            Err(TalosError::InvalidPrivateKey { .. })
        ));
    }

    #[test]
    fn spki_fingerprint_of_pem() {
        let ca = new_ca(Some("talos"), KeyKind::Ed25519, DAY).unwrap();
        let der = parse_certificate_pem(&ca.crt).unwrap();
        assert_eq!(
            spki_sha256_b64(&ca.crt).unwrap(),
            crate::talos::spki_fingerprint(&der).unwrap()
        );
    }

    #[test]
    fn key_usage_bits_match_go() {
        assert_eq!(
            key_usage_bits(KU_DIGITAL_SIGNATURE),
            [0x03, 0x02, 0x07, 0x80]
        );
        assert_eq!(
            key_usage_bits(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT),
            [0x03, 0x02, 0x05, 0xa0]
        );
        assert_eq!(positive_integer(&[0, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(positive_integer(&[0, 0]), [0x02, 0x01, 0x00]);
        assert_eq!(der(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
    }
}
