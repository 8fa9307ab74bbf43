//! Step 5, WaitingTalosMaintenance: every node's Talos API on :50000 must answer as Talos
//! maintenance mode does (TLS without a client certificate, ALPN h2, `Version` unimplemented).
//! Nodes are probed concurrently, each on its own backoff; the certificate fingerprint of each
//! node is recorded for the log, since maintenance mode cannot be verified against a CA.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metal::provider::Provider;
use metal::talos::maintenance::{ProbeOutcome, probe};
use tokio::task::JoinSet;

use crate::checkpoint::ConfigState;
use crate::error::StepError;
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
    let mut tasks = JoinSet::new();
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
        let poll_min = ctx.timings.poll_min;
        let poll_max = ctx.timings.poll_max;
        ctx.node_status(
            &record.hostname,
            "waiting for Talos",
            Some(addr.to_string()),
        );
        tasks.spawn(async move {
            let started = Instant::now();
            let mut interval = poll_min.min(Duration::from_millis(500));
            loop {
                let last = match probe(addr, probe_timeout).await {
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
                tokio::time::sleep(interval).await;
                interval = interval
                    .mul_f64(1.5)
                    .min(poll_max.min(Duration::from_secs(10)));
            }
        });
    }

    let started = Instant::now();
    let mut failures: Vec<StepError> = Vec::new();
    let mut timed_out: Vec<String> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((hostname, addr, result)) = joined else {
            continue;
        };
        match result {
            NodeResult::Maintenance { spki } => {
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
    }
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
    Ok(())
}
