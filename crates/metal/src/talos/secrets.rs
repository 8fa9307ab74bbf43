//! The cluster's secrets bundle, as `talosctl gen secrets` makes it (`secrets.yaml`).
//!
//! This module owns the bundle: generating it exactly as Talos' `secrets.NewBundle` does for the
//! current version contract (v1.10/v1.11), writing `secrets.yaml` byte for byte as talosctl
//! writes it (Go `yaml.v3`, 4-space indentation, every `crt`/`key` = standard base64 of the PEM
//! text), and reading it back with the checks of Talos' `Bundle.Validate()` (plus a check that
//! each CA key matches its certificate).
//!
//! Certificates and keys are made by [`crate::talos::pki`].

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::secret::{CertSummary, Redacted};
use crate::talos::TalosError;
use crate::talos::goyaml::scalar;
use crate::talos::pki::{self, KeyKind};

/// How long the bundle's CAs are valid: `secrets.CAValidityTime` = 87600h (10 years).
pub const CA_VALIDITY: std::time::Duration = std::time::Duration::from_secs(87_600 * 3600);

/// Size of the Kubernetes service-account RSA key (`x509.NewRSAKey` default).
const SERVICE_ACCOUNT_KEY_BITS: usize = 4096;

/// A certificate and its private key, both PEM text (the YAML form base64-encodes each).
/// `Debug` shows the certificate's fingerprint and the key's length only; the key is zeroized
/// when the value is dropped (issue 13).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertAndKey {
    /// The certificate, PEM (`CERTIFICATE`).
    pub crt: String,
    /// The private key, PEM with Talos' labels (`EC PRIVATE KEY`, `ED25519 PRIVATE KEY`).
    pub key: String,
}

/// The secrets of one cluster. Generated once, stored 0600, never regenerated. `Debug` prints no
/// secret (only `cluster_id`, certificate fingerprints and lengths); every secret is zeroized
/// when the bundle is dropped (issue 13).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsBundle {
    /// `cluster.id`: 32 random bytes, URL-safe base64 with padding.
    pub cluster_id: String,
    /// `cluster.secret`: 32 random bytes, standard base64.
    pub cluster_secret: String,
    /// `secrets.bootstraptoken`: `[0-9a-z]{6}.[0-9a-z]{16}`.
    pub bootstrap_token: String,
    /// `secrets.secretboxencryptionsecret`: 32 random bytes, standard base64.
    pub secretbox_encryption_secret: String,
    /// `trustdinfo.token`: `[0-9a-z]{6}.[0-9a-z]{16}`.
    pub trustd_token: String,
    /// etcd CA (ECDSA P-256).
    pub etcd: CertAndKey,
    /// Kubernetes CA (ECDSA P-256).
    pub k8s: CertAndKey,
    /// Kubernetes aggregator (front-proxy) CA (ECDSA P-256).
    pub k8s_aggregator: CertAndKey,
    /// Service-account signing key (RSA-4096, PKCS#1 PEM `RSA PRIVATE KEY`).
    pub k8s_service_account_key: String,
    /// Talos OS CA (Ed25519, key PEM label `ED25519 PRIVATE KEY`).
    pub os: CertAndKey,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("crt", &CertSummary(&self.crt))
            .field("key", &Redacted(&self.key))
            .finish()
    }
}

impl Drop for CertAndKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ZeroizeOnDrop for CertAndKey {}

impl fmt::Debug for SecretsBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsBundle")
            .field("cluster_id", &self.cluster_id)
            .field("cluster_secret", &Redacted(&self.cluster_secret))
            .field("bootstrap_token", &Redacted(&self.bootstrap_token))
            .field(
                "secretbox_encryption_secret",
                &Redacted(&self.secretbox_encryption_secret),
            )
            .field("trustd_token", &Redacted(&self.trustd_token))
            .field("etcd", &self.etcd)
            .field("k8s", &self.k8s)
            .field("k8s_aggregator", &self.k8s_aggregator)
            .field(
                "k8s_service_account_key",
                &Redacted(&self.k8s_service_account_key),
            )
            .field("os", &self.os)
            .finish()
    }
}

impl Drop for SecretsBundle {
    fn drop(&mut self) {
        self.cluster_secret.zeroize();
        self.bootstrap_token.zeroize();
        self.secretbox_encryption_secret.zeroize();
        self.trustd_token.zeroize();
        self.k8s_service_account_key.zeroize();
        // The CA pairs zeroize their own keys.
    }
}

impl ZeroizeOnDrop for SecretsBundle {}

impl SecretsBundle {
    /// Generates a new bundle as `talosctl gen secrets` does for Talos v1.10/v1.11:
    ///
    /// * `cluster.id`: 32 random bytes, URL-safe base64 with padding (44 characters);
    /// * `cluster.secret` and `secrets.secretboxencryptionsecret`: 32 random bytes, standard
    ///   base64;
    /// * `secrets.bootstraptoken` and `trustdinfo.token`: `[0-9a-z]{6}.[0-9a-z]{16}`, random
    ///   bytes ≥ 252 rejected, then `b % 36` indexes `0-9a-z`;
    /// * CAs valid 10 years ([`CA_VALIDITY`]): etcd (`O=etcd`), Kubernetes (`O=kubernetes`) and
    ///   aggregator (empty subject) on ECDSA P-256, OS (`O=talos`) on Ed25519 (see
    ///   [`pki::new_ca`] for their exact shape);
    /// * the service-account key: RSA-4096, PEM `RSA PRIVATE KEY` (PKCS#1).
    pub fn generate() -> Result<Self, TalosError> {
        Ok(Self {
            cluster_id: URL_SAFE.encode(pki::random_bytes::<32>()?),
            cluster_secret: STANDARD.encode(pki::random_bytes::<32>()?),
            bootstrap_token: generate_token()?,
            secretbox_encryption_secret: STANDARD.encode(pki::random_bytes::<32>()?),
            trustd_token: generate_token()?,
            etcd: pki::new_ca(Some("etcd"), KeyKind::EcdsaP256, CA_VALIDITY)?,
            k8s: pki::new_ca(Some("kubernetes"), KeyKind::EcdsaP256, CA_VALIDITY)?,
            k8s_aggregator: pki::new_ca(None, KeyKind::EcdsaP256, CA_VALIDITY)?,
            k8s_service_account_key: generate_rsa_key()?,
            os: pki::new_ca(Some("talos"), KeyKind::Ed25519, CA_VALIDITY)?,
        })
    }

    /// A bundle of placeholder values (no randomness, no key generation): enough to render a
    /// configuration in order to check it — the user's patches, before anything is ordered — and
    /// never for a machine, since its "keys" are not keys.
    pub fn placeholder() -> Self {
        let pair = |what: &str| CertAndKey {
            crt: format!("placeholder {what} certificate"),
            key: format!("placeholder {what} key"),
        };
        Self {
            cluster_id: "placeholder-cluster-id".to_owned(),
            cluster_secret: "placeholder-cluster-secret".to_owned(),
            bootstrap_token: "000000.0000000000000000".to_owned(),
            secretbox_encryption_secret: "placeholder-secretbox-secret".to_owned(),
            trustd_token: "000000.0000000000000000".to_owned(),
            etcd: pair("etcd CA"),
            k8s: pair("Kubernetes CA"),
            k8s_aggregator: pair("aggregator CA"),
            k8s_service_account_key: "placeholder service-account key".to_owned(),
            os: pair("OS CA"),
        }
    }

    /// The `secrets.yaml` text, byte-compatible with talosctl's: lower-cased Go field names in
    /// struct order, 4-space indentation, each `crt`/`key` the standard base64 of the PEM text.
    /// An empty `secretboxencryptionsecret` is left out (`omitempty`), as Go does.
    pub fn to_yaml(&self) -> Result<String, TalosError> {
        let mut out = String::new();
        let mut line = |indent: usize, key: &str, value: Option<&str>| {
            out.push_str(&" ".repeat(indent * 4));
            out.push_str(key);
            out.push(':');
            if let Some(value) = value {
                out.push(' ');
                out.push_str(&scalar(value));
            }
            out.push('\n');
        };
        line(0, "cluster", None);
        line(1, "id", Some(&self.cluster_id));
        line(1, "secret", Some(&self.cluster_secret));
        line(0, "secrets", None);
        line(1, "bootstraptoken", Some(&self.bootstrap_token));
        if !self.secretbox_encryption_secret.is_empty() {
            line(
                1,
                "secretboxencryptionsecret",
                Some(&self.secretbox_encryption_secret),
            );
        }
        line(0, "trustdinfo", None);
        line(1, "token", Some(&self.trustd_token));
        line(0, "certs", None);
        for (name, pair) in [
            ("etcd", &self.etcd),
            ("k8s", &self.k8s),
            ("k8saggregator", &self.k8s_aggregator),
        ] {
            line(1, name, None);
            line(2, "crt", Some(&STANDARD.encode(&pair.crt)));
            line(2, "key", Some(&STANDARD.encode(&pair.key)));
        }
        line(1, "k8sserviceaccount", None);
        line(
            2,
            "key",
            Some(&STANDARD.encode(&self.k8s_service_account_key)),
        );
        line(1, "os", None);
        line(2, "crt", Some(&STANDARD.encode(&self.os.crt)));
        line(2, "key", Some(&STANDARD.encode(&self.os.key)));
        Ok(out)
    }

    /// Parses `secrets.yaml` (as written by talosctl or [`Self::to_yaml`]) and validates it as
    /// Talos' `Bundle.Validate()` does for the current contract: `cluster.id`, `cluster.secret`,
    /// `secrets.bootstraptoken`, exactly one of `secretboxencryptionsecret` /
    /// `aescbcencryptionsecret`, `trustdinfo.token`, and all five certs present and parseable.
    /// Keys may carry any of Talos' PEM labels, including the generic `PRIVATE KEY`. Beyond
    /// Talos, each CA key must match its certificate, and a bundle holding only the legacy
    /// `aescbcencryptionsecret` (the Talos ≤ 1.2 contract) is refused because this bundle has no
    /// place for it. Every problem is reported at once; secret values never appear in errors.
    pub fn from_yaml(text: &str) -> Result<Self, TalosError> {
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        let doc: BundleDoc = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            TalosError::InvalidSecretsBundle {
                reason: format!(
                    "not a secrets.yaml document: {}",
                    redact_quoted(&e.to_string())
                ),
            }
        })?;
        let mut problems = Vec::new();

        let cluster = doc.cluster.unwrap_or_else(|| {
            problems.push("cluster is required".to_owned());
            ClusterDoc::default()
        });
        let cluster_id = required(&mut problems, "cluster.id", cluster.id);
        let cluster_secret = required(&mut problems, "cluster.secret", cluster.secret);

        let secrets = doc.secrets.unwrap_or_else(|| {
            problems.push("secrets is required".to_owned());
            SecretsDoc::default()
        });
        let bootstrap_token = required(
            &mut problems,
            "secrets.bootstraptoken",
            secrets.bootstraptoken,
        );
        let secretbox = secrets.secretboxencryptionsecret.unwrap_or_default();
        let aescbc = secrets.aescbcencryptionsecret.unwrap_or_default();
        match (secretbox.is_empty(), aescbc.is_empty()) {
            (true, true) => problems.push(
                "one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] is \
                 required"
                    .to_owned(),
            ),
            (false, false) => problems.push(
                "only one of [secrets.secretboxencryptionsecret, secrets.aescbcencryptionsecret] \
                 is allowed"
                    .to_owned(),
            ),
            (true, false) => problems.push(
                "secrets.aescbcencryptionsecret (the Talos <= 1.2 contract) is not supported; \
                 generate a new bundle, which uses secretboxencryptionsecret"
                    .to_owned(),
            ),
            (false, true) => {}
        }

        let trustd_token = match doc.trustdinfo {
            None => {
                problems.push("trustdinfo is required".to_owned());
                String::new()
            }
            Some(t) => required(&mut problems, "trustdinfo.token", t.token),
        };

        let empty_pair = || CertAndKey {
            crt: String::new(),
            key: String::new(),
        };
        let (etcd, k8s, k8s_aggregator, k8s_service_account_key, os) = match doc.certs {
            None => {
                problems.push("certs is required".to_owned());
                (
                    empty_pair(),
                    empty_pair(),
                    empty_pair(),
                    String::new(),
                    empty_pair(),
                )
            }
            Some(certs) => (
                ca_pair(&mut problems, "certs.etcd", certs.etcd),
                ca_pair(&mut problems, "certs.k8s", certs.k8s),
                ca_pair(&mut problems, "certs.k8saggregator", certs.k8saggregator),
                service_account_key(&mut problems, certs.k8sserviceaccount),
                ca_pair(&mut problems, "certs.os", certs.os),
            ),
        };

        if !problems.is_empty() {
            return Err(TalosError::InvalidSecretsBundle {
                reason: problems.join("; "),
            });
        }
        Ok(Self {
            cluster_id,
            cluster_secret,
            bootstrap_token,
            secretbox_encryption_secret: secretbox,
            trustd_token,
            etcd,
            k8s,
            k8s_aggregator,
            k8s_service_account_key,
            os,
        })
    }
}

/// `genToken(6, 16)`: `[0-9a-z]{6}.[0-9a-z]{16}`.
fn generate_token() -> Result<String, TalosError> {
    Ok(format!("{}.{}", token_part(6)?, token_part(16)?))
}

/// `randBootstrapTokenString`: random bytes ≥ 252 are discarded so that `b % 36` is uniform.
fn token_part(len: usize) -> Result<String, TalosError> {
    const CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const MAX_BYTE_VALUE: u8 = 252;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in pki::random_bytes::<32>()? {
            if b < MAX_BYTE_VALUE && out.len() < len {
                out.push(char::from(CHARS[usize::from(b) % CHARS.len()]));
            }
        }
    }
    Ok(out)
}

fn generate_rsa_key() -> Result<String, TalosError> {
    let key =
        rsa::PrivateKey::new(&mut getrandom::SysRng, SERVICE_ACCOUNT_KEY_BITS).map_err(|e| {
            TalosError::CertificateGeneration {
                reason: format!(
                    "generating the RSA-{SERVICE_ACCOUNT_KEY_BITS} service-account key: {e}"
                ),
            }
        })?;
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| TalosError::CertificateGeneration {
            reason: format!("encoding the service-account key: {e}"),
        })?;
    Ok(String::clone(&pem))
}

fn required(problems: &mut Vec<String>, field: &str, value: Option<String>) -> String {
    let value = value.unwrap_or_default();
    if value.is_empty() {
        problems.push(format!("{field} is required"));
    }
    value
}

/// Decodes one base64(PEM) value (Go's `StdEncoding`, which skips line breaks).
fn decode_pem_field(value: &str) -> Result<String, String> {
    let compact: String = value
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    let bytes = STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| format!("not standard base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "the decoded PEM is not text".to_owned())
}

fn ca_pair(problems: &mut Vec<String>, field: &str, pair: Option<PairDoc>) -> CertAndKey {
    let Some(pair) = pair else {
        problems.push(format!("{field} is required"));
        return CertAndKey {
            crt: String::new(),
            key: String::new(),
        };
    };
    let crt = decode_pem_field(pair.crt.as_deref().unwrap_or_default());
    let key = decode_pem_field(pair.key.as_deref().unwrap_or_default());
    match (crt, key) {
        (Ok(crt), Ok(key)) => {
            if let Err(e) = pki::check_pair(&crt, &key) {
                problems.push(format!("{field} is invalid: {e}"));
            }
            CertAndKey { crt, key }
        }
        (crt, key) => {
            if let Err(e) = &crt {
                problems.push(format!("{field}.crt is invalid: {e}"));
            }
            if let Err(e) = &key {
                problems.push(format!("{field}.key is invalid: {e}"));
            }
            CertAndKey {
                crt: crt.unwrap_or_default(),
                key: key.unwrap_or_default(),
            }
        }
    }
}

fn service_account_key(problems: &mut Vec<String>, doc: Option<KeyDoc>) -> String {
    let field = "certs.k8sserviceaccount";
    let Some(doc) = doc else {
        problems.push(format!("{field} is required"));
        return String::new();
    };
    match decode_pem_field(doc.key.as_deref().unwrap_or_default()) {
        Ok(key) => {
            if let Err(e) = pki::signing_key(&key) {
                problems.push(format!("{field}.key is invalid: {e}"));
            }
            key
        }
        Err(e) => {
            problems.push(format!("{field}.key is invalid: {e}"));
            String::new()
        }
    }
}

/// Replaces every double-quoted part of a parser message with `"…"`, so that a misplaced secret
/// never reaches an error message or a log.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quotes = false;
    for c in message.chars() {
        if c == '"' {
            if in_quotes {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            in_quotes = !in_quotes;
        } else if !in_quotes {
            out.push(c);
        }
    }
    out
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct BundleDoc {
    cluster: Option<ClusterDoc>,
    secrets: Option<SecretsDoc>,
    trustdinfo: Option<TrustdDoc>,
    certs: Option<CertsDoc>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ClusterDoc {
    id: Option<String>,
    secret: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct SecretsDoc {
    bootstraptoken: Option<String>,
    aescbcencryptionsecret: Option<String>,
    secretboxencryptionsecret: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct TrustdDoc {
    token: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct CertsDoc {
    etcd: Option<PairDoc>,
    k8s: Option<PairDoc>,
    k8saggregator: Option<PairDoc>,
    k8sserviceaccount: Option<KeyDoc>,
    os: Option<PairDoc>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct PairDoc {
    crt: Option<String>,
    key: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct KeyDoc {
    key: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::Command;
    use std::sync::OnceLock;

    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;

    use super::*;

    /// Talos' own fixture (`pkg/machinery/config/generate/secrets/testdata/secrets.yaml`, MPL-2.0,
    /// throwaway keys), written by talosctl: an older bundle whose service-account key is EC.
    const TALOS_FIXTURE: &str = include_str!("testdata/talos-secrets-fixture.yaml");

    /// One generated bundle shared by the tests (RSA-4096 generation takes a moment).
    pub(crate) fn bundle() -> &'static SecretsBundle {
        static BUNDLE: OnceLock<SecretsBundle> = OnceLock::new();
        BUNDLE.get_or_init(|| SecretsBundle::generate().unwrap())
    }

    fn is_token(token: &str) -> bool {
        let Some((a, b)) = token.split_once('.') else {
            return false;
        };
        let ok = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        };
        ok(a, 6) && ok(b, 16)
    }

    fn cert(pem: &str) -> Vec<u8> {
        pki::parse_certificate_pem(pem).unwrap().to_vec()
    }

    /// Issue 13: `Debug` of the bundle, its CA pairs and the admin talosconfig shows no key
    /// material, no PEM and no secret scalar, only what identifies them.
    #[test]
    fn debug_shows_no_key_material() {
        let b = bundle();
        let talosconfig =
            crate::talos::talosconfig::admin_talosconfig(b, "c", &["10.0.0.1".to_owned()], &[])
                .unwrap();
        let shown = format!("{b:?} {b:#?} {:?} {talosconfig:?}", b.os);
        for marker in ["-----BEGIN", "PRIVATE KEY", "CERTIFICATE-----"] {
            assert!(!shown.contains(marker), "{marker} in {shown}");
        }
        let secrets = [
            &b.cluster_secret,
            &b.bootstrap_token,
            &b.secretbox_encryption_secret,
            &b.trustd_token,
        ];
        for secret in secrets {
            assert!(!shown.contains(secret.as_str()), "a secret in {shown}");
        }
        // No line of any PEM body (key or certificate) and no base64 of a key either.
        let pems = [
            &b.etcd.key,
            &b.k8s.key,
            &b.k8s_aggregator.key,
            &b.os.key,
            &b.k8s_service_account_key,
            &b.os.crt,
            &talosconfig.key,
            &talosconfig.crt,
        ];
        for pem in pems {
            for line in pem
                .lines()
                .filter(|l| !l.starts_with("-----") && l.len() > 16)
            {
                assert!(!shown.contains(line), "PEM text in {shown}");
            }
            assert!(!shown.contains(&STANDARD.encode(pem.as_bytes())[..40]));
        }
        // What is shown instead: the cluster id, fingerprints and lengths.
        assert!(shown.contains(&b.cluster_id));
        assert!(shown.contains(&pki::spki_sha256_b64(&b.os.crt).unwrap()));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn scalars_have_talos_formats() {
        let b = bundle();
        assert_eq!(b.cluster_id.len(), 44);
        assert!(b.cluster_id.ends_with('='));
        assert!(
            b.cluster_id
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'='))
        );
        assert_eq!(URL_SAFE.decode(&b.cluster_id).unwrap().len(), 32);
        assert_eq!(STANDARD.decode(&b.cluster_secret).unwrap().len(), 32);
        assert_eq!(
            STANDARD
                .decode(&b.secretbox_encryption_secret)
                .unwrap()
                .len(),
            32
        );
        assert!(is_token(&b.bootstrap_token), "{}", b.bootstrap_token);
        assert!(is_token(&b.trustd_token), "{}", b.trustd_token);
        assert_ne!(b.bootstrap_token, b.trustd_token);
        for _ in 0..50 {
            assert!(is_token(&generate_token().unwrap()));
        }
    }

    #[test]
    fn cas_have_talos_shapes() {
        let b = bundle();
        let cases = [
            (&b.etcd, "O=etcd", false),
            (&b.k8s, "O=kubernetes", false),
            (&b.k8s_aggregator, "", false),
            (&b.os, "O=talos", true),
        ];
        for (pair, subject, ed25519) in cases {
            let der = cert(&pair.crt);
            let (_, c) = X509Certificate::from_der(&der).unwrap();
            assert_eq!(c.version(), x509_parser::x509::X509Version::V3);
            assert_eq!(c.subject().to_string(), subject);
            assert_eq!(c.issuer().as_raw(), c.subject().as_raw());
            c.verify_signature(None).unwrap();
            match c.public_key().parsed().unwrap() {
                PublicKey::EC(point) => {
                    assert!(!ed25519);
                    assert_eq!(point.key_size(), 256);
                    assert!(pair.key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
                    let alg = &c.public_key().algorithm;
                    let curve = alg.parameters.as_ref().unwrap().as_oid().unwrap();
                    assert_eq!(curve.to_id_string(), "1.2.840.10045.3.1.7");
                    assert_eq!(
                        c.signature_algorithm.algorithm.to_id_string(),
                        "1.2.840.10045.4.3.2"
                    );
                }
                PublicKey::Unknown(_) => {
                    assert!(ed25519);
                    assert_eq!(
                        c.public_key().algorithm.algorithm.to_id_string(),
                        "1.3.101.112"
                    );
                    assert!(
                        pair.key
                            .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n")
                    );
                }
                other => panic!("unexpected key {other:?}"),
            }
            let serial = c.raw_serial();
            assert!(serial.len() <= 17 && !serial.is_empty());
            let bc = c.basic_constraints().unwrap().unwrap();
            assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
            let ku = c.key_usage().unwrap().unwrap();
            assert!(ku.critical);
            assert_eq!(
                ku.value.flags, 0b10_0001,
                "DigitalSignature | CertSign only"
            );
            let eku = c.extended_key_usage().unwrap().unwrap();
            assert!(eku.value.server_auth && eku.value.client_auth);
            assert!(eku.value.other.is_empty() && !eku.value.any);
            let ski = c
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.len()),
                    _ => None,
                });
            assert_eq!(ski, Some(20));
            let v = c.validity();
            assert_eq!(
                v.not_after.timestamp() - v.not_before.timestamp(),
                87_600 * 3600
            );
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!((v.not_before.timestamp() - now).abs() < 600);
        }
    }

    #[test]
    fn service_account_key_is_rsa_4096_pkcs1() {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let b = bundle();
        assert!(
            b.k8s_service_account_key
                .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
        );
        let key = rsa::PrivateKey::from_pkcs1_pem(&b.k8s_service_account_key).unwrap();
        assert_eq!(key.size() * 8, 4096);
        pki::signing_key(&b.k8s_service_account_key).unwrap();
    }

    #[test]
    fn yaml_round_trips_byte_for_byte() {
        let b = bundle();
        let yaml = b.to_yaml().unwrap();
        let back = SecretsBundle::from_yaml(&yaml).unwrap();
        assert_eq!(&back, b);
        assert_eq!(back.to_yaml().unwrap(), yaml);

        let keys: Vec<&str> = yaml.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "cluster",
                "    id",
                "    secret",
                "secrets",
                "    bootstraptoken",
                "    secretboxencryptionsecret",
                "trustdinfo",
                "    token",
                "certs",
                "    etcd",
                "        crt",
                "        key",
                "    k8s",
                "        crt",
                "        key",
                "    k8saggregator",
                "        crt",
                "        key",
                "    k8sserviceaccount",
                "        key",
                "    os",
                "        crt",
                "        key",
            ]
        );
        assert!(yaml.contains(&format!("    id: {}\n", b.cluster_id)));
        assert!(yaml.contains("        key: LS0tLS1CRUdJTiBFRDI1NTE5IFBSSVZBVEUgS0VZLS0tLS0K"));
        assert!(yaml.contains("        key: LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVF"));
        assert!(yaml.contains("        key: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0t"));
    }

    #[test]
    fn talosctl_fixture_round_trips_byte_for_byte() {
        let b = SecretsBundle::from_yaml(TALOS_FIXTURE).unwrap();
        assert_eq!(b.cluster_id, "cgvhCbucls-WqkESDTRqykFgb4hROI4cBpgB0YJLLtM=");
        assert_eq!(b.bootstrap_token, "2psnp2.lry8e9gycdix3bpa");
        assert!(
            b.os.key
                .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n")
        );
        assert!(
            b.k8s_service_account_key
                .starts_with("-----BEGIN EC PRIVATE KEY-----\n")
        );
        assert_eq!(b.to_yaml().unwrap(), TALOS_FIXTURE);
    }

    #[test]
    fn validation_reports_every_problem() {
        let err = SecretsBundle::from_yaml("cluster:\n    id: x\n").unwrap_err();
        let TalosError::InvalidSecretsBundle { reason } = err else {
            panic!("{err:?}")
        };
        for needle in [
            "cluster.secret is required",
            "secrets is required",
            "trustdinfo is required",
            "certs is required",
        ] {
            assert!(reason.contains(needle), "{reason}");
        }

        let yaml = bundle().to_yaml().unwrap();
        let both = yaml.replace(
            "    secretboxencryptionsecret:",
            "    aescbcencryptionsecret: abc\n    secretboxencryptionsecret:",
        );
        let err = SecretsBundle::from_yaml(&both).unwrap_err().to_string();
        assert!(err.contains("only one of"), "{err}");

        // A CA key that does not belong to its certificate.
        let swapped = yaml.replace(
            &format!("key: {}", STANDARD.encode(&bundle().k8s.key)),
            &format!("key: {}", STANDARD.encode(&bundle().etcd.key)),
        );
        let err = SecretsBundle::from_yaml(&swapped).unwrap_err().to_string();
        assert!(err.contains("certs.k8s is invalid"), "{err}");

        // Garbage where a key should be, without echoing it.
        let garbage = yaml.replace(&STANDARD.encode(&bundle().os.key), "bm90IGEga2V5Cg==");
        let err = SecretsBundle::from_yaml(&garbage).unwrap_err().to_string();
        assert!(err.contains("certs.os is invalid"), "{err}");

        let err = SecretsBundle::from_yaml("cluster: [\"s3cr3t-value\"]\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn generic_private_key_label_is_accepted() {
        // Re-label the OS CA key as generic PKCS#8, as crypto v0.6 accepts.
        let mut b = bundle().clone();
        b.os.key = b.os.key.replace("ED25519 PRIVATE KEY", "PRIVATE KEY");
        let back = SecretsBundle::from_yaml(&b.to_yaml().unwrap()).unwrap();
        assert_eq!(back.os.key, b.os.key);
    }

    /// Cross-checks with the `openssl` CLI (`cargo xtask ci` installs it when missing).
    #[test]
    fn openssl_agrees() {
        assert!(
            Command::new("openssl").arg("version").output().is_ok(),
            "this test needs the openssl CLI: run `cargo xtask ci`, which installs it, or apt-get install openssl"
        );
        let dir = tempfile::tempdir().unwrap();
        let b = bundle();
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let os = run(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &write("os.crt", &b.os.crt),
        ]);
        assert!(os.contains("ED25519"), "{os}");
        assert!(
            os.contains("Subject: O=talos") || os.contains("Subject: O = talos"),
            "{os}"
        );
        assert!(os.contains("CA:TRUE"), "{os}");
        assert!(os.contains("Digital Signature, Certificate Sign"), "{os}");
        assert!(os.contains("TLS Web Server Authentication, TLS Web Client Authentication"));
        let etcd = run(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &write("etcd.crt", &b.etcd.crt),
        ]);
        assert!(etcd.contains("prime256v1"), "{etcd}");
        assert!(etcd.contains("ecdsa-with-SHA256"), "{etcd}");
        let agg = run(&[
            "x509",
            "-noout",
            "-subject",
            "-in",
            &write("agg.crt", &b.k8s_aggregator.crt),
        ]);
        assert_eq!(agg.trim(), "subject=");
        let ec = run(&[
            "pkey",
            "-noout",
            "-text",
            "-in",
            &write("etcd.key", &b.etcd.key),
        ]);
        assert!(ec.contains("prime256v1"), "{ec}");
        let ed = run(&[
            "pkey",
            "-noout",
            "-text",
            "-in",
            &write(
                "os.key",
                &b.os.key.replace("ED25519 PRIVATE KEY", "PRIVATE KEY"),
            ),
        ]);
        assert!(ed.contains("ED25519"), "{ed}");
        let rsa = run(&[
            "rsa",
            "-noout",
            "-text",
            "-in",
            &write("sa.key", &b.k8s_service_account_key),
        ]);
        assert!(rsa.contains("4096 bit"), "{rsa}");

        // A leaf issued by pki::issue verifies against the OS CA.
        let leaf = pki::issue(
            &b.os,
            &pki::LeafRequest {
                common_name: None,
                organizations: vec!["os:admin".into()],
                dns_names: vec![],
                ip_addresses: vec![],
                server_auth: false,
                client_auth: true,
                validity: std::time::Duration::from_secs(3600),
            },
            KeyKind::Ed25519,
        )
        .unwrap();
        let ca = write("ca.crt", &b.os.crt);
        let leaf_path = write("leaf.crt", &leaf.crt);
        let verified = run(&[
            "verify",
            "-CAfile",
            &ca,
            "-purpose",
            "sslclient",
            &leaf_path,
        ]);
        assert!(verified.contains("OK"), "{verified}");
    }
}
