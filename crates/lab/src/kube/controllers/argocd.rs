//! Argo CD's application controller, simulated: once the argo-cd chart's workloads are ready
//! (the `argocd-application-controller` StatefulSet installed by Helm), it syncs every
//! `applications.argoproj.io` object in that namespace, as with an automated sync policy.
//!
//! * An Application whose `spec.source.repoURL` the lab can read ([`crate::gitops`]) and whose
//!   `spec.source.path` is a directory: every `*.yaml`/`*.yml` in it (recursively with
//!   `directory.recurse: true`; multi-document files) is applied (server-side apply, manager
//!   `argocd-controller`, tracking label `app.kubernetes.io/instance: <app>`, namespaced objects
//!   without a namespace go to `spec.destination.namespace`), one
//!   `argocd.argoproj.io/sync-wave` at a time (lower first; the next wave only once every
//!   object of the previous one is healthy), then the Application is Synced and Healthy.
//! * Any other Application (a Helm chart, a repository the lab cannot read) becomes Synced and
//!   Healthy after `timeline.argocd_sync`, without workloads.
//! * Applications of the same parent (same `app.kubernetes.io/instance` label, or none) honour
//!   their sync waves among themselves: one waits until every sibling of a lower wave is
//!   Healthy.
//! * `argocd_degraded` names Applications that end Synced but `Degraded`.
//! * The `resources-finalizer.argocd.argoproj.io` finalizer deletes the Application's
//!   resources before the Application goes.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    State as Controllers, builtin, labelled, list, name_of, namespace_of, resource_of, str_at,
};
use crate::durations::Phase;
use crate::gitops;
use crate::kube::objects;
use crate::kube::server::Shared;
use crate::kube::write::{PatchKind, WriteOptions};

const MANAGER: &str = "argocd-controller";
const TRACKING_LABEL: &str = "app.kubernetes.io/instance";
const SYNC_WAVE: &str = "argocd.argoproj.io/sync-wave";
const FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// The controller's memory: one sync per Application (by uid).
#[derive(Default)]
pub(super) struct State {
    apps: HashMap<String, AppSync>,
}

struct AppSync {
    /// The generation and spec this sync is for.
    key: String,
    /// The manifests, by sync wave; `Err` when they could not be loaded.
    waves: Result<Vec<(i64, Vec<Value>)>, String>,
    revision: String,
    source_type: &'static str,
    /// How many waves have been applied.
    applied: usize,
    /// When the current step (waiting before the next wave or the end) began.
    since: Instant,
    started_at: String,
    /// What the last apply failed with.
    error: Option<String>,
    /// Whether the AppProject's resource rules were checked for this sync.
    permitted: bool,
    done: bool,
}

fn wave_of(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SYNC_WAVE))
        .and_then(Value::as_str)
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(0)
}

fn health_of(app: &Value) -> &str {
    str_at(app, "/status/health/status")
}

pub(super) fn reconcile(shared: &Shared, controllers: &mut Controllers) {
    let sts = builtin(shared, "apps", "statefulsets");
    let Some(namespace) = list(shared, sts, None)
        .into_iter()
        .find(|s| {
            name_of(s) == "argocd-application-controller"
                && s.pointer("/metadata/labels/app.kubernetes.io~1managed-by")
                    == Some(&json!("Helm"))
                && s.pointer("/status/readyReplicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    >= 1
        })
        .map(|s| namespace_of(&s).to_string())
    else {
        return;
    };
    let Some(apps_rt) = shared
        .registry
        .find("argoproj.io", "v1alpha1", "applications")
    else {
        return;
    };
    if let Some(projects) = shared
        .registry
        .find("argoproj.io", "v1alpha1", "appprojects")
        && shared
            .store
            .get(&projects.gvr(), &namespace, "default")
            .is_none()
    {
        let project = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"namespace": "*", "server": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        });
        let _ = shared.create(
            projects,
            &namespace,
            project,
            &WriteOptions::by("argocd-server"),
        );
    }
    let apps = list(shared, apps_rt, Some(&namespace));
    let state = &mut controllers.argocd;
    state
        .apps
        .retain(|uid, _| apps.iter().any(|a| str_at(a, "/metadata/uid") == uid));
    for app in &apps {
        process(shared, state, apps_rt, app, &apps);
    }
}

fn process(
    shared: &Shared,
    state: &mut State,
    apps_rt: &'static crate::kube::discovery::ResourceType,
    app: &Value,
    siblings: &[Value],
) {
    let name = name_of(app).to_string();
    let namespace = namespace_of(app).to_string();
    if app.pointer("/metadata/deletionTimestamp").is_some() {
        finalize(shared, apps_rt, app);
        return;
    }
    let uid = str_at(app, "/metadata/uid").to_string();
    let key = format!("{}|{}", str_at(app, "/metadata/generation"), app["spec"]);
    let degraded = shared.options.lab.argocd_degraded.contains(&name);
    if !state.apps.contains_key(&uid) {
        // A restarted lab: an Application already synced at this spec stays as it is.
        let synced = str_at(app, "/status/sync/status") == "Synced"
            && health_of(app) == "Healthy"
            && app.pointer("/status/sync/comparedTo/source") == app.pointer("/spec/source")
            && !degraded;
        let mut sync = load(shared, app, key.clone());
        sync.done = synced;
        state.apps.insert(uid.clone(), sync);
    }
    let Some(sync) = state.apps.get_mut(&uid) else {
        return;
    };
    if sync.key != key {
        *sync = load(shared, app, key);
    }
    if sync.done {
        return;
    }
    // Siblings of lower waves first.
    let group = app
        .pointer("/metadata/labels")
        .and_then(|l| l.get(TRACKING_LABEL))
        .cloned();
    let wave = wave_of(app);
    let blocked = siblings.iter().any(|s| {
        name_of(s) != name
            && s.pointer("/metadata/labels")
                .and_then(|l| l.get(TRACKING_LABEL))
                .cloned()
                == group
            && wave_of(s) < wave
            && health_of(s) != "Healthy"
    });
    if blocked {
        sync.since = Instant::now();
        return;
    }
    if !project_allows(shared, apps_rt, app, sync) {
        return;
    }
    // The jitter subject of the current wait: `<app>/wave-<i>` before a directory
    // Application applies its i-th sync wave (0-based) and, with i = the number of waves,
    // before it reports Synced; `<app>` for an Application without manifests.
    let subject = match &sync.waves {
        Ok(waves) if !waves.is_empty() => format!("{name}/wave-{}", sync.applied),
        _ => name.clone(),
    };
    let delay = shared.durations.real(Phase::ArgocdSync, &subject);
    let waves = match &sync.waves {
        Ok(waves) => waves.clone(),
        Err(error) => {
            if sync.since.elapsed() >= delay {
                let message = format!(
                    "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = {error}"
                );
                write(shared, apps_rt, &namespace, &name, |app| {
                    let mut status = base_status(app, sync, "Unknown", ("Healthy", None), &[]);
                    status["conditions"] = json!([{"type": "ComparisonError", "message": message, "lastTransitionTime": kept_condition_time(app, "ComparisonError")}]);
                    status
                });
                sync.done = true;
            }
            return;
        }
    };
    let applied: Vec<Value> = waves[..sync.applied]
        .iter()
        .flat_map(|(_, objects)| objects.clone())
        .collect();
    let healths: Vec<(String, Option<String>)> = if sync.applied > 0 {
        waves[sync.applied - 1]
            .1
            .iter()
            .map(|o| child_health(shared, o))
            .collect()
    } else {
        Vec::new()
    };
    let previous_healthy = healths.iter().all(|(h, _)| h == "Healthy");
    if !previous_healthy {
        let worst = if healths.iter().any(|(h, _)| h == "Degraded") {
            "Degraded"
        } else {
            "Progressing"
        };
        let message = healths
            .iter()
            .find(|(h, _)| h != "Healthy")
            .and_then(|(_, m)| m.clone());
        write(shared, apps_rt, &namespace, &name, |app| {
            running(
                app,
                sync,
                (worst, message.clone()),
                &applied,
                "waiting for healthy state of the previous sync wave",
            )
        });
        sync.since = Instant::now();
        return;
    }
    if sync.since.elapsed() < delay {
        write(shared, apps_rt, &namespace, &name, |app| {
            running(
                app,
                sync,
                ("Progressing", None),
                &applied,
                "one or more tasks are running",
            )
        });
        return;
    }
    if sync.applied < waves.len() {
        let (wave, objects) = &waves[sync.applied];
        match apply_wave(shared, app, objects) {
            Ok(()) => {
                tracing::info!(app = %name, wave, objects = objects.len(), "lab Argo CD applied a sync wave");
                sync.applied += 1;
                sync.error = None;
            }
            Err(error) => {
                tracing::info!(app = %name, %error, "lab Argo CD sync failed; retrying");
                sync.error = Some(error);
            }
        }
        sync.since = Instant::now();
        let applied: Vec<Value> = waves[..sync.applied]
            .iter()
            .flat_map(|(_, o)| o.clone())
            .collect();
        write(shared, apps_rt, &namespace, &name, |app| {
            match &sync.error {
                Some(error) => {
                    let mut status =
                        base_status(app, sync, "OutOfSync", ("Missing", None), &applied);
                    status["operationState"] = operation_state(
                        app,
                        sync,
                        "Failed",
                        &format!("one or more objects failed to apply, reason: {error}"),
                        &applied,
                    );
                    status["conditions"] = json!([{"type": "SyncError", "message": format!("Failed sync attempt: one or more objects failed to apply, reason: {error}"), "lastTransitionTime": kept_condition_time(app, "SyncError")}]);
                    status
                }
                None => running(
                    app,
                    sync,
                    ("Progressing", None),
                    &applied,
                    "one or more tasks are running",
                ),
            }
        });
        return;
    }
    // Everything applied and healthy.
    let health = if degraded {
        let target = match str_at(app, "/spec/destination/namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        (
            "Degraded",
            Some(format!(
                "Deployment {target}/{name} has timed out progressing."
            )),
        )
    } else {
        ("Healthy", None)
    };
    write(shared, apps_rt, &namespace, &name, |app| {
        let mut status = base_status(app, sync, "Synced", (health.0, health.1.clone()), &applied);
        status["operationState"] = operation_state(
            app,
            sync,
            "Succeeded",
            "successfully synced (all tasks run)",
            &applied,
        );
        if let Some(message) = &health.1 {
            status["conditions"] = json!([{
                "type": "SyncError",
                "message": format!("health check failed: {message}"),
                "lastTransitionTime": kept_condition_time(app, "SyncError"),
            }]);
        }
        status
    });
    shared.observer.condition(format!(
        "application/{name}/{}",
        health.0.to_ascii_lowercase()
    ));
    tracing::info!(app = %name, health = health.0, "lab Argo CD Application synced");
    sync.done = true;
}

/// Reads what an Application deploys.
fn load(shared: &Shared, app: &Value, key: String) -> AppSync {
    let source = crate::gitops::application_source(app);
    let repo_url = str_at(&source, "/repoURL");
    let target = match str_at(&source, "/targetRevision") {
        "" => "HEAD",
        t => t,
    };
    let trivial = |source_type| AppSync {
        key: key.clone(),
        waves: Ok(Vec::new()),
        revision: if source_type == "Helm" {
            target.to_string()
        } else {
            gitops::revision(&[(repo_url.to_string(), target.to_string())])
        },
        source_type,
        applied: 0,
        since: Instant::now(),
        started_at: objects::now_rfc3339(),
        error: None,
        permitted: false,
        done: false,
    };
    if source.get("chart").is_some() {
        return trivial("Helm");
    }
    let Some(repo) = gitops::resolve(&shared.options.lab, repo_url) else {
        return trivial("Directory");
    };
    let loaded = gitops::directory(&repo, &source);
    let mut sync = trivial("Directory");
    match loaded {
        Ok((revision, objects, source_type)) => {
            sync.source_type = source_type;
            let mut waves: Vec<(i64, Vec<Value>)> = Vec::new();
            for object in objects {
                let wave = wave_of(&object);
                match waves.iter_mut().find(|(w, _)| *w == wave) {
                    Some((_, list)) => list.push(object),
                    None => waves.push((wave, vec![object])),
                }
            }
            waves.sort_by_key(|(w, _)| *w);
            sync.waves = Ok(waves);
            sync.revision = revision;
        }
        Err(error) => sync.waves = Err(error),
    }
    sync
}

/// Applies the objects of one sync wave into the cluster.
fn apply_wave(shared: &Shared, app: &Value, objects: &[Value]) -> Result<(), String> {
    let app_name = name_of(app);
    let destination = match str_at(app, "/spec/destination/namespace") {
        "" => "default".to_string(),
        ns => ns.to_string(),
    };
    let create_namespace = app
        .pointer("/spec/syncPolicy/syncOptions")
        .and_then(Value::as_array)
        .is_some_and(|o| o.iter().any(|x| x == "CreateNamespace=true"));
    for object in objects {
        let Some(resource) = resource_of(shared, object) else {
            let api_version = str_at(object, "/apiVersion");
            let group = api_version
                .rsplit_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default();
            let kind = str_at(object, "/kind");
            return Err(format!(
                "The Kubernetes API could not find {group}/{kind} for requested resource {}/{}. Make sure the \"{kind}\" CRD is installed on the destination cluster.",
                str_at(object, "/metadata/namespace"),
                name_of(object)
            ));
        };
        let mut object = object.clone();
        object["metadata"]["labels"][TRACKING_LABEL] = json!(app_name);
        if resource.namespaced {
            if str_at(&object, "/metadata/namespace").is_empty() {
                object["metadata"]["namespace"] = json!(destination);
            }
            let ns = str_at(&object, "/metadata/namespace").to_string();
            let namespaces = builtin(shared, "", "namespaces");
            if create_namespace
                && ns == destination
                && shared.store.get(&namespaces.gvr(), "", &ns).is_none()
            {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                shared
                    .create(namespaces, "", body, &WriteOptions::by(MANAGER))
                    .map_err(|e| e.message)?;
            }
        } else if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        shared.apply_as(MANAGER, &object).map_err(|e| e.message)?;
    }
    Ok(())
}

/// Argo CD's health of a deployed object: (status, message).
fn child_health(shared: &Shared, desired: &Value) -> (String, Option<String>) {
    let Some(resource) = resource_of(shared, desired) else {
        return ("Missing".into(), None);
    };
    let namespace = if resource.namespaced {
        str_at(desired, "/metadata/namespace").to_string()
    } else {
        String::new()
    };
    // The object as applied (namespace defaulted) may live in the destination namespace.
    let found = shared
        .store
        .get(&resource.gvr(), &namespace, name_of(desired))
        .or_else(|| {
            resource
                .namespaced
                .then(|| {
                    shared
                        .store
                        .list(&resource.gvr(), None)
                        .0
                        .into_iter()
                        .find(|o| name_of(o) == name_of(desired))
                })
                .flatten()
        });
    let Some(object) = found else {
        return ("Missing".into(), None);
    };
    let int = |p: &str| object.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let healthy = |ok: bool| {
        if ok {
            ("Healthy".to_string(), None)
        } else {
            ("Progressing".to_string(), None)
        }
    };
    match (resource.group, resource.resource) {
        ("argoproj.io", "applications") => match health_of(&object) {
            "" => ("Progressing".into(), None),
            h => (
                h.to_string(),
                object
                    .pointer("/status/health/message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ),
        },
        ("apps", "deployments") => healthy(
            int("/status/observedGeneration") >= int("/metadata/generation")
                && int("/status/availableReplicas") >= int("/spec/replicas"),
        ),
        ("apps", "statefulsets") => healthy(int("/status/readyReplicas") >= int("/spec/replicas")),
        ("apps", "daemonsets") => healthy(
            int("/status/observedGeneration") >= int("/metadata/generation")
                && int("/status/numberReady") >= int("/status/desiredNumberScheduled"),
        ),
        ("batch", "jobs") => {
            if super::condition_true(&object, "Complete") {
                ("Healthy".into(), None)
            } else if super::condition_true(&object, "Failed") {
                (
                    "Degraded".into(),
                    Some("Job has reached the specified backoff limit".into()),
                )
            } else {
                ("Progressing".into(), None)
            }
        }
        _ => ("Healthy".into(), None),
    }
}

fn kept_condition_time(app: &Value, kind: &str) -> Value {
    app.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| json!(objects::now_rfc3339()))
}

fn resources(shared: &Shared, applied: &[Value]) -> Vec<Value> {
    applied
        .iter()
        .map(|o| {
            let api_version = str_at(o, "/apiVersion");
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let mut entry = json!({
                "group": group,
                "version": version,
                "kind": o["kind"],
                "name": name_of(o),
                "status": "Synced",
            });
            if let Some(ns) = o.pointer("/metadata/namespace") {
                entry["namespace"] = ns.clone();
            }
            let (health, message) = child_health(shared, o);
            entry["health"] = json!({"status": health});
            if let Some(message) = message {
                entry["health"]["message"] = json!(message);
            }
            entry
        })
        .collect()
}

/// The status fields every phase has.
fn base_status(
    app: &Value,
    sync: &AppSync,
    sync_status: &str,
    health: (&str, Option<String>),
    applied: &[Value],
) -> Value {
    let _ = applied;
    let mut health_doc = json!({"status": health.0});
    if let Some(message) = health.1 {
        health_doc["message"] = json!(message);
    }
    health_doc["lastTransitionTime"] = match app.pointer("/status/health") {
        Some(old) if old["status"] == health.0 => old["lastTransitionTime"].clone(),
        _ => json!(objects::now_rfc3339()),
    };
    json!({
        "sync": {
            "status": sync_status,
            "revision": sync.revision,
            "comparedTo": {
                "source": app.pointer("/spec/source").cloned().unwrap_or_default(),
                "destination": app.pointer("/spec/destination").cloned().unwrap_or_default(),
            },
        },
        "health": health_doc,
        "sourceType": sync.source_type,
        "summary": {},
        "reconciledAt": sync.started_at,
    })
}

fn operation_state(
    app: &Value,
    sync: &AppSync,
    phase: &str,
    message: &str,
    applied: &[Value],
) -> Value {
    let _ = app;
    let mut state = json!({
        "operation": {
            "initiatedBy": {"automated": true},
            "retry": {"limit": 5},
            "sync": {"revision": sync.revision},
        },
        "phase": phase,
        "message": message,
        "startedAt": sync.started_at,
        "syncResult": {
            "revision": sync.revision,
            "source": app.pointer("/spec/source").cloned().unwrap_or_default(),
            "resources": applied.iter().map(|o| json!({
                "group": str_at(o, "/apiVersion").rsplit_once('/').map(|(g, _)| g).unwrap_or_default(),
                "version": str_at(o, "/apiVersion").rsplit('/').next().unwrap_or_default(),
                "kind": o["kind"],
                "namespace": o.pointer("/metadata/namespace").cloned().unwrap_or(json!("")),
                "name": name_of(o),
                "status": "Synced",
                "message": format!("{} configured", o["kind"].as_str().unwrap_or_default().to_lowercase()),
                "syncPhase": "Sync",
                "hookPhase": "Running",
            })).collect::<Vec<_>>(),
        },
    });
    if phase != "Running" {
        state["finishedAt"] = match app.pointer("/status/operationState") {
            Some(old) if old["phase"] == phase && old["finishedAt"].is_string() => {
                old["finishedAt"].clone()
            }
            _ => json!(objects::now_rfc3339()),
        };
    }
    state
}

fn running(
    app: &Value,
    sync: &AppSync,
    health: (&str, Option<String>),
    applied: &[Value],
    message: &str,
) -> Value {
    let mut status = base_status(app, sync, "OutOfSync", health, applied);
    status["operationState"] = operation_state(app, sync, "Running", message, applied);
    status
}

/// Writes an Application's status (Applications have no status subresource: Argo CD writes
/// the whole object).
fn write(
    shared: &Shared,
    apps_rt: &'static crate::kube::discovery::ResourceType,
    namespace: &str,
    name: &str,
    status: impl Fn(&Value) -> Value,
) {
    shared.write_status(apps_rt, namespace, name, |app| {
        let mut new = status(app);
        let applied: Vec<Value> = new
            .pointer("/operationState/syncResult/resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !applied.is_empty() {
            // The per-resource view mirrors what was applied.
            new["resources"] = json!(
                applied
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        if let Some(m) = r.as_object_mut() {
                            m.remove("message");
                            m.remove("syncPhase");
                            m.remove("hookPhase");
                        }
                        r
                    })
                    .collect::<Vec<_>>()
            );
        }
        app["status"] = new;
    });
    let _ = resources;
}

/// An Application being deleted: with Argo CD's resources finalizer, its resources go first.
fn finalize(shared: &Shared, apps_rt: &'static crate::kube::discovery::ResourceType, app: &Value) {
    let finalizers: Vec<String> = app
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f.starts_with(FINALIZER)) {
        return;
    }
    let name = name_of(app);
    for (gvr, object) in labelled(shared, TRACKING_LABEL, name) {
        if let Some(resource) = shared
            .registry
            .find(&gvr.group, &gvr.version, &gvr.resource)
            && object.pointer("/metadata/deletionTimestamp").is_none()
        {
            let _ = shared.delete(
                resource,
                namespace_of(&object),
                name_of(&object),
                &Value::Null,
                false,
            );
        }
    }
    let remaining: Vec<String> = finalizers
        .into_iter()
        .filter(|f| !f.starts_with(FINALIZER))
        .collect();
    let patch = json!({"metadata": {"finalizers": remaining}});
    let _ = shared.patch(
        apps_rt,
        namespace_of(app),
        name,
        PatchKind::Merge,
        &patch,
        &WriteOptions::by("argocd-application-controller"),
    );
}

/// The Application's AppProject rules (see [`super::appproject`]): `false`, with the
/// Application's status written as Argo CD writes it, when the spec is invalid for its project
/// (an `InvalidSpecError` condition, checked again on every pass, as Argo CD refreshes) or
/// when a resource of the sync is not permitted (the operation fails with "one or more
/// synchronization tasks are not valid" before anything is applied, and the sync stops).
fn project_allows(
    shared: &Shared,
    apps_rt: &'static crate::kube::discovery::ResourceType,
    app: &Value,
    sync: &mut AppSync,
) -> bool {
    let name = name_of(app).to_string();
    let namespace = namespace_of(app).to_string();
    let project_name = match str_at(app, "/spec/project") {
        "" => "default",
        p => p,
    };
    let server = match str_at(app, "/spec/destination/server") {
        "" if str_at(app, "/spec/destination/name") == "in-cluster" => {
            super::appproject::IN_CLUSTER_SERVER
        }
        s => s,
    };
    let destination = str_at(app, "/spec/destination/namespace").to_string();
    let project = shared
        .registry
        .find("argoproj.io", "v1alpha1", "appprojects")
        .and_then(|rt| shared.store.get(&rt.gvr(), &namespace, project_name));
    let invalid: Vec<String> = match &project {
        None => vec![format!(
            "Application referencing project {project_name} which does not exist"
        )],
        Some(object) => {
            let project = super::appproject::Project {
                name: project_name,
                spec: &object["spec"],
            };
            let source = gitops::application_source(app);
            project.spec_problems(str_at(&source, "/repoURL"), server, &destination)
        }
    };
    if !invalid.is_empty() {
        let conditions: Vec<Value> = invalid
            .iter()
            .map(|m| {
                json!({"type": "InvalidSpecError", "message": m,
                       "lastTransitionTime": kept_condition_time(app, "InvalidSpecError")})
            })
            .collect();
        let unchanged = app
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|old| {
                old.len() == conditions.len()
                    && old
                        .iter()
                        .zip(&conditions)
                        .all(|(a, b)| a["type"] == b["type"] && a["message"] == b["message"])
            });
        if !unchanged {
            tracing::info!(app = %name, problems = ?invalid, "lab Argo CD: Application spec invalid for its project");
            write(shared, apps_rt, &namespace, &name, |app| {
                let mut status = base_status(app, sync, "Unknown", ("Unknown", None), &[]);
                status["conditions"] = json!(conditions);
                status
            });
        }
        sync.since = Instant::now();
        return false;
    }
    if sync.permitted {
        return true;
    }
    let Some(project_object) = project else {
        return false;
    };
    let project = super::appproject::Project {
        name: project_name,
        spec: &project_object["spec"],
    };
    let objects: Vec<Value> = match &sync.waves {
        Ok(waves) => waves.iter().flat_map(|(_, o)| o.clone()).collect(),
        Err(_) => {
            sync.permitted = true;
            return true;
        }
    };
    let mut failed: Vec<Value> = Vec::new();
    let mut check = |group: &str,
                     version: &str,
                     kind: &str,
                     ns: &str,
                     object_name: &str,
                     namespaced: bool| {
        if let Some(message) = project.resource_problem(group, kind, namespaced, server, ns) {
            failed.push(json!({
                "group": group, "version": version, "kind": kind, "namespace": ns,
                "name": object_name, "status": "SyncFailed", "message": message,
                "syncPhase": if kind == "Namespace" && group.is_empty() { "PreSync" } else { "Sync" },
            }));
        }
    };
    // CreateNamespace=true: gitops-engine adds a PreSync task for the destination namespace
    // unless the manifests hold it; Argo CD's `syncNamespace` keeps it when the namespace does
    // not exist yet or `managedNamespaceMetadata` is set.
    let create_namespace = app
        .pointer("/spec/syncPolicy/syncOptions")
        .and_then(Value::as_array)
        .is_some_and(|o| o.iter().any(|x| x == "CreateNamespace=true"));
    if create_namespace && !destination.is_empty() {
        let in_manifests = objects
            .iter()
            .any(|o| str_at(o, "/kind") == "Namespace" && name_of(o) == destination);
        let namespaces = builtin(shared, "", "namespaces");
        let exists = shared
            .store
            .get(&namespaces.gvr(), "", &destination)
            .is_some();
        let managed = app
            .pointer("/spec/syncPolicy/managedNamespaceMetadata")
            .is_some();
        if !in_manifests && (!exists || managed) {
            check("", "v1", "Namespace", "", &destination, false);
        }
    }
    for object in &objects {
        // A kind the cluster does not serve yet (its CRD comes in this sync) skips the
        // validator, as in gitops-engine's `getSyncTasks`.
        let Some(resource) = resource_of(shared, object) else {
            continue;
        };
        let api_version = str_at(object, "/apiVersion");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ns = match (resource.namespaced, str_at(object, "/metadata/namespace")) {
            (false, _) => "",
            (true, "") => destination.as_str(),
            (true, ns) => ns,
        };
        check(
            group,
            version,
            str_at(object, "/kind"),
            ns,
            name_of(object),
            resource.namespaced,
        );
    }
    if failed.is_empty() {
        sync.permitted = true;
        return true;
    }
    let messages: Vec<&str> = failed
        .iter()
        .filter_map(|f| f["message"].as_str())
        .collect();
    tracing::info!(app = %name, problems = ?messages, "lab Argo CD: sync tasks not permitted by the project");
    let operation_message = "one or more synchronization tasks are not valid";
    write(shared, apps_rt, &namespace, &name, |app| {
        let mut status = base_status(app, sync, "OutOfSync", ("Missing", None), &[]);
        let mut state = operation_state(app, sync, "Failed", operation_message, &[]);
        state["syncResult"]["resources"] = json!(failed);
        status["operationState"] = state;
        status["conditions"] = json!([{
            "type": "SyncError",
            "message": format!("Failed last sync attempt to [{}]: {operation_message}", sync.revision),
            "lastTransitionTime": kept_condition_time(app, "SyncError"),
        }]);
        status
    });
    sync.done = true;
    false
}
