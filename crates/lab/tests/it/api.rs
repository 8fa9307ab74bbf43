//! The Latitude-compatible API: shapes, authentication, rate limits, validation, paging.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{self, TestLab, config, order};

fn in_stock(plan: &Value, country: &str) -> Vec<String> {
    let region = plan["attributes"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == country)
        .unwrap();
    serde_json::from_value(region["locations"]["in_stock"].clone()).unwrap()
}

#[tokio::test]
async fn create_reports_starting_deploy_with_an_address_then_on() {
    let lab = harness::start(config()).await;
    let reply = lab.post("/servers", order(json!({}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(
        reply.headers["content-type"],
        "application/vnd.api+json; charset=utf-8"
    );
    assert!(
        reply.headers["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let server = &reply.body["data"];
    assert_eq!(reply.body["meta"], json!({}));
    assert_eq!(server["type"], "servers");
    assert!(server["id"].as_str().unwrap().starts_with("sv_"));
    let a = &server["attributes"];
    assert_eq!(a["status"], "starting_deploy");
    assert_eq!(
        a["primary_ipv4"],
        format!("127.0.{}.1", lab.handle.ip_block())
    );
    assert_eq!(a["hostname"], "talos-cp-1");
    assert_eq!(a["role"], "Bare Metal");
    assert_eq!(
        a["plan"],
        json!({"id": "plan_2X6KG5mA5yPBM", "name": "c2.small.x86", "slug": "c2-small-x86", "billing": "hourly"})
    );
    assert_eq!(a["operating_system"]["slug"], "ipxe");
    assert_eq!(a["operating_system"]["name"], "Custom image (iPXE)");
    assert_eq!(a["region"]["site"]["slug"], "CHI");
    assert_eq!(a["region"]["country"], "United States");
    assert_eq!(a["project"]["id"], "proj_lab");
    assert_eq!(a["price"], 0.21);
    assert_eq!(a["tags"], json!([]));
    assert!(a["specs"]["cpu"].is_string());
    assert!(a["created_at"].as_str().unwrap().ends_with("+00:00"));

    let id = server["id"].as_str().unwrap();
    let on = lab.wait_status(id, "on").await;
    assert_eq!(
        on["attributes"]["primary_ipv4"],
        format!("127.0.{}.1", lab.handle.ip_block())
    );

    let second = lab
        .create(json!({"hostname": "talos-cp-2", "project": "lab"}))
        .await;
    assert_eq!(
        second["attributes"]["primary_ipv4"],
        format!("127.0.{}.2", lab.handle.ip_block())
    );
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn authentication_is_required_and_keys_are_checked() {
    let mut cfg = config();
    cfg.api_keys = Some(vec!["good".into()]);
    let mut lab = harness::start(cfg).await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/plans", lab.handle.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["status"], "401");

    lab.key = "bad".into();
    assert_eq!(
        lab.get("/plans", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    lab.key = "good".into();
    assert_eq!(lab.get("/plans", &[]).await.status, StatusCode::OK);

    let missing = lab.get("/nope", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["errors"][0]["code"], "not_found");
    assert_eq!(
        missing.headers["content-type"],
        "application/vnd.api+json; charset=utf-8"
    );

    // The stats endpoint needs no key; the 401s above were not counted.
    let stats = lab.stats().await;
    assert_eq!(stats["reads"], 2, "{stats}");
    assert_eq!(stats["writes"], 0);
    assert_eq!(stats["servers"], 0);
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn writes_over_budget_get_429_with_retry_after() {
    let mut cfg = config();
    cfg.writes_per_minute = 3;
    // The window is 60 modelled seconds: 6 real seconds here, plenty for four requests.
    cfg.time_scale = 0.1;
    let lab = harness::start(cfg).await;
    for i in 0..3 {
        lab.create(json!({"hostname": format!("node-{i}")})).await;
    }
    let reply = lab
        .post("/servers", order(json!({"hostname": "node-3"})))
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after = reply.body["errors"][0]["meta"]["retry_after"]
        .as_u64()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        reply.body,
        json!({"errors":[{"code":"RATE_LIMIT_EXCEEDED","title":"Rate Limit Exceeded","status":"429",
            "detail":"Too many requests. Please slow down and retry.","meta":{"retry_after":retry_after}}]})
    );
    // Reads have their own budget; another key has its own window.
    assert_eq!(lab.get("/servers", &[]).await.status, StatusCode::OK);
    let stats = lab.stats().await;
    assert_eq!(stats["http_429"], 1);
    assert_eq!(stats["writes"], 4);
    assert_eq!(stats["servers"], 3);
    lab.handle.shutdown().await;
}

async fn assert_422(lab: &TestLab, body: Value, pointer: &str, detail: &str) {
    let reply = lab.post("/servers", body).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.body
    );
    let errors = reply.body["errors"].as_array().unwrap();
    // Stock refusals carry Latitude's own code, every other refusal is a validation error.
    let code = if detail.starts_with("No stock") {
        "SERVERS_OUT_OF_STOCK"
    } else {
        "VALIDATION_ERROR"
    };
    assert!(
        errors.iter().any(|e| e["code"] == code
            && e["status"] == "422"
            && e["source"]["pointer"] == pointer
            && e["detail"].as_str().unwrap().contains(detail)),
        "expected {pointer} / {detail:?} in {}",
        reply.body
    );
}

#[tokio::test]
async fn orders_are_validated_like_the_real_api() {
    let mut cfg = config();
    cfg.capacity_per_site = 1;
    cfg.out_of_stock_sites = vec!["NYC".into()];
    let lab = harness::start(cfg).await;
    assert_422(
        &lab,
        order(json!({"ipxe": null})),
        "/data/attributes/ipxe",
        "ipxe must be informed",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"hostname": "talos_cp_1"})),
        "/data/attributes/hostname",
        "invalid",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"hostname": "x".repeat(33)})),
        "/data/attributes/hostname",
        "32",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"hostname": null})),
        "/data/attributes/hostname",
        "must be filled",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"site": "ASH"})),
        "/data/attributes/site",
        "No stock of c2-small-x86 in ASH",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"site": "NYC"})),
        "/data/attributes/site",
        "No stock of c2-small-x86 in NYC",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"site": "chi"})),
        "/data/attributes/site",
        "uppercase",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"plan": "c9-huge"})),
        "/data/attributes/plan",
        "c9-huge",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"project": "proj_other"})),
        "/data/attributes/project",
        "proj_other",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"billing": "weekly"})),
        "/data/attributes/billing",
        "hourly",
    )
    .await;
    assert_422(
        &lab,
        order(json!({"ssh_keys": ["ssh_missing"]})),
        "/data/attributes/ssh_keys",
        "ssh_missing",
    )
    .await;
    let wrong_type = json!({"data": {"type": "server", "attributes": {}}});
    assert_422(&lab, wrong_type, "/data/type", "servers").await;

    // A client that forgets billing gets Terraform's monthly default.
    let server = lab.create(json!({"billing": null})).await;
    assert_eq!(server["attributes"]["plan"]["billing"], "monthly");
    // Capacity 1: CHI is now full for this plan, but duplicate hostnames elsewhere are fine.
    assert_422(
        &lab,
        order(json!({})),
        "/data/attributes/site",
        "No stock of c2-small-x86 in CHI",
    )
    .await;
    let plan = lab.get("/plans/c2-small-x86", &[]).await;
    assert_eq!(
        in_stock(&plan.body["data"], "United States"),
        ["DAL", "MIA2", "LAX"]
    );
    lab.create(json!({"site": "DAL"})).await;
    assert_eq!(lab.stats().await["servers"], 2);
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn deleting_twice_is_not_found() {
    let lab = harness::start(config()).await;
    let id = lab.create(json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = lab.delete(&format!("/servers/{id}")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.body, Value::Null);
    let not_found = json!({"errors":[{"code":"not_found","status":"404","title":"Error","detail":"Specified Record Not Found","meta":{}}]});
    let again = lab.delete(&format!("/servers/{id}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, not_found);
    assert_eq!(
        lab.get(&format!("/servers/{id}"), &[]).await.body,
        not_found
    );
    assert_eq!(lab.stats().await["servers"], 0);
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn servers_are_paged_and_filtered() {
    let lab = harness::start(config()).await;
    for i in 0..5 {
        lab.create(json!({"hostname": format!("node-{i}")})).await;
    }
    let mut seen = HashSet::new();
    for (number, expected) in [("1", 2), ("2", 2), ("3", 1), ("4", 0)] {
        let reply = lab
            .get(
                "/servers",
                &[
                    ("page[size]", "2"),
                    ("page[number]", number),
                    ("filter[project]", "lab"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["meta"], json!({}));
        assert!(reply.body.get("links").is_none());
        let data = reply.body["data"].as_array().unwrap();
        assert_eq!(data.len(), expected, "page {number}");
        seen.extend(data.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 5);
    let counted = lab
        .get(
            "/servers",
            &[("page[size]", "2"), ("stats[total]", "count")],
        )
        .await;
    assert_eq!(
        counted.body["meta"],
        json!({"stats": {"total": {"count": 5}}})
    );
    let by_name = lab
        .get(
            "/servers",
            &[
                ("filter[project]", "proj_lab"),
                ("filter[hostname]", "node-3"),
            ],
        )
        .await;
    assert_eq!(by_name.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_name.body["data"][0]["attributes"]["hostname"], "node-3");
    let elsewhere = lab.get("/servers", &[("filter[region]", "DAL")]).await;
    assert!(elsewhere.body["data"].as_array().unwrap().is_empty());
    let bad = lab.get("/servers", &[("page[size]", "0")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn catalogue_has_the_real_shapes() {
    let mut cfg = config();
    cfg.out_of_stock_sites = vec!["DAL".into()];
    let lab = harness::start(cfg).await;
    let plans = lab.get("/plans", &[]).await;
    assert_eq!(
        plans.headers["content-type"],
        "application/vnd.api+json; charset=utf-8"
    );
    let all = plans.body["data"].as_array().unwrap();
    let slugs: Vec<&str> = all
        .iter()
        .map(|p| p["attributes"]["slug"].as_str().unwrap())
        .collect();
    for slug in [
        "c2-small-x86",
        "c2-medium-x86",
        "c3-small-x86",
        "m4-metal-small",
        "m4-metal-medium",
        "s3-large-x86",
    ] {
        assert!(slugs.contains(&slug), "{slug} missing from {slugs:?}");
    }
    let c2 = lab
        .get("/plans", &[("filter[slug]", "c2-small-x86")])
        .await
        .body["data"][0]
        .clone();
    let a = &c2["attributes"];
    assert_eq!(a["name"], "c2.small.x86");
    assert_eq!(a["specs"]["gpu"], json!({}));
    let us = &a["regions"][0];
    assert_eq!(us["name"], "United States");
    assert_eq!(us["stock_level"], "high");
    assert_eq!(
        us["pricing"]["USD"],
        json!({"hour": 0.21, "month": 146.0, "year": 1288.0})
    );
    assert_eq!(
        in_stock(&c2, "United States"),
        ["CHI", "MIA2", "LAX", "NYC"],
        "DAL is configured out of stock"
    );
    assert_eq!(in_stock(&c2, "Brazil"), ["SAO"]);
    assert_eq!(a["regions"][2]["stock_level"], "unavailable");
    let m4 = lab.get("/plans/m4-metal-small", &[]).await.body["data"].clone();
    assert_eq!(in_stock(&m4, "United States"), ["ASH"]);
    assert_eq!(
        lab.get("/plans/nope", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let in_fra = lab
        .get(
            "/plans",
            &[("filter[location]", "FRA"), ("filter[in_stock]", "true")],
        )
        .await;
    for plan in in_fra.body["data"].as_array().unwrap() {
        assert!(in_stock(plan, "Germany").contains(&"FRA".to_string()));
    }

    let os = lab
        .get("/plans/operating_systems", &[("page[size]", "100")])
        .await
        .body;
    let ipxe = os["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["attributes"]["slug"] == "ipxe")
        .unwrap();
    assert_eq!(ipxe["type"], "operating_system");
    assert_eq!(ipxe["attributes"]["features"]["ssh_keys"], false);
    assert!(
        ipxe["attributes"]["provisionable_on"]
            .as_array()
            .unwrap()
            .contains(&json!("m4.metal.small"))
    );

    let regions = lab.get("/regions", &[("stats[total]", "count")]).await.body;
    assert_eq!(regions["meta"]["stats"]["total"]["count"], 8);
    let mia2 = regions["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["attributes"]["slug"] == "MIA2")
        .unwrap();
    assert_eq!(
        mia2["attributes"]["country"],
        json!({"name": "United States", "slug": "united-states"})
    );
    let id = mia2["id"].as_str().unwrap();
    assert_eq!(
        lab.get(&format!("/regions/{id}"), &[]).await.body["data"]["attributes"]["name"],
        "Miami 2"
    );

    let projects = lab.get("/projects", &[]).await.body;
    assert_eq!(projects["data"][0]["id"], lab::LAB_PROJECT_ID);
    assert_eq!(projects["data"][0]["attributes"]["slug"], "lab");
    assert_eq!(projects["data"][0]["attributes"]["name"], "Lab");
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn ssh_keys_round_trip() {
    let lab = harness::start(config()).await;
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ0c2xhYmtleWZvcnRlc3Rpbmdvbmx5MTIzNDU2Nzg5 me@host";
    let created = lab
        .post("/ssh_keys", json!({"data": {"type": "ssh_keys", "attributes": {"name": "installer", "public_key": key, "project": "proj_lab"}}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["data"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ssh_"));
    assert_eq!(
        created.body["data"]["attributes"]["fingerprint"]
            .as_str()
            .unwrap()
            .len(),
        47
    );
    let listed = lab
        .get("/ssh_keys", &[("filter[project]", "proj_lab")])
        .await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
    lab.create(json!({"ssh_keys": [id]})).await;
    let bad = lab.post("/ssh_keys", json!({"data": {"type": "ssh_keys", "attributes": {"name": "x", "public_key": "nope"}}})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        lab.delete(&format!("/ssh_keys/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        lab.delete(&format!("/ssh_keys/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    lab.handle.shutdown().await;
}

#[tokio::test]
async fn tags_are_created_then_attached_with_patch_never_at_order_time() {
    let lab = harness::start(config()).await;
    let tag = |name: &str| json!({"data": {"type": "tags", "attributes": {"name": name}}});
    let created = lab.post("/tags", tag("cto-install-abc")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let tag_id = created.body["data"]["id"].as_str().unwrap().to_owned();
    assert!(tag_id.starts_with("tag_"));
    assert_eq!(created.body["data"]["type"], "tags");
    assert_eq!(
        created.body["data"]["attributes"]["slug"],
        "cto-install-abc"
    );
    assert_eq!(created.body["data"]["attributes"]["color"], "#ffffff");
    let again = lab.post("/tags", tag("cto-install-abc")).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(again.body["errors"][0]["code"], "NAME_ALREADY_TAKEN");
    assert_eq!(
        again.body["errors"][0]["source"]["pointer"],
        "/data/attributes/name"
    );
    let similar = lab.post("/tags", tag("Tag Name")).await;
    assert_eq!(similar.status, StatusCode::CREATED);
    let similar = lab.post("/tags", tag("tag   name")).await;
    assert_eq!(similar.body["errors"][0]["code"], "NAME_TOO_SIMILAR");
    let listed = lab.get("/tags", &[]).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);

    // An order cannot carry tags.
    let refused = lab
        .post("/servers", order(json!({"tags": [tag_id.clone()]})))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let server = lab.create(json!({})).await;
    let id = server["id"].as_str().unwrap().to_owned();
    let untagged = lab.create(json!({"hostname": "talos-cp-2"})).await;

    let patch = |attributes: Value| json!({"data": {"id": id.clone(), "type": "servers", "attributes": attributes}});
    let path = format!("/servers/{id}");
    let send = |body: Value| lab.send(reqwest::Method::PATCH, &path, &[], Some(body));
    let unknown = send(patch(json!({"tags": ["tag_missing"]}))).await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown.body
    );
    assert_eq!(
        unknown.body["errors"][0]["source"]["pointer"],
        "/data/attributes/tags"
    );
    let wrong_type = send(patch(json!({"tags": tag_id.clone()}))).await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unpermitted = send(patch(json!({"plan": "c2-large-x86"}))).await;
    assert_eq!(unpermitted.status, StatusCode::BAD_REQUEST);
    let ok = send(patch(json!({"tags": [tag_id.clone()]}))).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        ok.body["data"]["attributes"]["tags"],
        json!([{"id": tag_id, "name": "cto-install-abc", "description": "", "color": "#ffffff"}])
    );
    let missing = lab
        .send(
            reqwest::Method::PATCH,
            "/servers/sv_missing",
            &[],
            Some(json!({"data": {"type": "servers", "attributes": {"tags": []}}})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let filtered = lab
        .get("/servers", &[("filter[tags]", tag_id.as_str())])
        .await;
    let ids: Vec<&str> = filtered.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_ne!(untagged["id"], id.as_str());
    lab.handle.shutdown().await;
}
