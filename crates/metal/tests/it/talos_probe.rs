//! `metal::talos::maintenance::probe` against local TLS servers that behave like Talos
//! maintenance mode, an installed node (mutual TLS), and a few things that are neither.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use metal::talos::maintenance::{ProbeOutcome, probe, spki_fingerprint};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ED25519, PublicKeyData as _,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const TIMEOUT: Duration = Duration::from_secs(5);

/// An Ed25519 CA and an Ed25519 leaf signed by it, as Talos maintenance mode generates at boot.
struct Pki {
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    /// base64(sha256(leaf SPKI)), computed from the key pair rather than the certificate.
    expected_spki: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::OrganizationName, "talos");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf_key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "talos-maintenance");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    Pki {
        ca_der: ca.der().clone(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key_der: leaf_key.serialize_der(),
        expected_spki: STANDARD.encode(Sha256::digest(leaf_key.subject_public_key_info())),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

enum ClientAuth {
    None,
    /// Require a client certificate signed by this CA (an installed node's apid).
    Required(CertificateDer<'static>),
}

fn server_config(
    pki: &Pki,
    versions: &[&'static SupportedProtocolVersion],
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone()));
    let mut config = builder.with_single_cert(pki.chain.clone(), key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// How the HTTP/2 server answers every request.
#[derive(Clone, Copy)]
enum Reply {
    /// A trailers-only gRPC response: `grpc-status` in the response headers, as grpc-go sends
    /// errors.
    TrailersOnly(&'static str),
    /// Headers, one empty message, then `grpc-status` in the trailers.
    InTrailers(&'static str),
    /// Plain HTTP error.
    HttpStatus(u16),
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// TLS, then HTTP/2 answering as told.
    Grpc(Reply),
    /// TLS, then nothing.
    TlsOnly,
    /// No TLS: write a line of text and close.
    PlainText,
    /// Accept TCP and never say anything.
    Silent,
}

/// Starts a server on 127.0.0.1:0 and returns its address.
async fn serve(config: Arc<ServerConfig>, behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = TlsAcceptor::from(Arc::clone(&config));
            tokio::spawn(async move {
                match behaviour {
                    Behaviour::PlainText => {
                        let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
                        let _ = tcp.shutdown().await;
                    }
                    Behaviour::Silent => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(tcp);
                    }
                    Behaviour::TlsOnly => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            drop(tls);
                        }
                    }
                    Behaviour::Grpc(reply) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = serve_h2(tls, reply).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn serve_h2(
    io: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    reply: Reply,
) -> Result<(), h2::Error> {
    let mut conn = h2::server::Builder::new()
        .handshake::<_, &'static [u8]>(io)
        .await?;
    while let Some(request) = conn.accept().await {
        let (request, mut respond) = request?;
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri().path(), "/machine.MachineService/Version");
        assert_eq!(request.headers()["content-type"], "application/grpc");
        assert_eq!(request.headers()["te"], "trailers");
        let grpc = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc");
        match reply {
            Reply::TrailersOnly(status) => {
                let response = grpc
                    .header("grpc-status", status)
                    .header("grpc-message", "API is not implemented in maintenance mode")
                    .body(())
                    .unwrap();
                respond.send_response(response, true)?;
            }
            Reply::InTrailers(status) => {
                let mut body = respond.send_response(grpc.body(()).unwrap(), false)?;
                body.send_data(&[0, 0, 0, 0, 0], false)?;
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", status.parse().unwrap());
                trailers.insert("grpc-message", "some%20message".parse().unwrap());
                body.send_trailers(trailers)?;
            }
            Reply::HttpStatus(code) => {
                let response = http::Response::builder()
                    .status(code)
                    .header("content-type", "text/plain")
                    .body(())
                    .unwrap();
                respond.send_response(response, true)?;
            }
        }
    }
    Ok(())
}

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

async fn maintenance_server(
    pki: &Pki,
    versions: &[&'static SupportedProtocolVersion],
    reply: Reply,
) -> SocketAddr {
    serve(
        server_config(pki, versions, ClientAuth::None, &[b"h2"]),
        Behaviour::Grpc(reply),
    )
    .await
}

#[tokio::test]
async fn maintenance_mode_trailers_only() {
    let pki = pki();
    let addr = maintenance_server(&pki, BOTH, Reply::TrailersOnly("12")).await;
    let outcome = probe(addr, TIMEOUT).await;
    assert_eq!(
        outcome,
        ProbeOutcome::Maintenance {
            spki_sha256: pki.expected_spki.clone()
        }
    );
    // The exported helper agrees with the independently computed fingerprint.
    assert_eq!(spki_fingerprint(&pki.chain[0]).unwrap(), pki.expected_spki);
    assert_ne!(spki_fingerprint(&pki.chain[1]).unwrap(), pki.expected_spki);
}

#[tokio::test]
async fn maintenance_mode_status_in_trailers() {
    let pki = pki();
    let addr = maintenance_server(&pki, BOTH, Reply::InTrailers("12")).await;
    assert_eq!(
        probe(addr, TIMEOUT).await,
        ProbeOutcome::Maintenance {
            spki_sha256: pki.expected_spki.clone()
        }
    );
}

#[tokio::test]
async fn maintenance_mode_over_tls12() {
    let pki = pki();
    let addr = maintenance_server(&pki, TLS12, Reply::TrailersOnly("12")).await;
    assert_eq!(
        probe(addr, TIMEOUT).await,
        ProbeOutcome::Maintenance {
            spki_sha256: pki.expected_spki.clone()
        }
    );
}

#[tokio::test]
async fn other_grpc_status_is_unexpected() {
    let pki = pki();
    for reply in [Reply::TrailersOnly("0"), Reply::InTrailers("16")] {
        let addr = maintenance_server(&pki, BOTH, reply).await;
        match probe(addr, TIMEOUT).await {
            ProbeOutcome::Unexpected { reason } => {
                assert!(reason.contains("gRPC status"), "{reason}");
            }
            other => panic!("expected Unexpected, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn http_error_is_unexpected() {
    let pki = pki();
    let addr = maintenance_server(&pki, BOTH, Reply::HttpStatus(404)).await;
    match probe(addr, TIMEOUT).await {
        ProbeOutcome::Unexpected { reason } => assert!(reason.contains("404"), "{reason}"),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn no_alpn_is_unexpected() {
    let pki = pki();
    let addr = serve(
        server_config(&pki, BOTH, ClientAuth::None, &[]),
        Behaviour::TlsOnly,
    )
    .await;
    match probe(addr, TIMEOUT).await {
        ProbeOutcome::Unexpected { reason } => assert!(reason.contains("ALPN h2"), "{reason}"),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn http11_only_alpn_is_unexpected() {
    let pki = pki();
    let addr = serve(
        server_config(&pki, BOTH, ClientAuth::None, &[b"http/1.1"]),
        Behaviour::TlsOnly,
    )
    .await;
    assert!(
        matches!(probe(addr, TIMEOUT).await, ProbeOutcome::Unexpected { .. }),
        "a server without h2 is not Talos"
    );
}

#[tokio::test]
async fn closed_port_is_not_listening() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match probe(addr, TIMEOUT).await {
        ProbeOutcome::NotListening { reason } => {
            assert!(reason.contains(&addr.to_string()), "{reason}")
        }
        other => panic!("expected NotListening, got {other:?}"),
    }
}

#[tokio::test]
async fn mutual_tls_is_installed() {
    for versions in [TLS13, TLS12] {
        let pki = pki();
        let config = server_config(
            &pki,
            versions,
            ClientAuth::Required(pki.ca_der.clone()),
            &[b"h2"],
        );
        let addr = serve(config, Behaviour::Grpc(Reply::TrailersOnly("12"))).await;
        match probe(addr, TIMEOUT).await {
            ProbeOutcome::Installed { reason } => {
                assert!(reason.contains("client certificate"), "{reason}");
            }
            other => panic!("expected Installed with {versions:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn plain_text_is_unexpected() {
    let pki = pki();
    let addr = serve(
        server_config(&pki, BOTH, ClientAuth::None, &[b"h2"]),
        Behaviour::PlainText,
    )
    .await;
    match probe(addr, TIMEOUT).await {
        ProbeOutcome::Unexpected { reason } => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}

#[tokio::test]
async fn silence_is_unexpected_within_the_timeout() {
    let pki = pki();
    let addr = serve(
        server_config(&pki, BOTH, ClientAuth::None, &[b"h2"]),
        Behaviour::Silent,
    )
    .await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = probe(addr, timeout).await;
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
    match outcome {
        ProbeOutcome::Unexpected { reason } => assert!(reason.contains("within"), "{reason}"),
        other => panic!("expected Unexpected, got {other:?}"),
    }
}
