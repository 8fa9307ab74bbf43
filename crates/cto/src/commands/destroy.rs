//! `cto destroy`: delete every server of a cluster, so nothing stays billed.
//!
//! Servers are found two ways and the union is deleted: the ids in the checkpoint (when there is
//! one) and, at the provider, every server whose hostname is one of the cluster's
//! (`<cluster>-cp-N`, `<cluster>-worker-N`) — so a lost or corrupt checkpoint, or an order whose
//! answer never reached the checkpoint, still gets cleaned up. "Not found" is success. After the
//! deletes, the project is listed again until none of the servers remain (bounded), and the
//! checkpoint is moved aside into `destroyed/`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use installer::checkpoint::{CheckpointError, CheckpointStore, store::DirLock};
use installer::spec::parse_hostname;
use metal::provider::{Deleted, Machine, Provider};
use serde_json::json;

use crate::cli::{DestroyArgs, Output};
use crate::context;
use crate::exit::{self, Failure};
use crate::output;

/// How long to wait for deleted servers to disappear from the listing.
const GONE_TIMEOUT: Duration = Duration::from_secs(120);

struct Target {
    id: String,
    hostname: String,
    status: String,
    ipv4: String,
}

/// Runs `cto destroy`.
pub async fn run(args: DestroyArgs) -> Result<(), Failure> {
    let dir = context::state_dir(args.state_dir.as_deref(), args.cluster_name.as_deref())?;
    let checkpoint = match CheckpointStore::read(&dir) {
        Ok(cp) => Some(cp),
        Err(CheckpointError::Missing { .. }) => None,
        Err(e @ (CheckpointError::Corrupt { .. } | CheckpointError::Version { .. })) => {
            if args.cluster_name.is_none() {
                return Err(Failure::new(
                    exit::USAGE,
                    format!("{e}\nPass --cluster-name to find the servers by hostname instead."),
                ));
            }
            eprintln!("warning: {e}; finding servers by hostname only");
            None
        }
        Err(e) => return Err(Failure::new(exit::USAGE, e.to_string())),
    };
    let cluster = match (&args.cluster_name, &checkpoint) {
        (Some(name), Some(cp)) if *name != cp.spec.cluster_name => {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "--cluster-name {name} contradicts the checkpoint in {}, which belongs to cluster {}",
                    dir.display(),
                    cp.spec.cluster_name
                ),
            ));
        }
        (Some(name), _) => name.clone(),
        (None, Some(cp)) => cp.spec.cluster_name.clone(),
        (None, None) => {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "no checkpoint in {}: pass --cluster-name to find the servers by hostname",
                    dir.display()
                ),
            ));
        }
    };

    // Hold the lock while deleting, so an install cannot run against the same directory.
    let _lock = if dir.exists() {
        Some(DirLock::acquire(&dir).map_err(|e| Failure::new(exit::LOCKED, e.to_string()))?)
    } else {
        None
    };
    if dir.exists() {
        crate::logging::to_state_dir(&dir);
    }

    let mut provider_args = args.provider.clone();
    if checkpoint.as_ref().is_some_and(|cp| cp.spec.lab) {
        provider_args.lab = true;
    }
    let project_hint = checkpoint.as_ref().map(|cp| cp.spec.project.clone());
    let connection = context::connect(&provider_args, &dir, project_hint.as_deref()).await?;
    let result = destroy(&connection.provider, &cluster, checkpoint.as_ref(), &args).await;
    connection.close().await;
    let deleted = result?;

    if checkpoint.is_some() {
        match installer::checkpoint::store::retire_checkpoint(&dir) {
            Ok(moved) => tracing::info!(path = %moved.display(), "checkpoint retired"),
            Err(e) => eprintln!(
                "warning: the servers are gone but the checkpoint could not be moved aside: {e}"
            ),
        }
    }
    match args.output {
        Output::Json => output::emit_json(
            &json!({"event": "destroyed", "cluster": cluster, "deleted": deleted}),
        ),
        Output::Text if deleted.is_empty() => {
            println!("Nothing to destroy: cluster {cluster} has no servers.")
        }
        Output::Text => println!(
            "Destroyed cluster {cluster}: {} server(s) deleted.",
            deleted.len()
        ),
    }
    Ok(())
}

async fn destroy<P: Provider>(
    provider: &P,
    cluster: &str,
    checkpoint: Option<&installer::checkpoint::Checkpoint>,
    args: &DestroyArgs,
) -> Result<Vec<String>, Failure> {
    let machines = provider.list_machines().await.map_err(|e| {
        Failure::new(
            provider_code(&e),
            format!("listing the project's servers: {e}"),
        )
    })?;
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let describe = |m: &Machine| Target {
        id: m.id.clone(),
        hostname: m.hostname.clone(),
        status: m.raw_status.clone(),
        ipv4: m.primary_ipv4.map_or("-".into(), |ip| ip.to_string()),
    };
    for m in machines
        .iter()
        .filter(|m| parse_hostname(cluster, &m.hostname).is_some())
    {
        targets.insert(m.id.clone(), describe(m));
    }
    if let Some(cp) = checkpoint {
        for record in &cp.servers {
            if let Some(id) = &record.id
                && !targets.contains_key(id)
            {
                match machines.iter().find(|m| &m.id == id) {
                    Some(m) => {
                        targets.insert(id.clone(), describe(m));
                    }
                    None => tracing::info!(%id, hostname = %record.hostname, "already gone"),
                }
            }
        }
    }
    if targets.is_empty() {
        return Ok(Vec::new());
    }

    if args.output == Output::Text {
        eprintln!(
            "cto destroy will delete {} server(s) of cluster {cluster}:",
            targets.len()
        );
        for t in targets.values() {
            eprintln!(
                "  {:<24} {:<18} {:<16} {}",
                t.hostname, t.id, t.ipv4, t.status
            );
        }
    }
    if !args.yes {
        match output::confirm("Delete them? This cannot be undone.") {
            Some(true) => {}
            Some(false) => {
                return Err(Failure::new(
                    exit::USAGE,
                    "destroy declined; nothing was deleted",
                ));
            }
            None => {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "refusing to delete {} server(s) without confirmation: no terminal; re-run with --yes",
                        targets.len()
                    ),
                ));
            }
        }
    }

    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for t in targets.values() {
        match provider.delete_machine(&t.id).await {
            Ok(Deleted::Deleted) => {
                tracing::info!(id = %t.id, hostname = %t.hostname, "deleted");
                if args.output == Output::Text {
                    eprintln!("  deleted {} ({})", t.hostname, t.id);
                }
                deleted.push(t.id.clone());
            }
            Ok(Deleted::AlreadyGone) => {
                if args.output == Output::Text {
                    eprintln!("  {} ({}) was already gone", t.hostname, t.id);
                }
                deleted.push(t.id.clone());
            }
            Err(e) => errors.push(format!("{} ({}): {e}", t.hostname, t.id)),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::new(
            exit::STEP_FAILED,
            format!(
                "could not delete {} server(s), they are still billed: {}",
                errors.len(),
                errors.join("; ")
            ),
        )
        .with_next(format!("cto destroy --cluster-name {cluster} --yes")));
    }

    // Confirm they are gone, so "destroyed" means nothing is billed.
    let started = Instant::now();
    let mut interval = Duration::from_millis(500);
    loop {
        let machines = provider.list_machines().await.map_err(|e| {
            Failure::new(
                provider_code(&e),
                format!("checking the servers are gone: {e}"),
            )
        })?;
        let left: Vec<&Machine> = machines
            .iter()
            .filter(|m| targets.contains_key(&m.id))
            .collect();
        if left.is_empty() {
            return Ok(deleted);
        }
        if started.elapsed() > GONE_TIMEOUT {
            let names: Vec<String> = left
                .iter()
                .map(|m| format!("{} ({}, {})", m.hostname, m.id, m.raw_status))
                .collect();
            return Err(Failure::new(
                exit::STEP_FAILED,
                format!(
                    "the provider accepted the deletes but still lists: {}",
                    names.join(", ")
                ),
            )
            .with_next(format!("cto destroy --cluster-name {cluster} --yes")));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(Duration::from_secs(10));
    }
}

fn provider_code(e: &metal::provider::ProviderError) -> u8 {
    match e.kind {
        metal::provider::ProviderErrorKind::Unauthorized => exit::PREREQUISITES,
        _ => exit::STEP_FAILED,
    }
}
