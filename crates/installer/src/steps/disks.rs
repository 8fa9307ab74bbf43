//! The installer asks the machine: the storage decision at step 1 (from the plans' drives), and
//! in maintenance mode (end of step 5) each node's disks over Talos' `storage.StorageService/
//! Disks` — which answers there without a client certificate (Talos v1.11
//! `internal/app/storaged/server.go` has no role check; maintenance mode is TLS without client
//! auth) — to choose its install disk and its Mayastor disk by the rules of
//! [`crate::storage_plan`], and to check them against the storage plan before anything is
//! installed. Choices are recorded in the checkpoint (`servers[].install_disk`,
//! `resolved.storage_disks`) and so survive a resume; a resumed run asks only nodes still
//! unknown.

use std::net::SocketAddr;
use std::time::Instant;

use metal::provider::{PlanOffer, Provider};
use metal::talos::client::{DiskInfo, TalosClient};

use crate::checkpoint::ConfigState;
use crate::error::StepError;
use crate::poll::NodeBackoff;
use crate::spec::ClusterSpec;
use crate::steps::infrastructure::TALOS_API_PORT;
use crate::steps::{StepContext, StepFailure, StepResult};
use crate::storage_plan::{
    self, DiskClass, DiskFacts, StorageDecision, StorageMode, choose_data_disk, choose_install_disk,
};

/// Step 1: the storage decision for the plan of the storage nodes (the workers, or the control
/// planes when there are none), naming the plans in stock at `site` that would give replicated
/// storage.
pub(crate) fn storage_decision(
    spec: &ClusterSpec,
    offers: &[PlanOffer],
    site: &str,
) -> Result<StorageDecision, String> {
    let plan = if spec.workers() > 0 {
        &spec.worker_plan
    } else {
        &spec.cp_plan
    };
    storage_plan::decide_for_offers(spec.storage, plan, offers, site)
}

/// What the rules see of a disk Talos reported.
pub(crate) fn facts(disk: &DiskInfo) -> DiskFacts {
    DiskFacts {
        name: disk.device_name.clone(),
        class: DiskClass::parse(&disk.kind),
        size: disk.size,
        readonly: disk.readonly,
    }
}

/// The stable `/dev/disk/by-id/` name udev gives a disk (systemd `60-persistent-storage.rules`):
/// `nvme-<model>_<serial>` for NVMe, `wwn-0x<wwn>` for SATA/SAS disks with an NAA WWID, else
/// `ata-<model>_<serial>`. OpenEBS asks for these in DiskPools because kernel names such as
/// `/dev/nvme1n1` can change across reboots (OpenEBS Mayastor docs, "Configure Pools").
/// `None` when the disk reports no serial.
pub(crate) fn by_id_path(disk: &DiskInfo) -> Option<String> {
    let model = disk.model.trim().replace(' ', "_");
    let serial = disk.serial.trim();
    if disk.kind == "nvme" {
        return (!model.is_empty() && !serial.is_empty())
            .then(|| format!("/dev/disk/by-id/nvme-{model}_{serial}"));
    }
    if let Some(naa) = disk.wwid.strip_prefix("naa.") {
        return Some(format!("/dev/disk/by-id/wwn-0x{naa}"));
    }
    (!model.is_empty() && !serial.is_empty())
        .then(|| format!("/dev/disk/by-id/ata-{model}_{serial}"))
}

/// True when `path` names `disk` (its device name or its by-id name).
pub(crate) fn names_disk(path: &str, disk: &DiskInfo) -> bool {
    path == disk.device_name || by_id_path(disk).as_deref() == Some(path)
}

/// `/dev/sda (ssd, 500 GB, MODEL)`, … for messages.
pub(crate) fn describe(disks: &[DiskInfo]) -> String {
    if disks.is_empty() {
        return "none".into();
    }
    disks
        .iter()
        .map(|d| {
            format!(
                "{} ({}, {} GB{}{})",
                d.device_name,
                d.kind,
                d.size / 1_000_000_000,
                if d.model.is_empty() {
                    String::new()
                } else {
                    format!(", {}", d.model)
                },
                if d.readonly { ", read-only" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a node's disks give: its install disk and, for a Mayastor storage node, its pool disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeDisks {
    pub install: String,
    pub pool: Option<String>,
    /// Said when the node offers more than planned (a data disk where local-path was planned).
    pub more_than_planned: Option<String>,
}

/// Applies the rules to one node's disks: `--install-disk` (checked) or the rule's choice;
/// for a Mayastor storage node `--storage-disk` (checked) or the rule's data disk. `Err` names
/// the node, what was planned and what was found.
pub(crate) fn choose_for_node(
    hostname: &str,
    plan: &str,
    spec: &ClusterSpec,
    mode: StorageMode,
    storage_node: bool,
    disks: &[DiskInfo],
) -> Result<NodeDisks, String> {
    let all: Vec<DiskFacts> = disks.iter().map(facts).collect();
    let install_index =
        match &spec.install_disk {
            Some(path) => Some(disks.iter().position(|d| names_disk(path, d)).ok_or_else(
                || {
                    format!(
                        "--install-disk {path} is not a disk of {hostname}; its disks: {}",
                        describe(disks)
                    )
                },
            )?),
            None => choose_install_disk(&all),
        };
    let Some(install_index) = install_index else {
        return Err(format!(
            "{hostname} has no disk Talos can install to (writable SSD, NVMe or HDD of at least 10 GB); its disks: {}",
            describe(disks)
        ));
    };
    if disks[install_index].readonly {
        return Err(format!(
            "--install-disk {} is read-only on {hostname}",
            disks[install_index].device_name
        ));
    }
    let install = spec
        .install_disk
        .clone()
        .unwrap_or_else(|| disks[install_index].device_name.clone());
    let data_index = choose_data_disk(&all, Some(install_index));
    let mut pool = None;
    let mut more_than_planned = None;
    if storage_node && mode == StorageMode::Mayastor {
        pool = Some(match &spec.storage_disk {
            Some(flag) => {
                let i = disks
                    .iter()
                    .position(|d| names_disk(flag, d))
                    .ok_or_else(|| {
                        format!(
                            "--storage-disk {flag} is not a disk of {hostname}; its disks: {}",
                            describe(disks)
                        )
                    })?;
                if i == install_index {
                    return Err(format!(
                        "--storage-disk {flag} is the disk Talos installs to on {hostname} ({install})"
                    ));
                }
                flag.clone()
            }
            None => {
                let i = data_index.ok_or_else(|| {
                    format!(
                        "{hostname} cannot carry the Mayastor pool planned at step 1: its plan {plan} should have a data disk besides the system disk, but it reports {} (Talos installs to {install}). Replace the server, or install with --storage local-path",
                        describe(disks)
                    )
                })?;
                by_id_path(&disks[i]).unwrap_or_else(|| disks[i].device_name.clone())
            }
        });
    } else if storage_node
        && mode == StorageMode::LocalPath
        && spec.storage == storage_plan::StorageChoice::Auto
        && let Some(i) = data_index
    {
        more_than_planned = Some(format!(
            "{hostname} reports a data disk its plan {plan} does not list ({}); storage stays local-path as decided at step 1",
            disks[i].device_name
        ));
    }
    Ok(NodeDisks {
        install,
        pool,
        more_than_planned,
    })
}

/// One node asked for its disks: hostname, plan, address, what it answered.
type Asked = (String, String, SocketAddr, Result<Vec<DiskInfo>, String>);

/// End of step 5: reads the disks of every node still in maintenance mode without a recorded
/// install disk, chooses, checks and records. Nodes are asked concurrently (bounded); a
/// transient Talos error is retried until the maintenance timeout.
pub(crate) async fn discover<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let spec = ctx.checkpoint().spec.clone();
    let mode = ctx
        .checkpoint()
        .resolved
        .storage_mode
        .unwrap_or(StorageMode::Mayastor);
    let storage_hosts: Vec<String> =
        crate::steps::post_install::storage_nodes(&spec, &ctx.checkpoint().servers)
            .into_iter()
            .map(|r| r.hostname.clone())
            .collect();
    let pending: Vec<(String, String, SocketAddr)> = ctx
        .checkpoint()
        .servers
        .iter()
        .filter(|r| {
            r.install_disk.is_none() && !r.installed && matches!(r.config, ConfigState::NotApplied)
        })
        .filter_map(|r| {
            r.primary_ipv4.map(|ip| {
                (
                    r.hostname.clone(),
                    r.plan.clone(),
                    SocketAddr::from((ip, TALOS_API_PORT)),
                )
            })
        })
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    let timings = ctx.timings.clone();
    let limit = timings.max_parallel_nodes.max(1);
    let found: Vec<Asked> = {
        use futures::StreamExt;
        futures::stream::iter(pending)
            .map(|(hostname, plan, addr)| {
                let timings = timings.clone();
                async move {
                    let started = Instant::now();
                    let mut backoff = NodeBackoff::new(&timings);
                    let result = loop {
                        let attempt = async {
                            let mut client =
                                TalosClient::maintenance(addr, timings.probe_timeout).await?;
                            client.disks().await
                        }
                        .await;
                        match attempt {
                            Ok(disks) => break Ok(disks),
                            Err(e) if started.elapsed() < timings.maintenance_timeout => {
                                tracing::debug!(%addr, error = %e, "Disks in maintenance mode; retrying");
                            }
                            Err(e) => {
                                break Err(format!(
                                    "listing its disks in maintenance mode (Talos Disks API): {e}"
                                ));
                            }
                        }
                        tokio::time::sleep(backoff.next_interval()).await;
                    };
                    (hostname, plan, addr, result)
                }
            })
            .buffer_unordered(limit)
            .collect()
            .await
    };
    let mut chosen: Vec<(String, NodeDisks)> = Vec::new();
    let mut first_error: Option<StepError> = None;
    for (hostname, plan, addr, result) in found {
        let decided = result.and_then(|disks| {
            choose_for_node(
                &hostname,
                &plan,
                &spec,
                mode,
                storage_hosts.contains(&hostname),
                &disks,
            )
        });
        match decided {
            Ok(node) => {
                ctx.node_status(
                    &hostname,
                    format!(
                        "install disk {}{}",
                        node.install,
                        node.pool
                            .as_deref()
                            .map(|p| format!(", Mayastor disk {p}"))
                            .unwrap_or_default()
                    ),
                    Some(addr.to_string()),
                );
                if let Some(note) = &node.more_than_planned {
                    ctx.progress(note.clone());
                }
                chosen.push((hostname, node));
            }
            Err(message) => {
                first_error.get_or_insert(StepError::Node {
                    hostname,
                    address: addr.to_string(),
                    message,
                });
            }
        }
    }
    if !chosen.is_empty() {
        ctx.update(|cp| {
            for (hostname, node) in &chosen {
                if let Some(record) = cp.server_mut(hostname) {
                    record.install_disk = Some(node.install.clone());
                }
                if let Some(pool) = &node.pool {
                    cp.resolved
                        .storage_disks
                        .insert(hostname.clone(), pool.clone());
                }
            }
        })?;
    }
    match first_error {
        Some(e) => Err(StepFailure::Failed(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, kind: &str, gb: u64) -> DiskInfo {
        DiskInfo {
            device_name: name.into(),
            size: gb * 1_000_000_000,
            model: "SAMSUNG MZ7LH480".into(),
            kind: kind.into(),
            serial: format!("S{}", name.len()),
            wwid: if kind == "nvme" {
                "eui.0025388b91b1c2d3".into()
            } else {
                "naa.5002538e40a0b1c2".into()
            },
            system_disk: false,
            readonly: false,
        }
    }

    fn spec(storage: &str, install_disk: Option<&str>) -> ClusterSpec {
        let mut request = crate::spec::InstallRequest {
            cluster_name: "demo".into(),
            nodes: 1,
            control_planes: 1,
            api_url: "https://api.latitude.sh".into(),
            project: Some("proj".into()),
            storage: Some(storage.into()),
            install_disk: install_disk.map(str::to_owned),
            sync_timeout_minutes: 30,
            ..Default::default()
        };
        request.region = Some("DAL".into());
        request.validate().expect("valid spec")
    }

    #[test]
    fn by_id_names_follow_udev() {
        let nvme = disk("/dev/nvme0n1", "nvme", 800);
        assert_eq!(
            by_id_path(&nvme).unwrap(),
            "/dev/disk/by-id/nvme-SAMSUNG_MZ7LH480_S12"
        );
        let sata = disk("/dev/sda", "ssd", 500);
        assert_eq!(
            by_id_path(&sata).unwrap(),
            "/dev/disk/by-id/wwn-0x5002538e40a0b1c2"
        );
        assert!(names_disk("/dev/disk/by-id/wwn-0x5002538e40a0b1c2", &sata));
    }

    #[test]
    fn an_nvme_only_node_installs_on_its_nvme_disk() {
        let disks = [disk("/dev/nvme0n1", "nvme", 800)];
        let node = choose_for_node(
            "demo-cp-1",
            "c3-small-x86",
            &spec("auto", None),
            StorageMode::LocalPath,
            true,
            &disks,
        )
        .unwrap();
        assert_eq!(node.install, "/dev/nvme0n1");
        assert_eq!(node.pool, None);
        // Planned Mayastor, found one disk: stop before installing, naming both.
        let err = choose_for_node(
            "demo-cp-1",
            "c3-small-x86",
            &spec("mayastor", None),
            StorageMode::Mayastor,
            true,
            &disks,
        )
        .unwrap_err();
        assert!(
            err.contains("demo-cp-1") && err.contains("c3-small-x86"),
            "{err}"
        );
        assert!(err.contains("/dev/nvme0n1 (nvme, 800 GB"), "{err}");
    }

    #[test]
    fn pools_use_by_id_paths_and_overrides_are_checked() {
        let disks = [
            disk("/dev/sda", "ssd", 500),
            disk("/dev/nvme0n1", "nvme", 1000),
        ];
        let node = choose_for_node(
            "demo-cp-1",
            "s2-small-x86",
            &spec("auto", None),
            StorageMode::Mayastor,
            true,
            &disks,
        )
        .unwrap();
        assert_eq!(node.install, "/dev/sda");
        assert_eq!(
            node.pool.as_deref(),
            Some("/dev/disk/by-id/nvme-SAMSUNG_MZ7LH480_S12")
        );
        let err = choose_for_node(
            "demo-cp-1",
            "s2-small-x86",
            &spec("auto", Some("/dev/sdz")),
            StorageMode::Mayastor,
            true,
            &disks,
        )
        .unwrap_err();
        assert!(
            err.contains("--install-disk /dev/sdz is not a disk of demo-cp-1"),
            "{err}"
        );
        let node = choose_for_node(
            "demo-cp-1",
            "s2-small-x86",
            &spec("auto", Some("/dev/nvme0n1")),
            StorageMode::LocalPath,
            true,
            &disks,
        )
        .unwrap();
        assert_eq!(node.install, "/dev/nvme0n1");
    }
}
