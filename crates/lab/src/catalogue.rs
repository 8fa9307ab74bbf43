//! What the emulated Latitude.sh sells: sites, plans (specs, prices, base stock) and operating
//! systems. This is the seed of a new world; it is persisted with the world so that a restarted
//! lab serves the same catalogue. Live stock (capacity, out-of-stock sites) is applied on top of
//! the base `in_stock` lists by the world, never written back here.

use serde::{Deserialize, Serialize};

/// Everything the provider offers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Catalogue {
    pub sites: Vec<Site>,
    pub plans: Vec<Plan>,
    pub operating_systems: Vec<OperatingSystem>,
}

/// A data centre (`GET /regions` calls these regions; servers and plans call them sites).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Site {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub city: String,
    pub country: String,
    pub country_slug: String,
    pub facility: String,
}

/// A server plan with its specs and its per-country availability.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub id: String,
    pub slug: String,
    /// The dotted name (`c2.small.x86`).
    pub name: String,
    pub features: Vec<String>,
    pub cpu: Cpu,
    pub memory_gb: f64,
    pub drives: Vec<Drive>,
    pub nics: Vec<Nic>,
    /// The human-readable specs a deployed server of this plan reports.
    pub server_specs: ServerSpecs,
    pub regions: Vec<PlanRegion>,
}

/// Plan CPU.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cpu {
    #[serde(rename = "type")]
    pub kind: String,
    pub clock: f64,
    pub cores: f64,
    pub count: f64,
}

/// A group of identical drives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Drive {
    pub count: f64,
    pub size: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A group of identical NICs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Nic {
    pub count: f64,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The `specs` strings of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServerSpecs {
    pub cpu: String,
    pub disk: String,
    pub ram: String,
    pub nic: String,
}

/// Availability and price of a plan in one country.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlanRegion {
    /// Country name, e.g. "United States".
    pub country: String,
    pub deploys_instantly: Vec<String>,
    /// Sites offering the plan.
    pub available: Vec<String>,
    /// Sites that can deploy it now, before live capacity and configured outages are applied.
    pub in_stock: Vec<String>,
    /// Stock level while at least one site is in stock.
    pub stock_level: String,
    pub pricing: Vec<Price>,
}

/// A price block (`USD`, `BRL`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Price {
    pub currency: String,
    pub hour: f64,
    pub month: f64,
    pub year: f64,
}

/// An operating system that can be deployed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OperatingSystem {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub distro: String,
    pub series: String,
    pub version: String,
    pub raid: bool,
    pub rescue: bool,
    pub ssh_keys: bool,
    pub user_data: bool,
    /// Dotted plan names.
    pub provisionable_on: Vec<String>,
}

/// The operating-system slug for custom iPXE boots.
pub(crate) const IPXE_OS: &str = "ipxe";

impl Catalogue {
    pub fn site(&self, slug: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.slug == slug)
    }

    pub fn plan(&self, slug: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.slug == slug)
    }

    pub fn operating_system(&self, slug: &str) -> Option<&OperatingSystem> {
        self.operating_systems.iter().find(|o| o.slug == slug)
    }
}

impl Plan {
    /// The country group that offers `site`, if any.
    pub fn region_for_site(&self, site: &str) -> Option<&PlanRegion> {
        self.regions
            .iter()
            .find(|r| r.available.iter().any(|s| s == site))
    }

    /// The USD price block of the country group offering `site`.
    pub fn usd_price(&self, site: &str) -> Option<&Price> {
        self.region_for_site(site)?
            .pricing
            .iter()
            .find(|p| p.currency == "USD")
    }
}

fn site(id: &str, slug: &str, name: &str, city: &str, country: &str, facility: &str) -> Site {
    Site {
        id: id.into(),
        slug: slug.into(),
        name: name.into(),
        city: city.into(),
        country: country.into(),
        country_slug: country.to_lowercase().replace(' ', "-"),
        facility: facility.into(),
    }
}

const US: &str = "United States";
const BR: &str = "Brazil";
const DE: &str = "Germany";

/// Prices the way Latitude publishes them: monthly is the hourly rate over 730 h with a small
/// discount, yearly a further discount; BRL at a fixed rate of 5.
fn pricing(usd_hour: f64, with_brl: bool) -> Vec<Price> {
    let month = (usd_hour * 695.0).round();
    let year = (month * 8.82).round();
    let mut prices = vec![Price {
        currency: "USD".into(),
        hour: usd_hour,
        month,
        year,
    }];
    if with_brl {
        prices.push(Price {
            currency: "BRL".into(),
            hour: (usd_hour * 500.0).round() / 100.0,
            month: month * 5.0,
            year: year * 5.0,
        });
    }
    prices
}

fn region(
    country: &str,
    available: &[&str],
    in_stock: &[&str],
    stock_level: &str,
    usd_hour: f64,
) -> PlanRegion {
    let in_stock: Vec<String> = in_stock.iter().map(|s| s.to_string()).collect();
    // Instant deploys exist only where there is healthy stock.
    let deploys_instantly = if !in_stock.is_empty() && stock_level == "high" {
        vec!["ubuntu_24_04_x64_lts".to_string()]
    } else {
        Vec::new()
    };
    PlanRegion {
        country: country.into(),
        deploys_instantly,
        available: available.iter().map(|s| s.to_string()).collect(),
        in_stock,
        stock_level: if stock_level.is_empty() {
            "unavailable".into()
        } else {
            stock_level.into()
        },
        pricing: pricing(usd_hour, country != DE),
    }
}

struct PlanSeed {
    id: &'static str,
    slug: &'static str,
    features: &'static [&'static str],
    cpu: (&'static str, f64, f64, f64),
    memory_gb: f64,
    drives: &'static [(f64, &'static str, &'static str)],
    nics: &'static [(f64, &'static str)],
    specs: (&'static str, &'static str, &'static str),
    regions: Vec<PlanRegion>,
}

fn plan(seed: PlanSeed) -> Plan {
    let (cpu_kind, clock, cores, count) = seed.cpu;
    Plan {
        id: seed.id.into(),
        slug: seed.slug.into(),
        name: seed.slug.replace('-', "."),
        features: seed.features.iter().map(|f| f.to_string()).collect(),
        cpu: Cpu {
            kind: cpu_kind.into(),
            clock,
            cores,
            count,
        },
        memory_gb: seed.memory_gb,
        drives: seed
            .drives
            .iter()
            .map(|(count, size, kind)| Drive {
                count: *count,
                size: (*size).into(),
                kind: (*kind).into(),
            })
            .collect(),
        nics: seed
            .nics
            .iter()
            .map(|(count, kind)| Nic {
                count: *count,
                kind: (*kind).into(),
            })
            .collect(),
        server_specs: ServerSpecs {
            cpu: seed.specs.0.into(),
            disk: seed.specs.1.into(),
            ram: format!("{} GB", seed.memory_gb),
            nic: seed.specs.2.into(),
        },
        regions: seed.regions,
    }
}

const ALL_US: &[&str] = &["CHI", "ASH", "DAL", "MIA2", "LAX", "NYC"];

/// The catalogue every new world starts with: six US sites plus São Paulo and Frankfurt, ten plans with
/// stock that differs by plan and site, and the operating systems the installer cares about.
///
/// The plans' CPU, memory, `specs.drives`, NICs and hourly USD prices are Latitude's own, from
/// recorded `GET /plans` traffic: `latitudesh/latitudesh-go` `fixtures/TestAccPlanBasic.yaml`,
/// `TestAccPlanFilter.yaml`, `TestAccOperatingSystemBasic.yaml` (2024-06-28) and
/// `latitudesh/terraform-provider-latitudesh` `latitudesh/fixtures/TestAccPlan_Basic.yaml`
/// (2024-08-19). Drive sizes keep the recordings' free text ("480GB", "1.9 TB"). The sites
/// offering each plan and the stock are the lab's own.
pub(crate) fn seed() -> Catalogue {
    let sites = vec![
        site(
            "loc_JLqG158d5BOgv",
            "MIA2",
            "Miami 2",
            "Miami",
            US,
            "Colohouse - Miami",
        ),
        site(
            "loc_Ab3Qr9mNx2LkT",
            "DAL",
            "Dallas",
            "Dallas",
            US,
            "Digital Realty - Dallas",
        ),
        site(
            "loc_Kd82Hv6WqJz4P",
            "ASH",
            "Ashburn",
            "Ashburn",
            US,
            "Equinix - Ashburn",
        ),
        site(
            "loc_Pq7Lm2Nc9Rt5X",
            "LAX",
            "Los Angeles",
            "Los Angeles",
            US,
            "CoreSite - Los Angeles",
        ),
        site(
            "loc_Vx4Bn8Gy3Hs6M",
            "NYC",
            "New York",
            "New York",
            US,
            "Digital Realty - New York",
        ),
        site(
            "loc_Tz5Wc1Ke7Yd9Q",
            "CHI",
            "Chicago",
            "Chicago",
            US,
            "CyrusOne - Chicago",
        ),
        site(
            "loc_87vRENkgNdPyk",
            "SAO",
            "São Paulo",
            "São Paulo",
            BR,
            "Latitude.sh SP1",
        ),
        site(
            "loc_Mf6Ja3Ux8Pb2R",
            "FRA",
            "Frankfurt",
            "Frankfurt",
            DE,
            "Interxion - Frankfurt",
        ),
    ];
    let plans = vec![
        plan(PlanSeed {
            id: "plan_2X6KG5mA5yPBM",
            slug: "c2-small-x86",
            features: &["ssh", "user_data"],
            cpu: ("E-2134G", 3.5, 4.0, 1.0),
            memory_gb: 32.0,
            drives: &[(1.0, "500 GB", "SSD")],
            nics: &[(1.0, "1 Gbps")],
            specs: (
                "Xeon E-2134G CPU @ 3.50GHz (4 cores)",
                "1 X 500 GB SSD",
                "1 Gbit/s",
            ),
            regions: vec![
                region(
                    US,
                    ALL_US,
                    &["CHI", "DAL", "MIA2", "LAX", "NYC"],
                    "high",
                    0.21,
                ),
                region(BR, &["SAO"], &["SAO"], "low", 0.30),
                region(DE, &["FRA"], &[], "unavailable", 0.21),
            ],
        }),
        plan(PlanSeed {
            id: "plan_zD8qV2jW1mN7x",
            slug: "c2-medium-x86",
            features: &["ssh", "raid", "user_data"],
            cpu: ("E-2278G", 3.4, 8.0, 1.0),
            memory_gb: 64.0,
            drives: &[(2.0, "500 GB", "SSD")],
            nics: &[(1.0, "10 Gbps")],
            specs: (
                "Xeon E-2278G CPU @ 3.40GHz (8 cores)",
                "2 X 500 GB SSD",
                "10 Gbit/s",
            ),
            regions: vec![
                region(US, ALL_US, &["ASH", "DAL", "NYC"], "medium", 0.27),
                region(BR, &["SAO"], &["SAO"], "low", 0.36),
                region(DE, &["FRA"], &["FRA"], "low", 0.29),
            ],
        }),
        plan(PlanSeed {
            id: "plan_VE1Wd3aXDXnZJ",
            slug: "c3-small-x86",
            features: &["ssh", "user_data"],
            cpu: ("E-2386G", 3.5, 6.0, 1.0),
            memory_gb: 32.0,
            drives: &[(1.0, "800 GB", "NVME")],
            nics: &[(1.0, "10 Gbps")],
            specs: (
                "Xeon E-2386G CPU @ 3.50GHz (6 cores)",
                "1 X 800 GB NVMe",
                "10 Gbit/s",
            ),
            regions: vec![
                region(US, ALL_US, ALL_US, "high", 0.32),
                region(BR, &["SAO"], &[], "unavailable", 0.42),
                region(DE, &["FRA"], &["FRA"], "medium", 0.34),
            ],
        }),
        plan(PlanSeed {
            id: "plan_k3Yg8Lp0Bd5Rw",
            slug: "c3-large-x86",
            features: &["ssh", "raid", "user_data"],
            cpu: ("AMD 7443P", 2.85, 24.0, 1.0),
            memory_gb: 256.0,
            drives: &[(2.0, "1.9 TB", "NVME")],
            nics: &[(1.0, "2 x 10 Gbps")],
            specs: (
                "AMD EPYC 7443P 24-Core Processor (24 cores)",
                "2 X 1.9 TB NVMe",
                "2 X 10 Gbit/s",
            ),
            regions: vec![
                region(
                    US,
                    &["ASH", "DAL", "LAX", "MIA2", "NYC"],
                    &["ASH", "DAL", "LAX", "NYC"],
                    "high",
                    0.80,
                ),
                region(DE, &["FRA"], &["FRA"], "medium", 0.86),
            ],
        }),
        plan(PlanSeed {
            id: "plan_6p9Nw4Qs1Ta8E",
            slug: "m4-metal-small",
            features: &["ssh", "raid", "user_data"],
            cpu: ("E-2488", 3.2, 8.0, 1.0),
            memory_gb: 64.0,
            drives: &[(2.0, "480GB", "NVME"), (2.0, "1TB", "NVME")],
            nics: &[(2.0, "10Gbps")],
            specs: (
                "Xeon E-2488 CPU @ 3.20GHz (8 cores)",
                "2 X 480 GB NVMe + 2 X 1 TB NVMe",
                "2 X 10 Gbit/s",
            ),
            regions: vec![
                region(US, ALL_US, &["ASH", "DAL"], "medium", 0.40),
                region(BR, &["SAO"], &["SAO"], "low", 0.52),
                region(DE, &["FRA"], &[], "unavailable", 0.44),
            ],
        }),
        plan(PlanSeed {
            id: "plan_Rb2Xe7Hm5Cz3V",
            slug: "m4-metal-medium",
            features: &["ssh", "raid", "user_data"],
            cpu: ("AMD 9124", 3.0, 16.0, 1.0),
            memory_gb: 128.0,
            drives: &[(2.0, "480GB", "NVME"), (2.0, "1.9TB", "NVME")],
            nics: &[(2.0, "10Gbps")],
            specs: (
                "AMD EPYC 9124 16-Core Processor (16 cores)",
                "2 X 480 GB NVMe + 2 X 1.9 TB NVMe",
                "2 X 10 Gbit/s",
            ),
            regions: vec![
                region(
                    US,
                    &["ASH", "DAL", "LAX", "NYC"],
                    &["DAL", "LAX"],
                    "medium",
                    0.62,
                ),
                region(DE, &["FRA"], &["FRA"], "low", 0.66),
            ],
        }),
        plan(PlanSeed {
            id: "plan_Qw1Sd8Fk4Jn6U",
            slug: "m4-metal-large",
            features: &["ssh", "raid", "user_data"],
            cpu: ("AMD 9254", 2.9, 24.0, 1.0),
            memory_gb: 384.0,
            drives: &[(2.0, "480GB", "NVME"), (2.0, "3.8TB", "NVME")],
            nics: &[(2.0, "10Gbps")],
            specs: (
                "AMD EPYC 9254 24-Core Processor (24 cores)",
                "2 X 480 GB NVMe + 2 X 3.8 TB NVMe",
                "2 X 10 Gbit/s",
            ),
            regions: vec![region(US, &["ASH", "DAL", "NYC"], &[], "unavailable", 1.06)],
        }),
        plan(PlanSeed {
            id: "plan_Hy3Vt6Gb9Mc1L",
            slug: "s3-large-x86",
            features: &["ssh", "raid", "user_data"],
            cpu: ("AMD 7443P", 2.85, 24.0, 1.0),
            memory_gb: 512.0,
            drives: &[(2.0, "3.8 TB", "NVME")],
            nics: &[(1.0, "10Gbps")],
            specs: (
                "AMD EPYC 7443P 24-Core Processor (24 cores)",
                "2 X 3.8 TB NVMe",
                "10 Gbit/s",
            ),
            regions: vec![region(US, &["ASH", "CHI", "DAL"], &["CHI"], "low", 1.44)],
        }),
        plan(PlanSeed {
            id: "plan_Wm4Ld7Rz2Kx9S",
            slug: "s2-small-x86",
            features: &["ssh", "raid", "user_data"],
            cpu: ("E-2276G", 3.8, 6.0, 1.0),
            memory_gb: 32.0,
            drives: &[(2.0, "500 GB", "SSD"), (2.0, "1 TB", "NVME")],
            nics: &[(1.0, "1 Gbps")],
            specs: (
                "Xeon E-2276G CPU @ 3.80GHz (6 cores)",
                "2 X 500 GB SSD + 2 X 1 TB NVMe",
                "1 Gbit/s",
            ),
            regions: vec![region(US, &["DAL", "NYC"], &["DAL", "NYC"], "medium", 0.34)],
        }),
        plan(PlanSeed {
            id: "plan_Gh2Xp5Tn8Vq1B",
            slug: "g3-gh200",
            features: &["ssh", "user_data"],
            cpu: ("NVIDIA Grace Hopper", 3.1, 72.0, 1.0),
            memory_gb: 480.0,
            drives: &[(1.0, "3.8TB", "NVME")],
            nics: &[(1.0, "10 Gbps")],
            specs: (
                "NVIDIA Grace Hopper Superchip (72 cores)",
                "1 X 3.8 TB NVMe",
                "10 Gbit/s",
            ),
            regions: vec![region(US, &["DAL"], &["DAL"], "low", 5.29)],
        }),
    ];
    let every_plan: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
    // The `ipxe` OS's `provisionable_on` (plan *names*) covered every recorded plan but
    // g3-gh200 in `TestAccOperatingSystemBasic.yaml` (latitudesh/latitudesh-go, 2024-06-28).
    let ipxe_plans: Vec<String> = every_plan
        .iter()
        .filter(|name| *name != "g3.gh200")
        .cloned()
        .collect();
    let os = |id: &str,
              slug: &str,
              name: &str,
              distro: &str,
              series: &str,
              version: &str,
              full: bool| {
        OperatingSystem {
            id: id.into(),
            slug: slug.into(),
            name: name.into(),
            distro: distro.into(),
            series: series.into(),
            version: version.into(),
            raid: full,
            rescue: full,
            ssh_keys: full,
            user_data: full,
            provisionable_on: if slug == IPXE_OS {
                ipxe_plans.clone()
            } else {
                every_plan.clone()
            },
        }
    };
    let operating_systems = vec![
        os(
            "os_Z1Gjbano0L2wl",
            IPXE_OS,
            "Custom image (iPXE)",
            "ipxe",
            "ipxe",
            "",
            false,
        ),
        os(
            "os_zGr47qlMDAg0m",
            "ubuntu_24_04_x64_lts",
            "Ubuntu",
            "ubuntu",
            "noble",
            "24.04",
            true,
        ),
        os(
            "os_lY6ynWDGPg3ZV",
            "ubuntu_22_04_x64_lts",
            "Ubuntu",
            "ubuntu",
            "jammy",
            "22.04",
            true,
        ),
        os(
            "os_X8bG1nRk5qPyd",
            "debian_12",
            "Debian",
            "debian",
            "bookworm",
            "12",
            true,
        ),
    ];
    Catalogue {
        sites,
        plans,
        operating_systems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_consistent() {
        let c = seed();
        for plan in &c.plans {
            assert_eq!(plan.name, plan.slug.replace('-', "."));
            for region in &plan.regions {
                for s in region.available.iter().chain(&region.in_stock) {
                    let site = c.site(s).unwrap_or_else(|| panic!("unknown site {s}"));
                    assert_eq!(site.country, region.country, "{} {s}", plan.slug);
                }
                for s in &region.in_stock {
                    assert!(region.available.contains(s), "{} {s}", plan.slug);
                }
                assert_eq!(
                    region.in_stock.is_empty(),
                    region.stock_level == "unavailable"
                );
            }
        }
        let ipxe = c.operating_system(IPXE_OS).unwrap();
        assert!(ipxe.provisionable_on.contains(&"c2.small.x86".to_string()));
        assert!(!ipxe.provisionable_on.contains(&"g3.gh200".to_string()));
    }

    #[test]
    fn drives_match_the_recordings() {
        // latitudesh/terraform-provider-latitudesh latitudesh/fixtures/TestAccPlan_Basic.yaml
        let c = seed();
        let drives = |slug: &str| -> Vec<(f64, String, String)> {
            c.plan(slug)
                .unwrap()
                .drives
                .iter()
                .map(|d| (d.count, d.size.clone(), d.kind.clone()))
                .collect()
        };
        let d = |count: f64, size: &str, kind: &str| (count, size.to_owned(), kind.to_owned());
        assert_eq!(drives("c2-small-x86"), [d(1.0, "500 GB", "SSD")]);
        assert_eq!(drives("c2-medium-x86"), [d(2.0, "500 GB", "SSD")]);
        assert_eq!(drives("c3-small-x86"), [d(1.0, "800 GB", "NVME")]);
        assert_eq!(
            drives("m4-metal-medium"),
            [d(2.0, "480GB", "NVME"), d(2.0, "1.9TB", "NVME")]
        );
        assert_eq!(
            drives("m4-metal-large"),
            [d(2.0, "480GB", "NVME"), d(2.0, "3.8TB", "NVME")]
        );
    }

    #[test]
    fn c2_small_matches_the_recording() {
        let c = seed();
        let p = c.plan("c2-small-x86").unwrap();
        let us = &p.regions[0];
        assert_eq!(us.pricing[0].hour, 0.21);
        assert_eq!(us.pricing[0].month, 146.0);
        assert_eq!(us.pricing[0].year, 1288.0);
        assert_eq!(us.pricing[1].hour, 1.05);
        assert!(!us.in_stock.contains(&"ASH".to_string()));
        assert_eq!(p.usd_price("SAO").unwrap().hour, 0.30);
    }
}
