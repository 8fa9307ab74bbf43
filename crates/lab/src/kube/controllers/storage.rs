//! OpenEBS Mayastor and the CSI provisioners, simulated.
//!
//! * Once the Argo CD Application of the `openebs` chart is Healthy, the CRD
//!   `diskpools.openebs.io` (`v1beta2`, kind `DiskPool`, namespaced) is registered as the chart
//!   would, and the DiskPool operator runs: a pool whose `spec.node` is a Node and whose
//!   `spec.disks[0]` is one of that node's disks (`/dev/nvme1n1`, `aio:///dev/nvme1n1`,
//!   `uring://…`, `/dev/disk/by-id/nvme-…`; see `crate::talos::disks`) that is not the system
//!   disk becomes `cr_state: Created`, `pool_status: Online` with the disk's capacity after
//!   `timeline.diskpool_create` modelled seconds (jittered per pool name); otherwise it stays
//!   `Creating` / `Unknown` with a Warning event.
//! * PersistentVolumeClaims: a claim without `spec.storageClassName` gets the default
//!   StorageClass (annotation `storageclass.kubernetes.io/is-default-class: "true"`; the newest
//!   wins). A claim of a class provisioned by `io.openebs.csi-mayastor` (once openebs is
//!   Healthy and `parameters.repl` pools are Online) or by `rancher.io/local-path` /
//!   `openebs.io/local` is bound `timeline.pvc_bind` modelled seconds after its class can
//!   provision it (jittered per `<namespace>/<name>`): a PersistentVolume `pvc-<uid>` is
//!   created and the claim gets `spec.volumeName` and `status.phase: Bound`.

use serde_json::{Value, json};

use super::{State, builtin, event, list, list_where, name_of, namespace_of, str_at};
use crate::durations::Phase;
use crate::kube::server::Shared;
use crate::kube::write::WriteOptions;
use crate::talos::disks;

/// The CSI driver (provisioner) of Mayastor.
pub(crate) const MAYASTOR_PROVISIONER: &str = "io.openebs.csi-mayastor";
/// Local-path provisioners.
const LOCAL_PROVISIONERS: &[&str] = &["rancher.io/local-path", "openebs.io/local"];
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const OPERATOR: &str = "openebs-operator-diskpool";

/// The Application (any namespace) of `chart` (or named `chart`) once it is Healthy.
pub(super) fn healthy_app(shared: &Shared, chart: &str) -> Option<Value> {
    let apps = shared
        .registry
        .find("argoproj.io", "v1alpha1", "applications")?;
    list(shared, apps, None).into_iter().find(|app| {
        (str_at(app, "/spec/source/chart") == chart
            || (str_at(app, "/spec/source/chart").is_empty() && name_of(app) == chart))
            && str_at(app, "/status/health/status") == "Healthy"
    })
}

pub(super) fn reconcile(shared: &Shared, state: &mut State) {
    let openebs = healthy_app(shared, "openebs").is_some();
    if openebs {
        ensure_crd(shared);
        diskpools(shared, state);
    }
    claims(shared, state, openebs);
}

/// The DiskPool CRD as the openebs chart installs it (the served version only).
fn diskpool_crd() -> Value {
    let column = |name: &str, kind: &str, path: &str, description: &str| {
        let mut c =
            json!({"name": name, "type": kind, "jsonPath": path, "description": description});
        if kind == "integer" {
            c["format"] = json!("int64");
        }
        c
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "diskpools.openebs.io", "labels": {"app.kubernetes.io/instance": "openebs"}},
        "spec": {
            "group": "openebs.io",
            "names": {
                "kind": "DiskPool",
                "listKind": "DiskPoolList",
                "plural": "diskpools",
                "singular": "diskpool",
                "shortNames": ["dsp"],
            },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1beta2",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                }},
                "additionalPrinterColumns": [
                    column("node", "string", ".spec.node", "node the pool is on"),
                    column("state", "string", ".status.cr_state", "dsp cr state"),
                    column("pool_status", "string", ".status.pool_status", "Control plane pool status"),
                    column("capacity", "integer", ".status.capacity", "total bytes"),
                    column("used", "integer", ".status.used", "used bytes"),
                    column("available", "integer", ".status.available", "available bytes"),
                ],
            }],
        },
    })
}

fn ensure_crd(shared: &Shared) {
    if shared
        .registry
        .find("openebs.io", "v1beta2", "diskpools")
        .is_some()
    {
        return;
    }
    let crds = builtin(shared, "apiextensions.k8s.io", "customresourcedefinitions");
    if let Err(error) = shared.create(crds, "", diskpool_crd(), &WriteOptions::by("helm")) {
        tracing::debug!(message = %error.message, "could not register diskpools.openebs.io");
    }
}

/// The disks of Node `node`: what its Talos machine reported, else the lab defaults.
fn node_disks(shared: &Shared, node: &str) -> Vec<disks::LabDisk> {
    let known = shared
        .node_disks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(node)
        .cloned();
    known.unwrap_or_else(|| disks::default_for(node, shared.options.lab.extra_disks))
}

/// Why a pool cannot be created, or the disk it is created on.
fn pool_disk(shared: &Shared, pool: &Value) -> Result<disks::LabDisk, String> {
    let node = str_at(pool, "/spec/node");
    let nodes = builtin(shared, "", "nodes");
    if node.is_empty() || shared.store.get(&nodes.gvr(), "", node).is_none() {
        return Err(format!("node '{node}' not found"));
    }
    let paths: Vec<&str> = pool
        .pointer("/spec/disks")
        .and_then(Value::as_array)
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [path] = paths.as_slice() else {
        return Err(format!(
            "a pool needs exactly one disk, {} given",
            paths.len()
        ));
    };
    let disk = node_disks(shared, node)
        .into_iter()
        .find(|d| d.matches(path))
        .ok_or_else(|| format!("disk '{path}' not found on node '{node}'"))?;
    if disk.system {
        return Err(format!(
            "disk '{path}' on node '{node}' is in use (Talos system disk)"
        ));
    }
    Ok(disk)
}

fn diskpools(shared: &Shared, state: &mut State) {
    let Some(pools) = shared.registry.find("openebs.io", "v1beta2", "diskpools") else {
        return;
    };
    let offline = |pool: &Value| str_at(pool, "/status/pool_status") != "Online";
    for pool in list_where(shared, pools, None, offline) {
        let key = format!("diskpool/{}", str_at(&pool, "/metadata/uid"));
        let (ns, name) = (namespace_of(&pool).to_string(), name_of(&pool).to_string());
        match pool_disk(shared, &pool) {
            Ok(disk) => {
                let create = shared.durations.real(Phase::DiskPoolCreate, &name);
                if !state.elapsed(key.clone(), create) {
                    write_pool(shared, pools, &ns, &name, "Creating", "Unknown", 0);
                    continue;
                }
                state.forget(&key);
                // Mayastor keeps some metadata at the start of the disk.
                let capacity = disk
                    .size
                    .saturating_sub(disk.size % (4 << 20))
                    .saturating_sub(4 << 20);
                shared.observer.condition(format!("diskpool/{name}/online"));
                if let Some(stored) =
                    write_pool(shared, pools, &ns, &name, "Created", "Online", capacity)
                {
                    event(
                        shared,
                        &stored,
                        "Normal",
                        "Created",
                        &format!("Created pool on {}", disk.device_name),
                        OPERATOR,
                    );
                }
            }
            Err(why) => {
                state.forget(&key);
                let warned = format!("diskpool-warned/{}/{why}", str_at(&pool, "/metadata/uid"));
                let first = !state.timers.contains_key(&warned);
                state
                    .timers
                    .entry(warned)
                    .or_insert_with(tokio::time::Instant::now);
                if let Some(stored) =
                    write_pool(shared, pools, &ns, &name, "Creating", "Unknown", 0)
                    && first
                {
                    event(shared, &stored, "Warning", "Missing", &why, OPERATOR);
                }
            }
        }
    }
}

fn write_pool(
    shared: &Shared,
    pools: &'static crate::kube::discovery::ResourceType,
    ns: &str,
    name: &str,
    cr_state: &str,
    pool_status: &str,
    capacity: u64,
) -> Option<Value> {
    shared.write_status(pools, ns, name, |o| {
        o["status"] = json!({
            "cr_state": cr_state,
            "pool_status": pool_status,
            "state": cr_state,
            "poolStatus": pool_status,
            "capacity": capacity,
            "used": 0,
            "available": capacity,
            "committed": 0,
            "encrypted": false,
        });
    })
}

/// The default StorageClass: the newest of those annotated as default.
fn default_class(shared: &Shared) -> Option<Value> {
    let classes = builtin_storage(shared)?;
    list(shared, classes, None)
        .into_iter()
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(DEFAULT_CLASS))
                .and_then(Value::as_str)
                == Some("true")
        })
        .max_by(|a, b| {
            str_at(a, "/metadata/creationTimestamp")
                .cmp(str_at(b, "/metadata/creationTimestamp"))
                .then_with(|| {
                    let rv = |o: &Value| {
                        str_at(o, "/metadata/resourceVersion")
                            .parse::<u64>()
                            .unwrap_or(0)
                    };
                    rv(a).cmp(&rv(b))
                })
        })
}

fn builtin_storage(shared: &Shared) -> Option<&'static crate::kube::discovery::ResourceType> {
    shared
        .registry
        .find("storage.k8s.io", "v1", "storageclasses")
}

fn online_pools(shared: &Shared) -> usize {
    shared
        .registry
        .find("openebs.io", "v1beta2", "diskpools")
        .map(|pools| {
            shared.store.scan(&pools.gvr(), None, |pools| {
                pools
                    .filter(|p| str_at(p, "/status/pool_status") == "Online")
                    .count()
            })
        })
        .unwrap_or(0)
}

fn claims(shared: &Shared, state: &mut State, openebs: bool) {
    let pvcs = builtin(shared, "", "persistentvolumeclaims");
    let Some(classes) = builtin_storage(shared) else {
        return;
    };
    let unbound = |claim: &Value| str_at(claim, "/status/phase") != "Bound";
    for claim in list_where(shared, pvcs, None, unbound) {
        let (ns, name) = (
            namespace_of(&claim).to_string(),
            name_of(&claim).to_string(),
        );
        let uid = str_at(&claim, "/metadata/uid").to_string();
        let mut class_name = claim
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .map(str::to_string);
        if class_name.is_none() {
            // The DefaultStorageClass admission plugin, applied late.
            let Some(default) = default_class(shared) else {
                pending(shared, pvcs, &ns, &name);
                continue;
            };
            let default = name_of(&default).to_string();
            shared.write_status(pvcs, &ns, &name, |o| {
                o["spec"]["storageClassName"] = json!(default.as_str());
            });
            class_name = Some(default);
        }
        let class_name = class_name.unwrap_or_default();
        let Some(class) = shared.store.get(&classes.gvr(), "", &class_name) else {
            pending(shared, pvcs, &ns, &name);
            continue;
        };
        let provisioner = str_at(&class, "/provisioner").to_string();
        let ready = if provisioner == MAYASTOR_PROVISIONER {
            let replicas = class
                .pointer("/parameters/repl")
                .and_then(Value::as_str)
                .and_then(|r| r.parse::<usize>().ok())
                .unwrap_or(1);
            openebs && online_pools(shared) >= replicas.max(1)
        } else {
            LOCAL_PROVISIONERS.contains(&provisioner.as_str())
        };
        let key = format!("pvc/{uid}");
        if !ready {
            state.forget(&key);
            pending(shared, pvcs, &ns, &name);
            continue;
        }
        let bind_after = shared
            .durations
            .real(Phase::PvcBind, &format!("{ns}/{name}"));
        if !state.elapsed(key.clone(), bind_after) {
            pending(shared, pvcs, &ns, &name);
            continue;
        }
        state.forget(&key);
        bind(shared, &claim, &class, &provisioner);
        shared.observer.condition(format!("pvc/{ns}/{name}/bound"));
    }
}

fn pending(
    shared: &Shared,
    pvcs: &'static crate::kube::discovery::ResourceType,
    ns: &str,
    name: &str,
) {
    shared.write_status(pvcs, ns, name, |o| {
        if o.pointer("/status/phase").is_none() {
            o["status"] = json!({"phase": "Pending"});
        }
    });
}

fn bind(shared: &Shared, claim: &Value, class: &Value, provisioner: &str) {
    let pvcs = builtin(shared, "", "persistentvolumeclaims");
    let pvs = builtin(shared, "", "persistentvolumes");
    let (ns, name) = (namespace_of(claim).to_string(), name_of(claim).to_string());
    let uid = str_at(claim, "/metadata/uid").to_string();
    let volume = format!("pvc-{uid}");
    let size = claim
        .pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or_else(|| json!("1Gi"));
    let access_modes = claim
        .pointer("/spec/accessModes")
        .cloned()
        .unwrap_or_else(|| json!(["ReadWriteOnce"]));
    let reclaim = match str_at(class, "/reclaimPolicy") {
        "" => "Delete",
        policy => policy,
    };
    let mut spec = json!({
        "capacity": {"storage": size.clone()},
        "accessModes": access_modes.clone(),
        "persistentVolumeReclaimPolicy": reclaim,
        "storageClassName": name_of(class),
        "volumeMode": claim.pointer("/spec/volumeMode").cloned().unwrap_or_else(|| json!("Filesystem")),
        "claimRef": {
            "kind": "PersistentVolumeClaim",
            "apiVersion": "v1",
            "namespace": ns,
            "name": name,
            "uid": uid,
            "resourceVersion": str_at(claim, "/metadata/resourceVersion"),
        },
    });
    if provisioner == MAYASTOR_PROVISIONER {
        spec["csi"] = json!({
            "driver": provisioner,
            "volumeHandle": uid,
            "fsType": class.pointer("/parameters/fsType").cloned().unwrap_or_else(|| json!("ext4")),
            "volumeAttributes": class.get("parameters").cloned().unwrap_or_else(|| json!({})),
        });
    } else {
        spec["hostPath"] = json!({"path": format!("/var/local/local-path-provisioner/{volume}_{ns}_{name}"), "type": "DirectoryOrCreate"});
    }
    let pv = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume,
            "annotations": {"pv.kubernetes.io/provisioned-by": provisioner},
            "finalizers": ["kubernetes.io/pv-protection"],
        },
        "spec": spec,
    });
    if shared.store.get(&pvs.gvr(), "", &volume).is_none()
        && let Err(error) = shared.create(pvs, "", pv, &WriteOptions::by("csi-provisioner"))
    {
        tracing::debug!(message = %error.message, "could not create a PersistentVolume");
        return;
    }
    shared.write_status(pvs, "", &volume, |o| {
        o["status"] = json!({"phase": "Bound"});
    });
    let stored = shared.write_status(pvcs, &ns, &name, |o| {
        o["spec"]["volumeName"] = json!(volume.as_str());
        let annotations = &mut o["metadata"]["annotations"];
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations["pv.kubernetes.io/bind-completed"] = json!("yes");
        annotations["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        annotations["volume.kubernetes.io/storage-provisioner"] = json!(provisioner);
        o["status"] = json!({
            "phase": "Bound",
            "accessModes": access_modes.clone(),
            "capacity": {"storage": size.clone()},
        });
    });
    if let Some(stored) = stored {
        event(
            shared,
            &stored,
            "Normal",
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {volume}"),
            provisioner,
        );
    }
}
