//! Persistence across restarts and the reinstall lifecycle.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{self, config};

#[tokio::test]
async fn a_restarted_lab_sees_the_same_world() {
    let mut lab = harness::start(config()).await;
    let created = lab.create(json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let on = lab.wait_status(&id, "on").await;
    let before = lab.stats().await;
    let block = lab.handle.ip_block();
    lab.handle.shutdown().await;
    assert!(lab.dir.path().join("world.json").exists());

    // Another ip_block in the config does not move existing servers.
    let mut other = config();
    other.ip_block = Some(block.wrapping_add(1).max(1));
    lab.handle = harness::start_in(other, lab.dir.path()).await;
    assert_eq!(lab.handle.ip_block(), block);
    let again = lab.get(&format!("/servers/{id}"), &[]).await;
    assert_eq!(again.status, StatusCode::OK);
    let attributes = &again.body["data"]["attributes"];
    assert_eq!(attributes["status"], "on");
    assert_eq!(
        attributes["primary_ipv4"],
        format!("127.0.{}.1", lab.handle.ip_block())
    );
    assert_eq!(attributes["created_at"], on["attributes"]["created_at"]);
    assert_eq!(attributes["label"], on["attributes"]["label"]);
    // Counters survive too, and addresses keep counting.
    assert_eq!(
        lab.stats().await["reads"].as_u64().unwrap(),
        before["reads"].as_u64().unwrap() + 1
    );
    let next = lab.create(json!({"hostname": "talos-cp-2"})).await;
    assert_eq!(
        next["attributes"]["primary_ipv4"],
        format!("127.0.{}.2", lab.handle.ip_block())
    );
    assert_ne!(next["id"], created["id"]);
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn labs_never_share_an_address_block() {
    // Two labs that prefer the same block: the second gets another one and says so.
    let mut cfg = config();
    let a = harness::start(cfg.clone()).await;
    let block = a.handle.ip_block();
    cfg.ip_block = Some(block);
    let mut b = harness::start(cfg.clone()).await;
    assert_ne!(
        b.handle.ip_block(),
        block,
        "the second lab moved to a free block"
    );
    let on_a = a.create(json!({"hostname": "a-1"})).await;
    let on_b = b.create(json!({"hostname": "b-1"})).await;
    assert_eq!(
        on_a["attributes"]["primary_ipv4"],
        format!("127.0.{block}.1")
    );
    assert_eq!(
        on_b["attributes"]["primary_ipv4"],
        format!("127.0.{}.1", b.handle.ip_block())
    );

    // A world whose servers live in a block another running lab holds cannot start: its
    // servers' addresses (and the certificates naming them) cannot move.
    let b_block = b.handle.ip_block();
    b.handle.shutdown().await;
    let mut squatter_cfg = config();
    squatter_cfg.ip_block = Some(b_block);
    let squatter = harness::start(squatter_cfg).await;
    assert_eq!(squatter.handle.ip_block(), b_block);
    let error = lab::start(
        config(),
        b.dir.path(),
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(&format!("127.0.{b_block}.0/24")) && error.contains("another running lab"),
        "{error}"
    );
    // Once the other lab is gone (a killed one too: the kernel drops its claim socket), the
    // world starts again in its own block.
    squatter.handle.shutdown().await;
    b.handle = harness::start_in(config(), b.dir.path()).await;
    assert_eq!(b.handle.ip_block(), b_block);
    b.handle.shutdown().await;
    a.handle.shutdown().await;
}

#[tokio::test]
async fn reinstall_erases_then_deploys_again() {
    let mut cfg = config();
    cfg.timeline.disk_erasing = 1500.0; // 1.5 s of real time: long enough to observe.
    let lab = harness::start(cfg).await;
    let id = lab
        .create(json!({"operating_system": "ubuntu_24_04_x64_lts", "ipxe": null}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.wait_status(&id, "on").await;

    let path = format!("/servers/{id}/reinstall");
    let missing_ipxe = lab
        .post(
            &path,
            json!({"data": {"type": "reinstalls", "attributes": {"operating_system": "ipxe"}}}),
        )
        .await;
    assert_eq!(missing_ipxe.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        missing_ipxe.body["errors"][0]["detail"],
        "ipxe must be informed"
    );
    let unknown = lab
        .post(
            "/servers/sv_nope/reinstall",
            json!({"data": {"type": "reinstalls", "attributes": {}}}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let body = json!({"data": {"type": "reinstalls", "attributes": {
        "operating_system": "ipxe", "hostname": "talos-cp-1", "ipxe": harness::talos_ipxe()}}});
    let reply = lab.post(&path, body).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body, serde_json::Value::Null);
    let erasing = lab.get(&format!("/servers/{id}"), &[]).await.body;
    assert_eq!(erasing["data"]["attributes"]["status"], "disk_erasing");
    assert_eq!(
        erasing["data"]["attributes"]["operating_system"]["slug"],
        "ipxe"
    );
    lab.wait_status(&id, "deploying").await;
    lab.wait_status(&id, "on").await;
    lab.handle.shutdown().await;
}
