//! `cto destroy`: delete exactly the servers that belong to a cluster's install, so nothing
//! stays billed and nobody else's server is touched.
//!
//! What is "ours" (see `installer::ownership`):
//!
//! * **With a checkpoint** (`--state-dir`, or the cluster's default directory): the server ids
//!   it records (current servers, failed servers being replaced, duplicates), servers carrying
//!   the install's tag `cto-install-<install id>`, and servers that answer an order whose
//!   answer was lost (the install's hostname, made around the recorded intent, tagged by no
//!   install). Another install of the same cluster name, or a hand-made server with one of the
//!   cluster's hostnames, is left alone.
//! * **Without a checkpoint** (`--cluster-name`): the servers carrying the cluster's tag
//!   `cto-cluster-<name>`. Servers that merely have the cluster's hostnames are offered only with
//!   `--match-hostname`, each listed, and deleted only after confirmation.
//!
//! "Not found" is success. After the deletes, the project is listed again until none of the
//! servers remain (bounded), and the checkpoint is moved aside into `destroyed/`, so a second
//! `cto destroy` of the same directory answers "nothing to destroy".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use installer::checkpoint::{CheckpointError, CheckpointStore, store::DirLock};
use installer::ownership::{self, Proof};
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
    /// Why it is deleted: what proves it belongs to the cluster.
    why: String,
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
                    format!(
                        "{e}\nPass --cluster-name to find the servers by the cluster's tag instead."
                    ),
                ));
            }
            eprintln!("warning: {e}; finding servers by the cluster's tag only");
            None
        }
        Err(e) => return Err(Failure::new(exit::USAGE, e.to_string())),
    };
    // A state directory whose install was destroyed keeps its checkpoint in `destroyed/`.
    let already_destroyed = checkpoint.is_none() && dir.join("destroyed").is_dir();
    if already_destroyed && (args.state_dir.is_some() || args.cluster_name.is_none()) {
        let message = format!(
            "Nothing to destroy: the install in {} was already destroyed.",
            dir.display()
        );
        match args.output {
            Output::Json => output::emit_json(
                &json!({"event": "destroyed", "cluster": args.cluster_name, "deleted": [], "message": message}),
            ),
            Output::Text => println!("{message}"),
        }
        return Ok(());
    }
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
                    "no checkpoint in {}: pass --cluster-name to find the servers by the cluster's tag",
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
    let again = if checkpoint.is_some() {
        format!("cto destroy --state-dir {} --yes", dir.display())
    } else {
        format!("cto destroy --cluster-name {cluster} --yes")
    };
    let result = destroy(
        &connection.provider,
        &cluster,
        checkpoint.as_ref(),
        &args,
        &again,
    )
    .await;
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
        Output::Text if deleted.is_empty() => println!(
            "Nothing to destroy: no server of cluster {cluster} is {}.",
            if checkpoint.is_some() {
                "left of this install"
            } else {
                "tagged with its cluster tag"
            }
        ),
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
    again: &str,
) -> Result<Vec<String>, Failure> {
    let listing = |e: metal::provider::ProviderError| {
        Failure::new(
            provider_code(&e),
            format!("listing the project's servers: {e}"),
        )
    };
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let describe = |m: &Machine, why: &str| Target {
        id: m.id.clone(),
        hostname: m.hostname.clone(),
        status: m.raw_status.clone(),
        ipv4: m.primary_ipv4.map_or("-".into(), |ip| ip.to_string()),
        why: why.to_owned(),
    };
    match checkpoint {
        Some(cp) => {
            let machines = provider.list_machines().await.map_err(listing)?;
            for m in &machines {
                let why = match ownership::proof(cp, m) {
                    Some(Proof::Recorded) => "in the checkpoint",
                    Some(Proof::Tagged) => "install tag",
                    Some(Proof::FreshIntent) => "answers a recorded order",
                    None => continue,
                };
                targets.insert(m.id.clone(), describe(m, why));
            }
            for id in cp.owned_server_ids() {
                if !targets.contains_key(&id) {
                    tracing::info!(%id, "already gone");
                }
            }
        }
        None => {
            let tag_name = ownership::cluster_tag_name(cluster);
            let tag = provider.find_tag(&tag_name).await.map_err(|e| {
                Failure::new(
                    provider_code(&e),
                    format!("looking up the tag {tag_name}: {e}"),
                )
            })?;
            if let Some(tag) = &tag {
                for m in provider
                    .list_machines_tagged(&tag.id)
                    .await
                    .map_err(listing)?
                {
                    targets.insert(m.id.clone(), describe(&m, "cluster tag"));
                }
            }
            let machines = provider.list_machines().await.map_err(listing)?;
            let namesakes: Vec<&Machine> = machines
                .iter()
                .filter(|m| {
                    parse_hostname(cluster, &m.hostname).is_some() && !targets.contains_key(&m.id)
                })
                .collect();
            if args.match_hostname {
                for m in namesakes {
                    targets.insert(m.id.clone(), describe(m, "hostname only"));
                }
            } else if !namesakes.is_empty() && args.output == Output::Text {
                let list: Vec<String> = namesakes
                    .iter()
                    .map(|m| format!("{} ({})", m.hostname, m.id))
                    .collect();
                eprintln!(
                    "note: {} server(s) have cluster {cluster}'s hostnames but not its tag {tag_name}, so nothing proves they are this cluster's: {}. They are left alone; pass --match-hostname to review them and delete them after confirming",
                    namesakes.len(),
                    list.join(", ")
                );
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
                "  {:<24} {:<18} {:<16} {:<18} {}",
                t.hostname, t.id, t.ipv4, t.status, t.why
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
        .with_next(again));
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
            .with_next(again));
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
