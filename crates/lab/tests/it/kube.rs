//! The lab's Kubernetes API against the clients that must work with it unchanged: kube-rs (what
//! the installer uses) and the real `kubectl` binary. Each test starts its own API server on
//! `127.0.0.1:0`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, PartialObjectMeta, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Client, Config, ResourceExt};
use lab::kube::{KubeApi, KubeApiConfig, NodeInfo};
use metal::talos::pki::{self, KeyKind};
use metal::talos::secrets::CertAndKey;
use serde_json::Value;

pub(crate) const CLUSTER: &str = "lab";

/// A Kubernetes CA as Talos generates it (ECDSA P-256, `O=kubernetes`, `EC PRIVATE KEY`).
pub(crate) fn kubernetes_ca() -> CertAndKey {
    pki::new_ca(
        Some("kubernetes"),
        KeyKind::EcdsaP256,
        Duration::from_secs(24 * 3600),
    )
    .expect("CA")
}

pub(crate) async fn start(ca: &CertAndKey) -> KubeApi {
    lab::kube::start(KubeApiConfig {
        listen: (Ipv4Addr::LOCALHOST, 0).into(),
        cluster_name: CLUSTER.into(),
        ca: ca.clone(),
        cert_sans: vec!["lab.example".into()],
    })
    .await
    .expect("API server starts")
}

pub(crate) fn node(name: &str, last_octet: u8, control_plane: bool, ready: bool) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        internal_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 240, last_octet)),
        control_plane,
        ready,
        labels: BTreeMap::new(),
        kubelet_version: "v1.34.1".into(),
        os_image: "Talos (v1.11.5)".into(),
    }
}

/// A cluster with one control plane (not ready) and one worker (ready).
async fn cluster(ca: &CertAndKey) -> KubeApi {
    let api = start(ca).await;
    api.upsert_node(node("cp-1", 1, true, false));
    api.upsert_node(node("w-1", 2, false, true));
    api
}

pub(crate) fn kubeconfig(api: &KubeApi, ca: &CertAndKey) -> Kubeconfig {
    let yaml = lab::kube::admin_kubeconfig(CLUSTER, &api.url(), ca).expect("kubeconfig");
    Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses")
}

pub(crate) async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

pub(crate) async fn client(api: &KubeApi, ca: &CertAndKey) -> Client {
    client_from(kubeconfig(api, ca)).await
}

pub(crate) fn api_error(error: kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone(), status.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub(crate) fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

#[tokio::test]
async fn kube_rs_lists_and_gets_nodes_that_look_real() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    let nodes: Api<Node> = Api::all(client(&api, &ca).await);

    let list = nodes.list(&ListParams::default()).await.expect("list");
    let names: Vec<_> = list.items.iter().map(|n| n.name_any()).collect();
    assert_eq!(names, ["cp-1", "w-1"]);
    assert!(list.metadata.resource_version.is_some());
    assert_eq!(api.node_names(), ["cp-1", "w-1"]);

    let cp = nodes.get("cp-1").await.expect("get");
    let labels = cp.labels();
    assert_eq!(labels["kubernetes.io/hostname"], "cp-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
    assert!(cp.metadata.uid.is_some() && cp.metadata.creation_timestamp.is_some());
    let taints: Vec<_> = cp
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    assert_eq!(
        taints,
        [
            "node-role.kubernetes.io/control-plane:NoSchedule",
            "node.kubernetes.io/not-ready:NoSchedule"
        ]
    );
    let status = cp.status.expect("status");
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
    assert!(ready.message.unwrap().contains("NetworkPluginNotReady"));
    let info = status.node_info.expect("nodeInfo");
    assert_eq!(info.kubelet_version, "v1.34.1");
    assert_eq!(info.os_image, "Talos (v1.11.5)");
    assert!(
        info.container_runtime_version
            .starts_with("containerd://2.")
    );
    let addresses: Vec<_> = status
        .addresses
        .unwrap()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addresses,
        [
            ("InternalIP".to_string(), "127.0.240.1".to_string()),
            ("Hostname".to_string(), "cp-1".to_string())
        ]
    );
    assert!(is_ready(&nodes.get("w-1").await.unwrap()));

    let (code, reason, message) = api_error(nodes.get("nope").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(message, "nodes \"nope\" not found");

    // Metadata-only reads (kube-rs `metadata_watcher` and `list_metadata`).
    let metadata = nodes
        .list_metadata(&ListParams::default())
        .await
        .expect("list_metadata");
    assert_eq!(metadata.items.len(), 2);
    let one: PartialObjectMeta<Node> = nodes.get_metadata("w-1").await.expect("get_metadata");
    assert_eq!(one.name_any(), "w-1");

    let namespaces: Api<Namespace> = Api::all(client(&api, &ca).await);
    let names: Vec<_> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    api.shutdown().await;
}

#[tokio::test]
async fn kube_rs_selectors_and_paging() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    api.upsert_node(node("w-2", 3, false, true));
    let nodes: Api<Node> = Api::all(client(&api, &ca).await);

    let cps = nodes
        .list(&ListParams::default().labels("node-role.kubernetes.io/control-plane"))
        .await
        .unwrap();
    assert_eq!(cps.items.len(), 1);
    let workers = nodes
        .list(&ListParams::default().labels("!node-role.kubernetes.io/control-plane"))
        .await
        .unwrap();
    assert_eq!(workers.items.len(), 2);
    let one = nodes
        .list(&ListParams::default().fields("metadata.name=w-2"))
        .await
        .unwrap();
    assert_eq!(one.items[0].name_any(), "w-2");
    let (code, _, message) = api_error(
        nodes
            .list(&ListParams::default().fields("status.phase=Running"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    assert_eq!(message, "field label not supported: status.phase");
    let (code, reason, _) = api_error(
        nodes
            .list(&ListParams::default().labels("a in b"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));

    let first = nodes.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = nodes
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].name_any(), "w-2");
    assert!(second.metadata.continue_.is_none());
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    api.shutdown().await;
}

#[tokio::test]
async fn kube_rs_watch_sees_a_node_become_ready() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    let nodes: Api<Node> = Api::all(client(&api, &ca).await);
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();

    let mut stream = nodes
        .watch(&WatchParams::default().timeout(20), &rv)
        .await
        .expect("watch")
        .boxed();
    // The same information again is no change: no event.
    api.upsert_node(node("cp-1", 1, true, false));
    api.upsert_node(node("cp-1", 1, true, true));
    let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .expect("an event in time")
        .expect("no error")
        .expect("stream open");
    let WatchEvent::Modified(changed) = event else {
        panic!("expected MODIFIED, got {event:?}");
    };
    assert_eq!(changed.name_any(), "cp-1");
    assert!(is_ready(&changed));
    let new_rv: u64 = changed.resource_version().unwrap().parse().unwrap();
    assert!(new_rv > rv.parse().unwrap());
    let taints = changed.spec.unwrap().taints.unwrap();
    assert_eq!(taints.len(), 1, "the not-ready taint is gone: {taints:?}");

    // A watch from "0" starts with the current state; selectors filter.
    let mut from_start = nodes
        .watch(
            &WatchParams::default()
                .timeout(20)
                .labels("node-role.kubernetes.io/control-plane"),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), from_start.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(&first, WatchEvent::Added(n) if n.name_any() == "cp-1"));

    // Deleting a node is a DELETED event.
    assert!(api.remove_node("cp-1"));
    let gone = tokio::time::timeout(Duration::from_secs(10), from_start.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(&gone, WatchEvent::Deleted(n) if n.name_any() == "cp-1"));
    api.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_await_condition_and_watcher_work() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    let nodes: Api<Node> = Api::all(client(&api, &ca).await);

    let ready = kube::runtime::wait::await_condition(nodes.clone(), "cp-1", |n: Option<&Node>| {
        n.is_some_and(is_ready)
    });
    let flip = {
        let api = api.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            api.upsert_node(node("cp-1", 1, true, true));
        }
    };
    let (ready, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(15), ready), flip);
    let ready = ready
        .expect("in time")
        .expect("no error")
        .expect("the node");
    assert!(is_ready(&ready));

    // The watcher with streaming lists (sendInitialEvents) and bookmarks.
    let config = kube::runtime::watcher::Config::default().streaming_lists();
    let mut events = kube::runtime::watcher(nodes, config).boxed();
    let mut seen = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await
        .expect("in time")
        .expect("no error")
    {
        match event {
            kube::runtime::watcher::Event::InitApply(n) => seen.push(n.name_any()),
            kube::runtime::watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["cp-1", "w-1"]);
    api.shutdown().await;
}

#[tokio::test]
async fn kube_rs_discovery_plain_and_aggregated() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    let client = client(&api, &ca).await;

    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.git_version, "v1.34.1");
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34")
    );

    for discovery in [
        Discovery::new(client.clone())
            .run()
            .await
            .expect("discovery"),
        Discovery::new(client.clone())
            .run_aggregated()
            .await
            .expect("aggregated discovery"),
    ] {
        let core = discovery
            .groups()
            .find(|g| g.name().is_empty())
            .expect("core group");
        let resources: BTreeMap<String, _> = core
            .recommended_resources()
            .into_iter()
            .map(|(r, caps)| (r.plural.clone(), (r, caps)))
            .collect();
        let (nodes, caps) = &resources["nodes"];
        assert_eq!(nodes.kind, "Node");
        assert_eq!(caps.scope, Scope::Cluster);
        assert!(caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::WATCH));
        let (namespaces, _) = &resources["namespaces"];
        assert_eq!(namespaces.kind, "Namespace");
        let coordination = discovery
            .get("coordination.k8s.io")
            .expect("coordination.k8s.io");
        let (leases, caps) = coordination.recommended_kind("Lease").expect("leases");
        assert_eq!(
            (leases.plural.as_str(), caps.scope.clone()),
            ("leases", Scope::Namespaced)
        );
    }
    api.shutdown().await;
}

#[tokio::test]
async fn client_certificates_from_another_ca_are_unauthorized_and_anonymous_is_forbidden() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;

    // A client certificate from another CA, on a connection that trusts the right server.
    let foreign = kubeconfig(&api, &kubernetes_ca());
    let mut bad = kubeconfig(&api, &ca);
    bad.auth_infos = foreign.auth_infos.clone();
    let nodes: Api<Node> = Api::all(client_from(bad).await);
    let (code, reason, _) = api_error(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));

    // No client certificate: anonymous may read /version, nothing else.
    let mut anonymous = kubeconfig(&api, &ca);
    for auth in &mut anonymous.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            info.client_certificate_data = None;
            info.client_key_data = None;
        }
    }
    let client = client_from(anonymous).await;
    client
        .apiserver_version()
        .await
        .expect("anonymous /version");
    let nodes: Api<Node> = Api::all(client);
    let (code, reason, message) = api_error(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
    api.shutdown().await;
}

#[tokio::test]
async fn the_admin_kubeconfig_is_what_talos_returns() {
    let ca = kubernetes_ca();
    let yaml = lab::kube::admin_kubeconfig("prod", "https://127.0.0.1:6443", &ca).unwrap();
    let config = Kubeconfig::from_yaml(&yaml).unwrap();
    assert_eq!(config.current_context.as_deref(), Some("admin@prod"));
    let context = config.contexts[0].context.as_ref().unwrap();
    assert_eq!(context.cluster, "prod");
    assert_eq!(context.user.as_deref(), Some("admin@prod"));
    assert_eq!(context.namespace.as_deref(), Some("default"));
    let cluster = config.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ca_data = b64
        .decode(cluster.certificate_authority_data.as_ref().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(ca_data).unwrap(), ca.crt);
    let auth = config.auth_infos[0].auth_info.as_ref().unwrap();
    assert!(auth.client_key_data.is_some());
    let key_line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data: "))
        .unwrap();
    let key = b64.decode(key_line).unwrap();
    assert!(
        String::from_utf8(key)
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    let cert = b64
        .decode(auth.client_certificate_data.as_ref().unwrap())
        .unwrap();
    let der = pki::parse_certificate_pem(&String::from_utf8(cert).unwrap()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(parsed.subject().to_string(), "O=system:masters, CN=admin");
}

// --- The real kubectl ---

/// The kubectl to test with: `$LAB_KUBECTL`, else `kubectl` on the PATH. Missing kubectl is a
/// failure, not a skip: CI installs it (Debian package `kubernetes-client`).
fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LAB_KUBECTL") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "kubectl is not installed, and the lab's Kubernetes API is tested with the real \
             kubectl: install it (`apt-get install -y kubernetes-client` on Debian) or point \
             LAB_KUBECTL at a kubectl binary"
        )
    })
}

pub(crate) struct Kubectl {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    pub(crate) fn new(api: &KubeApi, ca: &CertAndKey) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let yaml = lab::kube::admin_kubeconfig(CLUSTER, &api.url(), ca).unwrap();
        std::fs::write(dir.path().join("kubeconfig"), yaml).unwrap();
        Kubectl {
            binary: kubectl_binary(),
            dir,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let dir: &Path = self.dir.path();
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--request-timeout=20s")
            .args(args)
            .env("HOME", dir)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        command
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()))
    }

    /// Runs and expects success; returns stdout.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The whitespace-separated columns of each line.
pub(crate) fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            // OS-IMAGE "Talos (v1.11.5)" has a space: split on runs of two or more spaces.
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn kubectl_gets_nodes_namespaces_and_version() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    let kubectl = Kubectl::new(&api, &ca);

    let version: Value =
        serde_json::from_str(&kubectl.ok(&["version", "-o", "json"]).await).expect("version JSON");
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.34.1");

    let wide = rows(&kubectl.ok(&["get", "nodes", "-o", "wide"]).await);
    assert_eq!(
        wide[0],
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    let cp = &wide[1];
    assert_eq!(cp[..3], ["cp-1", "NotReady", "control-plane"]);
    assert_eq!(
        cp[4..8],
        ["v1.34.1", "127.0.240.1", "<none>", "Talos (v1.11.5)"]
    );
    assert!(cp[9].starts_with("containerd://"));
    assert_eq!(wide[2][..3], ["w-1", "Ready", "<none>"]);

    let json: Value =
        serde_json::from_str(&kubectl.ok(&["get", "nodes", "-o", "json"]).await).unwrap();
    let items = json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["kind"], "Node");
    assert_eq!(items[0]["metadata"]["name"], "cp-1");

    let one: Value =
        serde_json::from_str(&kubectl.ok(&["get", "no", "w-1", "-o", "json"]).await).unwrap();
    assert_eq!(one["status"]["nodeInfo"]["kubeletVersion"], "v1.34.1");

    let selected = rows(
        &kubectl
            .ok(&[
                "get",
                "nodes",
                "-l",
                "node-role.kubernetes.io/control-plane",
            ])
            .await,
    );
    assert_eq!(selected.len(), 2, "{selected:?}");
    assert_eq!(selected[1][0], "cp-1");

    let namespaces = rows(&kubectl.ok(&["get", "ns"]).await);
    assert_eq!(namespaces[0], ["NAME", "STATUS", "AGE"]);
    let names: Vec<_> = namespaces[1..]
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("default", "Active"),
            ("kube-node-lease", "Active"),
            ("kube-public", "Active"),
            ("kube-system", "Active")
        ]
    );

    let missing = kubectl.run(&["get", "node", "nope"]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("Error from server (NotFound): nodes \"nope\" not found"),
        "{stderr}"
    );

    let described = kubectl.ok(&["describe", "node", "cp-1"]).await;
    assert!(
        described.contains("node-role.kubernetes.io/control-plane:NoSchedule"),
        "{described}"
    );
    assert!(described.contains("KubeletNotReady"), "{described}");
    assert!(described.contains("HolderIdentity:  cp-1"), "{described}");
    let pods = kubectl.run(&["get", "pods", "--all-namespaces"]).await;
    assert!(pods.status.success());
    assert!(String::from_utf8_lossy(&pods.stderr).contains("No resources found"));

    let resources = kubectl.ok(&["api-resources", "--no-headers"]).await;
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("leases ") && l.contains("coordination.k8s.io/v1")),
        "{resources}"
    );
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("nodes ") && l.contains("Node")),
        "{resources}"
    );
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("namespaces ") && l.contains("Namespace"))
    );
    api.shutdown().await;
}

#[tokio::test]
async fn kubectl_waits_for_and_watches_node_changes() {
    let ca = kubernetes_ca();
    let api = cluster(&ca).await;
    let kubectl = Kubectl::new(&api, &ca);
    let wait = kubectl
        .command(&[
            "wait",
            "--for=condition=Ready",
            "node/cp-1",
            "--timeout=30s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl wait starts");
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.upsert_node(node("cp-1", 1, true, true));
    let output = tokio::time::timeout(Duration::from_secs(40), wait.wait_with_output())
        .await
        .expect("kubectl wait ends")
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl wait failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // `kubectl get -w` watches as Table and prints each change.
    let mut watch = kubectl
        .command(&["get", "nodes", "--watch-only"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w starts");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.upsert_node(node("cp-1", 1, true, false));
    let printed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut printed = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.starts_with("cp-1 ");
            printed.push(line);
            if done {
                break;
            }
        }
        printed
    })
    .await
    .expect("kubectl get -w prints the change");
    let last = rows(printed.last().expect("a line"));
    assert_eq!(
        last[0][..3],
        ["cp-1", "NotReady", "control-plane"],
        "{printed:?}"
    );
    let _ = watch.kill().await;
    api.shutdown().await;
}
