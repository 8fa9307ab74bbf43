//! The lab's simulated controllers, driven the way the installer's platform steps drive a real
//! cluster: Helm Jobs (Cilium, local-path-provisioner, Argo CD), Nodes turning Ready once the
//! CNI runs, Argo CD syncing an app of apps wave by wave, and an injected `Degraded` fault.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use lab::LabConfig;
use lab::kube::{ClusterOptions, KubeApi, KubeApiConfig};
use metal::talos::secrets::CertAndKey;
use serde_json::{Value, json};

use crate::kube::{CLUSTER, Kubectl, client, is_ready, kubernetes_ca, node, rows};

/// Modelled seconds run 200 times faster: a 20 s rollout takes 100 ms, a Job 150 ms, an Argo
/// CD sync step 50 ms.
fn lab_config() -> LabConfig {
    LabConfig {
        time_scale: 0.005,
        ..LabConfig::default()
    }
}

async fn start_cluster(ca: &CertAndKey, lab: LabConfig, state: Option<&Path>) -> KubeApi {
    lab::kube::start_with(
        KubeApiConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            cluster_name: CLUSTER.into(),
            ca: ca.clone(),
            cert_sans: vec![],
        },
        ClusterOptions {
            lab,
            state_file: state.map(|d| d.join("kube-lab.json")),
            incarnation: "test".into(),
            encryption_secret: None,
        },
    )
    .await
    .expect("API server starts")
}

/// Polls `check` until it yields a value (at most 10 s).
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const CILIUM_VALUES: &str = "ipam:\n  mode: kubernetes\nkubeProxyReplacement: true\nk8sServiceHost: localhost\nk8sServicePort: 7445\ncgroup:\n  autoMount:\n    enabled: false\n  hostRoot: /sys/fs/cgroup\nsecurityContext:\n  capabilities:\n    ciliumAgent: [CHOWN, KILL, NET_ADMIN, NET_RAW, IPC_LOCK, SYS_ADMIN, SYS_RESOURCE, DAC_OVERRIDE, FOWNER, SETGID, SETUID]\n    cleanCiliumState: [NET_ADMIN, SYS_ADMIN, SYS_RESOURCE]\n";

/// What the installer applies for one Helm release: the values ConfigMap and the Job.
async fn helm_release(
    client: &Client,
    namespace: &str,
    release: &str,
    chart: &str,
    values: &str,
    host_network: bool,
) {
    let cto = PatchParams::apply("cto");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm_name = format!("{release}-values");
    cms.patch(
        &cm_name,
        &cto,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm_name}, "data": {"values.yaml": values}})),
    )
    .await
    .expect("values ConfigMap");
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job_name = format!("helm-install-{release}");
    let mut pod = json!({
        "restartPolicy": "OnFailure",
        "containers": [{"name": "helm", "image": "alpine/helm:3.19.0", "args": ["upgrade", "--install", release, chart]}],
    });
    if host_network {
        pod["hostNetwork"] = json!(true);
    }
    jobs.patch(
        &job_name,
        &cto,
        &Patch::Apply(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name,
                "labels": {"cto.dev/helm-release": release},
                "annotations": {
                    "cto.dev/chart": chart,
                    "cto.dev/chart-repo": "https://charts.example",
                    "cto.dev/chart-version": "",
                    "cto.dev/values-configmap": cm_name,
                },
            },
            "spec": {"backoffLimit": 0, "template": {"spec": pod}},
        })),
    )
    .await
    .expect("Helm Job");
}

fn job_condition(job: &Job, kind: &str) -> Option<String> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| c.message.clone().unwrap_or_default())
}

async fn job_outcome(client: &Client, namespace: &str, release: &str) -> Result<(), String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let name = format!("helm-install-{release}");
    eventually(&format!("Job {name} to finish"), || {
        let jobs = jobs.clone();
        let name = name.clone();
        async move {
            let job = jobs.get(&name).await.ok()?;
            if job_condition(&job, "Complete").is_some() {
                Some(Ok(()))
            } else {
                job_condition(&job, "Failed").map(Err)
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_cilium_helm_job_installs_the_cni_and_nodes_turn_ready() {
    let ca = kubernetes_ca();
    let api = start_cluster(&ca, lab_config(), None).await;
    api.upsert_node(node("cp-1", 1, true, false));
    api.upsert_node(node("w-1", 2, false, false));
    let client = client(&api, &ca).await;

    helm_release(
        &client,
        "kube-system",
        "cilium",
        "cilium",
        CILIUM_VALUES,
        true,
    )
    .await;
    job_outcome(&client, "kube-system", "cilium")
        .await
        .expect("the Cilium Job completes");

    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let ds = eventually("cilium to roll out", || {
        let daemonsets = daemonsets.clone();
        async move {
            let ds = daemonsets.get("cilium").await.ok()?;
            let status = ds.status.clone()?;
            (status.number_ready == 2).then_some(ds)
        }
    })
    .await;
    let labels = ds.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(labels["app.kubernetes.io/instance"], "cilium");
    assert_eq!(ds.status.unwrap().desired_number_scheduled, 2);

    let nodes: Api<Node> = Api::all(client.clone());
    eventually("nodes to turn Ready", || {
        let nodes = nodes.clone();
        async move {
            let list = nodes.list(&Default::default()).await.ok()?;
            list.items.iter().all(is_ready).then_some(())
        }
    })
    .await;
    // The controllers recorded when each of these happened, in causal order.
    let conditions = api.conditions();
    let at = |name: &str| {
        conditions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no {name} in {conditions:?}"))
    };
    let chain = [
        "node/w-1/registered",
        "job/kube-system/helm-install-cilium/complete",
        "rollout/daemonset/kube-system/cilium",
        "node/w-1/ready",
    ];
    for pair in chain.windows(2) {
        assert!(at(pair[0]) <= at(pair[1]), "{pair:?} in {conditions:?}");
    }
    let cp = nodes.get("cp-1").await.unwrap();
    let taints: Vec<String> = cp
        .spec
        .unwrap()
        .taints
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(taints, ["node-role.kubernetes.io/control-plane"]);
    // The kubelet's later view (ready: false) does not undo the CNI.
    api.upsert_node(node("w-1", 2, false, false));
    assert!(is_ready(&nodes.get("w-1").await.unwrap()));

    // Running the same Helm Job content again changes nothing.
    let before = daemonsets
        .get("cilium")
        .await
        .unwrap()
        .metadata
        .resource_version;
    helm_release(
        &client,
        "kube-system",
        "cilium",
        "cilium",
        CILIUM_VALUES,
        true,
    )
    .await;
    assert_eq!(
        daemonsets
            .get("cilium")
            .await
            .unwrap()
            .metadata
            .resource_version,
        before
    );
    api.shutdown().await;
}

#[tokio::test]
async fn helm_jobs_fail_like_helm_and_wait_for_the_network_like_pods() {
    let ca = kubernetes_ca();
    let api = start_cluster(&ca, lab_config(), None).await;
    api.upsert_node(node("cp-1", 1, true, false));
    let client = client(&api, &ca).await;

    // Values that do not fit Talos.
    let wrong = CILIUM_VALUES.replace("k8sServicePort: 7445", "k8sServicePort: 6443");
    helm_release(&client, "kube-system", "cilium", "cilium", &wrong, true).await;
    let error = job_outcome(&client, "kube-system", "cilium")
        .await
        .unwrap_err();
    assert!(
        error.contains("k8sServicePort must be 7445 (got 6443)"),
        "{error}"
    );

    // A chart the repository does not have.
    helm_release(
        &client,
        "kube-system",
        "nothing",
        "no-such-chart",
        "{}",
        true,
    )
    .await;
    let error = job_outcome(&client, "kube-system", "nothing")
        .await
        .unwrap_err();
    assert!(
        error.contains("chart \"no-such-chart\" not found in https://charts.example repository"),
        "{error}"
    );

    // Invalid YAML values.
    helm_release(
        &client,
        "kube-system",
        "broken",
        "local-path-provisioner",
        "a: [",
        true,
    )
    .await;
    let error = job_outcome(&client, "kube-system", "broken")
        .await
        .unwrap_err();
    assert!(
        error.contains("failed to parse /config/values.yaml"),
        "{error}"
    );

    // Without host networking, before any Node is Ready, the pod stays Pending.
    helm_release(
        &client,
        "kube-system",
        "local-path",
        "local-path-provisioner",
        "storageClass:\n  defaultClass: true\n",
        false,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    let pending = jobs.get("helm-install-local-path").await.unwrap();
    assert!(
        job_condition(&pending, "Complete").is_none()
            && job_condition(&pending, "Failed").is_none()
    );
    assert_eq!(pending.status.unwrap().active, Some(1));

    // Once the network is there, it runs.
    api.upsert_node(node("cp-1", 1, true, true));
    job_outcome(&client, "kube-system", "local-path")
        .await
        .expect("local-path installs");
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class = classes.get("local-path").await.expect("StorageClass");
    assert_eq!(
        class.metadata.annotations.unwrap()["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    let kubectl = Kubectl::new(&api, &ca);
    let table = rows(&kubectl.ok(&["get", "storageclass"]).await);
    assert_eq!(
        table[1][0..2],
        [
            "local-path (default)",
            "cluster.local/local-path-provisioner"
        ]
    );
    api.shutdown().await;
}

fn applications(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    Api::namespaced_with(client.clone(), "argocd", &ar)
}

fn health(app: &DynamicObject) -> (String, String) {
    let text = |p: &str| {
        app.data
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("/status/sync/status"), text("/status/health/status"))
}

fn child_app(name: &str, wave: i64) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\n  annotations:\n    argocd.argoproj.io/sync-wave: \"{wave}\"\nspec:\n  project: default\n  source:\n    repoURL: https://charts.example\n    chart: {name}\n    targetRevision: 1.0.0\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {name}\n  syncPolicy:\n    automated: {{}}\n"
    )
}

/// Argo CD installed by its Helm Job on a cluster whose nodes are Ready.
async fn argo_cd(api: &KubeApi, client: &Client) {
    api.upsert_node(node("cp-1", 1, true, true));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            "argocd",
            &PatchParams::apply("cto"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}),
            ),
        )
        .await
        .unwrap();
    helm_release(
        client,
        "argocd",
        "argocd",
        "argo-cd",
        "configs:\n  cm:\n    timeout.reconciliation: 60s\n",
        false,
    )
    .await;
    job_outcome(client, "argocd", "argocd")
        .await
        .expect("Argo CD installs");
}

#[tokio::test]
async fn argo_cd_syncs_an_app_of_apps_in_waves_and_keeps_a_faulty_app_degraded() {
    let ca = kubernetes_ca();
    let repo = tempfile::tempdir().unwrap();
    let apps_dir = repo.path().join("gitops/apps");
    std::fs::create_dir_all(&apps_dir).unwrap();
    std::fs::write(apps_dir.join("a-first.yaml"), child_app("first", -1)).unwrap();
    std::fs::write(
        apps_dir.join("b-middle.yaml"),
        format!("{}---\n{}", child_app("second", 0), child_app("third", 0)),
    )
    .unwrap();
    std::fs::write(apps_dir.join("c-last.yaml"), child_app("vault", 5)).unwrap();
    std::fs::write(apps_dir.join("namespace.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n  annotations:\n    argocd.argoproj.io/sync-wave: \"-5\"\n").unwrap();
    let mut lab = lab_config();
    lab.git_repos.insert(
        "https://git.example/platform.git".into(),
        repo.path().to_owned(),
    );
    lab.argocd_degraded = vec!["vault".into()];
    let state = tempfile::tempdir().unwrap();
    let api = start_cluster(&ca, lab.clone(), Some(state.path())).await;
    let client = client(&api, &ca).await;
    argo_cd(&api, &client).await;

    // The chart's CRDs, the initial admin secret and a ready application controller.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [
        "applications.argoproj.io",
        "appprojects.argoproj.io",
        "applicationsets.argoproj.io",
    ] {
        crds.get(crd).await.unwrap_or_else(|e| panic!("{crd}: {e}"));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "argocd");
    let secret = secrets
        .get("argocd-initial-admin-secret")
        .await
        .expect("initial admin secret");
    assert_eq!(secret.data.unwrap()["password"].0.len(), 16);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "argocd");
    eventually("the application controller to be ready", || {
        let sts = sts.clone();
        async move {
            (sts.get("argocd-application-controller")
                .await
                .ok()?
                .status?
                .ready_replicas
                == Some(1))
            .then_some(())
        }
    })
    .await;

    let apps = applications(&client);
    apps.patch(
        "root",
        &PatchParams::apply("cto"),
        &Patch::Apply(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "root", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://git.example/platform", "path": "gitops/apps", "targetRevision": "main"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "argocd"},
                "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
            },
        })),
    )
    .await
    .expect("root Application");

    // Record the order in which the children become Healthy.
    let mut order: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        for app in apps.list(&Default::default()).await.unwrap().items {
            let name = app.metadata.name.clone().unwrap();
            if name != "root"
                && health(&app) == ("Synced".into(), "Healthy".into())
                && !order.contains(&name)
            {
                order.push(name);
            }
        }
        let vault = apps.get_opt("vault").await.unwrap();
        if order.len() == 3 && vault.is_some_and(|v| health(&v).1 == "Degraded") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "children did not sync: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(order[0], "first", "{order:?}");
    assert!(
        order[1..].contains(&"second".to_string()) && order[1..].contains(&"third".to_string())
    );
    let vault = apps.get("vault").await.unwrap();
    assert_eq!(health(&vault), ("Synced".into(), "Degraded".into()));
    assert_eq!(
        vault
            .data
            .pointer("/status/health/message")
            .and_then(Value::as_str),
        Some("Deployment vault/vault has timed out progressing.")
    );
    assert!(vault.data.pointer("/status/conditions/0/message").is_some());
    eventually("the parent to reflect its degraded child", || {
        let apps = apps.clone();
        async move { (health(&apps.get("root").await.ok()?).1 == "Degraded").then_some(()) }
    })
    .await;
    let children_label = vault.metadata.labels.unwrap();
    assert_eq!(children_label["app.kubernetes.io/instance"], "root");
    // The controllers recorded the waves' order too.
    let conditions = api.conditions();
    let at = |name: &str| {
        conditions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no {name} in {conditions:?}"))
    };
    assert!(at("application/first/healthy") <= at("application/second/healthy"));
    assert!(at("application/first/healthy") <= at("application/vault/degraded"));

    // kubectl prints the Application CRD's columns.
    let kubectl = Kubectl::new(&api, &ca);
    let table = rows(&kubectl.ok(&["get", "applications", "-n", "argocd"]).await);
    assert_eq!(table[0], ["NAME", "SYNC STATUS", "HEALTH STATUS"]);
    assert!(
        table.contains(&vec![
            "first".to_string(),
            "Synced".into(),
            "Healthy".into()
        ]),
        "{table:?}"
    );
    let workloads = kubectl.ok(&["get", "deploy,sts", "-n", "argocd"]).await;
    assert!(
        workloads.contains("deployment.apps/argocd-server") && workloads.contains("1/1"),
        "{workloads}"
    );

    // The fault lifted (a lab restarted without it): the app becomes Healthy.
    api.shutdown().await;
    lab.argocd_degraded.clear();
    let api = start_cluster(&ca, lab, Some(state.path())).await;
    let client = crate::kube::client(&api, &ca).await;
    let apps = applications(&client);
    eventually("vault to recover", || {
        let apps = apps.clone();
        async move {
            let vault = apps.get("vault").await.ok()?;
            let root = apps.get("root").await.ok()?;
            (health(&vault).1 == "Healthy" && health(&root) == ("Synced".into(), "Healthy".into()))
                .then_some(())
        }
    })
    .await;
    api.shutdown().await;
}
