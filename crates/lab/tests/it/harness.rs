//! Shared helpers: start a lab on a temporary directory, speak JSON:API to it, wait for states.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use lab::{LabConfig, LabHandle};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// The vanilla Image Factory schematic.
pub const VANILLA: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/// A factory PXE URL that boots Talos.
pub fn talos_ipxe() -> String {
    format!("https://pxe.factory.talos.dev/pxe/{VANILLA}/v1.11.5/metal-amd64")
}

/// A fast test configuration, with rate limits high enough for tight polling loops (tests of
/// the limits lower them again). No address block: each lab claims a free one (see
/// `LabHandle::ip_block`), so labs running in parallel never share addresses.
pub fn config() -> LabConfig {
    LabConfig {
        time_scale: 0.001,
        reads_per_minute: 100_000,
        writes_per_minute: 1_000,
        ..LabConfig::default()
    }
}

/// A running lab and a client for it.
pub struct TestLab {
    pub handle: LabHandle,
    pub dir: tempfile::TempDir,
    client: reqwest::Client,
    pub key: String,
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// Starts a lab with `config` on a fresh directory.
pub async fn start(config: LabConfig) -> TestLab {
    let dir = tempfile::tempdir().unwrap();
    let handle = start_in(config, dir.path()).await;
    TestLab {
        handle,
        dir,
        client: client(),
        key: "test-key".into(),
    }
}

/// Starts a lab with `config` on `dir`.
pub async fn start_in(config: LabConfig, dir: &Path) -> LabHandle {
    lab::start(config, dir, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("lab starts")
}

/// A response: status, headers and JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestLab {
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.handle.url()))
            .bearer_auth(&self.key)
            .header("accept", "application/vnd.api+json")
            .query(query);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, &[], Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, &[], None).await
    }

    /// `GET /_lab/stats` without credentials.
    pub async fn stats(&self) -> Value {
        let response = self
            .client
            .get(format!("{}/_lab/stats", self.handle.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `GET /_lab/<path>` (with its query) without credentials; expects 200 and JSON.
    pub async fn lab_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/_lab/{path}", self.handle.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/_lab/{path}");
        response.json().await.unwrap()
    }

    /// Orders a server and returns the 201 body's `data`.
    pub async fn create(&self, attributes: Value) -> Value {
        let reply = self.post("/servers", order(attributes)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["data"].clone()
    }

    /// Polls the server until it reports `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.get(&format!("/servers/{id}"), &[]).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            if reply.body["data"]["attributes"]["status"] == status {
                return reply.body["data"].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server {id} never reached {status}: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A create body: an iPXE Talos order of c2-small-x86 in CHI, with `overrides` merged into the
/// attributes (a `null` override removes the attribute).
pub fn order(overrides: Value) -> Value {
    let mut attributes = json!({
        "project": "proj_lab",
        "plan": "c2-small-x86",
        "site": "CHI",
        "operating_system": "ipxe",
        "hostname": "talos-cp-1",
        "billing": "hourly",
        "ipxe": talos_ipxe(),
    });
    if let Value::Object(overrides) = overrides {
        for (key, value) in overrides {
            if value.is_null() {
                attributes.as_object_mut().unwrap().remove(&key);
            } else {
                attributes[key] = value;
            }
        }
    }
    json!({"data": {"type": "servers", "attributes": attributes}})
}
