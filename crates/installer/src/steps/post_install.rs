//! Steps 20–22: Mayastor storage, the user's kubeconfig and talosconfig, Vault
//! (`--init-vault`, run at the start of Complete) and the summary.
//!
//! * **ConfiguringStorage** — storage nodes are the workers, or the control planes when there
//!   are none. Each gets a DiskPool `pool-<hostname>` on `--storage-disk` or on the single
//!   writable, non-system NVMe disk the node's Talos API reports. The `mayastor-nvme`
//!   StorageClass becomes the default (local-path's default annotation is removed). Done when
//!   every pool reports Online and a test PVC binds.
//! * **ConfiguringKubeconfig** — the cluster's kubeconfig merged into `$KUBECONFIG` (its first
//!   path) or `~/.kube/config` (backed up, `admin@<cluster>` current), or written standalone to
//!   `--kubeconfig-out`; the talosconfig merged into `~/.talos/config` (backed up). How to open
//!   the cluster in Lens/OpenLens; `--install-lens` installs it, best effort.
//! * **Complete** — with `--init-vault`, Vault initialised and unsealed first
//!   ([`crate::vault`]); then the summary, also kept in the checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::runtime::watcher;
use metal::provider::Provider;
use metal::talos::client::{DiskInfo, TalosClient};
use metal::talos::config::MAYASTOR_NAMESPACE;
use metal::talos::talosconfig::Talosconfig;
use serde_json::{Value, json};

use crate::checkpoint::ServerRecord;
use crate::checkpoint::store::write_atomic;
use crate::cluster_api::{ClusterApi, Verdict};
use crate::error::StepError;
use crate::events::{Event, Summary, SummaryNode};
use crate::kubeconfig_merge;
use crate::spec::{ClusterSpec, Role};
use crate::steps::infrastructure::TALOS_API_PORT;
use crate::steps::platform::{
    ARGOCD_NAMESPACE, LOCAL_PATH_STORAGE_CLASS, cluster, kube_error, wait_failure,
};
use crate::steps::talos_bootstrap::{KUBECONFIG_FILE, TALOSCONFIG_FILE};
use crate::steps::{StepContext, StepFailure, StepResult};
use crate::vault;

/// The default StorageClass, backed by Mayastor.
pub const STORAGE_CLASS: &str = "mayastor-nvme";
/// Mayastor's CSI provisioner.
pub const MAYASTOR_PROVISIONER: &str = "io.openebs.csi-mayastor";
/// The annotation that makes a StorageClass the default.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// Where the volume test's PVC is created (and deleted again).
pub const VOLUME_TEST_NAMESPACE: &str = "default";
/// The volume test's PVC.
pub const VOLUME_TEST_PVC: &str = "cto-storage-check";
/// The Argo CD initial admin password's Secret.
pub const ARGOCD_ADMIN_SECRET: &str = "argocd-initial-admin-secret";

/// The DiskPool resource (`openebs.io/v1beta2`).
pub fn disk_pool_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("openebs.io", "v1beta2", "DiskPool"),
        "diskpools",
    )
}

/// The DiskPool name of a node.
pub fn pool_name(hostname: &str) -> String {
    format!("pool-{hostname}")
}

/// The nodes that carry Mayastor pools: the workers, or the control planes when there are
/// none.
pub(crate) fn storage_nodes<'a>(
    spec: &ClusterSpec,
    servers: &'a [ServerRecord],
) -> Vec<&'a ServerRecord> {
    let role = if spec.workers() > 0 {
        Role::Worker
    } else {
        Role::ControlPlane
    };
    servers.iter().filter(|s| s.role == role).collect()
}

/// The single writable, non-system NVMe disk of a node, or why there is none.
pub(crate) fn choose_disk(disks: &[DiskInfo]) -> Result<String, String> {
    let candidates: Vec<&DiskInfo> = disks
        .iter()
        .filter(|d| d.kind == "nvme" && !d.system_disk && !d.readonly)
        .collect();
    let listing = || {
        disks
            .iter()
            .map(|d| {
                format!(
                    "{} ({}, {} GB, {}{}{})",
                    d.device_name,
                    d.kind,
                    d.size / 1_000_000_000,
                    if d.model.is_empty() { "?" } else { &d.model },
                    if d.system_disk { ", system disk" } else { "" },
                    if d.readonly { ", read-only" } else { "" },
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match candidates.as_slice() {
        [one] => Ok(one.device_name.clone()),
        [] => Err(format!(
            "no writable non-system NVMe disk for Mayastor; its disks: {}. Give --storage-disk to choose one",
            listing()
        )),
        several => Err(format!(
            "{} candidate NVMe disks for Mayastor ({}); its disks: {}. Give --storage-disk to choose one",
            several.len(),
            several
                .iter()
                .map(|d| d.device_name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            listing()
        )),
    }
}

/// One node's DiskPool.
pub(crate) fn disk_pool(hostname: &str, disk: &str) -> Value {
    json!({
        "apiVersion": "openebs.io/v1beta2",
        "kind": "DiskPool",
        "metadata": {
            "name": pool_name(hostname),
            "namespace": MAYASTOR_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "cto"},
        },
        "spec": {"node": hostname, "disks": [disk]},
    })
}

/// The `mayastor-nvme` StorageClass, the cluster's default.
pub(crate) fn storage_class(replicas: u32) -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
            "labels": {"app.kubernetes.io/managed-by": "cto"},
        },
        "provisioner": MAYASTOR_PROVISIONER,
        "parameters": {
            "repl": replicas.to_string(),
            "protocol": "nvmf",
            "ioTimeout": "60",
        },
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true,
    })
}

/// The volume test's PVC.
pub(crate) fn test_pvc() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": VOLUME_TEST_PVC,
            "namespace": VOLUME_TEST_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "cto"},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": STORAGE_CLASS,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    })
}

/// How the DiskPools stand: done when each expected pool reports `Online`.
pub(crate) fn pools_verdict<'a>(
    expected: &[String],
    pools: impl IntoIterator<Item = &'a Value>,
) -> Verdict {
    let by_name: BTreeMap<&str, &Value> = pools
        .into_iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(|n| (n, p)))
        .collect();
    let pending: Vec<String> = expected
        .iter()
        .filter_map(|name| match by_name.get(name.as_str()) {
            None => Some(format!("{name}: not created yet")),
            Some(p) => {
                let status = p["status"]["poolStatus"]
                    .as_str()
                    .unwrap_or("no status yet");
                (status != "Online").then(|| format!("{name}: {status}"))
            }
        })
        .collect();
    if pending.is_empty() {
        Verdict::Done
    } else {
        Verdict::Pending(pending.join("; "))
    }
}

fn talosconfig_of<P: Provider>(ctx: &StepContext<'_, P>) -> Result<Talosconfig, StepError> {
    let path = ctx.store.dir().join(TALOSCONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| StepError::Inconsistent {
        what: format!("a readable talosconfig at {} ({e})", path.display()),
    })?;
    Talosconfig::from_yaml(&text).map_err(|e| StepError::Inconsistent {
        what: format!("a valid talosconfig at {} ({e})", path.display()),
    })
}

/// Finds each storage node's disk (flag, checkpoint, or Talos `Disks`) and records them.
///
/// The nodes whose disk is not known yet are asked concurrently (at most
/// `max_parallel_nodes` at once); every disk found is recorded in one checkpoint update, also
/// when another node failed, so a resumed run asks only the nodes still unknown.
async fn resolve_disks<P: Provider>(
    ctx: &mut StepContext<'_, P>,
) -> Result<Vec<(String, String)>, StepFailure> {
    let spec = ctx.checkpoint().spec.clone();
    let nodes: Vec<ServerRecord> = storage_nodes(&spec, &ctx.checkpoint().servers)
        .into_iter()
        .cloned()
        .collect();
    let known = &ctx.checkpoint().resolved.storage_disks;
    let mut disks: BTreeMap<String, String> = BTreeMap::new();
    let mut unknown = Vec::new();
    for node in &nodes {
        match (&spec.storage_disk, known.get(&node.hostname)) {
            (Some(flag), _) => {
                disks.insert(node.hostname.clone(), flag.clone());
            }
            (None, Some(known)) => {
                disks.insert(node.hostname.clone(), known.clone());
            }
            (None, None) => {
                let ip = node.primary_ipv4.ok_or_else(|| StepError::Inconsistent {
                    what: format!("the address of {}", node.hostname),
                })?;
                unknown.push((
                    node.hostname.clone(),
                    std::net::SocketAddr::from((ip, TALOS_API_PORT)),
                ));
            }
        }
    }

    let mut errors: BTreeMap<String, StepError> = BTreeMap::new();
    if !unknown.is_empty() {
        let talosconfig = talosconfig_of(ctx)?;
        let tc = &talosconfig;
        let probe_timeout = ctx.timings.probe_timeout;
        let limit = ctx.timings.max_parallel_nodes.max(1);
        let found: Vec<(String, std::net::SocketAddr, Result<String, String>)> =
            futures::stream::iter(unknown)
                .map(|(hostname, addr)| async move {
                    let result = async {
                        let mut client = TalosClient::connect(addr, tc, probe_timeout)
                            .await
                            .map_err(|e| format!("connecting over mutual TLS: {e}"))?;
                        let disks = client
                            .disks()
                            .await
                            .map_err(|e| format!("listing disks (Talos Disks API): {e}"))?;
                        choose_disk(&disks)
                    }
                    .await;
                    (hostname, addr, result)
                })
                .buffer_unordered(limit)
                .collect()
                .await;
        for (hostname, addr, result) in found {
            match result {
                Ok(disk) => {
                    ctx.node_status(&hostname, format!("Mayastor disk {disk}"), None);
                    disks.insert(hostname, disk);
                }
                Err(message) => {
                    errors.insert(
                        hostname.clone(),
                        StepError::Node {
                            hostname,
                            address: addr.to_string(),
                            message,
                        },
                    );
                }
            }
        }
    }

    // One checkpoint write for every node (only when something changes).
    let changed = disks
        .iter()
        .any(|(h, d)| ctx.checkpoint().resolved.storage_disks.get(h) != Some(d));
    if changed {
        let recorded = disks.clone();
        ctx.update(|cp| cp.resolved.storage_disks.extend(recorded))?;
    }
    // The first failing node, in the nodes' order.
    if let Some(e) = nodes.iter().find_map(|n| errors.remove(&n.hostname)) {
        return Err(e.into());
    }
    Ok(nodes
        .into_iter()
        .filter_map(|n| disks.remove(&n.hostname).map(|d| (n.hostname, d)))
        .collect())
}

/// Step 20: DiskPools, the default StorageClass, pools Online and a PVC bound.
pub(crate) async fn configuring_storage<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let pools = resolve_disks(ctx).await?;
    let api = cluster(ctx).await?;
    let replicas = ctx.checkpoint().spec.storage_replicas;
    // Server-side applies are idempotent: every pool at once (bounded), first error in the
    // nodes' order.
    let limit = ctx.timings.max_parallel_nodes.max(1);
    let applied: Vec<Result<(), StepError>> = futures::stream::iter(&pools)
        .map(|(hostname, disk)| {
            let api = &api;
            async move {
                api.apply(&disk_pool(hostname, disk))
                    .await
                    .map(|_| ())
                    .map_err(|e| kube_error(format!("the DiskPool of {hostname}"), e))
            }
        })
        .buffered(limit)
        .collect()
        .await;
    applied.into_iter().collect::<Result<Vec<()>, _>>()?;
    api.apply(&storage_class(replicas))
        .await
        .map_err(|e| kube_error("the mayastor-nvme StorageClass", e))?;
    let classes: Api<StorageClass> = api.all();
    match classes
        .patch(
            LOCAL_PATH_STORAGE_CLASS,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {DEFAULT_CLASS_ANNOTATION: "false"}}}),
            ),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            return Err(kube_error(
                "removing local-path's default annotation",
                crate::cluster_api::describe_kube_error(&e),
            )
            .into());
        }
    }
    ctx.update(|cp| cp.resolved.storage_applied = true)?;
    ctx.progress(format!(
        "{} DiskPool(s) applied; {STORAGE_CLASS} (repl {replicas}) is the default StorageClass",
        pools.len()
    ));

    let expected: Vec<String> = pools.iter().map(|(h, _)| pool_name(h)).collect();
    let timeout = ctx.timings.rollout_timeout;
    let started = Instant::now();
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(api.client(), MAYASTOR_NAMESPACE, &disk_pool_resource());
    api.wait_for(dynamic, watcher::Config::default(), timeout, |all| {
        // Only what the verdict reads: name and status, not a copy of each whole object.
        let values: Vec<Value> = all
            .values()
            .map(|o| {
                json!({
                    "metadata": {"name": o.metadata.name},
                    "status": o.data.get("status").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        pools_verdict(&expected, &values)
    })
    .await
    .map_err(|e| wait_failure("every DiskPool to report Online", started, e))?;
    ctx.progress(format!("{} DiskPool(s) Online", expected.len()));

    volume_test(ctx, &api).await?;
    ctx.update(|cp| cp.resolved.storage_verified = true)?;
    Ok(())
}

/// Creates a small PVC on `mayastor-nvme`, waits until it is Bound, and deletes it.
async fn volume_test<P: Provider>(ctx: &StepContext<'_, P>, api: &ClusterApi) -> StepResult {
    let pvcs: Api<PersistentVolumeClaim> = api.namespaced(VOLUME_TEST_NAMESPACE);
    api.apply(&test_pvc())
        .await
        .map_err(|e| kube_error("the volume test's PVC", e))?;
    let started = Instant::now();
    let waited = api
        .wait_for(
            pvcs.clone(),
            watcher::Config::default().fields(&format!("metadata.name={VOLUME_TEST_PVC}")),
            ctx.timings.rollout_timeout,
            |all| match all.values().next() {
                None => Verdict::Pending(format!("PVC {VOLUME_TEST_PVC} not created yet")),
                Some(pvc) => match pvc.status.as_ref().and_then(|s| s.phase.as_deref()) {
                    Some("Bound") => Verdict::Done,
                    phase => Verdict::Pending(format!(
                        "PVC {VOLUME_TEST_PVC} on {STORAGE_CLASS}: {}",
                        phase.unwrap_or("no phase yet")
                    )),
                },
            },
        )
        .await;
    let deleted = match pvcs
        .delete(VOLUME_TEST_PVC, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    };
    waited.map_err(|e| wait_failure("the volume test's PVC to bind", started, e))?;
    deleted.map_err(|e| {
        kube_error(
            "deleting the volume test's PVC",
            crate::cluster_api::describe_kube_error(&e),
        )
    })?;
    ctx.progress(format!(
        "a volume on {STORAGE_CLASS} bound (test PVC {VOLUME_TEST_NAMESPACE}/{VOLUME_TEST_PVC}, deleted again)"
    ));
    Ok(())
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> StepError {
    StepError::io(what, path, e)
}

/// An I/O error on the `--kubeconfig-out` file: the same advice, plus choosing another path.
fn kubeconfig_out_error(what: &str, path: &Path, e: impl std::fmt::Display) -> StepError {
    match StepError::io(what, path, e) {
        StepError::Io {
            action,
            path,
            message,
            ..
        } => StepError::Io {
            action,
            path,
            message,
            advice: "Fix the path or its permissions, or choose another --kubeconfig-out, then resume with `cto install --resume`; the cluster itself is unaffected".to_owned(),
        },
        other => other,
    }
}

fn timestamp() -> String {
    time::OffsetDateTime::now_utc().unix_timestamp().to_string()
}

/// Merges the talosconfig into `path` (backing the old file up when it changes). Returns the
/// backup, if one was made, and whether the file changed.
fn merge_talosconfig(
    talosconfig: &Talosconfig,
    path: &Path,
) -> Result<(Option<PathBuf>, bool), StepError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("reading", path, e)),
    };
    let merged = talosconfig
        .merge_into(existing.as_deref())
        .map_err(|e| io_error("merging the talosconfig into", path, e))?;
    if existing.as_deref() == Some(merged.as_str()) {
        return Ok((None, false));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e))?;
    }
    let mut backup = None;
    if let Some(old) = existing.filter(|t| !t.trim().is_empty()) {
        let name = path
            .file_name()
            .map_or("config".into(), |n| n.to_string_lossy().into_owned());
        let backup_path = path.with_file_name(format!("{name}.cto-backup-{}", timestamp()));
        write_atomic(&backup_path, old.as_bytes()).map_err(|e| io_error("backing up", path, e))?;
        backup = Some(backup_path);
    }
    write_atomic(path, merged.as_bytes()).map_err(|e| io_error("writing", path, e))?;
    Ok((backup, true))
}

/// The command that installs OpenLens on this platform, as shown to the user.
pub(crate) fn lens_install_command() -> (&'static str, &'static [&'static str]) {
    if cfg!(target_os = "macos") {
        ("brew", &["install", "--cask", "openlens"])
    } else if cfg!(target_os = "windows") {
        (
            "winget",
            &["install", "--id", "MuhammedKalkan.OpenLens", "-e"],
        )
    } else {
        (
            "flatpak",
            &["install", "-y", "flathub", "dev.k8slens.OpenLens"],
        )
    }
}

/// Step 21: kubeconfig and talosconfig for the user; how to open the cluster in Lens.
pub(crate) async fn configuring_kubeconfig<P: Provider>(
    ctx: &mut StepContext<'_, P>,
) -> StepResult {
    let dir = ctx.store.dir().to_owned();
    let cluster_name = ctx.checkpoint().spec.cluster_name.clone();
    let source = dir.join(KUBECONFIG_FILE);
    let kubeconfig =
        std::fs::read_to_string(&source).map_err(|e| io_error("reading", &source, e))?;
    let options = ctx.options;

    let kubeconfig_path = if let Some(out) = &options.kubeconfig_out {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| kubeconfig_out_error("creating the directory", parent, e))?;
        }
        // A different file already there is kept beside it before it is replaced.
        let backup = match std::fs::read(out) {
            Ok(old) if !old.is_empty() && old != kubeconfig.as_bytes() => {
                let name = out
                    .file_name()
                    .map_or("kubeconfig".into(), |n| n.to_string_lossy().into_owned());
                let backup_path = out.with_file_name(format!("{name}.cto-backup-{}", timestamp()));
                write_atomic(&backup_path, &old)
                    .map_err(|e| kubeconfig_out_error("backing up", out, e))?;
                format!("; the previous file is saved as {}", backup_path.display())
            }
            Ok(_) => String::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(kubeconfig_out_error("reading", out, e).into()),
        };
        write_atomic(out, kubeconfig.as_bytes())
            .map_err(|e| kubeconfig_out_error("writing", out, e))?;
        ctx.progress(format!(
            "kubeconfig written to {} (0600){backup}",
            out.display()
        ));
        Some(out.clone())
    } else {
        match &options.home {
            None if options.kubeconfig_env.is_none() => {
                ctx.warn(format!(
                    "HOME is not set: the kubeconfig was not merged; use {}",
                    source.display()
                ));
                None
            }
            home => {
                let home = home.clone().unwrap_or_default();
                let path = kubeconfig_merge::default_kubeconfig_path(
                    options.kubeconfig_env.as_deref(),
                    &home,
                );
                let outcome = kubeconfig_merge::merge_into_file(&kubeconfig, &path)
                    .map_err(|e| io_error("merging the kubeconfig into", &path, e))?;
                let backup = outcome.backup.as_ref().map_or(String::new(), |b| {
                    format!("; the previous file is saved as {}", b.display())
                });
                if outcome.changed {
                    ctx.progress(format!(
                        "kubeconfig merged into {}: context {} is current{backup}",
                        path.display(),
                        outcome.context
                    ));
                } else {
                    ctx.progress(format!(
                        "{} already holds context {}; unchanged",
                        path.display(),
                        outcome.context
                    ));
                }
                Some(path)
            }
        }
    };

    let talosconfig_path = match &options.home {
        Some(home) => {
            let path = home.join(".talos").join("config");
            let talosconfig = talosconfig_of(ctx)?;
            let (backup, changed) = merge_talosconfig(&talosconfig, &path)?;
            let backup = backup.map_or(String::new(), |b| {
                format!("; the previous file is saved as {}", b.display())
            });
            if changed {
                ctx.progress(format!(
                    "talosconfig merged into {}: context {cluster_name} is current{backup}",
                    path.display()
                ));
            } else {
                ctx.progress(format!(
                    "{} already holds context {cluster_name}; unchanged",
                    path.display()
                ));
            }
            Some(path)
        }
        None => {
            ctx.warn(format!(
                "HOME is not set: the talosconfig was not merged; use {}",
                dir.join(TALOSCONFIG_FILE).display()
            ));
            None
        }
    };

    let shown = kubeconfig_path.as_deref().unwrap_or(&source);
    ctx.progress(format!(
        "Lens/OpenLens: it reads {} — pick the context admin@{cluster_name} in its catalog (or File → Add Cluster and paste that file)",
        shown.display()
    ));
    let (program, args) = lens_install_command();
    let command = format!("{program} {}", args.join(" "));
    if options.install_lens {
        ctx.progress(format!("installing OpenLens: {command}"));
        let status = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .status()
            .await;
        match status {
            Ok(s) if s.success() => ctx.progress("OpenLens installed"),
            Ok(s) => ctx.warn(format!(
                "`{command}` exited with {s}; the install continues. Install OpenLens yourself (on Linux the AppImage from github.com/MuhammedKalkan/OpenLens/releases also works)"
            )),
            Err(e) => ctx.warn(format!(
                "cannot run `{command}` ({e}); the install continues. Install OpenLens yourself (brew install --cask openlens, winget install MuhammedKalkan.OpenLens, or the flatpak/AppImage)"
            )),
        }
    } else {
        ctx.progress(format!(
            "to install OpenLens: {command} (or re-run with --install-lens)"
        ));
    }

    ctx.update(|cp| {
        cp.resolved.kubeconfig_path = kubeconfig_path.map(|p| p.display().to_string());
        cp.resolved.talosconfig_path = talosconfig_path.map(|p| p.display().to_string());
    })?;
    Ok(())
}

/// The summary of a finished install, from the checkpoint: the one Complete stored, or one
/// built from the checkpoint when Complete has not stored it.
pub fn summary_of(cp: &crate::checkpoint::Checkpoint, state_dir: &Path) -> Summary {
    cp.resolved
        .summary
        .clone()
        .unwrap_or_else(|| summary(cp, state_dir))
}

/// The summary of a finished install, from the checkpoint.
pub(crate) fn summary(cp: &crate::checkpoint::Checkpoint, state_dir: &Path) -> Summary {
    let spec = &cp.spec;
    let nodes = cp
        .servers
        .iter()
        .map(|s| SummaryNode {
            hostname: s.hostname.clone(),
            role: s.role.to_string(),
            ipv4: s.primary_ipv4.map(|ip| ip.to_string()),
        })
        .collect();
    let storage_pools = cp
        .resolved
        .storage_disks
        .iter()
        .map(|(host, disk)| format!("{} on {host}:{disk}", pool_name(host)))
        .collect();
    let kubeconfig = cp
        .resolved
        .kubeconfig_path
        .clone()
        .unwrap_or_else(|| state_dir.join(KUBECONFIG_FILE).display().to_string());
    let state = state_dir.display().to_string();
    Summary {
        cluster: spec.cluster_name.clone(),
        endpoint: cp.resolved.endpoint.clone(),
        nodes,
        storage_pools,
        storage_class: STORAGE_CLASS.to_owned(),
        kubeconfig: Some(kubeconfig),
        talosconfig: cp
            .resolved
            .talosconfig_path
            .clone()
            .or_else(|| Some(state_dir.join(TALOSCONFIG_FILE).display().to_string())),
        argocd_password: format!(
            "kubectl -n {ARGOCD_NAMESPACE} get secret {ARGOCD_ADMIN_SECRET} -o jsonpath='{{.data.password}}' | base64 -d"
        ),
        vault_init: cp
            .resolved
            .vault_unsealed
            .then(|| state_dir.join(vault::VAULT_INIT_FILE).display().to_string()),
        hourly_usd: cp.resolved.hourly_usd,
        monthly_usd: cp.resolved.monthly_usd,
        next: vec![
            "kubectl get nodes".to_owned(),
            format!("cto health --state-dir {state}"),
            format!("cto destroy --state-dir {state}"),
        ],
    }
}

/// Waits until the Vault Application is Healthy.
async fn wait_vault_healthy<P: Provider>(ctx: &StepContext<'_, P>, api: &ClusterApi) -> StepResult {
    let apps: Api<DynamicObject> = Api::namespaced_with(
        api.client(),
        ARGOCD_NAMESPACE,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        ),
    );
    let started = Instant::now();
    api.wait_for(
        apps,
        watcher::Config::default().fields(&format!("metadata.name={}", vault::VAULT_APPLICATION)),
        ctx.timings.rollout_timeout,
        |all| {
            let Some(app) = all.values().next() else {
                return Verdict::Pending(format!(
                    "no Application {} (is Vault part of the profile?)",
                    vault::VAULT_APPLICATION
                ));
            };
            let app = serde_json::to_value(app).unwrap_or_default();
            match app["status"]["health"]["status"].as_str() {
                Some("Healthy") => Verdict::Done,
                other => Verdict::Pending(format!(
                    "Application {}: {}",
                    vault::VAULT_APPLICATION,
                    other.unwrap_or("Unknown")
                )),
            }
        },
    )
    .await
    .map_err(|e| wait_failure("the Vault Application to be Healthy", started, e))?;
    Ok(())
}

/// Step 22: Vault (with `--init-vault`), then the summary.
pub(crate) async fn complete<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let api = cluster(ctx).await?;
    let dir = ctx.store.dir().to_owned();
    if ctx.checkpoint().spec.init_vault {
        wait_vault_healthy(ctx, &api).await?;
        let outcome = vault::initialise_and_unseal(&api, &dir)
            .await
            .map_err(|e| kube_error("initialising Vault", e))?;
        let file = dir.join(vault::VAULT_INIT_FILE);
        if outcome.initialised_now {
            ctx.progress(format!(
                "Vault initialised; its unseal keys and root token are in {} (0600) — back this file up somewhere safe",
                file.display()
            ));
        }
        ctx.progress(format!(
            "Vault unsealed ({}) with the keys in {}",
            outcome.unsealed.join(", "),
            file.display()
        ));
        ctx.update(|cp| cp.resolved.vault_unsealed = true)?;
    }

    let secrets: Api<Secret> = api.namespaced(ARGOCD_NAMESPACE);
    match api.get_opt(&secrets, ARGOCD_ADMIN_SECRET).await {
        Ok(Some(_)) => {}
        Ok(None) => ctx.warn(format!(
            "{ARGOCD_NAMESPACE}/{ARGOCD_ADMIN_SECRET} does not exist (deleted after the password was changed?); log in with the password you set"
        )),
        Err(e) => ctx.warn(format!("cannot read {ARGOCD_NAMESPACE}/{ARGOCD_ADMIN_SECRET}: {e}")),
    }

    let summary = summary(ctx.checkpoint(), &dir);
    ctx.update(|cp| cp.resolved.summary = Some(summary.clone()))?;
    ctx.reporter.report(Event::Complete(Box::new(summary)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, kind: &str, system: bool) -> DiskInfo {
        DiskInfo {
            device_name: name.into(),
            size: 960_000_000_000,
            model: "SAMSUNG".into(),
            kind: kind.into(),
            serial: String::new(),
            wwid: String::new(),
            system_disk: system,
            readonly: false,
        }
    }

    #[test]
    fn the_single_non_system_nvme_disk_is_chosen() {
        let disks = [
            disk("/dev/nvme0n1", "nvme", true),
            disk("/dev/nvme1n1", "nvme", false),
            disk("/dev/sda", "ssd", false),
        ];
        assert_eq!(choose_disk(&disks).unwrap(), "/dev/nvme1n1");
        let err = choose_disk(&disks[..1]).unwrap_err();
        assert!(err.contains("no writable non-system NVMe disk"), "{err}");
        assert!(
            err.contains("/dev/nvme0n1 (nvme, 960 GB, SAMSUNG, system disk)"),
            "{err}"
        );
        let two = [
            disk("/dev/nvme1n1", "nvme", false),
            disk("/dev/nvme2n1", "nvme", false),
        ];
        let err = choose_disk(&two).unwrap_err();
        assert!(err.contains("2 candidate NVMe disks"), "{err}");
        assert!(err.contains("--storage-disk"), "{err}");
    }

    #[test]
    fn pools_and_class_have_the_documented_shape() {
        let pool = disk_pool("c-worker-1", "/dev/nvme1n1");
        assert_eq!(pool["metadata"]["name"], "pool-c-worker-1");
        assert_eq!(pool["metadata"]["namespace"], "openebs");
        assert_eq!(pool["spec"]["node"], "c-worker-1");
        assert_eq!(pool["spec"]["disks"][0], "/dev/nvme1n1");
        let class = storage_class(2);
        assert_eq!(class["provisioner"], "io.openebs.csi-mayastor");
        assert_eq!(class["parameters"]["repl"], "2");
        assert_eq!(class["parameters"]["protocol"], "nvmf");
        assert_eq!(
            class["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION],
            "true"
        );
    }

    #[test]
    fn pools_are_done_when_all_are_online() {
        let expected = vec!["pool-a".to_owned(), "pool-b".to_owned()];
        let a = json!({"metadata": {"name": "pool-a"}, "status": {"poolStatus": "Online"}});
        let b = json!({"metadata": {"name": "pool-b"}, "status": {"poolStatus": "Creating"}});
        let Verdict::Pending(p) = pools_verdict(&expected, [&a]) else {
            panic!()
        };
        assert!(p.contains("pool-b: not created yet"), "{p}");
        let Verdict::Pending(p) = pools_verdict(&expected, [&a, &b]) else {
            panic!()
        };
        assert_eq!(p, "pool-b: Creating");
        let b = json!({"metadata": {"name": "pool-b"}, "status": {"poolStatus": "Online"}});
        assert_eq!(pools_verdict(&expected, [&a, &b]), Verdict::Done);
    }
}
