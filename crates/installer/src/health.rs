//! `cto health`: the checks a platform engineer runs after an install or an incident, from the
//! state directory's checkpoint, talosconfig and kubeconfig. Each check says what it looked at
//! and what it found; none changes anything.
//!
//! Talos services on each node (`ServiceList` over mutual TLS), etcd members
//! (`EtcdMemberList` on the first control plane), every Node Ready, the Cilium agents ready,
//! every Argo CD Application Synced and Healthy, every DiskPool Online, and — for installs made
//! with `--init-vault` — every Vault server pod unsealed.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use metal::talos::client::TalosClient;
use metal::talos::config::MAYASTOR_NAMESPACE;
use metal::talos::talosconfig::Talosconfig;
use serde::Serialize;
use serde_json::Value;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::cluster_api::{ClusterApi, Verdict, describe_kube_error};
use crate::spec::Role;
use crate::steps::{KUBECONFIG_FILE, TALOSCONFIG_FILE};
use crate::vault;

/// The Talos API port.
const TALOS_API_PORT: u16 = 50000;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`talos services c-cp-1`, `nodes ready`).
    pub name: String,
    /// True when it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Check {
            name: name.into(),
            ok,
            detail,
        }
    }
}

/// Why the checks could not run at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HealthError(String);

/// The install's checkpoint, read without taking the lock.
pub fn checkpoint(state_dir: &Path) -> Result<Checkpoint, HealthError> {
    CheckpointStore::read(state_dir).map_err(|e| HealthError(e.to_string()))
}

/// A client for the cluster of `state_dir`.
pub async fn cluster_of(state_dir: &Path) -> Result<ClusterApi, HealthError> {
    let path = state_dir.join(KUBECONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        HealthError(format!(
            "no kubeconfig at {} ({e}): the install has not reached Kubernetes yet",
            path.display()
        ))
    })?;
    ClusterApi::from_kubeconfig(&text)
        .await
        .map_err(|e| HealthError(format!("{}: {e}", path.display())))
}

async fn bounded<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", timeout.as_secs())))
}

/// One Talos check of the node at `ip`: connects over mutual TLS with the talosconfig and runs
/// `call` on the client, all bounded by `timeout`. `missing` says what is absent when there is
/// no address.
async fn talos_check(
    talosconfig: &Result<Talosconfig, String>,
    ip: Option<std::net::Ipv4Addr>,
    missing: &str,
    timeout: Duration,
    call: impl AsyncFnOnce(&mut TalosClient, SocketAddr) -> Result<String, String>,
) -> Result<String, String> {
    let tc = talosconfig
        .as_ref()
        .map_err(|e| format!("no talosconfig: {e}"))?;
    let ip = ip.ok_or_else(|| format!("no {missing} in the checkpoint"))?;
    let addr = SocketAddr::from((ip, TALOS_API_PORT));
    bounded(timeout, async {
        let mut client = TalosClient::connect(addr, tc, timeout)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        call(&mut client, addr).await
    })
    .await
}

/// Runs every check. `timeout` bounds each one.
pub async fn run(state_dir: &Path, timeout: Duration) -> Result<Vec<Check>, HealthError> {
    let cp = checkpoint(state_dir)?;
    let tc_path = state_dir.join(TALOSCONFIG_FILE);
    let talosconfig = std::fs::read_to_string(&tc_path)
        .map_err(|e| format!("{}: {e}", tc_path.display()))
        .and_then(|t| Talosconfig::from_yaml(&t).map_err(|e| e.to_string()));
    let api = cluster_of(state_dir).await?;
    let mut checks = Vec::new();

    for server in &cp.servers {
        let name = format!("talos services {}", server.hostname);
        let result = talos_check(
            &talosconfig,
            server.primary_ipv4,
            "address",
            timeout,
            async |client, addr| {
                let services = client
                    .service_list()
                    .await
                    .map_err(|e| format!("{addr}: ServiceList: {e}"))?;
                let bad: Vec<String> = services
                    .iter()
                    .filter(|s| {
                        !matches!(s.state.as_str(), "Running" | "Finished")
                            || s.healthy == Some(false)
                    })
                    .map(|s| {
                        format!(
                            "{} {}{}",
                            s.id,
                            s.state,
                            if s.healthy == Some(false) {
                                " unhealthy"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                if services.is_empty() {
                    Err("ServiceList returned no services".into())
                } else if bad.is_empty() {
                    Ok(format!("{} services running", services.len()))
                } else {
                    Err(bad.join(", "))
                }
            },
        )
        .await;
        checks.push(Check::new(name, result));
    }

    let control_planes: Vec<_> = cp
        .servers
        .iter()
        .filter(|s| s.role == Role::ControlPlane)
        .collect();
    let want = control_planes.len();
    let etcd = talos_check(
        &talosconfig,
        control_planes.first().and_then(|s| s.primary_ipv4),
        "control plane address",
        timeout,
        async |client, addr| {
            let members = client
                .etcd_member_list()
                .await
                .map_err(|e| format!("{addr}: EtcdMemberList: {e}"))?;
            let names: Vec<String> = members
                .iter()
                .map(|m| {
                    format!(
                        "{}{}",
                        m.hostname,
                        if m.is_learner { " (learner)" } else { "" }
                    )
                })
                .collect();
            let voters = members.iter().filter(|m| !m.is_learner).count();
            // EtcdMemberList does not name the leader; a voting quorum of every control
            // plane is what this check can vouch for.
            if voters >= want {
                Ok(format!(
                    "{voters}/{want} voting member(s): {}; leader not reported by EtcdMemberList",
                    names.join(", ")
                ))
            } else {
                Err(format!(
                    "{voters}/{want} voting member(s): {}",
                    names.join(", ")
                ))
            }
        },
    )
    .await;
    checks.push(Check::new("etcd members", etcd));

    let want_nodes = cp.servers.len();
    let nodes = bounded(timeout, async {
        let list = api
            .all::<Node>()
            .list(&ListParams::default())
            .await
            .map_err(|e| describe_kube_error(&e))?;
        let not_ready: Vec<String> = list
            .items
            .iter()
            .filter(|n| !crate::steps::node_ready(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        if list.items.len() < want_nodes {
            Err(format!(
                "{}/{want_nodes} nodes registered",
                list.items.len()
            ))
        } else if !not_ready.is_empty() {
            Err(format!("not Ready: {}", not_ready.join(", ")))
        } else {
            Ok(format!("{} nodes Ready", list.items.len()))
        }
    })
    .await;
    checks.push(Check::new("nodes ready", nodes));

    let cilium = bounded(timeout, async {
        let ds: Api<DaemonSet> = api.namespaced("kube-system");
        match ds
            .get_opt("cilium")
            .await
            .map_err(|e| describe_kube_error(&e))?
        {
            None => Err("DaemonSet kube-system/cilium not found".into()),
            Some(d) => match crate::steps::daemonset_verdict(&d) {
                Verdict::Done => Ok(format!(
                    "{} agent(s) ready",
                    d.status.map_or(0, |s| s.number_ready)
                )),
                Verdict::Pending(p) | Verdict::Failed(p) => Err(p),
            },
        }
    })
    .await;
    checks.push(Check::new("cilium agents", cilium));

    let apps = bounded(timeout, async {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
            "applications",
        );
        let list = Api::<DynamicObject>::namespaced_with(api.client(), "argocd", &resource)
            .list(&ListParams::default())
            .await
            .map_err(|e| describe_kube_error(&e))?;
        let values: Vec<Value> = list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        let problems: Vec<String> = values
            .iter()
            .filter_map(crate::steps::application_problem)
            .collect();
        if values.is_empty() {
            Err("no Applications in argocd".into())
        } else if problems.is_empty() {
            Ok(format!("{} Applications Synced and Healthy", values.len()))
        } else {
            Err(problems.join("; "))
        }
    })
    .await;
    checks.push(Check::new("argocd applications", apps));

    let want_pools: Vec<String> = cp
        .resolved
        .storage_disks
        .keys()
        .map(|h| format!("pool-{h}"))
        .collect();
    let pools = bounded(timeout, async {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("openebs.io", "v1beta2", "DiskPool"),
            "diskpools",
        );
        let list =
            Api::<DynamicObject>::namespaced_with(api.client(), MAYASTOR_NAMESPACE, &resource)
                .list(&ListParams::default())
                .await
                .map_err(|e| describe_kube_error(&e))?;
        let values: Vec<Value> = list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .collect();
        let mut expected = want_pools.clone();
        for v in &values {
            if let Some(n) = v["metadata"]["name"].as_str()
                && !expected.iter().any(|e| e == n)
            {
                expected.push(n.to_owned());
            }
        }
        if expected.is_empty() {
            // Step 1 decided local-path: no DiskPool is expected.
            if cp.resolved.storage_mode == Some(crate::storage_plan::StorageMode::LocalPath) {
                return Ok("no DiskPools (storage is local-path, decided at step 1)".into());
            }
            return Err("no DiskPool (storage not configured yet)".into());
        }
        match crate::steps::pools_verdict(&expected, &values) {
            Verdict::Done => Ok(format!("{} DiskPool(s) Online", expected.len())),
            Verdict::Pending(p) | Verdict::Failed(p) => Err(p),
        }
    })
    .await;
    checks.push(Check::new("diskpools online", pools));

    if cp.spec.init_vault {
        let sealed = bounded(timeout, async {
            let pods = vault::server_pods(&api).await.map_err(|e| e.to_string())?;
            if pods.is_empty() {
                return Err(format!("no Vault server pod in {}", vault::VAULT_NAMESPACE));
            }
            let mut bad = Vec::new();
            for pod in &pods {
                match vault::seal_status(&api, pod).await {
                    Ok((true, false)) => {}
                    Ok((false, _)) => bad.push(format!("{pod} not initialised")),
                    Ok((true, true)) => bad.push(format!("{pod} sealed")),
                    Err(e) => bad.push(format!("{pod}: {e}")),
                }
            }
            if bad.is_empty() {
                Ok(format!("unsealed: {}", pods.join(", ")))
            } else {
                Err(bad.join("; "))
            }
        })
        .await;
        checks.push(Check::new("vault unsealed", sealed));
    }
    Ok(checks)
}
