//! Labs never share addresses: two `cto lab serve` that prefer the same `127.0.x.0/24` block and
//! an in-process `cto install --lab` beside them, all started at once, each get a block of their
//! own, and an install against each of them completes.

use std::collections::BTreeSet;
use std::process::Output;

use serde_json::json;

use crate::harness::{LabProcess, User, describe, events, run};

fn install(user: &User, lab: Option<&LabProcess>, cluster: &str) -> Output {
    let state = user.state_dir(cluster);
    let mut args = vec!["install"];
    if lab.is_none() {
        args.push("--lab");
    }
    args.extend([
        "--cluster-name",
        cluster,
        "--nodes",
        "2",
        "--state-dir",
        state.to_str().unwrap(),
        "--output",
        "json",
        "--yes",
    ]);
    run(user.cto(lab), &args)
}

/// The third octets of the addresses of the servers a lab's install ordered.
fn blocks_of(lab: &LabProcess) -> BTreeSet<String> {
    let body = lab.get("/servers?page%5Bsize%5D=100");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ip = s["attributes"]["primary_ipv4"].as_str().unwrap();
            ip.split('.').nth(2).unwrap().to_owned()
        })
        .collect()
}

#[test]
fn labs_started_at_once_get_their_own_blocks_and_installs_against_each_complete() {
    // Both prefer block 77: the second to claim it moves on to a free one.
    let a = LabProcess::start(json!({"ip_block": 77}));
    let b = LabProcess::start(json!({"ip_block": 77}));
    let users = [User::new(), User::new(), User::new()];
    let outs = std::thread::scope(|scope| {
        let runs = [
            scope.spawn(|| install(&users[0], Some(&a), "a")),
            scope.spawn(|| install(&users[1], Some(&b), "b")),
            // The in-process lab picks a block of its own at random, then a free one.
            scope.spawn(|| install(&users[2], None, "c")),
        ];
        runs.map(|r| r.join().unwrap())
    });
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", describe(out));
        assert!(
            events(out).iter().any(|e| e["event"] == "complete"),
            "{}",
            describe(out)
        );
    }
    let (in_a, in_b) = (blocks_of(&a), blocks_of(&b));
    assert_eq!(in_a.len(), 1, "{in_a:?}");
    assert_eq!(in_b.len(), 1, "{in_b:?}");
    assert!(
        in_a.contains("77"),
        "the first lab kept its block: {in_a:?}"
    );
    assert!(in_a.is_disjoint(&in_b), "{in_a:?} and {in_b:?}");
}
