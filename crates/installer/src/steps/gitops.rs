//! Steps 17–19: Argo CD takes over. This module owns the hand-over: what "Argo CD is ready"
//! means, the bootstrap AppProject `cto` and the root Application `cto-platform` (the
//! app-of-apps, pointing at `<gitops-path>/apps/<profile>` of the GitOps repository), and the
//! wait until every Application in the Argo CD namespace is Synced and Healthy — which on
//! timeout names each Application that is not, with Argo CD's own message.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use metal::provider::Provider;
use serde_json::{Value, json};

use crate::cluster_api::{Verdict, WaitError};
use crate::error::StepError;
use crate::spec::ClusterSpec;
use crate::steps::platform::{
    ARGOCD_NAMESPACE, LOCAL_PATH_NAMESPACE, all_of, cluster, kube_error, wait_deployments,
    wait_failure,
};
use crate::steps::{StepContext, StepResult};

/// The AppProject of the root Application.
pub(crate) const BOOTSTRAP_PROJECT: &str = "cto";
/// The root Application (the app-of-apps).
pub(crate) const ROOT_APPLICATION: &str = "cto-platform";
/// The in-cluster API server as Argo CD names it.
const IN_CLUSTER: &str = "https://kubernetes.default.svc";
/// Argo CD's CRDs that must be established.
const ARGOCD_CRDS: [&str; 2] = ["applications.argoproj.io", "appprojects.argoproj.io"];

/// The bootstrap AppProject: the root Application may only create Applications and
/// AppProjects in the Argo CD namespace, from the GitOps repository.
pub(crate) fn bootstrap_project(spec: &ClusterSpec) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {
            "name": BOOTSTRAP_PROJECT,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "cto"},
        },
        "spec": {
            "description": "The app-of-apps installed by cto: Applications and AppProjects from the GitOps repository, nothing else.",
            "sourceRepos": [spec.gitops.repo],
            "destinations": [{"server": IN_CLUSTER, "namespace": ARGOCD_NAMESPACE}],
            "clusterResourceWhitelist": [],
            "namespaceResourceWhitelist": [
                {"group": "argoproj.io", "kind": "Application"},
                {"group": "argoproj.io", "kind": "AppProject"},
            ],
        },
    })
}

/// The root Application: syncs `<gitops-path>/apps/<profile>` (plain Application manifests)
/// automatically, pruning and self-healing.
pub(crate) fn root_application(spec: &ClusterSpec) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": ROOT_APPLICATION,
            "namespace": ARGOCD_NAMESPACE,
            "labels": {
                "app.kubernetes.io/managed-by": "cto",
                "cto.dev/profile": spec.profile.to_string(),
            },
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": BOOTSTRAP_PROJECT,
            "source": {
                "repoURL": spec.gitops.repo,
                "targetRevision": spec.gitops.revision,
                "path": spec.gitops.profile_path(spec.profile),
                "kustomize": {"patches": [source_patch(spec)]},
            },
            "destination": {"server": IN_CLUSTER, "namespace": ARGOCD_NAMESPACE},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "retry": {
                    "limit": 10,
                    "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"},
                },
            },
        },
    })
}

/// The ConfigMap of `<path>/apps/<profile>` that Kustomize's replacements copy into every
/// category Application (`gitops/apps/<profile>/kustomization.yaml`).
pub(crate) const SOURCE_CONFIGMAP: &str = "cto-gitops-source";

/// The one place the GitOps repository, revision and tree path are given: a Kustomize patch
/// (Argo CD's `spec.source.kustomize.patches`, appended to the kustomization's `patches`) that
/// writes them into [`SOURCE_CONFIGMAP`]; the tree's replacements carry them into each
/// category Application. JSON 6902 operations, written as JSON (which is YAML).
pub(crate) fn source_patch(spec: &ClusterSpec) -> Value {
    let ops = json!([
        {"op": "replace", "path": "/data/repoURL", "value": spec.gitops.repo},
        {"op": "replace", "path": "/data/targetRevision", "value": spec.gitops.revision},
        // The tree at the repository root is `.`: the replacement puts it in front of
        // `platform/<category>`, and Argo CD paths are relative.
        {"op": "replace", "path": "/data/path", "value": if spec.gitops.path.is_empty() { "." } else { spec.gitops.path.as_str() }},
    ]);
    json!({
        "target": {"version": "v1", "kind": "ConfigMap", "name": SOURCE_CONFIGMAP},
        "patch": ops.to_string(),
    })
}

/// Why an Application can never become Synced and Healthy without someone changing the
/// repository or its AppProject: its spec is invalid for its project (`InvalidSpecError`), or
/// its last sync failed because a resource is not permitted in the project (Argo CD's
/// "... is not permitted in project ..."). `None` for anything that may still converge.
pub(crate) fn application_refused(app: &Value) -> Option<String> {
    let invalid = app["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "InvalidSpecError");
    let refused = app["status"]["operationState"]["phase"] == "Failed"
        && app["status"]["operationState"]["syncResult"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                r["status"] == "SyncFailed"
                    && r["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("is not permitted in project"))
            });
    (invalid || refused)
        .then(|| application_problem(app))
        .flatten()
}

fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// How one Application stands: `None` when Synced and Healthy, else a line naming it with its
/// sync and health status, Argo CD's health message and its conditions.
pub(crate) fn application_problem(app: &Value) -> Option<String> {
    let name = app["metadata"]["name"].as_str().unwrap_or("?");
    let sync = app["status"]["sync"]["status"]
        .as_str()
        .unwrap_or("Unknown");
    let health = app["status"]["health"]["status"]
        .as_str()
        .unwrap_or("Unknown");
    if sync == "Synced" && health == "Healthy" {
        return None;
    }
    let mut line = format!("{name} ({sync}, {health}");
    if let Some(m) = app["status"]["health"]["message"]
        .as_str()
        .filter(|m| !m.is_empty())
    {
        line.push_str(&format!(": {m}"));
    }
    line.push(')');
    for c in app["status"]["conditions"].as_array().into_iter().flatten() {
        let t = c["type"].as_str().unwrap_or("Condition");
        let m = c["message"].as_str().unwrap_or("");
        line.push_str(&format!(" [{t}: {m}]"));
    }
    if let Some(m) = app["status"]["operationState"]["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        && app["status"]["operationState"]["phase"] != "Succeeded"
    {
        line.push_str(&format!(" [last sync: {m}]"));
        // The resources that failed, with Argo CD's message for each.
        for r in app["status"]["operationState"]["syncResult"]["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["status"] == "SyncFailed")
        {
            line.push_str(&format!(
                " [{} {}: {}]",
                r["kind"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?"),
                r["message"].as_str().unwrap_or("")
            ));
        }
    }
    Some(line)
}

/// The verdict over every Application in the namespace: the root must exist and have created
/// children, and all must be Synced and Healthy.
pub(crate) fn sync_verdict<'a>(apps: impl IntoIterator<Item = &'a Value>) -> Verdict {
    let apps: Vec<&Value> = apps.into_iter().collect();
    if !apps
        .iter()
        .any(|a| a["metadata"]["name"] == ROOT_APPLICATION)
    {
        return Verdict::Pending(format!("Application {ROOT_APPLICATION} not found"));
    }
    let refused: Vec<String> = apps.iter().filter_map(|a| application_refused(a)).collect();
    if !refused.is_empty() {
        return Verdict::Failed(format!(
            "Argo CD refuses {} Application(s) under their AppProject: {}. Fix the AppProject or the Applications in the GitOps repository (`cargo xtask gitops-check` applies the same rules), then resume",
            refused.len(),
            refused.join("; ")
        ));
    }
    let problems: Vec<String> = apps.iter().filter_map(|a| application_problem(a)).collect();
    if !problems.is_empty() {
        return Verdict::Pending(problems.join("; "));
    }
    if apps.len() < 2 {
        return Verdict::Pending(format!(
            "{ROOT_APPLICATION} has not created its Applications yet"
        ));
    }
    Verdict::Done
}

/// Step 17: Argo CD's CRDs established, server and repo-server available, the application
/// controller ready.
pub(crate) async fn waiting_argocd_ready<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let api = cluster(ctx).await?;
    let timeout = ctx.timings.rollout_timeout;
    let started = Instant::now();
    api.wait_for(
        api.all::<CustomResourceDefinition>(),
        watcher::Config::default(),
        timeout,
        |all| {
            all_of(ARGOCD_CRDS.iter().map(|crd| {
                let established = all.values().any(|c| {
                    c.metadata.name.as_deref() == Some(crd)
                        && c.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c.type_ == "Established" && c.status == "True")
                            })
                });
                if established {
                    Verdict::Done
                } else {
                    Verdict::Pending(format!("CRD {crd} not established"))
                }
            }))
        },
    )
    .await
    .map_err(|e| wait_failure("Argo CD's CRDs", started, e))?;

    wait_deployments(
        &api,
        ARGOCD_NAMESPACE,
        &["argocd-server", "argocd-repo-server"],
        timeout.saturating_sub(started.elapsed()),
    )
    .await?;

    let controller = "argocd-application-controller";
    let started_sts = Instant::now();
    api.wait_for(
        api.namespaced::<StatefulSet>(ARGOCD_NAMESPACE),
        watcher::Config::default().fields(&format!("metadata.name={controller}")),
        timeout.saturating_sub(started.elapsed()),
        |all| match all.values().next() {
            None => Verdict::Pending(format!("StatefulSet {controller} not created yet")),
            Some(sts) => {
                let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = sts
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                if ready >= want {
                    Verdict::Done
                } else {
                    Verdict::Pending(format!("StatefulSet {controller}: {ready}/{want} ready"))
                }
            }
        },
    )
    .await
    .map_err(|e| wait_failure("the Argo CD application controller", started_sts, e))?;
    ctx.progress("Argo CD is ready");
    Ok(())
}

/// Step 18: the bootstrap AppProject and the root Application, server-side applied.
pub(crate) async fn applying_app_of_apps<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let api = cluster(ctx).await?;
    let spec = ctx.checkpoint().spec.clone();
    api.apply(&bootstrap_project(&spec))
        .await
        .map_err(|e| kube_error("the app-of-apps", e))?;
    api.apply(&root_application(&spec))
        .await
        .map_err(|e| kube_error("the app-of-apps", e))?;
    ctx.update(|cp| cp.resolved.app_of_apps_applied = true)?;
    ctx.progress(format!(
        "{ROOT_APPLICATION} syncs {} at {} ({})",
        spec.gitops.repo,
        spec.gitops.revision,
        spec.gitops.profile_path(spec.profile)
    ));
    Ok(())
}

/// Step 19: local-path-provisioner available (the platform's claims bind through it while
/// Mayastor is not ready; step 15 only installs it, so that it rolls out while Argo CD
/// installs), then every Application Synced and Healthy within `--sync-timeout`.
pub(crate) async fn waiting_gitops_sync<P: Provider>(ctx: &mut StepContext<'_, P>) -> StepResult {
    let api = cluster(ctx).await?;
    wait_deployments(&api, LOCAL_PATH_NAMESPACE, &[], ctx.timings.rollout_timeout).await?;
    ctx.progress(format!(
        "{LOCAL_PATH_NAMESPACE}: local-path-provisioner available"
    ));
    let minutes = ctx.checkpoint().spec.sync_timeout_minutes;
    let timeout = Duration::from_secs(u64::from(minutes) * 60);
    let apps: Api<DynamicObject> =
        Api::namespaced_with(api.client(), ARGOCD_NAMESPACE, &application_resource());
    let started = Instant::now();
    let mut reported = std::collections::BTreeSet::new();
    let reporter = ctx.reporter;
    let step = ctx.step;
    let result = api
        .wait_for(apps, watcher::Config::default(), timeout, |all| {
            let values: Vec<Value> = all
                .values()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect();
            for app in &values {
                if application_problem(app).is_none()
                    && let Some(name) = app["metadata"]["name"].as_str()
                    && reported.insert(name.to_owned())
                {
                    reporter.report(crate::events::Event::Progress {
                        step,
                        message: format!("{name}: Synced, Healthy"),
                    });
                }
            }
            sync_verdict(&values)
        })
        .await;
    match result {
        Ok(all) => {
            ctx.progress(format!("{} Applications Synced and Healthy", all.len()));
            Ok(())
        }
        Err(WaitError::Timeout { pending }) => Err(StepError::Timeout {
            what: format!(
                "every Argo CD Application to be Synced and Healthy (--sync-timeout {minutes})"
            ),
            waited_s: started.elapsed().as_secs(),
            pending,
        }
        .into()),
        Err(e) => Err(wait_failure("GitOps sync", started, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InstallRequest;

    fn spec() -> ClusterSpec {
        InstallRequest {
            cluster_name: "c".into(),
            nodes: 3,
            control_planes: 1,
            sync_timeout_minutes: 30,
            project: Some("p".into()),
            api_url: "https://api.latitude.sh".into(),
            profile: Some("full".into()),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn the_root_application_points_at_the_profile() {
        let app = root_application(&spec());
        assert_eq!(app["spec"]["source"]["path"], "gitops/apps/full");
        assert_eq!(
            app["spec"]["source"]["repoURL"],
            "https://github.com/5dlabs/cto"
        );
        assert_eq!(app["spec"]["source"]["targetRevision"], "main");
        assert_eq!(app["spec"]["project"], BOOTSTRAP_PROJECT);
        assert_eq!(app["spec"]["syncPolicy"]["automated"]["selfHeal"], true);
        // The repository, revision and path reach the tree's ConfigMap through one patch.
        let patch = &app["spec"]["source"]["kustomize"]["patches"][0];
        assert_eq!(patch["target"]["name"], SOURCE_CONFIGMAP);
        let ops: Value = serde_json::from_str(patch["patch"].as_str().unwrap()).unwrap();
        assert_eq!(ops[0]["value"], "https://github.com/5dlabs/cto");
        assert_eq!(ops[1]["value"], "main");
        assert_eq!(ops[2]["value"], "gitops");
        assert!(app["spec"]["source"].get("directory").is_none());
        let project = bootstrap_project(&spec());
        assert_eq!(
            project["spec"]["sourceRepos"][0],
            "https://github.com/5dlabs/cto"
        );
    }

    fn app(name: &str, sync: &str, health: &str, message: Option<&str>) -> Value {
        let mut a = json!({
            "metadata": {"name": name},
            "status": {"sync": {"status": sync}, "health": {"status": health}},
        });
        if let Some(m) = message {
            a["status"]["health"]["message"] = json!(m);
        }
        a
    }

    #[test]
    fn sync_verdicts_name_each_unhealthy_application() {
        let root = app(ROOT_APPLICATION, "Synced", "Healthy", None);
        assert!(matches!(sync_verdict([&root]), Verdict::Pending(_)));
        let ok = app("storage", "Synced", "Healthy", None);
        assert_eq!(sync_verdict([&root, &ok]), Verdict::Done);
        let mut bad = app(
            "cert-manager",
            "Synced",
            "Degraded",
            Some("Deployment cert-manager has 0/1 ready"),
        );
        bad["status"]["conditions"] = json!([{"type": "SyncError", "message": "boom"}]);
        let Verdict::Pending(p) = sync_verdict([&root, &ok, &bad]) else {
            panic!()
        };
        assert!(p.contains("cert-manager (Synced, Degraded: Deployment cert-manager has 0/1 ready) [SyncError: boom]"), "{p}");
        assert!(!p.contains("storage"));
        // A sync refused by the AppProject ends the wait at once, naming the Application and
        // Argo CD's message.
        let mut refused = app("vault", "OutOfSync", "Missing", None);
        refused["status"]["operationState"] = json!({
            "phase": "Failed",
            "message": "one or more synchronization tasks are not valid",
            "syncResult": {"resources": [{"kind": "Namespace", "name": "vault", "status": "SyncFailed",
                "message": "resource :Namespace is not permitted in project platform"}]},
        });
        let Verdict::Failed(f) = sync_verdict([&root, &ok, &refused]) else {
            panic!()
        };
        assert!(f.contains("vault (OutOfSync, Missing) [last sync: one or more synchronization tasks are not valid] [Namespace vault: resource :Namespace is not permitted in project platform]"), "{f}");
        // A sync that failed for another reason may still converge: keep waiting.
        refused["status"]["operationState"]["syncResult"]["resources"][0]["message"] =
            json!("the server could not find the requested resource");
        assert!(matches!(
            sync_verdict([&root, &refused]),
            Verdict::Pending(_)
        ));
        let fresh = json!({"metadata": {"name": "vault"}});
        let Verdict::Pending(p) = sync_verdict([&root, &fresh]) else {
            panic!()
        };
        assert!(p.contains("vault (Unknown, Unknown)"), "{p}");
    }
}
