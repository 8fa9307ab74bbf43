//! One Talos node in maintenance mode: a TLS listener on `<server ip>:50000` that insists on
//! ALPN `h2` and serves HTTP/2 gRPC through [`super::grpc`]. Stopping a node closes the
//! listener and every open connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::grpc::{self, NodeInfo};
use super::tls;

/// The Talos API port (apid), not configurable on real Talos either.
pub const TALOS_API_PORT: u16 = 50000;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node.
pub(crate) struct NodeHandle {
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// Closes the listener and all connections, and waits until they are gone.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
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
            StartError::Tls(e) => write!(f, "cannot build the maintenance TLS identity: {e}"),
        }
    }
}

/// Binds `<ip>:50000` with a fresh maintenance identity and starts serving.
pub(crate) async fn start(node: NodeInfo) -> Result<NodeHandle, StartError> {
    let addr = SocketAddr::from((node.ip, TALOS_API_PORT));
    let config = tls::server_config(node.ip, &node.hostname).map_err(StartError::Tls)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| StartError::Bind(addr, e))?;
    tracing::info!(
        server = %node.server_id,
        hostname = %node.hostname,
        %addr,
        version = %node.image.version,
        "Talos node up in maintenance mode"
    );
    let task = tokio::spawn(serve(listener, TlsAcceptor::from(config), Arc::new(node)));
    Ok(NodeHandle { task })
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, node: Arc<NodeInfo>) {
    // Dropped (and so aborted) together with this task.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(node = %node.ip, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let node = node.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(node = %node.ip, %peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                // grpc-go (and so Talos) refuses connections that did not negotiate h2.
                tracing::debug!(node = %node.ip, %peer, "client did not offer ALPN h2; closing");
                return;
            }
            let service = service_fn(move |request| {
                let node = node.clone();
                async move { Ok::<_, Infallible>(grpc::handle(&node, request).await) }
            });
            if let Err(error) = http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, %error, "HTTP/2 connection ended with an error");
            }
        });
    }
}
