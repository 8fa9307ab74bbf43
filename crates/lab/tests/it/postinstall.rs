//! What the installer's post-install steps rely on: Talos' `Disks` RPC in both modes, the
//! simulated Mayastor (DiskPools, the CSI binding claims, default StorageClasses) and Vault's
//! API behind the API server's service and pod proxy.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use metal::talos::client::{ApplyMode, TalosClient};
use metal::talos::config::{BootstrapConfig, MachineType};
use metal::talos::secrets::SecretsBundle;
use metal::talos::talosconfig::admin_talosconfig;
use serde_json::{Value, json};

use crate::harness;
use crate::kube::{client, kubernetes_ca, node, start};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn talos_disks_answer_in_maintenance_and_normal_mode() {
    let bundle = SecretsBundle::generate().expect("secrets");
    let mut cfg = harness::config();
    cfg.timeline.talos_install = 100.0;
    let lab = harness::start(cfg).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let addr = SocketAddr::from((ip, lab::TALOS_API_PORT));
    // s2-small-x86: 2 × 500 GB SSD + 2 × 1 TB NVMe (Latitude's recorded plan).
    lab.create(json!({"hostname": "cp-1", "plan": "s2-small-x86", "site": "DAL"}))
        .await;

    let disks = eventually("maintenance-mode Disks", || async move {
        let mut client = TalosClient::maintenance(addr, TIMEOUT).await.ok()?;
        client.disks().await.ok()
    })
    .await;
    let names: Vec<(&str, &str)> = disks
        .iter()
        .map(|d| (d.device_name.as_str(), d.kind.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("/dev/sda", "ssd"),
            ("/dev/sdb", "ssd"),
            ("/dev/nvme0n1", "nvme"),
            ("/dev/nvme1n1", "nvme")
        ]
    );
    assert!(disks.iter().all(|d| !d.readonly && d.size > 0));
    assert!(
        disks
            .iter()
            .all(|d| !d.serial.is_empty() && !d.wwid.is_empty())
    );
    assert_eq!(disks[2].size, 1_000_000_000_000);
    assert!(
        disks.iter().all(|d| !d.system_disk),
        "nothing installed yet"
    );

    let config = BootstrapConfig::new("lab", std::net::IpAddr::V4(ip))
        .with_install_disk("/dev/sdb")
        .render(&bundle, MachineType::ControlPlane)
        .expect("machine config renders");
    TalosClient::maintenance(addr, TIMEOUT)
        .await
        .unwrap()
        .apply_configuration(config.as_bytes(), ApplyMode::Reboot)
        .await
        .unwrap();
    let ips = vec![ip.to_string()];
    let talosconfig = admin_talosconfig(&bundle, "lab", &ips, &ips).unwrap();
    let disks = eventually("normal-mode Disks", || {
        let talosconfig = talosconfig.clone();
        async move {
            let mut client = TalosClient::connect(addr, &talosconfig, TIMEOUT)
                .await
                .ok()?;
            client.disks().await.ok()
        }
    })
    .await;
    let system: Vec<(&str, bool)> = disks
        .iter()
        .map(|d| (d.device_name.as_str(), d.system_disk))
        .collect();
    assert_eq!(
        system,
        [
            ("/dev/sda", false),
            ("/dev/sdb", true),
            ("/dev/nvme0n1", false),
            ("/dev/nvme1n1", false)
        ]
    );
    lab.handle.shutdown().await;
}

/// Registers the Argo CD Application CRD and an Application of `chart` that is Healthy (no
/// Argo CD runs: the status is written by hand).
async fn healthy_app(client: &Client, chart: &str, namespace: &str, values: Value) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.argoproj.io"},
        "spec": {
            "group": "argoproj.io",
            "names": {"kind": "Application", "listKind": "ApplicationList", "plural": "applications", "singular": "application"},
            "scope": "Namespaced",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    });
    crds.patch(
        "applications.argoproj.io",
        &PatchParams::apply("test"),
        &Patch::Apply(crd),
    )
    .await
    .expect("Application CRD");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "argocd"}})).unwrap(),
        )
        .await;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "argocd", &ar);
    let app = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": chart, "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://charts.example", "chart": chart, "targetRevision": "1.0.0",
                "helm": {"valuesObject": values}},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
        },
        "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}},
    });
    eventually("the Application resource", || {
        let apps = apps.clone();
        let app = app.clone();
        async move {
            apps.patch(chart, &PatchParams::apply("test"), &Patch::Apply(app))
                .await
                .ok()
        }
    })
    .await;
}

fn diskpools(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("openebs.io", "v1beta2", "DiskPool"),
        "diskpools",
    );
    Api::namespaced_with(client.clone(), "openebs", &ar)
}

async fn create_pool(pools: &Api<DynamicObject>, name: &str, node: &str, disk: &str) {
    let pool = json!({
        "apiVersion": "openebs.io/v1beta2",
        "kind": "DiskPool",
        "metadata": {"name": name, "namespace": "openebs"},
        "spec": {"node": node, "disks": [disk]},
    });
    pools
        .patch(name, &PatchParams::apply("cto"), &Patch::Apply(pool))
        .await
        .expect("DiskPool");
}

async fn bound(pvcs: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    eventually(&format!("claim {name} to be bound"), || async move {
        let pvc = pvcs.get(name).await.ok()?;
        (pvc.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(pvc)
    })
    .await
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn mayastor_pools_come_online_and_claims_get_bound() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    api.upsert_node(node("w-1", 1, false, true));
    let client = client(&api, &ca).await;
    let pools = diskpools(&client);
    // No CRD before openebs is Healthy.
    assert!(pools.list(&Default::default()).await.is_err());
    healthy_app(&client, "openebs", "openebs", json!({})).await;
    eventually("the DiskPool CRD", || {
        let pools = pools.clone();
        async move { pools.list(&Default::default()).await.ok() }
    })
    .await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "openebs"}})).unwrap(),
        )
        .await
        .unwrap();
    create_pool(&pools, "pool-w-1", "w-1", "aio:///dev/nvme1n1").await;
    create_pool(&pools, "pool-missing", "w-1", "/dev/nvme7n1").await;
    create_pool(&pools, "pool-nowhere", "w-9", "/dev/nvme1n1").await;
    let online = eventually("pool-w-1 Online", || {
        let pools = pools.clone();
        async move {
            let pool = pools.get("pool-w-1").await.ok()?;
            (pool.data.pointer("/status/pool_status") == Some(&json!("Online"))).then_some(pool)
        }
    })
    .await;
    assert_eq!(online.data["status"]["cr_state"], "Created");
    assert_eq!(online.data["status"]["poolStatus"], "Online");
    assert_eq!(online.data["status"]["state"], "Created");
    assert!(online.data["status"]["capacity"].as_u64().unwrap() > 900_000_000_000);
    assert_eq!(
        online.data["status"]["available"],
        online.data["status"]["capacity"]
    );
    for name in ["pool-missing", "pool-nowhere"] {
        let pool = pools.get(name).await.unwrap();
        assert_eq!(pool.data["status"]["pool_status"], "Unknown", "{name}");
        assert_eq!(pool.data["status"]["cr_state"], "Creating", "{name}");
    }
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "openebs");
    let events = events.list(&Default::default()).await.unwrap();
    assert!(events.items.iter().any(|e| {
        e.involved_object.name.as_deref() == Some("pool-missing")
            && e.message
                .as_deref()
                .unwrap_or_default()
                .contains("/dev/nvme7n1")
    }));

    // A Mayastor class, and two defaults (the newest wins).
    let classes: Api<StorageClass> = Api::all(client.clone());
    for (name, provisioner, default) in [
        ("mayastor-nvme", "io.openebs.csi-mayastor", false),
        ("local-path", "rancher.io/local-path", true),
        ("newer-default", "rancher.io/local-path", true),
    ] {
        let mut class = json!({
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": provisioner,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        });
        if default {
            class["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": "true"});
        }
        if provisioner == "io.openebs.csi-mayastor" {
            class["parameters"] = json!({"repl": "1", "protocol": "nvmf", "ioTimeout": "60"});
        }
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(class).unwrap(),
            )
            .await
            .unwrap();
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    pvcs.create(
        &PostParams::default(),
        &claim("data", Some("mayastor-nvme")),
    )
    .await
    .unwrap();
    pvcs.create(&PostParams::default(), &claim("plain", None))
        .await
        .unwrap();
    let data = bound(&pvcs, "data").await;
    let volume = data.spec.as_ref().unwrap().volume_name.clone().unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get(&volume).await.unwrap();
    let pv_spec = pv.spec.unwrap();
    assert_eq!(pv_spec.csi.unwrap().driver, "io.openebs.csi-mayastor");
    assert_eq!(pv_spec.claim_ref.unwrap().name.as_deref(), Some("data"));
    assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));
    let plain = bound(&pvcs, "plain").await;
    let spec = plain.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("newer-default"));
    assert!(spec.volume_name.is_some());

    // The controllers recorded when: the pool Online, then the Mayastor claim.
    let conditions = api.conditions();
    let at = |name: &str| {
        conditions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no {name} in {conditions:?}"))
    };
    assert!(at("diskpool/pool-w-1/online") <= at("pvc/default/data/bound"));
    at("pvc/default/plain/bound");
}

/// A raw call through the API server's proxy: status and JSON body.
async fn proxied(client: &Client, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(
            body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ))
        .unwrap();
    let response = client.send(request).await.expect("proxy answers");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect_bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn vault_initialises_and_unseals_through_the_service_proxy() {
    let ca = kubernetes_ca();
    let api = start(&ca).await;
    api.upsert_node(node("w-1", 1, false, true));
    let client = client(&api, &ca).await;
    const SVC: &str = "/api/v1/namespaces/vault/services/https:vault:8200/proxy";
    let (status, _) = proxied(&client, "GET", &format!("{SVC}/v1/sys/health"), None).await;
    assert_eq!(
        status, 404,
        "no Service before the vault Application is Healthy"
    );

    // Vault on TLS, as gitops/platform/core/vault.yaml installs it (issue 13): its pods mount
    // Secret vault-tls, which cto makes in step 14.
    healthy_app(
        &client,
        "vault",
        "vault",
        json!({
            "global": {"tlsDisable": false},
            "server": {
                "ha": {"enabled": true, "replicas": 2},
                "volumes": [{"name": "vault-tls", "secret": {"secretName": "vault-tls"}}],
            },
        }),
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "vault");
    eventually("the vault namespace", || {
        let secrets = secrets.clone();
        async move {
            let secret = json!({"metadata": {"name": "vault-tls"}, "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}});
            secrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(secret).unwrap(),
                )
                .await
                .ok()
                .map(|_| ())
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "vault");
    eventually("the Vault pods", || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&Default::default()).await.ok()?;
            (list.items.len() == 2).then_some(())
        }
    })
    .await;

    // kube-rs' request_text with a raw request, as the installer does.
    let seal: Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get(format!("{SVC}/v1/sys/seal-status"))
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(seal["initialized"], false);
    assert_eq!(seal["sealed"], true);
    // Plain HTTP to Vault's TLS listener gets Go's answer, not Vault's.
    let plain =
        http::Request::get("/api/v1/namespaces/vault/services/vault:8200/proxy/v1/sys/seal-status")
            .body(kube::client::Body::from(Vec::new()))
            .unwrap();
    let response = client.send(plain).await.expect("proxy answers");
    assert_eq!(response.status().as_u16(), 400);
    let bytes = response.into_body().collect_bytes().await.unwrap();
    assert_eq!(
        &bytes[..],
        b"Client sent an HTTP request to an HTTPS server.\n"
    );
    let (status, _) = proxied(&client, "GET", &format!("{SVC}/v1/sys/health"), None).await;
    assert_eq!(status, 501);

    let init = json!({"secret_shares": 5, "secret_threshold": 3});
    let (status, keys) = proxied(
        &client,
        "PUT",
        &format!("{SVC}/v1/sys/init"),
        Some(init.clone()),
    )
    .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 5);
    assert_eq!(keys["keys_base64"].as_array().unwrap().len(), 5);
    assert!(keys["root_token"].as_str().unwrap().starts_with("hvs."));
    let (status, again) = proxied(
        &client,
        "POST",
        "/api/v1/namespaces/vault/services/https:vault:8200/proxy/v1/sys/init",
        Some(init),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(again, json!({"errors": ["Vault is already initialized"]}));
    // kube-rs retries 429, 503 and 504 answers: ask for other codes (Vault's `sealedcode`,
    // `standbycode`) to see the sealed and standby answers.
    let (status, sealed) = proxied(
        &client,
        "GET",
        &format!("{SVC}/v1/sys/health?sealedcode=530"),
        None,
    )
    .await;
    assert_eq!(status, 530, "sealed");
    assert_eq!(sealed["sealed"], true);

    // Each pod is unsealed on its own, through the pods proxy.
    for pod in ["vault-0", "vault-1"] {
        let path = format!("/api/v1/namespaces/vault/pods/https:{pod}:8200/proxy/v1/sys/unseal");
        for (i, key) in keys["keys_base64"].as_array().unwrap()[..3]
            .iter()
            .enumerate()
        {
            let (status, seal) = proxied(&client, "PUT", &path, Some(json!({"key": key}))).await;
            assert_eq!(status, 200, "{seal}");
            assert_eq!(seal["sealed"], i < 2, "{pod} after {} keys", i + 1);
            assert_eq!(seal["progress"], if i < 2 { i + 1 } else { 0 });
        }
    }
    let health =
        |pod: &str| format!("/api/v1/namespaces/vault/pods/https:{pod}:8200/proxy/v1/sys/health");
    assert_eq!(
        proxied(&client, "GET", &health("vault-0"), None).await.0,
        200
    );
    assert_eq!(
        proxied(
            &client,
            "GET",
            &format!("{}?standbycode=472", health("vault-1")),
            None
        )
        .await
        .0,
        472
    );
    assert_eq!(
        proxied(
            &client,
            "GET",
            &format!("{}?standbyok=true", health("vault-1")),
            None
        )
        .await
        .0,
        200
    );
    let (status, wrong) = proxied(
        &client,
        "PUT",
        &format!("{SVC}/v1/sys/unseal"),
        Some(json!({"key": "zz"})),
    )
    .await;
    assert_eq!(status, 400, "{wrong}");
}

/// Talos v1.11 accepts a config naming a disk the machine lacks (only "disk or diskSelector" is
/// validated), then its install task fails at `filepath.EvalSymlinks` and the machine reboots:
/// iPXE brings it back in maintenance mode, never over mutual TLS, and the console tells why.
#[tokio::test]
async fn an_install_disk_the_machine_lacks_fails_the_install_as_talos_does() {
    let bundle = SecretsBundle::generate().expect("secrets");
    let mut cfg = harness::config();
    cfg.timeline.talos_install = 100.0;
    let lab = harness::start(cfg).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let addr = SocketAddr::from((ip, lab::TALOS_API_PORT));
    // c3-small-x86: one 800 GB NVMe drive, no /dev/sda.
    lab.create(json!({"hostname": "cp-1", "plan": "c3-small-x86", "site": "DAL"}))
        .await;
    let disks = eventually("maintenance-mode Disks", || async move {
        let mut client = TalosClient::maintenance(addr, TIMEOUT).await.ok()?;
        client.disks().await.ok()
    })
    .await;
    let names: Vec<&str> = disks.iter().map(|d| d.device_name.as_str()).collect();
    assert_eq!(names, ["/dev/nvme0n1"]);

    // talosctl's default install disk.
    let config = BootstrapConfig::new("lab", std::net::IpAddr::V4(ip))
        .with_install_disk("/dev/sda")
        .render(&bundle, MachineType::ControlPlane)
        .expect("machine config renders");
    TalosClient::maintenance(addr, TIMEOUT)
        .await
        .expect("maintenance mode")
        .apply_configuration(config.as_bytes(), ApplyMode::Reboot)
        .await
        .expect("the config is accepted: Talos checks only that a disk is named");
    // The port closes for the install, then maintenance mode answers again.
    eventually("the port to close", || async move {
        TalosClient::maintenance(addr, Duration::from_millis(200))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    eventually("maintenance mode again", || async move {
        let mut client = TalosClient::maintenance(addr, TIMEOUT).await.ok()?;
        client.disks().await.ok()
    })
    .await;
    let ips = vec![ip.to_string()];
    let talosconfig = admin_talosconfig(&bundle, "lab", &ips, &ips).unwrap();
    let over_mtls = match TalosClient::connect(addr, &talosconfig, TIMEOUT).await {
        Ok(mut client) => client.version().await.is_ok(),
        Err(_) => false,
    };
    assert!(!over_mtls, "never comes back over mutual TLS");
    let console: Value = reqwest::get(format!("{}/_lab/console/cp-1", lab.handle.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lines = console["lines"].to_string();
    assert!(
        lines.contains("lstat /dev/sda: no such file or directory"),
        "{lines}"
    );
    assert!(lines.contains("rebooting"), "{lines}");
    lab.handle.shutdown().await;
}
