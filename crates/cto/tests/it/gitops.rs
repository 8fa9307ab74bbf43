//! The GitOps repository as Argo CD reads it: one repository setting reaching every category
//! Application, and AppProjects enforced by the lab's Argo CD with Argo CD v3.2's messages —
//! against a copy of this release's `gitops/` tree that the lab serves for another URL.

use std::path::Path;

use serde_json::json;

use crate::harness::{User, describe, ip_block, run};
use crate::kubectl::{items, kubectl_json, wait_for_kube_api};
use crate::platform::{Lab, free_port};

const STOP: &str = "--stop-after=waiting-git-ops-sync";
/// A repository URL that is not this project's: the lab serves the copy for it.
const REPO: &str = "https://git.example.test/acme/platform.git";

/// A repository root holding a copy of this release's `gitops/`, with `edit` applied.
fn repository(dir: &Path, edit: impl Fn(&Path)) -> std::path::PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gitops");
    let root = dir.join("repository");
    copy(&src, &root.join("gitops"));
    edit(&root.join("gitops"));
    root
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn install(lab: &Lab, user: &User, state: &Path, name: &str) -> std::process::Output {
    run(
        lab.cto(user),
        &[
            "install",
            "--cluster-name",
            name,
            "--nodes",
            "2",
            "--yes",
            "--sync-timeout",
            "10",
            "--gitops-repo",
            REPO,
            "--state-dir",
            state.to_str().unwrap(),
            STOP,
        ],
    )
}

#[test]
fn the_repository_setting_reaches_every_category_application() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path(), |_| {});
    let lab = Lab::serve(
        dir.path(),
        free_port(),
        json!({"time_scale": 0.002, "ip_block": ip_block(), "git_repos": {REPO: root}}),
    );
    let user = User::new();
    let state = user.state_dir("g");
    let out = install(&lab, &user, &state, "g");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let kubeconfig = state.join("kubeconfig");
    wait_for_kube_api(&kubeconfig);
    let apps = items(&kubectl_json(
        &kubeconfig,
        &["get", "applications.argoproj.io", "-n", "argocd"],
    ));
    // Every Application that points into the tree names the one repository given, at the one
    // revision; the others point at their upstream charts and repositories.
    let tree: Vec<_> = apps
        .iter()
        .filter(|a| {
            a["spec"]["source"]["path"].is_string() && a["spec"]["source"]["chart"].is_null()
        })
        .filter(|a| {
            a["spec"]["source"]["path"]
                .as_str()
                .unwrap()
                .starts_with("gitops/")
        })
        .collect();
    assert!(tree.len() >= 5, "the root and its categories: {apps:?}");
    for app in &tree {
        assert_eq!(app["spec"]["source"]["repoURL"], REPO, "{app}");
        assert_eq!(app["spec"]["source"]["targetRevision"], "main", "{app}");
        assert_eq!(app["status"]["sync"]["status"], "Synced", "{app}");
        assert_eq!(app["status"]["health"]["status"], "Healthy", "{app}");
    }
    for app in &apps {
        let repo = app["spec"]["source"]["repoURL"]
            .as_str()
            .unwrap_or_default();
        assert!(
            repo == REPO || !repo.ends_with("/cto"),
            "no Application names this project's repository: {app}"
        );
    }
}

#[test]
fn a_project_without_namespace_fails_the_sync_with_argo_cds_message() {
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path(), |gitops| {
        let project = gitops.join("apps/standard/project.yaml");
        let text = std::fs::read_to_string(&project).unwrap();
        let without = text.replace("  - group: ''\n    kind: Namespace\n", "");
        assert_ne!(text, without, "the project permits Namespace");
        std::fs::write(&project, without).unwrap();
    });
    let lab = Lab::serve(
        dir.path(),
        free_port(),
        json!({"time_scale": 0.002, "ip_block": ip_block(), "git_repos": {REPO: root}}),
    );
    let user = User::new();
    let state = user.state_dir("n");
    let started = std::time::Instant::now();
    let out = install(&lab, &user, &state, "n");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WaitingGitOpsSync"), "{err}");
    assert!(
        err.contains("resource :Namespace is not permitted in project platform"),
        "Argo CD's message: {err}"
    );
    // Named: the first Application whose CreateNamespace=true creates a namespace (those of
    // later waves wait for it).
    assert!(err.contains("cert-manager (OutOfSync"), "names it: {err}");
    assert!(err.contains("gitops-check"), "says what checks it: {err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(600),
        "stops without waiting for --sync-timeout"
    );
}
