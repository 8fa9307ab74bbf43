//! Talos nodes on the servers' loopback addresses: maintenance mode over raw TLS + HTTP/2, and
//! the whole life of a node (apply, install, mutual TLS, bootstrap, etcd, kubeconfig, the
//! Kubernetes API and its Nodes, a lab restart, a reinstall) driven by `metal`'s Talos client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use reqwest::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use lab::LabConfig;
use metal::talos::client::{
    AppliedMode, ApplyMode, BootstrapOutcome, BootstrapRetry, TalosClient, TalosClientError,
};
use metal::talos::config::{BootstrapConfig, MachineType};
use metal::talos::secrets::SecretsBundle;
use metal::talos::talosconfig::{Talosconfig, admin_talosconfig};
use tonic::Code;

use crate::harness::{self, config};

/// Maintenance mode cannot be verified: accept any certificate, as talosctl --insecure does.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(ip: Ipv4Addr, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(SocketAddr::from((ip, lab::TALOS_API_PORT))).await?;
    connector(alpn)
        .connect(ServerName::IpAddress(IpAddr::V4(ip).into()), tcp)
        .await
}

async fn listening(ip: Ipv4Addr) -> bool {
    TcpStream::connect(SocketAddr::from((ip, lab::TALOS_API_PORT)))
        .await
        .is_ok()
}

async fn wait_listening(ip: Ipv4Addr, wanted: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listening(ip).await != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ip}:50000 never became listening={wanted}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls a gRPC method over h2 and returns the response headers (trailers-only responses carry
/// grpc-status there).
async fn grpc_call(
    tls: TlsStream<TcpStream>,
    ip: Ipv4Addr,
    method: &str,
) -> http::Response<h2::RecvStream> {
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://{ip}:50000{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    // An empty protobuf message in a gRPC frame.
    stream
        .send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    response.await.expect("h2 response")
}

#[tokio::test]
async fn ipxe_servers_boot_into_maintenance_mode_until_deleted() {
    let lab = harness::start(config()).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let id = lab.create(json!({"hostname": "talos-cp-1"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_listening(ip, true).await;

    let tls = tls_connect(ip, &[b"h2"]).await.expect("TLS handshake");
    let (_, session) = tls.get_ref();
    assert_eq!(session.alpn_protocol(), Some(b"h2".as_slice()));
    let chain = session.peer_certificates().unwrap().to_vec();
    assert_eq!(chain.len(), 2, "leaf and ephemeral CA");
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        leaf.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "talos-cp-1"
    );
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.value.general_names.iter().any(
        |n| matches!(n, x509_parser::extensions::GeneralName::IPAddress(b) if *b == ip.octets())
    ));
    assert_eq!(
        leaf.public_key().algorithm.algorithm.to_id_string(),
        "1.3.101.112",
        "Ed25519"
    );

    let response = grpc_call(tls, ip, "/machine.MachineService/Version").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "12");
    assert_eq!(
        response.headers()["grpc-message"],
        "API is not implemented in maintenance mode"
    );
    assert!(response.body().is_end_stream(), "trailers-only response");

    // An empty ApplyConfigurationRequest carries no configuration: InvalidArgument.
    let apply = grpc_call(
        tls_connect(ip, &[b"h2"]).await.unwrap(),
        ip,
        "/machine.MachineService/ApplyConfiguration",
    )
    .await;
    assert_eq!(apply.headers()["grpc-status"], "3");

    // Without h2 in ALPN there is no gRPC service.
    let refused = match tls_connect(ip, &[b"http/1.1"]).await {
        Err(_) => true,
        Ok(tls) => h2::client::handshake(tls).await.is_err(),
    };
    assert!(refused, "a connection without ALPN h2 must be refused");
    // Without ALPN at all the handshake completes, then the node hangs up.
    let mut no_alpn = tls_connect(ip, &[]).await.expect("TLS without ALPN");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), no_alpn.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the node must close a connection without h2: {read:?}"
    );

    let reply = lab.delete(&format!("/servers/{id}")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    wait_listening(ip, false).await;
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn reinstall_takes_the_node_down_and_brings_it_back() {
    let mut cfg = config();
    cfg.timeline.disk_erasing = 1000.0;
    let lab = harness::start(cfg).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let id = lab.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_listening(ip, true).await;
    let body = json!({"data": {"type": "reinstalls", "attributes": {"operating_system": "ipxe", "ipxe": harness::talos_ipxe()}}});
    assert_eq!(
        lab.post(&format!("/servers/{id}/reinstall"), body)
            .await
            .status,
        StatusCode::CREATED
    );
    wait_listening(ip, false).await;
    wait_listening(ip, true).await;
    lab.handle.shutdown().await;
    assert!(!listening(ip).await, "shutdown stops every node");
}

#[tokio::test]
async fn a_bad_ipxe_script_never_boots() {
    let lab = harness::start(config()).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let good = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 2);
    let bad = lab
        .create(json!({"hostname": "bad", "ipxe": "https://example.com/boot.ipxe"}))
        .await;
    assert_eq!(bad["attributes"]["primary_ipv4"], ip.to_string());
    lab.create(json!({"hostname": "good"})).await;
    // Once the good node is up, the bad one (ordered earlier) would have been up too.
    wait_listening(good, true).await;
    lab.wait_status(bad["id"].as_str().unwrap(), "on").await;
    assert!(!listening(ip).await);
    lab.handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The life of a node, driven by metal's Talos client
// ---------------------------------------------------------------------------------------------

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A fast lab whose install takes 1.5 s (long enough to see port 50000 go away).
fn talos_config() -> LabConfig {
    let mut cfg = config();
    cfg.timeline.talos_install = 1500.0;
    cfg.timeline.bootstrap_ready = 200.0;
    cfg.timeline.kubelet_start = 100.0;
    cfg
}

fn api_addr(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::from((ip, lab::TALOS_API_PORT))
}

fn render(bundle: &SecretsBundle, endpoint: Ipv4Addr, machine_type: MachineType) -> String {
    BootstrapConfig::new("lab", IpAddr::V4(endpoint))
        .render(bundle, machine_type)
        .expect("machine config renders")
}

fn talosconfig(bundle: &SecretsBundle, ips: &[Ipv4Addr]) -> Talosconfig {
    let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
    admin_talosconfig(bundle, "lab", &ips, &ips).expect("admin talosconfig")
}

async fn maintenance(ip: Ipv4Addr) -> TalosClient {
    TalosClient::maintenance(api_addr(ip), CALL_TIMEOUT)
        .await
        .expect("maintenance mode answers")
}

/// Connects with mutual TLS once the node is back from its install.
async fn wait_normal(ip: Ipv4Addr, talosconfig: &Talosconfig) -> TalosClient {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let last = match TalosClient::connect(api_addr(ip), talosconfig, CALL_TIMEOUT).await {
            Ok(mut client) => match client.version().await {
                Ok(_) => {
                    return client.with_bootstrap_retry(BootstrapRetry {
                        initial_delay: Duration::from_millis(20),
                        max_delay: Duration::from_millis(100),
                        max_elapsed: Duration::from_secs(10),
                    });
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ip} never answered in normal mode: {last}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The Node names the cluster's Kubernetes API lists, once it lists `wanted` of them.
async fn wait_nodes(kubeconfig: &str, wanted: usize) -> Vec<Node> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    let client = kube::Client::try_from(config).expect("kube client");
    let nodes: Api<Node> = Api::all(client);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let last = match nodes.list(&ListParams::default()).await {
            Ok(list) if list.items.len() >= wanted => return list.items,
            Ok(list) => format!("{} nodes", list.items.len()),
            Err(e) => e.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Kubernetes API never listed {wanted} nodes: {last}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn node_names(nodes: &[Node]) -> Vec<String> {
    let mut names: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_cluster_from_maintenance_mode_to_kubernetes_and_back_after_a_restart() {
    let bundle = SecretsBundle::generate().expect("secrets");
    let lab = harness::start(talos_config()).await;
    let cp = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let worker = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 2);
    lab.create(json!({"hostname": "cp-1"})).await;
    lab.create(json!({"hostname": "worker-1"})).await;
    wait_listening(cp, true).await;
    wait_listening(worker, true).await;

    // Maintenance mode: the configurations go in, the nodes go away to install.
    let report = maintenance(cp)
        .await
        .apply_configuration(
            render(&bundle, cp, MachineType::ControlPlane).as_bytes(),
            ApplyMode::Reboot,
        )
        .await
        .expect("control plane config accepted");
    assert_eq!(report.mode, AppliedMode::Reboot);
    wait_listening(cp, false).await;
    maintenance(worker)
        .await
        .apply_configuration(
            render(&bundle, cp, MachineType::Worker).as_bytes(),
            ApplyMode::Auto,
        )
        .await
        .expect("worker config accepted");
    wait_listening(worker, false).await;

    // Normal mode: mutual TLS with the admin talosconfig.
    let admin = talosconfig(&bundle, &[cp]);
    let mut cp_api = wait_normal(cp, &admin).await;
    let version = cp_api.version().await.unwrap();
    assert!(version.tag.starts_with("v1.1"), "{}", version.tag);
    assert_eq!(version.platform.as_deref(), Some("metal"));
    let refused = match TalosClient::maintenance(api_addr(cp), CALL_TIMEOUT).await {
        Err(_) => true,
        Ok(mut insecure) => insecure.version().await.is_err(),
    };
    assert!(refused, "an installed node wants a client certificate");
    // etcd waits for the bootstrap.
    let error = cp_api.etcd_member_list().await.unwrap_err();
    assert_eq!(error.code(), Some(Code::Unavailable), "{error}");

    // Bootstrap (retried through "bootstrap is not available yet"), idempotently.
    assert_eq!(
        cp_api.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    assert_eq!(
        cp_api.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );
    let members = cp_api.etcd_member_list().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "cp-1");
    assert_eq!(members[0].peer_urls, [format!("https://{cp}:2380")]);
    let services = cp_api.service_list().await.unwrap();
    let etcd = services
        .iter()
        .find(|s| s.id == "etcd")
        .expect("etcd service");
    assert_eq!((etcd.state.as_str(), etcd.healthy), ("Running", Some(true)));
    assert!(
        services
            .iter()
            .any(|s| s.id == "apid" && s.state == "Running")
    );

    // The worker: no bootstrap, no kubeconfig, no etcd.
    let mut worker_api = wait_normal(worker, &admin).await;
    let error = worker_api.bootstrap().await.unwrap_err();
    assert_eq!(error.code(), Some(Code::FailedPrecondition), "{error}");
    assert!(error.to_string().contains("control plane node"), "{error}");
    let error = worker_api.kubeconfig().await.unwrap_err();
    assert_eq!(error.code(), Some(Code::Unimplemented), "{error}");
    assert!(
        !worker_api
            .service_list()
            .await
            .unwrap()
            .iter()
            .any(|s| s.id == "etcd")
    );

    // The kubeconfig points at the control plane's Kubernetes API, where both kubelets
    // registered their (NotReady) Nodes.
    let kubeconfig = cp_api.kubeconfig().await.unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://{cp}:6443")),
        "{kubeconfig}"
    );
    let nodes = wait_nodes(&kubeconfig, 2).await;
    assert_eq!(node_names(&nodes), ["cp-1", "worker-1"]);

    // `/_lab/conditions` saw it happen, in this order; `/_lab/stats` counted the calls.
    let doc = lab.lab_json("conditions").await;
    let at = |name: &str| {
        doc["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["at_ms"].as_i64())
            .unwrap_or_else(|| panic!("no {name} in {doc}"))
    };
    let chain = [
        "server/cp-1/ordered",
        "server/cp-1/talos_maintenance",
        "server/cp-1/config_applied",
        "server/cp-1/installed",
        "cluster/lab/bootstrapped",
        "node/cp-1/registered",
    ];
    for pair in chain.windows(2) {
        assert!(at(pair[0]) <= at(pair[1]), "{pair:?} in {doc}");
    }
    assert!(at("server/worker-1/installed") <= at("node/worker-1/registered"));
    let stats = lab.stats().await;
    assert!(stats["talos_calls"].as_u64().unwrap() >= 6, "{stats}");
    assert!(stats["kube_requests"].as_u64().unwrap() >= 1, "{stats}");

    // A client certificate from another cluster's OS CA is refused.
    let foreign = SecretsBundle::generate().unwrap();
    let mut stranger = talosconfig(&foreign, &[cp]);
    stranger.ca = admin.ca.clone();
    let refused = match TalosClient::connect(api_addr(cp), &stranger, CALL_TIMEOUT).await {
        Err(_) => true,
        Ok(mut client) => client.version().await.is_err(),
    };
    assert!(refused, "a foreign client certificate must be refused");

    // A restarted lab brings everything back from world.json.
    lab.handle.shutdown().await;
    assert!(!listening(cp).await);
    let restarted = harness::start_in(talos_config(), lab.dir.path()).await;
    let mut cp_api = wait_normal(cp, &admin).await;
    assert_eq!(cp_api.etcd_member_list().await.unwrap().len(), 1);
    assert_eq!(
        cp_api.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );
    let kubeconfig = cp_api.kubeconfig().await.unwrap();
    assert_eq!(
        node_names(&wait_nodes(&kubeconfig, 2).await),
        ["cp-1", "worker-1"]
    );
    restarted.shutdown().await;
}

#[tokio::test]
async fn maintenance_mode_rejects_bad_configs_with_invalid_argument() {
    let bundle = SecretsBundle::generate().expect("secrets");
    let lab = harness::start(talos_config()).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    lab.create(json!({"hostname": "cp-1"})).await;
    wait_listening(ip, true).await;
    let good = render(&bundle, ip, MachineType::ControlPlane);
    let worker = render(&bundle, ip, MachineType::Worker);
    let mut client = maintenance(ip).await;
    let cases: Vec<(String, &str)> = vec![
        ("machine: [unclosed".into(), "failed to parse config"),
        ("- just\n- a list\n".into(), "failed to parse config"),
        (
            good.replacen("version: v1alpha1", "version: v1alpha2", 1),
            "invalid config version",
        ),
        (
            good.replacen("    type: controlplane\n", "", 1),
            "unknown machine type",
        ),
        (
            good.replacen("    type: controlplane\n", "    type: init-ish\n", 1),
            "unknown machine type",
        ),
        (
            // A control plane without the CA keys: the worker config relabelled.
            worker.replacen("    type: worker\n", "    type: controlplane\n", 1),
            "issuing CA key is required for controlplane nodes (.machine.ca.key)",
        ),
        (
            worker.replacen(&format!("https://{ip}:6443"), "", 1),
            "cluster controlplane endpoint is required",
        ),
    ];
    for (config, expected) in &cases {
        let error = client
            .apply_configuration(config.as_bytes(), ApplyMode::Reboot)
            .await
            .unwrap_err();
        let TalosClientError::Rpc { code, message, .. } = &error else {
            panic!("expected an RPC error, got {error}");
        };
        assert_eq!(*code, Code::InvalidArgument, "{error}");
        assert!(
            message.contains(expected),
            "{expected:?} not in {message:?}"
        );
    }
    // Nothing was applied: the node is still in maintenance mode, and takes a good config.
    client
        .apply_configuration(good.as_bytes(), ApplyMode::Auto)
        .await
        .expect("a good config is accepted");
    wait_listening(ip, false).await;
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn a_reinstall_resets_the_node_to_maintenance_mode() {
    let bundle = SecretsBundle::generate().expect("secrets");
    let mut cfg = talos_config();
    cfg.timeline.talos_install = 100.0;
    let lab = harness::start(cfg).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let id = lab.create(json!({"hostname": "cp-1"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_listening(ip, true).await;
    maintenance(ip)
        .await
        .apply_configuration(
            render(&bundle, ip, MachineType::ControlPlane).as_bytes(),
            ApplyMode::Reboot,
        )
        .await
        .unwrap();
    let admin = talosconfig(&bundle, &[ip]);
    wait_normal(ip, &admin).await.bootstrap().await.unwrap();

    let body = json!({"data": {"type": "reinstalls", "attributes": {"operating_system": "ipxe", "ipxe": harness::talos_ipxe()}}});
    assert_eq!(
        lab.post(&format!("/servers/{id}/reinstall"), body)
            .await
            .status,
        StatusCode::CREATED
    );
    // Back in maintenance mode, with no memory of the configuration.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut client) = TalosClient::maintenance(api_addr(ip), CALL_TIMEOUT).await
            && let Err(error) = client.version().await
            && error.code() == Some(Code::Unimplemented)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never came back in maintenance mode"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    lab.handle.shutdown().await;
}
