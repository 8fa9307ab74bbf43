//! `LatitudeClient` over real HTTP: headers, paging, 429s, retries, and errors.

use std::time::{Duration, Instant};

use metal::latitude::{CreateServer, LatitudeClient, LatitudeError, Reinstall, ServerFilter};
use metal::provider::{Deleted, ProviderError, ProviderErrorKind};

use super::fake_api::*;

fn ipxe_order() -> CreateServer {
    CreateServer::ipxe(
        "talos-cp-1",
        "m4-metal-small",
        "mia2",
        "https://pxe.factory.talos.dev/pxe/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.11.0/metal-amd64",
    )
}

#[tokio::test]
async fn sends_bearer_key_api_version_and_json_api_headers() {
    let api = FakeApi::start(|req, _| match req.method.as_str() {
        "GET" => Canned::json(200, GET_200),
        _ => Canned::json(201, CREATE_201),
    })
    .await;
    let client = api.client();

    let server = client
        .get_server("sv_ZWr75Zbjr5A91")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.attributes.hostname.as_deref(), Some("test"));
    client.create_server(&ipxe_order()).await.unwrap();

    let requests = api.requests();
    assert_eq!(requests.len(), 2);
    for req in &requests {
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(req.header("api-version"), Some("2023-06-01"));
        assert_eq!(req.header("accept"), Some("application/vnd.api+json"));
        assert!(req.header("user-agent").unwrap().starts_with("cto/"));
    }
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/servers/sv_ZWr75Zbjr5A91");
    assert_eq!(requests[0].header("content-type"), None);

    let post = &requests[1];
    assert_eq!(post.method, "POST");
    assert_eq!(post.path, "/servers");
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(
        post.json(),
        serde_json::json!({"data":{"type":"servers","attributes":{
            "project": PROJECT, "plan":"m4-metal-small", "site":"MIA2",
            "operating_system":"ipxe", "hostname":"talos-cp-1", "billing":"hourly",
            "ipxe":"https://pxe.factory.talos.dev/pxe/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.11.0/metal-amd64"}}})
    );
    let stats = client.stats();
    assert_eq!((stats.reads, stats.writes, stats.http_429), (1, 1, 0));
}

#[tokio::test]
async fn lists_every_page_until_a_short_one() {
    let api = FakeApi::start(|req, _| {
        let page: usize = req.param("page[number]").unwrap().parse().unwrap();
        let n = match page {
            1 | 2 => 100,
            3 => 37,
            _ => panic!("asked for page {page} after a short page"),
        };
        Canned::json(200, server_page((page - 1) * 100, n))
    })
    .await;
    let servers = api
        .client()
        .list_servers(&ServerFilter {
            hostname: Some("node-1".into()),
            ..ServerFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(servers.len(), 237);
    assert_eq!(servers[0].id, "sv_0000");
    assert_eq!(servers[236].id, "sv_0236");

    let requests = api.requests();
    assert_eq!(requests.len(), 3);
    for (i, req) in requests.iter().enumerate() {
        assert_eq!(req.path, "/servers");
        // Brackets are percent-encoded, as in the recordings.
        assert!(req.query.contains("page%5Bsize%5D=100"), "{}", req.query);
        assert!(
            req.query.contains(&format!("page%5Bnumber%5D={}", i + 1)),
            "{}",
            req.query
        );
        assert_eq!(req.param("filter[project]").as_deref(), Some(PROJECT));
        assert_eq!(req.param("filter[hostname]").as_deref(), Some("node-1"));
    }
}

#[tokio::test]
async fn plans_are_one_unpaged_request() {
    let api = FakeApi::start(|_, _| Canned::json(200, PLANS)).await;
    let plans = api.client().list_plans(Some("c2-small-x86")).await.unwrap();
    assert_eq!(plans.len(), 1);
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/plans");
    assert_eq!(requests[0].query, "filter%5Bslug%5D=c2-small-x86");
}

#[tokio::test]
async fn a_429_is_honoured_then_retried_even_for_a_post() {
    let api = FakeApi::start(|_, n| match n {
        0 => Canned::json(429, rate_limited_429(1)).request_id("req_429"),
        _ => Canned::json(201, CREATE_201),
    })
    .await;
    let client = api.client();
    let started = Instant::now();
    let server = client.create_server(&ipxe_order()).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(server.id, "sv_ZWr75Zbjr5A91");
    assert!(
        waited >= Duration::from_millis(950),
        "retry_after 1 s was not honoured: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(api.requests().len(), 2);
    let stats = client.stats();
    assert_eq!((stats.writes, stats.http_429), (2, 1));
}

#[tokio::test]
async fn a_scaled_client_pauses_retry_after_in_scaled_time() {
    // A lab at 1/100 of real time asks for 100 modelled seconds: the pause is 1 real second.
    let api = FakeApi::start(|_, n| match n {
        0 => Canned::json(429, rate_limited_429(100)),
        _ => Canned::json(201, CREATE_201),
    })
    .await;
    let client = LatitudeClient::new(api.config().scaled(0.01)).unwrap();
    let started = Instant::now();
    client.create_server(&ipxe_order()).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(client.stats().http_429, 1);
}

#[tokio::test]
async fn rate_limited_after_the_retries_is_an_error() {
    let api =
        FakeApi::start(|_, _| Canned::json(429, rate_limited_429(0)).request_id("req_rl")).await;
    let mut config = api.config();
    config.max_retries = 2;
    let client = LatitudeClient::new(config).unwrap();
    let err = client.list_regions().await.unwrap_err();
    assert!(
        matches!(err, LatitudeError::RateLimited { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        ProviderError::from(err).kind,
        ProviderErrorKind::RateLimited
    );
    assert_eq!(api.requests().len(), 3);
    assert_eq!(client.stats().http_429, 3);
}

#[tokio::test]
async fn a_get_survives_two_503s() {
    let api = FakeApi::start(|_, n| match n {
        0 | 1 => Canned::json(503, "<html>Service Unavailable</html>"),
        _ => Canned::json(200, GET_200).request_id("req_ok"),
    })
    .await;
    let server = api.client().get_server("sv_ZWr75Zbjr5A91").await.unwrap();
    assert_eq!(server.unwrap().id, "sv_ZWr75Zbjr5A91");
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test]
async fn a_get_that_keeps_failing_is_transient() {
    let api = FakeApi::start(|_, _| Canned::json(502, "bad gateway").request_id("req_502")).await;
    let mut config = api.config();
    config.max_retries = 2;
    let err = LatitudeClient::new(config)
        .unwrap()
        .list_projects()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Latitude API GET /projects answered 502 Bad Gateway (request id req_502)"
    );
    assert!(err.is_transient());
    assert_eq!(ProviderError::from(err).kind, ProviderErrorKind::Transient);
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test]
async fn a_post_answered_502_is_not_retried_and_is_ambiguous() {
    let api = FakeApi::start(|_, _| Canned::json(502, "").request_id("req_cf")).await;
    let err = api.client().create_server(&ipxe_order()).await.unwrap_err();
    assert_eq!(
        api.requests().len(),
        1,
        "a billable POST must not be sent twice"
    );
    assert!(err.is_ambiguous());
    let err = ProviderError::from(err);
    assert_eq!(err.kind, ProviderErrorKind::Ambiguous);
    assert_eq!(err.status, Some(502));
    assert_eq!(err.request_id.as_deref(), Some("req_cf"));
    assert!(err.message.contains("look it up"), "{}", err.message);
}

#[tokio::test]
async fn a_post_that_times_out_is_not_retried_and_is_ambiguous() {
    let api =
        FakeApi::start(|_, _| Canned::json(201, CREATE_201).delay(Duration::from_millis(1_500)))
            .await;
    let mut config = api.config();
    config.request_timeout = Duration::from_millis(300);
    let client = LatitudeClient::new(config).unwrap();
    let err = client
        .reinstall_server(
            "sv_1",
            &Reinstall::ipxe("talos-cp-1", "https://example.test/x.ipxe"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LatitudeError::Transport {
                sent: true,
                timeout: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(ProviderError::from(err).kind, ProviderErrorKind::Ambiguous);
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn reinstall_sends_type_reinstalls_and_accepts_an_empty_201() {
    let api = FakeApi::start(|_, _| Canned::empty(201)).await;
    api.client()
        .reinstall_server(
            "sv_ZWr75Zbjr5A91",
            &Reinstall::ipxe("BRC1", "https://some-host.com/image.ipxe"),
        )
        .await
        .unwrap();
    let req = &api.requests()[0];
    assert_eq!(req.path, "/servers/sv_ZWr75Zbjr5A91/reinstall");
    assert_eq!(
        req.json(),
        serde_json::json!({"data":{"type":"reinstalls","attributes":{
            "operating_system":"ipxe","hostname":"BRC1","ipxe":"https://some-host.com/image.ipxe"}}})
    );
}

#[tokio::test]
async fn delete_maps_204_and_404() {
    let api = FakeApi::start(|req, _| match req.path.as_str() {
        "/servers/sv_live" => Canned::empty(204),
        _ => Canned::json(404, NOT_FOUND_404),
    })
    .await;
    let client = api.client();
    assert_eq!(
        client.delete_server("sv_live").await.unwrap(),
        Deleted::Deleted
    );
    assert_eq!(
        client.delete_server("sv_gone").await.unwrap(),
        Deleted::AlreadyGone
    );
    assert_eq!(client.get_server("sv_gone").await.unwrap(), None);
    assert_eq!(api.requests().len(), 3, "404 is not retried");
    assert_eq!(api.requests()[0].method, "DELETE");
}

#[tokio::test]
async fn an_api_error_says_what_happened() {
    let api = FakeApi::start(|_, _| Canned::json(422, VALIDATION_422).request_id("req_123")).await;
    let err = api.client().create_server(&ipxe_order()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Latitude API POST /servers answered 422 Validation Error: must be filled (request id req_123)"
    );
    assert_eq!(err.status(), Some(422));
    assert!(!err.is_ambiguous());
    let LatitudeError::Api(api_error) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api_error.code.as_deref(), Some("VALIDATION_ERROR"));
    let p = ProviderError::from(err);
    assert_eq!(p.kind, ProviderErrorKind::Rejected);
    assert_eq!(p.status, Some(422));
    assert_eq!(p.request_id.as_deref(), Some("req_123"));
    assert_eq!(api.requests().len(), 1);
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    let api = FakeApi::start(|req, _| match req.path.as_str() {
        "/servers" => Canned::json(422, VALIDATION_422).request_id("req_1"),
        "/plans" => Canned::json(200, "<html>not json</html>"),
        "/regions" => Canned::json(429, rate_limited_429(0)),
        _ => Canned::json(
            401,
            r#"{"errors":[{"status":"401","title":"Unauthorized","detail":"Invalid API key"}]}"#,
        ),
    })
    .await;
    let mut config = api.config();
    config.max_retries = 0;
    let client = LatitudeClient::new(config).unwrap();

    let mut errors: Vec<LatitudeError> = vec![
        client.create_server(&ipxe_order()).await.unwrap_err(),
        client.list_plans(None).await.unwrap_err(),
        client.list_regions().await.unwrap_err(),
        client.list_projects().await.unwrap_err(),
    ];
    // A transport error: nothing listens on a port we just released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = api.config();
    config.base_url = format!("http://{closed}");
    config.max_retries = 0;
    let unreachable = LatitudeClient::new(config).unwrap();
    let refused = unreachable.create_server(&ipxe_order()).await.unwrap_err();
    assert!(
        matches!(refused, LatitudeError::Transport { sent: false, .. }),
        "{refused:?}"
    );
    assert_eq!(
        ProviderError::from(refused.clone()).kind,
        ProviderErrorKind::Transient
    );
    errors.push(refused);

    assert!(matches!(errors[1], LatitudeError::Decode { .. }));
    assert!(matches!(errors[2], LatitudeError::RateLimited { .. }));
    assert_eq!(
        ProviderError::from(errors[3].clone()).kind,
        ProviderErrorKind::Unauthorized
    );
    for err in errors {
        let provider = ProviderError::from(err.clone());
        for text in [
            err.to_string(),
            format!("{err:?}"),
            provider.to_string(),
            format!("{provider:?}"),
        ] {
            assert!(!text.contains(KEY), "key leaked: {text}");
            assert!(!text.contains("DO_NOT_LEAK"), "key leaked: {text}");
        }
    }
    assert!(!format!("{client:?}").contains(KEY));
    assert!(!format!("{:?}", api.config()).contains(KEY));
}
