//! The write side of the lab's Kubernetes API, with kube-rs and the real kubectl: create,
//! update with optimistic concurrency, delete, server-side apply (no-op re-apply, conflicts,
//! force), CustomResourceDefinitions registering new resources, watches of writes, namespaces
//! that terminate, and persistence across a restart.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::discovery::Discovery;
use lab::LabConfig;
use lab::kube::{ClusterOptions, KubeApi, KubeApiConfig};
use metal::talos::secrets::CertAndKey;
use serde_json::{Value, json};

use crate::kube::{CLUSTER, Kubectl, api_error, client, kubernetes_ca, rows, start};

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }))
    .unwrap()
}

fn rv(cm: &ConfigMap) -> String {
    cm.metadata.resource_version.clone().unwrap()
}

#[tokio::test]
async fn create_get_update_conflict_and_delete_like_a_real_server() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&api, &ca).await, "default");

    let created = cms
        .create(&PostParams::default(), &config_map("a", json!({"k": "1"})))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    let again = api_error(
        cms.create(&PostParams::default(), &config_map("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        again,
        (
            409,
            "AlreadyExists".into(),
            "configmaps \"a\" already exists".into()
        )
    );

    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("a", &PostParams::default(), &fresh)
        .await
        .expect("update");
    assert_ne!(rv(&updated), rv(&created));
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let conflict = api_error(
        cms.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(conflict.0, 409);
    assert_eq!(conflict.1, "Conflict");
    assert_eq!(
        conflict.2,
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // An update that changes nothing keeps the resource version.
    let same = cms
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(rv(&same), rv(&updated));

    // Merge patch.
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["x"], "y");

    // Validation as real: missing namespace, bad names, kind mismatch.
    let elsewhere: Api<ConfigMap> = Api::namespaced(client(&api, &ca).await, "nope");
    let missing = api_error(
        elsewhere
            .create(&PostParams::default(), &config_map("b", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        missing,
        (
            404,
            "NotFound".into(),
            "namespaces \"nope\" not found".into()
        )
    );
    let bad = api_error(
        cms.create(&PostParams::default(), &config_map("Bad_Name", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(bad.0, 422);
    assert!(
        bad.2.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{}",
        bad.2
    );

    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = api_error(cms.get("a").await.unwrap_err());
    assert_eq!(
        gone,
        (404, "NotFound".into(), "configmaps \"a\" not found".into())
    );
    api.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_is_idempotent_and_reports_conflicts() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&api, &ca).await, "default");
    let desired = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"app": "x"}},
        "data": {"a": "1", "b": "2"},
    });
    let cto = PatchParams::apply("cto");
    let first = cms
        .patch("cfg", &cto, &Patch::Apply(&desired))
        .await
        .expect("apply creates");
    let second = cms
        .patch("cfg", &cto, &Patch::Apply(&desired))
        .await
        .expect("re-apply");
    assert_eq!(
        rv(&first),
        rv(&second),
        "re-applying the same object is a no-op"
    );
    let managed = second.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("cto"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    // Another manager changing a field cto owns: a conflict, as the real message says it.
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "9"}});
    let conflict = api_error(
        cms.patch("cfg", &PatchParams::apply("other"), &Patch::Apply(&theirs))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        conflict,
        (
            409,
            "Conflict".into(),
            "Apply failed with 1 conflict: conflict with \"cto\": .data.a".into()
        )
    );
    // The same value is shared ownership, not a conflict.
    let agreeing = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    cms.patch(
        "cfg",
        &PatchParams::apply("other"),
        &Patch::Apply(&agreeing),
    )
    .await
    .expect("same value: no conflict");
    let forced = cms
        .patch(
            "cfg",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");

    // cto drops `b` from its configuration: the field goes away (it owned it alone).
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "x"}}, "data": {}});
    let pruned = cms.patch("cfg", &cto, &Patch::Apply(&fewer)).await.unwrap();
    let data = pruned.data.unwrap_or_default();
    assert!(!data.contains_key("b"), "{data:?}");
    assert_eq!(data["a"], "9", "owned by the other manager now");

    // fieldManager is required for apply.
    let raw = client(&api, &ca).await;
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/cfg")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&desired).unwrap())
        .unwrap();
    let error = raw.request::<ConfigMap>(request).await.unwrap_err();
    assert_eq!(api_error(error).0, 400);
    api.shutdown().await;
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Color", "type": "string", "jsonPath": ".spec.color"}],
            }],
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn a_crd_registers_its_resource_for_dynamic_clients_and_kubectl() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    let client = client(&api, &ca).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(&PostParams::default(), &widget_crd())
        .await
        .expect("CRD");
    let established = created
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);

    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (resource, _) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(r, _)| r.plural == "widgets")
        .expect("widgets discovered");
    assert_eq!(resource.kind, "Widget");

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"color": "blue"},
    }))
    .unwrap();
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("create widget");
    let listed = widgets.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].data["spec"]["color"], "blue");
    assert_eq!(listed.items[0].metadata.generation, Some(1));

    // kubectl finds it by plural and short name and prints the CRD's columns.
    let kubectl = Kubectl::new(&api, &ca);
    let table = rows(&kubectl.ok(&["get", "wd", "-n", "default"]).await);
    assert_eq!(table[0], ["NAME", "COLOR"]);
    assert_eq!(table[1], ["w1", "blue"]);

    // Deleting the CRD takes its objects and its resource with it.
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let gone = widgets.list(&Default::default()).await.unwrap_err();
    assert_eq!(api_error(gone).0, 404);
    api.shutdown().await;
}

#[tokio::test]
async fn watches_see_writes_and_namespaces_terminate() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    let client = client(&api, &ca).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut events = cms
        .watch(&WatchParams::default().timeout(10), "0")
        .await
        .expect("watch")
        .boxed();
    cms.create(&PostParams::default(), &config_map("w", json!({"a": "1"})))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(cm)))) => {
                seen.push(("ADDED", cm.data.unwrap()["a"].clone()))
            }
            Ok(Ok(Some(WatchEvent::Modified(cm)))) => {
                seen.push(("MODIFIED", cm.data.unwrap()["a"].clone()))
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("watch ended early: {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [("ADDED", "1".to_string()), ("MODIFIED", "2".to_string())]
    );

    // Deleting a namespace: Terminating, no new content, then gone with its objects.
    let deleted = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete ns");
    let terminating = deleted.left().expect("the namespace object");
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    let protected = api_error(
        namespaces
            .delete("kube-system", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(protected.0, 403);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while namespaces.get_opt("team").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace never went away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cms.get_opt("w").await.unwrap().is_none());
    api.shutdown().await;
}

fn options(dir: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        lab: LabConfig::default(),
        state_file: Some(dir.join("kube-lab.json")),
        incarnation: "test".into(),
        encryption_secret: None,
    }
}

async fn start_persisted(ca: &CertAndKey, dir: &std::path::Path) -> KubeApi {
    lab::kube::start_with(
        KubeApiConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            cluster_name: CLUSTER.into(),
            ca: ca.clone(),
            cert_sans: vec![],
        },
        options(dir),
    )
    .await
    .expect("API server starts")
}

#[tokio::test]
async fn a_restarted_api_keeps_objects_and_resource_versions() {
    let ca = kubernetes_ca();
    let dir = tempfile::tempdir().unwrap();
    let api = start_persisted(&ca, dir.path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&api, &ca).await, "default");
    let kept = cms
        .patch("kept", &PatchParams::apply("cto"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client(&api, &ca).await);
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();
    api.shutdown().await;

    let api = start_persisted(&ca, dir.path()).await;
    let client = client(&api, &ca).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let back = cms.get("kept").await.expect("the object survived");
    assert_eq!(rv(&back), rv(&kept));
    assert_eq!(back.metadata.uid, kept.metadata.uid);
    // Re-applying after the restart is still a no-op.
    let again = cms
        .patch("kept", &PatchParams::apply("cto"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    assert_eq!(rv(&again), rv(&kept));
    // New writes continue after the persisted resource version, and the CRD still serves.
    let next = cms
        .create(&PostParams::default(), &config_map("next", json!({})))
        .await
        .unwrap();
    assert!(rv(&next).parse::<u64>().unwrap() > rv(&kept).parse::<u64>().unwrap());
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    assert!(widgets.list(&Default::default()).await.is_ok());
    api.shutdown().await;
}

#[tokio::test]
async fn kubectl_applies_server_side_and_prints_workloads() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    let kubectl = Kubectl::new(&api, &ca);
    let manifest = kubectl_manifest();
    let path = std::env::temp_dir().join(format!("lab-ssa-{}.yaml", std::process::id()));
    std::fs::write(&path, manifest).unwrap();
    let out = kubectl
        .ok(&["apply", "--server-side", "-f", path.to_str().unwrap()])
        .await;
    assert!(out.contains("configmap/demo serverside-applied"), "{out}");
    assert!(
        out.contains("deployment.apps/demo serverside-applied"),
        "{out}"
    );
    // Twice: nothing changes.
    let cms: Api<ConfigMap> = Api::namespaced(client(&api, &ca).await, "default");
    let before = rv(&cms.get("demo").await.unwrap());
    kubectl
        .ok(&["apply", "--server-side", "-f", path.to_str().unwrap()])
        .await;
    assert_eq!(rv(&cms.get("demo").await.unwrap()), before);
    let table = rows(&kubectl.ok(&["get", "deploy,ds", "-A"]).await);
    assert_eq!(
        table[0],
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ]
    );
    assert_eq!(table[1][0..3], ["default", "deployment.apps/demo", "0/2"]);
    let _ = std::fs::remove_file(&path);
    api.shutdown().await;
}

fn kubectl_manifest() -> &'static str {
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  namespace: default\ndata:\n  a: \"1\"\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: demo\n  namespace: default\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: demo}\n  template:\n    metadata:\n      labels: {app: demo}\n    spec:\n      containers:\n      - name: demo\n        image: nginx:1.27\n"
}
