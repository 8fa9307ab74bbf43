//! The talosconfig: the client configuration talosctl reads (`~/.talos/config`), and the admin
//! client certificate in it.
//!
//! This module owns minting the admin context from a [`SecretsBundle`] exactly as
//! `talosctl gen config` does (§3 of the Talos reference: Ed25519 client certificate signed by
//! the OS CA, `O=os:admin`, no CN, KeyUsage `DigitalSignature`, ExtKeyUsage `clientAuth` only,
//! valid one year), writing and reading the YAML as talosctl does (Go `yaml.v3`: `context`, then
//! `contexts.<name>.{endpoints, nodes, ca, crt, key}` with base64 PEM values, 4-space
//! indentation, contexts sorted as `yaml.v3` sorts map keys), and merging a context into an
//! existing file.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::talos::TalosError;
use crate::talos::goyaml::{key_cmp, scalar};
use crate::talos::pki::{self, KeyKind, LeafRequest};
use crate::talos::secrets::SecretsBundle;

/// The Talos role of an administrator (`role.Admin`), carried as the client certificate's
/// organization.
pub const ADMIN_ROLE: &str = "os:admin";

/// Validity of the admin client certificate: `TalosAPIDefaultCertificateValidityDuration`
/// (365 days).
pub const ADMIN_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// One talosconfig context with certificate authentication. `ca`, `crt` and `key` are PEM
/// text; the YAML form base64-encodes each. `Debug` never shows the key, which is zeroized when
/// the value is dropped (issue 13).
#[derive(Clone, PartialEq, Eq)]
pub struct Talosconfig {
    /// The context name (talosctl names it after the cluster).
    pub context: String,
    /// Talos API endpoints (`host`, `host:port`; port 50000 when absent).
    pub endpoints: Vec<String>,
    /// Default target nodes (sent as the `nodes` gRPC metadata); may be empty.
    pub nodes: Vec<String>,
    /// The OS CA certificate, PEM.
    pub ca: String,
    /// The client certificate, PEM.
    pub crt: String,
    /// The client key, PEM (`ED25519 PRIVATE KEY` for an Ed25519 OS CA).
    pub key: String,
}

impl std::fmt::Debug for Talosconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Talosconfig")
            .field("context", &self.context)
            .field("endpoints", &self.endpoints)
            .field("nodes", &self.nodes)
            .field("ca", &crate::secret::CertSummary(&self.ca))
            .field("crt", &crate::secret::CertSummary(&self.crt))
            .field("key", &crate::secret::Redacted(&self.key))
            .finish()
    }
}

impl Drop for Talosconfig {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl zeroize::ZeroizeOnDrop for Talosconfig {}

/// Mints the admin talosconfig context `context` for `bundle`, as `talosctl gen config` does:
/// a client certificate signed by the bundle's OS CA with `O=os:admin` and no CN, KeyUsage
/// `DigitalSignature`, ExtKeyUsage `clientAuth` only (apid rejects anything else when
/// `apidCheckExtKeyUsage` is on), valid 365 days from now, on a new key of the CA's algorithm
/// (Ed25519 for the Ed25519 OS CA that [`SecretsBundle::generate`] makes; for an ECDSA OS CA the
/// key is P-256 and KeyUsage also has `KeyEncipherment`).
pub fn admin_talosconfig(
    bundle: &SecretsBundle,
    context: &str,
    endpoints: &[String],
    nodes: &[String],
) -> Result<Talosconfig, TalosError> {
    if context.is_empty() {
        return Err(TalosError::InvalidTalosconfig {
            reason: "the context name is empty".to_owned(),
        });
    }
    let ca_key = pki::signing_key(&bundle.os.key)?;
    let kind = if ca_key.algorithm() == &rcgen::PKCS_ED25519 {
        KeyKind::Ed25519
    } else {
        KeyKind::EcdsaP256
    };
    let request = LeafRequest {
        common_name: None,
        organizations: vec![ADMIN_ROLE.to_owned()],
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        server_auth: false,
        client_auth: true,
        validity: ADMIN_CERT_VALIDITY,
    };
    let mut client = pki::issue(&bundle.os, &request, kind)?;
    // Moved out (CertAndKey zeroizes on drop, so its fields cannot be moved).
    Ok(Talosconfig {
        context: context.to_owned(),
        endpoints: endpoints.to_vec(),
        nodes: nodes.to_vec(),
        ca: bundle.os.crt.clone(),
        crt: std::mem::take(&mut client.crt),
        key: std::mem::take(&mut client.key),
    })
}

impl Talosconfig {
    /// A talosconfig file holding only this context, set as current, byte for byte as talosctl
    /// writes it:
    ///
    /// ```yaml
    /// context: prod
    /// contexts:
    ///     prod:
    ///         endpoints:
    ///             - 10.0.0.11
    ///         nodes:
    ///             - 10.0.0.11
    ///         ca: LS0tLS1CRUdJTi…
    ///         crt: LS0tLS1CRUdJTi…
    ///         key: LS0tLS1CRUdJTi…
    /// ```
    ///
    /// `endpoints: []` when there are none; `nodes` is left out when empty (`omitempty`).
    pub fn to_yaml(&self) -> Result<String, TalosError> {
        self.check_name()?;
        let file = ConfigFile {
            context: self.context.clone(),
            contexts: vec![(self.context.clone(), Some(self.to_doc()))],
        };
        Ok(file.to_yaml())
    }

    /// Reads the current context (the one `context:` names) of a talosconfig file. Its `ca`,
    /// `crt` and `key` must be present (contexts that authenticate otherwise, such as Omni's,
    /// are refused); a deprecated `target` is appended to the endpoints as talosctl does.
    pub fn from_yaml(text: &str) -> Result<Self, TalosError> {
        let file = ConfigFile::parse(text)?;
        if file.context.is_empty() {
            return Err(invalid(
                "no current context (`context:` is empty or missing)",
            ));
        }
        let doc = file
            .contexts
            .iter()
            .find(|(name, _)| *name == file.context)
            .map(|(_, doc)| doc.clone().unwrap_or_default())
            .ok_or_else(|| {
                invalid(format!(
                    "the current context {:?} is not among `contexts`",
                    file.context
                ))
            })?;
        let decode = |field: &str, value: &Option<String>| -> Result<String, TalosError> {
            let value = value.as_deref().unwrap_or_default();
            if value.is_empty() {
                return Err(invalid(format!(
                    "context {:?} has no `{field}` (only certificate authentication is supported)",
                    file.context
                )));
            }
            let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = STANDARD.decode(compact.as_bytes()).map_err(|e| {
                invalid(format!(
                    "context {:?}: `{field}` is not standard base64: {e}",
                    file.context
                ))
            })?;
            String::from_utf8(bytes).map_err(|_| {
                invalid(format!(
                    "context {:?}: `{field}` does not decode to PEM text",
                    file.context
                ))
            })
        };
        Ok(Self {
            context: file.context.clone(),
            endpoints: doc.endpoints.clone().unwrap_or_default(),
            nodes: doc.nodes.clone().unwrap_or_default(),
            ca: decode("ca", &doc.ca)?,
            crt: decode("crt", &doc.crt)?,
            key: decode("key", &doc.key)?,
        })
    }

    /// Merges this context into an existing talosconfig file (`None`, or blank text, for no
    /// file) and returns the new file text: this context is added — or, if a context of the
    /// same name exists, **replaced in place** (all its fields) — and made current; every other
    /// context is kept, field for field, and the file is rewritten as talosctl would write it.
    ///
    /// This deliberately differs from `talosctl config merge`, which never replaces: it renames
    /// the incoming context to `<name>-1`, `<name>-2`, …. Replacing keeps re-runs of the
    /// installer idempotent (one context per cluster, never `prod-7`), and the context being
    /// replaced is, by its name, the same cluster's. Callers back the old file up first.
    pub fn merge_into(&self, existing: Option<&str>) -> Result<String, TalosError> {
        self.check_name()?;
        let mut file = match existing {
            Some(text) if !text.trim().is_empty() => ConfigFile::parse(text)?,
            _ => ConfigFile::default(),
        };
        match file
            .contexts
            .iter_mut()
            .find(|(name, _)| *name == self.context)
        {
            Some((_, doc)) => *doc = Some(self.to_doc()),
            None => file
                .contexts
                .push((self.context.clone(), Some(self.to_doc()))),
        }
        file.context = self.context.clone();
        Ok(file.to_yaml())
    }

    fn check_name(&self) -> Result<(), TalosError> {
        if self.context.is_empty() {
            return Err(invalid("the context name is empty"));
        }
        Ok(())
    }

    fn to_doc(&self) -> ContextDoc {
        let non_empty = |s: &str| (!s.is_empty()).then(|| STANDARD.encode(s));
        ContextDoc {
            target: None,
            endpoints: Some(self.endpoints.clone()),
            nodes: Some(self.nodes.clone()),
            ca: non_empty(&self.ca),
            crt: non_empty(&self.crt),
            key: non_empty(&self.key),
            auth: None,
            cluster: None,
            proxy_url: None,
        }
    }
}

fn invalid(reason: impl Into<String>) -> TalosError {
    TalosError::InvalidTalosconfig {
        reason: reason.into(),
    }
}

/// The whole file (`clientconfig.Config`), every field talosctl knows.
#[derive(Debug, Default)]
struct ConfigFile {
    context: String,
    /// In file order; sorted when written.
    contexts: Vec<(String, Option<ContextDoc>)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigDoc {
    context: Option<String>,
    contexts: Option<std::collections::BTreeMap<String, Option<ContextDoc>>>,
}

/// `clientconfig.Context`, field for field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ContextDoc {
    target: Option<String>,
    endpoints: Option<Vec<String>>,
    nodes: Option<Vec<String>>,
    ca: Option<String>,
    crt: Option<String>,
    key: Option<String>,
    auth: Option<AuthDoc>,
    cluster: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct AuthDoc {
    basic: Option<BasicDoc>,
    siderov1: Option<SideroV1Doc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct BasicDoc {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SideroV1Doc {
    identity: Option<String>,
}

impl ConfigFile {
    fn parse(text: &str) -> Result<Self, TalosError> {
        let mut options = serde_saphyr::Options::default();
        options.with_snippet = false;
        let doc: ConfigDoc = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| invalid(format!("not a talosconfig file: {e}")))?;
        let contexts = doc
            .contexts
            .unwrap_or_default()
            .into_iter()
            .map(|(name, doc)| {
                // `Context.upgrade()`: the deprecated target becomes an endpoint.
                let doc = doc.map(|mut doc| {
                    if let Some(target) = doc.target.take().filter(|t| !t.is_empty()) {
                        doc.endpoints.get_or_insert_with(Vec::new).push(target);
                    }
                    doc
                });
                (name, doc)
            })
            .collect();
        Ok(Self {
            context: doc.context.unwrap_or_default(),
            contexts,
        })
    }

    /// The file as `yaml.v3` marshals `clientconfig.Config`.
    fn to_yaml(&self) -> String {
        let mut out = format!("context: {}\n", scalar(&self.context));
        if self.contexts.is_empty() {
            out.push_str("contexts: {}\n");
            return out;
        }
        out.push_str("contexts:\n");
        let mut contexts: Vec<&(String, Option<ContextDoc>)> = self.contexts.iter().collect();
        contexts.sort_by(|a, b| key_cmp(&a.0, &b.0));
        for (name, doc) in contexts {
            let Some(doc) = doc else {
                out.push_str(&format!("    {}: null\n", scalar(name)));
                continue;
            };
            out.push_str(&format!("    {}:\n", scalar(name)));
            write_context(&mut out, doc);
        }
        out
    }
}

fn write_context(out: &mut String, doc: &ContextDoc) {
    let field = |out: &mut String, indent: usize, key: &str, value: &Option<String>| {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            out.push_str(&format!("{}{key}: {}\n", " ".repeat(indent), scalar(value)));
        }
    };
    let list = |out: &mut String, key: &str, values: &[String]| {
        out.push_str(&format!("        {key}:\n"));
        for value in values {
            out.push_str(&format!("            - {}\n", scalar(value)));
        }
    };
    field(out, 8, "target", &doc.target);
    let endpoints = doc.endpoints.as_deref().unwrap_or_default();
    if endpoints.is_empty() {
        out.push_str("        endpoints: []\n");
    } else {
        list(out, "endpoints", endpoints);
    }
    let nodes = doc.nodes.as_deref().unwrap_or_default();
    if !nodes.is_empty() {
        list(out, "nodes", nodes);
    }
    field(out, 8, "ca", &doc.ca);
    field(out, 8, "crt", &doc.crt);
    field(out, 8, "key", &doc.key);
    if let Some(auth) = &doc.auth
        && (auth.basic.is_some() || auth.siderov1.is_some())
    {
        out.push_str("        auth:\n");
        if let Some(basic) = &auth.basic {
            out.push_str("            basic:\n");
            for (key, value) in [("username", &basic.username), ("password", &basic.password)] {
                out.push_str(&format!(
                    "                {key}: {}\n",
                    scalar(value.as_deref().unwrap_or_default())
                ));
            }
        }
        if let Some(siderov1) = &auth.siderov1 {
            out.push_str(&format!(
                "            siderov1:\n                identity: {}\n",
                scalar(siderov1.identity.as_deref().unwrap_or_default())
            ));
        }
    }
    field(out, 8, "cluster", &doc.cluster);
    field(out, 8, "proxy-url", &doc.proxy_url);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::RootCertStore;
    use rustls::pki_types::UnixTime;
    use rustls::server::WebPkiClientVerifier;
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::talos::secrets::tests::bundle;

    fn admin() -> Talosconfig {
        admin_talosconfig(
            bundle(),
            "prod",
            &["10.0.0.11".to_owned()],
            &["10.0.0.11".to_owned(), "10.0.0.12".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn admin_certificate_is_what_talosctl_mints() {
        let config = admin();
        assert_eq!(config.ca, bundle().os.crt);
        assert!(
            config
                .key
                .starts_with("-----BEGIN ED25519 PRIVATE KEY-----\n")
        );
        let der = pki::parse_certificate_pem(&config.crt).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "O=os:admin");
        assert_eq!(cert.issuer().to_string(), "O=talos");
        assert!(cert.subject().iter_common_name().next().is_none());
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert_eq!(ku.value.flags, 1, "DigitalSignature only");
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.client_auth);
        assert!(!eku.value.server_auth && !eku.value.any && eku.value.other.is_empty());
        assert!(!eku.value.code_signing && !eku.value.email_protection);
        assert!(cert.basic_constraints().unwrap().is_none());
        assert!(cert.subject_alternative_name().unwrap().is_none());
        let validity = cert.validity();
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            365 * 24 * 3600
        );
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            "1.3.101.112"
        );
        assert!(cert.raw_serial().len() <= 17);

        // The chain verifies against the OS CA, as apid's client verification will.
        let ca_der = pki::parse_certificate_pem(&bundle().os.crt).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        verifier
            .verify_client_cert(&der, &[], UnixTime::now())
            .unwrap();
        // …and the key loads into rustls for the client side of mTLS.
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(pki::parse_private_key_pem(&config.key).unwrap())
            .unwrap();
    }

    #[test]
    fn yaml_is_talosctls() {
        let config = admin();
        let yaml = config.to_yaml().unwrap();
        let expected = format!(
            "context: prod\ncontexts:\n    prod:\n        endpoints:\n            - 10.0.0.11\n        \
             nodes:\n            - 10.0.0.11\n            - 10.0.0.12\n        ca: {}\n        \
             crt: {}\n        key: {}\n",
            STANDARD.encode(&config.ca),
            STANDARD.encode(&config.crt),
            STANDARD.encode(&config.key)
        );
        assert_eq!(yaml, expected);
        assert_eq!(Talosconfig::from_yaml(&yaml).unwrap(), config);

        let mut bare = config.clone();
        bare.endpoints = vec![];
        bare.nodes = vec![];
        let yaml = bare.to_yaml().unwrap();
        assert!(
            yaml.contains("        endpoints: []\n        ca: "),
            "{yaml}"
        );
        assert!(!yaml.contains("nodes"));
        assert_eq!(Talosconfig::from_yaml(&yaml).unwrap(), bare);
    }

    const EXISTING: &str = r"context: other
contexts:
    omni:
        endpoints:
            - https://omni.example.com
        auth:
            siderov1:
                identity: me@example.com
        cluster: lab
    other:
        endpoints:
            - 192.168.1.10
        ca: Y2E=
        crt: Y3J0
        key: a2V5
    prod:
        endpoints: []
        ca: b2xk
    prod-10:
        target: 1.2.3.4
        endpoints: []
        proxy-url: http://proxy:3128
";

    #[test]
    fn merge_replaces_its_context_and_keeps_the_others() {
        let config = admin();
        let merged = config.merge_into(Some(EXISTING)).unwrap();
        let expected = format!(
            r"context: prod
contexts:
    omni:
        endpoints:
            - https://omni.example.com
        auth:
            siderov1:
                identity: me@example.com
        cluster: lab
    other:
        endpoints:
            - 192.168.1.10
        ca: Y2E=
        crt: Y3J0
        key: a2V5
    prod:
        endpoints:
            - 10.0.0.11
        nodes:
            - 10.0.0.11
            - 10.0.0.12
        ca: {}
        crt: {}
        key: {}
    prod-10:
        endpoints:
            - 1.2.3.4
        proxy-url: http://proxy:3128
",
            STANDARD.encode(&config.ca),
            STANDARD.encode(&config.crt),
            STANDARD.encode(&config.key)
        );
        assert_eq!(merged, expected);
        assert_eq!(Talosconfig::from_yaml(&merged).unwrap(), config);
        // Merging again changes nothing (idempotent).
        assert_eq!(config.merge_into(Some(&merged)).unwrap(), merged);
        // No file, or an empty one, gives the single-context file.
        assert_eq!(config.merge_into(None).unwrap(), config.to_yaml().unwrap());
        assert_eq!(
            config.merge_into(Some("\n")).unwrap(),
            config.to_yaml().unwrap()
        );
    }

    #[test]
    fn merge_adds_a_new_context_in_yaml_v3_order() {
        let mut config = admin();
        config.context = "a-new".to_owned();
        let merged = config.merge_into(Some(EXISTING)).unwrap();
        assert!(merged.starts_with("context: a-new\ncontexts:\n    a-new:\n"));
        assert!(merged.contains("    prod:\n        endpoints: []\n        ca: b2xk\n"));
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let err = admin().merge_into(Some("context: [")).unwrap_err();
        assert!(
            matches!(err, TalosError::InvalidTalosconfig { .. }),
            "{err}"
        );
        let err = Talosconfig::from_yaml("context: missing\ncontexts: {}\n").unwrap_err();
        assert!(err.to_string().contains("\"missing\""), "{err}");
        let err =
            Talosconfig::from_yaml(EXISTING.replace("context: other", "context: omni").as_str())
                .unwrap_err();
        assert!(err.to_string().contains("no `ca`"), "{err}");
        assert!(admin_talosconfig(bundle(), "", &[], &[]).is_err());
    }
}
