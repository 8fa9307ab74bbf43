//! Server routes: list (filters and paging), get, create (validated like the real API), delete
//! and reinstall. Statuses are never stored; see [`crate::lifecycle`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::body::Attributes;
use super::errors::{ApiError, ErrorObject};
use super::pagination::Page;
use super::{RawQuery, data, params, resources};
use crate::catalogue::IPXE_OS;
use crate::lifecycle::{Lifecycle, LifecycleKind, now_ms};
use crate::state::Lab;
use crate::stock;
use crate::world::{Server, World, new_id};

/// Checks a hostname the way the Terraform provider does: at most 32 characters matching
/// `^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$`.
pub(crate) fn check_hostname(hostname: &str) -> Result<(), String> {
    let bytes = hostname.as_bytes();
    if bytes.len() > 32 {
        return Err(format!(
            "hostname {hostname:?} is longer than 32 characters"
        ));
    }
    let edge_ok = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-');
    if !(edge_ok(bytes.first()) && edge_ok(bytes.last()) && inner_ok) {
        return Err(format!(
            "hostname {hostname:?} is invalid: use letters, digits, '.' and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

const BILLING: [&str; 3] = ["hourly", "monthly", "yearly"];

/// `GET /servers` with `filter[project|hostname|region|status|plan|label]` and paging.
pub(crate) async fn list(
    State(lab): State<Arc<Lab>>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let q = params(query)?;
    let page = Page::from_query(&q)?;
    let now = now_ms();
    let world = lab.world();
    let project_id = q
        .get("filter[project]")
        .map(|p| world.project(p).map(|p| p.id.clone()));
    let list = |key: &str| {
        q.get(key).map(|v| {
            v.split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let statuses = list("filter[status]");
    let plans = list("filter[plan]");
    let sites = list("filter[region]");
    // `filter[tags]`: tag ids separated by commas; a server must carry all of them
    // (`latitudesh-go-sdk` `models/operations/getservers.go`).
    let tags = list("filter[tags]");
    let servers: Vec<Value> = world
        .servers
        .iter()
        .filter(|s| {
            project_id
                .as_ref()
                .is_none_or(|p| p.as_deref() == Some(s.project_id.as_str()))
        })
        .filter(|s| q.get("filter[hostname]").is_none_or(|h| *h == s.hostname))
        .filter(|s| q.get("filter[label]").is_none_or(|l| *l == s.label))
        .filter(|s| {
            sites
                .as_ref()
                .is_none_or(|v| v.iter().any(|x| x.eq_ignore_ascii_case(&s.site)))
        })
        .filter(|s| {
            plans.as_ref().is_none_or(|v| {
                v.iter()
                    .any(|x| *x == s.plan || *x == s.plan.replace('-', "."))
            })
        })
        .filter(|s| {
            tags.as_ref()
                .is_none_or(|v| v.iter().all(|t| s.tags.contains(t)))
        })
        .filter(|s| !lab.faults.hidden_from_listing(&s.id))
        .filter(|s| {
            statuses
                .as_ref()
                .is_none_or(|v| v.iter().any(|x| x == s.status(now, &lab.durations)))
        })
        .map(|s| quirk(&lab, s, resources::server(&world, &lab.durations, s, now)))
        .collect();
    lab.faults.listing_served();
    let (items, meta) = page.apply(servers);
    Ok(data(StatusCode::OK, Value::Array(items), meta))
}

/// `GET /servers/{id}`.
pub(crate) async fn get(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let world = lab.world();
    let server = world.server(&id).ok_or_else(ApiError::not_found)?;
    Ok(data(
        StatusCode::OK,
        quirk(
            &lab,
            server,
            resources::server(&world, &lab.durations, server, now_ms()),
        ),
        json!({}),
    ))
}

/// The status faults `latitude.status` and `latitude.flap` applied to a rendered server.
fn quirk(lab: &Lab, server: &crate::world::Server, mut rendered: Value) -> Value {
    if let Some(status) = rendered
        .pointer_mut("/attributes/status")
        .and_then(|s| s.as_str().map(str::to_owned))
    {
        let status = match status.as_str() {
            "deploying" => "deploying",
            "disk_erasing" => "disk_erasing",
            _ => return rendered,
        };
        let quirked = lab.faults.quirk_status(
            &server.id,
            server.lifecycle.started_at_ms,
            server.is_ipxe(),
            status,
        );
        rendered["attributes"]["status"] = Value::String(quirked.into());
    }
    rendered
}

/// The validated attributes of an order.
struct Order {
    project_id: String,
    plan: String,
    site: String,
    operating_system: String,
    hostname: String,
    ipxe: Option<String>,
    billing: String,
    ssh_keys: Vec<String>,
}

/// Validates an order against the catalogue, live stock and the project's SSH keys.
fn validate_order(world: &World, lab: &Lab, a: &mut Attributes) -> Result<Order, ApiError> {
    let project = a.string("project", true);
    let plan = a.string("plan", true);
    let site = a.string("site", true);
    let operating_system = a.string("operating_system", true);
    let hostname = a.string("hostname", true);
    let ipxe = a.string("ipxe", false);
    let billing = a.string("billing", false);
    let ssh_keys = a.strings("ssh_keys");
    // An order cannot carry tags: `POST /servers` has no `tags` attribute
    // (`latitudesh-go-sdk` `models/operations/createserver.go`); they are attached afterwards
    // with `PATCH /servers/{id}`, as the Terraform provider does (`updateServerTags` in
    // `latitudesh/resource_server.go`).
    if a.has("tags") {
        return Err(ApiError::bad_request(
            "Unpermitted parameter: tags. Tags cannot be set when ordering a server; attach them with PATCH /servers/{id}",
        ));
    }
    let mut out_of_stock: Option<String> = None;

    let project = project.and_then(|p| match world.project(&p) {
        Some(project) => Some(project.id.clone()),
        None => {
            a.reject(
                "project",
                format!("Project {p:?} not found (use the project ID or slug)"),
            );
            None
        }
    });
    if let Some(Err(reason)) = hostname.as_deref().map(check_hostname) {
        a.reject("hostname", reason);
    }
    if let Some(b) = billing.as_deref().filter(|b| !BILLING.contains(b)) {
        a.reject(
            "billing",
            format!("billing must be one of hourly, monthly, yearly; got {b:?}"),
        );
    }
    let catalogue = &world.catalogue;
    let plan = plan.and_then(|slug| match catalogue.plan(&slug) {
        Some(plan) => Some(plan),
        None => {
            a.reject(
                "plan",
                format!("Plan {slug:?} not found (send a plan slug such as c2-small-x86)"),
            );
            None
        }
    });
    let site = site.and_then(|slug| {
        if slug != slug.to_ascii_uppercase() {
            a.reject(
                "site",
                format!(
                    "site {slug:?} must be an uppercase site slug such as {}",
                    slug.to_ascii_uppercase()
                ),
            );
            None
        } else if catalogue.site(&slug).is_none() {
            a.reject("site", format!("Site {slug:?} not found"));
            None
        } else {
            Some(slug)
        }
    });
    let os = operating_system.and_then(|slug| match catalogue.operating_system(&slug) {
        Some(os) => Some(os),
        None => {
            a.reject(
                "operating_system",
                format!("Operating system {slug:?} not found"),
            );
            None
        }
    });
    if os.is_some_and(|os| os.slug == IPXE_OS) && ipxe.is_none() {
        a.reject("ipxe", "ipxe must be informed");
    }
    if let (Some(plan), Some(os)) = (plan, os)
        && !os.provisionable_on.contains(&plan.name)
    {
        a.reject(
            "operating_system",
            format!("{} cannot be deployed on {}", os.slug, plan.slug),
        );
    }
    if let (Some(plan), Some(site)) = (plan, &site) {
        if plan.region_for_site(site).is_none() {
            a.reject(
                "site",
                format!("Plan {} is not offered in {site}", plan.slug),
            );
        } else if !stock::site_in_stock(world, &lab.config, plan, site)
            || lab.faults.stock_vanished(site)
        {
            out_of_stock = Some(format!(
                "No stock of {} in {site}. Pick a site from the plan's locations.in_stock",
                plan.slug
            ));
        }
    }
    if let Some(project) = &project {
        let missing: Vec<&String> = ssh_keys
            .iter()
            .filter(|id| {
                !world
                    .ssh_keys
                    .iter()
                    .any(|k| &k.id == *id && k.project_id.as_deref().is_none_or(|p| p == project))
            })
            .collect();
        if !missing.is_empty() {
            a.reject(
                "ssh_keys",
                format!(
                    "The following SSH Keys were not found in project '{project}': {missing:?}."
                ),
            );
        }
    }
    a.finish()?;
    if let Some(detail) = out_of_stock {
        return Err(ApiError::out_of_stock(detail));
    }
    let (Some(project_id), Some(plan), Some(site), Some(os), Some(hostname)) =
        (project, plan, site, os, hostname)
    else {
        return Err(ApiError::internal(
            "validation passed without the required attributes",
        ));
    };
    Ok(Order {
        project_id,
        plan: plan.slug.clone(),
        site,
        ipxe: ipxe.filter(|_| os.slug == IPXE_OS),
        operating_system: os.slug.clone(),
        hostname,
        // Terraform's default, so that a client that forgets `billing` is caught.
        billing: billing.unwrap_or_else(|| "monthly".into()),
        ssh_keys,
    })
}

/// `POST /servers` → 201 with `starting_deploy` and the address already assigned.
pub(crate) async fn create(State(lab): State<Arc<Lab>>, body: Bytes) -> Result<Response, ApiError> {
    let mut attributes = Attributes::parse(&body, "servers")?;
    let now = now_ms();
    let rendered = lab.mutate(|world| {
        let order = validate_order(world, &lab, &mut attributes)?;
        let out_of_addresses = || {
            ApiError::validation(vec![ErrorObject::invalid_attribute(
                "site",
                "The lab has run out of loopback addresses for servers",
            )])
        };
        // Rolling into the next block claims it first: another running lab may hold it.
        let next = world.next_ip().ok_or_else(out_of_addresses)?;
        if !lab.blocks.ensure(next.octets()[2]).unwrap_or(false) {
            return Err(out_of_addresses());
        }
        let ip = world.allocate_ip().ok_or_else(out_of_addresses)?;
        let failed = lab.faults.order_fails(&order.hostname);
        let server = Server {
            id: new_id("sv_"),
            hostname: order.hostname,
            label: world.allocate_label(),
            project_id: order.project_id,
            plan: order.plan,
            site: order.site,
            operating_system: order.operating_system,
            ipxe: order.ipxe,
            billing: order.billing,
            ip,
            created_at_ms: now,
            lifecycle: Lifecycle { kind: LifecycleKind::Deploy, started_at_ms: now },
            ssh_keys: order.ssh_keys,
            tags: Vec::new(),
            talos: None,
            maintenance_rekeyed: None,
            failed,
        };
        tracing::info!(id = %server.id, hostname = %server.hostname, plan = %server.plan, site = %server.site, ip = %server.ip, "server ordered");
        let rendered = resources::server(world, &lab.durations, &server, now);
        world.servers.push(server);
        Ok::<_, ApiError>(rendered)
    })?;
    let id = rendered["id"].as_str().unwrap_or_default();
    let hostname = rendered["attributes"]["hostname"]
        .as_str()
        .unwrap_or_default();
    if lab.faults.order_answer_lost(hostname, id) {
        return Ok(crate::faults::broken_response());
    }
    Ok(data(StatusCode::CREATED, rendered, json!({})))
}

/// `PATCH /servers/{id}` → 200 with the server. Attributes `hostname`, `billing`, `tags` (the
/// complete list of tag ids the server is to carry) and `project`
/// (`latitudesh-go-sdk` `models/operations/updateserver.go`); any other attribute is refused
/// with 400 like the spec's "Unpermitted parameter" example (`.speakeasy/gen.lock`,
/// `update-server`). Unknown tag ids and values of the wrong type are 422.
pub(crate) async fn update(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut a = Attributes::parse(&body, "servers")?;
    let unknown = a.unknown(&["hostname", "billing", "tags", "project"]);
    if !unknown.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Unpermitted parameter: {}",
            unknown.join(", ")
        )));
    }
    let hostname = a.string("hostname", false);
    let billing = a.string("billing", false);
    let project = a.string("project", false);
    let tags = a.has("tags").then(|| a.strings("tags"));
    let now = now_ms();
    let rendered = lab.mutate(|world| {
        if world.server(&id).is_none() {
            return Err(ApiError::not_found());
        }
        if let Some(Err(reason)) = hostname.as_deref().map(check_hostname) {
            a.reject("hostname", reason);
        }
        if let Some(b) = billing.as_deref().filter(|b| !BILLING.contains(b)) {
            a.reject(
                "billing",
                format!("billing must be one of hourly, monthly, yearly; got {b:?}"),
            );
        }
        if let Some(p) = project.as_deref().filter(|p| world.project(p).is_none()) {
            a.reject("project", format!("Project {p:?} not found"));
        }
        if let Some(tags) = &tags {
            let missing: Vec<&String> = tags.iter().filter(|t| world.tag(t).is_none()).collect();
            if !missing.is_empty() {
                a.reject(
                    "tags",
                    format!("The following tags were not found: {missing:?}"),
                );
            }
        }
        a.finish()?;
        let Some(server) = world.server_mut(&id) else {
            return Err(ApiError::not_found());
        };
        if let Some(hostname) = hostname {
            server.hostname = hostname;
        }
        if let Some(billing) = billing {
            server.billing = billing;
        }
        if let Some(mut tags) = tags {
            tags.dedup();
            server.tags = tags;
        }
        tracing::info!(id = %server.id, tags = ?server.tags, "server updated");
        let server = server.clone();
        Ok::<_, ApiError>(resources::server(world, &lab.durations, &server, now))
    })?;
    Ok(data(StatusCode::OK, rendered, json!({})))
}

/// `DELETE /servers/{id}` → 204; unknown or already deleted → 404.
pub(crate) async fn delete(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    lab.mutate(|world| {
        let index = world
            .servers
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(ApiError::not_found)?;
        let server = world.servers.remove(index);
        tracing::info!(id = %server.id, hostname = %server.hostname, "server deleted");
        Ok::<_, ApiError>(())
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /servers/{id}/reinstall` → 201 with no body; the lifecycle restarts with
/// `disk_erasing`.
pub(crate) async fn reinstall(
    State(lab): State<Arc<Lab>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut a = Attributes::parse(&body, "reinstalls")?;
    let operating_system = a.string("operating_system", false);
    let hostname = a.string("hostname", false);
    let ipxe = a.string("ipxe", false);
    let now = now_ms();
    lab.mutate(|world| {
        if world.server(&id).is_none() {
            return Err(ApiError::reinstall_not_found());
        }
        if let Some(slug) = &operating_system {
            if world.catalogue.operating_system(slug).is_none() {
                a.reject(
                    "operating_system",
                    format!("Operating system {slug:?} not found"),
                );
            } else if slug == IPXE_OS && ipxe.is_none() {
                a.reject("ipxe", "ipxe must be informed");
            }
        }
        if let Some(Err(reason)) = hostname.as_deref().map(check_hostname) {
            a.reject("hostname", reason);
        }
        a.finish()?;
        let Some(server) = world.server_mut(&id) else {
            return Err(ApiError::reinstall_not_found());
        };
        if let Some(os) = operating_system {
            server.operating_system = os;
        }
        if server.operating_system == IPXE_OS {
            if ipxe.is_some() {
                server.ipxe = ipxe;
            }
        } else {
            server.ipxe = None;
        }
        if let Some(hostname) = hostname {
            server.hostname = hostname;
        }
        server.lifecycle = Lifecycle {
            kind: LifecycleKind::Reinstall,
            started_at_ms: now,
        };
        // A reinstall wipes the disk: the node boots into maintenance mode again.
        server.talos = None;
        server.failed = false;
        tracing::info!(id = %server.id, os = %server.operating_system, "server reinstalling");
        Ok(())
    })?;
    Ok(StatusCode::CREATED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["a", "talos-cp-1", "node.example.com", "A1", &"x".repeat(32)] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a b", ".a", &"x".repeat(33), "ü"] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }
}
