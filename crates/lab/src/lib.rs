//! `lab` is a local emulator of the real world for `cto`: the production code path runs against
//! it unchanged, only base URLs differ.
//!
//! * A Latitude.sh-compatible REST API ([`start`]): JSON:API bodies, bearer authentication,
//!   per-key rate limits with Latitude's 429 body, paging, plans with live stock, servers that
//!   go through `starting_deploy` → `deploying` → `on` on a scaled clock, reinstalls, SSH keys.
//! * Talos nodes: each iPXE server whose boot script would load Talos listens on
//!   `<primary_ipv4>:50000` (a 127.0.x.y loopback address) with TLS and HTTP/2 gRPC, in
//!   maintenance mode until `ApplyConfiguration`, then (after a modelled install) in normal mode
//!   with mutual TLS: `Bootstrap`, etcd members, `Kubeconfig`, and the cluster's Kubernetes API
//!   on `<control plane>:6443` with the nodes' Node objects.
//! * A persistent world (`world.json` in the state directory), so a restarted lab, or a resumed
//!   installer, finds the same servers with the same IDs and addresses.
//!
//! Module map: `config` ([`LabConfig`]), `error` ([`LabError`]), `world` (persisted state),
//! `catalogue` (sites, plans, operating systems), `stock` (live stock), `lifecycle` (status from
//! the clock), `ratelimit`, `ipxe` (would this boot Talos?), `api` (HTTP routes), `talos` (node
//! listeners and their reconciler), `state` (what all of them share), `durations` (how long
//! each modelled process lasts: timeline, seeded jitter, time scale), `observe` (request
//! arrivals and conditions for `/_lab/stats` and `/_lab/conditions`).

mod api;
mod blocks;
mod catalogue;
mod config;
mod critical_path;
mod durations;
mod error;
/// Fault injection: the `--faults` grammar ([`faults::FaultSpec`]) and what it does.
pub mod faults;
mod files;
mod gitops;
mod ipxe;
/// The Kubernetes API server a Talos control plane runs (`<ip>:6443`), public so that
/// integration tests can start one on its own: [`kube::start`], [`kube::admin_kubeconfig`].
pub mod kube;
mod kustomize;
mod lifecycle;
mod observe;
mod ratelimit;
mod state;
mod stock;
mod talos;
mod world;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{LabConfig, Timeline};
pub use error::LabError;
pub use faults::{FaultSpec, FaultSpecError};
pub use talos::TALOS_API_PORT;
pub use world::LAB_PROJECT_ID;

use state::Lab;
use world::World;

/// How long [`LabHandle::shutdown`] lets in-flight HTTP requests finish.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// A running lab. Dropping it also stops the lab (without waiting and without a final save of
/// the request counters); prefer [`LabHandle::shutdown`].
pub struct LabHandle {
    url: String,
    ip_block: u8,
    state_dir: PathBuf,
    lab: Arc<Lab>,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<()>,
    nodes: JoinHandle<()>,
}

/// Starts a lab: loads (or creates) the world in `state_dir`, serves the Latitude API on
/// `listen` (port 0 picks a free port; see [`LabHandle::url`]) and starts the Talos node
/// reconciler.
pub async fn start(
    mut config: LabConfig,
    state_dir: &Path,
    listen: SocketAddr,
) -> Result<LabHandle, LabError> {
    for app in config.faults.argocd_degraded.clone() {
        if !config.argocd_degraded.contains(&app) {
            config.argocd_degraded.push(app);
        }
    }
    if !config.faults.is_empty() {
        tracing::info!(faults = %config.faults, "lab injects faults");
    }
    config
        .validate()
        .map_err(|reason| LabError::InvalidConfig { path: None, reason })?;
    files::create_private_dir(state_dir).map_err(|source| LabError::StateDir {
        path: state_dir.to_owned(),
        source,
    })?;
    let mut world = World::load_or_create(state_dir, config.ip_block, lifecycle::now_ms())?;
    let blocks = Arc::new(blocks::BlockClaims::default());
    claim_blocks(&blocks, &mut world, state_dir)?;
    tracing::info!(
        state_dir = %state_dir.display(),
        ip_block = world.ip_block,
        servers = world.servers.len(),
        "lab world loaded"
    );
    let ip_block = world.ip_block;
    let lab = Arc::new(Lab::new(config, state_dir.to_owned(), world, blocks));

    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| LabError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| LabError::Bind {
        addr: listen,
        source,
    })?;
    let (shutdown, signal) = watch::channel(false);

    let app = api::router(lab.clone());
    let mut http_signal = signal.clone();
    let http = tokio::spawn(async move {
        let stopped = async move {
            // Also resolves when the handle is dropped.
            let _ = http_signal.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, "lab API server failed");
        }
    });
    let nodes = tokio::spawn(talos::run(lab.clone(), signal));

    let url = format!(
        "http://{}",
        SocketAddr::new(reachable(local.ip()), local.port())
    );
    tracing::info!(%url, "lab API listening");
    Ok(LabHandle {
        url,
        ip_block,
        state_dir: state_dir.to_owned(),
        lab,
        shutdown,
        http,
        nodes,
    })
}

/// Claims the blocks the world's servers live in; a world without servers yet takes its
/// block, or the next free one when another lab holds it (and remembers the move).
fn claim_blocks(
    blocks: &blocks::BlockClaims,
    world: &mut World,
    state_dir: &Path,
) -> Result<(), LabError> {
    let used = world.used_blocks();
    if used.is_empty() {
        let preferred = world.ip_block;
        let got = blocks.claim_free(Some(preferred))?;
        if got != preferred {
            tracing::info!(
                preferred,
                got,
                "another running lab holds the preferred address block; using a free one"
            );
            world.ip_block = got;
            world.save(state_dir)?;
        }
        return Ok(());
    }
    for block in used {
        if !blocks.ensure(block)? {
            return Err(LabError::BlockTaken {
                path: world::world_path(state_dir),
                block,
            });
        }
    }
    Ok(())
}

/// The address clients should use for a listener bound to `ip`.
fn reachable(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

impl LabHandle {
    /// The base URL of the Latitude API, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The third octet of this lab's server addresses, `127.0.<ip_block>.<n>`: the block it
    /// holds exclusively while it runs (which may differ from the configured one when another
    /// lab held that).
    pub fn ip_block(&self) -> u8 {
        self.ip_block
    }

    /// The state directory holding `world.json`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Stops the HTTP server (letting in-flight requests finish for up to 5 seconds) and every
    /// Talos node listener, then saves the world.
    pub async fn shutdown(self) {
        let LabHandle {
            lab,
            shutdown,
            mut http,
            nodes,
            ..
        } = self;
        let _ = shutdown.send(true);
        if tokio::time::timeout(HTTP_DRAIN, &mut http).await.is_err() {
            tracing::warn!("lab API did not drain in time; closing remaining connections");
            http.abort();
            let _ = http.await;
        }
        let _ = nodes.await;
        if let Err(error) = lab.save() {
            tracing::warn!(%error, "could not save the lab world at shutdown");
        }
        // The world is saved and no listener serves its addresses any more.
        lab.blocks.release_all();
    }
}

impl std::fmt::Debug for LabHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabHandle")
            .field("url", &self.url)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}
