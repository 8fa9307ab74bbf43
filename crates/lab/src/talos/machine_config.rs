//! Reading the machine configuration that `ApplyConfiguration` hands a lab node: the YAML is
//! parsed (one or more documents; exactly one of them is the legacy `v1alpha1` document) and
//! checked the way Talos checks it before it installs, with Talos' wording. A rejected config is
//! answered with gRPC `InvalidArgument`: "failed to parse config: …" when it cannot be read, and
//! "configuration validation failed: N error(s) occurred: …" (Go multierror format) when it
//! reads but is not acceptable. What the lab needs later (machine type, OS CA, cluster identity,
//! endpoint, Kubernetes CA, hostname, node labels, installer image…) is extracted here.
//!
//! Checked (as real Talos does, or stricter where the lab relies on a field): `version` is
//! `v1alpha1`; `persist` is not false; `machine.type` is `controlplane` (or legacy `init`) or
//! `worker`; `machine.ca.crt` is present (with `machine.ca.key` on control planes and without it
//! on workers); `machine.token`; `machine.install.disk` or `diskSelector` (bare metal installs);
//! `cluster.controlPlane.endpoint` is an `https://` URL; `cluster.ca.crt` is present (with its
//! key on control planes, without on workers); no `cluster.etcd` on workers; every `crt`/`key` is
//! standard base64 of a PEM certificate or private key.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

/// Whether a node runs the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MachineType {
    /// `controlplane` (or the legacy `init`).
    ControlPlane,
    /// `worker`.
    Worker,
}

/// A certificate with an optional key, both PEM text (decoded from the YAML's base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemPair {
    pub crt: String,
    pub key: Option<String>,
}

/// What the lab uses of an accepted machine configuration.
#[derive(Debug, Clone)]
pub(crate) struct MachineConfig {
    pub machine_type: MachineType,
    /// `machine.ca`: the OS (Talos API) CA.
    pub os_ca: PemPair,
    /// `machine.acceptedCAs[].crt`, PEM.
    pub accepted_cas: Vec<String>,
    /// `machine.certSANs`.
    pub cert_sans: Vec<String>,
    /// `machine.network.hostname`.
    pub hostname: Option<String>,
    /// `machine.nodeLabels`.
    pub node_labels: BTreeMap<String, String>,
    /// `machine.install.image`.
    pub install_image: Option<String>,
    /// `machine.kubelet.image`.
    pub kubelet_image: Option<String>,
    /// `machine.features.rbac`.
    pub rbac: bool,
    /// `cluster.id` (may be empty in hand-written configs).
    pub cluster_id: String,
    /// `cluster.clusterName`.
    pub cluster_name: String,
    /// `cluster.controlPlane.endpoint`, e.g. `https://127.0.0.214:6443`.
    pub endpoint: String,
    /// `cluster.ca`: the Kubernetes CA.
    pub cluster_ca: PemPair,
    /// `cluster.apiServer.certSANs`.
    pub api_server_cert_sans: Vec<String>,
    /// `cluster.secretboxEncryptionSecret` (control planes): the key the API server encrypts
    /// Secrets with before they reach etcd.
    pub secretbox_encryption_secret: Option<String>,
}

impl MachineConfig {
    /// The key that tells which cluster a node belongs to: `cluster.id`, or the endpoint when
    /// the id is empty.
    pub fn cluster_key(&self) -> &str {
        if self.cluster_id.is_empty() {
            &self.endpoint
        } else {
            &self.cluster_id
        }
    }

    /// The host part of the endpoint URL (`127.0.0.214` of `https://127.0.0.214:6443`).
    pub fn endpoint_host(&self) -> &str {
        endpoint_host(&self.endpoint).unwrap_or_default()
    }

    pub fn is_control_plane(&self) -> bool {
        self.machine_type == MachineType::ControlPlane
    }
}

/// Why a configuration was refused: always gRPC `InvalidArgument`, with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected(pub String);

/// Parses and validates a machine configuration. Returns the extracted facts and Talos-style
/// warnings.
pub(crate) fn parse(data: &[u8]) -> Result<(MachineConfig, Vec<String>), Rejected> {
    let parse_failed = |reason: String| Rejected(format!("failed to parse config: {reason}"));
    let text = std::str::from_utf8(data)
        .map_err(|e| parse_failed(format!("decode error: yaml: invalid UTF-8: {e}")))?;
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| parse_failed(format!("decode error: yaml: {}", one_line(&e.to_string()))))?;
    let mut legacy = None;
    for document in documents {
        match &document {
            Value::Null => continue,
            Value::Object(map) => {
                if map.contains_key("kind") {
                    if !map.contains_key("apiVersion") {
                        return Err(parse_failed("missing apiVersion".into()));
                    }
                    // Other document kinds (volumes, extensions…) are accepted and ignored.
                    continue;
                }
                let is_legacy = ["version", "machine", "cluster", "debug", "persist"]
                    .iter()
                    .any(|k| map.contains_key(*k));
                if !is_legacy {
                    return Err(parse_failed("missing kind".into()));
                }
                if legacy.is_some() {
                    return Err(parse_failed(
                        "duplicate document v1alpha1// is not allowed".into(),
                    ));
                }
                legacy = Some(document);
            }
            _ => return Err(parse_failed("decode error: expected a document".into())),
        }
    }
    let Some(legacy) = legacy else {
        return Err(parse_failed(
            "the applied machine configuration doesn't contain v1alpha1 config".into(),
        ));
    };
    let raw: RawConfig = serde_json::from_value(legacy)
        .map_err(|e| parse_failed(format!("error decoding  to *v1alpha1.Config: {e}")))?;
    validate(raw)
}

/// Go's `multierror` text: "1 error occurred:\n\t* …\n\n".
fn multierror(errors: &[String]) -> String {
    let mut text = if errors.len() == 1 {
        "1 error occurred:\n".to_owned()
    } else {
        format!("{} errors occurred:\n", errors.len())
    };
    for e in errors {
        text.push_str("\t* ");
        text.push_str(e);
        text.push('\n');
    }
    text.push('\n');
    text
}

/// The first line of a parser error (without the source snippet that follows it).
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default().trim();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

fn validate(raw: RawConfig) -> Result<(MachineConfig, Vec<String>), Rejected> {
    let mut errors: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let failed = |errors: &[String]| {
        Rejected(format!(
            "configuration validation failed: {}",
            multierror(errors)
        ))
    };

    match raw.version.as_deref() {
        Some("v1alpha1") => {}
        Some(other) => errors.push(format!(
            "invalid config version {other:?}: only \"v1alpha1\" is supported (.version)"
        )),
        None => errors.push("invalid config version \"\": .version must be v1alpha1".into()),
    }
    let Some(machine) = raw.machine else {
        errors.push("machine instructions are required".into());
        return Err(failed(&errors));
    };
    let Some(cluster) = raw.cluster else {
        errors.push("cluster instructions are required".into());
        return Err(failed(&errors));
    };
    let endpoint = cluster
        .control_plane
        .as_ref()
        .and_then(|c| c.endpoint.clone())
        .filter(|e| !e.is_empty());
    let Some(endpoint) = endpoint else {
        errors.push("cluster controlplane endpoint is required".into());
        return Err(failed(&errors));
    };
    if endpoint_host(&endpoint).is_none() {
        errors.push(format!(
            "invalid controlplane endpoint: {endpoint:?} is not an https:// URL with a host"
        ));
    }

    let machine_type = match machine.machine_type.as_deref() {
        Some("controlplane") => Some(MachineType::ControlPlane),
        Some("init") => {
            warnings.push("use \"controlplane\" instead of \"init\" for machine type".into());
            Some(MachineType::ControlPlane)
        }
        Some("worker") => Some(MachineType::Worker),
        other => {
            errors.push(format!(
                "unknown machine type {:?}",
                other.unwrap_or_default()
            ));
            None
        }
    };
    let control_plane = machine_type == Some(MachineType::ControlPlane);

    let os_ca = decode_pair(&machine.ca, ".machine.ca", &mut errors);
    let accepted_cas: Vec<String> = machine
        .accepted_cas
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, ca)| {
            decode_pem(
                ca.crt.as_deref().unwrap_or_default(),
                &format!(".machine.acceptedCAs[{i}].crt"),
                PemKind::Certificate,
                &mut errors,
            )
        })
        .collect();
    match (&os_ca, machine_type) {
        (None, _) if accepted_cas.is_empty() => errors.push(
            "issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)"
                .into(),
        ),
        (Some(ca), Some(MachineType::ControlPlane)) if ca.key.is_none() => errors
            .push("issuing CA key is required for controlplane nodes (.machine.ca.key)".into()),
        (Some(ca), Some(MachineType::Worker)) if ca.key.is_some() => errors.push(
            "issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)"
                .into(),
        ),
        _ => {}
    }
    if control_plane && os_ca.is_none() && !accepted_cas.is_empty() {
        errors.push("issuing CA is required (.machine.ca)".into());
    }
    if machine.token.as_deref().is_none_or(str::is_empty) {
        errors.push("machine token is required (.machine.token)".into());
    }
    let install = machine.install.as_ref();
    let has_disk = install.is_some_and(|i| {
        i.disk.as_deref().is_some_and(|d| !d.is_empty())
            || i.disk_selector.as_ref().is_some_and(|s| !s.is_null())
    });
    if install.is_none() {
        errors.push("install instructions are required in \"metal\" mode".into());
    } else if !has_disk {
        errors.push("either install disk or diskSelector should be defined".into());
    }
    if raw.persist == Some(false) {
        errors.push(".persist should be enabled".into());
    }

    let cluster_ca = decode_pair(&cluster.ca, ".cluster.ca", &mut errors);
    match &cluster_ca {
        None => errors.push("cluster CA is required (.cluster.ca.crt)".into()),
        Some(ca) if control_plane && ca.key.is_none() => errors
            .push("cluster CA key is required for controlplane nodes (.cluster.ca.key)".into()),
        Some(ca) if machine_type == Some(MachineType::Worker) && ca.key.is_some() => errors.push(
            "issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)"
                .into(),
        ),
        _ => {}
    }
    if machine_type == Some(MachineType::Worker) && cluster.etcd.is_some() {
        errors.push("etcd config is only allowed on control plane machines".into());
    }

    if !errors.is_empty() {
        return Err(failed(&errors));
    }
    let (Some(machine_type), Some(os_ca), Some(cluster_ca)) = (machine_type, os_ca, cluster_ca)
    else {
        // Unreachable: each missing piece added an error above.
        return Err(failed(&["incomplete configuration".into()]));
    };
    let config = MachineConfig {
        machine_type,
        os_ca,
        accepted_cas,
        cert_sans: machine.cert_sans.unwrap_or_default(),
        hostname: machine
            .network
            .and_then(|n| n.hostname)
            .filter(|h| !h.is_empty()),
        node_labels: machine.node_labels.unwrap_or_default(),
        install_image: machine
            .install
            .and_then(|i| i.image)
            .filter(|i| !i.is_empty()),
        kubelet_image: machine
            .kubelet
            .and_then(|k| k.image)
            .filter(|i| !i.is_empty()),
        rbac: machine.features.and_then(|f| f.rbac).unwrap_or(false),
        cluster_id: cluster.id.unwrap_or_default(),
        cluster_name: cluster
            .cluster_name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "talos-default".into()),
        endpoint,
        cluster_ca,
        api_server_cert_sans: cluster
            .api_server
            .and_then(|a| a.cert_sans)
            .unwrap_or_default(),
        secretbox_encryption_secret: cluster
            .secretbox_encryption_secret
            .filter(|s| !s.is_empty()),
    };
    Ok((config, warnings))
}

/// The host of an `https://host[:port][/path]` URL (brackets of IPv6 literals removed).
fn endpoint_host(endpoint: &str) -> Option<&str> {
    let rest = endpoint.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                authority
            }
        })
    };
    (!host.is_empty() && !host.contains('@')).then_some(host)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PemKind {
    Certificate,
    PrivateKey,
}

/// A `{crt, key}` pair: `None` when `crt` is absent or empty; errors for bad encodings.
fn decode_pair(raw: &Option<RawCertKey>, path: &str, errors: &mut Vec<String>) -> Option<PemPair> {
    let raw = raw.as_ref()?;
    let crt_text = raw.crt.as_deref().unwrap_or_default();
    let key_text = raw.key.as_deref().unwrap_or_default();
    let key = if key_text.is_empty() {
        None
    } else {
        decode_pem(
            key_text,
            &format!("{path}.key"),
            PemKind::PrivateKey,
            errors,
        )
    };
    if crt_text.is_empty() {
        return None;
    }
    let crt = decode_pem(
        crt_text,
        &format!("{path}.crt"),
        PemKind::Certificate,
        errors,
    )?;
    Some(PemPair { crt, key })
}

/// Decodes a YAML `crt`/`key` value: standard base64 (line breaks ignored, as Go does) of PEM.
fn decode_pem(value: &str, path: &str, kind: PemKind, errors: &mut Vec<String>) -> Option<String> {
    let compact: String = value.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let bytes = match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
        Ok(bytes) => bytes,
        Err(e) => {
            let at = match e {
                base64::DecodeError::InvalidByte(at, _)
                | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                _ => compact.len(),
            };
            errors.push(format!("{path}: illegal base64 data at input byte {at}"));
            return None;
        }
    };
    let Ok(pem) = String::from_utf8(bytes) else {
        errors.push(format!("{path}: failed to decode PEM: not text"));
        return None;
    };
    let label_ok = |label: &str| match kind {
        PemKind::Certificate => label == "CERTIFICATE",
        PemKind::PrivateKey => label.ends_with("PRIVATE KEY"),
    };
    match first_pem_block(&pem) {
        Some((label, _)) if label_ok(&label) => Some(pem),
        Some((label, _)) => {
            let wanted = match kind {
                PemKind::Certificate => "CERTIFICATE",
                PemKind::PrivateKey => "PRIVATE KEY",
            };
            errors.push(format!(
                "{path}: failed to decode PEM: found a {label} block where a {wanted} is expected"
            ));
            None
        }
        None => {
            errors.push(format!("{path}: failed to decode PEM: no PEM block found"));
            None
        }
    }
}

/// The label and DER body of the first well-formed PEM block.
pub(crate) fn first_pem_block(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let (label, rest) = rest.split_once("-----")?;
    let end_marker = format!("-----END {label}-----");
    let (body, _) = rest.split_once(&end_marker)?;
    let body: String = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.contains(':'))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .ok()?;
    (!der.is_empty()).then(|| (label.to_owned(), der))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    version: Option<String>,
    persist: Option<bool>,
    machine: Option<RawMachine>,
    cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMachine {
    #[serde(rename = "type")]
    machine_type: Option<String>,
    token: Option<String>,
    ca: Option<RawCertKey>,
    #[serde(rename = "acceptedCAs")]
    accepted_cas: Option<Vec<RawCertKey>>,
    #[serde(rename = "certSANs")]
    cert_sans: Option<Vec<String>>,
    network: Option<RawNetwork>,
    install: Option<RawInstall>,
    kubelet: Option<RawKubelet>,
    features: Option<RawFeatures>,
    node_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct RawCertKey {
    crt: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawNetwork {
    hostname: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInstall {
    disk: Option<String>,
    disk_selector: Option<Value>,
    image: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawKubelet {
    image: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawFeatures {
    rbac: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCluster {
    id: Option<String>,
    control_plane: Option<RawControlPlane>,
    cluster_name: Option<String>,
    ca: Option<RawCertKey>,
    api_server: Option<RawApiServer>,
    etcd: Option<Value>,
    secretbox_encryption_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawControlPlane {
    endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Option<Vec<String>>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n";
    const KEY_PEM: &str =
        "-----BEGIN ED25519 PRIVATE KEY-----\nMC4CAQA=\n-----END ED25519 PRIVATE KEY-----\n";

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// A minimal configuration of `machine_type`, with or without CA keys.
    pub(crate) fn yaml(machine_type: &str, with_keys: bool) -> String {
        let key = if with_keys {
            b64(KEY_PEM)
        } else {
            String::new()
        };
        format!(
            "version: v1alpha1\npersist: true\nmachine:\n  type: {machine_type}\n  token: abcdef.0123456789abcdef\n  ca:\n    crt: {crt}\n    key: \"{key}\"\n  install:\n    disk: /dev/sda\n    image: ghcr.io/siderolabs/installer:v1.11.3\n  network:\n    hostname: cp-1\n  nodeLabels:\n    openebs.io/engine: mayastor\ncluster:\n  id: abc\n  clusterName: demo\n  controlPlane:\n    endpoint: https://127.0.0.214:6443\n  ca:\n    crt: {crt}\n    key: \"{key}\"\n",
            crt = b64(CERT_PEM),
        )
    }

    fn rejected(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err().0
    }

    #[test]
    fn accepts_minimal_configs() {
        let (cp, warnings) = parse(yaml("controlplane", true).as_bytes()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(cp.machine_type, MachineType::ControlPlane);
        assert_eq!(cp.os_ca.crt, CERT_PEM);
        assert_eq!(cp.os_ca.key.as_deref(), Some(KEY_PEM));
        assert_eq!(cp.cluster_key(), "abc");
        assert_eq!(cp.endpoint_host(), "127.0.0.214");
        assert_eq!(cp.hostname.as_deref(), Some("cp-1"));
        assert_eq!(cp.node_labels["openebs.io/engine"], "mayastor");
        let (worker, _) = parse(yaml("worker", false).as_bytes()).unwrap();
        assert_eq!(worker.machine_type, MachineType::Worker);
        assert_eq!(worker.cluster_ca.key, None);
        // Extra documents are fine.
        let multi = format!(
            "{}---\napiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n",
            yaml("worker", false)
        );
        assert!(parse(multi.as_bytes()).is_ok());
    }

    #[test]
    fn rejects_what_talos_rejects() {
        assert!(rejected("machine: [unclosed").starts_with("failed to parse config: "));
        assert!(rejected("just a string").starts_with("failed to parse config: "));
        assert!(rejected("").contains("doesn't contain v1alpha1 config"));
        let cp = yaml("controlplane", true);
        let e = rejected(&cp.replace("version: v1alpha1", "version: v1alpha2"));
        assert!(e.starts_with("configuration validation failed: 1 error occurred:\n\t* invalid config version \"v1alpha2\""), "{e}");
        assert!(
            rejected(&cp.replace("type: controlplane", "type: banana"))
                .contains("unknown machine type \"banana\"")
        );
        assert!(
            rejected(&cp.replace("  type: controlplane\n", ""))
                .contains("unknown machine type \"\"")
        );
        assert!(
            rejected(&cp.replace("  token: abcdef.0123456789abcdef\n", ""))
                .contains("machine token is required")
        );
        assert!(
            rejected(&cp.replace("https://127.0.0.214:6443", ""))
                .contains("cluster controlplane endpoint is required")
        );
        assert!(
            rejected(&cp.replace("https://127.0.0.214:6443", "127.0.0.1"))
                .contains("invalid controlplane endpoint")
        );
        assert!(
            rejected(&cp.replace("    disk: /dev/sda\n", ""))
                .contains("either install disk or diskSelector")
        );
        let no_keys = yaml("controlplane", false);
        let e = rejected(&no_keys);
        assert!(
            e.contains("2 errors occurred")
                && e.contains("(.machine.ca.key)")
                && e.contains("(.cluster.ca.key)"),
            "{e}"
        );
        let e = rejected(&yaml("worker", true));
        assert!(
            e.contains("not allowed on non-controlplane nodes (.machine.ca)"),
            "{e}"
        );
        let crt = b64(CERT_PEM);
        let e = rejected(&cp.replacen(&crt, "ab$cd", 1));
        assert!(
            e.contains(".machine.ca.crt: illegal base64 data at input byte 2"),
            "{e}"
        );
        let e = rejected("machine: [unclosed");
        assert!(!e.contains('\n'), "one line: {e}");
        let e = rejected(&cp.replacen(&crt, &b64("not pem"), 1));
        assert!(e.contains(".machine.ca.crt: failed to decode PEM"), "{e}");
        let e = rejected(&cp.replacen(&crt, &b64(KEY_PEM), 1));
        assert!(e.contains("where a CERTIFICATE is expected"), "{e}");
        let e = rejected(&cp.replace("persist: true", "persist: false"));
        assert!(e.contains(".persist should be enabled"), "{e}");
    }

    #[test]
    fn endpoint_hosts() {
        assert_eq!(endpoint_host("https://10.0.0.1:6443"), Some("10.0.0.1"));
        assert_eq!(
            endpoint_host("https://cp.example.com"),
            Some("cp.example.com")
        );
        assert_eq!(endpoint_host("https://[fd00::1]:6443/"), Some("fd00::1"));
        assert_eq!(endpoint_host("http://10.0.0.1:6443"), None);
        assert_eq!(endpoint_host("https://"), None);
    }
}
