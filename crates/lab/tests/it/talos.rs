//! Talos nodes in maintenance mode on the servers' loopback addresses.

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
    let lab = harness::start(config(209)).await;
    let ip = Ipv4Addr::new(127, 0, 209, 1);
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
    assert!(san.value.general_names.iter().any(|n| matches!(n, x509_parser::extensions::GeneralName::IPAddress(b) if *b == [127, 0, 209, 1])));
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

    let apply = grpc_call(
        tls_connect(ip, &[b"h2"]).await.unwrap(),
        ip,
        "/machine.MachineService/ApplyConfiguration",
    )
    .await;
    assert_eq!(apply.headers()["grpc-status"], "12");

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
    let mut cfg = config(213);
    cfg.timeline.disk_erasing = 1000.0;
    let lab = harness::start(cfg).await;
    let ip = Ipv4Addr::new(127, 0, 213, 1);
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
    let lab = harness::start(config(211)).await;
    let ip = Ipv4Addr::new(127, 0, 211, 1);
    let good = Ipv4Addr::new(127, 0, 211, 2);
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
