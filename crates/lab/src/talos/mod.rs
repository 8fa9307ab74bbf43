//! Talos nodes on loopback addresses. A background reconciler (every 50 ms) compares the world
//! with the running nodes: an iPXE server whose boot script would load Talos gets a
//! maintenance-mode node on `<primary_ipv4>:50000` once its deploy finished and
//! `timeline.talos_boot` elapsed; a node stops when its server is reinstalled (it comes back,
//! with a new identity, after the reinstall) or deleted, and when the lab shuts down.

mod grpc;
mod node;
mod tls;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use node::TALOS_API_PORT;

use crate::catalogue::IPXE_OS;
use crate::ipxe;
use crate::lifecycle::now_ms;
use crate::state::Lab;
use grpc::NodeInfo;
use node::NodeHandle;

/// How often the reconciler looks at the world.
const TICK: Duration = Duration::from_millis(50);

/// A node the world says should be running. `generation` is the start of the server's current
/// lifecycle, so a reinstall yields a new node.
struct Wanted {
    info: NodeInfo,
    generation: i64,
}

struct Running {
    generation: i64,
    handle: NodeHandle,
}

/// Runs until `shutdown` turns true or its sender is dropped, then stops every node.
pub(crate) async fn run(lab: Arc<Lab>, mut shutdown: watch::Receiver<bool>) {
    let mut reconciler = Reconciler::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => reconciler.reconcile(&lab).await,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    reconciler.stop_all().await;
}

#[derive(Default)]
struct Reconciler {
    running: HashMap<String, Running>,
    /// (server, generation) pairs already warned about, so a warning is logged once.
    warned: HashSet<(String, i64)>,
}

impl Reconciler {
    fn wanted(&mut self, lab: &Lab) -> HashMap<String, Wanted> {
        let now = now_ms();
        let world = lab.world();
        self.warned.retain(|(id, generation)| {
            world
                .server(id)
                .is_some_and(|s| s.lifecycle.started_at_ms == *generation)
        });
        let mut wanted = HashMap::new();
        for server in world
            .servers
            .iter()
            .filter(|s| s.operating_system == IPXE_OS)
        {
            let generation = server.lifecycle.started_at_ms;
            if now < server.lifecycle.talos_up_at_ms(&lab.config) {
                continue;
            }
            let image = match ipxe::parse(server.ipxe.as_deref().unwrap_or_default()) {
                Ok(image) => image,
                Err(reason) => {
                    if self.warned.insert((server.id.clone(), generation)) {
                        tracing::warn!(server = %server.id, hostname = %server.hostname, %reason, "iPXE boot would not load Talos; the node never boots");
                    }
                    continue;
                }
            };
            let info = NodeInfo {
                server_id: server.id.clone(),
                hostname: server.hostname.clone(),
                ip: server.ip,
                image,
            };
            wanted.insert(server.id.clone(), Wanted { info, generation });
        }
        wanted
    }

    async fn reconcile(&mut self, lab: &Lab) {
        let wanted = self.wanted(lab);
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(id, node)| {
                wanted
                    .get(*id)
                    .is_none_or(|w| w.generation != node.generation)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(node) = self.running.remove(&id) {
                node.handle.stop().await;
                tracing::info!(server = %id, "Talos node stopped");
            }
        }
        for (id, want) in wanted {
            if self.running.contains_key(&id) {
                continue;
            }
            match node::start(want.info).await {
                Ok(handle) => {
                    self.running.insert(
                        id,
                        Running {
                            generation: want.generation,
                            handle,
                        },
                    );
                }
                Err(error) => {
                    // Retried on the next tick; warn once per boot.
                    if self.warned.insert((id.clone(), want.generation)) {
                        tracing::warn!(server = %id, %error, "Talos node cannot start yet; retrying");
                    } else {
                        tracing::trace!(server = %id, %error, "Talos node still cannot start");
                    }
                }
            }
        }
    }

    async fn stop_all(&mut self) {
        for (_, node) in self.running.drain() {
            node.handle.stop().await;
        }
    }
}
