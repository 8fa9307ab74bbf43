//! The Latitude client against Latitude's real rate limits at scale: 200 servers ordered and
//! watched through deployment without the lab ever having to answer 429.

use serde_json::json;

use crate::harness::{LabProcess, User, describe, run};

/// The lab's clock and the installer's run at the same scale, so a modelled minute (the
/// rate-limit window) lasts 0.12 real seconds for both.
const TIME_SCALE: &str = "0.002";

#[test]
fn two_hundred_servers_are_ordered_and_watched_without_a_single_429() {
    // The lab's defaults are Latitude's limits: 60 reads and 20 writes a (modelled) minute per
    // key. It counts every 429 it sends, for exceeding them or otherwise.
    let lab = LabProcess::start(json!({ "time_scale": 0.002 }));
    let user = User::new();
    let state = user.state_dir("r");
    let mut cmd = user.cto(Some(&lab));
    cmd.env("CTO_TIME_SCALE", TIME_SCALE);
    let out = run(
        cmd,
        &[
            "install",
            "--cluster-name",
            "r",
            "--nodes",
            "200",
            "--stop-after",
            "waiting-talos-maintenance",
            "--state-dir",
            state.to_str().unwrap(),
            "--yes",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let stats = lab.get("/_lab/stats");
    assert_eq!(stats["servers"], 200, "{stats}");
    // 200 orders: at 20 writes a window the client had to wait for the window ten times.
    assert!(
        stats["writes"].as_u64().unwrap() >= 200,
        "every server is one POST: {stats}"
    );
    assert_eq!(
        stats["http_429"], 0,
        "the client went over Latitude's limits: {stats}"
    );
}
