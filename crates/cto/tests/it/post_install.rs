//! Phase 5 end to end: Mayastor storage, the kubeconfig and talosconfig merged into the user's
//! HOME, Vault initialised and unsealed through the API server's proxies, the summary, and
//! `cto health` — a `--lab` install run to Complete, then checked with the real kubectl.

use serde_json::Value;

use crate::harness::{LabProcess, User, describe, events, run};
use crate::kubectl::{items, kubectl, kubectl_json, wait_for_kube_api};

const OLD_KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: https://other.example:6443
users:
- name: other-admin
  user:
    token: other-token
contexts:
- name: other
  context:
    cluster: other
    user: other-admin
current-context: other
";

#[test]
fn a_lab_install_completes_all_22_steps_for_the_user_and_is_healthy() {
    let user = User::new();
    let home = user.home.path();
    std::fs::create_dir_all(home.join(".kube")).unwrap();
    std::fs::write(home.join(".kube").join("config"), OLD_KUBECONFIG).unwrap();
    let state = user.state_dir("d");
    let s = state.to_str().unwrap();

    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "d",
            "--nodes",
            "3",
            // Two NVMe disks per machine (Latitude's recorded c3-large-x86): Mayastor. The
            // default plan, c2-small-x86, has one SSD and gets local-path (tests/it/hardware.rs).
            "--cp-plan",
            "c3-large-x86",
            "--init-vault",
            "--state-dir",
            s,
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = events(&out);
    let finished: Vec<u64> = evs
        .iter()
        .filter(|e| e["event"] == "step_finished")
        .filter_map(|e| e["number"].as_u64())
        .collect();
    assert_eq!(
        finished,
        (1..=22).collect::<Vec<u64>>(),
        "{}",
        describe(&out)
    );
    let complete = evs
        .iter()
        .find(|e| e["event"] == "complete")
        .unwrap_or_else(|| panic!("no complete event: {}", describe(&out)));
    assert_eq!(complete["cluster"], "d");
    assert_eq!(complete["storage_class"], "mayastor-nvme");
    assert_eq!(complete["nodes"].as_array().unwrap().len(), 3);
    assert!(complete["endpoint"].is_string(), "{complete}");
    assert!(
        complete["argocd_password"]
            .as_str()
            .unwrap()
            .contains("argocd-initial-admin-secret"),
        "{complete}"
    );
    assert!(complete["hourly_usd"].is_number(), "{complete}");
    assert!(complete["monthly_usd"].is_number(), "{complete}");

    // The user's kubeconfig: admin@d current, the old entries kept, a backup made.
    let user_kubeconfig = home.join(".kube").join("config");
    let out = kubectl(&user_kubeconfig, &["config", "current-context"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "admin@d");
    let out = kubectl(&user_kubeconfig, &["config", "get-contexts", "-o", "name"]);
    let contexts = String::from_utf8_lossy(&out.stdout);
    assert!(contexts.lines().any(|c| c == "other"), "{contexts}");
    assert!(contexts.lines().any(|c| c == "admin@d"), "{contexts}");
    let backups: Vec<_> = std::fs::read_dir(home.join(".kube"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("config.cto-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        OLD_KUBECONFIG
    );
    assert!(home.join(".talos").join("config").exists());

    // Vault's keys: in the state directory, 0600, never printed.
    let vault_init = state.join("vault-init.json");
    let keys: Value = serde_json::from_str(&std::fs::read_to_string(&vault_init).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&vault_init).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let root_token = keys["root_token"].as_str().unwrap();
    assert!(!root_token.is_empty());
    assert!(!printed.contains(root_token));
    assert!(
        !complete.to_string().contains(root_token),
        "the summary names the file, not the token"
    );
    assert_eq!(
        complete["vault_init"].as_str().unwrap(),
        vault_init.display().to_string()
    );

    // Serve the world again and look at it with kubectl.
    let lab = LabProcess::reopen(&state.join("lab"));
    let kubeconfig = state.join("kubeconfig");
    wait_for_kube_api(&kubeconfig);
    let classes = items(&kubectl_json(&kubeconfig, &["get", "storageclass"]));
    let defaults: Vec<&str> = classes
        .iter()
        .filter(|c| {
            c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
        })
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(defaults, ["mayastor-nvme"], "{classes:?}");
    let pools = items(&kubectl_json(
        &kubeconfig,
        &["get", "diskpools.openebs.io", "-n", "openebs"],
    ));
    let mut names: Vec<&str> = pools
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["pool-d-worker-1", "pool-d-worker-2"]);
    for pool in &pools {
        assert_eq!(pool["status"]["poolStatus"], "Online", "{pool}");
        let disk = pool["spec"]["disks"][0].as_str().unwrap();
        assert!(disk.starts_with("/dev/disk/by-id/nvme-"), "{pool}");
    }
    let pvcs = items(&kubectl_json(&kubeconfig, &["get", "pvc", "-n", "default"]));
    assert!(
        pvcs.iter()
            .all(|p| p["metadata"]["name"] != "cto-storage-check"),
        "the volume test's PVC is deleted again"
    );

    // cto health: every check passes and is listed.
    let out = run(
        user.cto(None),
        &["health", "--state-dir", s, "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = events(&out)
        .into_iter()
        .find(|e| e["event"] == "health")
        .unwrap_or_else(|| panic!("no health report: {}", describe(&out)));
    assert_eq!(report["ok"], true, "{report}");
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["ok"], true, "{c}");
            c["name"].as_str().unwrap()
        })
        .collect();
    for want in [
        "talos services d-cp-1",
        "talos services d-worker-1",
        "talos services d-worker-2",
        "etcd members",
        "nodes ready",
        "cilium agents",
        "argocd applications",
        "diskpools online",
        "vault unsealed",
    ] {
        assert!(checks.contains(&want), "{want} missing from {checks:?}");
    }
    drop(lab);

    // Resuming a completed install shows the summary again and changes nothing.
    let checkpoint = std::fs::read(state.join("checkpoint.json")).unwrap();
    let out = run(user.cto(None), &["install", "--resume", "--state-dir", s]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Cluster d is ready"), "{}", describe(&out));
    assert!(stdout.contains("cto health"), "{}", describe(&out));
    assert_eq!(
        std::fs::read(state.join("checkpoint.json")).unwrap(),
        checkpoint
    );
}
