//! One Talos node's listener: TLS on `<server ip>:50000` (maintenance: server-only; normal:
//! client certificates required), ALPN `h2` insisted upon, and HTTP/2 gRPC served through
//! [`super::grpc`]. The client certificate's organizations become the caller's roles. Stopping a
//! node closes the listener at once and lets open connections finish the calls in flight (HTTP/2
//! GOAWAY) for a moment, so the reply to the `ApplyConfiguration` that triggered a reboot still
//! reaches the client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::grpc::{self, Node, NodeMode, PeerRoles};
use crate::faults::Api;

/// The Talos API port (apid), not configurable on real Talos either.
pub const TALOS_API_PORT: u16 = 50000;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections may finish their calls once the node stops.
const DRAIN: Duration = Duration::from_secs(2);

/// A running node.
pub(crate) struct NodeHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// Closes the listener, lets connections finish in-flight calls briefly, then closes them,
    /// and waits until all of it is done.
    pub async fn stop(self) {
        let NodeHandle { stop, mut task } = self;
        let _ = stop.send(true);
        if tokio::time::timeout(DRAIN + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Why a node could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    Bind(SocketAddr, std::io::Error),
    Tls(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Tls(e) => write!(f, "cannot build the node's TLS identity: {e}"),
        }
    }
}

/// Binds `<ip>:50000` and serves `node` with `tls`.
pub(crate) async fn start(
    node: Node,
    tls: Arc<rustls::ServerConfig>,
) -> Result<NodeHandle, StartError> {
    let addr = SocketAddr::from((node.ident.ip, TALOS_API_PORT));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind(addr, e))?;
    let mode = match &node.mode {
        NodeMode::Maintenance => "maintenance",
        NodeMode::Normal { .. } => "normal (mutual TLS)",
    };
    tracing::info!(
        server = %node.ident.server_id,
        hostname = %node.ident.hostname,
        %addr,
        version = %node.ident.image.version,
        mode,
        "Talos node up"
    );
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        TlsAcceptor::from(tls),
        Arc::new(node),
        stopped,
    ));
    Ok(NodeHandle { stop, task })
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    node: Arc<Node>,
    mut stopped: watch::Receiver<bool>,
) {
    // Dropped (and so aborted) together with this task.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(node = %node.ident.ip, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = until_stopped(&mut stopped) => break,
        };
        while connections.try_join_next().is_some() {}
        let faults = &node.shared.lab.faults;
        if faults.spec.talos.reset > 0.0 && faults.reset(Api::Talos) {
            // An injected `talos.reset`: the connection is dropped before the handshake.
            drop(tcp);
            continue;
        }
        let acceptor = acceptor.clone();
        let node = node.clone();
        let stopped = stopped.clone();
        connections.spawn(connection(acceptor, node, tcp, peer, stopped));
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(node = %node.ident.ip, "connections did not drain in time; closing them");
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    node: Arc<Node>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(node = %node.ident.ip, %peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        },
        _ = until_stopped(&mut stopped) => return,
    };
    let session = tls.get_ref().1;
    if session.alpn_protocol() != Some(b"h2".as_slice()) {
        // grpc-go (and so Talos) refuses connections that did not negotiate h2.
        tracing::debug!(node = %node.ident.ip, %peer, "client did not offer ALPN h2; closing");
        return;
    }
    let roles = PeerRoles(
        session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|leaf| organizations(leaf))
            .unwrap_or_default(),
    );
    let service = service_fn(move |request| {
        let node = node.clone();
        let roles = roles.clone();
        async move { Ok::<_, Infallible>(grpc::handle(node, roles, request).await) }
    });
    let conn =
        http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = until_stopped(&mut stopped) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "HTTP/2 connection ended with an error");
    }
}

/// Resolves once the node is told to stop (or its handle is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The subject organizations of a DER certificate (Talos roles such as `os:admin`).
fn organizations(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    cert.subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect()
}
