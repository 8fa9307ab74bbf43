//! Installs through step 5, kills and resumes, Ctrl-C, the lock, and the in-process lab.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{KEY, LabProcess, User, describe, events, files_under, kill_when, run};

const STOP: &str = "--stop-after=waiting-talos-maintenance";

fn install_args<'a>(state: &'a str, cluster: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--cluster-name",
        cluster,
        "--nodes",
        "3",
        "--state-dir",
        state,
        STOP,
        "--output",
        "json",
        "--yes",
    ]
}

fn checkpoint(state: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("checkpoint.json")).unwrap()).unwrap()
}

#[test]
fn install_reaches_maintenance_with_exactly_three_servers_and_no_key_on_disk() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("a");
    let out = run(
        user.cto(Some(&lab)),
        &install_args(state.to_str().unwrap(), "a"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    assert_eq!(lab.hostnames(), ["a-cp-1", "a-worker-1", "a-worker-2"]);

    let evs = events(&out);
    let started: Vec<&str> = evs
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        started,
        [
            "ValidatingPrerequisites",
            "CreatingServers",
            "WaitingServersReady",
            "BootingTalos",
            "WaitingTalosMaintenance"
        ]
    );
    let last = evs.last().unwrap();
    assert_eq!(last["event"], "finished", "{last}");
    assert_eq!(last["outcome"], "stopped_after");

    let cp = checkpoint(&state);
    assert_eq!(cp["completed"].as_array().unwrap().len(), 5);
    for server in cp["servers"].as_array().unwrap() {
        assert!(
            server["id"].as_str().unwrap().starts_with("sv_"),
            "{server}"
        );
        assert!(
            server["primary_ipv4"]
                .as_str()
                .unwrap()
                .starts_with("127.0."),
            "{server}"
        );
        assert!(
            !server["maintenance_spki"].as_str().unwrap().is_empty(),
            "{server}"
        );
        assert_eq!(server["boot"]["state"], "ipxe");
    }
    assert!(
        cp["resolved"]["ipxe_url"]
            .as_str()
            .unwrap()
            .ends_with("/metal-amd64")
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("checkpoint.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for file in files_under(&state) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(KEY),
            "the API key leaked into {}",
            file.display()
        );
    }
    assert!(state.join("cto.log").exists());

    // Running it again (resume of a finished range) orders nothing more.
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            state.to_str().unwrap(),
            STOP,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(lab.hostnames(), ["a-cp-1", "a-worker-1", "a-worker-2"]);
}

fn kill_and_resume(kill_at: impl Fn(&Value) -> bool, cluster: &str) {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir(cluster);
    let s = state.to_str().unwrap();
    let seen = kill_when(user.cto(Some(&lab)), &install_args(s, cluster), kill_at);
    assert!(!seen.is_empty());
    // The checkpoint survived the SIGKILL in a parseable state.
    let cp = checkpoint(&state);
    assert!(cp["version"].is_u64());

    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            STOP,
            "--output",
            "json",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let names = lab.hostnames();
    assert_eq!(
        names,
        [
            format!("{cluster}-cp-1"),
            format!("{cluster}-worker-1"),
            format!("{cluster}-worker-2")
        ],
        "servers after resume"
    );
}

#[test]
fn sigkill_right_after_the_first_order_then_resume_orders_nothing_twice() {
    kill_and_resume(|e| e["event"] == "server_ordered", "k1");
}

#[test]
fn sigkill_when_ordering_starts_then_resume_ends_with_three_servers() {
    kill_and_resume(
        |e| e["event"] == "step_started" && e["step"] == "CreatingServers",
        "k2",
    );
}

#[test]
fn sigkill_while_waiting_for_servers_then_resume_ends_with_three_servers() {
    kill_and_resume(
        |e| e["event"] == "node_status" && e["step"] == "WaitingServersReady",
        "k3",
    );
}

#[test]
fn ctrl_c_saves_the_checkpoint_exits_130_and_prints_the_resume_command() {
    // A slow world, so the install is certainly still waiting when interrupted.
    let lab = LabProcess::start(json!({"time_scale": 1.0}));
    let user = User::new();
    let state = user.state_dir("c");
    let mut child = user
        .cto(Some(&lab))
        .args(install_args(state.to_str().unwrap(), "c"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0,
            "install ended early"
        );
        if line.contains("\"step_started\"") && line.contains("WaitingServersReady") {
            break;
        }
    }

    // While it runs, a second run on the same state directory is refused with exit 4.
    let second = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(second.status.code(), Some(4), "{}", describe(&second));
    assert!(String::from_utf8_lossy(&second.stderr).contains("holds the lock"));

    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let mut stdout_rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut stdout_rest).unwrap();
    assert_eq!(out.status.code(), Some(130), "{stdout_rest}");
    let failed: Value = stdout_rest
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "failed")
        .expect("a failed event");
    assert_eq!(failed["exit_code"], 130);
    assert!(
        failed["next"]
            .as_str()
            .unwrap()
            .contains("cto install --resume --state-dir"),
        "{failed}"
    );
    let cp = checkpoint(&state);
    assert_eq!(cp["interrupted"]["step"], "WaitingServersReady", "{cp}");
    assert_eq!(lab.hostnames(), ["c-cp-1", "c-worker-1", "c-worker-2"]);
}

#[test]
fn resume_with_contradicting_flags_is_refused_with_a_diff() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("r");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "r",
            "--nodes",
            "2",
            "--state-dir",
            s,
            "--stop-after",
            "validating-prerequisites",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--nodes",
            "5",
            "--region",
            "DAL",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes: checkpoint has 2, flags ask for 5"),
        "{err}"
    );
    assert!(err.contains("--region DAL"), "{err}");

    // Repeating a flag with the checkpoint's own value is fine.
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--resume",
            "--state-dir",
            s,
            "--nodes",
            "2",
            "--stop-after",
            "validating-prerequisites",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // A new install over the checkpoint is refused.
    let out = run(
        user.cto(Some(&lab)),
        &["install", "--cluster-name", "r", "--state-dir", s, "--yes"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    assert!(lab.hostnames().is_empty(), "nothing was ordered");
}

#[test]
fn ordering_without_a_terminal_and_without_yes_is_refused() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("y");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "y",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--yes"), "{err}");
    assert!(err.contains("/hour"), "the cost is shown: {err}");
    assert!(lab.hostnames().is_empty());
}

#[test]
fn the_in_process_lab_runs_to_step_5_and_then_to_complete() {
    let user = User::new();
    let state = user.state_dir("lab");
    let s = state.to_str().unwrap();
    let started = Instant::now();
    let out = run(
        user.cto(None),
        &["install", "--lab", "--state-dir", s, STOP],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(state.join("lab").join("world.json").exists());

    // Continuing runs steps 6-22 to Complete, whose summary names what to do next.
    let out = run(user.cto(None), &["install", "--resume", "--state-dir", s]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Install complete"), "{}", describe(&out));
    assert!(stdout.contains("cto destroy"), "{}", describe(&out));
    // Everything cto and its in-process lab wrote (checkpoint, secrets, configs, log, the lab's
    // world, Kubernetes snapshots and journals) is private (issue 13).
    #[cfg(unix)]
    crate::harness::assert_private_tree(&state);

    // And the lab's servers can be released.
    let out = run(user.cto(None), &["destroy", "--state-dir", s, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 server(s) deleted"),
        "{}",
        describe(&out)
    );
}

#[test]
fn status_reports_progress_and_servers_as_json() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("st");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "st",
            "--nodes",
            "1",
            "--state-dir",
            s,
            "--stop-after",
            "creating-servers",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = run(
        user.cto(None),
        &["status", "--state-dir", s, "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["completed_steps"], 2);
    assert_eq!(status["next_step"], "WaitingServersReady");
    assert_eq!(status["servers"][0]["hostname"], "st-cp-1");
    assert!(
        status["servers"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("sv_")
    );
}
