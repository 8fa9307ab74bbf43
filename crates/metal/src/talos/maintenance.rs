//! Is this node's Talos API in maintenance mode? A single, cheap probe of port 50000.
//!
//! A node booted from the Image Factory without a machine configuration runs the maintenance
//! API: TLS with a certificate from an ephemeral CA generated at boot (so it cannot be verified,
//! `talosctl --insecure` skips verification), **no** client certificate requested, ALPN `h2`
//! required, and `MachineService/Version` answering gRPC `Unimplemented` ("API is not implemented
//! in maintenance mode") to anyone not on SideroLink. An installed node runs apid with mutual
//! TLS: it demands a client certificate signed by the cluster's OS CA and aborts the handshake
//! (TLS 1.2) or the first request (TLS 1.3) with a `certificate_required`/`bad_certificate`
//! alert.
//!
//! [`probe`] connects, handshakes with a verifier that accepts any certificate but still checks
//! the handshake signatures (so the peer does hold the key of the certificate it shows), requires
//! ALPN `h2`, computes the leaf's SPKI fingerprint as `talosctl` prints it, and calls `Version`
//! over HTTP/2 with an empty request.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{Method, Request, StatusCode};
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::TalosError;

/// The gRPC method called by the probe.
const VERSION_PATH: &str = "/machine.MachineService/Version";

/// A gRPC length-prefixed message frame holding an empty `VersionRequest`: not compressed,
/// length 0.
const EMPTY_GRPC_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

/// gRPC status `UNIMPLEMENTED`: what maintenance mode answers to `Version`.
const GRPC_UNIMPLEMENTED: u32 = 12;

/// What [`probe`] found on a node's port 50000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Talos maintenance mode: TLS without a client certificate worked, ALPN `h2` was negotiated
    /// and `Version` answered gRPC `Unimplemented` (12).
    Maintenance {
        /// `base64(sha256(SubjectPublicKeyInfo))` of the server's leaf certificate, the
        /// fingerprint the node's console prints and `talosctl` can pin.
        spki_sha256: String,
    },
    /// Nothing answered: the TCP connection was refused, timed out or could not be routed.
    NotListening {
        /// What the connection attempt reported.
        reason: String,
    },
    /// The server demanded a client certificate (mutual TLS): the normal-mode apid of an
    /// installed node.
    Installed {
        /// How the demand showed (the TLS alert, or a certificate request followed by a dropped
        /// connection).
        reason: String,
    },
    /// Anything else: no TLS, no ALPN `h2`, an HTTP error, a gRPC status other than 12, a
    /// timeout after connecting…
    Unexpected {
        /// What was seen.
        reason: String,
    },
}

impl ProbeOutcome {
    /// True for [`ProbeOutcome::Maintenance`].
    pub fn is_maintenance(&self) -> bool {
        matches!(self, ProbeOutcome::Maintenance { .. })
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Maintenance { spki_sha256 } => {
                write!(f, "maintenance mode (SPKI SHA-256 {spki_sha256})")
            }
            ProbeOutcome::NotListening { reason } => write!(f, "not listening: {reason}"),
            ProbeOutcome::Installed { reason } => write!(f, "installed (mutual TLS): {reason}"),
            ProbeOutcome::Unexpected { reason } => write!(f, "unexpected answer: {reason}"),
        }
    }
}

/// The SPKI fingerprint of a DER certificate as `talosctl` computes it: standard base64 (with
/// padding) of the SHA-256 of the certificate's raw `SubjectPublicKeyInfo`.
pub fn spki_fingerprint(cert_der: &[u8]) -> Result<String, TalosError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| {
        TalosError::InvalidCertificate {
            reason: e.to_string(),
        }
    })?;
    if !rest.is_empty() {
        return Err(TalosError::InvalidCertificate {
            reason: format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            ),
        });
    }
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(STANDARD.encode(Sha256::digest(spki)))
}

/// Probes the Talos API at `addr` (normally `<node IP>:50000`), spending at most `timeout` in
/// total (TCP connect, TLS handshake and the `Version` call). Never fails: every finding is a
/// [`ProbeOutcome`].
pub async fn probe(addr: SocketAddr, timeout: Duration) -> ProbeOutcome {
    let deadline = Instant::now() + timeout;
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => {
            return ProbeOutcome::NotListening {
                reason: format!("TCP connect to {addr} timed out after {timeout:?}"),
            };
        }
        Ok(Err(e)) => {
            return ProbeOutcome::NotListening {
                reason: format!("TCP connect to {addr} failed: {e}"),
            };
        }
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);

    let state = Arc::new(ProbeState::default());
    let outcome = match tokio::time::timeout_at(deadline, talk(addr, tcp, Arc::clone(&state))).await
    {
        Ok(outcome) => outcome,
        Err(_) if state.cert_requested() => ProbeOutcome::Installed {
            reason: format!(
                "{addr} requested a client certificate, then gave no answer within {timeout:?}"
            ),
        },
        Err(_) => ProbeOutcome::Unexpected {
            reason: format!(
                "{addr} accepted TCP but the TLS handshake and Version call did not finish \
                     within {timeout:?}"
            ),
        },
    };
    tracing::debug!(%addr, outcome = %outcome, "probed the Talos API");
    outcome
}

/// TLS, ALPN, fingerprint and the `Version` call on an established TCP connection.
async fn talk(addr: SocketAddr, tcp: TcpStream, state: Arc<ProbeState>) -> ProbeOutcome {
    let config = match client_config(Arc::clone(&state)) {
        Ok(config) => config,
        Err(e) => {
            return ProbeOutcome::Unexpected {
                reason: format!("cannot build the TLS client configuration: {e}"),
            };
        }
    };
    let connector = TlsConnector::from(Arc::new(config));
    let server_name = ServerName::IpAddress(addr.ip().into());
    let tls = match connector.connect(server_name, tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            state.record(&e);
            return classify_failure(addr, &state, "the TLS handshake", &e.to_string());
        }
    };

    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = session
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| cert.as_ref().to_vec());
    if alpn.as_deref() != Some(b"h2".as_slice()) {
        let negotiated = match &alpn {
            Some(p) => format!("{:?}", String::from_utf8_lossy(p)),
            None => "none".to_owned(),
        };
        let mut reason = format!(
            "{addr} did not negotiate ALPN h2 (negotiated: {negotiated}); Talos requires h2"
        );
        if state.cert_requested() {
            reason.push_str("; it also requested a client certificate");
        }
        return ProbeOutcome::Unexpected { reason };
    }
    let Some(leaf) = leaf else {
        return ProbeOutcome::Unexpected {
            reason: format!("{addr} presented no certificate"),
        };
    };
    let spki_sha256 = match spki_fingerprint(&leaf) {
        Ok(fp) => fp,
        Err(e) => {
            return ProbeOutcome::Unexpected {
                reason: format!("{addr} presented a certificate that cannot be parsed: {e}"),
            };
        }
    };
    tracing::debug!(%addr, spki_sha256 = %spki_sha256, "Talos API certificate fingerprint");

    let io = Recording {
        inner: tls,
        state: Arc::clone(&state),
    };
    match version_call(addr, io).await {
        Ok(status) if status.code == GRPC_UNIMPLEMENTED => {
            ProbeOutcome::Maintenance { spki_sha256 }
        }
        Ok(status) => ProbeOutcome::Unexpected {
            reason: format!(
                "{addr} answered Version with gRPC status {} ({}){}; maintenance mode answers \
                 12 (UNIMPLEMENTED)",
                status.code,
                grpc_code_name(status.code),
                if status.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", status.message)
                }
            ),
        },
        Err(RpcFailure::Protocol(reason)) => ProbeOutcome::Unexpected {
            reason: format!("{addr}: {reason}"),
        },
        Err(RpcFailure::Transport(e)) => {
            classify_failure(addr, &state, "the Version call", &e.to_string())
        }
    }
}

/// Turns a failed handshake or call into an outcome: a certificate alert, or a certificate
/// request followed by any failure, means mutual TLS; anything else is unexpected.
fn classify_failure(
    addr: SocketAddr,
    state: &ProbeState,
    phase: &str,
    error: &str,
) -> ProbeOutcome {
    match state.tls_error() {
        Some(rustls::Error::AlertReceived(
            alert @ (AlertDescription::CertificateRequired | AlertDescription::BadCertificate),
        )) => ProbeOutcome::Installed {
            reason: format!(
                "{addr} refused a connection without a client certificate (TLS alert {alert:?} \
                 during {phase})"
            ),
        },
        _ if state.cert_requested() => ProbeOutcome::Installed {
            reason: format!(
                "{addr} requested a client certificate and {phase} failed without one: {error}"
            ),
        },
        _ => ProbeOutcome::Unexpected {
            reason: format!("{phase} with {addr} failed: {error}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// What the TLS layer saw during one probe, shared between the TLS configuration (client
/// certificate requests), the I/O wrapper (TLS errors surfacing inside HTTP/2) and the prober.
#[derive(Debug, Default)]
struct ProbeState {
    cert_requested: AtomicBool,
    tls_error: Mutex<Option<rustls::Error>>,
}

impl ProbeState {
    fn cert_requested(&self) -> bool {
        self.cert_requested.load(Ordering::SeqCst)
    }

    /// Keeps the first rustls error carried by an I/O error (tokio-rustls wraps them).
    fn record(&self, error: &io::Error) {
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return;
        };
        if let Ok(mut slot) = self.tls_error.lock()
            && slot.is_none()
        {
            *slot = Some(tls.clone());
        }
    }

    fn tls_error(&self) -> Option<rustls::Error> {
        self.tls_error.lock().ok().and_then(|slot| slot.clone())
    }
}

/// The probe's TLS client: ring provider, any server certificate, ALPN `h2`, no client
/// certificate (a request for one is noted, then answered with an empty certificate list).
fn client_config(state: Arc<ProbeState>) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = AnyServerCert::new(&provider);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(NoClientCert { state }));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts any server certificate, as `talosctl --insecure` does (`InsecureSkipVerify`): the
/// maintenance certificate comes from an ephemeral CA that nobody else knows. The handshake
/// signatures are still verified, so the server does own the key the fingerprint is taken of.
#[derive(Debug)]
pub(super) struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AnyServerCert {
    pub(super) fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Trust on first use for maintenance mode, as SSH does with host keys: accepts exactly the
/// server whose leaf certificate carries the public key with the SPKI SHA-256 fingerprint seen
/// when the node was first probed (step 5), and refuses every other one. There is no CA to
/// verify against (the maintenance certificate comes from an ephemeral CA made at boot), so the
/// key itself is what is pinned; the handshake signatures are verified against that
/// certificate, so the peer proves it holds the pinned private key, not just a copy of the
/// certificate. The fingerprint the server did present is kept ([`PinnedServerCert::presented`])
/// so that a refusal can name both.
#[derive(Debug)]
pub struct PinnedServerCert {
    /// The handshake-signature checks, shared with the unpinned verifier.
    signatures: AnyServerCert,
    pinned: String,
    presented: Mutex<Option<String>>,
}

impl PinnedServerCert {
    /// A verifier accepting only the key whose `base64(sha256(SPKI))` is `spki_sha256` (as
    /// [`spki_fingerprint`] computes it and [`ProbeOutcome::Maintenance`] reports it).
    pub fn new(provider: &CryptoProvider, spki_sha256: &str) -> Self {
        Self {
            signatures: AnyServerCert::new(provider),
            pinned: spki_sha256.to_owned(),
            presented: Mutex::new(None),
        }
    }

    /// The fingerprint pinned.
    pub fn pinned(&self) -> &str {
        &self.pinned
    }

    /// The fingerprint the server presented on the latest handshake, if it got that far.
    pub fn presented(&self) -> Option<String> {
        self.presented.lock().ok().and_then(|p| p.clone())
    }

    /// True when the latest handshake presented another key than the pinned one.
    pub fn mismatched(&self) -> bool {
        self.presented().is_some_and(|p| p != self.pinned)
    }
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = spki_fingerprint(end_entity)
            .map_err(|e| rustls::Error::General(format!("unusable server certificate: {e}")))?;
        let matches = presented == self.pinned;
        if let Ok(mut slot) = self.presented.lock() {
            *slot = Some(presented.clone());
        }
        if matches {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server presented the key with SPKI SHA-256 {presented}, not the pinned {}",
                self.pinned
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// Never offers a client certificate, but records that the server asked for one: maintenance
/// mode never does, mutual-TLS apid always does.
#[derive(Debug)]
struct NoClientCert {
    state: Arc<ProbeState>,
}

impl ResolvesClientCert for NoClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.state.cert_requested.store(true, Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// Passes I/O through and records the rustls error behind a failed read or write. HTTP/2 only
/// keeps the text of I/O errors, so the TLS alert is captured here.
struct Recording<S> {
    inner: S,
    state: Arc<ProbeState>,
}

impl<S> Recording<S> {
    fn seen<T>(&self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &result {
            self.state.record(e);
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.seen(result)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.seen(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.seen(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.seen(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.seen(result)
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC over HTTP/2
// ---------------------------------------------------------------------------------------------

/// A gRPC status as read from `grpc-status` / `grpc-message`.
#[derive(Debug)]
struct GrpcStatus {
    code: u32,
    message: String,
}

/// Why the `Version` call produced no gRPC status.
#[derive(Debug)]
enum RpcFailure {
    /// The HTTP/2 connection or stream failed (possibly because TLS did).
    Transport(h2::Error),
    /// The server answered, but not as a gRPC server.
    Protocol(String),
}

impl From<h2::Error> for RpcFailure {
    fn from(e: h2::Error) -> Self {
        RpcFailure::Transport(e)
    }
}

/// Aborts the spawned HTTP/2 connection driver when the probe ends or is cancelled.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `POST /machine.MachineService/Version` with an empty message; returns the gRPC status from
/// the response headers (trailers-only response) or the trailers.
async fn version_call(
    addr: SocketAddr,
    io: Recording<TlsStream<TcpStream>>,
) -> Result<GrpcStatus, RpcFailure> {
    let (client, connection) = h2::client::Builder::new()
        .handshake::<_, &'static [u8]>(io)
        .await?;
    let _driver = AbortOnDrop(tokio::spawn(connection));

    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("https://{addr}{VERSION_PATH}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(http::header::USER_AGENT, "cto-metal-probe")
        .body(())
        .map_err(|e| RpcFailure::Protocol(format!("cannot build the request: {e}")))?;
    let mut client = client.ready().await?;
    let (response, mut body) = client.send_request(request, false)?;
    body.send_data(EMPTY_GRPC_MESSAGE, true)?;

    let (parts, mut body) = response.await?.into_parts();
    if parts.status != StatusCode::OK {
        return Err(RpcFailure::Protocol(format!(
            "Version answered HTTP status {} instead of 200",
            parts.status
        )));
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/grpc") {
        return Err(RpcFailure::Protocol(format!(
            "Version answered content-type {content_type:?}, not application/grpc"
        )));
    }
    if let Some(status) = grpc_status(&parts.headers) {
        return status;
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    match body.trailers().await? {
        Some(trailers) => grpc_status(&trailers).unwrap_or_else(|| {
            Err(RpcFailure::Protocol(
                "Version's trailers carry no grpc-status".to_owned(),
            ))
        }),
        None => Err(RpcFailure::Protocol(
            "Version's answer carries no grpc-status".to_owned(),
        )),
    }
}

/// Reads `grpc-status` and `grpc-message` from headers or trailers; `None` without a status.
fn grpc_status(headers: &http::HeaderMap) -> Option<Result<GrpcStatus, RpcFailure>> {
    let raw = headers.get("grpc-status")?;
    let code = match raw.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(code) => code,
        None => {
            return Some(Err(RpcFailure::Protocol(format!(
                "Version answered an unreadable grpc-status {raw:?}"
            ))));
        }
    };
    let message = headers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    Some(Ok(GrpcStatus { code, message }))
}

/// Decodes the percent-encoding gRPC uses for `grpc-message`; malformed escapes are kept.
fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(hi), Some(lo)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical name of a gRPC status code.
fn grpc_code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "non-standard",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(
            percent_decode(b"API is not implemented in maintenance mode"),
            "API is not implemented in maintenance mode"
        );
        assert_eq!(percent_decode(b"a%20b%25c"), "a b%c");
        assert_eq!(percent_decode(b"bad%zzescape%2"), "bad%zzescape%2");
        assert_eq!(percent_decode(b"%E2%9C%93"), "\u{2713}");
    }

    #[test]
    fn grpc_status_from_headers() {
        let mut headers = http::HeaderMap::new();
        assert!(grpc_status(&headers).is_none());
        headers.insert("grpc-status", "12".parse().unwrap());
        headers.insert("grpc-message", "not%20here".parse().unwrap());
        let status = grpc_status(&headers).unwrap().unwrap();
        assert_eq!((status.code, status.message.as_str()), (12, "not here"));
        headers.insert("grpc-status", "twelve".parse().unwrap());
        assert!(matches!(
            grpc_status(&headers),
            Some(Err(RpcFailure::Protocol(_)))
        ));
    }

    #[test]
    fn fingerprint_rejects_garbage() {
        assert!(matches!(
            spki_fingerprint(b"not a certificate"),
            Err(TalosError::InvalidCertificate { .. })
        ));
    }

    #[test]
    fn outcome_display() {
        let o = ProbeOutcome::Maintenance {
            spki_sha256: "abc=".into(),
        };
        assert!(o.is_maintenance());
        assert_eq!(o.to_string(), "maintenance mode (SPKI SHA-256 abc=)");
        let o = ProbeOutcome::NotListening {
            reason: "refused".into(),
        };
        assert!(!o.is_maintenance());
        assert_eq!(o.to_string(), "not listening: refused");
    }
}
