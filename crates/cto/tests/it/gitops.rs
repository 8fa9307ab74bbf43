//! The GitOps repository as Argo CD reads it: one repository setting reaching every category
//! Application, and AppProjects enforced by the lab's Argo CD with Argo CD v3.2's messages —
//! against a copy of this release's `gitops/` tree that the lab serves for another URL.

use std::path::Path;

use serde_json::json;

use crate::harness::{User, describe, run};
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
        json!({"time_scale": 0.002, "git_repos": {REPO: root}}),
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

/// The repository (served by `git http-backend`) with `Namespace` removed from the standard
/// profile's AppProject: the lab's Argo CD, which clones it, refuses the sync with Argo CD's
/// message, the install exits 1 naming the Application, and `gitops-check` flags the same
/// tree (xtask `create_namespace_needs_namespace_in_the_project`).
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
    let server = crate::git_http::GitServer::start(None);
    let url = server.repository(
        "platform",
        &crate::git_http::files_of(&root.join("gitops"), "gitops"),
    );
    let lab = Lab::serve(dir.path(), free_port(), json!({"time_scale": 0.002}));
    let user = User::new();
    let state = user.state_dir("n");
    let started = std::time::Instant::now();
    let out = run(
        lab.cto(&user),
        &[
            "install",
            "--cluster-name",
            "n",
            "--nodes",
            "2",
            "--yes",
            "--sync-timeout",
            "10",
            "--gitops-repo",
            &url,
            "--state-dir",
            state.to_str().unwrap(),
            STOP,
        ],
    );
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

/// The GitOps preflight of step 1 against repositories served by `git http-backend`.
mod preflight {
    use serde_json::json;

    use crate::git_http::{GitServer, files_of};
    use crate::harness::{LabProcess, User, describe, run};
    use crate::kubectl::{items, kubectl_json, wait_for_kube_api};

    fn tree() -> Vec<(String, Vec<u8>)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gitops");
        files_of(&src, "gitops")
    }

    #[test]
    fn a_repository_without_the_tree_stops_the_install_at_step_1_naming_the_path() {
        let server = GitServer::start(None);
        let url = server.repository("empty", &[("README.md".into(), b"nothing here\n".to_vec())]);
        let lab = LabProcess::start(json!({}));
        let user = User::new();
        let state = user.state_dir("p");
        let s = state.to_str().unwrap();
        let base = [
            "install",
            "--cluster-name",
            "p",
            "--nodes",
            "3",
            "--yes",
            "--gitops-repo",
            &url,
            "--state-dir",
            s,
        ];
        let out = run(user.cto(Some(&lab)), &base);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("the GitOps repository {url} at main (commit ")),
            "{err}"
        );
        assert!(
            err.contains("has no gitops/apps/standard"),
            "names the path: {err}"
        );
        assert!(lab.hostnames().is_empty(), "something was ordered");
        // --dry-run shows the same.
        let dry = run(user.cto(Some(&lab)), &[&base[..], &["--dry-run"]].concat());
        assert_eq!(dry.status.code(), Some(3), "{}", describe(&dry));
        assert!(String::from_utf8_lossy(&dry.stderr).contains("has no gitops/apps/standard"));
        // A revision that does not exist, and a repository that does not exist.
        let out = run(
            user.cto(Some(&lab)),
            &[&base[..], &["--dry-run", "--gitops-revision", "v9.9.9"]].concat(),
        );
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("has no revision v9.9.9"),
            "{}",
            describe(&out)
        );
        let missing = format!("{}/missing.git", server.base);
        let out = run(
            user.cto(Some(&lab)),
            &[
                "install",
                "--cluster-name",
                "p",
                "--dry-run",
                "--gitops-repo",
                &missing,
            ],
        );
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("cannot read the GitOps repository {missing}")),
            "{}",
            describe(&out)
        );
        assert!(lab.hostnames().is_empty(), "something was ordered");
    }

    /// A private repository answers 401 without credentials: the preflight says a token is
    /// needed. Over plain HTTP gitoxide refuses to send the token at all ("Will not send
    /// credentials in clear text over http"), so a token reaches only HTTPS repositories; the
    /// loopback test server cannot show the HTTPS case.
    #[test]
    fn a_private_repository_needs_the_token_and_never_gets_it_in_clear_text() {
        let server = GitServer::start(Some("tok-3c9e1d"));
        let url = server.repository("private", &tree());
        let lab = LabProcess::start(json!({}));
        let user = User::new();
        let args = [
            "install",
            "--cluster-name",
            "q",
            "--dry-run",
            "--gitops-repo",
            &url,
        ];
        let out = run(user.cto(Some(&lab)), &args);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot read the GitOps repository {url}")),
            "{err}"
        );
        assert!(err.contains("--gitops-token"), "{err}");
        let mut cmd = user.cto(Some(&lab));
        cmd.env("CTO_GITOPS_TOKEN", "tok-3c9e1d");
        let out = run(cmd, &args);
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Will not send credentials in clear text over http"),
            "{err}"
        );
        assert!(!err.contains("tok-3c9e1d"), "the token stays secret: {err}");
        assert!(lab.hostnames().is_empty(), "something was ordered");
    }

    #[test]
    fn a_repository_holding_the_tree_passes_and_every_category_application_names_it() {
        let server = GitServer::start(None);
        let url = server.repository("platform", &tree());
        // The lab's Argo CD clones it too (gitoxide over the same smart HTTP).
        let lab = LabProcess::start(json!({}));
        let user = User::new();
        let state = user.state_dir("r");
        let out = run(
            user.cto(Some(&lab)),
            &[
                "install",
                "--cluster-name",
                "r",
                "--nodes",
                "3",
                "--yes",
                "--gitops-repo",
                &url,
                "--state-dir",
                state.to_str().unwrap(),
                super::STOP,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains(&format!("GitOps source {url} at main (commit ")),
            "{all}"
        );
        let kubeconfig = state.join("kubeconfig");
        wait_for_kube_api(&kubeconfig);
        let apps = items(&kubectl_json(
            &kubeconfig,
            &["get", "applications.argoproj.io", "-n", "argocd"],
        ));
        let tree_apps: Vec<_> = apps
            .iter()
            .filter(|a| a["spec"]["source"]["chart"].is_null())
            .filter(|a| {
                a["spec"]["source"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("gitops/"))
            })
            .collect();
        assert!(tree_apps.len() >= 5, "{apps:?}");
        let head = crate::git_http::git(&server.root.join("platform.git"), &["rev-parse", "main"]);
        for app in tree_apps {
            assert_eq!(app["spec"]["source"]["repoURL"], url.as_str(), "{app}");
            // Synced at the repository's commit, as Argo CD reports it.
            assert_eq!(app["status"]["sync"]["revision"], head.as_str(), "{app}");
            assert_eq!(app["status"]["health"]["status"], "Healthy", "{app}");
        }
    }
}

/// Applications whose path or revision the repository does not have: the lab's Argo CD
/// (which clones the repository) reports Argo CD's `ComparisonError`s, and the install names
/// them when `--sync-timeout` passes.
#[test]
fn a_missing_path_or_revision_is_a_comparison_error_with_argo_cds_message() {
    let server = crate::git_http::GitServer::start(None);
    let base = format!("{}/platform.git", server.base);
    let dir = tempfile::tempdir().unwrap();
    let root = repository(dir.path(), |gitops| {
        // The repository itself is an allowed source of the standard profile's components.
        let project = gitops.join("apps/standard/project.yaml");
        let text = std::fs::read_to_string(&project).unwrap();
        std::fs::write(
            &project,
            text.replacen(
                "  sourceRepos:\n",
                &format!("  sourceRepos:\n  - {base}\n"),
                1,
            ),
        )
        .unwrap();
        for (name, revision, path) in [
            ("no-path", "main", "gitops/nope"),
            ("no-revision", "v0.0.0-missing", "gitops/platform/core"),
        ] {
            std::fs::write(
                gitops.join(format!("platform/core/{name}.yaml")),
                format!(
                    "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\n  annotations:\n    argocd.argoproj.io/sync-wave: '1'\nspec:\n  project: platform\n  source:\n    repoURL: {base}\n    targetRevision: {revision}\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: cert-manager\n"
                ),
            )
            .unwrap();
        }
    });
    let url = server.repository(
        "platform",
        &crate::git_http::files_of(&root.join("gitops"), "gitops"),
    );
    assert_eq!(url, base);
    let lab = Lab::serve(dir.path(), free_port(), json!({"time_scale": 0.002}));
    let user = User::new();
    let state = user.state_dir("c");
    let out = run(
        lab.cto(&user),
        &[
            "install",
            "--cluster-name",
            "c",
            "--nodes",
            "2",
            "--yes",
            "--sync-timeout",
            "1",
            "--gitops-repo",
            &url,
            "--state-dir",
            state.to_str().unwrap(),
            STOP,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-path (Unknown") && err.contains("gitops/nope: app path does not exist"),
        "{err}"
    );
    assert!(
        err.contains("no-revision (Unknown")
            && err.contains("unable to resolve 'v0.0.0-missing' to a commit SHA"),
        "{err}"
    );
    assert!(
        err.contains("ComparisonError: Failed to load target state"),
        "{err}"
    );
}
