//! The scaled, jittered world: Latitude's status lagging behind Talos, per-host jitter from
//! the seed, the scaled rate-limit window, and the `/_lab/stats` and `/_lab/conditions`
//! endpoints that observe it all.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::harness::{self, TestLab, config};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn wait_talos(ip: Ipv4Addr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(SocketAddr::from((ip, lab::TALOS_API_PORT)))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{ip}:50000 never answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `/_lab/conditions` as name → at_ms, checking the document's shape on the way.
async fn conditions(lab: &TestLab) -> HashMap<String, i64> {
    let doc = lab.lab_json("conditions").await;
    assert!(doc["time_scale"].is_f64(), "{doc}");
    assert!(doc["seed"].is_u64(), "{doc}");
    let list = doc["conditions"].as_array().expect("conditions");
    let times: Vec<i64> = list.iter().map(|c| c["at_ms"].as_i64().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "sorted by time: {doc}"
    );
    list.iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["at_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn talos_answers_while_latitude_still_says_deploying() {
    let mut cfg = config();
    cfg.timeline.status_lag = 1500.0; // 1.5 s of real time (± 20 %): long enough to observe.
    let lab = harness::start(cfg).await;
    let ip = Ipv4Addr::new(127, 0, lab.handle.ip_block(), 1);
    let id = lab.create(json!({"hostname": "lag-1"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let plain = lab
        .create(json!({"hostname": "plain-1", "operating_system": "ubuntu_24_04_x64_lts", "ipxe": null}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Talos is up in maintenance mode; Latitude still says `deploying`, with the address the
    // installer probes.
    wait_talos(ip).await;
    let server = lab.get(&format!("/servers/{id}"), &[]).await.body["data"].clone();
    assert_eq!(server["attributes"]["status"], "deploying", "{server}");
    assert_eq!(
        server["attributes"]["primary_ipv4"],
        format!("127.0.{}.1", lab.handle.ip_block())
    );
    // A server without Talos turns `on` as soon as its deploy ends: no lag.
    lab.wait_status(&plain, "on").await;
    lab.wait_status(&id, "on").await;

    let c = conditions(&lab).await;
    let at = |name: &str| *c.get(name).unwrap_or_else(|| panic!("{name} in {c:?}"));
    let lag = at("server/lag-1/status_on") - at("server/lag-1/talos_maintenance");
    assert!((1200..=1800).contains(&lag), "status lag {lag} ms");
    assert!(at("server/lag-1/ordered") < at("server/lag-1/talos_maintenance"));
    // The plain server: `on` after starting_deploy + deploying (300 ± 20 % ms), never Talos.
    let plain_on = at("server/plain-1/status_on") - at("server/plain-1/ordered");
    assert!((240..=360).contains(&plain_on), "{plain_on} ms");
    assert!(!c.contains_key("server/plain-1/talos_maintenance"));
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn the_seed_makes_the_world_and_jitter_tells_hosts_apart() {
    let mut cfg = config();
    cfg.seed = 7;
    let mut lab = harness::start(cfg.clone()).await;
    let mut ids = Vec::new();
    for host in ["j-1", "j-2"] {
        let id = lab.create(json!({"hostname": host})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        ids.push(id);
    }
    for id in &ids {
        lab.wait_status(id, "on").await;
    }
    let boot = |c: &HashMap<String, i64>, host: &str| {
        c[&format!("server/{host}/talos_maintenance")] - c[&format!("server/{host}/ordered")]
    };
    let first = conditions(&lab).await;
    assert_ne!(boot(&first, "j-1"), boot(&first, "j-2"), "jitter per host");
    for host in ["j-1", "j-2"] {
        // 390 modelled seconds ± 20 %, 1 ms each.
        assert!((312..=468).contains(&boot(&first, host)), "{first:?}");
    }

    // The same seed: the same world after a restart.
    lab.handle.shutdown().await;
    lab.handle = harness::start_in(cfg.clone(), lab.dir.path()).await;
    let again = conditions(&lab).await;
    for (name, at) in first.iter().filter(|(n, _)| n.starts_with("server/")) {
        assert_eq!(again.get(name), Some(at), "{name}");
    }

    // Another seed: another world.
    lab.handle.shutdown().await;
    cfg.seed = 8;
    lab.handle = harness::start_in(cfg, lab.dir.path()).await;
    let other = conditions(&lab).await;
    assert_ne!(boot(&other, "j-1"), boot(&first, "j-1"));
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_since_a_moment() {
    let lab = harness::start(config()).await;
    lab.get("/servers", &[]).await;
    lab.get("/plans", &[]).await;
    // Without a key: received (latitude_reads) but not an authenticated read.
    let anonymous = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/servers", lab.handle.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    lab.get("/regions", &[]).await;
    assert_eq!(
        lab.delete("/servers/sv_missing").await.status,
        StatusCode::NOT_FOUND
    );

    let all = lab.stats().await;
    assert_eq!(all["reads"], 3, "{all}");
    assert_eq!(all["writes"], 1, "{all}");
    assert_eq!(all["latitude_reads"], 4, "{all}");
    assert_eq!(all["latitude_writes"], 1, "{all}");
    assert_eq!(all["talos_calls"], 0, "{all}");
    assert_eq!(all["kube_requests"], 0, "{all}");
    assert_eq!(all["servers"], 0, "{all}");
    assert!(all["since_ms"].is_null());

    let later = lab.lab_json(&format!("stats?since_ms={since}")).await;
    assert_eq!(later["reads"], 1, "{later}");
    assert_eq!(later["writes"], 1, "{later}");
    assert_eq!(later["latitude_reads"], 1, "{later}");
    assert_eq!(later["latitude_writes"], 1, "{later}");
    assert_eq!(later["http_429"], 0, "{later}");
    assert_eq!(later["since_ms"], since);
    let first = later["first_request_ms"].as_i64().unwrap();
    let last = later["last_request_ms"].as_i64().unwrap();
    assert!(
        since <= first && first <= last && last <= now_ms(),
        "{later}"
    );

    let future = lab
        .lab_json(&format!("stats?since_ms={}", now_ms() + 60_000))
        .await;
    assert_eq!(future["latitude_reads"], 0);
    assert!(future["first_request_ms"].is_null() && future["last_request_ms"].is_null());

    let bad = reqwest::get(format!("{}/_lab/stats?since_ms=soon", lab.handle.url()))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_window_is_sixty_modelled_seconds() {
    let mut cfg = config();
    // 1 modelled second = 10 ms: the window is 600 ms.
    cfg.time_scale = 0.01;
    cfg.writes_per_minute = 2;
    let lab = harness::start(cfg).await;
    for _ in 0..2 {
        assert_eq!(
            lab.delete("/servers/sv_missing").await.status,
            StatusCode::NOT_FOUND
        );
    }
    let refused = lab.delete("/servers/sv_missing").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: Value = refused.body["errors"][0]["meta"]["retry_after"].clone();
    let retry_after = retry_after.as_u64().unwrap();
    // In modelled seconds: most of the minute is left (a real-seconds answer would say 1).
    assert!((5..=60).contains(&retry_after), "{retry_after}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        lab.delete("/servers/sv_missing").await.status,
        StatusCode::NOT_FOUND
    );
    let stats = lab.stats().await;
    assert_eq!(stats["http_429"], 1, "{stats}");
    assert_eq!(stats["latitude_writes"], 4, "{stats}");
    lab.handle.shutdown().await;
}
