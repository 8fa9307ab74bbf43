//! Trust on first use in Talos maintenance mode (issue 13): the key each node presented at step
//! 5 is recorded, and the machine config (holding every CA key of the cluster) is sent only to
//! that key. The lab's `talos.rekey=HOSTNAME` fault makes a node present a new maintenance key
//! right after the step-5 probe.

use serde_json::{Value, json};

use crate::harness::{LabProcess, User, describe, run};

const STOP: &str = "--stop-after=waiting-cp-install";

/// The base64 SPKI SHA-256 fingerprints quoted in `text`, in order.
fn fingerprints(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '`'))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| {
            w.len() == 44
                && w.ends_with('=')
                && w[..43]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        })
        .map(str::to_owned)
        .collect()
}

fn checkpoint(state: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(state.join("checkpoint.json")).unwrap()).unwrap()
}

fn server<'a>(cp: &'a Value, hostname: &str) -> &'a Value {
    cp["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == hostname)
        .unwrap_or_else(|| panic!("no {hostname} in {cp}"))
}

/// Whether the lab saw a machine config applied to `hostname`.
fn config_applied(lab: &LabProcess, hostname: &str) -> bool {
    let body = lab.get("/_lab/conditions");
    body["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == format!("server/{hostname}/config_applied"))
}

#[test]
fn a_changed_maintenance_key_stops_the_install_and_the_resume_sends_nothing() {
    let lab = LabProcess::start(json!({"faults": "talos.rekey=rk-cp-1"}));
    let user = User::new();
    let state = user.state_dir("rk");
    let s = state.to_str().unwrap();
    let args = [
        "install",
        "--cluster-name",
        "rk",
        "--nodes",
        "2",
        "--state-dir",
        s,
        STOP,
        "--yes",
    ];
    let out = run(user.cto(Some(&lab)), &args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rk-cp-1"),
        "names the node: {}",
        describe(&out)
    );
    assert!(
        stderr.contains("maintenance-mode key changed"),
        "{}",
        describe(&out)
    );
    let cp = checkpoint(&state);
    let pinned = server(&cp, "rk-cp-1")["maintenance_spki"]
        .as_str()
        .expect("step 5 recorded the key")
        .to_owned();
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("an error line: {}", describe(&out)));
    let quoted = fingerprints(error);
    assert_eq!(quoted.first(), Some(&pinned), "the old key first: {error}");
    let presented = quoted[1].clone();
    assert_ne!(presented, pinned, "{error}");
    assert!(
        error.contains(&format!("--trust-maintenance-key rk-cp-1={presented}")),
        "what to do: {error}"
    );
    assert!(!config_applied(&lab, "rk-cp-1"), "no config was sent");
    assert_ne!(server(&cp, "rk-cp-1")["config"]["state"], "applied", "{cp}");
    crate::harness::assert_private_tree(&state);
    crate::harness::assert_private_tree(&lab.world);

    // Resuming does not send it either: the key is still not the one first seen.
    let out = run(
        user.cto(Some(&lab)),
        &["install", "--resume", "--state-dir", s, STOP, "--yes"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rk-cp-1") && stderr.contains("maintenance-mode key changed"),
        "{}",
        describe(&out)
    );
    assert!(!config_applied(&lab, "rk-cp-1"), "no config was sent");
    assert_eq!(
        server(&checkpoint(&state), "rk-cp-1")["maintenance_spki"],
        pinned.as_str(),
        "the pin is not replaced silently"
    );

    // A malformed trust is refused; trusting the key the error quoted (after comparing it with
    // the node's console) continues the install.
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--trust-maintenance-key",
            "rk-cp-1=nope",
            STOP,
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let trust = format!("rk-cp-1={presented}");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--trust-maintenance-key",
            &trust,
            STOP,
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(config_applied(&lab, "rk-cp-1"));
    assert_eq!(
        server(&checkpoint(&state), "rk-cp-1")["maintenance_spki"],
        presented.as_str()
    );
}
