//! `LatitudeProvider` over real HTTP: the provider-neutral view and its error kinds.

use std::net::Ipv4Addr;

use metal::inventory::{InventoryManager, RegionRequest};
use metal::latitude::LatitudeProvider;
use metal::provider::{
    Deleted, MachineOrder, MachineState, Provider, ProviderErrorKind, StockLevel,
};

use super::fake_api::*;

const PROJECTS: &str = r#"{"data":[
 {"id":"proj_other","type":"projects","attributes":{"name":"Other","slug":"other"}},
 {"id":"proj_test","type":"projects","attributes":{"name":"Test cluster","slug":"test-cluster","billing_type":"Normal"}}
],"meta":{}}"#;

#[tokio::test]
async fn check_project_matches_id_or_slug() {
    let api = FakeApi::start(|_, _| Canned::json(200, PROJECTS)).await;
    let provider = LatitudeProvider::new(api.client());
    assert_eq!(provider.name(), "latitude");
    let project = provider.check_project().await.unwrap();
    assert_eq!(project.id, "proj_test");
    assert_eq!(project.slug, "test-cluster");
    assert_eq!(project.name, "Test cluster");

    let mut config = api.config();
    config.project = "Test-Cluster".into();
    let by_slug = LatitudeProvider::new(metal::latitude::LatitudeClient::new(config).unwrap());
    assert_eq!(by_slug.check_project().await.unwrap().id, "proj_test");

    let mut config = api.config();
    config.project = "nope".into();
    let missing = LatitudeProvider::new(metal::latitude::LatitudeClient::new(config).unwrap());
    let err = missing.check_project().await.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::NotFound);
    assert!(err.message.contains("\"nope\""), "{}", err.message);
    assert!(
        err.message.contains("test-cluster (proj_test"),
        "{}",
        err.message
    );
    assert!(err.message.contains("other (proj_other"), "{}", err.message);
}

#[tokio::test]
async fn check_project_with_a_bad_key_is_unauthorized() {
    let api = FakeApi::start(|_, _| {
        Canned::json(
            401,
            r#"{"errors":[{"status":"401","title":"Unauthorized","detail":"Invalid API key"}]}"#,
        )
        .request_id("req_401")
    })
    .await;
    let err = LatitudeProvider::new(api.client())
        .check_project()
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Unauthorized);
    assert_eq!(err.status, Some(401));
    assert_eq!(err.request_id.as_deref(), Some("req_401"));
    assert!(err.message.contains("LATITUDE_API_KEY"), "{}", err.message);
    assert!(!err.message.contains(KEY));
    assert_eq!(api.requests().len(), 1, "401 is not retried");
}

#[tokio::test]
async fn plan_offers_feed_region_selection() {
    let api = FakeApi::start(|_, _| Canned::json(200, PLANS)).await;
    let provider = LatitudeProvider::new(api.client());
    let offers = provider.plan_offers().await.unwrap();
    assert_eq!(offers.len(), 1);
    let ash = offers[0].site("ASH").unwrap();
    assert!(!ash.in_stock);
    assert_eq!(ash.stock_level, StockLevel::High);

    let inventory = InventoryManager::fetch(&provider).await.unwrap();
    let mut request = RegionRequest::cluster("c2-small-x86", 3, "c2-small-x86", 2);
    request.fallback_order = vec!["ASH".into(), "DAL".into()];
    let selection = inventory.select_region(&request).unwrap();
    assert_eq!(selection.chosen.site, "DAL");
    assert_eq!(selection.chosen.hourly_usd_total, Some(1.05));
}

#[tokio::test]
async fn machines_are_listed_created_reinstalled_and_deleted() {
    let api = FakeApi::start(|req, _| match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/servers") => Canned::json(200, server_page(0, 3)),
        ("GET", "/servers/sv_ZWr75Zbjr5A91") => Canned::json(200, GET_200),
        ("GET", _) => Canned::json(404, NOT_FOUND_404),
        ("POST", "/servers") => Canned::json(201, CREATE_201),
        ("POST", _) => Canned::empty(201),
        ("DELETE", _) => Canned::empty(204),
        _ => Canned::empty(405),
    })
    .await;
    let provider = LatitudeProvider::new(api.client());

    let machines = provider.list_machines().await.unwrap();
    assert_eq!(machines.len(), 3);
    assert_eq!(machines[0].state, MachineState::Ready);
    assert_eq!(machines[0].site.as_deref(), Some("MIA2"));

    let machine = provider
        .get_machine("sv_ZWr75Zbjr5A91")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(machine.primary_ipv4, Some(Ipv4Addr::new(177, 54, 146, 23)));
    assert_eq!(provider.get_machine("sv_gone").await.unwrap(), None);

    let created = provider
        .create_machine(&MachineOrder {
            hostname: "test".into(),
            plan: "c2-small-x86".into(),
            site: "sao".into(),
            ipxe_url: "https://pxe.factory.talos.dev/pxe/x/v1.11.0/metal-amd64".into(),
        })
        .await
        .unwrap();
    assert_eq!(created.id, "sv_ZWr75Zbjr5A91");
    assert_eq!(created.state, MachineState::Provisioning);
    assert_eq!(created.raw_status, "starting_deploy");
    assert_eq!(created.site.as_deref(), Some("SAO"));

    provider
        .reinstall_ipxe("sv_ZWr75Zbjr5A91", "test", "https://example.test/boot.ipxe")
        .await
        .unwrap();
    assert_eq!(
        provider.delete_machine("sv_ZWr75Zbjr5A91").await.unwrap(),
        Deleted::Deleted
    );

    let requests = api.requests();
    let list = &requests[0];
    assert_eq!(list.param("filter[project]").as_deref(), Some(PROJECT));
    let create = requests
        .iter()
        .find(|r| r.path == "/servers" && r.method == "POST")
        .unwrap();
    assert_eq!(create.json()["data"]["attributes"]["site"], "SAO");
    assert_eq!(create.json()["data"]["attributes"]["billing"], "hourly");
    let reinstall = requests
        .iter()
        .find(|r| r.path.ends_with("/reinstall"))
        .unwrap();
    assert_eq!(reinstall.json()["data"]["type"], "reinstalls");
    assert_eq!(
        reinstall.json()["data"]["attributes"]["operating_system"],
        "ipxe"
    );
}

#[tokio::test]
async fn locked_and_billing_errors_are_classified() {
    let api = FakeApi::start(|req, _| match req.method.as_str() {
        "DELETE" => Canned::json(423, r#"{"errors":[{"code":null,"status":"locked","title":"Locked Server","detail":"Server is locked and cannot be updated or deleted","meta":{}}]}"#),
        _ => Canned::json(402, r#"{"errors":[{"status":"402","title":"Payment Required"}]}"#),
    })
    .await;
    let provider = LatitudeProvider::new(api.client());
    let err = provider.delete_machine("sv_1").await.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Locked);
    assert!(
        err.message.contains("423 Locked Server: Server is locked"),
        "{}",
        err.message
    );
    let err = provider
        .create_machine(&MachineOrder {
            hostname: "a".into(),
            plan: "c2-small-x86".into(),
            site: "MIA2".into(),
            ipxe_url: "https://x/y".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Billing);
}
