//! Rendered configurations against `talosctl gen config`'s golden output, Talos' JSON schema,
//! and the control-plane/worker, Mayastor and patch rules.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;
use crate::talos::TalosError;
use crate::talos::secrets::{CertAndKey, SecretsBundle};

/// `(T):pkg/machinery/config/types/v1alpha1/testdata/stability/v1.11/base-controlplane.yaml`
/// (identical for v1.10), as given in the Talos reference (§2.2), with the base64 values replaced
/// by `{{name}}` markers. Input: cluster `base`, endpoint `https://base:6443`, Kubernetes 1.28.0,
/// no install disk or image.
const GOLDEN_CONTROLPLANE: &str = r#"version: v1alpha1
debug: false
persist: true
machine:
    type: controlplane
    token: d8cwfa.eyvpi0xwxyarbfid
    ca:
        crt: {{os.crt}}
        key: {{os.key}}
    certSANs: []
    kubelet:
        image: ghcr.io/siderolabs/kubelet:v1.28.0
        defaultRuntimeSeccompProfileEnabled: true
        disableManifestsDirectory: true
    network: {}
    install:
        wipe: false
    features:
        rbac: true
        stableHostname: true
        apidCheckExtKeyUsage: true
        diskQuotaSupport: true
        kubePrism:
            enabled: true
            port: 7445
        hostDNS:
            enabled: true
            forwardKubeDNSToHost: true
    nodeLabels:
        node.kubernetes.io/exclude-from-external-load-balancers: ""
cluster:
    id: 0raF93qnkMvF-FZNuvyGozXNdLiT2FOWSlyBaW4PR-w=
    secret: pofHbABZq7VXuObsdLdy/bHmz6hlMHZ3p8+6WKrv1ic=
    controlPlane:
        endpoint: https://base:6443
    clusterName: base
    network:
        dnsDomain: cluster.local
        podSubnets:
            - 10.244.0.0/16
        serviceSubnets:
            - 10.96.0.0/12
    token: inn7ol.u4ehnti8qyls9ymo
    secretboxEncryptionSecret: 45yd2Ke+sytiICojDf8aibTfgt99nzJmO53cjDqrCto=
    ca:
        crt: {{k8s.crt}}
        key: {{k8s.key}}
    aggregatorCA:
        crt: {{k8s_aggregator.crt}}
        key: {{k8s_aggregator.key}}
    serviceAccount:
        key: {{k8s_service_account.key}}
    apiServer:
        image: registry.k8s.io/kube-apiserver:v1.28.0
        certSANs:
            - base
        disablePodSecurityPolicy: true
        admissionControl:
            - name: PodSecurity
              configuration:
                apiVersion: pod-security.admission.config.k8s.io/v1alpha1
                defaults:
                    audit: restricted
                    audit-version: latest
                    enforce: baseline
                    enforce-version: latest
                    warn: restricted
                    warn-version: latest
                exemptions:
                    namespaces:
                        - kube-system
                    runtimeClasses: []
                    usernames: []
                kind: PodSecurityConfiguration
        auditPolicy:
            apiVersion: audit.k8s.io/v1
            kind: Policy
            rules:
                - level: Metadata
    controllerManager:
        image: registry.k8s.io/kube-controller-manager:v1.28.0
    proxy:
        image: registry.k8s.io/kube-proxy:v1.28.0
    scheduler:
        image: registry.k8s.io/kube-scheduler:v1.28.0
    discovery:
        enabled: true
        registries:
            kubernetes:
                disabled: true
            service: {}
    etcd:
        ca:
            crt: {{etcd.crt}}
            key: {{etcd.key}}
"#;

/// `…/stability/v1.11/base-worker.yaml`, likewise.
const GOLDEN_WORKER: &str = r#"version: v1alpha1
debug: false
persist: true
machine:
    type: worker
    token: d8cwfa.eyvpi0xwxyarbfid
    ca:
        crt: {{os.crt}}
        key: ""
    certSANs: []
    kubelet:
        image: ghcr.io/siderolabs/kubelet:v1.28.0
        defaultRuntimeSeccompProfileEnabled: true
        disableManifestsDirectory: true
    network: {}
    install:
        wipe: false
    features:
        rbac: true
        stableHostname: true
        apidCheckExtKeyUsage: true
        diskQuotaSupport: true
        kubePrism:
            enabled: true
            port: 7445
        hostDNS:
            enabled: true
            forwardKubeDNSToHost: true
cluster:
    id: 0raF93qnkMvF-FZNuvyGozXNdLiT2FOWSlyBaW4PR-w=
    secret: pofHbABZq7VXuObsdLdy/bHmz6hlMHZ3p8+6WKrv1ic=
    controlPlane:
        endpoint: https://base:6443
    clusterName: base
    network:
        dnsDomain: cluster.local
        podSubnets:
            - 10.244.0.0/16
        serviceSubnets:
            - 10.96.0.0/12
    token: inn7ol.u4ehnti8qyls9ymo
    ca:
        crt: {{k8s.crt}}
        key: ""
    discovery:
        enabled: true
        registries:
            kubernetes:
                disabled: true
            service: {}
"#;

const ENDPOINT: &str = "10.5.0.2";

fn pem(label: &str, body: &str) -> String {
    format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
}

fn ca(name: &str, key_label: &str) -> CertAndKey {
    CertAndKey {
        crt: pem("CERTIFICATE", &format!("{name}-certificate")),
        key: pem(key_label, &format!("{name}-key")),
    }
}

/// A bundle with the golden files' tokens and stand-in PEM texts (rendering never parses them).
fn secrets() -> SecretsBundle {
    SecretsBundle {
        cluster_id: "0raF93qnkMvF-FZNuvyGozXNdLiT2FOWSlyBaW4PR-w=".into(),
        cluster_secret: "pofHbABZq7VXuObsdLdy/bHmz6hlMHZ3p8+6WKrv1ic=".into(),
        bootstrap_token: "inn7ol.u4ehnti8qyls9ymo".into(),
        secretbox_encryption_secret: "45yd2Ke+sytiICojDf8aibTfgt99nzJmO53cjDqrCto=".into(),
        trustd_token: "d8cwfa.eyvpi0xwxyarbfid".into(),
        etcd: ca("etcd", "EC PRIVATE KEY"),
        k8s: ca("k8s", "EC PRIVATE KEY"),
        k8s_aggregator: ca("k8s-aggregator", "EC PRIVATE KEY"),
        k8s_service_account_key: pem("RSA PRIVATE KEY", "service-account-key"),
        os: ca("os", "ED25519 PRIVATE KEY"),
    }
}

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

/// The golden text as `talosctl gen config` of `talos` writes it for our endpoint: base64 values
/// filled in, the endpoint's IP for `base`, and the install disk and image talosctl adds.
fn expected(golden: &str, talos: &str) -> String {
    let s = secrets();
    let mut text = golden.to_owned();
    for (marker, pem) in [
        ("os.crt", &s.os.crt),
        ("os.key", &s.os.key),
        ("k8s.crt", &s.k8s.crt),
        ("k8s.key", &s.k8s.key),
        ("k8s_aggregator.crt", &s.k8s_aggregator.crt),
        ("k8s_aggregator.key", &s.k8s_aggregator.key),
        ("k8s_service_account.key", &s.k8s_service_account_key),
        ("etcd.crt", &s.etcd.crt),
        ("etcd.key", &s.etcd.key),
    ] {
        text = text.replace(&format!("{{{{{marker}}}}}"), &b64(pem));
    }
    text.replace("https://base:6443", &format!("https://{ENDPOINT}:6443"))
        .replace(
            "            - base\n",
            &format!("            - {ENDPOINT}\n"),
        )
        .replace(
            "    install:\n        wipe: false\n",
            &format!(
                "    install:\n        disk: /dev/sda\n        image: \
                 ghcr.io/siderolabs/installer:{talos}\n        wipe: false\n"
            ),
        )
}

fn golden_input(talos: &str) -> BootstrapConfig {
    BootstrapConfig::new("base", ENDPOINT.parse().unwrap())
        .with_talos_version(&talos.parse().unwrap())
        .with_kubernetes_version("1.28.0")
}

fn render(config: &BootstrapConfig, role: MachineType) -> String {
    config
        .render(&secrets(), role)
        .unwrap_or_else(|e| panic!("render {role}: {e}"))
}

fn parse(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"))
}

/// Every leaf of a document by its path (`machine/ca/crt`, `…/namespaces/0`; empty collections
/// are leaves too).
fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(v, format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{path}/{i}"), out);
                }
            }
            leaf => {
                out.insert(path, leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut out);
    out
}

/// The leaves that differ between two documents: `(path, before, after)`.
fn diff(before: &Value, after: &Value) -> Vec<(String, Option<Value>, Option<Value>)> {
    let (a, b) = (leaves(before), leaves(after));
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| (p.clone(), a.get(p).cloned(), b.get(p).cloned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (1) The golden layout
// ---------------------------------------------------------------------------------------------

#[test]
fn config_golden_controlplane_and_worker_have_every_key_path_and_value() {
    for talos in ["v1.10.9", "v1.11.6"] {
        // The golden input's Kubernetes 1.28 is too old for Talos v1.11; its layout is the
        // same, so v1.11 is rendered with 1.29.0 and compared with the golden's images bumped.
        let (config, bump) = if talos == "v1.10.9" {
            (golden_input(talos), None)
        } else {
            (
                golden_input(talos).with_kubernetes_version("1.29.0"),
                Some(("v1.28.0", "v1.29.0")),
            )
        };
        for (role, golden) in [
            (MachineType::ControlPlane, GOLDEN_CONTROLPLANE),
            (MachineType::Worker, GOLDEN_WORKER),
        ] {
            let mut want = expected(golden, talos);
            if let Some((from, to)) = bump {
                want = want.replace(from, to);
            }
            let got = render(&config, role);
            let (want_leaves, got_leaves) = (leaves(&parse(&want)), leaves(&parse(&got)));
            let missing: Vec<_> = want_leaves
                .keys()
                .filter(|p| !got_leaves.contains_key(*p))
                .collect();
            let extra: Vec<_> = got_leaves
                .keys()
                .filter(|p| !want_leaves.contains_key(*p))
                .collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{talos} {role}: missing {missing:?}, extra {extra:?}"
            );
            assert_eq!(got_leaves, want_leaves, "{talos} {role}: values");
            // Key order, indentation and scalar styles too: byte for byte.
            assert_eq!(got, want, "{talos} {role}: text");
        }
    }
}

#[test]
fn config_defaults_are_talosctl_v1_11_defaults() {
    let config = BootstrapConfig::new("prod", "203.0.113.10".parse().unwrap());
    assert_eq!(config.kubernetes_version(), DEFAULT_KUBERNETES_VERSION);
    assert_eq!(config.endpoint(), "https://203.0.113.10:6443");
    assert_eq!(
        config.installer_image(),
        "ghcr.io/siderolabs/installer:v1.11.5"
    );
    let cp = parse(&render(&config, MachineType::ControlPlane));
    assert_eq!(
        cp["machine"]["kubelet"]["image"],
        "ghcr.io/siderolabs/kubelet:v1.34.1"
    );
    assert_eq!(
        cp["cluster"]["apiServer"]["image"],
        "registry.k8s.io/kube-apiserver:v1.34.1"
    );
    assert_eq!(
        cp["machine"]["install"],
        json!({"disk": "/dev/sda", "image": "ghcr.io/siderolabs/installer:v1.11.5", "wipe": false})
    );
    assert_eq!(cp["cluster"]["clusterName"], "prod");
    assert_eq!(
        cp["cluster"]["network"]["podSubnets"],
        json!(["10.244.0.0/16"])
    );
    assert_eq!(
        cp["cluster"]["network"]["serviceSubnets"],
        json!(["10.96.0.0/12"])
    );
    assert!(
        cp["cluster"]
            .get("allowSchedulingOnControlPlanes")
            .is_none()
    );
}

#[test]
fn config_kubernetes_version_follows_talos_version() {
    let v = |s: &str| s.parse::<TalosVersion>().unwrap();
    assert_eq!(default_kubernetes_version(&v("v1.10.0")), "1.33.0");
    assert_eq!(default_kubernetes_version(&v("v1.10.9")), "1.33.6");
    assert_eq!(default_kubernetes_version(&v("v1.10.42")), "1.33.6");
    assert_eq!(default_kubernetes_version(&v("v1.11.0-beta.1")), "1.34.0");
    assert_eq!(default_kubernetes_version(&v("v1.11.5")), "1.34.1");
    assert_eq!(default_kubernetes_version(&v("v1.11.6")), "1.34.1");

    let base = || BootstrapConfig::new("c", "10.0.0.1".parse().unwrap());
    let cp = parse(&render(
        &base().with_talos_version(&v("v1.10.9")),
        MachineType::ControlPlane,
    ));
    assert_eq!(
        cp["cluster"]["scheduler"]["image"],
        "registry.k8s.io/kube-scheduler:v1.33.6"
    );
    let cp = parse(&render(
        &base().with_kubernetes_version("v1.33.2"),
        MachineType::ControlPlane,
    ));
    assert_eq!(
        cp["cluster"]["proxy"]["image"],
        "registry.k8s.io/kube-proxy:v1.33.2"
    );

    for (talos, kubernetes) in [
        ("v1.11.5", "1.35.0"),
        ("v1.11.5", "1.28.9"),
        ("v1.10.9", "1.34.1"),
    ] {
        let err = base()
            .with_talos_version(&v(talos))
            .with_kubernetes_version(kubernetes)
            .render(&secrets(), MachineType::Worker)
            .unwrap_err();
        assert!(
            matches!(err, TalosError::UnsupportedKubernetesVersion { .. }),
            "{talos} {kubernetes}: {err}"
        );
    }
    for bad in ["1.34", "1.34.x", "latest", "1.34.1-", ""] {
        let err = base()
            .with_kubernetes_version(bad)
            .render(&secrets(), MachineType::Worker)
            .unwrap_err();
        assert!(
            matches!(err, TalosError::InvalidMachineConfig { ref field, .. } if field == "kubernetes version"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn config_options_land_where_talosctl_puts_them() {
    let config = BootstrapConfig::new("prod", "2001:db8::10".parse::<IpAddr>().unwrap())
        .with_install_disk("/dev/nvme0n1")
        .with_installer_image("factory.talos.dev/metal-installer/abc:v1.11.5")
        .with_pod_cidr("10.32.0.0/12")
        .with_service_cidr("10.112.0.0/12")
        .with_cert_sans(vec!["2001:db8::10".into(), "198.51.100.7".into()])
        .with_allow_scheduling_on_control_planes(true);
    assert_eq!(config.endpoint(), "https://[2001:db8::10]:6443");
    for role in [MachineType::ControlPlane, MachineType::Worker] {
        let doc = parse(&render(&config, role));
        assert_eq!(doc["machine"]["install"]["disk"], "/dev/nvme0n1");
        assert_eq!(
            doc["machine"]["install"]["image"],
            "factory.talos.dev/metal-installer/abc:v1.11.5"
        );
        assert_eq!(
            doc["machine"]["certSANs"],
            json!(["2001:db8::10", "198.51.100.7"])
        );
        assert_eq!(
            doc["cluster"]["controlPlane"]["endpoint"],
            "https://[2001:db8::10]:6443"
        );
        assert_eq!(
            doc["cluster"]["network"]["podSubnets"],
            json!(["10.32.0.0/12"])
        );
        assert_eq!(
            doc["cluster"]["network"]["serviceSubnets"],
            json!(["10.112.0.0/12"])
        );
        if role == MachineType::ControlPlane {
            // The endpoint's host first, each SAN once.
            assert_eq!(
                doc["cluster"]["apiServer"]["certSANs"],
                json!(["2001:db8::10", "198.51.100.7"])
            );
            assert_eq!(doc["cluster"]["allowSchedulingOnControlPlanes"], true);
        } else {
            assert!(
                doc["cluster"]
                    .get("allowSchedulingOnControlPlanes")
                    .is_none()
            );
        }
    }
}

#[test]
fn config_bad_inputs_are_refused_when_rendering() {
    let base = || BootstrapConfig::new("c", "10.0.0.1".parse().unwrap());
    let cases = [
        (base().with_pod_cidr("10.244.0.0"), "pod CIDR"),
        (base().with_service_cidr("10.96.0.0/33"), "service CIDR"),
        (base().with_install_disk("sda"), "install disk"),
        (base().with_installer_image("a b"), "installer image"),
        (
            base().with_cert_sans(vec![String::new()]),
            "certificate SANs",
        ),
        (
            BootstrapConfig::new("", "10.0.0.1".parse().unwrap()),
            "cluster name",
        ),
    ];
    for (config, want) in cases {
        match config.render(&secrets(), MachineType::ControlPlane) {
            Err(TalosError::InvalidMachineConfig { field, .. }) => assert_eq!(field, want),
            other => panic!("{want}: {other:?}"),
        }
    }
    let mut no_key = secrets();
    no_key.os.key.clear();
    assert!(matches!(
        base().render(&no_key, MachineType::ControlPlane),
        Err(TalosError::InvalidMachineConfig { ref field, .. }) if field == "secrets"
    ));
    // A worker never needs the keys.
    base().render(&no_key, MachineType::Worker).unwrap();
}

#[test]
fn config_rendering_is_deterministic() {
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap())
        .with_mayastor_ready()
        .with_patches(
            PatchTarget::All,
            vec![
                ConfigPatch::parse("p", "machine: {nodeLabels: {z: '1', a: '2', m: '3'}}").unwrap(),
            ],
        );
    let first = render(&config, MachineType::ControlPlane);
    for _ in 0..5 {
        assert_eq!(render(&config.clone(), MachineType::ControlPlane), first);
    }
    // Go maps are written with sorted keys.
    let labels = first.find("    nodeLabels:").unwrap();
    let tail = &first[labels..];
    let (a, m, z) = (
        tail.find("        a:").unwrap(),
        tail.find("        m:").unwrap(),
        tail.find("        z:").unwrap(),
    );
    assert!(a < m && m < z, "{tail}");
}

// ---------------------------------------------------------------------------------------------
// (2) Talos' JSON schema
// ---------------------------------------------------------------------------------------------

fn schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/talos-v1.11-config.schema.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The v1.11 schema with the `persist` key talosctl writes but the schema leaves out.
fn schema_with_persist() -> Value {
    let mut schema = schema();
    let properties = schema["$defs"]["v1alpha1.Config"]["properties"]
        .as_object_mut()
        .unwrap();
    assert!(
        !properties.contains_key("persist"),
        "the schema lists persist now"
    );
    properties.insert("persist".into(), json!({"type": "boolean"}));
    schema
}

fn schema_errors(schema: &Value, doc: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).unwrap();
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn config_rendered_documents_validate_against_the_talos_schema() {
    let schema = schema_with_persist();
    let patch = ConfigPatch::parse(
        "extra.yaml",
        "machine:\n  kernel:\n    modules:\n      - name: nvme_tcp\n  time:\n    servers: \
         [time.cloudflare.com]\n  network:\n    interfaces:\n      - interface: eth0\n        \
         dhcp: true\ncluster:\n  inlineManifests:\n    - name: cilium\n      contents: |\n        \
         apiVersion: v1\n        kind: Namespace\n",
    )
    .unwrap();
    let configs = [
        BootstrapConfig::new("plain", "10.0.0.1".parse().unwrap()),
        BootstrapConfig::new("full", "10.0.0.1".parse().unwrap())
            .with_mayastor_ready()
            .with_cert_sans(vec!["10.0.0.2".into(), "10.0.0.3".into()])
            .with_allow_scheduling_on_control_planes(true)
            .with_installer_image("factory.talos.dev/metal-installer/abc:v1.11.5")
            .with_install_disk("/dev/nvme0n1")
            .with_patches(PatchTarget::All, vec![patch]),
        golden_input("v1.10.9"),
    ];
    for config in &configs {
        for role in [MachineType::ControlPlane, MachineType::Worker] {
            let doc = parse(&render(config, role));
            let errors = schema_errors(&schema, &doc);
            assert!(
                errors.is_empty(),
                "{} {role}: {errors:#?}",
                config.cluster_name()
            );
        }
    }
}

#[test]
fn config_schema_omits_persist_which_talosctl_writes() {
    let schema = schema();
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap()).with_mayastor_ready();
    for role in [MachineType::ControlPlane, MachineType::Worker] {
        let mut doc = parse(&render(&config, role));
        assert_eq!(doc["persist"], true);
        // The published schema refuses the document only because of `persist` …
        assert!(!schema_errors(&schema, &doc).is_empty(), "{role}");
        doc.as_object_mut().unwrap().remove("persist");
        assert_eq!(schema_errors(&schema, &doc), Vec::<String>::new(), "{role}");
    }
}

// ---------------------------------------------------------------------------------------------
// (3) Workers
// ---------------------------------------------------------------------------------------------

#[test]
fn config_workers_carry_no_keys_and_no_control_plane_sections() {
    let s = secrets();
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap())
        .with_mayastor_ready()
        .with_allow_scheduling_on_control_planes(true)
        .with_cert_sans(vec!["10.0.0.2".into()]);
    let text = render(&config, MachineType::Worker);
    let doc = parse(&text);
    assert_eq!(doc["machine"]["type"], "worker");
    assert_eq!(
        doc["machine"]["ca"],
        json!({"crt": b64(&s.os.crt), "key": ""})
    );
    assert_eq!(
        doc["cluster"]["ca"],
        json!({"crt": b64(&s.k8s.crt), "key": ""})
    );
    assert_eq!(doc["machine"]["token"], s.trustd_token);
    assert_eq!(doc["cluster"]["token"], s.bootstrap_token);
    let cluster = doc["cluster"].as_object().unwrap();
    for section in [
        "secretboxEncryptionSecret",
        "aggregatorCA",
        "serviceAccount",
        "apiServer",
        "controllerManager",
        "scheduler",
        "proxy",
        "etcd",
        "allowSchedulingOnControlPlanes",
    ] {
        assert!(
            !cluster.contains_key(section),
            "worker has cluster.{section}"
        );
    }
    assert!(
        doc["machine"]["nodeLabels"]
            .get("node.kubernetes.io/exclude-from-external-load-balancers")
            .is_none()
    );
    for secret in [
        &s.os.key,
        &s.k8s.key,
        &s.k8s_aggregator.key,
        &s.k8s_aggregator.crt,
        &s.etcd.key,
        &s.etcd.crt,
        &s.k8s_service_account_key,
    ] {
        assert!(!text.contains(&b64(secret)), "worker leaks {secret}");
    }
    assert!(!text.contains(&s.secretbox_encryption_secret));

    let cp = parse(&render(&config, MachineType::ControlPlane));
    assert_eq!(cp["machine"]["ca"]["key"], b64(&s.os.key));
    assert_eq!(cp["cluster"]["ca"]["key"], b64(&s.k8s.key));
    assert_eq!(cp["cluster"]["etcd"]["ca"]["key"], b64(&s.etcd.key));
    assert_eq!(
        cp["cluster"]["serviceAccount"]["key"],
        b64(&s.k8s_service_account_key)
    );
}

#[test]
fn config_patches_cannot_give_workers_control_plane_secrets() {
    let patch = ConfigPatch::parse("etcd.yaml", "cluster:\n  etcd:\n    image: x\n").unwrap();
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap())
        .with_patches(PatchTarget::All, vec![patch]);
    render(&config, MachineType::ControlPlane);
    match config.render(&secrets(), MachineType::Worker) {
        Err(TalosError::InvalidConfigPatch { origin, reason, .. }) => {
            assert_eq!(origin, "etcd.yaml");
            assert!(reason.contains("etcd config is only allowed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// (4) Mayastor and Cilium
// ---------------------------------------------------------------------------------------------

fn v(s: &str) -> Option<Value> {
    Some(json!(s))
}

#[test]
fn config_mayastor_ready_sets_exactly_the_mayastor_and_cilium_fields() {
    let plain = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap());
    let ready = plain.clone().with_mayastor_ready();
    let mount = "/machine/kubelet/extraMounts/0";
    let machine_changes = vec![
        (format!("{mount}/destination"), None, v("/var/local")),
        (format!("{mount}/options/0"), None, v("bind")),
        (format!("{mount}/options/1"), None, v("rshared")),
        (format!("{mount}/options/2"), None, v("rw")),
        (format!("{mount}/source"), None, v("/var/local")),
        (format!("{mount}/type"), None, v("bind")),
        (
            "/machine/nodeLabels/openebs.io/engine".into(),
            None,
            v("mayastor"),
        ),
        ("/machine/sysctls/vm.nr_hugepages".into(), None, v("1024")),
    ];

    let mut want = vec![
        (
            "/cluster/apiServer/admissionControl/0/configuration/exemptions/namespaces/1".into(),
            None,
            v(MAYASTOR_NAMESPACE),
        ),
        ("/cluster/network/cni/name".into(), None, v("none")),
        ("/cluster/proxy/disabled".into(), None, Some(json!(true))),
    ];
    want.extend(machine_changes.clone());
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let cp = |c: &BootstrapConfig| parse(&render(c, MachineType::ControlPlane));
    assert_eq!(diff(&cp(&plain), &cp(&ready)), want);

    let mut want = vec![("/cluster/network/cni/name".into(), None, v("none"))];
    want.extend(machine_changes);
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let worker = |c: &BootstrapConfig| parse(&render(c, MachineType::Worker));
    assert_eq!(diff(&worker(&plain), &worker(&ready)), want);

    // Where talosctl would write them.
    let text = render(&ready, MachineType::ControlPlane);
    assert!(
        text.contains(
            "        extraMounts:\n            - destination: /var/local\n              type: \
             bind\n              source: /var/local\n              options:\n                \
             - bind\n                - rshared\n                - rw\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("    proxy:\n        disabled: true\n        image: "),
        "{text}"
    );
    assert!(
        text.contains("    network:\n        cni:\n            name: none\n        dnsDomain:"),
        "{text}"
    );
    assert!(
        text.contains("    sysctls:\n        vm.nr_hugepages: \"1024\"\n    features:"),
        "{text}"
    );
}

#[test]
fn config_hugepages_count() {
    let base = || BootstrapConfig::new("c", "10.0.0.1".parse().unwrap());
    let pages = |c: BootstrapConfig| {
        parse(&render(&c, MachineType::Worker))["machine"]["sysctls"]["vm.nr_hugepages"].clone()
    };
    assert_eq!(pages(base().with_hugepages()), "1024");
    assert_eq!(pages(base().with_hugepages_count(2048)), "2048");
    assert_eq!(
        pages(base().with_hugepages_count(2048).with_mayastor_ready()),
        "2048"
    );
    assert_eq!(
        pages(base().with_mayastor_ready().with_hugepages_count(4096)),
        "4096"
    );
    assert_eq!(pages(base().with_hugepages_count(0)), Value::Null);
    assert_eq!(pages(base()), Value::Null);
}

// ---------------------------------------------------------------------------------------------
// (5) Patches through the builder
// ---------------------------------------------------------------------------------------------

fn patch(source: &str, text: &str) -> ConfigPatch {
    ConfigPatch::parse(source, text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn config_patches_apply_all_first_then_the_role() {
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap())
        .with_patches(
            PatchTarget::ControlPlane,
            vec![patch("cp.yaml", "machine: {sysctls: {a: 'cp'}}")],
        )
        .with_patches(
            PatchTarget::Worker,
            vec![patch("w.yaml", "machine: {sysctls: {a: 'worker'}}")],
        )
        .with_patches(
            PatchTarget::All,
            vec![
                patch("all-1.yaml", "machine: {sysctls: {a: 'all', b: 'all'}}"),
                patch(
                    "all-2.yaml",
                    "machine: {sysctls: {b: 'all-2'}, certSANs: [x]}",
                ),
            ],
        );
    let cp = parse(&render(&config, MachineType::ControlPlane));
    assert_eq!(cp["machine"]["sysctls"], json!({"a": "cp", "b": "all-2"}));
    assert_eq!(cp["machine"]["certSANs"], json!(["x"]));
    let worker = parse(&render(&config, MachineType::Worker));
    assert_eq!(
        worker["machine"]["sysctls"],
        json!({"a": "worker", "b": "all-2"})
    );
    assert!(PatchTarget::All.applies_to(MachineType::Worker));
    assert!(!PatchTarget::ControlPlane.applies_to(MachineType::Worker));
}

#[test]
fn config_patched_keys_land_in_talos_order() {
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap()).with_patches(
        PatchTarget::All,
        vec![patch(
            "p.yaml",
            "cluster:\n  coreDNS: {disabled: true}\n  network: {cni: {name: none}}\nmachine:\n  \
             nodeTaints: {b: x}\n  kernel: {modules: [{name: nvme_tcp}]}\n  time: {servers: [t]}\n",
        )],
    );
    let text = render(&config, MachineType::Worker);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
    };
    assert!(at("\n    install:") < at("\n    time:"));
    assert!(at("\n    time:") < at("\n    features:"));
    assert!(at("\n    features:") < at("\n    kernel:"));
    assert!(at("\n    kernel:") < at("\n    nodeTaints:"));
    assert!(at("\n        cni:") < at("\n        dnsDomain:"));
    assert!(at("\n    discovery:") < at("\n    coreDNS:"));
}

#[test]
fn config_inline_manifests_survive_as_literal_blocks() {
    let manifest = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cilium\n";
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap()).with_patches(
        PatchTarget::ControlPlane,
        vec![patch(
            "cilium.yaml",
            &format!(
                "cluster:\n  inlineManifests:\n    - name: cilium\n      contents: {}\n",
                serde_json::to_string(manifest).unwrap()
            ),
        )],
    );
    let text = render(&config, MachineType::ControlPlane);
    assert!(
        text.contains(
            "    inlineManifests:\n        - name: cilium\n          contents: |\n            \
             apiVersion: v1\n"
        ),
        "{text}"
    );
    assert_eq!(
        parse(&text)["cluster"]["inlineManifests"][0]["contents"],
        manifest
    );
}

#[test]
fn config_malformed_patch_error_has_line_and_column() {
    let err =
        ConfigPatch::parse("patches/bad.yaml", "machine:\n  sysctls:\n    a: [1, 2\n").unwrap_err();
    let TalosError::InvalidConfigPatch {
        ref origin,
        line,
        column,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(origin, "patches/bad.yaml");
    assert!(line >= 3 && column >= 1, "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "config patch patches/bad.yaml, line {line}, column {column}: "
        )),
        "{err}"
    );

    let err = ConfigPatch::parse("list.yaml", "[1, 2]").unwrap_err();
    assert!(
        err.to_string().starts_with(
            "config patch list.yaml, line 1, column 1: a config patch must be a YAML mapping"
        ),
        "{err}"
    );
}

#[test]
fn config_patch_changing_machine_type_is_refused() {
    let config = BootstrapConfig::new("c", "10.0.0.1".parse().unwrap()).with_patches(
        PatchTarget::All,
        vec![patch(
            "role.yaml",
            "# turn into a worker\nmachine:\n  type: worker\n",
        )],
    );
    match config.render(&secrets(), MachineType::ControlPlane) {
        Err(TalosError::InvalidConfigPatch {
            origin,
            line,
            column,
            reason,
        }) => {
            assert_eq!((origin.as_str(), line, column), ("role.yaml", 3, 9));
            assert!(reason.contains("from controlplane to worker"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The same patch on a worker changes nothing.
    render(&config, MachineType::Worker);
}

#[test]
fn config_renders_a_generated_secrets_bundle() {
    let bundle = SecretsBundle::generate().expect("secrets");
    let schema = schema_with_persist();
    let config = BootstrapConfig::new("prod", "10.0.0.1".parse().unwrap()).with_mayastor_ready();
    for role in [MachineType::ControlPlane, MachineType::Worker] {
        let doc = parse(&config.render(&bundle, role).unwrap());
        assert_eq!(schema_errors(&schema, &doc), Vec::<String>::new(), "{role}");
        let decode = |value: &Value| {
            String::from_utf8(STANDARD.decode(value.as_str().unwrap()).unwrap()).unwrap()
        };
        assert_eq!(decode(&doc["machine"]["ca"]["crt"]), bundle.os.crt);
        assert_eq!(decode(&doc["cluster"]["ca"]["crt"]), bundle.k8s.crt);
        assert_eq!(doc["cluster"]["id"], bundle.cluster_id);
        assert_eq!(doc["cluster"]["secret"], bundle.cluster_secret);
        if role == MachineType::ControlPlane {
            assert_eq!(decode(&doc["machine"]["ca"]["key"]), bundle.os.key);
            assert_eq!(
                decode(&doc["cluster"]["serviceAccount"]["key"]),
                bundle.k8s_service_account_key
            );
        }
    }
}
