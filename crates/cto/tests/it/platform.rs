//! Phases 3 and 4 end to end: Cilium, the bootstrap resources, local-path-provisioner and Argo
//! CD installed by Helm Jobs, the app-of-apps applied and every Application synced — against
//! the lab, checked with the real kubectl; every step run twice changes nothing; a degraded
//! Application fails the sync by name and `--resume` completes once it recovers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use installer::Step;
use installer::checkpoint::CheckpointStore;
use serde_json::{Value, json};

use crate::harness::{KEY, LabProcess, User, cto_bin, describe, files_under, run};
use crate::kubectl::{items, kubectl_json, wait_for_kube_api};

const STOP: &str = "--stop-after=waiting-git-ops-sync";
/// A token distinctive enough to find if it leaked into a file.
const TOKEN: &str = "gitops-token-5b1e77c0d9";

const PLATFORM_STEPS: [Step; 7] = [
    Step::DeployingCilium,
    Step::DeployingBootstrapResources,
    Step::DeployingLocalPathProvisioner,
    Step::DeployingArgoCD,
    Step::WaitingArgoCDReady,
    Step::ApplyingAppOfApps,
    Step::WaitingGitOpsSync,
];

fn assert_nodes_ready(kubeconfig: &Path, count: usize) {
    let nodes = items(&kubectl_json(kubeconfig, &["get", "nodes"]));
    assert_eq!(nodes.len(), count);
    for node in &nodes {
        let ready = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True", "Ready once Cilium runs: {node}");
    }
}

fn assert_applications_healthy(kubeconfig: &Path) -> Vec<String> {
    let apps = items(&kubectl_json(
        kubeconfig,
        &["get", "applications.argoproj.io", "-n", "argocd"],
    ));
    let mut names = Vec::new();
    for app in &apps {
        let name = app["metadata"]["name"].as_str().unwrap().to_owned();
        assert_eq!(app["status"]["sync"]["status"], "Synced", "{name}: {app}");
        assert_eq!(
            app["status"]["health"]["status"], "Healthy",
            "{name}: {app}"
        );
        names.push(name);
    }
    names.sort();
    names
}

/// What the installer owns, with the versions that would change if a step rewrote it: the
/// resourceVersion of every object labelled `app.kubernetes.io/managed-by=cto`, and of the root
/// Application its generation (Argo CD keeps writing its status).
fn snapshot(kubeconfig: &Path) -> Vec<(String, String)> {
    let selector = "app.kubernetes.io/managed-by=cto";
    let mut out = Vec::new();
    for (resource, namespace) in [
        ("namespaces", None),
        ("clusterrolebindings", None),
        ("serviceaccounts", Some("kube-system")),
        ("configmaps", Some("kube-system")),
        ("jobs", Some("kube-system")),
        ("secrets", Some("argocd")),
        ("appprojects.argoproj.io", Some("argocd")),
        ("applications.argoproj.io", Some("argocd")),
    ] {
        let mut args = vec!["get", resource, "-l", selector];
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        for item in items(&kubectl_json(kubeconfig, &args)) {
            let name = item["metadata"]["name"].as_str().unwrap();
            let version = if resource.starts_with("applications") {
                format!("generation {}", item["metadata"]["generation"])
            } else {
                format!(
                    "resourceVersion {}",
                    item["metadata"]["resourceVersion"].as_str().unwrap()
                )
            };
            out.push((format!("{resource}/{name}"), version));
        }
    }
    out.sort();
    out
}

fn forget(state: &Path, steps: &[Step]) {
    let mut store = CheckpointStore::resume(state).unwrap();
    store
        .update(|cp| cp.completed.retain(|s| !steps.contains(s)))
        .unwrap();
}

#[test]
fn the_lab_reaches_gitops_sync_and_every_platform_step_runs_twice_without_changes() {
    let user = User::new();
    let state = user.state_dir("c");
    let s = state.to_str().unwrap();
    let kubeconfig = state.join("kubeconfig");
    let mut cto = user.cto(None);
    cto.env("CTO_GITOPS_TOKEN", TOKEN);
    let out = run(
        cto,
        &[
            "install",
            "--lab",
            "--cluster-name",
            "c",
            "--nodes",
            "3",
            "--state-dir",
            s,
            STOP,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // The token went to the cluster, never to a file of the state directory or the output.
    for file in files_under(&state) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(TOKEN),
            "the token leaked into {}",
            file.display()
        );
    }
    assert!(!describe(&out).contains(TOKEN));

    let before = {
        let _lab = LabProcess::reopen(&state.join("lab"));
        wait_for_kube_api(&kubeconfig);
        assert_nodes_ready(&kubeconfig, 3);
        let apps = assert_applications_healthy(&kubeconfig);
        for expected in [
            "cto-platform",
            "platform-storage",
            "openebs",
            "cert-manager",
        ] {
            assert!(apps.iter().any(|a| a == expected), "{expected} in {apps:?}");
        }
        let secret = kubectl_json(
            &kubeconfig,
            &["get", "secret", "cto-gitops-repository", "-n", "argocd"],
        );
        assert_eq!(
            secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        let classes = items(&kubectl_json(&kubeconfig, &["get", "storageclasses"]));
        assert!(
            classes
                .iter()
                .any(|c| c["metadata"]["name"] == "local-path"),
            "{classes:?}"
        );
        snapshot(&kubeconfig)
    };
    assert!(
        before
            .iter()
            .any(|(k, _)| k.starts_with("jobs/helm-install-cilium-")),
        "{before:?}"
    );

    // The token is never stored: re-running step 14 without it says what to do.
    forget(&state, &[Step::DeployingBootstrapResources]);
    let out = run(
        user.cto(None),
        &["install", "--resume", "--state-dir", s, STOP],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CTO_GITOPS_TOKEN"),
        "{}",
        describe(&out)
    );

    // Every platform step a second time (with the token): nothing changes.
    forget(&state, &PLATFORM_STEPS);
    let mut cto = user.cto(None);
    cto.env("CTO_GITOPS_TOKEN", TOKEN);
    let out = run(cto, &["install", "--resume", "--state-dir", s, STOP]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let _lab = LabProcess::reopen(&state.join("lab"));
    wait_for_kube_api(&kubeconfig);
    let after = snapshot(&kubeconfig);
    assert_eq!(before, after, "running steps 13-19 again changed objects");
}

/// A `cto lab serve` on a fixed port over a world directory the test owns, so the lab can be
/// restarted with another configuration at the same URL.
pub(crate) struct Lab {
    child: Child,
    url: String,
}

impl Lab {
    pub(crate) fn serve(dir: &Path, port: u16, config: Value) -> Lab {
        let config_path = dir.join(format!("lab-{}.json", std::process::id()));
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut child = Command::new(cto_bin())
            .args(["lab", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state")
            .arg(dir.join("world"))
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("lab printed nothing").unwrap();
        let url = first.strip_prefix("LATITUDE_API_URL=").unwrap().to_owned();
        std::thread::spawn(move || for _ in lines {});
        Lab { child, url }
    }

    pub(crate) fn cto(&self, user: &User) -> Command {
        let mut cmd = user.cto(None);
        cmd.env("LATITUDE_API_KEY", KEY)
            .env("LATITUDE_PROJECT_ID", "proj_lab")
            .env("LATITUDE_API_URL", &self.url);
        cmd
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_degraded_application_fails_the_sync_by_name_and_resume_completes_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let user = User::new();
    let state: PathBuf = user.state_dir("d");
    let s = state.to_str().unwrap();
    let args = [
        "install",
        "--cluster-name",
        "d",
        "--nodes",
        "2",
        "--yes",
        "--sync-timeout",
        "1",
        "--state-dir",
        s,
        STOP,
    ];
    {
        let lab = Lab::serve(
            dir.path(),
            port,
            json!({"time_scale": 0.002, "argocd_degraded": ["cert-manager"]}),
        );
        let started = Instant::now();
        let out = run(lab.cto(&user), &args);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("WaitingGitOpsSync"), "{err}");
        assert!(
            err.contains("cert-manager ("),
            "names the Application: {err}"
        );
        assert!(err.contains("Degraded"), "with its health: {err}");
        assert!(err.contains("--resume"), "{err}");
        assert!(
            started.elapsed() >= Duration::from_secs(60),
            "waited --sync-timeout"
        );
    }
    let lab = Lab::serve(dir.path(), port, json!({"time_scale": 0.002}));
    let out = run(
        lab.cto(&user),
        &["install", "--resume", "--state-dir", s, STOP],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let kubeconfig = state.join("kubeconfig");
    wait_for_kube_api(&kubeconfig);
    assert_applications_healthy(&kubeconfig);
}

/// Every one of the 22 steps run a second time, in a row, after a complete install: no server
/// ordered, the secrets untouched, no object the installer owns rewritten.
#[test]
fn every_step_of_a_complete_install_runs_twice_without_changes() {
    let user = User::new();
    let state = user.state_dir("tw");
    let s = state.to_str().unwrap();
    let kubeconfig = state.join("kubeconfig");
    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "tw",
            "--nodes",
            "2",
            "--state-dir",
            s,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let checkpoint = |state: &Path| CheckpointStore::read(state).unwrap();
    let ids = |cp: &installer::checkpoint::Checkpoint| -> Vec<Option<String>> {
        cp.servers.iter().map(|s| s.id.clone()).collect()
    };
    let first = checkpoint(&state);
    assert!(first.next_step().is_none(), "all 22 steps done");
    let secrets = std::fs::read(state.join("secrets.yaml")).unwrap();
    let before = {
        let _lab = LabProcess::reopen(&state.join("lab"));
        wait_for_kube_api(&kubeconfig);
        snapshot(&kubeconfig)
    };

    forget(&state, &Step::ALL);
    let out = run(user.cto(None), &["install", "--resume", "--state-dir", s]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let second = checkpoint(&state);
    assert!(second.next_step().is_none(), "all 22 steps done again");
    assert_eq!(ids(&second), ids(&first), "no server ordered or replaced");
    assert_eq!(std::fs::read(state.join("secrets.yaml")).unwrap(), secrets);
    let world: Value =
        serde_json::from_slice(&std::fs::read(state.join("lab").join("world.json")).unwrap())
            .unwrap();
    let live = world["servers"]
        .as_object()
        .map(|m| m.len())
        .or_else(|| world["servers"].as_array().map(Vec::len));
    assert_eq!(
        live,
        Some(2),
        "exactly the cluster's servers exist: {}",
        world["servers"]
    );
    let _lab = LabProcess::reopen(&state.join("lab"));
    wait_for_kube_api(&kubeconfig);
    assert_eq!(
        snapshot(&kubeconfig),
        before,
        "running all 22 steps again changed objects"
    );
}
