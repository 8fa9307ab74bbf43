//! A gRPC client for one Talos node's API on port 50000 (apid), over tonic with our own TLS.
//!
//! Two ways in, matching the node's two lives:
//!
//! * [`TalosClient::maintenance`] — a node booted without a configuration. Its certificate comes
//!   from an ephemeral CA made at boot, so it cannot be verified (`talosctl --insecure`): any
//!   certificate is accepted, but the handshake signatures are still checked (the server holds
//!   the key of the certificate it shows) and the leaf's SPKI SHA-256 fingerprint is logged and
//!   kept ([`TalosClient::server_fingerprint`]). No client certificate is sent.
//! * [`TalosClient::connect`] — an installed node: mutual TLS with the client certificate and key
//!   of a [`Talosconfig`], the server certificate verified against the talosconfig's CA (the
//!   cluster's OS CA) with the node's IP address as the server name.
//!
//! Both insist on ALPN `h2` (grpc-go, and so Talos, refuse anything else), use the ring provider,
//! and dial the node itself without a `nodes` header, so errors are plain gRPC statuses; per-node
//! errors that a proxying apid folds into `messages[].metadata.error` are still checked and
//! reported as [`TalosClientError::Node`]. Every error names the node's address, the method and
//! the gRPC code and message.

use std::fmt;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::maintenance::{AnyServerCert, PinnedServerCert, spki_fingerprint};
use super::pki;
use super::proto::common;
use super::proto::machine::{self, machine_service_client::MachineServiceClient};
use super::proto::storage::{self, storage_service_client::StorageServiceClient};
use super::talosconfig::Talosconfig;

/// The largest message accepted from a node, as in talosctl (`constants.GRPCMaxMessageSize`).
const MAX_MESSAGE_SIZE: usize = 32 * 1024 * 1024;

/// Why a call to a Talos node failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TalosClientError {
    /// The TLS material (talosconfig CA, certificate or key) cannot be used.
    #[error("cannot use the TLS credentials for the Talos API at {addr}: {reason}")]
    Credentials {
        /// The node's API address.
        addr: SocketAddr,
        /// What is wrong with them.
        reason: String,
    },
    /// TCP, TLS (including a refused or unverifiable certificate) or HTTP/2 failed before any
    /// call could be made.
    #[error("cannot connect to the Talos API at {addr}: {reason}")]
    Connect {
        /// The node's API address.
        addr: SocketAddr,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The call failed with a gRPC status.
    #[error("Talos API at {addr}: {method} failed: gRPC {code:?}: {message}")]
    Rpc {
        /// The node's API address.
        addr: SocketAddr,
        /// The `MachineService` method, e.g. `Bootstrap`.
        method: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The gRPC status message (and, for transport failures, their causes).
        message: String,
    },
    /// The call succeeded but the node it was (or was proxied) to reported an error in
    /// `messages[].metadata`.
    #[error("Talos node {hostname} (via {addr}): {method} failed: {message}")]
    Node {
        /// The node's API address.
        addr: SocketAddr,
        /// The `MachineService` method.
        method: &'static str,
        /// `metadata.hostname`, or the address's IP when the node left it empty.
        hostname: String,
        /// `metadata.error`, or `metadata.status.message`.
        message: String,
        /// `metadata.status.code`, when present.
        code: Option<Code>,
    },
    /// The node in maintenance mode presented another key than the one pinned when it was
    /// first seen ([`TalosClient::maintenance_pinned`]): nothing was sent to it.
    #[error(
        "the Talos maintenance API at {addr} presented a different key (SPKI SHA-256 {presented}) from the one recorded when the node was first seen in maintenance mode ({pinned}); nothing was sent to it"
    )]
    KeyChanged {
        /// The node's API address.
        addr: SocketAddr,
        /// The fingerprint pinned (first seen).
        pinned: String,
        /// The fingerprint presented now.
        presented: String,
    },
    /// The answer was not what the API promises (no messages, a kubeconfig archive that cannot
    /// be unpacked…).
    #[error("Talos API at {addr}: {method}: {reason}")]
    Protocol {
        /// The node's API address.
        addr: SocketAddr,
        /// The `MachineService` method.
        method: &'static str,
        /// What was wrong with the answer.
        reason: String,
    },
}

impl TalosClientError {
    /// The gRPC code of an [`Rpc`](Self::Rpc) error, or of a [`Node`](Self::Node) error that
    /// carried one.
    pub fn code(&self) -> Option<Code> {
        match self {
            TalosClientError::Rpc { code, .. } => Some(*code),
            TalosClientError::Node { code, .. } => *code,
            _ => None,
        }
    }
}

/// How `ApplyConfiguration` should take the configuration: the modes that work in maintenance
/// mode and in normal mode alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Apply and reboot (in maintenance mode: install, then boot into the configuration).
    Reboot,
    /// Let the node choose: without a reboot if possible, else with one (talosctl's default).
    Auto,
}

impl ApplyMode {
    fn to_proto(self) -> machine::apply_configuration_request::Mode {
        match self {
            ApplyMode::Reboot => machine::apply_configuration_request::Mode::Reboot,
            ApplyMode::Auto => machine::apply_configuration_request::Mode::Auto,
        }
    }
}

/// The mode a node reports it actually used for `ApplyConfiguration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedMode {
    /// `REBOOT` (maintenance mode leaves the field at this zero value).
    Reboot,
    /// `AUTO`.
    Auto,
    /// `NO_REBOOT`: applied without a reboot.
    NoReboot,
    /// `STAGED`: kept for the next boot.
    Staged,
    /// `TRY`: applied, rolled back after a timeout.
    Try,
    /// A value this client does not know.
    Unknown(i32),
}

impl AppliedMode {
    fn from_proto(value: i32) -> Self {
        use machine::apply_configuration_request::Mode;
        match Mode::try_from(value) {
            Ok(Mode::Reboot) => AppliedMode::Reboot,
            Ok(Mode::Auto) => AppliedMode::Auto,
            Ok(Mode::NoReboot) => AppliedMode::NoReboot,
            Ok(Mode::Staged) => AppliedMode::Staged,
            Ok(Mode::Try) => AppliedMode::Try,
            Err(_) => AppliedMode::Unknown(value),
        }
    }
}

/// What a node said after accepting a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The mode the node used.
    pub mode: AppliedMode,
    /// The node's human-readable explanation (may be empty).
    pub mode_details: String,
    /// Validation warnings.
    pub warnings: Vec<String>,
}

/// The outcome of a successful [`TalosClient::bootstrap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// This call bootstrapped etcd.
    Bootstrapped,
    /// etcd had been bootstrapped before (`AlreadyExists`, "etcd data directory is not empty").
    AlreadyBootstrapped,
}

/// What `Version` reports about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    /// The Talos version, e.g. `v1.11.5`.
    pub tag: String,
    /// The git commit Talos was built from.
    pub sha: String,
    /// The build time, as Talos prints it.
    pub built: String,
    /// The Go version Talos was built with.
    pub go_version: String,
    /// The operating system (`linux`).
    pub os: String,
    /// The architecture (`amd64`, `arm64`).
    pub arch: String,
    /// The platform name (`metal`), when reported.
    pub platform: Option<String>,
    /// The platform mode (`metal`, `container`…), when reported.
    pub platform_mode: Option<String>,
    /// Whether role-based access control is on, when reported.
    pub rbac: Option<bool>,
}

/// One Talos service as `ServiceList` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service ID: `apid`, `etcd`, `kubelet`, `machined`…
    pub id: String,
    /// Its state: `Running`, `Preparing`, `Waiting`, `Finished`, `Failed`…
    pub state: String,
    /// `Some(true)` when healthy, `Some(false)` when unhealthy, `None` when the health is unknown
    /// (or the service has no health check).
    pub healthy: Option<bool>,
    /// The last health message.
    pub last_message: String,
}

/// One block device as `Disks` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// The device path, e.g. `/dev/nvme1n1`.
    pub device_name: String,
    /// Size in bytes.
    pub size: u64,
    /// The disk model.
    pub model: String,
    /// The disk type, lower-case: `nvme`, `ssd`, `hdd`, `sd`, `cd` or `unknown`.
    pub kind: String,
    /// The serial number.
    pub serial: String,
    /// The WWID (what `/dev/disk/by-id/` links are made from).
    pub wwid: String,
    /// Whether Talos is installed on it.
    pub system_disk: bool,
    /// Whether it is read-only.
    pub readonly: bool,
}

impl DiskInfo {
    fn from_proto(disk: storage::Disk) -> Self {
        let kind = storage::disk::DiskType::try_from(disk.r#type)
            .map(|t| t.as_str_name().to_lowercase())
            .unwrap_or_else(|_| "unknown".into());
        DiskInfo {
            device_name: disk.device_name,
            size: disk.size,
            model: disk.model,
            kind,
            serial: disk.serial,
            wwid: disk.wwid,
            system_disk: disk.system_disk,
            readonly: disk.readonly,
        }
    }
}

/// One etcd member as `EtcdMemberList` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// The member ID.
    pub id: u64,
    /// The member's name (the node's hostname).
    pub hostname: String,
    /// Peer URLs (`https://<ip>:2380`).
    pub peer_urls: Vec<String>,
    /// Client URLs (`https://<ip>:2379`).
    pub client_urls: Vec<String>,
    /// Whether the member is a learner that has not been promoted yet.
    pub is_learner: bool,
}

/// How [`TalosClient::bootstrap`] retries `FailedPrecondition` ("bootstrap is not available
/// yet", "time is not in sync yet") and `Unavailable`: exponential delays from `initial_delay`,
/// doubling up to `max_delay`, until `max_elapsed` has passed since the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapRetry {
    /// Delay after the first failed attempt.
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// No new attempt starts after this much time; the last error is returned.
    pub max_elapsed: Duration,
}

impl Default for BootstrapRetry {
    /// 1 s doubling up to 15 s, for at most 5 minutes.
    fn default() -> Self {
        BootstrapRetry {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

/// A connection to one Talos node's API. Cheap to clone (clones share the HTTP/2 connection).
#[derive(Clone)]
pub struct TalosClient {
    addr: SocketAddr,
    machine: MachineServiceClient<Channel>,
    storage: StorageServiceClient<Channel>,
    fingerprint: Arc<Mutex<Option<String>>>,
    /// The verifier of a [`TalosClient::maintenance_pinned`] connection.
    pin: Option<Arc<PinnedServerCert>>,
    bootstrap_retry: BootstrapRetry,
}

impl fmt::Debug for TalosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalosClient")
            .field("addr", &self.addr)
            .field("server_fingerprint", &self.server_fingerprint())
            .finish()
    }
}

impl TalosClient {
    /// Connects to a node in maintenance mode (normally `<ip>:50000`): TLS accepting any server
    /// certificate (with real handshake-signature checks), no client certificate, ALPN `h2`.
    /// `timeout` bounds the connection and every call. The server's SPKI fingerprint is logged.
    pub async fn maintenance(
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, TalosClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = AnyServerCert::new(&provider);
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| credentials(addr, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::open(addr, config, timeout, true).await
    }

    /// Connects to a node in maintenance mode like [`TalosClient::maintenance`], but accepts
    /// only the server key whose SPKI SHA-256 fingerprint is `spki_sha256` (trust on first use:
    /// the fingerprint recorded when the node was first probed). Any other key fails the
    /// handshake before a byte of a request is sent, with [`TalosClientError::KeyChanged`]
    /// (also from later calls, should the connection be re-established to another key).
    /// Still no client certificate: real maintenance mode serves `tls.ServerOnly`.
    pub async fn maintenance_pinned(
        addr: SocketAddr,
        timeout: Duration,
        spki_sha256: &str,
    ) -> Result<Self, TalosClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedServerCert::new(&provider, spki_sha256));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| credentials(addr, e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        match Self::open(addr, config, timeout, true).await {
            Ok(mut client) => {
                client.pin = Some(verifier);
                Ok(client)
            }
            Err(_) if verifier.mismatched() => Err(key_changed(addr, &verifier)),
            Err(e) => Err(e),
        }
    }

    /// Connects to an installed node with mutual TLS: the client certificate and key of
    /// `talosconfig`, the server certificate verified against its CA (the OS CA) for the name
    /// `addr.ip()`, ALPN `h2`. `timeout` bounds the connection and every call.
    pub async fn connect(
        addr: SocketAddr,
        talosconfig: &Talosconfig,
        timeout: Duration,
    ) -> Result<Self, TalosClientError> {
        let config = mutual_tls_config(addr, talosconfig)?;
        Self::open(addr, config, timeout, false).await
    }

    async fn open(
        addr: SocketAddr,
        config: ClientConfig,
        timeout: Duration,
        maintenance: bool,
    ) -> Result<Self, TalosClientError> {
        let fingerprint = Arc::new(Mutex::new(None));
        let connector = TlsDialer {
            addr,
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            maintenance,
            fingerprint: Arc::clone(&fingerprint),
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| connect_error(addr, &e))?
            .origin(
                format!("https://{addr}")
                    .parse::<Uri>()
                    .map_err(|e| connect_error(addr, &e))?,
            )
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let dialer = connector.clone();
                async move { dialer.dial().await }
            }))
            .await
            .map_err(|e| connect_error(addr, &e))?;
        let storage = StorageServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let machine = MachineServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(TalosClient {
            addr,
            machine,
            storage,
            fingerprint,
            pin: None,
            bootstrap_retry: BootstrapRetry::default(),
        })
    }

    /// Replaces the retry policy of [`TalosClient::bootstrap`].
    pub fn with_bootstrap_retry(mut self, retry: BootstrapRetry) -> Self {
        self.bootstrap_retry = retry;
        self
    }

    /// The node's API address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The SPKI SHA-256 fingerprint (standard base64, as talosctl prints it) of the certificate
    /// the server showed on the latest connection.
    pub fn server_fingerprint(&self) -> Option<String> {
        self.fingerprint.lock().ok().and_then(|fp| fp.clone())
    }

    /// `MachineService/ApplyConfiguration`: hands the machine configuration (YAML) to the node.
    /// In maintenance mode the node then installs Talos and reboots into the configuration.
    pub async fn apply_configuration(
        &mut self,
        config: &[u8],
        mode: ApplyMode,
    ) -> Result<ApplyReport, TalosClientError> {
        const METHOD: &str = "ApplyConfiguration";
        let request = machine::ApplyConfigurationRequest {
            data: config.to_vec(),
            mode: mode.to_proto().into(),
            dry_run: false,
            try_mode_timeout: None,
        };
        let response = self
            .machine
            .apply_configuration(request)
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        let message = self.first(METHOD, response.messages, |m| m.metadata.as_ref())?;
        Ok(ApplyReport {
            mode: AppliedMode::from_proto(message.mode),
            mode_details: message.mode_details,
            warnings: message.warnings,
        })
    }

    /// `MachineService/Version`.
    pub async fn version(&mut self) -> Result<NodeVersion, TalosClientError> {
        const METHOD: &str = "Version";
        let response = self
            .machine
            .version(())
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        let message = self.first(METHOD, response.messages, |m| m.metadata.as_ref())?;
        let version = message.version.unwrap_or_default();
        Ok(NodeVersion {
            tag: version.tag,
            sha: version.sha,
            built: version.built,
            go_version: version.go_version,
            os: version.os,
            arch: version.arch,
            platform: message.platform.as_ref().map(|p| p.name.clone()),
            platform_mode: message.platform.map(|p| p.mode),
            rbac: message.features.map(|f| f.rbac),
        })
    }

    /// `StorageService/Disks`: the node's block devices (served in maintenance mode too, so the
    /// disks can be inspected before a configuration is applied).
    pub async fn disks(&mut self) -> Result<Vec<DiskInfo>, TalosClientError> {
        const METHOD: &str = "Disks";
        let response = self
            .storage
            .disks(())
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        let message = self.first(METHOD, response.messages, |m| m.metadata.as_ref())?;
        Ok(message
            .disks
            .into_iter()
            .map(DiskInfo::from_proto)
            .collect())
    }

    /// `MachineService/ServiceList`: the node's system services.
    pub async fn service_list(&mut self) -> Result<Vec<ServiceStatus>, TalosClientError> {
        const METHOD: &str = "ServiceList";
        let response = self
            .machine
            .service_list(())
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        let message = self.first(METHOD, response.messages, |m| m.metadata.as_ref())?;
        Ok(message
            .services
            .into_iter()
            .map(|s| {
                let health = s.health.unwrap_or_default();
                ServiceStatus {
                    id: s.id,
                    state: s.state,
                    healthy: (!health.unknown).then_some(health.healthy),
                    last_message: health.last_message,
                }
            })
            .collect())
    }

    /// `MachineService/EtcdMemberList` (control planes only).
    pub async fn etcd_member_list(&mut self) -> Result<Vec<EtcdMember>, TalosClientError> {
        const METHOD: &str = "EtcdMemberList";
        let response = self
            .machine
            .etcd_member_list(machine::EtcdMemberListRequest { query_local: false })
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        let message = self.first(METHOD, response.messages, |m| m.metadata.as_ref())?;
        Ok(message
            .members
            .into_iter()
            .map(|m| EtcdMember {
                id: m.id,
                hostname: m.hostname,
                peer_urls: m.peer_urls,
                client_urls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect())
    }

    /// `MachineService/Bootstrap` on a control plane: creates the single-node etcd cluster that
    /// the other control planes join. Idempotent: `AlreadyExists` ("etcd data directory is not
    /// empty") is [`BootstrapOutcome::AlreadyBootstrapped`]. `FailedPrecondition` (the node is not
    /// ready for it yet) and `Unavailable` are retried as the [`BootstrapRetry`] policy says;
    /// "bootstrap can only be performed on a control plane node" is not.
    pub async fn bootstrap(&mut self) -> Result<BootstrapOutcome, TalosClientError> {
        let policy = self.bootstrap_retry;
        let started = tokio::time::Instant::now();
        let mut delay = policy.initial_delay;
        let mut attempt = 1u32;
        loop {
            let error = match self.bootstrap_once().await {
                Ok(()) => return Ok(BootstrapOutcome::Bootstrapped),
                Err(e) if e.code() == Some(Code::AlreadyExists) => {
                    tracing::info!(addr = %self.addr, "etcd is already bootstrapped");
                    return Ok(BootstrapOutcome::AlreadyBootstrapped);
                }
                Err(e) if is_retryable_bootstrap(&e) => e,
                Err(e) => return Err(e),
            };
            if started.elapsed() + delay > policy.max_elapsed {
                return Err(error);
            }
            tracing::debug!(addr = %self.addr, attempt, %error, ?delay, "bootstrap not possible yet; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(policy.max_delay);
            attempt += 1;
        }
    }

    async fn bootstrap_once(&mut self) -> Result<(), TalosClientError> {
        const METHOD: &str = "Bootstrap";
        let request = machine::BootstrapRequest {
            recover_etcd: false,
            recover_skip_hash_check: false,
        };
        let response = self
            .machine
            .bootstrap(request)
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        self.first(METHOD, response.messages, |m| m.metadata.as_ref())?;
        Ok(())
    }

    /// `MachineService/Kubeconfig` (control planes only): a fresh admin kubeconfig. The node
    /// streams `common.Data` chunks whose concatenation is a gzip'd tar holding one file,
    /// `kubeconfig`; its text is returned.
    pub async fn kubeconfig(&mut self) -> Result<String, TalosClientError> {
        const METHOD: &str = "Kubeconfig";
        let mut stream = self
            .machine
            .kubeconfig(())
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
            .into_inner();
        let mut archive = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| self.rpc_error(METHOD, &s))?
        {
            self.check_metadata(METHOD, chunk.metadata.as_ref())?;
            archive.extend_from_slice(&chunk.bytes);
        }
        extract_kubeconfig(&archive).map_err(|reason| TalosClientError::Protocol {
            addr: self.addr,
            method: METHOD,
            reason,
        })
    }

    /// The first message of a `{ repeated X messages = 1 }` response, after checking every
    /// message's metadata for a per-node error.
    fn first<T>(
        &self,
        method: &'static str,
        messages: Vec<T>,
        metadata: impl Fn(&T) -> Option<&common::Metadata>,
    ) -> Result<T, TalosClientError> {
        for message in &messages {
            self.check_metadata(method, metadata(message))?;
        }
        messages
            .into_iter()
            .next()
            .ok_or_else(|| TalosClientError::Protocol {
                addr: self.addr,
                method,
                reason: "the response holds no messages".into(),
            })
    }

    fn check_metadata(
        &self,
        method: &'static str,
        metadata: Option<&common::Metadata>,
    ) -> Result<(), TalosClientError> {
        let Some(metadata) = metadata else {
            return Ok(());
        };
        let status = metadata.status.as_ref().filter(|s| s.code != 0);
        if metadata.error.is_empty() && status.is_none() {
            return Ok(());
        }
        let message = if metadata.error.is_empty() {
            status.map(|s| s.message.clone()).unwrap_or_default()
        } else {
            metadata.error.clone()
        };
        let hostname = if metadata.hostname.is_empty() {
            self.addr.ip().to_string()
        } else {
            metadata.hostname.clone()
        };
        Err(TalosClientError::Node {
            addr: self.addr,
            method,
            hostname,
            message,
            code: status.map(|s| Code::from_i32(s.code)),
        })
    }

    fn rpc_error(&self, method: &'static str, status: &tonic::Status) -> TalosClientError {
        if let Some(pin) = self.pin.as_ref().filter(|p| p.mismatched()) {
            return key_changed(self.addr, pin);
        }
        let mut message = status.message().to_owned();
        if let Some(source) = std::error::Error::source(status) {
            let causes = error_chain(source);
            if !causes.is_empty() && !message.contains(&causes) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&causes);
            }
        }
        TalosClientError::Rpc {
            addr: self.addr,
            method,
            code: status.code(),
            message,
        }
    }
}

fn is_retryable_bootstrap(error: &TalosClientError) -> bool {
    let not_a_control_plane = match error {
        TalosClientError::Rpc { message, .. } | TalosClientError::Node { message, .. } => {
            message.contains("control plane node")
        }
        _ => false,
    };
    matches!(
        error.code(),
        Some(Code::FailedPrecondition | Code::Unavailable)
    ) && !not_a_control_plane
}

/// Unpacks the `kubeconfig` file from the gzip'd tar that `Kubeconfig` streams.
fn extract_kubeconfig(archive: &[u8]) -> Result<String, String> {
    if archive.is_empty() {
        return Err("the node sent no data".into());
    }
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let entries = tar
        .entries()
        .map_err(|e| format!("the kubeconfig archive is not a gzip'd tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the kubeconfig archive cannot be read: {e}"))?;
        let is_kubeconfig = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n == "kubeconfig"))
            .unwrap_or(false);
        if is_kubeconfig && entry.header().entry_type().is_file() {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| format!("the kubeconfig in the archive is not UTF-8 text: {e}"))?;
            return Ok(text);
        }
    }
    Err("the archive holds no file named kubeconfig".into())
}

/// The rustls configuration for mutual TLS with a talosconfig.
fn mutual_tls_config(
    addr: SocketAddr,
    talosconfig: &Talosconfig,
) -> Result<ClientConfig, TalosClientError> {
    let ca = pki::parse_certificates_pem(&talosconfig.ca)
        .map_err(|e| credentials(addr, format!("talosconfig ca: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = pki::parse_certificates_pem(&talosconfig.crt)
        .map_err(|e| credentials(addr, format!("talosconfig crt: {e}")))?;
    let key: PrivateKeyDer<'static> = pki::parse_private_key_pem(&talosconfig.key)
        .map_err(|e| credentials(addr, format!("talosconfig key: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert)
            .map_err(|e| credentials(addr, format!("talosconfig ca: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| credentials(addr, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| credentials(addr, format!("client certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

fn key_changed(addr: SocketAddr, pin: &PinnedServerCert) -> TalosClientError {
    TalosClientError::KeyChanged {
        addr,
        pinned: pin.pinned().to_owned(),
        presented: pin.presented().unwrap_or_default(),
    }
}

fn credentials(addr: SocketAddr, reason: impl fmt::Display) -> TalosClientError {
    TalosClientError::Credentials {
        addr,
        reason: reason.to_string(),
    }
}

fn connect_error(addr: SocketAddr, error: &(dyn std::error::Error + 'static)) -> TalosClientError {
    TalosClientError::Connect {
        addr,
        reason: error_chain(error),
    }
}

/// An error and its causes, `a: b: c`, leaving out a cause whose text is already there.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Opens TCP + TLS to the node for tonic (which then speaks HTTP/2 on it), checking ALPN and
/// noting the server's fingerprint.
#[derive(Clone)]
struct TlsDialer {
    addr: SocketAddr,
    tls: TlsConnector,
    timeout: Duration,
    maintenance: bool,
    fingerprint: Arc<Mutex<Option<String>>>,
}

impl TlsDialer {
    async fn dial(self) -> std::io::Result<TokioIo<TlsStream<TcpStream>>> {
        let addr = self.addr;
        let timed_out = || {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "TCP connect and TLS handshake with {addr} took longer than {:?}",
                    self.timeout
                ),
            )
        };
        let tls = tokio::time::timeout(self.timeout, async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                .await
        })
        .await
        .map_err(|_| timed_out())??;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(b"h2".as_slice()) {
            return Err(std::io::Error::other(format!(
                "{addr} did not negotiate ALPN h2, which Talos requires"
            )));
        }
        if let Some(leaf) = session.peer_certificates().and_then(|c| c.first())
            && let Ok(fp) = spki_fingerprint(leaf)
        {
            if self.maintenance {
                tracing::info!(%addr, spki_sha256 = %fp, "connected to the Talos maintenance API; its certificate cannot be verified, compare the fingerprint with the node's console");
            } else {
                tracing::debug!(%addr, spki_sha256 = %fp, "connected to the Talos API with mutual TLS");
            }
            if let Ok(mut slot) = self.fingerprint.lock() {
                *slot = Some(fp);
            }
        }
        Ok(TokioIo::new(tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(name: &str, body: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, body).unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn kubeconfig_is_unpacked() {
        assert_eq!(
            extract_kubeconfig(&archive("kubeconfig", b"apiVersion: v1\n")).unwrap(),
            "apiVersion: v1\n"
        );
        assert!(
            extract_kubeconfig(&archive("other", b"x"))
                .unwrap_err()
                .contains("no file named kubeconfig")
        );
        assert!(extract_kubeconfig(b"not gzip").is_err());
        assert!(extract_kubeconfig(b"").is_err());
    }

    #[test]
    fn retry_classification() {
        let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let rpc = |code, message: &str| TalosClientError::Rpc {
            addr,
            method: "Bootstrap",
            code,
            message: message.into(),
        };
        assert!(is_retryable_bootstrap(&rpc(
            Code::FailedPrecondition,
            "bootstrap is not available yet"
        )));
        assert!(is_retryable_bootstrap(&rpc(
            Code::Unavailable,
            "connection refused"
        )));
        assert!(!is_retryable_bootstrap(&rpc(
            Code::FailedPrecondition,
            "bootstrap can only be performed on a control plane node"
        )));
        assert!(!is_retryable_bootstrap(&rpc(
            Code::PermissionDenied,
            "not authorized"
        )));
    }

    #[test]
    fn applied_modes() {
        assert_eq!(AppliedMode::from_proto(0), AppliedMode::Reboot);
        assert_eq!(AppliedMode::from_proto(2), AppliedMode::NoReboot);
        assert_eq!(AppliedMode::from_proto(99), AppliedMode::Unknown(99));
    }
}
