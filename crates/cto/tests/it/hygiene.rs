//! Input hygiene end to end: a token given as a flag reaches the cluster and no file, and a
//! `--kubeconfig-out` that already exists is backed up before it is replaced.

use crate::harness::{User, describe, files_under, run};

/// A token value that appears nowhere else.
const TOKEN: &str = "ghp_flagtoken8d41c07e55";

#[test]
fn the_gitops_token_flag_reaches_no_file_and_an_existing_kubeconfig_out_is_backed_up() {
    let user = User::new();
    let home = user.home.path();
    let state = user.state_dir("hy");
    let s = state.to_str().unwrap();
    let kubeconfig_out = home.join("out").join("kubeconfig");
    std::fs::create_dir_all(kubeconfig_out.parent().unwrap()).unwrap();
    std::fs::write(&kubeconfig_out, "an older kubeconfig\n").unwrap();

    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "hy",
            "--nodes",
            "2",
            "--profile",
            "minimal",
            "--state-dir",
            s,
            "--gitops-token",
            TOKEN,
            "--kubeconfig-out",
            kubeconfig_out.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!describe(&out).contains(TOKEN), "the token was printed");

    // No file anywhere under HOME holds it, as given or base64-encoded as in the Secret: not
    // the state directory (checkpoint, log, generated configs), not the in-process lab's world
    // under it (its etcd keeps Secrets sealed with the cluster's secretbox key, as Talos'
    // kube-apiserver does), not the user's files.
    let encoded = serde_json::to_value(k8s_openapi::ByteString(TOKEN.as_bytes().to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let files = files_under(home);
    assert!(files.iter().any(|f| f.ends_with("cto.log")), "{files:?}");
    assert!(
        files.iter().any(|f| f.starts_with(state.join("lab"))),
        "{files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for needle in [TOKEN, encoded.as_str()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the token ({needle}) is in {}",
                file.display()
            );
        }
    }
    // The log shows that a token was given, not which.
    let log = std::fs::read_to_string(state.join("cto.log")).unwrap();
    assert!(log.contains("--gitops-token"), "{log}");
    assert!(log.contains("[redacted]"), "{log}");

    // The kubeconfig replaced the older file, which was kept beside it.
    let written = std::fs::read_to_string(&kubeconfig_out).unwrap();
    assert!(written.contains("admin@hy"), "{written}");
    let backups: Vec<_> = std::fs::read_dir(kubeconfig_out.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kubeconfig.cto-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        "an older kubeconfig\n"
    );
}
