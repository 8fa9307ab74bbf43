//! Issue 7: the workers' configs overlap the control-plane bootstrap. Once ApplyingCPConfig is
//! done, the orchestrator applies the workers' configs in the background (recording nothing in
//! the checkpoint), so workers install Talos while the control plane installs and bootstraps;
//! ApplyingWorkerConfig then finds them configured. Never when the run stops before step 11.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::harness::{LabProcess, User, describe, events, kill_when, run};

/// When each condition of the lab's world became true (`GET /_lab/conditions`), in lab ms.
fn conditions(lab: &LabProcess) -> HashMap<String, i64> {
    let body = lab.get("/_lab/conditions");
    body["conditions"]
        .as_array()
        .unwrap_or_else(|| panic!("no conditions in {body}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["at_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn checkpoint(state: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(state.join("checkpoint.json")).unwrap()).unwrap()
}

/// The `config.state` of `hostname` in the checkpoint.
fn config_state(cp: &Value, hostname: &str) -> String {
    cp["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == hostname)
        .unwrap_or_else(|| panic!("{hostname} not in {cp}"))["config"]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn install_args<'a>(cluster: &'a str, state: &'a str, stop: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--cluster-name",
        cluster,
        "--nodes",
        "3",
        "--state-dir",
        state,
        stop,
        "--output",
        "json",
        "--yes",
    ]
}

/// One lab for the three scenarios (the test binary has few lab address blocks): each is its own
/// cluster there.
#[test]
fn worker_configs_overlap_the_bootstrap_and_converge_unless_the_run_stops_before_step_11() {
    let lab = LabProcess::start(json!({}));
    worker_configs_are_applied_before_the_control_plane_is_bootstrapped(&lab);
    stopping_before_apply_worker_config_leaves_the_workers_unconfigured(&lab);
    sigkill_after_an_early_worker_apply_then_resume_confirms_the_worker(&lab);
}

fn worker_configs_are_applied_before_the_control_plane_is_bootstrapped(lab: &LabProcess) {
    let user = User::new();
    let state = user.state_dir("ov");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(Some(lab)),
        &install_args("ov", s, "--stop-after=waiting-worker-join"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let when = conditions(lab);
    let bootstrapped = when["cluster/ov/bootstrapped"];
    let cp_applied = when["server/ov-cp-1/config_applied"];
    for worker in ["ov-worker-1", "ov-worker-2"] {
        let applied = when[&format!("server/{worker}/config_applied")];
        assert!(
            applied < bootstrapped,
            "{worker}'s config ({applied}) before etcd's bootstrap ({bootstrapped}): {when:?}"
        );
        assert!(
            applied >= cp_applied,
            "after the control plane's config: {when:?}"
        );
        assert_eq!(config_state(&checkpoint(&state), worker), "applied");
    }

    // The event stream tells the same story: the early applies are reported before
    // Bootstrapping finished, and step 11 then records them without another call.
    let seen = events(&out);
    let position = |pred: &dyn Fn(&Value) -> bool| seen.iter().position(pred);
    let early = position(&|e| e["event"] == "node_status" && e["status"] == "config applied early")
        .unwrap_or_else(|| panic!("no early apply reported: {seen:?}"));
    let bootstrap_done =
        position(&|e| e["event"] == "step_finished" && e["step"] == "Bootstrapping").unwrap();
    assert!(early < bootstrap_done, "{seen:?}");
    assert!(
        seen.iter().any(|e| e["event"] == "node_status"
            && e["step"] == "ApplyingWorkerConfig"
            && e["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("config was applied early"))),
        "{seen:?}"
    );
}

fn stopping_before_apply_worker_config_leaves_the_workers_unconfigured(lab: &LabProcess) {
    let user = User::new();
    let state = user.state_dir("st");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(Some(lab)),
        &install_args("st", s, "--stop-after=waiting-kubernetes"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let when = conditions(lab);
    assert!(when.contains_key("cluster/st/bootstrapped"), "{when:?}");
    for worker in ["st-worker-1", "st-worker-2"] {
        assert!(
            !when.contains_key(&format!("server/{worker}/config_applied")),
            "a run stopping before step 11 never configures {worker}: {when:?}"
        );
        assert_eq!(config_state(&checkpoint(&state), worker), "not_applied");
    }
    assert!(
        !events(&out)
            .iter()
            .any(|e| e["step"] == "ApplyingWorkerConfig"),
        "{}",
        describe(&out)
    );

    // The resume runs step 11 in its place.
    let out = run(
        user.cto(Some(lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--stop-after=waiting-worker-join",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for worker in ["st-worker-1", "st-worker-2"] {
        assert_eq!(config_state(&checkpoint(&state), worker), "applied");
    }
}

fn sigkill_after_an_early_worker_apply_then_resume_confirms_the_worker(lab: &LabProcess) {
    let user = User::new();
    let state = user.state_dir("ek");
    let s = state.to_str().unwrap();
    let seen = kill_when(
        user.cto(Some(lab)),
        &install_args("ek", s, "--stop-after=waiting-worker-join"),
        |e| e["event"] == "node_status" && e["status"] == "config applied early",
    );
    assert!(
        seen.iter().any(|e| e["status"] == "config applied early"),
        "{seen:?}"
    );
    // The early task records nothing: the checkpoint does not know the worker is configured.
    let cp = checkpoint(&state);
    assert!(
        ["ek-worker-1", "ek-worker-2"]
            .iter()
            .any(|w| config_state(&cp, w) == "not_applied"),
        "{cp}"
    );

    let out = run(
        user.cto(Some(lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--stop-after=waiting-worker-join",
            "--output",
            "json",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // The worker configured by the killed run's early task is recognised by the cluster's
    // talosconfig (mutual TLS), not refused as "configured by someone else".
    assert!(
        events(&out).iter().any(|e| e["event"] == "node_status"
            && e["step"] == "ApplyingWorkerConfig"
            && e["status"] == "already runs the cluster's config"),
        "{}",
        describe(&out)
    );
    let cp = checkpoint(&state);
    for worker in ["ek-worker-1", "ek-worker-2"] {
        assert_eq!(config_state(&cp, worker), "applied");
    }
    let servers = cp["servers"].as_array().unwrap();
    assert!(servers.iter().all(|s| s["installed"] == true), "{cp}");
    let ours: Vec<String> = lab
        .hostnames()
        .into_iter()
        .filter(|h| h.starts_with("ek-"))
        .collect();
    assert_eq!(ours, ["ek-cp-1", "ek-worker-1", "ek-worker-2"]);
}

/// `CTO_BASELINE=sequential` (the benchmark's baseline): one node at a time — each server
/// ordered once the previous one deployed, each config applied once the previous node
/// installed — and no early worker configs.
#[test]
fn the_sequential_baseline_works_one_node_at_a_time() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("sq");
    let s = state.to_str().unwrap();
    let mut cmd = user.cto(Some(&lab));
    cmd.env("CTO_BASELINE", "sequential")
        .env("CTO_TIME_SCALE", "0.002");
    let out = run(
        cmd,
        &install_args("sq", s, "--stop-after=waiting-worker-join"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !events(&out)
            .iter()
            .any(|e| e["status"] == "config applied early"),
        "{}",
        describe(&out)
    );

    let when = conditions(&lab);
    let at = |name: String| {
        *when
            .get(&name)
            .unwrap_or_else(|| panic!("{name} in {when:?}"))
    };
    let hosts = ["sq-cp-1", "sq-worker-1", "sq-worker-2"];
    for pair in hosts.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        // Deployed by step 3's measure: Latitude says `on`, or Talos already answers.
        let deployed = at(format!("server/{prev}/status_on"))
            .min(at(format!("server/{prev}/talos_maintenance")));
        assert!(
            at(format!("server/{next}/ordered")) >= deployed,
            "{next} ordered after {prev} deployed: {when:?}"
        );
    }
    assert!(
        at("server/sq-worker-2/config_applied".into()) >= at("server/sq-worker-1/installed".into()),
        "{when:?}"
    );
    assert!(
        at("server/sq-worker-1/config_applied".into()) >= at("cluster/sq/bootstrapped".into()),
        "workers are configured in step 11's place: {when:?}"
    );
    assert_eq!(lab.hostnames(), hosts);
}

#[test]
fn the_baseline_is_refused_with_an_unknown_value_or_a_real_api() {
    // Refused before any request: the lab's address need not answer.
    let user = User::new();
    let lab_url = "http://127.0.0.1:9";
    let state = user.state_dir("bx");
    let s = state.to_str().unwrap();
    let mut cmd = user.cto(None);
    cmd.env("LATITUDE_API_KEY", "k")
        .env("LATITUDE_PROJECT_ID", "proj_lab")
        .env("LATITUDE_API_URL", lab_url)
        .env("CTO_BASELINE", "parallel");
    let out = run(cmd, &install_args("bx", s, "--stop-after=creating-servers"));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        describe(&out).contains("CTO_BASELINE"),
        "{}",
        describe(&out)
    );
    assert!(!state.exists(), "refused before anything was written");

    let mut cmd = user.cto(None);
    cmd.env("LATITUDE_API_KEY", "k")
        .env("LATITUDE_PROJECT_ID", "proj_lab")
        .env("CTO_BASELINE", "sequential")
        .env("LATITUDE_API_URL", "https://api.latitude.sh");
    let out = run(cmd, &install_args("bx", s, "--stop-after=creating-servers"));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        describe(&out).contains("CTO_BASELINE"),
        "{}",
        describe(&out)
    );
    assert!(!state.exists(), "refused before anything was written");
}
