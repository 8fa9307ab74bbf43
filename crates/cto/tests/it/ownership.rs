//! Ownership: an install touches only servers it can prove are its own (recorded id, its tag,
//! or the answer to its own recorded order), stops before ordering a hostname someone else's
//! server already has, settles lost order answers by listing, reports duplicates, and `cto
//! destroy` deletes exactly what is the install's.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{
    LabProcess, User, describe, events, hand_make, run, server_state, wait_status,
};

fn checkpoint(state: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("checkpoint.json")).unwrap()).unwrap()
}

fn install<'a>(cluster: &'a str, nodes: &'a str, state: &'a str) -> Vec<&'a str> {
    vec![
        "install",
        "--cluster-name",
        cluster,
        "--nodes",
        nodes,
        "--state-dir",
        state,
        "--yes",
    ]
}

fn stop_after_ordering<'a>(cluster: &'a str, nodes: &'a str, state: &'a str) -> Vec<&'a str> {
    let mut args = install(cluster, nodes, state);
    args.extend(["--stop-after", "creating-servers"]);
    args
}

/// `cto` for `user` against `lab`, its clocks in the lab's scaled time (so the settling window
/// of a lost order answer passes in lab time).
fn cto(user: &User, lab: &LabProcess) -> std::process::Command {
    let mut cmd = user.cto(Some(lab));
    cmd.env("CTO_TIME_SCALE", "0.002");
    cmd
}

/// `(hostname, id)` of every live server, sorted.
fn servers(lab: &LabProcess) -> Vec<(String, String)> {
    let mut all = lab.servers();
    all.sort();
    all
}

#[test]
fn a_hand_made_namesake_stops_the_install_before_ordering_and_is_left_untouched() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let victim = hand_make(&lab.url, "s-cp-1", "ubuntu_24_04_x64_lts");
    wait_status(&lab, &victim, "on");
    let before = server_state(&lab, &victim);
    let state = user.state_dir("s");
    let out = run(
        cto(&user, &lab),
        &[
            "install",
            "--cluster-name",
            "s",
            "--nodes",
            "2",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s-cp-1") && stderr.contains(&victim),
        "names the server: {stderr}"
    );
    assert_eq!(
        servers(&lab),
        [("s-cp-1".to_owned(), victim.clone())],
        "nothing ordered, nothing deleted"
    );
    assert_eq!(server_state(&lab, &victim), before, "not reinstalled");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server_state(&lab, &victim), before, "not reinstalled later");
    let cp = checkpoint(&state);
    assert!(
        cp["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"].is_null() && s["order"]["state"] == "not_ordered"),
        "{cp}"
    );

    // Resuming changes nothing while the namesake is there.
    let out = run(
        cto(&user, &lab),
        &[
            "install",
            "--resume",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(servers(&lab), [("s-cp-1".to_owned(), victim.clone())]);
    assert_eq!(server_state(&lab, &victim), before);
}

#[test]
fn a_second_install_of_one_cluster_name_from_another_state_directory_orders_nothing() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let first = user.state_dir("first");
    let out = run(
        cto(&user, &lab),
        &stop_after_ordering("t", "2", first.to_str().unwrap()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let ours = servers(&lab);
    assert_eq!(ours.len(), 2);

    let second = user.state_dir("second");
    let out = run(
        cto(&user, &lab),
        &install("t", "2", second.to_str().unwrap()),
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (hostname, id) in &ours {
        assert!(
            stderr.contains(hostname.as_str()) && stderr.contains(id.as_str()),
            "{stderr}"
        );
    }
    assert_eq!(servers(&lab), ours, "nothing ordered, nothing touched");

    // The first install is unaffected: it resumes past step 2 with its own servers.
    let out = run(
        cto(&user, &lab),
        &[
            "install",
            "--resume",
            "--state-dir",
            first.to_str().unwrap(),
            "--stop-after",
            "waiting-servers-ready",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(servers(&lab), ours);
}

#[test]
fn destroy_deletes_exactly_the_install_s_servers_then_nothing_then_by_the_cluster_tag() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("s2");
    let s = state.to_str().unwrap();
    let out = run(cto(&user, &lab), &install("s2", "2", s));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        checkpoint(&state)["completed"].as_array().unwrap().len(),
        22,
        "a complete install"
    );
    let installed = servers(&lab);
    assert_eq!(installed.len(), 2);
    let bystander = hand_make(&lab.url, "s2-cp-7", "ubuntu_24_04_x64_lts");

    let out = run(cto(&user, &lab), &["destroy", "--state-dir", s, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        servers(&lab),
        [("s2-cp-7".to_owned(), bystander.clone())],
        "the install's servers are gone and only they are"
    );

    // Again: the install was destroyed, nothing to do.
    let out = run(cto(&user, &lab), &["destroy", "--state-dir", s, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Nothing to destroy"),
        "{}",
        describe(&out)
    );
    assert_eq!(servers(&lab).len(), 1);

    // Another install of s2; its checkpoint is lost; the cluster tag finds its servers.
    let other = user.state_dir("s2-again");
    let out = run(
        cto(&user, &lab),
        &install("s2", "2", other.to_str().unwrap()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let tagged: Vec<String> = servers(&lab)
        .into_iter()
        .filter(|(_, id)| *id != bystander)
        .map(|(_, id)| id)
        .collect();
    assert_eq!(tagged.len(), 2);
    std::fs::remove_file(other.join("checkpoint.json")).unwrap();
    let out = run(
        cto(&user, &lab),
        &["destroy", "--cluster-name", "s2", "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        servers(&lab),
        [("s2-cp-7".to_owned(), bystander.clone())],
        "exactly the tagged servers were deleted"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--match-hostname"),
        "the untagged namesake is pointed out: {}",
        describe(&out)
    );

    // Hostname matching only on request, and only with a confirmation.
    let out = run(
        cto(&user, &lab),
        &["destroy", "--cluster-name", "s2", "--match-hostname"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&bystander));
    assert_eq!(servers(&lab).len(), 1);
    let out = run(
        cto(&user, &lab),
        &[
            "destroy",
            "--cluster-name",
            "s2",
            "--match-hostname",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(servers(&lab).is_empty());
}

#[test]
fn a_lost_order_answer_hidden_from_one_listing_is_settled_by_listing_not_ordered_again() {
    let lab = LabProcess::start(json!({"faults": "order.lost=l-cp-1"}));
    let user = User::new();
    let state = user.state_dir("l");
    let mut args = stop_after_ordering("l", "2", state.to_str().unwrap());
    args.extend(["--output", "json"]);
    let out = run(cto(&user, &lab), &args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let all = servers(&lab);
    let hostnames: Vec<&str> = all.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hostnames, ["l-cp-1", "l-worker-1"], "one server per node");
    let adopted: Vec<Value> = events(&out)
        .into_iter()
        .filter(|e| e["event"] == "server_adopted")
        .collect();
    assert_eq!(adopted.len(), 1, "{}", describe(&out));
    assert_eq!(adopted[0]["hostname"], "l-cp-1");
    let cp = checkpoint(&state);
    assert_eq!(cp["servers"][0]["id"], all[0].1.as_str());
    assert_eq!(cp["servers"][0]["tagged"], true);
    assert!(cp["ownership"].get("duplicates").is_none(), "{cp}");
    let tag = cp["ownership"]["install_tag"]["id"].as_str().unwrap();
    let listed = lab.get(&format!("/servers?filter%5Btags%5D={tag}"));
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
}

#[test]
fn a_duplicate_that_slips_past_the_settling_window_is_reported_with_its_ids_and_destroyed() {
    // The listing hides the first server for the whole settling window (3 listings), so the
    // order is posted again: the duplicate must be found, reported and owned.
    let lab = LabProcess::start(json!({"faults": "order.lost=d-cp-1:3"}));
    let user = User::new();
    let state = user.state_dir("d");
    let out = run(
        cto(&user, &lab),
        &stop_after_ordering("d", "2", state.to_str().unwrap()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let all = servers(&lab);
    let ids: Vec<&str> = all
        .iter()
        .filter(|(h, _)| h == "d-cp-1")
        .map(|(_, id)| id.as_str())
        .collect();
    assert_eq!(ids.len(), 2, "the duplicate exists: {all:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("duplicate server") && ids.iter().all(|id| stderr.contains(id)),
        "reported with both ids: {stderr}"
    );
    let cp = checkpoint(&state);
    let kept = cp["servers"][0]["id"].as_str().unwrap().to_owned();
    let dups = cp["ownership"]["duplicates"].as_array().unwrap();
    assert_eq!(dups.len(), 1, "{cp}");
    assert!(ids.contains(&dups[0]["id"].as_str().unwrap()));
    assert_ne!(dups[0]["id"].as_str().unwrap(), kept);

    let out = run(
        cto(&user, &lab),
        &["destroy", "--state-dir", state.to_str().unwrap(), "--yes"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(servers(&lab).is_empty(), "the duplicate is destroyed too");
}
