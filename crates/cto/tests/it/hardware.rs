//! Real hardware, not the lab's hardware: every plan of the lab's catalogue (Latitude's recorded
//! plans) either installs or stops at step 1 with nothing ordered; storage is decided at step 1;
//! the install disk comes from the node; a missing install disk fails the install the way real
//! Talos fails it and is reported; Latitude's status quirks do not buy replacements; a Talos
//! release that does not exist orders nothing.

use serde_json::{Value, json};

use crate::harness::{LabProcess, User, describe, events, run};
use crate::kubectl::{items, kubectl_json, wait_for_kube_api};

fn checkpoint(state: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(state.join("checkpoint.json")).unwrap()).unwrap()
}

fn progress(out: &std::process::Output) -> String {
    events(out)
        .iter()
        .filter(|e| e["event"] == "progress" || e["event"] == "warning")
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every plan of the catalogue, up to disk discovery in maintenance mode (where a plan's
/// hardware decides: install disk, Mayastor disk, the storage plan checked). A plan either gets
/// there with an install disk, or stops at step 1 with exit 3, nothing ordered, and a message
/// naming plans that would work. Full installs per disk class are in the tests below.
#[test]
fn every_catalogue_plan_reaches_its_disks_or_stops_at_step_1() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let plans: Vec<String> = lab.get("/plans")["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["attributes"]["slug"].as_str().unwrap().to_owned())
        .collect();
    assert!(plans.len() >= 10, "{plans:?}");
    // The plans run concurrently, one cluster each.
    let outcomes: Vec<(String, std::process::Output, std::path::PathBuf, String)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .iter()
                .enumerate()
                .map(|(i, plan)| {
                    let (lab, user) = (&lab, &user);
                    scope.spawn(move || {
                        let cluster = format!("p{i}");
                        let state = user.state_dir(&cluster);
                        let out = run(
                            user.cto(Some(lab)),
                            &[
                                "install",
                                "--cluster-name",
                                &cluster,
                                "--nodes",
                                "1",
                                "--cp-plan",
                                plan,
                                "--state-dir",
                                state.to_str().unwrap(),
                                "--stop-after=waiting-talos-maintenance",
                                "--output",
                                "json",
                                "--yes",
                            ],
                        );
                        (plan.clone(), out, state, cluster)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
    let ordered = lab.hostnames();
    let mut stopped = Vec::new();
    for (plan, out, state, cluster) in outcomes {
        let was_ordered = ordered.contains(&format!("{cluster}-cp-1"));
        match out.status.code() {
            Some(0) => {
                let cp = checkpoint(&state);
                let disk = cp["servers"][0]["install_disk"].as_str().unwrap_or("");
                assert!(disk.starts_with("/dev/"), "{plan}: {cp}");
                assert!(
                    cp["resolved"]["storage_note"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("storage: ")),
                    "{plan}: {cp}"
                );
                assert!(was_ordered, "{plan}");
            }
            Some(3) => {
                let err = describe(&out);
                assert!(err.contains("ValidatingPrerequisites"), "{plan}: {err}");
                assert!(!was_ordered, "{plan}: nothing ordered");
                stopped.push((plan.clone(), err));
            }
            other => panic!("{plan}: exit {other:?}: {}", describe(&out)),
        }
    }
    // g3-gh200 cannot be deployed with iPXE (Latitude's recorded provisionable_on), and
    // m4-metal-large is in stock nowhere: both stop at step 1, naming what would work.
    let stopped_plans: Vec<&str> = stopped.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        stopped_plans,
        ["m4-metal-large", "g3-gh200"],
        "{stopped:#?}"
    );
    let (_, gh200) = &stopped[1];
    assert!(
        gh200.contains("iPXE") && gh200.contains("c2-small-x86"),
        "{gh200}"
    );
    let (_, m4) = &stopped[0];
    assert!(m4.contains("m4-metal-large"), "{m4}");
    assert!(m4.contains("plans in stock now: c2-small-x86"), "{m4}");
}

/// The README's main job with default flags: c2-small-x86 (one 500 GB SSD) installs with
/// local-path as the only default StorageClass and no DiskPool, and says so at step 1.
#[test]
fn c2_small_with_default_flags_completes_on_local_path() {
    let user = User::new();
    let state = user.state_dir("c2");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "c2",
            "--cp-plan",
            "c2-small-x86",
            "--state-dir",
            s,
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let evs = events(&out);
    let step1_storage = evs
        .iter()
        .find(|e| {
            e["event"] == "progress"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("storage: "))
        })
        .unwrap_or_else(|| panic!("no storage line: {}", describe(&out)));
    assert_eq!(
        step1_storage["step"], "ValidatingPrerequisites",
        "{step1_storage}"
    );
    assert!(
        step1_storage["message"]
            .as_str()
            .unwrap()
            .contains("local-path"),
        "{step1_storage}"
    );
    let complete = evs.iter().find(|e| e["event"] == "complete").unwrap();
    assert_eq!(complete["storage_class"], "local-path");
    assert_eq!(complete["storage_pools"], json!([]));
    assert!(
        complete["storage"].as_str().unwrap().contains("local-path"),
        "{complete}"
    );
    let cp = checkpoint(&state);
    for server in cp["servers"].as_array().unwrap() {
        assert_eq!(server["install_disk"], "/dev/sda", "{server}");
    }

    let lab = LabProcess::reopen(&state.join("lab"));
    let kubeconfig = state.join("kubeconfig");
    wait_for_kube_api(&kubeconfig);
    let classes = items(&kubectl_json(&kubeconfig, &["get", "storageclass"]));
    let defaults: Vec<&str> = classes
        .iter()
        .filter(|c| {
            c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
        })
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    assert_eq!(defaults, ["local-path"], "{classes:?}");
    let pools = items(&kubectl_json(
        &kubeconfig,
        &["get", "diskpools.openebs.io", "-A"],
    ));
    assert!(pools.is_empty(), "{pools:?}");
    drop(lab);
}

/// `--storage mayastor` on a plan without a data disk stops at step 1: exit 3, nothing
/// ordered, naming plans that would work.
#[test]
fn mayastor_on_c2_small_stops_at_step_1_naming_plans_that_would_work() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("m");
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "m",
            "--cp-plan",
            "c2-small-x86",
            "--storage",
            "mayastor",
            "--region",
            "DAL",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("--storage mayastor"), "{err}");
    // In stock in DAL with a data disk: c2-medium-x86 (2 SSD), c3-large-x86 (2 NVMe), …
    for plan in ["c2-medium-x86", "c3-large-x86", "s2-small-x86"] {
        assert!(err.contains(plan), "{plan} in {err}");
    }
    assert!(
        !err.contains("c3-small-x86"),
        "one NVMe disk is not enough: {err}"
    );
    assert!(lab.hostnames().is_empty(), "nothing ordered");
    // --dry-run shows the same plan.
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "m2",
            "--cp-plan",
            "c3-large-x86",
            "--region",
            "DAL",
            "--dry-run",
            "--state-dir",
            user.state_dir("m2").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(printed.contains("storage: Mayastor"), "{printed}");
    assert!(lab.hostnames().is_empty(), "a dry run orders nothing");
}

/// NVMe-only plan: the install disk is the NVMe disk; forcing `/dev/sdz` through a config patch
/// makes the install fail as real Talos does, reported with node and disk, exit 1.
#[test]
fn nvme_only_installs_on_nvme_and_a_missing_install_disk_is_reported() {
    let user = User::new();
    let state = user.state_dir("n");
    let s = state.to_str().unwrap();
    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "n",
            "--nodes",
            "1",
            "--cp-plan",
            "c3-small-x86",
            "--state-dir",
            s,
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let cp = checkpoint(&state);
    assert_eq!(cp["servers"][0]["install_disk"], "/dev/nvme0n1", "{cp}");
    let status = run(user.cto(None), &["status", "--state-dir", s]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("/dev/nvme0n1"), "{shown}");
    assert!(shown.contains("local-path"), "{shown}");

    let state = user.state_dir("z");
    let out = run(
        user.cto(None),
        &[
            "install",
            "--lab",
            "--cluster-name",
            "z",
            "--nodes",
            "1",
            "--cp-plan",
            "c3-small-x86",
            "--config-patch",
            "machine: {install: {disk: /dev/sdz}}",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    for needle in [
        "WaitingCPInstall",
        "z-cp-1",
        "/dev/sdz",
        "/dev/nvme0n1",
        "maintenance mode",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
}

/// A plan with two NVMe disks gets Mayastor with DiskPools on `/dev/disk/by-id/…`; one with
/// SSDs and NVMe installs on an SSD and pools the NVMe.
#[test]
fn diskpools_name_by_id_paths() {
    let user = User::new();
    for (cluster, plan, install) in [
        ("l", "c3-large-x86", "/dev/nvme0n1"),
        ("s", "s2-small-x86", "/dev/sda"),
    ] {
        let state = user.state_dir(cluster);
        let out = run(
            user.cto(None),
            &[
                "install",
                "--lab",
                "--cluster-name",
                cluster,
                "--nodes",
                "2",
                "--cp-plan",
                plan,
                "--state-dir",
                state.to_str().unwrap(),
                "--output",
                "json",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{plan}: {}", describe(&out));
        let complete = events(&out)
            .into_iter()
            .find(|e| e["event"] == "complete")
            .unwrap();
        assert_eq!(complete["storage_class"], "mayastor-nvme", "{complete}");
        let pools = complete["storage_pools"].as_array().unwrap();
        assert_eq!(pools.len(), 1, "{complete}");
        assert!(
            pools[0]
                .as_str()
                .unwrap()
                .contains(":/dev/disk/by-id/nvme-"),
            "{complete}"
        );
        let cp = checkpoint(&state);
        for server in cp["servers"].as_array().unwrap() {
            assert_eq!(server["install_disk"], install, "{plan}: {server}");
        }
        for disk in cp["resolved"]["storage_disks"]
            .as_object()
            .unwrap()
            .values()
        {
            assert!(
                disk.as_str().unwrap().starts_with("/dev/disk/by-id/"),
                "{disk}"
            );
        }
    }
}

fn install_with_faults(faults: &str, cluster: &str, seen_status: &str, status_lag: f64) {
    // `status_lag`: how long (modelled seconds) the status lags behind Talos being up.
    let lab = LabProcess::start(json!({
        "faults": faults,
        "timeline": {"status_lag": status_lag},
    }));
    let user = User::new();
    let state = user.state_dir(cluster);
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            cluster,
            "--nodes",
            "3",
            "--state-dir",
            state.to_str().unwrap(),
            "--output",
            "json",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{faults}: {}", describe(&out));
    assert_eq!(
        lab.hostnames(),
        [
            format!("{cluster}-cp-1"),
            format!("{cluster}-worker-1"),
            format!("{cluster}-worker-2")
        ],
        "{faults}: exactly three servers ordered"
    );
    let cp = checkpoint(&state);
    for server in cp["servers"].as_array().unwrap() {
        assert!(server.get("replaced").is_none(), "{faults}: {server}");
    }
    let seen = progress(&out);
    assert!(!seen.contains("replacement"), "{faults}: {seen}");
    // The quirk did bite: the installer saw the status.
    let statuses: Vec<String> = events(&out)
        .iter()
        .filter(|e| e["event"] == "node_status")
        .filter_map(|e| e["status"].as_str().map(str::to_owned))
        .collect();
    assert!(
        statuses.iter().any(|s| s.contains(seen_status)),
        "{faults}: {statuses:?}"
    );
}

/// Latitude reading `disk_erasing` while Talos already answers: no timeout, no replacement.
#[test]
fn disk_erasing_status_with_talos_up_completes_with_three_servers() {
    // The status would read `disk_erasing` for 100 000 modelled seconds (200 s here, beyond the
    // scaled wait for servers): only a Talos answer can make them ready in time.
    install_with_faults(
        "latitude.status=disk_erasing",
        "e",
        "ready (disk_erasing; Talos answers)",
        100_000.0,
    );
}

/// One `failed_deployment` read during each deployment: no replacement.
#[test]
fn a_failed_deployment_flap_completes_with_three_servers_none_replaced() {
    // The one `failed_deployment` read may go to any listing (tag attachment lists too), so
    // the installer's own events need not show it; what matters is that nothing is replaced.
    install_with_faults("latitude.flap=failed_deployment", "f", "", 30.0);
}

/// A Talos release the Image Factory does not list orders nothing.
#[test]
fn a_talos_release_that_does_not_exist_orders_nothing() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    let state = user.state_dir("v");
    let factory = format!("{}/factory", lab.url);
    let out = run(
        user.cto(Some(&lab)),
        &[
            "install",
            "--cluster-name",
            "v",
            "--talos-version",
            "v1.11.99",
            "--image-factory-url",
            &factory,
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
        ],
    );
    assert!(
        matches!(out.status.code(), Some(2) | Some(3)),
        "{}",
        describe(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("v1.11.99") && err.contains("v1.11.5"), "{err}");
    assert!(lab.hostnames().is_empty(), "nothing ordered");
}

/// `cto regions --nodes N` shows what `--storage auto` would decide for the plan.
#[test]
fn regions_show_the_storage_plan() {
    let lab = LabProcess::start(json!({}));
    let user = User::new();
    for (plan, mode) in [("c2-small-x86", "local-path"), ("c3-large-x86", "mayastor")] {
        let out = run(
            user.cto(Some(&lab)),
            &[
                "regions", "--plan", plan, "--nodes", "3", "--output", "json",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["storage"]["mode"], mode, "{v}");
        assert!(v["storage"]["note"].as_str().unwrap().contains(plan), "{v}");
    }
}
