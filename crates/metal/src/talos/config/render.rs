//! From a [`BootstrapConfig`] and the cluster's secrets to the machine configuration text: the
//! document `talosctl gen config` generates for the role (v1.10 and v1.11 generate the same
//! layout), the Mayastor/Cilium settings, the patches, Talos' key order, and the checks Talos
//! would make when the configuration is applied.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::node::{self, Map, Node};
use super::patch::{CLUSTER_KEYS, MACHINE_KEYS};
use super::{
    BootstrapConfig, KUBEPRISM_PORT, MAYASTOR_NAMESPACE, MachineType, PatchTarget,
    supported_kubernetes_minors,
};
use crate::talos::TalosError;
use crate::talos::goyaml;
use crate::talos::secrets::{CertAndKey, SecretsBundle};

/// Renders the configuration of a machine of type `role`.
pub(super) fn render(
    config: &BootstrapConfig,
    secrets: &SecretsBundle,
    role: MachineType,
) -> Result<String, TalosError> {
    let kubernetes = kubernetes_version(config)?;
    check_inputs(config, secrets, role)?;
    let mut doc = base_document(config, secrets, role, &kubernetes);

    // Patches for every machine first, then the ones for this role, each group in order.
    for target in [PatchTarget::All, role.patch_target()] {
        for (_, patch) in config.patches.iter().filter(|(t, _)| *t == target) {
            patch.apply(&mut doc, role)?;
            check_document(&doc, role).map_err(|reason| {
                patch.error_at_root(format!(
                    "after this patch the {role} configuration is invalid: {reason}"
                ))
            })?;
        }
    }

    check_document(&doc, role).map_err(|reason| TalosError::InvalidMachineConfig {
        field: "configuration".to_owned(),
        reason,
    })?;
    order_map(&mut doc, &mut Vec::new());
    Ok(node::to_yaml(&doc))
}

fn invalid(field: &str, reason: impl Into<String>) -> TalosError {
    TalosError::InvalidMachineConfig {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// The Kubernetes version to deploy, without a leading `v`, checked against the Talos version.
pub(super) fn kubernetes_version(config: &BootstrapConfig) -> Result<String, TalosError> {
    let raw = config.kubernetes_version();
    let value = raw.strip_prefix('v').unwrap_or(&raw);
    let bad = |reason: &str| {
        invalid(
            "kubernetes version",
            format!("{raw:?} {reason}; expected MAJOR.MINOR.PATCH such as 1.34.1"),
        )
    };
    let (core, pre) = match value.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (value, None),
    };
    if pre.is_some_and(|p| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    }) {
        return Err(bad("has an invalid pre-release"));
    }
    let numbers: Vec<u64> = core
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect::<Option<_>>()
        .ok_or_else(|| bad("is not a version"))?;
    let [major, minor, _patch] = numbers.as_slice() else {
        return Err(bad("needs three numeric components"));
    };
    let supported = supported_kubernetes_minors(&config.talos_version);
    if *major != 1 || !supported.contains(minor) {
        return Err(TalosError::UnsupportedKubernetesVersion {
            kubernetes: value.to_owned(),
            talos: config.talos_version.to_string(),
            supported: format!("1.{}.x to 1.{}.x", supported.start(), supported.end()),
        });
    }
    Ok(value.to_owned())
}

fn check_inputs(
    config: &BootstrapConfig,
    secrets: &SecretsBundle,
    role: MachineType,
) -> Result<(), TalosError> {
    let word = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !word(&config.cluster_name) {
        return Err(invalid(
            "cluster name",
            format!(
                "{:?} must be non-empty, without spaces or control characters",
                config.cluster_name
            ),
        ));
    }
    for (field, cidr) in [
        ("pod CIDR", &config.pod_cidr),
        ("service CIDR", &config.service_cidr),
    ] {
        check_cidr(cidr).map_err(|reason| invalid(field, format!("{cidr:?} {reason}")))?;
    }
    if !config.install_disk.starts_with("/dev/") || !word(&config.install_disk) {
        return Err(invalid(
            "install disk",
            format!(
                "{:?} must be a device path such as /dev/sda or /dev/nvme0n1",
                config.install_disk
            ),
        ));
    }
    let image = config.installer_image();
    if !word(&image) {
        return Err(invalid(
            "installer image",
            format!("{image:?} is not an image reference"),
        ));
    }
    if let Some(san) = config.cert_sans.iter().find(|s| !word(s)) {
        return Err(invalid(
            "certificate SANs",
            format!("{san:?} is not a host name or address"),
        ));
    }

    let mut required = vec![
        ("cluster id", &secrets.cluster_id),
        ("cluster secret", &secrets.cluster_secret),
        ("bootstrap token", &secrets.bootstrap_token),
        ("trustd token", &secrets.trustd_token),
        ("OS CA certificate", &secrets.os.crt),
        ("Kubernetes CA certificate", &secrets.k8s.crt),
    ];
    if role == MachineType::ControlPlane {
        required.extend([
            (
                "secretbox encryption secret",
                &secrets.secretbox_encryption_secret,
            ),
            ("OS CA key", &secrets.os.key),
            ("Kubernetes CA key", &secrets.k8s.key),
            ("aggregator CA certificate", &secrets.k8s_aggregator.crt),
            ("aggregator CA key", &secrets.k8s_aggregator.key),
            ("service-account key", &secrets.k8s_service_account_key),
            ("etcd CA certificate", &secrets.etcd.crt),
            ("etcd CA key", &secrets.etcd.key),
        ]);
    }
    if let Some((name, _)) = required.iter().find(|(_, value)| value.is_empty()) {
        return Err(invalid(
            "secrets",
            format!("the secrets bundle has no {name}"),
        ));
    }
    Ok(())
}

fn check_cidr(cidr: &str) -> Result<(), &'static str> {
    let (addr, prefix) = cidr
        .split_once('/')
        .ok_or("is not a CIDR (ADDRESS/PREFIX)")?;
    let addr: IpAddr = addr.parse().map_err(|_| "has an invalid address")?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') => Ok(()),
        _ => Err("has an invalid prefix length"),
    }
}

// ---------------------------------------------------------------------------------------------
// The generated document
// ---------------------------------------------------------------------------------------------

fn b64(pem: &str) -> Node {
    Node::str(STANDARD.encode(pem))
}

fn cert_and_key(ca: &CertAndKey, with_key: bool) -> Node {
    let key = if with_key {
        b64(&ca.key)
    } else {
        Node::str("")
    };
    Node::Map(Map::new().with("crt", b64(&ca.crt)).with("key", key))
}

/// The document `talosctl gen config` generates for `role` with our options (§2.2 and §2.3 of
/// the Talos reference), before patches.
fn base_document(
    config: &BootstrapConfig,
    secrets: &SecretsBundle,
    role: MachineType,
    kubernetes: &str,
) -> Map {
    let control_plane = role == MachineType::ControlPlane;

    let mut kubelet = Map::new().with(
        "image",
        Node::str(format!("ghcr.io/siderolabs/kubelet:v{kubernetes}")),
    );
    if config.mayastor {
        kubelet.insert(
            "extraMounts",
            Node::Seq(vec![Node::Map(
                Map::new()
                    .with("destination", Node::str("/var/local"))
                    .with("type", Node::str("bind"))
                    .with("source", Node::str("/var/local"))
                    .with("options", Node::strs(["bind", "rshared", "rw"])),
            )]),
        );
    }
    kubelet.insert("defaultRuntimeSeccompProfileEnabled", Node::bool(true));
    kubelet.insert("disableManifestsDirectory", Node::bool(true));

    let mut machine = Map::new()
        .with("type", Node::str(role.as_str()))
        .with("token", Node::str(&secrets.trustd_token))
        .with("ca", cert_and_key(&secrets.os, control_plane))
        .with("certSANs", Node::strs(config.cert_sans.iter().cloned()))
        .with("kubelet", Node::Map(kubelet))
        .with("network", Node::Map(Map::new()))
        .with(
            "install",
            Node::Map(
                Map::new()
                    .with("disk", Node::str(&config.install_disk))
                    .with("image", Node::str(config.installer_image()))
                    .with("wipe", Node::bool(false)),
            ),
        );
    if let Some(pages) = config.hugepages.filter(|&n| n > 0) {
        machine.insert(
            "sysctls",
            Node::Map(Map::new().with("vm.nr_hugepages", Node::str(pages.to_string()))),
        );
    }
    machine.insert(
        "features",
        Node::Map(
            Map::new()
                .with("rbac", Node::bool(true))
                .with("stableHostname", Node::bool(true))
                .with("apidCheckExtKeyUsage", Node::bool(true))
                .with("diskQuotaSupport", Node::bool(true))
                .with(
                    "kubePrism",
                    Node::Map(
                        Map::new()
                            .with("enabled", Node::bool(true))
                            .with("port", Node::int(i64::from(KUBEPRISM_PORT))),
                    ),
                )
                .with(
                    "hostDNS",
                    Node::Map(
                        Map::new()
                            .with("enabled", Node::bool(true))
                            .with("forwardKubeDNSToHost", Node::bool(true)),
                    ),
                ),
        ),
    );
    let mut labels = Map::new();
    if control_plane {
        labels.insert(
            "node.kubernetes.io/exclude-from-external-load-balancers",
            Node::str(""),
        );
    }
    if config.mayastor {
        labels.insert("openebs.io/engine", Node::str("mayastor"));
    }
    if !labels.is_empty() {
        machine.insert("nodeLabels", Node::Map(labels));
    }

    let mut network = Map::new();
    if config.mayastor {
        network.insert("cni", Node::Map(Map::new().with("name", Node::str("none"))));
    }
    network.insert("dnsDomain", Node::str("cluster.local"));
    network.insert("podSubnets", Node::strs([config.pod_cidr.as_str()]));
    network.insert("serviceSubnets", Node::strs([config.service_cidr.as_str()]));

    let mut cluster = Map::new()
        .with("id", Node::str(&secrets.cluster_id))
        .with("secret", Node::str(&secrets.cluster_secret))
        .with(
            "controlPlane",
            Node::Map(Map::new().with("endpoint", Node::str(config.endpoint()))),
        )
        .with("clusterName", Node::str(&config.cluster_name))
        .with("network", Node::Map(network))
        .with("token", Node::str(&secrets.bootstrap_token));
    if control_plane {
        cluster.insert(
            "secretboxEncryptionSecret",
            Node::str(&secrets.secretbox_encryption_secret),
        );
    }
    cluster.insert("ca", cert_and_key(&secrets.k8s, control_plane));
    if control_plane {
        cluster.insert("aggregatorCA", cert_and_key(&secrets.k8s_aggregator, true));
        cluster.insert(
            "serviceAccount",
            Node::Map(Map::new().with("key", b64(&secrets.k8s_service_account_key))),
        );
        cluster.insert("apiServer", Node::Map(api_server(config, kubernetes)));
        cluster.insert(
            "controllerManager",
            Node::Map(Map::new().with(
                "image",
                Node::str(format!(
                    "registry.k8s.io/kube-controller-manager:v{kubernetes}"
                )),
            )),
        );
        let mut proxy = Map::new();
        if config.mayastor {
            proxy.insert("disabled", Node::bool(true));
        }
        proxy.insert(
            "image",
            Node::str(format!("registry.k8s.io/kube-proxy:v{kubernetes}")),
        );
        cluster.insert("proxy", Node::Map(proxy));
        cluster.insert(
            "scheduler",
            Node::Map(Map::new().with(
                "image",
                Node::str(format!("registry.k8s.io/kube-scheduler:v{kubernetes}")),
            )),
        );
    }
    cluster.insert(
        "discovery",
        Node::Map(
            Map::new().with("enabled", Node::bool(true)).with(
                "registries",
                Node::Map(
                    Map::new()
                        .with(
                            "kubernetes",
                            Node::Map(Map::new().with("disabled", Node::bool(true))),
                        )
                        .with("service", Node::Map(Map::new())),
                ),
            ),
        ),
    );
    if control_plane {
        cluster.insert(
            "etcd",
            Node::Map(Map::new().with("ca", cert_and_key(&secrets.etcd, true))),
        );
        if config.allow_scheduling_on_control_planes {
            cluster.insert("allowSchedulingOnControlPlanes", Node::bool(true));
        }
    }

    Map::new()
        .with("version", Node::str("v1alpha1"))
        .with("debug", Node::bool(false))
        .with("persist", Node::bool(true))
        .with("machine", Node::Map(machine))
        .with("cluster", Node::Map(cluster))
}

fn api_server(config: &BootstrapConfig, kubernetes: &str) -> Map {
    // The endpoint's host first, then the extra SANs (talosctl's GetAPIServerSANs), without
    // repeating one.
    let mut sans = vec![config.endpoint_ip.to_string()];
    for san in &config.cert_sans {
        if !sans.contains(san) {
            sans.push(san.clone());
        }
    }
    let mut exempt = vec!["kube-system"];
    if config.mayastor {
        exempt.push(MAYASTOR_NAMESPACE);
    }
    let pod_security = Map::new()
        .with(
            "apiVersion",
            Node::str("pod-security.admission.config.k8s.io/v1alpha1"),
        )
        .with(
            "defaults",
            Node::Map(
                Map::new()
                    .with("audit", Node::str("restricted"))
                    .with("audit-version", Node::str("latest"))
                    .with("enforce", Node::str("baseline"))
                    .with("enforce-version", Node::str("latest"))
                    .with("warn", Node::str("restricted"))
                    .with("warn-version", Node::str("latest")),
            ),
        )
        .with(
            "exemptions",
            Node::Map(
                Map::new()
                    .with("namespaces", Node::strs(exempt))
                    .with("runtimeClasses", Node::Seq(vec![]))
                    .with("usernames", Node::Seq(vec![])),
            ),
        )
        .with("kind", Node::str("PodSecurityConfiguration"));
    Map::new()
        .with(
            "image",
            Node::str(format!("registry.k8s.io/kube-apiserver:v{kubernetes}")),
        )
        .with("certSANs", Node::strs(sans))
        .with("disablePodSecurityPolicy", Node::bool(true))
        .with(
            "admissionControl",
            Node::Seq(vec![Node::Map(
                Map::new()
                    .with("name", Node::str("PodSecurity"))
                    .with("configuration", Node::Map(pod_security)),
            )]),
        )
        .with(
            "auditPolicy",
            Node::Map(
                Map::new()
                    .with("apiVersion", Node::str("audit.k8s.io/v1"))
                    .with("kind", Node::str("Policy"))
                    .with(
                        "rules",
                        Node::Seq(vec![Node::Map(
                            Map::new().with("level", Node::str("Metadata")),
                        )]),
                    ),
            ),
        )
}

// ---------------------------------------------------------------------------------------------
// Checks Talos makes when the configuration is applied (v1alpha1_validation.go)
// ---------------------------------------------------------------------------------------------

fn check_document(doc: &Map, role: MachineType) -> Result<(), String> {
    let root = doc;
    let text = |path: &[&str]| root.get_path(path).and_then(Node::scalar_text);
    let non_empty = |path: &[&str]| text(path).is_some_and(|s| !s.is_empty());

    if text(&["version"]) != Some("v1alpha1") {
        return Err("version must be v1alpha1".to_owned());
    }
    if text(&["persist"]) == Some("false") {
        return Err(".persist should be enabled".to_owned());
    }
    if text(&["machine", "type"]) != Some(role.as_str()) {
        return Err(format!("machine.type must be {role}"));
    }
    match role {
        MachineType::ControlPlane => {
            if !non_empty(&["machine", "ca", "key"]) {
                return Err(
                    "issuing CA key is required for controlplane nodes (.machine.ca.key)"
                        .to_owned(),
                );
            }
        }
        MachineType::Worker => {
            if non_empty(&["machine", "ca", "key"]) {
                return Err(
                    "issuing Talos API CA key is not allowed on non-controlplane nodes \
                     (.machine.ca)"
                        .to_owned(),
                );
            }
            if non_empty(&["cluster", "ca", "key"]) {
                return Err(
                    "issuing Kubernetes API CA key is not allowed on non-controlplane nodes \
                     (.cluster.ca)"
                        .to_owned(),
                );
            }
            if root.get_path(&["cluster", "etcd"]).is_some() {
                return Err("etcd config is only allowed on control plane machines".to_owned());
            }
        }
    }
    if let Some(cni) = root.get_path(&["cluster", "network", "cni"]) {
        let name = cni.get_path(&["name"]).and_then(Node::scalar_text);
        match name {
            Some("flannel" | "none") if cni.get_path(&["urls"]).is_some() => {
                return Err("cluster.network.cni.urls is only allowed with the custom CNI".into());
            }
            Some("flannel" | "custom" | "none") => {}
            other => {
                return Err(format!(
                    "unsupported CNI driver {:?}: use flannel, custom or none",
                    other.unwrap_or_default()
                ));
            }
        }
    }
    if !non_empty(&["machine", "install", "disk"])
        && root
            .get_path(&["machine", "install", "diskSelector"])
            .is_none()
    {
        return Err("either install disk or diskSelector should be defined".to_owned());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Key order
// ---------------------------------------------------------------------------------------------

/// How the keys of a mapping are ordered when written.
#[derive(Clone, Copy)]
enum Order {
    /// A Go struct: in field order; unknown keys after the known ones, as they came.
    Fields(&'static [&'static str]),
    /// A Go map: keys sorted as `yaml.v3` sorts them.
    Sorted,
    /// A free-form document (`map[string]any`): every mapping inside sorted.
    SortedDeep,
}

const CERT_AND_KEY: Order = Order::Fields(&["crt", "key"]);
const ROUTE: Order = Order::Fields(&["network", "gateway", "source", "metric", "mtu"]);

/// The order of the mappings of a configuration, by path (`*` is any key, `[]` any list item),
/// from Talos' `v1alpha1_types.go` at v1.11.
const ORDERS: &[(&[&str], Order)] = &[
    (
        &[],
        Order::Fields(&["version", "debug", "persist", "machine", "cluster"]),
    ),
    (&["machine"], Order::Fields(MACHINE_KEYS)),
    (&["machine", "ca"], CERT_AND_KEY),
    (&["machine", "acceptedCAs", "[]"], CERT_AND_KEY),
    (
        &["machine", "kubelet"],
        Order::Fields(&[
            "image",
            "clusterDNS",
            "extraArgs",
            "extraMounts",
            "extraConfig",
            "credentialProviderConfig",
            "defaultRuntimeSeccompProfileEnabled",
            "registerWithFQDN",
            "nodeIP",
            "skipNodeRegistration",
            "disableManifestsDirectory",
        ]),
    ),
    (&["machine", "kubelet", "extraArgs"], Order::Sorted),
    (
        &["machine", "kubelet", "extraMounts", "[]"],
        Order::Fields(&[
            "destination",
            "type",
            "source",
            "options",
            "uidMappings",
            "gidMappings",
        ]),
    ),
    (&["machine", "kubelet", "extraConfig"], Order::SortedDeep),
    (
        &["machine", "kubelet", "credentialProviderConfig"],
        Order::SortedDeep,
    ),
    (
        &["machine", "network"],
        Order::Fields(&[
            "hostname",
            "interfaces",
            "nameservers",
            "searchDomains",
            "extraHostEntries",
            "kubespan",
            "disableSearchDomain",
        ]),
    ),
    (
        &["machine", "network", "interfaces", "[]"],
        Order::Fields(&[
            "interface",
            "deviceSelector",
            "addresses",
            "cidr",
            "routes",
            "bond",
            "bridge",
            "bridgePort",
            "vlans",
            "mtu",
            "dhcp",
            "ignore",
            "dummy",
            "dhcpOptions",
            "wireguard",
            "vip",
        ]),
    ),
    (
        &["machine", "network", "interfaces", "[]", "deviceSelector"],
        Order::Fields(&[
            "busPath",
            "hardwareAddr",
            "permanentAddr",
            "pciID",
            "driver",
            "physical",
        ]),
    ),
    (
        &["machine", "network", "interfaces", "[]", "routes", "[]"],
        ROUTE,
    ),
    (
        &["machine", "network", "interfaces", "[]", "vlans", "[]"],
        Order::Fields(&[
            "addresses",
            "cidr",
            "routes",
            "dhcp",
            "vlanId",
            "mtu",
            "vip",
            "dhcpOptions",
        ]),
    ),
    (
        &[
            "machine",
            "network",
            "interfaces",
            "[]",
            "vlans",
            "[]",
            "routes",
            "[]",
        ],
        ROUTE,
    ),
    (
        &["machine", "network", "extraHostEntries", "[]"],
        Order::Fields(&["ip", "aliases"]),
    ),
    (
        &["machine", "install"],
        Order::Fields(&[
            "disk",
            "diskSelector",
            "extraKernelArgs",
            "image",
            "extensions",
            "bootloader",
            "wipe",
            "legacyBIOSSupport",
        ]),
    ),
    (
        &["machine", "install", "diskSelector"],
        Order::Fields(&[
            "size", "name", "model", "serial", "modalias", "uuid", "wwid", "type", "busPath",
        ]),
    ),
    (
        &["machine", "files", "[]"],
        Order::Fields(&["content", "permissions", "path", "op"]),
    ),
    (&["machine", "env"], Order::Sorted),
    (
        &["machine", "time"],
        Order::Fields(&["disabled", "servers", "bootTimeout"]),
    ),
    (&["machine", "sysctls"], Order::Sorted),
    (&["machine", "sysfs"], Order::Sorted),
    (
        &["machine", "registries"],
        Order::Fields(&["mirrors", "config"]),
    ),
    (&["machine", "registries", "mirrors"], Order::Sorted),
    (
        &["machine", "registries", "mirrors", "*"],
        Order::Fields(&["endpoints", "overridePath", "skipFallback"]),
    ),
    (&["machine", "registries", "config"], Order::Sorted),
    (
        &["machine", "registries", "config", "*"],
        Order::Fields(&["tls", "auth"]),
    ),
    (
        &["machine", "features"],
        Order::Fields(&[
            "rbac",
            "stableHostname",
            "kubernetesTalosAPIAccess",
            "apidCheckExtKeyUsage",
            "diskQuotaSupport",
            "kubePrism",
            "hostDNS",
            "imageCache",
            "nodeAddressSortAlgorithm",
        ]),
    ),
    (
        &["machine", "features", "kubernetesTalosAPIAccess"],
        Order::Fields(&["enabled", "allowedRoles", "allowedKubernetesNamespaces"]),
    ),
    (
        &["machine", "features", "kubePrism"],
        Order::Fields(&["enabled", "port"]),
    ),
    (
        &["machine", "features", "hostDNS"],
        Order::Fields(&["enabled", "forwardKubeDNSToHost", "resolveMemberNames"]),
    ),
    (&["machine", "kernel"], Order::Fields(&["modules"])),
    (
        &["machine", "kernel", "modules", "[]"],
        Order::Fields(&["name", "parameters"]),
    ),
    (&["machine", "baseRuntimeSpecOverrides"], Order::SortedDeep),
    (&["machine", "nodeLabels"], Order::Sorted),
    (&["machine", "nodeAnnotations"], Order::Sorted),
    (&["machine", "nodeTaints"], Order::Sorted),
    (&["cluster"], Order::Fields(CLUSTER_KEYS)),
    (
        &["cluster", "controlPlane"],
        Order::Fields(&["endpoint", "localAPIServerPort"]),
    ),
    (
        &["cluster", "network"],
        Order::Fields(&["cni", "dnsDomain", "podSubnets", "serviceSubnets"]),
    ),
    (
        &["cluster", "network", "cni"],
        Order::Fields(&["name", "urls", "flannel"]),
    ),
    (&["cluster", "ca"], CERT_AND_KEY),
    (&["cluster", "acceptedCAs", "[]"], CERT_AND_KEY),
    (&["cluster", "aggregatorCA"], CERT_AND_KEY),
    (
        &["cluster", "apiServer"],
        Order::Fields(&[
            "image",
            "extraArgs",
            "extraVolumes",
            "env",
            "certSANs",
            "disablePodSecurityPolicy",
            "admissionControl",
            "auditPolicy",
            "resources",
            "authorizationConfig",
        ]),
    ),
    (&["cluster", "apiServer", "extraArgs"], Order::Sorted),
    (&["cluster", "apiServer", "env"], Order::Sorted),
    (
        &["cluster", "apiServer", "admissionControl", "[]"],
        Order::Fields(&["name", "configuration"]),
    ),
    (
        &[
            "cluster",
            "apiServer",
            "admissionControl",
            "[]",
            "configuration",
        ],
        Order::SortedDeep,
    ),
    (&["cluster", "apiServer", "auditPolicy"], Order::SortedDeep),
    (
        &["cluster", "controllerManager"],
        Order::Fields(&["image", "extraArgs", "extraVolumes", "env", "resources"]),
    ),
    (
        &["cluster", "controllerManager", "extraArgs"],
        Order::Sorted,
    ),
    (&["cluster", "controllerManager", "env"], Order::Sorted),
    (
        &["cluster", "proxy"],
        Order::Fields(&["disabled", "image", "mode", "extraArgs"]),
    ),
    (&["cluster", "proxy", "extraArgs"], Order::Sorted),
    (
        &["cluster", "scheduler"],
        Order::Fields(&[
            "image",
            "extraArgs",
            "extraVolumes",
            "env",
            "resources",
            "config",
        ]),
    ),
    (&["cluster", "scheduler", "extraArgs"], Order::Sorted),
    (&["cluster", "scheduler", "env"], Order::Sorted),
    (&["cluster", "scheduler", "config"], Order::SortedDeep),
    (
        &["cluster", "discovery"],
        Order::Fields(&["enabled", "registries"]),
    ),
    (
        &["cluster", "discovery", "registries"],
        Order::Fields(&["kubernetes", "service"]),
    ),
    (
        &["cluster", "discovery", "registries", "service"],
        Order::Fields(&["disabled", "endpoint"]),
    ),
    (
        &["cluster", "etcd"],
        Order::Fields(&[
            "image",
            "ca",
            "extraArgs",
            "subnet",
            "advertisedSubnets",
            "listenSubnets",
        ]),
    ),
    (&["cluster", "etcd", "ca"], CERT_AND_KEY),
    (&["cluster", "etcd", "extraArgs"], Order::Sorted),
    (
        &["cluster", "coreDNS"],
        Order::Fields(&["disabled", "image"]),
    ),
    (
        &["cluster", "externalCloudProvider"],
        Order::Fields(&["enabled", "manifests"]),
    ),
    (&["cluster", "extraManifestHeaders"], Order::Sorted),
    (
        &["cluster", "inlineManifests", "[]"],
        Order::Fields(&["name", "contents"]),
    ),
];

fn order_of(path: &[String]) -> Option<Order> {
    ORDERS.iter().find_map(|(pattern, order)| {
        (pattern.len() == path.len()
            && pattern
                .iter()
                .zip(path)
                .all(|(p, s)| *p == s || (*p == "*" && s != "[]")))
        .then_some(*order)
    })
}

/// Puts every mapping under `map` (found at `path`) in Talos' order.
fn order_map(map: &mut Map, path: &mut Vec<String>) {
    match order_of(path) {
        Some(Order::Fields(fields)) => {
            let rank = |key: &str| {
                fields
                    .iter()
                    .position(|f| *f == key)
                    .unwrap_or(fields.len())
            };
            map.sort_keys_by(|a, b| rank(a).cmp(&rank(b)));
        }
        Some(Order::Sorted) => map.sort_keys_by(goyaml::key_cmp),
        Some(Order::SortedDeep) => {
            sort_deep(map);
            return;
        }
        None => {}
    }
    for (key, value) in map.iter_mut() {
        path.push(key.to_owned());
        order_node(value, path);
        path.pop();
    }
}

fn order_node(node: &mut Node, path: &mut Vec<String>) {
    match node {
        Node::Map(map) => order_map(map, path),
        Node::Seq(items) => {
            for item in items {
                path.push("[]".to_owned());
                order_node(item, path);
                path.pop();
            }
        }
        Node::Str(_) | Node::Plain(_) => {}
    }
}

/// Sorts every mapping under `map`, as `yaml.v3` writes a `map[string]any`.
fn sort_deep(map: &mut Map) {
    map.sort_keys_by(goyaml::key_cmp);
    for (_, value) in map.iter_mut() {
        sort_deep_node(value);
    }
}

fn sort_deep_node(node: &mut Node) {
    match node {
        Node::Map(map) => sort_deep(map),
        Node::Seq(items) => items.iter_mut().for_each(sort_deep_node),
        Node::Str(_) | Node::Plain(_) => {}
    }
}
