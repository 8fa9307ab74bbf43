//! Live stock: the catalogue's base `in_stock` lists minus the sites configured as out of stock
//! and minus sites whose live servers of the plan reached `capacity_per_site`. Used both to
//! render plans and to refuse orders that the real API would refuse.

use crate::catalogue::{Plan, PlanRegion};
use crate::config::LabConfig;
use crate::world::World;

/// Whether `plan` can be deployed at `site` right now.
pub(crate) fn site_in_stock(world: &World, config: &LabConfig, plan: &Plan, site: &str) -> bool {
    plan.region_for_site(site)
        .is_some_and(|r| r.in_stock.iter().any(|s| s == site))
        && !config
            .out_of_stock_sites
            .iter()
            .any(|s| s.eq_ignore_ascii_case(site))
        && world.live_count(&plan.slug, site) < config.capacity_per_site as usize
}

/// A country group of a plan with live stock applied.
pub(crate) struct RegionStock<'a> {
    pub region: &'a PlanRegion,
    pub in_stock: Vec<String>,
    /// The base level, or `unavailable` once no site is left in stock.
    pub stock_level: &'a str,
}

/// Every country group of `plan`, with live stock.
pub(crate) fn regions<'a>(
    world: &World,
    config: &LabConfig,
    plan: &'a Plan,
) -> Vec<RegionStock<'a>> {
    plan.regions
        .iter()
        .map(|region| {
            let in_stock: Vec<String> = region
                .in_stock
                .iter()
                .filter(|s| site_in_stock(world, config, plan, s))
                .cloned()
                .collect();
            let stock_level = if in_stock.is_empty() {
                "unavailable"
            } else {
                region.stock_level.as_str()
            };
            RegionStock {
                region,
                in_stock,
                stock_level,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Lifecycle, LifecycleKind};
    use crate::world::Server;

    fn server(plan: &str, site: &str) -> Server {
        Server {
            id: crate::world::new_id("sv_"),
            hostname: "h".into(),
            label: "L".into(),
            project_id: "proj_lab".into(),
            plan: plan.into(),
            site: site.into(),
            operating_system: "ipxe".into(),
            ipxe: None,
            billing: "hourly".into(),
            ip: std::net::Ipv4Addr::LOCALHOST,
            created_at_ms: 0,
            lifecycle: Lifecycle {
                kind: LifecycleKind::Deploy,
                started_at_ms: 0,
            },
            ssh_keys: vec![],
            tags: vec![],
            talos: None,
            maintenance_rekeyed: None,
            failed: false,
        }
    }

    #[test]
    fn capacity_and_outages() {
        let mut world = World::new(10, 0);
        let config = LabConfig {
            capacity_per_site: 1,
            out_of_stock_sites: vec!["dal".into()],
            ..LabConfig::default()
        };
        let plan = world.catalogue.plan("c2-small-x86").unwrap().clone();
        assert!(site_in_stock(&world, &config, &plan, "CHI"));
        assert!(
            !site_in_stock(&world, &config, &plan, "DAL"),
            "configured outage"
        );
        assert!(
            !site_in_stock(&world, &config, &plan, "ASH"),
            "not in base stock"
        );
        assert!(!site_in_stock(&world, &config, &plan, "XYZ"));
        world.servers.push(server("c2-small-x86", "SAO"));
        assert!(
            !site_in_stock(&world, &config, &plan, "SAO"),
            "capacity reached"
        );
        let regions = regions(&world, &config, &plan);
        assert_eq!(regions[0].in_stock, ["CHI", "MIA2", "LAX", "NYC"]);
        assert_eq!(regions[0].stock_level, "high");
        assert!(regions[1].in_stock.is_empty());
        assert_eq!(regions[1].stock_level, "unavailable");
    }
}
