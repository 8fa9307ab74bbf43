//! What a maintenance-mode Talos node answers over gRPC. Every RPC gets a trailers-only
//! `Unimplemented` response ("API is not implemented in maintenance mode"), as real Talos does
//! for an insecure client.
//!
//! Extension point: [`apply_configuration`] is where `/machine.MachineService/ApplyConfiguration`
//! will be implemented (decode the request, validate and store the machine config, then move
//! the node out of maintenance mode). New RPCs are added to the `match` in [`handle`].

use std::net::Ipv4Addr;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::ipxe::BootImage;

/// Full method path of `MachineService.ApplyConfiguration`.
pub(crate) const APPLY_CONFIGURATION: &str = "/machine.MachineService/ApplyConfiguration";

/// The message of real Talos for RPCs it does not serve in maintenance mode.
pub(crate) const NOT_IN_MAINTENANCE: &str = "API is not implemented in maintenance mode";

/// gRPC status codes used here.
pub(crate) mod code {
    /// `UNIMPLEMENTED`.
    pub const UNIMPLEMENTED: u32 = 12;
}

/// The node a request reached.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub server_id: String,
    pub hostname: String,
    pub ip: Ipv4Addr,
    pub image: BootImage,
}

/// Answers one HTTP/2 request on a node's port 50000.
pub(crate) async fn handle(node: &NodeInfo, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED);
    }
    let is_grpc = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !is_grpc {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    tracing::debug!(node = %node.ip, path = request.uri().path(), "talos maintenance RPC");
    match request.uri().path() {
        APPLY_CONFIGURATION => apply_configuration(node, request).await,
        _ => status(code::UNIMPLEMENTED, NOT_IN_MAINTENANCE),
    }
}

/// `MachineService.ApplyConfiguration` in maintenance mode. Not implemented yet: it answers like
/// every other RPC. This is the place to decode `ApplyConfigurationRequest`, validate the config
/// and hand it to the node.
pub(crate) async fn apply_configuration(
    node: &NodeInfo,
    _request: Request<Incoming>,
) -> Response<Body> {
    tracing::debug!(
        server = %node.server_id,
        hostname = %node.hostname,
        schematic = %node.image.schematic,
        version = %node.image.version,
        "ApplyConfiguration is not emulated yet"
    );
    status(code::UNIMPLEMENTED, NOT_IN_MAINTENANCE)
}

/// A trailers-only gRPC response: HTTP 200, `content-type: application/grpc`, `grpc-status` and
/// `grpc-message` in the (only) header block, no body.
pub(crate) fn status(code: u32, message: &str) -> Response<Body> {
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header("grpc-status", code.to_string());
    if !message.is_empty() {
        builder = builder.header("grpc-message", percent_encode(message));
    }
    builder
        .body(Body::empty())
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII except `%` passes through.
fn percent_encode(message: &str) -> String {
    message
        .bytes()
        .map(|b| {
            if (0x20..=0x7e).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_only_unimplemented() {
        let r = status(code::UNIMPLEMENTED, NOT_IN_MAINTENANCE);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["grpc-message"], NOT_IN_MAINTENANCE);
        assert_eq!(percent_encode("50% ü"), "50%25 %C3%BC");
    }
}
