//! Phase 2 end to end: Talos configured over its gRPC API, etcd bootstrapped, nodes registered
//! with Kubernetes — against the lab, with kills and resumes.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{LabProcess, User, describe, kill_when, run};
use crate::kubectl::{kubectl, wait_for_kube_api};

const STOP: &str = "--stop-after=waiting-worker-join";

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_lab_reaches_worker_join_and_kubectl_sees_three_not_ready_nodes() {
    let user = User::new();
    let state = user.state_dir("b");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "b",
            "--nodes",
            "3",
            "--state-dir",
            s,
            STOP,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    for file in [
        "secrets.yaml",
        "controlplane.yaml",
        "worker.yaml",
        "talosconfig",
        "kubeconfig",
    ] {
        let path = state.join(file);
        assert!(path.exists(), "{file} written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file} is private");
        }
    }
    let worker = String::from_utf8(read(&state.join("worker.yaml"))).unwrap();
    assert!(worker.contains("type: worker"), "{worker}");

    // The in-process lab stopped with cto; serve its world again to reach the cluster.
    let lab = LabProcess::reopen(&state.join("lab"));
    wait_for_kube_api(&state.join("kubeconfig"));

    let out = kubectl(&state.join("kubeconfig"), &["get", "nodes", "-o", "json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let nodes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b-cp-1", "b-worker-1", "b-worker-2"]);
    for node in nodes["items"].as_array().unwrap() {
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False", "no CNI yet: {node}");
    }
    let out = kubectl(&state.join("kubeconfig"), &["get", "nodes"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("NotReady")
            .count(),
        3,
        "{}",
        describe(&out)
    );

    // Two labs must never serve one world: stop this one before cto starts its own.
    drop(lab);

    // Continuing runs the platform steps (tests/it/platform.rs covers them) and the
    // post-install steps (tests/it/post_install.rs) to Complete.
    let out = run(user.cto(None), &["install", "--resume", "--state-dir", s]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Install complete"),
        "{}",
        describe(&out)
    );
}

#[test]
fn sigkill_while_waiting_for_the_install_then_resume_keeps_the_secrets() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("ks");
    let s = state.to_str().unwrap();
    let args = [
        "install",
        "--cluster-name",
        "ks",
        "--nodes",
        "2",
        "--state-dir",
        s,
        STOP,
        "--output",
        "json",
        "--yes",
    ];
    let seen = kill_when(user.cto(Some(&lab)), &args, |e| {
        e["event"] == "step_started" && e["step"] == "WaitingCPInstall"
    });
    assert!(
        seen.iter().any(|e| e["step"] == "WaitingCPInstall"),
        "{seen:?}"
    );
    let secrets = read(&state.join("secrets.yaml"));

    let out = run(
        user.cto(Some(&lab)),
        &["install", "--resume", "--state-dir", s, STOP, "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        read(&state.join("secrets.yaml")),
        secrets,
        "secrets are never regenerated"
    );
    assert_eq!(lab.hostnames(), ["ks-cp-1", "ks-worker-1"]);
}

#[test]
fn three_control_planes_form_a_three_member_etcd() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("ha");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "ha",
            "--control-planes",
            "3",
            "--nodes",
            "5",
            "--state-dir",
            s,
            STOP,
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let cp: Value = serde_json::from_slice(&read(&state.join("checkpoint.json"))).unwrap();
    let first_ip = cp["servers"][0]["primary_ipv4"]
        .as_str()
        .unwrap()
        .to_owned();
    let talosconfig = metal::talos::talosconfig::Talosconfig::from_yaml(
        &String::from_utf8(read(&state.join("talosconfig"))).unwrap(),
    )
    .unwrap();
    let members = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let addr = format!("{first_ip}:50000").parse().unwrap();
            let mut client = metal::talos::client::TalosClient::connect(
                addr,
                &talosconfig,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
            client.etcd_member_list().await.unwrap()
        });
    assert_eq!(members.len(), 3, "{members:?}");
}

#[test]
fn a_malformed_config_patch_is_refused_before_anything_is_ordered() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let patch = user.home.path().join("bad-patch.yaml");
    std::fs::write(&patch, "machine:\n  network:\n    hostname: [unclosed\n").unwrap();
    let state = user.state_dir("p");
    let arg = format!("@{}", patch.display());
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "p",
            "--state-dir",
            state.to_str().unwrap(),
            "--config-patch",
            &arg,
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config-patch"), "{err}");
    assert!(
        err.contains("line"),
        "the YAML error's line is named: {err}"
    );
    assert!(
        err.contains("column"),
        "the YAML error's column is named: {err}"
    );
    assert!(lab.hostnames().is_empty());
}
