//! [`LatitudeProvider`]: the [`Provider`] implementation for Latitude.sh. It turns the wire
//! types into provider-neutral ones (plans into per-site offers, servers into machines, statuses
//! into [`MachineState`]) and [`LatitudeError`](super::LatitudeError)s into classified [`ProviderError`]s.

use std::net::Ipv4Addr;

use super::client::LatitudeClient;
use super::model::{CreateServer, Plan, Reinstall, Server, ServerFilter, ServerStatus};
use crate::provider::{
    Deleted, Machine, MachineOrder, MachineState, PlanOffer, ProjectInfo, Provider, ProviderError,
    ProviderErrorKind, ProviderResult, SiteOffer, StockLevel, Tag,
};

/// How often `PATCH /servers/{id}` (tags) is sent again after a lost or transient answer: the
/// client never retries a PATCH itself, and setting the same tag list twice is harmless.
const TAG_ATTEMPTS: usize = 4;

/// Latitude.sh behind the [`Provider`] trait. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LatitudeProvider {
    client: LatitudeClient,
}

impl LatitudeProvider {
    /// Wraps a client; the project is the client's.
    pub fn new(client: LatitudeClient) -> Self {
        Self { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &LatitudeClient {
        &self.client
    }

    /// The configured project (id or slug).
    pub fn project(&self) -> &str {
        self.client.project()
    }

    /// Every machine with this hostname in the project (normally zero or one). This is how an
    /// installer adopts a server after an [`ProviderErrorKind::Ambiguous`] order.
    pub async fn find_by_hostname(&self, hostname: &str) -> ProviderResult<Vec<Machine>> {
        let servers = self
            .client
            .list_servers(&ServerFilter::hostname(hostname))
            .await?;
        Ok(servers
            .iter()
            .map(machine_from_server)
            // The filter may be a prefix/fuzzy match on the server side: keep exact matches.
            .filter(|m| m.hostname.eq_ignore_ascii_case(hostname))
            .collect())
    }
}

impl From<LatitudeClient> for LatitudeProvider {
    fn from(client: LatitudeClient) -> Self {
        Self::new(client)
    }
}

impl Provider for LatitudeProvider {
    fn name(&self) -> &'static str {
        "latitude"
    }

    async fn check_project(&self) -> ProviderResult<ProjectInfo> {
        let wanted = self.client.project();
        // 401/403 become `Unauthorized` with a hint to check LATITUDE_API_KEY.
        let projects = self.client.list_projects().await?;
        let infos: Vec<ProjectInfo> = projects
            .into_iter()
            .map(|p| ProjectInfo {
                slug: p.attributes.slug.unwrap_or_default(),
                name: p.attributes.name.unwrap_or_default(),
                id: p.id,
            })
            .collect();
        if let Some(found) = infos
            .iter()
            .find(|p| p.id == wanted || (!p.slug.is_empty() && p.slug.eq_ignore_ascii_case(wanted)))
        {
            return Ok(found.clone());
        }
        let existing = if infos.is_empty() {
            "this API key sees no projects".to_owned()
        } else {
            let list: Vec<String> = infos
                .iter()
                .map(|p| format!("{} ({}, {:?})", p.slug, p.id, p.name))
                .collect();
            format!("projects this API key can see: {}", list.join(", "))
        };
        Err(ProviderError::new(
            ProviderErrorKind::NotFound,
            format!("Latitude project {wanted:?} not found (by id or slug); {existing}"),
        ))
    }

    async fn plan_offers(&self) -> ProviderResult<Vec<PlanOffer>> {
        let plans = self.client.list_plans(None).await?;
        let mut offers: Vec<PlanOffer> = plans.iter().filter_map(plan_offer).collect();
        // Whether each plan can be deployed with the `ipxe` OS: its `provisionable_on` lists
        // plan *names* (`c2.small.x86`), per the recorded `GET /plans/operating_systems`
        // (latitudesh/latitudesh-go `fixtures/TestAccOperatingSystemBasic.yaml`).
        // A listing that fails leaves `ipxe` unknown rather than failing the plan listing.
        let systems = match self.client.list_operating_systems().await {
            Ok(systems) => systems,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list operating systems; iPXE support of the plans unknown");
                Vec::new()
            }
        };
        if let Some(ipxe) = systems
            .iter()
            .find(|os| os.attributes.slug.as_deref() == Some("ipxe"))
        {
            for offer in &mut offers {
                offer.ipxe = Some(
                    ipxe.attributes.provisionable_on_plan(&offer.name)
                        || ipxe.attributes.provisionable_on_plan(&offer.slug),
                );
            }
        }
        Ok(offers)
    }

    async fn list_machines(&self) -> ProviderResult<Vec<Machine>> {
        let servers = self.client.list_servers(&ServerFilter::default()).await?;
        Ok(servers.iter().map(machine_from_server).collect())
    }

    async fn get_machine(&self, id: &str) -> ProviderResult<Option<Machine>> {
        Ok(self
            .client
            .get_server(id)
            .await?
            .as_ref()
            .map(machine_from_server))
    }

    async fn create_machine(&self, order: &MachineOrder) -> ProviderResult<Machine> {
        let request = CreateServer::ipxe(
            order.hostname.clone(),
            order.plan.clone(),
            order.site.clone(),
            order.ipxe_url.clone(),
        );
        let server = self.client.create_server(&request).await?;
        let mut machine = machine_from_server(&server);
        // The create answer may omit fields the order already knows.
        if machine.hostname.is_empty() {
            machine.hostname = order.hostname.clone();
        }
        machine
            .site
            .get_or_insert_with(|| order.site.to_ascii_uppercase());
        machine.plan.get_or_insert_with(|| order.plan.clone());
        machine
            .operating_system
            .get_or_insert_with(|| "ipxe".to_owned());
        Ok(machine)
    }

    async fn reinstall_ipxe(&self, id: &str, hostname: &str, ipxe_url: &str) -> ProviderResult<()> {
        self.client
            .reinstall_server(id, &Reinstall::ipxe(hostname, ipxe_url))
            .await
            .map_err(ProviderError::from)
    }

    async fn delete_machine(&self, id: &str) -> ProviderResult<Deleted> {
        self.client
            .delete_server(id)
            .await
            .map_err(ProviderError::from)
    }

    async fn find_tag(&self, name: &str) -> ProviderResult<Option<Tag>> {
        let tags = self.client.list_tags().await?;
        Ok(tags.into_iter().find_map(|t| {
            (t.attributes.name.as_deref() == Some(name)).then(|| Tag {
                id: t.id,
                name: name.to_owned(),
            })
        }))
    }

    async fn ensure_tag(&self, name: &str, description: &str) -> ProviderResult<Tag> {
        if let Some(tag) = self.find_tag(name).await? {
            return Ok(tag);
        }
        match self.client.create_tag(name, description).await {
            Ok(tag) => Ok(Tag {
                id: tag.id,
                name: tag.attributes.name.unwrap_or_else(|| name.to_owned()),
            }),
            // Created by a lost answer or a concurrent run: look it up. `NAME_TOO_SIMILAR`
            // means another name has the same slug: that is not our tag, say so.
            Err(e)
                if e.is_ambiguous()
                    || e.api_code() == Some("NAME_ALREADY_TAKEN")
                    || e.status().is_some_and(|s| s >= 500) =>
            {
                match self.find_tag(name).await? {
                    Some(tag) => Ok(tag),
                    None => Err(ProviderError::from(e)),
                }
            }
            Err(e) => Err(ProviderError::from(e)),
        }
    }

    async fn tag_machine(&self, machine: &Machine, tag_ids: &[String]) -> ProviderResult<()> {
        let id = machine.id.as_str();
        // PATCH replaces the list: send what the server has plus ours. The first attempt trusts
        // the machine as listed (no extra read per server); a retry reads it again.
        let mut current: Vec<String> = machine.tags.iter().map(|t| t.id.clone()).collect();
        let mut last = None;
        for attempt in 0..TAG_ATTEMPTS {
            if attempt > 0 {
                let Some(server) = self.client.get_server(id).await? else {
                    return Err(ProviderError::new(
                        ProviderErrorKind::NotFound,
                        format!("Latitude server {id} not found while attaching tags"),
                    ));
                };
                current = server
                    .attributes
                    .tag_refs()
                    .into_iter()
                    .map(|t| t.id)
                    .collect();
            }
            if tag_ids.iter().all(|t| current.contains(t)) {
                return Ok(());
            }
            let mut all = current.clone();
            for t in tag_ids {
                if !all.contains(t) {
                    all.push(t.clone());
                }
            }
            match self.client.set_server_tags(id, &all).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_ambiguous() || e.status().is_some_and(|s| s >= 500) => {
                    last = Some(e);
                }
                Err(e) => return Err(ProviderError::from(e)),
            }
        }
        Err(last.map_or_else(
            || ProviderError::new(ProviderErrorKind::Transient, "no answer"),
            ProviderError::from,
        ))
    }

    async fn list_machines_tagged(&self, tag_id: &str) -> ProviderResult<Vec<Machine>> {
        let servers = self.client.list_servers(&ServerFilter::tag(tag_id)).await?;
        Ok(servers
            .iter()
            .map(machine_from_server)
            // Keep only servers that really carry it, whatever the filter did.
            .filter(|m| m.has_tag(tag_id))
            .collect())
    }
}

/// Flattens a plan into one [`SiteOffer`] per site: every site in `locations.available` (and,
/// defensively, any `in_stock` site missing from it), `in_stock` from `locations.in_stock`, the
/// country group's stock level and USD prices. `None` for a plan without a slug.
pub fn plan_offer(plan: &Plan) -> Option<PlanOffer> {
    let slug = plan.attributes.slug.clone().filter(|s| !s.is_empty())?;
    let name = plan
        .attributes
        .name
        .clone()
        .unwrap_or_else(|| slug.replace('-', "."));
    let mut sites: Vec<SiteOffer> = Vec::new();
    for group in &plan.attributes.regions {
        let country = group.name.clone().unwrap_or_default();
        let stock_level = group.stock_level.clone().unwrap_or(StockLevel::Unknown);
        let usd = group.pricing.as_ref().and_then(|p| p.usd.as_ref());
        let (available, in_stock) = group
            .locations
            .as_ref()
            .map(|l| (l.available.as_slice(), l.in_stock.as_slice()))
            .unwrap_or_default();
        let stocked = |site: &str| in_stock.iter().any(|s| s.eq_ignore_ascii_case(site));
        for site in available.iter().chain(in_stock) {
            let site = site.trim().to_ascii_uppercase();
            if site.is_empty() || sites.iter().any(|s| s.site == site) {
                continue;
            }
            sites.push(SiteOffer {
                in_stock: stocked(&site),
                site,
                country: country.clone(),
                stock_level: stock_level.clone(),
                hourly_usd: usd.and_then(|p| p.hour),
                monthly_usd: usd.and_then(|p| p.month),
            });
        }
    }
    let drives = plan
        .attributes
        .specs
        .as_ref()
        .map(|specs| {
            specs
                .drives
                .iter()
                .filter_map(|d| {
                    Some(crate::provider::PlanDrive {
                        count: d.count.filter(|c| *c >= 1.0)? as u32,
                        size: d.size.clone()?,
                        kind: d.kind.clone().unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(PlanOffer {
        slug,
        name,
        sites,
        drives,
        ipxe: None,
    })
}

/// The neutral state of a Latitude status.
pub fn machine_state(status: &ServerStatus) -> MachineState {
    match status {
        ServerStatus::On => MachineState::Ready,
        ServerStatus::StartingDeploy
        | ServerStatus::Deploying
        | ServerStatus::DiskErasing
        | ServerStatus::Ready => MachineState::Provisioning,
        ServerStatus::FailedDeployment | ServerStatus::FailedDiskErasing => MachineState::Failed,
        ServerStatus::Off => MachineState::Off,
        ServerStatus::Unknown | ServerStatus::RescueMode | ServerStatus::Other(_) => {
            MachineState::Other
        }
    }
}

/// A server as a neutral [`Machine`]. `hourly_usd` is the server's `price` unless it is billed
/// monthly or yearly (then `price` is not an hourly figure).
pub fn machine_from_server(server: &Server) -> Machine {
    let a = &server.attributes;
    let status = a.status.clone().unwrap_or(ServerStatus::Unknown);
    let billing = a.plan.as_ref().and_then(|p| p.billing.as_deref());
    let hourly = billing.is_none_or(|b| b.eq_ignore_ascii_case("hourly"));
    Machine {
        id: server.id.clone(),
        hostname: a.hostname.clone().unwrap_or_default(),
        state: machine_state(&status),
        raw_status: status.as_str().to_owned(),
        primary_ipv4: a
            .primary_ipv4
            .as_deref()
            .and_then(|ip| ip.trim().parse::<Ipv4Addr>().ok()),
        site: a.site_slug(),
        plan: a.plan_slug().map(str::to_owned),
        operating_system: a.operating_system.as_ref().and_then(|os| os.slug.clone()),
        hourly_usd: if hourly { a.price } else { None },
        tags: a
            .tag_refs()
            .into_iter()
            .map(|t| Tag {
                id: t.id,
                name: t.name,
            })
            .collect(),
        created_at: a.created_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::fixtures::*;
    use super::super::model::{ItemDocument, ListDocument, PlanAttributes, ServerAttributes};
    use super::*;

    #[test]
    fn plans_flatten_into_site_offers() {
        let doc: ListDocument<PlanAttributes> = serde_json::from_str(PLANS).unwrap();
        let offer = plan_offer(&doc.data[0]).unwrap();
        assert_eq!(offer.slug, "c2-small-x86");
        assert_eq!(offer.name, "c2.small.x86");
        let sites: Vec<&str> = offer.sites.iter().map(|s| s.site.as_str()).collect();
        assert_eq!(
            sites,
            [
                "CHI", "ASH", "DAL", "MIA2", "LAX", "NYC", "MIA", "FRA", "BGT"
            ]
        );
        let ash = offer.site("ash").unwrap();
        assert!(!ash.in_stock, "ASH is available but not in stock");
        assert_eq!(ash.stock_level, StockLevel::High);
        assert_eq!(ash.country, "United States");
        let mia2 = offer.site("MIA2").unwrap();
        assert!(mia2.in_stock);
        assert_eq!(mia2.hourly_usd, Some(0.21));
        assert_eq!(mia2.monthly_usd, Some(146.0));
        let fra = offer.site("FRA").unwrap();
        assert!(!fra.in_stock);
        assert_eq!(fra.stock_level, StockLevel::Unavailable);
        let bgt = offer.site("BGT").unwrap();
        assert!(bgt.in_stock);
        assert_eq!(bgt.stock_level, StockLevel::Low);
        assert_eq!(bgt.hourly_usd, Some(0.3));
    }

    #[test]
    fn missing_stock_level_is_unknown_and_sites_are_uppercased() {
        let json = r#"{"data":[{"id":"plan_1","attributes":{"slug":"m4-metal-small",
            "regions":[{"name":"United States","locations":{"available":["mia2"],"in_stock":["mia2","dal"]}}]}},
            {"id":"plan_2","attributes":{"name":"no.slug"}}]}"#;
        let doc: ListDocument<PlanAttributes> = serde_json::from_str(json).unwrap();
        let offer = plan_offer(&doc.data[0]).unwrap();
        assert_eq!(offer.name, "m4.metal.small");
        assert_eq!(offer.sites.len(), 2);
        assert_eq!(offer.sites[0].site, "MIA2");
        assert!(offer.sites[0].in_stock);
        assert_eq!(offer.sites[0].stock_level, StockLevel::Unknown);
        assert_eq!(offer.sites[1].site, "DAL");
        assert_eq!(offer.sites[0].hourly_usd, None);
        assert!(plan_offer(&doc.data[1]).is_none());
    }

    #[test]
    fn servers_become_machines() {
        let doc: ItemDocument<ServerAttributes> = serde_json::from_str(GET_200).unwrap();
        let m = machine_from_server(&doc.data);
        assert_eq!(m.id, "sv_ZWr75Zbjr5A91");
        assert_eq!(m.hostname, "test");
        assert_eq!(m.state, MachineState::Ready);
        assert_eq!(m.raw_status, "on");
        assert_eq!(m.primary_ipv4, Some(Ipv4Addr::new(177, 54, 146, 23)));
        assert_eq!(m.site.as_deref(), Some("SAO"));
        assert_eq!(m.plan.as_deref(), Some("c2-small-x86"));
        assert_eq!(m.operating_system.as_deref(), Some("ubuntu_24_04_x64_lts"));
        assert_eq!(m.hourly_usd, Some(0.18));

        let doc: ItemDocument<ServerAttributes> = serde_json::from_str(CREATE_201).unwrap();
        let m = machine_from_server(&doc.data);
        assert_eq!(m.state, MachineState::Provisioning);
        assert_eq!(m.raw_status, "starting_deploy");

        let doc: ListDocument<ServerAttributes> =
            serde_json::from_str(SERVERS_UNKNOWN_STATUS).unwrap();
        let m = machine_from_server(&doc.data[1]);
        assert_eq!(m.state, MachineState::Other);
        assert_eq!(m.raw_status, "quantum_superposition");
        assert_eq!(m.primary_ipv4, None);
        assert_eq!(m.site.as_deref(), Some("MIA2"));
    }

    #[test]
    fn reserved_price_is_not_hourly() {
        let json =
            r#"{"data":{"id":"sv_1","attributes":{"price":1349.0,"plan":{"billing":"yearly"}}}}"#;
        let doc: ItemDocument<ServerAttributes> = serde_json::from_str(json).unwrap();
        let m = machine_from_server(&doc.data);
        assert_eq!(m.hourly_usd, None);
        assert_eq!(m.state, MachineState::Other);
        assert_eq!(m.raw_status, "unknown");
    }

    #[test]
    fn status_mapping() {
        use MachineState::*;
        let cases = [
            ("on", Ready),
            ("starting_deploy", Provisioning),
            ("deploying", Provisioning),
            ("disk_erasing", Provisioning),
            ("ready", Provisioning),
            ("failed_deployment", Failed),
            ("failed_disk_erasing", Failed),
            ("off", Off),
            ("rescue_mode", Other),
            ("unknown", Other),
            ("something_new", Other),
        ];
        for (raw, state) in cases {
            assert_eq!(
                machine_state(&ServerStatus::from(raw.to_owned())),
                state,
                "{raw}"
            );
        }
    }
}
