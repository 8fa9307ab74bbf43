//! `cto destroy`: by checkpoint, again (idempotent), and by the cluster's tag without a
//! checkpoint.

use serde_json::json;

use crate::harness::{LabProcess, User, describe, run};

#[test]
fn destroy_by_checkpoint_then_again_then_by_cluster_tag_without_checkpoint() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("a");
    let s = state.to_str().unwrap();
    let install = |state: &str| {
        run(
            user.cto(Some(&lab)),
            &[
                "install",
                "--cluster-name",
                "a",
                "--nodes",
                "3",
                "--state-dir",
                state,
                "--stop-after",
                "creating-servers",
                "--yes",
            ],
        )
    };
    let out = install(s);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(lab.hostnames().len(), 3);

    // Without a terminal and without --yes, destroy refuses and deletes nothing.
    let out = run(user.cto(Some(&lab)), &["destroy", "--state-dir", s]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(lab.hostnames().len(), 3);

    let out = run(
        user.cto(Some(&lab)),
        &["destroy", "--state-dir", s, "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(lab.hostnames().is_empty());
    assert!(
        !state.join("checkpoint.json").exists(),
        "checkpoint moved aside"
    );

    let out = run(
        user.cto(Some(&lab)),
        &["destroy", "--state-dir", s, "--cluster-name", "a", "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Nothing to destroy"));

    // A second install; its checkpoint is lost; destroy still finds the servers by the
    // cluster's tag, and leaves another cluster's servers alone.
    let other = user.state_dir("ab");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "ab",
            "--nodes",
            "1",
            "--state-dir",
            other.to_str().unwrap(),
            "--stop-after",
            "creating-servers",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let state2 = user.state_dir("a2");
    let out = install(state2.to_str().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    std::fs::remove_file(state2.join("checkpoint.json")).unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &["destroy", "--cluster-name", "a", "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(lab.hostnames(), ["ab-cp-1"]);
}
