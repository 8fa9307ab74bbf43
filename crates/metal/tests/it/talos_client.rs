//! `metal::talos::client::TalosClient` against small tonic `MachineService` servers behind real
//! TLS (maintenance: server-only; normal: client certificates required and verified against an
//! OS CA made with `metal::talos::pki`), served over HTTP/2 as apid serves them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metal::talos::client::{
    AppliedMode, ApplyMode, BootstrapOutcome, BootstrapRetry, TalosClient, TalosClientError,
};
use metal::talos::pki::{self, KeyKind, LeafRequest};
use metal::talos::proto::common;
use metal::talos::proto::machine::machine_service_server::{MachineService, MachineServiceServer};
use metal::talos::proto::machine::{self as pb};
use metal::talos::secrets::CertAndKey;
use metal::talos::talosconfig::Talosconfig;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::{Code, Status};
use tower::Service as _;

const TIMEOUT: Duration = Duration::from_secs(5);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// What the fake node does and what it saw.
#[derive(Default)]
struct Fake {
    /// Answers to successive `Bootstrap` calls (then `Ok`).
    bootstrap: Mutex<VecDeque<Status>>,
    bootstrap_calls: Mutex<u32>,
    applied: Mutex<Option<(Vec<u8>, i32)>>,
    /// `Version` reports a per-node error in its metadata, as a proxying apid does.
    node_error: bool,
    /// `Kubeconfig` chunks.
    kubeconfig: Vec<Vec<u8>>,
}

type Shared = Arc<Fake>;

#[tonic::async_trait]
impl MachineService for Fake {
    async fn apply_configuration(
        &self,
        request: tonic::Request<pb::ApplyConfigurationRequest>,
    ) -> Result<tonic::Response<pb::ApplyConfigurationResponse>, Status> {
        let request = request.into_inner();
        *self.applied.lock().unwrap() = Some((request.data, request.mode));
        Ok(tonic::Response::new(pb::ApplyConfigurationResponse {
            messages: vec![pb::ApplyConfiguration {
                metadata: None,
                warnings: vec!["use \"controlplane\" instead of \"init\" for machine type".into()],
                mode: 0,
                mode_details: String::new(),
            }],
        }))
    }

    async fn bootstrap(
        &self,
        _request: tonic::Request<pb::BootstrapRequest>,
    ) -> Result<tonic::Response<pb::BootstrapResponse>, Status> {
        *self.bootstrap_calls.lock().unwrap() += 1;
        if let Some(status) = self.bootstrap.lock().unwrap().pop_front() {
            return Err(status);
        }
        Ok(tonic::Response::new(pb::BootstrapResponse {
            messages: vec![pb::Bootstrap { metadata: None }],
        }))
    }

    async fn etcd_member_list(
        &self,
        _request: tonic::Request<pb::EtcdMemberListRequest>,
    ) -> Result<tonic::Response<pb::EtcdMemberListResponse>, Status> {
        Ok(tonic::Response::new(pb::EtcdMemberListResponse {
            messages: vec![pb::EtcdMembers {
                metadata: None,
                legacy_members: vec!["cp-1".into()],
                members: vec![pb::EtcdMember {
                    id: 42,
                    hostname: "cp-1".into(),
                    peer_urls: vec!["https://127.0.0.1:2380".into()],
                    client_urls: vec!["https://127.0.0.1:2379".into()],
                    is_learner: false,
                }],
            }],
        }))
    }

    type KubeconfigStream = tokio_stream::Iter<std::vec::IntoIter<Result<common::Data, Status>>>;

    async fn kubeconfig(
        &self,
        _request: tonic::Request<()>,
    ) -> Result<tonic::Response<Self::KubeconfigStream>, Status> {
        let chunks: Vec<Result<common::Data, Status>> = self
            .kubeconfig
            .iter()
            .map(|bytes| {
                Ok(common::Data {
                    metadata: None,
                    bytes: bytes.clone(),
                })
            })
            .collect();
        Ok(tonic::Response::new(tokio_stream::iter(chunks)))
    }

    async fn service_list(
        &self,
        _request: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::ServiceListResponse>, Status> {
        let service = |id: &str, healthy: Option<bool>| pb::ServiceInfo {
            id: id.into(),
            state: "Running".into(),
            events: None,
            health: Some(pb::ServiceHealth {
                unknown: healthy.is_none(),
                healthy: healthy.unwrap_or(false),
                last_message: String::new(),
                last_change: None,
            }),
        };
        Ok(tonic::Response::new(pb::ServiceListResponse {
            messages: vec![pb::ServiceList {
                metadata: None,
                services: vec![service("apid", Some(true)), service("etcd", None)],
            }],
        }))
    }

    async fn version(
        &self,
        _request: tonic::Request<()>,
    ) -> Result<tonic::Response<pb::VersionResponse>, Status> {
        let metadata = self.node_error.then(|| common::Metadata {
            hostname: "10.5.0.2".into(),
            error: "rpc error: code = Unavailable desc = connection refused".into(),
            status: Some(metal::talos::proto::google::rpc::Status {
                code: Code::Unavailable as i32,
                message: "connection refused".into(),
                details: vec![],
            }),
        });
        Ok(tonic::Response::new(pb::VersionResponse {
            messages: vec![pb::Version {
                metadata,
                version: Some(pb::VersionInfo {
                    tag: "v1.11.5".into(),
                    sha: "abc".into(),
                    built: String::new(),
                    go_version: "go1.24".into(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                }),
                platform: Some(pb::PlatformInfo {
                    name: "metal".into(),
                    mode: "metal".into(),
                }),
                features: Some(pb::FeaturesInfo { rbac: true }),
            }],
        }))
    }
}

/// Serves `fake` with `tls` on a free loopback port; ALPN `h2` required, as apid does.
async fn serve(tls: rustls::ServerConfig, fake: Shared) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let fake = fake.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                    return;
                }
                let service = service_fn(move |request| {
                    let mut server = MachineServiceServer::from_arc(fake.clone());
                    async move { Ok::<_, Infallible>(server.call(request).await.unwrap()) }
                });
                let _ = http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// An OS CA like the one in a secrets bundle (Ed25519, `O=talos`).
fn os_ca() -> CertAndKey {
    pki::new_ca(Some("talos"), KeyKind::Ed25519, DAY).unwrap()
}

/// apid's certificate for 127.0.0.1, issued by `ca`.
fn server_identity(ca: &CertAndKey) -> CertAndKey {
    let request = LeafRequest {
        common_name: Some("cp-1".into()),
        organizations: vec![],
        dns_names: vec!["cp-1".into()],
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        server_auth: true,
        client_auth: false,
        validity: DAY,
    };
    pki::issue(ca, &request, KeyKind::Ed25519).unwrap()
}

/// A talosconfig whose admin client certificate is issued by `client_ca`, trusting `trusted_ca`.
fn talosconfig(client_ca: &CertAndKey, trusted_ca: &CertAndKey) -> Talosconfig {
    let request = LeafRequest {
        common_name: None,
        organizations: vec!["os:admin".into()],
        dns_names: vec![],
        ip_addresses: vec![],
        server_auth: false,
        client_auth: true,
        validity: DAY,
    };
    let client = pki::issue(client_ca, &request, KeyKind::Ed25519).unwrap();
    Talosconfig {
        context: "test".into(),
        endpoints: vec!["127.0.0.1".into()],
        nodes: vec![],
        ca: trusted_ca.crt.clone(),
        crt: client.crt.clone(),
        key: client.key.clone(),
    }
}

fn server_config(identity: &CertAndKey, client_ca: Option<&CertAndKey>) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(pki::parse_certificate_pem(&ca.crt).unwrap())
                .unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            pki::parse_certificates_pem(&identity.crt).unwrap(),
            pki::parse_private_key_pem(&identity.key).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A node in normal mode: mutual TLS with `ca` as the OS CA.
async fn normal_node(ca: &CertAndKey, fake: Fake) -> SocketAddr {
    serve(
        server_config(&server_identity(ca), Some(ca)),
        Arc::new(fake),
    )
    .await
}

async fn admin(addr: SocketAddr, ca: &CertAndKey) -> TalosClient {
    TalosClient::connect(addr, &talosconfig(ca, ca), TIMEOUT)
        .await
        .expect("mutual TLS connects")
}

fn fast_retry() -> BootstrapRetry {
    BootstrapRetry {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        max_elapsed: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn applies_a_configuration_in_maintenance_mode() {
    // Maintenance mode: a certificate nobody can verify, no client certificate requested.
    let ephemeral = os_ca();
    let identity = server_identity(&ephemeral);
    let fake = Arc::new(Fake::default());
    let addr = serve(server_config(&identity, None), fake.clone()).await;

    let mut client = TalosClient::maintenance(addr, TIMEOUT).await.unwrap();
    assert_eq!(
        client.server_fingerprint(),
        Some(pki::spki_sha256_b64(&identity.crt).unwrap()),
        "the fingerprint talosctl prints"
    );
    let report = client
        .apply_configuration(b"version: v1alpha1\n", ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(report.mode, AppliedMode::Reboot);
    assert_eq!(report.warnings.len(), 1);
    let (data, mode) = fake.applied.lock().unwrap().clone().unwrap();
    assert_eq!(data, b"version: v1alpha1\n");
    assert_eq!(mode, pb::apply_configuration_request::Mode::Auto as i32);
}

/// Trust on first use: the pinned client talks to the key it was given and refuses another
/// one before sending anything (issue 13).
#[tokio::test]
async fn maintenance_mode_pins_the_key_seen_first() {
    let first = server_identity(&os_ca());
    let pinned = pki::spki_sha256_b64(&first.crt).unwrap();
    let fake = Arc::new(Fake::default());
    let addr = serve(server_config(&first, None), fake.clone()).await;
    let mut client = TalosClient::maintenance_pinned(addr, TIMEOUT, &pinned)
        .await
        .unwrap();
    client
        .apply_configuration(b"version: v1alpha1\n", ApplyMode::Reboot)
        .await
        .unwrap();
    assert!(fake.applied.lock().unwrap().is_some());

    // Another maintenance key (a reboot, or another machine at the node's address).
    let other = server_identity(&os_ca());
    let presented = pki::spki_sha256_b64(&other.crt).unwrap();
    let fake = Arc::new(Fake::default());
    let addr = serve(server_config(&other, None), fake.clone()).await;
    let error = TalosClient::maintenance_pinned(addr, TIMEOUT, &pinned)
        .await
        .unwrap_err();
    let TalosClientError::KeyChanged {
        addr: at,
        pinned: p,
        presented: q,
    } = &error
    else {
        panic!("expected KeyChanged, got {error}");
    };
    assert_eq!((*at, p, q), (addr, &pinned, &presented));
    assert!(error.to_string().contains(&presented), "{error}");
    assert!(fake.applied.lock().unwrap().is_none(), "nothing was sent");
}

#[tokio::test]
async fn mutual_tls_with_the_os_ca() {
    let ca = os_ca();
    let addr = normal_node(&ca, Fake::default()).await;
    let mut client = admin(addr, &ca).await;
    let version = client.version().await.unwrap();
    assert_eq!(version.tag, "v1.11.5");
    assert_eq!(version.platform.as_deref(), Some("metal"));
    assert_eq!(version.rbac, Some(true));

    let services = client.service_list().await.unwrap();
    assert_eq!(services[0].id, "apid");
    assert_eq!(services[0].healthy, Some(true));
    assert_eq!(services[1].healthy, None, "unknown health");
    let members = client.etcd_member_list().await.unwrap();
    assert_eq!(members[0].hostname, "cp-1");
    assert_eq!(members[0].id, 42);
}

#[tokio::test]
async fn a_client_certificate_from_a_foreign_ca_is_refused() {
    let ca = os_ca();
    let foreign = os_ca();
    let addr = normal_node(&ca, Fake::default()).await;
    // The client trusts the right CA but holds a certificate of another one. Under TLS 1.3 the
    // refusal may only show on the first call.
    let refused = match TalosClient::connect(addr, &talosconfig(&foreign, &ca), TIMEOUT).await {
        Err(error) => {
            assert!(matches!(error, TalosClientError::Connect { .. }), "{error}");
            true
        }
        Ok(mut client) => {
            let error = client.version().await.unwrap_err();
            assert!(error.to_string().contains(&addr.to_string()), "{error}");
            true
        }
    };
    assert!(refused);
}

#[tokio::test]
async fn a_server_certificate_from_a_foreign_ca_is_refused() {
    let ca = os_ca();
    let foreign = os_ca();
    let addr = normal_node(&foreign, Fake::default()).await;
    let error = TalosClient::connect(addr, &talosconfig(&ca, &ca), TIMEOUT)
        .await
        .unwrap_err();
    let TalosClientError::Connect { addr: at, reason } = &error else {
        panic!("expected a connect error, got {error}");
    };
    assert_eq!(*at, addr);
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
}

#[tokio::test]
async fn maintenance_mode_refuses_a_node_that_speaks_without_h2() {
    let identity = server_identity(&os_ca());
    // A server that ignores ALPN: the handshake completes without a protocol.
    let mut config = server_config(&identity, None);
    config.alpn_protocols = vec![];
    let addr = serve(config, Arc::new(Fake::default())).await;
    let error = TalosClient::maintenance(addr, TIMEOUT).await.unwrap_err();
    assert!(
        error.to_string().contains("did not negotiate ALPN h2"),
        "{error}"
    );
    // A server that offers only http/1.1 refuses the handshake.
    let mut config = server_config(&identity, None);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = serve(config, Arc::new(Fake::default())).await;
    let error = TalosClient::maintenance(addr, TIMEOUT).await.unwrap_err();
    assert!(
        error.to_string().contains("NoApplicationProtocol"),
        "{error}"
    );
}

#[tokio::test]
async fn bootstrap_retries_until_the_node_is_ready() {
    let ca = os_ca();
    let fake = Fake {
        bootstrap: Mutex::new(VecDeque::from([
            Status::unavailable("etcd is starting"),
            Status::failed_precondition("bootstrap is not available yet"),
            Status::unavailable("etcd is starting"),
        ])),
        ..Fake::default()
    };
    let fake = Arc::new(fake);
    let addr = serve(
        server_config(&server_identity(&ca), Some(&ca)),
        fake.clone(),
    )
    .await;
    let mut client = admin(addr, &ca).await.with_bootstrap_retry(fast_retry());
    assert_eq!(
        client.bootstrap().await.unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    assert_eq!(*fake.bootstrap_calls.lock().unwrap(), 4);
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_gives_up_in_time() {
    let ca = os_ca();
    let already = Fake {
        bootstrap: Mutex::new(VecDeque::from([Status::already_exists(
            "etcd data directory is not empty",
        )])),
        ..Fake::default()
    };
    let addr = normal_node(&ca, already).await;
    let mut client = admin(addr, &ca).await.with_bootstrap_retry(fast_retry());
    assert_eq!(
        client.bootstrap().await.unwrap(),
        BootstrapOutcome::AlreadyBootstrapped
    );

    let worker = Fake {
        bootstrap: Mutex::new(VecDeque::from([Status::failed_precondition(
            "bootstrap can only be performed on a control plane node",
        )])),
        ..Fake::default()
    };
    let addr = normal_node(&ca, worker).await;
    let mut client = admin(addr, &ca).await.with_bootstrap_retry(fast_retry());
    let error = client.bootstrap().await.unwrap_err();
    assert_eq!(error.code(), Some(Code::FailedPrecondition), "not retried");

    let never = Fake {
        bootstrap: Mutex::new(
            std::iter::repeat_with(|| Status::unavailable("down"))
                .take(1000)
                .collect(),
        ),
        ..Fake::default()
    };
    let addr = normal_node(&ca, never).await;
    let mut client = admin(addr, &ca).await.with_bootstrap_retry(BootstrapRetry {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(20),
        max_elapsed: Duration::from_millis(200),
    });
    let error = client.bootstrap().await.unwrap_err();
    let TalosClientError::Rpc {
        addr: at,
        method,
        code,
        message,
    } = &error
    else {
        panic!("expected an RPC error, got {error}");
    };
    assert_eq!(
        (*at, *method, *code),
        (addr, "Bootstrap", Code::Unavailable)
    );
    assert_eq!(message, "down");
}

#[tokio::test]
async fn kubeconfig_chunks_are_unpacked() {
    let ca = os_ca();
    let text = "apiVersion: v1\nkind: Config\n";
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "kubeconfig", text.as_bytes())
        .unwrap();
    let mut archive = tar.into_inner().unwrap();
    archive.flush().unwrap();
    let archive = archive.finish().unwrap();
    let (a, b) = archive.split_at(archive.len() / 2);
    let fake = Fake {
        kubeconfig: vec![a.to_vec(), b.to_vec()],
        ..Fake::default()
    };
    let addr = normal_node(&ca, fake).await;
    let mut client = admin(addr, &ca).await;
    assert_eq!(client.kubeconfig().await.unwrap(), text);

    let garbage = Fake {
        kubeconfig: vec![b"not a tar.gz".to_vec()],
        ..Fake::default()
    };
    let addr = normal_node(&ca, garbage).await;
    let error = admin(addr, &ca).await.kubeconfig().await.unwrap_err();
    assert!(
        matches!(
            error,
            TalosClientError::Protocol {
                method: "Kubeconfig",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn per_node_errors_in_metadata_are_errors() {
    let ca = os_ca();
    let fake = Fake {
        node_error: true,
        ..Fake::default()
    };
    let addr = normal_node(&ca, fake).await;
    let error = admin(addr, &ca).await.version().await.unwrap_err();
    let TalosClientError::Node {
        hostname,
        message,
        code,
        ..
    } = &error
    else {
        panic!("expected a node error, got {error}");
    };
    assert_eq!(hostname, "10.5.0.2");
    assert!(message.contains("connection refused"), "{message}");
    assert_eq!(*code, Some(Code::Unavailable));
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let error = TalosClient::maintenance(addr, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(error, TalosClientError::Connect { addr: a, .. } if a == addr),
        "{error}"
    );
}
