//! Step 5, WaitingTalosMaintenance: every node's Talos API on :50000 must answer as Talos
//! maintenance mode does (TLS without a client certificate, ALPN h2, `Version` unimplemented).
//! Nodes are probed concurrently (at most `max_parallel_nodes` probes in flight), each on its
//! own backoff ([`NodeBackoff`]: `poll_min` growing to a few seconds, or exactly `fixed_poll`;
//! the sequential baseline waits for one node after another);
//! the SPKI fingerprint of each node's maintenance-mode key is recorded in the checkpoint and
//! pinned (trust on first use, as SSH does with host keys): maintenance mode cannot be verified
//! against a CA, so the machine config, which holds every CA key of the cluster, is later sent
//! only to the key seen here (steps 7 and 11). A step re-run by a resume that finds another key
//! than the recorded one stops with [`key_changed`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use metal::provider::Provider;
use metal::talos::maintenance::{ProbeOutcome, probe};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::checkpoint::ConfigState;
use crate::error::StepError;
use crate::poll::NodeBackoff;
use crate::steps::infrastructure::TALOS_API_PORT;
use crate::steps::{StepContext, StepFailure, StepResult};

enum NodeResult {
    Maintenance { spki: String },
    Installed { reason: String },
    TimedOut { last: String },
}

pub(crate) async fn waiting_talos_maintenance<P: Provider>(
    ctx: &mut StepContext<'_, P>,
) -> StepResult {
    let records = ctx.checkpoint().servers.clone();
    let in_flight = Arc::new(Semaphore::new(ctx.timings.max_parallel_nodes.max(1)));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    let mut outcome = Outcome::default();
    for record in records {
        let ip = record.primary_ipv4.ok_or_else(|| StepError::Inconsistent {
            what: format!("the IPv4 address of {}", record.hostname),
        })?;
        // A node cto already configured has left maintenance mode for good: running this
        // step again (a resume that re-runs it) must not call that a failure.
        if record.installed || !matches!(record.config, ConfigState::NotApplied) {
            ctx.node_status(&record.hostname, "past maintenance mode (configured)", None);
            continue;
        }
        // A node seen in maintenance mode by an earlier run is probed again all the same: it
        // may have rebooted or been reinstalled since.
        let addr = SocketAddr::from((ip, TALOS_API_PORT));
        let timeout = ctx.timings.maintenance_timeout;
        let probe_timeout = ctx.timings.probe_timeout;
        let mut backoff = NodeBackoff::new(ctx.timings);
        let in_flight = Arc::clone(&in_flight);
        ctx.node_status(
            &record.hostname,
            "waiting for Talos",
            Some(addr.to_string()),
        );
        tasks.spawn(async move {
            let started = Instant::now();
            loop {
                let outcome = {
                    // Only the probe itself holds a slot, never the sleep between probes.
                    let _slot = in_flight.acquire().await;
                    probe(addr, probe_timeout).await
                };
                let last = match outcome {
                    ProbeOutcome::Maintenance { spki_sha256 } => {
                        return (
                            record.hostname,
                            addr,
                            NodeResult::Maintenance { spki: spki_sha256 },
                        );
                    }
                    ProbeOutcome::Installed { reason } => {
                        return (record.hostname, addr, NodeResult::Installed { reason });
                    }
                    ProbeOutcome::NotListening { reason } => format!("not listening: {reason}"),
                    ProbeOutcome::Unexpected { reason } => format!("unexpected answer: {reason}"),
                };
                if started.elapsed() >= timeout {
                    return (record.hostname, addr, NodeResult::TimedOut { last });
                }
                tokio::time::sleep(backoff.next_interval()).await;
            }
        });
        // The sequential baseline (benchmark only) waits for one node before the next.
        if ctx.timings.sequential
            && let Some(Ok((hostname, addr, result))) = tasks.join_next().await
        {
            outcome.record(ctx, hostname, addr, result)?;
        }
    }

    while let Some(joined) = tasks.join_next().await {
        let Ok((hostname, addr, result)) = joined else {
            continue;
        };
        outcome.record(ctx, hostname, addr, result)?;
    }
    let Outcome {
        failures,
        timed_out,
    } = outcome;
    if let Some(first) = failures.into_iter().next() {
        return Err(StepFailure::Failed(first));
    }
    if !timed_out.is_empty() {
        return Err(StepError::Timeout {
            what: "nodes to reach Talos maintenance mode".into(),
            waited_s: started
                .elapsed()
                .as_secs()
                .max(ctx.timings.maintenance_timeout.as_secs()),
            pending: timed_out.join("; "),
        }
        .into());
    }
    // Every node answers in maintenance mode: ask each for its disks (install disk, Mayastor
    // disk, the storage plan checked) before anything is installed.
    crate::steps::disks::discover(ctx).await
}

/// What the finished node waits found: nodes that cannot be used, nodes that never answered.
#[derive(Default)]
struct Outcome {
    failures: Vec<StepError>,
    timed_out: Vec<String>,
}

impl Outcome {
    /// Reports one node's result and records its maintenance-mode key in the checkpoint.
    fn record<P: Provider>(
        &mut self,
        ctx: &mut StepContext<'_, P>,
        hostname: String,
        addr: SocketAddr,
        result: NodeResult,
    ) -> Result<(), StepFailure> {
        let (failures, timed_out) = (&mut self.failures, &mut self.timed_out);
        match result {
            NodeResult::Maintenance { spki } => {
                let pinned = ctx
                    .checkpoint()
                    .servers
                    .iter()
                    .find(|s| s.hostname == hostname)
                    .and_then(|s| s.maintenance_spki.clone());
                if let Some(pinned) = pinned.filter(|p| *p != spki) {
                    failures.push(StepError::Node {
                        message: key_changed(&hostname, &pinned, &spki),
                        hostname,
                        address: addr.to_string(),
                    });
                    return Ok(());
                }
                tracing::info!(%hostname, %addr, spki_sha256 = %spki, "node is in Talos maintenance mode");
                ctx.node_status(&hostname, "maintenance", Some(format!("{addr} spki-sha256 {spki}")));
                ctx.update(|cp| {
                    if let Some(s) = cp.server_mut(&hostname) {
                        s.maintenance_spki = Some(spki);
                    }
                })?;
            }
            NodeResult::Installed { reason } => failures.push(StepError::Node {
                hostname,
                address: addr.to_string(),
                message: format!(
                    "already runs an installed Talos that demands a client certificate ({reason}); it is not in maintenance mode. Wipe it (`cto destroy`, or reinstall it with iPXE in the provider dashboard) before installing"
                ),
            }),
            NodeResult::TimedOut { last } => timed_out.push(format!("{hostname} at {addr}: {last}")),
        }
        Ok(())
    }
}

/// What to tell the user when a node in maintenance mode presents another key than the one
/// recorded when it was first seen: nothing was sent, why it may happen, and what to do.
pub(crate) fn key_changed(hostname: &str, pinned: &str, presented: &str) -> String {
    format!(
        "its Talos maintenance-mode key changed: when first seen it presented SPKI SHA-256 \
         {pinned}, now it presents {presented}. cto did not send it its machine config (which \
         holds the cluster's CA keys). Talos makes a new maintenance key at every boot, so a \
         reboot explains this; so does another machine answering at the node's address. \
         Compare {presented} with the fingerprint on the node's console (the provider's remote \
         console): if they match, trust the new key with `cto install --resume \
         --trust-maintenance-key {hostname}={presented}`; if not, do not resume: run `cto \
         destroy` and find out who answers at that address"
    )
}
