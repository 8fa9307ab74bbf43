//! The JSON:API resource objects (`{"id","type","attributes"}`) of plans, operating systems,
//! regions, projects, servers and SSH keys, in the shapes the real API returns.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::catalogue::{OperatingSystem, Plan, Site};
use crate::config::LabConfig;
use crate::durations::Durations;
use crate::stock;
use crate::world::{Project, Server, SshKey, World};

/// `2025-05-05T10:54:34+00:00`, the form recorded from the real API.
pub(crate) fn timestamp(ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00+00:00".into())
}

/// A plan with live stock.
pub(crate) fn plan(world: &World, config: &LabConfig, plan: &Plan) -> Value {
    let regions: Vec<Value> = stock::regions(world, config, plan)
        .into_iter()
        .map(|r| {
            let mut pricing = Map::new();
            for price in &r.region.pricing {
                pricing.insert(
                    price.currency.clone(),
                    json!({"hour": price.hour, "month": price.month, "year": price.year}),
                );
            }
            let deploys_instantly = if r.in_stock.is_empty() {
                Vec::new()
            } else {
                r.region.deploys_instantly.clone()
            };
            json!({
                "name": r.region.country,
                "deploys_instantly": deploys_instantly,
                "locations": {"available": r.region.available, "in_stock": r.in_stock},
                "stock_level": r.stock_level,
                "pricing": pricing,
            })
        })
        .collect();
    json!({
        "id": plan.id,
        "type": "plans",
        "attributes": {
            "slug": plan.slug,
            "name": plan.name,
            "features": plan.features,
            "specs": {
                "cpu": {"type": plan.cpu.kind, "clock": plan.cpu.clock, "cores": plan.cpu.cores, "count": plan.cpu.count},
                "memory": {"total": plan.memory_gb},
                "drives": plan.drives.iter().map(|d| json!({"count": d.count, "size": d.size, "type": d.kind})).collect::<Vec<_>>(),
                "nics": plan.nics.iter().map(|n| json!({"count": n.count, "type": n.kind})).collect::<Vec<_>>(),
                "gpu": {},
            },
            "regions": regions,
        }
    })
}

fn os_features(os: &OperatingSystem) -> Value {
    json!({"raid": os.raid, "rescue": os.rescue, "ssh_keys": os.ssh_keys, "user_data": os.user_data})
}

/// An entry of `GET /plans/operating_systems`.
pub(crate) fn operating_system(os: &OperatingSystem) -> Value {
    json!({
        "id": os.id,
        "type": "operating_system",
        "attributes": {
            "name": os.name,
            "slug": os.slug,
            "distro": os.distro,
            "version": os.version,
            "user_data": os.user_data,
            "features": os_features(os),
            "provisionable_on": os.provisionable_on,
        }
    })
}

/// An entry of `GET /regions`.
pub(crate) fn region(site: &Site) -> Value {
    json!({
        "id": site.id,
        "type": "regions",
        "attributes": {
            "name": site.name,
            "slug": site.slug,
            "facility": site.facility,
            "country": {"name": site.country, "slug": site.country_slug},
            "type": "Core",
        }
    })
}

/// An entry of `GET /projects`.
pub(crate) fn project(world: &World, project: &Project) -> Value {
    let servers = world
        .servers
        .iter()
        .filter(|s| s.project_id == project.id)
        .count();
    json!({
        "id": project.id,
        "type": "projects",
        "attributes": {
            "name": project.name,
            "slug": project.slug,
            "description": "The lab's emulated project",
            "billing_type": "Normal",
            "billing_method": "Normal",
            "bandwidth_alert": false,
            "environment": "Development",
            "provisioning_type": "on_demand",
            "tags": [],
            "team": team(),
            "stats": {"databases": 0, "ip_addresses": servers, "prefixes": 0, "servers": servers, "storages": 0, "virtual_machines": 0, "vlans": 0},
            "created_at": timestamp(project.created_at_ms),
            "updated_at": timestamp(project.created_at_ms),
        }
    })
}

fn team() -> Value {
    json!({"id": "team_lab", "name": "Lab", "slug": "lab", "status": "verified", "currency": {"code": "USD"}})
}

/// The `project` object embedded in servers and SSH keys.
fn project_ref(project: &Project) -> Value {
    json!({"id": project.id, "slug": project.slug, "name": project.name, "billing_type": "Normal", "billing_method": "Normal"})
}

/// A server, its status derived from the clock.
pub(crate) fn server(world: &World, d: &Durations, server: &Server, now_ms: i64) -> Value {
    let catalogue = &world.catalogue;
    let plan = catalogue.plan(&server.plan);
    let site = catalogue.site(&server.site);
    let os = catalogue.operating_system(&server.operating_system);
    let price =
        plan.and_then(|p| p.usd_price(&server.site))
            .map(|p| match server.billing.as_str() {
                "monthly" => p.month,
                "yearly" => p.year,
                _ => p.hour,
            });
    let region = site.map(|s| {
        json!({
            "city": s.city,
            "country": s.country,
            "site": {"id": s.id, "name": s.name, "slug": s.slug, "facility": s.facility},
        })
    });
    let operating_system = os.map(|os| {
        json!({
            "name": os.name,
            "slug": os.slug,
            "version": os.version,
            "features": os_features(os),
            "distro": {"name": os.distro, "slug": os.distro, "series": os.series},
        })
    });
    let specs = plan.map(|p| {
        json!({
            "cpu": p.server_specs.cpu,
            "disk": p.server_specs.disk,
            "ram": p.server_specs.ram,
            "nic": p.server_specs.nic,
            "gpu": null,
        })
    });
    json!({
        "id": server.id,
        "type": "servers",
        "attributes": {
            // `ServerDataTags` of `latitudesh-go-sdk` `models/components/serverdata.go`.
            "tags": server.tags.iter().filter_map(|id| world.tag(id)).map(|t| json!({
                "id": t.id, "name": t.name, "description": t.description, "color": t.color,
            })).collect::<Vec<_>>(),
            "hostname": server.hostname,
            "label": server.label,
            "price": price,
            "role": "Bare Metal",
            "primary_ipv4": server.ip.to_string(),
            "primary_ipv6": null,
            "status": server.status(now_ms, d),
            "ipmi_status": "Normal",
            "created_at": timestamp(server.created_at_ms),
            "scheduled_deletion_at": null,
            "locked": false,
            "rescue_allowed": true,
            "region": region,
            "project": world.project(&server.project_id).map(project_ref),
            "team": team(),
            "plan": plan.map(|p| json!({"id": p.id, "name": p.name, "slug": p.slug, "billing": server.billing})),
            "operating_system": operating_system,
            "specs": specs,
        }
    })
}

/// A tag, as `GET /tags` and `POST /tags` answer (recorded in `terraform-provider-latitudesh`
/// `latitudesh/fixtures/TestAccTag_Basic.yaml`).
pub(crate) fn tag(tag: &crate::world::Tag) -> Value {
    json!({
        "id": tag.id,
        "type": "tags",
        "attributes": {
            "name": tag.name,
            "slug": tag.slug,
            "description": tag.description,
            "color": tag.color,
            "team": team(),
        }
    })
}

/// An SSH key.
pub(crate) fn ssh_key(world: &World, key: &SshKey) -> Value {
    json!({
        "id": key.id,
        "type": "ssh_keys",
        "attributes": {
            "name": key.name,
            "public_key": key.public_key,
            "fingerprint": key.fingerprint,
            "tags": [],
            "user": {"id": "user_lab", "first_name": "Lab", "last_name": "User", "email": "lab@localhost", "role": "owner"},
            "project": key.project_id.as_deref().and_then(|p| world.project(p)).map(project_ref),
            "created_at": timestamp(key.created_at_ms),
            "updated_at": timestamp(key.updated_at_ms),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_use_the_recorded_form() {
        assert_eq!(timestamp(1_746_442_474_000), "2025-05-05T10:54:34+00:00");
    }

    #[test]
    fn plan_shape() {
        let world = World::new(10, 0);
        let config = LabConfig::default();
        let p = plan(
            &world,
            &config,
            world.catalogue.plan("c2-small-x86").unwrap(),
        );
        let a = &p["attributes"];
        assert_eq!(a["name"], "c2.small.x86");
        assert_eq!(a["specs"]["gpu"], json!({}));
        assert!(a["specs"]["cpu"]["cores"].is_f64());
        assert_eq!(a["regions"][0]["name"], "United States");
        assert_eq!(a["regions"][0]["pricing"]["USD"]["month"], 146.0);
        assert_eq!(a["regions"][2]["stock_level"], "unavailable");
        assert!(a["regions"][2]["pricing"].get("BRL").is_none());
    }
}
